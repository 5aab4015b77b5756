//! Linearizability check tests. Besides hand-made cases, the search is compared with a
//! brute-force oracle (try every order that respects real time) on thousands of small
//! random register histories, valid and invalid, including crashed operations.

use super::*;
use crate::checker::models::kv::{KvModel, KvOp, KvOperation, KvOutput};
use crate::checker::models::register::{
    RegisterModel, RegisterOp, RegisterOperation, RegisterOutput,
};
use crate::checker::models::KeyedInput;
use crate::checker::search::{search, Budget, SearchOutcome};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn op(
    key: &str,
    call: u64,
    ret: Option<u64>,
    op: RegisterOp,
    output: Option<RegisterOutput>,
) -> RegisterOperation {
    Operation {
        process: call,
        call_time: call,
        return_time: ret,
        input: KeyedInput {
            key: key.to_string(),
            op,
        },
        output,
        line_number: call,
    }
}

fn stale_read_history(key: &str) -> Vec<RegisterOperation> {
    vec![
        op(
            key,
            0,
            Some(10),
            RegisterOp::Write(1),
            Some(RegisterOutput::Written),
        ),
        op(
            key,
            20,
            Some(30),
            RegisterOp::Write(2),
            Some(RegisterOutput::Written),
        ),
        op(
            key,
            40,
            Some(50),
            RegisterOp::Read,
            Some(RegisterOutput::Read(Some(1))),
        ),
    ]
}

fn options() -> CheckOptions {
    CheckOptions::new(Duration::from_secs(10))
}

#[test]
fn an_empty_history_is_valid() {
    let report = check_operations(&RegisterModel, Vec::new(), &options());
    assert_eq!(report.verdict, Verdict::Valid);
}

#[test]
fn an_invalid_partition_names_the_blocked_operation() {
    let report = check_operations(&RegisterModel, stale_read_history("k"), &options());
    assert_eq!(report.verdict, Verdict::Invalid);
    let failure = report.failures().next().expect("one failure");
    assert_eq!(failure.key, "k");
    assert_eq!(failure.linearized_count, 2);
    assert_eq!(failure.operation_count, 3);
    assert!(
        failure.blocked_operation.contains("Read(Some(1))"),
        "{}",
        failure.blocked_operation
    );
    assert_eq!(failure.state, "Some(2)");
}

#[test]
fn a_zero_time_limit_gives_unknown() {
    let report = check_operations(
        &RegisterModel,
        stale_read_history("k"),
        &CheckOptions::new(Duration::ZERO),
    );
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(
        report.partitions[0].unknown_reason,
        Some(UnknownReason::TimedOut)
    );
}

#[test]
fn partitions_are_checked_independently_and_merged() {
    let mut history = stale_read_history("a");
    history.push(op(
        "b",
        0,
        Some(1),
        RegisterOp::Write(5),
        Some(RegisterOutput::Written),
    ));
    let mut sequential = options();
    sequential.threads = 1;
    let report = check_operations(&RegisterModel, history.clone(), &sequential);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(
        report.partitions[1].unknown_reason,
        Some(UnknownReason::Cancelled)
    );
    sequential.stop_at_first_invalid = false;
    let report = check_operations(&RegisterModel, history, &sequential);
    let verdicts: Vec<Verdict> = report
        .partitions
        .iter()
        .map(|partition| partition.verdict)
        .collect();
    assert_eq!(verdicts, vec![Verdict::Invalid, Verdict::Valid]);
}

#[test]
fn crashed_reads_are_dropped() {
    let history = vec![
        op("", 0, Some(1), RegisterOp::Read, None),
        op(
            "",
            2,
            Some(3),
            RegisterOp::Write(1),
            Some(RegisterOutput::Written),
        ),
    ];
    let report = check_operations(&RegisterModel, history, &options());
    assert_eq!(report.dropped_count, 1);
    assert_eq!(report.partitions[0].operation_count, 1);
}

#[test]
fn the_witness_order_respects_real_time() {
    let history = vec![
        op(
            "",
            10,
            Some(20),
            RegisterOp::Read,
            Some(RegisterOutput::Read(Some(1))),
        ),
        op(
            "",
            0,
            Some(30),
            RegisterOp::Write(1),
            Some(RegisterOutput::Written),
        ),
        op(
            "",
            25,
            Some(26),
            RegisterOp::Cas {
                expected: 1,
                new: 2,
            },
            Some(RegisterOutput::CasSucceeded),
        ),
    ];
    let cancel = AtomicBool::new(false);
    let budget = Budget {
        deadline: Instant::now() + Duration::from_secs(10),
        cancel: &cancel,
    };
    let (outcome, _) = search(&RegisterModel, &history, &budget);
    assert_eq!(
        outcome,
        SearchOutcome::Linearizable {
            order: vec![1, 0, 2]
        }
    );
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

fn random_operation(random: &mut Random) -> RegisterOperation {
    let call = random.below(20);
    let ret = Some(call + random.below(8));
    let value = |random: &mut Random| random.below(3) as i64;
    let crashed = random.below(8) == 0;
    match random.below(3) {
        0 => {
            let seen = [None, Some(0), Some(1), Some(2)][random.below(4) as usize];
            op(
                "",
                call,
                ret,
                RegisterOp::Read,
                Some(RegisterOutput::Read(seen)),
            )
        }
        1 if crashed => op("", call, None, RegisterOp::Write(value(random)), None),
        1 => op(
            "",
            call,
            ret,
            RegisterOp::Write(value(random)),
            Some(RegisterOutput::Written),
        ),
        _ => {
            let cas = RegisterOp::Cas {
                expected: value(random),
                new: value(random),
            };
            let output = if random.below(2) == 0 {
                RegisterOutput::CasSucceeded
            } else {
                RegisterOutput::CasFailed
            };
            if crashed {
                op("", call, None, cas, None)
            } else {
                op("", call, ret, cas, Some(output))
            }
        }
    }
}

/// True if some order of the remaining operations respects real time and the model.
fn brute_force(history: &[RegisterOperation], placed: &mut Vec<bool>, state: Option<i64>) -> bool {
    if placed.iter().all(|&done| done) {
        return true;
    }
    for candidate in 0..history.len() {
        if placed[candidate] {
            continue;
        }
        let call = history[candidate].call_time;
        let must_wait = (0..history.len()).any(|other| {
            !placed[other] && history[other].return_time.is_some_and(|ret| ret < call)
        });
        if must_wait {
            continue;
        }
        let operation = &history[candidate];
        if let Some(next) = RegisterModel.step(&state, &operation.input, operation.output.as_ref())
        {
            placed[candidate] = true;
            let found = brute_force(history, placed, next);
            placed[candidate] = false;
            if found {
                return true;
            }
        }
    }
    false
}

#[test]
fn agrees_with_brute_force_on_random_histories() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut verdict_counts = [0usize; 2];
    for case in 0..3000 {
        let length = 1 + random.below(7) as usize;
        let history: Vec<RegisterOperation> =
            (0..length).map(|_| random_operation(&mut random)).collect();
        let expected = brute_force(&history, &mut vec![false; length], None);
        let report = check_operations(&RegisterModel, history.clone(), &options());
        let expected_verdict = if expected {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        assert_eq!(
            report.verdict, expected_verdict,
            "case {case}: {history:#?}"
        );
        verdict_counts[usize::from(expected)] += 1;
    }
    // Both verdicts must be well represented, or the comparison proves little.
    assert!(
        verdict_counts.iter().all(|&count| count > 500),
        "{verdict_counts:?}"
    );
}

/// A partition whose search explodes: `count` fully concurrent appends of distinct
/// letters, then a read no order can produce, so every subset and order is explored.
fn exploding_partition(key: &str, count: u8) -> Vec<KvOperation> {
    let mut history: Vec<KvOperation> = (0..count)
        .map(|index| {
            let letter = char::from(b'a' + index).to_string();
            kv_op(
                key,
                0,
                Some(100),
                KvOp::Append(letter),
                Some(KvOutput::Done),
            )
        })
        .collect();
    history.push(kv_op(
        key,
        200,
        Some(300),
        KvOp::Get,
        Some(KvOutput::Got("?".to_string())),
    ));
    history
}

fn kv_op(
    key: &str,
    call: u64,
    ret: Option<u64>,
    op: KvOp,
    output: Option<KvOutput>,
) -> KvOperation {
    Operation {
        process: call,
        call_time: call,
        return_time: ret,
        input: KeyedInput {
            key: key.to_string(),
            op,
        },
        output,
        line_number: call,
    }
}

#[test]
fn an_easy_anomaly_is_found_behind_a_hard_partition() {
    // One thread, and the hard key sorts first: time slicing must still reach key "b".
    let mut history = exploding_partition("a", 20);
    history.push(kv_op(
        "b",
        0,
        Some(1),
        KvOp::Put("x".to_string()),
        Some(KvOutput::Done),
    ));
    history.push(kv_op(
        "b",
        2,
        Some(3),
        KvOp::Get,
        Some(KvOutput::Got(String::new())),
    ));
    let mut options = CheckOptions::new(Duration::from_secs(60));
    options.threads = 1;
    let started = Instant::now();
    let report = check_operations(&KvModel, history, &options);
    assert_eq!(report.verdict, Verdict::Invalid);
    assert_eq!(
        report.partitions[0].unknown_reason,
        Some(UnknownReason::Cancelled)
    );
    assert_eq!(report.partitions[1].verdict, Verdict::Invalid);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn the_cache_bound_ends_an_exploding_search_as_unknown() {
    let mut options = CheckOptions::new(Duration::from_secs(60));
    options.cache_entries_max = 10_000;
    let report = check_operations(&KvModel, exploding_partition("a", 20), &options);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(
        report.partitions[0].unknown_reason,
        Some(UnknownReason::CacheLimit)
    );
}

#[test]
fn a_partition_time_limit_leaves_time_for_the_others() {
    let mut history = exploding_partition("a", 20);
    history.push(kv_op(
        "b",
        0,
        Some(1),
        KvOp::Put("x".to_string()),
        Some(KvOutput::Done),
    ));
    let mut options = CheckOptions::new(Duration::from_secs(60));
    options.partition_time_limit = Some(Duration::from_millis(200));
    let report = check_operations(&KvModel, history, &options);
    assert_eq!(report.verdict, Verdict::Unknown);
    assert_eq!(
        report.partitions[0].unknown_reason,
        Some(UnknownReason::TimedOut)
    );
    assert!(report.partitions[0].elapsed < Duration::from_secs(5));
    assert_eq!(report.partitions[1].verdict, Verdict::Valid);
}
