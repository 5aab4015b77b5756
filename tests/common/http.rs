//! A minimal HTTP/1.1 client for tests: one request per connection
//! (`Connection: close`), the whole response read into memory.
//!
//! The object routes are what is under test, so the client stays dumb on purpose:
//! it sends exactly the bytes given and reports exactly what came back.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased header names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `method target` to `addr` (`host:port`); `target` is a path with query or
/// an absolute `http://host:port/...` URL (the host part is then used as `addr`).
pub async fn request(
    method: &str,
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let (addr, path) = match target.strip_prefix("http://") {
        Some(rest) => {
            let slash = rest.find('/').unwrap_or(rest.len());
            (rest[..slash].to_string(), rest[slash..].to_string())
        }
        None => (addr.to_string(), target.to_string()),
    };
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("send head");
    stream.write_all(body).await.expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    parse(&raw)
}

fn parse(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// Polls `GET path` on `addr` with the bearer `token` until it answers 200
/// (the REST layer is up and this node has applied the token), at most `wait`.
pub async fn wait_for_ok(addr: &str, path: &str, token: &str, wait: std::time::Duration) {
    let bearer = format!("Bearer {token}");
    let deadline = std::time::Instant::now() + wait;
    loop {
        let got = request(
            "GET",
            addr,
            path,
            &[("Authorization", bearer.as_str())],
            b"",
        )
        .await;
        if got.status == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path} on {addr} still answers {} after {wait:?}: {}",
            got.status,
            String::from_utf8_lossy(&got.body)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
