//! What this machine can do, checked before a run: root, network namespaces,
//! iptables (and its `statistic` match, for `loss`), tmpfs mounts (for `disk-full`),
//! a powerfs mount (for `power`: root and /dev/fuse), libfaketime, gnuplot. The run needs the first three-ish (namespaces for
//! the cluster at all, iptables for the bridge's FORWARD rule and for partitions);
//! a fault family the machine cannot do is skipped with a note instead of failing.

use std::path::PathBuf;

use serde::Serialize;

use super::exec;
use super::options::FaultFamily;

/// Where Debian's `libfaketime` package puts the library, by architecture.
const FAKETIME_LIBRARIES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    pub root: bool,
    /// `ip netns` works (listing needs no privileges; creating needs root).
    pub netns: bool,
    pub iptables: bool,
    /// `iptables -m statistic --mode random` works inside a scratch namespace (`loss`).
    pub iptables_statistic: bool,
    /// A tmpfs can be mounted and unmounted (`disk-full`).
    pub tmpfs: bool,
    /// A scratch powerfs mounts, serves a write and a read, and unmounts (`power`).
    pub powerfs: bool,
    /// Why it did not, if it did not.
    pub powerfs_error: Option<String>,
    pub faketime_library: Option<PathBuf>,
    pub gnuplot: bool,
}

/// A fault family that will not run, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedFault {
    pub fault: FaultFamily,
    pub reason: String,
}

impl Capabilities {
    pub fn probe() -> Capabilities {
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let iptables = root
            && exec::succeeds(
                "iptables",
                &["-w", exec::XTABLES_WAIT_SECS, "-n", "-L", "FORWARD"],
            );
        let powerfs = crate::powerfs::probe_detail();
        Capabilities {
            root,
            netns: exec::succeeds("ip", &["netns", "list"]),
            iptables,
            iptables_statistic: iptables && super::faults::probe_statistic_match(),
            tmpfs: root && super::faults::probe_tmpfs(),
            powerfs: powerfs.is_ok(),
            powerfs_error: powerfs.err(),
            faketime_library: FAKETIME_LIBRARIES
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists()),
            gnuplot: exec::succeeds("gnuplot", &["--version"]),
        }
    }

    /// Why the cluster cannot be built here at all, if it cannot.
    pub fn missing_for_cluster(&self) -> Option<String> {
        if !self.root {
            return Some("not root: network namespaces need CAP_SYS_ADMIN".into());
        }
        if !self.netns {
            return Some("`ip netns` does not work (install iproute2)".into());
        }
        if !self.iptables {
            return Some("iptables does not work: the bridge needs a FORWARD rule".into());
        }
        None
    }

    /// Splits `wanted` into the families that can run and those skipped with a reason.
    pub fn usable_faults(&self, wanted: &[FaultFamily]) -> (Vec<FaultFamily>, Vec<SkippedFault>) {
        let mut usable = Vec::new();
        let mut skipped = Vec::new();
        for &fault in wanted {
            let missing = match fault {
                FaultFamily::Clock if self.faketime_library.is_none() => {
                    Some("libfaketime is not installed (apt-get install faketime)".to_string())
                }
                FaultFamily::Partition if !self.iptables => {
                    Some("iptables does not work".to_string())
                }
                FaultFamily::Loss if !self.iptables_statistic => {
                    Some("iptables' `statistic` match does not work (no xt_statistic)".to_string())
                }
                FaultFamily::DiskFull if !self.tmpfs => {
                    Some("cannot mount a tmpfs (not root?)".to_string())
                }
                FaultFamily::Power if !self.powerfs => Some(format!(
                    "cannot mount a powerfs (needs root and /dev/fuse): {}",
                    self.powerfs_error.as_deref().unwrap_or("probe failed")
                )),
                _ => None,
            };
            match missing {
                Some(reason) => skipped.push(SkippedFault { fault, reason }),
                None if !usable.contains(&fault) => usable.push(fault),
                None => {}
            }
        }
        (usable, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(faketime: bool, iptables: bool) -> Capabilities {
        Capabilities {
            root: true,
            netns: true,
            iptables,
            iptables_statistic: iptables,
            tmpfs: false,
            powerfs: false,
            powerfs_error: Some("no /dev/fuse".into()),
            faketime_library: faketime.then(|| PathBuf::from("/lib/libfaketime.so.1")),
            gnuplot: false,
        }
    }

    #[test]
    fn faults_the_machine_cannot_do_are_skipped_with_a_reason() {
        let wanted = [FaultFamily::Kill, FaultFamily::Clock, FaultFamily::Kill];
        let (usable, skipped) = machine(false, true).usable_faults(&wanted);
        assert_eq!(usable, [FaultFamily::Kill]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].fault, FaultFamily::Clock);
        assert!(skipped[0].reason.contains("faketime"));
    }

    #[test]
    fn loss_needs_the_statistic_match_and_disk_full_a_tmpfs() {
        let wanted = [
            FaultFamily::Loss,
            FaultFamily::DiskFull,
            FaultFamily::Member,
        ];
        let (usable, skipped) = machine(true, false).usable_faults(&wanted);
        assert_eq!(usable, [FaultFamily::Member]);
        let faults: Vec<FaultFamily> = skipped.iter().map(|s| s.fault).collect();
        assert_eq!(faults, [FaultFamily::Loss, FaultFamily::DiskFull]);
    }

    #[test]
    fn power_needs_a_powerfs_mount_and_says_why_not() {
        let (usable, skipped) =
            machine(true, true).usable_faults(&[FaultFamily::Power, FaultFamily::Kill]);
        assert_eq!(usable, [FaultFamily::Kill]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].fault, FaultFamily::Power);
        assert!(skipped[0].reason.contains("powerfs"));
        assert!(skipped[0].reason.contains("no /dev/fuse"));
        let mut able = machine(true, true);
        able.powerfs = true;
        let (usable, skipped) = able.usable_faults(&[FaultFamily::Power]);
        assert_eq!((usable, skipped.len()), (vec![FaultFamily::Power], 0));
    }

    #[test]
    fn without_iptables_there_is_no_cluster() {
        assert!(machine(true, false).missing_for_cluster().is_some());
        assert!(machine(true, true).missing_for_cluster().is_none());
    }
}
