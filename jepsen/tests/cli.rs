//! Goal: the `cairn-jepsen check` binary prints the verdict on its last line and exits
//! 0 / 1 / 2 for valid / invalid / unknown, for each input format.
//!
//! Method: run the built binary on fixtures with known verdicts.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Runs `cairn-jepsen check` and returns (exit code, last line of stdout).
fn run_check(arguments: &[&str], file: &Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn-jepsen"))
        .arg("check")
        .args(arguments)
        .arg(file)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let last_line = stdout.lines().last().unwrap_or_default().to_string();
    (output.status.code().expect("exited normally"), last_line)
}

fn etcd_log(name: &str) -> PathBuf {
    fixtures().join("porcupine/test_data/jepsen").join(name)
}

const REGISTER_LOG: [&str; 4] = ["--model", "register", "--format", "jepsen-log"];
const VERSIONED_JSONL: [&str; 4] = ["--model", "versioned-kv", "--format", "jsonl"];

#[test]
fn a_linearizable_log_exits_zero() {
    assert_eq!(
        run_check(&REGISTER_LOG, &etcd_log("etcd_002.log")),
        (0, "valid".to_string())
    );
}

#[test]
fn a_non_linearizable_log_exits_one() {
    assert_eq!(
        run_check(&REGISTER_LOG, &etcd_log("etcd_000.log")),
        (1, "invalid".to_string())
    );
}

#[test]
fn kv_edn_histories_are_checked() {
    let arguments = ["--model", "kv", "--format", "edn"];
    let kv = fixtures().join("porcupine/test_data/kv");
    assert_eq!(
        run_check(&arguments, &kv.join("c10-ok.txt")),
        (0, "valid".to_string())
    );
    assert_eq!(
        run_check(&arguments, &kv.join("c10-bad.txt")),
        (1, "invalid".to_string())
    );
}

#[test]
fn jsonl_histories_are_checked() {
    let jsonl = fixtures().join("jsonl");
    let valid = run_check(&VERSIONED_JSONL, &jsonl.join("versioned-kv-valid.jsonl"));
    assert_eq!(valid, (0, "valid".to_string()));
    let stale = run_check(
        &VERSIONED_JSONL,
        &jsonl.join("versioned-kv-stale-read.jsonl"),
    );
    assert_eq!(stale, (1, "invalid".to_string()));
    let register = ["--model", "register", "--format", "jsonl"];
    let valid = run_check(&register, &jsonl.join("register-valid.jsonl"));
    assert_eq!(valid, (0, "valid".to_string()));
}

#[test]
fn running_out_of_time_exits_two() {
    let arguments = [
        "--model",
        "register",
        "--format",
        "jepsen-log",
        "--time-limit-secs",
        "0",
    ];
    assert_eq!(
        run_check(&arguments, &etcd_log("etcd_000.log")),
        (2, "unknown".to_string())
    );
}

#[test]
fn an_unreadable_history_exits_two() {
    let missing = fixtures().join("no-such-history.jsonl");
    assert_eq!(
        run_check(&VERSIONED_JSONL, &missing),
        (2, "unknown".to_string())
    );
    // A register log read as JSONL is malformed input, not a verdict.
    assert_eq!(
        run_check(&VERSIONED_JSONL, &etcd_log("etcd_000.log")),
        (2, "unknown".to_string())
    );
}
