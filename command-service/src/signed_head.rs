//! The signed head: the history's position and a digest of every stream's last commit as this
//! instance's model has them ([`followers_shared::signing::StreamHeads`]), signed with the
//! service's key and kept in the checkpoint bucket under `signed-head`. The hash chains cannot
//! show that a stream's last commit was removed; `followers-audit verify` compares the history
//! with this head and can (docs/audit.md, "Signed history").
//!
//! Written once the history is loaded, every `--signed-head-every-secs` when the model moved,
//! and on shutdown. Several instances share the key: a head only ever replaces one at an
//! earlier position (compare-and-set on the key's revision). In a partitioned history each
//! partition has its own key (`signed-head.p<N>`, [`signed_head_key`]) and head, of the streams
//! of its accounts: an instance signs those of the partitions it serves, so instances serving
//! different partitions never replace each other's.

use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::Utc;
use followers_shared::partition::{Partition, PartitionCount, Partitions};
use followers_shared::signing::{SignedHead, Signer, StreamHeads, signed_head_key};
use followers_shared::store::Position;
use followers_store::{Backend, LiveModel};
use tokio_util::sync::CancellationToken;

use crate::Config;

/// The checkpoint bucket cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the checkpoint bucket {bucket} to keep the signed head in: {source}")]
pub struct BucketError {
    pub bucket: String,
    #[source]
    pub source: async_nats::jetstream::context::KeyValueError,
}

/// The bucket to keep the signed head in: with a signing key, on JetStream (the bucket of the
/// history's checkpoints, `<stream>_checkpoints`); otherwise none.
pub async fn bucket(
    client: &async_nats::Client,
    config: &Config,
    signing: bool,
) -> Result<Option<kv::Store>, BucketError> {
    if !signing {
        return Ok(None);
    }
    if config.service.store.backend != Backend::Jetstream {
        tracing::warn!("signed heads are kept only on JetStream; none is written");
        return Ok(None);
    }
    let bucket = format!("{}_checkpoints", config.service.store.stream);
    async_nats::jetstream::new(client.clone())
        .get_key_value(&bucket)
        .await
        .map(Some)
        .map_err(|source| BucketError { bucket, source })
}

/// Why a signed head could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("cannot read the signed head: {0}")]
    Read(#[from] kv::EntryError),
    #[error("cannot create the signed head: {0}")]
    Create(#[from] kv::CreateError),
    #[error("cannot update the signed head: {0}")]
    Update(#[from] kv::UpdateError),
    #[error("computing the digest failed: {0}")]
    Digest(#[from] tokio::task::JoinError),
}

/// Where and how an instance signs its heads.
#[derive(Debug)]
pub struct Heads {
    pub bucket: kv::Store,
    pub signer: Signer,
    /// The history's partitions and those the instance serves: one head each.
    pub partitions: Partitions,
}

/// Writes signed heads until `stop`, then a last one.
pub async fn run(heads: Heads, model: LiveModel, every: Duration, stop: CancellationToken) {
    let mut written: Option<Position> = None;
    loop {
        if written != Some(model.position()) {
            match write_all(&heads, &model).await {
                Ok(p) => written = Some(p),
                Err(e) => tracing::warn!(error = %e, "cannot write the signed head"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    if written != Some(model.position()) {
        match write_all(&heads, &model).await {
            Ok(p) => tracing::info!(position = p.0, "signed head written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the last signed head"),
        }
    }
}

/// Signs the model's head: the whole history's, or each served partition's.
async fn write_all(heads: &Heads, model: &LiveModel) -> Result<Position, HeadError> {
    let partitions = &heads.partitions;
    let Some(count) = partitions.count else {
        return write(&heads.bucket, model, &heads.signer, None).await;
    };
    let mut position = model.position();
    for p in partitions.served() {
        position = write(&heads.bucket, model, &heads.signer, Some((count, p))).await?;
    }
    Ok(position)
}

/// Signs the model's head (of one partition's streams, with `partition`) and stores it unless a
/// head at the same or a later position is already there. Returns the position signed.
pub async fn write(
    bucket: &kv::Store,
    model: &LiveModel,
    signer: &Signer,
    partition: Option<(PartitionCount, Partition)>,
) -> Result<Position, HeadError> {
    // Clones under the read lock; sorting and hashing outside it.
    let heads = match partition {
        None => model.read(StreamHeads::collect),
        Some((count, p)) => model.read(|m| StreamHeads::collect_where(m, |a| count.of(a) == p)),
    };
    let key = signed_head_key(partition.map(|(_, p)| p));
    let digest = tokio::task::spawn_blocking(move || heads.digest()).await?;
    let head = signer.sign_head(&digest, Utc::now());
    let value = bytes::Bytes::from(head.encode());
    // Another instance may write between our read and our write: then look again.
    for _ in 0..3 {
        let current = bucket
            .entry(&key)
            .await?
            .filter(|e| e.operation == kv::Operation::Put);
        let Some(entry) = current else {
            match bucket.create(&key, value.clone()).await {
                Ok(_) => return Ok(head.position),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if SignedHead::decode(&entry.value).is_ok_and(|h| h.position >= head.position) {
            return Ok(head.position);
        }
        match bucket.update(&key, value.clone(), entry.revision).await {
            Ok(_) => return Ok(head.position),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(e.into()),
        }
    }
    tracing::debug!("the signed head kept changing under us; leaving it to the other writers");
    Ok(head.position)
}
