//! Objects over plain HTTP: public reads without a token, private reads with a
//! token or a presigned URL, presigned URLs that expire and break when any part is
//! altered, ranges and headers, API tokens on gRPC and HTTP, and PUTs sent to a
//! follower forwarded to the leader.
//! Method: real server processes; raw HTTP/1.1 requests (tests/common/http.rs).

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Client, PutObjectOptions};
use common::http::request;
use common::{eventually, TestCluster};

const ELECTION_WAIT: Duration = Duration::from_secs(30);

fn path_and_query(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("absolute http URL");
    rest[rest.find('/').expect("has a path")..].to_string()
}

/// Replaces the first occurrence of `from` in the URL's path-and-query.
fn altered(url: &str, from: &str, to: &str) -> String {
    let path = path_and_query(url);
    assert!(path.contains(from), "{path} has no {from}");
    path.replacen(from, to, 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn presigned_urls_public_buckets_and_tokens() {
    let cluster = TestCluster::dev();
    cluster.wait_for_leader(ELECTION_WAIT).await;
    let http = cluster.nodes[0].http.clone();
    let client = cluster.client();
    eventually(ELECTION_WAIT, || client.list_buckets()).await;
    let secret = Bytes::from_static(b"private bytes 0123456789");
    let options = PutObjectOptions {
        content_type: "text/plain".into(),
        ..Default::default()
    };
    client
        .put_object_bytes("private", "docs/a b.txt", secret.clone(), &options)
        .await
        .unwrap();
    client
        .put_object_bytes(
            "public",
            "hello.txt",
            Bytes::from_static(b"hi all"),
            &options,
        )
        .await
        .unwrap();

    // Public: 200 without a token; private: 401 without one.
    let public = request("GET", &http, "/o/public/hello.txt", &[], b"").await;
    assert_eq!(
        (public.status, public.body.as_slice()),
        (200, &b"hi all"[..])
    );
    let private = request("GET", &http, "/o/private/docs/a%20b.txt", &[], b"").await;
    assert_eq!(private.status, 401, "{:?}", private.json());
    assert_eq!(private.json()["code"], "unauthenticated");
    let wrong = [("Authorization", "Bearer not-a-token-at-all")];
    assert_eq!(
        request("GET", &http, "/o/private/docs/a%20b.txt", &wrong, b"")
            .await
            .status,
        401
    );

    // Presigned GET: works without a token, with the right headers and ranges.
    let (url, _) = client
        .presign("private", "docs/a b.txt", "GET", 3)
        .await
        .unwrap();
    let got = request("GET", &http, &url, &[], b"").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, secret);
    assert_eq!(got.header("content-length"), Some("24"));
    assert_eq!(got.header("content-type"), Some("text/plain"));
    let etag = format!("\"{}\"", blake3::hash(&secret).to_hex());
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    assert!(got
        .header("last-modified")
        .is_some_and(|v| v.ends_with("GMT")));
    let ranged = request("GET", &http, &url, &[("Range", "bytes=8-12")], b"").await;
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, b"bytes");
    assert_eq!(ranged.header("content-range"), Some("bytes 8-12/24"));
    let head = request("HEAD", &http, &url, &[], b"").await;
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("24"))
    );
    assert!(head.body.is_empty());
    let cached = request("GET", &http, &url, &[("If-None-Match", etag.as_str())], b"").await;
    assert_eq!(cached.status, 304);
    // Every altered part is refused with 403.
    let signature_start = url.find("signature=").unwrap() + "signature=".len();
    let flipped = if &url[signature_start..signature_start + 1] == "0" {
        "1"
    } else {
        "0"
    };
    let mut bad_signature = path_and_query(&url);
    let at = bad_signature.find("signature=").unwrap() + "signature=".len();
    bad_signature.replace_range(at..at + 1, flipped);
    for tampered in [
        bad_signature,
        altered(&url, "a%20b", "a%20c"),
        altered(&url, "/o/private/", "/o/public/"),
        altered(&url, "expires=", "expires=1"),
    ] {
        let refused = request("GET", &http, &tampered, &[], b"").await;
        assert_eq!(refused.status, 403, "{tampered}: {:?}", refused.json());
    }
    // A presigned PUT cannot be used to read, nor a GET to write.
    let put_body = b"written through a presigned PUT";
    let (put_url, _) = client
        .presign("private", "up.bin", "PUT", 60)
        .await
        .unwrap();
    assert_eq!(request("GET", &http, &put_url, &[], b"").await.status, 403);
    assert_eq!(request("PUT", &http, &url, &[], b"x").await.status, 403);
    let stored = request("PUT", &http, &put_url, &[], put_body).await;
    assert_eq!(stored.status, 200, "{:?}", stored.json());
    assert_eq!(
        client.get_object("private", "up.bin").await.unwrap().1,
        put_body
    );
    // A presigned URL for a missing object answers 404.
    let (missing, _) = client.presign("private", "nope", "GET", 60).await.unwrap();
    assert_eq!(request("GET", &http, &missing, &[], b"").await.status, 404);
    // After expiry: 403.
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    let expired = request("GET", &http, &url, &[], b"").await;
    assert_eq!(expired.status, 403);
    assert!(expired.json()["message"]
        .as_str()
        .unwrap()
        .contains("expired"));

    // Tokens: once one exists, gRPC calls need it; HTTP private reads accept it.
    let (id, token) = client.create_token("ci").await.unwrap();
    let anonymous = Client::connect([cluster.nodes[0].grpc.clone()]).unwrap();
    let refused = anonymous.list_buckets().await.unwrap_err();
    assert_eq!(refused.code(), "unauthenticated");
    let authed = Client::connect([cluster.nodes[0].grpc.clone()])
        .unwrap()
        .with_token(&token)
        .unwrap();
    assert_eq!(authed.list_tokens().await.unwrap().len(), 1);
    let bearer = format!("Bearer {token}");
    let with_token = [("Authorization", bearer.as_str())];
    let read = request("GET", &http, "/o/private/docs/a%20b.txt", &with_token, b"").await;
    assert_eq!((read.status, read.body), (200, secret.to_vec()));
    assert!(authed.revoke_token(id).await.unwrap());
    let after_revoke = request("GET", &http, "/o/private/docs/a%20b.txt", &with_token, b"").await;
    assert_eq!(after_revoke.status, 401);
    // With no token left the cluster is open again.
    anonymous.list_buckets().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_serves_reads_puts_and_deletes_itself() {
    let cluster = TestCluster::start(3, &[]);
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await;
    let client = cluster.client();
    eventually(ELECTION_WAIT, || client.list_buckets()).await;
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap();
    let (url, _) = client
        .presign("public", "via-follower", "PUT", 60)
        .await
        .unwrap();
    // The follower forwards the writes to the leader: no redirect, which HTTP
    // clients that do not resend bodies would turn into a lost upload.
    let path = path_and_query(&url);
    let stored = request("PUT", &follower.http, &path, &[], b"payload").await;
    assert_eq!(
        stored.status,
        200,
        "{}",
        String::from_utf8_lossy(&stored.body)
    );
    // Acknowledged means committed: the leader's state has it at once.
    let (_, on_leader) = client.get_object("public", "via-follower").await.unwrap();
    assert_eq!(on_leader, b"payload");
    let read = request("GET", &follower.http, "/o/public/via-follower", &[], b"").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, b"payload");
    // Deleting takes a token even from a public bucket and an open cluster.
    let refused = request("DELETE", &follower.http, "/o/public/via-follower", &[], b"").await;
    assert_eq!(refused.status, 401);
    let kept = request("GET", &follower.http, "/o/public/via-follower", &[], b"").await;
    assert_eq!(kept.body, b"payload");
}
