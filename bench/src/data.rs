//! Realistic data, built as the services would store it and published straight to JetStream.

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use bytes::Bytes;
use chrono::Utc;
use followers_shared::command::CommandMeta;
use followers_shared::event::{AddedFollower, EventBody};
use followers_shared::ids::{AccountId, CommandId, ContactId, UserId};
use followers_shared::model::{AccountSettings, Actor, AddedHow, DataScope, RecordRef, Role};
use followers_shared::store::{Commit, StreamId};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use uuid::Uuid;

/// A small, fast, deterministic generator (xorshift64*), so runs are repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The shape of one account's data.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub account: String,
    pub users: usize,
    pub records: usize,
    pub followers: usize,
}

pub const ADMIN: &str = "admin";

/// One command of row 1's mix, by record and user number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    AddFollower { record: u64, user: u64 },
    RemoveFollower { record: u64, user: u64 },
    ChangeOwner { record: u64, user: u64 },
}

/// Command `n` of client `c`. The mix, in rounds of five: add a follower to a random record,
/// remove that follower again, the same on a second record, then change a third record's owner
/// (40 % add, 40 % remove, 20 % owner changes), all by the admin. Pairing each remove with an
/// add keeps records below the follower limit, so nearly every command appends a commit. The
/// same for our services and for the peer, so both decide the same commands.
pub fn mix_step(c: u64, n: u64, data: &Dataset) -> Step {
    let mut rng = Rng::new((c << 32) | (n / 5));
    let mut pick = || {
        let record = rng.below(data.records as u64);
        (record, rng.below(data.users as u64))
    };
    let [first, second, third] = [pick(), pick(), pick()];
    match n % 5 {
        0 => Step::AddFollower {
            record: first.0,
            user: first.1,
        },
        1 => Step::RemoveFollower {
            record: first.0,
            user: first.1,
        },
        2 => Step::AddFollower {
            record: second.0,
            user: second.1,
        },
        3 => Step::RemoveFollower {
            record: second.0,
            user: second.1,
        },
        _ => Step::ChangeOwner {
            record: third.0,
            user: third.1,
        },
    }
}

pub fn user(i: u64) -> String {
    format!("u-{i}")
}

pub fn contact(i: u64) -> String {
    format!("c-{i}")
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

pub fn meta() -> CommandMeta {
    let command_id = CommandId::new();
    CommandMeta {
        command_id,
        actor: Actor::User { user: id(ADMIN) },
        caller: None,
        correlation: command_id.0,
        causation: None,
        at: Utc::now(),
    }
}

impl Dataset {
    pub fn account_id(&self) -> AccountId {
        id(&self.account)
    }

    /// The account stream's one commit: opened, an admin, and `users` members with scope
    /// `only_assigned`, so that checks go through the owner and follower relations.
    pub fn account_commit(&self) -> (StreamId, Commit) {
        let meta = CommandMeta {
            actor: Actor::System,
            caller: None,
            ..meta()
        };
        let mut bodies = vec![
            EventBody::AccountOpened {
                account: self.account_id(),
                name: format!("Account {}", self.account),
                settings: AccountSettings::default(),
            },
            EventBody::MemberRegistered {
                user: id(ADMIN),
                name: "Admin".to_owned(),
                email: "admin@example.com".to_owned(),
                role: Role::Admin,
                data_scope: DataScope::All,
            },
        ];
        for u in 0..self.users as u64 {
            bodies.push(EventBody::MemberRegistered {
                user: id(&user(u)),
                name: format!("User {u}"),
                email: format!("u{u}@example.com"),
                role: Role::User,
                data_scope: DataScope::OnlyAssigned,
            });
        }
        let commit = Commit::sealed(meta.command_id, meta.events(bodies), None);
        (StreamId::account(self.account_id()), commit)
    }

    /// Record `i`'s owner and followers, by user number.
    pub fn record_people(&self, i: u64) -> (u64, Vec<u64>) {
        let users = self.users as u64;
        let owner = i % users;
        let followers = (1..=self.followers as u64)
            .map(|k| (owner + k * 7) % users)
            .collect();
        (owner, followers)
    }

    /// Record `i`: a contact owned by one user and followed by `followers` others, created by
    /// the admin in one commit (contact_created + followers_added), as `create_contact` does.
    pub fn record_commit(&self, i: u64) -> (StreamId, Commit) {
        let (owner, followers) = self.record_people(i);
        let record = RecordRef::Contact(id::<ContactId>(&contact(i)));
        let followers: Vec<AddedFollower> = followers
            .into_iter()
            .map(|f| AddedFollower {
                until: None,
                user: id::<UserId>(&user(f)),
                how: AddedHow::Manual,
            })
            .collect();
        let meta = meta();
        let mut bodies = vec![EventBody::ContactCreated {
            contact: id(&contact(i)),
            owner: Some(id(&user(owner))),
        }];
        if !followers.is_empty() {
            bodies.push(EventBody::FollowersAdded {
                record: record.clone(),
                followers,
            });
        }
        let commit = Commit::sealed(meta.command_id, meta.events(bodies), None);
        (StreamId::record(self.account_id(), record), commit)
    }

    /// Events in the account commit plus every record commit.
    pub fn events(&self) -> u64 {
        let per_record = 1 + u64::from(self.followers > 0);
        2 + self.users as u64 + per_record * self.records as u64
    }
}

/// The JetStream subject of a history stream (as `JetStreamStore::subject` writes it).
pub fn subject(prefix: &str, stream: &StreamId) -> String {
    let [a, k, i] = stream.tokens();
    format!("{prefix}.{a}.{k}.{i}")
}

/// Publishes the dataset with many publishes in flight, each with its command id as
/// `Nats-Msg-Id` like the store does. Returns the number of commits.
pub async fn publish(js: &jetstream::Context, prefix: &str, data: &Dataset) -> anyhow::Result<u64> {
    publish_on(js, data, |stream| subject(prefix, stream)).await
}

/// [`publish`] on the subjects `subject_of` gives each history stream.
pub async fn publish_on(
    js: &jetstream::Context,
    data: &Dataset,
    subject_of: impl Fn(&StreamId) -> String,
) -> anyhow::Result<u64> {
    const IN_FLIGHT: usize = 2048;
    let mut acks = FuturesUnordered::new();
    let total = data.records as u64 + 1;
    for i in 0..total {
        let (stream, commit) = if i == 0 {
            data.account_commit()
        } else {
            data.record_commit(i - 1)
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, commit.command_id.to_string().as_str());
        let ack = js
            .publish_with_headers(subject_of(&stream), headers, Bytes::from(commit.encode()))
            .await?;
        acks.push(ack.into_future());
        if i == 0 {
            // The account must come first in the history.
            acks.next().await.transpose()?;
        }
        while acks.len() >= IN_FLIGHT {
            acks.next().await.transpose()?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    Ok(total)
}

/// Encoded sizes of the commits the command mix appends: add one follower, remove one, change
/// the owner. Used to give the raw-publish floor the same payload size.
pub fn command_payload_sizes(account: &str) -> [usize; 3] {
    let record = RecordRef::Contact(id(&contact(1234)));
    let commit = |body: EventBody| {
        let meta = meta();
        Commit::sealed(meta.command_id, meta.events(vec![body]), None)
            .encode()
            .len()
    };
    let _ = account;
    [
        commit(EventBody::FollowersAdded {
            record: record.clone(),
            followers: vec![AddedFollower {
                until: None,
                user: id(&user(17)),
                how: AddedHow::Manual,
            }],
        }),
        commit(EventBody::FollowersRemoved {
            record: record.clone(),
            users: vec![id(&user(17))],
            owner_sync_from: None,
        }),
        commit(EventBody::OwnerChanged {
            record,
            from: Some(id(&user(3))),
            to: Some(id(&user(17))),
            coupled_with: None,
        }),
    ]
}

pub fn fresh_uuid() -> Uuid {
    Uuid::now_v7()
}
