#![allow(clippy::expect_used)]
//! The `followers-admin` binary's command line.

use std::process::Command;

#[test]
fn completions_print_a_bash_script_naming_the_subcommands() {
    let o = Command::new(env!("CARGO_BIN_EXE_followers-admin"))
        .args(["completions", "bash"])
        .output()
        .expect("run followers-admin");
    assert!(o.status.success(), "{o:?}");
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(script.contains("followers-admin"), "{script}");
    assert!(script.contains("init"), "{script}");
    assert!(o.stderr.is_empty(), "{o:?}");
}
