//! Snapshot files: a header, the whole state tree as a stream of records, and a
//! trailer that proves the file complete.
//!
//! Format:
//! - `MAGIC` (8 bytes), `[header_len u32 BE][header]` — the header is opaque here
//!   (the Raft layer stores its snapshot meta in it);
//! - repeated `[key_len u32 BE][key][value_len u32 BE][value]`;
//! - trailer: `[TRAILER_MARK u32 BE][record count u64 BE][BLAKE3 of every byte
//!   before the trailer, 32 bytes]`, then the end of the file.
//!
//! A file cut anywhere — even exactly at a record boundary — or damaged anywhere
//! fails [`verify`] and [`load`]: without the trailer a shorter file would load as
//! a smaller, "complete" state. Dumping walks the tree once; loading replaces the
//! tree in batches of `SNAPSHOT_INSTALL_BATCH_RECORDS` (clearing it in batches too)
//! and frees what sled retired after each (`disk::reclaim_retired`), so neither
//! side holds the whole state in memory. The caller guarantees no apply runs
//! meanwhile.

use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::limits::SNAPSHOT_INSTALL_BATCH_RECORDS;

const MAGIC: &[u8; 8] = b"CAIRNSN2";
/// Stands where a key length would: no key is this long (see `RECORD_BYTES_MAX`).
const TRAILER_MARK: u32 = u32::MAX;
/// Largest key or value a snapshot record may carry; guards the loader against a
/// corrupt length prefix asking for gigabytes.
const RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// What a record read reserves up front; it grows from there as bytes arrive.
const SNAPSHOT_READ_CHUNK_BYTES: usize = 64 * 1024;
/// Largest header.
const HEADER_BYTES_MAX: u32 = 1024 * 1024;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Writes everything through a BLAKE3 hasher, so the trailer can seal it.
struct Hashing<W: Write> {
    out: BufWriter<W>,
    hasher: blake3::Hasher,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.out.write_all(bytes)
    }

    fn put_field(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l <= RECORD_BYTES_MAX)
            .ok_or_else(|| io::Error::other("snapshot record too large"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

/// Writes a whole snapshot file: `header`, every record of `tree`, the trailer.
/// Returns the record count. The caller fsyncs `out`.
pub fn dump(tree: &sled::Tree, header: &[u8], out: impl Write) -> io::Result<u64> {
    let mut w = Hashing {
        out: BufWriter::new(out),
        hasher: blake3::Hasher::new(),
    };
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|l| *l <= HEADER_BYTES_MAX)
        .ok_or_else(|| io::Error::other("snapshot header too large"))?;
    w.put(MAGIC)?;
    w.put(&header_len.to_be_bytes())?;
    w.put(header)?;
    let mut count = 0u64;
    for item in tree.iter() {
        let (key, value) = item.map_err(io::Error::other)?;
        w.put_field(&key)?;
        w.put_field(&value)?;
        count += 1;
    }
    let digest = w.hasher.finalize();
    w.out.write_all(&TRAILER_MARK.to_be_bytes())?;
    w.out.write_all(&count.to_be_bytes())?;
    w.out.write_all(digest.as_bytes())?;
    w.out.flush()?;
    Ok(count)
}

/// Reads a snapshot file in one pass, hashing as it goes.
struct Reader<R: Read> {
    input: BufReader<R>,
    hasher: blake3::Hasher,
    records: u64,
}

/// One step of a snapshot file.
enum Item {
    Record(Vec<u8>, Vec<u8>),
    /// The trailer checked out and nothing follows it.
    End,
}

impl<R: Read> Reader<R> {
    /// Reads exactly `buf.len()` bytes without hashing them.
    fn read_raw(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid(format!(
                "snapshot file ends inside {what} after {} records (no trailer)",
                self.records
            )),
            _ => e,
        })
    }

    fn take(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        self.read_raw(buf, what)?;
        self.hasher.update(buf);
        Ok(())
    }

    fn take_u32(&mut self, what: &str) -> io::Result<u32> {
        let mut bytes = [0u8; 4];
        self.take(&mut bytes, what)?;
        Ok(u32::from_be_bytes(bytes))
    }

    fn take_bytes(&mut self, len: u32, max: u32, what: &str) -> io::Result<Vec<u8>> {
        if len > max {
            return Err(invalid(format!(
                "snapshot {what} of {len} bytes exceeds {max}"
            )));
        }
        // Grows with what the file actually holds: a damaged length claiming 64 MiB
        // near the end of a small file costs no 64 MiB buffer.
        let mut bytes = Vec::with_capacity((len as usize).min(SNAPSHOT_READ_CHUNK_BYTES));
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut bytes)?;
        if bytes.len() != len as usize {
            return Err(invalid(format!(
                "snapshot file ends inside {what} after {} records (no trailer)",
                self.records
            )));
        }
        self.hasher.update(&bytes);
        Ok(bytes)
    }

    fn open(input: R) -> io::Result<(Self, Vec<u8>)> {
        let mut reader = Reader {
            input: BufReader::new(input),
            hasher: blake3::Hasher::new(),
            records: 0,
        };
        let mut magic = [0u8; 8];
        reader.take(&mut magic, "the magic number")?;
        if &magic != MAGIC {
            return Err(invalid("not a cairn snapshot file (bad magic number)"));
        }
        let len = reader.take_u32("the header length")?;
        let header = reader.take_bytes(len, HEADER_BYTES_MAX, "header")?;
        Ok((reader, header))
    }

    fn next(&mut self) -> io::Result<Item> {
        // The key length is hashed only once it is known not to be the trailer's
        // mark: the trailer's digest covers everything before the mark.
        let mut bytes = [0u8; 4];
        self.read_raw(&mut bytes, "a key length")?;
        let key_len = u32::from_be_bytes(bytes);
        if key_len == TRAILER_MARK {
            return self.trailer();
        }
        self.hasher.update(&bytes);
        let key = self.take_bytes(key_len, RECORD_BYTES_MAX, "key")?;
        let value_len = self.take_u32("a value length")?;
        let value = self.take_bytes(value_len, RECORD_BYTES_MAX, "value")?;
        self.records += 1;
        Ok(Item::Record(key, value))
    }

    fn trailer(&mut self) -> io::Result<Item> {
        let mut count = [0u8; 8];
        let mut digest = [0u8; 32];
        self.read_raw(&mut count, "the trailer")?;
        self.read_raw(&mut digest, "the trailer")?;
        let count = u64::from_be_bytes(count);
        if count != self.records {
            return Err(invalid(format!(
                "snapshot trailer counts {count} records, the file holds {}",
                self.records
            )));
        }
        if &digest != self.hasher.finalize().as_bytes() {
            return Err(invalid("snapshot checksum mismatch: the file is damaged"));
        }
        let mut rest = [0u8; 1];
        match self.input.read(&mut rest)? {
            0 => Ok(Item::End),
            _ => Err(invalid("bytes after the snapshot trailer")),
        }
    }
}

/// The header of a snapshot file, without reading further.
pub fn read_header(input: impl Read) -> io::Result<Vec<u8>> {
    Ok(Reader::open(input)?.1)
}

/// Reads the whole file and checks its trailer; returns the header and the
/// record count. An error names what is wrong.
pub fn verify(input: impl Read) -> io::Result<(Vec<u8>, u64)> {
    let (mut reader, header) = Reader::open(input)?;
    loop {
        match reader.next()? {
            Item::Record(..) => {}
            Item::End => return Ok((header, reader.records)),
        }
    }
}

/// A snapshot file read record by record, hashing as it goes: for callers that
/// stream a snapshot somewhere other than a tree (a backup). The trailer is
/// checked when [`Records::next_record`] reaches it.
pub struct Records<R: Read> {
    reader: Reader<R>,
    done: bool,
}

/// Opens a snapshot file for reading record by record; returns its header too.
pub fn records<R: Read>(input: R) -> io::Result<(Vec<u8>, Records<R>)> {
    let (reader, header) = Reader::open(input)?;
    Ok((
        header,
        Records {
            reader,
            done: false,
        },
    ))
}

impl<R: Read> Records<R> {
    /// The next `(key, value)`, or `None` once the trailer checked out.
    pub fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        match self.reader.next()? {
            Item::Record(key, value) => Ok(Some((key, value))),
            Item::End => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

/// Replaces the tree's content with the snapshot's, leaving out keys for which
/// `skip` is true (the caller writes those last, so that a crash mid-load never
/// leaves a half-loaded tree that claims to be complete). Callers [`verify`] the
/// file first; a file that fails the check here still errors, after the tree was
/// partly replaced.
pub fn load(tree: &sled::Tree, input: impl Read, skip: impl Fn(&[u8]) -> bool) -> io::Result<u64> {
    let (mut reader, _header) = Reader::open(input)?;
    clear(tree)?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let mut count = 0u64;
    while let Item::Record(key, value) = reader.next()? {
        if skip(&key) {
            continue;
        }
        batch.insert(key, value);
        in_batch += 1;
        count += 1;
        if in_batch == SNAPSHOT_INSTALL_BATCH_RECORDS {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(io::Error::other)?;
            crate::disk::reclaim_retired(in_batch);
            in_batch = 0;
        }
    }
    tree.apply_batch(batch).map_err(io::Error::other)?;
    crate::disk::reclaim_retired(in_batch);
    Ok(count)
}

/// Removes every key of `tree`, in batches of `SNAPSHOT_INSTALL_BATCH_RECORDS`:
/// sled's own `clear` removes one key at a time and frees nothing in between (see
/// `disk::reclaim_retired`), which on a node that holds a large state costs as much
/// memory as loading it.
fn clear(tree: &sled::Tree) -> io::Result<()> {
    loop {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        for key in tree.iter().keys().take(SNAPSHOT_INSTALL_BATCH_RECORDS) {
            batch.remove(key.map_err(io::Error::other)?);
            in_batch += 1;
        }
        if in_batch == 0 {
            return Ok(());
        }
        tree.apply_batch(batch).map_err(io::Error::other)?;
        crate::disk::reclaim_retired(in_batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(records: u32) -> (sled::Db, sled::Tree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("a").unwrap();
        for i in 0..records {
            tree.insert(i.to_be_bytes(), vec![7u8; (i % 50) as usize])
                .unwrap();
        }
        (db, tree)
    }

    #[test]
    fn dump_then_load_replaces_the_tree() {
        let (db, source) = sample(2500);
        let target = db.open_tree("b").unwrap();
        target.insert(b"stale", b"gone").unwrap();
        let mut file = Vec::new();
        assert_eq!(dump(&source, b"meta", &mut file).unwrap(), 2500);
        assert_eq!(verify(&file[..]).unwrap(), (b"meta".to_vec(), 2500));
        assert_eq!(read_header(&file[..]).unwrap(), b"meta");
        assert_eq!(load(&target, &file[..], |_| false).unwrap(), 2500);
        assert_eq!(target.get(b"stale").unwrap(), None);
        let a: Vec<_> = source.iter().map(|r| r.unwrap()).collect();
        let b: Vec<_> = target.iter().map(|r| r.unwrap()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn load_removes_more_stale_keys_than_one_batch() {
        let (db, source) = sample(10);
        let target = db.open_tree("b").unwrap();
        let stale = 2 * SNAPSHOT_INSTALL_BATCH_RECORDS + 7;
        for i in 0..stale {
            target.insert(format!("stale-{i:06}"), b"gone").unwrap();
        }
        let mut file = Vec::new();
        dump(&source, b"meta", &mut file).unwrap();
        assert_eq!(load(&target, &file[..], |_| false).unwrap(), 10);
        assert_eq!(target.len(), 10);
        assert!(target.scan_prefix(b"stale-").next().is_none());
    }

    #[test]
    fn a_file_cut_at_a_record_boundary_is_not_complete() {
        let (_db, source) = sample(10);
        let mut file = Vec::new();
        dump(&source, b"meta", &mut file).unwrap();
        // Records of this sample: key 4 bytes, value i % 50 bytes; cut after 5.
        let header_end = 8 + 4 + 4;
        let five: usize = (0..5).map(|i| 4 + 4 + 4 + i).sum();
        let cut = &file[..header_end + five];
        let error = verify(cut).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("no trailer"), "{error}");
        let db = sled::Config::new().temporary(true).open().unwrap();
        assert!(load(&db.open_tree("t").unwrap(), cut, |_| false).is_err());
    }

    #[test]
    fn damage_anywhere_fails_the_checksum_or_the_count() {
        let (_db, source) = sample(10);
        let mut file = Vec::new();
        dump(&source, b"meta", &mut file).unwrap();
        for at in [13, 30, file.len() - 40, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x01;
            assert!(
                verify(&bad[..]).is_err(),
                "a flipped byte at {at} went unnoticed"
            );
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(verify(&longer[..]).is_err());
    }

    #[test]
    fn truncated_snapshot_is_an_error_not_a_panic() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("a").unwrap();
        let bad = [0u8, 0, 0, 3, b'k', b'e', b'y', 0, 0];
        assert!(load(&tree, &bad[..], |_| false).is_err());
        let mut header_only = MAGIC.to_vec();
        header_only.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(verify(&header_only[..]).is_err());
    }
}
