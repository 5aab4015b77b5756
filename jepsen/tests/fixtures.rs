//! Goal: the checker gives Porcupine's known verdict for every one of its 108 fixture
//! histories (102 Jepsen etcd register logs, 6 KV histories), so it is proven both to
//! accept linearizable histories and to find violations in real ones.
//!
//! Method: read `fixtures/porcupine/EXPECTED.tsv`, check each listed file through the
//! same pipeline as the CLI (files spread over a few threads), and compare. A missing
//! file or a short list fails the test.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_jepsen::check::{check_history_file, ModelKind};
use cairn_jepsen::checker::linear::CheckOptions;
use cairn_jepsen::formats::Format;
use cairn_jepsen::Verdict;

const EXPECTED_ENTRY_COUNT: usize = 108;
/// Generous: the slowest fixture takes about a second in a debug build.
const FIXTURE_TIME_LIMIT: Duration = Duration::from_secs(60);

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/porcupine")
}

struct Entry {
    relative_path: String,
    expected: Verdict,
}

fn expected_entries() -> Vec<Entry> {
    let path = fixture_root().join("EXPECTED.tsv");
    let text = std::fs::read_to_string(&path).expect("EXPECTED.tsv is part of the repository");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (relative_path, verdict) = line.split_once('\t').expect("path<TAB>verdict");
            let expected = match verdict.trim() {
                "linearizable" => Verdict::Valid,
                "not-linearizable" => Verdict::Invalid,
                other => panic!("unknown expected verdict {other:?}"),
            };
            Entry {
                relative_path: relative_path.to_string(),
                expected,
            }
        })
        .collect()
}

fn model_and_format(relative_path: &str) -> (ModelKind, Format) {
    if relative_path.starts_with("jepsen/") {
        (ModelKind::Register, Format::JepsenLog)
    } else if relative_path.starts_with("kv/") {
        (ModelKind::Kv, Format::Edn)
    } else {
        panic!("no model for fixture {relative_path}")
    }
}

/// The verdict for one fixture, or why it could not be checked.
fn check_fixture(relative_path: &str) -> Result<Verdict, String> {
    let path = fixture_root().join("test_data").join(relative_path);
    if !path.is_file() {
        return Err(format!("missing fixture {}", path.display()));
    }
    let (model, format) = model_and_format(relative_path);
    let mut options = CheckOptions::new(FIXTURE_TIME_LIMIT);
    options.threads = 1;
    check_history_file(model, format, &path, &options)
        .map(|checked| checked.report.verdict)
        .map_err(|error| format!("{relative_path}: {error}"))
}

#[test]
fn every_fixture_gets_its_known_verdict() {
    let entries = expected_entries();
    assert_eq!(
        entries.len(),
        EXPECTED_ENTRY_COUNT,
        "EXPECTED.tsv lists every fixture"
    );
    let started = Instant::now();
    let next_index = AtomicUsize::new(0);
    let problems = Mutex::new(Vec::new());
    let worker_count = std::thread::available_parallelism().map_or(2, |count| count.get());
    std::thread::scope(|scope| {
        for _ in 0..worker_count {
            scope.spawn(|| loop {
                let index = next_index.fetch_add(1, Ordering::Relaxed);
                let Some(entry) = entries.get(index) else {
                    break;
                };
                let problem = match check_fixture(&entry.relative_path) {
                    Ok(verdict) if verdict == entry.expected => continue,
                    Ok(verdict) => {
                        format!(
                            "{}: got {verdict}, expected {}",
                            entry.relative_path, entry.expected
                        )
                    }
                    Err(message) => message,
                };
                problems
                    .lock()
                    .expect("no panics while holding the lock")
                    .push(problem);
            });
        }
    });
    let problems = problems.into_inner().expect("workers finished");
    assert!(
        problems.is_empty(),
        "{} fixtures disagree:\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!(
        "{} fixtures checked in {:.2} s",
        entries.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_fixture_set_has_both_verdicts() {
    let entries = expected_entries();
    let valid_count = entries
        .iter()
        .filter(|entry| entry.expected == Verdict::Valid)
        .count();
    assert_eq!(valid_count, 26);
    assert_eq!(entries.len() - valid_count, 82);
}

#[test]
fn the_unlisted_empty_log_is_an_empty_valid_history() {
    // etcd_095.log is empty upstream and so has no known verdict; nothing happened, so
    // nothing can be wrong.
    assert_eq!(check_fixture("jepsen/etcd_095.log"), Ok(Verdict::Valid));
}
