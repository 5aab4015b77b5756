//! Apply-level tests on a temporary sled tree: sessions, sweeps and limits that
//! the integration tests cannot reach quickly (hours of idleness, huge counts).

use super::kv::{KvCommand, KvResponse, PutCondition};
use super::sweep::Sweep;
use super::*;
use crate::limits::{SESSION_IDLE_MS_MAX, SESSION_WINDOW_SEQS_MAX};

fn store() -> Store {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Store::open(&db).unwrap()
}

fn tagged(client_id: u64, seq: u64, lowest: u64, command: KvCommand) -> ClientCommand {
    ClientCommand {
        session: Some(SessionTag {
            client_id,
            seq,
            lowest_unanswered_seq: lowest,
        }),
        command: Command::Kv(command),
    }
}

fn put(key: &str) -> KvCommand {
    KvCommand::Put {
        namespace: "ns".into(),
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        condition: PutCondition::Always,
        ttl_ms: 0,
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

fn create_ns(store: &Store) {
    let create = KvCommand::CreateNamespace {
        name: "ns".into(),
        namespaces_max: 10,
    };
    let outcome = apply(
        store,
        1,
        0,
        vec![ClientCommand {
            session: None,
            command: Command::Kv(create),
        }],
    );
    assert_eq!(outcome, vec![Ok(Response::Kv(KvResponse::Created))]);
}

#[test]
fn a_duplicate_in_the_same_batch_is_answered_from_the_first() {
    let store = store();
    create_ns(&store);
    let outcomes = apply(
        &store,
        2,
        0,
        vec![tagged(9, 1, 1, put("a")), tagged(9, 1, 1, put("a"))],
    );
    assert_eq!(outcomes[0], outcomes[1]);
    let version = ApplyContext {
        now_ms: 0,
        log_index: 2,
        position: 0,
    }
    .version();
    assert_eq!(outcomes[0], Ok(Response::Kv(KvResponse::Put { version })));
}

#[test]
fn results_below_the_lowest_unanswered_seq_are_forgotten() {
    let store = store();
    create_ns(&store);
    apply(&store, 2, 0, vec![tagged(9, 1, 1, put("a"))]);
    apply(&store, 3, 0, vec![tagged(9, 2, 2, put("b"))]);
    let replay = apply(&store, 4, 0, vec![tagged(9, 1, 1, put("a"))]);
    assert_eq!(replay, vec![Err(Error::SessionExpired { seq: 1 })]);
}

#[test]
fn a_client_may_not_run_more_than_the_window_ahead() {
    let store = store();
    create_ns(&store);
    let far = apply(
        &store,
        2,
        0,
        vec![tagged(9, SESSION_WINDOW_SEQS_MAX + 1, 1, put("a"))],
    );
    assert!(
        matches!(far[0], Err(Error::SessionWindowExceeded { .. })),
        "{far:?}"
    );
    assert_eq!(
        kv::get(store.tree(), 0, "ns", b"a").unwrap(),
        None,
        "a rejected write changes nothing"
    );
}

#[test]
fn the_sweeper_expires_idle_sessions_by_the_leaders_clock() {
    let store = store();
    create_ns(&store);
    apply(&store, 2, 1_000, vec![tagged(9, 1, 1, put("a"))]);
    assert!(!sweep::has_work(store.tree(), 1_000, 60_000).unwrap());
    let later = 1_000 + SESSION_IDLE_MS_MAX;
    assert!(sweep::has_work(store.tree(), later, 60_000).unwrap());
    let sweep = ClientCommand {
        session: None,
        command: Command::Sweep(Sweep {
            items_max: 100,
            chunk_grace_ms: 60_000,
        }),
    };
    let outcome = apply(&store, 3, later, vec![sweep]);
    assert_eq!(outcome, vec![Ok(Response::Swept { removed_count: 1 })]);
    // The session is gone: the same seq is now a fresh write, applied again.
    let again = apply(&store, 4, later, vec![tagged(9, 1, 1, put("a"))]);
    let version = ApplyContext {
        now_ms: later,
        log_index: 4,
        position: 0,
    }
    .version();
    assert_eq!(again, vec![Ok(Response::Kv(KvResponse::Put { version }))]);
}

#[test]
fn the_namespace_limit_is_enforced_in_apply() {
    let store = store();
    let create = |name: &str| ClientCommand {
        session: None,
        command: Command::Kv(KvCommand::CreateNamespace {
            name: name.into(),
            namespaces_max: 2,
        }),
    };
    let outcomes = apply(&store, 1, 0, vec![create("a"), create("b"), create("c")]);
    assert!(outcomes[1].is_ok());
    assert!(
        matches!(&outcomes[2], Err(Error::LimitExceeded { field, limit: 2, .. }) if field == "namespaces")
    );
}

#[test]
fn the_clock_never_goes_back_between_entries() {
    let store = store();
    create_ns(&store);
    let ttl_put = |key: &str| KvCommand::Put {
        namespace: "ns".into(),
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        condition: PutCondition::Always,
        ttl_ms: 100,
    };
    apply(
        &store,
        2,
        10_000,
        vec![ClientCommand {
            session: None,
            command: Command::Kv(ttl_put("a")),
        }],
    );
    // A later entry stamped by a leader whose clock is behind.
    apply(
        &store,
        3,
        5_000,
        vec![ClientCommand {
            session: None,
            command: Command::Kv(ttl_put("b")),
        }],
    );
    let b = kv::get(store.tree(), 0, "ns", b"b").unwrap().unwrap();
    assert_eq!(
        b.expires_at_ms, 10_100,
        "expiry counted from the state machine's clock"
    );
}

#[test]
fn the_sweeper_frees_a_purged_queue_and_a_deleted_namespace_in_bounded_steps() {
    use super::queue::QueueCommand;
    let store = store();
    create_ns(&store);
    let plain = |command: Command| ClientCommand {
        session: None,
        command,
    };
    let puts: Vec<_> = (0..5)
        .map(|i| plain(Command::Kv(put(&format!("k{i}")))))
        .collect();
    apply(&store, 2, 0, puts);
    let create = QueueCommand::Create {
        name: "q".into(),
        queues_max: 10,
    };
    let send = QueueCommand::Send {
        queue: "q".into(),
        messages: vec![b"m".to_vec(); 5],
    };
    let purge = QueueCommand::Purge { name: "q".into() };
    let drop_ns = KvCommand::DeleteNamespace { name: "ns".into() };
    let commands = vec![
        plain(Command::Queue(create)),
        plain(Command::Queue(send)),
        plain(Command::Queue(purge)),
        plain(Command::Kv(drop_ns)),
    ];
    apply(&store, 3, 0, commands);
    let stored = |prefix: u8| store.tree().scan_prefix([prefix]).count();
    assert_eq!(
        (stored(keys::KV), stored(keys::QUEUE_MESSAGE)),
        (5, 5),
        "purge and delete only hide"
    );
    let sweep = |items_max| {
        plain(Command::Sweep(Sweep {
            items_max,
            chunk_grace_ms: 60_000,
        }))
    };
    let first = apply(&store, 4, 0, vec![sweep(3)]);
    assert_eq!(
        first,
        vec![Ok(Response::Swept { removed_count: 3 })],
        "a sweep stays within its budget"
    );
    apply(&store, 5, 0, vec![sweep(100)]);
    assert_eq!((stored(keys::KV), stored(keys::QUEUE_MESSAGE)), (0, 0));
    assert!(
        !sweep::has_work(store.tree(), 0, 60_000).unwrap(),
        "markers are gone once everything is freed"
    );
}

#[test]
fn a_commit_waits_for_open_read_views() {
    let store = store();
    let view = store.read_view();
    let committer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut txn = store.txn();
            txn.put(b"k".to_vec(), b"v".to_vec());
            store.commit(txn).unwrap();
        })
    };
    // However long the committer runs meanwhile, the open view keeps it out.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(view.get(b"k").unwrap(), None);
    assert!(
        !committer.is_finished(),
        "a commit went ahead of a read view"
    );
    drop(view);
    committer.join().unwrap();
    assert_eq!(store.read_view().get(b"k").unwrap(), Some(b"v".to_vec()));
}
