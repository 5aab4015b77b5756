//! A write set over the state machine's sled tree: reads see earlier writes of the
//! same apply batch, and the whole batch commits as one atomic `sled::Batch`.
//!
//! sled transactions cannot range-scan, and a `sled::Batch` cannot be read back, so
//! apply buffers its writes here. The set lives for one `apply` call, whose size
//! openraft bounds, so it stays small.
//!
//! It also carries the chunk files the batch creates and deletes (see `chunks`): the
//! caller writes new files durably *before* committing, so a committed chunk record
//! always has its file, and deletes files only *after* committing.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::chunk_ref::Hash;

pub struct Txn<'a> {
    tree: &'a sled::Tree,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    chunk_files: ChunkFiles,
    /// While a [`Mark`] is open: each write's key and the pending value it replaced
    /// (`None`: there was none), so a refused command can be undone.
    undo: Option<Vec<Undo>>,
}

/// A key and the pending write it replaced (`None`: there was none).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// A point a command's writes can be rolled back to (see [`Txn::mark`]).
#[must_use]
pub struct Mark(());

/// Chunk files an apply batch creates, expects and deletes (a hash is in at most
/// one list).
#[derive(Default)]
pub struct ChunkFiles {
    pub writes: Vec<(Hash, Vec<u8>)>,
    /// Chunks recorded whose files were pushed outside the log: a node that lacks
    /// one fetches it.
    pub expected: Vec<Hash>,
    pub deletes: Vec<Hash>,
}

impl ChunkFiles {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.expected.is_empty() && self.deletes.is_empty()
    }
}

impl<'a> Txn<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        Txn {
            tree,
            writes: BTreeMap::new(),
            chunk_files: ChunkFiles::default(),
            undo: None,
        }
    }

    /// Starts recording writes so that [`Txn::rollback`] can undo them. Marks do
    /// not nest, and a command that writes chunk files cannot be rolled back.
    pub fn mark(&mut self) -> Mark {
        assert!(self.undo.is_none(), "marks do not nest");
        self.undo = Some(Vec::new());
        Mark(())
    }

    /// Keeps the writes made since `mark`.
    pub fn release(&mut self, _mark: Mark) {
        self.undo = None;
    }

    /// Undoes every write made since `mark`.
    pub fn rollback(&mut self, _mark: Mark) {
        let undo = self.undo.take().expect("rollback of an open mark");
        for (key, previous) in undo.into_iter().rev() {
            match previous {
                Some(value) => self.writes.insert(key, value),
                None => self.writes.remove(&key),
            };
        }
    }

    fn record(&mut self, key: &[u8]) {
        if let Some(undo) = self.undo.as_mut() {
            undo.push((key.to_vec(), self.writes.get(key).cloned()));
        }
    }

    pub fn write_chunk_file(&mut self, hash: Hash, data: Vec<u8>) {
        assert!(self.undo.is_none(), "chunk files cannot be rolled back");
        self.chunk_files.deletes.retain(|h| h != &hash);
        self.chunk_files.writes.push((hash, data));
    }

    /// A chunk recorded whose file a quorum already holds (`StageChunk`).
    pub fn expect_chunk_file(&mut self, hash: Hash) {
        assert!(self.undo.is_none(), "chunk files cannot be rolled back");
        self.chunk_files.deletes.retain(|h| h != &hash);
        self.chunk_files.expected.push(hash);
    }

    pub fn delete_chunk_file(&mut self, hash: Hash) {
        assert!(self.undo.is_none(), "chunk files cannot be rolled back");
        self.chunk_files.writes.retain(|(h, _)| h != &hash);
        self.chunk_files.expected.retain(|h| h != &hash);
        self.chunk_files.deletes.push(hash);
    }

    /// The chunk files to write before and delete after the commit.
    pub fn take_chunk_files(&mut self) -> ChunkFiles {
        std::mem::take(&mut self.chunk_files)
    }

    pub fn get(&self, key: &[u8]) -> sled::Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.record(&key);
        self.writes.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.record(&key);
        self.writes.insert(key, None);
    }

    /// Up to `limit` live pairs whose key starts with `prefix`, in key order,
    /// merging pending writes over the committed tree.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> sled::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        // Pending writes can hide at most `pending` committed keys, so reading
        // `limit + pending` committed keys is always enough.
        let pending: Vec<_> = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        for item in self
            .tree
            .scan_prefix(prefix)
            .take(limit.saturating_add(pending.len()))
        {
            let (k, v) = item?;
            merged.insert(k.to_vec(), Some(v.to_vec()));
        }
        for (k, v) in pending {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }

    /// Up to `limit` live pairs under `prefix` whose key is at least `from`, in key
    /// order, pending writes merged over the committed tree.
    pub fn scan_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> sled::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = from.max(prefix).to_vec();
        let pending: Vec<_> = self
            .writes
            .range::<[u8], _>((Bound::Included(start.as_slice()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for item in self
            .tree
            .range(start.clone()..)
            .take(limit.saturating_add(pending.len()))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            merged.insert(k.to_vec(), Some(v.to_vec()));
        }
        for (k, v) in pending {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .collect())
    }

    /// The first live pair under `prefix` (in key order, pending writes merged
    /// over the tree) for which `accept` is true, looking at no more than
    /// `examined_max` pairs. Lazy: stops at the first match.
    pub fn find_in_prefix(
        &self,
        prefix: &[u8],
        examined_max: usize,
        mut accept: impl FnMut(&[u8], &[u8]) -> sled::Result<bool>,
    ) -> sled::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut pending = self
            .writes
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        let mut committed = self.tree.scan_prefix(prefix).peekable();
        let mut examined = 0;
        while examined < examined_max {
            let next_committed = match committed.peek() {
                Some(Ok((k, _))) => Some(k.to_vec()),
                Some(Err(_)) => {
                    return Err(committed
                        .next()
                        .and_then(Result::err)
                        .expect("peeked an error"))
                }
                None => None,
            };
            let (key, value) = match (pending.peek(), next_committed) {
                (None, None) => return Ok(None),
                (Some((pk, _)), Some(ck)) if ck.as_slice() < pk.as_slice() => {
                    let (k, v) = committed.next().expect("peeked")?;
                    (k.to_vec(), Some(v.to_vec()))
                }
                (Some((pk, _)), Some(ck)) => {
                    if ck.as_slice() == pk.as_slice() {
                        committed.next(); // shadowed by the pending write
                    }
                    let (k, v) = pending.next().expect("peeked");
                    (k.clone(), v.clone())
                }
                (Some(_), None) => {
                    let (k, v) = pending.next().expect("peeked");
                    (k.clone(), v.clone())
                }
                (None, Some(_)) => {
                    let (k, v) = committed.next().expect("peeked")?;
                    (k.to_vec(), Some(v.to_vec()))
                }
            };
            let Some(value) = value else { continue }; // removed in this batch
            examined += 1;
            if accept(&key, &value)? {
                return Ok(Some((key, value)));
            }
        }
        Ok(None)
    }

    /// Keys this transaction writes or removes.
    pub fn write_count(&self) -> usize {
        self.writes.len()
    }

    pub fn into_batch(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_sees_pending_writes_and_hides_pending_removes() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"p1", b"a").unwrap();
        tree.insert(b"p2", b"b").unwrap();
        tree.insert(b"q1", b"c").unwrap();
        let mut txn = Txn::new(&tree);
        txn.remove(b"p1".to_vec());
        txn.put(b"p3".to_vec(), b"d".to_vec());
        let got = txn.scan_prefix(b"p", 10).unwrap();
        let keys: Vec<_> = got.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, vec![b"p2".to_vec(), b"p3".to_vec()]);
        assert_eq!(txn.get(b"p1").unwrap(), None);
        assert_eq!(txn.get(b"p3").unwrap(), Some(b"d".to_vec()));
        assert_eq!(txn.scan_prefix(b"p", 1).unwrap().len(), 1);
        let found = txn.find_in_prefix(b"p", 10, |_, v| Ok(v == b"d")).unwrap();
        assert_eq!(found, Some((b"p3".to_vec(), b"d".to_vec())));
        let first = txn.find_in_prefix(b"p", 10, |_, _| Ok(true)).unwrap();
        assert_eq!(
            first.map(|(k, _)| k),
            Some(b"p2".to_vec()),
            "p1 is removed in the batch"
        );
        assert_eq!(
            txn.find_in_prefix(b"p", 1, |_, v| Ok(v == b"d")).unwrap(),
            None,
            "bounded"
        );
    }
}
