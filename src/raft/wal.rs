//! The Raft log's write-ahead log: append-only segment files that are fsynced.
//!
//! Owns the on-disk format and its recovery; knows nothing of openraft beyond
//! "records keyed by a growing index". Layout of `raft-log/`:
//! - `seg-<first index, 20 digits>.wal`: records `[len u32 LE][crc32 u32 LE][payload]`,
//!   consecutive indexes, the first one named in the file name;
//! - `meta`: the small state that is rewritten rather than appended (vote,
//!   committed, last purged), replaced atomically (temp file, fsync, rename, fsync dir).
//!
//! Invariants: indexes are contiguous from `first_index()` to `last_index()`; a
//! record is acknowledged only after `sync()`; after a crash a torn or corrupt
//! record can only be at the end of the last segment (it was never acknowledged) and
//! is cut off. Corruption anywhere else stops the node rather than lose data silently.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment is closed and a new one started once it passes this size.
const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Largest record payload; guards recovery against a corrupt length prefix.
const RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;
const HEADER_BYTES: u64 = 8;
const META_FILE: &str = "meta";

#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    bytes: u64,
    /// One past the last record's index (the first index when empty).
    next_index: u64,
}

pub struct Wal {
    dir: PathBuf,
    /// Segments by first index.
    segments: BTreeMap<u64, Segment>,
    index: BTreeMap<u64, Location>,
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(format!("seg-{first_index:020}.wal"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut firsts = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(first) = name
                .strip_prefix("seg-")
                .and_then(|n| n.strip_suffix(".wal"))
            {
                firsts.push(
                    first
                        .parse::<u64>()
                        .map_err(|_| corrupt(format!("bad segment name {name}")))?,
                );
            }
        }
        firsts.sort_unstable();
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
        };
        let last = firsts.last().copied();
        for first in firsts {
            wal.load_segment(first, Some(first) == last)?;
        }
        Ok(wal)
    }

    /// Reads one segment into the index; a bad tail is cut off only in the last one.
    fn load_segment(&mut self, first: u64, is_last: bool) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut data = Vec::new();
        (&file).read_to_end(&mut data)?;
        let (mut offset, mut next) = (0u64, first);
        loop {
            let len = match record_at(&data, offset) {
                Record::Valid(len) => len,
                Record::End => break,
                Record::Torn if is_last => {
                    tracing::warn!(segment = %path.display(), offset, "cutting off a torn tail (never acknowledged)");
                    file.set_len(offset)?;
                    file.sync_all()?;
                    break;
                }
                Record::Torn | Record::Corrupt => {
                    return Err(corrupt(format!(
                        "corrupt record in {} at byte {offset}",
                        path.display()
                    )));
                }
            };
            if let Some(expected) = self.index.keys().next_back().map(|i| i + 1) {
                if next != expected {
                    return Err(corrupt(format!(
                        "segment {} starts at {next}, expected {expected}",
                        path.display()
                    )));
                }
            }
            self.index.insert(
                next,
                Location {
                    segment: first,
                    offset,
                    len,
                },
            );
            offset += HEADER_BYTES + len as u64;
            next += 1;
        }
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                bytes: offset,
                next_index: next,
            },
        );
        Ok(())
    }

    pub fn first_index(&self) -> Option<u64> {
        self.index.keys().next().copied()
    }

    pub fn last_index(&self) -> Option<u64> {
        self.index.keys().next_back().copied()
    }

    /// Appends records for consecutive indexes starting at `first`; returns the
    /// file to `sync` before acknowledging them.
    pub fn append(&mut self, first: u64, payloads: &[Vec<u8>]) -> io::Result<Arc<File>> {
        if let Some(last) = self.last_index() {
            if first != last + 1 {
                return Err(io::Error::other(format!(
                    "append at {first} after {last} would leave a hole"
                )));
            }
        }
        let segment_first = self.segment_for_append(first)?;
        let segment = self
            .segments
            .get_mut(&segment_first)
            .expect("segment_for_append returns a live segment");
        let mut buffer = Vec::with_capacity(payloads.iter().map(|p| p.len() + 8).sum());
        let mut offset = segment.bytes;
        for (i, payload) in payloads.iter().enumerate() {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|l| *l <= RECORD_BYTES_MAX);
            let len = len.ok_or_else(|| io::Error::other("log record too large"))?;
            buffer.extend_from_slice(&len.to_le_bytes());
            buffer.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            buffer.extend_from_slice(payload);
            self.index.insert(
                first + i as u64,
                Location {
                    segment: segment_first,
                    offset,
                    len,
                },
            );
            offset += HEADER_BYTES + len as u64;
        }
        segment.file.write_all_at(&buffer, segment.bytes)?;
        segment.bytes = offset;
        segment.next_index = first + payloads.len() as u64;
        Ok(segment.file.clone())
    }

    /// The segment new records go to: the last one, unless it is full or `first`
    /// does not follow its last record (a segment holds consecutive indexes).
    fn segment_for_append(&mut self, first: u64) -> io::Result<u64> {
        if let Some((&last_first, last)) = self.segments.iter().next_back() {
            if last.bytes < SEGMENT_BYTES_MAX && last.next_index == first {
                return Ok(last_first);
            }
        }
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                bytes: 0,
                next_index: first,
            },
        );
        Ok(first)
    }

    /// Reads the payload at `index`, checking its checksum.
    pub fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(location) = self.index.get(&index) else {
            return Ok(None);
        };
        let segment = self
            .segments
            .get(&location.segment)
            .ok_or_else(|| io::Error::other("segment vanished"))?;
        let mut record = vec![0u8; (HEADER_BYTES + location.len as u64) as usize];
        segment.file.read_exact_at(&mut record, location.offset)?;
        let crc = u32::from_le_bytes(record[4..8].try_into().expect("8-byte header"));
        let payload = record.split_off(HEADER_BYTES as usize);
        if crc32fast::hash(&payload) != crc {
            return Err(corrupt(format!("checksum mismatch at log index {index}")));
        }
        Ok(Some(payload))
    }

    /// Removes every record from `index` on, durably.
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        let Some(location) = self.index.get(&index).copied() else {
            return Ok(());
        };
        let doomed: Vec<u64> = self
            .segments
            .range(location.segment + 1..)
            .map(|(first, _)| *first)
            .collect();
        for first in doomed {
            self.segments.remove(&first);
            fs::remove_file(segment_path(&self.dir, first))?;
        }
        let segment = self
            .segments
            .get_mut(&location.segment)
            .expect("an indexed segment exists");
        segment.file.set_len(location.offset)?;
        segment.file.sync_all()?;
        segment.bytes = location.offset;
        segment.next_index = index;
        sync_dir(&self.dir)?;
        self.index.split_off(&index);
        Ok(())
    }

    /// Forgets records up to and including `index`; deletes segments holding only
    /// such records (the last one too, so that a log purged past its end — after a
    /// snapshot install — restarts at any later index). The caller has already
    /// recorded the purge point durably.
    pub fn purge_through(&mut self, index: u64) -> io::Result<()> {
        self.index = self.index.split_off(&(index + 1));
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, seg)| seg.next_index <= index + 1)
            .map(|(first, _)| *first)
            .collect();
        for first in &doomed {
            self.segments.remove(first);
            fs::remove_file(segment_path(&self.dir, *first))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The small rewritten state, or `None` before the first write.
    pub fn read_meta(&self) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(META_FILE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the meta file atomically and durably.
    pub fn write_meta(&self, bytes: &[u8]) -> io::Result<()> {
        let temp = self.dir.join("meta.tmp");
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, self.dir.join(META_FILE))?;
        sync_dir(&self.dir)
    }
}

enum Record {
    Valid(u32),
    /// Nothing left.
    End,
    /// An incomplete or unwritten tail: a crash during an append that was never
    /// acknowledged.
    Torn,
    /// A complete record that fails its checksum with data after it: damage.
    Corrupt,
}

/// Classifies the bytes at `offset`.
fn record_at(data: &[u8], offset: u64) -> Record {
    let start = offset as usize;
    if start == data.len() {
        return Record::End;
    }
    let rest = &data[start..];
    if rest.iter().all(|b| *b == 0) {
        return Record::Torn; // preallocated or zero-filled tail
    }
    let Some(header) = rest.get(..HEADER_BYTES as usize) else {
        return Record::Torn;
    };
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let end = HEADER_BYTES as usize + len as usize;
    if len == 0 || len > RECORD_BYTES_MAX {
        return Record::Corrupt;
    }
    let Some(payload) = rest.get(HEADER_BYTES as usize..end) else {
        return Record::Torn;
    };
    match (crc32fast::hash(payload) == crc, end == rest.len()) {
        (true, _) => Record::Valid(len),
        (false, true) => Record::Torn, // the last record, partly written
        (false, false) => Record::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
        range.map(|i| format!("entry-{i}").into_bytes()).collect()
    }

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        wal.append(1, &payloads(1..6)).unwrap().sync_data().unwrap();
        drop(wal);
        // A crash mid-append leaves half a record at the end.
        let segment = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(5)));
        assert_eq!(wal.read(3).unwrap(), Some(b"entry-3".to_vec()));
    }

    #[test]
    fn truncate_and_purge_keep_the_log_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
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
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (Some(21), Some(22)));
        assert_eq!(wal.read(22).unwrap(), Some(b"entry-22".to_vec()));
    }

    #[test]
    fn a_corrupt_record_before_the_tail_stops_recovery_instead_of_dropping_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        wal.append(1, &payloads(1..4)).unwrap();
        drop(wal);
        let segment = segment_path(dir.path(), 1);
        let mut data = fs::read(&segment).unwrap();
        data[10] ^= 0xff; // inside the first record's payload
        fs::write(&segment, &data).unwrap();
        // Acknowledged records follow the damaged one: refuse to start rather
        // than silently drop them.
        let error = Wal::open(dir.path()).err().expect("corruption is an error");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
