//! Properties that hold whatever is asked: random sequences of commands (followers added and
//! removed, owners changed, members deactivated and reactivated, settings toggled, opportunities
//! created) against a small fixed account, each followed by the follower sync running to rest.
//!
//! - R11, R12: no record ever has more than 10 followers, nor the same follower twice.
//! - R1, R3: owners and followers are members of the account; nobody inactive is newly added.
//! - R7: while owners are coupled, every opportunity has its contact's owner once the sync rests.
//! - R23: replaying the stored commits into a fresh model gives a model equal to the live one.
//! - R22, R23: every event and every commit survives a JSON round trip unchanged.
//! - R19-R21: who may do an action to a record (`grantees`, paged) is exactly who
//!   `check_access` allows, with the same reasons; and so is what a user may do it to
//!   (`reachable`, paged).
//! - R23: a model rebuilt from its snapshot file equals the model, chain values kept or dropped.
//! - 17.4: followers added with an `until`, `until`s changed, and the expiries due at random
//!   times decided as the scheduler sends them: all of the above still hold, and the model's
//!   index of `until`s (part of the model) is rebuilt the same by a replay and a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeSet, HashSet};

use followers_shared::access::{Action, Reason};
use followers_shared::command::{ChangeFollowerUntil, ChangeMemberDataScope, ChangeMemberRole};
use followers_shared::event::{Event, EventBody};
use followers_shared::expiry;
use followers_shared::ids::UserId;
use followers_shared::model::{Actor, DataScope, MAX_FOLLOWERS, RecordRef, Role, SettingsChange};
use followers_shared::read_model::{Chains, ReadModel};
use followers_shared::snapshot;
use followers_shared::store::{Commit, StoredCommit};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::*;

/// Members `u0`..`u11`; index `POOL` names `x`, who is no member.
const POOL: usize = 12;
const CONTACTS: [&str; 2] = ["c0", "c1"];
/// `o0`, `o1` (of `c0`) and `o2` (of `c1`) exist from the start; `o3`, `o4` may be created.
const OPPORTUNITIES: [&str; 5] = ["o0", "o1", "o2", "o3", "o4"];

fn name(u: usize) -> String {
    if u < POOL {
        format!("u{u}")
    } else {
        "x".to_owned()
    }
}

fn names(us: &[usize]) -> Vec<String> {
    us.iter().map(|u| name(*u)).collect()
}

fn record(i: usize) -> RecordRef {
    if i < CONTACTS.len() {
        contact(CONTACTS[i])
    } else {
        opportunity(OPPORTUNITIES[i - CONTACTS.len()])
    }
}

#[derive(Debug, Clone)]
enum Who {
    System,
    Workflow,
    User(usize),
}

impl Who {
    fn actor(&self) -> Actor {
        match self {
            Who::System => system(),
            Who::Workflow => workflow("wf"),
            Who::User(u) => by(&name(*u)),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add {
        who: Who,
        record: usize,
        users: Vec<usize>,
        /// 17.4: seconds from the harness's time, for the first user.
        until: Option<i64>,
    },
    /// 17.4: `change_follower_until`, seconds from the harness's time or cleared.
    Until {
        who: Who,
        record: usize,
        user: usize,
        until: Option<i64>,
    },
    /// 17.4: the expiries due this many seconds after the harness's time, sent.
    Expire(i64),
    Remove {
        who: Who,
        record: usize,
        users: Vec<usize>,
    },
    ChangeOwner {
        who: Who,
        record: usize,
        owner: Option<usize>,
    },
    CreateOpportunity {
        who: Who,
        id: usize,
        contact: usize,
        owner: Option<usize>,
        followers: Vec<usize>,
    },
    Deactivate(usize),
    Reactivate(usize),
    Role(usize, Role),
    Scope(usize, DataScope),
    Settings(SettingsChange),
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        3 => Just(Who::System),
        1 => Just(Who::Workflow),
        3 => member().prop_map(Who::User),
    ]
}

/// Mostly members, sometimes the outsider `x`.
fn member() -> impl Strategy<Value = usize> {
    prop_oneof![12 => 0..POOL, 1 => Just(POOL)]
}

fn some_users() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(member(), 1..6)
}

/// Mostly the records that exist from the start.
fn a_record() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0..5usize, 1 => 5..CONTACTS.len() + OPPORTUNITIES.len()]
}

/// The account's settings when it opens: coupled (the default), or decoupled with random syncs.
fn opening_settings() -> impl Strategy<Value = SettingsChange> {
    prop_oneof![
        Just(SettingsChange::default()),
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| decoupled(a, b)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (who(), a_record(), some_users(), prop::option::weighted(0.3, -5..60i64))
            .prop_map(|(who, record, users, until)| Op::Add { who, record, users, until }),
        1 => (who(), a_record(), member(), prop::option::weighted(0.8, -5..60i64))
            .prop_map(|(who, record, user, until)| Op::Until { who, record, user, until }),
        1 => (0..70i64).prop_map(Op::Expire),
        1 => (who(), a_record(), some_users())
            .prop_map(|(who, record, users)| Op::Remove { who, record, users }),
        3 => (who(), a_record(), prop::option::weighted(0.9, member()))
            .prop_map(|(who, record, owner)| Op::ChangeOwner { who, record, owner }),
        1 => (
            who(),
            3..OPPORTUNITIES.len(),
            0..CONTACTS.len(),
            prop::option::of(member()),
            prop::collection::vec(member(), 0..4),
        )
            .prop_map(|(who, id, contact, owner, followers)| Op::CreateOpportunity {
                who,
                id,
                contact,
                owner,
                followers,
            }),
        1 => (0..POOL).prop_map(Op::Deactivate),
        1 => (0..POOL).prop_map(Op::Reactivate),
        1 => (0..POOL, prop_oneof![Just(Role::Admin), Just(Role::User)])
            .prop_map(|(u, role)| Op::Role(u, role)),
        1 => (0..POOL, prop_oneof![Just(DataScope::All), Just(DataScope::OnlyAssigned)])
            .prop_map(|(u, scope)| Op::Scope(u, scope)),
        1 => (
            prop::option::of(prop::bool::weighted(0.7)),
            prop::option::of(prop::bool::weighted(0.7)),
            prop::option::of(prop::bool::weighted(0.7)),
            prop::option::weighted(0.2, any::<bool>()),
        )
            .prop_map(|(a, b, c, d)| Op::Settings(SettingsChange {
                allow_different_owners: a,
                sync_contact_follower_with_opportunity_owner: b,
                sync_opportunity_follower_with_contact_owner: c,
                contact_access_includes_opportunities: d,
            })),
    ]
}

/// The fixed account, opened with `settings`: `u0` admin, `u1`..`u3` scope all, `u4`..`u11` only assigned; `c0` owned
/// by `u1` with `o0` (7 followers) and `o1`; `c1` owned by `u4` (8 followers) with `o2`.
fn fixture(settings: SettingsChange) -> Harness {
    let mut h = Harness::with_settings(settings);
    h.admin("u0");
    for u in 1..4 {
        h.all_data_user(&name(u));
    }
    for u in 4..POOL {
        h.assigned_only_user(&name(u));
    }
    h.create_contact("c0", Some("u1"));
    h.create_contact("c1", Some("u4"));
    h.create_opportunity("o0", "c0", None);
    h.create_opportunity("o1", "c0", None);
    h.create_opportunity("o2", "c1", None);
    // Nearly full records, so that the limit is reached often.
    h.follow(
        &contact("c1"),
        &["u2", "u5", "u6", "u7", "u8", "u9", "u10", "u11"],
    );
    h.follow(
        &opportunity("o0"),
        &["u3", "u4", "u5", "u6", "u7", "u8", "u9"],
    );
    h.settle();
    h
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn later(secs: i64) -> chrono::DateTime<chrono::Utc> {
    at() + chrono::Duration::seconds(secs)
}

/// The commands of `op`: one, or for an expiry, every one due.
fn commands(h: &Harness, op: &Op) -> Vec<followers_shared::command::Command> {
    match op {
        Op::Expire(secs) => expiry::due(&h.model, later(*secs), 100),
        op => vec![command(h, op)],
    }
}

fn command(h: &Harness, op: &Op) -> followers_shared::command::Command {
    match op {
        Op::Add {
            who,
            record: r,
            users,
            until,
        } => {
            let mut add = add_followers(&record(*r), &strs(&names(users)));
            if let Some(secs) = until {
                add.until.insert(user(&name(users[0])), later(*secs));
            }
            h.cmd(who.actor(), add)
        }
        Op::Until {
            who,
            record: r,
            user: u,
            until,
        } => h.cmd(
            who.actor(),
            ChangeFollowerUntil {
                record: record(*r),
                user: user(&name(*u)),
                until: until.map(later),
            },
        ),
        Op::Expire(_) => unreachable!("an expiry is its due commands"),
        Op::Remove {
            who,
            record: r,
            users,
        } => h.cmd(
            who.actor(),
            remove_followers(&record(*r), &strs(&names(users))),
        ),
        Op::ChangeOwner {
            who,
            record: r,
            owner,
        } => {
            let owner = owner.map(name);
            h.cmd(who.actor(), change_owner(&record(*r), owner.as_deref()))
        }
        Op::CreateOpportunity {
            who,
            id,
            contact,
            owner,
            followers,
        } => {
            let owner = owner.map(name);
            h.cmd(
                who.actor(),
                create_opportunity(
                    OPPORTUNITIES[*id],
                    CONTACTS[*contact],
                    owner.as_deref(),
                    &strs(&names(followers)),
                ),
            )
        }
        Op::Deactivate(u) => h.cmd(
            system(),
            DeactivateMember {
                user: user(&name(*u)),
            },
        ),
        Op::Reactivate(u) => h.cmd(
            system(),
            ReactivateMember {
                user: user(&name(*u)),
            },
        ),
        Op::Role(u, role) => h.cmd(
            system(),
            ChangeMemberRole {
                user: user(&name(*u)),
                role: *role,
            },
        ),
        Op::Scope(u, data_scope) => h.cmd(
            system(),
            ChangeMemberDataScope {
                user: user(&name(*u)),
                data_scope: *data_scope,
            },
        ),
        Op::Settings(change) => h.cmd(system(), ChangeSettings { change: *change }),
    }
}

/// R1, R3, R7, R11, R12 on the live model, and R3 on the events just appended.
fn check_invariants(h: &Harness, new_events: &[&Event]) -> Result<(), TestCaseError> {
    let entry = h.model.account(&h.account).unwrap();
    for (r, rec) in &entry.records {
        let rec = rec.to_entry();
        let followers = &rec.state.followers;
        prop_assert!(
            followers.len() <= MAX_FOLLOWERS,
            "{r:?} has {} followers",
            followers.len()
        );
        let distinct: HashSet<_> = followers.iter().map(|f| &f.user).collect();
        prop_assert_eq!(
            distinct.len(),
            followers.len(),
            "{:?} lists a follower twice",
            r
        );
        for f in followers {
            prop_assert!(
                entry.state.member(&f.user).is_some(),
                "{:?} follows {:?}",
                f.user,
                r
            );
        }
        if let Some(o) = &rec.state.owner {
            prop_assert!(entry.state.member(o).is_some(), "{:?} owns {:?}", o, r);
        }
    }
    // The index of who holds what agrees with the records (R18, R23: who owned and followed).
    let mut held: std::collections::HashMap<UserId, BTreeSet<RecordRef>> = Default::default();
    for (r, rec) in &entry.records {
        let holders = rec.followers().map(|f| f.user);
        for u in holders.chain(rec.owner().cloned()) {
            held.entry(u).or_default().insert(r.clone());
        }
    }
    let queries = h.replay_for_queries();
    let index: Vec<_> = queries
        .account(&h.account)
        .unwrap()
        .holders_index()
        .collect();
    prop_assert_eq!(held.len(), index.len());
    for (u, records) in index {
        // In record order, each once.
        let records: Vec<RecordRef> = records.cloned().collect();
        let expected: Option<Vec<RecordRef>> = held.get(u).map(|s| s.iter().cloned().collect());
        prop_assert_eq!(Some(records), expected, "index of {:?}", u);
    }
    // R3: nobody is newly added while inactive. No step both deactivates and adds, so whoever a
    // step added must be active after it.
    for e in new_events {
        if let EventBody::FollowersAdded { followers, .. } = &e.body {
            for f in followers {
                let active = entry.state.member(&f.user).is_some_and(|m| m.active);
                prop_assert!(active, "inactive {:?} was added", f.user);
            }
        }
    }
    // R7: coupled owners, once the sync has come to rest.
    if entry.state.settings.owners_coupled() && h.pending().is_empty() {
        for (r, rec) in &entry.records {
            if let (RecordRef::Opportunity(_), Some(c)) = (r, rec.contact()) {
                let contact = entry.records.get(&RecordRef::Contact(c.clone())).unwrap();
                prop_assert_eq!(
                    rec.owner(),
                    contact.owner(),
                    "coupled {:?} and its contact have different owners",
                    r
                );
            }
        }
    }
    Ok(())
}

/// R19-R21: paging through who may do each action to each record, three at a time, finds
/// exactly the users `check_access` allows, in user order, with its reasons.
fn grantees_agree_with_checks(h: &Harness) -> Result<(), TestCaseError> {
    // The queries are the projection's; the checks the command service's model.
    let queries = h.replay_for_queries();
    let everyone: BTreeSet<UserId> = (0..=POOL).map(|u| user(&name(u))).collect();
    for r in (0..CONTACTS.len() + OPPORTUNITIES.len()).map(record) {
        for action in Action::ALL {
            let expected: Vec<(UserId, Reason)> = everyone
                .iter()
                .filter_map(|u| {
                    let d = h.model.check(&h.account, u, action, &r);
                    d.allowed.then(|| (u.clone(), d.reason))
                })
                .collect();
            let mut found = Vec::new();
            let mut after: Option<UserId> = None;
            loop {
                let Some(page) = queries.grantees(&h.account, &r, action, after.as_ref(), 3) else {
                    let exists = h
                        .model
                        .record(&h.account, &r)
                        .is_some_and(|e| e.state.created);
                    prop_assert!(!exists, "{:?} exists but has no grantees answer", r);
                    break;
                };
                found.extend(page.iter().map(|g| (g.user.clone(), g.reason)));
                if page.len() < 3 {
                    break;
                }
                after = page.last().map(|g| g.user.clone());
            }
            if h.model
                .record(&h.account, &r)
                .is_some_and(|e| e.state.created)
            {
                prop_assert_eq!(&found, &expected, "{:?} {:?}", r, action);
            }
        }
    }
    Ok(())
}

/// R19-R21: what each user may do each action to, paged three at a time, is exactly what
/// `check_access` allows: every record when the answer says so, else the records listed (and,
/// for `change_owner` with scope `all`, the unassigned ones).
fn reachable_agrees_with_checks(h: &Harness) -> Result<(), TestCaseError> {
    let queries = h.replay_for_queries();
    let records: Vec<RecordRef> = (0..CONTACTS.len() + OPPORTUNITIES.len())
        .map(record)
        .filter(|r| {
            h.model
                .record(&h.account, r)
                .is_some_and(|e| e.state.created)
        })
        .collect();
    for u in (0..=POOL).map(|u| user(&name(u))) {
        for action in Action::ALL {
            let mut listed = Vec::new();
            let mut after: Option<RecordRef> = None;
            let (every, unassigned) = loop {
                let page = queries
                    .reachable(&h.account, &u, action, after.as_ref(), 3)
                    .unwrap();
                listed.extend(page.records.iter().map(|(r, why)| ((*r).clone(), *why)));
                if page.records.len() < 3 {
                    break (page.every_record, page.unassigned_records);
                }
                after = page.records.last().map(|(r, _)| (*r).clone());
            };
            for r in &records {
                let d = h.model.check(&h.account, &u, action, r);
                let unowned = h.model.record(&h.account, r).unwrap().state.owner.is_none();
                let expected = match (every, unassigned) {
                    (Some(why), _) => Some(why),
                    (None, Some(why)) if unowned => Some(why),
                    _ => listed.iter().find(|(x, _)| x == r).map(|(_, why)| *why),
                };
                prop_assert_eq!(
                    expected,
                    d.allowed.then_some(d.reason),
                    "{:?} {:?} {:?}",
                    u,
                    action,
                    r
                );
            }
        }
    }
    Ok(())
}

fn json_round_trip(log: &[StoredCommit]) -> Result<(), TestCaseError> {
    for stored in log {
        let text = serde_json::to_string(stored).unwrap();
        let back: StoredCommit = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, stored);
        let decoded = Commit::decode(&stored.commit.encode()).unwrap();
        prop_assert_eq!(&decoded, &stored.commit);
        for event in &stored.commit.events {
            let text = serde_json::to_string(event).unwrap();
            let back: Event = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, event, "{}", text);
        }
    }
    Ok(())
}

/// Through the file and back: the same snapshot, and the same model as replaying into one that
/// keeps or drops the chain values as the snapshot's did (commands are not in a snapshot).
fn snapshot_round_trip(log: &[StoredCommit]) -> Result<(), TestCaseError> {
    for chains in [Chains::Kept, Chains::Dropped] {
        let mut model = ReadModel::with_chains(chains);
        for stored in log {
            model.apply(stored);
        }
        let taken = model.to_snapshot();
        let back = snapshot::decode(&snapshot::encode(&taken).unwrap()).unwrap();
        prop_assert_eq!(&back, &taken);
        prop_assert_eq!(ReadModel::from_snapshot(back), model);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_keep_the_rules_replay_and_round_trip(
        settings in opening_settings(),
        steps in prop::collection::vec((op(), prop::bool::weighted(0.7)), 1..50),
    ) {
        let mut h = fixture(settings);
        for (op, settle) in &steps {
            let before = h.log.len();
            for cmd in commands(&h, op) {
                let _ = h.when(cmd);
            }
            // Sometimes the next command comes before the sync has reacted.
            if *settle {
                h.settle();
            }
            let new_events: Vec<&Event> = h.log[before..]
                .iter()
                .flat_map(|c| c.commit.events.iter())
                .collect();
            check_invariants(&h, &new_events)?;
        }
        h.settle();
        check_invariants(&h, &[])?;
        // (b) R23: the history rebuilds the live model exactly.
        prop_assert_eq!(h.replay(), h.model.clone());
        // (c) every commit and event survives JSON.
        json_round_trip(&h.log)?;
        // (d) the reverse of the access rule agrees with it.
        grantees_agree_with_checks(&h)?;
        reachable_agrees_with_checks(&h)?;
        // (e) the model survives its snapshot file.
        snapshot_round_trip(&h.log)?;
    }

    /// Rejected commands append nothing (R24), whatever they are.
    #[test]
    fn a_rejected_command_appends_nothing(
        settings in opening_settings(),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let mut h = fixture(settings);
        for op in &ops {
            for cmd in commands(&h, op) {
                let (model, log) = (h.model.clone(), h.log.len());
                if h.when(cmd).result.is_err() {
                    prop_assert_eq!(&h.model, &model);
                    prop_assert_eq!(h.log.len(), log);
                    prop_assert!(h.pending().is_empty());
                }
            }
            h.settle();
        }
    }
}
