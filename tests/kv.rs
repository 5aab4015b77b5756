//! Key-value semantics on a single `--dev` node: namespaces, CAS, TTL, listing,
//! limits at their exact edges, and exactly-once replay of a retried write.
//! Method: a real server process driven through the SDK and, for the retry test,
//! raw gRPC requests that carry a chosen session tag.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Error, ListOptions, PutOptions, ReadConsistency};
use cairn::proto::v1::{self, kv_client::KvClient};
use common::{eventually, TestCluster};

const KEY_MAX: usize = 32 * 1024;
const VALUE_MAX: usize = 256 * 1024;

async fn dev_cluster() -> TestCluster {
    let cluster = TestCluster::dev();
    let client = cluster.client();
    eventually(Duration::from_secs(30), || client.list_namespaces()).await;
    cluster
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_are_created_once_listed_and_deleted_with_their_keys() {
    let cluster = dev_cluster().await;
    let client = cluster.client();
    client.create_namespace("app").await.unwrap();
    assert!(matches!(
        client.create_namespace("app").await,
        Err(Error::AlreadyExists(_))
    ));
    client.put("app", b"k", b"v").await.unwrap();
    let names: Vec<_> = client
        .list_namespaces()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, vec!["app"]);
    client.delete_namespace("app").await.unwrap();
    assert!(matches!(
        client.get("app", b"k").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        client.delete_namespace("app").await,
        Err(Error::NotFound(_))
    ));
    client.create_namespace("app").await.unwrap();
    assert_eq!(
        client.get("app", b"k").await.unwrap(),
        None,
        "a re-created namespace starts empty"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_delete_and_versions_grow() {
    let cluster = dev_cluster().await;
    let client = cluster.client();
    client.create_namespace("ns").await.unwrap();
    let v1 = client.put("ns", b"k", b"one").await.unwrap();
    let v2 = client.put("ns", b"k", b"two").await.unwrap();
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    let got = client.get("ns", b"k").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"two"[..], v2));
    let stale = client
        .get_with("ns", b"k", ReadConsistency::Stale)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stale.value.as_ref(), b"two");
    assert!(client.delete("ns", b"k").await.unwrap());
    assert!(
        !client.delete("ns", b"k").await.unwrap(),
        "delete is idempotent"
    );
    assert_eq!(client.get("ns", b"k").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_and_swap_and_put_if_absent() {
    let cluster = dev_cluster().await;
    let client = cluster.client();
    client.create_namespace("ns").await.unwrap();
    let v1 = client
        .put_with("ns", b"k", b"a", PutOptions::if_absent())
        .await
        .unwrap();
    let again = client
        .put_with("ns", b"k", b"b", PutOptions::if_absent())
        .await;
    assert!(matches!(again, Err(Error::VersionMismatch(_))), "{again:?}");
    let v2 = client
        .put_with("ns", b"k", b"c", PutOptions::if_version(v1))
        .await
        .unwrap();
    let stale_cas = client
        .put_with("ns", b"k", b"d", PutOptions::if_version(v1))
        .await;
    assert!(
        matches!(stale_cas, Err(Error::VersionMismatch(_))),
        "{stale_cas:?}"
    );
    let got = client.get("ns", b"k").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"c"[..], v2));
}

#[tokio::test(flavor = "multi_thread")]
async fn ttl_hides_a_key_once_expired_and_the_sweeper_purges_it() {
    let cluster = dev_cluster().await;
    let client = cluster.client();
    client.create_namespace("ns").await.unwrap();
    client
        .put_with(
            "ns",
            b"short",
            b"v",
            PutOptions::ttl(Duration::from_millis(800)),
        )
        .await
        .unwrap();
    client.put("ns", b"forever", b"v").await.unwrap();
    let live = client.get("ns", b"short").await.unwrap().unwrap();
    assert!(live.expires_at_ms.is_some());
    eventually(Duration::from_secs(10), || async {
        match client.get("ns", b"short").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let keys = client
        .list_keys("ns", &ListOptions::default())
        .await
        .unwrap()
        .keys;
    assert_eq!(keys, vec![Bytes::from_static(b"forever")]);
    // An expired key counts as absent for put-if-absent.
    client
        .put_with("ns", b"short", b"again", PutOptions::if_absent())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn list_keys_pages_with_prefix_limit_and_cursor() {
    let cluster = dev_cluster().await;
    let client = cluster.client();
    client.create_namespace("ns").await.unwrap();
    for i in 0..25 {
        client
            .put("ns", format!("a/{i:02}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    client.put("ns", b"b/0", b"v").await.unwrap();
    let mut options = ListOptions {
        prefix: b"a/".to_vec(),
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.list_keys("ns", &options).await.unwrap();
        pages += 1;
        seen.extend(
            page.keys
                .iter()
                .map(|k| String::from_utf8(k.to_vec()).unwrap()),
        );
        match page.next_cursor {
            Some(cursor) => options.cursor = cursor,
            None => break,
        }
    }
    let expected: Vec<_> = (0..25).map(|i| format!("a/{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_accept_the_edge_and_reject_one_byte_more_without_changes() {
    let cluster = dev_cluster().await;
    let client = cluster.client();
    client.create_namespace("ns").await.unwrap();
    let key_max = vec![b'k'; KEY_MAX];
    client.put("ns", &key_max, b"v").await.unwrap();
    let mut key_over = key_max.clone();
    key_over.push(b'k');
    match client.put("ns", &key_over, b"v").await {
        Err(Error::LimitExceeded {
            field,
            limit,
            message,
        }) => {
            assert_eq!((field.as_str(), limit), ("key", KEY_MAX as u64));
            assert!(message.contains("32768"), "{message}");
        }
        other => panic!("expected a key limit error, got {other:?}"),
    }
    let value_max = vec![7u8; VALUE_MAX];
    let version = client.put("ns", b"big", &value_max).await.unwrap();
    let value_over = vec![8u8; VALUE_MAX + 1];
    match client.put("ns", b"big", &value_over).await {
        Err(Error::LimitExceeded { field, limit, .. }) => {
            assert_eq!((field.as_str(), limit), ("value", VALUE_MAX as u64))
        }
        other => panic!("expected a value limit error, got {other:?}"),
    }
    let stored = client.get("ns", b"big").await.unwrap().unwrap();
    assert_eq!(
        (stored.value.len(), stored.version),
        (VALUE_MAX, version),
        "the rejected put changed nothing"
    );
    let name_max = "n".repeat(128);
    client.create_namespace(&name_max).await.unwrap();
    let name_over = "n".repeat(129);
    assert!(matches!(
        client.create_namespace(&name_over).await,
        Err(Error::LimitExceeded { .. })
    ));
    assert!(matches!(
        client.create_namespace("bad/name").await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        client.put("ns", b"", b"v").await,
        Err(Error::InvalidArgument { .. })
    ));
}

fn tagged_put(seq: u64, value: &str) -> v1::PutRequest {
    v1::PutRequest {
        session: Some(v1::Session {
            client_id: 0xC0FFEE,
            seq,
            lowest_unanswered_seq: seq,
        }),
        namespace: "ns".into(),
        key: Bytes::from_static(b"once"),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ttl_ms: 0,
        condition: Some(v1::put_request::Condition::IfAbsent(true)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_with_the_same_session_seq_takes_effect_once() {
    let cluster = dev_cluster().await;
    cluster.client().create_namespace("ns").await.unwrap();
    let mut raw = KvClient::connect(format!("http://{}", cluster.nodes[0].grpc))
        .await
        .unwrap();
    let first = raw.put(tagged_put(1, "first")).await.unwrap().into_inner();
    // The same (client_id, seq) again: a put-if-absent would now fail, but the
    // retry is answered from the session table with the first result.
    let retry = raw.put(tagged_put(1, "first")).await.unwrap().into_inner();
    assert_eq!(
        retry.version, first.version,
        "the retry is answered with the first result"
    );
    // A new seq is a new write: the key now exists.
    let status = raw.put(tagged_put(2, "second")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let stored = cluster.client().get("ns", b"once").await.unwrap().unwrap();
    assert_eq!(
        (stored.value.as_ref(), stored.version),
        (&b"first"[..], first.version)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_errors_print_one_line_and_exit_non_zero() {
    let cluster = dev_cluster().await;
    let endpoint = cluster.nodes[0].grpc.clone();
    let output = std::process::Command::new(common::CAIRN)
        .args(["kv", "get", "missing", "key", "--endpoints", &endpoint])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    let ok = std::process::Command::new(common::CAIRN)
        .args(["kv", "create", "cli", "--endpoints", &endpoint])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
