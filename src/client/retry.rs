//! Finding the node that can answer, and retrying until it does.
//!
//! Every call has a deadline (`call_timeout`), at most `CLIENT_RETRIES_MAX`
//! attempts, each bounded by `ATTEMPT_TIMEOUT_MS`, and capped exponential backoff
//! between attempts that failed for lack of a node. A `NotLeader` hint is followed
//! at once. Writes are retried by the caller's closure with the same session tag,
//! so the state machine applies them once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Status;

use super::error::Error;
use crate::limits::{
    CLIENT_BACKOFF_MS_MAX, CLIENT_BACKOFF_MS_MIN, CLIENT_RETRIES_MAX, GRPC_MESSAGE_BYTES_MAX,
};

/// One attempt may take this long before the SDK tries another node (a paused or
/// partitioned node accepts connections but never answers).
const ATTEMPT_TIMEOUT_MS: u64 = 3_000;

/// Deadlines of one call: all attempts together, and each attempt.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub call: Duration,
    pub attempt: Duration,
}

impl Timeouts {
    /// `call` overall; each attempt `ATTEMPT_TIMEOUT_MS` plus `server_wait` (the
    /// time the server may legitimately hold the request, e.g. a long poll).
    pub fn new(call: Duration, server_wait: Duration) -> Self {
        Timeouts {
            call: call + server_wait,
            attempt: Duration::from_millis(ATTEMPT_TIMEOUT_MS) + server_wait,
        }
    }
}

/// Which node a call must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Writes: only the leader accepts them; a success confirms who leads.
    Leader,
    /// Linearizable reads: the leader is one hop, but a follower also answers
    /// (through the leader's read index), so a success proves nothing about who leads.
    LeaderPreferred,
    /// Stale reads: whichever node; spread over the endpoints.
    Any,
    /// The first endpoint only (node-local storage lives on one node).
    First,
}

/// Adds the client's API token (if any) to every call.
#[derive(Clone, Default)]
pub struct TokenHeader(Option<AsciiMetadataValue>);

impl TokenHeader {
    pub fn bearer(token: &str) -> Result<Self, Error> {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            Error::InvalidEndpoint("the token has characters a header cannot carry".into())
        })?;
        Ok(TokenHeader(Some(value)))
    }
}

impl tonic::service::Interceptor for TokenHeader {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to one node that sends the client's token.
pub type Conn = InterceptedService<Channel, TokenHeader>;

pub struct Router {
    endpoints: Vec<String>,
    pub(super) token: TokenHeader,
    /// TLS to the nodes (`https`), trusting the given CA; `None` is plain `http`.
    pub(super) tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
    leader: Mutex<Option<String>>,
    next_endpoint: AtomicUsize,
}

impl Router {
    pub fn new(endpoints: Vec<String>) -> Result<Self, Error> {
        if endpoints.is_empty() {
            return Err(Error::InvalidEndpoint(String::new()));
        }
        Ok(Router {
            endpoints,
            token: TokenHeader::default(),
            tls: None,
            channels: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
            next_endpoint: AtomicUsize::new(rand::random::<u16>() as usize),
        })
    }

    /// The first endpoint (`Target::First`), for calls made once, without retries.
    pub fn first(&self) -> &str {
        &self.endpoints[0]
    }

    pub fn channel(&self, addr: &str) -> Result<Conn, Error> {
        let mut channels = self
            .channels
            .lock()
            .expect("channel map lock is never poisoned");
        if let Some(channel) = channels.get(addr) {
            return Ok(InterceptedService::new(channel.clone(), self.token.clone()));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let mut endpoint =
            Endpoint::from_shared(url).map_err(|_| Error::InvalidEndpoint(addr.to_string()))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| Error::InvalidEndpoint(format!("{addr}: {e}")))?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(2))
            .initial_stream_window_size(crate::limits::GRPC_STREAM_WINDOW_BYTES)
            .initial_connection_window_size(crate::limits::GRPC_CONNECTION_WINDOW_BYTES)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(InterceptedService::new(channel, self.token.clone()))
    }

    /// The node for the next attempt: the known leader, else the next endpoint in
    /// turn, skipping `avoid` (the node that just failed) when there is another.
    fn pick(&self, target: Target, avoid: Option<&str>) -> String {
        if target == Target::First {
            return self.endpoints[0].clone();
        }
        if target != Target::Any {
            if let Some(leader) = self
                .leader
                .lock()
                .expect("leader lock is never poisoned")
                .clone()
            {
                return leader;
            }
        }
        let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
        let picked = &self.endpoints[i % self.endpoints.len()];
        if avoid == Some(picked.as_str()) && self.endpoints.len() > 1 {
            let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed);
            return self.endpoints[i % self.endpoints.len()].clone();
        }
        picked.clone()
    }

    fn set_leader(&self, leader: Option<String>) {
        *self.leader.lock().expect("leader lock is never poisoned") = leader;
    }

    /// Runs `attempt` against suitable nodes until it succeeds, fails for good, or
    /// the deadline passes.
    pub async fn call<T, F, Fut>(
        &self,
        target: Target,
        timeouts: Timeouts,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + timeouts.call;
        let mut backoff = Duration::from_millis(CLIENT_BACKOFF_MS_MIN);
        let mut last_error = Error::Unavailable("no attempt made".into());
        // The node whose answer to the previous attempt was a retryable failure: a
        // leader cut off from its quorum refuses, while followers that have not yet
        // elected a new one still name it; the next attempt goes elsewhere.
        let mut failed: Option<String> = None;
        for _ in 0..CLIENT_RETRIES_MAX {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout(format!(
                    "deadline passed; last error: {last_error}"
                )));
            }
            let addr = self.pick(target, failed.as_deref());
            let channel = self.channel(&addr)?;
            let limit = remaining.min(timeouts.attempt);
            let error = match tokio::time::timeout(limit, attempt(channel)).await {
                Ok(Ok(value)) => {
                    if target == Target::Leader {
                        self.set_leader(Some(addr));
                    }
                    return Ok(value);
                }
                Ok(Err(status)) => Error::from_status(&status),
                Err(_) => Error::Timeout(format!(
                    "{addr} did not answer within {} ms",
                    limit.as_millis()
                )),
            };
            match &error {
                // A hint back to the node that just failed is skipped once: it may
                // be a leader cut off from its quorum that followers still name.
                // Only once, because that node may also be the leader again (it
                // restarted and won).
                Error::NotLeader {
                    leader_addr: Some(leader),
                } if leader != &addr && failed.as_deref() != Some(leader.as_str()) => {
                    self.set_leader(Some(leader.clone()));
                }
                e if e.is_retryable() => {
                    failed = match e {
                        Error::NotLeader { .. } => None,
                        _ => Some(addr.clone()),
                    };
                    self.set_leader(None);
                    tokio::time::sleep(backoff.min(remaining)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(CLIENT_BACKOFF_MS_MAX));
                }
                _ => return Err(error),
            }
            last_error = error;
        }
        Err(Error::Unavailable(format!(
            "gave up after {CLIENT_RETRIES_MAX} attempts; last error: {last_error}"
        )))
    }
}

/// The largest message the SDK sends or accepts.
pub const MESSAGE_BYTES_MAX: usize = GRPC_MESSAGE_BYTES_MAX;
