//! Logs written to a file carry no ANSI colour codes (they are coloured only on a terminal), and
//! a service that finds no NATS server waits, saying so, for its start-up timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

#[test]
fn logs_to_a_file_have_no_colour_codes_and_say_what_the_service_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("command-service.log");
    let status = Command::new(env!("CARGO_BIN_EXE_command-service"))
        // Port 1 on loopback: nothing listens there.
        .args([
            "--nats-url",
            "nats://127.0.0.1:1",
            "--startup-timeout-secs",
            "1",
        ])
        .env_remove("FOLLOWERS_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    assert!(!status.success(), "no NATS server: the service gives up");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("waiting for a NATS server"),
        "the log says why: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file: {text:?}"
    );
}
