//! Backup files: a point-in-time copy of the whole state and of every chunk it
//! references, in one stream that checks itself.
//!
//! Format (version 1); integers big-endian:
//! - `MAGIC` (`CAIRNBK1`), `[manifest length u32][manifest]`: the [`Manifest`] as
//!   JSON (what the file reflects, and the counts its sections must match);
//! - frames `[kind u8][payload length u32][payload]`, in this order:
//!   1. the state section: `RECORD` frames `[key length u32][key][value]`, keys
//!      strictly increasing; then one `STATE_END`: `[records u64][chunks named
//!      u64][chunk bytes named u64][BLAKE3 of the section's frames]`;
//!   2. the chunk section: `CHUNK` frames `[BLAKE3 hash][bytes]`, one per chunk
//!      record of the state, in hash order; then one `CHUNKS_END`: `[chunks
//!      u64][bytes u64][BLAKE3 of the section's frames]`;
//!   3. `TRAILER`: `[BLAKE3 of every byte before this frame]`, then the end of
//!      the file.
//!
//! A reader checks the magic and version, every frame's kind, length bound and
//! place, the key order, each chunk against its hash, each section's counts and
//! checksum against its end frame and the manifest, that the chunk section holds
//! exactly the chunks the state's chunk records name (same hashes and lengths in
//! the same order: a running digest on each side, so no set is kept in memory),
//! the whole-file checksum, and that nothing follows the trailer. A file cut
//! anywhere or changed anywhere fails with a message naming what and the byte
//! offset. Neither side holds more than one frame in memory, and a damaged length
//! costs no allocation beyond the bytes actually there.
//!
//! Which records a backup keeps ([`keeps`]) is decided here, since it depends on
//! record formats; the Raft layer drops its own keys (log position, membership).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use super::chunks::ChunkRecord;
use super::{decode, keys};
use crate::chunk_ref::Hash;
use crate::limits::{CHUNK_BYTES_MAX, DISK_RECORD_BYTES_MAX};

const MAGIC: &[u8; 8] = b"CAIRNBK1";
/// `Manifest::format` of every backup file.
pub const FORMAT_NAME: &str = "cairn-backup";
/// The format this code writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

const KIND_RECORD: u8 = 1;
const KIND_STATE_END: u8 = 2;
const KIND_CHUNK: u8 = 3;
const KIND_CHUNKS_END: u8 = 4;
const KIND_TRAILER: u8 = 5;

/// `[kind u8][payload length u32]`.
const FRAME_HEAD_BYTES: usize = 5;
/// Largest manifest (a few hundred bytes plus one line per member).
const MANIFEST_BYTES_MAX: u32 = 1024 * 1024;
/// Largest state record frame: a state record is one decoded disk record at most.
const RECORD_PAYLOAD_BYTES_MAX: u32 = DISK_RECORD_BYTES_MAX as u32;
/// Largest chunk frame: a hash and one chunk.
const CHUNK_PAYLOAD_BYTES_MAX: u32 = 32 + CHUNK_BYTES_MAX as u32;
const STATE_END_BYTES: u32 = 8 * 3 + 32;
const CHUNKS_END_BYTES: u32 = 8 * 2 + 32;
const TRAILER_BYTES: u32 = 32;
/// What a reader calls a frame header in its messages.
const FRAME_HEAD: &str = "a frame header";
/// What a frame read reserves up front; it grows as bytes actually arrive.
const READ_RESERVE_BYTES: usize = 64 * 1024;

/// The log position a backup reflects (openraft's log id, as plain numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub term: u64,
    /// The node that led when the entry was written.
    pub leader_node_id: u64,
    pub index: u64,
}

/// A member of the cluster the backup was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    pub voter: bool,
    pub grpc_addr: String,
}

/// What a backup file reflects and holds. Stored as JSON, so a person can read it
/// (`head -c 2000 FILE`) and later versions may add fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    pub format_version: u32,
    /// The cairn release that wrote the file.
    pub cairn_version: String,
    /// Unix time (ms) on the source node when the copy was taken.
    pub created_ms: u64,
    /// The source cluster's workspace id (cairn clusters have no other id).
    pub workspace_id: String,
    /// The node that made the copy.
    pub node_id: u64,
    pub members: Vec<Member>,
    /// The last log entry the state reflects.
    pub applied: LogPosition,
    pub state_records: u64,
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// State records by kind (`kv_keys`, `objects`, `inodes`, …), for people.
    pub counts: BTreeMap<String, u64>,
}

/// What a reader found in a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub manifest: Manifest,
    pub file_bytes: u64,
}

/// Whether a state record belongs in a backup: all but chunks that nothing
/// references any more (garbage waiting for GC, or staged by an upload that never
/// committed) and the GC index of those. A restored cluster has no use for them,
/// and leaving them out means the backup never races GC for their files.
pub fn keeps(key: &[u8], value: &[u8]) -> io::Result<bool> {
    match key.first().copied() {
        Some(keys::CHUNK_UNREFERENCED) => Ok(false),
        Some(keys::CHUNK) => {
            let record: ChunkRecord = decode(value).map_err(io::Error::other)?;
            Ok(record.refs > 0)
        }
        _ => Ok(true),
    }
}

/// The name under which a record is counted in [`Manifest::counts`].
pub fn record_kind(key: &[u8]) -> &'static str {
    match key.first().copied() {
        Some(keys::NAMESPACE) => "namespaces",
        Some(keys::KV) => "kv_keys",
        Some(keys::TTL) => "kv_keys_with_ttl",
        Some(keys::QUEUE) => "queues",
        Some(keys::QUEUE_MESSAGE) => "queue_messages",
        Some(keys::BUCKET) => "buckets",
        Some(keys::OBJECT) => "objects",
        Some(keys::CHUNK) => "chunk_records",
        Some(keys::TOKEN) => "tokens",
        Some(keys::FS) => "file_systems",
        Some(keys::FS_INODE) => "inodes",
        Some(keys::FS_DIRENT) => "directory_entries",
        Some(keys::FS_XATTR) => "xattrs",
        Some(keys::FS_BLOCK) => "file_blocks",
        Some(keys::FS_LEASE) => "file_handle_leases",
        Some(keys::CLIENT) => "client_sessions",
        Some(keys::SESSION_RESULT) => "session_outcomes",
        Some(keys::META) => "meta",
        _ => "other",
    }
}

/// If `key` is a chunk record, the chunk it names and its length.
pub fn named_chunk(key: &[u8], value: &[u8]) -> Option<io::Result<(Hash, u32)>> {
    if key.first() != Some(&keys::CHUNK) {
        return None;
    }
    let Ok(hash) = <Hash>::try_from(&key[1..]) else {
        return Some(Err(io::Error::other("a chunk record key is not 33 bytes")));
    };
    Some(
        decode::<ChunkRecord>(value)
            .map(|record| (hash, record.len))
            .map_err(io::Error::other),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    State,
    Chunks,
    Trailer,
    Done,
}

/// Running counts and digests, the same on the writing and the reading side.
struct Tally {
    file: blake3::Hasher,
    section: blake3::Hasher,
    /// `(hash, len)` of every chunk record, in key order.
    named: blake3::Hasher,
    /// `(hash, len)` of every chunk frame, in order.
    carried: blake3::Hasher,
    records: u64,
    named_chunks: u64,
    named_bytes: u64,
    chunks: u64,
    chunk_bytes: u64,
    last_key: Option<Vec<u8>>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            file: blake3::Hasher::new(),
            section: blake3::Hasher::new(),
            named: blake3::Hasher::new(),
            carried: blake3::Hasher::new(),
            records: 0,
            named_chunks: 0,
            named_bytes: 0,
            chunks: 0,
            chunk_bytes: 0,
            last_key: None,
        }
    }

    fn note_named(&mut self, hash: &Hash, len: u32) {
        self.named.update(hash);
        self.named.update(&len.to_be_bytes());
        self.named_chunks += 1;
        self.named_bytes += u64::from(len);
    }

    fn note_carried(&mut self, hash: &Hash, len: u32) {
        self.carried.update(hash);
        self.carried.update(&len.to_be_bytes());
        self.chunks += 1;
        self.chunk_bytes += u64::from(len);
    }

    /// Takes the section digest and starts the next section.
    fn end_section(&mut self) -> [u8; 32] {
        let digest = *self.section.finalize().as_bytes();
        self.section = blake3::Hasher::new();
        digest
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let word: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
    u64::from_be_bytes(word)
}

fn u32_len(len: usize, what: &str) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::other(format!("{what} of {len} bytes is too large")))
}

/// Writes a backup file: the manifest, then [`Writer::record`] for every state
/// record in key order, [`Writer::end_state`], [`Writer::chunk`] for every chunk
/// the records name in hash order, then [`Writer::finish`]. The caller buffers
/// and syncs `out`.
pub struct Writer<W: Write> {
    out: W,
    tally: Tally,
    phase: Phase,
    bytes: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, manifest: &Manifest) -> io::Result<Self> {
        let json = serde_json::to_vec(manifest).map_err(io::Error::other)?;
        let len = u32_len(json.len(), "manifest")?;
        if len > MANIFEST_BYTES_MAX {
            return Err(io::Error::other("the backup manifest is too large"));
        }
        let mut writer = Writer {
            out,
            tally: Tally::new(),
            phase: Phase::State,
            bytes: 0,
        };
        writer.put(MAGIC)?;
        writer.put(&len.to_be_bytes())?;
        writer.put(&json)?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tally.file.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// One frame; `parts` are its payload, concatenated.
    fn frame(&mut self, kind: u8, parts: &[&[u8]], in_section: bool) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = [0u8; FRAME_HEAD_BYTES];
        head[0] = kind;
        head[1..].copy_from_slice(&u32_len(len, "frame")?.to_be_bytes());
        if in_section {
            self.tally.section.update(&head);
            for part in parts {
                self.tally.section.update(part);
            }
        }
        self.put(&head)?;
        for part in parts {
            self.put(part)?;
        }
        Ok(())
    }

    pub fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        assert_eq!(self.phase, Phase::State, "records come before end_state");
        assert!(
            self.tally.last_key.as_deref() < Some(key),
            "records come in key order"
        );
        let key_len = u32_len(key.len(), "key")?;
        if 4 + key.len() + value.len() > RECORD_PAYLOAD_BYTES_MAX as usize {
            return Err(io::Error::other(format!(
                "a state record of {} bytes exceeds the backup limit of {RECORD_PAYLOAD_BYTES_MAX}",
                key.len() + value.len()
            )));
        }
        if let Some(named) = named_chunk(key, value) {
            let (hash, len) = named?;
            self.tally.note_named(&hash, len);
        }
        self.frame(KIND_RECORD, &[&key_len.to_be_bytes(), key, value], true)?;
        self.tally.records += 1;
        self.tally.last_key = Some(key.to_vec());
        Ok(())
    }

    pub fn end_state(&mut self) -> io::Result<()> {
        assert_eq!(self.phase, Phase::State, "end_state comes once");
        let digest = self.tally.end_section();
        let t = &self.tally;
        let counts = [t.records, t.named_chunks, t.named_bytes].map(u64::to_be_bytes);
        self.frame(
            KIND_STATE_END,
            &[&counts[0], &counts[1], &counts[2], &digest],
            false,
        )?;
        self.phase = Phase::Chunks;
        Ok(())
    }

    pub fn chunk(&mut self, hash: &Hash, data: &[u8]) -> io::Result<()> {
        assert_eq!(self.phase, Phase::Chunks, "chunks come after end_state");
        assert!(
            data.len() <= CHUNK_BYTES_MAX,
            "a chunk is at most CHUNK_BYTES_MAX"
        );
        self.tally.note_carried(hash, data.len() as u32);
        self.frame(KIND_CHUNK, &[hash, data], true)
    }

    /// Ends the chunk section and writes the trailer; returns `out` and the bytes
    /// written. Fails if the chunks written are not those the records named.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        assert_eq!(self.phase, Phase::Chunks, "finish comes after end_state");
        if self.tally.named.finalize() != self.tally.carried.finalize() {
            return Err(io::Error::other(format!(
                "the backup carries {} chunks but its state names {}: not the same chunks",
                self.tally.chunks, self.tally.named_chunks
            )));
        }
        let digest = self.tally.end_section();
        let counts = [self.tally.chunks, self.tally.chunk_bytes].map(u64::to_be_bytes);
        self.frame(KIND_CHUNKS_END, &[&counts[0], &counts[1], &digest], false)?;
        let file_digest = *self.tally.file.finalize().as_bytes();
        let head = [&[KIND_TRAILER][..], &TRAILER_BYTES.to_be_bytes()].concat();
        self.out.write_all(&head)?;
        self.out.write_all(&file_digest)?;
        self.out.flush()?;
        self.phase = Phase::Done;
        Ok((self.out, self.bytes + (FRAME_HEAD_BYTES + 32) as u64))
    }
}

/// One item of a backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Record { key: Vec<u8>, value: Vec<u8> },
    Chunk { hash: Hash, data: Vec<u8> },
}

/// Reads a backup file item by item, checking everything the format promises as
/// it goes (see the module doc). An item is only as trustworthy as the file's
/// checksums, which are known at the end: check the whole file ([`verify`])
/// before acting on any of it.
pub struct Reader<R: Read> {
    input: BufReader<R>,
    at: u64,
    tally: Tally,
    phase: Phase,
    manifest: Manifest,
}

fn damaged(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        KIND_RECORD => "state record",
        KIND_STATE_END => "state section end",
        KIND_CHUNK => "chunk",
        KIND_CHUNKS_END => "chunk section end",
        KIND_TRAILER => "trailer",
        _ => "unknown",
    }
}

impl<R: Read> Reader<R> {
    /// Reads and checks the magic number and the manifest.
    pub fn open(input: R) -> io::Result<Self> {
        let mut reader = Reader {
            input: BufReader::new(input),
            at: 0,
            tally: Tally::new(),
            phase: Phase::State,
            manifest: empty_manifest(),
        };
        let mut magic = [0u8; 8];
        reader.take(&mut magic, "the magic number")?;
        if &magic != MAGIC {
            return Err(damaged(
                "not a cairn backup file (bad magic number at byte 0)".into(),
            ));
        }
        let mut len = [0u8; 4];
        reader.take(&mut len, "the manifest length")?;
        let len = u32::from_be_bytes(len);
        if len > MANIFEST_BYTES_MAX {
            return Err(damaged(format!(
                "the manifest claims {len} bytes (at most {MANIFEST_BYTES_MAX}): the file is damaged"
            )));
        }
        let json = reader.take_vec(len, 12, "the manifest")?;
        let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| {
            damaged(format!(
                "the manifest (bytes 12..{}) is unreadable: {e}",
                12 + len
            ))
        })?;
        if manifest.format != FORMAT_NAME {
            return Err(damaged(format!(
                "the manifest names format {:?}, not {FORMAT_NAME:?}",
                manifest.format
            )));
        }
        if manifest.format_version != FORMAT_VERSION {
            return Err(damaged(format!(
                "backup format version {} (cairn {}); this cairn reads version {FORMAT_VERSION}",
                manifest.format_version, manifest.cairn_version
            )));
        }
        reader.manifest = manifest;
        Ok(reader)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.at
    }

    fn truncated(&self, inside: &str) -> io::Error {
        damaged(format!(
            "the file ends at byte {} inside {inside}, after {} state records and {} chunks: it is truncated",
            self.at, self.tally.records, self.tally.chunks
        ))
    }

    /// Reads exactly `buf.len()` bytes into the file digest.
    fn take(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        self.take_raw(buf, what)?;
        self.tally.file.update(buf);
        Ok(())
    }

    fn take_raw(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.input.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 && what == FRAME_HEAD => {
                    return Err(damaged(format!(
                        "the file ends at byte {}, after {} state records and {} chunks, without its trailer: it is truncated",
                        self.at, self.tally.records, self.tally.chunks
                    )));
                }
                Ok(0) => {
                    self.at += filled as u64;
                    return Err(self.truncated(what));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.at += buf.len() as u64;
        Ok(())
    }

    /// Reads `len` bytes, reserving memory only as they arrive.
    fn take_vec(&mut self, len: u32, start: u64, what: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity((len as usize).min(READ_RESERVE_BYTES));
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut bytes)?;
        self.at += bytes.len() as u64;
        if bytes.len() != len as usize {
            return Err(self.truncated(&format!("{what} that starts at byte {start}")));
        }
        self.tally.file.update(&bytes);
        Ok(bytes)
    }

    /// The next record or chunk; `None` once the trailer checked out and the file
    /// ended there.
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        loop {
            if self.phase == Phase::Done {
                return Ok(None);
            }
            let start = self.at;
            let mut head = [0u8; FRAME_HEAD_BYTES];
            self.take_raw(&mut head, FRAME_HEAD)?;
            let kind = head[0];
            let len = u32::from_be_bytes(head[1..].try_into().expect("4 bytes"));
            self.check_frame(kind, len, start)?;
            if kind == KIND_TRAILER {
                self.trailer(start)?;
                continue;
            }
            self.tally.file.update(&head);
            let what = format!("a {} frame", kind_name(kind));
            let payload = self.take_vec(len, start, &what)?;
            if matches!(kind, KIND_RECORD | KIND_CHUNK) {
                self.tally.section.update(&head);
                self.tally.section.update(&payload);
            }
            match kind {
                KIND_RECORD => return self.record(payload, start).map(Some),
                KIND_CHUNK => return self.chunk(payload, start).map(Some),
                KIND_STATE_END => self.state_end(&payload, start)?,
                _ => self.chunks_end(&payload, start)?,
            }
        }
    }

    /// Refuses a frame of an unknown kind, out of place, or of an impossible length.
    fn check_frame(&self, kind: u8, len: u32, start: u64) -> io::Result<()> {
        let allowed = match self.phase {
            Phase::State => [KIND_RECORD, KIND_STATE_END],
            Phase::Chunks => [KIND_CHUNK, KIND_CHUNKS_END],
            Phase::Trailer | Phase::Done => [KIND_TRAILER, KIND_TRAILER],
        };
        let section = match self.phase {
            Phase::State => "the state section",
            Phase::Chunks => "the chunk section",
            Phase::Trailer | Phase::Done => "the end of the file",
        };
        if kind_name(kind) == "unknown" {
            return Err(damaged(format!(
                "unknown frame kind {kind:#04x} at byte {start} in {section}: the file is damaged"
            )));
        }
        if !allowed.contains(&kind) {
            return Err(damaged(format!(
                "a {} frame at byte {start} in {section}, where it does not belong: the file is damaged",
                kind_name(kind)
            )));
        }
        let fits = match kind {
            KIND_RECORD => (4..=RECORD_PAYLOAD_BYTES_MAX).contains(&len),
            KIND_CHUNK => (32..=CHUNK_PAYLOAD_BYTES_MAX).contains(&len),
            KIND_STATE_END => len == STATE_END_BYTES,
            KIND_CHUNKS_END => len == CHUNKS_END_BYTES,
            _ => len == TRAILER_BYTES,
        };
        if !fits {
            return Err(damaged(format!(
                "the {} frame at byte {start} claims {len} bytes, which it cannot hold: the file is damaged",
                kind_name(kind)
            )));
        }
        Ok(())
    }

    fn record(&mut self, mut payload: Vec<u8>, start: u64) -> io::Result<Item> {
        let key_len = u32::from_be_bytes(payload[..4].try_into().expect("4 bytes")) as usize;
        if key_len > payload.len() - 4 {
            return Err(damaged(format!(
                "the state record at byte {start} claims a {key_len}-byte key in a {}-byte frame: the file is damaged",
                payload.len()
            )));
        }
        let value = payload.split_off(4 + key_len);
        payload.drain(..4);
        let key = payload;
        if self.tally.last_key.as_deref() >= Some(&key[..]) {
            return Err(damaged(format!(
                "the state record at byte {start} is out of key order: the file is damaged"
            )));
        }
        if let Some(named) = named_chunk(&key, &value) {
            let (hash, len) = named.map_err(|e| {
                damaged(format!(
                    "the chunk record at byte {start} is unreadable ({e}): the file is damaged"
                ))
            })?;
            self.tally.note_named(&hash, len);
        }
        self.tally.records += 1;
        self.tally.last_key = Some(key.clone());
        Ok(Item::Record { key, value })
    }

    fn chunk(&mut self, mut payload: Vec<u8>, start: u64) -> io::Result<Item> {
        let data = payload.split_off(32);
        let hash: Hash = payload[..].try_into().expect("32 bytes");
        if blake3::hash(&data).as_bytes() != &hash {
            return Err(damaged(format!(
                "chunk {} (frame at byte {start}) does not match its hash: the file is damaged",
                hex::encode(hash)
            )));
        }
        self.tally.note_carried(&hash, data.len() as u32);
        if self.tally.chunks > self.tally.named_chunks {
            return Err(damaged(format!(
                "the chunk at byte {start} is chunk {} of {} the state names: the file is damaged",
                self.tally.chunks, self.tally.named_chunks
            )));
        }
        Ok(Item::Chunk { hash, data })
    }

    fn state_end(&mut self, payload: &[u8], start: u64) -> io::Result<()> {
        let digest = self.tally.end_section();
        let (records, named, named_bytes) =
            (u64_at(payload, 0), u64_at(payload, 8), u64_at(payload, 16));
        let t = &self.tally;
        if records != t.records || named != t.named_chunks || named_bytes != t.named_bytes {
            return Err(damaged(format!(
                "the state section (ending at byte {start}) holds {} records naming {} chunks of {} bytes; its end frame says {records}, {named} and {named_bytes}: the file is damaged",
                t.records, t.named_chunks, t.named_bytes
            )));
        }
        if payload[24..] != digest {
            return Err(damaged(format!(
                "the state section's checksum (end frame at byte {start}) does not match: the file is damaged"
            )));
        }
        let m = &self.manifest;
        if m.state_records != records || m.chunks != named || m.chunk_bytes != named_bytes {
            return Err(damaged(format!(
                "the manifest counts {} records and {} chunks of {} bytes; the state section {records}, {named} and {named_bytes}: the file is damaged",
                m.state_records, m.chunks, m.chunk_bytes
            )));
        }
        self.phase = Phase::Chunks;
        Ok(())
    }

    fn chunks_end(&mut self, payload: &[u8], start: u64) -> io::Result<()> {
        let digest = self.tally.end_section();
        let (chunks, bytes) = (u64_at(payload, 0), u64_at(payload, 8));
        let t = &self.tally;
        if chunks != t.chunks || bytes != t.chunk_bytes {
            return Err(damaged(format!(
                "the chunk section (ending at byte {start}) holds {} chunks of {} bytes; its end frame says {chunks} and {bytes}: the file is damaged",
                t.chunks, t.chunk_bytes
            )));
        }
        if payload[16..] != digest {
            return Err(damaged(format!(
                "the chunk section's checksum (end frame at byte {start}) does not match: the file is damaged"
            )));
        }
        if t.named.finalize() != t.carried.finalize() {
            return Err(damaged(format!(
                "the chunk section holds {} chunks, but not exactly the {} the state names: the file is damaged",
                t.chunks, t.named_chunks
            )));
        }
        self.phase = Phase::Trailer;
        Ok(())
    }

    fn trailer(&mut self, start: u64) -> io::Result<()> {
        let mut digest = [0u8; 32];
        self.take_raw(&mut digest, "the trailer")?;
        if &digest != self.tally.file.finalize().as_bytes() {
            return Err(damaged(format!(
                "the file's checksum (trailer at byte {start}) does not match: the file is damaged"
            )));
        }
        let mut rest = [0u8; 1];
        loop {
            match self.input.read(&mut rest) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(damaged(format!(
                        "bytes follow the trailer (which ends at byte {}): the file is damaged",
                        self.at
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.phase = Phase::Done;
        Ok(())
    }
}

fn empty_manifest() -> Manifest {
    Manifest {
        format: String::new(),
        format_version: 0,
        cairn_version: String::new(),
        created_ms: 0,
        workspace_id: String::new(),
        node_id: 0,
        members: Vec::new(),
        applied: LogPosition {
            term: 0,
            leader_node_id: 0,
            index: 0,
        },
        state_records: 0,
        chunks: 0,
        chunk_bytes: 0,
        counts: BTreeMap::new(),
    }
}

/// Reads a whole backup file and checks everything; returns its manifest and size.
/// An error names what is wrong and where.
pub fn verify(input: impl Read) -> io::Result<Summary> {
    let mut reader = Reader::open(input)?;
    while reader.next_item()?.is_some() {}
    Ok(Summary {
        manifest: reader.manifest.clone(),
        file_bytes: reader.at,
    })
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
