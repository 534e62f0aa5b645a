//! Is the history whole and untampered, and does replaying it give the read models?
//!
//! - Every commit can be read.
//! - Each stream's hash chain: every commit's chain value must be
//!   [`chain_hash`](followers_shared::store::chain_hash) of the previous commit's value and its
//!   own events. An altered commit, and any commit after a removed or inserted one, fails.
//! - Replay consistency: replaying everything at once and replaying through a snapshot at the
//!   midpoint give the same model.
//! - With the projection service's snapshot: replaying up to its position gives exactly it
//!   (chain values included, so a commit removed from the end of a stream is caught too).
//! - With public keys ([`Signatures`]): every commit is signed by a configured key and links to
//!   the last accepted commit of its stream ([`Verifier::admit`], the rule the services apply
//!   with `--require-signatures`), and the command service's signed head matches the accepted
//!   history up to its position, so a commit removed from the end of a stream is caught.
//! - With one account's history only (`--account`): everything above that a stream or an account
//!   decides alone (chains are per stream, the read model per account); the signed head, which
//!   covers every account, is not compared, and the report says so ([`Report::limited`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use followers_shared::ids::AccountId;
use followers_shared::partition::{Partition, PartitionCount};
use followers_shared::read_model::{ReadModel, Snapshot};
use followers_shared::signing::{
    KeyFileError, KeyId, SignatureError, SignedHead, StreamHeads, Verifier,
};
use followers_shared::store::{Position, StreamId, Version};
use serde::Serialize;

use crate::error::AuditError;
use crate::progress::Progress;
use crate::source::History;
use crate::state::{replay, replay_into};

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Unreadable,
    ChainBroken,
    Unsealed,
    VersionOrder,
    ReplayInconsistent,
    SnapshotAhead,
    SnapshotDiffers,
    /// No signature, with public keys given.
    Unsigned,
    /// Signed by a key that is not among the public keys given.
    UnknownKey,
    /// A signature that does not verify: forged, or the commit was altered.
    BadSignature,
    /// The store keeps no signed head (the command service wrote none, or it was deleted).
    HeadMissing,
    /// The signed head cannot be read, or its signature does not verify.
    HeadUnverified,
    /// The signed head is beyond the history's end: commits were removed from the end.
    HeadAhead,
    /// The history up to the signed head's position does not match its digest.
    HeadDiffers,
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    pub message: String,
}

/// The verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub commits: usize,
    pub streams: usize,
    /// Commits carrying a chain value.
    pub sealed: usize,
    /// The snapshot compared, if any, by its position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_position: Option<Position>,
    /// Whether signatures were checked (public keys were given).
    pub signatures_checked: bool,
    /// Commits with a valid signature, by the key that made it (only when checked).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signed_by: BTreeMap<KeyId, usize>,
    /// The signed head compared, if one was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_head: Option<HeadSummary>,
    /// In a partitioned history, the signed head of each partition compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partition_heads: Vec<HeadSummary>,
    /// The one account whose history was read and checked (`--account`); absent: all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountId>,
    /// Checks skipped or narrowed because only one account was read, each as a sentence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limited: Vec<String>,
    pub problems: Vec<Problem>,
}

/// The signed head a verification compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadSummary {
    /// The partition whose streams it covers (a partitioned history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u16>,
    pub position: Position,
    pub at: DateTime<Utc>,
    pub key_id: String,
    pub streams: u64,
}

/// What the store holds for a signed head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HeadFound {
    /// The store keeps none (EventStoreDB); not a problem.
    #[default]
    NotKept,
    /// It should, but there is none or it cannot be read: why, as a sentence.
    Missing(String),
    Found(SignedHead),
    /// A partitioned history's heads, one per partition (`signed-head.p<N>`), and why a
    /// partition has none.
    Partitions {
        count: PartitionCount,
        heads: BTreeMap<Partition, SignedHead>,
        missing: Vec<(Partition, String)>,
    },
}

/// The public keys to check signatures with, and the signed head to compare with.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    /// Empty: signatures are not checked (nor is the signed head).
    pub verifier: Verifier,
    pub head: HeadFound,
}

impl Signatures {
    /// The public key files `paths` (empty: nothing is checked).
    pub fn load(paths: &[PathBuf], head: HeadFound) -> Result<Self, KeyFileError> {
        let verifier = Verifier::from_public_key_files(
            paths
                .iter()
                .map(|p| (p.as_path(), std::fs::read_to_string(p))),
        )?;
        Ok(Self { verifier, head })
    }

    fn checked(&self) -> bool {
        !self.verifier.is_empty()
    }
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn has(&self, kind: ProblemKind) -> bool {
        self.problems.iter().any(|p| p.kind == kind)
    }
}

/// How strict to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Accept commits without a chain value (a history written before chains existed).
    pub allow_unsealed: bool,
}

/// Verifies the whole `history`, and compares it with `snapshot` if given. Signatures are not
/// checked ([`verify_signed`] does).
pub fn verify(
    history: &History,
    snapshot: Option<&Snapshot>,
    options: Options,
    progress: &Progress,
) -> Report {
    verify_signed(history, snapshot, options, &Signatures::default(), progress)
}

/// [`verify`], and with public keys in `signatures`: every commit's signature, and the signed
/// head.
pub fn verify_signed(
    history: &History,
    snapshot: Option<&Snapshot>,
    options: Options,
    signatures: &Signatures,
    progress: &Progress,
) -> Report {
    let mut report = Report {
        commits: history.commits.len(),
        signatures_checked: signatures.checked(),
        account: history.account.clone(),
        ..Report::default()
    };
    for u in &history.unreadable {
        report.problems.push(Problem {
            kind: ProblemKind::Unreadable,
            position: Some(u.position),
            stream: None,
            message: format!(
                "the commit at position {} cannot be read: {}",
                u.position.0, u.reason
            ),
        });
    }
    let accepted = check_chains(history, options, signatures, &mut report, progress);
    match (&history.account, signatures.checked()) {
        (None, true) => check_head(history, &accepted, signatures, &mut report),
        (Some(account), true) => report.limited.push(format!(
            "the signed head was not compared: it covers every account's streams, and only \
             account {account} was read (a commit removed from the end of one of its streams \
             is not detected; verify the whole history, or compare with --snapshot)"
        )),
        (_, false) => {}
    }
    check_replay(history, &mut report);
    if let Some(s) = snapshot {
        check_snapshot(history, s, &mut report);
    }
    report
}

/// Checks versions, chains and (with keys) signatures; returns which commits are accepted: all
/// without keys, otherwise the signed ones that follow from their predecessor (as
/// [`Verifier::admit`] decides for a service).
fn check_chains(
    history: &History,
    options: Options,
    signatures: &Signatures,
    report: &mut Report,
    progress: &Progress,
) -> Vec<bool> {
    progress.start("chains", history.commits.len() as u64);
    let checking = signatures.checked();
    let mut accepted = Vec::with_capacity(history.commits.len());
    // Per stream: the last commit's version and chain value, and the last accepted commit's
    // chain value. A commit may follow either: a service with --require-signatures builds on
    // the last accepted commit, one without it on whatever came last. So a commit refused for
    // its signature is reported once, not again at every commit after it.
    let mut last: HashMap<&StreamId, (Version, Option<&str>)> = HashMap::new();
    let mut last_accepted: HashMap<&StreamId, Option<&str>> = HashMap::new();
    for c in &history.commits {
        let previous = last.get(&c.stream).copied();
        let accepted_chain = last_accepted.get(&c.stream).copied().flatten();
        let problem = |kind, message: String| Problem {
            kind,
            position: Some(c.position),
            stream: Some(c.stream.to_string()),
            message,
        };
        if let Some((v, _)) = previous
            && c.version <= v
        {
            report.problems.push(problem(
                ProblemKind::VersionOrder,
                format!(
                    "commit #{} of {} has version {} after version {}",
                    c.position.0, c.stream, c.version.0, v.0
                ),
            ));
        }
        let prev_chain = previous.and_then(|p| p.1);
        let mut chain_ok = false;
        match &c.commit.chain {
            None => {
                if !options.allow_unsealed {
                    report.problems.push(problem(
                        ProblemKind::Unsealed,
                        format!(
                            "commit #{} of {} carries no chain value: the command service did not write it",
                            c.position.0, c.stream
                        ),
                    ));
                }
            }
            Some(_) => {
                report.sealed += 1;
                chain_ok =
                    c.commit.seals(prev_chain) || (checking && c.commit.seals(accepted_chain));
                if !chain_ok {
                    report.problems.push(problem(
                        ProblemKind::ChainBroken,
                        format!(
                            "commit #{} of {} does not match its chain value: it was altered, reordered, or a commit before it was removed or inserted",
                            c.position.0, c.stream
                        ),
                    ));
                }
            }
        }
        let signed_ok = if checking {
            match signatures.verifier.verify(c) {
                Ok(key) => {
                    *report.signed_by.entry(key).or_default() += 1;
                    true
                }
                Err(e) => {
                    let (kind, why) = match &e {
                        SignatureError::UnknownKey { key_id } => (
                            ProblemKind::UnknownKey,
                            format!("is signed with key `{key_id}`, which is not among the public keys given"),
                        ),
                        SignatureError::Malformed { key_id, .. }
                        | SignatureError::Invalid { key_id, .. } => (
                            ProblemKind::BadSignature,
                            format!("has a signature that does not verify with key `{key_id}`: it was forged, or altered after signing"),
                        ),
                        SignatureError::Unsealed
                        | SignatureError::Unsigned
                        | SignatureError::ChainBroken => (
                            ProblemKind::Unsigned,
                            "is not signed: the command service (with its signing key) did not write it"
                                .to_owned(),
                        ),
                    };
                    report.problems.push(problem(
                        kind,
                        format!("commit #{} of {} {why}", c.position.0, c.stream),
                    ));
                    false
                }
            }
        } else {
            true
        };
        let ok = chain_ok && signed_ok;
        accepted.push(!checking || ok);
        if !checking || ok {
            last_accepted.insert(&c.stream, c.commit.chain.as_deref());
        }
        last.insert(&c.stream, (c.version, c.commit.chain.as_deref()));
        progress.inc();
    }
    progress.finish();
    report.streams = last.len();
    accepted
}

/// Compares the accepted history with the command service's signed head, or with each
/// partition's.
fn check_head(history: &History, accepted: &[bool], signatures: &Signatures, report: &mut Report) {
    match &signatures.head {
        HeadFound::NotKept => {}
        HeadFound::Missing(why) => report.problems.push(head_missing(why)),
        HeadFound::Found(head) => {
            report.signed_head = Some(HeadSummary::of(head, None));
            check_one_head(history, accepted, signatures, head, None, report);
        }
        HeadFound::Partitions {
            count,
            heads,
            missing,
        } => {
            // A partition without commits has nothing to sign.
            let written: std::collections::BTreeSet<Partition> = history
                .commits
                .iter()
                .map(|c| count.of(&c.stream.account))
                .collect();
            for (p, why) in missing.iter().filter(|(p, _)| written.contains(p)) {
                report
                    .problems
                    .push(head_missing(&format!("partition {p}: {why}")));
            }
            for (p, head) in heads {
                report.partition_heads.push(HeadSummary::of(head, Some(*p)));
                check_one_head(
                    history,
                    accepted,
                    signatures,
                    head,
                    Some((*count, *p)),
                    report,
                );
            }
        }
    }
}

fn head_missing(why: &str) -> Problem {
    Problem {
        kind: ProblemKind::HeadMissing,
        position: None,
        stream: None,
        message: format!(
            "{why}: a commit removed from the end of a stream cannot be detected without it"
        ),
    }
}

impl HeadSummary {
    fn of(head: &SignedHead, partition: Option<Partition>) -> Self {
        Self {
            partition: partition.map(|p| p.0),
            position: head.position,
            at: head.at,
            key_id: head.key_id.clone(),
            streams: head.streams,
        }
    }
}

/// Compares the accepted history (of one partition's accounts, with `partition`) with `head`.
fn check_one_head(
    history: &History,
    accepted: &[bool],
    signatures: &Signatures,
    head: &SignedHead,
    partition: Option<(PartitionCount, Partition)>,
    report: &mut Report,
) {
    let of = partition.map_or(String::new(), |(_, p)| format!(" of partition {p}"));
    let problem = |kind, message| Problem {
        kind,
        position: Some(head.position),
        stream: None,
        message,
    };
    if let Err(e) = signatures.verifier.verify_head(head) {
        report.problems.push(problem(
            ProblemKind::HeadUnverified,
            format!(
                "the signed head{of} at position {} cannot be trusted: {e}",
                head.position.0
            ),
        ));
        return;
    }
    if head.position > history.head {
        report.problems.push(problem(
            ProblemKind::HeadAhead,
            format!(
                "the signed head{of} of {} is at position {} but the history ends at {}: commits were removed from the end",
                head.at.to_rfc3339(),
                head.position.0,
                history.head.0
            ),
        ));
        return;
    }
    let mut model = ReadModel::new();
    for (c, _) in history
        .commits
        .iter()
        .zip(accepted)
        .filter(|(c, ok)| **ok && c.position <= head.position)
        .filter(|(c, _)| partition.is_none_or(|(count, p)| count.of(&c.stream.account) == p))
    {
        model.apply(c);
    }
    let ours = StreamHeads::collect(&model).digest();
    if ours.digest != head.digest || ours.streams != head.streams {
        report.problems.push(problem(
            ProblemKind::HeadDiffers,
            format!(
                "the history{of} up to position {} does not match the signed head of {} ({} streams here, {} signed): a commit at or before it was removed or altered, or a service applied a commit listed above",
                head.position.0,
                head.at.to_rfc3339(),
                ours.streams,
                head.streams
            ),
        ));
    }
}

/// Replays everything at once, and again through a snapshot at the midpoint.
fn check_replay(history: &History, report: &mut Report) {
    let end = history
        .commits
        .last()
        .map_or(Position(0), |c| c.position)
        .max(
            history
                .unreadable
                .last()
                .map_or(Position(0), |u| u.position),
        );
    let whole = replay(history, end);
    let middle = history
        .commits
        .get(history.commits.len() / 2)
        .map_or(Position(0), |c| c.position);
    let half = replay(history, middle).to_snapshot();
    let round_trip = followers_shared::snapshot::encode(&half)
        .and_then(|bytes| followers_shared::snapshot::decode(&bytes))
        .ok()
        .map(ReadModel::from_snapshot);
    let Some(mut resumed) = round_trip else {
        report.problems.push(Problem {
            kind: ProblemKind::ReplayInconsistent,
            position: Some(middle),
            stream: None,
            message: "a snapshot of the replay cannot be read back".to_owned(),
        });
        return;
    };
    for c in history.commits.iter().filter(|c| c.position > middle) {
        resumed.apply(c);
    }
    for u in history.unreadable.iter().filter(|u| u.position > middle) {
        resumed.skip_to(u.position);
    }
    // The states and where they stand.
    let (resumed, whole) = (resumed.to_snapshot(), whole.to_snapshot());
    if resumed.position != whole.position || resumed.accounts != whole.accounts {
        report.problems.push(Problem {
            kind: ProblemKind::ReplayInconsistent,
            position: Some(middle),
            stream: None,
            message: "replaying through a snapshot gives another model than replaying at once"
                .to_owned(),
        });
    }
}

fn check_snapshot(history: &History, snapshot: &Snapshot, report: &mut Report) {
    report.snapshot_position = Some(snapshot.position);
    if let Some(account) = &history.account {
        report.limited.push(format!(
            "the snapshot was compared for account {account} only; whether it is ahead of the \
             history's end cannot be told from one account"
        ));
    } else if snapshot.position > history.head {
        report.problems.push(Problem {
            kind: ProblemKind::SnapshotAhead,
            position: Some(snapshot.position),
            stream: None,
            message: format!(
                "the snapshot is at position {} but the history ends at {}: commits were removed",
                snapshot.position.0, history.head.0
            ),
        });
        return;
    }
    // As the service that wrote it replayed: with the streams' chain values or without.
    let model = ReadModel::with_chains(snapshot.chains);
    let replayed = replay_into(model, history, snapshot.position).to_snapshot();
    for difference in differences(&replayed, snapshot, history.account.as_ref()) {
        report.problems.push(Problem {
            kind: ProblemKind::SnapshotDiffers,
            position: Some(snapshot.position),
            stream: Some(difference.0),
            message: difference.1,
        });
    }
}

/// The streams whose state differs between the replay and the snapshot; of one account only
/// when `only` is given (the replay of one account stops at its last commit, not at the
/// snapshot's position, so positions are not compared then).
fn differences(
    replayed: &Snapshot,
    snapshot: &Snapshot,
    only: Option<&AccountId>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if only.is_none() && replayed.position != snapshot.position {
        out.push((
            "-".to_owned(),
            format!(
                "the replay ends at position {}, the snapshot at {}",
                replayed.position.0, snapshot.position.0
            ),
        ));
    }
    let theirs: HashMap<_, _> = snapshot.accounts.iter().map(|a| (&a.account, a)).collect();
    let ours: HashMap<_, _> = replayed.accounts.iter().map(|a| (&a.account, a)).collect();
    let mut names: Vec<_> = theirs.keys().chain(ours.keys()).copied().collect();
    names.sort();
    names.dedup();
    names.retain(|a| only.is_none_or(|o| *a == o));
    for account in names {
        let stream = StreamId::account(account.clone()).to_string();
        let (Some(a), Some(b)) = (ours.get(account), theirs.get(account)) else {
            out.push((
                stream,
                format!("account {account} is only in one of replay and snapshot"),
            ));
            continue;
        };
        if a.state != b.state || a.version != b.version || a.chain != b.chain {
            out.push((
                stream,
                format!("account {account} differs from the snapshot"),
            ));
        }
        let records: HashMap<_, _> = b.records.iter().collect();
        let mine: HashMap<_, _> = a.records.iter().collect();
        let mut refs: Vec<_> = records.keys().chain(mine.keys()).copied().collect();
        refs.sort();
        refs.dedup();
        for r in refs {
            if records.get(r) != mine.get(r) {
                out.push((
                    StreamId::record(account.clone(), r.clone()).to_string(),
                    format!("{r} of account {account} differs from the snapshot"),
                ));
            }
        }
    }
    out
}

/// Reads a snapshot file written by the projection service: its format, length and digest are
/// checked ([`followers_shared::snapshot::decode`]).
pub fn load_snapshot(path: &Path) -> Result<Snapshot, AuditError> {
    let fail = |reason: String| AuditError::Snapshot {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    followers_shared::snapshot::decode(&bytes).map_err(|e| fail(reasons(&e)))
}

/// An error and its sources, in one line.
fn reasons(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
