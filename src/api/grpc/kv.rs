//! The `cairn.v1.Kv` gRPC service: parse, validate, then write through Raft or
//! read after the requested consistency barrier.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::api::error::ApiError;
use crate::clock::now_ms;
use crate::proto::v1::{self, kv_server::Kv, put_request};
use crate::raft::Node;
use crate::state::kv::{self, KvCommand, PutCondition};
use crate::state::{ClientCommand, Command, SessionTag};

pub struct KvService {
    node: Arc<Node>,
}

impl KvService {
    pub fn new(node: Arc<Node>) -> Self {
        KvService { node }
    }

    async fn write(
        &self,
        session: Option<SessionTag>,
        command: KvCommand,
    ) -> Result<v1::WriteReply, ApiError> {
        command.validate(&self.node.limits)?;
        let command = ClientCommand {
            session,
            command: Command::Kv(command),
        };
        let (outcome, log_index) = self.node.write(command).await?;
        convert::write_reply(outcome, log_index)
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Kv for KvService {
    async fn create_namespace(
        &self,
        request: Request<v1::NamespaceRequest>,
    ) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let command = KvCommand::CreateNamespace {
            name: r.name,
            namespaces_max: self.node.limits.namespaces_max,
        };
        Ok(Response::new(
            self.write(convert::session(r.session), command).await?,
        ))
    }

    async fn delete_namespace(
        &self,
        request: Request<v1::NamespaceRequest>,
    ) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let command = KvCommand::DeleteNamespace { name: r.name };
        Ok(Response::new(
            self.write(convert::session(r.session), command).await?,
        ))
    }

    async fn list_namespaces(
        &self,
        request: Request<v1::ListNamespacesRequest>,
    ) -> Reply<v1::ListNamespacesReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let applied_index = self
            .node
            .read_barrier(consistency)
            .await
            .map_err(ApiError::from)?;
        let namespaces = kv::list_namespaces(self.node.store.tree())
            .map_err(ApiError::from)?
            .into_iter()
            .map(|n| v1::NamespaceInfo {
                name: n.name,
                created_ms: n.created_ms,
                applied_index,
            })
            .collect();
        Ok(Response::new(v1::ListNamespacesReply {
            namespaces,
            applied_index,
        }))
    }

    async fn get_namespace(
        &self,
        request: Request<v1::GetNamespaceRequest>,
    ) -> Reply<v1::NamespaceInfo> {
        let r = request.into_inner();
        let applied_index = self
            .node
            .read_barrier(convert::consistency(r.consistency)?)
            .await
            .map_err(ApiError::from)?;
        let info = kv::get_namespace(self.node.store.tree(), &r.name).map_err(ApiError::from)?;
        Ok(Response::new(v1::NamespaceInfo {
            name: info.name,
            created_ms: info.created_ms,
            applied_index,
        }))
    }

    async fn put(&self, request: Request<v1::PutRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let condition = match r.condition {
            None => PutCondition::Always,
            Some(put_request::Condition::IfVersion(v)) => PutCondition::IfVersion(v),
            Some(put_request::Condition::IfAbsent(true)) => PutCondition::IfAbsent,
            Some(put_request::Condition::IfAbsent(false)) => PutCondition::Always,
        };
        let command = KvCommand::Put {
            namespace: r.namespace,
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            condition,
            ttl_ms: r.ttl_ms,
        };
        Ok(Response::new(
            self.write(convert::session(r.session), command).await?,
        ))
    }

    async fn get(&self, request: Request<v1::GetRequest>) -> Reply<v1::GetReply> {
        let r = request.into_inner();
        kv::validate_key(&r.key, &self.node.limits).map_err(ApiError::from)?;
        let applied_index = self
            .node
            .read_barrier(convert::consistency(r.consistency)?)
            .await
            .map_err(ApiError::from)?;
        let record = kv::get(self.node.store.tree(), now_ms(), &r.namespace, &r.key)
            .map_err(ApiError::from)?;
        let reply = match record {
            Some(record) => v1::GetReply {
                found: true,
                value: record.value.into(),
                version: record.version,
                expires_at_ms: record.expires_at_ms,
                applied_index,
            },
            None => v1::GetReply {
                applied_index,
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn delete(&self, request: Request<v1::DeleteRequest>) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let command = KvCommand::Delete {
            namespace: r.namespace,
            key: r.key.to_vec(),
        };
        Ok(Response::new(
            self.write(convert::session(r.session), command).await?,
        ))
    }

    async fn list_keys(&self, request: Request<v1::ListKeysRequest>) -> Reply<v1::ListKeysReply> {
        let r = request.into_inner();
        let applied_index = self
            .node
            .read_barrier(convert::consistency(r.consistency)?)
            .await
            .map_err(ApiError::from)?;
        let page = kv::list_keys(
            self.node.store.tree(),
            now_ms(),
            &r.namespace,
            &r.prefix,
            &r.cursor,
            r.limit,
        )
        .map_err(ApiError::from)?;
        let keys = page.keys.into_iter().map(Into::into).collect();
        Ok(Response::new(v1::ListKeysReply {
            keys,
            next_cursor: page.next_cursor,
            applied_index,
        }))
    }
}
