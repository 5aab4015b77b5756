//! Partition shapes as *grudges* (Jepsen's term): for each node, the nodes whose packets
//! it drops. Pure functions, so the shapes are tested without a network.

use std::collections::{BTreeMap, BTreeSet};

/// A node id, 1-based, as cairn numbers its members.
pub type NodeId = u8;

/// node → the nodes it drops packets from. Always symmetric here.
pub type Grudge = BTreeMap<NodeId, BTreeSet<NodeId>>;

/// Every node drops packets from every node outside its own component.
pub fn complete_grudge(components: &[Vec<NodeId>]) -> Grudge {
    let mut grudge = Grudge::new();
    for (index, component) in components.iter().enumerate() {
        let others: BTreeSet<NodeId> = components
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != index)
            .flat_map(|(_, nodes)| nodes.iter().copied())
            .collect();
        for &node in component {
            if !others.is_empty() {
                grudge.insert(node, others.clone());
            }
        }
    }
    grudge
}

/// `node` alone on one side, everyone else on the other.
pub fn isolate(node: NodeId, all: &[NodeId]) -> Grudge {
    let rest: Vec<NodeId> = all.iter().copied().filter(|&n| n != node).collect();
    complete_grudge(&[vec![node], rest])
}

/// A minority (the first ⌊n/2⌋ of `shuffled`) cut from the majority (the rest).
pub fn halves(shuffled: &[NodeId]) -> Grudge {
    let (minority, majority) = shuffled.split_at(shuffled.len() / 2);
    complete_grudge(&[minority.to_vec(), majority.to_vec()])
}

/// Jepsen's `majorities-ring`: nodes in a ring (the order of `shuffled`) each hear
/// only themselves and their ⌊n/2⌋ nearest neighbours, so every node sees a majority
/// but no two see the same one. For 3 nodes nothing is cut.
pub fn majorities_ring(shuffled: &[NodeId]) -> Grudge {
    let count = shuffled.len();
    let reach = count / 2 / 2 + count / 2 % 2; // neighbours on each side, ceil(n/2/2)
    let mut grudge = Grudge::new();
    for (position, &node) in shuffled.iter().enumerate() {
        let heard: BTreeSet<NodeId> = (0..count)
            .filter(|&other| {
                let distance = position.abs_diff(other);
                distance.min(count - distance) <= reach
            })
            .map(|other| shuffled[other])
            .collect();
        let dropped: BTreeSet<NodeId> = shuffled
            .iter()
            .copied()
            .filter(|n| !heard.contains(n))
            .collect();
        if !dropped.is_empty() {
            grudge.insert(node, dropped);
        }
    }
    grudge
}

/// A short description for logs: `1 | 2,3` style components, or the grudge itself.
pub fn describe(grudge: &Grudge) -> String {
    let parts: Vec<String> = grudge
        .iter()
        .map(|(node, dropped)| {
            let dropped: Vec<String> = dropped.iter().map(u8::to_string).collect();
            format!("{node}x{{{}}}", dropped.join(","))
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().copied().collect()
    }

    #[test]
    fn isolating_a_node_cuts_it_from_all_others_both_ways() {
        let grudge = isolate(2, &[1, 2, 3]);
        assert_eq!(grudge[&2], set(&[1, 3]));
        assert_eq!(grudge[&1], set(&[2]));
        assert_eq!(grudge[&3], set(&[2]));
    }

    #[test]
    fn halves_put_the_minority_first() {
        let grudge = halves(&[4, 1, 5, 2, 3]);
        assert_eq!(grudge[&4], set(&[5, 2, 3]));
        assert_eq!(grudge[&1], set(&[5, 2, 3]));
        assert_eq!(grudge[&3], set(&[4, 1]));
    }

    #[test]
    fn a_five_node_ring_gives_each_node_a_distinct_majority() {
        let grudge = majorities_ring(&[1, 2, 3, 4, 5]);
        // Node 1 hears 5, 1, 2 and drops 3, 4.
        assert_eq!(grudge[&1], set(&[3, 4]));
        assert_eq!(grudge[&3], set(&[1, 5]));
        for dropped in grudge.values() {
            assert_eq!(dropped.len(), 2, "each node hears 3 of 5");
        }
    }

    #[test]
    fn a_three_node_ring_cuts_nothing() {
        assert!(majorities_ring(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn a_single_component_is_no_partition() {
        assert!(complete_grudge(&[vec![1, 2, 3]]).is_empty());
    }
}
