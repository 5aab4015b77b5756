//! Key-value calls of the SDK.

use std::time::Duration;

use bytes::Bytes;

use super::{Client, Error, Target};
use crate::proto::v1::{self, put_request::Condition};

/// A stored value with its version (unique and growing across the cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub value: Bytes,
    pub version: u64,
    /// Unix time in ms at which the key expires, if it has a TTL.
    pub expires_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub created_ms: u64,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read began (default).
    #[default]
    Linearizable,
    /// Whatever the node asked has applied; may be behind.
    Stale,
}

impl ReadConsistency {
    pub(super) fn proto(self) -> i32 {
        v1::Consistency::from_stale(self == ReadConsistency::Stale) as i32
    }

    fn target(self) -> Target {
        match self {
            ReadConsistency::Linearizable => Target::LeaderPreferred,
            ReadConsistency::Stale => Target::Any,
        }
    }
}

/// Options of a put: TTL and a condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub ttl: Option<Duration>,
    pub if_version: Option<u64>,
    pub if_absent: bool,
}

impl PutOptions {
    pub fn if_version(version: u64) -> Self {
        PutOptions {
            if_version: Some(version),
            ..Default::default()
        }
    }

    pub fn if_absent() -> Self {
        PutOptions {
            if_absent: true,
            ..Default::default()
        }
    }

    pub fn ttl(ttl: Duration) -> Self {
        PutOptions {
            ttl: Some(ttl),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub prefix: Vec<u8>,
    /// 0 means the server's default page size.
    pub limit: u32,
    /// `next_cursor` of the previous page; empty for the first.
    pub cursor: String,
    pub consistency: ReadConsistency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<Bytes>,
    /// `None` when nothing is left.
    pub next_cursor: Option<String>,
}

impl Client {
    pub async fn create_namespace(&self, name: &str) -> Result<(), Error> {
        self.write(|mut c, session| async move {
            c.create_namespace(v1::NamespaceRequest {
                session: Some(session),
                name: name.to_string(),
            })
            .await
        })
        .await
        .map(|_| ())
    }

    /// Deletes a namespace and all its keys.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), Error> {
        self.write(|mut c, session| async move {
            c.delete_namespace(v1::NamespaceRequest {
                session: Some(session),
                name: name.to_string(),
            })
            .await
        })
        .await
        .map(|_| ())
    }

    pub async fn list_namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let request = v1::ListNamespacesRequest {
            consistency: ReadConsistency::Linearizable.proto(),
        };
        let reply = self
            .read(Target::LeaderPreferred, |mut c| async move {
                c.list_namespaces(request).await
            })
            .await?;
        Ok(reply
            .namespaces
            .into_iter()
            .map(|n| Namespace {
                name: n.name,
                created_ms: n.created_ms,
            })
            .collect())
    }

    pub async fn get_namespace(&self, name: &str) -> Result<Namespace, Error> {
        let request = v1::GetNamespaceRequest {
            name: name.to_string(),
            consistency: 0,
        };
        let reply = self
            .read(Target::LeaderPreferred, |mut c| {
                let request = request.clone();
                async move { c.get_namespace(request).await }
            })
            .await?;
        Ok(Namespace {
            name: reply.name,
            created_ms: reply.created_ms,
        })
    }

    /// Puts `value` under `key`, overwriting; returns the new version.
    pub async fn put(&self, namespace: &str, key: &[u8], value: &[u8]) -> Result<u64, Error> {
        self.put_with(namespace, key, value, PutOptions::default())
            .await
    }

    pub async fn put_with(
        &self,
        namespace: &str,
        key: &[u8],
        value: &[u8],
        options: PutOptions,
    ) -> Result<u64, Error> {
        let condition = match (options.if_version, options.if_absent) {
            (Some(v), _) => Some(Condition::IfVersion(v)),
            (None, true) => Some(Condition::IfAbsent(true)),
            (None, false) => None,
        };
        let ttl_ms = options
            .ttl
            .map(|t| t.as_millis().max(1) as u64)
            .unwrap_or(0);
        let (key, value) = (Bytes::copy_from_slice(key), Bytes::copy_from_slice(value));
        let reply = self
            .write(|mut c, session| {
                let request = v1::PutRequest {
                    session: Some(session),
                    namespace: namespace.to_string(),
                    key: key.clone(),
                    value: value.clone(),
                    ttl_ms,
                    condition,
                };
                async move { c.put(request).await }
            })
            .await?;
        Ok(reply.version)
    }

    pub async fn get(&self, namespace: &str, key: &[u8]) -> Result<Option<Value>, Error> {
        self.get_with(namespace, key, ReadConsistency::Linearizable)
            .await
    }

    pub async fn get_with(
        &self,
        namespace: &str,
        key: &[u8],
        consistency: ReadConsistency,
    ) -> Result<Option<Value>, Error> {
        let request = v1::GetRequest {
            namespace: namespace.to_string(),
            key: Bytes::copy_from_slice(key),
            consistency: consistency.proto(),
        };
        let reply = self
            .read(consistency.target(), |mut c| {
                let request = request.clone();
                async move { c.get(request).await }
            })
            .await?;
        Ok(reply.found.then(|| Value {
            value: reply.value,
            version: reply.version,
            expires_at_ms: (reply.expires_at_ms != 0).then_some(reply.expires_at_ms),
        }))
    }

    /// Deletes `key`; succeeds whether or not it existed (returns whether it did).
    pub async fn delete(&self, namespace: &str, key: &[u8]) -> Result<bool, Error> {
        let key = Bytes::copy_from_slice(key);
        let reply = self
            .write(|mut c, session| {
                let request = v1::DeleteRequest {
                    session: Some(session),
                    namespace: namespace.to_string(),
                    key: key.clone(),
                };
                async move { c.delete(request).await }
            })
            .await?;
        Ok(reply.existed)
    }

    pub async fn list_keys(
        &self,
        namespace: &str,
        options: &ListOptions,
    ) -> Result<KeyPage, Error> {
        let request = v1::ListKeysRequest {
            namespace: namespace.to_string(),
            prefix: Bytes::copy_from_slice(&options.prefix),
            limit: options.limit,
            cursor: options.cursor.clone(),
            consistency: options.consistency.proto(),
        };
        let reply = self
            .read(options.consistency.target(), |mut c| {
                let request = request.clone();
                async move { c.list_keys(request).await }
            })
            .await?;
        let next_cursor = (!reply.next_cursor.is_empty()).then_some(reply.next_cursor);
        Ok(KeyPage {
            keys: reply.keys,
            next_cursor,
        })
    }
}
