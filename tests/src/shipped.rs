//! The shipped least-privilege NATS configuration (deploy/nats/accounts.conf) in tests: one nkey
//! per user made by `followers-admin nkeys`, flags and connections as those users, and the
//! permission violations the server reports to each connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::eventually;

/// A file of deploy/nats/, as shipped.
pub fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/nats")
        .join(file)
}

/// `followers-admin init`'s flags: the store flags.
#[derive(Debug, clap::Parser)]
pub struct Init {
    #[command(flatten)]
    pub store: followers_store::StoreArgs,
}

/// A seed for every user of the shipped accounts file, in a temporary folder.
#[derive(Debug)]
pub struct Keys {
    dir: tempfile::TempDir,
    /// The server's environment: each `FOLLOWERS_<NAME>_NKEY` and its public key.
    pub env: Vec<(String, String)>,
}

impl Keys {
    pub fn provision() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = followers_admin::nkeys::provision(&shipped("accounts.conf"), dir.path())
            .expect("followers-admin nkeys")
            .into_iter()
            .map(|k| (k.variable, k.public_key))
            .collect();
        Self { dir, env }
    }

    pub fn seed(&self, user: &str) -> PathBuf {
        self.dir.path().join(format!("{user}.nk"))
    }

    /// The NATS flags of a process running as `user` with its inbox prefix, reaching `urls`.
    pub fn flags(&self, user: &str, inbox: &str, urls: &str) -> Vec<String> {
        vec![
            "--nats-url".to_owned(),
            urls.to_owned(),
            "--nats-nkey-file".to_owned(),
            self.seed(user).to_str().expect("a UTF-8 path").to_owned(),
            "--nats-inbox-prefix".to_owned(),
            inbox.to_owned(),
        ]
    }

    /// Connects as `user` with its inbox prefix.
    pub async fn connect(&self, user: &str, inbox: &str, urls: Vec<String>) -> Connection {
        let seed = std::fs::read_to_string(self.seed(user)).expect("the user's seed");
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = async_nats::ConnectOptions::new()
            .nkey(seed.trim().to_owned())
            .custom_inbox_prefix(inbox)
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        sink.lock().expect("not poisoned").push(e.to_string());
                    }
                }
            })
            .connect(urls)
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"));
        Connection { client, errors }
    }
}

/// A connection of one user, and the errors the server sent it (permission violations).
#[derive(Debug)]
pub struct Connection {
    pub client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Connection {
    /// What the server has refused this user so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("not poisoned").clone()
    }

    /// Waits until the server has refused something to this user, naming `subject`.
    pub async fn refused(&self, subject: &str) {
        eventually(
            &format!("a permissions violation for {subject}"),
            || async {
                self.errors()
                    .iter()
                    .any(|e| e.contains("Permissions Violation") && e.contains(subject))
            },
        )
        .await;
    }
}
