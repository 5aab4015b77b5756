//! The `member` fault: membership changes while clients run, following
//! docs/operations.md ("A node that lost its disk"): a removed voter is never
//! restarted on its old data.
//!
//! - Start ([`remove_voter`]): ask the leader for the membership; if there are at
//!   least [`VOTERS_MIN`] voters, pick a random voter that is not the leader (and not
//!   the disk-full host), remove it (`Client::remove_node`) and stop its process, in
//!   either order (alternating from one removal to the next). The host then gets a
//!   *new* cairn id and an empty data directory ([`Cluster::replace`]), so nothing,
//!   not even the final heal, can restart the old id on its old data.
//! - Stop ([`join`]): make sure the old id is gone (remove again if the first call
//!   ended unknown), start the new node with the current members as `--peers` (its own
//!   id not among them, so it never bootstraps a cluster of its own and waits to be
//!   added), add it as a learner, wait (bounded) until it has applied what the leader
//!   had, promote it. On 3 nodes the cluster runs with 2 voters between start and stop.
//! - Heal ([`finish_joins`]): any host whose node is not a voter yet is added and
//!   promoted, so every run ends with as many voters as it began with.

use std::time::{Duration, Instant};

use cairn::client::Client;
use cairn::proto::v1::Member;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use super::cluster::Cluster;
use super::grudge::NodeId;
use super::node::NodeSpec;

/// Fewest voters the fault removes from (it never leaves fewer than a majority of 3).
pub const VOTERS_MIN: usize = 3;
/// Deadline of one membership or status call, and the bound on its SDK retries.
const MEMBER_CALL_SECS: u64 = 10;
/// Bound on waiting for a learner to catch up before promoting it anyway.
const CATCH_UP_WAIT_SECS: u64 = 20;
/// Between two catch-up polls.
const CATCH_UP_POLL_MS: u64 = 250;

/// A removed voter: its host, its old id, the id its replacement gets.
#[derive(Clone, Copy, Debug)]
pub struct Removal {
    pub host: NodeId,
    pub old_id: u64,
    pub new_id: u64,
}

fn client(cluster: &Cluster) -> Result<Client, String> {
    Client::connect(cluster.endpoints_from(cluster.ids()[0]))
        .map(|c| c.with_call_timeout(Duration::from_secs(MEMBER_CALL_SECS)))
        .map_err(|e| e.to_string())
}

/// Runs `call` with a hard deadline of twice [`MEMBER_CALL_SECS`].
async fn bounded<T, F>(call: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, cairn::client::Error>>,
{
    match tokio::time::timeout(Duration::from_secs(2 * MEMBER_CALL_SECS), call).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", 2 * MEMBER_CALL_SECS)),
    }
}

/// The leader's host and its view of the membership.
async fn membership(cluster: &Cluster) -> Result<(NodeId, Vec<Member>), String> {
    let leader = cluster.leader().await.ok_or("no leader")?;
    let status = cluster
        .status(leader)
        .await
        .ok_or("the leader did not answer")?;
    Ok((leader, status.members))
}

/// Removes a random non-leader voter and stops it; its host gets a new id.
pub async fn remove_voter(
    cluster: &Cluster,
    rng: &mut impl Rng,
    exclude: Option<NodeId>,
) -> Result<(Removal, Value), String> {
    let (leader, members) = membership(cluster).await?;
    let voters: Vec<&Member> = members.iter().filter(|m| m.voter).collect();
    if voters.len() < VOTERS_MIN {
        return Err(format!("only {} voters: not removing one", voters.len()));
    }
    let leader_id = cluster.raft_id(leader);
    let candidates: Vec<(u64, NodeId)> = voters
        .iter()
        .filter(|m| m.id != leader_id)
        .filter_map(|m| Some((m.id, cluster.host_of(m.id)?)))
        .filter(|&(_, host)| Some(host) != exclude)
        .collect();
    let &(old_id, host) = candidates.choose(rng).ok_or("no voter to remove")?;
    let new_id = cluster.new_raft_id();
    // Both orders, alternating: even new ids stop first, odd ones remove first.
    let stop_first = new_id.is_multiple_of(2);
    // Removed first, the node may notice and exit by itself before the kill.
    cluster.expect_exit(host, Some("member: removed"));
    if stop_first {
        cluster.kill(host);
    }
    let removed = bounded(client(cluster)?.remove_node(old_id)).await;
    cluster.kill(host);
    cluster.poll_crashes();
    cluster.expect_exit(host, None);
    let peers: Vec<String> = members
        .iter()
        .filter(|m| m.id != old_id)
        .map(|m| format!("{}={}", m.id, m.peer_addr))
        .collect();
    let spec = joiner_spec(&cluster.current_spec(host), new_id, &peers.join(","));
    cluster.replace(host, new_id, spec);
    let removal = Removal {
        host,
        old_id,
        new_id,
    };
    let value = json!({
        "node": host, "removed_id": old_id, "next_id": new_id,
        "order": if stop_first { "stop-then-remove" } else { "remove-then-stop" },
        "remove": outcome(&removed.map(drop)),
    });
    Ok((removal, value))
}

/// Brings the removed voter's host back as the new id: learner, catch up, promote.
pub async fn join(cluster: &Cluster, removal: Removal) -> Value {
    let client = match client(cluster) {
        Ok(client) => client,
        Err(error) => return json!({ "error": error }),
    };
    let mut steps = serde_json::Map::new();
    if let Ok((_, members)) = membership(cluster).await {
        if members.iter().any(|m| m.id == removal.old_id) {
            let again = bounded(client.remove_node(removal.old_id)).await;
            steps.insert("remove_again".into(), outcome(&again.map(drop)));
        }
    }
    let started = cluster.start(removal.host);
    steps.insert("start".into(), outcome(&started));
    steps.extend(add_and_promote(cluster, &client, removal.host).await);
    steps.insert("node".into(), json!(removal.host));
    steps.insert("new_id".into(), json!(removal.new_id));
    Value::Object(steps)
}

/// Adds host `host`'s node as a learner, waits for it, promotes it.
async fn add_and_promote(
    cluster: &Cluster,
    client: &Client,
    host: NodeId,
) -> serde_json::Map<String, Value> {
    let mut steps = serde_json::Map::new();
    let spec = cluster.current_spec(host);
    let id = cluster.raft_id(host);
    let added = bounded(client.add_learner(id, &spec.grpc_addr, &spec.http_addr, "")).await;
    steps.insert("add_learner".into(), outcome(&added.map(drop)));
    let caught_up = wait_caught_up(cluster, host).await;
    steps.insert("caught_up".into(), json!(caught_up));
    let promoted = bounded(client.promote(id)).await;
    steps.insert("promote".into(), outcome(&promoted.map(drop)));
    steps
}

/// Whether `host`'s node applied as much as the leader had, within the bound.
async fn wait_caught_up(cluster: &Cluster, host: NodeId) -> bool {
    let deadline = Instant::now() + Duration::from_secs(CATCH_UP_WAIT_SECS);
    let mut target = None;
    while Instant::now() < deadline {
        if target.is_none() {
            if let Some(leader) = cluster.leader().await {
                target = cluster.status(leader).await.map(|s| s.applied_index);
            }
        }
        let applied = cluster.status(host).await.map(|s| s.applied_index);
        if let (Some(target), Some(applied)) = (target, applied) {
            if applied >= target {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(CATCH_UP_POLL_MS)).await;
    }
    false
}

/// At the end: every host whose node is not a voter is added (if needed) and
/// promoted. One value per host it had to fix.
pub async fn finish_joins(cluster: &Cluster) -> Vec<Value> {
    let Ok(client) = client(cluster) else {
        return vec![json!({ "error": "no client" })];
    };
    // Just after the heal restarted nodes there may be no leader for a moment.
    cluster
        .wait_for_leader(Duration::from_secs(MEMBER_CALL_SECS))
        .await;
    let Ok((_, members)) = membership(cluster).await else {
        return vec![json!({ "error": "no leader to ask for the membership" })];
    };
    let mut fixed = Vec::new();
    for host in cluster.ids() {
        let id = cluster.raft_id(host);
        match members.iter().find(|m| m.id == id) {
            Some(member) if member.voter => {}
            Some(_) => {
                let promoted = bounded(client.promote(id)).await;
                fixed.push(
                    json!({ "node": host, "id": id, "promote": outcome(&promoted.map(drop)) }),
                );
            }
            None => {
                let mut steps = add_and_promote(cluster, &client, host).await;
                steps.insert("node".into(), json!(host));
                steps.insert("id".into(), json!(id));
                fixed.push(Value::Object(steps));
            }
        }
    }
    fixed
}

/// `spec` as a new node: id `id`, an empty data directory beside the old one,
/// `peers` (the current members, without `id`).
fn joiner_spec(spec: &NodeSpec, id: u64, peers: &str) -> NodeSpec {
    let mut joiner = spec.clone();
    let parent = spec.data_dir.parent().unwrap_or(&spec.data_dir);
    joiner.data_dir = parent.join(format!("data-id{id}"));
    set_flag(&mut joiner.args, "--id", &id.to_string());
    set_flag(
        &mut joiner.args,
        "--data-dir",
        &joiner.data_dir.display().to_string(),
    );
    set_flag(&mut joiner.args, "--peers", peers);
    joiner
}

/// Sets the value after `flag` in `args`, appending the pair if missing.
fn set_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    match args.iter().position(|arg| arg == flag) {
        Some(index) if index + 1 < args.len() => args[index + 1] = value.to_string(),
        _ => args.extend([flag.to_string(), value.to_string()]),
    }
}

fn outcome(result: &Result<(), String>) -> Value {
    match result {
        Ok(()) => json!("ok"),
        Err(error) => json!({ "error": error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_joiner_gets_a_new_id_an_empty_data_dir_and_the_members_as_peers() {
        let args = [
            "server",
            "--id",
            "2",
            "--data-dir",
            "/r/n2/data",
            "--peers",
            "1=a,2=b,3=c",
        ];
        let spec = NodeSpec {
            id: 2,
            namespace: "ns".into(),
            grpc_addr: "b".into(),
            http_addr: "bh".into(),
            data_dir: PathBuf::from("/r/n2/data"),
            log_path: PathBuf::from("/r/n2/server.log"),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        };
        let joiner = joiner_spec(&spec, 4, "1=a,3=c");
        assert_eq!(joiner.data_dir, PathBuf::from("/r/n2/data-id4"));
        assert_eq!(
            joiner.args,
            [
                "server",
                "--id",
                "4",
                "--data-dir",
                "/r/n2/data-id4",
                "--peers",
                "1=a,3=c"
            ]
        );
        assert_eq!(joiner.grpc_addr, "b");
    }
}
