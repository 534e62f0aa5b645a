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

use std::collections::HashMap;
use std::path::Path;

use followers_shared::read_model::{ReadModel, SNAPSHOT_FORMAT, Snapshot};
use followers_shared::store::{Position, StreamId, Version};
use serde::Serialize;

use crate::error::AuditError;
use crate::progress::Progress;
use crate::source::History;
use crate::state::replay;

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
    pub problems: Vec<Problem>,
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

/// Verifies the whole `history`, and compares it with `snapshot` if given.
pub fn verify(
    history: &History,
    snapshot: Option<&Snapshot>,
    options: Options,
    progress: &Progress,
) -> Report {
    let mut report = Report {
        commits: history.commits.len(),
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
    check_chains(history, options, &mut report, progress);
    check_replay(history, &mut report);
    if let Some(s) = snapshot {
        check_snapshot(history, s, &mut report);
    }
    report
}

fn check_chains(history: &History, options: Options, report: &mut Report, progress: &Progress) {
    progress.start("chains", history.commits.len() as u64);
    let mut last: HashMap<&StreamId, (Version, Option<&str>)> = HashMap::new();
    for c in &history.commits {
        let previous = last.get(&c.stream).copied();
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
                if !c.commit.seals(prev_chain) {
                    report.problems.push(problem(
                        ProblemKind::ChainBroken,
                        format!(
                            "commit #{} of {} does not match its chain value: it was altered, or a commit before it was removed or inserted",
                            c.position.0, c.stream
                        ),
                    ));
                }
            }
        }
        last.insert(&c.stream, (c.version, c.commit.chain.as_deref()));
        progress.inc();
    }
    progress.finish();
    report.streams = last.len();
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
    let round_trip = serde_json::to_vec(&half)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok())
        .and_then(ReadModel::from_snapshot);
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
    if resumed.to_snapshot() != whole.to_snapshot() {
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
    if snapshot.position > history.head {
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
    let replayed = replay(history, snapshot.position).to_snapshot();
    for difference in differences(&replayed, snapshot) {
        report.problems.push(Problem {
            kind: ProblemKind::SnapshotDiffers,
            position: Some(snapshot.position),
            stream: Some(difference.0),
            message: difference.1,
        });
    }
}

/// The streams whose state differs between the replay and the snapshot.
fn differences(replayed: &Snapshot, snapshot: &Snapshot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if replayed.position != snapshot.position {
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
        let records: HashMap<_, _> = b.records.iter().map(|(r, e)| (r, e)).collect();
        let mine: HashMap<_, _> = a.records.iter().map(|(r, e)| (r, e)).collect();
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

/// Reads a snapshot file written by the projection service.
pub fn load_snapshot(path: &Path) -> Result<Snapshot, AuditError> {
    let fail = |reason: String| AuditError::Snapshot {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let snapshot: Snapshot =
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| fail(e.to_string()))?;
    if snapshot.format != SNAPSHOT_FORMAT {
        return Err(fail(format!(
            "it is of format {}, this tool reads format {SNAPSHOT_FORMAT}",
            snapshot.format
        )));
    }
    Ok(snapshot)
}
