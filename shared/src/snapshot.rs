//! The snapshot file: a read model frozen at a position ([`Snapshot`]) in a compact binary form.
//!
//! Why binary and compact: at a million records the JSON form (format 4) was ~500 MB and took
//! ~6 s to read back, most of it spent on the same user ids, field names and RFC 3339 times
//! written over and over. Here each account names its users and workflows once, in tables, and
//! records refer to them by index; times are integers; the body is [postcard].
//!
//! The file:
//!
//! | bytes | what |
//! |---|---|
//! | 0..8 | [`MAGIC`] |
//! | 8..12 | the format, u32 little-endian ([`SNAPSHOT_FORMAT`]) |
//! | 12..14 | the event schema the states were folded with, u16 little-endian |
//! | 14..22 | the body's length in bytes, u64 little-endian |
//! | 22..54 | SHA-256 of the body |
//! | 54.. | the body, postcard |
//!
//! The header comes first so that a file of another format (an older JSON snapshot starts with
//! `{`) is refused before its body is decoded, a truncated one by its length, and a damaged or
//! edited one by its digest ([`SnapshotError`]): a snapshot is ignored, never misread.
//!
//! The body's types are this module's own, not the domain's: postcard does not describe its
//! data, so it cannot read what the domain's JSON relies on (internally tagged enums, flattened
//! or skipped fields), and a domain type changing shape must not silently change the file. Any
//! change to them bumps [`SNAPSHOT_FORMAT`]. They are also the first step toward a compact model
//! in memory (issue 14): users by index, times as integers.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::AccountState;
use crate::event::EVENT_SCHEMA;
use crate::ids::{AccountId, CommandId, ContactId, EventId, OpportunityId, UserId, WorkflowId};
use crate::model::{
    AccountSettings, Actor, AddedHow, DataScope, Follower, Membership, RecordRef, Role,
};
use crate::read_model::{AccountSnapshot, Chains, CommitMark, RecordEntry, Snapshot};
use crate::record::RecordState;
use crate::store::{HistoryId, Position, Version};
use crate::stored_commands::{AccountCommandsSnapshot, StoredCommand};

/// The first bytes of every binary snapshot.
pub const MAGIC: [u8; 8] = *b"FLWSNAP\0";

/// The version of the snapshot format. A snapshot of another version is ignored (and the history
/// replayed instead), never misread. Bump it whenever the body's types change.
/// 2: the streams' hash chain values. 3: the history's identity, the head commit, a digest.
/// 4: whether the streams' chain values are in it. 5: binary (this module), users by index.
/// 6: each follower's `until` (issue 17.4). 7: the command service's stored commands
/// ([`crate::stored_commands`], a section of their own after the accounts).
pub const SNAPSHOT_FORMAT: u32 = 7;

/// Where the body's SHA-256 is in the header.
pub const DIGEST_RANGE: std::ops::Range<usize> = 22..54;

/// The header's length: the body starts here.
pub const HEADER_LEN: usize = 54;

/// Why a snapshot file is not read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a binary snapshot (an older JSON snapshot, or another file)")]
    NotASnapshot,
    #[error("the snapshot is of format {found}, this program reads format {SNAPSHOT_FORMAT}")]
    Format { found: u32 },
    #[error("the snapshot's states follow event schema {found}, this program's is {EVENT_SCHEMA}")]
    EventSchema { found: u16 },
    #[error("the snapshot is truncated: {found} bytes, its header alone takes {HEADER_LEN}")]
    Truncated { found: usize },
    #[error(
        "the snapshot's body is {found} bytes, its header says {expected} (truncated or appended to)"
    )]
    Length { expected: u64, found: u64 },
    #[error("the snapshot's body does not match its digest (damaged or edited)")]
    Digest,
    #[error("the snapshot's body cannot be decoded")]
    Decode(#[source] postcard::Error),
    #[error("the snapshot's body has {0} bytes after its end")]
    Trailing(usize),
    #[error("the snapshot names {what} {index}, beyond its table of {len}")]
    Index {
        what: &'static str,
        index: u32,
        len: usize,
    },
    #[error("the snapshot holds a time out of range ({secs} s, {nanos} ns)")]
    Time { secs: i64, nanos: u32 },
    #[error("the snapshot cannot be encoded")]
    Encode(#[source] postcard::Error),
    #[error("the snapshot cannot be written")]
    Io(#[from] std::io::Error),
}

/// Writes `snapshot` to `out`: the header, then the body. The body is streamed (a million
/// records are tens of megabytes), so the header is written twice: first with room for the
/// length and digest, then, once they are known, over it.
pub fn write<W: Write + Seek>(snapshot: &Snapshot, out: &mut W) -> Result<(), SnapshotError> {
    let start = out.stream_position()?;
    out.write_all(&[0; HEADER_LEN])?;
    let mut body = Hashing {
        inner: &mut *out,
        hasher: Sha256::new(),
        len: 0,
    };
    let body = postcard::to_io(&Body::of(snapshot), &mut body).map_err(SnapshotError::Encode)?;
    let (len, digest) = (body.len, body.hasher.clone().finalize());
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&header(SNAPSHOT_FORMAT, EVENT_SCHEMA, len, &digest.into()))?;
    out.seek(SeekFrom::End(0))?;
    Ok(())
}

/// [`write`] into memory.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, SnapshotError> {
    let mut out = std::io::Cursor::new(Vec::new());
    write(snapshot, &mut out)?;
    Ok(out.into_inner())
}

/// Reads a whole snapshot file's bytes, checking the header, the length and the digest before
/// the body is decoded.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let body = checked_body(bytes)?;
    let (decoded, rest) = postcard::take_from_bytes::<Body>(body).map_err(SnapshotError::Decode)?;
    if !rest.is_empty() {
        return Err(SnapshotError::Trailing(rest.len()));
    }
    decoded.into_snapshot()
}

fn header(format: u32, schema: u16, len: u64, digest: &[u8; 32]) -> [u8; HEADER_LEN] {
    let mut h = [0; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&format.to_le_bytes());
    h[12..14].copy_from_slice(&schema.to_le_bytes());
    h[14..22].copy_from_slice(&len.to_le_bytes());
    h[DIGEST_RANGE].copy_from_slice(digest);
    h
}

/// The body of a file whose header fits this program and whose body matches its length and
/// digest.
fn checked_body(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    // A file shorter than the magic is refused as truncated only if what there is of it fits.
    let start = &bytes[..bytes.len().min(MAGIC.len())];
    if start != &MAGIC[..start.len()] {
        return Err(SnapshotError::NotASnapshot);
    }
    let (Some(head), Some(body)) = (bytes.get(..HEADER_LEN), bytes.get(HEADER_LEN..)) else {
        return Err(SnapshotError::Truncated { found: bytes.len() });
    };
    let format = u32::from_le_bytes(le(&head[8..12]));
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Format { found: format });
    }
    let schema = u16::from_le_bytes(le(&head[12..14]));
    if schema != EVENT_SCHEMA {
        return Err(SnapshotError::EventSchema { found: schema });
    }
    let expected = u64::from_le_bytes(le(&head[14..22]));
    if expected != body.len() as u64 {
        return Err(SnapshotError::Length {
            expected,
            found: body.len() as u64,
        });
    }
    if Sha256::digest(body).as_slice() != &head[DIGEST_RANGE] {
        return Err(SnapshotError::Digest);
    }
    Ok(body)
}

/// A header field as an array; the ranges above are the arrays' sizes.
fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(bytes);
    a
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// The body

#[derive(Serialize, Deserialize)]
struct Body {
    history: String,
    position: u64,
    head: Option<Mark>,
    chains_kept: bool,
    accounts: Vec<Account>,
    /// The command service's stored commands (none in the projection's snapshot).
    commands: Option<Vec<Commands>>,
}

/// One account's stored commands: each command id's fingerprint, and its commit's position,
/// sorted by fingerprint.
#[derive(Serialize, Deserialize)]
struct Commands {
    account: AccountId,
    stored: Vec<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Mark {
    command_id: [u8; 16],
    chain: Option<String>,
}

/// One account. Members, owners and followers name users by index into `users`; workflows that
/// added followers, by index into `workflows`.
#[derive(Serialize, Deserialize)]
struct Account {
    id: AccountId,
    opened: bool,
    name: String,
    settings: Settings,
    version: Option<u64>,
    chain: Option<String>,
    users: Vec<UserId>,
    workflows: Vec<WorkflowId>,
    members: Vec<Member>,
    records: Vec<Record>,
}

#[derive(Serialize, Deserialize)]
struct Settings {
    allow_different_owners: bool,
    sync_contact_follower_with_opportunity_owner: bool,
    sync_opportunity_follower_with_contact_owner: bool,
    contact_access_includes_opportunities: bool,
}

#[derive(Serialize, Deserialize)]
struct Member {
    user: u32,
    name: String,
    email: String,
    admin: bool,
    only_assigned: bool,
    active: bool,
}

#[derive(Serialize, Deserialize)]
enum Key {
    Contact(ContactId),
    Opportunity(OpportunityId),
}

#[derive(Serialize, Deserialize)]
struct Record {
    key: Key,
    created: bool,
    owner: Option<u32>,
    followers: Vec<FollowerRow>,
    contact: Option<ContactId>,
    version: Option<u64>,
    opportunities: Vec<OpportunityId>,
    chain: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct FollowerRow {
    user: u32,
    added_at: Time,
    added_by: By,
    how: How,
    /// The `until` and the event that set it.
    until: Option<(Time, [u8; 16])>,
}

/// A time to the nanosecond, as [`DateTime::timestamp`] and its nanoseconds.
#[derive(Serialize, Deserialize)]
struct Time {
    secs: i64,
    nanos: u32,
}

impl Time {
    fn of(t: DateTime<Utc>) -> Self {
        Time {
            secs: t.timestamp(),
            nanos: t.timestamp_subsec_nanos(),
        }
    }

    fn into_time(self) -> Result<DateTime<Utc>, SnapshotError> {
        let Time { secs, nanos } = self;
        DateTime::from_timestamp(secs, nanos).ok_or(SnapshotError::Time { secs, nanos })
    }
}

#[derive(Serialize, Deserialize)]
enum By {
    User(u32),
    Workflow(u32),
    System,
}

#[derive(Serialize, Deserialize)]
enum How {
    Manual,
    Workflow(u32),
    OwnerSync(Key),
    System,
}

// ---------------------------------------------------------------------------------------------
// From a snapshot to the body

/// Values named once, each given the index of its first mention.
struct Table<'a, T> {
    index: HashMap<&'a T, u32>,
    items: Vec<T>,
}

impl<'a, T: Hash + Eq + Clone> Table<'a, T> {
    fn new() -> Self {
        Self {
            index: HashMap::new(),
            items: Vec::new(),
        }
    }

    fn of(&mut self, item: &'a T) -> u32 {
        let items = &mut self.items;
        *self.index.entry(item).or_insert_with(|| {
            items.push(item.clone());
            u32::try_from(items.len() - 1).expect("fewer than 2^32 names in an account")
        })
    }
}

impl Body {
    fn of(s: &Snapshot) -> Self {
        Body {
            history: s.history.0.clone(),
            position: s.position.0,
            head: s.head.as_ref().map(|m| Mark {
                command_id: m.command_id.0.into_bytes(),
                chain: m.chain.clone(),
            }),
            chains_kept: s.chains == Chains::Kept,
            accounts: s.accounts.iter().map(Account::of).collect(),
            commands: s.commands.as_deref().map(Commands::of),
        }
    }
}

impl Account {
    fn of(a: &AccountSnapshot) -> Self {
        let (mut users, mut workflows) = (Table::new(), Table::new());
        // In user order, so the same model always gives the same file.
        let mut members: Vec<_> = a.state.members.iter().collect();
        members.sort_by_key(|(user, _)| *user);
        let members = members
            .into_iter()
            .map(|(user, m)| Member {
                user: users.of(user),
                name: m.name.clone(),
                email: m.email.clone(),
                admin: m.role == Role::Admin,
                only_assigned: m.data_scope == DataScope::OnlyAssigned,
                active: m.active,
            })
            .collect();
        let records = a
            .records
            .iter()
            .map(|(r, e)| Record::of(r, e, &mut users, &mut workflows))
            .collect();
        let s = &a.state.settings;
        Account {
            id: a.account.clone(),
            opened: a.state.opened,
            name: a.state.name.clone(),
            settings: Settings {
                allow_different_owners: s.allow_different_owners,
                sync_contact_follower_with_opportunity_owner: s
                    .sync_contact_follower_with_opportunity_owner,
                sync_opportunity_follower_with_contact_owner: s
                    .sync_opportunity_follower_with_contact_owner,
                contact_access_includes_opportunities: s.contact_access_includes_opportunities,
            },
            version: a.version.map(|v| v.0),
            chain: a.chain.clone(),
            users: users.items,
            workflows: workflows.items,
            members,
            records,
        }
    }
}

impl Record {
    fn of<'a>(
        r: &RecordRef,
        e: &'a RecordEntry,
        users: &mut Table<'a, UserId>,
        workflows: &mut Table<'a, WorkflowId>,
    ) -> Self {
        let followers = e
            .state
            .followers
            .iter()
            .map(|f| FollowerRow {
                user: users.of(&f.user),
                added_at: Time::of(f.added_at),
                until: f
                    .until
                    .zip(f.until_set_by)
                    .map(|(t, by)| (Time::of(t), by.0.into_bytes())),
                added_by: match &*f.added_by {
                    Actor::User { user } => By::User(users.of(user)),
                    Actor::Workflow { workflow } => By::Workflow(workflows.of(workflow)),
                    Actor::System => By::System,
                },
                how: match &*f.how {
                    AddedHow::Manual => How::Manual,
                    AddedHow::Workflow { workflow } => How::Workflow(workflows.of(workflow)),
                    AddedHow::OwnerSync { from } => How::OwnerSync(Key::of(from)),
                    AddedHow::System => How::System,
                },
            })
            .collect();
        Record {
            key: Key::of(r),
            created: e.state.created,
            owner: e.state.owner.as_ref().map(|o| users.of(o)),
            followers,
            contact: e.state.contact.clone(),
            version: e.version.map(|v| v.0),
            opportunities: e.opportunities.clone(),
            chain: e.chain.clone(),
        }
    }
}

impl Key {
    fn of(r: &RecordRef) -> Self {
        match r {
            RecordRef::Contact(c) => Key::Contact(c.clone()),
            RecordRef::Opportunity(o) => Key::Opportunity(o.clone()),
        }
    }

    fn into_ref(self) -> RecordRef {
        match self {
            Key::Contact(c) => RecordRef::Contact(c),
            Key::Opportunity(o) => RecordRef::Opportunity(o),
        }
    }
}

impl Commands {
    fn of(accounts: &[AccountCommandsSnapshot]) -> Vec<Self> {
        accounts
            .iter()
            .map(|a| Commands {
                account: a.account.clone(),
                stored: a
                    .stored
                    .iter()
                    .map(|c| (c.fingerprint, c.position.0))
                    .collect(),
            })
            .collect()
    }

    fn into_snapshot(self) -> AccountCommandsSnapshot {
        AccountCommandsSnapshot {
            account: self.account,
            stored: self
                .stored
                .into_iter()
                .map(|(fingerprint, position)| StoredCommand {
                    fingerprint,
                    position: Position(position),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// From the body to a snapshot

/// Entry `index` of `table`; an index beyond it is a damaged file, never a panic.
fn entry<T: Clone>(table: &[T], index: u32, what: &'static str) -> Result<T, SnapshotError> {
    table
        .get(index as usize)
        .cloned()
        .ok_or(SnapshotError::Index {
            what,
            index,
            len: table.len(),
        })
}

impl Body {
    fn into_snapshot(self) -> Result<Snapshot, SnapshotError> {
        let accounts = self
            .accounts
            .into_iter()
            .map(Account::into_snapshot)
            .collect::<Result<_, _>>()?;
        Ok(Snapshot {
            history: HistoryId(self.history),
            position: Position(self.position),
            head: self.head.map(|m| CommitMark {
                command_id: CommandId(uuid::Uuid::from_bytes(m.command_id)),
                chain: m.chain,
            }),
            chains: if self.chains_kept {
                Chains::Kept
            } else {
                Chains::Dropped
            },
            accounts,
            commands: self
                .commands
                .map(|c| c.into_iter().map(Commands::into_snapshot).collect()),
        })
    }
}

impl Account {
    fn into_snapshot(self) -> Result<AccountSnapshot, SnapshotError> {
        let mut members = HashMap::with_capacity(self.members.len());
        for m in self.members {
            let membership = Membership {
                name: m.name,
                email: m.email,
                role: if m.admin { Role::Admin } else { Role::User },
                data_scope: if m.only_assigned {
                    DataScope::OnlyAssigned
                } else {
                    DataScope::All
                },
                active: m.active,
            };
            members.insert(entry(&self.users, m.user, "user")?, membership);
        }
        let mut shared = Shared::new(&self.users, &self.workflows);
        let records = self
            .records
            .into_iter()
            .map(|r| r.into_entry(&mut shared))
            .collect::<Result<_, _>>()?;
        let s = self.settings;
        Ok(AccountSnapshot {
            account: self.id,
            state: AccountState {
                opened: self.opened,
                name: self.name,
                settings: AccountSettings {
                    allow_different_owners: s.allow_different_owners,
                    sync_contact_follower_with_opportunity_owner: s
                        .sync_contact_follower_with_opportunity_owner,
                    sync_opportunity_follower_with_contact_owner: s
                        .sync_opportunity_follower_with_contact_owner,
                    contact_access_includes_opportunities: s.contact_access_includes_opportunities,
                },
                members,
            },
            version: self.version.map(Version),
            chain: self.chain,
            records,
        })
    }
}

impl Record {
    fn into_entry(
        self,
        shared: &mut Shared<'_>,
    ) -> Result<(RecordRef, RecordEntry), SnapshotError> {
        let followers = self
            .followers
            .into_iter()
            .map(|f| f.into_follower(shared))
            .collect::<Result<_, _>>()?;
        let owner = match self.owner {
            Some(i) => Some(entry(shared.users, i, "user")?),
            None => None,
        };
        let state = RecordState {
            created: self.created,
            owner,
            followers,
            contact: self.contact,
        };
        let record = RecordEntry {
            state,
            version: self.version.map(Version),
            opportunities: self.opportunities,
            chain: self.chain,
        };
        Ok((self.key.into_ref(), record))
    }
}

impl FollowerRow {
    fn into_follower(self, shared: &mut Shared<'_>) -> Result<Follower, SnapshotError> {
        let added_at = self.added_at.into_time()?;
        let (until, until_set_by) = match self.until {
            Some((t, by)) => (
                Some(t.into_time()?),
                Some(EventId(uuid::Uuid::from_bytes(by))),
            ),
            None => (None, None),
        };
        Ok(Follower {
            user: entry(shared.users, self.user, "user")?,
            added_at,
            added_by: shared.actor(self.added_by)?,
            how: shared.how(self.how)?,
            until,
            until_set_by,
        })
    }
}

/// One account's tables, and the actors and hows of its followers each made once and shared
/// by every follower that names it, as the read model keeps them (issue 14).
struct Shared<'a> {
    users: &'a [UserId],
    workflows: &'a [WorkflowId],
    by_user: Vec<Option<Arc<Actor>>>,
    by_workflow: Vec<Option<Arc<Actor>>>,
    by_system: Arc<Actor>,
    manual: Arc<AddedHow>,
    how_workflow: Vec<Option<Arc<AddedHow>>>,
    how_system: Arc<AddedHow>,
}

impl<'a> Shared<'a> {
    fn new(users: &'a [UserId], workflows: &'a [WorkflowId]) -> Self {
        Self {
            users,
            workflows,
            by_user: vec![None; users.len()],
            by_workflow: vec![None; workflows.len()],
            by_system: Arc::new(Actor::System),
            manual: Arc::new(AddedHow::Manual),
            how_workflow: vec![None; workflows.len()],
            how_system: Arc::new(AddedHow::System),
        }
    }

    fn actor(&mut self, by: By) -> Result<Arc<Actor>, SnapshotError> {
        let (users, workflows) = (self.users, self.workflows);
        match by {
            By::User(i) => once(&mut self.by_user, i, || {
                Ok(Actor::User {
                    user: entry(users, i, "user")?,
                })
            }),
            By::Workflow(i) => once(&mut self.by_workflow, i, || {
                Ok(Actor::Workflow {
                    workflow: entry(workflows, i, "workflow")?,
                })
            }),
            By::System => Ok(Arc::clone(&self.by_system)),
        }
    }

    fn how(&mut self, how: How) -> Result<Arc<AddedHow>, SnapshotError> {
        let workflows = self.workflows;
        match how {
            How::Manual => Ok(Arc::clone(&self.manual)),
            How::Workflow(i) => once(&mut self.how_workflow, i, || {
                Ok(AddedHow::Workflow {
                    workflow: entry(workflows, i, "workflow")?,
                })
            }),
            How::OwnerSync(from) => Ok(Arc::new(AddedHow::OwnerSync {
                from: from.into_ref(),
            })),
            How::System => Ok(Arc::clone(&self.how_system)),
        }
    }
}

/// The value cached at `index`, made by `make` (which checks the index) the first time.
fn once<T>(
    cache: &mut [Option<Arc<T>>],
    index: u32,
    make: impl FnOnce() -> Result<T, SnapshotError>,
) -> Result<Arc<T>, SnapshotError> {
    if let Some(Some(kept)) = cache.get(index as usize) {
        return Ok(Arc::clone(kept));
    }
    let value = Arc::new(make()?);
    if let Some(slot) = cache.get_mut(index as usize) {
        *slot = Some(Arc::clone(&value));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    fn follower(id: &str, added_by: Actor, how: AddedHow) -> Follower {
        Follower {
            user: user(id),
            added_at: DateTime::from_timestamp(1_764_115_200, 123_456_789).unwrap(),
            added_by: added_by.into(),
            how: how.into(),
            until: None,
            until_set_by: None,
        }
    }

    /// One account with every kind of member, follower and record the body has a shape for.
    fn snapshot() -> Snapshot {
        let wf = WorkflowId::new("wf-1").unwrap();
        let member = |role, data_scope, active| Membership {
            name: "N".to_owned(),
            email: "n@example.com".to_owned(),
            role,
            data_scope,
            active,
        };
        let members = HashMap::from([
            (user("ann"), member(Role::Admin, DataScope::All, true)),
            (
                user("bob"),
                member(Role::User, DataScope::OnlyAssigned, false),
            ),
        ]);
        let c1 = ContactId::new("c1").unwrap();
        let o1 = OpportunityId::new("o1").unwrap();
        let contact = RecordEntry {
            state: RecordState {
                created: true,
                owner: Some(user("ann")),
                followers: vec![
                    Follower {
                        until: DateTime::from_timestamp(1_764_201_600, 5),
                        until_set_by: Some(EventId(uuid::Uuid::from_u128(7))),
                        ..follower("bob", Actor::System, AddedHow::System)
                    },
                    follower(
                        "cid",
                        Actor::Workflow {
                            workflow: wf.clone(),
                        },
                        AddedHow::Workflow {
                            workflow: wf.clone(),
                        },
                    ),
                ],
                contact: None,
            },
            version: Some(Version(3)),
            opportunities: vec![o1.clone()],
            chain: Some("ab".repeat(32)),
        };
        let opportunity = RecordEntry {
            state: RecordState {
                created: true,
                owner: None,
                followers: vec![
                    follower("ann", Actor::User { user: user("bob") }, AddedHow::Manual),
                    follower(
                        "dee",
                        Actor::System,
                        AddedHow::OwnerSync {
                            from: RecordRef::Contact(c1.clone()),
                        },
                    ),
                ],
                contact: Some(c1.clone()),
            },
            version: Some(Version(1)),
            opportunities: Vec::new(),
            chain: None,
        };
        Snapshot {
            history: HistoryId("h-1".to_owned()),
            position: Position(42),
            head: Some(CommitMark {
                command_id: CommandId::new(),
                chain: Some("cd".repeat(32)),
            }),
            chains: Chains::Kept,
            accounts: vec![AccountSnapshot {
                account: AccountId::new("acme").unwrap(),
                state: AccountState {
                    opened: true,
                    name: "Acme".to_owned(),
                    settings: AccountSettings {
                        allow_different_owners: true,
                        ..AccountSettings::default()
                    },
                    members,
                },
                version: Some(Version(2)),
                chain: Some("ef".repeat(32)),
                records: vec![
                    (RecordRef::Contact(c1), contact),
                    (RecordRef::Opportunity(o1), opportunity),
                ],
            }],
            commands: Some(vec![AccountCommandsSnapshot {
                account: AccountId::new("acme").unwrap(),
                stored: vec![
                    StoredCommand {
                        fingerprint: 5,
                        position: Position(41),
                    },
                    StoredCommand {
                        fingerprint: u64::MAX,
                        position: Position(42),
                    },
                ],
            }]),
        }
    }

    #[test]
    fn a_snapshot_comes_back_as_it_was_written() {
        let taken = snapshot();
        let bytes = encode(&taken).unwrap();
        assert_eq!(bytes[..8], MAGIC);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, taken);
        // Followers added by the same actor share it, as the read model keeps them.
        let records = &back.accounts[0].records;
        let bob = &records[0].1.state.followers[0];
        let dee = &records[1].1.state.followers[1];
        assert!(Arc::ptr_eq(&bob.added_by, &dee.added_by));
        // The same snapshot gives the same bytes, whatever the order of the members' map.
        assert_eq!(encode(&taken).unwrap(), bytes);
    }

    /// The projection's snapshot has no commands section, and reads back without one.
    #[test]
    fn a_snapshot_without_commands_comes_back_without() {
        let taken = Snapshot {
            commands: None,
            ..snapshot()
        };
        let back = decode(&encode(&taken).unwrap()).unwrap();
        assert_eq!(back.commands, None);
        assert_eq!(back, taken);
    }

    #[test]
    fn each_user_is_written_once() {
        let bytes = encode(&snapshot()).unwrap();
        let named = |id: &[u8]| bytes.windows(id.len()).filter(|w| *w == id).count();
        assert_eq!(named(b"ann"), 1);
        assert_eq!(named(b"bob"), 1);
        assert_eq!(named(b"wf-1"), 1);
    }

    #[test]
    fn a_truncated_snapshot_is_refused() {
        let bytes = encode(&snapshot()).unwrap();
        for len in [0, 5, 8, HEADER_LEN - 1] {
            assert!(
                matches!(decode(&bytes[..len]), Err(SnapshotError::Truncated { .. })),
                "{len}"
            );
        }
        for len in [HEADER_LEN, HEADER_LEN + 1, bytes.len() - 1] {
            assert!(
                matches!(decode(&bytes[..len]), Err(SnapshotError::Length { .. })),
                "{len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SnapshotError::Length { .. })));
    }

    #[test]
    fn any_changed_byte_of_the_body_is_caught_by_the_digest() {
        let bytes = encode(&snapshot()).unwrap();
        for at in HEADER_LEN..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(
                matches!(decode(&damaged), Err(SnapshotError::Digest)),
                "byte {at}"
            );
        }
    }

    #[test]
    fn a_changed_header_is_refused() {
        let bytes = encode(&snapshot()).unwrap();
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            decode(&other),
            Err(SnapshotError::Format { found: 4 })
        ));
        let mut other = bytes.clone();
        other[12..14].copy_from_slice(&(EVENT_SCHEMA + 1).to_le_bytes());
        assert!(matches!(
            decode(&other),
            Err(SnapshotError::EventSchema { .. })
        ));
        let mut other = bytes.clone();
        other[DIGEST_RANGE.start] ^= 0x80;
        assert!(matches!(decode(&other), Err(SnapshotError::Digest)));
        let mut other = bytes;
        other[0] = b'X';
        assert!(matches!(decode(&other), Err(SnapshotError::NotASnapshot)));
    }

    #[test]
    fn an_old_json_snapshot_is_recognised_without_decoding_it() {
        let json = br#"{"format":4,"event_schema":1,"history":"h","position":0,"accounts":[]}"#;
        assert!(matches!(decode(json), Err(SnapshotError::NotASnapshot)));
        assert!(matches!(decode(b"{"), Err(SnapshotError::NotASnapshot)));
    }

    /// A body that matches its digest but names a user beyond its table: written by a faulty
    /// program, still refused rather than trusted or a panic.
    #[test]
    fn an_index_beyond_its_table_is_refused() {
        let mut body = Body::of(&snapshot());
        body.accounts[0].records[0].owner = Some(99);
        let body = postcard::to_stdvec(&body).unwrap();
        let digest: [u8; 32] = Sha256::digest(&body).into();
        let mut bytes = header(SNAPSHOT_FORMAT, EVENT_SCHEMA, body.len() as u64, &digest).to_vec();
        bytes.extend_from_slice(&body);
        assert!(matches!(
            decode(&bytes),
            Err(SnapshotError::Index {
                what: "user",
                index: 99,
                ..
            })
        ));
    }

    #[test]
    fn an_undecodable_body_is_refused() {
        let body = [0xff; 10];
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut bytes = header(SNAPSHOT_FORMAT, EVENT_SCHEMA, body.len() as u64, &digest).to_vec();
        bytes.extend_from_slice(&body);
        assert!(matches!(decode(&bytes), Err(SnapshotError::Decode(_))));
    }
}
