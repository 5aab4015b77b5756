//! Goal: the chaos harness catches a broken leader lease. cairn started with its
//! hidden test double `--unsafe-read-lease-never-expires` keeps answering
//! linearizable reads from a lease that never ends, so a leader cut off from the
//! others keeps serving its old values after the majority elected a new leader and
//! acknowledged writes; the register workload must come out INVALID. The same run
//! with a real lease is in `chaos.rs` and must be valid.
//!
//! Method: `cairn-jepsen run --unsafe-read-lease-never-expires` on 3 nodes with
//! 6-second partitions for 36 s of workload, so three partitions; each cuts one
//! node off, often the leader (the nemesis isolates the leader on purpose in one of
//! its shapes). A partition must outlast the followers' refusal to vote (the
//! election timeout max, 1.4 s here) plus an election for the majority to elect a
//! new leader and acknowledge writes: 3-second partitions rarely did. One process
//! per node only reads, so the cut-off leader's reader keeps reading from it while
//! the majority writes. Seeds 3 and 5 both came out invalid. Needs root; without it the test
//! prints a loud SKIPPED banner and returns.

mod common;

use common::{harness_can_run, run_harness};

#[test]
fn stale_reads_from_a_lease_that_never_expires_are_reported_invalid() {
    let test = "stale_reads_from_a_lease_that_never_expires_are_reported_invalid";
    if !harness_can_run(test) {
        return;
    }
    let outcome = run_harness(
        test,
        "--workload register --nemesis partition --time-limit-secs 36 \
         --nemesis-interval-secs 6 --seed 3 --unsafe-read-lease-never-expires",
    );
    assert_eq!(
        (outcome.exit_code, outcome.verdict_line.as_str()),
        (1, "invalid"),
        "the checker missed the broken lease's stale reads; output:\n{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("checker linear: invalid"),
        "the linearizability checker must be the one that fails:\n{}",
        outcome.stdout
    );
}
