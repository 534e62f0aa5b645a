//! `followers-bench`: measures the services next to the floor, in the same run, and prints a
//! Markdown table and JSON lines. See docs/performance.md.
//!
//! `cargo run --release -p followers-bench -- --quick` (seconds) or without `--quick` (the full
//! sizes of docs/performance.md).
//!
//! The `peer` row (`--features postgres-peer`, off by default so that the default build never
//! compiles sqlx) runs row 1's command mix through cqrs-es and postgres-es on a PostgreSQL the
//! benchmark starts itself, the durable peer a Rust team would pick instead of us (issue 14).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod data;
mod load;
mod partitions;
#[cfg(feature = "postgres-peer")]
mod peer;
mod report;
mod rows;

use std::time::Duration;

use clap::Parser;

/// Which rows to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Row {
    Commands,
    Nats,
    Http,
    Lag,
    Replay,
    Memory,
    Partitions,
    Criterion,
    Peer,
}

/// Benchmarks of the followers services, each next to its floor measured in the same run.
#[derive(Debug, Clone, Parser)]
#[command(name = "followers-bench")]
pub struct Args {
    /// Small sizes and short phases: the whole run takes a minute or two.
    #[arg(long)]
    pub quick: bool,
    /// Which rows to run (comma-separated); all by default. `peer`: row 1's command mix through
    /// cqrs-es + PostgreSQL, built only with `--features postgres-peer` (and run by default only
    /// when PostgreSQL is found).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub rows: Vec<Row>,
    /// Concurrent clients (NATS requesters, HTTP connections, publishing tasks).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Records of the commands and checks account [full: 10000, quick: 2000].
    #[arg(long)]
    pub records: Option<usize>,
    /// Members of each account.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Followers of each seeded record.
    #[arg(long, default_value_t = 3)]
    pub followers: usize,
    /// Measured seconds of each load phase [full: 10, quick: 2].
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Warm-up seconds before each load phase [full: 2, quick: 0.5].
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    /// Checks per batch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Row 1 also measures the command service with group commit on (`--group-commit MIN`,
    /// `sync_interval: always`), on a server of its own.
    #[arg(long, value_name = "MIN_BATCH")]
    pub group_commit: Option<u16>,
    /// Records of the replay and memory rows (two events each) [full: 1000000, quick: 20000].
    #[arg(long)]
    pub big_records: Option<usize>,
    /// Also write the JSON lines to this file.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
    /// Where `initdb` and `postgres` are, for the peer row [default: `PATH`, then
    /// /usr/lib/postgresql/*/bin].
    #[arg(long, value_name = "DIR")]
    #[cfg_attr(not(feature = "postgres-peer"), allow(dead_code))]
    pub pg_bin_dir: Option<std::path::PathBuf>,
}

impl Args {
    pub fn wants(&self, row: Row) -> bool {
        self.rows.is_empty() || self.rows.contains(&row)
    }
    pub fn records(&self) -> usize {
        self.records
            .unwrap_or(if self.quick { 2_000 } else { 10_000 })
    }
    pub fn big_records(&self) -> usize {
        self.big_records
            .unwrap_or(if self.quick { 20_000 } else { 1_000_000 })
    }
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(
            self.duration_secs
                .unwrap_or(if self.quick { 2.0 } else { 10.0 }),
        )
    }
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(
            self.warmup_secs
                .unwrap_or(if self.quick { 0.5 } else { 2.0 }),
        )
    }
}

/// The peer row was asked for by name in a build without it.
const PEER_NOT_BUILT: &str = "the peer row (cqrs-es + PostgreSQL) is not in this build: \
    cargo run --release -p followers-bench --features postgres-peer -- --rows peer";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        cfg!(feature = "postgres-peer") || !args.rows.contains(&Row::Peer),
        PEER_NOT_BUILT
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = report::Report::new(args.json_out.clone())?;
    // A failing row does not hide the rows measured before it.
    let mut failed = false;
    if let Err(e) = runtime.block_on(rows::run(&args, &mut report)) {
        eprintln!("a row failed: {e:#}");
        failed = true;
    }
    if let Err(e) = runtime.block_on(partitions::run(&args, &mut report)) {
        eprintln!("the partitions row failed: {e:#}");
        failed = true;
    }
    drop(runtime);
    if args.wants(Row::Criterion)
        && let Err(e) = rows::criterion(&args, &mut report)
    {
        eprintln!("the criterion row failed: {e:#}");
        failed = true;
    }
    report.print_table(&args);
    anyhow::ensure!(!failed, "some rows failed (see above)");
    Ok(())
}
