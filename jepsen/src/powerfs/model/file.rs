//! A regular file's data: fixed 4 KiB pages with an undo log of their durable versions.
//!
//! Invariant: a page that differs from its durable version (the one at the last fsync)
//! has an entry in `undo` holding that durable version (`None`: it was a hole or past
//! the end), captured on its first modification after the fsync. So an fsync costs
//! O(dirty pages), and a cut restores the durable state by putting the undo entries
//! back. Each entry also remembers which bytes of the page were changed since (for the
//! reports). Bytes past `size` inside the last page are always zeros.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;

use super::{CutReport, Res, MAX_FILE_SIZE};

/// Bytes in one page.
pub(crate) const PAGE_SIZE: usize = 4096;
const PAGE: u64 = PAGE_SIZE as u64;
const MAX_READ: u64 = 16 << 20;

type Page = Arc<[u8; PAGE_SIZE]>;

fn zero_page() -> Page {
    Arc::new([0; PAGE_SIZE])
}

/// The byte cap: `held` counts every page held (current and undo), `max` is the cap.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) held: u64,
    pub(super) max: u64,
}

impl Budget {
    /// ENOSPC unless `pages` more pages fit under the cap.
    fn reserve(&self, pages: u64) -> Res<()> {
        let wanted = pages.saturating_mul(PAGE);
        if self.held.saturating_add(wanted) > self.max {
            return Err(libc::ENOSPC);
        }
        Ok(())
    }

    fn add(&mut self, pages: u64) {
        self.held = self.held.saturating_add(pages.saturating_mul(PAGE));
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.held = self.held.saturating_sub(bytes);
    }
}

/// One undo entry: a page's durable version and the bytes changed since.
#[derive(Debug)]
struct Undo {
    durable: Option<Page>,
    /// The changed bytes of the page: `from..to` (offsets in the page).
    from: u16,
    to: u16,
}

impl Undo {
    /// The changed bytes that lie inside a file of `size` bytes.
    fn changed_bytes(&self, idx: u64, size: u64) -> u64 {
        let inside = bytes_in_page(idx, size);
        inside
            .min(u64::from(self.to))
            .saturating_sub(u64::from(self.from))
    }
}

/// The bytes of page `idx` that lie inside a file of `size` bytes.
fn bytes_in_page(idx: u64, size: u64) -> u64 {
    size.saturating_sub(idx.saturating_mul(PAGE)).min(PAGE)
}

#[derive(Debug, Default)]
pub(super) struct FileData {
    /// Current pages; an absent page is a hole (zeros).
    pages: BTreeMap<u64, Page>,
    size: u64,
    /// The durable version of each page modified since the last fsync.
    undo: BTreeMap<u64, Undo>,
    durable_size: u64,
}

impl FileData {
    pub(super) fn size(&self) -> u64 {
        self.size
    }

    pub(super) fn allocated_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Bytes of memory this file holds: current pages plus durable versions in the undo.
    pub(super) fn held_bytes(&self) -> u64 {
        let undo = self.undo.values().filter(|u| u.durable.is_some()).count() as u64;
        (self.pages.len() as u64 + undo) * PAGE
    }

    pub(super) fn dirty_pages(&self) -> u64 {
        self.undo.len() as u64
    }

    /// Bytes of the current file changed since the last fsync.
    pub(super) fn unsynced_bytes(&self) -> u64 {
        self.undo
            .iter()
            .map(|(&idx, undo)| undo.changed_bytes(idx, self.size))
            .sum()
    }

    pub(super) fn is_dirty(&self) -> bool {
        !self.undo.is_empty() || self.size != self.durable_size
    }

    /// Up to `len` bytes from `offset` (at most 16 MiB, more than the kernel ever asks
    /// for), short at the end of the file.
    pub(super) fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        if offset >= self.size || len == 0 {
            return Vec::new();
        }
        let len = u64::from(len).min(MAX_READ);
        let end = self.size.min(offset.saturating_add(len));
        let mut out = vec![0; (end - offset) as usize];
        for (&idx, page) in self.pages.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = idx * PAGE;
            let (from, to) = (start.max(offset), (start + PAGE).min(end));
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&page[(from - start) as usize..(to - start) as usize]);
        }
        out
    }

    /// Captures the durable version of page `idx` unless already captured, and marks
    /// bytes `from..to` of it changed.
    fn capture(&mut self, idx: u64, from: usize, to: usize) {
        let (from, to) = (from.min(PAGE_SIZE) as u16, to.min(PAGE_SIZE) as u16);
        match self.undo.get_mut(&idx) {
            Some(undo) => {
                undo.from = undo.from.min(from);
                undo.to = undo.to.max(to);
            }
            None => {
                let durable = self.pages.get(&idx).cloned();
                self.undo.insert(idx, Undo { durable, from, to });
            }
        }
    }

    pub(super) fn write(&mut self, offset: u64, data: &[u8], budget: &mut Budget) -> Res<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= MAX_FILE_SIZE)
            .ok_or(libc::EFBIG)?;
        let (first, last) = (offset / PAGE, (end - 1) / PAGE);
        // A new page, or a copy of a page whose durable version the undo keeps.
        let need = (first..=last)
            .filter(|idx| !self.pages.contains_key(idx) || !self.undo.contains_key(idx))
            .count() as u64;
        budget.reserve(need)?;
        for idx in first..=last {
            let start = idx * PAGE;
            let (from, to) = (start.max(offset), (start + PAGE).min(end));
            self.capture(idx, (from - start) as usize, (to - start) as usize);
            let page = self.pages.entry(idx).or_insert_with(zero_page);
            Arc::make_mut(page)[(from - start) as usize..(to - start) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
        }
        budget.add(need);
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the size (truncate or extend with zeros), through the undo log.
    pub(super) fn set_size(&mut self, size: u64, budget: &mut Budget) -> Res<()> {
        if size > MAX_FILE_SIZE {
            return Err(libc::EFBIG);
        }
        if size >= self.size {
            // The tail of the last page is already zeros.
            self.size = size;
            return Ok(());
        }
        let tail = (size % PAGE) as usize;
        let partial = (tail != 0).then_some(size / PAGE);
        let copy = partial.is_some_and(|idx| {
            self.pages
                .get(&idx)
                .is_some_and(|page| page[tail..].iter().any(|&b| b != 0))
        });
        let need = u64::from(copy && partial.is_some_and(|idx| !self.undo.contains_key(&idx)));
        budget.reserve(need)?;
        for (idx, page) in self.pages.split_off(&size.div_ceil(PAGE)) {
            match self.undo.entry(idx) {
                Entry::Occupied(_) => budget.release(PAGE),
                Entry::Vacant(slot) => {
                    slot.insert(Undo {
                        durable: Some(page),
                        from: 0,
                        to: PAGE_SIZE as u16,
                    });
                }
            }
        }
        if let (true, Some(idx)) = (copy, partial) {
            self.capture(idx, tail, PAGE_SIZE);
            if let Some(page) = self.pages.get_mut(&idx) {
                Arc::make_mut(page)[tail..].fill(0);
            }
            budget.add(need);
        }
        self.size = size;
        Ok(())
    }

    /// fsync: the current state becomes the durable one.
    pub(super) fn sync(&mut self, budget: &mut Budget) {
        let undo = std::mem::take(&mut self.undo);
        let freed = undo.values().filter(|u| u.durable.is_some()).count() as u64;
        budget.release(freed * PAGE);
        self.durable_size = self.size;
    }

    /// The cut: back to the durable state (`torn` is None), or, torn, each dirty page
    /// keeps its new version with probability 1/2 and the size is the durable or the
    /// current one. Leaves the file clean. The caller recounts the memory held.
    pub(super) fn revert(&mut self, mut torn: Option<&mut StdRng>, report: &mut CutReport) {
        if !self.is_dirty() {
            return;
        }
        let old_size = self.size;
        let keep_size = torn.as_deref_mut().is_some_and(|rng| rng.gen_bool(0.5));
        let size = if keep_size {
            self.size
        } else {
            self.durable_size
        };
        let limit = size.div_ceil(PAGE);
        let mut lost = size != old_size;
        for (idx, undo) in std::mem::take(&mut self.undo) {
            let survives = torn.as_deref_mut().is_some_and(|rng| rng.gen_bool(0.5));
            if survives && idx < limit {
                report.pages_kept += 1;
                continue;
            }
            lost = true;
            report.pages_dropped += 1;
            report.bytes_dropped += undo.changed_bytes(idx, old_size);
            match undo.durable {
                Some(page) => self.pages.insert(idx, page),
                None => self.pages.remove(&idx),
            };
        }
        drop(self.pages.split_off(&limit));
        let tail = (size % PAGE) as usize;
        if let Some(page) = self.pages.get_mut(&(size / PAGE)) {
            if tail != 0 && page[tail..].iter().any(|&b| b != 0) {
                Arc::make_mut(page)[tail..].fill(0);
            }
        }
        self.size = size;
        self.durable_size = size;
        if lost {
            report.files_reverted += 1;
        }
    }
}
