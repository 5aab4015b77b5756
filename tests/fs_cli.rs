//! `cairn storage` end to end on a 3-node cluster: a tree with nested, empty and
//! non-ASCII entries and a 64 MiB file goes up with `-r -p` and comes back equal
//! (`diff -r`, modes and ns mtimes), and `--rsync` sends exactly what changed.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::chunks::chunk_usage;
use common::{content, TestCluster, CAIRN};

const MIB: usize = 1024 * 1024;

fn storage(endpoints: &str, args: &[&str]) -> String {
    let output = Command::new(CAIRN)
        .args(["--endpoints", endpoints, "storage"])
        .args(args)
        .output()
        .expect("run cairn storage");
    assert!(
        output.status.success(),
        "cairn storage {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A tree of 517 files, 6 levels deep, with empty files and directories, names
/// with spaces and non-ASCII characters, modes, a symlink and a 64 MiB file.
fn make_tree(root: &Path) {
    let mut dir = root.to_path_buf();
    for depth in 0..6 {
        dir = dir.join(format!("level {depth} ü"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..85 {
            let file = dir.join(format!("file {i} – ñ.txt"));
            std::fs::write(&file, content(&format!("{depth}/{i}"), (i * 37) % 3000)).unwrap();
            if i % 7 == 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        std::fs::create_dir_all(dir.join("empty dir")).unwrap();
        std::fs::write(dir.join("empty file"), b"").unwrap();
    }
    std::fs::write(root.join("big.bin"), content("big", 64 * MIB)).unwrap();
    std::os::unix::fs::symlink("big.bin", root.join("link to big")).unwrap();
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn diff_r(a: &Path, b: &Path) {
    let status = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .status()
        .expect("run diff");
    assert!(
        status.success(),
        "diff -r {} {} found differences",
        a.display(),
        b.display()
    );
}

fn all_chunks(cluster: &TestCluster) -> Vec<u64> {
    cluster
        .nodes
        .iter()
        .map(|n| chunk_usage(&n.dir.join("data")).0)
        .collect()
}

/// The numbers of `sent N files, B bytes (C chunks); skipped S files; deleted D entries`.
fn summary(output: &str) -> [u64; 5] {
    let line = output
        .lines()
        .find(|l| l.starts_with("sent "))
        .unwrap_or_else(|| panic!("no summary in {output:?}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|n| panic!("summary {line:?} has {n:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tree_round_trips_and_rsync_sends_only_what_changed() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(Duration::from_secs(60)).await;
    let endpoints = cluster.endpoints().join(",");
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let uploaded = files(&src);
    assert!(uploaded.len() >= 500, "{} files", uploaded.len());

    let out = storage(
        &endpoints,
        &["upload", src.to_str().unwrap(), "/data", "-r", "-p"],
    );
    assert_eq!(summary(&out)[0], uploaded.len() as u64, "{out}");
    let back = work.path().join("back");
    storage(
        &endpoints,
        &["download", "/data", back.to_str().unwrap(), "-r"],
    );
    diff_r(&src, &back);
    for rel in &uploaded {
        let (a, b) = (
            std::fs::metadata(src.join(rel)).unwrap(),
            std::fs::metadata(back.join(rel)).unwrap(),
        );
        assert_eq!(
            a.mode() & 0o7777,
            b.mode() & 0o7777,
            "mode of {}",
            rel.display()
        );
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (b.mtime(), b.mtime_nsec()),
            "mtime of {}",
            rel.display()
        );
    }
    assert!(std::fs::symlink_metadata(back.join("link to big"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(back.join("level 0 ü/level 1 ü/empty dir").is_dir());

    // One byte of the 64 MiB file changes (same size, new mtime), a file is added
    // and one is removed.
    let big = src.join("big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[40 * MIB + 5] ^= 0xff;
    std::fs::write(&big, &bytes).unwrap();
    let new_file = src.join("level 0 ü/new – file");
    std::fs::write(&new_file, content("new", 5000)).unwrap();
    let removed = src.join("level 0 ü/file 3 – ñ.txt");
    std::fs::remove_file(&removed).unwrap();
    let before = all_chunks(&cluster);
    let out = storage(
        &endpoints,
        &[
            "upload",
            src.to_str().unwrap(),
            "/data",
            "--rsync",
            "--delete",
        ],
    );
    let [sent, bytes_sent, chunks_sent, _skipped, deleted] = summary(&out);
    assert_eq!(sent, 2, "the changed file and the new one: {out}");
    assert_eq!(
        bytes_sent,
        (MIB + 5000) as u64,
        "one chunk of the big file and the new file: {out}"
    );
    assert_eq!(chunks_sent, 2, "{out}");
    assert_eq!(deleted, 1, "{out}");
    // The chunk stores agree: exactly the two new chunks appeared on every node (the
    // replaced chunk stays until GC's grace period ends).
    common::eventually(Duration::from_secs(30), || {
        let now = all_chunks(&cluster);
        let want: Vec<u64> = before.iter().map(|c| c + 2).collect();
        async move {
            if now == want {
                Ok(())
            } else {
                Err(now)
            }
        }
    })
    .await;
    let client = cluster.client();
    let fs = client.fs("default");
    let err = fs.stat("/data/level 0 ü/file 3 – ñ.txt").await.unwrap_err();
    assert_eq!(err.errno(), Some(cairn::client::Errno::ENOENT));
    assert!(fs.read_file("/data/big.bin").await.unwrap() == bytes);

    let out = storage(
        &endpoints,
        &[
            "upload",
            src.to_str().unwrap(),
            "/data",
            "--rsync",
            "--delete",
        ],
    );
    assert_eq!(
        summary(&out)[..3],
        [0, 0, 0],
        "an immediate rerun sends nothing: {out}"
    );
    let names: BTreeSet<_> = fs
        .list("/data/level 0 ü")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains("new – file"));
}
