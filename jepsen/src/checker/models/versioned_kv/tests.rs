//! Versioned KV model tests: hand-written JSONL histories, valid and invalid.

use super::*;
use crate::checker::linear::{check_operations, CheckOptions};
use crate::checker::Verdict;
use crate::formats::jsonl;
use crate::history::pair_events;
use std::time::Duration;

fn verdict_of(text: &str) -> Verdict {
    let events = jsonl::parse(text).expect("valid JSONL");
    let operations = decode(&pair_events(&events).expect("pairs")).expect("decodes");
    let options = CheckOptions::new(Duration::from_secs(10));
    check_operations(&versioned_kv_model(), operations, &options).verdict
}

/// One client event line on key `k`; `value` is JSON text.
fn line(process: u64, kind: &str, f: &str, value: &str, time_ns: u64) -> String {
    let event = format!(r#""process":{process},"type":"{kind}","f":"{f}","key":"k""#);
    format!(r#"{{{event},"value":{value},"time_ns":{time_ns}}}"#)
}

/// A failed cas of `[1,"b"]` by process 1 at time 4, with the given error.
fn failed_cas(error: &str) -> String {
    let event = r#""process":1,"type":"fail","f":"cas","key":"k","value":[1,"b"]"#;
    format!(r#"{{{event},"error":"{error}","time_ns":4}}"#)
}

fn history(lines: &[String]) -> String {
    lines.join("\n")
}

#[test]
fn reads_see_the_latest_version() {
    let text = history(&[
        line(0, "invoke", "get", "null", 1),
        line(0, "ok", "get", "null", 2),
        line(0, "invoke", "put", r#""a""#, 3),
        line(0, "ok", "put", r#"[1,"a"]"#, 4),
        line(1, "invoke", "cas", r#"[1,"b"]"#, 5),
        line(1, "ok", "cas", r#"[2,"b"]"#, 6),
        line(2, "invoke", "get", "null", 7),
        line(2, "ok", "get", r#"[2,"b"]"#, 8),
        line(2, "invoke", "delete", "null", 9),
        line(2, "ok", "delete", "null", 10),
        line(2, "invoke", "get", "null", 11),
        line(2, "ok", "get", "null", 12),
    ]);
    assert_eq!(verdict_of(&text), Verdict::Valid);
}

#[test]
fn a_stale_read_is_invalid() {
    let text = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", r#"[1,"a"]"#, 2),
        line(0, "invoke", "put", r#""b""#, 3),
        line(0, "ok", "put", r#"[2,"b"]"#, 4),
        line(1, "invoke", "get", "null", 5),
        line(1, "ok", "get", r#"[1,"a"]"#, 6),
    ]);
    assert_eq!(verdict_of(&text), Verdict::Invalid);
}

#[test]
fn versions_must_grow() {
    let text = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", r#"[5,"a"]"#, 2),
        line(0, "invoke", "put", r#""b""#, 3),
        line(0, "ok", "put", r#"[3,"b"]"#, 4),
    ]);
    assert_eq!(verdict_of(&text), Verdict::Invalid);
}

#[test]
fn a_cas_mismatch_against_the_current_version_is_invalid() {
    let text = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", r#"[1,"a"]"#, 2),
        line(1, "invoke", "cas", r#"[1,"b"]"#, 3),
        failed_cas("mismatch"),
    ]);
    assert_eq!(verdict_of(&text), Verdict::Invalid);
}

#[test]
fn a_failed_cas_for_another_reason_is_ignored() {
    let text = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", r#"[1,"a"]"#, 2),
        line(1, "invoke", "cas", r#"[1,"b"]"#, 3),
        failed_cas("not-leader"),
        line(1, "invoke", "get", "null", 5),
        line(1, "ok", "get", r#"[1,"a"]"#, 6),
    ]);
    assert_eq!(verdict_of(&text), Verdict::Valid);
}

#[test]
fn a_crashed_cas_may_or_may_not_apply() {
    let crashed = [
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "info", "put", r#""a""#, 2),
        line(1, "invoke", "cas", r#"[7,"b"]"#, 3),
        line(1, "info", "cas", r#"[7,"b"]"#, 4),
    ];
    let mut applied = crashed.to_vec();
    applied.extend([
        line(2, "invoke", "get", "null", 5),
        line(2, "ok", "get", r#"[9,"b"]"#, 6),
    ]);
    assert_eq!(verdict_of(&history(&applied)), Verdict::Valid);
    let mut not_applied = crashed.to_vec();
    not_applied.extend([
        line(2, "invoke", "get", "null", 5),
        line(2, "ok", "get", r#"[3,"a"]"#, 6),
    ]);
    assert_eq!(verdict_of(&history(&not_applied)), Verdict::Valid);
    let mut impossible = crashed.to_vec();
    impossible.extend([
        line(2, "invoke", "get", "null", 5),
        line(2, "ok", "get", r#"[7,"b"]"#, 6),
    ]);
    assert_eq!(verdict_of(&history(&impossible)), Verdict::Invalid);
}

#[test]
fn a_put_result_with_another_value_is_an_error() {
    let text = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", r#"[1,"z"]"#, 2),
    ]);
    let events = jsonl::parse(&text).expect("valid JSONL");
    assert!(decode(&pair_events(&events).expect("pairs")).is_err());
}

#[test]
fn a_write_whose_version_was_not_seen_still_orders_reads() {
    let text = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", "null", 2),
        line(0, "invoke", "cas", r#"[4,"b"]"#, 3),
        line(0, "ok", "cas", "null", 4),
        line(1, "invoke", "get", "null", 5),
        line(1, "ok", "get", r#"[6,"b"]"#, 6),
    ]);
    assert_eq!(verdict_of(&text), Verdict::Valid);
    let stale = history(&[
        line(0, "invoke", "put", r#""a""#, 1),
        line(0, "ok", "put", "null", 2),
        line(0, "invoke", "put", r#""b""#, 3),
        line(0, "ok", "put", "null", 4),
        line(1, "invoke", "get", "null", 5),
        line(1, "ok", "get", r#"[6,"a"]"#, 6),
    ]);
    assert_eq!(verdict_of(&stale), Verdict::Invalid);
}
