//! One or more tests per rule of docs/rules.md that lives in the domain, named after the rule.
//!
//! Every test drives the pure domain through the harness in `support`: `given` setup commands,
//! `when` the command under test, `then_*` the events or the error, and `settle` to let the
//! follower sync react (R7-R10).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use followers_shared::access::{self, AccessDecision, Action, Holders, Reason, RecordAccess};
use followers_shared::command::{CommandBody, Target};
use followers_shared::error::{DomainError, ErrorCode};
use followers_shared::event::{AddedFollower, EVENT_SCHEMA, EventBody, SyncAction};
use followers_shared::ids::{CommandId, EventId, UserId};
use followers_shared::model::{
    AccountSettings, Actor, AddedHow, DataScope, Follower, MAX_FOLLOWERS, Membership, RecordRef,
    Role, SettingsChange, SkipReason,
};
use followers_shared::read_model::ReadModel;
use followers_shared::store::{Commit, Position, StoredCommit};
use followers_shared::sync::reactions;
use followers_shared::wire::{
    CommandReply, ErrorBody, MAX_TEXT_LEN, MAX_USERS_PER_COMMAND, Outcome, parse_command,
};
use support::*;

// ----- event shorthands -----

fn owner_changed(record: &RecordRef, from: Option<&str>, to: Option<&str>) -> EventBody {
    EventBody::OwnerChanged {
        record: record.clone(),
        from: from.map(user),
        to: to.map(user),
        coupled_with: None,
    }
}

/// An owner change that mirrors `with` because owners are coupled (R7).
fn aligned(
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

fn added(record: &RecordRef, followers: &[&str], how: AddedHow) -> EventBody {
    EventBody::FollowersAdded {
        record: record.clone(),
        followers: followers
            .iter()
            .map(|u| AddedFollower {
                user: user(u),
                how: how.clone(),
            })
            .collect(),
    }
}

fn added_manually(record: &RecordRef, followers: &[&str]) -> EventBody {
    added(record, followers, AddedHow::Manual)
}

/// The owner sync added `who` to `record` because `from` changed its owner (R8, R9).
fn sync_added(record: &RecordRef, who: &str, from: &RecordRef) -> EventBody {
    added(record, &[who], AddedHow::OwnerSync { from: from.clone() })
}

fn removed(record: &RecordRef, followers: &[&str]) -> EventBody {
    EventBody::FollowersRemoved {
        record: record.clone(),
        users: users(followers),
        owner_sync_from: None,
    }
}

fn sync_removed(record: &RecordRef, who: &str, from: &RecordRef) -> EventBody {
    EventBody::FollowersRemoved {
        record: record.clone(),
        users: vec![user(who)],
        owner_sync_from: Some(from.clone()),
    }
}

fn skipped(
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

fn allowed(reason: Reason) -> AccessDecision {
    AccessDecision {
        allowed: true,
        reason,
    }
}

fn denied(reason: Reason) -> AccessDecision {
    AccessDecision {
        allowed: false,
        reason,
    }
}

fn ten_users() -> Vec<String> {
    (0..10).map(|i| format!("f{i}")).collect()
}

/// `acme` with ten `only_assigned` members `f0`..`f9` who all follow `record`.
fn full(h: &mut Harness, record: &RecordRef) {
    let ten = ten_users();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    h.assigned_only_users(&ten);
    h.follow(record, &ten);
    assert_eq!(h.followers(record).len(), MAX_FOLLOWERS);
}

fn access_denied_reason(e: &DomainError) -> Reason {
    match e {
        DomainError::AccessDenied { reason, .. } => *reason,
        other => panic!("expected access_denied, got {other:?}"),
    }
}

// ===== R1: nothing crosses accounts =====

#[test]
fn r1_a_user_of_another_account_cannot_be_added_as_follower_or_owner() {
    let mut h = Harness::new();
    h.open_account(GLOBEX, SettingsChange::default());
    h.member_in(&account(GLOBEX), "gus", Role::Admin, DataScope::All);
    h.create_contact("c1", None);
    let c1 = contact("c1");

    h.when(h.cmd(system(), add_followers(&c1, &["gus"])))
        .then_error(ErrorCode::UnknownUser);
    h.when(h.cmd(system(), change_owner(&c1, Some("gus"))))
        .then_error(ErrorCode::UnknownUser);
    h.when(h.cmd(system(), create_contact("c2", Some("gus"), &[])))
        .then_error(ErrorCode::UnknownUser);
    h.when(h.cmd(system(), create_contact("c3", None, &["gus"])))
        .then_error(ErrorCode::UnknownUser);
    assert!(h.followers(&c1).is_empty());
    assert_eq!(h.owner(&c1), None);
}

#[test]
fn r1_a_user_of_another_account_gets_no_membership() {
    let mut h = Harness::new();
    h.open_account(GLOBEX, SettingsChange::default());
    h.member_in(&account(GLOBEX), "gus", Role::Admin, DataScope::All);
    h.assigned_only_user("olga");
    h.create_contact("c1", None);
    let c1 = contact("c1");

    for action in Action::ALL {
        assert_eq!(h.check("gus", action, &c1), denied(Reason::NoMembership));
    }
    // As an actor, gus's admin role in globex gives him nothing in acme.
    let e = h
        .when(h.cmd(by("gus"), add_followers(&c1, &["olga"])))
        .then_error(ErrorCode::AccessDenied)
        .clone();
    assert_eq!(access_denied_reason(&e), Reason::NoMembership);
    h.when(h.cmd(by("gus"), change_owner(&c1, Some("olga"))))
        .then_error(ErrorCode::AccessDenied);
    // Nor may he manage acme's members.
    h.when(h.cmd(by("gus"), DeactivateMember { user: user("olga") }))
        .then_error(ErrorCode::AccessDenied);
    assert!(h.membership("olga").unwrap().active);
}

#[test]
fn r1_records_of_one_account_do_not_exist_in_another() {
    let mut h = Harness::new();
    h.open_account(GLOBEX, SettingsChange::default());
    h.assigned_only_user("olga");
    h.create_contact("c1", Some("olga"));
    let globex = account(GLOBEX);
    h.member_in(&globex, "olga", Role::Admin, DataScope::All);
    let c1 = contact("c1");

    h.when(h.cmd_in(&globex, system(), add_followers(&c1, &["olga"])))
        .then_error(ErrorCode::UnknownRecord);
    h.when(h.cmd_in(&globex, system(), create_opportunity("o1", "c1", None, &[])))
        .then_error(ErrorCode::UnknownRecord);
    // Olga, admin of globex, is told the record is unknown there; in acme she owns it.
    assert_eq!(
        h.model.check(&globex, &user("olga"), Action::View, &c1),
        denied(Reason::UnknownRecord)
    );
    assert_eq!(h.check("olga", Action::View, &c1), allowed(Reason::Owner));
    // The same record id in globex is another record.
    h.given(h.cmd_in(&globex, system(), create_contact("c1", None, &[])));
    assert_eq!(h.owner(&c1), Some(user("olga")));
    assert_eq!(
        h.model.record(&globex, &c1).unwrap().state.owner,
        None,
        "globex's c1 is not acme's c1"
    );
}

#[test]
fn r1_a_command_for_an_unknown_account_is_refused() {
    let mut h = Harness::new();
    let nowhere = account("nowhere");
    h.when(h.cmd_in(&nowhere, system(), create_contact("c1", None, &[])))
        .then_error(ErrorCode::UnknownAccount);
    h.when(h.cmd_in(&nowhere, system(), DeactivateMember { user: user("x") }))
        .then_error(ErrorCode::UnknownAccount);
    assert_eq!(
        h.model
            .check(&nowhere, &user("x"), Action::View, &contact("c1")),
        denied(Reason::NoMembership)
    );
}

// ===== R2: memberships =====

#[test]
fn r2_a_membership_has_name_email_role_scope_and_active_flag() {
    let mut h = Harness::new();
    h.given(h.cmd(
        system(),
        RegisterMember {
            user: user("sam"),
            name: text("Sam Smith"),
            email: text("sam@acme.test"),
            role: Role::User,
            data_scope: DataScope::OnlyAssigned,
        },
    ));
    assert_eq!(
        h.membership("sam"),
        Some(&Membership {
            name: "Sam Smith".into(),
            email: "sam@acme.test".into(),
            role: Role::User,
            data_scope: DataScope::OnlyAssigned,
            active: true,
        })
    );
    h.when(h.cmd(
        system(),
        RegisterMember {
            user: user("sam"),
            name: text("Other"),
            email: text("o@acme.test"),
            role: Role::Admin,
            data_scope: DataScope::All,
        },
    ))
    .then_error(ErrorCode::MemberExists);
}

#[test]
fn r2_same_user_in_two_accounts_holds_a_different_role_in_each() {
    let mut h = Harness::new();
    h.open_account(GLOBEX, SettingsChange::default());
    let globex = account(GLOBEX);
    h.admin("sam");
    h.member_in(&globex, "sam", Role::User, DataScope::OnlyAssigned);
    h.create_contact("c1", None);
    h.given(h.cmd_in(&globex, system(), create_contact("c1", None, &[])));
    let c1 = contact("c1");

    assert_eq!(
        h.check("sam", Action::ChangeOwner, &c1),
        allowed(Reason::Admin)
    );
    assert_eq!(
        h.model.check(&globex, &user("sam"), Action::View, &c1),
        denied(Reason::NotAssigned)
    );
    // Sam may add followers in acme but not in globex.
    h.when(h.cmd(by("sam"), add_followers(&c1, &["sam"])))
        .then_events(&[added_manually(&c1, &["sam"])]);
    h.when(h.cmd_in(&globex, by("sam"), add_followers(&c1, &["sam"])))
        .then_error(ErrorCode::AccessDenied);

    // Changing his scope in globex leaves acme alone.
    h.given(h.cmd_in(
        &globex,
        system(),
        ChangeMemberDataScope {
            user: user("sam"),
            data_scope: DataScope::All,
        },
    ));
    assert_eq!(
        h.model.check(&globex, &user("sam"), Action::View, &c1),
        allowed(Reason::AllData)
    );
    h.given(h.cmd(
        system(),
        ChangeMemberRole {
            user: user("sam"),
            role: Role::User,
        },
    ));
    assert_eq!(h.membership("sam").unwrap().role, Role::User);
    let globex_sam = h
        .model
        .account(&globex)
        .unwrap()
        .state
        .member(&user("sam"))
        .unwrap();
    assert_eq!(globex_sam.role, Role::User);
    assert_eq!(globex_sam.data_scope, DataScope::All);
    // In acme, sam is now a user with scope all: access through his scope, no longer his role.
    assert_eq!(h.check("sam", Action::View, &c1), allowed(Reason::AllData));
}

#[test]
fn r2_only_an_active_admin_or_the_system_manages_members() {
    let mut h = Harness::new();
    h.admin("ada");
    h.all_data_user("bob");
    h.when(h.cmd(by("bob"), DeactivateMember { user: user("ada") }))
        .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(workflow("wf"), DeactivateMember { user: user("ada") }))
        .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(by("ada"), DeactivateMember { user: user("bob") }))
        .then_events(&[EventBody::MemberDeactivated { user: user("bob") }]);
    // Changing nothing is not an error and appends nothing.
    h.when(h.cmd(by("ada"), DeactivateMember { user: user("bob") }))
        .then_no_events();
    h.when(h.cmd(
        by("ada"),
        ChangeMemberRole {
            user: user("ghost"),
            role: Role::Admin,
        },
    ))
    .then_error(ErrorCode::UnknownUser);
}

// ===== R3: inactive users =====

#[test]
fn r3_an_inactive_user_cannot_be_added_as_follower() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    h.deactivate("olga");
    let c1 = contact("c1");
    h.when(h.cmd(system(), add_followers(&c1, &["otto", "olga"])))
        .then_error(ErrorCode::InactiveUser);
    assert!(h.followers(&c1).is_empty(), "the add is atomic (R13)");
    h.when(h.cmd(system(), create_contact("c2", None, &["olga"])))
        .then_error(ErrorCode::InactiveUser);
}

#[test]
fn r3_an_inactive_user_cannot_become_owner() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_user("olga");
    h.create_contact("c1", Some("bob"));
    h.deactivate("olga");
    let c1 = contact("c1");
    h.when(h.cmd(system(), change_owner(&c1, Some("olga"))))
        .then_error(ErrorCode::InactiveUser);
    h.when(h.cmd(system(), create_contact("c2", Some("olga"), &[])))
        .then_error(ErrorCode::InactiveUser);
    h.given(h.cmd(
        system(),
        ChangeSettings {
            change: decoupled(false, false),
        },
    ));
    h.when(h.cmd(system(), create_opportunity("o1", "c1", Some("olga"), &[])))
        .then_error(ErrorCode::InactiveUser);
    assert_eq!(h.owner(&c1), Some(user("bob")));
}

#[test]
fn r3_a_deactivated_follower_stays_listed_as_inactive_and_loses_access() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    h.create_contact("c2", Some("olga"));
    let (c1, c2) = (contact("c1"), contact("c2"));
    h.follow(&c1, &["olga"]);
    assert_eq!(
        h.check("olga", Action::Edit, &c1),
        allowed(Reason::Follower)
    );

    h.deactivate("olga");

    let view = h.model.followers(&h.account, &c1).unwrap();
    assert_eq!(view.followers.len(), 1);
    let (f, m) = view.followers[0];
    assert_eq!(f.user, user("olga"));
    assert!(!m.unwrap().active, "listed, shown as inactive");
    assert_eq!(h.owner(&c2), Some(user("olga")), "still the owner");
    for action in Action::ALL {
        assert_eq!(h.check("olga", action, &c1), denied(Reason::Inactive));
        assert_eq!(h.check("olga", action, &c2), denied(Reason::Inactive));
    }
    let e = h
        .when(h.cmd(by("olga"), add_followers(&c2, &["otto"])))
        .then_error(ErrorCode::AccessDenied)
        .clone();
    assert_eq!(access_denied_reason(&e), Reason::Inactive);
    // She may be removed while inactive.
    h.when(h.cmd(system(), remove_followers(&c1, &["olga"])))
        .then_events(&[removed(&c1, &["olga"])]);
}

#[test]
fn r3_reactivation_restores_what_they_had() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    h.create_contact("c2", Some("olga"));
    let (c1, c2) = (contact("c1"), contact("c2"));
    h.follow(&c1, &["olga"]);
    let before = h.follower(&c1, "olga").unwrap();

    h.deactivate("olga");
    h.reactivate("olga");

    assert!(h.membership("olga").unwrap().active);
    assert_eq!(
        h.follower(&c1, "olga"),
        Some(before),
        "same entry as before"
    );
    assert_eq!(
        h.check("olga", Action::Edit, &c1),
        allowed(Reason::Follower)
    );
    assert_eq!(
        h.check("olga", Action::ChangeOwner, &c2),
        allowed(Reason::Owner)
    );
    h.when(h.cmd(by("olga"), add_followers(&c2, &["otto"])))
        .then_events(&[added_manually(&c2, &["otto"])]);
}

#[test]
fn r3_a_deactivated_admin_loses_all_access_at_once() {
    let mut h = Harness::new();
    h.admin("ada");
    h.create_contact("c1", None);
    let c1 = contact("c1");
    assert_eq!(
        h.check("ada", Action::ChangeOwner, &c1),
        allowed(Reason::Admin)
    );
    h.deactivate("ada");
    assert_eq!(h.check("ada", Action::View, &c1), denied(Reason::Inactive));
    h.when(h.cmd(by("ada"), change_owner(&c1, None)))
        .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(by("ada"), ReactivateMember { user: user("ada") }))
        .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(by("ada"), create_contact("c9", None, &[])))
        .then_error(ErrorCode::AccessDenied);
}

// ===== R4: one owner at most; one contact per opportunity =====

#[test]
fn r4_a_record_has_at_most_one_owner_and_unassigned_is_valid() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.all_data_user("carl");
    h.when(h.cmd(system(), create_contact("c1", None, &[])))
        .then_events(&[EventBody::ContactCreated {
            contact: contact_id("c1"),
            owner: None,
        }]);
    let c1 = contact("c1");
    assert_eq!(h.owner(&c1), None);
    h.when(h.cmd(system(), change_owner(&c1, Some("bob"))))
        .then_events(&[owner_changed(&c1, None, Some("bob"))]);
    h.when(h.cmd(system(), change_owner(&c1, Some("carl"))))
        .then_events(&[owner_changed(&c1, Some("bob"), Some("carl"))]);
    assert_eq!(
        h.owner(&c1),
        Some(user("carl")),
        "the new owner replaces the old"
    );
    h.when(h.cmd(system(), change_owner(&c1, Some("carl"))))
        .then_no_events();
    h.when(h.cmd(system(), change_owner(&c1, None)))
        .then_events(&[owner_changed(&c1, Some("carl"), None)]);
    assert_eq!(h.owner(&c1), None);
}

#[test]
fn r4_an_opportunity_is_linked_to_exactly_one_contact() {
    let mut h = Harness::new();
    h.create_contact("c1", None);
    h.create_contact("c2", None);
    h.when(h.cmd(system(), create_opportunity("o1", "nope", None, &[])))
        .then_error(ErrorCode::UnknownRecord);
    h.create_opportunity("o1", "c1", None);
    h.when(h.cmd(system(), create_opportunity("o1", "c2", None, &[])))
        .then_error(ErrorCode::RecordExists);
    let o1 = h.model.record(&h.account, &opportunity("o1")).unwrap();
    assert_eq!(o1.state.contact, Some(contact_id("c1")));
    let c1 = h.model.record(&h.account, &contact("c1")).unwrap();
    assert_eq!(c1.opportunities, vec![opportunity_id("o1")]);
    let c2 = h.model.record(&h.account, &contact("c2")).unwrap();
    assert!(c2.opportunities.is_empty());
}

#[test]
fn r4_commands_on_an_unknown_record_are_refused() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    let ghost = opportunity("ghost");
    h.when(h.cmd(system(), change_owner(&ghost, Some("bob"))))
        .then_error(ErrorCode::UnknownRecord);
    h.when(h.cmd(system(), add_followers(&ghost, &["bob"])))
        .then_error(ErrorCode::UnknownRecord);
    h.when(h.cmd(system(), remove_followers(&ghost, &["bob"])))
        .then_error(ErrorCode::UnknownRecord);
    h.create_contact("c1", None);
    h.when(h.cmd(system(), create_contact("c1", None, &[])))
        .then_error(ErrorCode::RecordExists);
}

// ===== R5: who may change an owner =====

#[test]
fn r5_an_admin_may_change_the_owner() {
    let mut h = Harness::new();
    h.admin("ada");
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("olga"));
    let c1 = contact("c1");
    assert_eq!(
        h.check("ada", Action::ChangeOwner, &c1),
        allowed(Reason::Admin)
    );
    h.when(h.cmd(by("ada"), change_owner(&c1, Some("otto"))))
        .then_events(&[owner_changed(&c1, Some("olga"), Some("otto"))]);
}

#[test]
fn r5_the_current_owner_may_change_the_owner() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("olga"));
    let c1 = contact("c1");
    assert_eq!(
        h.check("olga", Action::ChangeOwner, &c1),
        allowed(Reason::Owner)
    );
    h.when(h.cmd(by("olga"), change_owner(&c1, Some("otto"))))
        .then_events(&[owner_changed(&c1, Some("olga"), Some("otto"))]);
    // Now she is no longer the owner, so she may not take it back.
    assert_eq!(
        h.check("olga", Action::ChangeOwner, &c1),
        denied(Reason::NotAssigned)
    );
    h.when(h.cmd(by("olga"), change_owner(&c1, Some("olga"))))
        .then_error(ErrorCode::AccessDenied);
}

#[test]
fn r5_a_follower_may_edit_but_never_change_the_owner() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.all_data_user("bob");
    h.create_contact("c1", Some("otto"));
    let c1 = contact("c1");
    h.follow(&c1, &["olga", "bob"]);

    assert_eq!(
        h.check("olga", Action::Edit, &c1),
        allowed(Reason::Follower)
    );
    assert_eq!(
        h.check("olga", Action::ManageFollowers, &c1),
        allowed(Reason::Follower)
    );
    assert_eq!(
        h.check("olga", Action::ChangeOwner, &c1),
        denied(Reason::OwnerChangeNotAllowed)
    );
    assert_eq!(
        h.check("bob", Action::ChangeOwner, &c1),
        denied(Reason::OwnerChangeNotAllowed)
    );
    for follower in ["olga", "bob"] {
        let e = h
            .when(h.cmd(by(follower), change_owner(&c1, Some(follower))))
            .then_error(ErrorCode::AccessDenied)
            .clone();
        assert_eq!(access_denied_reason(&e), Reason::OwnerChangeNotAllowed);
    }
    assert_eq!(h.owner(&c1), Some(user("otto")));
}

#[test]
fn r5_an_unassigned_record_may_be_assigned_by_a_user_with_data_scope_all() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.follow(&c1, &["otto"]);

    assert_eq!(
        h.check("olga", Action::ChangeOwner, &c1),
        denied(Reason::NotAssigned)
    );
    assert_eq!(
        h.check("otto", Action::ChangeOwner, &c1),
        denied(Reason::OwnerChangeNotAllowed),
        "an only_assigned follower may not assign it"
    );
    h.when(h.cmd(by("olga"), change_owner(&c1, Some("olga"))))
        .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(by("otto"), change_owner(&c1, Some("otto"))))
        .then_error(ErrorCode::AccessDenied);

    assert_eq!(
        h.check("bob", Action::ChangeOwner, &c1),
        allowed(Reason::AllData)
    );
    h.when(h.cmd(by("bob"), change_owner(&c1, Some("olga"))))
        .then_events(&[owner_changed(&c1, None, Some("olga"))]);
    // Once assigned (to someone else), bob's scope no longer lets him change it.
    assert_eq!(
        h.check("bob", Action::ChangeOwner, &c1),
        denied(Reason::OwnerChangeNotAllowed)
    );
    h.when(h.cmd(by("bob"), change_owner(&c1, Some("bob"))))
        .then_error(ErrorCode::AccessDenied);
}

#[test]
fn r5_workflows_and_the_system_may_always_change_the_owner() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("olga"));
    let c1 = contact("c1");
    h.when(h.cmd(workflow("round-robin"), change_owner(&c1, Some("otto"))))
        .then_events(&[owner_changed(&c1, Some("olga"), Some("otto"))]);
    h.when(h.cmd(system(), change_owner(&c1, None)))
        .then_events(&[owner_changed(&c1, Some("otto"), None)]);
}

// ===== R6: a new opportunity's owner defaults to its contact's owner =====

#[test]
fn r6_a_new_opportunitys_owner_defaults_to_its_contacts_owner() {
    for settings in [SettingsChange::default(), decoupled(false, false)] {
        let mut h = Harness::with_settings(settings);
        h.all_data_user("bob");
        h.create_contact("c1", Some("bob"));
        h.create_contact("c2", None);
        h.when(h.cmd(system(), create_opportunity("o1", "c1", None, &[])))
            .then_events(&[EventBody::OpportunityCreated {
                opportunity: opportunity_id("o1"),
                contact: contact_id("c1"),
                owner: Some(user("bob")),
            }]);
        h.when(h.cmd(system(), create_opportunity("o2", "c2", None, &[])))
            .then_events(&[EventBody::OpportunityCreated {
                opportunity: opportunity_id("o2"),
                contact: contact_id("c2"),
                owner: None,
            }]);
    }
}

#[test]
fn r6_an_explicit_owner_is_kept_when_owners_are_decoupled() {
    let mut h = Harness::with_settings(decoupled(false, false));
    h.all_data_user("bob");
    h.all_data_user("carl");
    h.create_contact("c1", Some("bob"));
    h.when(h.cmd(system(), create_opportunity("o1", "c1", Some("carl"), &[])))
        .then_events(&[EventBody::OpportunityCreated {
            opportunity: opportunity_id("o1"),
            contact: contact_id("c1"),
            owner: Some(user("carl")),
        }]);
    h.settle();
    assert_eq!(h.owner(&contact("c1")), Some(user("bob")));
}

// ===== R7: coupled and decoupled owners =====

/// `acme` with coupled owners: c1 (owner bob) with o1 and o2, c2 (owner bob) with o3.
fn coupled_account() -> Harness {
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

#[test]
fn r7_owners_are_coupled_by_default() {
    let h = Harness::new();
    let settings = h.model.account(&h.account).unwrap().state.settings;
    assert_eq!(settings, AccountSettings::default());
    assert!(!settings.allow_different_owners);
    assert!(settings.owners_coupled());
}

#[test]
fn r7_coupled_owner_change_on_contact_moves_all_opportunities() {
    let mut h = coupled_account();
    let (c1, o1, o2, o3) = (
        contact("c1"),
        opportunity("o1"),
        opportunity("o2"),
        opportunity("o3"),
    );
    h.when(h.cmd(by("bob"), change_owner(&c1, Some("carl"))))
        .then_events(&[owner_changed(&c1, Some("bob"), Some("carl"))]);
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            aligned(&o1, Some("bob"), Some("carl"), &c1),
            aligned(&o2, Some("bob"), Some("carl"), &c1),
        ]
    );
    assert_eq!(h.owner(&o1), Some(user("carl")));
    assert_eq!(h.owner(&o2), Some(user("carl")));
    assert_eq!(
        h.owner(&o3),
        Some(user("bob")),
        "another contact's opportunity"
    );

    // Unassigning the contact unassigns its opportunities.
    h.set_owner(&c1, None);
    h.settle();
    assert_eq!(h.owner(&o1), None);
    assert_eq!(h.owner(&o2), None);
}

#[test]
fn r7_coupled_owner_change_on_opportunity_moves_contact_and_siblings() {
    let mut h = coupled_account();
    let (c1, o1, o2, o3) = (
        contact("c1"),
        opportunity("o1"),
        opportunity("o2"),
        opportunity("o3"),
    );
    h.when(h.cmd(by("bob"), change_owner(&o1, Some("carl"))))
        .then_events(&[owner_changed(&o1, Some("bob"), Some("carl"))]);
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            aligned(&c1, Some("bob"), Some("carl"), &o1),
            aligned(&o2, Some("bob"), Some("carl"), &c1),
        ]
    );
    for r in [&c1, &o1, &o2] {
        assert_eq!(h.owner(r), Some(user("carl")), "{r:?}");
    }
    assert_eq!(h.owner(&o3), Some(user("bob")));
}

#[test]
fn r7_coupled_owners_end_equal_when_owner_changes_come_faster_than_the_sync() {
    // The same opportunity changed twice before the sync reacts to the first change.
    let mut h = coupled_account();
    let (c1, o1, o2) = (contact("c1"), opportunity("o1"), opportunity("o2"));
    h.set_owner(&o1, None);
    h.set_owner(&o1, Some("carl"));
    h.settle();
    for r in [&c1, &o1, &o2] {
        assert_eq!(
            h.owner(r),
            Some(user("carl")),
            "{r:?}: the latest change wins"
        );
    }

    // An opportunity and then its contact changed before the sync reacts.
    let mut h = coupled_account();
    h.admin("ada");
    h.set_owner(&o1, Some("carl"));
    h.set_owner(&c1, Some("ada"));
    h.settle();
    let owner = h.owner(&c1);
    assert!(owner.is_some());
    assert_eq!(h.owner(&o1), owner, "o1 follows its contact");
    assert_eq!(h.owner(&o2), owner, "o2 follows its contact");
}

#[test]
fn r7_coupled_mirror_applies_to_a_deactivated_owner() {
    let mut h = coupled_account();
    let (c1, o1, o2) = (contact("c1"), opportunity("o1"), opportunity("o2"));
    h.set_owner(&c1, Some("carl"));
    // Carl is deactivated before the sync mirrors the change: equal owners is the invariant.
    h.deactivate("carl");
    h.settle();
    assert_eq!(h.owner(&o1), Some(user("carl")));
    assert_eq!(h.owner(&o2), Some(user("carl")));
}

#[test]
fn r7_coupled_opportunity_cannot_be_created_with_another_owner() {
    let mut h = coupled_account();
    h.when(h.cmd(system(), create_opportunity("o9", "c1", Some("carl"), &[])))
        .then_error(ErrorCode::OwnersCoupled);
    h.when(h.cmd(system(), create_opportunity("o9", "c1", Some("bob"), &[])))
        .then_events(&[EventBody::OpportunityCreated {
            opportunity: opportunity_id("o9"),
            contact: contact_id("c1"),
            owner: Some(user("bob")),
        }]);
}

#[test]
fn r7_decoupled_owners_are_independent() {
    let mut h = coupled_account();
    h.change_settings(decoupled(false, false));
    assert!(h.settle().is_empty());
    let (c1, o1, o2) = (contact("c1"), opportunity("o1"), opportunity("o2"));
    h.set_owner(&o1, Some("carl"));
    assert!(h.settle().is_empty());
    assert_eq!(h.owner(&c1), Some(user("bob")));
    assert_eq!(h.owner(&o2), Some(user("bob")));
    h.set_owner(&c1, None);
    assert!(h.settle().is_empty());
    assert_eq!(h.owner(&o1), Some(user("carl")));
    assert_eq!(h.owner(&o2), Some(user("bob")));
    h.when(h.cmd(system(), create_opportunity("o9", "c1", Some("carl"), &[])))
        .then_events(&[EventBody::OpportunityCreated {
            opportunity: opportunity_id("o9"),
            contact: contact_id("c1"),
            owner: Some(user("carl")),
        }]);
}

#[test]
fn r7_turning_coupling_back_on_aligns_every_opportunity_with_its_contact() {
    let mut h = coupled_account();
    h.change_settings(decoupled(false, false));
    let (c1, o1, o2) = (contact("c1"), opportunity("o1"), opportunity("o2"));
    h.set_owner(&o1, Some("carl"));
    h.settle();
    h.change_settings(SettingsChange {
        allow_different_owners: Some(false),
        ..SettingsChange::default()
    });
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![aligned(&o1, Some("carl"), Some("bob"), &c1)]
    );
    assert_eq!(h.owner(&o1), Some(user("bob")));
    assert_eq!(h.owner(&o2), Some(user("bob")));
}

// ===== R8: Sync Contact Follower with Opportunity Owner =====

/// Decoupled, R8 on: c1 owned by carl; bob, dora, eve, fay are members.
fn r8_account() -> Harness {
    let mut h = Harness::with_settings(decoupled(true, false));
    for u in ["bob", "carl", "dora", "eve", "fay"] {
        h.all_data_user(u);
    }
    h.create_contact("c1", Some("carl"));
    h
}

#[test]
fn r8_sync_adds_new_opportunity_owner_as_contact_follower_and_removes_previous_only_if_sync_added_them()
 {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    // A new opportunity with an owner counts as an owner change from unassigned.
    h.create_opportunity("o1", "c1", Some("bob"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![sync_added(&c1, "bob", &o1)]
    );
    let bob = h.follower(&c1, "bob").unwrap();
    assert_eq!(bob.how, AddedHow::OwnerSync { from: o1.clone() });
    assert_eq!(bob.added_by, Actor::System);

    h.set_owner(&o1, Some("dora"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![sync_removed(&c1, "bob", &o1), sync_added(&c1, "dora", &o1)]
    );
    assert_eq!(h.followers(&c1), users(&["dora"]));
    assert_eq!(
        h.owner(&c1),
        Some(user("carl")),
        "the contact keeps its owner"
    );
}

#[test]
fn r8_previous_owner_who_did_not_follow_through_the_sync_stays_and_the_skip_is_recorded() {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_opportunity("o1", "c1", Some("dora"));
    h.settle();
    // Eve follows the contact by hand before she gets the opportunity.
    h.given(h.cmd(by("carl"), add_followers(&c1, &["eve"])));
    h.set_owner(&o1, Some("eve"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            sync_removed(&c1, "dora", &o1),
            skipped(
                &c1,
                "eve",
                SyncAction::Add,
                SkipReason::AlreadyFollower,
                &o1
            ),
        ]
    );
    h.set_owner(&o1, Some("fay"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            skipped(
                &c1,
                "eve",
                SyncAction::Remove,
                SkipReason::NotAddedBySync,
                &o1
            ),
            sync_added(&c1, "fay", &o1),
        ]
    );
    assert_eq!(h.followers(&c1), users(&["eve", "fay"]));
    assert_eq!(h.follower(&c1, "eve").unwrap().how, AddedHow::Manual);
}

#[test]
fn r8_sync_replaces_its_own_entry_on_a_full_contact() {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_opportunity("o1", "c1", Some("bob"));
    h.settle();
    // Nine more followers by hand: the contact is full, one entry being the sync's (bob).
    let nine: Vec<String> = ten_users().into_iter().take(9).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    h.assigned_only_users(&nine);
    h.follow(&c1, &nine);
    assert_eq!(h.followers(&c1).len(), MAX_FOLLOWERS);

    h.set_owner(&o1, Some("dora"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![sync_removed(&c1, "bob", &o1), sync_added(&c1, "dora", &o1)]
    );
    assert_eq!(h.followers(&c1).len(), MAX_FOLLOWERS, "still full");
    assert_eq!(
        h.follower(&c1, "dora").map(|f| f.how),
        Some(AddedHow::OwnerSync { from: o1.clone() })
    );
    assert_eq!(h.follower(&c1, "bob"), None);
}

#[test]
fn r8_sync_still_skips_when_the_contact_stays_full() {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_opportunity("o1", "c1", Some("bob"));
    h.settle();
    // Bob's sync entry is gone (removed by hand), and ten others fill the contact.
    h.given(h.cmd(system(), remove_followers(&c1, &["bob"])));
    full(&mut h, &c1);
    h.set_owner(&o1, Some("dora"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![skipped(
            &c1,
            "dora",
            SyncAction::Add,
            SkipReason::FollowerLimitReached,
            &o1
        )]
    );
    assert_eq!(h.followers(&c1).len(), MAX_FOLLOWERS);
}

#[test]
fn r11_every_listed_entry_counts_toward_the_limit() {
    let mut h = Harness::new();
    let ten = ten_users();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    h.assigned_only_users(&ten);
    h.assigned_only_user("olga");
    // The owner also follows, and one follower is deactivated: both still take a place.
    h.given(h.cmd(system(), create_contact("c1", Some(ten[0]), &ten)));
    h.deactivate(ten[1]);
    h.when(h.cmd(system(), add_followers(&contact("c1"), &["olga"])))
        .then_error(ErrorCode::FollowerLimit);
}

#[test]
fn r8_sync_is_off_by_default_and_has_no_effect_while_owners_are_coupled() {
    // Decoupled, sub-setting off.
    let mut h = Harness::with_settings(decoupled(false, false));
    h.all_data_user("bob");
    h.all_data_user("carl");
    h.create_contact("c1", Some("carl"));
    h.create_opportunity("o1", "c1", Some("bob"));
    h.set_owner(&opportunity("o1"), Some("carl"));
    assert!(h.settle().is_empty());
    assert!(h.followers(&contact("c1")).is_empty());

    // Sub-setting on, but owners coupled: the contact's owner moves instead.
    let mut h = Harness::with_settings(SettingsChange {
        sync_contact_follower_with_opportunity_owner: Some(true),
        ..SettingsChange::default()
    });
    h.all_data_user("bob");
    h.all_data_user("carl");
    h.create_contact("c1", Some("carl"));
    h.create_opportunity("o1", "c1", None);
    h.set_owner(&opportunity("o1"), Some("bob"));
    h.settle();
    assert!(h.followers(&contact("c1")).is_empty());
    assert_eq!(h.owner(&contact("c1")), Some(user("bob")));
    let s = Harness::new()
        .model
        .account(&account(ACME))
        .unwrap()
        .state
        .settings;
    assert!(!s.sync_contact_follower_with_opportunity_owner);
}

// ===== R9: Sync Opportunity Follower with Contact Owner =====

#[test]
fn r9_sync_adds_new_contact_owner_as_opportunity_follower_and_removes_previous_only_where_sync_added_them()
 {
    let mut h = Harness::with_settings(decoupled(false, true));
    for u in ["bob", "carl", "dora", "eve"] {
        h.all_data_user(u);
    }
    let (c1, o1, o2) = (contact("c1"), opportunity("o1"), opportunity("o2"));
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", None);
    h.create_opportunity("o2", "c1", None);
    // New opportunities: their owner is already the contact's owner (R6), so R9 skips (R10).
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            skipped(&o1, "bob", SyncAction::Add, SkipReason::AlreadyOwner, &c1),
            skipped(&o2, "bob", SyncAction::Add, SkipReason::AlreadyOwner, &c1),
        ]
    );

    h.set_owner(&c1, Some("carl"));
    // bob never followed through the sync, and does not follow: nothing to remove.
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![sync_added(&o1, "carl", &c1), sync_added(&o2, "carl", &c1)]
    );
    assert_eq!(h.owner(&o1), Some(user("bob")), "owners stay decoupled");

    h.follow(&o2, &["dora"]);
    h.set_owner(&c1, Some("dora"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            sync_removed(&o1, "carl", &c1),
            sync_added(&o1, "dora", &c1),
            sync_removed(&o2, "carl", &c1),
            skipped(
                &o2,
                "dora",
                SyncAction::Add,
                SkipReason::AlreadyFollower,
                &c1
            ),
        ]
    );

    h.set_owner(&c1, Some("eve"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            sync_removed(&o1, "dora", &c1),
            sync_added(&o1, "eve", &c1),
            skipped(
                &o2,
                "dora",
                SyncAction::Remove,
                SkipReason::NotAddedBySync,
                &c1
            ),
            sync_added(&o2, "eve", &c1),
        ]
    );
    assert_eq!(h.followers(&o1), users(&["eve"]));
    assert_eq!(h.followers(&o2), users(&["dora", "eve"]));
}

#[test]
fn r9_sync_replaces_its_own_entry_on_a_full_opportunity() {
    let mut h = Harness::with_settings(decoupled(false, true));
    for u in ["bob", "carl", "dora"] {
        h.all_data_user(u);
    }
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", Some("dora"));
    h.settle();
    assert_eq!(h.followers(&o1), users(&["bob"]), "R9 on a new opportunity");
    let nine: Vec<String> = ten_users().into_iter().take(9).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    h.assigned_only_users(&nine);
    h.follow(&o1, &nine);
    assert_eq!(h.followers(&o1).len(), MAX_FOLLOWERS);

    h.set_owner(&c1, Some("carl"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![sync_removed(&o1, "bob", &c1), sync_added(&o1, "carl", &c1)]
    );
    assert_eq!(h.followers(&o1).len(), MAX_FOLLOWERS);
    assert!(h.follower(&o1, "carl").is_some());
}

#[test]
fn r9_new_opportunity_gets_the_contact_owner_as_follower() {
    let mut h = Harness::with_settings(decoupled(false, true));
    for u in ["bob", "dora"] {
        h.all_data_user(u);
    }
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", Some("dora"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![sync_added(&o1, "bob", &c1)]
    );
    let bob = h.follower(&o1, "bob").unwrap();
    assert_eq!(bob.how, AddedHow::OwnerSync { from: c1.clone() });
    assert_eq!(h.owner(&o1), Some(user("dora")));

    // Like any R9 entry, it goes when the contact's owner changes.
    h.set_owner(&c1, Some("dora"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            sync_removed(&o1, "bob", &c1),
            skipped(&o1, "dora", SyncAction::Add, SkipReason::AlreadyOwner, &c1),
        ]
    );

    // An unassigned contact gives its new opportunities nobody to follow.
    h.create_contact("c2", None);
    h.create_opportunity("o2", "c2", Some("dora"));
    assert!(h.settle().is_empty());
}

#[test]
fn r9_sync_is_off_by_default_and_has_no_effect_while_owners_are_coupled() {
    for settings in [
        decoupled(true, false),
        SettingsChange {
            sync_opportunity_follower_with_contact_owner: Some(true),
            ..SettingsChange::default()
        },
    ] {
        let mut h = Harness::with_settings(settings);
        h.all_data_user("bob");
        h.all_data_user("carl");
        h.create_contact("c1", Some("bob"));
        h.create_opportunity("o1", "c1", None);
        h.settle();
        h.set_owner(&contact("c1"), Some("carl"));
        h.settle();
        assert!(h.followers(&opportunity("o1")).is_empty(), "{settings:?}");
    }
}

// ===== R10: a sync never breaks a rule, and never skips silently =====

#[test]
fn r10_sync_skips_full_record_and_records_why() {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    full(&mut h, &c1);
    h.create_opportunity("o1", "c1", None);
    h.settle();
    h.set_owner(&o1, Some("bob"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![skipped(
            &c1,
            "bob",
            SyncAction::Add,
            SkipReason::FollowerLimitReached,
            &o1
        )]
    );
    assert_eq!(h.followers(&c1).len(), MAX_FOLLOWERS);
    assert_eq!(h.follower(&c1, "bob"), None);
}

#[test]
fn r10_sync_leaves_alone_a_user_who_already_owns_the_record() {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_opportunity("o1", "c1", Some("bob"));
    h.settle();
    h.set_owner(&o1, Some("carl"));
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![
            sync_removed(&c1, "bob", &o1),
            skipped(&c1, "carl", SyncAction::Add, SkipReason::AlreadyOwner, &o1),
        ]
    );
    assert!(h.followers(&c1).is_empty());
}

#[test]
fn r10_sync_does_not_add_an_inactive_user() {
    let mut h = r8_account();
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.create_opportunity("o1", "c1", None);
    h.settle();
    h.set_owner(&o1, Some("dora"));
    // Dora is deactivated before the sync gets to her.
    h.deactivate("dora");
    assert_eq!(
        h.settle().into_iter().map(|e| e.body).collect::<Vec<_>>(),
        vec![skipped(
            &c1,
            "dora",
            SyncAction::Add,
            SkipReason::Inactive,
            &o1
        )]
    );
    assert!(h.followers(&c1).is_empty());
}

// ===== R11: 0 to 10 followers =====

#[test]
fn r11_a_record_never_has_more_than_ten_followers() {
    let mut h = Harness::new();
    let many: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    for u in &many {
        h.assigned_only_user(u);
    }
    h.create_contact("c1", None);
    h.create_opportunity("o1", "c1", None);
    for record in [contact("c1"), opportunity("o1")] {
        for u in &many[..10] {
            h.when(h.cmd(system(), add_followers(&record, &[u])))
                .then_events(&[added(&record, &[u], AddedHow::System)]);
        }
        assert_eq!(h.followers(&record).len(), 10);
        h.when(h.cmd(system(), add_followers(&record, &[&many[10]])))
            .then_error(ErrorCode::FollowerLimit);
        assert_eq!(h.followers(&record).len(), 10);
    }
    let eleven: Vec<&str> = many[..11].iter().map(String::as_str).collect();
    h.when(h.cmd(system(), create_contact("c2", None, &eleven)))
        .then_error(ErrorCode::FollowerLimit);
    h.when(h.cmd(system(), create_opportunity("o2", "c1", None, &eleven)))
        .then_error(ErrorCode::FollowerLimit);
    h.when(h.cmd(system(), create_contact("c2", None, &eleven[..10])))
        .then_events(&[
            EventBody::ContactCreated {
                contact: contact_id("c2"),
                owner: None,
            },
            added(&contact("c2"), &eleven[..10], AddedHow::System),
        ]);
}

// ===== R12: adding is idempotent =====

#[test]
fn r12_adding_a_follower_twice_adds_them_once_and_is_not_an_error() {
    let mut h = Harness::new();
    h.assigned_only_user("olga");
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.when(h.cmd(system(), add_followers(&c1, &["olga"])))
        .then_events(&[added(&c1, &["olga"], AddedHow::System)]);
    h.when(h.cmd(system(), add_followers(&c1, &["olga"])))
        .then_no_events();
    h.when(h.cmd(system(), add_followers(&c1, &["olga", "olga"])))
        .then_no_events();
    assert_eq!(h.followers(&c1), users(&["olga"]));
}

#[test]
fn r12_the_reply_says_which_users_were_added_and_which_already_followed() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    let cmd = h.cmd(
        system(),
        add_followers(&c1, &["olga", "otto", "oona", "otto"]),
    );
    let events = h
        .when(cmd.clone())
        .then_events(&[added(&c1, &["otto", "oona"], AddedHow::System)])
        .events
        .clone();
    let reply = CommandReply::success(&cmd, events, h.position());
    assert!(reply.ok);
    assert_eq!(reply.outcome, Some(Outcome::Applied));
    assert_eq!(reply.added, Some(users(&["otto", "oona"])));
    assert_eq!(reply.already_following, Some(users(&["olga"])));

    let again = h.cmd(system(), add_followers(&c1, &["olga"]));
    let events = h.when(again.clone()).then_no_events().events.clone();
    let reply = CommandReply::success(&again, events, h.position());
    assert_eq!(reply.outcome, Some(Outcome::Unchanged));
    assert_eq!(reply.added, Some(vec![]));
    assert_eq!(reply.already_following, Some(users(&["olga"])));
}

#[test]
fn r12_re_adding_a_deactivated_follower_is_not_an_error() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    h.deactivate("olga");
    // Olga already follows: she is not added again, and that is no error (R12). Otto is added.
    let cmd = h.cmd(system(), add_followers(&c1, &["olga", "otto"]));
    let events = h
        .when(cmd.clone())
        .then_events(&[added(&c1, &["otto"], AddedHow::System)])
        .events
        .clone();
    let reply = CommandReply::success(&cmd, events, h.position());
    assert_eq!(reply.added, Some(users(&["otto"])));
    assert_eq!(reply.already_following, Some(users(&["olga"])));
    assert_eq!(h.followers(&c1), users(&["olga", "otto"]));
}

// ===== R13: one command, several followers, atomic =====

#[test]
fn r13_one_command_may_add_several_followers() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.when(h.cmd(system(), add_followers(&c1, &["olga", "otto", "oona"])))
        .then_events(&[added(&c1, &["olga", "otto", "oona"], AddedHow::System)]);
}

#[test]
fn r13_an_add_that_would_exceed_ten_adds_nothing_and_says_how_many_places_are_free() {
    let mut h = Harness::new();
    let many: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    h.assigned_only_users(&many);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.follow(&c1, &many[..8]);
    let before = h.model.clone();

    let e = h
        .when(h.cmd(system(), add_followers(&c1, &many[8..11])))
        .then_error(ErrorCode::FollowerLimit)
        .clone();
    assert_eq!(
        e,
        DomainError::FollowerLimit {
            record: c1.clone(),
            current: 8,
            adding: 3,
            free: 2,
        }
    );
    let body = ErrorBody::from(&e);
    assert_eq!(body.code, ErrorCode::FollowerLimit);
    assert_eq!(body.free_places, Some(2));
    assert!(body.message.contains("2 places free"), "{}", body.message);
    assert_eq!(h.model, before, "nothing was added");
    assert_eq!(h.followers(&c1).len(), 8);

    // Users who already follow take no place: 2 free, 2 new.
    h.when(h.cmd(system(), add_followers(&c1, &[many[0], many[8], many[9]])))
        .then_events(&[added(&c1, &many[8..10], AddedHow::System)]);
    let e = h
        .when(h.cmd(system(), add_followers(&c1, &[many[10]])))
        .then_error(ErrorCode::FollowerLimit)
        .clone();
    assert_eq!(ErrorBody::from(&e).free_places, Some(0));
}

#[test]
fn r13_an_add_naming_one_unknown_user_adds_nobody() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.when(h.cmd(system(), add_followers(&c1, &["olga", "ghost", "otto"])))
        .then_error(ErrorCode::UnknownUser);
    assert!(h.followers(&c1).is_empty());
}

// ===== R14: removing =====

#[test]
fn r14_removing_a_user_who_does_not_follow_is_a_no_op() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    let before = h.model.clone();
    let cmd = h.cmd(system(), remove_followers(&c1, &["otto", "ghost"]));
    let events = h.when(cmd.clone()).then_no_events().events.clone();
    assert_eq!(h.model, before);
    let reply = CommandReply::success(&cmd, events, h.position());
    assert_eq!(reply.outcome, Some(Outcome::Unchanged));
    assert_eq!(reply.removed, Some(vec![]));
    assert_eq!(reply.not_following, Some(users(&["otto", "ghost"])));

    let cmd = h.cmd(system(), remove_followers(&c1, &["olga", "otto"]));
    let events = h
        .when(cmd.clone())
        .then_events(&[removed(&c1, &["olga"])])
        .events
        .clone();
    let reply = CommandReply::success(&cmd, events, h.position());
    assert_eq!(reply.removed, Some(users(&["olga"])));
    assert_eq!(reply.not_following, Some(users(&["otto"])));
}

#[test]
fn r14_removing_a_follower_keeps_access_through_role_scope_or_ownership() {
    let mut h = Harness::new();
    h.admin("ada");
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", Some("olga"));
    h.create_opportunity("o1", "c1", None);
    h.given(h.cmd(system(), change_settings_decoupled()));
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.set_owner(&o1, None);
    h.follow(&c1, &["olga", "ada", "bob", "otto", "oona"]);
    h.follow(&o1, &["oona"]);

    h.given(h.cmd(
        system(),
        remove_followers(&c1, &["olga", "ada", "bob", "otto"]),
    ));
    h.given(h.cmd(system(), remove_followers(&o1, &["oona"])));

    assert_eq!(h.check("olga", Action::Edit, &c1), allowed(Reason::Owner));
    assert_eq!(h.check("ada", Action::Edit, &c1), allowed(Reason::Admin));
    assert_eq!(h.check("bob", Action::Edit, &c1), allowed(Reason::AllData));
    assert_eq!(
        h.check("otto", Action::Edit, &c1),
        denied(Reason::NotAssigned)
    );
    // Oona still follows the contact, which gives her the opportunity (R20).
    assert_eq!(
        h.check("oona", Action::Edit, &o1),
        allowed(Reason::ContactFollower)
    );
}

fn change_settings_decoupled() -> CommandBody {
    ChangeSettings {
        change: decoupled(false, false),
    }
    .into()
}

// ===== R15: who may add or remove followers =====

#[test]
fn r15_any_actor_with_edit_access_may_add_or_remove_followers() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", Some("oona"));
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);

    // A follower (only_assigned) has edit access through following.
    h.when(h.cmd(by("olga"), add_followers(&c1, &["otto"])))
        .then_events(&[added_manually(&c1, &["otto"])]);
    h.when(h.cmd(by("olga"), remove_followers(&c1, &["otto"])))
        .then_events(&[removed(&c1, &["otto"])]);
    // The owner, and a user with scope all.
    h.when(h.cmd(by("oona"), add_followers(&c1, &["otto"])))
        .then_events(&[added_manually(&c1, &["otto"])]);
    h.when(h.cmd(by("bob"), remove_followers(&c1, &["otto", "olga"])))
        .then_events(&[removed(&c1, &["otto", "olga"])]);
}

#[test]
fn r15_an_actor_without_edit_access_may_not_manage_followers() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    for cmd in [
        CommandBody::from(add_followers(&c1, &["otto"])),
        remove_followers(&c1, &["olga"]).into(),
    ] {
        let e = h
            .when(h.cmd(by("otto"), cmd))
            .then_error(ErrorCode::AccessDenied)
            .clone();
        assert_eq!(access_denied_reason(&e), Reason::NotAssigned);
        assert_eq!(ErrorBody::from(&e).reason, Some(Reason::NotAssigned));
    }
    assert_eq!(h.followers(&c1), users(&["olga"]));
}

#[test]
fn r15_workflows_may_add_or_remove_followers() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    let wf = AddedHow::Workflow {
        workflow: followers_shared::ids::WorkflowId::new("wf-1").unwrap(),
    };
    h.when(h.cmd(workflow("wf-1"), add_followers(&c1, &["olga"])))
        .then_events(&[added(&c1, &["olga"], wf)]);
    h.when(h.cmd(workflow("wf-1"), remove_followers(&c1, &["olga"])))
        .then_events(&[removed(&c1, &["olga"])]);
}

// ===== R16: a new opportunity with its first followers =====

#[test]
fn r16_a_new_opportunity_may_be_created_with_its_first_followers() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("bob"));
    let o1 = opportunity("o1");
    h.when(h.cmd(
        by("bob"),
        create_opportunity("o1", "c1", None, &["olga", "otto"]),
    ))
    .then_events(&[
        EventBody::OpportunityCreated {
            opportunity: opportunity_id("o1"),
            contact: contact_id("c1"),
            owner: Some(user("bob")),
        },
        added_manually(&o1, &["olga", "otto"]),
    ]);
    assert_eq!(h.followers(&o1), users(&["olga", "otto"]));
    assert_eq!(h.follower(&o1, "olga").unwrap().added_by, by("bob"));
    assert_eq!(
        h.check("olga", Action::Edit, &o1),
        allowed(Reason::Follower)
    );
}

#[test]
fn r16_a_new_opportunity_with_a_bad_first_follower_is_not_created() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    h.deactivate("otto");
    h.when(h.cmd(
        system(),
        create_opportunity("o1", "c1", None, &["olga", "otto"]),
    ))
    .then_error(ErrorCode::InactiveUser);
    h.when(h.cmd(
        system(),
        create_opportunity("o1", "c1", None, &["olga", "ghost"]),
    ))
    .then_error(ErrorCode::UnknownUser);
    assert!(h.model.record(&h.account, &opportunity("o1")).is_none());
}

#[test]
fn r16_creating_an_opportunity_needs_edit_access_to_its_contact() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("olga"));
    let e = h
        .when(h.cmd(by("otto"), create_opportunity("o1", "c1", None, &[])))
        .then_error(ErrorCode::AccessDenied)
        .clone();
    assert_eq!(access_denied_reason(&e), Reason::NotAssigned);
    h.when(h.cmd(by("olga"), create_opportunity("o1", "c1", None, &["otto"])))
        .then_events(&[
            EventBody::OpportunityCreated {
                opportunity: opportunity_id("o1"),
                contact: contact_id("c1"),
                owner: Some(user("olga")),
            },
            added_manually(&opportunity("o1"), &["otto"]),
        ]);
}

// ===== R17: workflow actions =====

#[test]
fn r17_a_workflow_command_without_record_does_nothing_and_says_so() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", None);
    let before = h.model.clone();
    for body in [
        CommandBody::from(AddFollowers {
            record: None,
            users: some_users(&["olga"]),
        }),
        RemoveFollowers {
            record: None,
            users: some_users(&["olga"]),
        }
        .into(),
    ] {
        assert_eq!(body.target(), Target::Nothing);
        let cmd = h.cmd(workflow("wf-1"), body);
        let d = h.when(cmd.clone()).then_no_events().clone();
        assert_eq!(d.stream, None);
        let reply = CommandReply::success(&cmd, d.events, h.position());
        assert!(reply.ok, "the workflow does not fail");
        assert_eq!(reply.outcome, Some(Outcome::NoRecord));
    }
    assert_eq!(h.model, before);
    assert!(h.settle().is_empty());
}

#[test]
fn r17_workflows_add_and_remove_followers_of_opportunities_and_contacts() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", None);
    h.create_opportunity("o1", "c1", None);
    let how = AddedHow::Workflow {
        workflow: followers_shared::ids::WorkflowId::new("nurture").unwrap(),
    };
    for record in [opportunity("o1"), contact("c1")] {
        h.when(h.cmd(
            workflow("nurture"),
            add_followers(&record, &["olga", "otto"]),
        ))
        .then_events(&[added(&record, &["olga", "otto"], how.clone())]);
        h.when(h.cmd(workflow("nurture"), remove_followers(&record, &["otto"])))
            .then_events(&[removed(&record, &["otto"])]);
        assert_eq!(h.followers(&record), users(&["olga"]));
    }
}

#[test]
fn r17_the_decider_refuses_a_follower_command_without_record_from_anyone_but_a_workflow() {
    let mut h = Harness::new();
    h.admin("ada");
    h.create_contact("c1", None);
    let before = h.model.clone();
    for actor in [by("ada"), system()] {
        let body = RemoveFollowers {
            record: None,
            users: some_users(&["ada"]),
        };
        let e = h
            .when(h.cmd(actor, body))
            .then_error(ErrorCode::MalformedRequest)
            .clone();
        assert_eq!(
            e,
            DomainError::RecordRequired {
                command: "remove_followers"
            }
        );
    }
    assert_eq!(h.model, before);
}

#[test]
fn r17_only_a_workflow_may_leave_out_the_record_on_the_wire() {
    let id = CommandId::new();
    let wf = format!(
        r#"{{"command_id":"{id}","actor":{{"kind":"workflow","workflow":"wf-1"}},"users":["olga"]}}"#
    );
    let cmd = parse_command(ACME, "add_followers", wf.as_bytes(), at()).unwrap();
    assert_eq!(cmd.body.target(), Target::Nothing);
    let usr = format!(
        r#"{{"command_id":"{id}","actor":{{"kind":"user","user":"bob"}},"users":["olga"]}}"#
    );
    let (echo, err) = parse_command(ACME, "remove_followers", usr.as_bytes(), at()).unwrap_err();
    assert_eq!(echo, Some(id));
    assert_eq!(err.code, ErrorCode::MalformedRequest);
}

// ===== R18: listing followers =====

#[test]
fn r18_follower_entries_remember_when_by_whom_and_how_they_were_added() {
    let mut h = Harness::with_settings(decoupled(true, false));
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto", "oona", "ozzy"]);
    h.create_contact("c1", None);
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.given(h.cmd(by("bob"), add_followers(&c1, &["olga"])));
    h.given(h.cmd(workflow("wf-1"), add_followers(&c1, &["otto"])));
    h.given(h.cmd(system(), add_followers(&c1, &["oona"])));
    h.create_opportunity("o1", "c1", Some("ozzy"));
    h.settle();
    h.deactivate("otto");

    let view = h.model.followers(&h.account, &c1).unwrap();
    let listed: Vec<(Follower, String, bool)> = view
        .followers
        .iter()
        .map(|(f, m)| ((*f).clone(), m.unwrap().name.clone(), m.unwrap().active))
        .collect();
    let entry = |u: &str, added_by: Actor, how: AddedHow| Follower {
        user: user(u),
        added_at: at(),
        added_by,
        how,
    };
    assert_eq!(
        listed,
        vec![
            (
                entry("olga", by("bob"), AddedHow::Manual),
                "User olga".into(),
                true
            ),
            (
                entry(
                    "otto",
                    workflow("wf-1"),
                    AddedHow::Workflow {
                        workflow: followers_shared::ids::WorkflowId::new("wf-1").unwrap()
                    }
                ),
                "User otto".into(),
                false
            ),
            (
                entry("oona", system(), AddedHow::System),
                "User oona".into(),
                true
            ),
            (
                entry("ozzy", system(), AddedHow::OwnerSync { from: o1 }),
                "User ozzy".into(),
                true
            ),
        ]
    );
    assert_eq!(view.owner, None);
    assert!(h.model.followers(&h.account, &contact("nope")).is_none());
}

#[test]
fn r18_re_adding_a_follower_keeps_their_first_entry() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", None);
    let c1 = contact("c1");
    h.given(h.cmd(workflow("wf-1"), add_followers(&c1, &["olga"])));
    let first = h.follower(&c1, "olga").unwrap();
    h.given(h.cmd(by("bob"), add_followers(&c1, &["olga"])));
    assert_eq!(h.follower(&c1, "olga").unwrap(), first);
}

// ===== R19: actions =====

#[test]
fn r19_the_actions_are_view_edit_manage_followers_and_change_owner() {
    let names: Vec<String> = Action::ALL
        .iter()
        .map(|a| {
            serde_json::to_value(a)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["view", "edit", "manage_followers", "change_owner"]);
    for a in Action::ALL {
        assert_eq!(a.as_str(), serde_json::to_value(a).unwrap());
    }
}

#[test]
fn r19_change_owner_is_decided_apart_from_view_edit_and_manage_followers() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto"]);
    h.create_contact("c1", Some("otto"));
    let c1 = contact("c1");
    h.follow(&c1, &["olga"]);
    for a in [Action::View, Action::Edit, Action::ManageFollowers] {
        assert_eq!(h.check("olga", a, &c1), allowed(Reason::Follower), "{a}");
    }
    assert!(!h.check("olga", Action::ChangeOwner, &c1).allowed);
}

// ===== R20: the access decision =====

#[test]
fn r20_no_active_membership_is_denied_before_anything_else() {
    let mut h = Harness::new();
    h.admin("ada");
    h.create_contact("c1", Some("ada"));
    let c1 = contact("c1");
    assert_eq!(
        h.check("ghost", Action::View, &c1),
        denied(Reason::NoMembership)
    );
    assert_eq!(
        h.check("ghost", Action::View, &contact("nope")),
        denied(Reason::NoMembership)
    );
    h.deactivate("ada");
    assert_eq!(h.check("ada", Action::View, &c1), denied(Reason::Inactive));
}

#[test]
fn r20_admins_may_do_everything() {
    let mut h = Harness::new();
    h.member("ada", Role::Admin, DataScope::OnlyAssigned);
    h.assigned_only_user("olga");
    h.create_contact("c1", Some("olga"));
    h.create_opportunity("o1", "c1", None);
    for r in [contact("c1"), opportunity("o1")] {
        for a in Action::ALL {
            assert_eq!(h.check("ada", a, &r), allowed(Reason::Admin), "{a} {r:?}");
        }
    }
}

#[test]
fn r20_data_scope_all_may_view_edit_and_manage_followers_of_every_record() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_user("olga");
    h.create_contact("c1", Some("olga"));
    h.create_opportunity("o1", "c1", None);
    for r in [contact("c1"), opportunity("o1")] {
        for a in [Action::View, Action::Edit, Action::ManageFollowers] {
            assert_eq!(h.check("bob", a, &r), allowed(Reason::AllData), "{a} {r:?}");
        }
        assert_eq!(
            h.check("bob", Action::ChangeOwner, &r),
            denied(Reason::OwnerChangeNotAllowed)
        );
    }
}

#[test]
fn r20_only_assigned_user_sees_what_they_own_or_follow_and_nothing_else() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", Some("olga"));
    h.create_contact("c2", None);
    h.follow(&contact("c2"), &["otto"]);
    for a in [Action::View, Action::Edit, Action::ManageFollowers] {
        assert_eq!(h.check("olga", a, &contact("c1")), allowed(Reason::Owner));
        assert_eq!(
            h.check("otto", a, &contact("c2")),
            allowed(Reason::Follower)
        );
        assert_eq!(
            h.check("olga", a, &contact("c2")),
            denied(Reason::NotAssigned)
        );
        assert_eq!(
            h.check("otto", a, &contact("c1")),
            denied(Reason::NotAssigned)
        );
        assert_eq!(
            h.check("oona", a, &contact("c1")),
            denied(Reason::NotAssigned)
        );
    }
}

#[test]
fn r20_only_assigned_user_sees_opportunity_through_contact_when_setting_on() {
    let mut h = Harness::with_settings(decoupled(false, false));
    h.assigned_only_users(&["olga", "otto", "oona", "ozzy"]);
    h.create_contact("c1", Some("olga"));
    h.create_opportunity("o1", "c1", Some("ozzy"));
    let (c1, o1) = (contact("c1"), opportunity("o1"));
    h.follow(&c1, &["otto"]);
    assert!(
        h.model
            .account(&h.account)
            .unwrap()
            .state
            .settings
            .contact_access_includes_opportunities,
        "on by default"
    );
    for a in [Action::View, Action::Edit, Action::ManageFollowers] {
        assert_eq!(h.check("olga", a, &o1), allowed(Reason::ContactOwner));
        assert_eq!(h.check("otto", a, &o1), allowed(Reason::ContactFollower));
        assert_eq!(h.check("oona", a, &o1), denied(Reason::NotAssigned));
    }
    // Through the contact they may not change the opportunity's owner.
    assert_eq!(
        h.check("olga", Action::ChangeOwner, &o1),
        denied(Reason::OwnerChangeNotAllowed)
    );
    // Access through a contact does not flow the other way.
    assert_eq!(
        h.check("ozzy", Action::View, &c1),
        denied(Reason::NotAssigned)
    );
    h.when(h.cmd(by("otto"), add_followers(&o1, &["oona"])))
        .then_events(&[added_manually(&o1, &["oona"])]);
}

#[test]
fn r20_contact_access_does_not_include_opportunities_when_setting_off() {
    let mut h = Harness::with_settings(SettingsChange {
        contact_access_includes_opportunities: Some(false),
        ..decoupled(false, false)
    });
    h.assigned_only_users(&["olga", "otto", "oona"]);
    h.create_contact("c1", Some("olga"));
    h.create_opportunity("o1", "c1", Some("oona"));
    let o1 = opportunity("o1");
    h.follow(&contact("c1"), &["otto"]);
    for a in Action::ALL {
        assert_eq!(h.check("olga", a, &o1), denied(Reason::NotAssigned), "{a}");
        assert_eq!(h.check("otto", a, &o1), denied(Reason::NotAssigned), "{a}");
    }
    h.when(h.cmd(by("otto"), add_followers(&o1, &["otto"])))
        .then_error(ErrorCode::AccessDenied);
    // Turning it back on restores access.
    h.change_settings(SettingsChange {
        contact_access_includes_opportunities: Some(true),
        ..SettingsChange::default()
    });
    assert_eq!(
        h.check("otto", Action::View, &o1),
        allowed(Reason::ContactFollower)
    );
}

#[test]
fn r20_the_command_side_and_the_query_side_decide_alike() {
    let mut h = Harness::with_settings(decoupled(false, false));
    h.admin("ada");
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto", "oona", "ozzy", "fred"]);
    h.create_contact("c1", Some("olga"));
    h.create_contact("c2", None);
    h.create_opportunity("o1", "c1", Some("ozzy"));
    h.create_opportunity("o2", "c2", None);
    h.follow(&contact("c1"), &["otto", "fred"]);
    h.follow(&contact("c2"), &["fred"]);
    h.follow(&opportunity("o1"), &["fred"]);
    h.follow(&opportunity("o2"), &["fred", "oona"]);
    h.deactivate("oona");
    let records = [
        contact("c1"),
        contact("c2"),
        opportunity("o1"),
        opportunity("o2"),
    ];
    for actor in ["ada", "bob", "olga", "otto", "oona", "ozzy", "ghost"] {
        for r in &records {
            // Adding fred, who follows everything, changes nothing: only authorization may fail.
            let manage = h.check(actor, Action::ManageFollowers, r);
            let result = h.when(h.cmd(by(actor), add_followers(r, &["fred"]))).result;
            match result {
                Ok(d) => {
                    assert!(manage.allowed, "{actor} {r:?}");
                    assert!(d.events.is_empty());
                }
                Err(e) => {
                    assert!(!manage.allowed, "{actor} {r:?}");
                    assert_eq!(access_denied_reason(&e), manage.reason);
                }
            }
            let change = h.check(actor, Action::ChangeOwner, r);
            let current = h.owner(r);
            let result = h
                .when(h.cmd(
                    by(actor),
                    ChangeOwner {
                        record: r.clone(),
                        owner: current,
                    },
                ))
                .result;
            match result {
                Ok(_) => assert!(change.allowed, "{actor} {r:?}"),
                Err(e) => {
                    assert!(!change.allowed, "{actor} {r:?}");
                    assert_eq!(access_denied_reason(&e), change.reason);
                }
            }
        }
    }
}

// ===== R21: every decision carries its reason =====

#[test]
fn r21_every_reason_is_given_by_the_read_model_check() {
    let mut h = Harness::with_settings(decoupled(false, false));
    h.admin("ada");
    h.all_data_user("bob");
    h.assigned_only_users(&["olga", "otto", "oona", "ivy"]);
    h.create_contact("c1", Some("olga"));
    h.create_opportunity("o1", "c1", Some("oona"));
    h.follow(&contact("c1"), &["otto"]);
    h.follow(&opportunity("o1"), &["ivy"]);
    h.deactivate("ivy");
    let (c1, o1) = (contact("c1"), opportunity("o1"));

    let cases = [
        (
            "ada",
            Action::ChangeOwner,
            &o1,
            allowed(Reason::Admin),
            "admin",
        ),
        (
            "bob",
            Action::Edit,
            &o1,
            allowed(Reason::AllData),
            "all_data",
        ),
        (
            "oona",
            Action::ChangeOwner,
            &o1,
            allowed(Reason::Owner),
            "owner",
        ),
        (
            "otto",
            Action::View,
            &c1,
            allowed(Reason::Follower),
            "follower",
        ),
        (
            "olga",
            Action::Edit,
            &o1,
            allowed(Reason::ContactOwner),
            "contact_owner",
        ),
        (
            "otto",
            Action::ManageFollowers,
            &o1,
            allowed(Reason::ContactFollower),
            "contact_follower",
        ),
        (
            "ghost",
            Action::View,
            &c1,
            denied(Reason::NoMembership),
            "no_membership",
        ),
        (
            "ivy",
            Action::View,
            &o1,
            denied(Reason::Inactive),
            "inactive",
        ),
        (
            "oona",
            Action::View,
            &c1,
            denied(Reason::NotAssigned),
            "not_assigned",
        ),
        (
            "bob",
            Action::ChangeOwner,
            &c1,
            denied(Reason::OwnerChangeNotAllowed),
            "owner_change_not_allowed",
        ),
    ];
    for (who, action, record, expected, name) in cases {
        let got = h.check(who, action, record);
        assert_eq!(got, expected, "{who} {action} {record:?}");
        assert_eq!(got.reason.as_str(), name);
        assert_eq!(serde_json::to_value(got.reason).unwrap(), name);
    }
    let got = h.check("bob", Action::View, &opportunity("nope"));
    assert_eq!(got, denied(Reason::UnknownRecord));
    assert_eq!(got.reason.as_str(), "unknown_record");
}

/// Membership, settings, record, action, and the decision expected.
type Case<'a> = (
    Option<&'a Membership>,
    &'a AccountSettings,
    Option<&'a RecordAccess<'a>>,
    Action,
    AccessDecision,
);

#[test]
fn r21_every_reason_is_given_by_the_access_rule() {
    let member = |role, data_scope, active| Membership {
        name: "N".into(),
        email: "n@x.test".into(),
        role,
        data_scope,
        active,
    };
    let me = user("me");
    let other = user("other");
    let entry = |u: &UserId| Follower {
        user: u.clone(),
        added_at: at(),
        added_by: Actor::System,
        how: AddedHow::System,
    };
    let on = AccountSettings::default();
    let off = AccountSettings {
        contact_access_includes_opportunities: false,
        ..on
    };
    let nobody: Vec<Follower> = Vec::new();
    let me_following = vec![entry(&me)];
    let holders = |owner: Option<&'static str>, followers| Holders {
        owner: match owner {
            Some("me") => Some(&me),
            Some(_) => Some(&other),
            None => None,
        },
        followers,
    };
    let nobody = nobody.as_slice();
    let me_following = me_following.as_slice();

    let plain = RecordAccess {
        record: holders(Some("other"), nobody),
        contact: None,
    };
    let unassigned = RecordAccess {
        record: holders(None, nobody),
        contact: None,
    };
    let owned = RecordAccess {
        record: holders(Some("me"), nobody),
        contact: None,
    };
    let followed = RecordAccess {
        record: holders(Some("other"), me_following),
        contact: None,
    };
    let via_contact_owner = RecordAccess {
        record: holders(Some("other"), nobody),
        contact: Some(holders(Some("me"), nobody)),
    };
    let via_contact_follower = RecordAccess {
        record: holders(None, nobody),
        contact: Some(holders(Some("other"), me_following)),
    };
    let admin = member(Role::Admin, DataScope::OnlyAssigned, true);
    let all = member(Role::User, DataScope::All, true);
    let assigned = member(Role::User, DataScope::OnlyAssigned, true);
    let inactive_admin = member(Role::Admin, DataScope::All, false);
    use Action::*;
    let cases: Vec<Case<'_>> = vec![
        (None, &on, Some(&plain), View, denied(Reason::NoMembership)),
        (
            Some(&inactive_admin),
            &on,
            Some(&plain),
            View,
            denied(Reason::Inactive),
        ),
        (Some(&admin), &on, None, View, denied(Reason::UnknownRecord)),
        (
            Some(&admin),
            &on,
            Some(&plain),
            ChangeOwner,
            allowed(Reason::Admin),
        ),
        (
            Some(&all),
            &on,
            Some(&plain),
            Edit,
            allowed(Reason::AllData),
        ),
        (
            Some(&all),
            &on,
            Some(&unassigned),
            ChangeOwner,
            allowed(Reason::AllData),
        ),
        (
            Some(&all),
            &on,
            Some(&plain),
            ChangeOwner,
            denied(Reason::OwnerChangeNotAllowed),
        ),
        (
            Some(&all),
            &on,
            Some(&followed),
            ChangeOwner,
            denied(Reason::OwnerChangeNotAllowed),
        ),
        (
            Some(&assigned),
            &on,
            Some(&owned),
            ChangeOwner,
            allowed(Reason::Owner),
        ),
        (
            Some(&assigned),
            &on,
            Some(&owned),
            View,
            allowed(Reason::Owner),
        ),
        (
            Some(&assigned),
            &on,
            Some(&followed),
            ManageFollowers,
            allowed(Reason::Follower),
        ),
        (
            Some(&assigned),
            &on,
            Some(&followed),
            ChangeOwner,
            denied(Reason::OwnerChangeNotAllowed),
        ),
        (
            Some(&assigned),
            &on,
            Some(&via_contact_owner),
            Edit,
            allowed(Reason::ContactOwner),
        ),
        (
            Some(&assigned),
            &on,
            Some(&via_contact_follower),
            View,
            allowed(Reason::ContactFollower),
        ),
        (
            Some(&assigned),
            &off,
            Some(&via_contact_owner),
            Edit,
            denied(Reason::NotAssigned),
        ),
        (
            Some(&assigned),
            &off,
            Some(&via_contact_follower),
            View,
            denied(Reason::NotAssigned),
        ),
        (
            Some(&assigned),
            &on,
            Some(&plain),
            View,
            denied(Reason::NotAssigned),
        ),
        (
            Some(&assigned),
            &on,
            Some(&unassigned),
            ChangeOwner,
            denied(Reason::NotAssigned),
        ),
    ];
    for (i, (m, s, r, action, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            access::decide_access(&me, m, s, r, action),
            expected,
            "case {i}"
        );
    }
}

#[test]
fn r21_a_refused_command_names_the_reason() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", Some("olga"));
    let c1 = contact("c1");
    let e = h
        .when(h.cmd(by("bob"), change_owner(&c1, Some("bob"))))
        .then_error(ErrorCode::AccessDenied)
        .clone();
    let body = ErrorBody::from(&e);
    assert_eq!(body.reason, Some(Reason::OwnerChangeNotAllowed));
    assert!(
        body.message.contains("only an admin or the current owner"),
        "{}",
        body.message
    );
}

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
        assert_eq!(e.v, EVENT_SCHEMA);
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

// ===== R24: bad input =====

#[test]
fn r24_domain_errors_have_stable_codes() {
    let c1 = contact("c1");
    let cases: Vec<(DomainError, &str)> = vec![
        (DomainError::UnknownAccount(account("a")), "unknown_account"),
        (DomainError::AccountExists(account("a")), "account_exists"),
        (
            DomainError::UnknownUser {
                account: account("a"),
                user: user("u"),
            },
            "unknown_user",
        ),
        (DomainError::MemberExists(user("u")), "member_exists"),
        (DomainError::InactiveUser(user("u")), "inactive_user"),
        (DomainError::UnknownRecord(c1.clone()), "unknown_record"),
        (DomainError::RecordExists(c1.clone()), "record_exists"),
        (
            DomainError::FollowerLimit {
                record: c1.clone(),
                current: 10,
                adding: 1,
                free: 0,
            },
            "follower_limit",
        ),
        (
            DomainError::AccessDenied {
                actor: by("u"),
                action: Action::Edit,
                record: c1.clone(),
                reason: Reason::NotAssigned,
            },
            "access_denied",
        ),
        (
            DomainError::NotPermitted {
                actor: by("u"),
                what: "x",
                why: "y",
            },
            "access_denied",
        ),
        (
            DomainError::OwnersCoupled {
                contact_owner: "`u`".into(),
            },
            "owners_coupled",
        ),
    ];
    for (e, code) in cases {
        assert_eq!(e.code().as_str(), code);
        assert_eq!(serde_json::to_value(e.code()).unwrap(), code);
        let body = ErrorBody::from(&e);
        assert_eq!(body.code, e.code());
        assert!(body.message.len() > 10, "a sentence: {}", body.message);
    }
}

#[test]
fn r24_a_rejected_command_yields_no_events() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", None);
    let (model, log) = (h.model.clone(), h.log.len());
    h.when(h.cmd(system(), add_followers(&contact("c1"), &["ghost"])))
        .then_error(ErrorCode::UnknownUser);
    h.when(h.cmd(by("olga"), change_owner(&contact("c1"), Some("olga"))))
        .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(system(), create_contact("c1", None, &[])))
        .then_error(ErrorCode::RecordExists);
    h.when(h.cmd(
        by("olga"),
        OpenAccount {
            name: text("x"),
            settings: SettingsChange::default(),
        },
    ))
    .then_error(ErrorCode::AccessDenied);
    h.when(h.cmd(
        system(),
        OpenAccount {
            name: text("x"),
            settings: SettingsChange::default(),
        },
    ))
    .then_error(ErrorCode::AccountExists);
    assert_eq!(h.model, model);
    assert_eq!(h.log.len(), log);
    assert!(h.pending().is_empty());
}

fn request(fields: &str) -> String {
    format!(
        r#"{{"command_id":"{}","actor":{{"kind":"user","user":"bob"}}{fields}}}"#,
        CommandId::new()
    )
}

fn parse_err(name: &str, body: &str) -> (Option<CommandId>, ErrorBody) {
    parse_command(ACME, name, body.as_bytes(), at()).unwrap_err()
}

#[test]
fn r24_the_wire_parser_accepts_a_well_formed_command() {
    let mut h = Harness::new();
    h.all_data_user("bob");
    h.assigned_only_user("olga");
    h.create_contact("c1", None);
    let id = CommandId::new();
    let body = format!(
        r#"{{"command_id":"{id}","actor":{{"kind":"user","user":"bob"}},"record":{{"kind":"contact","id":"c1"}},"users":["olga"]}}"#
    );
    let cmd = parse_command(ACME, "add_followers", body.as_bytes(), at()).unwrap();
    assert_eq!(cmd.meta.command_id, id);
    assert_eq!(cmd.meta.actor, by("bob"));
    assert_eq!(cmd.meta.causation, None);
    assert_eq!(cmd.meta.correlation, id.0, "defaults to the command id");
    h.when(cmd)
        .then_events(&[added_manually(&contact("c1"), &["olga"])]);
}

#[test]
fn r24_the_wire_parser_rejects_unknown_fields() {
    let (id, e) = parse_err(
        "add_followers",
        &request(r#","record":{"kind":"contact","id":"c1"},"users":["olga"],"extra":1"#),
    );
    assert!(id.is_some(), "the command id is echoed");
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    assert!(e.message.contains("extra"), "{}", e.message);
    let (_, e) = parse_err(
        "change_settings",
        &request(r#","allow_different_owner":true"#),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_err(
        "add_followers",
        r#"{"command_id":"0190f5f0-0000-7000-8000-000000000000","actor":{"kind":"user","user":"bob","role":"admin"},"record":{"kind":"contact","id":"c1"},"users":["olga"]}"#,
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
}

#[test]
fn r24_the_wire_parser_requires_a_command_id() {
    let (id, e) = parse_err(
        "add_followers",
        r#"{"actor":{"kind":"user","user":"bob"},"record":{"kind":"contact","id":"c1"},"users":["olga"]}"#,
    );
    assert_eq!(id, None);
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    assert!(e.message.contains("command_id"), "{}", e.message);
    let (id, e) = parse_err(
        "add_followers",
        r#"{"command_id":"not-a-uuid","actor":{"kind":"user","user":"bob"},"users":["olga"]}"#,
    );
    assert_eq!(id, None);
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_err("add_followers", "not json");
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_err("add_followers", "[1,2]");
    assert_eq!(e.code, ErrorCode::MalformedRequest);
}

#[test]
fn r24_the_wire_parser_rejects_bad_ids() {
    for fields in [
        r#","record":{"kind":"contact","id":"c.1"},"users":["olga"]"#,
        r#","record":{"kind":"contact","id":"c1"},"users":["ol ga"]"#,
        r#","record":{"kind":"contact","id":"c1"},"users":[""]"#,
        r#","record":{"kind":"lead","id":"c1"},"users":["olga"]"#,
    ] {
        let (id, e) = parse_err("add_followers", &request(fields));
        assert!(id.is_some());
        assert_eq!(e.code, ErrorCode::MalformedRequest, "{fields}");
    }
    let long = "x".repeat(65);
    let (_, e) = parse_err(
        "create_contact",
        &request(&format!(r#","contact":"{long}""#)),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_command(
        "ac>me",
        "create_contact",
        request(r#","contact":"c1""#).as_bytes(),
        at(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_err(
        "create_contact",
        r#"{"command_id":"0190f5f0-0000-7000-8000-000000000000","actor":{"kind":"user","user":"b*b"},"contact":"c1"}"#,
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
}

#[test]
fn r24_the_wire_parser_rejects_unknown_commands() {
    for name in [
        "frobnicate",
        "align_owner",
        "sync_follower",
        "",
        "ADD_FOLLOWERS",
    ] {
        let (id, e) = parse_err(name, &request(r#","record":{"kind":"contact","id":"c1"}"#));
        assert!(id.is_some());
        assert_eq!(e.code, ErrorCode::UnknownCommand, "{name:?}");
    }
}

#[test]
fn r24_the_wire_parser_rejects_too_large_and_empty_requests() {
    let many: Vec<String> = (0..=MAX_USERS_PER_COMMAND)
        .map(|i| format!("\"u{i}\""))
        .collect();
    let (_, e) = parse_err(
        "add_followers",
        &request(&format!(
            r#","record":{{"kind":"contact","id":"c1"}},"users":[{}]"#,
            many.join(",")
        )),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_err(
        "add_followers",
        &request(r#","record":{"kind":"contact","id":"c1"},"users":[]"#),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let name = "n".repeat(MAX_TEXT_LEN + 1);
    let (_, e) = parse_err(
        "register_member",
        &request(&format!(
            r#","user":"u1","name":"{name}","email":"e@x","role":"user","data_scope":"all""#
        )),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    let (_, e) = parse_err(
        "add_followers",
        &request(r#","record":{"kind":"contact","id":"c1"}"#),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest, "users is required");
}

/// The bounds of free text and user lists live in their types (`bounded`); an error names the
/// command and the field.
#[test]
fn r24_the_wire_parser_names_the_field_that_breaks_a_bound() {
    let name = "n".repeat(MAX_TEXT_LEN + 1);
    let (_, e) = parse_err(
        "register_member",
        &request(&format!(
            r#","user":"u1","name":"{name}","email":"e@x","role":"user","data_scope":"all""#
        )),
    );
    assert_eq!(
        e.message,
        "invalid `register_member` request: `name`: must have 1 to 256 characters, not 257"
    );
    let (_, e) = parse_err(
        "register_member",
        &request(r#","user":"u1","name":"N","email":"e@x\n","role":"user","data_scope":"all""#),
    );
    assert_eq!(
        e.message,
        "invalid `register_member` request: `email`: must not contain control characters; found U+000A"
    );
    let (_, e) = parse_err(
        "add_followers",
        &request(r#","record":{"kind":"contact","id":"c1"},"users":[]"#),
    );
    assert_eq!(
        e.message,
        "invalid `add_followers` request: `users`: needs at least one user"
    );
    let many: Vec<String> = (0..=MAX_USERS_PER_COMMAND)
        .map(|_| "\"u\"".to_owned())
        .collect();
    let (_, e) = parse_err(
        "create_contact",
        &request(&format!(
            r#","contact":"c1","followers":[{}]"#,
            many.join(",")
        )),
    );
    assert_eq!(
        e.message,
        "invalid `create_contact` request: `followers`: names 101 users; at most 100 are accepted"
    );
    let (_, e) = parse_err("remove_followers", &request(r#","users":["olga"]"#));
    assert_eq!(
        e.message,
        "`remove_followers` needs a `record`; only a workflow may send it without one (R17)"
    );
    let (_, e) = parse_err(
        "change_owner",
        &request(r#","record":{"kind":"contact","id":"c1"}"#),
    );
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    assert!(e.message.contains("`owner`"), "{}", e.message);
}

/// Each command's name is written once: every name a request may use is read by its command
/// (here, which refuses an unknown field), and the follower sync's names are not among them.
/// (`wire_never_panics` checks that a parsed command reports the name it was parsed by.)
#[test]
fn r24_every_command_name_parses_to_a_command_of_that_name() {
    use followers_shared::command::{AccountCommand, RecordCommand, SyncCommand};
    use followers_shared::wire::COMMAND_NAMES;
    assert_eq!(
        COMMAND_NAMES.len(),
        AccountCommand::NAMES.len() + RecordCommand::NAMES.len()
    );
    for name in SyncCommand::NAMES {
        assert!(!COMMAND_NAMES.contains(name), "{name}");
    }
    for name in COMMAND_NAMES {
        let (_, e) = parse_err(name, &request(r#","surely_unknown":1"#));
        assert_eq!(
            e.code,
            ErrorCode::MalformedRequest,
            "{name} is a known command"
        );
    }
}

#[test]
fn r24_deciding_the_same_command_twice_gives_the_same_events() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", None);
    let cmd = h.cmd(system(), add_followers(&contact("c1"), &["olga"]));
    let first = followers_shared::decision::decide_command(&h.model, &cmd).unwrap();
    let second = followers_shared::decision::decide_command(&h.model, &cmd).unwrap();
    assert_eq!(first, second, "same ids, same bodies");
}

#[test]
fn r24_the_model_remembers_every_stored_command_and_applies_a_commit_once() {
    let mut h = Harness::new();
    h.assigned_only_users(&["olga"]);
    h.create_contact("c1", None);
    let cmd = h.cmd(system(), add_followers(&contact("c1"), &["olga"]));
    h.given(cmd.clone());
    let at_position = h.position();
    assert_eq!(
        h.model
            .command(&cmd.account, &cmd.meta.command_id)
            .map(|l| l.position),
        Some(at_position)
    );
    assert_eq!(h.model.command(&cmd.account, &CommandId::new()), None);
    // R1: a command id is a key only within its account.
    assert_eq!(
        h.model.command(&account(GLOBEX), &cmd.meta.command_id),
        None
    );
    let before = h.model.clone();
    let again = h.log.last().unwrap().clone();
    h.model.apply(&again);
    assert_eq!(h.model, before, "a commit seen twice is applied once");
}

/// The follower sync's command ids are pinned: a reaction already in some history must get the
/// same id when re-run by a later version, or it would be applied again.
#[test]
fn r24_sync_command_ids_never_change_between_versions() {
    use followers_shared::event::SyncAction;
    use followers_shared::ids::EventId;
    let trigger = EventId(uuid::Uuid::from_u128(
        0x0192_f0a0_0000_7000_8000_0000_0000_0001,
    ));
    let body = SyncFollower {
        record: contact("c1"),
        user: user("bob"),
        action: SyncAction::Add,
        trigger: opportunity("o1"),
    };
    let purpose = followers_shared::sync::purpose(&body.into());
    assert_eq!(purpose, "sync:contact:c1:bob:Add");
    assert_eq!(
        CommandId::derive(trigger, &purpose).to_string(),
        "a5baaef7-eb83-5ff4-a858-b2d9fb10370a"
    );
    let align = AlignOwner {
        record: opportunity("o1"),
        owner: None,
        with: contact("c1"),
    };
    assert_eq!(
        followers_shared::sync::purpose(&align.into()),
        "align:opportunity:o1"
    );
}

#[test]
fn r24_sync_reactions_are_derived_deterministically_so_a_retry_applies_once() {
    let mut h = coupled_account();
    h.set_owner(&contact("c1"), Some("carl"));
    let stored = h.log.last().unwrap().clone();
    let first = reactions(&h.model, &stored, at());
    let second = reactions(&h.model, &stored, at());
    assert_eq!(first.len(), 2);
    assert_eq!(first, second);
    let ids: std::collections::HashSet<_> = first.iter().map(|c| c.meta.command_id).collect();
    assert_eq!(ids.len(), first.len(), "one id per reaction");
}
