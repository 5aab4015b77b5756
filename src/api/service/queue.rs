//! The queue service, transport-neutral, including long-polling receives.
//!
//! A receive with a wait does not busy-poll: it proposes a receive once, then
//! again only when local state shows a visible message (the first proposal lets
//! a retried receive find its answer in the session table), and otherwise
//! sleeps until a send to any queue is applied (a shared `Notify`) or a short
//! slice passes (so expiring leases are noticed). Empty receives change nothing
//! and are not kept in the session table, so the same session seq can be
//! proposed again.
//!
//! A batch receive (`max_messages` > 1) is one `ReceiveMany` command and waits the
//! same way: only while no message is visible, never to fill the batch.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::clock::now_ms;
use crate::limits::{QUEUE_PEEK_MESSAGES_MAX, QUEUE_WAIT_MS_MAX};
use crate::raft::{Consistency, Node, NodeError, Route};
use crate::state::queue::{self, Delivery, QueueCommand, QueueInfo, QueueResponse};
use crate::state::{ClientCommand, Command, Error, Response, SessionTag};

/// How often a waiting receive re-checks on its own (leases expire without a send).
const LONG_POLL_SLICE_MS: u64 = 200;

/// What a queue write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueWritten {
    pub log_index: u64,
    /// A create found the queue already there.
    pub existed: bool,
    /// Messages a purge removed.
    pub removed_count: u64,
}

/// What one receive asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiveOptions {
    /// 0 pops; otherwise the lease (visibility timeout).
    pub lease_ms: u64,
    /// Long polling: how long to wait while no message is visible.
    pub wait_ms: u64,
    /// 0 or 1: one message; at most `QUEUE_RECEIVE_MESSAGES_MAX`.
    pub max_messages: u32,
}

/// Where a send put its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub first_seq: u64,
    pub count: u64,
    pub log_index: u64,
}

#[derive(Clone)]
pub struct QueueService {
    node: Arc<Node>,
    route: Route,
}

impl QueueService {
    pub fn new(node: Arc<Node>, route: Route) -> Self {
        QueueService { node, route }
    }

    async fn write(
        &self,
        session: Option<SessionTag>,
        command: QueueCommand,
    ) -> Result<(QueueResponse, u64), ApiError> {
        command.validate(&self.node.limits)?;
        let command = ClientCommand {
            session,
            command: Command::Queue(command),
        };
        let (outcome, log_index) = self.node.submit(command, self.route, false).await?;
        match outcome? {
            Response::Queue(response) => Ok((response, log_index)),
            other => Err(ApiError::Internal(format!(
                "a queue write returned {other:?}"
            ))),
        }
    }

    async fn write_simple(
        &self,
        session: Option<SessionTag>,
        command: QueueCommand,
    ) -> Result<QueueWritten, ApiError> {
        let (response, log_index) = self.write(session, command).await?;
        let mut written = QueueWritten {
            log_index,
            ..Default::default()
        };
        match response {
            QueueResponse::Created { existed } => written.existed = existed,
            QueueResponse::Purged { removed_count } => written.removed_count = removed_count,
            _ => {}
        }
        Ok(written)
    }

    pub async fn create(
        &self,
        session: Option<SessionTag>,
        name: String,
    ) -> Result<QueueWritten, ApiError> {
        let queues_max = self.node.limits.queues_max;
        self.write_simple(session, QueueCommand::Create { name, queues_max })
            .await
    }

    pub async fn delete(
        &self,
        session: Option<SessionTag>,
        name: String,
    ) -> Result<QueueWritten, ApiError> {
        self.write_simple(session, QueueCommand::Delete { name })
            .await
    }

    pub async fn purge(
        &self,
        session: Option<SessionTag>,
        name: String,
    ) -> Result<QueueWritten, ApiError> {
        self.write_simple(session, QueueCommand::Purge { name })
            .await
    }

    pub async fn list(&self, consistency: Consistency) -> Result<(Vec<QueueInfo>, u64), ApiError> {
        let applied_index = self.node.read_barrier(consistency).await?;
        Ok((queue::list_queues(self.node.store.tree())?, applied_index))
    }

    pub async fn get(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<(QueueInfo, u64), ApiError> {
        let applied_index = self.node.read_barrier(consistency).await?;
        Ok((
            queue::get_queue(self.node.store.tree(), name)?,
            applied_index,
        ))
    }

    /// The first `limit` messages (at most `QUEUE_PEEK_MESSAGES_MAX`), taking none.
    pub async fn peek(
        &self,
        name: &str,
        limit: usize,
        consistency: Consistency,
    ) -> Result<(Vec<queue::Peeked>, u64), ApiError> {
        if limit > QUEUE_PEEK_MESSAGES_MAX {
            let (max, n) = (QUEUE_PEEK_MESSAGES_MAX as u64, limit as u64);
            return Err(Error::limit("limit", max, n, "messages").into());
        }
        let applied_index = self.node.read_barrier(consistency).await?;
        let tree = self.node.store.tree();
        Ok((queue::peek(tree, name, limit, now_ms())?, applied_index))
    }

    pub async fn send(
        &self,
        session: Option<SessionTag>,
        queue: String,
        messages: Vec<Vec<u8>>,
    ) -> Result<Sent, ApiError> {
        match self
            .write(session, QueueCommand::Send { queue, messages })
            .await?
        {
            (QueueResponse::Sent { first_seq, count }, log_index) => Ok(Sent {
                first_seq,
                count,
                log_index,
            }),
            (other, _) => Err(ApiError::Internal(format!("a send returned {other:?}"))),
        }
    }

    /// The next visible message of `queue`, waiting up to `wait_ms` for one.
    /// `lease_ms` 0 pops it; otherwise it is leased and comes back unless acked.
    pub async fn receive(
        &self,
        session: Option<SessionTag>,
        queue: String,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Option<Delivery>, ApiError> {
        let options = ReceiveOptions {
            lease_ms,
            wait_ms,
            max_messages: 1,
        };
        let deliveries = self.receive_many(session, queue, options).await?;
        Ok(deliveries.into_iter().next())
    }

    /// Up to `max_messages` visible messages from the head of `queue`, in order,
    /// each popped or leased as [`QueueService::receive`] would, in one Raft
    /// command. Fewer if fewer are visible or the reply would pass
    /// `QUEUE_RECEIVE_BYTES_MAX`; waits up to `wait_ms` only while none is.
    pub async fn receive_many(
        &self,
        session: Option<SessionTag>,
        queue: String,
        options: ReceiveOptions,
    ) -> Result<Vec<Delivery>, ApiError> {
        let ReceiveOptions {
            lease_ms,
            wait_ms,
            max_messages,
        } = options;
        if wait_ms > QUEUE_WAIT_MS_MAX {
            return Err(Error::limit("wait_ms", QUEUE_WAIT_MS_MAX, wait_ms, "ms").into());
        }
        // One message keeps the original command: its log entries read the same on
        // every node, including one that predates `ReceiveMany`.
        let command = if max_messages <= 1 {
            QueueCommand::Receive { queue, lease_ms }
        } else {
            QueueCommand::ReceiveMany {
                queue,
                lease_ms,
                max_messages,
            }
        };
        command.validate(&self.node.limits)?;
        // Where receives go to the leader, say so before waiting.
        if let Err(e @ NodeError::NotLeader { .. }) = self.node.check_route(self.route) {
            return Err(e.into());
        }
        self.long_poll(session, command, Duration::from_millis(wait_ms))
            .await
    }

    /// Proposes receives until one finds a message or the wait ends.
    async fn long_poll(
        &self,
        session: Option<SessionTag>,
        command: QueueCommand,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ApiError> {
        let (QueueCommand::Receive { queue: name, .. }
        | QueueCommand::ReceiveMany { queue: name, .. }) = &command
        else {
            return Err(ApiError::Internal("long_poll needs a receive".into()));
        };
        let deadline = Instant::now() + wait;
        let mut first_round = true;
        loop {
            // Register for wake-ups before looking, so a send applied in between
            // is not missed.
            let notified = self.node.queue_activity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let visible = queue::has_visible(self.node.store.tree(), name, now_ms())?;
            // The first round always proposes: if this is a retry of a receive that
            // already took a message, only the session table (reached through a
            // proposal) can return that message; the queue may be empty by now.
            if visible || wait.is_zero() || first_round {
                first_round = false;
                let (response, _) = self.write(session, command.clone()).await?;
                let deliveries = deliveries(response)?;
                if !deliveries.is_empty() || wait.is_zero() {
                    return Ok(deliveries);
                }
                // Empty: another consumer was faster.
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let slice = (deadline - now).min(Duration::from_millis(LONG_POLL_SLICE_MS));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(slice) => {}
            }
        }
    }

    pub async fn ack(
        &self,
        session: Option<SessionTag>,
        queue: String,
        receipt: String,
    ) -> Result<QueueWritten, ApiError> {
        self.write_simple(session, QueueCommand::Ack { queue, receipt })
            .await
    }

    pub async fn nack(
        &self,
        session: Option<SessionTag>,
        queue: String,
        receipt: String,
    ) -> Result<QueueWritten, ApiError> {
        self.write_simple(session, QueueCommand::Nack { queue, receipt })
            .await
    }

    pub async fn extend(
        &self,
        session: Option<SessionTag>,
        queue: String,
        receipt: String,
        lease_ms: u64,
    ) -> Result<QueueWritten, ApiError> {
        let command = QueueCommand::Extend {
            queue,
            receipt,
            lease_ms,
        };
        self.write_simple(session, command).await
    }
}

/// The messages a receive's response carries, single or batch.
fn deliveries(response: QueueResponse) -> Result<Vec<Delivery>, ApiError> {
    match response {
        QueueResponse::Received(delivery) => Ok(delivery.into_iter().collect()),
        QueueResponse::ReceivedMany(deliveries) => Ok(deliveries),
        other => Err(ApiError::Internal(format!("a receive returned {other:?}"))),
    }
}
