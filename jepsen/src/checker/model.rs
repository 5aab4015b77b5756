//! Sequential specifications for the linearizability check.
//!
//! A [`Model`] says which outputs an operation may return from a state and what state it
//! leaves; `None` from [`Model::step`] means "not allowed". An unknown output (`None`)
//! must be accepted whenever the operation could have run, because linearizing it last
//! is the same as it never having happened. [`Model::partition`] splits a history into
//! independent sub-histories (P-compositionality: a history is linearizable iff every
//! partition is), usually one per key.
//!
//! Models whose step can lead to several states implement [`NondeterministicModel`]
//! and are checked through [`Powerset`], whose state is the set of possible states.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use crate::history::Operation;

/// A sequential specification of one object (or of independent objects, partitioned).
pub trait Model: Sync {
    type Input: Debug + Sync;
    type Output: Debug + Sync;
    /// Memoised with the set of linearized operations, hence `Hash + Eq`; a paused
    /// search may resume on another thread, hence `Send`.
    type State: Clone + Eq + Hash + Debug + Send;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` returned `output` from `state`, or `None` if that is
    /// impossible. `output` is `None` when the outcome is unknown.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// True for operations that never change the state (reads). Those with an unknown
    /// outcome carry no information and are dropped before the search.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// Splits a history into independently checkable partitions. The default keeps one.
    fn partition(
        &self,
        operations: Vec<Operation<Self::Input, Self::Output>>,
    ) -> Vec<Partition<Self::Input, Self::Output>> {
        vec![Partition {
            key: String::new(),
            operations,
        }]
    }
}

/// An operation typed for model `M`.
pub type ModelOperation<M> = Operation<<M as Model>::Input, <M as Model>::Output>;

/// One independently checkable sub-history.
#[derive(Clone, Debug, PartialEq)]
pub struct Partition<I, O> {
    /// What the partition covers, e.g. the key; empty for a whole history.
    pub key: String,
    pub operations: Vec<Operation<I, O>>,
}

/// Groups operations by key, in key order, keeping their order within a key.
pub fn partition_by_key<I, O>(
    operations: Vec<Operation<I, O>>,
    key_of: impl Fn(&I) -> &str,
) -> Vec<Partition<I, O>> {
    let mut by_key: BTreeMap<String, Vec<Operation<I, O>>> = BTreeMap::new();
    for operation in operations {
        let key = key_of(&operation.input);
        match by_key.get_mut(key) {
            Some(list) => list.push(operation),
            None => {
                by_key.insert(key.to_string(), vec![operation]);
            }
        }
    }
    by_key
        .into_iter()
        .map(|(key, operations)| Partition { key, operations })
        .collect()
}

/// A specification whose step may lead to several states (or none).
pub trait NondeterministicModel: Sync {
    type Input: Debug + Sync;
    type Output: Debug + Sync;
    /// `Ord` so that a set of states has one canonical order.
    type State: Clone + Ord + Hash + Debug + Send;

    fn init(&self) -> Self::State;

    /// Every state the operation may leave; empty if it is impossible.
    fn step_all(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Vec<Self::State>;

    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    fn partition(
        &self,
        operations: Vec<Operation<Self::Input, Self::Output>>,
    ) -> Vec<Partition<Self::Input, Self::Output>> {
        vec![Partition {
            key: String::new(),
            operations,
        }]
    }
}

/// Turns a [`NondeterministicModel`] into a [`Model`] whose state is the sorted,
/// duplicate-free set of states the wrapped model could be in.
#[derive(Clone, Debug, Default)]
pub struct Powerset<M>(pub M);

impl<M: NondeterministicModel> Model for Powerset<M> {
    type Input = M::Input;
    type Output = M::Output;
    type State = Vec<M::State>;

    fn init(&self) -> Self::State {
        vec![self.0.init()]
    }

    fn step(
        &self,
        states: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        let mut next: Vec<M::State> = states
            .iter()
            .flat_map(|state| self.0.step_all(state, input, output))
            .collect();
        next.sort_unstable();
        next.dedup();
        (!next.is_empty()).then_some(next)
    }

    fn is_read_only(&self, input: &Self::Input) -> bool {
        self.0.is_read_only(input)
    }

    fn partition(
        &self,
        operations: Vec<Operation<Self::Input, Self::Output>>,
    ) -> Vec<Partition<Self::Input, Self::Output>> {
        self.0.partition(operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that an increment may or may not have advanced (a lossy counter).
    struct LossyCounter;

    impl NondeterministicModel for LossyCounter {
        type Input = ();
        type Output = u32;
        type State = u32;

        fn init(&self) -> u32 {
            0
        }

        fn step_all(&self, state: &u32, _input: &(), output: Option<&u32>) -> Vec<u32> {
            [*state, state + 1]
                .into_iter()
                .filter(|next| output.is_none_or(|seen| seen == next))
                .collect()
        }
    }

    #[test]
    fn powerset_tracks_every_possible_state() {
        let model = Powerset(LossyCounter);
        let after_unknown = model.step(&model.init(), &(), None).expect("possible");
        assert_eq!(after_unknown, vec![0, 1]);
        let after_two = model.step(&after_unknown, &(), Some(&2)).expect("possible");
        assert_eq!(after_two, vec![2]);
        assert_eq!(model.step(&after_two, &(), Some(&5)), None);
    }

    #[test]
    fn partition_by_key_keeps_order_within_a_key() {
        let operation = |key: &str, line_number: u64| Operation {
            process: 0,
            call_time: line_number,
            return_time: Some(line_number),
            input: key.to_string(),
            output: None::<()>,
            line_number,
        };
        let operations = vec![operation("b", 1), operation("a", 2), operation("b", 3)];
        let partitions = partition_by_key(operations, |key: &String| key.as_str());
        assert_eq!(partitions.len(), 2);
        assert_eq!(partitions[0].key, "a");
        let lines: Vec<u64> = partitions[1]
            .operations
            .iter()
            .map(|o| o.line_number)
            .collect();
        assert_eq!(lines, vec![1, 3]);
    }
}
