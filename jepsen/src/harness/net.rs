//! The run's private network: one network namespace per node (`cj-<run>-n<i>`), each
//! with a veth pair into a bridge (`cj<run>`) that has no uplink, no default route and
//! no NAT, so nothing can leave the box. Nodes get `10.X.Y.i/24`; the bridge itself has
//! `.254`, which is how the harness in the root namespace reaches every node.
//!
//! The host's FORWARD policy is DROP and bridged packets go through iptables, so an
//! ACCEPT rule for the bridge is added (and removed at the end). Partitions are
//! iptables DROP rules inside the node namespaces: they cut node-to-node traffic only,
//! clients keep reaching every node, as Jepsen's control node does. Packet loss
//! (`loss`) is the same kind of rule with `-m statistic --mode random --probability`.

use super::cleanup;
use super::exec::{self, XTABLES_WAIT_SECS};
use super::grudge::Grudge;

/// Subnets tried before giving up when the preferred one is in use on this host.
const SUBNET_ATTEMPTS_MAX: u32 = 32;

/// The run's network. Dropping it tears it down.
pub struct Network {
    run_id: String,
    /// `10.X.Y`: the first three octets of every address.
    prefix: String,
    nodes: u8,
    /// Namespaces created so far (ids 1..=built), for a partial teardown.
    built: u8,
    bridge_built: bool,
    forward_rule_added: bool,
}

impl Network {
    /// Builds the bridge and one namespace per node (ids 1..=nodes). On failure
    /// everything already built is torn down.
    pub fn create(run_id: &str, nodes: u8) -> Result<Network, String> {
        let prefix = free_prefix(run_id)?;
        let mut network = Network {
            run_id: run_id.to_string(),
            prefix,
            nodes,
            built: 0,
            bridge_built: false,
            forward_rule_added: false,
        };
        network.build_bridge()?;
        for id in 1..=nodes {
            network.build_node(id)?;
        }
        Ok(network)
    }

    pub fn bridge(&self) -> String {
        format!("cj{}", self.run_id)
    }

    pub fn namespace(&self, id: u8) -> String {
        format!("cj-{}-n{id}", self.run_id)
    }

    fn host_interface(&self, id: u8) -> String {
        format!("cj{}v{id}", self.run_id)
    }

    pub fn node_ip(&self, id: u8) -> String {
        format!("{}.{id}", self.prefix)
    }

    pub fn subnet(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    fn build_bridge(&mut self) -> Result<(), String> {
        let bridge = self.bridge();
        exec::run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        cleanup::add_bridge(&bridge);
        self.bridge_built = true;
        let address = format!("{}.254/24", self.prefix);
        exec::run("ip", &["addr", "add", &address, "dev", &bridge])?;
        exec::run("ip", &["link", "set", &bridge, "up"])?;
        let mut args = vec!["-w", XTABLES_WAIT_SECS, "-I"];
        args.extend_from_slice(&cleanup::forward_rule(&bridge));
        exec::run("iptables", &args)?;
        cleanup::add_forward_rule(&bridge);
        self.forward_rule_added = true;
        Ok(())
    }

    fn build_node(&mut self, id: u8) -> Result<(), String> {
        let namespace = self.namespace(id);
        let host_interface = self.host_interface(id);
        exec::run("ip", &["netns", "add", &namespace])?;
        cleanup::add_namespace(&namespace);
        self.built = id;
        let veth = [
            "link",
            "add",
            &host_interface,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &namespace,
        ];
        exec::run("ip", &veth)?;
        exec::run(
            "ip",
            &[
                "link",
                "set",
                &host_interface,
                "master",
                &self.bridge(),
                "up",
            ],
        )?;
        let address = format!("{}/24", self.node_ip(id));
        let inside = |args: &[&str]| {
            let mut full = vec!["-n", namespace.as_str()];
            full.extend_from_slice(args);
            exec::run("ip", &full)
        };
        inside(&["addr", "add", &address, "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Installs `grudge`: node A drops every packet from the nodes it holds a grudge
    /// against. Replaces any previous partition.
    pub fn partition(&self, grudge: &Grudge) -> Result<(), String> {
        self.heal()?;
        for (&node, hated) in grudge {
            let namespace = self.namespace(node);
            for &other in hated {
                let source = self.node_ip(other);
                let rule = [
                    "-w",
                    XTABLES_WAIT_SECS,
                    "-A",
                    "INPUT",
                    "-s",
                    &source,
                    "-j",
                    "DROP",
                ];
                exec::run_in(&namespace, "iptables", &rule)?;
            }
        }
        Ok(())
    }

    /// Both ends of each link drop packets from the other with `probability`.
    /// Replaces any previous partition or loss.
    pub fn lose_packets(&self, links: &[(u8, u8)], probability: f64) -> Result<(), String> {
        self.heal()?;
        let probability = format!("{probability:.2}");
        for &(a, b) in links {
            for (node, other) in [(a, b), (b, a)] {
                let source = self.node_ip(other);
                let rule = [
                    "-w",
                    XTABLES_WAIT_SECS,
                    "-A",
                    "INPUT",
                    "-s",
                    &source,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ];
                exec::run_in(&self.namespace(node), "iptables", &rule)?;
            }
        }
        Ok(())
    }

    /// Removes every partition and loss rule.
    pub fn heal(&self) -> Result<(), String> {
        for id in 1..=self.nodes {
            exec::run_in(
                &self.namespace(id),
                "iptables",
                &["-w", XTABLES_WAIT_SECS, "-F", "INPUT"],
            )?;
        }
        Ok(())
    }

    /// Deletes the namespaces (their veths go with them), the bridge and the FORWARD
    /// rule. Node processes must be gone first. Returns what could not be deleted.
    pub fn teardown(&mut self) -> Vec<String> {
        let mut failures: Vec<String> = (1..=self.built)
            .filter_map(|id| cleanup::delete_namespace(&self.namespace(id)).err())
            .collect();
        self.built = 0;
        if std::mem::take(&mut self.bridge_built) {
            failures.extend(cleanup::delete_bridge(&self.bridge()).err());
        }
        if std::mem::take(&mut self.forward_rule_added) {
            failures.extend(cleanup::delete_forward_rule(&self.bridge()).err());
        }
        failures
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for failure in self.teardown() {
            eprintln!("network teardown: {failure}");
        }
    }
}

/// A `10.X.Y` prefix derived from the run id that no address or route on this host
/// uses yet.
fn free_prefix(run_id: &str) -> Result<String, String> {
    let in_use = format!(
        "{}\n{}",
        exec::run("ip", &["-4", "-o", "addr", "show"])?,
        exec::run("ip", &["-4", "route", "show", "table", "all"])?
    );
    let seed = run_id.bytes().fold(0u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u32::from(byte))
    });
    for attempt in 0..SUBNET_ATTEMPTS_MAX {
        let value = seed.wrapping_add(attempt.wrapping_mul(7919));
        // 10.64.0.0 - 10.191.255.0: away from the 10.0/16 and 10.255/16 ranges that
        // other tools like to use.
        let prefix = format!("10.{}.{}", 64 + (value >> 8) % 128, value % 256);
        if !in_use.contains(&format!("{prefix}.")) {
            return Ok(prefix);
        }
    }
    Err(format!(
        "no free 10.x.y.0/24 subnet after {SUBNET_ATTEMPTS_MAX} attempts"
    ))
}
