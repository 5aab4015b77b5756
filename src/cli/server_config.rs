//! `cairn server`'s settings: the flags (each also an env var `CAIRN_<FLAG>`),
//! merged over the TOML file (`--config`) over the defaults, and
//! `--print-config`, which shows the result with secrets redacted. Precedence:
//! flag, then env var (clap reads it as the flag), then file, then default.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{parse_peers, Config, LogFormat};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file with the same settings; flags override it.
    #[arg(long, env = "CAIRN_CONFIG")]
    config: Option<PathBuf>,
    /// Single-node cluster that initializes itself (for trying cairn out).
    #[arg(long, env = "CAIRN_DEV")]
    dev: bool,
    #[arg(long, env = "CAIRN_ID")]
    id: Option<u64>,
    #[arg(long, env = "CAIRN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Root of this node's `local` file system (default <data-dir>/local).
    #[arg(long, env = "CAIRN_LOCAL_DIR")]
    local_dir: Option<PathBuf>,
    #[arg(long, env = "CAIRN_GRPC_ADDR")]
    grpc_addr: Option<String>,
    #[arg(long, env = "CAIRN_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Address for peer RPCs (mutual TLS, nodes only; default: gRPC port + 1).
    #[arg(long, env = "CAIRN_PEER_ADDR")]
    peer_addr: Option<String>,
    /// Where to bind the gRPC listener, if not at --grpc-addr (which stays the
    /// address clients are sent to), e.g. 0.0.0.0:7400 in a container.
    #[arg(long, env = "CAIRN_GRPC_LISTEN_ADDR")]
    grpc_listen_addr: Option<String>,
    /// Where to bind the HTTP listener, if not at --http-addr.
    #[arg(long, env = "CAIRN_HTTP_LISTEN_ADDR")]
    http_listen_addr: Option<String>,
    /// Where to bind the peer listener, if not at --peer-addr (which peers dial).
    #[arg(long, env = "CAIRN_PEER_LISTEN_ADDR")]
    peer_listen_addr: Option<String>,
    /// The cluster secret shared by every node (mode 0600, >= 32 bytes; default
    /// <data-dir>/cluster.secret, which --dev creates).
    #[arg(long, env = "CAIRN_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// TLS for the client gRPC and HTTP listeners: PEM certificate chain.
    #[arg(long, requires = "tls_key", env = "CAIRN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", env = "CAIRN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Free space to keep on the data disk; below it (on any member) the cluster
    /// refuses new data until there is room again (default 256 MiB).
    #[arg(long, env = "CAIRN_DISK_RESERVE_BYTES")]
    disk_reserve_bytes: Option<u64>,
    /// The chunk scrubber's read rate in bytes per second (0: off).
    #[arg(long, env = "CAIRN_SCRUB_BYTES_PER_S")]
    scrub_bytes_per_s: Option<u64>,
    /// Pause before each scrub pass over the chunk store.
    #[arg(long, env = "CAIRN_SCRUB_PASS_INTERVAL_MS")]
    scrub_pass_interval_ms: Option<u64>,
    /// Peer address of every initial member: `1=HOST:PORT,2=HOST:PORT,...`.
    #[arg(long, env = "CAIRN_PEERS")]
    peers: Option<String>,
    #[arg(long, env = "CAIRN_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MS_MIN")]
    election_timeout_ms_min: Option<u64>,
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT_MS_MAX")]
    election_timeout_ms_max: Option<u64>,
    /// Entries since the last snapshot that trigger a new one.
    #[arg(long, env = "CAIRN_SNAPSHOT_LOG_ENTRIES")]
    snapshot_log_entries: Option<u64>,
    /// Entries kept behind a snapshot.
    #[arg(long, env = "CAIRN_SNAPSHOT_LOG_ENTRIES_KEPT")]
    snapshot_log_entries_kept: Option<u64>,
    /// How long a chunk no object references is kept before GC deletes it.
    #[arg(long, env = "CAIRN_CHUNK_GC_GRACE_MS")]
    chunk_gc_grace_ms: Option<u64>,
    /// Longest lifetime a presigned URL may ask for.
    #[arg(long, env = "CAIRN_PRESIGN_EXPIRES_S_MAX")]
    presign_expires_s_max: Option<u64>,
    /// Base of the object URLs this node hands out (default http://<http-addr>).
    #[arg(long, env = "CAIRN_PUBLIC_URL")]
    public_url: Option<String>,
    /// Workspace id of the REST protocol (`lep login -c ID:TOKEN`; default cairn).
    #[arg(long, env = "CAIRN_WORKSPACE_ID")]
    workspace_id: Option<String>,
    /// Run an rsync daemon on HOST:PORT for `lep storage upload --rsync` (over a
    /// FUSE mount of the `default` file system; needs root and rsync).
    #[arg(long, env = "CAIRN_RSYNC_ADDR")]
    rsync_addr: Option<String>,
    /// Form of the log lines on stderr: text, or json (one object a line).
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Serve /metrics without a token even once the cluster has tokens.
    #[arg(long, env = "CAIRN_METRICS_PUBLIC")]
    metrics_public: bool,
    /// Test double for the chaos suite: serve linearizable reads from local state
    /// without a read index (unsafe; proves the checker catches stale reads).
    #[arg(long, hide = true, env = "CAIRN_UNSAFE_LOCAL_LINEARIZABLE_READS")]
    unsafe_local_linearizable_reads: bool,
    /// Answer linearizable reads on the leader from a leader lease while it
    /// holds, instead of a quorum round per batch (see docs/consistency.md).
    #[arg(long, env = "CAIRN_READ_LEASE")]
    read_lease: bool,
    /// Test double for the chaos suite: the read lease never expires (unsafe;
    /// proves the checker catches a broken lease).
    #[arg(long, hide = true, env = "CAIRN_UNSAFE_READ_LEASE_NEVER_EXPIRES")]
    unsafe_read_lease_never_expires: bool,
    /// Test double for the chaos suite: acknowledge log appends without fsync
    /// (unsafe; proves the `power` fault catches lost acknowledged writes).
    #[arg(long, hide = true, env = "CAIRN_UNSAFE_ACK_BEFORE_FSYNC")]
    unsafe_ack_before_fsync: bool,
    /// API tokens accepted besides those made with `cairn token create`,
    /// comma-separated (prefer the env var or the config file: flags show in `ps`).
    #[arg(
        long,
        env = "CAIRN_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    tokens: Option<Vec<String>>,
    /// `[limits]`: longest KV key in bytes.
    #[arg(long, env = "CAIRN_KV_KEY_BYTES_MAX")]
    kv_key_bytes_max: Option<u64>,
    /// `[limits]`: longest KV value in bytes.
    #[arg(long, env = "CAIRN_KV_VALUE_BYTES_MAX")]
    kv_value_bytes_max: Option<u64>,
    /// `[limits]`: longest namespace, queue, bucket or file system name.
    #[arg(long, env = "CAIRN_NAME_CHARS_MAX")]
    name_chars_max: Option<u64>,
    /// `[limits]`: most KV namespaces.
    #[arg(long, env = "CAIRN_NAMESPACES_MAX")]
    namespaces_max: Option<u64>,
    /// `[limits]`: longest queue message in bytes.
    #[arg(long, env = "CAIRN_QUEUE_MESSAGE_BYTES_MAX")]
    queue_message_bytes_max: Option<u64>,
    /// `[limits]`: most queues.
    #[arg(long, env = "CAIRN_QUEUES_MAX")]
    queues_max: Option<u64>,
    /// Print the effective configuration (file, env and flags merged; tokens
    /// redacted) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

pub fn build_config(args: &ServerArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Config::default(),
    };
    config.dev |= args.dev;
    config.metrics_public |= args.metrics_public;
    if let Some(v) = args.log_format {
        config.log_format = v;
    }
    config.unsafe_local_linearizable_reads |= args.unsafe_local_linearizable_reads;
    config.unsafe_ack_before_fsync |= args.unsafe_ack_before_fsync;
    config.read_lease |= args.read_lease;
    config.unsafe_read_lease_never_expires |= args.unsafe_read_lease_never_expires;
    if let Some(v) = args.id {
        config.id = v;
    }
    if let Some(v) = &args.data_dir {
        config.data_dir = v.clone();
    }
    if let Some(v) = &args.local_dir {
        config.local_dir = Some(v.clone());
    }
    if let Some(v) = &args.grpc_addr {
        config.grpc_addr = v.clone();
    }
    if let Some(v) = &args.http_addr {
        config.http_addr = v.clone();
    }
    if let Some(v) = &args.peer_addr {
        config.peer_addr = Some(v.clone());
    }
    if let Some(v) = &args.cluster_secret_file {
        config.cluster_secret_file = Some(v.clone());
    }
    if let Some(v) = &args.tls_cert {
        config.tls_cert = Some(v.clone());
    }
    if let Some(v) = &args.tls_key {
        config.tls_key = Some(v.clone());
    }
    if let Some(v) = args.disk_reserve_bytes {
        config.disk_reserve_bytes = v;
    }
    if let Some(v) = &args.public_url {
        config.public_url = Some(v.clone());
    }
    if let Some(v) = &args.workspace_id {
        config.workspace_id = v.clone();
    }
    if let Some(v) = &args.rsync_addr {
        config.rsync_addr = Some(v.clone());
    }
    for (flag, field) in [
        (&args.grpc_listen_addr, &mut config.grpc_listen_addr),
        (&args.http_listen_addr, &mut config.http_listen_addr),
        (&args.peer_listen_addr, &mut config.peer_listen_addr),
    ] {
        if let Some(v) = flag {
            *field = Some(v.clone());
        }
    }
    if let Some(v) = &args.tokens {
        config.tokens = v.clone();
    }
    if let Some(v) = &args.peers {
        config.peers = parse_peers(v).map_err(anyhow::Error::msg)?;
    }
    let overrides = [
        (
            args.heartbeat_interval_ms,
            &mut config.heartbeat_interval_ms,
        ),
        (
            args.election_timeout_ms_min,
            &mut config.election_timeout_ms_min,
        ),
        (
            args.election_timeout_ms_max,
            &mut config.election_timeout_ms_max,
        ),
        (args.snapshot_log_entries, &mut config.snapshot_log_entries),
        (
            args.snapshot_log_entries_kept,
            &mut config.snapshot_log_entries_kept,
        ),
        (args.chunk_gc_grace_ms, &mut config.chunk_gc_grace_ms),
        (
            args.presign_expires_s_max,
            &mut config.presign_expires_s_max,
        ),
        (args.scrub_bytes_per_s, &mut config.scrub_bytes_per_s),
        (
            args.scrub_pass_interval_ms,
            &mut config.scrub_pass_interval_ms,
        ),
    ];
    for (flag, field) in overrides {
        if let Some(v) = flag {
            *field = v;
        }
    }
    let limits = &mut config.limits;
    let limit_overrides = [
        (args.kv_key_bytes_max, &mut limits.kv_key_bytes_max),
        (args.kv_value_bytes_max, &mut limits.kv_value_bytes_max),
        (args.name_chars_max, &mut limits.name_chars_max),
        (args.namespaces_max, &mut limits.namespaces_max),
        (
            args.queue_message_bytes_max,
            &mut limits.queue_message_bytes_max,
        ),
        (args.queues_max, &mut limits.queues_max),
    ];
    for (flag, field) in limit_overrides {
        if let Some(v) = flag {
            *field = v;
        }
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// What `--print-config` shows in place of each token.
const REDACTED: &str = "<redacted>";

/// The effective configuration as TOML (derived defaults filled in), tokens redacted (a file path, such as
/// the cluster secret's or the TLS key's, is shown: it is not the secret).
pub fn print_config(config: &Config) -> anyhow::Result<String> {
    let mut shown = config.clone();
    // Defaults that depend on other fields, spelled out.
    shown.peer_addr = Some(config.peer_addr().map_err(anyhow::Error::msg)?);
    shown.local_dir = Some(config.local_dir());
    shown.cluster_secret_file = Some(crate::peer_tls::secret_path(
        config.cluster_secret_file.as_deref(),
        &config.data_dir,
    ));
    for token in &mut shown.tokens {
        *token = REDACTED.to_string();
    }
    toml::to_string(&shown).context("writing the configuration as TOML")
}
