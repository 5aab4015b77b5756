//! The `cairn.v1.Queue` gRPC service, including long-polling receives.
//!
//! A receive with `wait_ms` waits on the leader without busy polling: it proposes a
//! receive once, then again only when its local state shows a visible message
//! (the first proposal lets a retried receive find its answer in the session
//! table), and otherwise sleeps
//! until a send to any queue is applied (a shared `Notify`) or a short slice passes
//! (so expiring leases are noticed). Empty receives change nothing and are not kept
//! in the session table, so the same session seq can be proposed again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::convert;
use crate::api::error::ApiError;
use crate::clock::now_ms;
use crate::limits::QUEUE_WAIT_MS_MAX;
use crate::proto::v1::{self, queue_server::Queue};
use crate::raft::{Node, NodeError};
use crate::state::queue::{self, Delivery, QueueCommand, QueueResponse};
use crate::state::{ClientCommand, Command, Error, Response as StateResponse, SessionTag};

/// How often a waiting receive re-checks on its own (leases expire without a send).
const LONG_POLL_SLICE_MS: u64 = 200;

pub struct QueueService {
    node: Arc<Node>,
}

type Reply<T> = Result<Response<T>, Status>;

impl QueueService {
    pub fn new(node: Arc<Node>) -> Self {
        QueueService { node }
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
        let (outcome, log_index) = self.node.write(command).await?;
        match outcome? {
            StateResponse::Queue(response) => Ok((response, log_index)),
            other => Err(ApiError::Internal(format!(
                "a queue write returned {other:?}"
            ))),
        }
    }

    async fn write_reply(
        &self,
        session: Option<v1::Session>,
        command: QueueCommand,
    ) -> Reply<v1::QueueWriteReply> {
        let (response, log_index) = self.write(convert::session(session), command).await?;
        let mut reply = v1::QueueWriteReply {
            log_index,
            ..Default::default()
        };
        match response {
            QueueResponse::Created { existed } => reply.existed = existed,
            QueueResponse::Purged { removed_count } => reply.removed_count = removed_count,
            _ => {}
        }
        Ok(Response::new(reply))
    }

    /// Proposes receives until one finds a message or the wait ends.
    async fn long_poll(
        &self,
        session: Option<SessionTag>,
        command: QueueCommand,
        wait: Duration,
    ) -> Result<Option<Delivery>, ApiError> {
        let QueueCommand::Receive { queue: name, .. } = &command else {
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
            let visible = queue::has_visible(self.node.store.tree(), name, now_ms())
                .map_err(ApiError::from)?;
            // The first round always proposes: if this is a retry of a receive that
            // already took a message, only the session table (reached through a
            // proposal) can return that message; the queue may be empty by now.
            if visible || wait.is_zero() || first_round {
                first_round = false;
                let (response, _) = self.write(session, command.clone()).await?;
                match response {
                    QueueResponse::Received(Some(delivery)) => return Ok(Some(delivery)),
                    QueueResponse::Received(None) if wait.is_zero() => return Ok(None),
                    QueueResponse::Received(None) => {} // another consumer was faster
                    other => {
                        return Err(ApiError::Internal(format!("a receive returned {other:?}")))
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let slice = (deadline - now).min(Duration::from_millis(LONG_POLL_SLICE_MS));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(slice) => {}
            }
        }
    }
}

#[tonic::async_trait]
impl Queue for QueueService {
    async fn create_queue(&self, request: Request<v1::QueueRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let command = QueueCommand::Create {
            name: r.name,
            queues_max: self.node.limits.queues_max,
        };
        self.write_reply(r.session, command).await
    }

    async fn delete_queue(&self, request: Request<v1::QueueRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        self.write_reply(r.session, QueueCommand::Delete { name: r.name })
            .await
    }

    async fn purge(&self, request: Request<v1::QueueRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        self.write_reply(r.session, QueueCommand::Purge { name: r.name })
            .await
    }

    async fn list_queues(
        &self,
        request: Request<v1::ListQueuesRequest>,
    ) -> Reply<v1::ListQueuesReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let applied_index = self
            .node
            .read_barrier(consistency)
            .await
            .map_err(ApiError::from)?;
        let queues = queue::list_queues(self.node.store.tree())
            .map_err(ApiError::from)?
            .into_iter()
            .map(|q| v1::QueueInfo {
                name: q.name,
                length: q.length,
                created_ms: q.created_ms,
                applied_index,
            })
            .collect();
        Ok(Response::new(v1::ListQueuesReply {
            queues,
            applied_index,
        }))
    }

    async fn get_queue(&self, request: Request<v1::GetQueueRequest>) -> Reply<v1::QueueInfo> {
        let r = request.into_inner();
        let applied_index = self
            .node
            .read_barrier(convert::consistency(r.consistency)?)
            .await
            .map_err(ApiError::from)?;
        let q = queue::get_queue(self.node.store.tree(), &r.name).map_err(ApiError::from)?;
        Ok(Response::new(v1::QueueInfo {
            name: q.name,
            length: q.length,
            created_ms: q.created_ms,
            applied_index,
        }))
    }

    async fn send(&self, request: Request<v1::SendRequest>) -> Reply<v1::SendReply> {
        let r = request.into_inner();
        let messages = r.messages.into_iter().map(|m| m.to_vec()).collect();
        let command = QueueCommand::Send {
            queue: r.queue,
            messages,
        };
        match self.write(convert::session(r.session), command).await? {
            (QueueResponse::Sent { first_seq, count }, log_index) => {
                Ok(Response::new(v1::SendReply {
                    first_seq,
                    count,
                    log_index,
                }))
            }
            (other, _) => Err(ApiError::Internal(format!("a send returned {other:?}")).into()),
        }
    }

    async fn receive(&self, request: Request<v1::ReceiveRequest>) -> Reply<v1::ReceiveReply> {
        let r = request.into_inner();
        if r.wait_ms > QUEUE_WAIT_MS_MAX {
            return Err(ApiError::from(Error::limit(
                "wait_ms",
                QUEUE_WAIT_MS_MAX,
                r.wait_ms,
                "ms",
            ))
            .into());
        }
        let command = QueueCommand::Receive {
            queue: r.queue,
            lease_ms: r.lease_ms,
        };
        command
            .validate(&self.node.limits)
            .map_err(ApiError::from)?;
        // Only the leader can receive; say so before waiting.
        if let Err(e @ NodeError::NotLeader { .. }) = self.node.check_leader() {
            return Err(ApiError::from(e).into());
        }
        let wait = Duration::from_millis(r.wait_ms);
        let reply = match self
            .long_poll(convert::session(r.session), command, wait)
            .await?
        {
            Some(d) => v1::ReceiveReply {
                found: true,
                seq: d.seq,
                body: d.body.into(),
                delivery_count: d.delivery_count,
                receipt: d.receipt,
                sent_ms: d.sent_ms,
            },
            None => v1::ReceiveReply::default(),
        };
        Ok(Response::new(reply))
    }

    async fn ack(&self, request: Request<v1::ReceiptRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        self.write_reply(
            r.session,
            QueueCommand::Ack {
                queue: r.queue,
                receipt: r.receipt,
            },
        )
        .await
    }

    async fn nack(&self, request: Request<v1::ReceiptRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        self.write_reply(
            r.session,
            QueueCommand::Nack {
                queue: r.queue,
                receipt: r.receipt,
            },
        )
        .await
    }

    async fn extend(&self, request: Request<v1::ReceiptRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let command = QueueCommand::Extend {
            queue: r.queue,
            receipt: r.receipt,
            lease_ms: r.lease_ms,
        };
        self.write_reply(r.session, command).await
    }
}
