//! What one `cairn-jepsen run` does: the workload, the faults, the cluster size, the
//! bounds. Parsed from the command line (clap) and written to `options.json` in the run
//! directory so a run can be repeated with the same seed.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// Default total operation rate of all clients together, per second: modest, because
/// the cluster and the harness share a 2-core machine.
pub const RATE_PER_SEC_DEFAULT: u32 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Per-key get / put / cas on independent keys; versioned-KV linearizability.
    Register,
    /// Per-key put / get of whole 1 MiB + 4 KiB objects; versioned-KV linearizability,
    /// and a read that mixes two objects' bytes is invalid.
    Object,
    /// Unique adds, then a final read of the whole set; set checker.
    Set,
    /// Producers send unique messages to one queue, consumers receive (lease + ack, or
    /// pop), a final drain; total-queue and FIFO checkers.
    Queue,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Object => "object",
            WorkloadKind::Set => "set",
            WorkloadKind::Queue => "queue",
        }
    }
}

/// How the queue workload's consumers receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueMode {
    /// Receive with a lease, then ack: at-least-once (duplicates allowed, counted).
    #[default]
    Lease,
    /// Receive without a lease (pop): each message at most once, so a duplicate is a bug.
    Pop,
}

impl QueueMode {
    pub fn name(self) -> &'static str {
        match self {
            QueueMode::Lease => "lease",
            QueueMode::Pop => "pop",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultFamily {
    /// SIGKILL a node (random or the leader), restart it on the same data at the stop step.
    Kill,
    /// SIGSTOP a node (random or the leader), SIGCONT at the stop step.
    Pause,
    /// iptables DROP between nodes: isolate one, isolate the leader, or split in halves.
    Partition,
    /// Shift one node's wall clock with libfaketime (monotonic time stays real).
    Clock,
    /// Random packet loss (iptables `statistic`) between some node pairs.
    Loss,
    /// Remove a non-leader voter; bring it back as a new id on an empty data dir.
    Member,
    /// Fill a minority node's tmpfs data dir until ENOSPC; delete the filler at stop.
    DiskFull,
}

impl FaultFamily {
    pub fn name(self) -> &'static str {
        match self {
            FaultFamily::Kill => "kill",
            FaultFamily::Pause => "pause",
            FaultFamily::Partition => "partition",
            FaultFamily::Clock => "clock",
            FaultFamily::Loss => "loss",
            FaultFamily::Member => "member",
            FaultFamily::DiskFull => "disk-full",
        }
    }
}

#[derive(Clone, Debug, Args, Serialize)]
pub struct RunOptions {
    /// What the clients do and how the history is checked.
    #[arg(long, value_enum)]
    pub workload: WorkloadKind,
    /// Queue workload only: consumers lease and ack (`lease`) or pop (`pop`).
    #[arg(long, value_enum, default_value_t = QueueMode::Lease)]
    pub queue_mode: QueueMode,
    /// Fault families, comma-separated (kill,pause,partition,clock,loss,member,disk-full);
    /// none = no faults.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub nemesis: Vec<FaultFamily>,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub nodes: u8,
    /// How long clients run operations (faults run during this time only).
    #[arg(long, default_value_t = 60)]
    pub time_limit_secs: u64,
    /// Time between a fault's start and its stop, and between a stop and the next start.
    #[arg(long, default_value_t = 5)]
    pub nemesis_interval_secs: u64,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = RATE_PER_SEC_DEFAULT)]
    pub rate: u32,
    /// Logical client processes; 0 = two per node.
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// Seed of every random choice (operations, fault targets); default from the clock.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The `cairn` binary; default: `cairn` next to this executable (target/debug).
    #[arg(long)]
    pub cairn_bin: Option<PathBuf>,
    /// Where run directories go; default: jepsen/store in the source tree.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Start every node with the hidden `--unsafe-local-linearizable-reads` test
    /// double (stale reads), to show the checker catches them.
    #[arg(long)]
    pub unsafe_local_reads: bool,
    /// Wall-clock budget for the linearizability check.
    #[arg(long, default_value_t = 60)]
    pub check_time_limit_secs: u64,
}

impl RunOptions {
    /// Logical client processes (at least one).
    pub fn concurrency(&self) -> usize {
        if self.concurrency == 0 {
            2 * usize::from(self.nodes)
        } else {
            self.concurrency
        }
    }

    /// The workload's name in run directories and titles: `queue-pop` for the queue
    /// workload in pop mode, else the workload's name.
    pub fn workload_label(&self) -> String {
        match (self.workload, self.queue_mode) {
            (WorkloadKind::Queue, QueueMode::Pop) => "queue-pop".to_string(),
            (workload, _) => workload.name().to_string(),
        }
    }

    /// `kill,pause` style name of the fault mix, `none` without faults.
    pub fn nemesis_name(&self) -> String {
        if self.nemesis.is_empty() {
            return "none".to_string();
        }
        let mut names: Vec<&str> = self.nemesis.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }
}
