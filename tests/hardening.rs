//! The network edge and the disk, attacked: peer RPCs without the peer
//! certificate, a peer payload claiming 4 GiB, ten thousand idle connections, and
//! a chunk file damaged on one node.
//! Method: real 3-node clusters (processes) on loopback; raw gRPC peer clients
//! built the way an attacker would (plaintext, TLS trusting the cluster CA but with
//! no certificate of its own, or a certificate from another CA).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn::client::{Client, PutObjectOptions};
use cairn::peer_tls::{PeerTls, PEER_TLS_NAME};
use cairn::proto::raft::raft_peer_client::RaftPeerClient;
use cairn::proto::raft::RaftPayload;
use cairn::raft::types::{NodeId, TypeConfig};
use common::http::request;
use common::{content, eventually, TestCluster};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, LogId, Vote};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const WAIT: Duration = Duration::from_secs(30);

/// A peer client for `addr`: plaintext when `tls` is `None`.
async fn dial(addr: &str, tls: Option<ClientTlsConfig>) -> Result<RaftPeerClient<Channel>, String> {
    let endpoint = match tls {
        None => Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?,
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?,
    };
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(RaftPeerClient::new(channel))
}

fn with_token(data: Vec<u8>, token: &str) -> tonic::Request<RaftPayload> {
    let mut request = tonic::Request::new(RaftPayload { data: data.into() });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// AppendEntries and Vote from a "leader" 100 terms ahead: what an attacker would
/// send to depose the real leader.
fn hostile_payloads(term: u64) -> (Vec<u8>, Vec<u8>) {
    let vote = Vote::<NodeId>::new_committed(term + 100, 99);
    let append = AppendEntriesRequest::<TypeConfig> {
        vote,
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let request_vote = VoteRequest::<NodeId>::new(
        Vote::new(term + 100, 99),
        Some(LogId::new(CommittedLeaderId::new(term + 100, 99), 1 << 40)),
    );
    (
        bincode::serialize(&append).unwrap(),
        bincode::serialize(&request_vote).unwrap(),
    )
}

/// Every peer RPC, called with a valid API token: each must be refused with
/// UNAUTHENTICATED.
async fn assert_peer_rpcs_refused(
    client: &mut RaftPeerClient<Channel>,
    token: &str,
    hash: [u8; 32],
    term: u64,
) {
    let (append, vote) = hostile_payloads(term);
    let outcomes = [
        (
            "FetchChunk",
            client.fetch_chunk(with_token(hash.to_vec(), token)).await,
        ),
        (
            "AppendEntries",
            client
                .append_entries(with_token(append.clone(), token))
                .await,
        ),
        ("Vote", client.vote(with_token(vote.clone(), token)).await),
        (
            "InstallSnapshot",
            client.install_snapshot(with_token(append, token)).await,
        ),
        (
            "ReadIndex",
            client.read_index(with_token(Vec::new(), token)).await,
        ),
        ("Hello", client.hello(with_token(Vec::new(), token)).await),
        (
            "StoreChunk",
            client
                .store_chunk(with_token([hash.to_vec(), b"x".to_vec()].concat(), token))
                .await,
        ),
    ];
    for (rpc, outcome) in outcomes {
        match outcome {
            Ok(reply) => panic!(
                "{rpc} answered without the peer certificate: {} bytes",
                reply.into_inner().data.len()
            ),
            Err(status) => assert_eq!(
                status.code(),
                tonic::Code::Unauthenticated,
                "{rpc}: {status:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_rpcs_need_the_peer_certificate_and_api_tokens_do_not_grant_it() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.list_buckets()).await;
    let (_, token) = client.create_token("hardening").await.unwrap();
    let client = Client::connect(cluster.endpoints())
        .unwrap()
        .with_token(&token)
        .unwrap();
    // One chunk: its hash is the object's ETag, which listings show to anyone.
    let secret_bytes = content("private object", 200 * 1024);
    let info = client
        .put_object_bytes(
            "private",
            "payroll.csv",
            Bytes::from(secret_bytes.clone()),
            &PutObjectOptions::default(),
        )
        .await
        .unwrap();
    let mut hash = [0u8; 32];
    hex::decode_to_slice(info.etag.trim_matches('"'), &mut hash)
        .expect("a one-chunk ETag is the chunk's BLAKE3");
    let leader_grpc = cluster
        .nodes
        .iter()
        .find(|n| n.id == leader)
        .unwrap()
        .grpc
        .clone();
    let term_before = client.node_status(&leader_grpc).await.unwrap().term;

    let secret = cairn::peer_tls::read_secret(&cluster.dir.path().join("cluster.secret")).unwrap();
    let ca = PeerTls::from_secret(&secret, "probe")
        .unwrap()
        .ca_pem()
        .to_string();
    let other_cluster =
        PeerTls::from_secret(b"another cluster's secret, 32 bytes+", "intruder").unwrap();
    for node in &cluster.nodes {
        // The client port: the peer service is not served there to anyone.
        let mut on_client_port = dial(&node.grpc, None).await.unwrap();
        assert_peer_rpcs_refused(&mut on_client_port, &token, hash, term_before).await;
        // The peer port in plaintext: not even a connection.
        match dial(&node.peer, None).await {
            Err(_) => {}
            Ok(mut client) => {
                let status = client
                    .fetch_chunk(with_token(hash.to_vec(), &token))
                    .await
                    .unwrap_err();
                assert_ne!(status.code(), tonic::Code::Ok);
            }
        }
        // The peer port over TLS, trusting the cluster's CA: with no certificate, or
        // with one from another cluster's CA, the handshake is refused, so no RPC
        // gets an answer.
        let anonymous_tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name(PEER_TLS_NAME);
        let intruder_tls = other_cluster
            .client_config()
            .ca_certificate(Certificate::from_pem(&ca));
        for (who, tls) in [
            ("no certificate", anonymous_tls),
            ("a foreign certificate", intruder_tls),
        ] {
            let Ok(mut caller) = dial(&node.peer, Some(tls)).await else {
                continue; // refused at connect
            };
            let (append, vote) = hostile_payloads(term_before);
            let outcomes = [
                caller.fetch_chunk(with_token(hash.to_vec(), &token)).await,
                caller.append_entries(with_token(append, &token)).await,
                caller.vote(with_token(vote, &token)).await,
            ];
            for outcome in outcomes {
                assert!(
                    outcome.is_err(),
                    "node {}: a caller with {who} got an answer",
                    node.id
                );
            }
        }
        // HTTP: the private object needs a token.
        let plain = request("GET", &node.http, "/o/private/payroll.csv", &[], b"").await;
        assert_eq!(plain.status, 401, "node {}", node.id);
        assert!(!plain
            .body
            .windows(64)
            .any(|w| secret_bytes.windows(64).next() == Some(w)));
    }
    // Nothing moved: same leader, same term, same bytes.
    let status = client.node_status(&leader_grpc).await.unwrap();
    assert_eq!((status.term, status.role.as_str()), (term_before, "leader"));
    let (_, read) = client.get_object("private", "payroll.csv").await.unwrap();
    assert_eq!(read, secret_bytes);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_payload_claiming_4_gib_is_refused_without_allocating_it() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.list_namespaces()).await;
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let term = cluster.status(leader).await.unwrap().term;
    // A real peer credential (the attacker here is a member gone rogue or buggy).
    let secret = cairn::peer_tls::read_secret(&cluster.dir.path().join("cluster.secret")).unwrap();
    let peer = PeerTls::from_secret(&secret, "test peer").unwrap();
    let mut rogue = dial(&follower.peer, Some(peer.client_config()))
        .await
        .unwrap();
    // An AppendEntries whose entry list claims 4 Gi elements: its bincode ends with
    // the list's u64 length and the `None` of leader_commit.
    let (mut append, _) = hostile_payloads(term);
    let at = append.len() - 9;
    append[at..at + 8].copy_from_slice(&(4u64 << 30).to_le_bytes());
    let rss_before = rss_kib(follower.pid());
    for _ in 0..50 {
        let status = rogue
            .append_entries(RaftPayload {
                data: append.clone().into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let rss_after = rss_kib(follower.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // The follower still follows the same leader.
    let status = cluster.status(follower.id).await.unwrap();
    assert_eq!((status.term, status.leader_id), (term, Some(leader)));
    client.create_namespace("after").await.unwrap();
}

/// Raises this process's open-file limit to `wanted`; false if the hard limit is lower.
fn raise_open_files(wanted: u64) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_max < wanted {
            return false;
        }
        limit.rlim_cur = limit.rlim_cur.max(wanted);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    true
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_connections_do_not_stop_a_node_serving_others() {
    // 8,000 on the gRPC port, 2,000 on the HTTP port.
    const IDLE: usize = 10_000;
    if !raise_open_files(IDLE as u64 + 2_000) {
        eprintln!(
            "SKIPPED: this machine's hard open-file limit is below {} descriptors",
            IDLE + 2_000
        );
        return;
    }
    let cluster = TestCluster::dev();
    cluster.wait_for_leader(WAIT).await;
    let node = &cluster.nodes[0];
    let client = cluster.client();
    eventually(WAIT, || client.list_namespaces()).await;
    client.create_namespace("busy").await.unwrap();
    let mut idle = Vec::with_capacity(IDLE);
    for (addr, count) in [(&node.grpc, IDLE * 4 / 5), (&node.http, IDLE / 5)] {
        for _ in 0..count {
            match tokio::net::TcpStream::connect(addr.as_str()).await {
                Ok(stream) => idle.push(stream),
                Err(e) => panic!("connect #{} to {addr}: {e}", idle.len()),
            }
        }
    }
    // Others are served while the idle connections are open.
    let started = Instant::now();
    for i in 0..20u32 {
        client
            .put("busy", &i.to_be_bytes(), b"value")
            .await
            .unwrap();
    }
    assert_eq!(
        client
            .get("busy", &7u32.to_be_bytes())
            .await
            .unwrap()
            .unwrap()
            .value,
        &b"value"[..]
    );
    let health = request("GET", &node.http, "/healthz", &[], b"").await;
    assert_eq!(health.status, 200);
    let served_in = started.elapsed();
    // The node holds at most its connection limits (1,024 per listener), not 10,000 sockets.
    let fds = open_fds(node.pid());
    assert!(fds < IDLE / 2, "the node holds {fds} descriptors");
    eprintln!("served 20 puts, a get and /healthz in {served_in:?} beside {} idle connections; the node holds {fds} descriptors", idle.len());
    drop(idle);
}

/// The files of a node's chunk store, largest first.
fn chunk_files(data_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data_dir.join("chunks"))
        .unwrap()
        .flatten()
        .flat_map(|shard| {
            std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| f.path())
        .filter(|p| p.file_name().is_some_and(|n| n.len() == 64))
        .collect();
    files.sort();
    files
}

fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn intact(path: &std::path::Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    std::fs::read(path).is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_flipped_on_disk_is_never_served_and_is_repaired() {
    let cluster = TestCluster::start(3, &["--scrub-pass-interval-ms", "1000"]);
    let leader = cluster.wait_for_leader(WAIT).await;
    let client = cluster.client();
    eventually(WAIT, || client.list_buckets()).await;
    let read_bytes = content("read me", 3 * 1024 * 1024 + 17);
    let cold_bytes = content("nobody reads me", 2 * 1024 * 1024 + 5);
    let options = PutObjectOptions::default();
    client
        .put_object_bytes(
            "private",
            "read.bin",
            Bytes::from(read_bytes.clone()),
            &options,
        )
        .await
        .unwrap();
    let victim = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let data_dir = victim.dir.join("data");
    common::chunks::wait_for_chunks(&data_dir, 4).await;
    // Damage every chunk of the object on one follower, then read it from there.
    let read_chunks = chunk_files(&data_dir);
    for file in &read_chunks {
        flip_a_byte(file);
    }
    let local = Client::connect([victim.grpc.clone()]).unwrap();
    let (_, read) = local.get_object("private", "read.bin").await.unwrap();
    assert!(
        read == read_bytes,
        "the damaged follower served wrong bytes"
    );
    for file in &read_chunks {
        assert!(intact(file), "{} was not rewritten", file.display());
    }

    // A chunk nobody reads: the scrubber finds and repairs it.
    client
        .put_object_bytes(
            "private",
            "cold.bin",
            Bytes::from(cold_bytes.clone()),
            &options,
        )
        .await
        .unwrap();
    common::chunks::wait_for_chunks(&data_dir, 7).await;
    let cold_chunks: Vec<_> = chunk_files(&data_dir)
        .into_iter()
        .filter(|f| !read_chunks.contains(f))
        .collect();
    assert_eq!(cold_chunks.len(), 3);
    flip_a_byte(&cold_chunks[1]);
    let before = cluster.status(victim.id).await.unwrap();
    let after = eventually(WAIT, || async {
        let status = cluster.status(victim.id).await.ok_or("no status")?;
        if status.scrub_chunks_repaired > before.scrub_chunks_repaired
            && status.scrub_passes > before.scrub_passes
            && intact(&cold_chunks[1])
        {
            Ok(status)
        } else {
            Err("not repaired yet")
        }
    })
    .await;
    assert!(after.scrub_chunks_damaged > before.scrub_chunks_damaged);
    assert!(after.scrub_chunks_checked > 0 && after.scrub_passes > 0);
    let (_, cold) = local.get_object("private", "cold.bin").await.unwrap();
    assert!(cold == cold_bytes);
}
