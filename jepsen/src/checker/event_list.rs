//! The event list and operation set the linearizability search works on.
//!
//! [`EventList`]: every operation's call and return event (+∞ if it never returned),
//! sorted by time with calls before returns on ties (touching operations count as
//! concurrent), as a doubly linked list stored in a vector (node 0 is the head
//! sentinel). [`EventList::lift`] takes an operation's two events out in O(1) and
//! [`EventList::unlift`] puts them back; lifts are undone in reverse order.
//! [`Bitset`]: the set of linearized operations, hashed as the memoisation key.

use crate::history::Operation;

/// "No node": the end of the list.
pub(crate) const NIL: usize = usize::MAX;
/// Index of the sentinel that precedes the first event.
const HEAD: usize = 0;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Node {
    previous: usize,
    pub(crate) next: usize,
    pub(crate) operation: usize,
    pub(crate) is_call: bool,
    /// For a call node, its return node.
    partner: usize,
}

/// The events of one partition as a doubly linked list in a vector (node 0 = head).
pub(crate) struct EventList {
    pub(crate) nodes: Vec<Node>,
}

impl EventList {
    pub(crate) fn new<I, O>(operations: &[Operation<I, O>]) -> EventList {
        // Sort key: (returns at +∞ last, time, calls before returns, operation index).
        let mut events: Vec<(bool, u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
        for (index, operation) in operations.iter().enumerate() {
            events.push((false, operation.call_time, false, index));
            let return_time = operation.return_time.unwrap_or(u64::MAX);
            events.push((operation.return_time.is_none(), return_time, true, index));
        }
        events.sort_unstable();
        let head = Node {
            previous: NIL,
            next: NIL,
            operation: 0,
            is_call: false,
            partner: NIL,
        };
        let mut nodes = vec![head; events.len() + 1];
        let mut return_node_of = vec![NIL; operations.len()];
        for (position, &(_, _, is_return, operation)) in events.iter().enumerate() {
            let index = position + 1;
            let next = if index == events.len() {
                NIL
            } else {
                index + 1
            };
            nodes[index] = Node {
                previous: index - 1,
                next,
                operation,
                is_call: !is_return,
                partner: NIL,
            };
            if is_return {
                return_node_of[operation] = index;
            }
        }
        nodes[HEAD].next = if events.is_empty() { NIL } else { 1 };
        for node in nodes.iter_mut().skip(1).filter(|node| node.is_call) {
            node.partner = return_node_of[node.operation];
        }
        EventList { nodes }
    }

    pub(crate) fn first(&self) -> usize {
        self.nodes[HEAD].next
    }

    /// Takes a call node and its return node out of the list.
    pub(crate) fn lift(&mut self, call: usize) {
        let partner = self.nodes[call].partner;
        self.unlink(call);
        self.unlink(partner);
    }

    /// Undoes the matching [`EventList::lift`]; lifts are undone in reverse order.
    pub(crate) fn unlift(&mut self, call: usize) {
        let partner = self.nodes[call].partner;
        self.relink(partner);
        self.relink(call);
    }

    fn unlink(&mut self, index: usize) {
        let Node { previous, next, .. } = self.nodes[index];
        self.nodes[previous].next = next;
        if next != NIL {
            self.nodes[next].previous = previous;
        }
    }

    fn relink(&mut self, index: usize) {
        let Node { previous, next, .. } = self.nodes[index];
        self.nodes[previous].next = index;
        if next != NIL {
            self.nodes[next].previous = index;
        }
    }
}

/// A fixed-size set of operation indices.
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub(crate) fn new(bit_count: usize) -> Bitset {
        Bitset {
            words: vec![0; bit_count.div_ceil(64)],
        }
    }

    pub(crate) fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1 << (bit % 64);
    }

    pub(crate) fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
    }

    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(call_time: u64, return_time: Option<u64>) -> Operation<(), ()> {
        Operation {
            process: 0,
            call_time,
            return_time,
            input: (),
            output: None,
            line_number: 0,
        }
    }

    /// (operation, is_call) of the nodes in list order.
    fn walk(list: &EventList) -> Vec<(usize, bool)> {
        let mut order = Vec::new();
        let mut cursor = list.first();
        while cursor != NIL {
            let node = list.nodes[cursor];
            order.push((node.operation, node.is_call));
            cursor = node.next;
        }
        order
    }

    #[test]
    fn events_sort_by_time_with_calls_first_and_crashes_last() {
        let list = EventList::new(&[
            operation(5, None),
            operation(0, Some(5)),
            operation(1, Some(2)),
        ]);
        let expected = [
            (1, true),
            (2, true),
            (2, false),
            (0, true),
            (1, false),
            (0, false),
        ];
        assert_eq!(walk(&list), expected);
    }

    #[test]
    fn unlift_restores_what_lift_removed() {
        let mut list = EventList::new(&[
            operation(0, Some(3)),
            operation(1, Some(2)),
            operation(4, Some(5)),
        ]);
        let before = walk(&list);
        let second_call = list
            .nodes
            .iter()
            .position(|node| node.is_call && node.operation == 1)
            .expect("call");
        let first_call = list.first();
        list.lift(second_call);
        list.lift(first_call);
        assert_eq!(walk(&list), vec![(2, true), (2, false)]);
        list.unlift(first_call);
        list.unlift(second_call);
        assert_eq!(walk(&list), before);
    }

    #[test]
    fn bitset_sets_and_clears_across_words() {
        let mut bits = Bitset::new(130);
        bits.set(0);
        bits.set(129);
        assert_eq!(bits.words(), &[1, 0, 2]);
        bits.clear(129);
        assert_eq!(bits.words(), &[1, 0, 0]);
    }
}
