//! Goal: the chaos harness catches stale reads. cairn started with its hidden test
//! double `--unsafe-local-linearizable-reads` answers linearizable reads from local
//! state, so a partitioned follower or a deposed leader serves old values; the
//! register workload must come out INVALID.
//!
//! Method: `cairn-jepsen run --unsafe-local-reads` on 3 nodes with two partitions (5 s
//! on, 5 s off, 24 s of workload). Why this is reliable: every partition shape on 3
//! nodes cuts one node off; one process per node only reads, so the cut-off node keeps
//! answering reads for the whole partition, while the majority keeps acknowledging
//! writes (at once if a follower was cut off; after the 2-3 s fail-over if the leader
//! was). Any read of the cut-off node after such a write is stale. Needs root; without
//! it the test prints a loud SKIPPED banner and returns.

mod common;

use common::{harness_can_run, run_harness};

#[test]
fn stale_reads_from_unsafe_local_reads_are_reported_invalid() {
    let test = "stale_reads_from_unsafe_local_reads_are_reported_invalid";
    if !harness_can_run(test) {
        return;
    }
    let outcome = run_harness(
        test,
        "--workload register --nemesis partition --time-limit-secs 24 \
         --nemesis-interval-secs 5 --seed 3 --unsafe-local-reads",
    );
    assert_eq!(
        (outcome.exit_code, outcome.verdict_line.as_str()),
        (1, "invalid"),
        "the checker missed the stale reads; output:\n{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("checker linear: invalid"),
        "the linearizability checker must be the one that fails:\n{}",
        outcome.stdout
    );
}
