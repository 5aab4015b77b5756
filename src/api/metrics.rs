//! `GET /metrics`: the node's metrics in the OpenMetrics text format (which
//! Prometheus scrapes). The event families of `crate::metrics` come first, then
//! what this module reads from the node at the scrape: Raft's indexes, role and
//! replication lag, the log's size, the chunk store, the scrubber, queue depths
//! and KV key counts.
//!
//! Each scrape stays cheap: Raft figures come from openraft's metrics (memory),
//! the log size from one directory listing, chunk counts from the report's
//! cache, queue depths from the queue records (one per queue, which hold the
//! length); only KV key counts need a scan of the keys, so they are counted in
//! the background at most every `KV_KEY_COUNT_REFRESH_MS`. Labels per queue and
//! per namespace are bounded by `SERIES_PER_FAMILY_MAX`.
//!
//! Access: open while the cluster has no tokens (like every route), or always
//! with `metrics_public`; otherwise a token (`Authorization: Bearer …`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

use super::error::ApiError;
use super::http_objects;
use super::service::Services;
use crate::raft::observe::ReplicationLag;
use crate::raft::report::NodeReport;
use crate::raft::Node;
use crate::state::{kv, queue};

/// Most labelled series one family of per-queue or per-namespace gauges
/// exports: the largest, by value; the rest are summed into one series labelled
/// `OTHER_LABEL`. Bounds a scrape's size and Prometheus's series count however
/// many queues or namespaces there are (up to `QUEUES_MAX`, `NAMESPACES_MAX`).
pub const SERIES_PER_FAMILY_MAX: usize = 1_000;
/// The label of the summed rest. Brackets are not allowed in queue or
/// namespace names, so it never collides with a real one.
pub const OTHER_LABEL: &str = "(other)";
/// KV key counts are at most this old: a count reads every key once, so it
/// runs in the background, one at a time, and only when a scrape asks.
pub const KV_KEY_COUNT_REFRESH_MS: u64 = 60_000;
/// The first scrape waits this long for the first count; later scrapes never
/// wait (they show the last finished count).
const KV_KEY_COUNT_FIRST_WAIT_MS: u64 = 1_000;

/// The content type of the OpenMetrics text format.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every role a node reports (`Node::role_name`); `cairn_raft_role` has one
/// series each.
const ROLES: [&str; 6] = [
    "leader",
    "follower",
    "candidate",
    "learner",
    "joining",
    "shutdown",
];

/// What `/metrics` keeps between scrapes.
pub struct Exporter {
    /// Serve without a token even once the cluster has tokens.
    public: bool,
    kv_keys: Arc<Mutex<KvKeyCounts>>,
}

#[derive(Default)]
struct KvKeyCounts {
    counted: Option<(Instant, Vec<(String, u64)>)>,
    running: bool,
}

impl Exporter {
    pub fn new(public: bool) -> Self {
        Exporter {
            public,
            kv_keys: Arc::default(),
        }
    }

    /// The last KV key counts, starting a new count when they are older than
    /// `KV_KEY_COUNT_REFRESH_MS` (the first scrape waits a little for it).
    async fn kv_key_counts(&self, node: &Node) -> Option<Vec<(String, u64)>> {
        let fresh = Duration::from_millis(KV_KEY_COUNT_REFRESH_MS);
        let (cached, start) = {
            let mut state = self.kv_keys.lock().expect("never poisoned");
            let stale = state
                .counted
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= fresh);
            let start = stale && !state.running;
            state.running |= start;
            (state.counted.as_ref().map(|(_, c)| c.clone()), start)
        };
        if !start {
            return cached;
        }
        let (state, tree) = (self.kv_keys.clone(), node.store.tree().clone());
        let count = tokio::task::spawn_blocking(move || {
            let counted = kv::key_counts(&tree);
            let mut state = state.lock().expect("never poisoned");
            state.running = false;
            match counted {
                Ok(counts) => {
                    state.counted = Some((Instant::now(), counts.clone()));
                    Some(counts)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "counting KV keys for /metrics");
                    None
                }
            }
        });
        if cached.is_some() {
            return cached;
        }
        let wait = Duration::from_millis(KV_KEY_COUNT_FIRST_WAIT_MS);
        match tokio::time::timeout(wait, count).await {
            Ok(Ok(counts)) => counts,
            _ => None,
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(services): State<Services>, headers: HeaderMap) -> Response {
    if !services.metrics.public {
        if let Err(e) = services.auth.check_call(http_objects::token(&headers)) {
            return e.into_response();
        }
    }
    match render(&services).await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The whole exposition: event families, then the scrape's own, then `# EOF`.
async fn render(services: &Services) -> Result<String, ApiError> {
    let node = &services.node;
    let gathered = Gathered {
        report: node.report().await,
        raft: node.metrics(),
        lag: node.replication_lag(),
        log_bytes: node.log_bytes_on_disk().ok(),
        queues: queue_depths(node).await,
        kv_keys: services.metrics.kv_key_counts(node).await,
    };
    let mut registry = Registry::default();
    gathered.register_raft(node, &mut registry);
    gathered.register_storage(node, &mut registry);
    let mut text = String::new();
    let encoded = crate::metrics::global()
        .encode(&mut text)
        .and_then(|()| prometheus_client::encoding::text::encode_registry(&mut text, &registry))
        .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut text));
    encoded.map_err(|e| ApiError::Internal(format!("encoding /metrics: {e}")))?;
    Ok(text)
}

/// Every queue and its length (0 queues when the read fails: logged).
async fn queue_depths(node: &Node) -> Option<Vec<(String, u64)>> {
    let tree = node.store.tree().clone();
    let listed = tokio::task::spawn_blocking(move || queue::list_queues(&tree)).await;
    match listed {
        Ok(Ok(queues)) => Some(queues.into_iter().map(|q| (q.name, q.length)).collect()),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "listing queues for /metrics");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing queues for /metrics");
            None
        }
    }
}

/// What one scrape read from the node.
struct Gathered {
    report: NodeReport,
    raft: crate::raft::types::RaftMetrics,
    lag: Vec<ReplicationLag>,
    log_bytes: Option<u64>,
    queues: Option<Vec<(String, u64)>>,
    kv_keys: Option<Vec<(String, u64)>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

fn gauge(value: u64) -> ConstGauge<u64> {
    ConstGauge::new(value)
}

impl Gathered {
    fn register_raft(&self, node: &Node, registry: &mut Registry) {
        let raft = &self.raft;
        let roles = Family::<RoleLabels, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
        for role in ROLES {
            let current = u64::from(role == self.report.role);
            roles.get_or_create(&RoleLabels { role }).set(current);
        }
        registry.register(
            "cairn_raft_role",
            "1 for this node's current role, 0 for the others",
            roles,
        );
        let index = |id: Option<crate::raft::types::LogId>| gauge(id.map_or(0, |id| id.index));
        let single = [
            (
                "cairn_raft_term",
                "The current term",
                gauge(raft.current_term),
            ),
            (
                "cairn_raft_leader_id",
                "Id of the leader this node knows (0: none)",
                gauge(raft.current_leader.unwrap_or(0)),
            ),
            (
                "cairn_raft_last_log_index",
                "Index of the last entry in this node's log",
                gauge(raft.last_log_index.unwrap_or(0)),
            ),
            (
                "cairn_raft_applied_index",
                "Index of the last entry this node applied",
                index(raft.last_applied),
            ),
            (
                "cairn_raft_snapshot_index",
                "Last index the newest snapshot covers",
                index(raft.snapshot),
            ),
            (
                "cairn_raft_purged_index",
                "Last index purged from the log (entries up to it are only in the snapshot)",
                index(raft.purged),
            ),
        ];
        for (name, help, value) in single {
            registry.register(name, help, value);
        }
        let members = node.members();
        let voters = members.iter().filter(|m| m.voter).count() as u64;
        registry.register(
            "cairn_raft_voters",
            "Voters in the membership",
            gauge(voters),
        );
        registry.register(
            "cairn_raft_learners",
            "Learners in the membership",
            gauge(members.len() as u64 - voters),
        );
        if let Some(bytes) = self.log_bytes {
            registry.register_with_unit(
                "cairn_raft_log",
                "Bytes of the Raft log's segment files on disk",
                Unit::Bytes,
                gauge(bytes),
            );
        }
        if let Some(ms) = raft.millis_since_quorum_ack {
            registry.register_with_unit(
                "cairn_raft_quorum_ack_age",
                "Leader only: time since a quorum last acknowledged this leader",
                Unit::Seconds,
                ConstGauge::new(ms as f64 / 1_000.0),
            );
        }
        self.register_lag(registry);
    }

    fn register_lag(&self, registry: &mut Registry) {
        type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
        let entries = Family::<PeerLabels, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
        let age = Family::<PeerLabels, FloatGauge>::default();
        for lag in &self.lag {
            let labels = PeerLabels {
                peer: lag.peer.to_string(),
            };
            entries.get_or_create(&labels).set(lag.entries);
            age.get_or_create(&labels).set(lag.age.as_secs_f64());
        }
        registry.register(
            "cairn_raft_replication_lag_entries",
            "Leader only: the leader's last log index minus the index known replicated to the peer",
            entries,
        );
        registry.register_with_unit(
            "cairn_raft_replication_lag",
            "Leader only: age of the oldest entry the peer lacks (0 when it lacks none); high by less than 0.1 s",
            Unit::Seconds,
            age,
        );
    }

    fn register_storage(&self, node: &Node, registry: &mut Registry) {
        let report = &self.report;
        registry.register(
            "cairn_chunks",
            "Chunk files in this node's chunk store (counted at most every 5 s)",
            gauge(report.chunks),
        );
        registry.register_with_unit(
            "cairn_chunk",
            "Bytes of the chunk files in this node's chunk store (counted at most every 5 s)",
            Unit::Bytes,
            gauge(report.chunk_bytes),
        );
        registry.register(
            "cairn_chunks_missing",
            "Chunk files the state names that this node still has to fetch from peers",
            gauge(report.chunks_missing),
        );
        let scrub = &node.scrub;
        let counters = [
            (
                "cairn_scrub_chunks_checked",
                "Chunk files the scrubber read and checked",
                scrub.checked(),
            ),
            (
                "cairn_scrub_chunks_damaged",
                "Chunk files the scrubber found damaged",
                scrub.damaged(),
            ),
            (
                "cairn_scrub_chunks_repaired",
                "Damaged chunk files the scrubber fetched again from a peer",
                scrub.repaired(),
            ),
            (
                "cairn_scrub_passes",
                "Finished scrub passes over the chunk store",
                scrub.passes(),
            ),
        ];
        for (name, help, value) in counters {
            registry.register(name, help, ConstCounter::new(value));
        }
        if let Some(queues) = &self.queues {
            registry.register(
                "cairn_queues",
                "Queues in the cluster",
                gauge(queues.len() as u64),
            );
            let depths = Family::<QueueLabels, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
            for (queue, messages) in bounded(queues.clone()) {
                depths.get_or_create(&QueueLabels { queue }).set(messages);
            }
            registry.register(
                "cairn_queue_messages",
                "Messages a queue holds (the largest 1,000 queues; the rest summed as queue=\"(other)\")",
                depths,
            );
        }
        if let Some(namespaces) = &self.kv_keys {
            registry.register(
                "cairn_kv_namespaces",
                "KV namespaces in the cluster (as of the last key count)",
                gauge(namespaces.len() as u64),
            );
            let keys =
                Family::<NamespaceLabels, Gauge<u64, std::sync::atomic::AtomicU64>>::default();
            for (namespace, count) in bounded(namespaces.clone()) {
                keys.get_or_create(&NamespaceLabels { namespace })
                    .set(count);
            }
            registry.register(
                "cairn_kv_keys",
                "Keys a namespace stores, expired ones not yet swept included (counted at most every 60 s; the largest 1,000 namespaces, the rest summed as namespace=\"(other)\")",
                keys,
            );
        }
    }
}

/// The `SERIES_PER_FAMILY_MAX` largest values by name (ties by name), and the
/// sum of the rest as `OTHER_LABEL` when there is a rest.
fn bounded(mut items: Vec<(String, u64)>) -> Vec<(String, u64)> {
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if items.len() <= SERIES_PER_FAMILY_MAX {
        return items;
    }
    let rest: u64 = items[SERIES_PER_FAMILY_MAX..].iter().map(|(_, v)| *v).sum();
    items.truncate(SERIES_PER_FAMILY_MAX);
    items.push((OTHER_LABEL.to_string(), rest));
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_bound_of_series_and_the_rest_summed() {
        let items: Vec<(String, u64)> = (0..SERIES_PER_FAMILY_MAX as u64 + 5)
            .map(|i| (format!("q{i:05}"), i))
            .collect();
        let out = bounded(items);
        assert_eq!(out.len(), SERIES_PER_FAMILY_MAX + 1);
        // The largest come first; the five smallest (0..5) are summed.
        assert_eq!(out[0], ("q01004".to_string(), 1_004));
        assert_eq!(
            out.last().unwrap(),
            &(OTHER_LABEL.to_string(), 1 + 2 + 3 + 4)
        );
        let few = bounded(vec![("b".into(), 1), ("a".into(), 1), ("c".into(), 9)]);
        let names: Vec<&str> = few.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn the_other_label_is_never_a_queue_or_namespace_name() {
        let limits = crate::limits::Limits::default();
        assert!(kv::validate_name("queue", OTHER_LABEL, &limits).is_err());
    }
}
