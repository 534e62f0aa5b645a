//! The demo account of `scripts/run-local --demo` and of the access explorer's browser test:
//! an admin and three users, a contact owned by Bruno, and its opportunity (owners coupled, so
//! the follower sync makes Bruno its owner too, R7) followed by Chen (by hand) and Dana (by a
//! workflow).

use followers_client::{Account, Error, Reply, system, user, workflow};
use followers_shared::bounded::{SomeUsers, Text, Users};
use followers_shared::command::{
    AddFollowers, CreateContact, CreateOpportunity, OpenAccount, RegisterMember,
};
use followers_shared::error::ErrorCode;
use followers_shared::ids::{ContactId, OpportunityId, UserId, WorkflowId};
use followers_shared::model::{DataScope, RecordRef, Role};

fn id(s: &str) -> UserId {
    UserId::new(s).expect("a demo user id")
}

/// Opens the demo account and fills it; returns the last command's reply, or `None` when the
/// account exists already.
pub async fn load(demo: &Account) -> Option<Reply> {
    let open = OpenAccount {
        name: Text::new("Demo Realty").expect("demo data"),
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
    let acme = ContactId::new("acme-corp").expect("demo data");
    let renewal = RecordRef::Opportunity(OpportunityId::new("acme-renewal").expect("demo data"));
    let contact = CreateContact {
        contact: acme.clone(),
        owner: Some(id("bruno")),
        followers: Users::default(),
    };
    demo.command(user(&id("alice")), contact)
        .await
        .expect("create_contact");
    let opportunity = CreateOpportunity {
        opportunity: OpportunityId::new("acme-renewal").expect("demo data"),
        contact: acme.clone(),
        owner: None,
        followers: Users::new(vec![id("chen")]).expect("demo data"),
    };
    demo.command(user(&id("alice")), opportunity)
        .await
        .expect("create_opportunity");
    let by_workflow = AddFollowers {
        until: Default::default(),
        record: Some(renewal.clone()),
        users: SomeUsers::new(vec![id("dana")]).expect("demo data"),
    };
    let high_value = workflow(&WorkflowId::new("high-value-deals").expect("demo data"));
    Some(
        demo.command(high_value, by_workflow)
            .await
            .expect("add_followers"),
    )
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
            name: Text::new(name).expect("demo data"),
            email: Text::new(format!("{u}@demo.invalid")).expect("demo data"),
            role,
            data_scope: scope,
        };
        demo.command(system(), member)
            .await
            .expect("register_member");
    }
}
