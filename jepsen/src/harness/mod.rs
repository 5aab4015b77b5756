//! `cairn-jepsen run`: drives a real cairn cluster under faults, records a history,
//! and checks it with this crate's checkers.
//!
//! # Layout
//!
//! - [`options`]: what a run does (workload, faults, bounds), from the command line.
//! - [`probe`]: what this machine can do; faults it cannot are skipped with a note.
//! - [`run`]: the phases of one run, start to end; [`report`]: checks and reports.
//! - Hosts: [`net`] (namespaces, bridge, partitions), [`grudge`] (partition shapes),
//!   [`node`] (one server process), [`cluster`] (all of them, leader lookup).
//! - Clients: [`client`] (logical processes, outcomes, pacing, follow-ups),
//!   [`workload`] with [`register`], [`object`], [`set`], [`queue`] and [`fs`].
//! - Faults: [`nemesis`], with [`faults`] (loss shapes, tmpfs for disk-full, probes),
//!   [`member`] (membership changes) and [`power`] (powerfs mounts for power cuts).
//! - History and output: [`recorder`] (JSONL), [`checks`] with [`queue_checks`],
//!   [`spans`], [`plots`] (gnuplot), [`timeline`] (HTML), [`store`] (run directories).
//! - Safety: [`cleanup`] (registry undone on every exit path), [`leftovers`] (what
//!   a SIGKILLed harness left behind), [`exec`] (system tools).

pub mod checks;
pub mod cleanup;
pub mod client;
pub mod cluster;
pub mod exec;
pub mod faults;
pub mod fs;
pub mod grudge;
pub mod leftovers;
pub mod member;
pub mod nemesis;
pub mod net;
pub mod node;
pub mod object;
pub mod options;
pub mod plots;
pub mod power;
pub mod probe;
pub mod queue;
pub mod queue_checks;
pub mod recorder;
pub mod register;
pub mod report;
pub mod run;
pub mod set;
pub mod spans;
pub mod store;
pub mod timeline;
pub mod workload;

use std::time::Duration;

pub use options::RunOptions;

use crate::Verdict;

/// Worker threads of the harness's runtime: the cluster shares the machine.
const RUNTIME_THREADS: usize = 2;

/// Runs one test and returns its verdict. Everything the run creates is removed on
/// return, on panic, and on SIGINT / SIGTERM / SIGHUP (then the verdict is unknown).
pub fn run(options: RunOptions) -> Verdict {
    let _guard = cleanup::CleanupGuard;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RUNTIME_THREADS)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("cannot start the runtime: {error}");
            println!("{}", Verdict::Unknown);
            return Verdict::Unknown;
        }
    };
    let verdict = runtime.block_on(async {
        tokio::select! {
            verdict = run::run(options) => verdict,
            signal = cleanup::wait_for_signal() => {
                println!("{signal}: stopping; everything the run made is removed");
                println!("{}", Verdict::Unknown);
                Verdict::Unknown
            }
        }
    });
    cleanup::cleanup_all();
    runtime.shutdown_timeout(Duration::from_secs(5));
    verdict
}
