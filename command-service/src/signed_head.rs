//! The signed head: the history's position and a digest of every stream's last commit as this
//! instance's model has them ([`followers_shared::signing::StreamHeads`]), signed with the
//! service's key and kept in the checkpoint bucket under `signed-head`. The hash chains cannot
//! show that a stream's last commit was removed; `followers-audit verify` compares the history
//! with this head and can (docs/audit.md, "Signed history").
//!
//! Written once the history is loaded, every `--signed-head-every-secs` when the model moved,
//! and on shutdown. Several instances share the key: a head only ever replaces one at an
//! earlier position (compare-and-set on the key's revision).

use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::Utc;
use followers_shared::signing::{SIGNED_HEAD_KEY, SignedHead, Signer, StreamHeads};
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

/// Writes signed heads until `stop`, then a last one.
pub async fn run(
    bucket: kv::Store,
    model: LiveModel,
    signer: Signer,
    every: Duration,
    stop: CancellationToken,
) {
    let mut written: Option<Position> = None;
    loop {
        if written != Some(model.position()) {
            match write(&bucket, &model, &signer).await {
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
        match write(&bucket, &model, &signer).await {
            Ok(p) => tracing::info!(position = p.0, "signed head written"),
            Err(e) => tracing::warn!(error = %e, "cannot write the last signed head"),
        }
    }
}

/// Signs the model's head and stores it unless a head at the same or a later position is
/// already there. Returns the position signed.
pub async fn write(
    bucket: &kv::Store,
    model: &LiveModel,
    signer: &Signer,
) -> Result<Position, HeadError> {
    // Clones under the read lock; sorting and hashing outside it.
    let heads = model.read(StreamHeads::collect);
    let digest = tokio::task::spawn_blocking(move || heads.digest()).await?;
    let head = signer.sign_head(&digest, Utc::now());
    let value = bytes::Bytes::from(head.encode());
    // Another instance may write between our read and our write: then look again.
    for _ in 0..3 {
        let current = bucket
            .entry(SIGNED_HEAD_KEY)
            .await?
            .filter(|e| e.operation == kv::Operation::Put);
        let Some(entry) = current else {
            match bucket.create(SIGNED_HEAD_KEY, value.clone()).await {
                Ok(_) => return Ok(head.position),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if SignedHead::decode(&entry.value).is_ok_and(|h| h.position >= head.position) {
            return Ok(head.position);
        }
        match bucket
            .update(SIGNED_HEAD_KEY, value.clone(), entry.revision)
            .await
        {
            Ok(_) => return Ok(head.position),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(e.into()),
        }
    }
    tracing::debug!("the signed head kept changing under us; leaving it to the other writers");
    Ok(head.position)
}
