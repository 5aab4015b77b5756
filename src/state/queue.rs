//! Queues: named FIFO logs of messages with pop and lease/ack delivery.
//!
//! Owns queue commands and reads. A message gets its sequence number when its send
//! is applied; a receive always takes the lowest-numbered *visible* message. A
//! leased message is hidden until `visible_at_ms` (leader-stamped time) and then
//! becomes visible again at its original position. Popped and acked messages are
//! deleted at once, so a queue's storage is its backlog. Purge and delete switch
//! the queue to a fresh id and leave the old id's messages to the sweeper.
//!
//! A batch receive (`ReceiveMany`) takes up to N visible messages from the head in
//! one command, each exactly as a single receive would. Raft logs, snapshots and
//! session results are bincode, which numbers enum variants by position: new
//! variants go at the end of each enum and existing ones never change.

use serde::{Deserialize, Serialize};

use super::kv::validate_name;
use super::{decode, encode, keys, meta_u64, ApplyContext, Error, ReadError, Txn};
use crate::limits::{
    Limits, QUEUE_BATCH_MESSAGES_MAX, QUEUE_LEASE_MS_MAX, QUEUE_RECEIVE_BYTES_MAX,
    QUEUE_RECEIVE_MESSAGES_MAX, QUEUE_RECEIVE_MESSAGE_OVERHEAD_BYTES, QUEUE_SCAN_MESSAGES_MAX,
    QUEUE_SEND_BYTES_MAX,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QueueCommand {
    /// Idempotent: an existing queue is success.
    Create {
        name: String,
        queues_max: u64,
    },
    Delete {
        name: String,
    },
    Purge {
        name: String,
    },
    /// Appends every message, in order, atomically.
    Send {
        queue: String,
        messages: Vec<Vec<u8>>,
    },
    /// `lease_ms == 0`: pop (remove and return). Otherwise lease: hide for
    /// `lease_ms` and return a receipt.
    Receive {
        queue: String,
        lease_ms: u64,
    },
    Ack {
        queue: String,
        receipt: String,
    },
    /// Makes a leased message visible again at once.
    Nack {
        queue: String,
        receipt: String,
    },
    /// Extends a lease to `lease_ms` from now.
    Extend {
        queue: String,
        receipt: String,
        lease_ms: u64,
    },
    /// `Receive` of up to `max_messages` visible messages from the head, in order,
    /// each popped or leased as `Receive` would; fewer if fewer are visible or the
    /// reply would pass `QUEUE_RECEIVE_BYTES_MAX`. 0 counts as 1.
    ReceiveMany {
        queue: String,
        lease_ms: u64,
        max_messages: u32,
    },
}

/// `ReceivedMany` holds a `ReceiveMany`'s deliveries in queue order (empty if none
/// was visible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueResponse {
    Created { existed: bool },
    Deleted,
    Purged { removed_count: u64 },
    Sent { first_seq: u64, count: u64 },
    Received(Option<Delivery>),
    Acked,
    ReceivedMany(Vec<Delivery>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub body: Vec<u8>,
    /// 1 on first delivery.
    pub delivery_count: u32,
    /// Empty for pops.
    pub receipt: String,
    pub sent_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    /// Changes on purge; messages hang off it.
    pub id: u64,
    pub created_ms: u64,
    pub next_seq: u64,
    /// Messages stored (visible and leased).
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MessageRecord {
    body: Vec<u8>,
    sent_ms: u64,
    delivery_count: u32,
    /// 0: visible. Otherwise hidden until this time (a lease).
    visible_at_ms: u64,
}

impl MessageRecord {
    fn is_visible(&self, now_ms: u64) -> bool {
        self.visible_at_ms <= now_ms
    }
}

const META_NEXT_QUEUE_ID: &str = "next_queue_id";
const META_QUEUE_COUNT: &str = "queue_count";

impl QueueCommand {
    /// Leader-side checks of client input; a rejected command is never proposed.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        let name = match self {
            QueueCommand::Create { name, .. }
            | QueueCommand::Delete { name }
            | QueueCommand::Purge { name } => name,
            QueueCommand::Send { queue, .. }
            | QueueCommand::Receive { queue, .. }
            | QueueCommand::ReceiveMany { queue, .. }
            | QueueCommand::Ack { queue, .. }
            | QueueCommand::Nack { queue, .. }
            | QueueCommand::Extend { queue, .. } => queue,
        };
        validate_name("queue", name, limits)?;
        match self {
            QueueCommand::Send { messages, .. } => validate_messages(messages, limits),
            QueueCommand::Receive { lease_ms, .. } | QueueCommand::Extend { lease_ms, .. } => {
                validate_lease(*lease_ms)
            }
            QueueCommand::ReceiveMany {
                lease_ms,
                max_messages,
                ..
            } => {
                validate_receive_count(*max_messages)?;
                validate_lease(*lease_ms)
            }
            _ => Ok(()),
        }
    }
}

fn validate_messages(messages: &[Vec<u8>], limits: &Limits) -> Result<(), Error> {
    if messages.is_empty() {
        return Err(Error::invalid("messages", "send at least one message"));
    }
    let count = messages.len() as u64;
    if count > QUEUE_BATCH_MESSAGES_MAX {
        return Err(Error::limit(
            "messages",
            QUEUE_BATCH_MESSAGES_MAX,
            count,
            "messages",
        ));
    }
    let bytes_max = limits.queue_message_bytes_max;
    if let Some(m) = messages.iter().find(|m| m.len() as u64 > bytes_max) {
        return Err(Error::limit("message", bytes_max, m.len() as u64, "bytes"));
    }
    let total: u64 = messages.iter().map(|m| m.len() as u64).sum();
    if total > QUEUE_SEND_BYTES_MAX {
        return Err(Error::limit(
            "messages",
            QUEUE_SEND_BYTES_MAX,
            total,
            "bytes in one send",
        ));
    }
    Ok(())
}

/// `max_messages` of a receive; 0 and 1 both mean one message.
pub fn validate_receive_count(max_messages: u32) -> Result<(), Error> {
    if max_messages > QUEUE_RECEIVE_MESSAGES_MAX {
        return Err(Error::limit(
            "max_messages",
            QUEUE_RECEIVE_MESSAGES_MAX.into(),
            max_messages.into(),
            "messages in one receive",
        ));
    }
    Ok(())
}

fn validate_lease(lease_ms: u64) -> Result<(), Error> {
    if lease_ms > QUEUE_LEASE_MS_MAX {
        return Err(Error::limit("lease_ms", QUEUE_LEASE_MS_MAX, lease_ms, "ms"));
    }
    Ok(())
}

fn queue_key(name: &str) -> Vec<u8> {
    let mut k = vec![keys::QUEUE];
    k.extend_from_slice(name.as_bytes());
    k
}

fn message_prefix(queue_id: u64) -> Vec<u8> {
    let mut k = vec![keys::QUEUE_MESSAGE];
    k.extend_from_slice(&queue_id.to_be_bytes());
    k
}

fn message_key(queue_id: u64, seq: u64) -> Vec<u8> {
    let mut k = message_prefix(queue_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Marker for messages of a purged or deleted queue id, purged by the sweeper.
pub fn dropped_key(queue_id: u64) -> Vec<u8> {
    let mut k = vec![keys::QUEUE_DROPPED];
    k.extend_from_slice(&queue_id.to_be_bytes());
    k
}

pub fn dropped_messages_prefix(queue_id: u64) -> Vec<u8> {
    message_prefix(queue_id)
}

/// Receipts name the message and the delivery they came from, so an ack from a
/// consumer whose lease expired (and whose message went to someone else) fails.
fn receipt(queue_id: u64, seq: u64, delivery_count: u32) -> String {
    format!("{queue_id}.{seq}.{delivery_count}")
}

fn parse_receipt(receipt: &str) -> Result<(u64, u64, u32), Error> {
    let bad = || Error::invalid("receipt", "not a receipt this cluster issued");
    let mut parts = receipt.split('.');
    let queue_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let delivery = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((queue_id, seq, delivery))
}

fn queue_not_found(name: &str) -> Error {
    Error::NotFound {
        what: format!("queue {name:?}"),
    }
}

fn load_queue(txn: &Txn<'_>, name: &str) -> sled::Result<Option<QueueRecord>> {
    txn.get(&queue_key(name))?.map(|b| decode(&b)).transpose()
}

type Applied = sled::Result<Result<QueueResponse, Error>>;

pub fn apply(txn: &mut Txn<'_>, ctx: ApplyContext, cmd: &QueueCommand) -> Applied {
    match cmd {
        QueueCommand::Create { name, queues_max } => create(txn, ctx, name, *queues_max),
        QueueCommand::Delete { name } => delete(txn, name),
        QueueCommand::Purge { name } => purge(txn, name),
        QueueCommand::Send { queue, messages } => {
            with_queue(txn, queue, |txn, q| send(txn, ctx, q, messages))
        }
        QueueCommand::Receive { queue, lease_ms } => {
            with_queue(txn, queue, |txn, q| receive(txn, ctx, q, *lease_ms))
        }
        QueueCommand::ReceiveMany {
            queue,
            lease_ms,
            max_messages,
        } => with_queue(txn, queue, |txn, q| {
            receive_many(txn, ctx, q, *lease_ms, *max_messages)
        }),
        QueueCommand::Ack { queue, receipt } => {
            with_queue(txn, queue, |txn, q| ack(txn, ctx, q, receipt))
        }
        QueueCommand::Nack { queue, receipt } => {
            with_queue(txn, queue, |txn, q| set_visibility(txn, ctx, q, receipt, 0))
        }
        QueueCommand::Extend {
            queue,
            receipt,
            lease_ms,
        } => with_queue(txn, queue, |txn, q| {
            set_visibility(txn, ctx, q, receipt, ctx.now_ms.saturating_add(*lease_ms))
        }),
    }
}

/// Loads the queue, runs `f`, and stores the record if `f` changed it.
fn with_queue(
    txn: &mut Txn<'_>,
    name: &str,
    f: impl FnOnce(&mut Txn<'_>, &mut QueueRecord) -> Applied,
) -> Applied {
    let Some(mut record) = load_queue(txn, name)? else {
        return Ok(Err(queue_not_found(name)));
    };
    let before = record.clone();
    let result = f(txn, &mut record)?;
    if record != before {
        txn.put(queue_key(name), encode(&record));
    }
    Ok(result)
}

fn create(txn: &mut Txn<'_>, ctx: ApplyContext, name: &str, queues_max: u64) -> Applied {
    if load_queue(txn, name)?.is_some() {
        return Ok(Ok(QueueResponse::Created { existed: true }));
    }
    let count = meta_u64(txn, META_QUEUE_COUNT)?;
    if count >= queues_max {
        return Ok(Err(Error::limit("queues", queues_max, count + 1, "queues")));
    }
    let id = next_queue_id(txn)?;
    txn.put(keys::meta(META_QUEUE_COUNT), encode(&(count + 1)));
    let record = QueueRecord {
        id,
        created_ms: ctx.now_ms,
        next_seq: 1,
        length: 0,
    };
    txn.put(queue_key(name), encode(&record));
    Ok(Ok(QueueResponse::Created { existed: false }))
}

/// Ids start at 1 and are never reused, so a purged id's leftovers stay invisible.
fn next_queue_id(txn: &mut Txn<'_>) -> sled::Result<u64> {
    let id = meta_u64(txn, META_NEXT_QUEUE_ID)?.max(1);
    txn.put(keys::meta(META_NEXT_QUEUE_ID), encode(&(id + 1)));
    Ok(id)
}

fn delete(txn: &mut Txn<'_>, name: &str) -> Applied {
    let Some(record) = load_queue(txn, name)? else {
        return Ok(Err(queue_not_found(name)));
    };
    let count = meta_u64(txn, META_QUEUE_COUNT)?;
    txn.put(
        keys::meta(META_QUEUE_COUNT),
        encode(&super::decrement(count, 1, "queues")),
    );
    txn.remove(queue_key(name));
    txn.put(dropped_key(record.id), Vec::new());
    Ok(Ok(QueueResponse::Deleted))
}

fn purge(txn: &mut Txn<'_>, name: &str) -> Applied {
    let Some(mut record) = load_queue(txn, name)? else {
        return Ok(Err(queue_not_found(name)));
    };
    let removed_count = record.length;
    txn.put(dropped_key(record.id), Vec::new());
    record.id = next_queue_id(txn)?;
    record.length = 0;
    txn.put(queue_key(name), encode(&record));
    Ok(Ok(QueueResponse::Purged { removed_count }))
}

fn send(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    queue: &mut QueueRecord,
    messages: &[Vec<u8>],
) -> Applied {
    let first_seq = queue.next_seq;
    for body in messages {
        let message = MessageRecord {
            body: body.clone(),
            sent_ms: ctx.now_ms,
            delivery_count: 0,
            visible_at_ms: 0,
        };
        txn.put(message_key(queue.id, queue.next_seq), encode(&message));
        queue.next_seq += 1;
        queue.length += 1;
    }
    Ok(Ok(QueueResponse::Sent {
        first_seq,
        count: messages.len() as u64,
    }))
}

/// The lowest-numbered visible message, scanning at most `QUEUE_SCAN_MESSAGES_MAX`
/// leased ones before giving up (the queue then looks empty until leases expire).
fn head(txn: &Txn<'_>, queue_id: u64, now_ms: u64) -> sled::Result<Option<(u64, MessageRecord)>> {
    let prefix = message_prefix(queue_id);
    let found = txn.find_in_prefix(&prefix, QUEUE_SCAN_MESSAGES_MAX, |_, value| {
        Ok(decode::<MessageRecord>(value)?.is_visible(now_ms))
    })?;
    match found {
        Some((key, value)) => Ok(Some((
            keys::u64_at(&key, prefix.len()).unwrap_or(0),
            decode(&value)?,
        ))),
        None => Ok(None),
    }
}

fn receive(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    queue: &mut QueueRecord,
    lease_ms: u64,
) -> Applied {
    let Some((seq, message)) = head(txn, queue.id, ctx.now_ms)? else {
        return Ok(Ok(QueueResponse::Received(None)));
    };
    let delivery = deliver(txn, ctx, queue, lease_ms, seq, message);
    Ok(Ok(QueueResponse::Received(Some(delivery))))
}

/// Pops (`lease_ms == 0`) or leases one visible message: the one step every
/// receive, single or batch, takes per message.
fn deliver(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    queue: &mut QueueRecord,
    lease_ms: u64,
    seq: u64,
    mut message: MessageRecord,
) -> Delivery {
    debug_assert!(
        message.is_visible(ctx.now_ms),
        "only visible messages are delivered"
    );
    message.delivery_count = message.delivery_count.saturating_add(1);
    let key = message_key(queue.id, seq);
    let receipt = if lease_ms == 0 {
        txn.remove(key);
        queue.length -= 1;
        String::new()
    } else {
        message.visible_at_ms = ctx.now_ms.saturating_add(lease_ms).max(1);
        txn.put(key, encode(&message));
        receipt(queue.id, seq, message.delivery_count)
    };
    Delivery {
        seq,
        body: message.body,
        delivery_count: message.delivery_count,
        receipt,
        sent_ms: message.sent_ms,
    }
}

fn receive_many(
    txn: &mut Txn<'_>,
    ctx: ApplyContext,
    queue: &mut QueueRecord,
    lease_ms: u64,
    max_messages: u32,
) -> Applied {
    let visible = visible_from_head(txn, queue.id, ctx.now_ms, max_messages.max(1))?;
    let deliveries = visible
        .into_iter()
        .map(|(seq, message)| deliver(txn, ctx, queue, lease_ms, seq, message))
        .collect();
    Ok(Ok(QueueResponse::ReceivedMany(deliveries)))
}

/// Up to `count` visible messages from the head in seq order, in one scan that
/// looks past at most `QUEUE_SCAN_MESSAGES_MAX` leased ones (as a single receive
/// does) and stops before the message that would take the reply past
/// `QUEUE_RECEIVE_BYTES_MAX` (the first is taken whatever its size, or a message
/// larger than the bound could never be received in a batch).
fn visible_from_head(
    txn: &Txn<'_>,
    queue_id: u64,
    now_ms: u64,
    count: u32,
) -> sled::Result<Vec<(u64, MessageRecord)>> {
    let prefix = message_prefix(queue_id);
    let count = count as usize;
    // Validation bounds the count; the capacity does not trust it.
    let capacity = count.min(QUEUE_RECEIVE_MESSAGES_MAX as usize);
    let mut taken: Vec<(u64, MessageRecord)> = Vec::with_capacity(capacity);
    let mut reply_bytes = 0u64;
    let mut leased_skipped = 0usize;
    // `find_in_prefix` stops at the first pair the closure accepts: here "accept"
    // means "the batch is complete", and the closure collects on the way.
    let examined_max = QUEUE_SCAN_MESSAGES_MAX.saturating_add(count);
    txn.find_in_prefix(&prefix, examined_max, |key, value| {
        let message: MessageRecord = decode(value)?;
        if !message.is_visible(now_ms) {
            leased_skipped += 1;
            return Ok(leased_skipped >= QUEUE_SCAN_MESSAGES_MAX);
        }
        let bytes = message.body.len() as u64 + QUEUE_RECEIVE_MESSAGE_OVERHEAD_BYTES;
        if !taken.is_empty() && reply_bytes + bytes > QUEUE_RECEIVE_BYTES_MAX {
            return Ok(true);
        }
        reply_bytes += bytes;
        let seq = keys::u64_at(key, prefix.len()).unwrap_or(0);
        taken.push((seq, message));
        Ok(taken.len() >= count)
    })?;
    debug_assert!(taken.len() <= count, "a batch never passes its count");
    debug_assert!(
        taken.windows(2).all(|w| w[0].0 < w[1].0),
        "a batch is in seq order"
    );
    Ok(taken)
}

/// The leased message a receipt names, if that delivery is still the current one.
fn leased(
    txn: &Txn<'_>,
    queue: &QueueRecord,
    receipt_text: &str,
) -> sled::Result<Result<(Vec<u8>, MessageRecord), Error>> {
    let (queue_id, seq, delivery) = match parse_receipt(receipt_text) {
        Ok(parts) => parts,
        Err(e) => return Ok(Err(e)),
    };
    let stale = || Error::NotFound {
        what: format!("lease {receipt_text:?} (acked, purged or redelivered)"),
    };
    if queue_id != queue.id {
        return Ok(Err(stale()));
    }
    let key = message_key(queue_id, seq);
    let Some(bytes) = txn.get(&key)? else {
        return Ok(Err(stale()));
    };
    let message: MessageRecord = decode(&bytes)?;
    if message.delivery_count != delivery || message.visible_at_ms == 0 {
        return Ok(Err(stale()));
    }
    Ok(Ok((key, message)))
}

fn ack(txn: &mut Txn<'_>, _ctx: ApplyContext, queue: &mut QueueRecord, receipt: &str) -> Applied {
    let (key, _) = match leased(txn, queue, receipt)? {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    txn.remove(key);
    queue.length -= 1;
    Ok(Ok(QueueResponse::Acked))
}

fn set_visibility(
    txn: &mut Txn<'_>,
    _ctx: ApplyContext,
    queue: &mut QueueRecord,
    receipt: &str,
    visible_at_ms: u64,
) -> Applied {
    let (key, mut message) = match leased(txn, queue, receipt)? {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    // A nack keeps the message "leased" (non-zero) but visible now, so its receipt
    // stays valid until someone receives it again.
    message.visible_at_ms = visible_at_ms.max(1);
    txn.put(key, encode(&message));
    Ok(Ok(QueueResponse::Acked))
}

// ---- reads ----

pub struct QueueInfo {
    pub name: String,
    pub length: u64,
    pub created_ms: u64,
}

pub fn get_queue(tree: &sled::Tree, name: &str) -> Result<QueueInfo, ReadError> {
    match tree.get(queue_key(name))? {
        Some(bytes) => {
            let record: QueueRecord = decode(&bytes)?;
            Ok(QueueInfo {
                name: name.to_string(),
                length: record.length,
                created_ms: record.created_ms,
            })
        }
        None => Err(queue_not_found(name).into()),
    }
}

pub fn list_queues(tree: &sled::Tree) -> Result<Vec<QueueInfo>, ReadError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix([keys::QUEUE]) {
        let (key, value) = item?;
        let record: QueueRecord = decode(&value)?;
        let name = String::from_utf8_lossy(&key[1..]).into_owned();
        out.push(QueueInfo {
            name,
            length: record.length,
            created_ms: record.created_ms,
        });
    }
    Ok(out)
}

/// A message seen without receiving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub seq: u64,
    pub body: Vec<u8>,
    pub sent_ms: u64,
    pub delivery_count: u32,
    /// Hidden by a lease until this time (0: visible).
    pub leased_until_ms: u64,
}

/// The first `limit` messages of `name` in order, leased ones included, changing
/// nothing.
pub fn peek(
    tree: &sled::Tree,
    name: &str,
    limit: usize,
    now_ms: u64,
) -> Result<Vec<Peeked>, ReadError> {
    let Some(bytes) = tree.get(queue_key(name))? else {
        return Err(queue_not_found(name).into());
    };
    let record: QueueRecord = decode(&bytes)?;
    let prefix = message_prefix(record.id);
    let mut out = Vec::new();
    for item in tree.scan_prefix(&prefix).take(limit) {
        let (key, value) = item?;
        let message: MessageRecord = decode(&value)?;
        let leased_until_ms = if message.is_visible(now_ms) {
            0
        } else {
            message.visible_at_ms
        };
        out.push(Peeked {
            seq: keys::u64_at(&key, prefix.len()).unwrap_or(0),
            body: message.body,
            sent_ms: message.sent_ms,
            delivery_count: message.delivery_count,
            leased_until_ms,
        });
    }
    Ok(out)
}

/// Whether a receive on `name` would find a message now (long polling checks this
/// locally before proposing a receive).
pub fn has_visible(tree: &sled::Tree, name: &str, now_ms: u64) -> Result<bool, ReadError> {
    let Some(bytes) = tree.get(queue_key(name))? else {
        return Err(queue_not_found(name).into());
    };
    let record: QueueRecord = decode(&bytes)?;
    let txn = Txn::new(tree);
    Ok(head(&txn, record.id, now_ms)?.is_some())
}
