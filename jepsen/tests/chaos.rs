//! Goal: cairn stays correct under faults, in CI: a register workload under network
//! partitions is linearizable, a set workload under kill -9 and restarts loses no
//! acknowledged add, and a queue workload (lease and ack) under kill -9 and restarts
//! loses no acknowledged send and keeps FIFO order, and an object workload under
//! partitions and kill -9 is linearizable with every read one whole object. The same
//! holds under power cuts (`--nemesis power`): every node's data directory is on a
//! powerfs, and a cut on one node, a minority or all nodes at once drops (or tears)
//! whatever the nodes wrote but did not fsync before they are restarted on it. The
//! file system workload (`fs`: whole-file writes and reads as registers, create /
//! rename / unlink of unique names checked against a final listing) holds under
//! kill -9, partitions and power cuts.
//!
//! Method: the CI profile of the chaos harness. Each test runs `cairn-jepsen run`
//! against a real 3-node cluster of the `cairn` debug binary in network namespaces for
//! 20-25 s of workload (faults flip every 4 s), and asserts exit code 0 and `valid`.
//! The power runs (seeds chosen so the seeded RNG draws the scopes named in each
//! test's comment) also need /dev/fuse; the queue one runs 5 nodes, so that a minority
//! is two nodes. Needs root; without it the tests print a loud SKIPPED banner and
//! return. The runs take turns (a lock) so they never share the 2-core machine.

mod common;

use std::io::Write;
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
    if args.contains("power") {
        assert_power_cuts_ran(test, &outcome.stdout);
    }
    assert_eq!(
        (outcome.exit_code, outcome.verdict_line.as_str()),
        (0, "valid"),
        "expected a valid run; output:\n{}",
        outcome.stdout
    );
}

/// A power run whose machine cannot mount powerfs skips the fault (the run is then
/// valid without a single cut): loud SKIPPED banner, or a failure under CI.
fn assert_power_cuts_ran(test: &str, stdout: &str) {
    if stdout.contains("note: fault power skipped") {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: the power fault cannot run under CI:\n{stdout}"
        );
        let bar = "!".repeat(78);
        let banner = format!("\n{bar}\nSKIPPED the power cuts of {test}: no powerfs\n{bar}\n");
        let _ = std::io::stderr().write_all(banner.as_bytes());
        return;
    }
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("power (") && !line.contains(" 0 cuts")),
        "{test}: no power cut ran:\n{stdout}"
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

/// Linearizable reads from the leader lease (`--read-lease`) under partitions,
/// pauses of a node (the leader among them) and wall-clock shifts: the lease runs
/// on the monotonic clock, so none of them may make it serve a stale read
/// (`broken_lease.rs` shows the checker catches a lease that never expires).
#[test]
fn register_with_read_leases_under_partitions_pauses_and_clock_shifts_is_linearizable() {
    assert_valid(
        "register_with_read_leases_under_partitions_pauses_and_clock_shifts_is_linearizable",
        "--workload register --nemesis partition,pause,clock --time-limit-secs 25 \
         --nemesis-interval-secs 4 --seed 2 --read-lease",
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

// Power cuts: scopes all, all.
#[test]
fn register_under_power_cuts_on_all_nodes_is_linearizable() {
    assert_valid(
        "register_under_power_cuts_on_all_nodes_is_linearizable",
        "--workload register --nemesis power --power-scope all --time-limit-secs 20 \
         --nemesis-interval-secs 4 --seed 11",
    );
}

// Power cuts: the leader alone, then all nodes.
#[test]
fn set_under_power_cuts_loses_no_acknowledged_add() {
    assert_valid(
        "set_under_power_cuts_loses_no_acknowledged_add",
        "--workload set --nemesis power --power-scope one,all --time-limit-secs 20 \
         --nemesis-interval-secs 4 --seed 1",
    );
}

// Power cuts on 5 nodes: a minority (nodes 3 and 4), then all nodes.
#[test]
fn queue_under_power_cuts_loses_no_acknowledged_send() {
    assert_valid(
        "queue_under_power_cuts_loses_no_acknowledged_send",
        "--workload queue --queue-mode lease --nemesis power --power-scope minority,all \
         --nodes 5 --time-limit-secs 20 --nemesis-interval-secs 4 --seed 1",
    );
}

// An isolated leader, then a power cut on all nodes.
#[test]
fn objects_under_power_cuts_and_partitions_are_linearizable_and_whole() {
    assert_valid(
        "objects_under_power_cuts_and_partitions_are_linearizable_and_whole",
        "--workload object --nemesis power,partition --power-scope one,minority,all \
         --time-limit-secs 20 --nemesis-interval-secs 4 --seed 6",
    );
}

#[test]
fn fs_under_kill_and_restart_is_linearizable_and_keeps_every_name() {
    assert_valid(
        "fs_under_kill_and_restart_is_linearizable_and_keeps_every_name",
        "--workload fs --nemesis kill --time-limit-secs 20 --nemesis-interval-secs 4 --seed 3",
    );
}

#[test]
fn fs_under_partitions_is_linearizable_and_keeps_every_name() {
    assert_valid(
        "fs_under_partitions_is_linearizable_and_keeps_every_name",
        "--workload fs --nemesis partition --time-limit-secs 20 --nemesis-interval-secs 4 \
         --seed 5",
    );
}

// Power cuts: the scopes one and all (which one the seeded RNG draws is in the output).
#[test]
fn fs_under_power_cuts_is_linearizable_and_keeps_every_name() {
    assert_valid(
        "fs_under_power_cuts_is_linearizable_and_keeps_every_name",
        "--workload fs --nemesis power --power-scope one,all --time-limit-secs 20 \
         --nemesis-interval-secs 4 --seed 7",
    );
}
