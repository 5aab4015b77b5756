//! Recovery of the WAL from the states a crash or power cut can leave.

use super::*;

/// Segments this small hold a few batches each, so tests span many segments.
const TINY_SEGMENT_BYTES: u64 = 256;

fn payloads(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| format!("entry-{i}").into_bytes()).collect()
}

fn sized(range: std::ops::Range<u64>, size: usize) -> Vec<Vec<u8>> {
    range.map(|i| vec![(i % 251) as u8 + 1; size]).collect()
}

/// Byte offsets of the batches in a segment file, following their lengths only.
fn batch_offsets(path: &Path) -> Vec<usize> {
    let data = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + BATCH_HEADER_BYTES as usize <= data.len() {
        offsets.push(at);
        at += BATCH_HEADER_BYTES as usize + u32_at(&data, at + 8) as usize;
    }
    offsets
}

fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = fs::read(path).unwrap();
    data[at..at + bytes.len()].copy_from_slice(bytes);
    fs::write(path, &data).unwrap();
}

/// Segment files on disk, by first index.
fn segment_files(dir: &Path) -> Vec<u64> {
    let mut firsts: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("seg-")?
                .strip_suffix(".wal")?
                .parse()
                .ok()
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

/// A log of batches of 3 records spanning at least `segments` tiny segments.
fn tiny_log(dir: &Path, segments: usize) -> Wal {
    let mut wal = Wal::open_with_segment_bytes(dir, None, TINY_SEGMENT_BYTES).unwrap();
    let mut next = 1;
    while wal.segments.len() < segments || wal.segments.values().last().unwrap().bytes == 0 {
        wal.append(next, &payloads(next..next + 3)).unwrap();
        next += 3;
    }
    wal.segments
        .values()
        .last()
        .unwrap()
        .file
        .sync_all()
        .unwrap();
    wal
}

fn assert_holds(wal: &Wal, first: u64, last: u64) {
    assert_eq!(
        (wal.first_index(), wal.last_index()),
        (Some(first), Some(last))
    );
    for i in first..=last {
        assert_eq!(
            wal.read(i).unwrap(),
            Some(format!("entry-{i}").into_bytes())
        );
    }
}

#[test]
fn records_survive_reopen_and_a_torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    wal.append(1, &payloads(1..6)).unwrap().sync_data().unwrap();
    drop(wal);
    // A crash mid-append leaves half a batch header at the end.
    let segment = segment_path(dir.path(), 1);
    let len = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
    let wal = Wal::open(dir.path(), None).unwrap();
    assert_holds(&wal, 1, 5);
    assert_eq!(fs::metadata(&segment).unwrap().len(), len);
}

#[test]
fn truncate_and_purge_keep_the_log_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    wal.append(1, &payloads(1..11)).unwrap();
    wal.truncate_from(7).unwrap();
    assert_eq!(wal.last_index(), Some(6));
    assert!(
        wal.append(9, &payloads(9..10)).is_err(),
        "a hole is refused"
    );
    wal.append(7, &payloads(7..9)).unwrap();
    wal.purge_through(4).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (Some(5), Some(8)));
    // Purged past the end (a snapshot install): the log restarts later.
    wal.purge_through(20).unwrap();
    assert_eq!(wal.last_index(), None);
    wal.append(21, &payloads(21..23)).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), Some(20)).unwrap();
    assert_holds(&wal, 21, 22);
}

#[test]
fn a_corrupt_record_before_the_tail_stops_recovery_instead_of_dropping_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    for first in [1, 4, 7] {
        wal.append(first, &payloads(first..first + 3)).unwrap();
    }
    drop(wal);
    let segment = segment_path(dir.path(), 1);
    let mut data = fs::read(&segment).unwrap();
    data[BATCH_HEADER_BYTES as usize + 10] ^= 0xff; // the first record's payload
    fs::write(&segment, &data).unwrap();
    // Acknowledged batches follow the damaged one: refuse to start rather
    // than silently drop them.
    let error = Wal::open(dir.path(), None)
        .err()
        .expect("corruption is an error");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn a_torn_last_batch_whose_first_bytes_never_reached_the_disk_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    for first in [1, 5, 9] {
        wal.append(first, &payloads(first..first + 4))
            .unwrap()
            .sync_data()
            .unwrap();
    }
    wal.append(13, &payloads(13..17)).unwrap(); // not synced: a power cut
    drop(wal);
    let segment = segment_path(dir.path(), 1);
    let torn = batch_offsets(&segment)[3];
    // The batch's first page never persisted, its later bytes did.
    patch(&segment, torn, &[0; 8]);
    let mut wal = Wal::open(dir.path(), None).unwrap();
    assert_holds(&wal, 1, 12);
    assert_eq!(fs::metadata(&segment).unwrap().len(), torn as u64);
    wal.append(13, &payloads(13..15))
        .unwrap()
        .sync_data()
        .unwrap();
    drop(wal);
    assert_holds(&Wal::open(dir.path(), None).unwrap(), 1, 14);
}

#[test]
fn a_torn_last_batch_with_a_zeroed_middle_page_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    wal.append(1, &payloads(1..4)).unwrap().sync_data().unwrap();
    wal.append(4, &sized(4..7, 5000)).unwrap();
    drop(wal);
    let segment = segment_path(dir.path(), 1);
    let torn = batch_offsets(&segment)[1];
    patch(&segment, torn + 4096, &[0; 4096]);
    let wal = Wal::open(dir.path(), None).unwrap();
    assert_holds(&wal, 1, 3);
    assert_eq!(fs::metadata(&segment).unwrap().len(), torn as u64);
}

#[test]
fn damage_in_an_earlier_batch_is_refused_naming_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    for first in [1, 4, 7] {
        wal.append(first, &payloads(first..first + 3)).unwrap();
    }
    drop(wal);
    let segment = segment_path(dir.path(), 1);
    let mut data = fs::read(&segment).unwrap();
    data[13] ^= 0x01; // batch 1's first index
    fs::write(&segment, &data).unwrap();
    let error = Wal::open(dir.path(), None).err().expect("refused");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    let message = error.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(message.contains("at byte 0"), "{message}");
    assert!(message.contains("refusing to start"), "{message}");
}

#[test]
fn an_interrupted_purge_is_finished_at_open() {
    // A purge through an index inside segment 3 unlinks segments 1 and 2 and
    // fsyncs the directory once: a power cut may keep any subset of the unlinks.
    for removed in [vec![], vec![0], vec![1], vec![0, 1]] {
        let dir = tempfile::tempdir().unwrap();
        let wal = tiny_log(dir.path(), 5);
        let firsts: Vec<u64> = wal.segments.keys().copied().collect();
        let last = wal.last_index().unwrap();
        let purged = firsts[2] + 1;
        drop(wal);
        for i in &removed {
            fs::remove_file(segment_path(dir.path(), firsts[*i])).unwrap();
        }
        if removed == [1] {
            let error = Wal::open_with_segment_bytes(dir.path(), None, TINY_SEGMENT_BYTES)
                .err()
                .expect("without the purge point, a hole");
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("hole"), "{error}");
        }
        let mut wal =
            Wal::open_with_segment_bytes(dir.path(), Some(purged), TINY_SEGMENT_BYTES).unwrap();
        assert_holds(&wal, purged + 1, last);
        assert_eq!(
            segment_files(dir.path()),
            firsts[2..],
            "removed {removed:?}"
        );
        wal.append(last + 1, &payloads(last + 1..last + 2)).unwrap();
        drop(wal);
        let wal =
            Wal::open_with_segment_bytes(dir.path(), Some(purged), TINY_SEGMENT_BYTES).unwrap();
        assert_holds(&wal, purged + 1, last + 1);
    }
}

#[test]
fn a_log_purged_past_its_end_opens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let wal = tiny_log(dir.path(), 3);
    let last = wal.last_index().unwrap();
    drop(wal);
    // The purge point was recorded, then the power failed before any unlink.
    let mut wal =
        Wal::open_with_segment_bytes(dir.path(), Some(last + 10), TINY_SEGMENT_BYTES).unwrap();
    assert_eq!(wal.last_index(), None);
    assert!(segment_files(dir.path()).is_empty());
    wal.append(last + 11, &payloads(last + 11..last + 13))
        .unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), Some(last + 10)).unwrap();
    assert_holds(&wal, last + 11, last + 12);
    // A first record that does not follow the purge point is a hole.
    drop(wal);
    let error = Wal::open(dir.path(), Some(last)).err().expect("refused");
    assert!(error.to_string().contains("purged through"), "{error}");
}

#[test]
fn every_prefix_of_a_truncation_leaves_a_contiguous_prefix_of_the_log() {
    let probe = tempfile::tempdir().unwrap();
    let wal = tiny_log(probe.path(), 5);
    let firsts: Vec<u64> = wal.segments.keys().copied().collect();
    let last = wal.last_index().unwrap();
    drop(wal);
    // Inside a batch of segment 2, at a batch boundary, inside segment 1's
    // first batch, at the start of a segment.
    for point in [firsts[1] + 4, firsts[1] + 3, 2, firsts[3]] {
        let steps = {
            let dir = tempfile::tempdir().unwrap();
            tiny_log(dir.path(), 5).truncate_plan(point)
        };
        assert!(steps.len() >= 2, "{steps:?}");
        for k in 0..=steps.len() {
            let dir = tempfile::tempdir().unwrap();
            let mut wal = tiny_log(dir.path(), 5);
            assert_eq!(wal.truncate_plan(point), steps);
            for step in &steps[..k] {
                wal.run_truncate_step(step).unwrap();
            }
            if let Some(TruncateStep::Shorten { segment, .. }) = steps.get(k) {
                // The power fails while the shortened copy is being written.
                let temp = temp_path(&segment_path(dir.path(), *segment));
                fs::write(temp, b"half a copy").unwrap();
            }
            drop(wal);
            let mut wal =
                Wal::open_with_segment_bytes(dir.path(), None, TINY_SEGMENT_BYTES).unwrap();
            let reopened_last = wal.last_index().unwrap_or(0);
            assert!(
                reopened_last >= point - 1 && reopened_last <= last,
                "{point} {k}"
            );
            if reopened_last > 0 {
                assert_holds(&wal, 1, reopened_last);
            }
            if k == steps.len() {
                assert_eq!(reopened_last, point - 1);
                wal.append(point, &payloads(point..point + 2)).unwrap();
                drop(wal);
                let wal =
                    Wal::open_with_segment_bytes(dir.path(), None, TINY_SEGMENT_BYTES).unwrap();
                assert_holds(&wal, 1, point + 1);
            }
            assert!(
                fs::read_dir(dir.path()).unwrap().all(|e| !e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(TEMP_SUFFIX)),
                "a leftover temp copy is removed"
            );
        }
    }
}

#[test]
fn a_zero_filled_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    wal.append(1, &payloads(1..4)).unwrap();
    wal.append(4, &payloads(4..6)).unwrap().sync_data().unwrap();
    drop(wal);
    let segment = segment_path(dir.path(), 1);
    let len = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0; 4096]).unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    assert_holds(&wal, 1, 5);
    assert_eq!(fs::metadata(&segment).unwrap().len(), len);
    wal.append(6, &payloads(6..7)).unwrap();
    drop(wal);
    assert_holds(&Wal::open(dir.path(), None).unwrap(), 1, 6);
}

#[test]
fn a_huge_batch_length_is_torn_in_the_last_segment_and_corruption_before_it() {
    for body_len in [u32::MAX - 1, BATCH_BYTES_MAX] {
        // The last batch of the last segment: its length was written, its body not.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), None).unwrap();
        wal.append(1, &payloads(1..4)).unwrap();
        wal.append(4, &payloads(4..7)).unwrap();
        drop(wal);
        let segment = segment_path(dir.path(), 1);
        let torn = batch_offsets(&segment)[1];
        patch(&segment, torn + 8, &body_len.to_le_bytes());
        let wal = Wal::open(dir.path(), None).unwrap();
        assert_holds(&wal, 1, 3);
        assert_eq!(fs::metadata(&segment).unwrap().len(), torn as u64);

        // The last batch of a segment that is not the last: acknowledged.
        let dir = tempfile::tempdir().unwrap();
        let wal = tiny_log(dir.path(), 2);
        let first = *wal.segments.keys().next().unwrap();
        drop(wal);
        let segment = segment_path(dir.path(), first);
        let at = *batch_offsets(&segment).last().unwrap();
        patch(&segment, at + 8, &body_len.to_le_bytes());
        let error = Wal::open_with_segment_bytes(dir.path(), None, TINY_SEGMENT_BYTES)
            .err()
            .expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().contains(&segment.display().to_string()),
            "{error}"
        );
    }
}

#[test]
fn an_append_larger_than_a_batch_is_split_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), None).unwrap();
    wal.batch_bytes_max = 40;
    wal.append(1, &payloads(1..11)).unwrap();
    assert!(batch_offsets(&segment_path(dir.path(), 1)).len() > 2);
    wal.truncate_from(6).unwrap();
    drop(wal);
    assert_holds(&Wal::open(dir.path(), None).unwrap(), 1, 5);
}

#[test]
fn meta_is_read_before_the_log_is_opened() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("node/raft-log");
    assert_eq!(read_meta(&dir).unwrap(), None);
    let wal = Wal::open(&dir, None).unwrap();
    wal.write_meta(b"vote").unwrap();
    wal.write_meta(b"vote 2").unwrap();
    assert_eq!(read_meta(&dir).unwrap(), Some(b"vote 2".to_vec()));
}
