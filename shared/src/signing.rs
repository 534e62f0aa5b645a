//! Signed history: Ed25519 signatures that tell the command service's commits from commits
//! written by anyone else who can publish to the history (docs/audit.md, "Signed history").
//!
//! The hash chain ([`crate::store::chain_hash`]) shows that a commit was altered, removed or
//! inserted, but anyone can compute it. Here the command service, the only holder of the private
//! key, signs each commit's place in the history:
//!
//! ```text
//! followers commit signature v1\n<key id>\n<account>.<kind>.<id>\n<command id>\n<chain value>
//! ```
//!
//! (UTF-8, no trailing newline; the stream as [`StreamId`]'s `Display`, e.g. `acme.contact.c1`
//! or `acme.account._`; the command id as a lowercase hyphenated UUID; the chain value as
//! stored, 64 lowercase hex digits). The chain value covers the previous commit's chain value
//! and this commit's events, so the signature covers them too. A reader accepts a commit
//! ([`Verifier::admit`]) when its chain value links it to the last commit it accepted of the
//! same stream and the signature verifies with a configured key.
//!
//! A commit removed from the very end of a stream leaves every chain whole; a [`SignedHead`],
//! written by the command service, names a position and a digest of every stream's last commit
//! at it ([`StreamHeads`]), so `followers-audit verify` finds such a removal.
//!
//! No I/O here: key files are parsed from text the caller has read.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{AccountId, CommandId};
use crate::read_model::ReadModel;
use crate::store::{ChainValue, Commit, Position, StoredCommit, StreamId, chain_hash};

/// The first line of a commit's signed message.
pub const COMMIT_CONTEXT: &str = "followers commit signature v1";
/// The first line of a signed head's signed message.
pub const HEAD_CONTEXT: &str = "followers signed head v1";
/// The key under which the command service keeps the signed head in the checkpoint bucket.
pub const SIGNED_HEAD_KEY: &str = "signed-head";

/// The key of the signed head of a history without partitions ([`SIGNED_HEAD_KEY`]), or of one
/// partition of a partitioned one (`signed-head.p<N>`, the streams of that partition's
/// accounts): instances serving different partitions each sign their own.
pub fn signed_head_key(partition: Option<crate::partition::Partition>) -> String {
    match partition {
        None => SIGNED_HEAD_KEY.to_owned(),
        Some(p) => format!("{SIGNED_HEAD_KEY}.p{p}"),
    }
}
/// The only algorithm so far.
pub const ALGORITHM: &str = "ed25519";
/// Longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;

/// Names one signing key, so that keys can be rotated: 1 to 64 ASCII letters, digits, `_`, `-`
/// or `.`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

/// Why a string is not a key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key id `{0}` must be 1 to {MAX_KEY_ID_LEN} ASCII letters, digits, `_`, `-` or `.` characters"
)]
pub struct BadKeyId(pub String);

impl KeyId {
    pub fn new(value: impl Into<String>) -> Result<Self, BadKeyId> {
        let value = value.into();
        let valid = !value.is_empty()
            && value.len() <= MAX_KEY_ID_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            Ok(Self(value))
        } else {
            Err(BadKeyId(value))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = BadKeyId;
    fn try_from(value: String) -> Result<Self, BadKeyId> {
        Self::new(value)
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.0
    }
}

impl std::str::FromStr for KeyId {
    type Err = BadKeyId;
    fn from_str(s: &str) -> Result<Self, BadKeyId> {
        Self::new(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A commit's signature as stored (`Commit::signature`). Kept as written, so that a malformed
/// one is reported as such rather than making the whole commit unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitSignature {
    /// The key that signed ([`KeyId`]).
    pub key_id: String,
    /// The Ed25519 signature, 64 bytes as 128 lowercase hex digits.
    pub ed25519: String,
}

/// The exact bytes signed for a commit (see the module documentation).
pub fn commit_message(
    key_id: &str,
    stream: &StreamId,
    command_id: CommandId,
    chain: &str,
) -> Vec<u8> {
    format!(
        "{COMMIT_CONTEXT}\n{key_id}\n{stream}\n{}\n{chain}",
        command_id.0.hyphenated()
    )
    .into_bytes()
}

/// Why a commit (or a signed head) is not accepted. [`SignatureError::code`] is stable.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("it carries no chain value, so it cannot be signed")]
    Unsealed,
    #[error(
        "its chain value does not follow from the last accepted commit of its stream and its own events: it was altered, reordered, or a commit before it was removed or inserted"
    )]
    ChainBroken,
    #[error("it is not signed")]
    Unsigned,
    #[error("it is signed with key `{key_id}`, which is not configured")]
    UnknownKey { key_id: String },
    #[error("its signature by key `{key_id}` is not 128 hex digits: {source}")]
    Malformed {
        key_id: String,
        #[source]
        source: hex::FromHexError,
    },
    #[error("its signature does not verify with key `{key_id}`: it was forged or altered")]
    Invalid {
        key_id: String,
        #[source]
        source: ed25519_dalek::SignatureError,
    },
}

impl SignatureError {
    /// A stable code: `unsealed`, `chain_broken`, `unsigned`, `unknown_key` or `bad_signature`.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Unsealed => "unsealed",
            SignatureError::ChainBroken => "chain_broken",
            SignatureError::Unsigned => "unsigned",
            SignatureError::UnknownKey { .. } => "unknown_key",
            SignatureError::Malformed { .. } | SignatureError::Invalid { .. } => "bad_signature",
        }
    }
}

/// Why a key file cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a followers key file (JSON with key_id, algorithm and the key): {source}"
    )]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: the algorithm is `{found}`, only `ed25519` is supported")]
    Algorithm { path: String, found: String },
    #[error(
        "{path} holds a private key: pass the public key file (`.pub`) instead, and keep the private one on the command service's host only"
    )]
    PrivateGivenAsPublic { path: String },
    #[error("{path} holds no private key: pass the private key file (`.key`), not the public one")]
    NoPrivateKey { path: String },
    #[error("{path} holds no public key")]
    NoPublicKey { path: String },
    #[error("{path}: the {what} is not {len} bytes as hex: {source}")]
    Hex {
        path: String,
        what: &'static str,
        len: usize,
        #[source]
        source: hex::FromHexError,
    },
    #[error("{path}: the public key is not a valid Ed25519 key: {source}")]
    BadPublicKey {
        path: String,
        #[source]
        source: ed25519_dalek::SignatureError,
    },
    #[error("{path}: two different public keys are named `{key_id}`; key ids must be unique")]
    DuplicateKeyId { path: String, key_id: KeyId },
}

/// A key file as written by `followers-audit keygen`: JSON, one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_id: KeyId,
    algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
}

fn parse_key_file(path: &Path, read: io::Result<String>) -> Result<KeyFile, KeyFileError> {
    let shown = || path.display().to_string();
    let text = read.map_err(|source| KeyFileError::Read {
        path: shown(),
        source,
    })?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|source| KeyFileError::Json {
        path: shown(),
        source,
    })?;
    if file.algorithm != ALGORITHM {
        return Err(KeyFileError::Algorithm {
            path: shown(),
            found: file.algorithm,
        });
    }
    Ok(file)
}

fn key_bytes(path: &Path, what: &'static str, hex_text: &str) -> Result<[u8; 32], KeyFileError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut bytes).map_err(|source| KeyFileError::Hex {
        path: path.display().to_string(),
        what,
        len: 32,
        source,
    })?;
    Ok(bytes)
}

/// Signs commits and heads with one private key (the command service's).
#[derive(Clone)]
pub struct Signer {
    key_id: KeyId,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key_id: KeyId, key: SigningKey) -> Self {
        Self { key_id, key }
    }

    /// A new key pair from a cryptographically secure random source.
    pub fn generate<R>(key_id: KeyId, rng: &mut R) -> Self
    where
        R: rand_core::CryptoRngCore + ?Sized,
    {
        Self::new(key_id, SigningKey::generate(rng))
    }

    /// The signer of a private key file (`read`: the file's content, as read by the caller).
    pub fn from_private_key_file(
        path: &Path,
        read: io::Result<String>,
    ) -> Result<Self, KeyFileError> {
        let file = parse_key_file(path, read)?;
        let private = file
            .private_key
            .as_deref()
            .ok_or_else(|| KeyFileError::NoPrivateKey {
                path: path.display().to_string(),
            })?;
        let seed = key_bytes(path, "private key", private)?;
        Ok(Self::new(file.key_id, SigningKey::from_bytes(&seed)))
    }

    /// The private key file's content (keep it secret).
    pub fn private_key_file(&self) -> String {
        let file = KeyFile {
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.to_owned(),
            public_key: None,
            private_key: Some(hex::encode(self.key.to_bytes())),
        };
        crate::json::to_string_pretty(&file) + "\n"
    }

    /// The public key file's content, for every reader that checks signatures.
    pub fn public_key_file(&self) -> String {
        let file = KeyFile {
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.to_owned(),
            public_key: Some(hex::encode(self.key.verifying_key().to_bytes())),
            private_key: None,
        };
        crate::json::to_string_pretty(&file) + "\n"
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A commit to `stream` whose chain value links it to `previous` (the stream's chain value
    /// before it), signed.
    pub fn seal(
        &self,
        stream: &StreamId,
        command_id: CommandId,
        events: Vec<crate::event::Event>,
        previous: Option<&str>,
    ) -> Commit {
        let chain = chain_hash(previous, &events);
        let signature = self.sign(stream, command_id, &chain);
        Commit {
            command_id,
            events,
            chain: Some(chain),
            signature: Some(signature),
        }
    }

    /// The signature of a commit of `command_id` to `stream` whose chain value is `chain`.
    pub fn sign(&self, stream: &StreamId, command_id: CommandId, chain: &str) -> CommitSignature {
        let message = commit_message(self.key_id.as_str(), stream, command_id, chain);
        CommitSignature {
            key_id: self.key_id.to_string(),
            ed25519: hex::encode(self.key.sign(&message).to_bytes()),
        }
    }

    /// Signs `heads` as the history's head at `at`.
    pub fn sign_head(&self, heads: &HeadDigest, at: DateTime<Utc>) -> SignedHead {
        let mut head = SignedHead {
            position: heads.position,
            streams: heads.streams,
            digest: heads.digest.clone(),
            at,
            key_id: self.key_id.to_string(),
            ed25519: String::new(),
        };
        head.ed25519 = hex::encode(self.key.sign(&head.message()).to_bytes());
        head
    }
}

/// Checks signatures against a set of public keys, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verifier {
    keys: HashMap<KeyId, VerifyingKey>,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key. The same id twice is fine for the same key, an error for another one.
    pub fn add(
        &mut self,
        key_id: KeyId,
        key: VerifyingKey,
        path: &Path,
    ) -> Result<(), KeyFileError> {
        match self.keys.get(&key_id) {
            Some(known) if *known != key => Err(KeyFileError::DuplicateKeyId {
                path: path.display().to_string(),
                key_id,
            }),
            _ => {
                self.keys.insert(key_id, key);
                Ok(())
            }
        }
    }

    /// Adds the public key of a public key file (`read`: its content, as read by the caller).
    pub fn add_public_key_file(
        &mut self,
        path: &Path,
        read: io::Result<String>,
    ) -> Result<KeyId, KeyFileError> {
        let file = parse_key_file(path, read)?;
        let shown = || path.display().to_string();
        if file.private_key.is_some() {
            return Err(KeyFileError::PrivateGivenAsPublic { path: shown() });
        }
        let public = file
            .public_key
            .as_deref()
            .ok_or_else(|| KeyFileError::NoPublicKey { path: shown() })?;
        let bytes = key_bytes(path, "public key", public)?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|source| KeyFileError::BadPublicKey {
                path: shown(),
                source,
            })?;
        self.add(file.key_id.clone(), key, path)?;
        Ok(file.key_id)
    }

    /// A verifier of the public key files `files` (path and content, as read by the caller).
    pub fn from_public_key_files<'a>(
        files: impl IntoIterator<Item = (&'a Path, io::Result<String>)>,
    ) -> Result<Self, KeyFileError> {
        let mut verifier = Self::new();
        for (path, read) in files {
            verifier.add_public_key_file(path, read)?;
        }
        Ok(verifier)
    }

    /// Also accepts what `signer` signs.
    pub fn trust_signer(&mut self, signer: &Signer) -> Result<(), KeyFileError> {
        self.add(
            signer.key_id.clone(),
            signer.verifying_key(),
            Path::new("the signing key"),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn check(
        &self,
        key_id: &str,
        signature: &str,
        message: &[u8],
    ) -> Result<KeyId, SignatureError> {
        let (id, key) = KeyId::new(key_id)
            .ok()
            .and_then(|id| self.keys.get_key_value(&id))
            .ok_or_else(|| SignatureError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(signature, &mut bytes).map_err(|source| {
            SignatureError::Malformed {
                key_id: key_id.to_owned(),
                source,
            }
        })?;
        key.verify_strict(message, &Signature::from_bytes(&bytes))
            .map_err(|source| SignatureError::Invalid {
                key_id: key_id.to_owned(),
                source,
            })?;
        Ok(id.clone())
    }

    /// Whether `stored` carries a valid signature of a configured key over its stream, command id
    /// and chain value. Says nothing about whether the chain value fits its events and
    /// predecessor: that is [`Verifier::admit`].
    pub fn verify(&self, stored: &StoredCommit) -> Result<KeyId, SignatureError> {
        let commit = &stored.commit;
        let chain = commit.chain.as_deref().ok_or(SignatureError::Unsealed)?;
        let signature = commit.signature.as_ref().ok_or(SignatureError::Unsigned)?;
        let message = commit_message(&signature.key_id, &stored.stream, commit.command_id, chain);
        self.check(&signature.key_id, &signature.ed25519, &message)
    }

    /// Whether a reader may apply `stored` after `previous`, the chain value of the last commit it
    /// accepted of the same stream: the chain value must follow from `previous` and the commit's
    /// events, and the signature must verify.
    pub fn admit(
        &self,
        stored: &StoredCommit,
        previous: Option<&str>,
    ) -> Result<KeyId, SignatureError> {
        if stored.commit.chain.is_none() {
            return Err(SignatureError::Unsealed);
        }
        if !stored.commit.seals(previous) {
            return Err(SignatureError::ChainBroken);
        }
        self.verify(stored)
    }

    /// [`Verifier::admit`] against the stream's chain value in `model`. A commit the model has
    /// already passed is admitted: applying it changes nothing.
    pub fn admit_into(
        &self,
        model: &ReadModel,
        stored: &StoredCommit,
    ) -> Result<(), SignatureError> {
        if stored.position <= model.position() {
            return Ok(());
        }
        let previous = chain_of(model, &stored.stream).map(ChainValue::as_str);
        self.admit(stored, previous.as_deref()).map(|_| ())
    }

    /// Whether `head` carries a valid signature of a configured key.
    pub fn verify_head(&self, head: &SignedHead) -> Result<KeyId, SignatureError> {
        if head.key_id.is_empty() && head.ed25519.is_empty() {
            return Err(SignatureError::Unsigned);
        }
        self.check(&head.key_id, &head.ed25519, &head.message())
    }
}

/// The chain value of `stream`'s last commit in `model`.
pub fn chain_of<'a>(model: &'a ReadModel, stream: &StreamId) -> Option<&'a ChainValue> {
    let account = model.account(&stream.account)?;
    match stream.aggregate.record() {
        None => account.chain.as_ref(),
        Some(record) => account.records.get(&record)?.chain,
    }
}

/// Every stream's last commit in a model: its name, version and chain value. Collect it under
/// the model's lock (cheap clones), then digest it outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeads {
    position: Position,
    heads: Vec<(String, u64, Option<ChainValue>)>,
}

impl StreamHeads {
    /// The streams of `model` that have a commit.
    pub fn collect(model: &ReadModel) -> Self {
        Self::collect_where(model, |_| true)
    }

    /// The streams of the accounts of `model` that `keep` keeps (one partition's) that have a
    /// commit.
    pub fn collect_where(model: &ReadModel, keep: impl Fn(&AccountId) -> bool) -> Self {
        let mut heads = Vec::new();
        for (account, entry) in model.accounts().filter(|(a, _)| keep(a)) {
            if let Some(v) = entry.version {
                let stream = StreamId::account(account.clone());
                heads.push((stream.to_string(), v.0, entry.chain.clone()));
            }
            for (record, r) in &entry.records {
                if let Some(v) = r.version {
                    let stream = StreamId::record(account.clone(), record.clone());
                    heads.push((stream.to_string(), v.0, r.chain.cloned()));
                }
            }
        }
        Self {
            position: model.position(),
            heads,
        }
    }

    /// Hex SHA-256 of one line per stream, sorted by stream name:
    /// `<stream> <version> <chain value, or - without one>\n`.
    pub fn digest(mut self) -> HeadDigest {
        self.heads.sort_unstable();
        let mut hasher = Sha256::new();
        for (stream, version, chain) in &self.heads {
            let chain = chain.as_ref().map_or("-".into(), ChainValue::as_str);
            hasher.update(format!("{stream} {version} {chain}\n").as_bytes());
        }
        HeadDigest {
            position: self.position,
            streams: self.heads.len() as u64,
            digest: hex::encode(hasher.finalize()),
        }
    }
}

/// What a signed head states about the history at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadDigest {
    pub position: Position,
    pub streams: u64,
    pub digest: String,
}

/// The history's head as the command service saw it, signed: its position, how many streams
/// had a commit by then, and the digest of their last commits ([`StreamHeads::digest`]). Kept
/// as JSON in the checkpoint bucket under [`SIGNED_HEAD_KEY`].
///
/// Signed message: `followers signed head v1\n<key id>\n<position>\n<streams>\n<digest>\n<at>`,
/// `at` in RFC 3339 UTC with 9 fractional digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub position: Position,
    pub streams: u64,
    pub digest: String,
    /// When it was written.
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub ed25519: String,
}

impl SignedHead {
    /// The exact bytes signed.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{HEAD_CONTEXT}\n{}\n{}\n{}\n{}\n{}",
            self.key_id,
            self.position.0,
            self.streams,
            self.digest,
            self.at.to_rfc3339_opts(SecondsFormat::Nanos, true)
        )
        .into_bytes()
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::json::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::event::EventBody;
    use crate::ids::UserId;
    use crate::model::Actor;
    use crate::store::Version;

    fn signer(id: &str, seed: u8) -> Signer {
        Signer::new(KeyId::new(id).unwrap(), SigningKey::from_bytes(&[seed; 32]))
    }

    fn stream() -> StreamId {
        StreamId::account("acme".parse().unwrap())
    }

    fn events(user: &str) -> Vec<crate::event::Event> {
        let meta = crate::command::CommandMeta {
            command_id: CommandId::new(),
            actor: Actor::System,
            caller: None,
            correlation: uuid::Uuid::now_v7(),
            causation: None,
            at: Utc::now(),
        };
        meta.events(vec![EventBody::MemberDeactivated {
            user: UserId::new(user).unwrap(),
        }])
    }

    fn stored(commit: Commit, position: u64) -> StoredCommit {
        StoredCommit {
            stream: stream(),
            version: Version(position),
            position: Position(position),
            commit,
            trace: None,
        }
    }

    fn verifier_of(signers: &[&Signer]) -> Verifier {
        let mut v = Verifier::new();
        for s in signers {
            v.trust_signer(s).unwrap();
        }
        v
    }

    #[test]
    fn a_signed_commit_is_admitted_after_its_predecessor_only() {
        let k1 = signer("k1", 1);
        let v = verifier_of(&[&k1]);
        let first = k1.seal(&stream(), CommandId::new(), events("a"), None);
        let second = k1.seal(
            &stream(),
            CommandId::new(),
            events("b"),
            first.chain.as_deref(),
        );
        assert_eq!(
            v.admit(&stored(first.clone(), 1), None).unwrap().as_str(),
            "k1"
        );
        assert!(
            v.admit(&stored(second.clone(), 2), first.chain.as_deref())
                .is_ok()
        );
        // Replayed at the end of its stream, or read without its predecessor: refused.
        assert!(matches!(
            v.admit(&stored(second.clone(), 3), second.chain.as_deref()),
            Err(SignatureError::ChainBroken)
        ));
        assert!(matches!(
            v.admit(&stored(second, 2), None),
            Err(SignatureError::ChainBroken)
        ));
    }

    #[test]
    fn forged_altered_and_foreign_commits_are_refused_with_stable_codes() {
        let k1 = signer("k1", 1);
        let v = verifier_of(&[&k1]);
        let genuine = k1.seal(&stream(), CommandId::new(), events("a"), None);

        // A correct chain value, no signature.
        let unsigned = Commit::sealed(CommandId::new(), events("a"), None);
        let e = v.admit(&stored(unsigned, 1), None).unwrap_err();
        assert_eq!(e.code(), "unsigned");

        // Events altered and the chain recomputed: the signature no longer fits.
        let mut altered = genuine.clone();
        altered.events = events("z");
        altered.chain = Some(chain_hash(None, &altered.events));
        let e = v.admit(&stored(altered, 1), None).unwrap_err();
        assert_eq!(e.code(), "bad_signature", "{e}");

        // Events altered, chain and signature kept: the chain no longer fits.
        let mut altered = genuine.clone();
        altered.events = events("z");
        assert_eq!(
            v.admit(&stored(altered, 1), None).unwrap_err().code(),
            "chain_broken"
        );

        // The same commit claimed for another stream.
        let mut elsewhere = stored(genuine.clone(), 1);
        elsewhere.stream = StreamId::account("globex".parse().unwrap());
        assert_eq!(
            v.admit(&elsewhere, None).unwrap_err().code(),
            "bad_signature"
        );

        // Signed by a key that is not configured, and by one claiming a configured id.
        let other = signer("k9", 9);
        let foreign = other.seal(&stream(), CommandId::new(), events("a"), None);
        assert_eq!(
            v.admit(&stored(foreign, 1), None).unwrap_err().code(),
            "unknown_key"
        );
        let impostor = signer("k1", 9);
        let forged = impostor.seal(&stream(), CommandId::new(), events("a"), None);
        assert_eq!(
            v.admit(&stored(forged, 1), None).unwrap_err().code(),
            "bad_signature"
        );

        // Garbage in the signature field.
        let mut garbage = genuine;
        if let Some(s) = &mut garbage.signature {
            s.ed25519 = "zz".to_owned();
        }
        let e = v.admit(&stored(garbage, 1), None).unwrap_err();
        assert!(matches!(e, SignatureError::Malformed { .. }));
        assert_eq!(e.code(), "bad_signature");
    }

    #[test]
    fn commits_of_rotated_keys_all_verify() {
        let (old, new) = (signer("2025", 1), signer("2026", 2));
        let v = verifier_of(&[&old, &new]);
        let first = old.seal(&stream(), CommandId::new(), events("a"), None);
        let second = new.seal(
            &stream(),
            CommandId::new(),
            events("b"),
            first.chain.as_deref(),
        );
        assert_eq!(
            v.admit(&stored(first.clone(), 1), None).unwrap().as_str(),
            "2025"
        );
        assert_eq!(
            v.admit(&stored(second, 2), first.chain.as_deref())
                .unwrap()
                .as_str(),
            "2026"
        );
    }

    #[test]
    fn key_files_round_trip_and_are_not_mixed_up() {
        let k = signer("k1", 7);
        let path = Path::new("k1.key");
        let back = Signer::from_private_key_file(path, Ok(k.private_key_file())).unwrap();
        assert_eq!(back.verifying_key(), k.verifying_key());
        assert_eq!(back.key_id().as_str(), "k1");
        let mut v = Verifier::new();
        let id = v
            .add_public_key_file(Path::new("k1.pub"), Ok(k.public_key_file()))
            .unwrap();
        assert_eq!(id.as_str(), "k1");
        assert_eq!(v, verifier_of(&[&k]));
        assert!(!k.public_key_file().contains(&hex::encode(k.key.to_bytes())));

        assert!(matches!(
            v.add_public_key_file(path, Ok(k.private_key_file())),
            Err(KeyFileError::PrivateGivenAsPublic { .. })
        ));
        assert!(matches!(
            Signer::from_private_key_file(path, Ok(k.public_key_file())),
            Err(KeyFileError::NoPrivateKey { .. })
        ));
        assert!(matches!(
            v.add_public_key_file(Path::new("x.pub"), Ok(signer("k1", 8).public_key_file())),
            Err(KeyFileError::DuplicateKeyId { .. })
        ));
        let e = v
            .add_public_key_file(Path::new("x.pub"), Ok("{}".to_owned()))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.pub is not a followers key file"),
            "{e}"
        );
        assert!(KeyId::new("a b").is_err());
        assert!(KeyId::new("").is_err());
        assert!(KeyId::new("2026-01.k_1").is_ok());
    }

    #[test]
    fn a_signed_head_names_every_stream_and_detects_a_change() {
        let k = signer("k1", 1);
        let v = verifier_of(&[&k]);
        let mut model = ReadModel::new();
        let first = k.seal(&stream(), CommandId::new(), events("a"), None);
        model.apply(&stored(first.clone(), 1));
        let whole = StreamHeads::collect(&model).digest();
        assert_eq!(whole.streams, 1);
        let head = k.sign_head(&whole, Utc::now());
        assert_eq!(v.verify_head(&head).unwrap().as_str(), "k1");
        assert_eq!(SignedHead::decode(&head.encode()).unwrap(), head);

        let second = k.seal(
            &stream(),
            CommandId::new(),
            events("b"),
            first.chain.as_deref(),
        );
        model.apply(&stored(second, 2));
        let longer = StreamHeads::collect(&model).digest();
        assert_ne!(longer.digest, whole.digest);

        let mut moved = head.clone();
        moved.position = Position(2);
        assert_eq!(v.verify_head(&moved).unwrap_err().code(), "bad_signature");
    }
}
