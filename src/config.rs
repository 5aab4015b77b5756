//! A node's configuration: one struct from a TOML file, overridden by CLI flags.
//!
//! Every field has a unit in its name where it has one, a named default, and
//! `validate` refuses contradictions at start with a message naming the fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::limits::{
    Limits, CHUNK_GC_GRACE_MS_DEFAULT, DISK_RESERVE_BYTES_DEFAULT, LOG_ENTRIES_SNAPSHOT_TRIGGER,
    PRESIGN_EXPIRES_S_MAX_DEFAULT, SCRUB_BYTES_PER_S_DEFAULT, SCRUB_PASS_INTERVAL_MS_DEFAULT,
};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id; unique forever within the cluster (never reuse a removed id).
    pub id: u64,
    pub data_dir: PathBuf,
    /// Root of this node's `local` file system (scratch, not replicated); default
    /// `<data_dir>/local`.
    pub local_dir: Option<PathBuf>,
    /// Address for clients and peers (gRPC).
    pub grpc_addr: String,
    /// Address for HTTP (dashboard, health, status).
    pub http_addr: String,
    /// Address for peer RPCs (Raft, read index, chunk fetch), mutual TLS between
    /// nodes only; default: the gRPC address with its port + 1.
    pub peer_addr: Option<String>,
    /// Where the node binds its listeners, when that differs from the address
    /// others dial (a container: bind `0.0.0.0:7400`, be dialled at a published
    /// port or a service name). Each defaults to its address above
    /// (`grpc_addr`, `http_addr`, `peer_addr`), which stays what the membership
    /// stores, clients are sent to and peers dial.
    pub grpc_listen_addr: Option<String>,
    pub http_listen_addr: Option<String>,
    pub peer_listen_addr: Option<String>,
    /// The cluster secret every node of the cluster shares (mode 0600, at least
    /// 32 bytes); default `<data_dir>/cluster.secret`, which `--dev` creates.
    pub cluster_secret_file: Option<PathBuf>,
    /// TLS on the client gRPC and HTTP listeners: a PEM certificate chain and its
    /// PEM private key (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Peer address of every initial member, by id. All initial members are started
    /// with the same map; the lowest id initializes the cluster once every peer
    /// answers (over mutual TLS) and none is initialized yet.
    #[serde(serialize_with = "peers_as_table")]
    pub peers: BTreeMap<u64, String>,
    /// Single-node cluster that initializes itself.
    pub dev: bool,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    /// Entries since the last snapshot that trigger a new one.
    pub snapshot_log_entries: u64,
    /// Entries kept in the log behind a snapshot (lagging followers replay them
    /// instead of fetching a snapshot).
    pub snapshot_log_entries_kept: u64,
    /// TEST DOUBLE, NEVER IN PRODUCTION: linearizable reads skip the read index and
    /// answer from local state, so a follower or a deposed leader serves stale data.
    /// Exists so the chaos suite can prove its checker catches that bug.
    pub unsafe_local_linearizable_reads: bool,
    /// TEST DOUBLE, NEVER IN PRODUCTION: the Raft log acknowledges appends without
    /// fsyncing them, so a power cut loses acknowledged writes. Exists so the chaos
    /// suite can prove its `power` fault catches that bug.
    pub unsafe_ack_before_fsync: bool,
    /// Linearizable reads on the leader answer from a leader lease instead of a
    /// quorum round while the lease holds (docs/consistency.md, "Leader lease");
    /// a node then refuses votes for `election_timeout_ms_max` after it starts.
    pub read_lease: bool,
    /// TEST DOUBLE, NEVER IN PRODUCTION: the read lease never expires, so a deposed
    /// leader cut off from the others keeps serving old values. Exists so the chaos
    /// suite can prove its checker catches a broken lease. Implies `read_lease`.
    pub unsafe_read_lease_never_expires: bool,
    /// How long a chunk no object references is kept before GC deletes it. An
    /// upload must finish within it.
    pub chunk_gc_grace_ms: u64,
    /// Base of the presigned and public object URLs this node hands out
    /// (default `http://<http_addr>`); set it when clients reach the node through
    /// another name.
    pub public_url: Option<String>,
    /// Longest lifetime a presigned URL may ask for.
    pub presign_expires_s_max: u64,
    /// Free space to keep on the data disk: while any member has less, the
    /// cluster refuses writes that add data (deletes still work).
    pub disk_reserve_bytes: u64,
    /// The chunk scrubber's read rate; 0 turns it off.
    pub scrub_bytes_per_s: u64,
    /// Pause before each scrub pass over the chunk store.
    pub scrub_pass_interval_ms: u64,
    /// API tokens accepted besides those created with `cairn token create`. While
    /// there are none of either, the cluster is open (no token needed).
    pub tokens: Vec<String>,
    /// The workspace id of the REST protocol: clients log in with
    /// `lep login -c <workspace_id>:<token>`; also the rsync daemon's user.
    pub workspace_id: String,
    /// Where this node's rsync daemon (for `lep storage upload --rsync`) listens;
    /// none: no daemon. Needs root, /dev/fuse and Debian's `rsync`.
    pub rsync_addr: Option<String>,
    /// `/metrics` without a token even once the cluster has tokens (for
    /// scrapers on a trusted network). While there are no tokens it is open
    /// anyway, like every other route.
    pub metrics_public: bool,
    /// How the node writes its log lines to stderr.
    pub log_format: LogFormat,
    pub limits: Limits,
}

/// TOML keys are strings: `1 = "host:port"` reads back as id 1.
fn peers_as_table<S: serde::Serializer>(
    peers: &BTreeMap<u64, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(peers.iter().map(|(id, addr)| (id.to_string(), addr)))
}

/// The form of log lines: `text` for people, `json` (one object a line) for
/// log collectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The workspace id when none is configured.
pub const DEFAULT_WORKSPACE_ID: &str = "cairn";

impl Config {
    /// Where peers reach this node.
    pub fn peer_addr(&self) -> Result<String, String> {
        match &self.peer_addr {
            Some(addr) => Ok(addr.clone()),
            None => default_peer_addr(&self.grpc_addr),
        }
    }

    /// Where the gRPC listener binds.
    pub fn grpc_listen_addr(&self) -> String {
        self.grpc_listen_addr
            .clone()
            .unwrap_or_else(|| self.grpc_addr.clone())
    }

    /// Where the HTTP listener binds.
    pub fn http_listen_addr(&self) -> String {
        self.http_listen_addr
            .clone()
            .unwrap_or_else(|| self.http_addr.clone())
    }

    /// Where the peer listener binds.
    pub fn peer_listen_addr(&self) -> Result<String, String> {
        match &self.peer_listen_addr {
            Some(addr) => Ok(addr.clone()),
            None => self.peer_addr(),
        }
    }

    /// Where the `local` file system lives.
    pub fn local_dir(&self) -> PathBuf {
        self.local_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("local"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            data_dir: PathBuf::from("cairn-data"),
            local_dir: None,
            grpc_addr: "127.0.0.1:7400".into(),
            http_addr: "127.0.0.1:7480".into(),
            peer_addr: None,
            grpc_listen_addr: None,
            http_listen_addr: None,
            peer_listen_addr: None,
            cluster_secret_file: None,
            tls_cert: None,
            tls_key: None,
            peers: BTreeMap::new(),
            dev: false,
            heartbeat_interval_ms: 150,
            election_timeout_ms_min: 1_000,
            election_timeout_ms_max: 2_000,
            snapshot_log_entries: LOG_ENTRIES_SNAPSHOT_TRIGGER,
            snapshot_log_entries_kept: 1_000,
            unsafe_local_linearizable_reads: false,
            unsafe_ack_before_fsync: false,
            read_lease: false,
            unsafe_read_lease_never_expires: false,
            chunk_gc_grace_ms: CHUNK_GC_GRACE_MS_DEFAULT,
            public_url: None,
            presign_expires_s_max: PRESIGN_EXPIRES_S_MAX_DEFAULT,
            disk_reserve_bytes: DISK_RESERVE_BYTES_DEFAULT,
            scrub_bytes_per_s: SCRUB_BYTES_PER_S_DEFAULT,
            scrub_pass_interval_ms: SCRUB_PASS_INTERVAL_MS_DEFAULT,
            tokens: Vec::new(),
            workspace_id: DEFAULT_WORKSPACE_ID.into(),
            rsync_addr: None,
            metrics_public: false,
            log_format: LogFormat::Text,
            limits: Limits::default(),
        }
    }
}

/// The peer address a node uses unless told otherwise: its gRPC port + 1.
pub fn default_peer_addr(grpc_addr: &str) -> Result<String, String> {
    let (host, port) = grpc_addr
        .rsplit_once(':')
        .ok_or_else(|| format!("grpc_addr {grpc_addr:?} is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("grpc_addr {grpc_addr:?} has no numeric port"))?;
    let peer_port = port
        .checked_add(1)
        .ok_or_else(|| format!("grpc_addr {grpc_addr:?}: port + 1 overflows; set peer_addr"))?;
    Ok(format!("{host}:{peer_port}"))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("peer {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("peer id {id} appears twice"));
        }
    }
    Ok(peers)
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("id must be at least 1".into());
        }
        if self.election_timeout_ms_min <= 2 * self.heartbeat_interval_ms {
            return Err(format!(
                "election_timeout_ms_min ({}) must exceed twice heartbeat_interval_ms ({})",
                self.election_timeout_ms_min, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_ms_max <= self.election_timeout_ms_min {
            return Err(format!(
                "election_timeout_ms_max ({}) must exceed election_timeout_ms_min ({})",
                self.election_timeout_ms_max, self.election_timeout_ms_min
            ));
        }
        if !self.dev && self.peers.is_empty() {
            return Err("peers is empty: give --peers (or use --dev for a single node)".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together: give both or neither".into());
        }
        let id_ok = !self.workspace_id.is_empty()
            && self.workspace_id.len() <= 64
            && self
                .workspace_id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if !id_ok {
            return Err(format!(
                "workspace_id ({:?}) must be 1 to 64 of A-Z a-z 0-9 - _",
                self.workspace_id
            ));
        }
        let peer_addr = self.peer_addr()?;
        if peer_addr == self.grpc_addr || peer_addr == self.http_addr {
            return Err(format!(
                "peer_addr ({peer_addr}) must differ from grpc_addr and http_addr"
            ));
        }
        let peer_listen_addr = self.peer_listen_addr()?;
        let grpc_listen_addr = self.grpc_listen_addr();
        let http_listen_addr = self.http_listen_addr();
        if peer_listen_addr == grpc_listen_addr
            || peer_listen_addr == http_listen_addr
            || grpc_listen_addr == http_listen_addr
        {
            return Err(format!(
                "the listen addresses (gRPC {grpc_listen_addr}, HTTP {http_listen_addr}, \
                 peer {peer_listen_addr}) must all differ"
            ));
        }
        if let Some(addr) = self.peers.get(&self.id) {
            if addr != &peer_addr {
                return Err(format!(
                    "peers lists node {} at {addr}, but its peer_addr is {peer_addr} \
                     (peers lists peer addresses, by default the gRPC port + 1)",
                    self.id
                ));
            }
        }
        self.limits.validate()?;
        if self.presign_expires_s_max == 0 {
            return Err("presign_expires_s_max must be at least 1".into());
        }
        if self.tokens.iter().any(|t| t.len() < 16) {
            return Err("tokens: every token must be at least 16 characters".into());
        }
        if self.snapshot_log_entries == 0 {
            return Err("snapshot_log_entries must be at least 1".into());
        }
        Ok(())
    }

    pub fn raft_config(&self) -> Result<openraft::Config, String> {
        let config = openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_ms_min,
            election_timeout_max: self.election_timeout_ms_max,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: crate::limits::SNAPSHOT_PIECE_BYTES_MAX,
            max_payload_entries: 256,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_log_entries),
            max_in_snapshot_log_to_keep: self.snapshot_log_entries_kept,
            replication_lag_threshold: self.snapshot_log_entries + self.snapshot_log_entries_kept,
            // Purging waits for a whole batch; keep it well below the snapshot
            // interval so small intervals still purge.
            purge_batch_size: (self.snapshot_log_entries / 4).clamp(1, 256),
            ..Default::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_duplicates() {
        let peers = parse_peers("1=127.0.0.1:1, 2=127.0.0.1:2").unwrap();
        assert_eq!(peers.get(&2).map(String::as_str), Some("127.0.0.1:2"));
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        assert!(parse_peers("x=a:1").is_err());
    }

    #[test]
    fn the_peer_port_defaults_to_the_grpc_port_plus_one() {
        assert_eq!(default_peer_addr("10.0.0.1:7400").unwrap(), "10.0.0.1:7401");
        assert_eq!(default_peer_addr("[::1]:7400").unwrap(), "[::1]:7401");
        assert!(default_peer_addr("host:65535").is_err());
        assert!(default_peer_addr("host").is_err());
    }

    #[test]
    fn listen_addresses_default_to_the_advertised_ones_and_must_differ() {
        let mut config = Config {
            dev: true,
            grpc_addr: "127.0.0.1:17400".into(),
            ..Config::default()
        };
        assert_eq!(config.grpc_listen_addr(), "127.0.0.1:17400");
        assert_eq!(config.peer_listen_addr().unwrap(), "127.0.0.1:17401");
        config.grpc_listen_addr = Some("0.0.0.0:7400".into());
        config.peer_listen_addr = Some("0.0.0.0:7401".into());
        config.http_listen_addr = Some("0.0.0.0:7480".into());
        config.validate().unwrap();
        assert_eq!(config.peer_addr().unwrap(), "127.0.0.1:17401");
        config.http_listen_addr = Some("0.0.0.0:7400".into());
        let error = config.validate().unwrap_err();
        assert!(error.contains("listen addresses"), "{error}");
    }

    #[test]
    fn the_log_format_and_public_metrics_come_from_the_file() {
        let config =
            Config::from_toml("dev = true\nlog_format = \"json\"\nmetrics_public = true\n")
                .unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(config.metrics_public);
        assert_eq!(Config::default().log_format, LogFormat::Text);
        assert!(Config::from_toml("log_format = \"xml\"").is_err());
    }

    #[test]
    fn election_timeout_must_exceed_heartbeats() {
        let config = Config {
            dev: true,
            heartbeat_interval_ms: 600,
            ..Config::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.contains("election_timeout_ms_min"), "{error}");
    }
}
