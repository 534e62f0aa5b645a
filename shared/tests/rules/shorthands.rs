//! Shorthands the rule tests share: the events they expect, access decisions, full records.

use followers_shared::access::{AccessDecision, Reason};
use followers_shared::error::DomainError;
use followers_shared::event::{AddedFollower, EventBody, SyncAction};
use followers_shared::model::{AddedHow, MAX_FOLLOWERS, RecordRef, SkipReason};

use crate::support::*;

pub fn owner_changed(record: &RecordRef, from: Option<&str>, to: Option<&str>) -> EventBody {
    EventBody::OwnerChanged {
        record: record.clone(),
        from: from.map(user),
        to: to.map(user),
        coupled_with: None,
    }
}

/// An owner change that mirrors `with` because owners are coupled (R7).
pub fn aligned(
    record: &RecordRef,
    from: Option<&str>,
    to: Option<&str>,
    with: &RecordRef,
) -> EventBody {
    EventBody::OwnerChanged {
        record: record.clone(),
        from: from.map(user),
        to: to.map(user),
        coupled_with: Some(with.clone()),
    }
}

pub fn added(record: &RecordRef, followers: &[&str], how: AddedHow) -> EventBody {
    EventBody::FollowersAdded {
        record: record.clone(),
        followers: followers
            .iter()
            .map(|u| AddedFollower {
                until: None,
                user: user(u),
                how: how.clone(),
            })
            .collect(),
    }
}

pub fn added_manually(record: &RecordRef, followers: &[&str]) -> EventBody {
    added(record, followers, AddedHow::Manual)
}

/// The owner sync added `who` to `record` because `from` changed its owner (R8, R9).
pub fn sync_added(record: &RecordRef, who: &str, from: &RecordRef) -> EventBody {
    added(record, &[who], AddedHow::OwnerSync { from: from.clone() })
}

pub fn removed(record: &RecordRef, followers: &[&str]) -> EventBody {
    EventBody::FollowersRemoved {
        record: record.clone(),
        users: users(followers),
        owner_sync_from: None,
    }
}

pub fn sync_removed(record: &RecordRef, who: &str, from: &RecordRef) -> EventBody {
    EventBody::FollowersRemoved {
        record: record.clone(),
        users: vec![user(who)],
        owner_sync_from: Some(from.clone()),
    }
}

pub fn skipped(
    record: &RecordRef,
    who: &str,
    action: SyncAction,
    reason: SkipReason,
    trigger: &RecordRef,
) -> EventBody {
    EventBody::FollowerSyncSkipped {
        record: record.clone(),
        user: user(who),
        action,
        reason,
        trigger: trigger.clone(),
    }
}

pub fn allowed(reason: Reason) -> AccessDecision {
    AccessDecision {
        allowed: true,
        reason,
    }
}

pub fn denied(reason: Reason) -> AccessDecision {
    AccessDecision {
        allowed: false,
        reason,
    }
}

pub fn ten_users() -> Vec<String> {
    (0..10).map(|i| format!("f{i}")).collect()
}

/// `acme` with ten `only_assigned` members `f0`..`f9` who all follow `record`.
pub fn full(h: &mut Harness, record: &RecordRef) {
    let ten = ten_users();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    h.assigned_only_users(&ten);
    h.follow(record, &ten);
    assert_eq!(h.followers(record).len(), MAX_FOLLOWERS);
}

pub fn access_denied_reason(e: &DomainError) -> Reason {
    match e {
        DomainError::AccessDenied { reason, .. } => *reason,
        other => panic!("expected access_denied, got {other:?}"),
    }
}

/// `acme` with coupled owners: c1 (owner bob) with o1 and o2, c2 (owner bob) with o3.
pub fn coupled_account() -> Harness {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.all_data_user("carl");
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", None);
    h.create_opportunity("o2", "c1", None);
    h.create_contact("c2", Some("bob"));
    h.create_opportunity("o3", "c2", None);
    assert!(h.settle().is_empty());
    h
}

/// Decoupled, R8 on: c1 owned by carl; bob, dora, eve, fay are members.
pub fn r8_account() -> Harness {
    let mut h = Harness::with_settings(decoupled(true, false));
    for u in ["bob", "carl", "dora", "eve", "fay"] {
        h.all_data_user(u);
    }
    h.create_contact("c1", Some("carl"));
    h
}
