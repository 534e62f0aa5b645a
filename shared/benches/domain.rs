//! In-process costs of the domain, with criterion: the access decision (the rule alone, and as a
//! query computes it from the read model), a decider step, applying a commit, and a page of
//! `who_can_access` on a large account.
//!
//! `cargo bench -p followers-shared --bench domain`; `followers-bench` runs it as row 7.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use chrono::Utc;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use followers_shared::access::{self, Action, FollowerList, Holders, RecordAccess};
use followers_shared::bounded::SomeUsers;
use followers_shared::command::{AddFollowers, Command, CommandMeta};
use followers_shared::decision;
use followers_shared::event::{AddedFollower, EventBody};
use followers_shared::ids::{AccountId, CommandId, UserId};
use followers_shared::model::{
    AccountSettings, Actor, AddedHow, DataScope, Follower, Membership, RecordRef, Role,
};
use followers_shared::read_model::ReadModel;
use followers_shared::store::{Commit, Position, StoredCommit, StreamId, Version};

const USERS: u64 = 200;
const RECORDS: u64 = 10_000;

fn user(i: u64) -> UserId {
    UserId::new(format!("u-{i}")).unwrap()
}

fn contact(i: u64) -> RecordRef {
    RecordRef::Contact(format!("c-{i}").parse().unwrap())
}

fn meta(actor: Actor) -> CommandMeta {
    let command_id = CommandId::new();
    CommandMeta {
        command_id,
        actor,
        caller: None,
        correlation: command_id.0,
        causation: None,
        at: Utc::now(),
    }
}

fn admin() -> Actor {
    Actor::User {
        user: UserId::new("admin").unwrap(),
    }
}

/// An account of 200 members with scope `only_assigned` and 10,000 contacts with an owner and
/// three followers each: the data of the end-to-end rows.
fn model() -> (ReadModel, AccountId) {
    model_of(USERS, RECORDS, |_| (Role::User, DataScope::OnlyAssigned))
}

/// An account of `users` members, member `u` with the role and scope `access(u)`, plus an admin,
/// and `records` contacts with an owner and three followers each.
fn model_of(
    users: u64,
    records: u64,
    access: impl Fn(u64) -> (Role, DataScope),
) -> (ReadModel, AccountId) {
    let account = AccountId::new("acme").unwrap();
    let mut model = ReadModel::new();
    let mut position = 0;
    let mut store = |model: &mut ReadModel, stream: StreamId, meta: CommandMeta, bodies| {
        position += 1;
        model.apply(&StoredCommit {
            stream,
            version: Version(position),
            position: Position(position),
            commit: Commit::sealed(meta.command_id, meta.events(bodies), None),
            trace: None,
        });
    };
    let mut bodies = vec![
        EventBody::AccountOpened {
            account: account.clone(),
            name: "Acme".into(),
            settings: AccountSettings::default(),
        },
        EventBody::MemberRegistered {
            user: UserId::new("admin").unwrap(),
            name: "Admin".into(),
            email: "admin@example.com".into(),
            role: Role::Admin,
            data_scope: DataScope::All,
        },
    ];
    for u in 0..users {
        let (role, data_scope) = access(u);
        bodies.push(EventBody::MemberRegistered {
            user: user(u),
            name: format!("User {u}"),
            email: format!("u{u}@example.com"),
            role,
            data_scope,
        });
    }
    store(
        &mut model,
        StreamId::account(account.clone()),
        meta(Actor::System),
        bodies,
    );
    for i in 0..records {
        let owner = i % users;
        let record = contact(i);
        let RecordRef::Contact(id) = record.clone() else {
            unreachable!()
        };
        store(
            &mut model,
            StreamId::record(account.clone(), record.clone()),
            meta(admin()),
            vec![
                EventBody::ContactCreated {
                    contact: id,
                    owner: Some(user(owner)),
                },
                EventBody::FollowersAdded {
                    record,
                    followers: (1..=3)
                        .map(|k| AddedFollower {
                            until: None,
                            user: user((owner + k * 7) % users),
                            how: AddedHow::Manual,
                        })
                        .collect(),
                },
            ],
        );
    }
    (model, account)
}

fn benches(c: &mut Criterion) {
    let (model, account) = model();

    // The rule alone: a follower (the third of three) with scope only_assigned, viewing.
    let u = user(5);
    let owner = user(1);
    let followers: Vec<Follower> = [user(3), user(4), user(5)]
        .into_iter()
        .map(|user| Follower {
            until: None,
            until_set_by: None,
            user,
            added_at: Utc::now(),
            added_by: admin().into(),
            how: AddedHow::Manual.into(),
        })
        .collect();
    let membership = Membership {
        name: "User 5".into(),
        email: "u5@example.com".into(),
        role: Role::User,
        data_scope: DataScope::OnlyAssigned,
        active: true,
    };
    let settings = AccountSettings::default();
    let access = RecordAccess {
        record: Holders {
            owner: Some(&owner),
            followers: FollowerList::Listed(&followers),
        },
        contact: None,
    };
    c.bench_function("access_rule_only", |b| {
        b.iter(|| {
            access::decide_access(
                black_box(&u),
                black_box(Some(&membership)),
                black_box(&settings),
                black_box(Some(&access)),
                black_box(Action::View),
            )
        })
    });

    // As a query computes it: account, membership and record lookups, then the rule; random
    // users and records (mostly denied after checking owner and followers, the longest path).
    let checks: Vec<(UserId, RecordRef)> = (0..4096u64)
        .map(|i| {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (user(x % USERS), contact((x >> 20) % RECORDS))
        })
        .collect();
    let mut i = 0;
    c.bench_function("access_check_in_model", |b| {
        b.iter(|| {
            let (u, r) = &checks[i % checks.len()];
            i += 1;
            model.check(
                black_box(&account),
                black_box(u),
                Action::View,
                black_box(r),
            )
        })
    });

    // A decider step: add one follower to a record, decided against the model.
    let cmds: Vec<Command> = (0..4096u64)
        .map(|i| Command {
            account: account.clone(),
            meta: meta(admin()),
            body: AddFollowers {
                until: Default::default(),
                record: Some(contact((i * 37) % RECORDS)),
                users: SomeUsers::new(vec![user((i * 13 + 100) % USERS)])
                    .expect("one user is within bounds"),
            }
            .into(),
            dry_run: false,
        })
        .collect();
    let mut i = 0;
    c.bench_function("decider_step_add_follower", |b| {
        b.iter(|| {
            let cmd = &cmds[i % cmds.len()];
            i += 1;
            decision::decide_command(black_box(&model), black_box(cmd))
        })
    });

    // Applying one commit to the model, as replay does: followers_added, then followers_removed
    // for the same user and record, alternately, so records keep their size.
    let mut applied = model.clone();
    let mut position = applied.position().0;
    let mut n = 0u64;
    c.bench_function("evolve_step_add_follower", |b| {
        b.iter_batched(
            || {
                n += 1;
                position += 1;
                let k = n / 2;
                let record = contact((k * 37) % RECORDS);
                let u = user((k * 13 + 100) % USERS);
                let body = if n.is_multiple_of(2) {
                    EventBody::FollowersAdded {
                        record: record.clone(),
                        followers: vec![AddedFollower {
                            until: None,
                            user: u,
                            how: AddedHow::Manual,
                        }],
                    }
                } else {
                    EventBody::FollowersRemoved {
                        record: record.clone(),
                        users: vec![u],
                        owner_sync_from: None,
                    }
                };
                let meta = meta(admin());
                StoredCommit {
                    stream: StreamId::record(account.clone(), record),
                    version: Version(position),
                    position: Position(position),
                    commit: Commit::sealed(meta.command_id, meta.events(vec![body]), None),
                    trace: None,
                }
            },
            |commit| applied.apply(black_box(&commit)),
            BatchSize::SmallInput,
        )
    });
}

/// One page (100) of `who_can_access` for `edit` on a random contact of an account with 1,000
/// members (10 admins, 90 with scope `all`, the rest `only_assigned`) and 100,000 contacts: the
/// figure issue 17 asks for.
fn who_can_access(c: &mut Criterion) {
    let (model, account) = model_of(1_000, 100_000, |u| match u {
        0..10 => (Role::Admin, DataScope::All),
        10..100 => (Role::User, DataScope::All),
        _ => (Role::User, DataScope::OnlyAssigned),
    });
    let records: Vec<RecordRef> = (0..4096u64)
        .map(|i| contact(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100_000))
        .collect();
    let mut i = 0;
    c.bench_function("who_can_access_page_1000_members_100000_records", |b| {
        b.iter(|| {
            let record = &records[i % records.len()];
            i += 1;
            let page = model.grantees(black_box(&account), record, Action::Edit, None, 100);
            black_box(page.map(|p| p.len()))
        })
    });
}

criterion_group!(domain, benches, who_can_access);
criterion_main!(domain);
