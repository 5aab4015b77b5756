//! TLS on every listener of a 3-node cluster: the SDK and the CLI with `--ca`,
//! HTTP with curl and the CA, presigned URLs that are `https`; plaintext clients
//! refused on the same ports.
//! Method: a CA and a node certificate (SAN 127.0.0.1, localhost) made with rcgen
//! in the test; real server processes; curl for HTTP.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cairn::client::{Client, PutObjectOptions};
use common::{content, eventually, TestCluster, CAIRN};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const WAIT: Duration = Duration::from_secs(30);

/// Writes ca.pem, node.pem and node.key into `dir`.
fn make_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: a leaf whose issuer name equals its subject looks self-signed.
    ca.distinguished_name
        .push(DnType::CommonName, "cairn test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let node_key = KeyPair::generate().unwrap();
    let mut node =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    node.distinguished_name
        .push(DnType::CommonName, "cairn test node");
    let node = node.signed_by(&node_key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("node.pem"), node.pem()).unwrap();
    std::fs::write(dir.join("node.key"), node_key.serialize_pem()).unwrap();
}

fn curl(args: &[&str]) -> (bool, Vec<u8>) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (output.status.success(), output.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_listener_speaks_tls_and_plaintext_is_refused() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let path = |name: &str| certs.path().join(name).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("node.pem"), path("node.key"));
    let cluster = TestCluster::start(3, &["--tls-cert", &cert, "--tls-key", &key]);
    let ca_pem = std::fs::read(&ca).unwrap();
    let client = Client::connect(cluster.endpoints())
        .unwrap()
        .with_ca(&ca_pem);

    // The SDK: the cluster forms (peers over their own mutual TLS) and answers.
    eventually(WAIT, || client.list_namespaces()).await;
    client.create_namespace("tls").await.unwrap();
    client.put("tls", b"k", b"over TLS").await.unwrap();
    let value = client.get("tls", b"k").await.unwrap().unwrap();
    assert_eq!(&value.value[..], b"over TLS");
    let object = content("tls object", 1_500_000);
    client
        .put_object_bytes(
            "private",
            "o.bin",
            Bytes::from(object.clone()),
            &PutObjectOptions::default(),
        )
        .await
        .unwrap();
    for node in &cluster.nodes {
        let one = Client::connect([node.grpc.clone()])
            .unwrap()
            .with_ca(&ca_pem);
        let status = one.node_status(&node.grpc).await.unwrap();
        assert_eq!(status.members.len(), 3);
    }

    // The CLI with --ca.
    let endpoints = cluster.endpoints().join(",");
    let cli = Command::new(CAIRN)
        .args([
            "--ca",
            &ca,
            "--endpoints",
            &endpoints,
            "kv",
            "get",
            "tls",
            "k",
        ])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(cli.stdout, b"over TLS");

    // HTTP with curl and the CA; a presigned URL is https and works without a token.
    let http = &cluster.nodes[0].http;
    let (ok, body) = curl(&["--cacert", &ca, &format!("https://{http}/healthz")]);
    assert!(ok && body == b"ok", "{}", String::from_utf8_lossy(&body));
    let (url, _) = client.presign("private", "o.bin", "GET", 0).await.unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let (ok, body) = curl(&["--cacert", &ca, &url]);
    assert!(
        ok && body == object,
        "presigned download: {} bytes",
        body.len()
    );

    // Plaintext is refused: the SDK without the CA, curl over http, curl without the CA.
    let plain = Client::connect([cluster.nodes[0].grpc.clone()])
        .unwrap()
        .with_call_timeout(Duration::from_secs(3));
    assert!(plain.get("tls", b"k").await.is_err());
    let (ok, _) = curl(&[&format!("http://{http}/healthz")]);
    assert!(!ok, "plain HTTP answered on the TLS port");
    let (ok, _) = curl(&[&format!("https://{http}/healthz")]);
    assert!(!ok, "curl trusted the node without the CA");
}
