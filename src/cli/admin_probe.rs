//! `cairn admin probe`: the health check of a container image that has no
//! shell and no curl: one plain HTTP GET to this machine's node, exit status 0
//! on a 2xx answer.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;

/// How long `probe` waits to connect, and then for the whole answer.
const PROBE_TIMEOUT_MS: u64 = 2_000;
/// The most of the answer `probe` reads (the status line is all it needs).
const PROBE_REPLY_BYTES_MAX: u64 = 4_096;

/// GETs `path` at `addr`, prints the status, and fails unless it is a 2xx.
pub fn run(addr: &str, path: &str) -> anyhow::Result<()> {
    let status = probe(addr, path)?;
    println!("{addr}{path}: {status}");
    anyhow::ensure!(
        (200..300).contains(&status),
        "{addr}{path} answered {status}"
    );
    Ok(())
}

/// The HTTP status code of `GET path` at `addr`.
fn probe(addr: &str, path: &str) -> anyhow::Result<u16> {
    anyhow::ensure!(path.starts_with('/'), "the path must start with /");
    let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream
        .take(PROBE_REPLY_BYTES_MAX)
        .read_to_end(&mut reply)
        .with_context(|| format!("reading the answer of {addr}"))?;
    parse_status(&reply).with_context(|| format!("{addr} did not answer with HTTP"))
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn parse_status(reply: &[u8]) -> Option<u16> {
    let line = reply.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_code_comes_from_the_status_line() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n\r\nok"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
