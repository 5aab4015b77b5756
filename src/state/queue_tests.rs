//! Apply-level tests of batch receives (`ReceiveMany`) on a temporary sled tree:
//! order, pop and lease semantics per message, the count and byte bounds, batches
//! that share an entry, session replays, and the bincode positions of the queue
//! enums that Raft logs and snapshots depend on.
//! Method: commands applied as Raft entries would be, then the state read back
//! through the same reads the services use (`peek`, `get_queue`).

use super::queue::{self, Delivery, QueueCommand, QueueResponse};
use super::*;
use crate::limits::{
    KV_ENTRY_BYTES_CEILING, QUEUE_RECEIVE_BYTES_MAX, QUEUE_RECEIVE_MESSAGES_MAX,
    QUEUE_RECEIVE_MESSAGE_OVERHEAD_BYTES,
};

fn store() -> Store {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Store::open(&db).unwrap()
}

fn plain(command: QueueCommand) -> ClientCommand {
    ClientCommand {
        session: None,
        command: Command::Queue(command),
    }
}

fn tagged(seq: u64, command: QueueCommand) -> ClientCommand {
    ClientCommand {
        session: Some(SessionTag {
            client_id: 7,
            seq,
            lowest_unanswered_seq: 1,
        }),
        command: Command::Queue(command),
    }
}

/// Applies one entry holding `commands` at `log_index`, committing it.
fn apply(store: &Store, log_index: u64, now_ms: u64, commands: Vec<ClientCommand>) -> Vec<Outcome> {
    let mut txn = store.txn();
    let reply = store
        .apply_request(&mut txn, log_index, &Request { now_ms, commands })
        .unwrap();
    store.commit(txn).unwrap();
    reply.outcomes
}

fn apply_one(store: &Store, log_index: u64, now_ms: u64, command: ClientCommand) -> Outcome {
    apply(store, log_index, now_ms, vec![command]).remove(0)
}

/// A queue "q" holding `bodies`, sent at time 0 in entries 1 and 2.
fn queue_with(bodies: &[&[u8]]) -> Store {
    let store = store();
    let create = QueueCommand::Create {
        name: "q".into(),
        queues_max: 10,
    };
    apply_one(&store, 1, 0, plain(create)).unwrap();
    send(&store, 2, bodies);
    store
}

fn send(store: &Store, log_index: u64, bodies: &[&[u8]]) {
    let send = QueueCommand::Send {
        queue: "q".into(),
        messages: bodies.iter().map(|b| b.to_vec()).collect(),
    };
    apply_one(store, log_index, 0, plain(send)).unwrap();
}

fn receive_many(lease_ms: u64, max_messages: u32) -> QueueCommand {
    QueueCommand::ReceiveMany {
        queue: "q".into(),
        lease_ms,
        max_messages,
    }
}

fn deliveries(outcome: Outcome) -> Vec<Delivery> {
    match outcome {
        Ok(Response::Queue(QueueResponse::ReceivedMany(deliveries))) => deliveries,
        other => panic!("expected a batch of deliveries, got {other:?}"),
    }
}

fn bodies(deliveries: &[Delivery]) -> Vec<&[u8]> {
    deliveries.iter().map(|d| d.body.as_slice()).collect()
}

/// Stored messages in order, leased ones included, as (body, leased_until_ms).
fn stored(store: &Store, now_ms: u64) -> Vec<(Vec<u8>, u64)> {
    queue::peek(store.tree(), "q", 1_000, now_ms)
        .unwrap()
        .into_iter()
        .map(|m| (m.body, m.leased_until_ms))
        .collect()
}

fn length(store: &Store) -> u64 {
    queue::get_queue(store.tree(), "q").unwrap().length
}

#[test]
fn a_batch_pop_takes_the_head_in_order_and_removes_exactly_those() {
    let store = queue_with(&[b"m1", b"m2", b"m3", b"m4", b"m5"]);
    let got = deliveries(apply_one(&store, 3, 10, plain(receive_many(0, 3))));
    assert_eq!(bodies(&got), [&b"m1"[..], b"m2", b"m3"]);
    assert_eq!(got.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(got
        .iter()
        .all(|d| d.receipt.is_empty() && d.delivery_count == 1));
    assert_eq!(
        stored(&store, 10),
        [(b"m4".to_vec(), 0), (b"m5".to_vec(), 0)],
        "the popped messages are gone, the others untouched"
    );
    assert_eq!(length(&store), 2);
}

#[test]
fn a_batch_lease_hides_exactly_its_messages_and_each_receipt_acks_alone() {
    let store = queue_with(&[b"m1", b"m2", b"m3", b"m4"]);
    let leased = deliveries(apply_one(&store, 3, 100, plain(receive_many(1_000, 2))));
    assert_eq!(bodies(&leased), [&b"m1"[..], b"m2"]);
    assert_ne!(
        leased[0].receipt, leased[1].receipt,
        "one receipt per message"
    );
    assert_eq!(
        stored(&store, 100),
        [
            (b"m1".to_vec(), 1_100),
            (b"m2".to_vec(), 1_100),
            (b"m3".to_vec(), 0),
            (b"m4".to_vec(), 0)
        ]
    );
    // The next batch skips the leased ones.
    let next = deliveries(apply_one(&store, 4, 200, plain(receive_many(5_000, 10))));
    assert_eq!(bodies(&next), [&b"m3"[..], b"m4"]);
    // Acking m1's receipt deletes m1 alone.
    let ack = QueueCommand::Ack {
        queue: "q".into(),
        receipt: leased[0].receipt.clone(),
    };
    assert_eq!(
        apply_one(&store, 5, 300, plain(ack)),
        Ok(Response::Queue(QueueResponse::Acked))
    );
    assert_eq!(length(&store), 3);
    // m2 was not acked: after its lease it is the head again, delivered a second
    // time, and its first receipt no longer acks.
    let again = deliveries(apply_one(&store, 6, 1_100, plain(receive_many(1_000, 10))));
    assert_eq!(bodies(&again), [&b"m2"[..]]);
    assert_eq!(again[0].delivery_count, 2);
    let stale = QueueCommand::Ack {
        queue: "q".into(),
        receipt: leased[1].receipt.clone(),
    };
    assert!(matches!(
        apply_one(&store, 7, 1_200, plain(stale)),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_batch_larger_than_what_is_visible_returns_what_is_there_then_nothing() {
    let store = queue_with(&[b"m1", b"m2"]);
    let max = QUEUE_RECEIVE_MESSAGES_MAX;
    let got = deliveries(apply_one(&store, 3, 10, plain(receive_many(0, max))));
    assert_eq!(bodies(&got), [&b"m1"[..], b"m2"]);
    let empty = apply_one(&store, 4, 10, plain(receive_many(0, max)));
    assert!(deliveries(empty.clone()).is_empty());
    assert!(
        changed_nothing(&empty),
        "an empty batch is not kept, so a long poll may propose its seq again"
    );
}

#[test]
fn a_batch_count_over_the_limit_is_refused_before_proposing() {
    let limits = crate::limits::Limits::default();
    let max = QUEUE_RECEIVE_MESSAGES_MAX;
    assert_eq!(receive_many(0, max).validate(&limits), Ok(()));
    assert_eq!(
        receive_many(0, max + 1).validate(&limits),
        Err(Error::LimitExceeded {
            field: "max_messages".into(),
            limit: max.into(),
            actual: u64::from(max) + 1,
            unit: "messages in one receive".into(),
        })
    );
}

#[test]
fn a_batch_stops_before_the_message_that_would_pass_the_reply_bound() {
    let size = 300_000;
    let body = vec![b'x'; size];
    let store = queue_with(&[&body, &body, &body, &body, &body]);
    let per_message = size as u64 + QUEUE_RECEIVE_MESSAGE_OVERHEAD_BYTES;
    let fits = (QUEUE_RECEIVE_BYTES_MAX / per_message) as usize;
    assert!(
        (1..5).contains(&fits),
        "the test needs a bound inside the queue"
    );
    let got = deliveries(apply_one(&store, 3, 10, plain(receive_many(0, 5))));
    assert_eq!(got.len(), fits);
    assert_eq!(
        length(&store),
        5 - fits as u64,
        "only the returned ones are gone"
    );
}

#[test]
fn a_message_larger_than_the_reply_bound_is_still_received_alone() {
    let big = vec![b'x'; KV_ENTRY_BYTES_CEILING as usize];
    let store = queue_with(&[&big, b"small"]);
    let got = deliveries(apply_one(&store, 3, 10, plain(receive_many(0, 10))));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.len(), big.len());
    let rest = deliveries(apply_one(&store, 4, 10, plain(receive_many(0, 10))));
    assert_eq!(bodies(&rest), [&b"small"[..]]);
}

#[test]
fn batches_in_one_entry_see_each_other_and_take_disjoint_messages() {
    let store = queue_with(&[]);
    let send = QueueCommand::Send {
        queue: "q".into(),
        messages: vec![
            b"m1".to_vec(),
            b"m2".to_vec(),
            b"m3".to_vec(),
            b"m4".to_vec(),
        ],
    };
    let commands = vec![
        plain(send),
        plain(receive_many(0, 2)),
        plain(receive_many(1_000, 3)),
        plain(receive_many(1_000, 3)),
    ];
    let mut outcomes = apply(&store, 3, 10, commands).into_iter().skip(1);
    let popped = deliveries(outcomes.next().unwrap());
    let leased = deliveries(outcomes.next().unwrap());
    let none = deliveries(outcomes.next().unwrap());
    assert_eq!(bodies(&popped), [&b"m1"[..], b"m2"]);
    assert_eq!(bodies(&leased), [&b"m3"[..], b"m4"]);
    assert!(none.is_empty(), "everything is popped or leased: {none:?}");
    assert_eq!(length(&store), 2);
}

#[test]
fn a_retried_batch_replays_its_messages_and_an_empty_one_can_be_proposed_again() {
    let store = queue_with(&[b"m1", b"m2", b"m3"]);
    let first = apply_one(&store, 3, 10, tagged(1, receive_many(0, 2)));
    let retry = apply_one(&store, 4, 10, tagged(1, receive_many(0, 2)));
    assert_eq!(first, retry, "the session table answers the retry");
    assert_eq!(bodies(&deliveries(first)), [&b"m1"[..], b"m2"]);
    assert_eq!(length(&store), 1, "the retry popped nothing more");
    // seq 2 empties the queue; seq 3 finds nothing, and after a send the same
    // seq 3 (a long poll proposing again) takes the new message.
    deliveries(apply_one(&store, 5, 10, tagged(2, receive_many(0, 2))));
    assert!(deliveries(apply_one(&store, 6, 10, tagged(3, receive_many(0, 2)))).is_empty());
    send(&store, 7, &[b"m4"]);
    let late = deliveries(apply_one(&store, 8, 10, tagged(3, receive_many(0, 2))));
    assert_eq!(bodies(&late), [&b"m4"[..]]);
}

#[test]
fn a_batch_looks_past_as_many_leased_messages_as_a_single_receive() {
    let scan = crate::limits::QUEUE_SCAN_MESSAGES_MAX;
    let store = queue_with(&[]);
    let bodies: Vec<Vec<u8>> = (0..=scan).map(|i| i.to_string().into_bytes()).collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    send(&store, 3, &refs);
    // Lease all but the last: `scan` leased messages ahead of one visible one.
    let mut leased = Vec::new();
    for (i, index) in (0..scan / 250).zip(4..) {
        let got = deliveries(apply_one(
            &store,
            index,
            10,
            plain(receive_many(60_000, 250)),
        ));
        assert_eq!(got.len(), 250, "round {i}");
        leased.extend(got);
    }
    let single = QueueCommand::Receive {
        queue: "q".into(),
        lease_ms: 60_000,
    };
    assert_eq!(
        apply_one(&store, 100, 20, plain(single)),
        Ok(Response::Queue(QueueResponse::Received(None))),
        "a single receive gives up after {scan} leased messages"
    );
    assert!(deliveries(apply_one(&store, 101, 20, plain(receive_many(0, 5)))).is_empty());
    // One fewer leased message ahead and the last one is in reach of both.
    let ack = QueueCommand::Ack {
        queue: "q".into(),
        receipt: leased[0].receipt.clone(),
    };
    apply_one(&store, 102, 20, plain(ack)).unwrap();
    let got = deliveries(apply_one(&store, 103, 20, plain(receive_many(0, 5))));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, scan.to_string().into_bytes());
}

/// bincode numbers enum variants by position; logs and snapshots written before
/// batches existed must decode to the same commands and responses.
#[test]
fn the_single_receive_keeps_its_encoding_and_the_batch_variants_come_last() {
    let receive = QueueCommand::Receive {
        queue: "q".into(),
        lease_ms: 5,
    };
    let mut expected = vec![4, 0, 0, 0]; // variant 4
    expected.extend_from_slice(&1u64.to_le_bytes()); // name length
    expected.push(b'q');
    expected.extend_from_slice(&5u64.to_le_bytes());
    assert_eq!(encode(&receive), expected);
    assert_eq!(encode(&receive_many(5, 2))[..4], [8, 0, 0, 0]);
    assert_eq!(
        encode(&QueueResponse::Received(None)),
        [4, 0, 0, 0, 0],
        "variant 4, None"
    );
    assert_eq!(
        encode(&QueueResponse::ReceivedMany(Vec::new()))[..4],
        [6, 0, 0, 0]
    );
}
