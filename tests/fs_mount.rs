//! `cairn mount` on real FUSE mounts of a 3-node cluster: real programs (cp, tar,
//! rsync, git, sqlite3, python, coreutils), close-to-open between two mounts
//! through two different nodes, an fsynced file surviving `kill -9` of the leader
//! and of the mount, `--from` and `--read-only`, and a seeded model-based random
//! test against a local directory. Needs root and /dev/fuse (apt fuse3).

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::TestMount;
use common::{content, eventually, TestCluster};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const WAIT: Duration = Duration::from_secs(60);

async fn three_nodes() -> TestCluster {
    let cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(WAIT).await;
    let fs = cluster.client().fs("default");
    eventually(WAIT, || fs.stat("/")).await;
    cluster
}

/// A number from the environment (to repeat a seeded run), else `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn all(cluster: &TestCluster) -> Vec<String> {
    cluster.endpoints()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_programs_run_on_a_mount_of_a_three_node_cluster() {
    let cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let mount = TestMount::start(&base, "m", &all(&cluster), &[]);
    let scratch = cluster.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mount/programs.sh");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let out = Command::new("bash")
        .arg(&script)
        .args([&mount.path, &src, &scratch])
        .output()
        .expect("run the programs script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "programs.sh failed ({}):\n{}\nstdout:\n{}\nmount log:\n{}",
        out.status,
        stderr,
        String::from_utf8_lossy(&out.stdout),
        mount.logs()
    );
    // What the programs wrote is in the cluster, seen through the SDK too.
    let fs = cluster.client().fs("default");
    let data = fs.read_file("/target").await.unwrap();
    assert_eq!(data, b"new\n");
    assert_eq!(fs.stat("/hard").await.unwrap().nlink, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_to_open_holds_between_mounts_through_two_nodes() {
    let cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let a = TestMount::start(&base, "a", &[cluster.nodes[0].grpc.clone()], &[]);
    let b = TestMount::start(&base, "b", &[cluster.nodes[1].grpc.clone()], &[]);
    for round in 0..40u64 {
        // Sizes cross block boundaries now and then, and shrink as often as they grow.
        let len = match round % 4 {
            0 => 10 + round as usize,
            1 => 1024 * 1024 + 17 * round as usize,
            2 => 300_000,
            _ => 3 * 1024 * 1024 + round as usize,
        };
        let data = content(&format!("round {round}"), len);
        {
            let mut f = std::fs::File::create(a.path.join("shared")).unwrap();
            f.write_all(&data).unwrap();
            // close() returns only after the data reached the cluster.
        }
        let mut seen = Vec::new();
        std::fs::File::open(b.path.join("shared"))
            .unwrap()
            .read_to_end(&mut seen)
            .unwrap();
        assert!(
            seen == data,
            "round {round}: mount b read {} bytes, a wrote {} (first difference at {:?})",
            seen.len(),
            data.len(),
            seen.iter().zip(&data).position(|(x, y)| x != y)
        );
    }
    // A rename on a shows on b within the attribute timeout (1 s) plus slack.
    std::fs::rename(a.path.join("shared"), a.path.join("moved")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.path.join("shared").exists() || !b.path.join("moved").exists() {
        assert!(
            Instant::now() < deadline,
            "mount b still shows the old name"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsynced_file_survives_kill_9_of_the_leader_and_of_the_mount() {
    let mut cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let mut mount = TestMount::start(&base, "m", &all(&cluster), &["--op-timeout-ms", "60000"]);
    let data = content("durable", 2 * 1024 * 1024 + 5);
    {
        let mut f = std::fs::File::create(mount.path.join("durable")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        // The handle stays open: only fsync vouches for the data.
        let leader = cluster.wait_for_leader(WAIT).await;
        cluster.node(leader).kill();
        mount.kill();
        drop(f);
    }
    cluster.wait_for_leader(WAIT).await;
    let again = TestMount::start(&base, "m2", &all(&cluster), &[]);
    let mut seen = Vec::new();
    std::fs::File::open(again.path.join("durable"))
        .unwrap()
        .read_to_end(&mut seen)
        .unwrap();
    assert!(
        seen == data,
        "read back {} bytes of {}",
        seen.len(),
        data.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_shows_only_its_subtree_and_read_only_refuses_changes() {
    let cluster = three_nodes().await;
    let fs = cluster.client().fs("default");
    fs.mkdir("/projects/alpha/data", 0o755, true).await.unwrap();
    fs.upload_bytes(
        "/projects/alpha/data/x",
        "inside".into(),
        &Default::default(),
    )
    .await
    .unwrap();
    fs.upload_bytes("/secret", "outside".into(), &Default::default())
        .await
        .unwrap();
    let base = cluster.dir.path().join("mounts");
    let sub = TestMount::start(&base, "sub", &all(&cluster), &["--from", "/projects/alpha"]);
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&sub.path), ["data"]);
    assert_eq!(std::fs::read(sub.path.join("data/x")).unwrap(), b"inside");
    assert!(!sub.path.join("secret").exists());
    // ".." at the mount's root is the directory the mount sits in, not /projects.
    assert_eq!(
        std::fs::canonicalize(sub.path.join("..")).unwrap(),
        std::fs::canonicalize(&base).unwrap()
    );
    // The mount's root is the subtree's directory: new files land inside it.
    std::fs::write(sub.path.join("new"), b"made in the subtree").unwrap();
    assert_eq!(
        fs.read_file("/projects/alpha/new").await.unwrap(),
        b"made in the subtree"
    );

    let ro = TestMount::start(&base, "ro", &all(&cluster), &["--read-only"]);
    assert_eq!(std::fs::read(ro.path.join("secret")).unwrap(), b"outside");
    for (what, result) in [
        ("create", std::fs::write(ro.path.join("nope"), b"x")),
        ("mkdir", std::fs::create_dir(ro.path.join("nope-dir"))),
        ("unlink", std::fs::remove_file(ro.path.join("secret"))),
    ] {
        let e = result.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    }
}

// ---------------------------------------------------------------------------
// Model-based random test: the same operations on the mount and on a local
// directory, compared after every step.
// ---------------------------------------------------------------------------

const NAMES: [&str; 6] = ["a", "b", "c", "d/e", "d/f", "g/h/i"];

fn pick(rng: &mut StdRng) -> &'static str {
    NAMES[rng.gen_range(0..NAMES.len())]
}

/// One step on `root`; the result is compared as (ok, errno).
fn step(root: &Path, op: &Op) -> Result<(), Option<i32>> {
    let p = |name: &str| root.join(name);
    let r: std::io::Result<()> = match op {
        Op::Write { name, offset, data } => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(p(name))
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(*offset))?;
                f.write_all(data)
            }),
        Op::Truncate { name, len } => std::fs::OpenOptions::new()
            .write(true)
            .open(p(name))
            .and_then(|f| f.set_len(*len)),
        Op::Rename { from, to } => std::fs::rename(p(from), p(to)),
        Op::Unlink { name } => std::fs::remove_file(p(name)),
        Op::Mkdir { name } => std::fs::create_dir(p(name)),
        Op::Rmdir { name } => std::fs::remove_dir(p(name)),
        Op::Link { from, to } => std::fs::hard_link(p(from), p(to)),
    };
    r.map_err(|e| e.raw_os_error())
}

#[derive(Debug)]
enum Op {
    Write {
        name: &'static str,
        offset: u64,
        data: Vec<u8>,
    },
    Truncate {
        name: &'static str,
        len: u64,
    },
    Rename {
        from: &'static str,
        to: &'static str,
    },
    Unlink {
        name: &'static str,
    },
    Mkdir {
        name: &'static str,
    },
    Rmdir {
        name: &'static str,
    },
    Link {
        from: &'static str,
        to: &'static str,
    },
}

fn random_op(rng: &mut StdRng, step: usize) -> Op {
    let dirs = ["d", "g", "g/h"];
    match rng.gen_range(0..100) {
        0..=34 => {
            // Offsets near block boundaries and past the end (holes).
            let offset =
                [0, 7, 4095, 1024 * 1024 - 3, 1024 * 1024 + 100, 2_500_000][rng.gen_range(0..6)];
            let len = [1, 100, 5000, 70_000, 1024 * 1024 + 1][rng.gen_range(0..5)];
            Op::Write {
                name: pick(rng),
                offset,
                data: content(&format!("step {step}"), len),
            }
        }
        35..=44 => Op::Truncate {
            name: pick(rng),
            len: [0, 1, 5000, 1024 * 1024, 3_000_000][rng.gen_range(0..5)],
        },
        45..=59 => Op::Rename {
            from: pick(rng),
            to: pick(rng),
        },
        60..=69 => Op::Unlink { name: pick(rng) },
        70..=84 => Op::Mkdir {
            name: dirs[rng.gen_range(0..dirs.len())],
        },
        85..=92 => Op::Rmdir {
            name: dirs[rng.gen_range(0..dirs.len())],
        },
        _ => Op::Link {
            from: pick(rng),
            to: pick(rng),
        },
    }
}

/// Every entry under `root`: relative path, kind, and for files size, link count
/// and a hash of the bytes.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.push((rel, "dir".into()));
                walk(root, &path, out);
            } else {
                let data = std::fs::read(&path).unwrap();
                let hash = blake3::hash(&data).to_hex()[..16].to_string();
                let what = format!("file {} bytes, {} links, {hash}", data.len(), meta.nlink());
                out.push((rel, what));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_a_local_directory() {
    let seed = env_or("CAIRN_MOUNT_MODEL_SEED", rand::random());
    let steps = env_or("CAIRN_MOUNT_MODEL_STEPS", 250) as usize;
    eprintln!("model test: seed {seed} (CAIRN_MOUNT_MODEL_SEED={seed} repeats it), {steps} steps");
    let cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let mount = TestMount::start(&base, "m", &all(&cluster), &[]);
    let local = cluster.dir.path().join("local");
    std::fs::create_dir_all(&local).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..steps {
        let op = random_op(&mut rng, i);
        let expected = step(&local, &op);
        let got = step(&mount.path, &op);
        assert_eq!(got, expected, "seed {seed}, step {i}: {op:?}");
        let (want, have) = (snapshot(&local), snapshot(&mount.path));
        assert_eq!(have, want, "seed {seed}, step {i} ({op:?}): trees differ");
    }
}

// ---------------------------------------------------------------------------
// Conformance suites from crates.io (installed by .ci/run: `cargo install
// --locked pjdfstest fsx`).
// ---------------------------------------------------------------------------

/// The path of a tool `cargo install` put on PATH or in ~/.cargo/bin.
fn tool(name: &str) -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")));
    for dir in candidates {
        let path = dir.join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed: cargo install --locked {name} (.ci/run does)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pjdfstest_passes_except_for_special_files() {
    let pjdfstest = tool("pjdfstest");
    // The suite switches to other users (uid 65534 and the `tests` user).
    let has_user = Command::new("id")
        .arg("tests")
        .output()
        .unwrap()
        .status
        .success();
    if !has_user {
        let made = Command::new("useradd").arg("tests").status().unwrap();
        assert!(
            made.success(),
            "pjdfstest needs a `tests` user (useradd tests)"
        );
    }
    let cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let mount = TestMount::start(&base, "m", &all(&cluster), &["--allow-other"]);
    let dir = mount.path.join("pjd");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mount/pjdfstest.toml");
    let out = Command::new(pjdfstest)
        .args([
            "-c".as_ref(),
            config.as_os_str(),
            "-p".as_ref(),
            dir.as_os_str(),
        ])
        .current_dir(&dir)
        .output()
        .expect("run pjdfstest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or("no summary line");
    eprintln!("pjdfstest on a cairn mount: {summary}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAILED")).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "pjdfstest: {summary}\nfailures:\n{}\nstderr:\n{}\nmount log:\n{}",
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr),
        mount.logs()
    );
    assert!(summary.contains(" 0 failed"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsx_finds_no_corruption() {
    let fsx = tool("fsx");
    let seed = env_or("CAIRN_FSX_SEED", rand::random::<u32>().into());
    let ops = env_or("CAIRN_FSX_OPS", 20_000);
    eprintln!("fsx: seed {seed} (CAIRN_FSX_SEED={seed} repeats it), {ops} operations");
    let cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let mount = TestMount::start(&base, "m", &all(&cluster), &[]);
    let artifacts = cluster.dir.path().join("fsx");
    std::fs::create_dir_all(&artifacts).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mount/fsx.toml");
    let out = Command::new(fsx)
        .arg("-N")
        .arg(ops.to_string())
        .arg("-S")
        .arg(seed.to_string())
        .arg("-f")
        .arg(&config)
        .arg("-P")
        .arg(&artifacts)
        .arg(mount.path.join("fsx-file"))
        .output()
        .expect("run fsx");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        out.status.success() && text.contains("All operations completed A-OK"),
        "fsx seed {seed} failed ({}):\n{}\nmount log:\n{}",
        out.status,
        tail.join("\n"),
        mount.logs()
    );
}

/// The "bytes fetched from the cluster" count from a mount's last counters line.
fn fetched_bytes(log: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("bytes fetched from the cluster"))
        .unwrap_or_else(|| panic!("no counters line in the mount log:\n{log}"));
    let before = line
        .split(" bytes fetched from the cluster")
        .next()
        .unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_cache_serves_a_remount_and_refetches_a_damaged_chunk() {
    let cluster = three_nodes().await;
    let fs = cluster.client().fs("default");
    let data = content("cached", 5 * 1024 * 1024);
    fs.upload_bytes("/cached", data.clone().into(), &Default::default())
        .await
        .unwrap();
    let base = cluster.dir.path().join("mounts");
    let cache = cluster.dir.path().join("cache");
    let cache_arg = cache.to_string_lossy().into_owned();
    let args = ["--cache-dir", cache_arg.as_str()];

    let mut first = TestMount::start(&base, "first", &all(&cluster), &args);
    assert!(std::fs::read(first.path.join("cached")).unwrap() == data);
    assert!(first.stop().success());
    assert_eq!(fetched_bytes(&first.logs()), data.len() as u64);

    // Damage one cached chunk: it must be refetched, never served.
    let mut files: Vec<PathBuf> = Vec::new();
    for shard in std::fs::read_dir(&cache).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    assert_eq!(files.len(), 5, "one cached chunk per MiB: {files:?}");
    std::fs::write(&files[0], b"not the chunk this name says").unwrap();

    let mut second = TestMount::start(&base, "second", &all(&cluster), &args);
    assert!(std::fs::read(second.path.join("cached")).unwrap() == data);
    assert!(second.stop().success());
    assert_eq!(
        fetched_bytes(&second.logs()),
        1024 * 1024,
        "only the damaged chunk comes from the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_gives_eio_in_bounded_time_and_the_mount_recovers() {
    let cluster = three_nodes().await;
    let base = cluster.dir.path().join("mounts");
    let mount = TestMount::start(&base, "m", &all(&cluster), &["--op-timeout-ms", "3000"]);
    std::fs::write(mount.path.join("before"), b"written while reachable").unwrap();
    for node in &cluster.nodes {
        node.pause();
    }
    let started = Instant::now();
    let e = std::fs::metadata(mount.path.join("never-looked-up")).unwrap_err();
    let waited = started.elapsed();
    for node in &cluster.nodes {
        node.resume();
    }
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(waited < Duration::from_secs(30), "EIO after {waited:?}");
    // Once the nodes answer again, so does the mount, by itself.
    let deadline = Instant::now() + WAIT;
    loop {
        match std::fs::read(mount.path.join("before")) {
            Ok(data) => {
                assert_eq!(data, b"written while reachable");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("still waiting for the cluster: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the mount did not recover: {e}"),
        }
    }
}
