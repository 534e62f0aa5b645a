//! History (R22-R23): what events carry, and replay.

use followers_shared::access::{Action, Reason};
use followers_shared::event::EVENT_SCHEMA;
use followers_shared::ids::EventId;
use followers_shared::model::{Actor, Role, SettingsChange};
use followers_shared::read_model::ReadModel;
use followers_shared::store::{Commit, Position, StoredCommit};

use crate::shorthands::{allowed, coupled_account, denied, r8_account};
use crate::support::*;

// ===== R22: history =====

#[test]
fn r22_events_carry_command_id_actor_time_and_correlation() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_users(&["olga"]);
    let cmd = h.cmd(by("bob"), create_contact("c1", Some("bob"), &["olga"]));
    let events = h.given(cmd.clone());
    assert_eq!(events.len(), 2);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.v, 1, "version 1 reads these in full");
        assert!(e.v <= EVENT_SCHEMA);
        assert_eq!(e.meta.command_id, cmd.meta.command_id);
        assert_eq!(e.meta.event_id, EventId::derive(cmd.meta.command_id, i));
        assert_eq!(e.meta.actor, by("bob"));
        assert_eq!(e.meta.at, at());
        assert_eq!(e.meta.correlation, cmd.meta.correlation);
        assert_eq!(e.meta.causation, None);
    }
    let stored = h.log.last().unwrap();
    assert_eq!(stored.commit.command_id, cmd.meta.command_id);
    assert_eq!(stored.commit.events, events);
}

#[test]
fn r22_sync_events_name_the_event_that_triggered_them() {
    let mut h = coupled_account();
    let cmd = h.cmd(
        workflow("wf-1"),
        change_owner(&opportunity("o1"), Some("carl")),
    );
    let trigger = h.given(cmd.clone()).remove(0);
    let synced = h.settle();
    assert_eq!(synced.len(), 2);
    let (contact_change, sibling_change) = (&synced[0], &synced[1]);
    for e in &synced {
        assert_eq!(e.meta.actor, Actor::System);
        assert_eq!(
            e.meta.correlation, cmd.meta.correlation,
            "same outside request"
        );
        assert_ne!(e.meta.command_id, cmd.meta.command_id);
    }
    assert_eq!(contact_change.meta.causation, Some(trigger.meta.event_id));
    assert_eq!(
        sibling_change.meta.causation,
        Some(contact_change.meta.event_id),
        "the sibling follows from the contact's change"
    );

    // R8: the follower sync's events, too.
    let mut h = r8_account();
    let trigger = h
        .given(h.cmd(system(), create_opportunity("o1", "c1", Some("bob"), &[])))
        .remove(0);
    let synced = h.settle();
    assert_eq!(synced.len(), 1);
    assert_eq!(synced[0].meta.causation, Some(trigger.meta.event_id));
    assert_eq!(synced[0].meta.actor, Actor::System);
}

#[test]
fn r22_later_commands_never_rewrite_earlier_events() {
    let mut h = coupled_account();
    let before: Vec<StoredCommit> = h.log.clone();
    h.set_owner(&contact("c1"), Some("carl"));
    h.settle();
    h.deactivate("bob");
    assert_eq!(&h.log[..before.len()], &before[..]);
}

// ===== R23: replay =====

/// A history that touches every kind of event.
fn busy_history() -> Harness {
    let mut h = Harness::with_settings(decoupled(true, true));
    h.admin("ada");
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", Some("olga"));
    h.create_opportunity("o2", "c1", None);
    h.settle();
    h.given(h.cmd(by("ada"), add_followers(&contact("c1"), &["otto"])));
    h.given(h.cmd(workflow("wf"), add_followers(&opportunity("o2"), &["oona"])));
    h.set_owner(&contact("c1"), Some("otto"));
    h.settle();
    h.set_owner(&opportunity("o1"), Some("oona"));
    h.settle();
    h.deactivate("olga");
    h.given(h.cmd(system(), remove_followers(&contact("c1"), &["otto"])));
    h.change_settings(SettingsChange {
        allow_different_owners: Some(false),
        ..SettingsChange::default()
    });
    h.settle();
    h.reactivate("olga");
    h.given(h.cmd(
        system(),
        ChangeMemberRole {
            user: user("bob"),
            role: Role::Admin,
        },
    ));
    h
}

#[test]
fn r23_replaying_the_commits_rebuilds_an_equal_read_model() {
    let h = busy_history();
    assert!(h.log.len() > 20);
    let replayed = h.replay();
    assert_eq!(replayed, h.model);
    // Also through the stored bytes.
    let mut decoded = ReadModel::tracking_commands();
    for c in &h.log {
        let commit = Commit::decode(&c.commit.encode()).unwrap();
        decoded.apply(&StoredCommit {
            commit,
            ..c.clone()
        });
    }
    assert_eq!(decoded, h.model);
}

#[test]
fn r23_any_past_moment_can_be_reconstructed() {
    let mut h = Harness::with_settings(decoupled(true, false));
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", Some("olga"));
    h.settle();
    let then: Position = h.position();
    let snapshot = h.model.clone();
    h.set_owner(&opportunity("o1"), Some("otto"));
    h.settle();
    h.deactivate("olga");

    let past = h.replay_until(then);
    assert_eq!(past, snapshot);
    let c1 = contact("c1");
    assert_eq!(
        past.check(&h.account, &user("olga"), Action::Edit, &c1),
        allowed(Reason::Follower),
        "then, olga followed c1 through the sync"
    );
    assert_eq!(
        h.check("olga", Action::Edit, &c1),
        denied(Reason::Inactive),
        "now she is deactivated"
    );
    assert_eq!(
        past.record(&h.account, &opportunity("o1"))
            .unwrap()
            .state
            .owner,
        Some(user("olga"))
    );
}
