//! Write-back buffers, one per inode with unflushed writes: `write` calls land
//! here and return at once; `flush` (close), `fsync`, a read, a truncate, release
//! and unmount send them to the cluster in order, and only then report success.
//!
//! Bounded twice: an inode's buffer is flushed when it holds
//! `INODE_DIRTY_BYTES_MAX`, and a write that would take the whole mount past
//! `MOUNT_DIRTY_BYTES_MAX` flushes its inode first. Each buffered range is one
//! `Write` call (one Raft command) when flushed; adjacent writes coalesce, so a
//! sequential writer sends few large calls.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::lock;
use super::reads::Reads;
use crate::client::{Attr, Error, FsClient};
use crate::limits::FS_WRITE_BYTES_MAX;

/// An inode's buffer is flushed once it holds this much (one `Write` call).
pub const INODE_DIRTY_BYTES_MAX: usize = FS_WRITE_BYTES_MAX;
/// Unflushed bytes across the whole mount.
pub const MOUNT_DIRTY_BYTES_MAX: usize = 256 * 1024 * 1024;

#[derive(Default)]
struct Dirty {
    /// Byte ranges in the order written; a later range wins where they overlap.
    ranges: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// The front range is being sent: later writes must not extend it.
    sending_front: bool,
}

impl Dirty {
    fn push(&mut self, offset: u64, data: &[u8]) {
        self.bytes += data.len();
        let extendable = self.ranges.len() > usize::from(self.sending_front);
        if let (true, Some((at, last))) = (extendable, self.ranges.back_mut()) {
            if *at + last.len() as u64 == offset && last.len() + data.len() <= FS_WRITE_BYTES_MAX {
                let mut joined = Vec::with_capacity(last.len() + data.len());
                joined.extend_from_slice(last);
                joined.extend_from_slice(data);
                *last = Bytes::from(joined);
                return;
            }
        }
        self.ranges
            .push_back((offset, Bytes::copy_from_slice(data)));
    }

    fn end(&self) -> u64 {
        self.ranges
            .iter()
            .map(|(at, data)| at + data.len() as u64)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct InodeWrites {
    dirty: Mutex<Dirty>,
    /// Held while a flush sends ranges, so two flushes never reorder writes.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub struct Writes {
    inodes: Mutex<HashMap<u64, Arc<InodeWrites>>>,
    dirty_bytes: AtomicUsize,
}

impl Writes {
    fn inode(&self, ino: u64) -> Option<Arc<InodeWrites>> {
        lock(&self.inodes).get(&ino).cloned()
    }

    /// Buffers a write; flushes first or after when a bound is reached.
    pub async fn write(
        &self,
        fs: &FsClient,
        reads: &Reads,
        ino: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Error> {
        if self.dirty_bytes.load(Ordering::Relaxed) + data.len() > MOUNT_DIRTY_BYTES_MAX {
            self.flush(fs, reads, ino).await?;
        }
        let writes = lock(&self.inodes).entry(ino).or_default().clone();
        let full = {
            let mut dirty = lock(&writes.dirty);
            dirty.push(offset, data);
            dirty.bytes >= INODE_DIRTY_BYTES_MAX
        };
        self.dirty_bytes.fetch_add(data.len(), Ordering::Relaxed);
        if full {
            self.flush(fs, reads, ino).await?;
        }
        Ok(())
    }

    /// The end of the furthest unflushed write (0: none), for the size `stat` shows.
    pub fn dirty_end(&self, ino: u64) -> u64 {
        self.inode(ino).map_or(0, |w| lock(&w.dirty).end())
    }

    /// Sends the inode's buffered writes; returns the attributes after the last.
    /// A failed range and those after it stay buffered for the next flush.
    ///
    /// Each range is written as a compare-and-set on the content version the
    /// block cache holds: when it wins, the cluster's new content is exactly the
    /// cached one plus this range, so the cache is patched instead of dropped.
    /// When it loses (another mount wrote meanwhile), the range is written over
    /// whatever is there, and the cache's old blocks stop being served.
    pub async fn flush(
        &self,
        fs: &FsClient,
        reads: &Reads,
        ino: u64,
    ) -> Result<Option<Flushed>, Error> {
        let Some(writes) = self.inode(ino) else {
            return Ok(None);
        };
        let _order = writes.flushing.lock().await;
        let mut last: Option<Flushed> = None;
        // A range leaves the buffer only once the cluster acknowledged it, so a
        // flush that fails or is cancelled (the op timeout) loses nothing: the next
        // one sends it again (writing the same bytes twice is harmless).
        loop {
            let front = {
                let mut dirty = lock(&writes.dirty);
                dirty.sending_front = !dirty.ranges.is_empty();
                dirty.ranges.front().cloned()
            };
            let Some((offset, data)) = front else { break };
            let result = write_range(fs, reads, ino, offset, &data).await;
            let mut dirty = lock(&writes.dirty);
            dirty.sending_front = false;
            let (attr, won) = result?;
            let (sent_at, sent) = dirty.ranges.pop_front().expect("the range just sent");
            assert!(
                sent_at == offset && sent.len() == data.len(),
                "a buffered range changed while it was sent"
            );
            dirty.bytes -= sent.len();
            drop(dirty);
            self.dirty_bytes.fetch_sub(sent.len(), Ordering::Relaxed);
            let all_won = won && last.as_ref().is_none_or(|l| l.compare_and_set);
            last = Some(Flushed {
                attr,
                compare_and_set: all_won,
            });
        }
        let mut map = lock(&self.inodes);
        if let Some(w) = map.get(&ino) {
            if lock(&w.dirty).ranges.is_empty() && Arc::strong_count(w) == 2 {
                // Only the map and this call hold it: nothing is buffered or flushing.
                map.remove(&ino);
            }
        }
        Ok(last)
    }

    /// Inodes with buffered writes (for a flush at unmount).
    pub fn dirty_inodes(&self) -> Vec<u64> {
        lock(&self.inodes).keys().copied().collect()
    }
}

/// What a flush left: the attributes after its last range, and whether every
/// range won its compare-and-set (then the new content is the old one plus this
/// mount's writes, and caches of the old one can be patched rather than dropped).
pub struct Flushed {
    pub attr: Attr,
    pub compare_and_set: bool,
}

/// Writes one range; `true` if it won its compare-and-set.
async fn write_range(
    fs: &FsClient,
    reads: &Reads,
    ino: u64,
    offset: u64,
    data: &Bytes,
) -> Result<(Attr, bool), Error> {
    if let Some(base) = reads.version(ino) {
        match fs.write_ino_if(ino, offset, data.clone(), base).await {
            Ok(attr) => {
                reads.patch(ino, base, &attr, offset, data);
                return Ok((attr, true));
            }
            Err(Error::VersionMismatch(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let attr = fs.write_ino(ino, offset, data).await?;
    reads.saw(ino, attr.version, attr.size);
    Ok((attr, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_writes_coalesce_and_the_end_is_the_furthest_byte() {
        let mut d = Dirty::default();
        d.push(0, b"abc");
        d.push(3, b"def");
        d.push(100, b"x");
        d.push(1, b"Z");
        assert_eq!(d.ranges.len(), 3);
        assert_eq!(d.ranges[0], (0, Bytes::from_static(b"abcdef")));
        assert_eq!(d.bytes, 8);
        assert_eq!(d.end(), 101);
    }

    #[test]
    fn a_range_being_sent_is_never_extended() {
        let mut d = Dirty::default();
        d.push(0, b"abc");
        d.sending_front = true;
        d.push(3, b"def");
        assert_eq!(
            d.ranges.len(),
            2,
            "the write after it got a range of its own"
        );
        d.push(6, b"g");
        assert_eq!(d.ranges[1], (3, Bytes::from_static(b"defg")));
    }
}
