//! Access (R19-R21): the actions, the access decision and its reason.

use followers_shared::access::{
    self, AccessDecision, Action, FollowerList, Holders, Reason, RecordAccess,
};
use followers_shared::error::ErrorCode;
use followers_shared::hint::{AccessHint, Grant};
use followers_shared::ids::UserId;
use followers_shared::model::{
    AccountSettings, Actor, AddedHow, DataScope, Follower, Membership, Role, SettingsChange,
};
use followers_shared::wire::ErrorBody;

use crate::shorthands::{access_denied_reason, added_manually, allowed, denied};
use crate::support::*;

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
        until: None,
        until_set_by: None,
        user: u.clone(),
        added_at: at(),
        added_by: Actor::System.into(),
        how: AddedHow::System.into(),
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
        followers: FollowerList::Listed(followers),
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

// ===== R21: how to get a denied access =====

/// The grant codes and the granters' ids of a hint.
fn asked(hint: &AccessHint) -> (Vec<Grant>, Option<&str>, Vec<&str>) {
    let owner = hint.owner.as_ref().map(|o| o.user.as_str());
    let admins = hint.admins.iter().map(|a| a.user.as_str()).collect();
    (hint.grants.clone(), owner, admins)
}

#[test]
fn r21_a_user_not_assigned_is_told_to_ask_the_owner_or_an_admin_to_add_them() {
    let mut h = Harness::new();
    h.admin("ann");
    h.assigned_only_users(&["bob", "dee"]);
    h.create_contact("c1", Some("bob"));
    h.create_opportunity("o1", "c1", None);

    let hint = h.hint("dee", Action::Edit, &contact("c1")).expect("a hint");
    let scope = Grant::DataScopeAll;
    assert_eq!(
        asked(&hint),
        (vec![Grant::AddFollower, scope], Some("bob"), vec!["ann"])
    );
    assert_eq!(
        hint.message,
        "ask User bob (owner) or an admin (User ann) to add you as a follower of the \
         record, or to give you data scope `all` (an admin only)"
    );
    // R20: an opportunity is also reached through its contact.
    let hint = h
        .hint("dee", Action::View, &opportunity("o1"))
        .expect("a hint");
    let through_contact = vec![Grant::AddFollower, Grant::AddContactFollower, scope];
    assert_eq!(hint.grants, through_contact);
    // An allowed access has no hint.
    assert_eq!(h.hint("bob", Action::Edit, &contact("c1")), None);
}

#[test]
fn r21_an_owner_change_is_asked_of_the_owner_or_an_admin() {
    let mut h = Harness::new();
    h.admin("ann");
    h.all_data_user("cid");
    h.assigned_only_users(&["bob", "dee"]);
    h.create_contact("c1", Some("bob"));
    h.create_contact("c2", None);

    // R5: a member with scope `all` cannot take an assigned record.
    let hint = h
        .hint("cid", Action::ChangeOwner, &contact("c1"))
        .expect("a hint");
    assert_eq!(asked(&hint).0, [Grant::BecomeOwner]);
    assert_eq!(asked(&hint).1, Some("bob"));
    // R5: an unassigned record may be taken with scope `all`.
    let hint = h
        .hint("dee", Action::ChangeOwner, &contact("c2"))
        .expect("a hint");
    assert_eq!(hint.grants, [Grant::BecomeOwner, Grant::DataScopeAll]);
    assert_eq!(hint.owner, None, "nobody owns c2");
}

#[test]
fn r21_a_deactivated_or_unknown_user_is_sent_to_an_admin_and_an_unknown_record_gets_no_hint() {
    let mut h = Harness::new();
    h.admin("ann");
    h.assigned_only_users(&["bob", "dee"]);
    h.create_contact("c1", Some("bob"));
    h.deactivate("dee");
    h.deactivate("bob");

    let hint = h.hint("dee", Action::View, &contact("c1")).expect("a hint");
    assert_eq!(
        asked(&hint),
        (vec![Grant::ReactivateMember], None, vec!["ann"])
    );
    let hint = h.hint("zed", Action::View, &contact("c1")).expect("a hint");
    assert_eq!(hint.grants, [Grant::RegisterMember]);
    // R3: a deactivated owner is not named as someone to ask.
    h.assigned_only_user("eve");
    let hint = h.hint("eve", Action::View, &contact("c1")).expect("a hint");
    assert_eq!(hint.owner, None);
    assert_eq!(h.hint("eve", Action::View, &contact("c9")), None);
}
