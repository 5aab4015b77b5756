//! Goal: `cairn admin backup` through a follower of a 3-node cluster, restored
//! with `cairn admin restore` into a fresh data directory, gives a new cluster
//! whose content equals the source's item by item (KV values, versions and TTLs;
//! queues with their messages and leases; objects' bytes, etags and metadata,
//! public and private; files' bytes, modes, symlinks and xattrs; tokens, which
//! still work), which continues the source's log and grows like any cluster. A
//! damaged backup (cut, a byte flipped in the middle, in the state section or in
//! a chunk) is refused by `verify` and by `restore`, which then leaves no
//! directory behind.
//!
//! Method: real server processes (`TestCluster`), the SDK to write and to read
//! every item back from both clusters (linearizable reads), the `cairn admin`
//! CLI for backup, verify and restore.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use cairn::client::{
    Attr, BucketInfo, Client, FileKind, ListObjectsOptions, ListOptions, Namespace, ObjectInfo,
    PutObjectOptions, PutOptions, QueueInfo, ReceiveOptions, SetAttrs, TokenInfo, UploadOptions,
    Value,
};
use common::chunks::{chunk_usage, wait_for_chunks};
use common::http::request;
use common::{content, eventually, TestCluster, TestNode, CAIRN};

const WAIT: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;
/// Long enough that no TTL or lease set here ends while the test runs.
const HOUR: Duration = Duration::from_secs(3600);

/// Everything the SDK can read without changing it, in a comparable form.
#[derive(Debug, PartialEq)]
struct Snapshot {
    namespaces: Vec<Namespace>,
    values: BTreeMap<(String, Bytes), Value>,
    queues: Vec<QueueInfo>,
    buckets: Vec<BucketInfo>,
    objects: BTreeMap<(String, String), (ObjectInfo, Vec<u8>)>,
    files: BTreeMap<String, FileItem>,
    tokens: Vec<TokenInfo>,
}

#[derive(Debug, PartialEq)]
struct FileItem {
    attr: Attr,
    bytes: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

async fn read_all(client: &Client) -> Snapshot {
    let namespaces = client.list_namespaces().await.expect("list namespaces");
    let mut values = BTreeMap::new();
    for ns in &namespaces {
        let page = client
            .list_keys(&ns.name, &ListOptions::default())
            .await
            .expect("list keys");
        assert!(page.next_cursor.is_none(), "one page holds the test's keys");
        for key in page.keys {
            let value = client
                .get(&ns.name, &key)
                .await
                .expect("get")
                .expect("listed");
            values.insert((ns.name.clone(), key), value);
        }
    }
    let buckets = client.list_buckets().await.expect("list buckets");
    let mut objects = BTreeMap::new();
    for bucket in ["public", "private"] {
        let page = client
            .list_objects(bucket, &ListObjectsOptions::default())
            .await
            .expect("list objects");
        for info in page.objects {
            let (got, bytes) = client
                .get_object(bucket, &info.key)
                .await
                .expect("get object");
            assert_eq!(got, info, "listing and download agree");
            objects.insert((bucket.to_string(), info.key.clone()), (info, bytes));
        }
    }
    Snapshot {
        namespaces,
        values,
        queues: client.list_queues().await.expect("list queues"),
        buckets,
        objects,
        files: read_files(client).await,
        tokens: client.list_tokens().await.expect("list tokens"),
    }
}

/// Every file, directory and symlink of `default`, walked from the root.
async fn read_files(client: &Client) -> BTreeMap<String, FileItem> {
    let fs = client.fs("default");
    let mut out = BTreeMap::new();
    let mut dirs = vec!["/".to_string()];
    while let Some(dir) = dirs.pop() {
        for entry in fs.list(&dir).await.expect("list dir") {
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            let attr = fs.stat(&path).await.expect("stat");
            let bytes = match attr.kind {
                FileKind::File => fs.read_file(&path).await.expect("read file"),
                FileKind::Dir => {
                    dirs.push(path.clone());
                    Vec::new()
                }
                FileKind::Symlink => fs.readlink(&path).await.expect("readlink").into_bytes(),
            };
            let mut xattrs = BTreeMap::new();
            for name in fs.list_xattrs(&path).await.expect("list xattrs") {
                let value = fs.get_xattr(&path, &name).await.expect("get xattr");
                xattrs.insert(name, value);
            }
            out.insert(
                path,
                FileItem {
                    attr,
                    bytes,
                    xattrs,
                },
            );
        }
    }
    out
}

/// Waits until the node at `addr` reports `role` (asked with a token).
async fn wait_for_role(client: &Client, addr: &str, role: &str) {
    eventually(WAIT, || async {
        match client.node_status(addr).await {
            Ok(status) if status.role == role => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// The receipts of the two messages left leased (in flight) in queue `jobs`.
struct Leased {
    receipts: Vec<String>,
}

/// Writes one of everything; returns the leases it left in flight.
async fn fill(client: &Client) -> Leased {
    client.create_namespace("settings").await.unwrap();
    client.put("settings", b"theme", b"dark").await.unwrap();
    client.put("settings", b"theme", b"light").await.unwrap(); // a newer version
    client.put("settings", b"lang", b"en").await.unwrap();
    let ttl = PutOptions::ttl(HOUR);
    client
        .put_with("settings", b"session", b"abc", ttl)
        .await
        .unwrap();
    client.create_namespace("empty").await.unwrap();

    client.create_queue("jobs").await.unwrap();
    for i in 0..5 {
        client
            .send("jobs", format!("job {i}").as_bytes())
            .await
            .unwrap();
    }
    let lease = ReceiveOptions {
        lease: Some(HOUR),
        wait: Duration::ZERO,
    };
    let mut receipts = Vec::new();
    for _ in 0..2 {
        let message = client
            .receive("jobs", lease)
            .await
            .unwrap()
            .expect("a message");
        receipts.push(message.receipt);
    }
    client.create_queue("idle").await.unwrap();

    let options = PutObjectOptions {
        content_type: "text/plain".into(),
        metadata: BTreeMap::from([("owner".into(), "ops".into())]),
    };
    let hello = Bytes::from_static(b"hello, world\n");
    client
        .put_object_bytes("public", "site/hello.txt", hello, &options)
        .await
        .unwrap();
    let big = Bytes::from(content("big object", 3 * MIB + 12_345));
    let plain = PutObjectOptions::default();
    client
        .put_object_bytes("private", "data/big.bin", big, &plain)
        .await
        .unwrap();
    client
        .put_object_bytes("private", "empty", Bytes::new(), &plain)
        .await
        .unwrap();
    // Deleted: its chunks are unreferenced garbage, which a backup leaves out.
    let gone = Bytes::from(content("deleted", MIB + 7));
    client
        .put_object_bytes("private", "gone.bin", gone, &plain)
        .await
        .unwrap();
    client.delete_object("private", "gone.bin").await.unwrap();

    let fs = client.fs("default");
    fs.mkdir("/a/b/c", 0o750, true).await.unwrap();
    let file = Bytes::from(content("multi-chunk file", 2 * MIB + 100));
    let upload = UploadOptions {
        mode: 0o600,
        ..UploadOptions::default()
    };
    fs.upload_bytes("/a/b/c/data.bin", file, &upload)
        .await
        .unwrap();
    fs.upload_bytes(
        "/a/note.txt",
        Bytes::from_static(b"note"),
        &UploadOptions::default(),
    )
    .await
    .unwrap();
    let mode = SetAttrs {
        mode: Some(0o640),
        ..SetAttrs::default()
    };
    fs.set_attr("/a/note.txt", &mode).await.unwrap();
    fs.set_xattr("/a/note.txt", "user.colour", b"blue")
        .await
        .unwrap();
    fs.set_xattr("/a/b", "user.empty", b"").await.unwrap();
    fs.symlink("b/c/data.bin", "/a/link").await.unwrap();

    client.create_token("ci").await.unwrap();
    Leased { receipts }
}

fn cairn(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(CAIRN);
    command
        .args(args)
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_ENDPOINTS");
    if let Some(token) = token {
        command.env("CAIRN_TOKEN", token);
    }
    command.output().expect("run cairn")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn restore(file: &Path, node: &TestNode) -> Output {
    let data = node.dir.join("data");
    cairn(
        &[
            "admin",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            &node.grpc,
            "--http-addr",
            &node.http,
            "--peer-addr",
            &node.peer,
        ],
        None,
    )
}

/// A damaged copy of `file` must fail `verify` and `restore`, naming the damage,
/// and the restore must leave neither the directory nor a staging one behind.
fn assert_refused(file: &Path, damaged: Vec<u8>, what: &str, node: &TestNode) {
    let bad = file.with_extension(what);
    std::fs::write(&bad, damaged).unwrap();
    let verified = cairn(&["admin", "verify", bad.to_str().unwrap()], None);
    assert!(
        !verified.status.success(),
        "verify accepted a backup with {what}"
    );
    let message = text(&verified);
    assert!(
        message.contains("damaged") || message.contains("truncated"),
        "{what}: {message}"
    );
    let restored = restore(&bad, node);
    assert!(
        !restored.status.success(),
        "restore accepted a backup with {what}"
    );
    assert!(
        text(&restored).contains("not a usable backup"),
        "{}",
        text(&restored)
    );
    let left: Vec<_> = std::fs::read_dir(&node.dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "restore of a backup with {what} left {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_through_a_follower_restores_every_item_into_a_new_cluster() {
    let source = TestCluster::start(3, &[]);
    let leader = source.wait_for_leader(WAIT).await;
    let open = source.client();
    let (_, token) = eventually(WAIT, || open.create_token("ops")).await;
    let client = source.client().with_token(&token).unwrap();
    let leased = fill(&client).await;
    let before = read_all(&client).await;
    // The comparison below is not vacuous: it covers all of this.
    assert_eq!((before.namespaces.len(), before.values.len()), (2, 3));
    let session = &before.values[&("settings".to_string(), Bytes::from_static(b"session"))];
    assert!(session.expires_at_ms.is_some(), "a key with a TTL");
    assert_eq!(before.queues.iter().map(|q| q.length).sum::<u64>(), 5);
    assert_eq!((before.objects.len(), before.files.len()), (3, 6));
    assert_eq!(before.files["/a/note.txt"].attr.mode & 0o777, 0o640);
    assert_eq!(before.files["/a/note.txt"].xattrs["user.colour"], b"blue");
    assert_eq!(before.files["/a/link"].bytes, b"b/c/data.bin");
    assert_eq!(before.tokens.len(), 2);

    // 1. Back up through a follower (it gets the read index from the leader).
    let follower = source.nodes.iter().find(|n| n.id != leader).unwrap();
    let file = source.dir.path().join("cluster.cbk");
    let args = ["--endpoints", &follower.grpc, "admin", "backup", "--to"];
    let args = [&args[..], &[file.to_str().unwrap()]].concat();
    let refused = cairn(&args, None);
    assert!(!refused.status.success(), "a backup without a token");
    assert!(
        text(&refused).contains("need a token"),
        "{}",
        text(&refused)
    );
    // The follower may not have applied the token yet: it checks tokens locally.
    let backed_up = eventually(WAIT, || async {
        let output = cairn(&args, Some(&token));
        if output.status.success() {
            Ok(output)
        } else {
            Err(text(&output))
        }
    })
    .await;
    let report = text(&backed_up);
    assert!(
        report.contains(&format!("made by node {}", follower.id)),
        "{report}"
    );
    let verified = cairn(&["admin", "verify", file.to_str().unwrap()], None);
    assert!(verified.status.success(), "{}", text(&verified));
    // The deleted object's chunk is not carried: 4 + 3 chunks of data, 1 + 1 small.
    assert!(text(&verified).contains("9 chunks"), "{}", text(&verified));

    // 2. Restore into a fresh directory; refuse to restore over it again.
    let restored_base = tempfile::tempdir().unwrap();
    let mut node = TestNode::new(1, restored_base.path(), String::new(), Vec::new());
    node.peers = format!("1={}", node.peer);
    let output = restore(&file, &node);
    assert!(output.status.success(), "{}", text(&output));
    let again = restore(&file, &node);
    assert!(text(&again).contains("is not empty"), "{}", text(&again));
    let restored_data = node.dir.join("data");
    // The chunks referenced, and only those, are in the new chunk store.
    assert_eq!(chunk_usage(&restored_data).0, 9);
    node.start(); // with a cluster secret of its own: a new cluster
    let mut restored = TestCluster {
        nodes: vec![node],
        dir: restored_base,
    };
    let restored_client = restored.client().with_token(&token).unwrap();
    wait_for_role(&restored_client, &restored.nodes[0].grpc, "leader").await;

    // 3. The same content, item by item, and the token still works.
    let after = read_all(&restored_client).await;
    assert_eq!(before, after);
    let open = restored.client().list_namespaces().await;
    assert!(open.is_err(), "the restored cluster still needs a token");
    let public = request(
        "GET",
        &restored.nodes[0].http,
        "/o/public/site/hello.txt",
        &[],
        b"",
    );
    assert_eq!(public.await.body, b"hello, world\n");
    let private = request(
        "GET",
        &restored.nodes[0].http,
        "/o/private/data/big.bin",
        &[],
        b"",
    );
    assert_eq!(private.await.status, 401, "a private object stays private");

    // 4. Queue messages and leases as they were: the three never received come
    //    in order on first delivery, the two leased stay invisible, and their
    //    receipts from the source cluster still ack them.
    let lease = ReceiveOptions {
        lease: Some(Duration::from_secs(60)),
        wait: Duration::ZERO,
    };
    for i in 2..5 {
        let message = restored_client
            .receive("jobs", lease)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.body, format!("job {i}").as_bytes());
        assert_eq!(message.delivery_count, 1);
    }
    assert_eq!(restored_client.receive("jobs", lease).await.unwrap(), None);
    for receipt in &leased.receipts {
        restored_client.ack("jobs", receipt).await.unwrap();
    }

    // 5. The new cluster continues the source's log: versions keep growing.
    let newest = before.values.values().map(|v| v.version).max().unwrap();
    let version = restored_client
        .put("settings", b"after", b"restore")
        .await
        .unwrap();
    assert!(version > newest, "version {version} after {newest}");

    // 6. It grows like any cluster: a learner gets the data, then votes.
    let joiner = restored.spawn_joiner(2);
    let (grpc, http, peer) = {
        let n = &restored.nodes[joiner];
        (n.grpc.clone(), n.http.clone(), n.peer.clone())
    };
    eventually(WAIT, || restored_client.add_learner(2, &grpc, &http, &peer)).await;
    eventually(WAIT, || restored_client.promote(2)).await;
    wait_for_role(&restored_client, &grpc, "follower").await;
    let joiner_data = restored.nodes[joiner].dir.join("data");
    assert_eq!(
        wait_for_chunks(&joiner_data, 9).await,
        chunk_usage(&restored_data)
    );

    // 7. Damaged backups are refused before anything is written.
    let bytes = std::fs::read(&file).unwrap();
    let target = TestNode::new(
        1,
        &source.dir.path().join("refused"),
        String::new(),
        Vec::new(),
    );
    assert_refused(
        &file,
        bytes[..bytes.len() * 2 / 3].to_vec(),
        "truncated",
        &target,
    );
    let flip = |at: usize| {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        bad
    };
    assert_refused(&file, flip(bytes.len() / 2), "middle", &target);
    let manifest_len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    assert_refused(&file, flip(12 + manifest_len + 40), "state", &target);
    // Inside the last chunk: before the chunk section's end frame and the trailer.
    assert_refused(
        &file,
        flip(bytes.len() - (5 + 48) - (5 + 32) - 100),
        "chunk",
        &target,
    );
}
