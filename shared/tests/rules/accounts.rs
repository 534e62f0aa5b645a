//! Accounts and users (R1-R3): accounts never mix, memberships, only active users hold records.

use followers_shared::access::{Action, Reason};
use followers_shared::error::ErrorCode;
use followers_shared::event::EventBody;
use followers_shared::model::{DataScope, Membership, Role, SettingsChange};

use crate::shorthands::{access_denied_reason, added_manually, allowed, denied, removed};
use crate::support::*;

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
    let (f, m) = &view.followers[0];
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
