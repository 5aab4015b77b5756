//! The node's event metrics: counters and histograms that code records into as
//! things happen (a request served, a batch proposed, an fsync, an election).
//! A leaf like `limits`: it knows no other cairn module, so every layer may
//! record into it, the disk and the WAL included.
//!
//! What is read from the node's state on each scrape (Raft indexes, queue
//! depths, chunk counts) is not kept here: `api::metrics` gathers it when
//! `/metrics` is asked and encodes it after these. One process is one node, so
//! the families live in one process-wide [`Metrics`] ([`global`]).
//!
//! Every label set is bounded: label values come from fixed lists or from
//! names the code itself chose, never from raw client input (see
//! `api::request_metrics` for how requests are named).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Labels of one request counter: which service and method answered, and how.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

/// Labels of one request latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub service: String,
    pub method: String,
}

/// Which file an fsync made durable.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FsyncLabels {
    pub file: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncFile {
    /// `fdatasync` of a Raft log segment after an append (`raft::log_store`).
    RaftLog,
    /// `Disk::sync`: sled's flush, then `fdatasync` of its files (`disk`).
    StateDb,
}

impl FsyncFile {
    fn label(self) -> &'static str {
        match self {
            FsyncFile::RaftLog => "raft_log",
            FsyncFile::StateDb => "state_db",
        }
    }
}

/// Request latency buckets: 0.5 ms doubling to about 33 s (17 buckets).
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 17))
}

/// fsync latency buckets: 50 µs doubling to about 3.3 s (17 buckets).
fn fsync_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

#[derive(Clone)]
struct RequestHistogram;

impl MetricConstructor<Histogram> for RequestHistogram {
    fn new_metric(&self) -> Histogram {
        request_buckets()
    }
}

#[derive(Clone)]
struct FsyncHistogram;

impl MetricConstructor<Histogram> for FsyncHistogram {
    fn new_metric(&self) -> Histogram {
        fsync_buckets()
    }
}

/// Every event family, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, RequestHistogram>,
    pub proposal_batch_commands: Histogram,
    fsync_duration: Family<FsyncLabels, Histogram, FsyncHistogram>,
    pub elections: Counter,
    pub leader_changes: Counter,
    pub sweeps: Counter,
    pub sweep_items_removed: Counter,
    pub chunk_files_deleted: Counter,
    pub log_cache_reads: Counter,
    pub log_wal_reads: Counter,
    pub chunk_pushes: Counter,
    pub lease_reads: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's (that is, the node's) event metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::new_with_constructor(RequestHistogram);
        // Commands per proposed entry: 1 doubling to BATCH_COMMANDS_MAX (1,024).
        let proposal_batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        let fsync_duration = Family::new_with_constructor(FsyncHistogram);
        let (elections, leader_changes) = (Counter::default(), Counter::default());
        let (sweeps, sweep_items_removed) = (Counter::default(), Counter::default());
        let chunk_files_deleted = Counter::default();
        let (log_cache_reads, log_wal_reads) = (Counter::default(), Counter::default());
        let (chunk_pushes, lease_reads) = (Counter::default(), Counter::default());
        let mut registry = Registry::default();
        registry.register(
            "cairn_requests",
            "Requests answered, by service, method and result code (gRPC code name, or HTTP status)",
            requests.clone(),
        );
        registry.register_with_unit(
            "cairn_request_duration",
            "Time from a request's arrival to the end of its response body",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register(
            "cairn_raft_proposal_batch_commands",
            "Client commands the group-commit proposer packed into one Raft entry",
            proposal_batch_commands.clone(),
        );
        registry.register_with_unit(
            "cairn_fsync_duration",
            "Time to make writes durable: raft_log is one fdatasync of a log segment after an append, state_db one Disk::sync (sled flush, then fdatasync)",
            Unit::Seconds,
            fsync_duration.clone(),
        );
        registry.register(
            "cairn_raft_elections",
            "Elections this node started (terms in which it voted for itself), as observed",
            elections.clone(),
        );
        registry.register(
            "cairn_raft_leader_changes",
            "Times the leader this node knows changed to another node",
            leader_changes.clone(),
        );
        registry.register(
            "cairn_sweeps",
            "Sweeps (TTL expiry, purges, chunk GC) this node proposed as leader and saw applied",
            sweeps.clone(),
        );
        registry.register(
            "cairn_sweep_items_removed",
            "Items (expired keys, purged records, sessions, collected chunks) removed by the sweeps counted in cairn_sweeps",
            sweep_items_removed.clone(),
        );
        registry.register(
            "cairn_chunk_files_deleted",
            "Chunk files this node deleted because chunk GC collected them",
            chunk_files_deleted.clone(),
        );
        registry.register(
            "cairn_raft_log_cache_reads",
            "Log reads (replication, apply) served from the in-memory cache of the newest entries",
            log_cache_reads.clone(),
        );
        registry.register(
            "cairn_raft_log_wal_reads",
            "Log reads the entry cache could not serve, read and decoded from the WAL",
            log_wal_reads.clone(),
        );
        registry.register(
            "cairn_chunk_pushes",
            "Large chunks this node stored on a quorum outside the Raft log (chunk_push)",
            chunk_pushes.clone(),
        );
        registry.register(
            "cairn_read_lease_batches",
            "Batches of linearizable reads the leader answered from its lease, without a quorum round",
            lease_reads.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            proposal_batch_commands,
            fsync_duration,
            elections,
            leader_changes,
            sweeps,
            sweep_items_removed,
            chunk_files_deleted,
            log_cache_reads,
            log_wal_reads,
            chunk_pushes,
            lease_reads,
        }
    }

    /// Counts one answered request and its latency.
    pub fn record_request(&self, route: RouteLabels, code: String, elapsed: Duration) {
        self.request_duration
            .get_or_create(&route)
            .observe(elapsed.as_secs_f64());
        let labels = RequestLabels {
            service: route.service,
            method: route.method,
            code,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Records how long one fsync of `file` took.
    pub fn record_fsync(&self, file: FsyncFile, elapsed: Duration) {
        self.fsync_duration
            .get_or_create(&FsyncLabels { file: file.label() })
            .observe(elapsed.as_secs_f64());
    }

    /// Appends these families in the text format, without the closing `# EOF`
    /// (the caller adds what it gathered, then the end).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_the_total_suffix_and_durations_their_unit() {
        let metrics = Metrics::new();
        let route = RouteLabels {
            service: "kv".into(),
            method: "Put".into(),
        };
        metrics.record_request(route, "OK".into(), Duration::from_millis(3));
        metrics.record_fsync(FsyncFile::RaftLog, Duration::from_micros(80));
        let mut text = String::new();
        metrics.encode(&mut text).unwrap();
        assert!(
            text.contains(r#"cairn_requests_total{service="kv",method="Put",code="OK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cairn_request_duration_seconds_count{service="kv",method="Put"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"cairn_fsync_duration_seconds_count{file="raft_log"} 1"#),
            "{text}"
        );
    }
}
