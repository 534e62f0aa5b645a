//! Export of the history as JSON lines (one [`StoredCommit`] per line) and import of such lines
//! into another store, with the right expectations and the original command ids and chains.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use followers_shared::store::{EventStore, Expected, StoredCommit, StreamId, Version};

use crate::error::AuditError;
use crate::progress::Progress;
use crate::source::History;

/// Writes every commit of `history` as one JSON line. Fails if a commit could not be read:
/// an export that silently lacked it would not re-import as the same history.
pub fn export(history: &History, out: &mut dyn Write) -> Result<usize, AuditError> {
    history.require_readable()?;
    for c in &history.commits {
        serde_json::to_writer(&mut *out, c).map_err(|e| AuditError::Io {
            what: "cannot write the export".to_owned(),
            source: e.into(),
        })?;
        out.write_all(b"\n")
            .map_err(AuditError::io("cannot write the export"))?;
    }
    out.flush()
        .map_err(AuditError::io("cannot write the export"))?;
    Ok(history.commits.len())
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Commits appended.
    pub appended: usize,
    /// Commits the store already held (same command id on the same stream).
    pub already_stored: usize,
}

/// Parses one exported line.
pub fn parse_line(line: &str, number: usize) -> Result<StoredCommit, AuditError> {
    let bad = |reason: String| AuditError::BadLine {
        line: number,
        reason,
    };
    let stored: StoredCommit = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    for e in &stored.commit.events {
        e.check_schema().map_err(|e| bad(e.to_string()))?;
    }
    Ok(stored)
}

/// Appends the commits read from `input` to `store`, in order. Each stream's first commit
/// expects the stream as the store has it; later ones expect the version the previous append
/// left. Commits keep their command ids and chain values; positions and versions are the new
/// store's own.
pub async fn import<S: EventStore>(
    store: &S,
    input: &mut dyn BufRead,
    progress: &Progress,
) -> Result<Imported, AuditError> {
    progress.start("importing", 0);
    let mut versions: HashMap<StreamId, Option<Version>> = HashMap::new();
    let mut done = Imported::default();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = input
            .read_line(&mut line)
            .map_err(AuditError::io("cannot read the import"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let stored = parse_line(&line, number)?;
        let version = match versions.get(&stored.stream) {
            Some(v) => *v,
            None => store
                .read_stream(&stored.stream)
                .await?
                .last()
                .map(|c| c.version),
        };
        let appended = store
            .append(
                &stored.stream,
                Expected::from_version(version),
                &stored.commit,
            )
            .await
            .map_err(|source| AuditError::Import {
                line: number,
                source,
            })?;
        if appended.already_stored {
            done.already_stored += 1;
        } else {
            done.appended += 1;
        }
        versions.insert(stored.stream, Some(appended.version));
        progress.inc();
    }
    progress.finish();
    Ok(done)
}
