//! The HTTP listener's serve loop: admission (`admission`), optional TLS, and
//! HTTP/1 with bounded headers and a header read timeout, so a slow or silent
//! client (slowloris) holds a connection only briefly.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt;

use super::admission;
use crate::limits::{
    CONNECTION_FIRST_BYTE_TIMEOUT_MS, HTTP_BODY_IDLE_TIMEOUT_MS, HTTP_CONNECTIONS_MAX,
    HTTP_HEADER_BYTES_MAX, HTTP_HEADER_READ_TIMEOUT_MS, HTTP_REQUESTS_IN_FLIGHT_MAX,
    TLS_HANDSHAKE_TIMEOUT_MS,
};

/// Serves `router` on `listener` until `stop` changes; connections in flight then
/// finish their current request.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    let mut incoming = Box::pin(admission::admit(
        listener,
        HTTP_CONNECTIONS_MAX,
        Duration::from_millis(CONNECTION_FIRST_BYTE_TIMEOUT_MS),
    ));
    // Requests in flight across the listener; more wait for a slot.
    let router = router.layer(tower::limit::ConcurrencyLimitLayer::new(
        HTTP_REQUESTS_IN_FLIGHT_MAX,
    ));
    let mut accept_stop = stop.clone();
    loop {
        let conn = tokio::select! {
            conn = incoming.next() => conn,
            _ = accept_stop.changed() => return,
        };
        let Some(Ok(conn)) = conn else { return };
        let (router, tls, stop) = (router.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(conn, router, stop).await,
                Some(acceptor) => {
                    let handshake = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
                    match tokio::time::timeout(handshake, acceptor.accept(conn)).await {
                        Ok(Ok(tls)) => connection(tls, router, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<IO>(io: IO, router: axum::Router, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(
        router.map_request(|request: axum::http::Request<Incoming>| {
            request.map(axum::body::Body::new)
        }),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(HTTP_HEADER_READ_TIMEOUT_MS))
        .max_buf_size(HTTP_HEADER_BYTES_MAX);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The body of a request as a stream that fails when the client sends nothing for
/// `HTTP_BODY_IDLE_TIMEOUT_MS`: a slow or stalled upload (slowloris on the body)
/// holds its connection and upload slot only that long.
pub fn body_stream(
    body: axum::body::Body,
) -> impl futures::Stream<Item = Result<bytes::Bytes, String>> + Send + 'static {
    use futures::StreamExt;
    let idle = Duration::from_millis(HTTP_BODY_IDLE_TIMEOUT_MS);
    futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(piece))) => Some((Ok(piece), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(e.to_string()), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(format!(
                    "the client sent no body bytes for {HTTP_BODY_IDLE_TIMEOUT_MS} ms"
                )),
                None,
            )),
        }
    })
}
