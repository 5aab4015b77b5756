//! Apply-level tests of object storage: chunk reference counts across puts,
//! overwrites, copies and deletes; GC after the grace period; listings with
//! delimiters and continuation; bucket rules.

use std::collections::BTreeMap;

use super::chunks::{self, ChunkRef, Hash};
use super::object::{self, ListQuery, ObjectCommand, PutObject};
use super::sweep::Sweep;
use super::*;

const GRACE_MS: u64 = 1_000;

fn store() -> Store {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Store::open(&db).unwrap()
}

/// Applies one command as its own entry; returns the outcome and the chunk files
/// the entry would write and delete.
fn apply(
    store: &Store,
    log_index: u64,
    now_ms: u64,
    command: Command,
) -> (Outcome, txn::ChunkFiles) {
    let mut txn = store.txn();
    let commands = vec![ClientCommand {
        session: None,
        command,
    }];
    let mut reply = store
        .apply_request(&mut txn, log_index, &Request { now_ms, commands })
        .unwrap();
    let files = txn.take_chunk_files();
    store.commit(txn).unwrap();
    (reply.outcomes.remove(0), files)
}

fn hash(byte: u8) -> Hash {
    [byte; 32]
}

fn stage(store: &Store, index: u64, now_ms: u64, byte: u8) -> txn::ChunkFiles {
    let command = Command::Object(ObjectCommand::PutChunk {
        hash: hash(byte),
        data: vec![byte; 10],
    });
    let (outcome, files) = apply(store, index, now_ms, command);
    outcome.unwrap();
    files
}

fn put(bucket: &str, key: &str, bytes: &[u8]) -> Command {
    let chunks: Vec<ChunkRef> = bytes
        .iter()
        .map(|b| ChunkRef {
            hash: hash(*b),
            len: 10,
        })
        .collect();
    Command::Object(ObjectCommand::Put(Box::new(PutObject {
        bucket: bucket.into(),
        key: key.into(),
        size: 10 * chunks.len() as u64,
        chunks,
        etag: "e".into(),
        content_type: String::new(),
        metadata: BTreeMap::new(),
    })))
}

fn refs(store: &Store, byte: u8) -> Option<u64> {
    chunks::get(&store.txn(), &hash(byte))
        .unwrap()
        .map(|r| r.refs)
}

fn sweep(store: &Store, index: u64, now_ms: u64) -> Vec<Hash> {
    let command = Command::Sweep(Sweep {
        items_max: 100,
        chunk_grace_ms: GRACE_MS,
    });
    let (outcome, files) = apply(store, index, now_ms, command);
    outcome.unwrap();
    files.deletes
}

#[test]
fn a_manifest_commits_only_when_every_chunk_is_staged() {
    let store = store();
    let files = stage(&store, 1, 100, 1);
    assert_eq!(files.writes.len(), 1, "a new chunk's file is written");
    assert!(
        stage(&store, 2, 100, 1).writes.is_empty(),
        "a known chunk is not rewritten"
    );
    let (outcome, _) = apply(&store, 3, 100, put("private", "k", &[1, 2]));
    assert_eq!(outcome.unwrap_err().code(), "chunk_missing");
    assert!(object::object(&store.txn(), "private", "k")
        .unwrap()
        .is_none());
    stage(&store, 4, 100, 2);
    apply(&store, 5, 100, put("private", "k", &[1, 2, 1]))
        .0
        .unwrap();
    assert_eq!((refs(&store, 1), refs(&store, 2)), (Some(2), Some(1)));
}

#[test]
fn overwrite_copy_and_delete_move_references_and_gc_waits_for_the_grace_period() {
    let store = store();
    for (i, byte) in [1u8, 2, 3].into_iter().enumerate() {
        stage(&store, i as u64 + 1, 0, byte);
    }
    apply(&store, 10, 0, put("private", "k", &[1, 2]))
        .0
        .unwrap();
    let copy = Command::Object(ObjectCommand::Copy {
        from_bucket: "private".into(),
        from_key: "k".into(),
        to_bucket: "public".into(),
        to_key: "c".into(),
    });
    apply(&store, 11, 0, copy).0.unwrap();
    assert_eq!(refs(&store, 1), Some(2));
    // Overwrite k with [3]: 1 and 2 stay referenced by the copy.
    apply(&store, 12, 500, put("private", "k", &[3])).0.unwrap();
    assert_eq!((refs(&store, 1), refs(&store, 3)), (Some(1), Some(1)));
    let delete = |bucket: &str, key: &str| {
        Command::Object(ObjectCommand::Delete {
            bucket: bucket.into(),
            key: key.into(),
        })
    };
    apply(&store, 13, 2_000, delete("public", "c")).0.unwrap();
    assert_eq!(refs(&store, 1), Some(0));
    assert!(
        sweep(&store, 14, 2_500).is_empty(),
        "inside the grace period"
    );
    let mut collected = sweep(&store, 15, 3_000);
    collected.sort();
    assert_eq!(collected, vec![hash(1), hash(2)]);
    assert_eq!(refs(&store, 1), None);
    assert_eq!(refs(&store, 3), Some(1), "still referenced by k");
    // Deleting a missing object succeeds and says so.
    let (outcome, _) = apply(&store, 16, 3_000, delete("private", "nope"));
    assert_eq!(
        outcome.unwrap(),
        Response::Object(object::ObjectResponse::Deleted { existed: false })
    );
}

#[test]
fn restaging_or_touching_an_unreferenced_chunk_restarts_its_grace_period() {
    let store = store();
    stage(&store, 1, 0, 7);
    stage(&store, 2, 900, 7);
    assert!(sweep(&store, 3, 1_500).is_empty());
    let touch = Command::Object(ObjectCommand::TouchChunks {
        hashes: vec![hash(7)],
    });
    apply(&store, 4, 1_800, touch).0.unwrap();
    assert!(sweep(&store, 5, 2_500).is_empty());
    assert_eq!(sweep(&store, 6, 2_800), vec![hash(7)]);
}

#[test]
fn listings_fold_common_prefixes_and_continue_where_they_stopped() {
    let store = store();
    stage(&store, 1, 0, 1);
    let keys = ["a/1", "a/2", "b", "c/x/1", "c/y", "d"];
    for (i, key) in keys.iter().enumerate() {
        apply(&store, 10 + i as u64, 0, put("private", key, &[1]))
            .0
            .unwrap();
    }
    let id = object::bucket(&store.txn(), "private").unwrap().unwrap().id;
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let query = ListQuery {
            prefix: "",
            delimiter: "/",
            after: &after,
            limit: 2,
        };
        let page = object::list(store.tree(), id, &query).unwrap();
        seen.extend(page.common_prefixes.iter().cloned());
        seen.extend(page.objects.iter().map(|(k, _)| k.clone()));
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a/", "b", "c/", "d"]);
    let query = ListQuery {
        prefix: "c/",
        delimiter: "/",
        after: "",
        limit: 10,
    };
    let page = object::list(store.tree(), id, &query).unwrap();
    assert_eq!(page.common_prefixes, ["c/x/"]);
    assert_eq!(
        page.objects
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["c/y"]
    );
    let all = ListQuery {
        prefix: "",
        delimiter: "",
        after: "b",
        limit: 10,
    };
    let page = object::list(store.tree(), id, &all).unwrap();
    assert_eq!(page.objects.len(), 3, "keys after b");
}

#[test]
fn buckets_are_validated_and_only_empty_created_ones_can_be_deleted() {
    let store = store();
    let create = |name: &str| {
        Command::Object(ObjectCommand::CreateBucket {
            name: name.into(),
            public: false,
        })
    };
    let delete = |name: &str| Command::Object(ObjectCommand::DeleteBucket { name: name.into() });
    for bad in ["ab", "Upper", "-x-", "a_b"] {
        assert_eq!(
            apply(&store, 1, 0, create(bad)).0.unwrap_err().code(),
            "invalid_argument",
            "{bad}"
        );
    }
    assert_eq!(
        apply(&store, 2, 0, create("private")).0.unwrap_err().code(),
        "already_exists"
    );
    assert_eq!(
        apply(&store, 3, 0, delete("public")).0.unwrap_err().code(),
        "invalid_argument"
    );
    apply(&store, 4, 0, create("logs")).0.unwrap();
    stage(&store, 5, 0, 1);
    apply(&store, 6, 0, put("logs", "x", &[1])).0.unwrap();
    assert_eq!(
        apply(&store, 7, 0, delete("logs")).0.unwrap_err().code(),
        "invalid_argument"
    );
    let remove = Command::Object(ObjectCommand::Delete {
        bucket: "logs".into(),
        key: "x".into(),
    });
    apply(&store, 8, 0, remove).0.unwrap();
    apply(&store, 9, 0, delete("logs")).0.unwrap();
    assert!(object::bucket(&store.txn(), "logs").unwrap().is_none());
    let long_key = "k".repeat(1025);
    let (outcome, _) = apply(&store, 10, 0, put("private", &long_key, &[1]));
    assert_eq!(
        outcome.unwrap_err(),
        Error::limit("key", 1024, 1025, "bytes")
    );
}
