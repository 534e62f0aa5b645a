//! Typed requests for the tests, from short string ids: shared's payload structs, sent with
//! `followers-client` (tests build no command or query JSON by hand, save where the raw wire is
//! what they test).

use followers_client::{Account, Client, Error};
use followers_shared::bounded::{SomeUsers, Text, Users};
use followers_shared::command::{
    AddFollowers, ChangeOwner, CreateContact, CreateOpportunity, RegisterMember, RemoveFollowers,
};
use followers_shared::error::ErrorCode;
use followers_shared::ids::{AccountId, UserId};
use followers_shared::model::{Actor, DataScope, RecordRef, Role};

use crate::nats::NatsServer;

/// A handle on `account` over a new connection to `server`, with the default retry policy.
pub async fn account(server: &NatsServer, account: &str) -> Account {
    Client::new(server.client().await).account(account_id(account))
}

pub fn account_id(id: &str) -> AccountId {
    AccountId::new(id).expect("account id")
}

pub fn uid(id: &str) -> UserId {
    UserId::new(id).expect("user id")
}

/// A user as actor, by id.
pub fn by(user: &str) -> Actor {
    followers_client::user(&uid(user))
}

/// A workflow as actor, by id.
pub fn by_workflow(workflow: &str) -> Actor {
    followers_client::workflow(&workflow.parse().expect("workflow id"))
}

pub fn users<S: AsRef<str>>(ids: &[S]) -> Users {
    Users::new(ids.iter().map(|u| uid(u.as_ref())).collect()).expect("users")
}

pub fn some_users<S: AsRef<str>>(ids: &[S]) -> SomeUsers {
    SomeUsers::new(ids.iter().map(|u| uid(u.as_ref())).collect()).expect("at least one user")
}

/// `register_member`: `role` is `admin` or `user`, `scope` `all` or `only_assigned`.
pub fn member(user: &str, role: &str, scope: &str) -> RegisterMember {
    RegisterMember {
        user: uid(user),
        name: Text::new(format!("User {user}")).expect("name"),
        email: Text::new(format!("{user}@example.com")).expect("email"),
        role: if role == "admin" {
            Role::Admin
        } else {
            Role::User
        },
        data_scope: if scope == "all" {
            DataScope::All
        } else {
            DataScope::OnlyAssigned
        },
    }
}

pub fn new_contact<S: AsRef<str>>(id: &str, owner: Option<&str>, followers: &[S]) -> CreateContact {
    CreateContact {
        contact: id.parse().expect("contact id"),
        owner: owner.map(uid),
        followers: users(followers),
    }
}

pub fn new_opportunity<S: AsRef<str>>(
    id: &str,
    contact: &str,
    owner: Option<&str>,
    followers: &[S],
) -> CreateOpportunity {
    CreateOpportunity {
        opportunity: id.parse().expect("opportunity id"),
        contact: contact.parse().expect("contact id"),
        owner: owner.map(uid),
        followers: users(followers),
    }
}

pub fn add<S: AsRef<str>>(record: RecordRef, users: &[S]) -> AddFollowers {
    AddFollowers {
        until: Default::default(),
        record: Some(record),
        users: some_users(users),
    }
}

pub fn remove<S: AsRef<str>>(record: RecordRef, users: &[S]) -> RemoveFollowers {
    RemoveFollowers {
        record: Some(record),
        users: some_users(users),
    }
}

pub fn change_owner(record: RecordRef, owner: Option<&str>) -> ChangeOwner {
    ChangeOwner {
        record,
        owner: owner.map(uid),
    }
}

/// No users, for the `followers` of a new record.
pub const NONE: &[&str] = &[];

/// The refusal a request got: panics on anything else.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> Error {
    match result {
        Err(e @ Error::Refused { .. }) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The code of the refusal a request got.
pub fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> ErrorCode {
    refusal(result).code().expect("a refusal has a code")
}

/// The members of [`small_account`]: an admin, two members with scope `all` or not, and three
/// `only_assigned` members (name, role, data scope).
pub const SMALL_TEAM: &[(&str, &str, &str)] = &[
    ("ann", "admin", "all"),
    ("bob", "user", "only_assigned"),
    ("cid", "user", "all"),
    ("dee", "user", "only_assigned"),
    ("eve", "user", "only_assigned"),
    ("fay", "user", "only_assigned"),
];

/// A small account: [`SMALL_TEAM`]; contact c1 owned by bob, followed by dee; opportunity o1 of
/// c1 owned by bob (coupled), followed by eve; contact c2 unassigned. fay holds nothing. The
/// position of the last commit.
pub async fn small_account(acme: &Account) -> followers_shared::store::Position {
    crate::stack::open_team(acme, SMALL_TEAM).await;
    let c1 = new_contact("c1", Some("bob"), &["dee"]);
    acme.command(by("ann"), c1).await.expect("create c1");
    let o1 = new_opportunity("o1", "c1", None, &["eve"]);
    acme.command(by("ann"), o1).await.expect("create o1");
    let c2 = new_contact("c2", None, NONE);
    acme.command(by("ann"), c2)
        .await
        .expect("create c2")
        .position()
}
