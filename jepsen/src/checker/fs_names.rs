//! The names checker of the `fs` workload: clients create, rename and unlink unique
//! names inside one directory, then one final listing (after the faults have healed,
//! linearizable) returns the directory's names.
//!
//! Every name is created at most once (by a `create`, or as a rename's target) and
//! removed at most once (by an `unlink`, or as a rename's source). From the outcomes:
//!
//! - *must exist*: created (acknowledged) and not removed (no remove, or it failed);
//! - *must not exist*: removed (acknowledged), or never created (its create failed);
//! - *indeterminate*: its create or its remove is unknown.
//!
//! The final listing is invalid if a must-exist name is *missing*, a must-not-exist
//! name is *present*, a name no operation ever touched is *unexpected*, a name is
//! listed twice, or an indeterminate rename `a -> b` of an existing `a` left both
//! names (*duplicated*) or neither (*vanished*): a rename moves, it never copies or
//! drops. Without a final listing the verdict is unknown.

use std::collections::{BTreeMap, BTreeSet};

use crate::checker::{Verdict, WriteOutcome};

/// What one operation did to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameChange {
    Create(String),
    Rename { from: String, to: String },
    Unlink(String),
}

/// One attempted operation and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameOp {
    pub change: NameChange,
    pub outcome: WriteOutcome,
}

/// What the names checker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamesReport {
    pub verdict: Verdict,
    /// Distinct names some operation touched.
    pub attempted_count: usize,
    pub must_exist_count: usize,
    pub must_not_exist_count: usize,
    pub indeterminate_count: usize,
    /// Must exist, not listed.
    pub missing: Vec<String>,
    /// Must not exist, listed.
    pub present: Vec<String>,
    /// Listed, never touched by any operation.
    pub unexpected: Vec<String>,
    /// Listed more than once.
    pub listed_twice: Vec<String>,
    /// Indeterminate renames `[from, to]` that left both names.
    pub duplicated: Vec<[String; 2]>,
    /// Indeterminate renames `[from, to]` of an existing name that left neither.
    pub vanished: Vec<[String; 2]>,
}

/// What the operations say about one name.
#[derive(Clone, Copy, Debug, Default)]
struct NameFate {
    created: Option<WriteOutcome>,
    removed: Option<WriteOutcome>,
    /// Operations that create or remove it (1 + 1 by construction).
    touches: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Exists,
    Absent,
    Either,
}

fn combine(seen: Option<WriteOutcome>, outcome: WriteOutcome) -> Option<WriteOutcome> {
    Some(seen.map_or(outcome, |seen| seen.combine(outcome)))
}

impl NameFate {
    fn expected(self) -> Expected {
        use WriteOutcome::{Acknowledged, Failed, Unknown};
        match (self.created, self.removed) {
            (_, Some(Acknowledged)) => Expected::Absent,
            (Some(Acknowledged), None | Some(Failed)) => Expected::Exists,
            (None | Some(Failed), None | Some(Failed)) => Expected::Absent,
            (Some(Unknown), _) | (_, Some(Unknown)) => Expected::Either,
        }
    }
}

/// Checks the operations against the final listing (`None` if there was none).
pub fn check_names(ops: &[NameOp], final_list: Option<&[String]>) -> NamesReport {
    let mut fates: BTreeMap<&str, NameFate> = BTreeMap::new();
    for op in ops {
        let (NameChange::Create(name) | NameChange::Rename { to: name, .. }) = &op.change else {
            continue;
        };
        let fate = fates.entry(name).or_default();
        fate.created = combine(fate.created, op.outcome);
        fate.touches += 1;
    }
    for op in ops {
        let (NameChange::Unlink(name) | NameChange::Rename { from: name, .. }) = &op.change else {
            continue;
        };
        let fate = fates.entry(name).or_default();
        fate.removed = combine(fate.removed, op.outcome);
        fate.touches += 1;
    }
    let mut report = NamesReport {
        verdict: Verdict::Unknown,
        attempted_count: fates.len(),
        must_exist_count: 0,
        must_not_exist_count: 0,
        indeterminate_count: 0,
        missing: Vec::new(),
        present: Vec::new(),
        unexpected: Vec::new(),
        listed_twice: Vec::new(),
        duplicated: Vec::new(),
        vanished: Vec::new(),
    };
    for fate in fates.values() {
        match fate.expected() {
            Expected::Exists => report.must_exist_count += 1,
            Expected::Absent => report.must_not_exist_count += 1,
            Expected::Either => report.indeterminate_count += 1,
        }
    }
    let Some(final_list) = final_list else {
        return report;
    };
    let mut listed: BTreeSet<&str> = BTreeSet::new();
    for name in final_list {
        if !listed.insert(name) {
            report.listed_twice.push(name.clone());
        }
    }
    for (&name, fate) in &fates {
        match (fate.expected(), listed.contains(name)) {
            (Expected::Exists, false) => report.missing.push(name.to_string()),
            (Expected::Absent, true) => report.present.push(name.to_string()),
            _ => {}
        }
    }
    report.unexpected = listed
        .iter()
        .filter(|name| !fates.contains_key(*name))
        .map(|name| name.to_string())
        .collect();
    for op in ops {
        let NameChange::Rename { from, to } = &op.change else {
            continue;
        };
        let (source, target) = (fates[from.as_str()], fates[to.as_str()]);
        // Only a rename that alone decides both names: its source surely existed,
        // nothing else removed the source or created the target.
        if op.outcome != WriteOutcome::Unknown
            || source.created != Some(WriteOutcome::Acknowledged)
            || source.touches != 2
            || target.touches != 1
        {
            continue;
        }
        let pair = [from.clone(), to.clone()];
        match (listed.contains(from.as_str()), listed.contains(to.as_str())) {
            (true, true) => report.duplicated.push(pair),
            (false, false) => report.vanished.push(pair),
            _ => {}
        }
    }
    let anomalous = !report.missing.is_empty()
        || !report.present.is_empty()
        || !report.unexpected.is_empty()
        || !report.listed_twice.is_empty()
        || !report.duplicated.is_empty()
        || !report.vanished.is_empty();
    report.verdict = if anomalous {
        Verdict::Invalid
    } else {
        Verdict::Valid
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use WriteOutcome::{Acknowledged, Failed, Unknown};

    fn create(name: &str, outcome: WriteOutcome) -> NameOp {
        NameOp {
            change: NameChange::Create(name.into()),
            outcome,
        }
    }

    fn rename(from: &str, to: &str, outcome: WriteOutcome) -> NameOp {
        NameOp {
            change: NameChange::Rename {
                from: from.into(),
                to: to.into(),
            },
            outcome,
        }
    }

    fn unlink(name: &str, outcome: WriteOutcome) -> NameOp {
        NameOp {
            change: NameChange::Unlink(name.into()),
            outcome,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    /// a: created; b -> c renamed; d unlinked; e create failed; f create unknown;
    /// g -> h rename unknown; i unlink failed.
    fn history() -> Vec<NameOp> {
        vec![
            create("a", Acknowledged),
            create("b", Acknowledged),
            rename("b", "c", Acknowledged),
            create("d", Acknowledged),
            unlink("d", Acknowledged),
            create("e", Failed),
            create("f", Unknown),
            create("g", Acknowledged),
            rename("g", "h", Unknown),
            create("i", Acknowledged),
            unlink("i", Failed),
        ]
    }

    #[test]
    fn a_listing_that_agrees_with_every_outcome_is_valid() {
        let report = check_names(&history(), Some(&names(&["a", "c", "f", "h", "i"])));
        assert_eq!(report.verdict, Verdict::Valid, "{report:?}");
        assert_eq!(report.attempted_count, 9);
        assert_eq!(report.must_exist_count, 3); // a, c, i
        assert_eq!(report.must_not_exist_count, 3); // b, d, e
        assert_eq!(report.indeterminate_count, 3); // f, g, h
    }

    #[test]
    fn a_missing_must_exist_name_is_invalid() {
        let report = check_names(&history(), Some(&names(&["a", "f", "h", "i"])));
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(report.missing, names(&["c"]));
    }

    #[test]
    fn removed_never_created_and_untouched_names_are_invalid() {
        let list = names(&["a", "b", "c", "d", "e", "h", "i", "zz", "zz"]);
        let report = check_names(&history(), Some(&list));
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(report.present, names(&["b", "d", "e"]));
        assert_eq!(report.unexpected, names(&["zz"]));
        assert_eq!(report.listed_twice, names(&["zz"]));
    }

    #[test]
    fn an_unknown_rename_must_move_the_name_not_copy_or_drop_it() {
        let both = check_names(&history(), Some(&names(&["a", "c", "g", "h", "i"])));
        assert_eq!(both.verdict, Verdict::Invalid);
        assert_eq!(both.duplicated, vec![["g".to_string(), "h".to_string()]]);
        let neither = check_names(&history(), Some(&names(&["a", "c", "i"])));
        assert_eq!(neither.verdict, Verdict::Invalid);
        assert_eq!(neither.vanished, vec![["g".to_string(), "h".to_string()]]);
        let source_kept = check_names(&history(), Some(&names(&["a", "c", "g", "i"])));
        assert_eq!(source_kept.verdict, Verdict::Valid);
    }

    #[test]
    fn no_final_listing_is_unknown() {
        assert_eq!(check_names(&history(), None).verdict, Verdict::Unknown);
    }
}
