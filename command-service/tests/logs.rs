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

/// The service's stderr and exit status, started against no NATS server with `extra` flags.
fn run_without_nats(extra: &[&str]) -> (String, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_command-service"))
        .args([
            "--nats-url",
            "nats://127.0.0.1:1",
            "--startup-timeout-secs",
            "1",
        ])
        .args(extra)
        .env_remove("FOLLOWERS_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    (stderr, output.status.success())
}

#[test]
fn json_logs_are_one_object_a_line() {
    let (text, ok) = run_without_nats(&["--log-format", "json"]);
    assert!(!ok, "no NATS server: the service gives up");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON object"))
        .collect();
    let waiting = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("waiting for a NATS server"))
        })
        .unwrap_or_else(|| panic!("the wait is logged as JSON: {text}"));
    assert!(
        waiting["level"].is_string() && waiting["timestamp"].is_string(),
        "{waiting}"
    );
}

#[test]
fn an_unusable_trace_endpoint_stops_the_start_with_a_reason() {
    let (text, ok) = run_without_nats(&["--otlp-endpoint", "not a url"]);
    assert!(!ok);
    assert!(
        text.contains("traces cannot be exported to not a url"),
        "{text}"
    );
}
