//! Snapshots of the read model in a local file, so a restart does not replay everything.
//!
//! Written to a temporary file, flushed, then renamed over the old one, so a crash leaves either
//! the old snapshot or the new one. A snapshot is used only when it fits the history
//! ([`Snapshot::fits`]): the same format, a digest that matches its content, the same history
//! (by identity) and the same commit at its position. Anything else (unreadable, another format,
//! damaged or edited, taken from another history, ahead of it, keeping the streams' chain values
//! when this run drops them or the reverse) is ignored, with a log line saying why, and the
//! history replayed instead.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use followers_shared::read_model::{Chains, ReadModel, Snapshot};
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
    let model = ReadModel::from_snapshot(snapshot)?;
    tracing::info!(position = position.0, "loaded the snapshot");
    Some((model, identity))
}

/// Reads the snapshot file at `path`, if there is a readable one.
fn read(path: &Path) -> Option<Snapshot> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the snapshot; replaying the history");
            return None;
        }
    };
    match serde_json::from_reader(BufReader::new(file)) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable snapshot");
            None
        }
    }
}

/// Writes `snapshot` to `path` atomically.
pub fn save(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let file = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        serde_json::to_writer(&mut w, snapshot)?;
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
