//! Memory, the byte cap, inode numbers, handles, POSIX corner cases, bad input, and
//! random operations.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

#[test]
fn memory_is_freed_for_unlinked_unreferenced_inodes() {
    let mut m = model();
    let ino = create(&mut m, "big");
    write_at(&mut m, ino, 0, &pattern(1 << 20, 8));
    assert_eq!(m.stats().bytes_held, 1 << 20);
    m.unlink(ROOT, os("big")).unwrap();
    assert_eq!(m.stats().inodes, 1);
    assert_eq!(m.stats().bytes_held, 0);
    check(&m);

    // Unlinked but open: keeps working until released.
    let ino = create(&mut m, "seg");
    let fh = m.open(ino, false).unwrap();
    m.write(fh, ino, 0, b"abc").unwrap();
    m.unlink(ROOT, os("seg")).unwrap();
    m.write(fh, ino, 3, b"def").unwrap();
    assert_eq!(m.read(fh, ino, 0, 100), Ok(b"abcdef".to_vec()));
    assert_eq!(m.getattr(ino).unwrap().nlink, 0);
    assert_eq!(m.stats().inodes, 2);
    check(&m);
    m.release(fh);
    assert_eq!(m.stats().inodes, 1);
    assert_eq!(m.stats().bytes_held, 0);

    // A removed durable directory keeps its durable children until the root's fsync.
    mkdir(&mut m, "d");
    durable_file(&mut m, "d/f", &pattern(4096, 9));
    fsync_path(&mut m, "");
    let d = resolve(&m, "d").unwrap();
    m.unlink(d, os("f")).unwrap();
    m.rmdir(ROOT, os("d")).unwrap();
    assert_eq!(m.stats().inodes, 3);
    check(&m);
    m.fsync(ROOT).unwrap();
    assert_eq!(m.stats().inodes, 1);
    assert_eq!(m.stats().bytes_held, 0);
    check(&m);
}

#[test]
fn writes_past_the_byte_cap_fail_with_enospc() {
    let mut m = Model::new(16 * PAGE_SIZE as u64, 0, 0);
    let ino = durable_file(&mut m, "f", &pattern(16 * PAGE_SIZE, 1));
    let fh = m.open(ino, false).unwrap();
    // Appending needs a new page; overwriting a durable page needs a copy of it.
    assert_eq!(
        m.write(fh, ino, 16 * PAGE_SIZE as u64, b"x"),
        Err(libc::ENOSPC)
    );
    assert_eq!(m.write(fh, ino, 0, b"x"), Err(libc::ENOSPC));
    let shrink = SetAttr {
        size: Some(8 * PAGE_SIZE as u64 + 1),
        ..SetAttr::default()
    };
    assert_eq!(m.setattr(ino, shrink).map(|a| a.size), Err(libc::ENOSPC));
    // Truncating to a page boundary needs no copy; the fsync frees the durable pages.
    let shrink = SetAttr {
        size: Some(8 * PAGE_SIZE as u64),
        ..SetAttr::default()
    };
    m.setattr(ino, shrink).unwrap();
    assert_eq!(m.stats().bytes_held, 16 * PAGE_SIZE as u64);
    m.fsync(ino).unwrap();
    assert_eq!(m.stats().bytes_held, 8 * PAGE_SIZE as u64);
    assert_eq!(
        m.write(fh, ino, 0, &pattern(4 * PAGE_SIZE, 2)),
        Ok(4 * PAGE_SIZE as u32)
    );
    check(&m);
    m.release(fh);
    assert_eq!(m.space().blocks_free, 4);
}

#[test]
fn inode_numbers_are_never_reused() {
    let mut m = model();
    let mut seen = BTreeSet::from([ROOT]);
    for round in 0..3 {
        for i in 0..5 {
            let ino = create(&mut m, &format!("f{i}"));
            assert!(seen.insert(ino), "inode {ino} reused in round {round}");
        }
        for i in 0..3 {
            m.unlink(ROOT, os(&format!("f{i}"))).unwrap();
        }
        m.cut(CutMode::DropAll);
        check(&m);
    }
}

#[test]
fn fsync_costs_the_dirty_pages_only() {
    let mut m = model();
    let ino = durable_file(&mut m, "wal", &pattern(16 << 20, 3));
    write_at(&mut m, ino, 5 * PAGE_SIZE as u64 + 10, b"append");
    let file = match &m.inodes[&ino].body {
        Body::File(file) => file,
        _ => unreachable!(),
    };
    assert_eq!(file.dirty_pages(), 1);
    assert_eq!(m.stats().unsynced_pages, 1);
    assert_eq!(m.stats().bytes_held, (16 << 20) + PAGE_SIZE as u64);
    m.fsync(ino).unwrap();
    assert_eq!(m.stats().unsynced_pages, 0);
    assert_eq!(m.stats().bytes_held, 16 << 20);
}

#[test]
fn cut_closes_handles() {
    let mut m = model();
    let ino = durable_file(&mut m, "f", b"abc");
    let fh = m.open(ino, false).unwrap();
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.handles_closed, 1);
    assert_eq!(m.read(fh, ino, 0, 10), Err(libc::EBADF));
    assert_eq!(m.write(fh, ino, 0, b"x"), Err(libc::EBADF));
    m.release(fh); // late release from the killed process: ignored
    check(&m);
}

#[test]
fn hard_links_revert_per_directory() {
    let mut m = model();
    let ino = durable_file(&mut m, "a", b"x");
    m.link(ino, ROOT, os("b")).unwrap();
    assert_eq!(m.getattr(ino).unwrap().nlink, 2);
    m.unlink(ROOT, os("a")).unwrap();
    check(&m);
    m.cut(CutMode::DropAll);
    assert_eq!(names(&mut m, ""), ["a"]);
    assert_eq!(m.getattr(ino).unwrap().nlink, 1);
    assert_eq!(m.link(ino, ROOT, os("a")).map(|a| a.ino), Err(libc::EEXIST));
    let d = mkdir(&mut m, "d");
    assert_eq!(m.link(d, ROOT, os("d2")).map(|a| a.ino), Err(libc::EPERM));
    check(&m);
}

#[test]
fn a_directory_renamed_between_dirs_fsynced_on_one_side_keeps_one_name() {
    let mut m = model();
    mkdir(&mut m, "a");
    mkdir(&mut m, "b");
    mkdir(&mut m, "a/d");
    durable_file(&mut m, "a/d/f", b"data");
    fsync_path(&mut m, "a");
    fsync_path(&mut m, "b");
    fsync_path(&mut m, "");
    let (a, b) = (resolve(&m, "a").unwrap(), resolve(&m, "b").unwrap());
    m.rename(a, os("d"), b, os("d"), false).unwrap();
    m.fsync(b).unwrap(); // "a" not fsynced: its durable state still has "d"
    let report = m.cut(CutMode::DropAll);
    assert_eq!(report.dir_entries_reverted, 2, "{report:?}");
    assert_eq!(names(&mut m, "a"), ["d"]);
    assert!(names(&mut m, "b").is_empty());
    assert_eq!(contents(&mut m, "a/d/f"), Some(b"data".to_vec()));
    check(&m);
}

#[test]
fn rename_follows_posix() {
    let mut m = model();
    mkdir(&mut m, "full");
    create(&mut m, "full/x");
    mkdir(&mut m, "empty");
    create(&mut m, "file");
    let full = resolve(&m, "full").unwrap();
    assert_eq!(
        m.rename(ROOT, os("empty"), ROOT, os("full"), false),
        Err(libc::ENOTEMPTY)
    );
    assert_eq!(
        m.rename(ROOT, os("empty"), ROOT, os("file"), false),
        Err(libc::ENOTDIR)
    );
    assert_eq!(
        m.rename(ROOT, os("file"), ROOT, os("empty"), false),
        Err(libc::EISDIR)
    );
    assert_eq!(
        m.rename(ROOT, os("full"), full, os("sub"), false),
        Err(libc::EINVAL)
    );
    assert_eq!(
        m.rename(ROOT, os("file"), full, os("x"), true),
        Err(libc::EEXIST)
    );
    assert_eq!(
        m.rename(ROOT, os("nothing"), ROOT, os("y"), false),
        Err(libc::ENOENT)
    );
    assert_eq!(m.rename(ROOT, os("file"), ROOT, os("file"), false), Ok(()));
    // A directory over an empty directory.
    m.rename(ROOT, os("full"), ROOT, os("empty"), false)
        .unwrap();
    assert_eq!(names(&mut m, ""), ["empty", "file"]);
    assert_eq!(names(&mut m, "empty"), ["x"]);
    assert_eq!(m.getattr(ROOT).unwrap().nlink, 3);
    assert_eq!(m.rmdir(ROOT, os("empty")), Err(libc::ENOTEMPTY));
    assert_eq!(m.unlink(ROOT, os("empty")), Err(libc::EISDIR));
    assert_eq!(m.rmdir(ROOT, os("file")), Err(libc::ENOTDIR));
    assert_eq!(
        m.create_file(ROOT, os("file"), 0o644, 0, 0).map(|a| a.ino),
        Err(libc::EEXIST)
    );
    let long = "n".repeat(256);
    assert_eq!(
        m.mkdir(ROOT, os(&long), 0o755, 0, 0).map(|a| a.ino),
        Err(libc::ENAMETOOLONG)
    );
    check(&m);
}

#[test]
fn readdir_lists_a_snapshot() {
    let mut m = model();
    for i in 0..5 {
        create(&mut m, &format!("f{i}"));
    }
    let fh = m.opendir(ROOT).unwrap();
    let first: Vec<DirEntry> = m.readdir(fh, ROOT, 0).unwrap()[..4].to_vec();
    assert_eq!(first[0].name, ".");
    assert_eq!(first[1].name, "..");
    m.unlink(ROOT, os("f3")).unwrap();
    // Continuing from offset 4 still sees the names listed when the read started.
    let rest: Vec<String> = m
        .readdir(fh, ROOT, 4)
        .unwrap()
        .iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect();
    assert_eq!(rest, ["f2", "f3", "f4"]);
    assert!(m.readdir(fh, ROOT, 100).unwrap().is_empty());
    m.release(fh);
    check(&m);
}

#[test]
fn symlinks_are_names_like_others() {
    let mut m = model();
    let link = m.symlink(ROOT, os("l"), b"target", 0, 0).unwrap();
    assert_eq!(link.kind, Kind::Symlink);
    assert_eq!(m.readlink(link.ino), Ok(b"target".to_vec()));
    assert_eq!(m.readlink(ROOT), Err(libc::EINVAL));
    m.cut(CutMode::DropAll);
    assert_eq!(resolve(&m, "l"), None);
    check(&m);
}

#[test]
fn bad_requests_are_errors() {
    let mut m = model();
    let f = create(&mut m, "f");
    assert_eq!(m.lookup(f, os("x")).map(|a| a.ino), Err(libc::ENOTDIR));
    assert_eq!(m.lookup(999, os("x")).map(|a| a.ino), Err(libc::ENOENT));
    assert_eq!(m.open(ROOT, false), Err(libc::EISDIR));
    assert_eq!(m.opendir(f), Err(libc::ENOTDIR));
    assert_eq!(m.read(12345, f, 0, 10), Err(libc::EBADF));
    let fh = m.open(f, false).unwrap();
    assert_eq!(m.read(fh, ROOT, 0, 10), Err(libc::EBADF));
    assert_eq!(m.write(fh, f, MAX_FILE_SIZE, b"x"), Err(libc::EFBIG));
    assert_eq!(m.write(fh, f, u64::MAX, b"x"), Err(libc::EFBIG));
    assert_eq!(m.read(fh, f, u64::MAX, u32::MAX), Ok(Vec::new()));
    assert_eq!(m.fallocate(f, u64::MAX, 2, 0), Err(libc::EFBIG));
    assert_eq!(
        m.fallocate(f, 0, 10, libc::FALLOC_FL_PUNCH_HOLE),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(m.fallocate(f, 0, 10, libc::FALLOC_FL_KEEP_SIZE), Ok(()));
    assert_eq!(m.getattr(f).unwrap().size, 0);
    // A huge sparse extension allocates nothing.
    m.fallocate(f, 0, 1 << 40, 0).unwrap();
    assert_eq!(m.stats().bytes_held, 0);
    assert_eq!(m.read(fh, f, (1 << 40) - 3, 100), Ok(vec![0; 3]));
    assert_eq!(m.read(fh, f, 0, u32::MAX).map(|d| d.len()), Ok(16 << 20));
    m.release(fh);
    check(&m);
}

/// Random operations on a small tree with cuts in between: the model never panics and
/// its counts stay exact.
#[test]
fn random_operations_keep_the_model_consistent() {
    let names = ["a", "b", "c", "d"];
    let mut busiest = Stats::default();
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = Model::new(256 * PAGE_SIZE as u64, 0, 0);
        let mut handles: Vec<(u64, u64)> = Vec::new();
        for step in 0..600 {
            // Mostly live inodes, sometimes any number (freed or never used).
            let live: Vec<u64> = m.inodes.keys().copied().collect();
            let pick = |rng: &mut StdRng| match rng.gen_bool(0.9) {
                true => live[rng.gen_range(0..live.len())],
                false => rng.gen_range(1..m.next_ino + 2),
            };
            let (ino, other) = (pick(&mut rng), pick(&mut rng));
            let name = os(names[rng.gen_range(0..names.len())]);
            let name2 = os(names[rng.gen_range(0..names.len())]);
            let offset = rng.gen_range(0..20_000);
            let len = rng.gen_range(0..9000);
            match rng.gen_range(0..40) {
                0..=4 => drop(m.create_file(ino, name, 0o644, 0, 0)),
                5..=7 => drop(m.mkdir(ino, name, 0o755, 0, 0)),
                8 | 9 => drop(m.unlink(ino, name)),
                10 => drop(m.rmdir(ino, name)),
                11..=13 => drop(m.rename(ino, name, other, name2, rng.gen_bool(0.2))),
                14 => drop(m.link(ino, other, name)),
                15..=18 => drop(m.fsync(ino)),
                19..=21 => {
                    if let Ok(fh) = m.open(ino, rng.gen_bool(0.1)) {
                        handles.push((fh, ino));
                    }
                }
                22..=27 => {
                    if let Some(&(fh, ino)) = handles.get(rng.gen_range(0..handles.len().max(1))) {
                        let _ = m.write(fh, ino, offset, &pattern(len, step as u8));
                    }
                }
                28 | 29 => {
                    if !handles.is_empty() {
                        let (fh, _) = handles.swap_remove(rng.gen_range(0..handles.len()));
                        m.release(fh);
                    }
                }
                30 | 31 => {
                    let size = SetAttr {
                        size: Some(offset),
                        ..SetAttr::default()
                    };
                    drop(m.setattr(ino, size));
                }
                32 => drop(m.fallocate(ino, offset, len as u64, 0)),
                33 => drop(m.symlink(ino, name, b"t", 0, 0)),
                34 | 35 => {
                    if let Ok(fh) = m.opendir(ino) {
                        let _ = m.readdir(fh, ino, rng.gen_range(0..5)).map(<[_]>::len);
                        m.release(fh);
                    }
                }
                36 => drop(m.read(rng.gen_range(0..m.next_fh + 1), ino, offset, len as u32)),
                37 => {
                    m.cut(CutMode::Torn { seed: step });
                    handles.clear();
                }
                38 => {
                    m.cut(CutMode::DropAll);
                    handles.clear();
                }
                _ => {
                    // Everything fsynced: a cut only frees unlinked files held open.
                    for ino in live {
                        let _ = m.fsync(ino);
                    }
                    let orphans = m.inodes.values().filter(|i| i.links == 0).count() as u64;
                    let report = m.cut(CutMode::DropAll);
                    let expected = CutReport {
                        inodes_dropped: orphans,
                        handles_closed: handles.len() as u64,
                        ..CutReport::default()
                    };
                    assert_eq!(report, expected);
                    handles.clear();
                }
            }
            check(&m);
            let stats = m.stats();
            busiest.inodes = busiest.inodes.max(stats.inodes);
            busiest.unsynced_pages = busiest.unsynced_pages.max(stats.unsynced_pages);
            busiest.unsynced_dir_entries =
                busiest.unsynced_dir_entries.max(stats.unsynced_dir_entries);
        }
    }
    // The random walk does reach interesting states.
    assert!(busiest.inodes >= 15, "{busiest:?}");
    assert!(busiest.unsynced_pages >= 8, "{busiest:?}");
    assert!(busiest.unsynced_dir_entries >= 8, "{busiest:?}");
}
