//! What the client-facing handlers of one node share: the node, token checks, the
//! upload budget, and how to build object URLs.

use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::sync::Semaphore;

use super::auth::{self, Auth};
use super::error::ApiError;
use super::objects;
use crate::config::Config;
use crate::limits::PRESIGN_EXPIRES_S_DEFAULT;
use crate::raft::Node;
use crate::state;

/// Characters of an object key left as they are in a URL path (RFC 3986
/// unreserved, plus '/' so keys keep their shape).
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The URL path of an object on the HTTP port: `/o/<bucket>/<key>`.
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/o/{bucket}/{}", utf8_percent_encode(key, KEY_ESCAPES))
}

#[derive(Clone)]
pub struct Gateway {
    pub node: Arc<Node>,
    pub auth: Auth,
    /// Chunk bytes in flight for all uploads on this node.
    pub uploads: Arc<Semaphore>,
    /// Base of object URLs, without a trailing slash.
    pub public_url: String,
    pub presign_expires_s_max: u64,
    /// The file system service (replicated file systems and `local`).
    pub fs: super::fs::FsApi,
}

impl Gateway {
    pub fn new(node: Arc<Node>, config: &Config) -> Self {
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.http_addr)
        });
        let uploads = objects::upload_budget();
        let local = super::fs::local::LocalFs::open(config.local_dir()).unwrap_or_else(|e| {
            tracing::error!(dir = %config.local_dir().display(), error = %e, "local storage unavailable");
            super::fs::local::LocalFs::unavailable(config.local_dir())
        });
        Gateway {
            auth: Auth::new(node.clone(), &config.tokens),
            fs: super::fs::FsApi::new(node.clone(), uploads.clone(), local),
            node,
            uploads,
            public_url: public_url.trim_end_matches('/').to_string(),
            presign_expires_s_max: config.presign_expires_s_max,
        }
    }

    /// A URL that allows `method` on `bucket/key` for `expires_s` seconds (0 = the
    /// default 900 s). Returns the URL and its expiry in Unix seconds.
    pub async fn presign(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        expires_s: u64,
    ) -> Result<(String, u64), ApiError> {
        if method != "GET" && method != "PUT" {
            return Err(state::Error::invalid("method", "must be GET or PUT").into());
        }
        state::object::validate_key(key)?;
        let expires_s = if expires_s == 0 {
            PRESIGN_EXPIRES_S_DEFAULT
        } else {
            expires_s
        };
        if expires_s > self.presign_expires_s_max {
            let max = self.presign_expires_s_max;
            return Err(state::Error::limit("expires_s", max, expires_s, "seconds").into());
        }
        let secret = auth::presign_secret(&self.node).await?;
        let expires_at_s = crate::clock::now_ms() / 1000 + expires_s;
        let signature = auth::sign(&secret, method, bucket, key, expires_at_s);
        let url = format!(
            "{}{}?expires={expires_at_s}&signature={signature}",
            self.public_url,
            object_path(bucket, key)
        );
        Ok((url, expires_at_s))
    }

    /// The permanent URL of an object in a public bucket.
    pub fn public_object_url(&self, bucket: &str, key: &str) -> String {
        format!("{}{}", self.public_url, object_path(bucket, key))
    }
}
