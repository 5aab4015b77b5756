//! The platform's storage REST protocol under `/api/v1`, so its official Python
//! SDK and `lep` CLI run against cairn unchanged (`docs/compat.md`).
//!
//! Thin handlers: parse, call a service (`api::service`, on `Route::Forward`, so
//! any node serves any route and followers hand writes to the leader), encode.
//! Every route needs `Authorization: Bearer <token>` with a cairn API token;
//! only the object URLs handed out (`/o/...`: public or presigned) are outside.
//! Errors are `{"code", "message"}` JSON with the status of `ApiError`; bodies
//! over a limit get 413 and keys over the limit 414, naming the limit.

pub mod body;
pub mod cluster;
pub mod import;
pub mod kv;
pub mod objects;
pub mod queue;
pub mod rsync;
pub mod storage;
pub mod workspace;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::http_objects::token;
use super::service::Services;
use crate::raft::Route;

/// The API base every route hangs from.
pub const BASE: &str = "/api/v1";

/// What the REST handlers share.
#[derive(Clone)]
pub struct Rest {
    pub services: Services,
    /// The workspace id clients log in with (`lep login -c ID:TOKEN`), also the
    /// rsync daemon's user.
    pub workspace_id: Arc<str>,
    /// The rsync daemon behind `lep storage upload --rsync`, when enabled.
    pub rsync: Option<Arc<rsync::RsyncEndpoint>>,
}

impl Rest {
    pub fn new(
        services: &Services,
        workspace_id: &str,
        rsync: Option<Arc<rsync::RsyncEndpoint>>,
    ) -> Self {
        Rest {
            services: services.with_route(Route::Forward),
            workspace_id: workspace_id.into(),
            rsync,
        }
    }
}

pub fn router(rest: Rest) -> Router {
    let api = Router::new()
        .route("/", get(workspace::base))
        .route("/tokens", get(workspace::tokens))
        .route("/workspace", get(workspace::info))
        .merge(storage::routes())
        .merge(cluster::routes())
        .merge(objects::routes())
        .merge(kv::routes())
        .merge(queue::routes())
        .merge(rsync::routes())
        .merge(import::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(rest.clone(), require_token))
        .with_state(rest);
    // `/api/v1` itself answers like `/api/v1/` (the 0.25+ login probe).
    Router::new().nest(BASE, api)
}

/// Every REST route needs a valid token, even while the cluster has none (then
/// nothing is reachable here: create one with `cairn token create`).
async fn require_token(State(rest): State<Rest>, request: Request, next: Next) -> Response {
    let checked = match token(request.headers()) {
        None => Err(ApiError::Unauthenticated(
            "a token is required: Authorization: Bearer <token> (create one with `cairn token create`)"
                .into(),
        )),
        Some(t) => rest.services.auth.check_required_fresh(Some(t)).await,
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(e) => {
            let drained = drain_refused(request.into_body()).await;
            let mut response = e.into_response();
            if !drained {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            response
        }
    }
}

/// A refused request's body is read, up to this much and for this long, so
/// the connection can serve the client's next request (clients that keep
/// connections alive send the body after the head and do not wait for a
/// `100 Continue`); past either bound the refusal says `Connection: close`.
const REFUSED_BODY_DRAIN_BYTES_MAX: usize = 1024 * 1024;
const REFUSED_BODY_DRAIN_MS_MAX: u64 = 2_000;

/// Whether the whole body was read within the bounds.
async fn drain_refused(body: axum::body::Body) -> bool {
    use futures::StreamExt;
    let mut pieces = body.into_data_stream();
    let mut read = 0usize;
    let all = async {
        while let Some(piece) = pieces.next().await {
            match piece {
                Ok(piece) => read += piece.len(),
                Err(_) => return false,
            }
            if read > REFUSED_BODY_DRAIN_BYTES_MAX {
                return false;
            }
        }
        true
    };
    let wait = std::time::Duration::from_millis(REFUSED_BODY_DRAIN_MS_MAX);
    tokio::time::timeout(wait, all).await.unwrap_or(false)
}

async fn not_found(request: Request) -> ApiError {
    crate::state::Error::NotFound {
        what: format!("route {} {}", request.method(), request.uri().path()),
    }
    .into()
}
