//! `cairn server --print-config`: flags over environment variables over the
//! config file over defaults, derived defaults spelled out, tokens redacted,
//! and the output reads back as a config file with the same settings.
//! Method: run the binary; no node starts.

mod common;

use std::process::Command;

use cairn::config::Config;
use common::CAIRN;

#[test]
fn print_config_merges_file_env_and_flags_and_redacts_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        "id = 2\nheartbeat_interval_ms = 120\nsnapshot_log_entries = 500\n\
         tokens = [\"file-token-0123456789\"]\n\
         [peers]\n1 = \"127.0.0.1:7401\"\n2 = \"127.0.0.1:7411\"\n[limits]\nqueues_max = 7\n",
    )
    .unwrap();
    let output = Command::new(CAIRN)
        .args(["server", "--config"])
        .arg(&file)
        .args([
            "--grpc-addr",
            "127.0.0.1:7410",
            "--snapshot-log-entries",
            "600",
        ])
        .args(["--kv-value-bytes-max", "1000", "--print-config"])
        .env("CAIRN_HEARTBEAT_INTERVAL_MS", "130")
        .env("CAIRN_SNAPSHOT_LOG_ENTRIES", "550")
        .env("CAIRN_TOKENS", "env-token-0123456789,env-token-abcdefghij")
        .env("CAIRN_DISK_RESERVE_BYTES", "12345")
        .output()
        .expect("run cairn server --print-config");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("token-"), "a token was printed:\n{text}");
    let shown = Config::from_toml(&text).expect("the output is a config file");
    assert_eq!(shown.id, 2, "from the file");
    assert_eq!(shown.heartbeat_interval_ms, 130, "env over file");
    assert_eq!(shown.snapshot_log_entries, 600, "flag over env over file");
    assert_eq!(shown.disk_reserve_bytes, 12345, "env over default");
    assert_eq!(shown.grpc_addr, "127.0.0.1:7410");
    assert_eq!(
        shown.peer_addr.as_deref(),
        Some("127.0.0.1:7411"),
        "derived"
    );
    assert_eq!(shown.limits.queues_max, 7, "file limit");
    assert_eq!(shown.limits.kv_value_bytes_max, 1000, "flag limit");
    assert_eq!(shown.peers.len(), 2);
    assert_eq!(shown.tokens, vec!["<redacted>"; 2], "env tokens, redacted");
}

#[test]
fn a_contradiction_is_refused_before_printing() {
    let output = Command::new(CAIRN)
        .args([
            "server",
            "--dev",
            "--heartbeat-interval-ms",
            "900",
            "--print-config",
        ])
        .output()
        .expect("run cairn server");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("election_timeout_ms_min"), "{err}");
}
