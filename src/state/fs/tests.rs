//! Apply-level tests of the file system state: a refused command inside a batch
//! changes nothing, chunk references follow files through overwrite and unlink,
//! directory pages visit each name once, and two replicas applying the same
//! commands end byte-identical.

use super::read;
use super::*;
use crate::state::object::ObjectCommand;
use crate::state::{chunks, keys, ClientCommand, Command, Outcome, Request, Store};

const NOW_MS: u64 = 1_000_000;

fn store() -> Store {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Store::open(&db).unwrap()
}

/// Applies `commands` as one Raft entry; returns each outcome.
fn apply(store: &Store, log_index: u64, commands: Vec<Command>) -> Vec<Outcome> {
    let mut txn = store.txn();
    let commands = commands
        .into_iter()
        .map(|command| ClientCommand {
            session: None,
            command,
        })
        .collect();
    let request = Request {
        now_ms: NOW_MS,
        commands,
    };
    let reply = store.apply_request(&mut txn, log_index, &request).unwrap();
    store.commit(txn).unwrap();
    reply.outcomes
}

fn apply_one(store: &Store, log_index: u64, command: FsCommand) -> Outcome {
    apply(store, log_index, vec![Command::Fs(command)]).remove(0)
}

fn name(parts: &[&str], last: &str) -> Name {
    Name {
        dir: At::Path(parts.iter().map(|p| p.to_string()).collect()),
        name: last.to_string(),
    }
}

fn owner() -> Owner {
    Owner {
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

fn mkdir(dir: &[&str], last: &str) -> FsCommand {
    FsCommand::Make {
        fs: DEFAULT_FS.into(),
        at: name(dir, last),
        kind: Kind::Dir,
        owner: Owner {
            mode: 0o755,
            ..owner()
        },
        exclusive: true,
        target: String::new(),
        now_ns: 5,
    }
}

fn put_file(last: &str, chunks: Vec<ChunkRef>) -> FsCommand {
    let size = chunks.iter().map(|c| u64::from(c.len)).sum();
    FsCommand::PutFile {
        fs: DEFAULT_FS.into(),
        put: Box::new(PutFile {
            at: name(&[], last),
            parents: false,
            exclusive: false,
            chunks,
            size,
            owner: owner(),
            mtime_ns: None,
            chunk_data: Vec::new(),
        }),
        now_ns: 7,
    }
}

fn stage(store: &Store, log_index: u64, byte: u8) -> ChunkRef {
    let data = vec![byte; 100];
    let chunk = ChunkRef::of(&data);
    let outcome = apply(
        store,
        log_index,
        vec![Command::Object(ObjectCommand::PutChunk {
            hash: chunk.hash,
            data,
        })],
    );
    outcome.into_iter().next().unwrap().unwrap();
    chunk
}

fn refs(store: &Store, chunk: &ChunkRef) -> u64 {
    let txn = store.txn();
    chunks::get(&txn, &chunk.hash)
        .unwrap()
        .map_or(0, |r| r.refs)
}

fn stat(store: &Store, path: &[&str]) -> Option<Entry> {
    let txn = store.txn();
    let fs = read::open(&txn, DEFAULT_FS).ok()?;
    let at = At::Path(path.iter().map(|p| p.to_string()).collect());
    read::stat(&txn, &fs, &at).ok()
}

fn errno_of(outcome: &Outcome) -> Errno {
    match outcome {
        Err(Error::Fs { errno, .. }) => *errno,
        other => panic!("expected an errno, got {other:?}"),
    }
}

/// Every key and value of the store, to compare replicas.
fn dump(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .tree()
        .iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// The file systems' own records (not the applied-index bookkeeping).
fn fs_records(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    let fs_prefixes = [keys::FS, keys::FS_INODE, keys::FS_DIRENT, keys::FS_BLOCK];
    dump(store)
        .into_iter()
        .filter(|(k, _)| fs_prefixes.contains(&k[0]))
        .collect()
}

#[test]
fn a_refused_command_in_a_batch_changes_nothing_and_the_others_apply() {
    let store = store();
    apply_one(&store, 1, mkdir(&[], "a")).unwrap();
    let before = dump(&store);
    // One entry: a valid mkdir, a rename into a missing directory (refused after it
    // has already looked things up), and another valid mkdir.
    let outcomes = apply(
        &store,
        2,
        vec![
            Command::Fs(mkdir(&[], "b")),
            Command::Fs(FsCommand::Rename {
                fs: DEFAULT_FS.into(),
                from: name(&[], "a"),
                to: name(&["missing"], "a"),
                noreplace: false,
                now_ns: 9,
            }),
            Command::Fs(mkdir(&[], "c")),
        ],
    );
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert_eq!(errno_of(&outcomes[1]), Errno::ENOENT);
    assert!(
        stat(&store, &["a"]).is_some(),
        "the refused rename moved /a"
    );
    assert!(stat(&store, &["b"]).is_some() && stat(&store, &["c"]).is_some());
    assert_ne!(before, dump(&store));

    // The same refusal alone leaves every byte of the store as it was, apart from
    // the applied-index bookkeeping the entry itself writes.
    let alone_before = fs_records(&store);
    let outcome = apply_one(
        &store,
        3,
        FsCommand::Rmdir {
            fs: DEFAULT_FS.into(),
            at: name(&[], "missing"),
            now_ns: 10,
        },
    );
    assert_eq!(errno_of(&outcome), Errno::ENOENT);
    assert_eq!(alone_before, fs_records(&store));
}

#[test]
fn chunk_references_follow_files_through_overwrite_link_and_unlink() {
    let store = store();
    let (x, y) = (stage(&store, 1, b'x'), stage(&store, 2, b'y'));
    assert_eq!((refs(&store, &x), refs(&store, &y)), (0, 0));

    // Two files with the same content share the chunk: one reference each.
    apply_one(&store, 3, put_file("f", vec![x])).unwrap();
    apply_one(&store, 4, put_file("e", vec![x])).unwrap();
    assert_eq!((refs(&store, &x), refs(&store, &y)), (2, 0));
    let file = stat(&store, &["f"]).unwrap();
    assert_eq!(file.inode.size, 100);
    assert_eq!(file.inode.allocated_bytes, 100);

    // A hard link shares the inode, so it adds no references.
    let link = FsCommand::Link {
        fs: DEFAULT_FS.into(),
        target: At::Path(vec!["f".into()]),
        at: name(&[], "g"),
        now_ns: 8,
    };
    apply_one(&store, 5, link).unwrap();
    assert_eq!(stat(&store, &["g"]).unwrap().inode.nlink, 2);
    assert_eq!((refs(&store, &x), refs(&store, &y)), (2, 0));

    // Overwriting /f makes a new inode; /g keeps the old content and its ref.
    apply_one(&store, 6, put_file("f", vec![y])).unwrap();
    assert_eq!((refs(&store, &x), refs(&store, &y)), (2, 1));
    assert_eq!(stat(&store, &["g"]).unwrap().inode.nlink, 1);

    let unlink = |last: &str| FsCommand::Unlink {
        fs: DEFAULT_FS.into(),
        at: name(&[], last),
        now_ns: 11,
    };
    apply_one(&store, 7, unlink("g")).unwrap();
    assert_eq!((refs(&store, &x), refs(&store, &y)), (1, 1));
    apply_one(&store, 8, unlink("f")).unwrap();
    apply_one(&store, 9, unlink("e")).unwrap();
    assert_eq!((refs(&store, &x), refs(&store, &y)), (0, 0));
    assert_eq!(stat(&store, &[]).unwrap().inode.nlink, 2);

    // A file naming a chunk the cluster does not hold is refused.
    let missing = ChunkRef::of(b"never staged");
    let outcome = apply_one(&store, 10, put_file("h", vec![missing]));
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(stat(&store, &["h"]).is_none());
}

#[test]
fn directory_pages_visit_every_name_once_and_limit_zero_is_the_largest_page() {
    let store = store();
    let names: Vec<String> = (0..25).map(|i| format!("n{i:02}")).collect();
    let commands = names
        .iter()
        .map(|n| Command::Fs(mkdir(&[], n)))
        .collect::<Vec<_>>();
    for outcome in apply(&store, 1, commands) {
        outcome.unwrap();
    }
    let txn = store.txn();
    let fs = read::open(&txn, DEFAULT_FS).unwrap();
    let whole = read::readdir(&txn, &fs, &At::root(), "", 0, false).unwrap();
    assert_eq!(whole.entries.len(), 25);
    assert_eq!(whole.next_after, None);

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = read::readdir(&txn, &fs, &At::root(), &after, 4, true).unwrap();
        assert!(page.entries.len() <= 4);
        for (name, dirent, entry) in &page.entries {
            assert_eq!(dirent.kind, Kind::Dir);
            assert_eq!(entry.as_ref().map(|e| e.ino), Some(dirent.ino));
            seen.push(name.clone());
        }
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, names);
}

#[test]
fn replicas_applying_the_same_entries_end_identical() {
    let (a, b) = (store(), store());
    for store in [&a, &b] {
        let chunk = stage(store, 1, b'z');
        apply_one(store, 2, mkdir(&[], "d")).unwrap();
        apply_one(store, 3, put_file("f", vec![chunk])).unwrap();
        apply_one(
            store,
            4,
            FsCommand::Rename {
                fs: DEFAULT_FS.into(),
                from: name(&[], "f"),
                to: name(&["d"], "f"),
                noreplace: true,
                now_ns: 12,
            },
        )
        .unwrap();
        apply_one(
            store,
            5,
            FsCommand::CreateFs {
                name: "scratch".into(),
                quota_bytes: 1 << 20,
            },
        )
        .unwrap();
    }
    assert_eq!(dump(&a), dump(&b));
    let moved = stat(&a, &["d", "f"]).unwrap();
    assert_eq!(moved.inode.mtime_ns, 7, "a rename keeps the file's mtime");
    assert!(matches!(
        apply_one(&a, 6, mkdir(&["d"], "f")),
        Err(Error::Fs {
            errno: Errno::EEXIST,
            ..
        })
    ));
}

#[test]
fn a_small_file_carries_its_chunk_and_a_refused_one_leaves_only_garbage() {
    let store = store();
    let data = b"small file".to_vec();
    let chunk = ChunkRef::of(&data);
    let inline = |last: &str, exclusive: bool, chunk_data: Vec<u8>| {
        let FsCommand::PutFile {
            fs,
            mut put,
            now_ns,
        } = put_file(last, vec![chunk])
        else {
            unreachable!()
        };
        put.exclusive = exclusive;
        put.chunk_data = chunk_data;
        FsCommand::PutFile { fs, put, now_ns }
    };
    let mut txn = store.txn();
    let request = Request {
        now_ms: NOW_MS,
        commands: vec![ClientCommand {
            session: None,
            command: Command::Fs(inline("s", true, data.clone())),
        }],
    };
    let reply = store.apply_request(&mut txn, 1, &request).unwrap();
    reply.outcomes[0].as_ref().unwrap();
    let files = txn.take_chunk_files();
    store.commit(txn).unwrap();
    assert_eq!(
        files.writes,
        vec![(chunk.hash, data.clone())],
        "the chunk file is written"
    );
    assert_eq!(refs(&store, &chunk), 1);
    assert_eq!(stat(&store, &["s"]).unwrap().inode.size, data.len() as u64);

    // Refused (the name exists): the file is unchanged, the chunk keeps one ref.
    let outcome = apply_one(&store, 2, inline("s", true, data.clone()));
    assert_eq!(errno_of(&outcome), Errno::EEXIST);
    assert_eq!(refs(&store, &chunk), 1);

    // Inline bytes that are not the only chunk are refused before anything is staged.
    let outcome = apply_one(&store, 3, inline("t", false, b"other".to_vec()));
    assert!(
        matches!(outcome, Err(Error::InvalidArgument { .. })),
        "{outcome:?}"
    );
    assert!(stat(&store, &["t"]).is_none());
}
