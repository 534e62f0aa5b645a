//! Snapshots of the read model, so a restart does not replay everything: in a local file
//! (`--snapshot-path`), or in the JetStream object store (`--snapshot-in-jetstream`): one object
//! for a history without partitions, one object per partition for a partitioned one
//! ([`partitioned`]), so that an instance started for any partitions on any machine starts from
//! the latest snapshot of each (docs/scaling.md).
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

pub mod partitioned;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::ObjectStore;
use followers_shared::read_model::{Chains, ReadModel, Snapshot};
use followers_shared::signing::Verifier;
use followers_shared::snapshot::{self as file, SnapshotError};
use followers_shared::store::{EventStore, HistoryId, Position, StoreError};

/// Where the snapshot is kept.
#[derive(Clone)]
pub enum Place {
    File(PathBuf),
    /// One object of a JetStream object store bucket: the whole model.
    Object {
        bucket: Box<ObjectStore>,
        name: String,
    },
    /// One object per partition served, of a partitioned history ([`partitioned`]).
    Partitions {
        bucket: Box<ObjectStore>,
    },
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::File(path) => write!(f, "{}", path.display()),
            Place::Object { name, .. } => write!(f, "object {name}"),
            Place::Partitions { .. } => f.write_str("objects projection.p<partition>"),
        }
    }
}

/// Why a snapshot was not written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The history's identity could not be read, to name the snapshot's history.
    #[error("cannot read which history the snapshot is of")]
    Store(#[from] StoreError),
    /// The history was replaced (deleted and created again) while the snapshot was taken: it
    /// would name the new history and hold the old one. The next round writes one of the new.
    #[error("the history was replaced while the snapshot was taken")]
    Replaced,
}

/// A model loaded from a snapshot.
#[derive(Debug)]
pub struct Loaded {
    pub model: ReadModel,
    /// The history it is of ([`EventStore::identity`]).
    pub history: HistoryId,
    /// Where the snapshot it came from was written: the model's position, unless it was put
    /// together from partitions' snapshots of different positions (`None`: write one at once).
    pub written_at: Option<Position>,
}

impl Place {
    /// The object a projection of a history without partitions keeps its snapshot in.
    pub fn object_name() -> String {
        "projection.all".to_owned()
    }

    /// The snapshot's bytes; `None` when there is none.
    async fn read_bytes(&self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Place::File(path) => match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            Place::Object { bucket, name } => read_object(bucket, name).await,
            // Read per partition, by `partitioned`.
            Place::Partitions { .. } => Ok(None),
        }
    }

    /// Writes `snapshot`, of the history `store` holds, here, replacing the last one whole: a
    /// file atomically (temporary file, fsync, rename); an object as a new version whose chunks
    /// replace the old one's once all are stored; per partition, each partition's object so.
    pub async fn save<S: EventStore>(
        &self,
        snapshot: Snapshot,
        store: &S,
    ) -> Result<(), SaveError> {
        match self {
            Place::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || save(&path, &snapshot))
                    .await
                    .map_err(|e| SnapshotError::Io(std::io::Error::other(e)))??;
                Ok(())
            }
            Place::Object { bucket, name } => Ok(put_object(bucket, name, &snapshot).await?),
            Place::Partitions { bucket } => partitioned::save(bucket, store, snapshot).await,
        }
    }
}

/// The bytes of the object `name`; `None` when there is none.
async fn read_object(bucket: &ObjectStore, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    use async_nats::jetstream::object_store::GetErrorKind;
    use tokio::io::AsyncReadExt;
    let mut object = match bucket.get(name).await {
        Ok(o) => o,
        Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await?;
    Ok(Some(bytes))
}

/// Writes `snapshot` as the object `name`, replacing the last version once whole.
async fn put_object(
    bucket: &ObjectStore,
    name: &str,
    snapshot: &Snapshot,
) -> Result<(), SnapshotError> {
    let bytes = file::encode(snapshot)?;
    bucket
        .put(name, &mut bytes.as_slice())
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

/// The model in the snapshot at `place`, if there is one that fits the history `store` holds and
/// keeps the streams' chain values as `chains` says: a snapshot without them cannot serve a
/// model that checks signatures, and one with them would spend the memory dropping them saves.
/// Commits read to bring partitions' snapshots together are screened by `verifier`.
pub async fn load_fitting<S: EventStore>(
    place: &Place,
    store: &S,
    chains: Chains,
    verifier: Option<&Verifier>,
) -> Option<Loaded> {
    if let Place::Partitions { bucket } = place {
        return partitioned::load(bucket, store, chains, verifier).await;
    }
    let snapshot = read(place).await?;
    if !fits(place, &snapshot, store, chains).await {
        return None;
    }
    let position = snapshot.position;
    let history = snapshot.history.clone();
    let model = ReadModel::from_snapshot(snapshot);
    tracing::info!(position = position.0, "loaded the snapshot");
    Some(Loaded {
        model,
        history,
        written_at: Some(position),
    })
}

/// Whether `snapshot`, read from `place`, fits the history `store` holds (its identity, its head,
/// the commit at the snapshot's position) and keeps the chain values as `chains` says. Logs why
/// not.
async fn fits<S: EventStore>(
    place: &impl std::fmt::Display,
    snapshot: &Snapshot,
    store: &S,
    chains: Chains,
) -> bool {
    let history = async {
        let identity = store.identity().await?;
        let head = store.head().await?;
        let at = match snapshot.position.0 {
            0 => None,
            _ => store.read_at(snapshot.position).await?,
        };
        Ok::<_, StoreError>((identity, head, at))
    };
    let (identity, head, at) = match history.await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the snapshot against the history; replaying it");
            return false;
        }
    };
    if let Err(why) = snapshot.fits(&identity, head, at.as_ref()) {
        tracing::warn!(place = %place, reason = %why, "ignoring the snapshot; replaying the history");
        return false;
    }
    if snapshot.chains != chains {
        tracing::warn!(place = %place, snapshot = ?snapshot.chains, wanted = ?chains,
            "ignoring a snapshot that keeps the streams' chain values otherwise; replaying the history");
        return false;
    }
    true
}

/// Reads the snapshot at `place`, if there is a whole one of this program's format.
async fn read(place: &Place) -> Option<Snapshot> {
    let bytes = match place.read_bytes().await {
        Ok(b) => b?,
        Err(e) => {
            tracing::warn!(place = %place, error = %e, "cannot read the snapshot; replaying the history");
            return None;
        }
    };
    match file::decode(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(place = %place, reason = %error_chain(&e), "ignoring the snapshot; replaying the history");
            None
        }
    }
}

/// An error and its sources, for one log line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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

    #[tokio::test]
    async fn a_saved_snapshot_reads_back_and_leaves_no_temporary_file() {
        let (dir, path, snapshot) = saved();
        assert_eq!(read(&Place::File(path.clone())).await, Some(snapshot));
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[tokio::test]
    async fn a_truncated_snapshot_file_is_ignored() {
        let (_dir, path, _) = saved();
        let bytes = std::fs::read(&path).unwrap();
        for len in [0, 10, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert_eq!(read(&Place::File(path.clone())).await, None, "{len} bytes");
        }
    }

    #[tokio::test]
    async fn a_damaged_snapshot_file_is_ignored() {
        let (_dir, path, _) = saved();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&Place::File(path.clone())).await, None);
    }

    #[tokio::test]
    async fn an_old_json_snapshot_file_is_ignored() {
        let (_dir, path, _) = saved();
        std::fs::write(&path, br#"{"format":4,"accounts":[]}"#).unwrap();
        assert_eq!(read(&Place::File(path.clone())).await, None);
    }

    #[tokio::test]
    async fn a_missing_snapshot_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&Place::File(dir.path().join("none"))).await, None);
    }
}
