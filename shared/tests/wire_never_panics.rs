//! R24: any bytes that arrive over the network get a reply, never a panic. The parser is fed
//! arbitrary bytes and arbitrary JSON objects (with the real field names mixed in) for every
//! command name, and must return a command or an error with a stable code.
#![allow(clippy::unwrap_used)]

use chrono::Utc;
use followers_shared::error::ErrorCode;
use followers_shared::wire::{COMMAND_NAMES, parse_command};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("command_id".to_owned()),
        Just("actor".to_owned()),
        Just("record".to_owned()),
        Just("users".to_owned()),
        Just("owner".to_owned()),
        Just("contact".to_owned()),
        Just("user".to_owned()),
        "[a-z_]{1,12}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("0192f0a0-0000-7000-8000-000000000000")),
        Just(json!({"kind": "user", "user": "u1"})),
        Just(json!({"kind": "contact", "id": "c1"})),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(COMMAND_NAMES.to_vec()).prop_map(str::to_owned),
        ".{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_are_rejected_not_panicked_on(bytes in prop::collection::vec(any::<u8>(), 0..256), name in name()) {
        if let Err((_, e)) = parse_command("acme", &name, &bytes, Utc::now()) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn arbitrary_objects_parse_or_get_a_stable_code(
        fields in prop::collection::btree_map(field_name(), value(), 0..6),
        name in name(),
        account in ".{0,12}",
    ) {
        let body = serde_json::to_vec(&Value::Object(fields.into_iter().collect::<Map<_, _>>())).unwrap();
        match parse_command(&account, &name, &body, Utc::now()) {
            Ok(cmd) => prop_assert_eq!(cmd.body.name(), name.as_str()),
            Err((_, e)) => prop_assert!(matches!(
                e.code,
                ErrorCode::MalformedRequest | ErrorCode::UnknownCommand
            ), "unexpected code {:?}", e.code),
        }
    }
}
