//! Inbound Raft RPCs from peers: decode, hand to openraft, encode the result.
//!
//! Also answers `ReadIndex` for followers serving linearizable reads,
//! `FetchChunk` for nodes copying object chunks they lack, `StoreChunk` for
//! chunks an upload pushes before their record (`chunk_push`), `Propose` for
//! writes forwarded by nodes that do not lead (`forward`) and `Elect` for a
//! leader handing over its role (`transfer`). Only cairn nodes
//! call this service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::forward::Forwarded;
use super::node::Node;
use super::read_index::ReadIndexBatcher;
use super::types::{Hello, NodeAddr, Raft};
use crate::chunkstore::ChunkStore;
use crate::crash_point::{self, names};
use crate::proto::raft::raft_peer_server::RaftPeer;
use crate::proto::raft::RaftPayload;

pub struct PeerService {
    raft: Raft,
    reads: ReadIndexBatcher,
    chunks: ChunkStore,
    addr: NodeAddr,
    node: Arc<Node>,
}

impl PeerService {
    pub fn new(node: Arc<Node>) -> Self {
        PeerService {
            raft: node.raft.clone(),
            reads: node.reads.clone(),
            chunks: node.chunks.clone(),
            addr: node.addr.clone(),
            node,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    crate::codec::decode_peer(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data = bincode::serialize(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data: data.into() }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.append_entries(decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        if let Some(until) = self.node.refuse_votes_until {
            let now = std::time::Instant::now();
            if now < until {
                return Err(Status::unavailable(format!(
                    "just started: refusing votes for {} ms more (read leases)",
                    (until - now).as_millis()
                )));
            }
        }
        let result = self.raft.vote(decode(request)?).await;
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.raft.install_snapshot(decode(request)?).await;
        encode(&result)
    }

    async fn read_index(
        &self,
        _request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let result = self.reads.read_index().await;
        encode(&result)
    }

    async fn fetch_chunk(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let hash: [u8; 32] = request.into_inner().data[..]
            .try_into()
            .map_err(|_| Status::invalid_argument("a chunk hash is 32 bytes"))?;
        if crash_point::armed(names::SERVE_CHUNK_UNAVAILABLE) {
            return Err(Status::unavailable("crash point: chunk fetch refused"));
        }
        let chunks = self.chunks.clone();
        let data = tokio::task::spawn_blocking(move || chunks.read(&hash))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e.kind() {
                // Damaged files are deleted by the read and fetched again.
                std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData => {
                    Status::not_found("no intact copy of this chunk here")
                }
                _ => Status::internal(e.to_string()),
            })?;
        Ok(Response::new(RaftPayload { data: data.into() }))
    }

    async fn store_chunk(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (hash, data) = super::chunk_push::decode_request(request.into_inner().data)
            .ok_or_else(|| Status::invalid_argument("a chunk push starts with its 32-byte hash"))?;
        if let Some(why) = self.node.disk_guard.own_shortage(self.node.id) {
            return Err(Status::resource_exhausted(why));
        }
        let chunks = self.chunks.clone();
        tokio::task::spawn_blocking(move || chunks.store_pushed(&hash, &data))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                    Status::invalid_argument(e.to_string())
                }
                std::io::ErrorKind::StorageFull => Status::resource_exhausted(e.to_string()),
                _ => Status::internal(e.to_string()),
            })?;
        Ok(Response::new(RaftPayload::default()))
    }

    async fn hello(&self, _request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode(&Hello {
            initialized,
            addr: self.addr.clone(),
        })
    }

    async fn propose(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let Forwarded { command, alone } = decode(request)?;
        // Never forwarded again from here: a node that does not lead refuses, and
        // the sender looks for the new leader itself.
        let result = if alone {
            self.node.write_alone(command).await
        } else {
            self.node.write(command).await
        };
        encode(&result)
    }

    async fn status(
        &self,
        _request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        encode(&self.node.report().await)
    }

    async fn elect(&self, _request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        encode(&self.node.campaign().await)
    }
}
