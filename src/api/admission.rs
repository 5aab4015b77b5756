//! Admission on every listener: at most `limit` connections at once, and a
//! connection that has not sent a byte is the first to go.
//!
//! Each accepted connection waits (without a slot of the server's own) until its
//! first bytes arrive, for at most `first_byte_timeout`. When the listener is full,
//! the oldest connection still waiting is closed to make room; only when every
//! connection is busy is a new one refused. So a flood of idle connections (a
//! client that opens thousands and sends nothing) costs this node at most `limit`
//! file descriptors and never locks out a client that speaks at once. Connections
//! that did speak are bounded by `limit`; inside them the protocol layers bound
//! streams, headers and bodies.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Admitted connections handed to the protocol layer but not yet taken by it.
const HANDOFF_QUEUE_MAX: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

#[derive(Default)]
struct Slots {
    /// Connections that sent their first bytes and are still open.
    busy: usize,
    /// Connections waiting for their first bytes, oldest first, with the signal
    /// that closes them.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
    next_id: u64,
}

struct Shared {
    limit: usize,
    slots: Mutex<Slots>,
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection that holds one of its listener's slots until it is dropped.
pub struct Admitted {
    stream: TcpStream,
    shared: Arc<Shared>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut slots = self.shared.slots();
        assert!(slots.busy > 0, "a busy slot is released once");
        slots.busy -= 1;
    }
}

/// Accepts from `listener` until the returned stream is dropped, yielding the
/// connections admitted under `limit`.
pub fn admit(
    listener: TcpListener,
    limit: usize,
    first_byte_timeout: Duration,
) -> impl Stream<Item = io::Result<Admitted>> + Send + 'static {
    assert!(limit > 0, "a listener admits at least one connection");
    let (tx, rx) = mpsc::channel(HANDOFF_QUEUE_MAX);
    let shared = Arc::new(Shared {
        limit,
        slots: Mutex::new(Slots::default()),
    });
    tokio::spawn(accept_loop(listener, shared, first_byte_timeout, tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (Ok(conn), rx))
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    first_byte_timeout: Duration,
    tx: mpsc::Sender<Admitted>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tx.closed() => return, // the server stopped
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true); // small replies must not wait for delayed ACKs
        let (close_tx, close_rx) = oneshot::channel();
        let id = {
            let mut slots = shared.slots();
            if slots.busy + slots.waiting.len() >= shared.limit {
                match slots.waiting.pop_first() {
                    Some((_, close)) => {
                        let _ = close.send(()); // it may have just gone by itself
                    }
                    None => continue, // every slot busy: refuse (drop) this one
                }
            }
            let id = slots.next_id;
            slots.next_id += 1;
            slots.waiting.insert(id, close_tx);
            id
        };
        tokio::spawn(await_first_bytes(
            stream,
            id,
            shared.clone(),
            first_byte_timeout,
            close_rx,
            tx.clone(),
        ));
    }
}

async fn await_first_bytes(
    stream: TcpStream,
    id: u64,
    shared: Arc<Shared>,
    timeout: Duration,
    closed: oneshot::Receiver<()>,
    tx: mpsc::Sender<Admitted>,
) {
    let mut byte = [0u8; 1];
    let spoke = tokio::select! {
        peeked = tokio::time::timeout(timeout, stream.peek(&mut byte)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        _ = closed => false,
    };
    let admitted = {
        let mut slots = shared.slots();
        let still_waiting = slots.waiting.remove(&id).is_some();
        if spoke && still_waiting {
            slots.busy += 1;
            true
        } else {
            false
        }
    };
    if admitted {
        // On failure the server is gone and dropping the connection frees its slot.
        let _ = tx
            .send(Admitted {
                stream,
                shared: shared.clone(),
            })
            .await;
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn idle_connections_make_room_for_one_that_speaks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut admitted = Box::pin(admit(listener, 4, Duration::from_secs(30)));
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut speaker = TcpStream::connect(addr).await.unwrap();
        speaker.write_all(b"hello").await.unwrap();
        let conn = tokio::time::timeout(Duration::from_secs(5), admitted.next())
            .await
            .expect("the speaking connection is admitted")
            .unwrap()
            .unwrap();
        assert_eq!(
            conn.stream.peer_addr().unwrap(),
            speaker.local_addr().unwrap()
        );
        assert_eq!(conn.shared.slots().busy, 1);
        assert!(
            conn.shared.slots().waiting.len() <= 3,
            "idle ones were shed"
        );
        let shared = conn.shared.clone();
        drop(conn);
        assert_eq!(shared.slots().busy, 0);
    }
}
