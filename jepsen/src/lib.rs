//! cairn-jepsen: the checking half of cairn's chaos harness.
//!
//! A test run records a *history*: every operation a client invoked and how it ended
//! (`ok`, `fail`, or `info` = unknown). This crate reads such histories and decides
//! whether they are consistent with what cairn promises; [`harness`] runs a real cairn
//! cluster under faults to record such histories (`cairn-jepsen run`).
//!
//! # Layout
//!
//! - [`history`]: events as recorded ([`history::Event`]), invocations paired with their
//!   completions ([`history::OpRecord`]), and the model-typed [`history::Operation`].
//! - [`formats`]: readers turning a file into events: Jepsen text logs, Jepsen EDN
//!   maps, and the harness's own JSONL format (see `jepsen/README.md`).
//! - [`checker`]: verdicts and checkers.
//!   - [`checker::model`]: the [`checker::model::Model`] trait (sequential specification
//!     plus P-compositional partitioning).
//!   - [`checker::linear`]: the linearizability check (Wing–Gong/Lowe search with
//!     memoisation, as in Porcupine), per partition, with deadlines and diagnostics.
//!   - [`checker::models`]: register, KV (get/put/append) and versioned KV models.
//!   - [`checker::sets`], [`checker::queues`], [`checker::queue_seqs`],
//!     [`checker::list_append`]: polynomial checkers for set, queue (total, FIFO,
//!     sequence numbers) and list-append workloads.
//! - [`check`]: the pipeline for one history file (read, pair, decode, check), shared
//!   by the CLI and the tests.
//! - [`error`]: the one error type (bad input is an error, never a panic).
//! - [`harness`]: the chaos harness: network namespaces, node processes, client
//!   processes, nemesis, reports.
//! - [`powerfs`]: an in-process FUSE file system that keeps unsynced writes and drops
//!   them on command, to simulate power cuts under a node's data directory.

pub mod check;
pub mod checker;
pub mod error;
pub mod formats;
pub mod harness;
pub mod history;
pub mod powerfs;

pub use checker::Verdict;
pub use error::Error;
