//! `cairn server`: start a node from flags and/or a TOML config file, serve until
//! SIGTERM/SIGINT, then shut down gracefully.

use std::time::Duration;

use anyhow::Context;

pub use super::server_config::ServerArgs;
use super::server_config::{build_config, print_config};
use crate::api::tls::ListenerTls;
use crate::api::{ListenerSecurity, Listeners};
use crate::config::Config;
use crate::limits::SHUTDOWN_GRACE_MS_MAX;
use crate::peer_tls::{self, PeerTls};
use crate::raft::types::NodeAddr;
use crate::raft::Node;
use crate::rsync_daemon::{RsyncDaemon, RsyncSettings};

/// The cluster secret: the configured file, else `<data_dir>/cluster.secret`,
/// which a `--dev` node creates on its first start.
fn cluster_secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    let path = peer_tls::secret_path(config.cluster_secret_file.as_deref(), &config.data_dir);
    if config.dev && config.cluster_secret_file.is_none() && !path.exists() {
        crate::durable::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
        peer_tls::create_secret(&path).with_context(|| format!("creating {}", path.display()))?;
    }
    peer_tls::read_secret(&path).with_context(|| {
        format!(
            "reading the cluster secret {} (every node of a cluster needs the same one: \
             create it once with `cairn admin init-secret FILE`, copy it to each node and \
             give --cluster-secret-file)",
            path.display()
        )
    })
}

/// Raises this process's open-file limit to its hard limit: connections, chunk
/// files and the WAL all need descriptors, and the soft default (1,024) is below
/// what the listeners admit (`limits::*_CONNECTIONS_MAX`).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-file limit");
            }
        }
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    if args.print_config {
        print!("{}", print_config(&config)?);
        return Ok(());
    }
    // Only now is the log format known (flag, environment or config file).
    super::logging::init(config.log_format);
    crate::crash_point::setup_from_env();
    raise_open_file_limit();
    let peer_addr = config.peer_addr().map_err(anyhow::Error::msg)?;
    let secret = cluster_secret(&config)?;
    let peer = PeerTls::from_secret(&secret, &format!("cairn node {}", config.id))
        .context("issuing this node's peer certificate")?;
    let node_token = peer_tls::node_token(&secret);
    drop(secret);
    let client_tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(ListenerTls::load(cert, key)?),
        _ => None,
    };
    let bind = |addr: String, what: &'static str| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {what} address {addr}"))
    };
    let peer_listen_addr = config.peer_listen_addr().map_err(anyhow::Error::msg)?;
    let listeners = Listeners {
        grpc: bind(config.grpc_listen_addr(), "gRPC").await?,
        http: bind(config.http_listen_addr(), "HTTP").await?,
        peer: bind(peer_listen_addr.clone(), "peer").await?,
    };
    let addr = NodeAddr {
        grpc_addr: config.grpc_addr.clone(),
        http_addr: config.http_addr.clone(),
        peer_addr: peer_addr.clone(),
    };
    let node = Node::start(&config, addr, peer.client_config()).await?;
    let scheme = if client_tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "cairn node {} listening: gRPC {}{} · HTTP {scheme}://{}/ (dashboard) · peers {peer_addr} (mutual TLS) · data in {}{}{}",
        config.id,
        config.grpc_addr,
        if client_tls.is_some() { " (TLS)" } else { "" },
        config.http_addr,
        config.data_dir.display(),
        if config.dev {
            " · dev mode (single node)"
        } else {
            ""
        },
        bound_elsewhere(&config, &peer_listen_addr),
    );
    let (signalled_tx, signalled) = tokio::sync::watch::channel(false);
    let stop_on_fatal = signalled_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(true); // receivers live until the node stops
    });
    // A node whose Raft core stopped on a storage error (a full or failing disk)
    // can no longer take part; exiting lets a supervisor restart it on its data.
    let (fatal_tx, mut fatal) = tokio::sync::watch::channel(None::<String>);
    tokio::spawn(raft_fatal(node.clone(), fatal_tx, stop_on_fatal));
    let services = crate::api::Services::new(node.clone(), &config, Some(&node_token));
    let (rsync_stop_tx, rsync_stop) = tokio::sync::watch::channel(false);
    let rsync = match &config.rsync_addr {
        Some(addr) => Some(start_rsync(
            &config,
            addr,
            &node_token,
            &services,
            rsync_stop,
        )?),
        None => None,
    };
    let endpoint = rsync.as_ref().map(|(endpoint, _)| endpoint.clone());
    let rest = crate::api::rest::Rest::new(&services, &config.workspace_id, endpoint);
    let mut serve_stop = signalled.clone();
    let security = ListenerSecurity {
        peer: peer.server_config(),
        client: client_tls,
    };
    let daemon = rsync.map(|(_, daemon)| daemon);
    let served = crate::api::serve(services, rest, listeners, security, async move {
        let _ = serve_stop.changed().await;
        // The rsync daemon's mount sends its last writes through the listeners:
        // stop it (bounded) before they close.
        if let Some(daemon) = daemon {
            let _ = rsync_stop_tx.send(true); // the supervisor holds the receiver
            let wait = Duration::from_millis(RSYNC_STOP_WAIT_MS_MAX);
            if tokio::time::timeout(wait, daemon.stopped()).await.is_err() {
                tracing::warn!("the rsync daemon did not stop in time");
            }
        }
    });
    // After the signal, in-flight requests get a bounded grace period.
    let mut grace_start = signalled;
    let grace = async move {
        let _ = grace_start.changed().await;
        tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS_MAX)).await;
    };
    let result = tokio::select! {
        result = served => result,
        _ = grace => {
            tracing::warn!("grace period over; stopping with requests in flight");
            Ok(())
        }
    };
    tracing::info!("shutting down");
    node.shutdown().await;
    if let Some(reason) = fatal.borrow_and_update().clone() {
        anyhow::bail!("raft stopped: {reason}");
    }
    result
}

/// The start line's note of listen addresses that differ from the advertised
/// ones (empty when none does).
fn bound_elsewhere(config: &Config, peer_listen_addr: &str) -> String {
    let peer_addr = config.peer_addr().unwrap_or_default();
    let pairs = [
        ("gRPC", config.grpc_listen_addr(), config.grpc_addr.as_str()),
        ("HTTP", config.http_listen_addr(), config.http_addr.as_str()),
        ("peers", peer_listen_addr.to_string(), peer_addr.as_str()),
    ];
    let bound: Vec<String> = pairs
        .iter()
        .filter(|(_, listen, advertised)| listen != advertised)
        .map(|(what, listen, _)| format!("{what} on {listen}"))
        .collect();
    if bound.is_empty() {
        String::new()
    } else {
        format!(" · bound: {}", bound.join(", "))
    }
}

/// How long shutdown waits for the rsync daemon and its mount to stop (inside
/// the shutdown grace period, `SHUTDOWN_GRACE_MS_MAX`).
const RSYNC_STOP_WAIT_MS_MAX: u64 = 4_000;
/// How often revoked tokens are dropped from the rsync daemon's password holders.
const RSYNC_RETAIN_INTERVAL_MS: u64 = 5_000;

/// Starts the rsync daemon over a mount of `default` (see `rsync_daemon`) and
/// the REST endpoint that hands out its address and password.
fn start_rsync(
    config: &Config,
    listen_addr: &str,
    node_token: &str,
    services: &crate::api::Services,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(
    std::sync::Arc<crate::api::rest::rsync::RsyncEndpoint>,
    std::sync::Arc<RsyncDaemon>,
)> {
    // The mount dials this node where it listens (the advertised address may
    // be reachable only from elsewhere); a wildcard is dialled on loopback.
    let grpc_listen = config.grpc_listen_addr();
    let grpc_addr = match grpc_listen.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]", port)) => format!("127.0.0.1:{port}"),
        _ => grpc_listen.clone(),
    };
    let settings = RsyncSettings {
        listen_addr: listen_addr.to_string(),
        run_dir: config.data_dir.join("rsync"),
        grpc_addr,
        // A self-signed client certificate is its own CA; otherwise give the
        // mount the chain's root through the certificate file as well.
        ca: config.tls_cert.clone(),
        mount_token: node_token.to_string(),
        workspace_id: config.workspace_id.clone(),
        cairn_exe: None,
    };
    let daemon = std::sync::Arc::new(
        RsyncDaemon::start(settings, stop.clone()).context("starting the rsync daemon")?,
    );
    let allow_daemon = daemon.clone();
    let endpoint = crate::api::rest::rsync::RsyncEndpoint {
        listen_addr: listen_addr.to_string(),
        allow: Box::new(move |hash| allow_daemon.allow(hash)),
    };
    // Revoked tokens lose the password (the daemon rotates it).
    let retain_daemon = daemon.clone();
    let auth = services.auth.clone();
    let mut stop = stop;
    tokio::spawn(async move {
        let every = Duration::from_millis(RSYNC_RETAIN_INTERVAL_MS);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            let kept = retain_daemon.retain(|hash| auth.valid_hash(hash).unwrap_or(true));
            if let Err(e) = kept {
                tracing::warn!(error = %e, "updating the rsync secrets");
            }
        }
    });
    Ok((std::sync::Arc::new(endpoint), daemon))
}

/// Waits until Raft reports a fatal error, records it and starts the shutdown.
/// Runs until then or until the node stops.
async fn raft_fatal(
    node: std::sync::Arc<Node>,
    fatal: tokio::sync::watch::Sender<Option<String>>,
    stop: tokio::sync::watch::Sender<bool>,
) {
    let mut metrics = node.raft.metrics();
    loop {
        let state = metrics.borrow_and_update().running_state.clone();
        match state {
            Ok(()) => {}
            // Our own shutdown.
            Err(openraft::error::Fatal::Stopped) => return,
            // A storage error or a panic in the core: this node can no longer do
            // its part.
            Err(error) => {
                tracing::error!(%error, "raft stopped; shutting the node down");
                let _ = fatal.send(Some(error.to_string())); // the server loop holds the receiver
                let _ = stop.send(true); // likewise
                return;
            }
        }
        if metrics.changed().await.is_err() {
            return; // raft is gone: the node is shutting down
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
