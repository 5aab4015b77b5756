//! Background KV writers for tests of availability: each puts unique keys, one
//! at a time, until stopped, and records what was acknowledged and every error
//! the SDK returned (after its own retries). A key whose put failed is tried
//! again, so every key ends acknowledged unless the writers stop first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::client::Client;

/// Puts one writer makes at most (a bound far above what a test reaches).
const WRITES_PER_WRITER_MAX: u64 = 200_000;
/// Attempts of one key after SDK calls that failed (each already retried).
const KEY_ATTEMPTS_MAX: u32 = 30;

/// What the writers saw.
#[derive(Default)]
pub struct WriterLog {
    /// Acknowledged (key, value) pairs.
    pub acked: Vec<(String, String)>,
    /// Errors returned to the caller, as `key: error`.
    pub errors: Vec<String>,
}

pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<WriterLog>>,
}

impl Writers {
    /// `count` writers through clients of `endpoints`, keys `<prefix><w>-<i>`.
    pub fn start(endpoints: &[String], namespace: &str, prefix: &str, count: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let tasks = (0..count)
            .map(|w| {
                let client = Client::connect(endpoints.to_vec()).expect("client");
                tokio::spawn(write_until_stopped(
                    client,
                    namespace.to_string(),
                    format!("{prefix}{w}"),
                    stop.clone(),
                    acked.clone(),
                ))
            })
            .collect();
        Writers { stop, acked, tasks }
    }

    /// Waits until `more` writes beyond the count now were acknowledged;
    /// panics naming `what` after `timeout`.
    pub async fn wait_progress(&self, more: u64, timeout: Duration, what: &str) {
        let goal = self.acked.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + timeout;
        while self.acked.load(Ordering::Relaxed) < goal {
            assert!(
                Instant::now() < deadline,
                "{what}: writes stalled at {} acknowledged",
                self.acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the writers and merges their logs.
    pub async fn finish(self) -> WriterLog {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = WriterLog::default();
        for task in self.tasks {
            let log = task.await.expect("writer task");
            all.acked.extend(log.acked);
            all.errors.extend(log.errors);
        }
        all
    }
}

async fn write_until_stopped(
    client: Client,
    namespace: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) -> WriterLog {
    let mut log = WriterLog::default();
    for i in 0..WRITES_PER_WRITER_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("{prefix}-{i}");
        let value = format!("value of {key}");
        for _ in 0..KEY_ATTEMPTS_MAX {
            match client
                .put(&namespace, key.as_bytes(), value.as_bytes())
                .await
            {
                Ok(_) => {
                    log.acked.push((key.clone(), value.clone()));
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    log.errors.push(format!("{key}: {e}"));
                    if stop.load(Ordering::Relaxed) {
                        return log;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    log
}
