//! Snapshot files: the whole state tree as a stream of length-prefixed records.
//!
//! Format: repeated `[key_len u32 BE][key][value_len u32 BE][value]`. Dumping walks
//! the tree once; loading replaces the tree in batches of
//! `SNAPSHOT_INSTALL_BATCH_RECORDS`, so neither side holds the whole state in
//! memory. The caller guarantees no apply runs meanwhile (a point-in-time view).

use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::limits::SNAPSHOT_INSTALL_BATCH_RECORDS;

/// Largest key or value a snapshot record may carry; guards the loader against a
/// corrupt length prefix asking for gigabytes.
const RECORD_BYTES_MAX: u32 = 64 * 1024 * 1024;

pub fn dump(tree: &sled::Tree, out: impl Write) -> io::Result<u64> {
    let mut out = BufWriter::new(out);
    let mut count = 0u64;
    for item in tree.iter() {
        let (key, value) = item.map_err(io::Error::other)?;
        write_field(&mut out, &key)?;
        write_field(&mut out, &value)?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

fn write_field(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("record too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

/// Replaces the tree's content with the snapshot's, leaving out keys for which
/// `skip` is true (the caller writes those last, so that a crash mid-load never
/// leaves a half-loaded tree that claims to be complete).
pub fn load(tree: &sled::Tree, input: impl Read, skip: impl Fn(&[u8]) -> bool) -> io::Result<u64> {
    let mut input = BufReader::new(input);
    tree.clear().map_err(io::Error::other)?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0usize;
    let mut count = 0u64;
    while let Some(key) = read_field(&mut input, true)? {
        let value =
            read_field(&mut input, false)?.ok_or_else(|| io::Error::other("truncated snapshot"))?;
        if skip(&key) {
            continue;
        }
        batch.insert(key, value);
        in_batch += 1;
        count += 1;
        if in_batch == SNAPSHOT_INSTALL_BATCH_RECORDS {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(io::Error::other)?;
            in_batch = 0;
        }
    }
    tree.apply_batch(batch).map_err(io::Error::other)?;
    Ok(count)
}

/// Reads one field; `Ok(None)` at a clean end of input when `eof_ok`.
fn read_field(input: &mut impl Read, eof_ok: bool) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if eof_ok && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len);
    if len > RECORD_BYTES_MAX {
        return Err(io::Error::other(format!(
            "snapshot record of {len} bytes exceeds {RECORD_BYTES_MAX}"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_then_load_replaces_the_tree() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let source = db.open_tree("a").unwrap();
        let target = db.open_tree("b").unwrap();
        for i in 0..2500u32 {
            source
                .insert(i.to_be_bytes(), vec![7u8; (i % 50) as usize])
                .unwrap();
        }
        target.insert(b"stale", b"gone").unwrap();
        let mut file = Vec::new();
        assert_eq!(dump(&source, &mut file).unwrap(), 2500);
        assert_eq!(load(&target, &file[..], |_| false).unwrap(), 2500);
        assert_eq!(target.get(b"stale").unwrap(), None);
        let a: Vec<_> = source.iter().map(|r| r.unwrap()).collect();
        let b: Vec<_> = target.iter().map(|r| r.unwrap()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn truncated_snapshot_is_an_error_not_a_panic() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("a").unwrap();
        let bad = [0u8, 0, 0, 3, b'k', b'e', b'y', 0, 0];
        assert!(load(&tree, &bad[..], |_| false).is_err());
    }
}
