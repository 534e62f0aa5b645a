//! Followers until a date (issue 17.4): an `until` per follower, changed by
//! `change_follower_until`, and the system's expiry, once, when it comes. Access is unchanged:
//! a follower is a follower until the `follower_expired` event removes them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use followers_shared::access::Action;
use followers_shared::command::{AddFollowers, ChangeFollowerUntil};
use followers_shared::decision::decide_command;
use followers_shared::error::ErrorCode;
use followers_shared::event::{AddedFollower, EventBody};
use followers_shared::expiry;
use followers_shared::model::{AddedHow, RecordRef};
use followers_shared::read_model::ReadModel;

use crate::support::*;

fn later(secs: i64) -> DateTime<Utc> {
    at() + Duration::seconds(secs)
}

fn add_until(record: &RecordRef, users: &[&str], until: &[(&str, DateTime<Utc>)]) -> AddFollowers {
    AddFollowers {
        record: Some(record.clone()),
        users: some_users(users),
        until: until
            .iter()
            .map(|(u, t)| (user(u), *t))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn change_until(record: &RecordRef, u: &str, until: Option<DateTime<Utc>>) -> ChangeFollowerUntil {
    ChangeFollowerUntil {
        record: record.clone(),
        user: user(u),
        until,
    }
}

/// A harness with `c1`, owned by nobody, and members `olga` (only assigned) and `ann` (admin).
fn with_contact() -> Harness {
    let mut h = Harness::new();
    h.assigned_only_user("olga");
    h.assigned_only_user("pia");
    h.create_contact("c1", None);
    h
}

#[test]
fn r17_4_a_follower_added_with_an_until_carries_it_and_is_scheduled() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.when(h.cmd(
        system(),
        add_until(&c1, &["olga", "pia"], &[("olga", later(60))]),
    ))
    .then_events(&[EventBody::FollowersAdded {
        record: c1.clone(),
        followers: vec![
            AddedFollower {
                user: user("olga"),
                how: AddedHow::System,
                until: Some(later(60)),
            },
            AddedFollower {
                user: user("pia"),
                how: AddedHow::System,
                until: None,
            },
        ],
    }]);
    assert_eq!(h.follower(&c1, "olga").unwrap().until, Some(later(60)));
    assert_eq!(h.follower(&c1, "pia").unwrap().until, None);
    // Written with schema 2, which a reader of schema 1 refuses rather than read without it (R22).
    assert_eq!(h.events().last().unwrap().v, 2);
    let model = h.replay();
    assert_eq!(expiry::next(&model), Some(later(60)));
    assert!(expiry::due(&model, later(59), 10).is_empty(), "not due yet");
    assert_eq!(expiry::due(&model, later(60), 10).len(), 1);
    // Access is unchanged while the follower follows (R19-R21).
    assert!(h.check("olga", Action::ManageFollowers, &c1).allowed);
}

#[test]
fn r17_4_an_until_not_in_the_future_is_refused_and_adds_nobody() {
    let mut h = with_contact();
    let c1 = contact("c1");
    for until in [at(), later(-1)] {
        h.when(h.cmd(
            system(),
            add_until(&c1, &["olga", "pia"], &[("olga", until)]),
        ))
        .then_error(ErrorCode::UntilPassed);
    }
    assert!(h.followers(&c1).is_empty(), "atomic");
}

#[test]
fn r17_4_an_until_for_a_user_the_add_does_not_name_is_malformed() {
    let mut h = with_contact();
    h.when(h.cmd(
        system(),
        add_until(&contact("c1"), &["olga"], &[("pia", later(5))]),
    ))
    .then_error(ErrorCode::MalformedRequest);
}

#[test]
fn r17_4_who_already_follows_keeps_their_until() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.given(h.cmd(system(), add_until(&c1, &["olga"], &[("olga", later(60))])));
    h.when(h.cmd(system(), add_until(&c1, &["olga"], &[("olga", later(90))])))
        .then_no_events();
    assert_eq!(h.follower(&c1, "olga").unwrap().until, Some(later(60)));
}

#[test]
fn r17_4_change_follower_until_sets_moves_and_clears() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    for until in [Some(later(10)), Some(later(20)), None] {
        h.when(h.cmd(system(), change_until(&c1, "olga", until)))
            .then_events(&[EventBody::FollowerUntilChanged {
                record: c1.clone(),
                user: user("olga"),
                until,
            }]);
        assert_eq!(h.follower(&c1, "olga").unwrap().until, until);
        assert_eq!(expiry::next(&h.replay()), until);
    }
    // The same again changes nothing.
    h.when(h.cmd(system(), change_until(&c1, "olga", None)))
        .then_no_events();
}

#[test]
fn r17_4_change_follower_until_is_refused_for_a_non_follower_a_past_time_or_without_access() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    h.when(h.cmd(system(), change_until(&c1, "pia", Some(later(5)))))
        .then_error(ErrorCode::NotFollower);
    h.when(h.cmd(system(), change_until(&c1, "olga", Some(at()))))
        .then_error(ErrorCode::UntilPassed);
    // R15: pia neither owns nor follows c1, and is only_assigned.
    h.when(h.cmd(by("pia"), change_until(&c1, "olga", Some(later(5)))))
        .then_error(ErrorCode::AccessDenied);
    // olga follows, so she may manage the followers, her own `until` included.
    h.when(h.cmd(by("olga"), change_until(&c1, "olga", Some(later(5)))))
        .then_events(&[EventBody::FollowerUntilChanged {
            record: c1.clone(),
            user: user("olga"),
            until: Some(later(5)),
        }]);
}

/// Decides the expiries due at `now` against the harness's model, storing what they append.
fn expire_due(h: &mut Harness, now: DateTime<Utc>) -> Vec<EventBody> {
    let model: ReadModel = h.replay();
    let mut out = Vec::new();
    for cmd in expiry::due(&model, now, 100) {
        let decided = h.when(cmd);
        out.extend(decided.events().iter().map(|e| e.body.clone()));
    }
    out
}

#[test]
fn r17_4_a_due_follower_expires_once_by_the_system() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.given(h.cmd(system(), add_until(&c1, &["olga"], &[("olga", later(60))])));
    assert!(expire_due(&mut h, later(59)).is_empty());
    let expired = EventBody::FollowerExpired {
        record: c1.clone(),
        user: user("olga"),
        until: later(60),
    };
    let model = h.replay();
    let cmd = expiry::due(&model, later(61), 10).remove(0);
    // Every instance derives the same command for the same expiry, whenever it looks.
    let again = expiry::due(&model, later(3600), 10).remove(0);
    assert_eq!(cmd.meta.command_id, again.meta.command_id);
    h.when(cmd.clone()).then_events(&[expired]);
    assert!(h.followers(&c1).is_empty());
    assert_eq!(h.events().last().unwrap().v, 2);
    assert_eq!(h.events().last().unwrap().meta.actor, system());
    // Sent again (a second instance, a restart): nothing more to do.
    h.when(cmd).then_no_events();
    assert!(
        expiry::next(&h.replay()).is_none(),
        "nothing left to schedule"
    );
}

#[test]
fn r17_4_an_expiry_overtaken_by_a_change_or_a_removal_does_nothing() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.given(h.cmd(
        system(),
        add_until(
            &c1,
            &["olga", "pia"],
            &[("olga", later(60)), ("pia", later(60))],
        ),
    ));
    let stale = expiry::due(&h.replay(), later(60), 10);
    assert_eq!(stale.len(), 2);
    h.given(h.cmd(system(), change_until(&c1, "olga", Some(later(120)))));
    h.given(h.cmd(system(), remove_followers(&c1, &["pia"])));
    for cmd in stale {
        h.when(cmd).then_no_events();
    }
    assert_eq!(h.follower(&c1, "olga").unwrap().until, Some(later(120)));
    assert_eq!(expire_due(&mut h, later(120)).len(), 1);
}

#[test]
fn r17_4_a_replay_and_a_snapshot_keep_every_until() {
    let mut h = with_contact();
    let c1 = contact("c1");
    h.given(h.cmd(
        system(),
        add_until(&c1, &["olga", "pia"], &[("olga", later(60))]),
    ));
    h.given(h.cmd(system(), change_until(&c1, "pia", Some(later(30)))));
    let model = h.replay();
    let restored = ReadModel::from_snapshot(model.to_snapshot());
    assert_eq!(restored.to_snapshot(), model.to_snapshot());
    assert_eq!(expiry::next(&restored), Some(later(30)));
    assert_eq!(
        expiry::due(&restored, later(60), 10),
        expiry::due(&model, later(60), 10)
    );
    let decided = decide_command(&restored, &expiry::due(&model, later(30), 10)[0]);
    assert_eq!(decided.unwrap().events.len(), 1);
}

#[test]
fn r17_4_an_until_set_again_to_the_same_time_is_another_expiry() {
    // A clock behind another instance's may accept an `until` that has already expired once;
    // the expiry's id derives from the event that set it, so the second is not taken for a
    // retry of the first.
    let mut h = with_contact();
    let c1 = contact("c1");
    h.given(h.cmd(system(), add_until(&c1, &["olga"], &[("olga", later(60))])));
    let first = expiry::due(&h.replay(), later(60), 10).remove(0);
    assert_eq!(
        first.meta.causation,
        Some(h.events().last().unwrap().meta.event_id)
    );
    h.when(first.clone())
        .then_events(&[EventBody::FollowerExpired {
            record: c1.clone(),
            user: user("olga"),
            until: later(60),
        }]);
    h.given(h.cmd(system(), add_until(&c1, &["olga"], &[("olga", later(60))])));
    let second = expiry::due(&h.replay(), later(60), 10).remove(0);
    assert_ne!(first.meta.command_id, second.meta.command_id);
    assert_eq!(expire_due(&mut h, later(60)).len(), 1);
    assert!(h.followers(&c1).is_empty());
}
