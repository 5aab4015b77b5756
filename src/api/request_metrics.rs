//! Request counters and latency histograms for every listener
//! (`cairn_requests_total`, `cairn_request_duration_seconds`): a tower layer in
//! front of the gRPC servers and an axum middleware on the HTTP router.
//!
//! A request is counted when its response body ends (or is dropped), so a
//! streaming call's latency is its whole length and its code the one in its
//! trailers. Labels stay bounded whatever clients send:
//! - gRPC: `service` is one of cairn's gRPC service names, `method` the method
//!   of the path; a path naming no known service, or answered `UNIMPLEMENTED`
//!   (which tonic answers for every method a service lacks), is `_unknown`.
//!   `code` is the gRPC code's name (`OK`, `UNAVAILABLE`, …).
//! - HTTP: `service` is `http`, `method` the HTTP method and the route
//!   template that matched (`GET /o/{bucket}/{*key}`, never the raw path;
//!   `_unmatched` when no route did), `code` the HTTP status.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http;
use axum::middleware::Next;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::metrics::{self, RouteLabels};
use crate::proto::raft::raft_peer_server;
use crate::proto::v1::{
    cluster_server, fs_server, import_server, kv_server, object_server, queue_server, tokens_server,
};

/// The gRPC services a node serves; any other name in a path is `_unknown`.
const GRPC_SERVICES: [&str; 8] = [
    kv_server::SERVICE_NAME,
    queue_server::SERVICE_NAME,
    object_server::SERVICE_NAME,
    fs_server::SERVICE_NAME,
    import_server::SERVICE_NAME,
    tokens_server::SERVICE_NAME,
    cluster_server::SERVICE_NAME,
    raft_peer_server::SERVICE_NAME,
];
/// Longest method name taken from a path (cairn's longest is far shorter).
const METHOD_CHARS_MAX: usize = 64;
const UNKNOWN: &str = "_unknown";
/// gRPC's code for a method the service does not have.
const GRPC_UNIMPLEMENTED: i32 = 12;

/// gRPC code names by number (the canonical names of the gRPC spec).
const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// How a request ended, as far as the response told.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// gRPC: the `grpc-status` seen (headers or trailers), if any yet.
    Grpc(Option<i32>),
    /// HTTP: the response status.
    Http(u16),
}

/// A request not yet counted: counted once, when its body ends or is dropped.
struct Pending {
    route: RouteLabels,
    started: Instant,
    outcome: Outcome,
}

impl Pending {
    fn finish(mut self) {
        let code = match self.outcome {
            Outcome::Http(status) => status.to_string(),
            // The client left before the call ended.
            Outcome::Grpc(None) => "CANCELLED".to_string(),
            Outcome::Grpc(Some(code)) => {
                if code == GRPC_UNIMPLEMENTED {
                    // A method the service lacks: its name is the client's.
                    self.route.method = UNKNOWN.to_string();
                }
                grpc_code_name(code).to_string()
            }
        };
        metrics::global().record_request(self.route, code, self.started.elapsed());
    }
}

fn grpc_code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| GRPC_CODE_NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A response body that counts its request when it ends.
pub struct Metered<B> {
    inner: B,
    pending: Option<Pending>,
}

impl<B> Metered<B> {
    fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.finish();
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Metered<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(pending) = self.pending.as_mut() {
                        if let Outcome::Grpc(code) = &mut pending.outcome {
                            *code = grpc_status(trailers).or(*code);
                        }
                    }
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The labels of a gRPC request, from its path `/<service>/<method>`.
fn grpc_route(path: &str) -> RouteLabels {
    let unknown = || RouteLabels {
        service: UNKNOWN.to_string(),
        method: UNKNOWN.to_string(),
    };
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return unknown();
    };
    let known = GRPC_SERVICES.contains(&service);
    let plain = !method.is_empty()
        && method.len() <= METHOD_CHARS_MAX
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !known || !plain {
        return unknown();
    }
    RouteLabels {
        service: service.to_string(),
        method: method.to_string(),
    }
}

/// The tower layer for tonic servers (`Server::builder().layer(...)`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let route = grpc_route(request.uri().path());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let pending = Pending {
                route,
                started,
                // A trailers-only answer (most errors) carries the code here.
                outcome: Outcome::Grpc(grpc_status(response.headers())),
            };
            Ok(response.map(|inner| {
                tonic::body::Body::new(Metered {
                    inner,
                    pending: Some(pending),
                })
            }))
        })
    }
}

/// The HTTP method as a label: the standard ones by name, others `OTHER`.
fn http_method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The axum middleware (`Router::layer(axum::middleware::from_fn(http_metrics))`).
pub async fn http_metrics(request: Request, next: Next) -> axum::response::Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("_unmatched", MatchedPath::as_str);
    let route = RouteLabels {
        service: "http".to_string(),
        method: format!("{} {template}", http_method_label(request.method())),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let pending = Pending {
        route,
        started,
        outcome: Outcome::Http(response.status().as_u16()),
    };
    response.map(|inner| {
        axum::body::Body::new(Metered {
            inner,
            pending: Some(pending),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths_become_bounded_labels() {
        let route = grpc_route("/cairn.v1.Kv/Put");
        assert_eq!(
            (route.service.as_str(), route.method.as_str()),
            ("cairn.v1.Kv", "Put")
        );
        for path in [
            "/evil.Service/Put",
            "/cairn.v1.Kv/",
            "/cairn.v1.Kv/a/b",
            "/",
            "",
            "/x",
        ] {
            assert_eq!(grpc_route(path).service, UNKNOWN, "{path}");
        }
        let long = format!("/cairn.v1.Kv/{}", "a".repeat(METHOD_CHARS_MAX + 1));
        assert_eq!(grpc_route(&long).method, UNKNOWN);
    }

    #[test]
    fn grpc_codes_have_their_names() {
        assert_eq!(grpc_code_name(0), "OK");
        assert_eq!(grpc_code_name(14), "UNAVAILABLE");
        assert_eq!(grpc_code_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
        assert_eq!(grpc_code_name(-1), "UNKNOWN");
    }
}
