//! Ownership (R4-R10): one owner, who may change it, coupled owners and the follower sync.

use followers_shared::access::{Action, Reason};
use followers_shared::error::ErrorCode;
use followers_shared::event::{EventBody, SyncAction};
use followers_shared::model::{
    AccountSettings, Actor, AddedHow, MAX_FOLLOWERS, SettingsChange, SkipReason,
};

use crate::shorthands::{
    access_denied_reason, aligned, allowed, coupled_account, denied, full, owner_changed,
    r8_account, skipped, sync_added, sync_removed, ten_users,
};
use crate::support::*;

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
    assert_eq!(*bob.how, AddedHow::OwnerSync { from: o1.clone() });
    assert_eq!(*bob.added_by, Actor::System);

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
    assert_eq!(*h.follower(&c1, "eve").unwrap().how, AddedHow::Manual);
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
        h.follower(&c1, "dora").map(|f| (*f.how).clone()),
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
    assert_eq!(*bob.how, AddedHow::OwnerSync { from: c1.clone() });
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
