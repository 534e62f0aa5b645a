//! Snapshots kept per partition (issue 15). In a partitioned history, a service writes one
//! object per partition it serves, `projection.p<N>` or `command.p<N>` ([`Kind`]), holding that
//! partition's accounts (and, the command service's, their stored commands) as of the model's
//! position. An instance for any set of partitions, on any machine, starts from the
//! latest object of each of its partitions: moving a partition to another instance, or adding an
//! instance for it, costs no replay of its whole history.
//!
//! The objects of one instance's partitions may be at different positions: they were written by
//! instances serving other sets, at other times. They are put together at the latest of their
//! positions. A partition behind it is brought there first by reading its own commits from its
//! position (a consumer filtered to its subjects, so the other partitions' commits are not even
//! sent), and a partition without a usable object is read from the start up to there. The
//! accounts of different partitions never meet, so the partitions' models side by side are the
//! model of their union, at that position.
//!
//! Each object names the whole history (not the partitions of the instance that wrote it) and the
//! commit at its position, and is checked like any snapshot before it is used
//! ([`Snapshot::fits`]); all its accounts must be of its partition. An object that does not fit
//! is ignored, with a log line saying why, and its partition read from the start.

use std::collections::BTreeMap;

use async_nats::jetstream::object_store::ObjectStore;
use followers_shared::partition::{Partition, PartitionCount, PartitionSet, Partitions};
use followers_shared::read_model::{AccountSnapshot, ReadModel, Snapshot};
use followers_shared::signing::Verifier;
use followers_shared::store::{EventStore, HistoryId, Position, StoreError};
use followers_shared::stored_commands::AccountCommandsSnapshot;

use super::{Kind, Loaded, Place, SaveError};
use crate::LiveModel;

/// The object that holds partition `p`'s snapshot of `kind`.
pub fn object_name(kind: Kind, p: Partition) -> String {
    format!("{}.p{p}", kind.prefix())
}

/// Writes one object per partition `store` serves, each with that partition's accounts of
/// `snapshot` (a snapshot of the history `store` holds) and naming the whole history.
pub async fn save<S: EventStore>(
    bucket: &ObjectStore,
    kind: Kind,
    store: &S,
    snapshot: Snapshot,
) -> Result<(), SaveError> {
    // Read after the model was: if the history is still the one the model is of, it was then.
    if store.identity().await? != snapshot.history {
        return Err(SaveError::Replaced);
    }
    let whole = whole_history(store)?.identity().await?;
    for (p, part) in split(snapshot, &store.partitions(), &whole) {
        super::put_object(bucket, &object_name(kind, p), &part).await?;
    }
    Ok(())
}

/// `snapshot` as one snapshot per partition served (each with its accounts, none for an account
/// of another partition), naming the history `whole`.
pub fn split(
    snapshot: Snapshot,
    partitions: &Partitions,
    whole: &HistoryId,
) -> Vec<(Partition, Snapshot)> {
    let Some(count) = partitions.count else {
        return Vec::new();
    };
    let mut accounts: BTreeMap<Partition, Vec<AccountSnapshot>> = partitions
        .served()
        .into_iter()
        .map(|p| (p, Vec::new()))
        .collect();
    for a in snapshot.accounts {
        if let Some(of_partition) = accounts.get_mut(&count.of(&a.account)) {
            of_partition.push(a);
        }
    }
    let mut commands: Option<BTreeMap<Partition, Vec<AccountCommandsSnapshot>>> =
        snapshot.commands.as_ref().map(|_| BTreeMap::new());
    for a in snapshot.commands.into_iter().flatten() {
        if let Some(of_partition) = commands.as_mut() {
            of_partition
                .entry(count.of(&a.account))
                .or_default()
                .push(a);
        }
    }
    accounts
        .into_iter()
        .map(|(p, accounts)| {
            let part = Snapshot {
                history: whole.clone(),
                position: snapshot.position,
                head: snapshot.head.clone(),
                chains: snapshot.chains,
                accounts,
                commands: commands.as_mut().map(|c| c.remove(&p).unwrap_or_default()),
            };
            (p, part)
        })
        .collect()
}

/// The model of the partitions `store` serves, from their objects in `bucket`, if at least one
/// fits: the others are read from the history. `None` when none fits (the history is replayed
/// as without snapshots) or the history cannot be read meanwhile.
pub async fn load<S: EventStore>(
    bucket: &ObjectStore,
    kind: Kind,
    store: &S,
    fresh: &ReadModel,
    verifier: Option<&Verifier>,
) -> Option<Loaded> {
    let partitions = store.partitions();
    let count = partitions.count?;
    let whole = whole_history(store).ok()?;
    let mut found = BTreeMap::new();
    for p in partitions.served() {
        let object = (kind, p, count);
        if let Some(snapshot) = read_fitting(bucket, object, &whole, fresh).await {
            found.insert(p, snapshot);
        }
    }
    let latest = found.values().map(|s| s.position).max()?;
    let written_at = (found.len() == partitions.served().len()
        && found.values().all(|s| s.position == latest))
    .then_some(latest);
    match put_together(store, found, latest, fresh, verifier).await {
        Ok(loaded) => Some(Loaded {
            written_at,
            ..loaded
        }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot bring the partitions' snapshots together; replaying the history");
            None
        }
    }
}

/// The model of every partition `store` serves at `latest`: each partition's snapshot in
/// `found` (or `fresh`, an empty model, from the start) brought to `latest` by reading that
/// partition's commits.
async fn put_together<S: EventStore>(
    store: &S,
    mut found: BTreeMap<Partition, Snapshot>,
    latest: Position,
    fresh: &ReadModel,
    verifier: Option<&Verifier>,
) -> Result<Loaded, StoreError> {
    // The commit at `latest`, named by every snapshot written there.
    let head = found
        .values()
        .find(|s| s.position == latest)
        .and_then(|s| s.head.clone());
    let mut accounts = Vec::new();
    let mut commands = fresh.tracks_commands().then(Vec::new);
    for p in store.partitions().served() {
        let snapshot = found
            .remove(&p)
            .unwrap_or_else(|| fresh.emptied().to_snapshot());
        let from = snapshot.position;
        let one = store
            .serving(PartitionSet::Only([p.0].into()))
            .ok_or_else(not_partitioned)?;
        let brought = brought_to(snapshot, &one, latest, verifier).await?;
        tracing::info!(partition = %p, from = from.0, to = latest.0, "partition's snapshot loaded");
        accounts.extend(brought.accounts);
        if let Some(all) = commands.as_mut() {
            all.extend(brought.commands.into_iter().flatten());
        }
    }
    accounts.sort_by(|a, b| a.account.cmp(&b.account));
    if let Some(all) = commands.as_mut() {
        all.sort_by(|a, b| a.account.cmp(&b.account));
    }
    let history = store.identity().await?;
    let together = Snapshot {
        history: history.clone(),
        position: latest,
        head,
        chains: fresh.chains(),
        accounts,
        commands,
    };
    tracing::info!(position = latest.0, "loaded the partitions' snapshots");
    Ok(Loaded {
        model: ReadModel::from_snapshot(together),
        history,
        written_at: None,
    })
}

/// One partition's `snapshot` once the commits of `one` (a store serving that partition only)
/// up to `latest` are applied, screened by `verifier` as the feed's would be.
async fn brought_to<S: EventStore>(
    snapshot: Snapshot,
    one: &S,
    latest: Position,
    verifier: Option<&Verifier>,
) -> Result<Snapshot, StoreError> {
    if snapshot.position == latest {
        return Ok(snapshot);
    }
    let model = LiveModel::new(ReadModel::from_snapshot(snapshot)).with_verifier(verifier.cloned());
    model.replay_to(one, latest).await?;
    if model.refused() > 0 {
        tracing::warn!(
            refused = model.refused(),
            "commits refused by the signature screen while a partition's snapshot was brought up"
        );
    }
    Ok(model.read(ReadModel::to_snapshot))
}

/// Partition `p`'s snapshot of `kind`, if there is one that reads back whole, fits the history
/// `whole` holds, keeps what `fresh` keeps and holds only accounts of `p`.
async fn read_fitting<S: EventStore>(
    bucket: &ObjectStore,
    (kind, p, count): (Kind, Partition, PartitionCount),
    whole: &S,
    fresh: &ReadModel,
) -> Option<Snapshot> {
    let place = Place::Object {
        bucket: Box::new(bucket.clone()),
        name: object_name(kind, p),
    };
    let snapshot = super::read(&place).await?;
    if !super::fits(&place, &snapshot, whole, fresh).await {
        return None;
    }
    let commands = snapshot.commands.iter().flatten().map(|c| &c.account);
    let accounts = snapshot.accounts.iter().map(|a| &a.account);
    if let Some(other) = accounts.chain(commands).find(|a| count.of(a) != p) {
        tracing::warn!(%place, account = %other, partition = %count.of(other),
            "ignoring a partition's snapshot that holds an account of another partition");
        return None;
    }
    Some(snapshot)
}

/// The whole history `store` is a part of: its identity and head are the snapshots'.
fn whole_history<S: EventStore>(store: &S) -> Result<S, StoreError> {
    store.serving(PartitionSet::All).ok_or_else(not_partitioned)
}

fn not_partitioned() -> StoreError {
    StoreError::Missing("snapshots per partition need a partitioned history".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use followers_shared::ids::AccountId;
    use followers_shared::read_model::Chains;

    fn account(id: &str) -> AccountSnapshot {
        AccountSnapshot {
            account: AccountId::new(id).unwrap(),
            state: Default::default(),
            version: None,
            chain: None,
            records: Default::default(),
        }
    }

    #[test]
    fn each_partition_served_gets_its_accounts_only_and_names_the_whole_history() {
        let count = PartitionCount::new(4).unwrap();
        let ids: Vec<String> = (0..40).map(|n| format!("tenant-{n}")).collect();
        let snapshot = Snapshot {
            history: HistoryId("instance".to_owned()),
            position: Position(7),
            head: None,
            chains: Chains::Dropped,
            accounts: ids.iter().map(|id| account(id)).collect(),
            commands: Some(
                ids.iter()
                    .map(|id| AccountCommandsSnapshot {
                        account: AccountId::new(id).unwrap(),
                        stored: Vec::new(),
                    })
                    .collect(),
            ),
        };
        let partitions = Partitions {
            count: Some(count),
            owned: "1-2".parse().unwrap(),
        };
        let whole = HistoryId("whole".to_owned());
        let parts = split(snapshot, &partitions, &whole);
        assert_eq!(
            parts.iter().map(|(p, _)| p.0).collect::<Vec<_>>(),
            [1, 2],
            "one snapshot per partition served, an empty one too"
        );
        for (p, part) in &parts {
            assert_eq!(part.history, whole);
            assert_eq!(part.position, Position(7));
            assert!(part.accounts.iter().all(|a| count.of(&a.account) == *p));
            // The command service's stored commands go with their accounts (issue 14).
            let commands = part.commands.as_ref().unwrap();
            assert_eq!(commands.len(), part.accounts.len());
            assert!(commands.iter().all(|a| count.of(&a.account) == *p));
        }
        let kept: usize = parts.iter().map(|(_, s)| s.accounts.len()).sum();
        let served = ids
            .iter()
            .filter(|id| [1, 2].contains(&count.of(&AccountId::new(id).unwrap()).0))
            .count();
        assert_eq!(kept, served, "every account of a served partition, once");
    }
}
