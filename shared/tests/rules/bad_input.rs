//! Bad input (R24): stable error codes, the strict wire parser, retries applied once.

use followers_shared::access::{Action, Reason};
use followers_shared::error::{DomainError, ErrorCode};
use followers_shared::ids::CommandId;
use followers_shared::model::SettingsChange;
use followers_shared::sync::reactions;
use followers_shared::wire::{ErrorBody, MAX_TEXT_LEN, MAX_USERS_PER_COMMAND, parse_command};

use crate::shorthands::{added_manually, coupled_account};
use crate::support::*;

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
            .command_candidates(&cmd.account, &cmd.meta.command_id),
        [at_position]
    );
    assert!(
        h.model
            .command_candidates(&cmd.account, &CommandId::new())
            .is_empty()
    );
    // R1: a command id is a key only within its account.
    assert!(
        h.model
            .command_candidates(&account(GLOBEX), &cmd.meta.command_id)
            .is_empty()
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
