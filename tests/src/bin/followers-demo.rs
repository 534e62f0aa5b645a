//! Loads a small demo account into a running system and prints what it shows: owners,
//! followers, and access answers with their reasons. Used by `scripts/run-local --demo`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use followers_shared::wire::{AccessAnswer, FollowersAnswer, QueryReply};
use followers_tests::Followers;
use followers_tests::client::{contact, opportunity, system, user, workflow};
use serde_json::json;

#[tokio::main]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    let client = async_nats::connect(&url).await.expect("connect to NATS");
    let f = Followers::new(client, "demo");
    let first = f
        .send("open_account", system(), json!({"name": "Demo Realty"}))
        .await;
    if !first.ok {
        println!(
            "the demo account exists already: {}",
            first.error.map(|e| e.message).unwrap_or_default()
        );
        return;
    }
    for (u, name, role, scope) in [
        ("alice", "Alice Admin", "admin", "all"),
        ("bruno", "Bruno Broker", "user", "only_assigned"),
        ("chen", "Chen Closer", "user", "only_assigned"),
        ("dana", "Dana Dispatcher", "user", "all"),
    ] {
        let r = f
            .send("register_member", system(), json!({"user": u, "name": name, "email": format!("{u}@demo.invalid"), "role": role, "data_scope": scope}))
            .await;
        assert!(r.ok, "{r:?}");
    }
    let steps = [
        (
            "create_contact",
            user("alice"),
            json!({"contact": "acme-corp", "owner": "bruno"}),
        ),
        (
            "create_opportunity",
            user("alice"),
            json!({"opportunity": "acme-renewal", "contact": "acme-corp", "followers": ["chen"]}),
        ),
        (
            "add_followers",
            workflow("high-value-deals"),
            json!({"record": opportunity("acme-renewal"), "users": ["dana"]}),
        ),
    ];
    let mut position = 0;
    for (command, actor, body) in steps {
        let r = f.send(command, actor, body).await;
        assert!(r.ok, "{command}: {r:?}");
        position = r.position.map_or(position, |p| p.0);
    }
    let followers: QueryReply<FollowersAnswer> = f
        .query(
            "followers",
            json!({"record": opportunity("acme-renewal"), "min_position": position}),
        )
        .await;
    println!(
        "followers of opportunity acme-renewal:\n{}",
        serde_json::to_string_pretty(&followers.answer).unwrap()
    );
    for (who, action, record) in [
        ("bruno", "change_owner", opportunity("acme-renewal")),
        ("chen", "edit", opportunity("acme-renewal")),
        ("chen", "change_owner", opportunity("acme-renewal")),
        ("chen", "view", contact("acme-corp")),
        ("dana", "view", contact("acme-corp")),
    ] {
        let a: QueryReply<AccessAnswer> = f
            .query(
                "check_access",
                json!({"user": who, "action": action, "record": record, "min_position": position}),
            )
            .await;
        let a = a.answer.unwrap();
        println!(
            "may {who} {action} {}? {} ({})",
            record["id"],
            if a.allowed { "yes" } else { "no" },
            a.reason
        );
    }
}
