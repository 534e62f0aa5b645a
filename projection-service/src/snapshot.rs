//! Snapshots of the read model in a local file, so a restart does not replay everything.
//!
//! Written to a temporary file, flushed, then renamed over the old one, so a crash leaves either
//! the old snapshot or the new one. A snapshot that cannot be read, is of another format, or is
//! ahead of the history (the store was replaced) is ignored and the history replayed instead.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use followers_shared::read_model::{ReadModel, Snapshot};

/// Loads the model from `path`, if there is a usable snapshot there.
pub fn load(path: &Path) -> Option<ReadModel> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the snapshot; replaying the history");
            return None;
        }
    };
    let snapshot: Snapshot = match serde_json::from_reader(BufReader::new(file)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable snapshot");
            return None;
        }
    };
    let (format, position) = (snapshot.format, snapshot.position);
    let model = ReadModel::from_snapshot(snapshot);
    match &model {
        Some(_) => tracing::info!(position = position.0, "loaded the snapshot"),
        None => tracing::warn!(format, "ignoring a snapshot of another format"),
    }
    model
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
