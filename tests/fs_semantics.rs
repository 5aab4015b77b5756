//! POSIX semantics of the file system through the SDK on a 3-node cluster:
//! atomic rename-over under concurrent readers, the errnos of the namespace calls,
//! exact link counts, symlinks, truncate and holes, xattrs, files that stay
//! readable through an open handle after their last name goes, hostile paths,
//! and an upload that survives the leader being killed mid-stream.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Errno, Error, FileKind, FsClient, UploadOptions, UploadPiece};
use common::chunks::wait_for_chunks;
use common::{content, eventually, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;

async fn cluster() -> (TestCluster, FsClient) {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(WAIT).await;
    let fs = cluster.client().fs("default");
    eventually(WAIT, || fs.stat("/")).await;
    (cluster, fs)
}

fn errno<T: std::fmt::Debug>(result: Result<T, Error>) -> Errno {
    match result {
        Err(e) => e.errno().unwrap_or_else(|| panic!("not an errno: {e:?}")),
        Ok(v) => panic!("expected an errno, got {v:?}"),
    }
}

fn opts() -> UploadOptions {
    UploadOptions::default()
}

/// Content that says which version it is and checks itself: 8-byte version, then
/// a fill derived from it.
fn version_bytes(version: u64) -> Bytes {
    let len = 64 * 1024 + (version as usize % 7) * 1000;
    let mut data = version.to_le_bytes().to_vec();
    data.extend((0..len).map(|i| (version as usize * 31 + i) as u8));
    Bytes::from(data)
}

fn check_version(data: &[u8]) -> u64 {
    let version = u64::from_le_bytes(data[..8].try_into().expect("8-byte header"));
    assert!(
        data == version_bytes(version),
        "a read saw a torn or mixed file (version {version})"
    );
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rename_over_is_atomic_for_concurrent_readers() {
    let (_cluster, fs) = cluster().await;
    fs.upload_bytes("/t", version_bytes(0), &opts())
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (fs, done) = (fs.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let (mut reads, mut last) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let data = fs
                    .read_file("/t")
                    .await
                    .expect("the target never disappears");
                let version = check_version(&data);
                assert!(version >= last, "versions went back: {last} then {version}");
                last = version;
                reads += 1;
            }
            reads
        }));
    }
    for version in 1..=200u64 {
        fs.upload_bytes("/t.tmp", version_bytes(version), &opts())
            .await
            .unwrap();
        fs.rename("/t.tmp", "/t").await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    assert_eq!(check_version(&fs.read_file("/t").await.unwrap()), 200);
    assert_eq!(errno(fs.stat("/t.tmp").await), Errno::ENOENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_calls_keep_posix_semantics() {
    let (_cluster, fs) = cluster().await;
    fs.mkdir("/a/b/c", 0o755, true).await.unwrap();
    // A directory cannot move into its own subtree.
    assert_eq!(errno(fs.rename("/a", "/a/b/c/a").await), Errno::EINVAL);
    assert_eq!(errno(fs.rename("/a/b", "/a/b/x").await), Errno::EINVAL);
    assert_eq!(errno(fs.rmdir("/a/b").await), Errno::ENOTEMPTY);
    fs.create("/a/f", 0o644, true).await.unwrap();
    assert_eq!(errno(fs.create("/a/f", 0o644, true).await), Errno::EEXIST);
    assert_eq!(errno(fs.mkdir("/a/f", 0o755, false).await), Errno::EEXIST);
    assert_eq!(errno(fs.rmdir("/a/f").await), Errno::ENOTDIR);
    assert_eq!(errno(fs.unlink("/a/b").await), Errno::EISDIR);
    assert_eq!(
        errno(fs.create("/a/f/x", 0o644, true).await),
        Errno::ENOTDIR
    );
    assert_eq!(
        errno(fs.create("/nope/x", 0o644, true).await),
        Errno::ENOENT
    );
    assert_eq!(errno(fs.rename("/a/f", "/a/b").await), Errno::EISDIR);
    assert_eq!(errno(fs.rename("/a/b", "/a/f").await), Errno::ENOTDIR);
    fs.create("/a/g", 0o644, true).await.unwrap();
    assert_eq!(
        errno(fs.rename_noreplace("/a/g", "/a/f").await),
        Errno::EEXIST
    );

    // nlink: files count their names, directories 2 + their subdirectories.
    assert_eq!(fs.stat("/a").await.unwrap().nlink, 3);
    fs.mkdir("/a/d2", 0o755, false).await.unwrap();
    assert_eq!(fs.stat("/a").await.unwrap().nlink, 4);
    fs.rename("/a/d2", "/a/b/d2").await.unwrap();
    assert_eq!(
        (
            fs.stat("/a").await.unwrap().nlink,
            fs.stat("/a/b").await.unwrap().nlink
        ),
        (3, 4)
    );
    fs.rmdir("/a/b/d2").await.unwrap();
    assert_eq!(fs.stat("/a/b").await.unwrap().nlink, 3);
    fs.link("/a/f", "/a/f2").await.unwrap();
    fs.link("/a/f", "/a/b/f3").await.unwrap();
    assert_eq!(fs.stat("/a/f").await.unwrap().nlink, 3);
    assert_eq!(errno(fs.link("/a/b", "/a/blink").await), Errno::EPERM);
    fs.unlink("/a/f2").await.unwrap();
    assert_eq!(fs.stat("/a/b/f3").await.unwrap().nlink, 2);
    // Rename onto another name of the same inode changes nothing.
    fs.rename("/a/f", "/a/b/f3").await.unwrap();
    assert_eq!(fs.stat("/a/f").await.unwrap().nlink, 2);
    // Rename over a file drops the replaced name's link.
    fs.rename("/a/g", "/a/b/f3").await.unwrap();
    assert_eq!(fs.stat("/a/f").await.unwrap().nlink, 1);
    // Over an empty directory.
    fs.mkdir("/a/empty", 0o755, false).await.unwrap();
    fs.rename("/a/b/c", "/a/empty").await.unwrap();
    assert_eq!(fs.stat("/a/empty").await.unwrap().kind, FileKind::Dir);
    assert_eq!(errno(fs.stat("/a/b/c").await), Errno::ENOENT);

    // Symlinks.
    fs.symlink("../f", "/a/b/sl").await.unwrap();
    assert_eq!(fs.readlink("/a/b/sl").await.unwrap(), "../f");
    assert_eq!(fs.stat("/a/b/sl").await.unwrap().kind, FileKind::Symlink);
    assert_eq!(errno(fs.readlink("/a/f").await), Errno::EINVAL);

    // Extended attributes.
    fs.set_xattr("/a/f", "user.tag", b"one").await.unwrap();
    fs.set_xattr("/a/f", "user.other", b"").await.unwrap();
    assert_eq!(fs.get_xattr("/a/f", "user.tag").await.unwrap(), b"one");
    let mut names = fs.list_xattrs("/a/f").await.unwrap();
    names.sort();
    assert_eq!(names, ["user.other", "user.tag"]);
    fs.remove_xattr("/a/f", "user.tag").await.unwrap();
    assert_eq!(
        errno(fs.get_xattr("/a/f", "user.tag").await),
        Errno::ENODATA
    );
    assert_eq!(
        errno(fs.remove_xattr("/a/f", "user.tag").await),
        Errno::ENODATA
    );
    assert_eq!(
        errno(fs.set_xattr("/a/f", "user.big", &vec![0; 65 * 1024]).await),
        Errno::E2BIG
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncate_holes_and_writes_read_back_exactly() {
    let (_cluster, fs) = cluster().await;
    let data = content("t", 3 * MIB + 100);
    fs.upload_bytes("/f", Bytes::from(data.clone()), &opts())
        .await
        .unwrap();
    // Down to the middle of block 1, then up again: the cut bytes read as zeros.
    fs.truncate("/f", MIB as u64 + 10).await.unwrap();
    assert_eq!(fs.read_file("/f").await.unwrap(), &data[..MIB + 10]);
    fs.truncate("/f", 2 * MIB as u64).await.unwrap();
    let mut expected = data[..MIB + 10].to_vec();
    expected.resize(2 * MIB, 0);
    assert!(fs.read_file("/f").await.unwrap() == expected);
    // A write far past the end leaves a hole that reads as zeros and costs nothing.
    fs.create("/sparse", 0o644, true).await.unwrap();
    let attr = fs
        .write_at("/sparse", 10 * MIB as u64 + 3, b"tail")
        .await
        .unwrap();
    assert_eq!(attr.size, 10 * MIB as u64 + 7);
    assert!(
        attr.allocated_bytes <= MIB as u64,
        "only the written block is stored"
    );
    let got = fs.read_file("/sparse").await.unwrap();
    assert!(got[..10 * MIB + 3].iter().all(|b| *b == 0));
    assert_eq!(&got[10 * MIB + 3..], b"tail");
    // A write across a block boundary into existing data.
    fs.write_at("/f", MIB as u64 - 2, b"XXXX").await.unwrap();
    expected[MIB - 2..MIB + 2].copy_from_slice(b"XXXX");
    assert!(fs.read_file("/f").await.unwrap() == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unlinked_open_file_stays_readable_until_released() {
    let (cluster, fs) = cluster().await;
    let data = content("open", 2 * MIB + 3);
    fs.upload_bytes("/held", Bytes::from(data.clone()), &opts())
        .await
        .unwrap();
    let used = fs.statfs().await.unwrap().bytes_used;
    let handle = fs.open("/held").await.unwrap();
    fs.unlink("/held").await.unwrap();
    assert_eq!(errno(fs.stat("/held").await), Errno::ENOENT);
    assert!(fs.read_ino(handle.ino, 0, 0).await.unwrap() == data);
    assert_eq!(
        fs.statfs().await.unwrap().bytes_used,
        used,
        "still counted while open"
    );
    fs.release(&handle).await.unwrap();
    assert_eq!(errno(fs.stat_ino(handle.ino).await), Errno::ESTALE);
    assert_eq!(
        fs.statfs().await.unwrap().bytes_used,
        used - data.len() as u64
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_paths_get_their_errno_and_change_nothing() {
    let (_cluster, fs) = cluster().await;
    fs.mkdir("/keep", 0o755, false).await.unwrap();
    let before = (fs.list("/").await.unwrap(), fs.statfs().await.unwrap());
    let long_name = format!("/{}", "n".repeat(256));
    let long_path = format!("/{}", vec!["d".repeat(200); 21].join("/"));
    let cases: Vec<(&str, Errno)> = vec![
        ("/a\0b", Errno::EINVAL),
        (&long_name, Errno::ENAMETOOLONG),
        (&long_path, Errno::ENAMETOOLONG),
    ];
    for (path, expected) in &cases {
        assert_eq!(
            errno(
                fs.upload_bytes(path, Bytes::from_static(b"x"), &opts())
                    .await
            ),
            *expected,
            "{path:?}"
        );
        assert_eq!(
            errno(fs.mkdir(path, 0o755, true).await),
            *expected,
            "{path:?}"
        );
        assert_eq!(
            errno(fs.create(path, 0o644, true).await),
            *expected,
            "{path:?}"
        );
        assert_eq!(errno(fs.rename("/keep", path).await), *expected, "{path:?}");
        assert_eq!(errno(fs.stat(path).await), *expected, "{path:?}");
    }
    assert_eq!(
        errno(fs.remove_all("/").await),
        Errno::EINVAL,
        "the root cannot be removed"
    );
    assert_eq!(errno(fs.rename("/", "/x").await), Errno::EINVAL);
    let after = (fs.list("/").await.unwrap(), fs.statfs().await.unwrap());
    assert_eq!(before, after, "refused calls changed nothing");
    // `..` chains resolve inside the root.
    fs.upload_bytes("../../../../escape", Bytes::from_static(b"in"), &opts())
        .await
        .unwrap();
    assert_eq!(fs.read_file("/escape").await.unwrap(), b"in");
    fs.upload_bytes("/keep/../../keep/./x", Bytes::from_static(b"y"), &opts())
        .await
        .unwrap();
    assert_eq!(fs.read_file("/keep/x").await.unwrap(), b"y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_survives_a_leader_kill_and_files_share_chunks_with_objects() {
    let (mut cluster, fs) = cluster().await;
    let client = cluster.client();
    let data = Bytes::from(content("kill", 64 * MIB));
    let leader = cluster.wait_for_leader(WAIT).await;
    let uploader = fs.clone();
    let payload = data.clone();
    let upload = tokio::spawn(async move {
        let options = UploadOptions {
            parents: true,
            ..Default::default()
        };
        // 64 pieces of 1 MiB, 40 ms apart: the stream is still running at the kill.
        uploader
            .upload_from("/big/file", &options, 64 * MIB as u64, move || {
                let payload = payload.clone();
                async move {
                    Some(futures::StreamExt::then(
                        futures::stream::iter(0..64),
                        move |i| {
                            let piece = payload.slice(i * MIB..(i + 1) * MIB);
                            async move {
                                tokio::time::sleep(Duration::from_millis(40)).await;
                                UploadPiece::Data(piece)
                            }
                        },
                    ))
                }
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!upload.is_finished(), "the kill must land mid-stream");
    cluster.node(leader).kill();
    let result = upload.await.unwrap();
    cluster.wait_for_new_leader(leader, WAIT).await;
    match fs.read_file("/big/file").await {
        Ok(got) => assert!(got == data, "the file is complete, never torn"),
        Err(e) => {
            assert_eq!(e.errno(), Some(Errno::ENOENT), "absent or complete: {e:?}");
            assert!(result.is_err(), "an acknowledged upload must be readable");
        }
    }
    if result.is_err() {
        // The caller retries; the chunks already staged are not sent again.
        fs.upload_bytes(
            "/big/file",
            data.clone(),
            &UploadOptions {
                parents: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    assert!(fs.read_file("/big/file").await.unwrap() == data);
    cluster.node(leader).start();
    // The same bytes as an object are stored once.
    let put = client
        .put_object_bytes("private", "same-bytes", data.clone(), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        put.chunks_sent, 0,
        "every chunk was already stored by the file"
    );
    for node in &cluster.nodes {
        let (files, _) = wait_for_chunks(&node.dir.join("data"), 64).await;
        assert_eq!(files, 64, "node {} holds each chunk once", node.id);
    }
}
