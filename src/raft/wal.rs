//! The Raft log's write-ahead log: append-only segment files that are fsynced.
//!
//! Owns the on-disk format and its recovery; knows nothing of openraft beyond
//! "records keyed by a growing index". Layout of `raft-log/`:
//! - `seg-<first index, 20 digits>.wal`: a sequence of **batches**, one per
//!   [`Wal::append`] (a very large append is split, see there). A batch is a 24-byte
//!   header `[magic u32][count u32][body_len u32][first_index u64][crc32 u32]` (all
//!   little-endian; the crc covers the 20 header bytes before it and the whole body)
//!   followed by the body: `count` records `[len u32][crc32 u32 of the payload][payload]`.
//!   The per-record crc lets [`Wal::read`] check one record without its batch.
//!   Indexes are consecutive: the first batch starts at the index in the file name,
//!   each next batch at the index after the previous one's last record;
//! - `meta`: the small state that is rewritten rather than appended (vote,
//!   committed, last purged), replaced atomically (temp file, fsync, rename, fsync dir).
//!   It is read with [`read_meta`] before the log is opened: the purge point it holds
//!   is an argument of [`Wal::open`].
//!
//! Invariants: indexes are contiguous from `first_index()` to `last_index()`; a
//! record is acknowledged only after `sync()`, and the next append starts only after
//! that (openraft serializes log IO), so at most one batch — the last one written —
//! can be unsynced at a crash. After a power cut that batch's pages may have reached
//! the disk in any order (a zeroed first page, intact later ones, a length that was
//! written and a body that was not). Recovery therefore walks batches and, at the
//! first one that is not valid (incomplete, bad magic or lengths, checksum mismatch,
//! records that do not fill the body exactly, or not starting at the expected index):
//! - in the last segment, with no valid batch starting anywhere after it, it is that
//!   torn, never acknowledged batch: the file is cut there (also when the rest is
//!   zeros, e.g. preallocated);
//! - otherwise (a valid batch follows it, or the segment is not the last one)
//!   acknowledged entries follow the damage, and the node refuses to start rather
//!   than lose them silently.
//!
//! Segments are deleted so that every prefix of the deletions leaves a log that opens:
//! a truncation unlinks later segments from the highest down (fsyncing the directory
//! after each) before cutting the kept one (at a batch boundary with `set_len`;
//! inside a batch, whose checksum a cut would break, by renaming over it a copy whose
//! last batch header is rewritten to end there); a purge unlinks from the lowest up, and
//! whatever of it a power cut undoes, [`Wal::open`] finishes, because it is given the
//! purge point (recorded durably before the purge started) and drops the segments
//! and records at or below it before checking that the rest is contiguous.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durable;

/// A segment is closed and a new one started once it passes this size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest record payload; guards recovery against a corrupt length prefix.
const RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Largest batch body; an append with more is written as several batches. Recovery
/// treats a larger `body_len` as invalid without reading (or allocating) anything.
const BATCH_BYTES_MAX: u32 = 256 * 1024 * 1024;
const _: () = assert!(RECORD_BYTES_MAX as u64 + RECORD_HEADER_BYTES <= BATCH_BYTES_MAX as u64);
/// "CRNB" (cairn batch), little-endian.
const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"CRNB");
const BATCH_HEADER_BYTES: u64 = 24;
const RECORD_HEADER_BYTES: u64 = 8;
const META_FILE: &str = "meta";
/// Suffix of a segment being rewritten (truncation inside a batch); a leftover one
/// is an unfinished rewrite whose original is intact, and is deleted at open.
const TEMP_SUFFIX: &str = ".tmp";

#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    /// Byte offset of the record's header in the segment.
    offset: u64,
    len: u32,
    /// How far after the start of its batch the record is (`offset - batch offset`).
    in_batch: u32,
}

struct Segment {
    file: Arc<File>,
    bytes: u64,
    /// One past the last record's index (the first index when empty).
    next_index: u64,
}

pub struct Wal {
    dir: PathBuf,
    segment_bytes_max: u64,
    /// Largest body of one batch written by `append` (a field so tests can split).
    batch_bytes_max: u64,
    /// Segments by first index.
    segments: BTreeMap<u64, Segment>,
    /// Records above the purge point (those at or below it may remain in the first
    /// segment's bytes but are not indexed).
    index: BTreeMap<u64, Location>,
}

/// One step of a truncation; [`Wal::truncate_from`] runs them in order, and every
/// prefix of them leaves a contiguous log on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TruncateStep {
    /// Unlink a segment holding only records at or after the truncation point, and
    /// fsync the directory.
    Remove { segment: u64 },
    /// `index` starts a batch at `offset`: cut the segment there and fsync it.
    Cut {
        segment: u64,
        offset: u64,
        index: u64,
    },
    /// `index` is inside the batch at `batch`, its record at `offset`: replace the
    /// segment atomically (temp copy, fsync, rename, fsync dir) by its bytes before
    /// `offset`, with that batch's header rewritten to hold only the records before
    /// `index` (a cut inside a batch would break its checksum).
    Shorten {
        segment: u64,
        batch: u64,
        offset: u64,
        index: u64,
    },
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(segment_name(first_index))
}

fn segment_name(first_index: u64) -> String {
    format!("seg-{first_index:020}.wal")
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// The meta file in the log directory `dir`, or `None` before the first write (or
/// when `dir` does not exist yet).
pub fn read_meta(dir: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(META_FILE)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering from a torn last batch and
    /// finishing an interrupted purge: `purged_through` is the purge point recorded
    /// in the meta file (`None` if the log was never purged).
    pub fn open(dir: &Path, purged_through: Option<u64>) -> io::Result<Self> {
        Self::open_with_segment_bytes(dir, purged_through, SEGMENT_BYTES_DEFAULT)
    }

    /// [`Wal::open`] with segments closed once they pass `segment_bytes_max`.
    pub fn open_with_segment_bytes(
        dir: &Path,
        purged_through: Option<u64>,
        segment_bytes_max: u64,
    ) -> io::Result<Self> {
        durable::create_dir_all(dir)?;
        let firsts = list_segments(dir)?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes_max,
            batch_bytes_max: BATCH_BYTES_MAX as u64,
            segments: BTreeMap::new(),
            index: BTreeMap::new(),
        };
        // A segment followed by one starting at or below the purge point + 1 holds
        // only purged records: what is left of an interrupted purge. Delete it
        // without reading it (it may even be damaged: nothing in it is needed).
        let mut kept = &firsts[..];
        if let Some(purged) = purged_through {
            while kept.len() > 1 && kept[1] <= purged.saturating_add(1) {
                durable::remove_file(&segment_path(dir, kept[0]))?;
                kept = &kept[1..];
            }
        }
        for (i, &first) in kept.iter().enumerate() {
            if let Some((&prev_first, prev)) = wal.segments.iter().next_back() {
                if prev.next_index != first {
                    return Err(corrupt(format!(
                        "hole in the log: {} ends before index {} but the next segment {} \
                         starts at {first}; refusing to start",
                        segment_path(dir, prev_first).display(),
                        prev.next_index,
                        segment_path(dir, first).display(),
                    )));
                }
            }
            wal.load_segment(first, i + 1 == kept.len(), purged_through)?;
        }
        if let Some(purged) = purged_through {
            // The last segment, read, may turn out to hold only purged records.
            if let Some((&first, last)) = wal.segments.iter().next_back() {
                if last.next_index <= purged.saturating_add(1) {
                    wal.segments.remove(&first);
                    durable::remove_file(&segment_path(dir, first))?;
                }
            }
            if let Some((&first, location)) = wal.index.iter().next() {
                if first != purged.saturating_add(1) {
                    return Err(corrupt(format!(
                        "hole in the log: it was purged through index {purged} but its \
                         first remaining entry is {first} (in {}); refusing to start",
                        segment_path(dir, location.segment).display(),
                    )));
                }
            }
        }
        Ok(wal)
    }

    /// Reads one segment into the index (records at or below `purged_through`
    /// skipped); a torn batch is cut off only at the end of the last one.
    fn load_segment(
        &mut self,
        first: u64,
        is_last: bool,
        purged_through: Option<u64>,
    ) -> io::Result<()> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut data = Vec::new();
        (&file).read_to_end(&mut data)?;
        let (mut offset, mut next) = (0usize, first);
        while offset < data.len() {
            let checked = parse_batch(&data, offset).and_then(|batch| {
                if batch.first_index == next {
                    Ok(batch)
                } else {
                    Err(format!(
                        "starts at index {}, expected {next}",
                        batch.first_index
                    ))
                }
            });
            let batch = match checked {
                Ok(batch) => batch,
                Err(what) if !is_last => return Err(damaged(&path, offset, &what, None)),
                Err(what) => {
                    if let Some(after) = valid_batch_after(&data, offset, next) {
                        return Err(damaged(&path, offset, &what, Some(after)));
                    }
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        problem = %what,
                        "cutting off a torn last batch (never acknowledged)"
                    );
                    file.set_len(offset as u64)?;
                    file.sync_all()?;
                    break;
                }
            };
            for &(record_offset, len) in &batch.records {
                if purged_through.is_none_or(|purged| next > purged) {
                    self.index.insert(
                        next,
                        Location {
                            segment: first,
                            offset: record_offset as u64,
                            len,
                            in_batch: (record_offset - offset) as u32,
                        },
                    );
                }
                // A log index never reaches 2^64; a file claiming it does is corrupt.
                next = next.checked_add(1).ok_or_else(|| {
                    corrupt(format!(
                        "{}: the log batch at byte {offset} runs past log index 2^64; refusing to start",
                        path.display()
                    ))
                })?;
            }
            offset = batch.end;
        }
        if is_last {
            // After a crash of the process alone, the batch it wrote last is intact
            // in the page cache, so it is now part of the log, but it may never have
            // been synced (and later appends may go to a new segment): sync it
            // before openraft counts it as stored.
            file.sync_all()?;
        }
        self.segments.insert(
            first,
            Segment {
                file: Arc::new(file),
                bytes: offset as u64,
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

    /// Appends records for consecutive indexes starting at `first` as one batch;
    /// returns the file to `sync` before acknowledging them.
    ///
    /// An append whose records exceed the batch size limit (256 MiB, far above what
    /// one openraft append carries in cairn) is split into batches, and each but the
    /// last is fdatasynced before the next is written, so that still at most one batch
    /// is unsynced at any time.
    pub fn append(&mut self, first: u64, payloads: &[Vec<u8>]) -> io::Result<Arc<File>> {
        if let Some(last) = self.last_index() {
            if first != last + 1 {
                return Err(io::Error::other(format!(
                    "append at {first} after {last} would leave a hole"
                )));
            }
        }
        if payloads.iter().any(|p| p.len() > RECORD_BYTES_MAX as usize) {
            return Err(io::Error::other("log record too large"));
        }
        if first.checked_add(payloads.len() as u64).is_none() {
            return Err(io::Error::other("append past log index 2^64"));
        }
        let segment_first = self.segment_for_append(first)?;
        let segment = self
            .segments
            .get_mut(&segment_first)
            .expect("segment_for_append returns a live segment");
        let (mut rest, mut next) = (payloads, first);
        while !rest.is_empty() {
            let (mut count, mut body_len) = (0, 0u64);
            for payload in rest {
                let bytes = RECORD_HEADER_BYTES + payload.len() as u64;
                if count > 0 && body_len + bytes > self.batch_bytes_max {
                    break;
                }
                count += 1;
                body_len += bytes;
            }
            let (batch, tail) = rest.split_at(count);
            if next != first {
                segment.file.sync_data()?; // the previous batch of this append
            }
            let (buffer, records) = encode_batch(next, batch);
            segment.file.write_all_at(&buffer, segment.bytes)?;
            for (i, (in_batch, len)) in records.into_iter().enumerate() {
                self.index.insert(
                    next + i as u64,
                    Location {
                        segment: segment_first,
                        offset: segment.bytes + in_batch as u64,
                        len,
                        in_batch,
                    },
                );
            }
            segment.bytes += buffer.len() as u64;
            next += count as u64; // checked at the top
            segment.next_index = next;
            rest = tail;
        }
        Ok(segment.file.clone())
    }

    /// The segment new records go to: the last one, unless it is full or `first`
    /// does not follow its last record (a segment holds consecutive indexes).
    fn segment_for_append(&mut self, first: u64) -> io::Result<u64> {
        if let Some((&last_first, last)) = self.segments.iter().next_back() {
            if last.bytes < self.segment_bytes_max && last.next_index == first {
                return Ok(last_first);
            }
        }
        if self.index.is_empty() {
            // No record above the purge point: what segments remain hold nothing
            // needed (only purged records, or none). A log restarting elsewhere must
            // not leave them in front of its new segment, as a hole.
            let stale: Vec<u64> = self.segments.keys().copied().collect();
            for segment in stale {
                self.segments.remove(&segment);
                durable::remove_file(&segment_path(&self.dir, segment))?;
            }
        }
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        durable::sync_dir(&self.dir)?;
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
        let mut record = vec![0u8; (RECORD_HEADER_BYTES + location.len as u64) as usize];
        segment.file.read_exact_at(&mut record, location.offset)?;
        let crc = u32::from_le_bytes(record[4..8].try_into().expect("8-byte header"));
        let payload = record.split_off(RECORD_HEADER_BYTES as usize);
        if crc32fast::hash(&payload) != crc {
            return Err(corrupt(format!("checksum mismatch at log index {index}")));
        }
        Ok(Some(payload))
    }

    /// Removes every record from `index` on, durably. Later segments go first, the
    /// highest one first, each unlink made durable before the next, so that a power
    /// cut at any point leaves a contiguous prefix of the old log.
    pub fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        for step in self.truncate_plan(index) {
            self.run_truncate_step(&step)?;
        }
        Ok(())
    }

    /// The steps of `truncate_from(index)`, in order (none if `index` is not held).
    fn truncate_plan(&self, index: u64) -> Vec<TruncateStep> {
        let Some(location) = self.index.get(&index).copied() else {
            return Vec::new();
        };
        let mut steps: Vec<TruncateStep> = self
            .segments
            .range(location.segment + 1..)
            .rev()
            .map(|(&segment, _)| TruncateStep::Remove { segment })
            .collect();
        let batch = location.offset - location.in_batch as u64;
        steps.push(if location.in_batch as u64 == BATCH_HEADER_BYTES {
            TruncateStep::Cut {
                segment: location.segment,
                offset: batch,
                index,
            }
        } else {
            TruncateStep::Shorten {
                segment: location.segment,
                batch,
                offset: location.offset,
                index,
            }
        });
        steps
    }

    /// Runs one truncation step durably and updates the in-memory state to match.
    fn run_truncate_step(&mut self, step: &TruncateStep) -> io::Result<()> {
        match *step {
            TruncateStep::Remove { segment } => {
                self.segments.remove(&segment);
                self.index.split_off(&segment);
                durable::remove_file(&segment_path(&self.dir, segment))
            }
            TruncateStep::Cut {
                segment,
                offset,
                index,
            } => {
                let kept = self
                    .segments
                    .get_mut(&segment)
                    .expect("a planned segment exists");
                kept.file.set_len(offset)?;
                kept.file.sync_all()?;
                kept.bytes = offset;
                kept.next_index = index;
                self.index.split_off(&index);
                Ok(())
            }
            TruncateStep::Shorten {
                segment,
                batch,
                offset,
                index,
            } => {
                let path = segment_path(&self.dir, segment);
                let kept = self
                    .segments
                    .get_mut(&segment)
                    .expect("a planned segment exists");
                let file = shortened_copy(&kept.file, &temp_path(&path), batch, offset, index)?;
                durable::rename(&temp_path(&path), &path)?;
                kept.file = Arc::new(file);
                kept.bytes = offset;
                kept.next_index = index;
                self.index.split_off(&index);
                Ok(())
            }
        }
    }

    /// Forgets records up to and including `index`; deletes segments holding only
    /// such records (the last one too, so that a log purged past its end — after a
    /// snapshot install — restarts at any later index), lowest first. The caller has
    /// already recorded the purge point durably, and passes it to `open` after a
    /// crash, which finishes whatever part of the deletion did not survive.
    pub fn purge_through(&mut self, index: u64) -> io::Result<()> {
        let above = index.saturating_add(1);
        self.index = self.index.split_off(&above);
        let doomed: Vec<u64> = self
            .segments
            .iter()
            .filter(|(_, seg)| seg.next_index <= above)
            .map(|(first, _)| *first)
            .collect();
        for first in &doomed {
            self.segments.remove(first);
            fs::remove_file(segment_path(&self.dir, *first))?;
        }
        if !doomed.is_empty() {
            durable::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Replaces the meta file atomically and durably.
    pub fn write_meta(&self, bytes: &[u8]) -> io::Result<()> {
        let temp = self.dir.join("meta.tmp");
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        durable::rename(&temp, &self.dir.join(META_FILE))
    }
}

/// The first indexes of the segments in `dir`, ascending; deletes leftover temp
/// copies of segments (an interrupted rewrite, whose original is intact).
fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("seg-") else {
            continue;
        };
        if rest.ends_with(TEMP_SUFFIX) {
            durable::remove_file(&dir.join(&name))?;
            continue;
        }
        let Some(first) = rest.strip_suffix(".wal") else {
            continue;
        };
        match first.parse::<u64>() {
            Ok(first) if segment_name(first) == name => firsts.push(first),
            _ => {
                return Err(corrupt(format!(
                    "bad segment name {name} in {}",
                    dir.display()
                )))
            }
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Writes to `temp` a copy of `source`'s bytes before `offset`, with the header of
/// the batch at `batch` rewritten to end there (its records before `index`), and
/// fsyncs it. Copies in chunks: a segment can be large.
fn shortened_copy(
    source: &File,
    temp: &Path,
    batch: u64,
    offset: u64,
    index: u64,
) -> io::Result<File> {
    let mut header = [0u8; BATCH_HEADER_BYTES as usize];
    source.read_exact_at(&mut header, batch)?;
    let old_first = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let body_start = batch + BATCH_HEADER_BYTES;
    let count = u32::try_from(index - old_first).expect("a batch holds < 2^32 records");
    let body_len = u32::try_from(offset - body_start).expect("a batch body fits u32");
    header[4..8].copy_from_slice(&count.to_le_bytes());
    header[8..12].copy_from_slice(&body_len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..20]);
    let temp_file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)?;
    let mut chunk = vec![0u8; 1024 * 1024];
    let mut at = 0u64;
    while at < offset {
        let n = (offset - at).min(chunk.len() as u64) as usize;
        source.read_exact_at(&mut chunk[..n], at)?;
        temp_file.write_all_at(&chunk[..n], at)?;
        let body_from = body_start.max(at);
        if body_from < at + n as u64 {
            crc.update(&chunk[(body_from - at) as usize..n]);
        }
        at += n as u64;
    }
    header[20..24].copy_from_slice(&crc.finalize().to_le_bytes());
    temp_file.write_all_at(&header, batch)?;
    temp_file.sync_all()?;
    Ok(temp_file)
}

/// One batch's bytes (header and body) for records from `first_index`, and each
/// record's (offset in the batch, length).
fn encode_batch(first_index: u64, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<(u32, u32)>) {
    let body_len: usize = payloads
        .iter()
        .map(|p| RECORD_HEADER_BYTES as usize + p.len())
        .sum();
    let mut buffer = Vec::with_capacity(BATCH_HEADER_BYTES as usize + body_len);
    buffer.extend_from_slice(&BATCH_MAGIC.to_le_bytes());
    buffer.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&(body_len as u32).to_le_bytes());
    buffer.extend_from_slice(&first_index.to_le_bytes());
    buffer.extend_from_slice(&[0; 4]); // the crc, below
    let mut records = Vec::with_capacity(payloads.len());
    for payload in payloads {
        records.push((buffer.len() as u32, payload.len() as u32));
        buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buffer.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        buffer.extend_from_slice(payload);
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buffer[..20]);
    crc.update(&buffer[BATCH_HEADER_BYTES as usize..]);
    buffer[20..24].copy_from_slice(&crc.finalize().to_le_bytes());
    (buffer, records)
}

/// A batch that passed every check but its first index (the caller's).
struct ParsedBatch {
    first_index: u64,
    /// Each record's (byte offset in the segment, payload length).
    records: Vec<(usize, u32)>,
    /// Where the next batch starts.
    end: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks the batch at `at`: complete header, magic, plausible lengths, complete
/// body, checksum, and records that fill the body exactly. Never allocates by a
/// length read from the file beyond one entry per record present in it.
fn parse_batch(data: &[u8], at: usize) -> Result<ParsedBatch, String> {
    let rest = &data[at..];
    let header_bytes = BATCH_HEADER_BYTES as usize;
    let Some(header) = rest.get(..header_bytes) else {
        return Err(format!(
            "incomplete batch header ({} of {header_bytes} bytes)",
            rest.len()
        ));
    };
    if u32_at(header, 0) != BATCH_MAGIC {
        return Err(if header.iter().all(|b| *b == 0) {
            "zeros where a batch header should be".to_string()
        } else {
            "bad batch magic".to_string()
        });
    }
    let (count, body_len) = (u32_at(header, 4), u32_at(header, 8));
    let first_index = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    if count == 0
        || body_len > BATCH_BYTES_MAX
        || count as u64 * RECORD_HEADER_BYTES > body_len as u64
    {
        return Err(format!(
            "impossible batch lengths ({count} records in {body_len} bytes)"
        ));
    }
    let Some(body) = rest.get(header_bytes..header_bytes + body_len as usize) else {
        return Err(format!(
            "incomplete batch body ({} of {body_len} bytes)",
            rest.len() - header_bytes
        ));
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[..20]);
    crc.update(body);
    if crc.finalize() != u32_at(header, 20) {
        return Err("batch checksum mismatch".to_string());
    }
    // The batch checksum covers the records; only their framing is left to check.
    let mut records = Vec::new();
    let mut pos = 0usize;
    for _ in 0..count {
        let len = body
            .get(pos..pos + RECORD_HEADER_BYTES as usize)
            .map(|h| u32_at(h, 0))
            .filter(|len| *len <= RECORD_BYTES_MAX)
            .filter(|len| pos + RECORD_HEADER_BYTES as usize + *len as usize <= body.len())
            .ok_or_else(|| format!("record {} of {count} overruns its batch", records.len()))?;
        records.push((at + header_bytes + pos, len));
        pos += RECORD_HEADER_BYTES as usize + len as usize;
    }
    if pos != body.len() {
        return Err(format!("{count} records do not fill the batch body"));
    }
    Ok(ParsedBatch {
        first_index,
        records,
        end: at + header_bytes + pos,
    })
}

/// Where a valid batch starts after the invalid one at `damaged` (whose records
/// would have started at index `expected`), if anywhere: a candidate at every
/// occurrence of the magic, checked fully. A batch written after the damaged one
/// starts after `expected` and at most one index per record-header size further,
/// which rules out batches that are merely bytes inside a payload, or stale.
fn valid_batch_after(data: &[u8], damaged: usize, expected: u64) -> Option<usize> {
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut at = damaged + 1;
    while at + BATCH_HEADER_BYTES as usize <= data.len() {
        at += data[at..].windows(magic.len()).position(|w| w == magic)?;
        if let Ok(batch) = parse_batch(data, at) {
            let records_between = ((at - damaged) as u64) / RECORD_HEADER_BYTES;
            if batch.first_index > expected && batch.first_index - expected <= records_between {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

fn damaged(path: &Path, offset: usize, what: &str, valid_after: Option<usize>) -> io::Error {
    let context = match valid_after {
        Some(after) => format!("with a valid batch after it at byte {after}"),
        None => "in a segment that is not the last one".to_string(),
    };
    corrupt(format!(
        "corrupt log batch in {} at byte {offset} ({what}) {context}: acknowledged \
         entries follow the damage; refusing to start",
        path.display()
    ))
}

#[cfg(test)]
mod tests;
