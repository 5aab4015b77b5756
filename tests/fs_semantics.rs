//! POSIX behaviour of the replicated file system, seen only through the SDK on a
//! 3-node cluster: rename-over stays atomic for concurrent readers (multi-chunk
//! versions included), the namespace errnos and exact link counts, symlinks,
//! truncate and holes, xattrs, unlinked-but-open files, hostile paths that are
//! refused without changing anything, and a 64 MiB upload through a leader kill
//! whose chunks are then shared with an identical object.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::client::{Errno, Error, FileKind, FsClient, FsInfo, UploadOptions};
use common::chunks::{chunk_usage, wait_for_chunks};
use common::{content, eventually, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

async fn three_nodes() -> (TestCluster, FsClient) {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(WAIT).await;
    let fs = cluster.client().fs("default");
    eventually(WAIT, || fs.stat("/")).await;
    (cluster, fs)
}

/// The errno of a call that must fail.
fn errno_of<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) -> Errno {
    match result {
        Err(e) => e
            .errno()
            .unwrap_or_else(|| panic!("{what}: an error without errno: {e:?}")),
        Ok(v) => panic!("{what}: expected an errno, got Ok({v:?})"),
    }
}

fn upload_opts() -> UploadOptions {
    UploadOptions::default()
}

// ---------------------------------------------------------------------------
// Rename-over atomicity
// ---------------------------------------------------------------------------

const MAGIC: &[u8; 8] = b"CAIRNVER";
const HEADER: usize = 24;

fn version_len(version: u64) -> usize {
    if version.is_multiple_of(8) {
        // Two chunks: a torn read could mix the blocks of two versions.
        MIB + 4096 + version as usize
    } else {
        16 * 1024 + version as usize * 13
    }
}

fn fill(version: u64, i: usize) -> u8 {
    // Depends on the block too, so a block from another version or offset shows.
    (version as usize)
        .wrapping_mul(131)
        .wrapping_add(i.wrapping_mul(7))
        .wrapping_add(i >> 20) as u8
}

/// Self-describing content: magic, version, total length, then a fill pattern.
fn version_bytes(version: u64) -> Bytes {
    let len = version_len(version);
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&version.to_le_bytes());
    data.extend_from_slice(&(len as u64).to_le_bytes());
    data.extend((HEADER..len).map(|i| fill(version, i)));
    Bytes::from(data)
}

/// Checks a read is one whole version; returns it.
fn check_version(data: &[u8]) -> u64 {
    assert!(
        data.len() >= HEADER,
        "a read of {} bytes: shorter than the header (torn)",
        data.len()
    );
    assert_eq!(&data[..8], MAGIC, "the header's magic is wrong (torn)");
    let version = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let len = u64::from_le_bytes(data[16..24].try_into().unwrap()) as usize;
    assert_eq!(
        len,
        version_len(version),
        "version {version}: bad length field"
    );
    assert_eq!(
        data.len(),
        len,
        "version {version}: read {} bytes of {len} (torn)",
        data.len()
    );
    if let Some(i) = (HEADER..len).find(|&i| data[i] != fill(version, i)) {
        panic!("version {version}: byte {i} is not this version's (torn or mixed)");
    }
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_over_is_atomic_while_readers_loop() {
    let (cluster, fs) = three_nodes().await;
    fs.upload_bytes("/t", version_bytes(0), &upload_opts())
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (fs, done) = (fs.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = HashSet::new();
                let mut last = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let data = match fs.read_file("/t").await {
                        Ok(data) => data,
                        Err(e) => {
                            return Err(format!("a reader failed after {reads} reads: {e:?}"))
                        }
                    };
                    let version = check_version(&data);
                    assert!(version >= last, "a reader went back: {last} then {version}");
                    last = version;
                    seen.insert(version);
                    reads += 1;
                }
                Ok((reads, seen.len()))
            })
        })
        .collect();
    const N: u64 = 200;
    for version in 1..=N {
        fs.upload_bytes("/t.tmp", version_bytes(version), &upload_opts())
            .await
            .unwrap();
        fs.rename("/t.tmp", "/t").await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        let (reads, distinct) = match reader.await.expect("a reader panicked") {
            Ok(counts) => counts,
            Err(failure) => {
                cluster.dump_logs();
                panic!("{failure}");
            }
        };
        println!("reader: {reads} reads, {distinct} distinct versions");
        assert!(
            reads > 0 && distinct > 1,
            "the reader overlapped the writer"
        );
    }
    assert_eq!(check_version(&fs.read_file("/t").await.unwrap()), N);
    assert_eq!(
        errno_of("stat /t.tmp", fs.stat("/t.tmp").await),
        Errno::ENOENT
    );
    assert_eq!(fs.list("/").await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Namespace and data semantics
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_links_symlinks_data_and_xattrs() {
    let (_cluster, fs) = three_nodes().await;

    // A directory cannot go into its own subtree.
    fs.mkdir("/p/q/r", 0o755, true).await.unwrap();
    for (from, to) in [
        ("/p", "/p/q/r/p"),
        ("/p", "/p/q/r"),
        ("/p/q", "/p/q/r/x"),
        ("/p/q", "/p/q/new"),
    ] {
        assert_eq!(
            errno_of(&format!("rename {from} {to}"), fs.rename(from, to).await),
            Errno::EINVAL,
            "rename {from} -> {to}"
        );
    }
    assert!(
        fs.stat("/p/q/r").await.is_ok(),
        "the refused renames moved nothing"
    );
    assert_eq!(
        errno_of("stat /p/q/r/p", fs.stat("/p/q/r/p").await),
        Errno::ENOENT
    );

    // rmdir of a non-empty directory.
    assert_eq!(errno_of("rmdir /p", fs.rmdir("/p").await), Errno::ENOTEMPTY);
    assert_eq!(
        errno_of("rmdir /p/q", fs.rmdir("/p/q").await),
        Errno::ENOTEMPTY
    );
    fs.create("/p/q/r/file", 0o644, true).await.unwrap();
    assert_eq!(
        errno_of("rmdir /p/q/r", fs.rmdir("/p/q/r").await),
        Errno::ENOTEMPTY
    );

    // Exclusive create of an existing name; a plain create opens it.
    let f = fs.create("/p/f", 0o640, true).await.unwrap();
    assert_eq!(
        errno_of("create excl /p/f", fs.create("/p/f", 0o644, true).await),
        Errno::EEXIST
    );
    assert_eq!(
        errno_of("create excl /p/q", fs.create("/p/q", 0o644, true).await),
        Errno::EEXIST
    );
    assert_eq!(fs.create("/p/f", 0o644, false).await.unwrap().ino, f.ino);
    assert_eq!(fs.stat("/p/f").await.unwrap().mode, 0o640);

    // nlink of a file counts its names.
    assert_eq!(f.nlink, 1);
    fs.link("/p/f", "/p/q/g").await.unwrap();
    assert_eq!(fs.stat("/p/f").await.unwrap().nlink, 2);
    let third = fs.link("/p/q/g", "/h").await.unwrap();
    assert_eq!((third.ino, third.nlink), (f.ino, 3));
    for p in ["/p/f", "/p/q/g", "/h"] {
        assert_eq!(fs.stat(p).await.unwrap().nlink, 3, "{p}");
    }
    assert_eq!(
        errno_of("link onto existing", fs.link("/p/f", "/h").await),
        Errno::EEXIST
    );
    fs.unlink("/p/f").await.unwrap();
    assert_eq!(fs.stat_ino(f.ino).await.unwrap().nlink, 2);
    fs.unlink("/h").await.unwrap();
    assert_eq!(fs.stat("/p/q/g").await.unwrap().nlink, 1);
    fs.unlink("/p/q/g").await.unwrap();
    assert_eq!(
        errno_of("stat /p/q/g", fs.stat("/p/q/g").await),
        Errno::ENOENT
    );

    // nlink of a directory: 2 + its subdirectories (files do not count).
    let root_before = fs.stat("/").await.unwrap().nlink;
    assert_eq!(root_before, 3, "the root holds one directory, /p");
    assert_eq!(fs.stat("/p").await.unwrap().nlink, 3);
    fs.create("/p/plain", 0o644, true).await.unwrap();
    assert_eq!(fs.stat("/p").await.unwrap().nlink, 3);
    fs.mkdir("/p/s1", 0o755, false).await.unwrap();
    fs.mkdir("/p/s2", 0o755, false).await.unwrap();
    assert_eq!(fs.stat("/p").await.unwrap().nlink, 5);
    assert_eq!(fs.stat("/p/s1").await.unwrap().nlink, 2);
    fs.rmdir("/p/s1").await.unwrap();
    assert_eq!(fs.stat("/p").await.unwrap().nlink, 4);
    fs.rename("/p/s2", "/s2").await.unwrap();
    assert_eq!(fs.stat("/p").await.unwrap().nlink, 3);
    assert_eq!(fs.stat("/").await.unwrap().nlink, root_before + 1);
    fs.rmdir("/s2").await.unwrap();
    assert_eq!(fs.stat("/").await.unwrap().nlink, root_before);

    // Symlinks: stored verbatim, never followed by path resolution.
    let sl = fs.symlink("q/r", "/p/sl").await.unwrap();
    assert_eq!(sl.kind, FileKind::Symlink);
    assert_eq!(sl.size, 3, "a symlink's size is its target's length");
    assert_eq!(fs.readlink("/p/sl").await.unwrap(), "q/r");
    assert_eq!(fs.stat("/p/sl").await.unwrap().kind, FileKind::Symlink);
    fs.symlink("/does/not/exist", "/dangling").await.unwrap();
    assert_eq!(fs.readlink("/dangling").await.unwrap(), "/does/not/exist");
    assert_eq!(
        errno_of("readlink of a file", fs.readlink("/p/plain").await),
        Errno::EINVAL
    );
    assert_eq!(
        errno_of("readlink of a dir", fs.readlink("/p").await),
        Errno::EINVAL
    );
    assert_eq!(
        errno_of(
            "create through a symlink",
            fs.create("/p/sl/file", 0o644, true).await
        ),
        Errno::ENOTDIR
    );
    let kinds: Vec<_> = fs
        .list("/p")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind))
        .collect();
    assert!(
        kinds.contains(&("sl".to_string(), FileKind::Symlink)),
        "{kinds:?}"
    );
    fs.unlink("/p/sl").await.unwrap();
    assert!(
        fs.stat("/p/q/r").await.is_ok(),
        "unlinking a symlink leaves its target"
    );

    // Truncate down then up: the cut bytes come back as zeros.
    let data = content("posix-trunc", 2 * MIB + MIB / 2);
    fs.upload_bytes("/tr", Bytes::from(data.clone()), &upload_opts())
        .await
        .unwrap();
    let cut = MIB + MIB / 2 + 3;
    assert_eq!(
        fs.truncate("/tr", cut as u64).await.unwrap().size,
        cut as u64
    );
    assert!(fs.read_file("/tr").await.unwrap() == data[..cut]);
    assert_eq!(
        fs.truncate("/tr", 3 * MIB as u64).await.unwrap().size,
        3 * MIB as u64
    );
    let mut expected = data[..cut].to_vec();
    expected.resize(3 * MIB, 0);
    let got = fs.read_file("/tr").await.unwrap();
    assert_eq!(got.len(), expected.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!(
            "after truncate down and up, byte {i} is {} not {}",
            got[i], expected[i]
        );
    }
    fs.truncate("/tr", 0).await.unwrap();
    assert_eq!(fs.stat("/tr").await.unwrap().allocated_bytes, 0);
    assert!(fs.read_file("/tr").await.unwrap().is_empty());

    // A write past EOF leaves a hole of zeros that costs no storage.
    fs.create("/hole", 0o644, true).await.unwrap();
    let at = 5 * MIB as u64 + 100;
    let attr = fs.write_at("/hole", at, b"abc").await.unwrap();
    assert_eq!(attr.size, at + 3);
    assert!(
        attr.allocated_bytes > 0 && attr.allocated_bytes <= MIB as u64,
        "only the written block is allocated: {}",
        attr.allocated_bytes
    );
    let attr = fs.write_at("/hole", 0, b"head").await.unwrap();
    assert!(
        attr.allocated_bytes <= 2 * MIB as u64,
        "two blocks written: {}",
        attr.allocated_bytes
    );
    let got = fs.read_file("/hole").await.unwrap();
    assert_eq!(got.len() as u64, at + 3);
    assert_eq!(&got[..4], b"head");
    assert!(
        got[4..at as usize].iter().all(|b| *b == 0),
        "the hole reads as zeros"
    );
    assert_eq!(&got[at as usize..], b"abc");
    let middle = fs
        .read_ino(attr.ino, 2 * MIB as u64 + 7, 1000)
        .await
        .unwrap();
    assert_eq!(middle, vec![0; 1000]);

    // Extended attributes.
    fs.set_xattr("/p/plain", "user.a", b"1").await.unwrap();
    fs.set_xattr("/p/plain", "user.b", b"two").await.unwrap();
    fs.set_xattr("/p/plain", "user.a", b"one").await.unwrap();
    assert_eq!(fs.get_xattr("/p/plain", "user.a").await.unwrap(), b"one");
    assert_eq!(fs.get_xattr("/p/plain", "user.b").await.unwrap(), b"two");
    let mut names = fs.list_xattrs("/p/plain").await.unwrap();
    names.sort();
    assert_eq!(names, ["user.a", "user.b"]);
    fs.remove_xattr("/p/plain", "user.a").await.unwrap();
    assert_eq!(fs.list_xattrs("/p/plain").await.unwrap(), ["user.b"]);
    assert_eq!(
        errno_of("get removed", fs.get_xattr("/p/plain", "user.a").await),
        Errno::ENODATA
    );
    assert_eq!(
        errno_of("get never set", fs.get_xattr("/p/plain", "user.zz").await),
        Errno::ENODATA
    );
    assert_eq!(
        errno_of(
            "remove missing",
            fs.remove_xattr("/p/plain", "user.a").await
        ),
        Errno::ENODATA
    );
    fs.set_xattr("/p", "user.dir", b"d").await.unwrap();
    assert_eq!(fs.get_xattr("/p", "user.dir").await.unwrap(), b"d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unlinked_open_file_lives_until_release() {
    let (_cluster, fs) = three_nodes().await;
    let data = content("posix-open", MIB + MIB / 2 + 11);
    let empty = fs.statfs().await.unwrap().bytes_used;
    fs.upload_bytes("/held", Bytes::from(data.clone()), &upload_opts())
        .await
        .unwrap();
    let used = fs.statfs().await.unwrap().bytes_used;
    assert_eq!(used, empty + data.len() as u64);
    let handle = fs.open("/held").await.unwrap();
    assert_eq!(handle.attr.size, data.len() as u64);
    fs.unlink("/held").await.unwrap();
    assert_eq!(
        errno_of("stat /held", fs.stat("/held").await),
        Errno::ENOENT
    );
    assert!(fs.list("/").await.unwrap().is_empty());
    let whole = fs.read_ino(handle.ino, 0, data.len() as u64).await.unwrap();
    assert!(whole == data, "the open file still reads its bytes");
    let across = fs.read_ino(handle.ino, MIB as u64 - 5, 10).await.unwrap();
    assert_eq!(across, &data[MIB - 5..MIB + 5]);
    assert_eq!(fs.stat_ino(handle.ino).await.unwrap().nlink, 0);
    assert_eq!(
        fs.statfs().await.unwrap().bytes_used,
        used,
        "an open unlinked file is still counted"
    );
    fs.release(&handle).await.unwrap();
    assert_eq!(
        errno_of("stat_ino after release", fs.stat_ino(handle.ino).await),
        Errno::ESTALE
    );
    eventually(WAIT, || {
        let fs = fs.clone();
        async move {
            let now = fs.statfs().await.map_err(|e| format!("{e:?}"))?.bytes_used;
            if now == empty {
                Ok(())
            } else {
                Err(format!("bytes_used {now}, want {empty}"))
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Hostile paths
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_paths_are_refused_and_change_nothing() {
    let (_cluster, fs) = three_nodes().await;
    fs.mkdir("/keep", 0o755, false).await.unwrap();
    fs.create("/keep/f", 0o644, true).await.unwrap();
    let snapshot = |fs: FsClient| async move {
        let listing: Vec<_> = fs
            .list("/")
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.ino, e.kind))
            .collect();
        let info: FsInfo = fs.statfs().await.unwrap();
        (listing, info.bytes_used, info.inodes_used, info)
    };
    let before = snapshot(fs.clone()).await;

    let nul = "/a\0b".to_string();
    let long_name = format!("/{}", "n".repeat(256));
    let long_path = format!("/{}", vec!["d".repeat(250); 17].join("/")); // 4268 bytes
    assert!(long_path.len() > 4097);
    let nested_long_name = format!("/keep/{}", "m".repeat(256));
    let cases = [
        (&nul, Errno::EINVAL),
        (&long_name, Errno::ENAMETOOLONG),
        (&nested_long_name, Errno::ENAMETOOLONG),
        (&long_path, Errno::ENAMETOOLONG),
    ];
    for (path, want) in cases {
        let shown = format!("{:?}…", &path[..path.len().min(24)]);
        let calls: Vec<(&str, Result<(), Error>)> = vec![
            ("create", fs.create(path, 0o644, true).await.map(|_| ())),
            ("mkdir", fs.mkdir(path, 0o755, true).await.map(|_| ())),
            (
                "upload",
                fs.upload_bytes(path, Bytes::from_static(b"x"), &upload_opts())
                    .await
                    .map(|_| ()),
            ),
            ("symlink", fs.symlink("/keep", path).await.map(|_| ())),
            ("link", fs.link("/keep/f", path).await.map(|_| ())),
            ("rename to", fs.rename("/keep/f", path).await),
            ("rename from", fs.rename(path, "/moved").await),
            ("unlink", fs.unlink(path).await),
            ("rmdir", fs.rmdir(path).await),
            ("stat", fs.stat(path).await.map(|_| ())),
            ("set_xattr", fs.set_xattr(path, "user.x", b"v").await),
            ("truncate", fs.truncate(path, 1).await.map(|_| ())),
        ];
        for (call, result) in calls {
            assert_eq!(
                errno_of(&format!("{call} {shown}"), result),
                want,
                "{call} {shown}"
            );
            assert_eq!(
                snapshot(fs.clone()).await,
                before,
                "{call} {shown} was refused but changed the root listing or statfs"
            );
        }
    }
    assert!(fs.stat("/keep/f").await.is_ok());
    assert_eq!(
        errno_of("stat /moved", fs.stat("/moved").await),
        Errno::ENOENT
    );

    // A name of exactly 255 bytes is fine.
    let max_name = format!("/keep/{}", "k".repeat(255));
    fs.create(&max_name, 0o644, true).await.unwrap();
    fs.unlink(&max_name).await.unwrap();

    // `..` is lexical and stops at the root.
    let root_ino = fs.stat("/").await.unwrap().ino;
    assert_eq!(fs.stat("/../..").await.unwrap().ino, root_ino);
    let x = fs.create("../../../x", 0o644, true).await.unwrap();
    assert_eq!(fs.stat("/x").await.unwrap().ino, x.ino);
    fs.write_at("/keep/../../../x", 0, b"inside").await.unwrap();
    assert_eq!(fs.read_file("/x").await.unwrap(), b"inside");
    fs.mkdir("/keep/../../d", 0o755, false).await.unwrap();
    let mut names: Vec<_> = fs
        .list("/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["d", "keep", "x"],
        "everything landed inside the root"
    );
    let after = fs.statfs().await.unwrap();
    assert_eq!(after.inodes_used, before.2 + 2);
}

// ---------------------------------------------------------------------------
// Leader kill mid-upload, then chunk sharing with objects
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_upload_through_a_leader_kill_is_whole_and_dedupes_with_objects() {
    let (mut cluster, fs) = three_nodes().await;
    let before: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|n| chunk_usage(&n.dir.join("data")).0)
        .collect();
    let data = Bytes::from(content("posix-64mib", 64 * MIB));
    let distinct: HashSet<_> = data.chunks(MIB).map(blake3::hash).collect();
    assert_eq!(distinct.len(), 64);

    let leader = cluster.wait_for_leader(WAIT).await;
    let upload = {
        let (fs, data) = (fs.clone(), data.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = fs.upload_bytes("/big", data, &upload_opts()).await;
            (result, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mid_stream = !upload.is_finished();
    cluster.node(leader).kill();
    let (result, took) = tokio::time::timeout(Duration::from_secs(240), upload)
        .await
        .expect("the upload ends (bounded)")
        .unwrap();
    println!(
        "leader {leader} killed {} the upload; upload took {took:?}: {:?}",
        if mid_stream { "during" } else { "after" },
        result.as_ref().map(|r| (r.chunks_sent, r.chunks_total))
    );
    cluster.wait_for_new_leader(leader, WAIT).await;
    match fs.read_file("/big").await {
        Ok(got) => assert!(got == data, "the file is complete: never torn"),
        Err(e) => {
            assert_eq!(e.errno(), Some(Errno::ENOENT), "absent or complete: {e:?}");
            assert!(
                result.is_err(),
                "an acknowledged upload must be readable: {result:?}"
            );
        }
    }
    if result.is_err() {
        fs.upload_bytes("/big", data.clone(), &upload_opts())
            .await
            .unwrap();
    }
    assert!(fs.read_file("/big").await.unwrap() == data);
    cluster.node(leader).start();
    cluster.wait_for_leader(WAIT).await;

    // The same bytes as an object share the file's chunks.
    let client = cluster.client();
    let put_options = Default::default();
    eventually(WAIT, || {
        client.put_object_bytes("private", "same-64mib", data.clone(), &put_options)
    })
    .await;
    assert!(client.get_object("private", "same-64mib").await.unwrap().1 == data);
    for (node, before) in cluster.nodes.iter().zip(&before) {
        let want = before + distinct.len() as u64;
        let (files, _) = wait_for_chunks(&node.dir.join("data"), want).await;
        assert_eq!(
            files, want,
            "node {} stores each distinct chunk once (file + object)",
            node.id
        );
    }
}
