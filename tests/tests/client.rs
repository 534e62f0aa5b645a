#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: the typed client (`followers-client`) against a real nats-server and both
//! services: typed replies, refusals with their codes, retries that keep the command id, and
//! read-your-writes. `the_crate_example_runs` follows the crate docs' example (a doctest too).

use std::time::Duration;

use followers_client::{Account, Client, Error, Retry, Transient, system, user};
use followers_shared::access::{Action, Reason};
use followers_shared::bounded::{SomeUsers, Text, Users};
use followers_shared::command::{
    AddFollowers, ChangeOwner, CreateContact, OpenAccount, RegisterMember,
};
use followers_shared::error::ErrorCode;
use followers_shared::ids::{AccountId, ContactId, UserId};
use followers_shared::model::{DataScope, RecordRef, Role};
use followers_shared::wire::Outcome;
use followers_tests::NatsServer;
use followers_tests::stack::{start_command_service, start_projection_service};

fn id(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn open(name: &str) -> OpenAccount {
    OpenAccount {
        name: Text::new(name).unwrap(),
        settings: Default::default(),
    }
}

fn member(who: &str, role: Role) -> RegisterMember {
    RegisterMember {
        user: id(who),
        name: Text::new(who).unwrap(),
        email: Text::new(format!("{who}@acme.example")).unwrap(),
        role,
        data_scope: DataScope::OnlyAssigned,
    }
}

fn new_contact(contact: &str, owner: Option<&str>) -> CreateContact {
    CreateContact {
        contact: ContactId::new(contact).unwrap(),
        owner: owner.map(id),
        followers: Users::default(),
    }
}

fn c(contact: &str) -> RecordRef {
    RecordRef::Contact(ContactId::new(contact).unwrap())
}

/// Opens `acme` with the admin ada and the users bob and cy.
async fn acme(client: &Client) -> Account {
    let acme = client.account(AccountId::new("acme").unwrap());
    acme.command(system(), open("Acme")).await.unwrap();
    for (who, role) in [
        ("ada", Role::Admin),
        ("bob", Role::User),
        ("cy", Role::User),
    ] {
        acme.command(system(), member(who, role)).await.unwrap();
    }
    acme
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crate_example_runs() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let _queries = start_projection_service(&server, &[]).await;
    let client = Client::new(server.client().await);
    let acme = acme(&client).await;
    let ada = id("ada");
    let created = acme
        .command(user(&ada), new_contact("c-1", Some("ada")))
        .await
        .unwrap();
    assert_eq!(created.outcome(), Outcome::Applied);
    assert_eq!(created.attempts(), 1, "answered at once");
    assert_eq!(created.events().len(), 1, "{created:?}");
    let added = acme
        .command(
            user(&ada),
            AddFollowers {
                until: Default::default(),
                record: Some(c("c-1")),
                users: SomeUsers::new(vec![id("bob")]).unwrap(),
            },
        )
        .await
        .unwrap();
    assert_eq!(added.outcome(), Outcome::Applied);
    assert_eq!(added.added.as_deref(), Some(&[id("bob")][..]));
    assert_eq!(added.already_following.as_deref(), Some(&[][..]));
    assert!(added.position() > created.position());
    assert!(!added.replayed());

    let bob = client
        .after(&added)
        .check_access(&id("bob"), Action::View, &c("c-1"))
        .await
        .unwrap();
    assert!(bob.allowed, "{bob:?}");
    assert_eq!(bob.reason, Reason::Follower);
    assert_eq!(bob.attempts, 1, "answered at once");
    let cy = acme
        .after(&added)
        .check_access(&id("cy"), Action::View, &c("c-1"))
        .await
        .unwrap();
    assert!(!cy.allowed, "{cy:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_has_its_code() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let client = Client::new(server.client().await);
    let acme = acme(&client).await;
    let ada = user(&id("ada"));
    acme.command(ada.clone(), new_contact("c-1", None))
        .await
        .unwrap();
    let again = acme.command(ada.clone(), new_contact("c-1", None));
    let sent_as = again.id();
    match again.await {
        Err(Error::Refused {
            code, command_id, ..
        }) => {
            assert_eq!(code, ErrorCode::RecordExists);
            assert_eq!(command_id, Some(sent_as));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let by_bob = acme.command(
        user(&id("bob")),
        ChangeOwner {
            record: c("c-1"),
            owner: Some(id("bob")),
        },
    );
    let refused = by_bob.await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::AccessDenied), "{refused:?}");
    assert!(
        matches!(
            refused,
            Error::Refused {
                reason: Some(_),
                ..
            }
        ),
        "{refused:?}"
    );
    let nowhere = client.account(AccountId::new("nowhere").unwrap());
    let unknown = nowhere.command(ada, new_contact("c-1", None)).await;
    assert_eq!(unknown.unwrap_err().code(), Some(ErrorCode::UnknownAccount));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_reuses_the_command_id() {
    let server = NatsServer::start();
    let client = Client::new(server.client().await).with_retry(Retry {
        attempts: 300,
        total: Duration::from_secs(60),
        max_backoff: Duration::from_millis(200),
        ..Retry::default()
    });
    let acme = client.account(AccountId::new("acme").unwrap());
    // Sent before any command service runs: it finds no responder and is tried again.
    let opening = acme.command(system(), open("Acme"));
    let chosen = opening.id();
    let pending = tokio::spawn(opening.send());
    let _commands = start_command_service(&server, &[]).await;
    let first = pending.await.unwrap().unwrap();
    assert_eq!(first.command_id(), Some(chosen));
    assert_eq!(first.outcome(), Outcome::Applied);
    assert!(!first.replayed());
    assert!(first.attempts() > 1, "no responder at first: {first:?}");

    // Sent again with the same id, as after a lost reply: the first reply, replayed.
    let again = acme
        .command(system(), open("Acme"))
        .command_id(chosen)
        .await
        .unwrap();
    assert!(again.replayed(), "{again:?}");
    assert_eq!(again.attempts(), 1, "a service runs now");
    assert_eq!(again.position(), first.position());
    assert_eq!(again.events(), first.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_service_the_client_gives_up_within_its_bounds() {
    let server = NatsServer::start();
    let retry = Retry {
        attempts: 3,
        total: Duration::from_secs(20),
        first_backoff: Duration::from_millis(10),
        ..Retry::default()
    };
    let client = Client::new(server.client().await).with_retry(retry);
    let acme = client.account(AccountId::new("acme").unwrap());
    let opening = acme.command(system(), open("Acme"));
    let chosen = opening.id();
    match opening.await {
        Err(
            e @ Error::GaveUp {
                attempts: 3,
                last: Transient::NoResponders,
                ..
            },
        ) => {
            assert_eq!(e.command_id(), Some(chosen));
            assert_eq!(e.code(), None);
        }
        other => panic!("expected to give up after 3 attempts, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_through_after() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let _queries = start_projection_service(&server, &[]).await;
    let client = Client::new(server.client().await);
    let acme = acme(&client).await;
    let ada = user(&id("ada"));
    acme.command(ada.clone(), new_contact("c-1", Some("bob")))
        .await
        .unwrap();
    for (round, owner) in (0..5).zip(["cy", "bob"].into_iter().cycle()) {
        let moved = acme
            .command(
                ada.clone(),
                ChangeOwner {
                    record: c("c-1"),
                    owner: Some(id(owner)),
                },
            )
            .await
            .unwrap();
        let reader = client.after(&moved);
        assert_eq!(reader.min_position(), Some(moved.position()));
        let seen = reader.followers(&c("c-1")).await.unwrap();
        assert!(seen.position >= moved.position(), "round {round}");
        let shown = seen.owner.as_ref().map(|o| o.user.clone());
        assert_eq!(shown, Some(id(owner)), "round {round}");
    }
}

/// The flags every followers binary takes, for `Client::connect`.
#[derive(Debug, clap::Parser)]
struct Flags {
    #[command(flatten)]
    nats: followers_store::NatsArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_takes_the_services_nats_flags() {
    use clap::Parser;

    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let url = server.url();
    let flags = Flags::parse_from(["caller", "--nats-url", url.as_str()]);
    let client = Client::connect(&flags.nats, "client-test").await.unwrap();
    let acme = client.account(AccountId::new("acme").unwrap());
    let opened = acme.command(system(), open("Acme")).await.unwrap();
    assert_eq!(opened.outcome(), Outcome::Applied);

    drop(server);
    let nowhere = Flags::parse_from(["caller", "--nats-url", url.as_str()]);
    let refused = Client::connect(&nowhere.nats, "client-test").await;
    assert!(matches!(refused, Err(Error::Connect(_))), "{refused:?}");
}
