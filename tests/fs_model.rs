//! A seeded model-based test: the same random operations applied through the SDK
//! to cairn and, with std::fs, to a local directory on this machine's file system
//! (the model), compared after every step: each result (success or errno), then
//! the touched paths' kind, size, nlink, mode and content and the touched
//! directories' listings, and every 100 steps the whole tree. `FS_MODEL_SEED`
//! replays a run; every failure message names the seed.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use cairn::client::{Errno, FileKind, FsClient};
use common::TestCluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STEPS: usize = 5_000;
const MIB: u64 = 1024 * 1024;
const DIRS: [&str; 4] = ["", "d0", "d1", "d0/e"];
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Write(String, u64, Vec<u8>),
    Truncate(String, u64),
    Rename(String, String),
    Link(String, String),
    Unlink(String),
    Mkdir(String),
    Rmdir(String),
    Chmod(String, u32),
}

fn random_path(rng: &mut StdRng) -> String {
    let dir = DIRS[rng.gen_range(0..DIRS.len())];
    let name = if rng.gen_bool(0.08) {
        // Sometimes a directory itself (so ops meet directories and their subtrees).
        return ["d0", "d1", "d0/e"][rng.gen_range(0..3)].to_string();
    } else {
        NAMES[rng.gen_range(0..NAMES.len())]
    };
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn random_op(rng: &mut StdRng) -> Op {
    let p = random_path(rng);
    match rng.gen_range(0..100) {
        0..=19 => Op::Create(p),
        20..=39 => {
            // Offsets up to 3 MiB + a bit: writes cross the 1 MiB block boundaries.
            let offset = match rng.gen_range(0..5) {
                0 => rng.gen_range(0..4096),
                1 => MIB - rng.gen_range(1..3000),
                2 => 2 * MIB - rng.gen_range(1..3000),
                3 => 3 * MIB - rng.gen_range(1..3000),
                _ => rng.gen_range(0..3 * MIB + 4096),
            };
            let len = rng.gen_range(1..6000);
            let byte = rng.gen::<u8>();
            Op::Write(
                p,
                offset,
                (0..len).map(|i| byte.wrapping_add(i as u8)).collect(),
            )
        }
        40..=49 => Op::Truncate(
            p,
            [0, 10, MIB - 1, MIB + 7, 2 * MIB, 3 * MIB - 1, 3 * MIB + 5][rng.gen_range(0..7)],
        ),
        50..=64 => Op::Rename(p, random_path(rng)),
        65..=71 => Op::Link(p, random_path(rng)),
        72..=81 => Op::Unlink(p),
        // Half the mkdirs bring back one of the directories the paths use.
        82..=89 if rng.gen_bool(0.5) => Op::Mkdir(DIRS[rng.gen_range(1..DIRS.len())].to_string()),
        82..=89 => Op::Mkdir(p),
        90..=95 => Op::Rmdir(p),
        _ => Op::Chmod(p, [0o600, 0o644, 0o755, 0o700][rng.gen_range(0..4)]),
    }
}

fn local_errno(e: std::io::Error) -> Errno {
    let raw = e
        .raw_os_error()
        .unwrap_or_else(|| panic!("local error without errno: {e}"));
    Errno::from_raw(raw).unwrap_or_else(|| panic!("local errno {raw} ({e}) is not one cairn knows"))
}

fn apply_local(root: &Path, op: &Op) -> Result<(), Errno> {
    let at = |p: &str| root.join(p);
    let r = match op {
        Op::Create(p) => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(at(p))
            .map(|_| ()),
        Op::Write(p, offset, data) => OpenOptions::new()
            .write(true)
            .open(at(p))
            .and_then(|f| f.write_all_at(data, *offset)),
        Op::Truncate(p, size) => OpenOptions::new()
            .write(true)
            .open(at(p))
            .and_then(|f| f.set_len(*size)),
        Op::Rename(a, b) => std::fs::rename(at(a), at(b)),
        Op::Link(a, b) => std::fs::hard_link(at(a), at(b)),
        Op::Unlink(p) => std::fs::remove_file(at(p)),
        Op::Mkdir(p) => std::fs::create_dir(at(p))
            .and_then(|_| std::fs::set_permissions(at(p), PermissionsExt::from_mode(0o755))),
        Op::Rmdir(p) => std::fs::remove_dir(at(p)),
        Op::Chmod(p, mode) => std::fs::set_permissions(at(p), PermissionsExt::from_mode(*mode)),
    };
    r.map_err(local_errno)
}

async fn apply_cairn(fs: &FsClient, op: &Op) -> Result<(), Errno> {
    let slash = |p: &str| format!("/{p}");
    let r = match op {
        Op::Create(p) => fs.create(&slash(p), 0o644, true).await.map(|_| ()),
        Op::Write(p, offset, data) => fs.write_at(&slash(p), *offset, data).await.map(|_| ()),
        Op::Truncate(p, size) => fs.truncate(&slash(p), *size).await.map(|_| ()),
        Op::Rename(a, b) => fs.rename(&slash(a), &slash(b)).await,
        Op::Link(a, b) => fs.link(&slash(a), &slash(b)).await.map(|_| ()),
        Op::Unlink(p) => fs.unlink(&slash(p)).await,
        Op::Mkdir(p) => fs.mkdir(&slash(p), 0o755, false).await.map(|_| ()),
        Op::Rmdir(p) => fs.rmdir(&slash(p)).await,
        Op::Chmod(p, mode) => fs
            .set_attr(
                &slash(p),
                &cairn::client::SetAttrs {
                    mode: Some(*mode),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ()),
    };
    r.map_err(|e| {
        e.errno()
            .unwrap_or_else(|| panic!("{op:?}: not an errno: {e:?}"))
    })
}

/// What both sides must agree on about one path.
#[derive(Debug, PartialEq)]
struct Seen {
    kind: FileKind,
    size: u64,
    nlink: u32,
    mode: u32,
    content: Option<blake3::Hash>,
}

fn seen_local(root: &Path, p: &str) -> Option<Seen> {
    let meta = std::fs::symlink_metadata(root.join(p)).ok()?;
    let kind = if meta.is_dir() {
        FileKind::Dir
    } else {
        FileKind::File
    };
    Some(Seen {
        kind,
        size: if kind == FileKind::Dir { 0 } else { meta.len() },
        nlink: meta.nlink() as u32,
        mode: meta.mode() & 0o7777,
        content: (kind == FileKind::File)
            .then(|| blake3::hash(&std::fs::read(root.join(p)).unwrap())),
    })
}

async fn seen_cairn(fs: &FsClient, p: &str) -> Option<Seen> {
    let attr = fs.stat(&format!("/{p}")).await.ok()?;
    let content = if attr.kind == FileKind::File {
        Some(blake3::hash(&fs.read_file(&format!("/{p}")).await.unwrap()))
    } else {
        None
    };
    Some(Seen {
        kind: attr.kind,
        size: if attr.kind == FileKind::Dir {
            0
        } else {
            attr.size
        },
        nlink: attr.nlink,
        mode: attr.mode,
        content,
    })
}

fn local_paths(root: &Path, rel: &str, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(root.join(rel)).unwrap().flatten() {
        let name = entry.file_name().into_string().unwrap();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            local_paths(root, &child, out);
        }
        out.push(child);
    }
}

async fn cairn_paths(fs: &FsClient, rel: &str, out: &mut Vec<String>) {
    let mut pending = vec![rel.to_string()];
    while let Some(dir) = pending.pop() {
        for entry in fs.list(&format!("/{dir}")).await.unwrap() {
            let child = if dir.is_empty() {
                entry.name
            } else {
                format!("{dir}/{}", entry.name)
            };
            if entry.kind == FileKind::Dir {
                pending.push(child.clone());
            }
            out.push(child);
        }
    }
}

/// A directory's entries (name, is a directory), sorted; None if `p` is not a directory.
fn listing_local(root: &Path, p: &str) -> Option<Vec<(String, bool)>> {
    let mut out: Vec<_> = std::fs::read_dir(root.join(p))
        .ok()?
        .flatten()
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                e.file_type().unwrap().is_dir(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

async fn listing_cairn(fs: &FsClient, p: &str) -> Option<Vec<(String, bool)>> {
    let mut out: Vec<_> = fs
        .list(&format!("/{p}"))
        .await
        .ok()?
        .into_iter()
        .map(|e| (e.name, e.kind == FileKind::Dir))
        .collect();
    out.sort();
    Some(out)
}

fn touched(op: &Op) -> Vec<String> {
    let parent = |p: &str| {
        p.rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default()
    };
    let mut paths = match op {
        Op::Rename(a, b) | Op::Link(a, b) => vec![a.clone(), b.clone(), parent(a), parent(b)],
        Op::Create(p)
        | Op::Write(p, ..)
        | Op::Truncate(p, _)
        | Op::Unlink(p)
        | Op::Mkdir(p)
        | Op::Rmdir(p)
        | Op::Chmod(p, _) => {
            vec![p.clone(), parent(p)]
        }
    };
    paths.retain(|p| !p.is_empty());
    paths.sort();
    paths.dedup();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_operations_match_a_local_file_system() {
    let seed: u64 = std::env::var("FS_MODEL_SEED")
        .ok()
        .map(|s| s.parse().expect("FS_MODEL_SEED is a number"))
        .unwrap_or_else(rand::random);
    println!("FS_MODEL_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = TestCluster::dev();
    let fs = cluster.client().fs("default");
    common::eventually(Duration::from_secs(60), || fs.stat("/")).await;
    let model = tempfile::tempdir().unwrap();
    let root = model.path();
    // The directories exist at the start (ops may remove and recreate them).
    for dir in &DIRS[1..] {
        apply_local(root, &Op::Mkdir(dir.to_string())).unwrap();
        apply_cairn(&fs, &Op::Mkdir(dir.to_string())).await.unwrap();
    }
    let mut history: Vec<String> = Vec::new();
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    for step in 0..STEPS {
        let op = random_op(&mut rng);
        let expected = apply_local(root, &op);
        let got = apply_cairn(&fs, &op).await;
        let shown = match &op {
            Op::Write(p, o, d) => format!("Write({p:?}, {o}, {} bytes)", d.len()),
            other => format!("{other:?}"),
        };
        history.push(format!("{step}: {shown} -> {expected:?}"));
        let tail = || history[history.len().saturating_sub(80)..].join("\n");
        assert_eq!(
            got,
            expected,
            "seed {seed}, step {step}: {shown}\nlast steps:\n{}",
            tail()
        );
        *outcomes
            .entry(if expected.is_ok() { "ok" } else { "errno" })
            .or_default() += 1;
        for p in touched(&op) {
            let (local, remote) = (seen_local(root, &p), seen_cairn(&fs, &p).await);
            assert_eq!(
                remote,
                local,
                "seed {seed}, step {step}: {p:?} after {shown}\nlast steps:\n{}",
                tail()
            );
        }
        // The listings of the directories the op touched (the root included).
        let mut dirs: Vec<String> = touched(&op)
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.is_dir()))
            .collect();
        dirs.push(String::new());
        for d in dirs {
            assert_eq!(
                listing_cairn(&fs, &d).await,
                listing_local(root, &d),
                "seed {seed}, step {step}: listing of {d:?} after {shown}\nlast steps:\n{}",
                tail()
            );
        }
        if step % 100 == 99 {
            let (mut local, mut remote) = (Vec::new(), Vec::new());
            local_paths(root, "", &mut local);
            cairn_paths(&fs, "", &mut remote).await;
            local.sort();
            remote.sort();
            assert_eq!(remote, local, "seed {seed}, step {step}: the trees differ");
            for p in &local {
                assert_eq!(
                    seen_cairn(&fs, p).await,
                    seen_local(root, p),
                    "seed {seed}, step {step}: {p:?}"
                );
            }
        }
    }
    println!("seed {seed}: {outcomes:?}");
    assert!(
        outcomes["ok"] > 1_000 && outcomes["errno"] > 500,
        "both paths exercised: {outcomes:?}"
    );
}
