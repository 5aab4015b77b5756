//! The transport-neutral services every front calls: `kv`, `queue`, `object`,
//! `fs` and `import` (S3 into a file system). They validate, write through
//! Raft, and read after the requested barrier; the gRPC handlers (`api::grpc`)
//! and the HTTP routes (`api::http*`, `api::rest`) only parse, call them and
//! encode.
//!
//! Each service carries a [`Route`]: gRPC writes go to the leader only
//! (clients follow the `NotLeader` hint), REST writes are forwarded to the
//! leader by whichever node received them.

pub mod fs;
pub mod import;
pub mod kv;
pub mod object;
pub mod queue;

use std::sync::Arc;

use super::auth::Auth;
use crate::config::Config;
use crate::raft::{Node, Route};

/// What the handlers of one node share: the node, token checks and the services.
#[derive(Clone)]
pub struct Services {
    pub node: Arc<Node>,
    pub auth: Auth,
    pub kv: kv::KvService,
    pub queue: queue::QueueService,
    pub object: object::ObjectService,
    pub fs: fs::FsApi,
    /// This node's import jobs (shared by every route: they live in memory).
    pub import: import::ImportService,
    /// What `/metrics` keeps between scrapes, and whether it needs a token.
    pub metrics: Arc<super::metrics::Exporter>,
}

impl Services {
    /// The services of `node`, writing on the leader route. `node_token` is the
    /// token of the node's own helper processes (`peer_tls::node_token`).
    pub fn new(node: Arc<Node>, config: &Config, node_token: Option<&str>) -> Self {
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.http_addr)
        });
        // One budget for all uploads of this node, objects and files alike.
        let uploads = object::upload_budget();
        let local = fs::local::LocalFs::open(config.local_dir()).unwrap_or_else(|e| {
            tracing::error!(dir = %config.local_dir().display(), error = %e, "local storage unavailable");
            fs::local::LocalFs::unavailable(config.local_dir())
        });
        let fs = fs::FsApi::new(node.clone(), uploads.clone(), local);
        Services {
            auth: Auth::new(node.clone(), &config.tokens, node_token),
            kv: kv::KvService::new(node.clone(), Route::Leader),
            queue: queue::QueueService::new(node.clone(), Route::Leader),
            object: object::ObjectService::new(
                node.clone(),
                uploads.clone(),
                &public_url,
                config.presign_expires_s_max,
            ),
            import: import::ImportService::new(&fs),
            metrics: Arc::new(super::metrics::Exporter::new(config.metrics_public)),
            fs,
            node,
        }
    }

    /// The same services with writes on `route`.
    pub fn with_route(&self, route: Route) -> Self {
        Services {
            node: self.node.clone(),
            auth: self.auth.clone(),
            kv: kv::KvService::new(self.node.clone(), route),
            queue: queue::QueueService::new(self.node.clone(), route),
            object: self.object.with_route(route),
            fs: self.fs.with_route(route),
            import: self.import.clone(),
            metrics: self.metrics.clone(),
        }
    }
}
