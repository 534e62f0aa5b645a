//! Our own values as JSON.
//!
//! Serializing a type of this project to JSON cannot fail: every map key is a string and no
//! `Serialize` impl of ours returns an error. That is said once, here. A caller must never fall
//! back to an empty body (an empty reply, an empty commit, an empty hash input would each be
//! worse than a crash that shows the bug).

use serde::Serialize;

/// `value` as compact JSON bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("the project's own types always serialize to JSON")
}

/// `value` as indented JSON text.
pub fn to_string_pretty<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("the project's own types always serialize to JSON")
}

/// `value` as compact JSON text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("the project's own types always serialize to JSON")
}
