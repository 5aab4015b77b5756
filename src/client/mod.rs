//! The Rust SDK: a cluster client that finds the leader, follows leader changes and
//! retries transient failures without applying a write twice.
//!
//! Every write gets the client's next seq and carries it, with the lowest seq still
//! unanswered, through every retry; the cluster's session table turns a retry into
//! a replay of the first answer. At most `CLIENT_INFLIGHT_WRITES_MAX` writes are in
//! flight per client (more wait), which keeps the cluster's per-client table bounded.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn::client::Error> {
//! use cairn::client::{Client, PutOptions};
//!
//! let client = Client::connect(["127.0.0.1:7400", "127.0.0.1:7401"])?;
//! client.create_namespace("settings").await?;
//! let version = client.put("settings", b"theme", b"dark").await?;
//! let value = client.get("settings", b"theme").await?.expect("just written");
//! assert_eq!(value.value.as_ref(), b"dark");
//! // Compare-and-swap: only succeeds if nobody wrote since `version`.
//! client.put_with("settings", b"theme", b"light", PutOptions::if_version(version)).await?;
//! # Ok(()) }
//! ```

mod admin;
pub use admin::BackupStream;
mod error;
mod fs;
mod fs_ino;
pub use fs_ino::BlockInfo;
mod import;
pub use import::{ImportFailure, ImportJob, ImportSource};
mod kv;
mod object;
mod queue;
mod retry;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use error::{Errno, Error};
pub use fs::{
    Attr, DirEntry, DirPage, FileKind, FsClient, FsInfo, NewNode, OpenFile, SetAttrs,
    UploadOptions, UploadPiece, UploadReport,
};
pub use kv::{KeyPage, ListOptions, Namespace, PutOptions, ReadConsistency, Value};
pub use object::{
    BucketInfo, ListObjectsOptions, ObjectInfo, ObjectPage, Progress, PutObjectOptions, TokenInfo,
    Uploaded,
};
pub use queue::{Message, QueueInfo, ReceiveOptions};
pub use retry::{Target, Timeouts};

use crate::limits::{CLIENT_CALL_TIMEOUT_MS_DEFAULT, CLIENT_INFLIGHT_WRITES_MAX};
use crate::proto::v1;
use retry::{Conn, Router, TokenHeader, MESSAGE_BYTES_MAX};

type KvClient = v1::kv_client::KvClient<Conn>;
type QueueClient = v1::queue_client::QueueClient<Conn>;
type ClusterClient = v1::cluster_client::ClusterClient<Conn>;
type ObjectClient = v1::object_client::ObjectClient<Conn>;
type TokensClient = v1::tokens_client::TokensClient<Conn>;
type FsGrpc = v1::fs_client::FsClient<Conn>;

/// A handle to a cairn cluster. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    router: Router,
    client_id: u64,
    next_seq: AtomicU64,
    unanswered: Mutex<BTreeSet<u64>>,
    write_permits: Semaphore,
    call_timeout: Duration,
}

/// Removes a seq from the unanswered set when its call ends, however it ends.
struct SeqGuard<'a> {
    inner: &'a Inner,
    seq: u64,
}

impl Drop for SeqGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .unanswered
            .lock()
            .expect("unanswered lock is never poisoned")
            .remove(&self.seq);
    }
}

impl Client {
    /// A client for the cluster reachable at `endpoints` (gRPC `host:port` of any
    /// nodes). Connects lazily; the first call finds the leader.
    pub fn connect<I, S>(endpoints: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(Into::into)
            .filter(|e| !e.is_empty())
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                router: Router::new(endpoints)?,
                client_id: rand::random(),
                next_seq: AtomicU64::new(1),
                unanswered: Mutex::new(BTreeSet::new()),
                write_permits: Semaphore::new(CLIENT_INFLIGHT_WRITES_MAX),
                call_timeout: Duration::from_millis(CLIENT_CALL_TIMEOUT_MS_DEFAULT),
            }),
        })
    }

    /// The same client with another per-call deadline (retries included). Must be
    /// called before the client is cloned.
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.call_timeout = call_timeout;
        }
        self
    }

    /// The same client sending `token` (`authorization: Bearer`) with every call.
    /// Must be called before the client is cloned or used.
    pub fn with_token(mut self, token: &str) -> Result<Self, Error> {
        let header = TokenHeader::bearer(token)?;
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.router.token = header;
        }
        Ok(self)
    }

    /// The same client speaking TLS to the nodes, trusting the CA certificate(s)
    /// in `ca_pem` (the nodes' `--tls-cert` must chain to one and name the host
    /// the client dials). Must be called before the client is cloned or used.
    pub fn with_ca(mut self, ca_pem: &[u8]) -> Self {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.router.tls = Some(tls);
        }
        self
    }

    /// Runs a write with a fresh seq, retrying with the same tag.
    async fn write<T, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(KvClient, v1::Session) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.write_with(Duration::ZERO, |channel, session| {
            attempt(kv_client(channel), session)
        })
        .await
    }

    /// Runs a write on any service with a fresh seq, retrying with the same tag;
    /// `server_wait` is how long the server may hold it (long polls).
    async fn write_with<T, F, Fut>(&self, server_wait: Duration, attempt: F) -> Result<T, Error>
    where
        F: FnMut(Conn, v1::Session) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let timeouts = Timeouts::new(self.inner.call_timeout, server_wait);
        self.write_timed(timeouts, attempt).await
    }

    /// [`Client::write_with`] with explicit deadlines (object transfers).
    async fn write_timed<T, F, Fut>(&self, timeouts: Timeouts, attempt: F) -> Result<T, Error>
    where
        F: FnMut(Conn, v1::Session) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.write_on(Target::Leader, timeouts, attempt).await
    }

    /// A write with a session sent to `target` (the leader, or the first endpoint
    /// for node-local storage).
    async fn write_on<T, F, Fut>(
        &self,
        target: Target,
        timeouts: Timeouts,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Conn, v1::Session) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let inner = &self.inner;
        let _permit = inner
            .write_permits
            .acquire()
            .await
            .expect("write semaphore is never closed");
        // Allocate and register under one lock: otherwise a concurrent write could
        // report a lowest unanswered seq above ours before ours is registered, and
        // the cluster would forget our result.
        let seq = {
            let mut unanswered = inner
                .unanswered
                .lock()
                .expect("unanswered lock is never poisoned");
            let seq = inner.next_seq.fetch_add(1, Ordering::Relaxed);
            unanswered.insert(seq);
            seq
        };
        let _guard = SeqGuard { inner, seq };
        inner
            .router
            .call(target, timeouts, |channel| {
                let lowest = *inner
                    .unanswered
                    .lock()
                    .expect("unanswered lock is never poisoned")
                    .first()
                    .unwrap_or(&seq);
                let session = v1::Session {
                    client_id: inner.client_id,
                    seq,
                    lowest_unanswered_seq: lowest,
                };
                let fut = attempt(channel, session);
                async move { fut.await.map(tonic::Response::into_inner) }
            })
            .await
    }

    async fn read<T, F, Fut>(&self, target: Target, attempt: F) -> Result<T, Error>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_on(target, kv_client, attempt).await
    }

    /// Runs a call without a session (reads, status) on `target` through a client
    /// made by `make`, with the usual retries and deadline.
    async fn call_on<C, T, F, Fut>(
        &self,
        target: Target,
        make: fn(Conn) -> C,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(C) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.inner
            .router
            .call(
                target,
                Timeouts::new(self.inner.call_timeout, Duration::ZERO),
                |channel| {
                    let fut = attempt(make(channel));
                    async move { fut.await.map(tonic::Response::into_inner) }
                },
            )
            .await
    }

    /// Status of the node at `addr` (no retry, no redirect).
    pub async fn node_status(&self, addr: &str) -> Result<v1::NodeStatus, Error> {
        let channel = self.inner.router.channel(addr)?;
        let mut client = ClusterClient::new(channel);
        match tokio::time::timeout(self.inner.call_timeout, client.status(v1::StatusRequest {}))
            .await
        {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(&status)),
            Err(_) => Err(Error::Timeout(format!("{addr} did not answer"))),
        }
    }

    /// Status of whichever node answers first among the endpoints.
    pub async fn any_status(&self) -> Result<v1::NodeStatus, Error> {
        self.inner
            .router
            .call(
                Target::Any,
                Timeouts::new(self.inner.call_timeout, Duration::ZERO),
                |channel| async move {
                    ClusterClient::new(channel)
                        .status(v1::StatusRequest {})
                        .await
                        .map(tonic::Response::into_inner)
                },
            )
            .await
    }

    pub async fn add_learner(
        &self,
        id: u64,
        grpc_addr: &str,
        http_addr: &str,
        peer_addr: &str,
    ) -> Result<v1::MembershipReply, Error> {
        let request = v1::AddLearnerRequest {
            id,
            grpc_addr: grpc_addr.into(),
            http_addr: http_addr.into(),
            peer_addr: peer_addr.into(),
        };
        self.membership(move |mut c| {
            let request = request.clone();
            async move { c.add_learner(request).await }
        })
        .await
    }

    pub async fn promote(&self, id: u64) -> Result<v1::MembershipReply, Error> {
        self.membership(move |mut c| async move { c.promote(v1::NodeIdRequest { id }).await })
            .await
    }

    pub async fn remove_node(&self, id: u64) -> Result<v1::MembershipReply, Error> {
        self.membership(move |mut c| async move { c.remove(v1::NodeIdRequest { id }).await })
            .await
    }

    /// Hands leadership to voter `to` (`None`: the leader picks the voter with
    /// the most of the log); returns the new leader's id.
    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<u64, Error> {
        let request = v1::TransferLeaderRequest {
            to: to.unwrap_or(0),
        };
        // The leader may first wait out its lease (an election timeout) and then
        // hold writes for up to 3 s.
        let server_wait = Duration::from_secs(10);
        self.inner
            .router
            .call(
                Target::Leader,
                Timeouts::new(self.inner.call_timeout, server_wait),
                |channel| async move {
                    ClusterClient::new(channel)
                        .transfer_leader(request)
                        .await
                        .map(|r| r.into_inner().leader_id)
                },
            )
            .await
    }

    async fn membership<F, Fut>(&self, mut attempt: F) -> Result<v1::MembershipReply, Error>
    where
        F: FnMut(ClusterClient) -> Fut,
        Fut: std::future::Future<
            Output = Result<tonic::Response<v1::MembershipReply>, tonic::Status>,
        >,
    {
        // Membership changes can wait for a learner to catch up: allow longer.
        let timeout = self.inner.call_timeout;
        self.inner
            .router
            .call(
                Target::Leader,
                Timeouts::new(timeout, Duration::from_secs(60)),
                |channel| {
                    let fut = attempt(ClusterClient::new(channel));
                    async move { fut.await.map(tonic::Response::into_inner) }
                },
            )
            .await
    }
}

fn queue_client(channel: Conn) -> QueueClient {
    QueueClient::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

fn object_client(channel: Conn) -> ObjectClient {
    ObjectClient::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

fn fs_client(channel: Conn) -> FsGrpc {
    FsGrpc::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}

fn kv_client(channel: Conn) -> KvClient {
    KvClient::new(channel)
        .max_decoding_message_size(MESSAGE_BYTES_MAX)
        .max_encoding_message_size(MESSAGE_BYTES_MAX)
}
