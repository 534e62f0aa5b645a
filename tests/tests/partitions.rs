#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The services' partition of an account agrees with the one a real nats-server's subject
//! mapping computes (`{{partition(P, 1)}}`), for many ids: callers keep sending to
//! `followers.cmd.<account>.<command>`, and the server and the services put the account in the
//! same partition.

use std::time::Duration;

use followers_shared::ids::AccountId;
use followers_shared::partition::PartitionCount;
use followers_tests::NatsServer;
use futures::StreamExt;

#[tokio::test]
async fn the_partition_of_an_account_is_the_one_the_server_maps_it_to() {
    const P: u16 = 64;
    let mapping = format!(
        "mappings = {{ \"followers.cmd.*.*\": \"partitioned.{{{{partition({P},1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}\" }}"
    );
    let server = NatsServer::start_configured("", &mapping);
    let client = server.client().await;
    let mut mapped = client.subscribe("partitioned.>").await.unwrap();
    client.flush().await.unwrap();
    let count = PartitionCount::new(P).unwrap();
    let accounts: Vec<AccountId> = (0..500)
        .map(|n| AccountId::new(format!("acct-{n}-{}", n * 7919 % 1000)).unwrap())
        .chain(["acme", "globex", "demo", "a", "Z9_-x"].map(|a| AccountId::new(a).unwrap()))
        .collect();
    for account in &accounts {
        client
            .publish(
                format!("followers.cmd.{account}.add_followers"),
                "{}".into(),
            )
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for account in &accounts {
        let message = tokio::time::timeout(Duration::from_secs(10), mapped.next())
            .await
            .expect("the server delivers every mapped message")
            .unwrap();
        let tokens: Vec<&str> = message.subject.split('.').collect();
        assert_eq!(tokens[2], account.as_str(), "in order");
        let server_says: u16 = tokens[1].parse().unwrap();
        assert_eq!(server_says, count.of(account).0, "account {account}");
    }
}
