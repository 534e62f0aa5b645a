//! Loads a small demo account into a running system and prints what it shows: owners,
//! followers, and access answers with their reasons. Used by `scripts/run-local --demo`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use followers_client::{Client, Reply};
use followers_shared::access::Action;
use followers_shared::ids::{AccountId, ContactId, OpportunityId, UserId};
use followers_shared::model::RecordRef;

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
    if let Some(last) = followers_tests::demo::load(&demo).await {
        show(&client, &last).await;
    }
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
