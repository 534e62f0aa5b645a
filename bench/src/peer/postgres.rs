//! A PostgreSQL server of the benchmark's own, as the peer row needs one and nothing may be
//! assumed about the machine's: a fresh cluster in a temporary directory (`initdb`), listening
//! only on 127.0.0.1 on a free port, with PostgreSQL's default durability (`fsync` and
//! `synchronous_commit` on: a commit is on disk when it is acknowledged, as with
//! `sync_interval: always`). PostgreSQL refuses to run as root, so when the benchmark is root
//! both programs run as `nobody`. Dropping [`Postgres`] stops the server (fast shutdown, then a
//! kill if it lingers) and removes its directory, on success and on error alike.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

/// How long the server may take to accept connections, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings the row reports, those that decide what a durable commit costs.
pub static REPORTED_SETTINGS: [&str; 9] = [
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "shared_buffers",
    "max_connections",
    "wal_level",
];

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("no user `nobody` in /etc/passwd to run PostgreSQL as (it refuses to run as root)")]
    NoUser,
    #[error("initdb failed ({status}); its output:\n{log}")]
    Initdb {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("postgres did not accept connections within a minute; its log:\n{log}")]
    NotReady { log: String },
    #[error("postgres exited at start ({status}); its log:\n{log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PostgresError {
    let what = what.into();
    move |source| PostgresError::Io { what, source }
}

/// The directory holding `initdb` and `postgres`: `explicit` if given, else the first of `PATH`
/// and /usr/lib/postgresql/*/bin (newest version first) that has both.
pub fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    let has_both = |dir: &Path| ["initdb", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = explicit {
        return has_both(dir).then(|| dir.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by(|a, b| b.cmp(a));
    std::env::split_paths(&path)
        .chain(versions)
        .find(|dir| has_both(dir))
}

/// A running PostgreSQL server; stopped and removed on drop.
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    /// Removed after the server has stopped (fields drop after [`Drop::drop`]).
    dir: tempfile::TempDir,
    /// `postgres://postgres@127.0.0.1:PORT/postgres` (trust authentication, loopback only).
    pub url: String,
}

impl Postgres {
    /// A new cluster started from `bin`, allowing `max_connections` connections.
    pub async fn start(bin: &Path, max_connections: usize) -> Result<Self, PostgresError> {
        let dir = tempfile::Builder::new()
            .prefix("followers-bench-pg")
            .tempdir()
            .map_err(io("a temporary directory"))?;
        let user = unprivileged_user()?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(io("chown of the temporary directory"))?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        let initdb = run_as(Command::new(bin.join("initdb")), user, dir.path(), &log)?
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .status()
            .map_err(io("initdb"))?;
        if !initdb.success() {
            let log = tail(&log);
            return Err(PostgresError::Initdb {
                status: initdb,
                log,
            });
        }
        let port = followers_tests::nats::free_port();
        let child = run_as(Command::new(bin.join("postgres")), user, dir.path(), &log)?
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", &format!("max_connections={max_connections}")])
            .spawn()
            .map_err(io("postgres"))?;
        let mut server = Self {
            child,
            dir,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Until the server accepts a connection: it exits or times out otherwise.
    async fn wait_ready(&mut self) -> Result<(), PostgresError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(connection) = PgConnection::connect(&self.url).await {
                let _ = connection.close().await;
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                return Err(PostgresError::Exited { status, log });
            }
            if Instant::now() >= deadline {
                return Err(PostgresError::NotReady { log: self.log() });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`REPORTED_SETTINGS`] as the server has them, name and value.
    pub async fn settings(&self, pool: &PgPool) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as("SELECT name, current_setting(name) FROM unnest($1::text[]) AS name")
            .bind(REPORTED_SETTINGS.as_slice())
            .fetch_all(pool)
            .await
    }

    fn log(&self) -> String {
        tail(&self.dir.path().join("postgres.log"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGINT: PostgreSQL's fast shutdown (open transactions rolled back, then a checkpoint).
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `command` ready to run as `user` (when the benchmark is root) in `dir`, its output appended
/// to `log`.
fn run_as(
    mut command: Command,
    user: Option<(u32, u32)>,
    dir: &Path,
    log: &Path,
) -> Result<Command, PostgresError> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("{}", log.display())))
    };
    command
        .current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?);
    if let Some((uid, gid)) = user {
        // std drops the supplementary groups too when it changes the user of a root process.
        command.uid(uid).gid(gid);
    }
    Ok(command)
}

/// `nobody`'s user and group ids when this process is root (PostgreSQL refuses to run as
/// root); `None` when it is not root and runs PostgreSQL as itself.
fn unprivileged_user() -> Result<Option<(u32, u32)>, PostgresError> {
    let me = std::fs::metadata("/proc/self").map_err(io("/proc/self"))?;
    if me.uid() != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(io("/etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .map(Some)
        .ok_or(PostgresError::NoUser)
}

/// The last lines of a log file, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
