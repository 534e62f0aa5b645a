//! Followers (R11-R18): the limit, adding and removing, who may, workflows, the listing.

use followers_shared::access::{Action, Reason};
use followers_shared::command::{CommandBody, Target};
use followers_shared::error::{DomainError, ErrorCode};
use followers_shared::event::EventBody;
use followers_shared::ids::CommandId;
use followers_shared::model::{Actor, AddedHow, Follower};
use followers_shared::wire::{CommandReply, ErrorBody, Outcome, parse_command};

use crate::shorthands::{
    access_denied_reason, added, added_manually, allowed, denied, removed, ten_users,
};
use crate::support::*;

// ===== R11: 0 to 10 followers =====

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
    assert_eq!(*h.follower(&o1, "olga").unwrap().added_by, by("bob"));
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
            until: Default::default(),
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
        until: None,
        until_set_by: None,
        user: user(u),
        added_at: at(),
        added_by: added_by.into(),
        how: how.into(),
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
