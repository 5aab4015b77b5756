//! Unit tests of the power-cut model (no FUSE).

use std::collections::BTreeMap;
use std::ffi::OsStr;

use super::*;

mod edge;
mod torn;

const GIB: u64 = 1 << 30;

fn model() -> Model {
    Model::new(GIB, 0, 0)
}

fn os(name: &str) -> &OsStr {
    OsStr::new(name)
}

/// The inode at `path` (relative to the root, '/'-separated).
fn resolve(m: &Model, path: &str) -> Option<u64> {
    let mut ino = ROOT;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = m.lookup(ino, os(part)).ok()?.ino;
    }
    Some(ino)
}

fn parent_and_name(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn create(m: &mut Model, path: &str) -> u64 {
    let (dir, name) = parent_and_name(path);
    let parent = resolve(m, dir).expect("parent exists");
    m.create_file(parent, os(name), 0o644, 0, 0)
        .expect("create")
        .ino
}

fn mkdir(m: &mut Model, path: &str) -> u64 {
    let (dir, name) = parent_and_name(path);
    let parent = resolve(m, dir).expect("parent exists");
    m.mkdir(parent, os(name), 0o755, 0, 0).expect("mkdir").ino
}

fn write_at(m: &mut Model, ino: u64, offset: u64, data: &[u8]) {
    let fh = m.open(ino, false).expect("open");
    assert_eq!(m.write(fh, ino, offset, data), Ok(data.len() as u32));
    m.release(fh);
}

fn fsync_path(m: &mut Model, path: &str) {
    let ino = resolve(m, path).expect("path exists");
    m.fsync(ino).expect("fsync");
}

/// The whole content of the file at `path`, None if there is no such name.
fn contents(m: &mut Model, path: &str) -> Option<Vec<u8>> {
    let ino = resolve(m, path)?;
    let size = m.getattr(ino).ok()?.size;
    let fh = m.open(ino, false).ok()?;
    let data = m.read(fh, ino, 0, size as u32).ok()?;
    m.release(fh);
    Some(data)
}

fn names(m: &mut Model, path: &str) -> Vec<String> {
    let ino = resolve(m, path).expect("dir exists");
    let fh = m.opendir(ino).expect("opendir");
    let listing: Vec<String> = m
        .readdir(fh, ino, 2)
        .expect("readdir")
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    m.release(fh);
    listing
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// Every count the model keeps incrementally equals a recount from scratch, nothing
/// dangles, and no freeable inode is left.
fn check(m: &Model) {
    assert_eq!(m.budget.held, m.recount_held(), "bytes held");
    assert!(m.budget.held <= m.budget.max, "over the cap");
    let mut links: BTreeMap<u64, u32> = BTreeMap::from([(ROOT, 1)]);
    let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut open: BTreeMap<u64, u32> = BTreeMap::new();
    for inode in m.inodes.values() {
        if let Body::Dir(dir) = &inode.body {
            let mut subdirs = 0;
            for &child in dir.entries.values() {
                *links.entry(child).or_default() += 1;
                let kind = m
                    .inodes
                    .get(&child)
                    .expect("entry names a live inode")
                    .kind();
                subdirs += u32::from(kind == Kind::Dir);
            }
            assert_eq!(dir.subdirs, subdirs, "subdirs");
            for child in dir.undo.values().flatten() {
                *refs.entry(*child).or_default() += 1;
                assert!(m.inodes.contains_key(child), "undo names a live inode");
            }
        }
    }
    for handle in m.handles.values() {
        *open.entry(handle.ino).or_default() += 1;
    }
    for (&ino, inode) in &m.inodes {
        assert!(ino < m.next_ino);
        let get = |map: &BTreeMap<u64, u32>| map.get(&ino).copied().unwrap_or(0);
        assert_eq!(inode.links, get(&links), "links of {ino}");
        assert_eq!(inode.undo_refs, get(&refs), "undo refs of {ino}");
        assert_eq!(inode.open, get(&open), "open count of {ino}");
        assert!(
            ino == ROOT || inode.links + inode.undo_refs + inode.open > 0,
            "inode {ino} should have been freed"
        );
    }
}

/// A durable file: created, written, fsynced, its directory fsynced.
fn durable_file(m: &mut Model, path: &str, data: &[u8]) -> u64 {
    let ino = create(m, path);
    write_at(m, ino, 0, data);
    m.fsync(ino).unwrap();
    fsync_path(m, parent_and_name(path).0);
    ino
}

#[test]
fn write_and_fsync_survive_a_cut() {
    let mut m = model();
    let data = pattern(10_000, 1);
    durable_file(&mut m, "f", &data);
    let report = m.cut(CutMode::DropAll);
    assert!(!report.lost_something(), "{report:?}");
    assert_eq!(contents(&mut m, "f"), Some(data));
    check(&m);
}

#[test]
fn write_without_fsync_is_lost() {
    let mut m = model();
    let old = pattern(5000, 1);
    let ino = durable_file(&mut m, "f", &old);
    write_at(&mut m, ino, 100, &pattern(9000, 2));
    check(&m);
    assert_eq!(m.stats().unsynced_pages, 3);
    assert_eq!(m.stats().unsynced_bytes, 9000);
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.files_reverted, 1);
    assert_eq!(report.pages_dropped, 3);
    assert_eq!(report.bytes_dropped, 9000);
    assert_eq!(contents(&mut m, "f"), Some(old));
    assert_eq!(m.stats().unsynced_pages, 0);
    check(&m);
}

#[test]
fn new_file_fsynced_but_parent_not_is_gone_and_freed() {
    let mut m = model();
    let ino = create(&mut m, "f");
    write_at(&mut m, ino, 0, &pattern(8192, 3));
    m.fsync(ino).unwrap();
    assert_eq!(m.stats().bytes_held, 8192);
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.dir_entries_reverted, 1);
    assert_eq!(report.inodes_dropped, 1);
    assert_eq!(resolve(&m, "f"), None);
    assert_eq!(m.getattr(ino), Err(libc::ENOENT));
    assert_eq!(m.stats().inodes, 1);
    assert_eq!(m.stats().bytes_held, 0);
    check(&m);
}

#[test]
fn new_file_in_fsynced_dir_without_data_fsync_comes_back_empty() {
    let mut m = model();
    let ino = create(&mut m, "f");
    fsync_path(&mut m, "");
    write_at(&mut m, ino, 0, b"hello");
    m.cut(CutMode::DropAll);
    assert_eq!(contents(&mut m, "f"), Some(Vec::new()));
    check(&m);
}

#[test]
fn rename_of_a_fsynced_temp_file_with_dir_fsync_survives() {
    let mut m = model();
    mkdir(&mut m, "db");
    durable_file(&mut m, "db/conf", b"v1");
    mkdir(&mut m, "x"); // unsynced noise elsewhere
    fsync_path(&mut m, "");
    let root = resolve(&m, "").unwrap();
    let db = resolve(&m, "db").unwrap();
    // db was created before the root was fsynced the first time: durable.
    assert!(m.dir(root).unwrap().undo.is_empty());
    let tmp = create(&mut m, "db/conf.tmp");
    write_at(&mut m, tmp, 0, b"version two");
    m.fsync(tmp).unwrap();
    m.rename(db, os("conf.tmp"), db, os("conf"), false).unwrap();
    m.fsync(db).unwrap();
    check(&m);
    let report = m.cut(CutMode::DropAll);
    assert!(!report.lost_something(), "{report:?}");
    assert_eq!(contents(&mut m, "db/conf"), Some(b"version two".to_vec()));
    assert_eq!(names(&mut m, "db"), ["conf"]);
    check(&m);
}

#[test]
fn rename_without_dir_fsync_reverts_to_the_old_name_and_content() {
    let mut m = model();
    let old = durable_file(&mut m, "conf", b"v1");
    let tmp = create(&mut m, "conf.tmp");
    write_at(&mut m, tmp, 0, b"version two");
    m.fsync(tmp).unwrap();
    m.rename(ROOT, os("conf.tmp"), ROOT, os("conf"), false)
        .unwrap();
    assert_eq!(contents(&mut m, "conf"), Some(b"version two".to_vec()));
    // The replaced file is still durable under its old name: kept in memory.
    assert!(m.getattr(old).is_ok());
    check(&m);
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.inodes_dropped, 1);
    assert_eq!(contents(&mut m, "conf"), Some(b"v1".to_vec()));
    assert_eq!(resolve(&m, "conf.tmp"), None);
    assert_eq!(resolve(&m, "conf"), Some(old));
    check(&m);
}

#[test]
fn unlink_without_dir_fsync_comes_back_with_its_durable_content() {
    let mut m = model();
    let data = pattern(20_000, 4);
    let ino = durable_file(&mut m, "seg", &data);
    write_at(&mut m, ino, 0, b"unsynced");
    m.unlink(ROOT, os("seg")).unwrap();
    assert_eq!(resolve(&m, "seg"), None);
    check(&m);
    m.cut(CutMode::DropAll);
    assert_eq!(contents(&mut m, "seg"), Some(data));
    check(&m);
    // Now durably unlinked: freed at the fsync of its directory.
    m.unlink(ROOT, os("seg")).unwrap();
    assert_eq!(m.stats().inodes, 2);
    m.fsync(ROOT).unwrap();
    assert_eq!(m.stats().inodes, 1);
    assert_eq!(m.stats().bytes_held, 0);
    check(&m);
}

#[test]
fn truncate_without_fsync_reverts_the_size() {
    let mut m = model();
    let data = pattern(10_000, 5);
    let ino = durable_file(&mut m, "f", &data);
    let shrink = SetAttr {
        size: Some(100),
        ..SetAttr::default()
    };
    assert_eq!(m.setattr(ino, shrink).unwrap().size, 100);
    assert_eq!(contents(&mut m, "f"), Some(data[..100].to_vec()));
    // Growing again shows zeros, not the old bytes.
    let grow = SetAttr {
        size: Some(5000),
        ..SetAttr::default()
    };
    m.setattr(ino, grow).unwrap();
    let mut expect = data[..100].to_vec();
    expect.resize(5000, 0);
    assert_eq!(contents(&mut m, "f"), Some(expect));
    check(&m);
    m.cut(CutMode::DropAll);
    assert_eq!(m.getattr(ino).unwrap().size, 10_000);
    assert_eq!(contents(&mut m, "f"), Some(data.clone()));
    // An extension (fallocate) without fsync reverts as well.
    m.fallocate(ino, 0, 1 << 20, 0).unwrap();
    assert_eq!(m.getattr(ino).unwrap().size, 1 << 20);
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.files_reverted, 1);
    assert_eq!(contents(&mut m, "f"), Some(data));
    check(&m);
}

#[test]
fn nested_mkdirs_need_each_parent_fsynced() {
    let mut m = model();
    mkdir(&mut m, "a");
    mkdir(&mut m, "a/b");
    mkdir(&mut m, "a/b/c");
    let f = create(&mut m, "a/b/c/f");
    write_at(&mut m, f, 0, b"data");
    m.fsync(f).unwrap();
    fsync_path(&mut m, "a/b/c");
    fsync_path(&mut m, "");
    // "a" itself was never fsynced: its entry "b" is not durable.
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.inodes_dropped, 3, "{report:?}");
    assert!(resolve(&m, "a").is_some());
    assert_eq!(resolve(&m, "a/b"), None);
    check(&m);

    mkdir(&mut m, "a/b");
    mkdir(&mut m, "a/b/c");
    let f = create(&mut m, "a/b/c/f");
    write_at(&mut m, f, 0, b"data");
    m.fsync(f).unwrap();
    for dir in ["a/b/c", "a/b", "a", ""] {
        fsync_path(&mut m, dir);
    }
    let report = m.cut(CutMode::DropAll);
    assert!(!report.lost_something(), "{report:?}");
    assert_eq!(contents(&mut m, "a/b/c/f"), Some(b"data".to_vec()));
    check(&m);
}
