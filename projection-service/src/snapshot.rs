//! Snapshots of the read model in a local file, so a restart does not replay everything.
//!
//! The file is [`followers_shared::snapshot`]'s binary format. It is written to a temporary
//! file, flushed and synced, then renamed over the old one, so a crash leaves either the old
//! snapshot or the new one. A snapshot is used only when its file reads back whole (this
//! program's format, the length and the digest its header gives) and it fits the history
//! ([`Snapshot::fits`]): the same history (by identity) and the same commit at its position.
//! Anything else (unreadable, another format such as an older JSON snapshot, truncated, damaged
//! or edited, taken from another history, ahead of it, keeping the streams' chain values when
//! this run drops them or the reverse) is ignored, with a log line saying why, and the history
//! replayed instead.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use followers_shared::read_model::{Chains, ReadModel, Snapshot};
use followers_shared::snapshot::{self as file, SnapshotError};
use followers_shared::store::{EventStore, HistoryId};

/// The model in the snapshot at `path`, if there is one that fits the history `store` holds and
/// keeps the streams' chain values as `chains` says: a snapshot without them cannot serve a
/// model that checks signatures, and one with them would spend the memory dropping them saves.
pub async fn load_fitting<S: EventStore>(
    path: &Path,
    store: &S,
    chains: Chains,
) -> Option<(ReadModel, HistoryId)> {
    let snapshot = read(path)?;
    let fits = async {
        let identity = store.identity().await?;
        let head = store.head().await?;
        let at = match snapshot.position.0 {
            0 => None,
            _ => store.read_at(snapshot.position).await?,
        };
        Ok::<_, followers_shared::store::StoreError>((identity, head, at))
    };
    let (identity, head, at) = match fits.await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the snapshot against the history; replaying it");
            return None;
        }
    };
    if let Err(why) = snapshot.fits(&identity, head, at.as_ref()) {
        tracing::warn!(path = %path.display(), reason = %why, "ignoring the snapshot; replaying the history");
        return None;
    }
    if snapshot.chains != chains {
        tracing::warn!(path = %path.display(), snapshot = ?snapshot.chains, wanted = ?chains,
            "ignoring a snapshot that keeps the streams' chain values otherwise; replaying the history");
        return None;
    }
    let position = snapshot.position;
    let model = ReadModel::from_snapshot(snapshot);
    tracing::info!(position = position.0, "loaded the snapshot");
    Some((model, identity))
}

/// Reads the snapshot file at `path`, if there is a whole one of this program's format.
fn read(path: &Path) -> Option<Snapshot> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the snapshot; replaying the history");
            return None;
        }
    };
    match file::decode(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), reason = %error_chain(&e), "ignoring the snapshot; replaying the history");
            None
        }
    }
}

/// An error and its sources, for one log line.
pub(crate) fn error_chain(e: &SnapshotError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Writes `snapshot` to `path` atomically.
pub fn save(path: &Path, snapshot: &Snapshot) -> Result<(), SnapshotError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        file::write(snapshot, &mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use followers_shared::store::HistoryId;

    fn saved() -> (tempfile::TempDir, PathBuf, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projection.snapshot");
        let mut snapshot = ReadModel::with_chains(Chains::Dropped).to_snapshot();
        snapshot.history = HistoryId("h-1".to_owned());
        save(&path, &snapshot).unwrap();
        (dir, path, snapshot)
    }

    #[test]
    fn a_saved_snapshot_reads_back_and_leaves_no_temporary_file() {
        let (dir, path, snapshot) = saved();
        assert_eq!(read(&path), Some(snapshot));
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn a_truncated_snapshot_file_is_ignored() {
        let (_dir, path, _) = saved();
        let bytes = std::fs::read(&path).unwrap();
        for len in [0, 10, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert_eq!(read(&path), None, "{len} bytes");
        }
    }

    #[test]
    fn a_damaged_snapshot_file_is_ignored() {
        let (_dir, path, _) = saved();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path), None);
    }

    #[test]
    fn an_old_json_snapshot_file_is_ignored() {
        let (_dir, path, _) = saved();
        std::fs::write(&path, br#"{"format":4,"accounts":[]}"#).unwrap();
        assert_eq!(read(&path), None);
    }

    #[test]
    fn a_missing_snapshot_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&dir.path().join("none")), None);
    }
}
