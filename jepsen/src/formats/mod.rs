//! Readers that turn a history file into [`Event`]s, one module per format:
//! [`jepsen_log`] (Jepsen's text log lines), [`edn`] (one EDN map per line) and
//! [`jsonl`] (the harness's own format, documented in `jepsen/README.md`).
//!
//! Readers only parse; pairing invocations with completions is `history::pair_events`.

pub mod edn;
pub mod jepsen_log;
pub mod jsonl;

use crate::error::Error;
use crate::history::Event;

/// The history file formats this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `INFO jepsen.util - P :TYPE :F VALUE` lines (e.g. Porcupine's etcd fixtures).
    JepsenLog,
    /// One EDN map a line: `{:process 0, :type :invoke, :f :get, :key "k", :value nil}`.
    Edn,
    /// One JSON object a line (see `jepsen/README.md`).
    Jsonl,
}

/// Parses a whole history text in the given format.
pub fn parse_events(format: Format, text: &str) -> Result<Vec<Event>, Error> {
    match format {
        Format::JepsenLog => jepsen_log::parse(text),
        Format::Edn => edn::parse(text),
        Format::Jsonl => jsonl::parse(text),
    }
}

/// Line numbers are 1-based `u64`s everywhere in messages.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    (1u64..).zip(text.lines())
}
