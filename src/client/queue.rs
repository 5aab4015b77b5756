//! Queue calls of the SDK.
//!
//! `receive` with a lease is at-least-once: ack the receipt when done, or the
//! message comes back after the lease. Without a lease it is a pop: the message is
//! gone once the cluster answers (at-most-once for a consumer that then crashes).
//!
//! `receive_batch` takes up to N messages from the head in one atomic step, each
//! popped or leased exactly as `receive` would (every leased message has its own
//! receipt). It waits only while the queue has no visible message, and may return
//! fewer than asked: those visible, within about 1 MiB of bodies.

use std::time::Duration;

use bytes::Bytes;

use super::{queue_client, Client, Error, Target, Timeouts};
use crate::proto::v1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub seq: u64,
    pub body: Bytes,
    /// 1 on first delivery; more after leases expired or nacks.
    pub delivery_count: u32,
    /// For ack / nack / extend; empty for pops.
    pub receipt: String,
    pub sent_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub name: String,
    /// Messages stored: visible and leased.
    pub length: u64,
    pub created_ms: u64,
}

/// How to receive: pop (no lease) or lease, and how long to wait for a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveOptions {
    pub lease: Option<Duration>,
    /// Long polling: wait up to this long (at most 20 s) for a message.
    pub wait: Duration,
}

impl From<v1::ReceivedMessage> for Message {
    fn from(m: v1::ReceivedMessage) -> Self {
        Message {
            seq: m.seq,
            body: m.body,
            delivery_count: m.delivery_count,
            receipt: m.receipt,
            sent_ms: m.sent_ms,
        }
    }
}

/// The message in a reply's single-message fields (the first one received).
fn first_message(reply: v1::ReceiveReply) -> Option<Message> {
    reply.found.then(|| Message {
        seq: reply.seq,
        body: reply.body,
        delivery_count: reply.delivery_count,
        receipt: reply.receipt,
        sent_ms: reply.sent_ms,
    })
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Client {
    /// Creates a queue; succeeds if it already exists.
    pub async fn create_queue(&self, name: &str) -> Result<(), Error> {
        self.queue_write(name, |mut c, request| async move {
            c.create_queue(request).await
        })
        .await
        .map(|_| ())
    }

    /// Deletes a queue and its messages.
    pub async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        self.queue_write(name, |mut c, request| async move {
            c.delete_queue(request).await
        })
        .await
        .map(|_| ())
    }

    /// Removes every message; returns how many.
    pub async fn purge_queue(&self, name: &str) -> Result<u64, Error> {
        let reply = self
            .queue_write(name, |mut c, request| async move { c.purge(request).await })
            .await?;
        Ok(reply.removed_count)
    }

    async fn queue_write<F, Fut>(
        &self,
        name: &str,
        mut attempt: F,
    ) -> Result<v1::QueueWriteReply, Error>
    where
        F: FnMut(super::QueueClient, v1::QueueRequest) -> Fut,
        Fut: std::future::Future<
            Output = Result<tonic::Response<v1::QueueWriteReply>, tonic::Status>,
        >,
    {
        self.write_with(Duration::ZERO, |channel, session| {
            attempt(
                queue_client(channel),
                v1::QueueRequest {
                    session: Some(session),
                    name: name.to_string(),
                },
            )
        })
        .await
    }

    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>, Error> {
        let timeouts = Timeouts::new(self.inner.call_timeout, Duration::ZERO);
        let reply = self
            .inner
            .router
            .call(Target::LeaderPreferred, timeouts, |channel| async move {
                let request = v1::ListQueuesRequest {
                    consistency: v1::Consistency::Linearizable as i32,
                };
                queue_client(channel)
                    .list_queues(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        Ok(reply
            .queues
            .into_iter()
            .map(|q| QueueInfo {
                name: q.name,
                length: q.length,
                created_ms: q.created_ms,
            })
            .collect())
    }

    /// Messages stored in the queue (visible and leased), linearizable.
    pub async fn queue_length(&self, name: &str) -> Result<u64, Error> {
        let timeouts = Timeouts::new(self.inner.call_timeout, Duration::ZERO);
        let reply = self
            .inner
            .router
            .call(Target::LeaderPreferred, timeouts, |channel| async move {
                let request = v1::GetQueueRequest {
                    name: name.to_string(),
                    consistency: 0,
                };
                queue_client(channel)
                    .get_queue(request)
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await?;
        Ok(reply.length)
    }

    /// Sends one message; returns its sequence number.
    pub async fn send(&self, queue: &str, message: &[u8]) -> Result<u64, Error> {
        self.send_batch(queue, &[message]).await
    }

    /// Sends messages in order, atomically; returns the first one's sequence number.
    pub async fn send_batch(&self, queue: &str, messages: &[&[u8]]) -> Result<u64, Error> {
        let messages: Vec<Bytes> = messages.iter().map(|m| Bytes::copy_from_slice(m)).collect();
        let reply = self
            .write_with(Duration::ZERO, |channel, session| {
                let request = v1::SendRequest {
                    session: Some(session),
                    queue: queue.to_string(),
                    messages: messages.clone(),
                };
                async move { queue_client(channel).send(request).await }
            })
            .await?;
        Ok(reply.first_seq)
    }

    /// Receives the head message (`None` if the queue stayed empty for `wait`).
    pub async fn receive(
        &self,
        queue: &str,
        options: ReceiveOptions,
    ) -> Result<Option<Message>, Error> {
        let reply = self.receive_call(queue, 1, options).await?;
        Ok(first_message(reply))
    }

    /// Receives up to `max_messages` (at most 256) from the head of the queue, in
    /// order, in one atomic step; empty if the queue stayed empty for `wait`. The
    /// wait ends at the first visible message: the cluster returns what is there
    /// then (at most about 1 MiB of bodies) instead of waiting to fill the batch,
    /// so expect fewer than asked. With a lease, ack each receipt on its own.
    pub async fn receive_batch(
        &self,
        queue: &str,
        max_messages: u32,
        options: ReceiveOptions,
    ) -> Result<Vec<Message>, Error> {
        let reply = self.receive_call(queue, max_messages, options).await?;
        if reply.messages.is_empty() {
            // A cluster that predates batches ignores max_messages and answers at
            // most one message, in the single-message fields only.
            return Ok(first_message(reply).into_iter().collect());
        }
        Ok(reply.messages.into_iter().map(Message::from).collect())
    }

    async fn receive_call(
        &self,
        queue: &str,
        max_messages: u32,
        options: ReceiveOptions,
    ) -> Result<v1::ReceiveReply, Error> {
        let lease_ms = match options.lease {
            Some(lease) if lease.is_zero() => {
                let message = "a lease must be positive; use None to pop".to_string();
                return Err(Error::InvalidArgument {
                    field: "lease_ms".into(),
                    message,
                });
            }
            Some(lease) => ms(lease).max(1),
            None => 0,
        };
        let wait_ms = ms(options.wait);
        self.write_with(options.wait, |channel, session| {
            let request = v1::ReceiveRequest {
                session: Some(session),
                queue: queue.to_string(),
                lease_ms,
                wait_ms,
                max_messages,
            };
            async move { queue_client(channel).receive(request).await }
        })
        .await
    }

    /// Deletes a leased message for good.
    pub async fn ack(&self, queue: &str, receipt: &str) -> Result<(), Error> {
        self.receipt_write(queue, receipt, 0, Op::Ack).await
    }

    /// Returns a leased message to the queue at once (at its original position).
    pub async fn nack(&self, queue: &str, receipt: &str) -> Result<(), Error> {
        self.receipt_write(queue, receipt, 0, Op::Nack).await
    }

    /// Makes a lease expire `lease` from now.
    pub async fn extend(&self, queue: &str, receipt: &str, lease: Duration) -> Result<(), Error> {
        self.receipt_write(queue, receipt, ms(lease), Op::Extend)
            .await
    }

    async fn receipt_write(
        &self,
        queue: &str,
        receipt: &str,
        lease_ms: u64,
        op: Op,
    ) -> Result<(), Error> {
        self.write_with(Duration::ZERO, |channel, session| {
            let request = v1::ReceiptRequest {
                session: Some(session),
                queue: queue.to_string(),
                receipt: receipt.to_string(),
                lease_ms,
            };
            let mut client = queue_client(channel);
            async move {
                match op {
                    Op::Ack => client.ack(request).await,
                    Op::Nack => client.nack(request).await,
                    Op::Extend => client.extend(request).await,
                }
            }
        })
        .await
        .map(|_| ())
    }
}

#[derive(Clone, Copy)]
enum Op {
    Ack,
    Nack,
    Extend,
}
