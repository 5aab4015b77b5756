//! The `cairn.v1.Kv` gRPC service: converts messages to and from the KV service
//! (`api::service::kv`), which does the work.

use tonic::{Request, Response, Status};

use super::convert;
use crate::api::service::kv::{KvService, Put, Written};
use crate::proto::v1::{self, kv_server::Kv, put_request};
use crate::state::kv::PutCondition;

pub struct KvGrpc {
    kv: KvService,
}

impl KvGrpc {
    pub fn new(kv: KvService) -> Self {
        KvGrpc { kv }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn written(w: Written) -> Response<v1::WriteReply> {
    Response::new(v1::WriteReply {
        version: w.version,
        existed: w.existed,
        log_index: w.log_index,
    })
}

#[tonic::async_trait]
impl Kv for KvGrpc {
    async fn create_namespace(
        &self,
        request: Request<v1::NamespaceRequest>,
    ) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let done = self
            .kv
            .create_namespace(convert::session(r.session), r.name)
            .await?;
        Ok(written(done))
    }

    async fn delete_namespace(
        &self,
        request: Request<v1::NamespaceRequest>,
    ) -> Reply<v1::WriteReply> {
        let r = request.into_inner();
        let done = self
            .kv
            .delete_namespace(convert::session(r.session), r.name)
            .await?;
        Ok(written(done))
    }

    async fn list_namespaces(
        &self,
        request: Request<v1::ListNamespacesRequest>,
    ) -> Reply<v1::ListNamespacesReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let (list, applied_index) = self.kv.list_namespaces(consistency).await?;
        let namespaces = list
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
        let consistency = convert::consistency(r.consistency)?;
        let (info, applied_index) = self.kv.get_namespace(&r.name, consistency).await?;
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
        let put = Put {
            namespace: r.namespace,
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            condition,
            ttl_ms: r.ttl_ms,
        };
        Ok(written(
            self.kv.put(convert::session(r.session), put).await?,
        ))
    }

    async fn get(&self, request: Request<v1::GetRequest>) -> Reply<v1::GetReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (found, applied_index) = self.kv.get(&r.namespace, &r.key, consistency).await?;
        let reply = match found {
            Some(found) => v1::GetReply {
                found: true,
                value: found.value.into(),
                version: found.version,
                expires_at_ms: found.expires_at_ms,
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
        let done = self
            .kv
            .delete(convert::session(r.session), r.namespace, r.key.to_vec())
            .await?;
        Ok(written(done))
    }

    async fn list_keys(&self, request: Request<v1::ListKeysRequest>) -> Reply<v1::ListKeysReply> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (page, applied_index) = self
            .kv
            .list_keys(&r.namespace, &r.prefix, &r.cursor, r.limit, consistency)
            .await?;
        Ok(Response::new(v1::ListKeysReply {
            keys: page.keys.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor,
            applied_index,
        }))
    }
}
