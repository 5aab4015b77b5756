//! The client-facing surface of a node: gRPC services, HTTP routes, error mapping.
//!
//! Handlers parse and validate requests into domain commands, call `raft::Node`,
//! and encode the result; `error` is the one place errors become statuses.

pub mod error;
pub mod grpc;
pub mod http;

use std::future::Future;
use std::sync::Arc;

use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::limits::GRPC_MESSAGE_BYTES_MAX;
use crate::proto::raft::raft_peer_server::RaftPeerServer;
use crate::proto::v1::cluster_server::ClusterServer;
use crate::proto::v1::kv_server::KvServer;
use crate::proto::v1::queue_server::QueueServer;
use crate::raft::peer_service::PeerService;
use crate::raft::Node;

/// Serves gRPC (clients and peers) and HTTP until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    grpc_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let peer = PeerService::new(node.raft.clone(), node.reads.clone(), node.chunks.clone());
    let grpc = Server::builder()
        .tcp_nodelay(true)
        .add_service(
            RaftPeerServer::new(peer)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            KvServer::new(grpc::kv::KvService::new(node.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(
            QueueServer::new(grpc::queue::QueueService::new(node.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(ClusterServer::new(grpc::cluster::ClusterService::new(
            node.clone(),
        )));
    // The builder's tcp_nodelay does not reach a listener we bind ourselves; without
    // it, small replies wait ~40 ms for delayed ACKs.
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = grpc.serve_with_incoming_shutdown(incoming, async move {
        let _ = grpc_stop.changed().await; // the sender lives until shutdown
    });
    let mut http_stop = stop_rx;
    let http_task =
        axum::serve(http_listener, http::router(node)).with_graceful_shutdown(async move {
            let _ = http_stop.changed().await;
        });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (grpc_result, http_result) = tokio::join!(grpc_task, http_task);
    grpc_result?;
    http_result?;
    Ok(())
}
