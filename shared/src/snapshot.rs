//! The snapshot file: a read model frozen at a position ([`Snapshot`]) in a compact binary form.
//!
//! Why binary and compact: at a million records the JSON form (format 4) was ~500 MB and took
//! ~6 s to read back, most of it spent on the same user ids, field names and RFC 3339 times
//! written over and over. Here each account names its users, workflows and follower sources once,
//! in tables, and records refer to them by number; times are integers; the body is [postcard].
//!
//! Why the model's own form (format 8): the tables are the read model's own ([`Names`]), and
//! each record is written from its stored form and read back into it ([`Records`]), so neither
//! writing nor loading builds a wide [`crate::read_model::RecordEntry`] per record, and loading
//! allocates each record's followers once, at their final size (issue 14: a restart's memory is
//! the model's, not the model's plus the freed copies it was built from).
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
//! | 54.. | the body: postcard values one after another |
//!
//! The body is a `Head` (the history, the position, its commit, whether chain values are kept,
//! the number of accounts); then for each account an `AccountHead` (its state, its tables, the
//! number of its records), then each of its records in record order, each a `RecordRow` (its
//! counts) followed by one `FollowerRow` per follower; last, the command service's stored
//! commands (`Commands` per account, [`crate::stored_commands`]), or nothing in the
//! projection's. Values one after another, rather than one
//! value holding vectors, so that a million records are written and read one at a time, straight
//! from and into the stored form, with the counts known before anything is allocated.
//!
//! The header comes first so that a file of another format (an older JSON snapshot starts with
//! `{`) is refused before its body is decoded, a truncated one by its length, and a damaged or
//! edited one by its digest ([`SnapshotError`]): a snapshot is ignored, never misread. A body
//! that matches its digest but does not make a model (a number beyond its table, records out of
//! order, a value listed twice in a table: a faulty writer) is refused too, never a panic.
//!
//! The body's types are this module's own, not the domain's: postcard does not describe its
//! data, so it cannot read what the domain's JSON relies on (internally tagged enums, flattened
//! or skipped fields), and a domain type changing shape must not silently change the file. Any
//! change to them bumps [`SNAPSHOT_FORMAT`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::Hash;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::account::AccountState;
use crate::event::EVENT_SCHEMA;
use crate::hashing::{IdHasher, IdMap};
use crate::ids::{AccountId, CommandId, ContactId, EventId, OpportunityId, UserId, WorkflowId};
use crate::model::{AccountSettings, Actor, AddedHow, DataScope, Membership, RecordRef, Role};
use crate::read_model::{AccountSnapshot, Chains, CommitMark, Snapshot};
use crate::records::{
    Names, RecordIndex, Records, Shared, Source, StoredFollower, StoredRecord, Until,
};
use crate::store::{ChainValue, HistoryId, Position, Version};
use crate::stored_commands::{AccountCommandsSnapshot, StoredCommand};

/// The first bytes of every binary snapshot.
pub const MAGIC: [u8; 8] = *b"FLWSNAP\0";

/// The version of the snapshot format. A snapshot of another version is ignored (and the history
/// replayed instead), never misread. Bump it whenever the body's types change.
/// 2: the streams' hash chain values. 3: the history's identity, the head commit, a digest.
/// 4: whether the streams' chain values are in it. 5: binary (this module), users by index.
/// 6: each follower's `until` (issue 17.4). 7: the command service's stored commands
/// ([`crate::stored_commands`], a section of their own after the accounts). 8: the model's own
/// tables and stored records, as values one after another (issue 14). 9: the streams' chain
/// values as their 32 bytes ([`ChainValue`]).
pub const SNAPSHOT_FORMAT: u32 = 9;

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
    #[error("the snapshot lists a {what} twice in one account's table")]
    Twice { what: &'static str },
    #[error("the snapshot's record {place} of an account is not after the one before it")]
    Order { place: u64 },
    #[error("the snapshot gives an opportunity a contact that is not a contact (record {index})")]
    NotAContact { index: u32 },
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
    let mut body = Rows::new(&mut *out);
    body.put(&Head::of(snapshot))?;
    for account in &snapshot.accounts {
        write_account(account, &mut body)?;
    }
    body.put(&snapshot.commands.as_deref().map(Commands::of))?;
    let (len, digest) = body.finish()?;
    out.seek(SeekFrom::Start(start))?;
    out.write_all(&header(SNAPSHOT_FORMAT, EVENT_SCHEMA, len, &digest))?;
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
    let mut body = Reader {
        rest: checked_body(bytes)?,
    };
    let head: Head = body.take()?;
    let mut accounts = Vec::with_capacity(body.room_for(head.accounts));
    for _ in 0..head.accounts {
        accounts.push(read_account(&mut body)?);
    }
    let commands: Option<Vec<Commands>> = body.take()?;
    if !body.rest.is_empty() {
        return Err(SnapshotError::Trailing(body.rest.len()));
    }
    Ok(head.into_snapshot(accounts, commands))
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

/// The body being written: values encoded into a buffer, which goes to the file, hashed and
/// counted, a large piece at a time.
struct Rows<W> {
    out: W,
    buffer: Vec<u8>,
    hasher: Sha256,
    len: u64,
}

/// How much of the body is buffered before it is written.
const PIECE: usize = 1 << 16;

impl<W: Write> Rows<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            buffer: Vec::with_capacity(2 * PIECE),
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn put<T: Serialize>(&mut self, value: &T) -> Result<(), SnapshotError> {
        let buffer = std::mem::take(&mut self.buffer);
        self.buffer = postcard::to_extend(value, buffer).map_err(SnapshotError::Encode)?;
        if self.buffer.len() >= PIECE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        self.out.write_all(&self.buffer)?;
        self.hasher.update(&self.buffer);
        self.len += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// The body's length and digest, once all of it is written.
    fn finish(mut self) -> Result<(u64, [u8; 32]), SnapshotError> {
        self.flush()?;
        Ok((self.len, self.hasher.finalize().into()))
    }
}

/// The body being read: each value taken from the front.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<T: Deserialize<'a>>(&mut self) -> Result<T, SnapshotError> {
        let (value, rest) = postcard::take_from_bytes(self.rest).map_err(SnapshotError::Decode)?;
        self.rest = rest;
        Ok(value)
    }

    /// The capacity to reserve for `count` values still to be read: each takes a byte at least,
    /// so a count beyond what is left is a damaged file, which must not make us allocate.
    fn room_for(&self, count: u64) -> usize {
        usize::try_from(count).map_or(self.rest.len(), |n| n.min(self.rest.len()))
    }
}

// ---------------------------------------------------------------------------------------------
// The body's values

#[derive(Serialize, Deserialize)]
struct Head {
    history: String,
    position: u64,
    head: Option<Mark>,
    chains_kept: bool,
    /// How many accounts follow.
    accounts: u64,
}

/// One account's stored commands: each command id's fingerprint, and its commit's position,
/// sorted by fingerprint. The command service's snapshot ends with them (`Some`); the
/// projection's with `None`.
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

/// One account, before its records. Numbers name users in `users` (the model's own table, then
/// the members and actors its records do not name), workflows in `workflows`, follower sources
/// in `sources` (the model's own table).
#[derive(Serialize, Deserialize)]
struct AccountHead {
    id: AccountId,
    opened: bool,
    name: String,
    settings: Settings,
    version: Option<u64>,
    chain: Option<ChainValue>,
    users: Vec<UserId>,
    workflows: Vec<WorkflowId>,
    sources: Vec<SourceRow>,
    members: Vec<Member>,
    /// How many records follow.
    records: u64,
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

/// Who added a follower, and how ([`Source`]).
#[derive(Serialize, Deserialize)]
struct SourceRow {
    by: By,
    how: How,
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

#[derive(Serialize, Deserialize)]
enum Key {
    Contact(ContactId),
    Opportunity(OpportunityId),
}

/// One record, before its followers ([`StoredRecord`]). `contact` is the place of the
/// opportunity's contact among its account's records in the file.
#[derive(Serialize, Deserialize)]
struct RecordRow<'a> {
    key: Key,
    created: bool,
    owner: Option<u32>,
    contact: Option<u32>,
    version: Option<u64>,
    opportunities: Cow<'a, [OpportunityId]>,
    chain: Option<Cow<'a, ChainValue>>,
    /// How many followers follow.
    followers: u32,
}

/// One follower ([`StoredFollower`]), its `until` with it.
#[derive(Serialize, Deserialize)]
struct FollowerRow {
    user: u32,
    source: u32,
    added_at: Time,
    until: Option<UntilRow>,
}

#[derive(Serialize, Deserialize)]
struct UntilRow {
    at: Option<Time>,
    set_by: Option<[u8; 16]>,
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

// ---------------------------------------------------------------------------------------------
// Writing

/// Values numbered in the order first given, starting with a table whose numbers they keep.
struct Numbering<'a, T> {
    index: HashMap<&'a T, u32>,
    items: Vec<&'a T>,
}

impl<'a, T: Hash + Eq> Numbering<'a, T> {
    fn starting_with(table: &'a [T]) -> Self {
        let mut n = Self {
            index: HashMap::with_capacity(table.len()),
            items: Vec::with_capacity(table.len()),
        };
        for item in table {
            n.of(item);
        }
        n
    }

    fn of(&mut self, item: &'a T) -> u32 {
        let items = &mut self.items;
        *self.index.entry(item).or_insert_with(|| {
            items.push(item);
            u32::try_from(items.len() - 1).expect("fewer than 2^32 names in an account")
        })
    }

    fn into_values(self) -> Vec<T>
    where
        T: Clone,
    {
        self.items.into_iter().cloned().collect()
    }
}

impl Head {
    fn of(s: &Snapshot) -> Self {
        Head {
            history: s.history.0.clone(),
            position: s.position.0,
            head: s.head.as_ref().map(|m| Mark {
                command_id: m.command_id.0.into_bytes(),
                chain: m.chain.clone(),
            }),
            chains_kept: s.chains == Chains::Kept,
            accounts: s.accounts.len() as u64,
        }
    }
}

/// One account: its head, then its records in record order, each with its contact by its place
/// in that order.
fn write_account<W: Write>(a: &AccountSnapshot, body: &mut Rows<W>) -> Result<(), SnapshotError> {
    body.put(&account_head(a))?;
    let order = a.records.in_record_order();
    let mut place = vec![0; order.len()];
    for (p, &index) in (0..).zip(&order) {
        place[index as usize] = p;
    }
    for index in order {
        write_record(&a.records, index, &place, body)?;
    }
    Ok(())
}

fn account_head(a: &AccountSnapshot) -> AccountHead {
    let names = a.records.names();
    let mut users = Numbering::starting_with(names.users());
    let mut workflows = Numbering::starting_with(&[]);
    let sources = names
        .sources()
        .iter()
        .map(|s| SourceRow::of(s, &mut users, &mut workflows))
        .collect();
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
    let s = &a.state.settings;
    AccountHead {
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
        users: users.into_values(),
        workflows: workflows.into_values(),
        sources,
        members,
        records: a.records.len() as u64,
    }
}

impl SourceRow {
    fn of<'a>(
        (by, how): &'a Source,
        users: &mut Numbering<'a, UserId>,
        workflows: &mut Numbering<'a, WorkflowId>,
    ) -> Self {
        let by = match &**by {
            Actor::User { user } => By::User(users.of(user)),
            Actor::Workflow { workflow } => By::Workflow(workflows.of(workflow)),
            Actor::System => By::System,
        };
        let how = match &**how {
            AddedHow::Manual => How::Manual,
            AddedHow::Workflow { workflow } => How::Workflow(workflows.of(workflow)),
            AddedHow::OwnerSync { from } => How::OwnerSync(Key::of(from)),
            AddedHow::System => How::System,
        };
        SourceRow { by, how }
    }
}

/// The record at `index`, then its followers; `place` gives each record's place in the file.
fn write_record<W: Write>(
    records: &Records,
    index: RecordIndex,
    place: &[u32],
    body: &mut Rows<W>,
) -> Result<(), SnapshotError> {
    let (key, stored) = records.stored(index);
    body.put(&RecordRow {
        key: Key::of(key),
        created: stored.created,
        owner: stored.owner(),
        contact: stored.contact().map(|c| place[c as usize]),
        version: stored.version().map(|v| v.0),
        opportunities: Cow::Borrowed(&stored.opportunities[..]),
        chain: records.chain(index).map(Cow::Borrowed),
        followers: u32::try_from(stored.followers.len()).expect("fewer than 2^32 followers"),
    })?;
    for f in stored.followers.iter() {
        let until = f.has_until.then(|| records.names().until(index, f.user));
        body.put(&FollowerRow {
            user: f.user,
            source: f.source,
            added_at: Time::of(f.added_at),
            until: until.flatten().map(|u| UntilRow {
                at: u.at.map(Time::of),
                set_by: u.set_by.map(|e| e.0.into_bytes()),
            }),
        })?;
    }
    Ok(())
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
// Reading

/// `index` if it is in a table of `len` values; an index beyond it is a damaged file, never a
/// panic.
fn within(index: u32, len: usize, what: &'static str) -> Result<u32, SnapshotError> {
    if (index as usize) < len {
        Ok(index)
    } else {
        Err(SnapshotError::Index { what, index, len })
    }
}

/// Entry `index` of `table`, checked as [`within`].
fn entry<T: Clone>(table: &[T], index: u32, what: &'static str) -> Result<T, SnapshotError> {
    within(index, table.len(), what).map(|i| table[i as usize].clone())
}

impl Head {
    fn into_snapshot(
        self,
        accounts: Vec<AccountSnapshot>,
        commands: Option<Vec<Commands>>,
    ) -> Snapshot {
        Snapshot {
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
            commands: commands.map(|c| c.into_iter().map(Commands::into_snapshot).collect()),
        }
    }
}

/// One account: its head, then its records into a store sized for them.
fn read_account(body: &mut Reader<'_>) -> Result<AccountSnapshot, SnapshotError> {
    let head: AccountHead = body.take()?;
    let mut members = IdMap::with_capacity_and_hasher(head.members.len(), IdHasher::default());
    for m in head.members {
        members.insert(entry(&head.users, m.user, "user")?, m.into_membership());
    }
    let sources = head
        .sources
        .into_iter()
        .map(|s| s.into_source(&head.users, &head.workflows))
        .collect::<Result<_, _>>()?;
    let names = Names::of(head.users, sources).map_err(|what| SnapshotError::Twice { what })?;
    let mut records = Records::loading(body.room_for(head.records), names);
    for place in 0..head.records {
        read_record(body, &mut records, place)?;
    }
    records.index_all();
    check_contacts(&records)?;
    let s = head.settings;
    Ok(AccountSnapshot {
        account: head.id,
        state: AccountState {
            opened: head.opened,
            name: head.name,
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
        version: head.version.map(Version),
        chain: head.chain,
        records,
    })
}

impl Member {
    fn into_membership(self) -> Membership {
        Membership {
            name: self.name,
            email: self.email,
            role: if self.admin { Role::Admin } else { Role::User },
            data_scope: if self.only_assigned {
                DataScope::OnlyAssigned
            } else {
                DataScope::All
            },
            active: self.active,
        }
    }
}

impl SourceRow {
    fn into_source(
        self,
        users: &[UserId],
        workflows: &[WorkflowId],
    ) -> Result<Source, SnapshotError> {
        let by = match self.by {
            By::User(i) => Actor::User {
                user: entry(users, i, "user")?,
            },
            By::Workflow(i) => Actor::Workflow {
                workflow: entry(workflows, i, "workflow")?,
            },
            By::System => Actor::System,
        };
        let how = match self.how {
            How::Manual => AddedHow::Manual,
            How::Workflow(i) => AddedHow::Workflow {
                workflow: entry(workflows, i, "workflow")?,
            },
            How::OwnerSync(from) => AddedHow::OwnerSync {
                from: from.into_ref(),
            },
            How::System => AddedHow::System,
        };
        Ok((Arc::new(by), Arc::new(how)))
    }
}

/// The record at `place` of its account in the file, and its followers, added to `records`
/// (which holds the records before it, each before it in record order).
fn read_record(
    body: &mut Reader<'_>,
    records: &mut Records,
    place: u64,
) -> Result<(), SnapshotError> {
    let row: RecordRow = body.take()?;
    let key = row.key.into_ref();
    let index = RecordIndex::try_from(records.len()).map_err(|_| SnapshotError::Order { place })?;
    if index > 0 && records.key(index - 1) >= &key {
        return Err(SnapshotError::Order { place });
    }
    let users = records.names().users().len();
    let mut followers = Vec::with_capacity(body.room_for(row.followers.into()));
    for _ in 0..row.followers {
        let f: FollowerRow = body.take()?;
        let user = within(f.user, users, "user")?;
        let has_until = f.until.is_some();
        if let Some(until) = f.until {
            let until = Until {
                at: until.at.map(Time::into_time).transpose()?,
                set_by: until.set_by.map(|b| EventId(uuid::Uuid::from_bytes(b))),
            };
            records.set_until(index, user, until);
        }
        followers.push(StoredFollower {
            user,
            source: within(f.source, records.names().sources().len(), "source")?,
            added_at: f.added_at.into_time()?,
            has_until,
        });
    }
    let stored = StoredRecord {
        followers: Shared::from(&followers[..]),
        opportunities: Shared::from(&row.opportunities[..]),
        version: row.version.unwrap_or(0),
        owner: row
            .owner
            .map(|o| within(o, users, "user"))
            .transpose()?
            .unwrap_or(0),
        contact: row.contact.unwrap_or(0),
        created: row.created,
        has_version: row.version.is_some(),
        has_owner: row.owner.is_some(),
        has_contact: row.contact.is_some(),
    };
    records.push_unindexed(key, stored);
    records.set_chain(index, row.chain.map(Cow::into_owned));
    Ok(())
}

/// Each opportunity's contact is a contact of the account (R4).
fn check_contacts(records: &Records) -> Result<(), SnapshotError> {
    for index in 0..RecordIndex::try_from(records.len()).unwrap_or(RecordIndex::MAX) {
        let Some(contact) = records.stored(index).1.contact() else {
            continue;
        };
        within(contact, records.len(), "record")?;
        if !matches!(records.key(contact), RecordRef::Contact(_)) {
            return Err(SnapshotError::NotAContact { index: contact });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::Follower;
    use crate::read_model::RecordEntry;
    use crate::record::RecordState;

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
        let members = IdMap::from_iter([
            (user("ann"), member(Role::Admin, DataScope::All, true)),
            (
                user("bob"),
                member(Role::User, DataScope::OnlyAssigned, false),
            ),
            (user("eve"), member(Role::User, DataScope::All, true)),
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
            chain: Some(ChainValue::of(&"ab".repeat(32))),
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
            // Not a value `chain_hash` writes: kept as written.
            chain: Some(ChainValue::of("written by something else")),
        };
        // Added out of record order, as a model may have them: the file has them in it.
        let mut records = Records::default();
        records.insert(RecordRef::Opportunity(o1), opportunity);
        records.insert(RecordRef::Contact(c1), contact);
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
                chain: Some(ChainValue::of(&"ef".repeat(32))),
                records,
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
        // Read back in record order, its opportunity's contact found by its place.
        let records = &back.accounts[0].records;
        let keys: Vec<_> = records.keys().map(RecordRef::id).collect();
        assert_eq!(keys, ["c1", "o1"]);
        let o1 = RecordRef::Opportunity(OpportunityId::new("o1").unwrap());
        assert_eq!(records.get(&o1).unwrap().contact().unwrap().as_str(), "c1");
        // The same snapshot gives the same bytes, whatever the order of the members' map; so
        // does the snapshot read back.
        assert_eq!(encode(&taken).unwrap(), bytes);
        assert_eq!(encode(&back).unwrap(), bytes);
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
        assert_eq!(named(b"eve"), 1, "a member no record names");
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
        other[8..12].copy_from_slice(&6u32.to_le_bytes());
        assert!(matches!(
            decode(&other),
            Err(SnapshotError::Format { found: 6 })
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

    /// A file of `body` with a header that fits it, as a faulty program would write it.
    fn file_of(body: &[u8]) -> Vec<u8> {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut bytes = header(SNAPSHOT_FORMAT, EVENT_SCHEMA, body.len() as u64, &digest).to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    /// The body of one account with `users`, no sources, and `records` without followers.
    fn body(users: &[&str], records: &[RecordRow<'_>]) -> Vec<u8> {
        let head = Head {
            history: "h".to_owned(),
            position: 1,
            head: None,
            chains_kept: false,
            accounts: 1,
        };
        let account = AccountHead {
            id: AccountId::new("acme").unwrap(),
            opened: true,
            name: "Acme".to_owned(),
            settings: Settings {
                allow_different_owners: true,
                sync_contact_follower_with_opportunity_owner: false,
                sync_opportunity_follower_with_contact_owner: false,
                contact_access_includes_opportunities: false,
            },
            version: None,
            chain: None,
            users: users.iter().map(|u| user(u)).collect(),
            workflows: Vec::new(),
            sources: Vec::new(),
            members: Vec::new(),
            records: records.len() as u64,
        };
        let mut out = postcard::to_stdvec(&head).unwrap();
        out = postcard::to_extend(&account, out).unwrap();
        for r in records {
            out = postcard::to_extend(r, out).unwrap();
        }
        // No stored commands: a projection's snapshot.
        postcard::to_extend(&None::<Vec<Commands>>, out).unwrap()
    }

    fn row(key: Key) -> RecordRow<'static> {
        RecordRow {
            key,
            created: true,
            owner: None,
            contact: None,
            version: None,
            opportunities: Cow::Borrowed(&[]),
            chain: None,
            followers: 0,
        }
    }

    fn contact(id: &str) -> Key {
        Key::Contact(ContactId::new(id).unwrap())
    }

    fn opportunity(id: &str) -> Key {
        Key::Opportunity(OpportunityId::new(id).unwrap())
    }

    /// A body that matches its digest but does not make a model, written by a faulty program:
    /// refused rather than trusted, and never a panic or a huge allocation.
    #[test]
    fn a_body_that_does_not_make_a_model_is_refused() {
        let fine = body(&["ann"], &[row(contact("c1")), row(opportunity("o1"))]);
        assert!(decode(&file_of(&fine)).is_ok());
        let owned_by = |n| RecordRow {
            owner: Some(n),
            ..row(contact("c1"))
        };
        assert!(matches!(
            decode(&file_of(&body(&["ann"], &[owned_by(99)]))),
            Err(SnapshotError::Index {
                what: "user",
                index: 99,
                ..
            })
        ));
        assert!(matches!(
            decode(&file_of(&body(&["ann", "ann"], &[owned_by(1)]))),
            Err(SnapshotError::Twice { what: "user" })
        ));
        for twice_or_backwards in [
            [row(contact("c2")), row(contact("c1"))],
            [row(contact("c1")), row(contact("c1"))],
            [row(opportunity("o1")), row(contact("c1"))],
        ] {
            assert!(matches!(
                decode(&file_of(&body(&["ann"], &twice_or_backwards))),
                Err(SnapshotError::Order { place: 1 })
            ));
        }
        let of_contact = |n| RecordRow {
            contact: Some(n),
            ..row(opportunity("o2"))
        };
        assert!(matches!(
            decode(&file_of(&body(
                &[],
                &[row(opportunity("o1")), of_contact(0)]
            ))),
            Err(SnapshotError::NotAContact { index: 0 })
        ));
        assert!(matches!(
            decode(&file_of(&body(&[], &[of_contact(5)]))),
            Err(SnapshotError::Index {
                what: "record",
                index: 5,
                ..
            })
        ));
        let followed = RecordRow {
            followers: u32::MAX,
            ..row(contact("c1"))
        };
        assert!(matches!(
            decode(&file_of(&body(&[], &[followed]))),
            Err(SnapshotError::Decode(_))
        ));
        let countless = Head {
            history: "h".to_owned(),
            position: 1,
            head: None,
            chains_kept: false,
            accounts: u64::MAX,
        };
        assert!(matches!(
            decode(&file_of(&postcard::to_stdvec(&countless).unwrap())),
            Err(SnapshotError::Decode(_))
        ));
    }

    #[test]
    fn an_undecodable_body_is_refused() {
        let body = [0xff; 10];
        assert!(matches!(
            decode(&file_of(&body)),
            Err(SnapshotError::Decode(_))
        ));
    }
}
