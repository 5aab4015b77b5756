//! The power cut: every inode back to its durable state (or a torn mix), then a walk
//! from the root that recomputes names, link counts and parents, and frees the rest.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Body, CutMode, CutReport, Dir, Kind, Model, ROOT};

/// Puts back the durable value of each changed name (torn: each with probability 1/2).
fn revert_dir(dir: &mut Dir, mut torn: Option<&mut StdRng>, report: &mut CutReport) {
    for (name, durable) in std::mem::take(&mut dir.undo) {
        if torn.as_deref_mut().is_some_and(|rng| rng.gen_bool(0.5)) {
            report.dir_entries_kept += 1;
            continue;
        }
        report.dir_entries_reverted += 1;
        match durable {
            Some(ino) => dir.entries.insert(name, ino),
            None => dir.entries.remove(&name),
        };
    }
}

/// What the walk found about one inode.
#[derive(Default)]
struct Found {
    links: u32,
    parent: u64,
    subdirs: u32,
}

impl Model {
    /// Simulates a power cut (see [`CutMode`]): the state after it is what a disk that
    /// kept only the durable writes (or, torn, part of the others) would show on the
    /// next mount. Open handles are invalidated; attributes other than size are kept.
    pub fn cut(&mut self, mode: CutMode) -> CutReport {
        let mut report = CutReport::default();
        let mut rng = match mode {
            CutMode::DropAll => None,
            CutMode::Torn { seed } => Some(StdRng::seed_from_u64(seed)),
        };
        for inode in self.inodes.values_mut() {
            match &mut inode.body {
                Body::File(file) => file.revert(rng.as_mut(), &mut report),
                Body::Dir(dir) => revert_dir(dir, rng.as_mut(), &mut report),
                Body::Symlink(_) => {}
            }
        }
        report.handles_closed = self.handles.len() as u64;
        self.handles.clear();
        self.garbage.clear();

        // Breadth-first from the root, names in order. A directory keeps only the first
        // name found (a composition of per-directory durable states can name one
        // directory twice, or in a loop); names of missing inodes are dropped.
        let mut found: BTreeMap<u64, Found> = BTreeMap::from([(
            ROOT,
            Found {
                links: 1,
                parent: ROOT,
                subdirs: 0,
            },
        )]);
        let mut queue = VecDeque::from([ROOT]);
        while let Some(dir_ino) = queue.pop_front() {
            let Some(Body::Dir(dir)) = self.inodes.get(&dir_ino).map(|inode| &inode.body) else {
                continue;
            };
            let mut bad: Vec<OsString> = Vec::new();
            let mut subdirs = 0;
            for (name, &child) in &dir.entries {
                match self.inodes.get(&child).map(|inode| inode.kind()) {
                    None => bad.push(name.clone()),
                    Some(Kind::Dir) if found.contains_key(&child) => bad.push(name.clone()),
                    Some(Kind::Dir) => {
                        subdirs += 1;
                        let parent = dir_ino;
                        found.insert(
                            child,
                            Found {
                                links: 1,
                                parent,
                                subdirs: 0,
                            },
                        );
                        queue.push_back(child);
                    }
                    Some(_) => found.entry(child).or_default().links += 1,
                }
            }
            if let Some(entry) = found.get_mut(&dir_ino) {
                entry.subdirs = subdirs;
            }
            if let Some(Body::Dir(dir)) = self.inodes.get_mut(&dir_ino).map(|i| &mut i.body) {
                for name in bad {
                    dir.entries.remove(&name);
                    report.dir_entries_reverted += 1;
                }
            }
        }

        let before = self.inodes.len();
        self.inodes.retain(|ino, _| found.contains_key(ino));
        report.inodes_dropped = (before - self.inodes.len()) as u64;
        for (ino, inode) in &mut self.inodes {
            let Some(seen) = found.get(ino) else {
                continue;
            };
            inode.links = seen.links;
            inode.undo_refs = 0;
            inode.open = 0;
            if let Body::Dir(dir) = &mut inode.body {
                dir.parent = seen.parent;
                dir.subdirs = seen.subdirs;
            }
        }
        self.budget.held = self.recount_held();
        report
    }
}
