//! The `cairn.v1.Cluster` gRPC service: node status, online membership changes
//! and leadership transfer.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::api::error::ApiError;
use crate::config::default_peer_addr;
use crate::proto::v1::{self, cluster_server::Cluster};
use crate::raft::types::NodeAddr;
use crate::raft::Node;
use crate::state::Error;

pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> Self {
        ClusterService { node }
    }

    fn membership_reply(&self, log_index: u64) -> v1::MembershipReply {
        v1::MembershipReply {
            log_index,
            members: self.node.members().iter().map(convert::member).collect(),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn status(&self, _request: Request<v1::StatusRequest>) -> Reply<v1::NodeStatus> {
        Ok(Response::new(convert::node_status(&self.node)))
    }

    async fn add_learner(
        &self,
        request: Request<v1::AddLearnerRequest>,
    ) -> Reply<v1::MembershipReply> {
        let r = request.into_inner();
        if r.id == 0 {
            return Err(ApiError::from(Error::invalid("id", "node ids start at 1")).into());
        }
        if r.grpc_addr.is_empty() {
            return Err(ApiError::from(Error::invalid("grpc_addr", "must not be empty")).into());
        }
        let peer_addr = if r.peer_addr.is_empty() {
            default_peer_addr(&r.grpc_addr)
                .map_err(|e| ApiError::from(Error::invalid("grpc_addr", e)))?
        } else {
            r.peer_addr
        };
        let addr = NodeAddr {
            grpc_addr: r.grpc_addr,
            http_addr: r.http_addr,
            peer_addr,
        };
        let index = self
            .node
            .add_learner(r.id, addr)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(self.membership_reply(index)))
    }

    async fn promote(&self, request: Request<v1::NodeIdRequest>) -> Reply<v1::MembershipReply> {
        let index = self
            .node
            .promote(request.into_inner().id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(self.membership_reply(index)))
    }

    async fn remove(&self, request: Request<v1::NodeIdRequest>) -> Reply<v1::MembershipReply> {
        let id = request.into_inner().id;
        if !self.node.members().iter().any(|m| m.id == id) {
            return Err(ApiError::from(Error::NotFound {
                what: format!("node {id}"),
            })
            .into());
        }
        let index = self.node.remove(id).await.map_err(ApiError::from)?;
        Ok(Response::new(self.membership_reply(index)))
    }

    async fn transfer_leader(
        &self,
        request: Request<v1::TransferLeaderRequest>,
    ) -> Reply<v1::TransferLeaderReply> {
        let to = Some(request.into_inner().to).filter(|id| *id != 0);
        let leader_id = self
            .node
            .transfer_leader(to)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(v1::TransferLeaderReply { leader_id }))
    }
}
