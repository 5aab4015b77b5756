//! The client-facing surface of a node: the transport-neutral services
//! (`service`), and the fronts over them — gRPC (`grpc`), the HTTP routes
//! (`http`, `health`, `http_objects`) and the platform REST protocol (`rest`).
//!
//! Handlers parse requests, call a service and encode the result; `error` is
//! the one place errors become gRPC statuses and HTTP responses.

pub mod admission;
pub mod auth;
pub mod chunk_read;
pub mod chunk_upload;
pub mod dashboard;
pub mod error;
pub mod grpc;
pub mod health;
pub mod http;
pub mod http_objects;
pub mod http_serve;
pub mod metrics;
pub mod request_metrics;
pub mod rest;
pub mod service;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Server, ServerTlsConfig};
use tower::layer::util::{Identity, Stack};
use tower::limit::ConcurrencyLimitLayer;

use request_metrics::GrpcMetricsLayer;

pub use service::Services;

use crate::limits::{
    CLIENT_CONNECTIONS_MAX, CONNECTION_FIRST_BYTE_TIMEOUT_MS, GRPC_CONNECTION_WINDOW_BYTES,
    GRPC_KEEPALIVE_INTERVAL_MS, GRPC_KEEPALIVE_TIMEOUT_MS, GRPC_MESSAGE_BYTES_MAX,
    GRPC_REQUESTS_IN_FLIGHT_MAX, GRPC_STREAMS_PER_CONNECTION_MAX, GRPC_STREAM_WINDOW_BYTES,
    PEER_CONNECTIONS_MAX,
};
use crate::peer_tls;
use crate::proto::raft::raft_peer_server::RaftPeerServer;
use crate::proto::v1::cluster_server::ClusterServer;
use crate::proto::v1::fs_server::FsServer;
use crate::proto::v1::import_server::ImportServer;
use crate::proto::v1::kv_server::KvServer;
use crate::proto::v1::object_server::ObjectServer;
use crate::proto::v1::queue_server::QueueServer;
use crate::proto::v1::tokens_server::TokensServer;
use crate::raft::peer_service::PeerService;

/// Applies the message limits every gRPC service shares (one place, not a copy per
/// service): requests and replies up to `GRPC_MESSAGE_BYTES_MAX`.
macro_rules! bounded {
    ($server:expr) => {
        $server
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
    };
}

/// The transport settings of every gRPC listener: windows, streams per
/// connection, keepalive (a silent peer's connection is closed), and requests in
/// flight across the whole listener (more wait for a slot).
/// Requests are counted and timed (`request_metrics`) outside the concurrency
/// limit, so their latency includes the wait for a slot.
fn grpc_builder() -> Server<Stack<ConcurrencyLimitLayer, Stack<GrpcMetricsLayer, Identity>>> {
    Server::builder()
        .layer(GrpcMetricsLayer)
        .layer(ConcurrencyLimitLayer::new(GRPC_REQUESTS_IN_FLIGHT_MAX))
        .tcp_nodelay(true)
        .initial_stream_window_size(GRPC_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW_BYTES)
        .max_concurrent_streams(GRPC_STREAMS_PER_CONNECTION_MAX)
        .http2_keepalive_interval(Some(Duration::from_millis(GRPC_KEEPALIVE_INTERVAL_MS)))
        .http2_keepalive_timeout(Some(Duration::from_millis(GRPC_KEEPALIVE_TIMEOUT_MS)))
}

/// The node's listeners.
pub struct Listeners {
    pub grpc: tokio::net::TcpListener,
    pub http: tokio::net::TcpListener,
    pub peer: tokio::net::TcpListener,
}

/// TLS of the listeners: always mutual TLS for peers; optional for clients.
pub struct ListenerSecurity {
    pub peer: ServerTlsConfig,
    pub client: Option<tls::ListenerTls>,
}

/// Serves client gRPC, peer gRPC and HTTP until `shutdown` resolves. Every client
/// service passes the token check (`auth::interceptor`); the peer service is only
/// on the peer listener, behind the peer certificate (`peer_tls::require_peer`),
/// and answers `UNAUTHENTICATED` to anyone calling it on the client listener.
pub async fn serve(
    services: Services,
    rest: rest::Rest,
    listeners: Listeners,
    security: ListenerSecurity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = services.node.clone();
    let check = auth::interceptor(services.auth.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let first_byte = Duration::from_millis(CONNECTION_FIRST_BYTE_TIMEOUT_MS);

    let peer_service = || PeerService::new(node.clone());
    let peer = peer_service();
    let peer_grpc = grpc_builder()
        .tls_config(security.peer)?
        .add_service(InterceptedService::new(
            bounded!(RaftPeerServer::new(peer)),
            peer_tls::require_peer,
        ));
    let refused = peer_service();
    let mut client_grpc = grpc_builder();
    if let Some(tls) = &security.client {
        client_grpc = client_grpc.tls_config(tls.grpc())?;
    }
    let client_grpc = client_grpc
        .add_service(InterceptedService::new(
            bounded!(RaftPeerServer::new(refused)),
            peer_tls::refuse_on_client_port,
        ))
        .add_service(InterceptedService::new(
            bounded!(KvServer::new(grpc::kv::KvGrpc::new(services.kv.clone()))),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            bounded!(QueueServer::new(grpc::queue::QueueGrpc::new(
                services.queue.clone()
            ))),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            bounded!(ObjectServer::new(grpc::object::ObjectGrpc::new(
                services.object.clone()
            ))),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            bounded!(FsServer::new(grpc::fs::FsGrpc::new(services.fs.clone()))),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            bounded!(ImportServer::new(grpc::import::ImportGrpc::new(
                services.import.clone()
            ))),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            bounded!(TokensServer::new(grpc::tokens::TokensService::new(
                node.clone()
            ))),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            bounded!(ClusterServer::new(grpc::cluster::ClusterService::new(
                node.clone()
            ))),
            check,
        ));
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.changed().await; // the sender lives until shutdown
    };
    let client_task = client_grpc.serve_with_incoming_shutdown(
        admission::admit(listeners.grpc, CLIENT_CONNECTIONS_MAX, first_byte),
        stopped(stop_rx.clone()),
    );
    let peer_task = peer_grpc.serve_with_incoming_shutdown(
        admission::admit(listeners.peer, PEER_CONNECTIONS_MAX, first_byte),
        stopped(stop_rx.clone()),
    );
    let http_task = http_serve::serve(
        listeners.http,
        http::router(services)
            .merge(rest::router(rest))
            .layer(axum::middleware::from_fn(request_metrics::http_metrics)),
        security.client.as_ref().map(tls::ListenerTls::http),
        stop_rx,
    );
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (client_result, peer_result, ()) = tokio::join!(client_task, peer_task, http_task);
    client_result?;
    peer_result?;
    Ok(())
}
