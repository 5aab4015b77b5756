//! Outbound Raft RPCs: openraft's network traits over tonic.
//!
//! Each request is the bincode of an openraft message inside a `RaftPayload`; the
//! reply carries the bincode of `Result<Response, RaftError>`. Channels connect
//! lazily and reconnect by themselves. Transport failures map to `Unreachable`
//! (openraft backs off), deadline overruns to `Timeout`, remote Raft errors to
//! `RemoteError`.

use std::collections::HashMap;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::types::{NodeAddr, NodeId, RaftError, RpcError, TypeConfig};
use crate::limits::GRPC_MESSAGE_BYTES_MAX;
use crate::proto::raft::raft_peer_client::RaftPeerClient;
use crate::proto::raft::RaftPayload;

/// Opens a lazily connected client to a peer's peer address (mutual TLS).
pub fn connect_peer(
    addr: &str,
    tls: &ClientTlsConfig,
) -> Result<RaftPeerClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls.clone())?
        .connect_timeout(Duration::from_secs(2))
        .initial_stream_window_size(crate::limits::GRPC_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(crate::limits::GRPC_CONNECTION_WINDOW_BYTES)
        .tcp_nodelay(true)
        .connect_lazy();
    Ok(RaftPeerClient::new(channel)
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX))
}

/// Hands out peer clients, sharing one HTTP/2 connection per peer address.
/// openraft asks for a new client for every leadership check (read index); dialing
/// each time would cost a TCP, TLS and HTTP/2 handshake per linearizable read round.
pub struct PeerNetwork {
    clients: HashMap<String, RaftPeerClient<Channel>>,
    tls: ClientTlsConfig,
}

impl PeerNetwork {
    pub fn new(tls: ClientTlsConfig) -> Self {
        PeerNetwork {
            clients: HashMap::new(),
            tls,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient {
        let client = match self.clients.get(&node.peer_addr) {
            Some(client) => Ok(client.clone()),
            None => connect_peer(&node.peer_addr, &self.tls).map_err(|e| e.to_string()),
        };
        if let Ok(client) = &client {
            self.clients.insert(node.peer_addr.clone(), client.clone());
        }
        PeerClient { target, client }
    }
}

pub struct PeerClient {
    target: NodeId,
    /// An address that does not parse is reported on every call as unreachable.
    client: Result<RaftPeerClient<Channel>, String>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(e) => {
                return Err(RpcError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e.clone()),
                )))
            }
        };
        let data =
            bincode::serialize(request).map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        let payload = RaftPayload { data: data.into() };
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::InstallSnapshot => client.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => return Err(map_status(status)),
            Err(_) => {
                let action = match rpc {
                    Rpc::AppendEntries => RPCTypes::AppendEntries,
                    Rpc::Vote => RPCTypes::Vote,
                    Rpc::InstallSnapshot => RPCTypes::InstallSnapshot,
                };
                return Err(RpcError::Timeout(Timeout {
                    action,
                    id: 0,
                    target: self.target,
                    timeout: ttl,
                }));
            }
        };
        let result: Result<Resp, RaftError<E>> = crate::codec::decode_peer(&reply.data)
            .map_err(|e| RpcError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RpcError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn map_status<E: std::error::Error>(status: tonic::Status) -> RpcError<E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => {
            RpcError::Unreachable(Unreachable::new(&status))
        }
        _ => RpcError::Network(NetworkError::new(&status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(Rpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
