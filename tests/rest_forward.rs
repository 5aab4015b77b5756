//! The REST front's writes through a follower: forwarded to the leader, and
//! still taken by the surviving nodes once the leader is killed. Every write
//! the REST layer acknowledged is readable afterwards through gRPC, from any
//! node.
//! Method: real server processes; raw HTTP/1.1 (tests/common/http.rs) as an
//! HTTP client that knows nothing of cairn would send it.

mod common;

use std::time::{Duration, Instant};

use common::http::request;
use common::{eventually, TestCluster};

const ELECTION_WAIT: Duration = Duration::from_secs(30);
/// Writes sent while the leader dies, one per 50 ms for about this long.
const WRITE_WINDOW: Duration = Duration::from_secs(8);

/// A KV put as the platform SDK sends it: multipart `value`.
fn put_body(value: &str) -> (String, Vec<u8>) {
    let boundary = "cairnboundary7f3a";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"value\"; filename=\"value\"\r\n\r\n{value}\r\n--{boundary}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_writes_through_a_follower_survive_the_leader_being_killed() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    let (_, token) = eventually(ELECTION_WAIT, || client.create_token("rest")).await;
    let client = client.with_token(&token).unwrap();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader)
        .unwrap()
        .http
        .clone();

    let created = request("POST", &follower, "/api/v1/kv/namespaces/fw", &auth, b"").await;
    assert_eq!(created.status, 200, "{:?}", created.json());

    let started = Instant::now();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut killed = false;
    let mut i = 0;
    while started.elapsed() < WRITE_WINDOW {
        if !killed && started.elapsed() > WRITE_WINDOW / 4 {
            cluster.node(leader).kill();
            killed = true;
        }
        let value = format!("value-{i}");
        let (content_type, body) = put_body(&value);
        let headers = [auth[0], ("content-type", content_type.as_str())];
        let path = format!("/api/v1/kv/namespaces/fw/values/k{i}");
        let put = request("POST", &follower, &path, &headers, &body).await;
        match put.status {
            200 => acknowledged.push((format!("k{i}"), value)),
            // No leader, or one that lost its quorum: refused, or of unknown
            // outcome (it may still commit); only acknowledged writes are checked.
            503 | 504 => refused += 1,
            other => panic!("unexpected status {other}: {:?}", put.json()),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed);
    eprintln!(
        "{} writes acknowledged, {refused} refused while the leader was killed",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty(), "no write was acknowledged");
    // The surviving pair elects a leader and the follower forwards to it (the
    // harness's status calls carry no token, so the put itself is the probe).
    let (content_type, body) = put_body("after");
    let headers = [auth[0], ("content-type", content_type.as_str())];
    let last = eventually(ELECTION_WAIT, || async {
        let r = request(
            "POST",
            &follower,
            "/api/v1/kv/namespaces/fw/values/after",
            &headers,
            &body,
        )
        .await;
        if r.status == 200 {
            Ok(r)
        } else {
            Err(r.status)
        }
    })
    .await;
    assert_eq!(last.status, 200);
    acknowledged.push(("after".into(), "after".into()));

    for (key, value) in &acknowledged {
        let got = client.get("fw", key.as_bytes()).await.unwrap();
        assert_eq!(
            got.map(|v| v.value.to_vec()),
            Some(value.as_bytes().to_vec()),
            "acknowledged {key} lost"
        );
        let path = format!("/api/v1/kv/namespaces/fw/values/{key}");
        let read = request("GET", &follower, &path, &auth, b"").await;
        assert_eq!((read.status, read.body.as_slice()), (200, value.as_bytes()));
    }
}
