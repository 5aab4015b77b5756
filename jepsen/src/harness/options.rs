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
    /// cairn's file system: whole-file put / get of a few files (versioned-KV
    /// linearizability), and create / rename / unlink of unique names in one
    /// directory, then a final listing (names checker).
    Fs,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Object => "object",
            WorkloadKind::Set => "set",
            WorkloadKind::Queue => "queue",
            WorkloadKind::Fs => "fs",
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
    /// Power cut on one node, a minority or all nodes (`--power-scope`): every node's
    /// data dir is on a powerfs; stop, freeze, SIGKILL, drop what was not fsynced
    /// (`--power-cut`), restart on the same data at the stop step.
    Power,
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
            FaultFamily::Power => "power",
        }
    }
}

/// Which nodes one `power` fault cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerScope {
    /// One node: the leader half the time (if there is one), else a random node.
    One,
    /// A random minority: (n - 1) / 2 nodes, at least one.
    Minority,
    /// Every node at once.
    All,
}

impl PowerScope {
    pub fn name(self) -> &'static str {
        match self {
            PowerScope::One => "one",
            PowerScope::Minority => "minority",
            PowerScope::All => "all",
        }
    }
}

/// What a `power` fault's cut keeps of the data that was not fsynced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerCut {
    /// Everything not fsynced is lost (pages, sizes, directory entries).
    DropAll,
    /// Each unsynced page and directory entry survives with probability 1/2, each
    /// dirty file keeps its old or its new size (seeded by the run seed and the cut).
    #[default]
    Torn,
}

impl PowerCut {
    pub fn name(self) -> &'static str {
        match self {
            PowerCut::DropAll => "drop-all",
            PowerCut::Torn => "torn",
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
    /// Fault families, comma-separated
    /// (kill,pause,partition,clock,loss,member,disk-full,power); none = no faults.
    /// `power` cannot be combined with `disk-full` (both own the data directory's file
    /// system).
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
    /// Start every node with `--read-lease`: linearizable reads on the leader are
    /// answered from a leader lease (the lease must survive the faults).
    #[arg(long)]
    pub read_lease: bool,
    /// Start every node with the hidden `--unsafe-read-lease-never-expires` test
    /// double (a lease that never ends), to show the checker catches a broken lease.
    #[arg(long)]
    pub unsafe_read_lease_never_expires: bool,
    /// `power` only: the scopes a power cut picks from, comma-separated (one,
    /// minority, all).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [PowerScope::One, PowerScope::Minority, PowerScope::All])]
    pub power_scope: Vec<PowerScope>,
    /// `power` only: what a cut keeps of unsynced data: `torn` (a random half, seeded)
    /// or `drop-all` (nothing).
    #[arg(long, value_enum, default_value_t = PowerCut::Torn)]
    pub power_cut: PowerCut,
    /// `power` only: before the powerfs mounts go away at the end of the run (their
    /// content lives in the harness's memory), copy each node's `n<i>/disk/` to
    /// `n<i>/disk-final/` for a post-mortem (sparse files come out dense).
    #[arg(long)]
    pub power_keep_data: bool,
    /// Start every node with the hidden `--unsafe-ack-before-fsync` test double (the
    /// Raft log acknowledges appends before they are durable), to show the `power`
    /// fault catches lost acknowledged writes.
    #[arg(long)]
    pub unsafe_ack_before_fsync: bool,
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

    /// `one,all` style name of the power scopes (sorted, deduplicated).
    pub fn power_scope_name(&self) -> String {
        let mut scopes = self.power_scope.clone();
        scopes.sort_unstable_by_key(|scope| *scope as u8);
        scopes.dedup();
        let names: Vec<&str> = scopes.iter().map(|scope| scope.name()).collect();
        names.join(",")
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
