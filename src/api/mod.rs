//! The client-facing surface of a node: gRPC services, HTTP routes, error mapping.
//!
//! Handlers parse and validate requests into domain commands, call `raft::Node`,
//! and encode the result; `error` is the one place errors become statuses.

pub mod auth;
pub mod chunk_read;
pub mod chunk_upload;
pub mod error;
pub mod fs;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod http_objects;
pub mod objects;

use std::future::Future;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

pub use gateway::Gateway;

use crate::limits::{
    GRPC_CONNECTION_WINDOW_BYTES, GRPC_MESSAGE_BYTES_MAX, GRPC_STREAM_WINDOW_BYTES,
};
use crate::proto::raft::raft_peer_server::RaftPeerServer;
use crate::proto::v1::cluster_server::ClusterServer;
use crate::proto::v1::fs_server::FsServer;
use crate::proto::v1::kv_server::KvServer;
use crate::proto::v1::object_server::ObjectServer;
use crate::proto::v1::queue_server::QueueServer;
use crate::proto::v1::tokens_server::TokensServer;
use crate::raft::peer_service::PeerService;

/// Serves gRPC (clients and peers) and HTTP until `shutdown` resolves. Every
/// client service passes the token check (`auth::interceptor`); peers' Raft
/// traffic does not.
pub async fn serve(
    gateway: Gateway,
    grpc_listener: tokio::net::TcpListener,
    http_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = gateway.node.clone();
    let check = auth::interceptor(gateway.auth.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let peer = PeerService::new(node.raft.clone(), node.reads.clone(), node.chunks.clone());
    let grpc = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(GRPC_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW_BYTES)
        .add_service(
            RaftPeerServer::new(peer)
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
        )
        .add_service(InterceptedService::new(
            KvServer::new(grpc::kv::KvService::new(node.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            QueueServer::new(grpc::queue::QueueService::new(node.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            ObjectServer::new(grpc::object::ObjectService::new(gateway.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            FsServer::new(grpc::fs::FsService::new(gateway.fs.clone()))
                .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            TokensServer::new(grpc::tokens::TokensService::new(node.clone())),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            ClusterServer::new(grpc::cluster::ClusterService::new(node.clone())),
            check,
        ));
    // The builder's tcp_nodelay does not reach a listener we bind ourselves; without
    // it, small replies wait ~40 ms for delayed ACKs.
    let incoming = TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = grpc.serve_with_incoming_shutdown(incoming, async move {
        let _ = grpc_stop.changed().await; // the sender lives until shutdown
    });
    let mut http_stop = stop_rx;
    let http_task =
        axum::serve(http_listener, http::router(gateway)).with_graceful_shutdown(async move {
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
