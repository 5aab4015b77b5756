//! The key-value service, transport-neutral: validate, write through Raft on the
//! caller's route, or read after the requested consistency barrier. gRPC and
//! REST handlers only convert to and from it.

use std::sync::Arc;

use crate::api::error::ApiError;
use crate::clock::now_ms;
use crate::raft::{Consistency, Node, Route};
use crate::state::kv::{self, KeyPage, KvCommand, KvResponse, NamespaceInfo, PutCondition};
use crate::state::{ClientCommand, Command, Response, SessionTag};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// The new version of a put key.
    pub version: u64,
    /// Whether a deleted key existed.
    pub existed: bool,
    pub log_index: u64,
}

/// A value read, with the applied index it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: Vec<u8>,
    pub version: u64,
    pub expires_at_ms: u64,
}

/// One put.
#[derive(Debug, Clone)]
pub struct Put {
    pub namespace: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub condition: PutCondition,
    pub ttl_ms: u64,
}

#[derive(Clone)]
pub struct KvService {
    node: Arc<Node>,
    route: Route,
}

impl KvService {
    pub fn new(node: Arc<Node>, route: Route) -> Self {
        KvService { node, route }
    }

    async fn write(
        &self,
        session: Option<SessionTag>,
        command: KvCommand,
    ) -> Result<Written, ApiError> {
        command.validate(&self.node.limits)?;
        let command = ClientCommand {
            session,
            command: Command::Kv(command),
        };
        let (outcome, log_index) = self.node.submit(command, self.route, false).await?;
        let mut written = Written {
            log_index,
            ..Default::default()
        };
        match outcome? {
            Response::Kv(KvResponse::Created) => {}
            Response::Kv(KvResponse::Put { version }) => written.version = version,
            Response::Kv(KvResponse::Deleted { existed }) => written.existed = existed,
            other => return Err(ApiError::Internal(format!("a KV write returned {other:?}"))),
        }
        Ok(written)
    }

    async fn barrier(&self, consistency: Consistency) -> Result<u64, ApiError> {
        Ok(self.node.read_barrier(consistency).await?)
    }

    pub async fn create_namespace(
        &self,
        session: Option<SessionTag>,
        name: String,
    ) -> Result<Written, ApiError> {
        let namespaces_max = self.node.limits.namespaces_max;
        let command = KvCommand::CreateNamespace {
            name,
            namespaces_max,
        };
        self.write(session, command).await
    }

    pub async fn delete_namespace(
        &self,
        session: Option<SessionTag>,
        name: String,
    ) -> Result<Written, ApiError> {
        self.write(session, KvCommand::DeleteNamespace { name })
            .await
    }

    /// Every namespace, and the applied index the list reflects.
    pub async fn list_namespaces(
        &self,
        consistency: Consistency,
    ) -> Result<(Vec<NamespaceInfo>, u64), ApiError> {
        let applied_index = self.barrier(consistency).await?;
        Ok((kv::list_namespaces(self.node.store.tree())?, applied_index))
    }

    pub async fn get_namespace(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<(NamespaceInfo, u64), ApiError> {
        let applied_index = self.barrier(consistency).await?;
        Ok((
            kv::get_namespace(self.node.store.tree(), name)?,
            applied_index,
        ))
    }

    pub async fn put(&self, session: Option<SessionTag>, put: Put) -> Result<Written, ApiError> {
        let command = KvCommand::Put {
            namespace: put.namespace,
            key: put.key,
            value: put.value,
            condition: put.condition,
            ttl_ms: put.ttl_ms,
        };
        self.write(session, command).await
    }

    /// The live value of `key`, if any, and the applied index the read reflects.
    pub async fn get(
        &self,
        namespace: &str,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<(Option<Found>, u64), ApiError> {
        kv::validate_key(key, &self.node.limits)?;
        let applied_index = self.barrier(consistency).await?;
        let record = kv::get(self.node.store.tree(), now_ms(), namespace, key)?;
        let found = record.map(|r| Found {
            value: r.value,
            version: r.version,
            expires_at_ms: r.expires_at_ms,
        });
        Ok((found, applied_index))
    }

    pub async fn delete(
        &self,
        session: Option<SessionTag>,
        namespace: String,
        key: Vec<u8>,
    ) -> Result<Written, ApiError> {
        self.write(session, KvCommand::Delete { namespace, key })
            .await
    }

    /// One page of live keys starting with `prefix` after `cursor` (see
    /// `state::kv::list_keys`).
    pub async fn list_keys(
        &self,
        namespace: &str,
        prefix: &[u8],
        cursor: &str,
        limit: u32,
        consistency: Consistency,
    ) -> Result<(KeyPage, u64), ApiError> {
        let applied_index = self.barrier(consistency).await?;
        let page = kv::list_keys(
            self.node.store.tree(),
            now_ms(),
            namespace,
            prefix,
            cursor,
            limit,
        )?;
        Ok((page, applied_index))
    }
}
