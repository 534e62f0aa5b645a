//! Snapshots of a service's read model, so a restart does not replay everything: in a local
//! file (`--snapshot-path`), or in the JetStream object store (`--snapshot-in-jetstream`): one
//! object for a history without partitions, one object per partition for a partitioned one
//! ([`partitioned`]), so that an instance started for any partitions on any machine starts from
//! the latest snapshot of each (docs/scaling.md).
//!
//! Both services keep one, with this one piece of code, so both are written and checked alike:
//! the projection's objects are named `projection.*`, the command service's `command.*`
//! ([`Kind`]), in the same bucket. The command service's model also holds where every stored
//! command is and each stream's chain value (R24: a retry is recognised after a restart too),
//! so its snapshot does as well.
//!
//! The file is [`followers_shared::snapshot`]'s binary format. It is written to a temporary
//! file, flushed and synced, then renamed over the old one, so a crash leaves either the old
//! snapshot or the new one. A snapshot is used only when its file reads back whole (this
//! program's format, the length and the digest its header gives) and it fits the history
//! ([`Snapshot::fits`]): the same history (by identity) and the same commit at its position.
//! Anything else (unreadable, another format such as an older JSON snapshot, truncated, damaged
//! or edited, taken from another history, ahead of it, holding the streams' chain values or the
//! stored commands when the model wanted does not, or the reverse) is ignored, with a log line
//! saying why, and the history replayed instead.

pub mod partitioned;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::object_store::ObjectStore;
use followers_shared::read_model::{ReadModel, Snapshot};
use followers_shared::signing::Verifier;
use followers_shared::snapshot::{self as file, SnapshotError};
use followers_shared::store::{EventStore, HistoryId, Position, StoreError};
use tokio_util::sync::CancellationToken;

use crate::LiveModel;

/// Whose snapshot it is: it names the objects, so that the two services' snapshots of one
/// history sit side by side in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Projection,
    Command,
}

impl Kind {
    /// The start of the names of this kind's objects.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Projection => "projection",
            Kind::Command => "command",
        }
    }

    /// The object of a history without partitions: `<prefix>.all`.
    pub fn object_name(self) -> String {
        format!("{}.all", self.prefix())
    }
}

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
        kind: Kind,
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
            Place::Partitions { kind, .. } => {
                write!(f, "objects {}.p<partition>", kind.prefix())
            }
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
            Place::Partitions { bucket, kind } => {
                partitioned::save(bucket, *kind, store, snapshot).await
            }
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
/// keeps what `fresh` (an empty model of the kind wanted) keeps: the streams' chain values (a
/// snapshot without them cannot serve a model that seals commits or checks signatures, and one
/// with them would spend the memory dropping them saves) and the stored commands (the command
/// service's, R24). Commits read to bring partitions' snapshots together are screened by
/// `verifier`.
pub async fn load_fitting<S: EventStore>(
    place: &Place,
    store: &S,
    fresh: &ReadModel,
    verifier: Option<&Verifier>,
) -> Option<Loaded> {
    if let Place::Partitions { bucket, kind } = place {
        return partitioned::load(bucket, *kind, store, fresh, verifier).await;
    }
    let snapshot = read(place).await?;
    if !fits(place, &snapshot, store, fresh).await {
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
/// the commit at the snapshot's position) and keeps the chain values and the stored commands as
/// `fresh` does. Logs why not.
async fn fits<S: EventStore>(
    place: &impl std::fmt::Display,
    snapshot: &Snapshot,
    store: &S,
    fresh: &ReadModel,
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
    if snapshot.chains != fresh.chains() {
        tracing::warn!(place = %place, snapshot = ?snapshot.chains, wanted = ?fresh.chains(),
            "ignoring a snapshot that keeps the streams' chain values otherwise; replaying the history");
        return false;
    }
    if snapshot.commands.is_some() != fresh.tracks_commands() {
        tracing::warn!(place = %place, snapshot = snapshot.commands.is_some(),
            wanted = fresh.tracks_commands(),
            "ignoring a snapshot that holds the stored commands otherwise (the other service's?); replaying the history");
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
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Writes a snapshot of `model` at `place` at once when the model is not where the loaded
/// snapshot was (`loaded`: none was loaded, or the history moved on), then every `every` when
/// the model has moved, and a last one when `stop` is cancelled. Not while the model rebuilds
/// from a replaced history.
pub async fn keep_saved<S: EventStore>(
    place: Place,
    store: S,
    model: LiveModel,
    loaded: Option<Position>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut written = loaded;
    let mut stopping = false;
    loop {
        let history = model.history();
        if (Some(model.position()) != written || stopping)
            && model.is_current()
            && history.is_some()
        {
            let mut snap = model.read(ReadModel::to_snapshot);
            snap.history = history.unwrap_or_default();
            let position = snap.position;
            match place.save(snap, &store).await {
                Ok(()) => {
                    written = Some(position);
                    tracing::debug!(position = position.0, %place, "snapshot written");
                }
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), %place, "cannot write the snapshot");
                }
            }
        }
        if stopping {
            return;
        }
        stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(every) => false,
        };
    }
}

/// Where a service keeps its snapshot, if anywhere: the file `path`, or with `in_jetstream` the
/// objects of `kind` for the partitions `store` serves, in the bucket of the history `stream`
/// that the administrative step made.
#[cfg(feature = "jetstream")]
pub async fn place<S: EventStore>(
    client: &async_nats::Client,
    stream: &str,
    store: &S,
    (path, in_jetstream): (Option<&Path>, bool),
    kind: Kind,
) -> Result<Option<Place>, StoreError> {
    if let Some(path) = path {
        return Ok(Some(Place::File(path.to_owned())));
    }
    if !in_jetstream {
        return Ok(None);
    }
    let name = crate::jetstream::snapshot_bucket(stream);
    let bucket = async_nats::jetstream::new(client.clone())
        .get_object_store(&name)
        .await
        .map_err(|e| {
            StoreError::Missing(format!(
                "--snapshot-in-jetstream: cannot open the object store bucket {name} (the \
                 administrative step `followers-admin init` creates it): {e}"
            ))
        })?;
    let bucket = Box::new(bucket);
    Ok(Some(match store.partitions().count {
        Some(_) => Place::Partitions { bucket, kind },
        None => Place::Object {
            bucket,
            name: kind.object_name(),
        },
    }))
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
    use crate::MemoryStore;
    use followers_shared::event::EventBody;
    use followers_shared::ids::{AccountId, ContactId};
    use followers_shared::model::RecordRef;
    use followers_shared::read_model::Chains;
    use followers_shared::store::{Commit, Expected, HistoryId, StreamId};

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

    /// The command service's snapshot (issue 14): a history of three commits in a memory store,
    /// and the file of a command-tracking model at its head.
    async fn command_service_snapshot() -> (MemoryStore, tempfile::TempDir, PathBuf, ReadModel) {
        let store = MemoryStore::new();
        let account: AccountId = "acme".parse().unwrap();
        for name in ["c1", "c2", "c3"] {
            let contact = ContactId::new(name).unwrap();
            let record = RecordRef::Contact(contact.clone());
            let body = EventBody::ContactCreated {
                contact,
                owner: None,
            };
            let stream = StreamId::record(account.clone(), record);
            let commit = Commit::of_system(vec![body]);
            store
                .append(&stream, Expected::NoStream, &commit)
                .await
                .unwrap();
        }
        let live = LiveModel::new(ReadModel::tracking_commands());
        live.replay_to(&store, Position(3)).await.unwrap();
        let model = live.read(Clone::clone);
        let mut snapshot = model.to_snapshot();
        snapshot.history = store.identity().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("command.snapshot");
        save(&path, &snapshot).unwrap();
        (store, dir, path, model)
    }

    async fn loads(path: &Path, store: &MemoryStore) -> Option<ReadModel> {
        let fresh = ReadModel::tracking_commands();
        let place = Place::File(path.to_owned());
        load_fitting(&place, store, &fresh, None)
            .await
            .map(|l| l.model)
    }

    /// R24: the command service's snapshot brings back its stored commands and chain values.
    #[tokio::test]
    async fn a_command_services_snapshot_brings_back_its_stored_commands() {
        let (store, _dir, path, model) = command_service_snapshot().await;
        let loaded = loads(&path, &store).await.expect("the snapshot fits");
        assert_eq!(loaded, model);
        let first = store.read_at(Position(1)).await.unwrap().unwrap();
        let acme = first.stream.account.clone();
        assert_eq!(
            loaded.command_candidates(&acme, &first.commit.command_id),
            [Position(1)]
        );
    }

    /// Issue 14: every snapshot the command service must not trust is ignored (the history is
    /// then replayed): another format, truncated, corrupt, ahead of the history, of another
    /// history, and a projection's (without the stored commands, R24).
    #[tokio::test]
    async fn a_command_services_snapshot_that_does_not_fit_is_ignored() {
        let (store, _dir, path, model) = command_service_snapshot().await;
        let bytes = std::fs::read(&path).unwrap();
        let mut other_format = bytes.clone();
        other_format[8..12].copy_from_slice(&6u32.to_le_bytes());
        let truncated = bytes[..bytes.len() - 1].to_vec();
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x01;
        for (what, damaged) in [
            ("another format", other_format),
            ("truncated", truncated),
            ("corrupt", corrupt),
        ] {
            std::fs::write(&path, &damaged).unwrap();
            assert_eq!(loads(&path, &store).await, None, "{what}");
        }
        let write = |snapshot: &Snapshot| save(&path, snapshot).unwrap();
        let mut ahead = model.to_snapshot();
        ahead.history = store.identity().await.unwrap();
        ahead.position = Position(4);
        write(&ahead);
        assert_eq!(loads(&path, &store).await, None, "ahead of the history");
        let mut other = model.to_snapshot();
        other.history = MemoryStore::new().identity().await.unwrap();
        write(&other);
        assert_eq!(loads(&path, &store).await, None, "another history");
        let mut projections = model.to_snapshot();
        projections.history = store.identity().await.unwrap();
        projections.commands = None;
        write(&projections);
        assert_eq!(
            loads(&path, &store).await,
            None,
            "without the stored commands"
        );
        // And the reverse: the projection does not take the command service's.
        let mut commands = model.to_snapshot();
        commands.history = store.identity().await.unwrap();
        write(&commands);
        let place = Place::File(path.clone());
        let projection = ReadModel::with_chains(Chains::Kept);
        assert!(
            load_fitting(&place, &store, &projection, None)
                .await
                .is_none()
        );
        assert!(
            loads(&path, &store).await.is_some(),
            "the same file fits its own kind"
        );
    }

    #[tokio::test]
    async fn a_missing_snapshot_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(&Place::File(dir.path().join("none"))).await, None);
    }
}
