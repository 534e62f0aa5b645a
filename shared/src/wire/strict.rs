//! The one deserialization policy of every request, over NATS and HTTP.
//!
//! serde's derived `Deserialize` is lenient in ways a protocol must not be. A JSON array is
//! accepted where a struct is expected, its fields taken by position, so `"record": ["contact",
//! "c1"]` reads as a record and `"settings": [true]` silently decouples owners. And a map of
//! values keeps the last of two equal keys, so `"command_id": A, "command_id": B` is applied as B.
//! Either way a request would mean something other than what a reader of it sees.
//!
//! So every request is read through [`Strict`], a deserializer adapter that wraps the JSON
//! deserializer at every depth (inside objects, arrays, options and enums) and refuses:
//! - a JSON array where the type asks for an object (a struct, a map, a struct variant);
//! - an object that names the same key twice.
//!
//! Everything else stays the types' business: unknown fields (`deny_unknown_fields`), ids
//! (`ids.rs`), lengths. Types that serde reads through `deserialize_any` (internally tagged
//! enums) cannot say that they want an object, so request types avoid that representation (see
//! [`crate::model::Actor`]).
//!
//! Errors name the field: the fast path reads the request once; only when it fails is it read
//! again with `serde_path_to_error` to learn where (`checks[0].record`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{
    self, Deserialize, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde_json::Value;

/// Why a request could not be read: where, and what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictError {
    /// The field's path, e.g. `checks[0].record`; empty for the request itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for StrictError {}

/// Reads a request body strictly.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StrictError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    match T::deserialize(Strict(&mut json)).and_then(|t| json.end().map(|()| t)) {
        Ok(t) => Ok(t),
        Err(_) => {
            let mut json = serde_json::Deserializer::from_slice(bytes);
            let err = match serde_path_to_error::deserialize::<_, T>(Strict(&mut json)) {
                Ok(_) => return json.end().map_err(|e| error("", &e)).and(Err(trailing())),
                Err(e) => e,
            };
            Err(error(&err.path().to_string(), err.inner()))
        }
    }
}

/// Reads one already parsed value strictly; `field` prefixes the path of an error.
pub fn from_value<T: DeserializeOwned>(field: &str, value: &Value) -> Result<T, StrictError> {
    match T::deserialize(Strict(value)) {
        Ok(t) => Ok(t),
        Err(_) => {
            let err = match serde_path_to_error::deserialize::<_, T>(Strict(value)) {
                Ok(t) => return Ok(t),
                Err(e) => e,
            };
            let inner = err.path().to_string();
            let path = if inner == "." {
                field.to_owned()
            } else if field.is_empty() || inner.starts_with('[') {
                format!("{field}{inner}")
            } else {
                format!("{field}.{inner}")
            };
            Err(error(&path, err.inner()))
        }
    }
}

/// Reads a request strictly from a deserializer other than a JSON body's (the fields of an
/// HTTP request); `source` makes it afresh for the second reading that names the field. It
/// reports serde_json's errors, so a field is refused in the same words as in a JSON body, less
/// the line and column.
pub fn from_deserializer<'de, T, D>(source: impl Fn() -> D) -> Result<T, StrictError>
where
    T: Deserialize<'de>,
    D: Deserializer<'de, Error = serde_json::Error>,
{
    match T::deserialize(Strict(source())) {
        Ok(t) => Ok(t),
        Err(_) => match serde_path_to_error::deserialize::<_, T>(Strict(source())) {
            Ok(t) => Ok(t),
            Err(e) => Err(error(&e.path().to_string(), e.inner())),
        },
    }
}

fn trailing() -> StrictError {
    StrictError {
        path: String::new(),
        message: "trailing characters after the JSON value".to_owned(),
    }
}

fn error(path: &str, e: &serde_json::Error) -> StrictError {
    StrictError {
        path: if path == "." {
            String::new()
        } else {
            path.to_owned()
        },
        message: e.to_string(),
    }
}

/// The message for an array given where an object is expected.
const ARRAY_FOR_OBJECT: &str = "a JSON array where an object is expected";

/// A deserializer that applies the policy to `D` and to everything nested in it.
#[derive(Debug)]
pub struct Strict<D>(pub D);

/// Forwards `deserialize_*` methods whose visitor may accept an array.
macro_rules! forward_any {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Guard { inner: visitor, object: false })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward_any! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_identifier
        deserialize_ignored_any
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Guard::object(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_struct(name, fields, Guard::object(visitor))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Guard::any(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Guard::any(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Guard::any(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Guard::any(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Guard::any(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Wraps a visitor: refuses an array when `object`, and wraps whatever it visits.
struct Guard<V> {
    inner: V,
    object: bool,
}

impl<V> Guard<V> {
    fn any(inner: V) -> Self {
        Self {
            inner,
            object: false,
        }
    }

    fn object(inner: V) -> Self {
        Self {
            inner,
            object: true,
        }
    }
}

macro_rules! forward_visit {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Guard<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64
        visit_i128: i128 visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64
        visit_u128: u128 visit_f32: f32 visit_f64: f64 visit_char: char visit_str: &str
        visit_borrowed_str: &'de str visit_string: String visit_bytes: &[u8]
        visit_borrowed_bytes: &'de [u8] visit_byte_buf: Vec<u8>
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.object {
            return Err(de::Error::custom(ARRAY_FOR_OBJECT));
        }
        self.inner.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(StrictMap {
            inner: map,
            seen: HashSet::new(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(StrictEnum(data))
    }
}

/// A seed whose deserializer gets the policy too.
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// A map that remembers its keys to refuse a repeated one.
struct StrictMap<'de, A> {
    inner: A,
    seen: HashSet<Cow<'de, str>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.inner.next_key_seed(KeySeed)? else {
            return Ok(None);
        };
        if !self.seen.insert(key.clone()) {
            return Err(de::Error::custom(format_args!(
                "the key `{}` appears more than once",
                key.chars().take(64).collect::<String>()
            )));
        }
        match key {
            Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)),
            Cow::Owned(k) => seed.deserialize(StringDeserializer::new(k)),
        }
        .map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Reads an object key, borrowing it from the request where it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

struct StrictEnum<A>(A);

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for StrictEnum<A> {
    type Error = A::Error;
    type Variant = StrictVariant<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(seed)
            .map(|(v, access)| (v, StrictVariant(access)))
    }
}

struct StrictVariant<A>(A);

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for StrictVariant<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Guard::any(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Guard::object(visitor))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: Vec<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Option<Inner>,
        list: Vec<Inner>,
    }

    #[test]
    fn objects_and_arrays_are_read_where_the_type_wants_them() {
        let o: Outer =
            from_slice(br#"{"inner": {"a": 1, "b": [2]}, "list": [{"a": 3, "b": []}]}"#).unwrap();
        assert_eq!(o.list[0].a, 3);
    }

    #[test]
    fn an_array_in_place_of_an_object_is_refused_with_its_path() {
        let e = from_slice::<Outer>(br#"{"inner": [1, [2]], "list": []}"#).unwrap_err();
        assert_eq!(e.path, "inner");
        assert!(e.message.contains(ARRAY_FOR_OBJECT), "{e}");
        let e = from_slice::<Outer>(br#"{"inner": null, "list": [[1, []]]}"#).unwrap_err();
        assert_eq!(e.path, "list[0]");
        let e = from_slice::<Outer>(br#"[null, []]"#).unwrap_err();
        assert_eq!(e.path, "");
        assert!(from_slice::<BTreeMap<String, u32>>(b"[]").is_err());
    }

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        let e = from_slice::<Value>(br#"{"x": {"y": 1, "y": 2}}"#).unwrap_err();
        assert!(e.to_string().contains("`y` appears more than once"), "{e}");
        assert!(from_slice::<Inner>(br#"{"a": 1, "a": 1, "b": []}"#).is_err());
        let e = from_slice::<Value>(br#"{"k\u0079": 1, "ky": 2}"#).unwrap_err();
        assert!(e.to_string().contains("`ky`"), "{e}");
    }

    #[test]
    fn a_parsed_value_gets_the_same_policy_and_a_prefixed_path() {
        let v = serde_json::json!({"a": 1, "b": [1]});
        assert!(from_value::<Inner>("x", &v).is_ok());
        let e = from_value::<Outer>("req", &serde_json::json!({"inner": [1, []], "list": []}))
            .unwrap_err();
        assert_eq!(e.path, "req.inner");
        let e = from_value::<Inner>("req", &serde_json::json!([1, []])).unwrap_err();
        assert_eq!(e.path, "req");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert!(from_slice::<Inner>(br#"{"a": 1, "b": []} x"#).is_err());
    }
}
