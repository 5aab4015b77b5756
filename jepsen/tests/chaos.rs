//! Goal: cairn stays correct under faults, in CI: a register workload under network
//! partitions is linearizable, a set workload under kill -9 and restarts loses no
//! acknowledged add, and a queue workload (lease and ack) under kill -9 and restarts
//! loses no acknowledged send and keeps FIFO order, and an object workload under
//! partitions and kill -9 is linearizable with every read one whole object.
//!
//! Method: the CI profile of the chaos harness. Each test runs `cairn-jepsen run`
//! against a real 3-node cluster of the `cairn` debug binary in network namespaces for
//! 20-25 s of workload (faults flip every 4 s), and asserts exit code 0 and `valid`.
//! Needs root; without it the tests print a loud SKIPPED banner and return. The runs
//! take turns (a lock) so they never share the 2-core machine.

mod common;

use std::sync::Mutex;

use common::{harness_can_run, run_harness};

/// One cluster at a time.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn assert_valid(test: &str, args: &str) {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !harness_can_run(test) {
        return;
    }
    let outcome = run_harness(test, args);
    assert_eq!(
        (outcome.exit_code, outcome.verdict_line.as_str()),
        (0, "valid"),
        "expected a valid run; output:\n{}",
        outcome.stdout
    );
}

#[test]
fn register_under_partitions_is_linearizable() {
    assert_valid(
        "register_under_partitions_is_linearizable",
        "--workload register --nemesis partition --time-limit-secs 25 \
         --nemesis-interval-secs 4 --seed 1",
    );
}

#[test]
fn set_under_kill_and_restart_loses_no_acknowledged_add() {
    assert_valid(
        "set_under_kill_and_restart_loses_no_acknowledged_add",
        "--workload set --nemesis kill --time-limit-secs 25 --nemesis-interval-secs 4 --seed 2",
    );
}

#[test]
fn queue_under_kill_and_restart_loses_no_acknowledged_send() {
    assert_valid(
        "queue_under_kill_and_restart_loses_no_acknowledged_send",
        "--workload queue --queue-mode lease --nemesis kill --time-limit-secs 20 \
         --nemesis-interval-secs 4 --seed 4",
    );
}

#[test]
fn objects_under_partitions_and_kills_are_linearizable_and_whole() {
    assert_valid(
        "objects_under_partitions_and_kills_are_linearizable_and_whole",
        "--workload object --nemesis partition,kill --time-limit-secs 20 \
         --nemesis-interval-secs 4 --seed 6",
    );
}
