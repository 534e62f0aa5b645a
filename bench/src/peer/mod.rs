//! Row `peer` (issue 14, `--features postgres-peer`): row 1's command mix through cqrs-es and
//! postgres-es on PostgreSQL, what a Rust team would pick instead of us when a reply must mean
//! "on disk", measured in the same run so that "ours / peer" compares like with like.
//!
//! The peer does what cqrs-es does for every command: load the record's events from PostgreSQL,
//! decide, insert the new events in a transaction that commits with an fsync (PostgreSQL's own
//! group commit shares one among the transactions that commit together). The same account
//! shape (members, records with an owner and followers) is seeded through the same framework,
//! then the same clients send the same commands ([`data::mix_step`]) in the same closed loop,
//! each over a pool with a connection per client. A lost race (cqrs-es's optimistic lock) is
//! decided again, as our service does.

mod postgres;
mod record;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, CqrsFramework, EventEnvelope, Query};
use futures::StreamExt;
use postgres_es::{PostgresCqrs, PostgresEventRepository};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::data::{self, ADMIN, Dataset, Step};
use crate::load::{Stats, closed_loop};
use crate::report::{Line, Report};
use crate::rows::{Measured, rate_text, small, stats_json};
use crate::{Args, Row};

use postgres::Postgres;
use record::{Members, PeerRecord, Refusal};

/// The two tables postgres-es reads and writes (the crate does not create them): the events of
/// each aggregate by sequence, and its snapshots (unused here: the default event store). Their
/// columns are the ones the crate's queries name.
const SCHEMA: &str = "
CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
  sequence bigint NOT NULL CHECK (sequence >= 0), event_type text NOT NULL,
  event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
  last_sequence bigint NOT NULL CHECK (last_sequence >= 0),
  current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0), payload json NOT NULL,
  PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));";

/// How often one command is decided again after losing a race for its record.
const RACES: usize = 10;

/// Counts the commands that appended: cqrs-es dispatches a command's events to the queries
/// once they are committed, and only then.
#[derive(Debug)]
struct Appended(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Query<PeerRecord> for Appended {
    async fn dispatch(&self, _record: &str, _events: &[EventEnvelope<PeerRecord>]) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the peer did with row 1's mix, and the PostgreSQL it did it on.
struct Peer {
    stats: Stats,
    applied: f64,
    settings: Vec<(String, String)>,
    pool: usize,
}

/// The peer row, and "ours / peer" for every mode of row 1 with `sync_interval: always` that
/// ran before it (`durable`). Skipped with a line when PostgreSQL is not found, unless the row
/// was asked for by name.
pub async fn run(args: &Args, report: &mut Report, durable: &[Measured]) -> anyhow::Result<()> {
    let Some(bin) = postgres::find(args.pg_bin_dir.as_deref()) else {
        let missing = "no PostgreSQL found (initdb and postgres, in --pg-bin-dir, PATH or \
                       /usr/lib/postgresql/*/bin)";
        anyhow::ensure!(!args.rows.contains(&Row::Peer), "peer row: {missing}");
        eprintln!("peer row skipped: {missing}");
        return Ok(());
    };
    // Ctrl-C stops PostgreSQL and removes its directory (the guard's drop), then the run.
    let measured = tokio::select! {
        peer = measure(args, &bin) => Some(peer),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(peer) = measured else {
        eprintln!("interrupted: the peer's PostgreSQL is stopped and removed");
        std::process::exit(130);
    };
    // Tokio's handler stays installed: Ctrl-C still ends the rows after this one.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    let peer = peer?;
    add_peer(report, &peer);
    for ours in durable {
        add_ratio(report, ours, &peer);
    }
    Ok(())
}

/// Starts PostgreSQL, seeds the account and runs the mix; PostgreSQL is stopped on return.
async fn measure(args: &Args, bin: &std::path::Path) -> anyhow::Result<Peer> {
    let pool_size = args.clients.max(1);
    let server = Postgres::start(bin, pool_size + 10).await?;
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(pool_size)?)
        .connect(&server.url)
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    let settings = server.settings(&pool).await?;
    eprintln!(
        "peer: PostgreSQL {}",
        settings
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let data = small(args);
    let appended = Arc::new(AtomicU64::new(0));
    let queries: Vec<Box<dyn Query<PeerRecord>>> = vec![Box::new(Appended(appended.clone()))];
    let store = PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()));
    let cqrs: Arc<PostgresCqrs<PeerRecord>> =
        Arc::new(CqrsFramework::new(store, queries, members(&data)));
    let started = std::time::Instant::now();
    seed(&cqrs, &data, args.clients).await?;
    eprintln!(
        "peer: seeded {} records in {:.1} s",
        data.records,
        started.elapsed().as_secs_f64()
    );
    appended.store(0, Ordering::Relaxed);
    let (stats, answered) = load(args, &cqrs, &data).await;
    let applied = appended.load(Ordering::Relaxed) as f64 / answered.max(1) as f64;
    pool.close().await;
    drop(server);
    Ok(Peer {
        stats,
        applied,
        settings,
        pool: pool_size,
    })
}

/// The account's members: the admin and `users` others, as row 1's account has.
fn members(data: &Dataset) -> Members {
    (0..data.users as u64)
        .map(data::user)
        .chain([ADMIN.to_owned()])
        .collect()
}

/// Each record created with its owner and followers, as [`Dataset::record_commit`] makes
/// them, with `clients` commands in flight.
async fn seed(
    cqrs: &PostgresCqrs<PeerRecord>,
    data: &Dataset,
    clients: usize,
) -> anyhow::Result<()> {
    let create = |i: u64| {
        let command = create_command(data, i);
        async move { cqrs.execute(&data::contact(i), command).await }
    };
    let mut created = futures::stream::iter(0..data.records as u64)
        .map(create)
        .buffer_unordered(clients.max(1));
    while let Some(result) = created.next().await {
        result?;
    }
    Ok(())
}

/// Record `i` created with its owner and followers.
fn create_command(data: &Dataset, i: u64) -> record::RecordCommand {
    let (owner, followers) = data.record_people(i);
    record::RecordCommand::Create {
        owner: data::user(owner),
        followers: followers.into_iter().map(data::user).collect(),
    }
}

/// Runs the mix; returns its figures and how many commands were answered (warm-up included).
async fn load(args: &Args, cqrs: &Arc<PostgresCqrs<PeerRecord>>, data: &Dataset) -> (Stats, u64) {
    let answered = Arc::new(AtomicU64::new(0));
    let (cqrs, data, counter) = (cqrs.clone(), Arc::new(data.clone()), answered.clone());
    let stats = closed_loop(args.clients, args.warmup(), args.duration(), move |c, n| {
        let (cqrs, data, answered) = (cqrs.clone(), data.clone(), counter.clone());
        async move {
            // A refusal (the follower limit) is a decided command, not a failure.
            match execute(&cqrs, data::mix_step(c as u64, n, &data)).await {
                Ok(()) | Err(AggregateError::UserError(Refusal::FollowerLimit)) => {
                    answered.fetch_add(1, Ordering::Relaxed);
                    Ok(1)
                }
                Err(_) => Err(()),
            }
        }
    })
    .await;
    (stats, answered.load(Ordering::Relaxed))
}

/// One command of the mix, decided again while it loses races for its record.
async fn execute(
    cqrs: &PostgresCqrs<PeerRecord>,
    step: Step,
) -> Result<(), AggregateError<Refusal>> {
    let (record, command) = peer_command(step);
    let id = data::contact(record);
    let mut races = 0;
    loop {
        match cqrs
            .execute_with_metadata(&id, command.clone(), metadata())
            .await
        {
            Err(AggregateError::AggregateConflict) if races < RACES => races += 1,
            result => return result,
        }
    }
}

/// The mix's step as the peer's command, and the number of its record.
fn peer_command(step: Step) -> (u64, record::RecordCommand) {
    match step {
        Step::AddFollower { record, user } => (
            record,
            record::RecordCommand::AddFollower {
                user: data::user(user),
            },
        ),
        Step::RemoveFollower { record, user } => (
            record,
            record::RecordCommand::RemoveFollower {
                user: data::user(user),
            },
        ),
        Step::ChangeOwner { record, user } => (
            record,
            record::RecordCommand::ChangeOwner {
                owner: data::user(user),
            },
        ),
    }
}

/// What a command's events record besides themselves, as ours do: its id, who sent it, when.
fn metadata() -> HashMap<String, String> {
    HashMap::from([
        ("command_id".to_owned(), data::fresh_uuid().to_string()),
        ("actor".to_owned(), ADMIN.to_owned()),
        ("at".to_owned(), chrono::Utc::now().to_rfc3339()),
    ])
}

fn settings_json(settings: &[(String, String)]) -> Value {
    settings
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn setting<'a>(peer: &'a Peer, name: &str) -> &'a str {
    peer.settings
        .iter()
        .find(|(n, _)| n == name)
        .map_or("?", |(_, v)| v.as_str())
}

fn add_peer(report: &mut Report, peer: &Peer) {
    let applied_pct = 100.0 * peer.applied;
    report.add(
        Line {
            row: format!(
                "1. peer: cqrs-es + postgres-es, PostgreSQL {} (fsync {}, synchronous_commit {})",
                setting(peer, "server_version"),
                setting(peer, "fsync"),
                setting(peer, "synchronous_commit")
            ),
            ours: format!(
                "{} ({applied_pct:.0} % appended events)",
                rate_text(&peer.stats, "cmd")
            ),
            floor: "-".to_owned(),
            ratio: "-".to_owned(),
            target: "-".to_owned(),
            met: None,
        },
        json!({"kind": "peer", "peer": stats_json(&peer.stats), "applied_pct": applied_pct,
               "pool": peer.pool, "postgres": settings_json(&peer.settings)}),
    );
}

/// "ours / peer" for one durable mode of row 1: the rates, the appending rates (commands that
/// appended, a second) and the p99s.
fn add_ratio(report: &mut Report, ours: &Measured, peer: &Peer) {
    let ratio = ours.stats.rate() / peer.stats.rate();
    let appending_ratio = (ours.stats.rate() * ours.applied) / (peer.stats.rate() * peer.applied);
    let p99_ratio = ours.stats.p99() / peer.stats.p99();
    report.add(
        Line {
            row: format!("1. commands, {} vs the peer", ours.mode),
            ours: format!(
                "{} ({:.0} % appended a commit)",
                rate_text(&ours.stats, "cmd"),
                100.0 * ours.applied
            ),
            floor: format!(
                "cqrs-es + PostgreSQL: {} ({:.0} % appended events)",
                rate_text(&peer.stats, "cmd"),
                100.0 * peer.applied
            ),
            ratio: format!(
                "rate {ratio:.2}x (appending {appending_ratio:.2}x), p99 {p99_ratio:.2}x"
            ),
            target: "rate >= 1.5x the peer's".to_owned(),
            met: Some(ratio >= 1.5),
        },
        json!({"kind": "peer_ratio", "mode": ours.mode, "ours": stats_json(&ours.stats),
               "applied_pct": 100.0 * ours.applied, "peer": stats_json(&peer.stats),
               "peer_applied_pct": 100.0 * peer.applied, "rate_ratio": ratio,
               "appending_rate_ratio": appending_ratio, "p99_ratio": p99_ratio}),
    );
}

#[cfg(test)]
mod tests {
    use followers_shared::command::{
        AddFollowers, ChangeOwner, Command, CommandBody, RecordCommand, RemoveFollowers,
    };
    use followers_shared::decision::decide_command;
    use followers_shared::error::ErrorCode;
    use followers_shared::ids::UserId;
    use followers_shared::read_model::ReadModel;
    use followers_shared::store::{Commit, Position, StoredCommit, StreamId, Version};
    use followers_tests::stack::contact_ref;

    use super::*;

    /// What deciding one command of the mix came to.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Appended,
        Nothing,
        FollowerLimit,
    }

    fn users(i: u64) -> followers_shared::bounded::SomeUsers {
        let user = UserId::new(data::user(i)).expect("user id");
        followers_shared::bounded::SomeUsers::new(vec![user]).expect("one user")
    }

    /// The mix's step as our command, as row 1 sends it.
    fn our_command(data: &Dataset, step: Step) -> Command {
        let body = match step {
            Step::AddFollower { record, user } => RecordCommand::AddFollowers(AddFollowers {
                until: Default::default(),
                record: Some(contact_ref(&data::contact(record))),
                users: users(user),
            }),
            Step::RemoveFollower { record, user } => {
                RecordCommand::RemoveFollowers(RemoveFollowers {
                    record: Some(contact_ref(&data::contact(record))),
                    users: users(user),
                })
            }
            Step::ChangeOwner { record, user } => RecordCommand::ChangeOwner(ChangeOwner {
                record: contact_ref(&data::contact(record)),
                owner: Some(UserId::new(data::user(user)).expect("user id")),
            }),
        };
        Command {
            account: data.account_id(),
            meta: data::meta(),
            body: CommandBody::Record(body),
            dry_run: false,
        }
    }

    /// Our deciders on `model`, the commit applied when there is one.
    fn ours(model: &mut ReadModel, data: &Dataset, step: Step) -> Outcome {
        let command = our_command(data, step);
        match decide_command(model, &command) {
            Ok(decision) if decision.events.is_empty() => Outcome::Nothing,
            Ok(decision) => {
                let stream = decision.stream.expect("a record's stream");
                let commit = Commit::sealed(command.meta.command_id, decision.events, None);
                store(model, stream, commit);
                Outcome::Appended
            }
            Err(e) if e.code() == ErrorCode::FollowerLimit => Outcome::FollowerLimit,
            Err(e) => panic!("{step:?}: ours refused {e}"),
        }
    }

    /// The peer's aggregate on `record`, its events applied.
    fn peer(record: &mut PeerRecord, members: &Members, command: record::RecordCommand) -> Outcome {
        match record.decide(command, members) {
            Ok(events) if events.is_empty() => Outcome::Nothing,
            Ok(events) => {
                events
                    .into_iter()
                    .for_each(|e| cqrs_es::Aggregate::apply(record, e));
                Outcome::Appended
            }
            Err(Refusal::FollowerLimit) => Outcome::FollowerLimit,
            Err(e) => panic!("the peer refused {e}"),
        }
    }

    fn store(model: &mut ReadModel, stream: StreamId, commit: Commit) {
        let position = Position(model.position().0 + 1);
        model.apply(&StoredCommit {
            stream,
            version: Version(0),
            position,
            commit,
            trace: None,
        });
    }

    /// The comparison is fair only if the peer decides each command of the mix as we do: the
    /// same commands append, and what changes nothing appends nothing (R12, R14) on both sides.
    /// Few members and records, so that records meet the same users often.
    #[test]
    fn the_peer_decides_the_mix_as_we_do() {
        let data = Dataset {
            account: "acme".to_owned(),
            users: 12,
            records: 8,
            followers: 3,
        };
        let mut model = ReadModel::new();
        let (stream, commit) = data.account_commit();
        store(&mut model, stream, commit);
        let members = members(&data);
        let mut records: Vec<PeerRecord> = Vec::new();
        for i in 0..data.records as u64 {
            let (stream, commit) = data.record_commit(i);
            store(&mut model, stream, commit);
            let mut record = PeerRecord::default();
            let create = create_command(&data, i);
            assert_eq!(peer(&mut record, &members, create), Outcome::Appended);
            records.push(record);
        }
        let mut seen = Vec::new();
        for n in 0..2_000 {
            let step = data::mix_step(n % 3, n / 3, &data);
            let (record, command) = peer_command(step);
            let theirs = peer(&mut records[record as usize], &members, command);
            assert_eq!(ours(&mut model, &data, step), theirs, "{step:?}");
            if !seen.contains(&theirs) {
                seen.push(theirs);
            }
        }
        // The mix pairs every add with a remove, so no record reaches the follower limit.
        assert_eq!(seen.len(), 2, "appended and not: {seen:?}");
    }
}
