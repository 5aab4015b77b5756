//! The linearizability search over one partition: Wing & Gong's backtracking with Lowe's
//! memoisation, the algorithm Porcupine implements.
//!
//! Walking the event list (`event_list`) from the front, a call whose operation the
//! model accepts from the current state is *lifted* (its call and return leave the list)
//! and pushed on a stack; reaching a return means some operation that had to take effect by then
//! did not, so the last lift is undone (*unlifted*) and the walk resumes after it. A
//! cache of (set of linearized operations, state) pairs skips configurations already
//! explored. An empty list means every operation was linearized: the stack is a
//! witness order. Backtracking from an empty stack means no order exists.
//!
//! A [`PartitionSearch`] is resumable: [`PartitionSearch::resume`] runs until a verdict
//! or until its [`Budget`] (deadline, cancellation, shared cache size) runs out, checked
//! every [`BUDGET_CHECK_STEPS`] steps, and can be called again later to continue. The
//! caller (`checker::linear`) uses this to give partitions time slices in turn.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::checker::event_list::{Bitset, EventList, NIL};
use crate::checker::model::Model;
use crate::history::Operation;

/// Steps between two looks at the budget: often enough to stop within milliseconds,
/// rarely enough that reading the clock costs nothing measurable.
pub const BUDGET_CHECK_STEPS: u64 = 1 << 10;

/// Memoised configurations held by all live searches together, against a maximum, so
/// an exploding partition ends as unknown instead of exhausting memory.
#[derive(Debug)]
pub struct CachePool {
    held: AtomicU64,
    entries_max: u64,
}

impl CachePool {
    pub fn new(entries_max: u64) -> CachePool {
        CachePool {
            held: AtomicU64::new(0),
            entries_max,
        }
    }

    /// Entries currently accounted to live searches.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    fn try_grow(&self, entries: u64) -> bool {
        let before = self.held.fetch_add(entries, Ordering::Relaxed);
        if before.saturating_add(entries) > self.entries_max {
            self.held.fetch_sub(entries, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, entries: u64) {
        self.held.fetch_sub(entries, Ordering::Relaxed);
    }
}

/// When a search must pause or give up.
pub struct Budget<'a> {
    pub deadline: Instant,
    /// Set by another partition's search that found an anomaly.
    pub cancel: &'a AtomicBool,
}

/// Why a search stopped without a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandoned {
    /// The deadline passed; the search can be resumed with a later one.
    TimedOut,
    Cancelled,
    /// The shared [`CachePool`] is full; resuming would stop again at once.
    CacheFull,
}

/// The end of a search, or of one of its slices.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchOutcome<S> {
    /// Indices of the operations in a valid linearization order.
    Linearizable {
        order: Vec<usize>,
    },
    /// No order exists. Describes the deepest point reached: the operations linearized
    /// by then, in order, the operation whose return could not be passed, and the state.
    NotLinearizable {
        longest_prefix: Vec<usize>,
        blocked_operation: usize,
        state: S,
    },
    Abandoned(Abandoned),
}

/// Counters for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    pub steps: u64,
    pub cache_entries: u64,
}

/// Searches `operations` to the end in one go (tests, small histories).
pub fn search<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    budget: &Budget<'_>,
) -> (SearchOutcome<M::State>, SearchStats) {
    let pool = CachePool::new(u64::MAX);
    let mut search = PartitionSearch::new(model, operations, &pool);
    let outcome = search.resume(budget);
    (outcome, search.stats())
}

/// The resumable search state of one partition.
pub struct PartitionSearch<'a, M: Model> {
    model: &'a M,
    operations: &'a [Operation<M::Input, M::Output>],
    pool: &'a CachePool,
    /// Cache entries accounted in `pool`, released on drop.
    pooled_entries: u64,
    list: EventList,
    cursor: usize,
    linearized: Bitset,
    /// Keyed by the linearized set first: histories have few distinct sets but, with
    /// concurrent appends, very many states per set, so both levels are hashed.
    cache: HashMap<Box<[u64]>, HashSet<M::State>>,
    /// (lifted call node, state before it), innermost last.
    stack: Vec<(usize, M::State)>,
    state: M::State,
    deepest: Option<Deepest<M::State>>,
    stats: SearchStats,
}

struct Deepest<S> {
    prefix: Vec<usize>,
    blocked_operation: usize,
    state: S,
}

impl<'a, M: Model> PartitionSearch<'a, M> {
    pub fn new(
        model: &'a M,
        operations: &'a [Operation<M::Input, M::Output>],
        pool: &'a CachePool,
    ) -> Self {
        let list = EventList::new(operations);
        let cursor = list.first();
        PartitionSearch {
            model,
            operations,
            pool,
            pooled_entries: 0,
            list,
            cursor,
            linearized: Bitset::new(operations.len()),
            cache: HashMap::new(),
            stack: Vec::with_capacity(operations.len()),
            state: model.init(),
            deepest: None,
            stats: SearchStats::default(),
        }
    }

    pub fn stats(&self) -> SearchStats {
        self.stats
    }

    /// Runs until a verdict or until the budget runs out; after `Abandoned(TimedOut)`
    /// it can be called again to continue. After a verdict the caller drops the search.
    pub fn resume(&mut self, budget: &Budget<'_>) -> SearchOutcome<M::State> {
        // Ends when the list is empty (cursor NIL), the stack is exhausted, or the
        // budget runs out; the cache makes the explored space finite.
        while self.cursor != NIL {
            if self.stats.steps.is_multiple_of(BUDGET_CHECK_STEPS) {
                if let Some(reason) = self.budget_exhausted(budget) {
                    self.stats.steps += 1; // Resuming must not stop here again at once.
                    return SearchOutcome::Abandoned(reason);
                }
            }
            self.stats.steps += 1;
            let node = self.list.nodes[self.cursor];
            if node.is_call {
                self.cursor = if self.try_lift(self.cursor) {
                    self.list.first()
                } else {
                    node.next
                };
                continue;
            }
            self.note_blocked(node.operation);
            let Some((call, previous_state)) = self.stack.pop() else {
                return self.not_linearizable();
            };
            let operation = self.list.nodes[call].operation;
            self.state = previous_state;
            self.linearized.clear(operation);
            self.list.unlift(call);
            self.cursor = self.list.nodes[call].next;
        }
        debug_assert!(self.list.first() == NIL);
        let order = self
            .stack
            .iter()
            .map(|&(call, _)| self.list.nodes[call].operation)
            .collect();
        SearchOutcome::Linearizable { order }
    }

    fn budget_exhausted(&mut self, budget: &Budget<'_>) -> Option<Abandoned> {
        let unpooled = self.stats.cache_entries - self.pooled_entries;
        if !self.pool.try_grow(unpooled) {
            return Some(Abandoned::CacheFull);
        }
        self.pooled_entries += unpooled;
        if budget.cancel.load(Ordering::Relaxed) {
            Some(Abandoned::Cancelled)
        } else if Instant::now() >= budget.deadline {
            Some(Abandoned::TimedOut)
        } else {
            None
        }
    }

    /// Linearizes the operation of `call` next if the model allows it and the resulting
    /// configuration is new.
    fn try_lift(&mut self, call: usize) -> bool {
        let operation_index = self.list.nodes[call].operation;
        let operation = &self.operations[operation_index];
        let input = &operation.input;
        let Some(next_state) = self
            .model
            .step(&self.state, input, operation.output.as_ref())
        else {
            return false;
        };
        self.linearized.set(operation_index);
        if !self.remember(&next_state) {
            self.linearized.clear(operation_index);
            return false;
        }
        let previous_state = std::mem::replace(&mut self.state, next_state);
        self.stack.push((call, previous_state));
        self.list.lift(call);
        true
    }

    /// Adds (linearized, state) to the cache; false if it was already there.
    fn remember(&mut self, state: &M::State) -> bool {
        if let Some(states) = self.cache.get_mut(self.linearized.words()) {
            if !states.insert(state.clone()) {
                return false;
            }
        } else {
            let states = HashSet::from([state.clone()]);
            self.cache.insert(self.linearized.words().into(), states);
        }
        self.stats.cache_entries += 1;
        true
    }

    fn note_blocked(&mut self, operation: usize) {
        let depth = self.stack.len();
        if self
            .deepest
            .as_ref()
            .is_some_and(|deepest| deepest.prefix.len() >= depth)
        {
            return;
        }
        let nodes = &self.list.nodes;
        let prefix = self
            .stack
            .iter()
            .map(|&(call, _)| nodes[call].operation)
            .collect();
        let state = self.state.clone();
        self.deepest = Some(Deepest {
            prefix,
            blocked_operation: operation,
            state,
        });
    }

    fn not_linearizable(&mut self) -> SearchOutcome<M::State> {
        let deepest = self.deepest.take().unwrap_or_else(|| Deepest {
            prefix: Vec::new(),
            blocked_operation: 0,
            state: self.model.init(),
        });
        SearchOutcome::NotLinearizable {
            longest_prefix: deepest.prefix,
            blocked_operation: deepest.blocked_operation,
            state: deepest.state,
        }
    }
}

impl<M: Model> Drop for PartitionSearch<'_, M> {
    fn drop(&mut self) {
        self.pool.release(self.pooled_entries);
    }
}
