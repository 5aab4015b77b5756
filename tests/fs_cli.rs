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
    eprintln!("first upload: {}", out.trim());
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
    let big_mtime = std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(big_mtime)
        .unwrap();
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
    eprintln!("rsync after changes: {}", out.trim());
    let [sent, bytes_sent, chunks_sent, skipped, deleted] = summary(&out);
    assert_eq!(
        out.trim(),
        format!(
            "sent 2 files, {} bytes (2 chunks); skipped {skipped} files; deleted 1 entries",
            MIB + 5000
        ),
        "the summary line's exact shape"
    );
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
    assert_eq!(
        fs.stat("/data/big.bin").await.unwrap().mtime_ns,
        1_700_000_000_123_456_789
    );

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
    eprintln!("immediate rerun: {}", out.trim());
    assert!(
        out.starts_with("sent 0 files, 0 bytes (0 chunks); skipped "),
        "an immediate rerun sends nothing: {out}"
    );
    assert_eq!(summary(&out)[4], 0, "{out}");
    let names: BTreeSet<_> = fs
        .list("/data/level 0 ü")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains("new – file"));
}

fn storage_fails(endpoints: &str, args: &[&str]) -> String {
    let output = Command::new(CAIRN)
        .args(["--endpoints", endpoints, "storage"])
        .args(args)
        .output()
        .expect("run cairn storage");
    assert!(!output.status.success(), "cairn storage {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The value of `key: value` in `stat` output.
fn field<'a>(stat: &'a str, key: &str) -> &'a str {
    stat.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in {stat}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ls_mkdir_mv_rm_du_stat_cat_and_fs_commands() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(Duration::from_secs(60)).await;
    let endpoints = cluster.endpoints().join(",");
    let e = endpoints.as_str();
    let work = tempfile::tempdir().unwrap();
    let one = work.path().join("one file ä.txt");
    std::fs::write(&one, b"hello, cairn\n").unwrap();
    std::fs::set_permissions(&one, std::fs::Permissions::from_mode(0o640)).unwrap();

    storage(e, &["fs", "create", "scratch", "--quota-bytes", "1000000"]);
    let list = storage(e, &["fs", "list"]);
    let scratch = list
        .lines()
        .find(|l| l.starts_with("scratch "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(scratch.trim_end().ends_with("1000000"), "{list}");

    fn with<'a>(args: &[&'a str]) -> Vec<&'a str> {
        ["--fs", "scratch"]
            .into_iter()
            .chain(args.iter().copied())
            .collect()
    }
    storage(e, &with(&["mkdir", "-p", "/a b/c ñ/d"]));
    storage_fails(e, &with(&["mkdir", "/x/y"]));
    let one_str = one.to_str().unwrap();
    let out = storage(e, &with(&["upload", one_str, "/a b/c ñ/", "-p"]));
    assert!(
        out.starts_with("sent 1 files, 13 bytes (1 chunks);"),
        "{out}"
    );
    assert_eq!(
        storage(e, &with(&["ls", "/a b/c ñ"])),
        "d\none file ä.txt\n"
    );
    let long = storage(e, &with(&["ls", "-l", "/a b/c ñ"]));
    assert!(long.contains("-rw-r----- "), "{long}");
    assert!(long.contains(" 13 "), "{long}");
    assert_eq!(
        storage(e, &with(&["cat", "/a b/c ñ/one file ä.txt"])),
        "hello, cairn\n"
    );
    let stat = storage(e, &with(&["stat", "/a b/c ñ/one file ä.txt"]));
    assert_eq!(field(&stat, "kind"), "file");
    assert_eq!(field(&stat, "mode"), "0640");
    assert_eq!(field(&stat, "size"), "13");
    assert_eq!(field(&stat, "nlink"), "1");
    let local = std::fs::metadata(&one).unwrap();
    assert_eq!(
        field(&stat, "mtime_ns").parse::<i64>().unwrap(),
        local.mtime() * 1_000_000_000 + local.mtime_nsec()
    );
    assert!(field(&stat, "ino").parse::<u64>().unwrap() > 0);
    assert_eq!(
        field(&storage(e, &with(&["stat", "/a b"])), "kind"),
        "directory"
    );

    storage(
        e,
        &with(&["mv", "/a b/c ñ/one file ä.txt", "/a b/moved ü.txt"]),
    );
    storage_fails(e, &with(&["cat", "/a b/c ñ/one file ä.txt"]));
    let du = storage(e, &with(&["du", "/a b"]));
    assert!(du.starts_with("13 bytes in 1 files ("), "{du}");
    let err = storage_fails(e, &with(&["rm", "/a b/c ñ"]));
    assert!(err.contains("directory"), "{err}");
    storage(e, &with(&["rm", "/a b/moved ü.txt"]));
    storage(e, &with(&["rm", "-r", "/a b"]));
    assert_eq!(storage(e, &with(&["ls", "/"])), "");
    // The default file system never saw any of it.
    storage_fails(e, &["stat", "/a b"]);

    // A single file round-trips through download too.
    storage(e, &with(&["upload", one_str, "/f"]));
    let got = work.path().join("got");
    storage(e, &with(&["download", "/f", got.to_str().unwrap()]));
    assert_eq!(std::fs::read(&got).unwrap(), b"hello, cairn\n");

    storage(e, &["fs", "delete", "scratch"]);
    assert!(!storage(e, &["fs", "list"])
        .lines()
        .any(|l| l.starts_with("scratch ")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsync_follows_kind_changes_and_mode_changes_and_resumes() {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(Duration::from_secs(60)).await;
    let endpoints = cluster.endpoints().join(",");
    let e = endpoints.as_str();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("x/child"), b"child").unwrap();
    std::fs::write(src.join("y"), b"y").unwrap();
    std::fs::write(src.join("m"), b"mode").unwrap();
    std::os::unix::fs::symlink("y", src.join("z")).unwrap();
    let s = src.to_str().unwrap();
    storage(e, &["upload", s, "/t", "--rsync"]);

    // x: directory -> file, y: file -> directory, z: symlink -> file, m: mode only.
    std::fs::remove_dir_all(src.join("x")).unwrap();
    std::fs::write(src.join("x"), b"now a file").unwrap();
    std::fs::remove_file(src.join("y")).unwrap();
    std::fs::create_dir_all(src.join("y/inner")).unwrap();
    std::fs::write(src.join("y/inner/f"), b"f").unwrap();
    std::fs::remove_file(src.join("z")).unwrap();
    std::fs::write(src.join("z"), b"was a link").unwrap();
    std::fs::set_permissions(src.join("m"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let out = storage(e, &["upload", s, "/t", "--rsync", "--delete"]);
    eprintln!("kind changes: {}", out.trim());
    let back = work.path().join("back");
    storage(e, &["download", "/t", back.to_str().unwrap(), "-r"]);
    diff_r(&src, &back);
    assert_eq!(
        std::fs::metadata(back.join("m")).unwrap().mode() & 0o7777,
        0o751
    );

    // An interrupted upload of a new 32 MiB file resumes: chunks staged by the
    // first run are not sent again.
    std::fs::write(src.join("big"), content("resume", 32 * MIB)).unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let leader_dir = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .unwrap()
        .dir
        .join("data");
    let start = chunk_usage(&leader_dir).0;
    let mut child = Command::new(CAIRN)
        .args(["--endpoints", e, "storage", "upload", s, "/t", "--rsync"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while chunk_usage(&leader_dir).0 < start + 8 {
        assert!(std::time::Instant::now() < deadline, "no chunks staged");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let staged = chunk_usage(&leader_dir).0 - start;
    let out = storage(e, &["upload", s, "/t", "--rsync"]);
    eprintln!("after {staged} chunks staged and a kill: {}", out.trim());
    let [sent, _, chunks_sent, ..] = summary(&out);
    assert_eq!(sent, 1, "{out}");
    assert!(
        chunks_sent <= 32 - 8,
        "staged chunks were sent again: {out}"
    );
    let client = cluster.client();
    assert!(client.fs("default").read_file("/t/big").await.unwrap() == content("resume", 32 * MIB));
}
