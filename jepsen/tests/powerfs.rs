//! powerfs on a real FUSE mount, driven only through std::fs, as a cairn node would:
//! what was fsynced (files with `sync_all`/`sync_data`, directories with
//! `File::open(dir)?.sync_all()`) survives a cut, exactly, and nothing else does.
//!
//! Needs root and /dev/fuse; without them each test prints a loud SKIPPED banner and
//! returns (under CI, where the machine runs as root, it fails instead).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_jepsen::powerfs::{CutMode, CutReport, PowerFs, PowerOptions};
use common::powerfs_can_run;

/// The mount point of one test; removed (once unmounted) when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// Mounts a fresh powerfs for `test`. Keep the `Scratch` alive longer than the fs.
fn mount(test: &str, options: PowerOptions) -> (Scratch, PowerFs) {
    let dir = std::env::temp_dir().join(format!("powerfs-{test}-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create the mount point");
    let scratch = Scratch(dir);
    let fs = PowerFs::mount(&scratch.0, options).expect("mount powerfs");
    (scratch, fs)
}

fn sync_dir(path: &Path) {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .expect("fsync the directory");
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut file = File::create(path).expect("create");
    file.write_all(data).expect("write");
    file.sync_all().expect("fsync");
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn is_eio<T: std::fmt::Debug>(result: io::Result<T>) -> bool {
    match result {
        Err(e) => e.raw_os_error() == Some(libc::EIO),
        Ok(value) => panic!("expected EIO, got {value:?}"),
    }
}

fn power_cut(fs: &PowerFs, mode: CutMode) -> CutReport {
    fs.freeze();
    let report = fs.cut(mode);
    fs.thaw();
    report
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn exactly_the_synced_state_survives_a_cut() {
    let test = "exactly_the_synced_state_survives_a_cut";
    if !powerfs_can_run(test) {
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions::default());
    let root = scratch.0.as_path();
    let data = root.join("data");
    fs::create_dir(&data).unwrap();
    write_synced(&data.join("a"), &pattern(10_000, 1));
    fs::write(data.join("b"), b"never fsynced").unwrap();
    sync_dir(&data);
    sync_dir(root);
    // After the directory fsyncs: a synced file without a durable name, an unsynced
    // append, an unsynced directory and an unsynced unlink.
    write_synced(&data.join("c"), b"synced, but its name is not");
    OpenOptions::new()
        .append(true)
        .open(data.join("a"))
        .and_then(|mut a| a.write_all(b"unsynced tail"))
        .unwrap();
    fs::create_dir(data.join("sub")).unwrap();
    fs::remove_file(data.join("b")).unwrap();
    let held = File::open(data.join("a")).unwrap();
    assert!(fs.stats().unsynced_dir_entries >= 3, "{:?}", fs.stats());

    fs.freeze();
    assert!(fs.is_frozen());
    assert!(is_eio(fs::metadata(&data)));
    assert!(is_eio(fs::read(data.join("a"))));
    assert!(is_eio(fs::write(root.join("new"), b"x")));
    assert!(is_eio(fs::read_dir(root)));
    assert!(is_eio((&held).read(&mut [0; 10])));
    assert!(is_eio(held.sync_all()));
    let report = fs.cut(CutMode::DropAll);
    fs.thaw();
    assert!(report.lost_something(), "{report:?}");
    assert_eq!(report.inodes_dropped, 2, "c and sub: {report:?}");
    assert_eq!(report.handles_closed, 1, "{report:?}");

    assert_eq!(names(root), ["data"]);
    assert_eq!(names(&data), ["a", "b"]);
    assert_eq!(fs::read(data.join("a")).unwrap(), pattern(10_000, 1));
    assert_eq!(fs::metadata(data.join("b")).unwrap().len(), 0);
    // A handle from before the cut is dead (its process was killed by the cut).
    let stale = (&held).read(&mut [0; 10]).unwrap_err();
    assert_eq!(stale.raw_os_error(), Some(libc::EBADF));
    drop(held);
    let stats = fs.stats();
    assert_eq!(
        (stats.unsynced_pages, stats.dirty_dirs),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.inodes, 4);
    fs.unmount().unwrap();
}

#[test]
fn sled_like_write_rename_fsync_survives() {
    let test = "sled_like_write_rename_fsync_survives";
    if !powerfs_can_run(test) {
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions::default());
    let db = scratch.0.join("db");
    fs::create_dir(&db).unwrap();
    sync_dir(&scratch.0);
    let replace = |content: &[u8], sync_the_dir: bool| {
        write_synced(&db.join("conf.tmp"), content);
        fs::rename(db.join("conf.tmp"), db.join("conf")).unwrap();
        if sync_the_dir {
            sync_dir(&db);
        }
    };
    replace(b"version 1", true);
    replace(b"version 2", true);
    let report = power_cut(&fs, CutMode::DropAll);
    assert!(!report.lost_something(), "{report:?}");
    assert_eq!(fs::read(db.join("conf")).unwrap(), b"version 2");
    assert_eq!(names(&db), ["conf"]);

    // Without the directory fsync the rename is lost: the old name, the old content.
    replace(b"version 3", false);
    assert_eq!(fs::read(db.join("conf")).unwrap(), b"version 3");
    power_cut(&fs, CutMode::DropAll);
    assert_eq!(fs::read(db.join("conf")).unwrap(), b"version 2");
    assert_eq!(names(&db), ["conf"]);
    fs.unmount().unwrap();
}

#[test]
fn an_append_log_comes_back_at_its_synced_length() {
    let test = "an_append_log_comes_back_at_its_synced_length";
    if !powerfs_can_run(test) {
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions::default());
    let path = scratch.0.join("wal");
    let data = pattern(3 << 20, 2);
    let half = data.len() / 2 + 1234;
    let mut log = File::create(&path).unwrap();
    sync_dir(&scratch.0);
    log.write_all(&data[..half]).unwrap();
    log.sync_data().unwrap();
    log.write_all(&data[half..]).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), data.len() as u64);
    drop(log);
    let report = power_cut(&fs, CutMode::DropAll);
    assert!(
        report.bytes_dropped >= (data.len() - half) as u64,
        "{report:?}"
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), half as u64);
    assert_eq!(fs::read(&path).unwrap(), &data[..half]);
    // Appending again continues at the synced length.
    OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut log| log.write_all(b"next"))
        .unwrap();
    assert_eq!(fs::read(&path).unwrap()[half..], *b"next");
    fs.unmount().unwrap();
}

#[test]
fn o_append_records_with_fdatasync_every_tenth_come_back_in_tens() {
    let test = "o_append_records_with_fdatasync_every_tenth_come_back_in_tens";
    if !powerfs_can_run(test) {
        return;
    }
    const RECORD: usize = 37;
    let record = |i: usize| -> Vec<u8> {
        let mut r = format!("record {i:04} ").into_bytes();
        r.resize(RECORD - 1, b'.');
        r.push(b'\n');
        r
    };
    let (scratch, fs) = mount(test, PowerOptions::default());
    let path = scratch.0.join("log");
    File::create(&path).unwrap();
    sync_dir(&scratch.0);
    // The writer appends until the freeze stops it (EIO), like a node at a power cut.
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || -> io::Result<usize> {
            let mut log = OpenOptions::new().append(true).open(&path)?;
            for i in 0..100 {
                log.write_all(&record(i))?;
                if (i + 1) % 10 == 0 {
                    log.sync_data()?;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(100)
        })
    };
    std::thread::sleep(Duration::from_millis(45));
    fs.freeze();
    let outcome = writer.join().expect("the writer does not panic");
    let report = fs.cut(CutMode::DropAll);
    fs.thaw();
    let after = fs::read(&path).unwrap();
    assert_eq!(
        after.len() % (10 * RECORD),
        0,
        "{report:?}, writer: {outcome:?}"
    );
    let expected: Vec<u8> = (0..after.len() / RECORD).flat_map(record).collect();
    assert_eq!(after, expected);
    if let Err(e) = &outcome {
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EIO),
            "the freeze stopped the writer"
        );
    }
    fs.unmount().unwrap();
}

#[test]
fn a_torn_cut_keeps_some_pages_and_zeroes_the_others() {
    let test = "a_torn_cut_keeps_some_pages_and_zeroes_the_others";
    if !powerfs_can_run(test) {
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions::default());
    let path = scratch.0.join("wal");
    File::create(&path).unwrap();
    sync_dir(&scratch.0);
    let data = pattern(1 << 20, 3);
    fs::write(&path, &data).unwrap();
    // Seed 2 keeps the current size of a single dirty file (see the model's tests).
    let report = power_cut(&fs, CutMode::Torn { seed: 2 });
    let after = fs::read(&path).unwrap();
    assert_eq!(after.len(), data.len(), "{report:?}");
    let mut kept = 0;
    for (got, written) in after.chunks(4096).zip(data.chunks(4096)) {
        if got == written {
            kept += 1;
        } else {
            assert!(got.iter().all(|&b| b == 0));
        }
    }
    assert_eq!(kept, report.pages_kept);
    assert!(kept > 0 && kept < 256, "{report:?}");
    fs.unmount().unwrap();
}

#[test]
fn posix_basics_on_the_mount() {
    let test = "posix_basics_on_the_mount";
    if !powerfs_can_run(test) {
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions { bytes_max: 1 << 20 });
    let root = scratch.0.as_path();
    fs::create_dir_all(root.join("x/y/z")).unwrap();
    fs::write(root.join("x/y/z/f"), b"hello").unwrap();
    fs::hard_link(root.join("x/y/z/f"), root.join("x/g")).unwrap();
    assert_eq!(fs::metadata(root.join("x/g")).unwrap().nlink(), 2);
    std::os::unix::fs::symlink("y/z/f", root.join("x/l")).unwrap();
    assert_eq!(fs::read_link(root.join("x/l")).unwrap(), Path::new("y/z/f"));
    assert_eq!(fs::read(root.join("x/l")).unwrap(), b"hello");
    fs::rename(root.join("x/g"), root.join("moved")).unwrap();
    assert_eq!(names(&root.join("x")), ["l", "y"]);
    let err = fs::rename(root.join("x"), root.join("x/y/inside")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    fs::create_dir(root.join("empty")).unwrap();
    let err = fs::rename(root.join("empty"), root.join("x")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));

    // Seek, overwrite, truncate, sparse reads.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(root.join("sparse"))
        .unwrap();
    file.seek(SeekFrom::Start(10_000)).unwrap();
    file.write_all(b"end").unwrap();
    file.set_len(10_002).unwrap();
    let mut back = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 10_002);
    assert!(back[..10_000].iter().all(|&b| b == 0));
    assert_eq!(&back[10_000..], b"en");

    // An unlinked file keeps working through its open handle.
    fs::remove_file(root.join("sparse")).unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(b"still here").unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut head = [0; 10];
    file.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"still here");
    let inodes = fs.stats().inodes;
    drop(file);
    // The release reaches powerfs asynchronously after close.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while fs.stats().inodes != inodes - 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(fs.stats().inodes, inodes - 1, "the unlinked file is freed");

    // The byte cap.
    let err = fs::write(root.join("big"), vec![1; 2 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    fs::remove_file(root.join("big")).unwrap();
    fs::remove_dir_all(root.join("x")).unwrap();
    assert_eq!(names(root), ["empty", "moved"]);
    fs.unmount().unwrap();
}

fn is_mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(&*path))
}

#[test]
fn a_busy_mount_unmounts_lazily() {
    let test = "a_busy_mount_unmounts_lazily";
    if !powerfs_can_run(test) {
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions::default());
    let mountpoint = fs.mountpoint().to_path_buf();
    fs::write(scratch.0.join("f"), b"still served").unwrap();
    let mut open = File::open(scratch.0.join("f")).unwrap();
    assert!(is_mounted(&mountpoint));
    fs.unmount().unwrap();
    assert!(
        !is_mounted(&mountpoint),
        "detached from the namespace at once"
    );
    let mut back = Vec::new();
    open.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"still served");
}

/// The harness starts nodes with `ip netns exec`, which gives them a new mount namespace
/// (a slave copy of the harness's): the mount must work there, fsyncs included.
#[test]
fn a_process_in_a_network_namespace_uses_the_mount() {
    let test = "a_process_in_a_network_namespace_uses_the_mount";
    if !powerfs_can_run(test) {
        return;
    }
    let namespace = format!("powerfs-{}", std::process::id());
    let added = std::process::Command::new("ip")
        .args(["netns", "add", &namespace])
        .status();
    if !added.is_ok_and(|status| status.success()) {
        let _ = io::stderr().write_all(format!("\nSKIPPED {test}: no `ip netns add`\n").as_bytes());
        return;
    }
    let (scratch, fs) = mount(test, PowerOptions::default());
    let dir = scratch.0.to_string_lossy().into_owned();
    // `sync FILE` fsyncs the file, `sync DIR` the directory.
    let script = format!(
        "printf durable > {dir}/a && sync {dir}/a && printf lost > {dir}/b && sync {dir} \
         && printf ' appended' >> {dir}/a && cat {dir}/a"
    );
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &namespace, "sh", "-c", &script])
        .output();
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &namespace])
        .status();
    let output = output.expect("run ip netns exec");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"durable appended");
    power_cut(&fs, CutMode::DropAll);
    assert_eq!(fs::read(scratch.0.join("a")).unwrap(), b"durable");
    assert_eq!(fs::read(scratch.0.join("b")).unwrap(), b"");
    fs.unmount().unwrap();
}
