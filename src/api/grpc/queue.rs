//! The `cairn.v1.Queue` gRPC service: converts messages to and from the queue
//! service (`api::service::queue`), which does the work (long polling included).

use tonic::{Request, Response, Status};

use super::convert;
use crate::api::service::queue::{QueueService, QueueWritten, ReceiveOptions};
use crate::proto::v1::{self, queue_server::Queue};
use crate::state::queue::{Delivery, QueueInfo};

pub struct QueueGrpc {
    queue: QueueService,
}

impl QueueGrpc {
    pub fn new(queue: QueueService) -> Self {
        QueueGrpc { queue }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn written(w: QueueWritten) -> Response<v1::QueueWriteReply> {
    Response::new(v1::QueueWriteReply {
        log_index: w.log_index,
        existed: w.existed,
        removed_count: w.removed_count,
    })
}

fn info(q: QueueInfo, applied_index: u64) -> v1::QueueInfo {
    v1::QueueInfo {
        name: q.name,
        length: q.length,
        created_ms: q.created_ms,
        applied_index,
    }
}

fn received(d: Delivery) -> v1::ReceivedMessage {
    v1::ReceivedMessage {
        seq: d.seq,
        body: d.body.into(),
        delivery_count: d.delivery_count,
        receipt: d.receipt,
        sent_ms: d.sent_ms,
    }
}

/// Every message in `messages`, and the first again in the single-message fields
/// that clients predating `max_messages` read.
fn receive_reply(deliveries: Vec<Delivery>) -> v1::ReceiveReply {
    let messages: Vec<v1::ReceivedMessage> = deliveries.into_iter().map(received).collect();
    let Some(first) = messages.first() else {
        return v1::ReceiveReply::default();
    };
    v1::ReceiveReply {
        found: true,
        seq: first.seq,
        // `Bytes`: a reference to the same buffer, not a copy.
        body: first.body.clone(),
        delivery_count: first.delivery_count,
        receipt: first.receipt.clone(),
        sent_ms: first.sent_ms,
        messages,
    }
}

#[tonic::async_trait]
impl Queue for QueueGrpc {
    async fn create_queue(&self, request: Request<v1::QueueRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let done = self
            .queue
            .create(convert::session(r.session), r.name)
            .await?;
        Ok(written(done))
    }

    async fn delete_queue(&self, request: Request<v1::QueueRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let done = self
            .queue
            .delete(convert::session(r.session), r.name)
            .await?;
        Ok(written(done))
    }

    async fn purge(&self, request: Request<v1::QueueRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let done = self
            .queue
            .purge(convert::session(r.session), r.name)
            .await?;
        Ok(written(done))
    }

    async fn list_queues(
        &self,
        request: Request<v1::ListQueuesRequest>,
    ) -> Reply<v1::ListQueuesReply> {
        let consistency = convert::consistency(request.into_inner().consistency)?;
        let (queues, applied_index) = self.queue.list(consistency).await?;
        Ok(Response::new(v1::ListQueuesReply {
            queues: queues.into_iter().map(|q| info(q, applied_index)).collect(),
            applied_index,
        }))
    }

    async fn get_queue(&self, request: Request<v1::GetQueueRequest>) -> Reply<v1::QueueInfo> {
        let r = request.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let (q, applied_index) = self.queue.get(&r.name, consistency).await?;
        Ok(Response::new(info(q, applied_index)))
    }

    async fn send(&self, request: Request<v1::SendRequest>) -> Reply<v1::SendReply> {
        let r = request.into_inner();
        let messages = r.messages.into_iter().map(|m| m.to_vec()).collect();
        let sent = self
            .queue
            .send(convert::session(r.session), r.queue, messages)
            .await?;
        Ok(Response::new(v1::SendReply {
            first_seq: sent.first_seq,
            count: sent.count,
            log_index: sent.log_index,
        }))
    }

    async fn receive(&self, request: Request<v1::ReceiveRequest>) -> Reply<v1::ReceiveReply> {
        let r = request.into_inner();
        let options = ReceiveOptions {
            lease_ms: r.lease_ms,
            wait_ms: r.wait_ms,
            max_messages: r.max_messages,
        };
        let deliveries = self
            .queue
            .receive_many(convert::session(r.session), r.queue, options)
            .await?;
        Ok(Response::new(receive_reply(deliveries)))
    }

    async fn ack(&self, request: Request<v1::ReceiptRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let session = convert::session(r.session);
        Ok(written(self.queue.ack(session, r.queue, r.receipt).await?))
    }

    async fn nack(&self, request: Request<v1::ReceiptRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let session = convert::session(r.session);
        Ok(written(self.queue.nack(session, r.queue, r.receipt).await?))
    }

    async fn extend(&self, request: Request<v1::ReceiptRequest>) -> Reply<v1::QueueWriteReply> {
        let r = request.into_inner();
        let session = convert::session(r.session);
        let done = self
            .queue
            .extend(session, r.queue, r.receipt, r.lease_ms)
            .await?;
        Ok(written(done))
    }
}
