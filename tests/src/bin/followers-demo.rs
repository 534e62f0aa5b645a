//! Loads a small demo account into a running system and prints what it shows: owners,
//! followers, and access answers with their reasons. Used by `scripts/run-local --demo`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use followers_client::{Account, Client, Error, Reply, system, user, workflow};
use followers_shared::access::Action;
use followers_shared::bounded::{SomeUsers, Text, Users};
use followers_shared::command::{
    AddFollowers, CreateContact, CreateOpportunity, OpenAccount, RegisterMember,
};
use followers_shared::error::ErrorCode;
use followers_shared::ids::{AccountId, ContactId, OpportunityId, UserId, WorkflowId};
use followers_shared::model::{DataScope, RecordRef, Role};

fn id(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let nats = async_nats::connect(&url).await.expect("connect to NATS");
    let client = Client::new(nats);
    let demo = client.account(AccountId::new("demo").unwrap());
    if let Some(last) = load(&demo).await {
        show(&client, &last).await;
    }
}

/// Opens the demo account and fills it; returns the last command's reply, or `None` when the
/// account exists already.
async fn load(demo: &Account) -> Option<Reply> {
    let open = OpenAccount {
        name: Text::new("Demo Realty").unwrap(),
        settings: Default::default(),
    };
    match demo.command(system(), open).await {
        Ok(_) => {}
        Err(
            e @ Error::Refused {
                code: ErrorCode::AccountExists,
                ..
            },
        ) => {
            println!("the demo account exists already: {e}");
            return None;
        }
        Err(e) => panic!("open_account: {e:?}"),
    }
    register_team(demo).await;
    let acme = ContactId::new("acme-corp").unwrap();
    let renewal = RecordRef::Opportunity(OpportunityId::new("acme-renewal").unwrap());
    let contact = CreateContact {
        contact: acme.clone(),
        owner: Some(id("bruno")),
        followers: Users::default(),
    };
    demo.command(user(&id("alice")), contact)
        .await
        .expect("create_contact");
    let opportunity = CreateOpportunity {
        opportunity: OpportunityId::new("acme-renewal").unwrap(),
        contact: acme.clone(),
        owner: None,
        followers: Users::new(vec![id("chen")]).unwrap(),
    };
    demo.command(user(&id("alice")), opportunity)
        .await
        .expect("create_opportunity");
    let by_workflow = AddFollowers {
        until: Default::default(),
        record: Some(renewal.clone()),
        users: SomeUsers::new(vec![id("dana")]).unwrap(),
    };
    let high_value = workflow(&WorkflowId::new("high-value-deals").unwrap());
    Some(
        demo.command(high_value, by_workflow)
            .await
            .expect("add_followers"),
    )
}

/// Prints the opportunity's followers and some access answers, as of `last` at least.
async fn show(client: &Client, last: &Reply) {
    let renewal = RecordRef::Opportunity(OpportunityId::new("acme-renewal").unwrap());
    let contact = RecordRef::Contact(ContactId::new("acme-corp").unwrap());
    let shown = client.after(last);
    let followers = shown.followers(&renewal).await.expect("followers");
    println!(
        "followers of opportunity acme-renewal:\n{}",
        serde_json::to_string_pretty(&followers.answer).unwrap()
    );
    for (who, action, record) in [
        ("bruno", Action::ChangeOwner, &renewal),
        ("chen", Action::Edit, &renewal),
        ("chen", Action::ChangeOwner, &renewal),
        ("chen", Action::View, &contact),
        ("dana", Action::View, &contact),
    ] {
        let a = shown
            .check_access(&id(who), action, record)
            .await
            .expect("check_access");
        println!(
            "may {who} {action} {}? {} ({})",
            record.id(),
            if a.allowed { "yes" } else { "no" },
            a.reason
        );
    }
}

/// The demo's members: an admin and three users.
async fn register_team(demo: &Account) {
    for (u, name, role, scope) in [
        ("alice", "Alice Admin", Role::Admin, DataScope::All),
        ("bruno", "Bruno Broker", Role::User, DataScope::OnlyAssigned),
        ("chen", "Chen Closer", Role::User, DataScope::OnlyAssigned),
        ("dana", "Dana Dispatcher", Role::User, DataScope::All),
    ] {
        let member = RegisterMember {
            user: id(u),
            name: Text::new(name).unwrap(),
            email: Text::new(format!("{u}@demo.invalid")).unwrap(),
            role,
            data_scope: scope,
        };
        demo.command(system(), member)
            .await
            .expect("register_member");
    }
}
