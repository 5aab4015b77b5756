//! Who may call: API tokens and presigned URLs.
//!
//! Tokens come from two places: the nodes' config files (`tokens`) and the
//! replicated token table (`cairn token create`). While neither holds a token the
//! cluster is open: every gRPC call is allowed, and private objects over HTTP are
//! reachable only through presigned URLs. Tokens are compared by their BLAKE3
//! hashes, so the table never holds a usable token.
//!
//! A presigned URL carries `expires` (Unix seconds) and `signature`, the
//! HMAC-SHA256 of `METHOD \n bucket \n key \n expires` under the cluster's
//! presigning secret, checked in constant time.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::chunk_ref::Hash;
use crate::raft::{Consistency, Node, Route};
use crate::state::auth::{self, AuthCommand, AuthResponse};
use crate::state::{ClientCommand, Command, Response};

use super::error::ApiError;

type HmacSha256 = Hmac<Sha256>;

/// The token checks of one node.
#[derive(Clone)]
pub struct Auth {
    node: Arc<Node>,
    /// Hashes of the tokens in this node's config file.
    configured: Arc<Vec<Hash>>,
    /// Hash of the node token (`peer_tls::node_token`): valid, but not a reason
    /// to close an open cluster.
    node_token: Option<Hash>,
}

pub fn token_hash(token: &str) -> Hash {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Auth {
    pub fn new(node: Arc<Node>, configured_tokens: &[String], node_token: Option<&str>) -> Self {
        Auth {
            node,
            configured: Arc::new(configured_tokens.iter().map(|t| token_hash(t)).collect()),
            node_token: node_token.map(token_hash),
        }
    }

    /// Whether any token exists, i.e. whether calls must present one.
    pub fn enabled(&self) -> Result<bool, ApiError> {
        Ok(!self.configured.is_empty()
            || auth::any_token(self.node.store.tree()).map_err(ApiError::from)?)
    }

    /// Whether `token` is a configured or stored token.
    pub fn valid(&self, token: &str) -> Result<bool, ApiError> {
        self.valid_hash(&token_hash(token))
    }

    /// Whether the token whose hash is `hash` is a configured, stored or node token.
    pub fn valid_hash(&self, hash: &Hash) -> Result<bool, ApiError> {
        // Hash equality leaks nothing useful about the token itself.
        Ok(self.configured.contains(hash)
            || self.node_token.as_ref() == Some(hash)
            || auth::token_known(self.node.store.tree(), hash).map_err(ApiError::from)?)
    }

    /// Allows a call that presents `token`, or any call while the cluster is open.
    pub fn check_call(&self, token: Option<&str>) -> Result<(), ApiError> {
        if !self.enabled()? {
            return Ok(());
        }
        match token {
            None => Err(ApiError::Unauthenticated(
                "a token is required: authorization: Bearer <token>".into(),
            )),
            Some(t) if self.valid(t)? => Ok(()),
            Some(_) => Err(ApiError::Unauthenticated("the token is not valid".into())),
        }
    }

    /// Like `check_call`, but a token is required even while the cluster is open
    /// (reading private objects over HTTP).
    pub fn check_required(&self, token: Option<&str>) -> Result<(), ApiError> {
        match token {
            Some(t) if self.valid(t)? => Ok(()),
            Some(_) => Err(ApiError::Unauthenticated("the token is not valid".into())),
            None => Err(ApiError::Unauthenticated(
                "this object is private: send authorization: Bearer <token> or use a presigned URL"
                    .into(),
            )),
        }
    }
}

impl Auth {
    /// `check_required`, but a token this node does not know yet is checked again
    /// after a read barrier: it may have just been created through the leader.
    pub async fn check_required_fresh(&self, token: Option<&str>) -> Result<(), ApiError> {
        match self.check_required(token) {
            Err(ApiError::Unauthenticated(_)) if token.is_some() => {
                self.node.read_barrier(Consistency::Linearizable).await?;
                self.check_required(token)
            }
            other => other,
        }
    }
}

/// The bearer token of a gRPC call, if it carries one.
fn call_token(request: &tonic::Request<()>) -> Option<&str> {
    bearer(
        request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
    )
}

/// The tonic interceptor that applies `Auth::check_call` to every client call.
pub fn interceptor(
    auth: Auth,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        auth.check_call(call_token(&request))?;
        Ok(request)
    }
}

/// Like [`interceptor`], but a valid token is required even while the cluster is
/// open (the admin service: a backup is every byte of the cluster).
pub fn token_required_interceptor(
    auth: Auth,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request: tonic::Request<()>| {
        match call_token(&request) {
        None => Err(ApiError::Unauthenticated(
            "admin calls need a token, even on a cluster without tokens: authorization: Bearer <token>"
                .into(),
        )
        .into()),
        token => {
            auth.check_required(token)?;
            Ok(request)
        }
    }
    }
}

/// The cluster's presigning secret, created through Raft the first time one is needed.
pub async fn presign_secret(node: &Node, route: Route) -> Result<[u8; 32], ApiError> {
    if let Some(secret) = auth::presign_secret(node.store.tree()).map_err(ApiError::from)? {
        return Ok(secret);
    }
    let command = ClientCommand {
        session: None,
        command: Command::Auth(AuthCommand::EnsurePresignSecret {
            secret: rand::random(),
        }),
    };
    match node.submit(command, route, false).await?.0? {
        Response::Auth(AuthResponse::PresignSecret(secret)) => Ok(secret),
        other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
    }
}

/// The presigning secret if one was created (verifying never creates one).
pub fn presign_secret_if_any(node: &Node) -> Result<Option<[u8; 32]>, ApiError> {
    auth::presign_secret(node.store.tree()).map_err(ApiError::from)
}

fn mac(secret: &[u8; 32], method: &str, bucket: &str, key: &str, expires_s: u64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(format!("{method}\n{bucket}\n{key}\n{expires_s}").as_bytes());
    mac
}

/// The hex signature of one method on one object until `expires_s`.
pub fn sign(secret: &[u8; 32], method: &str, bucket: &str, key: &str, expires_s: u64) -> String {
    hex::encode(
        mac(secret, method, bucket, key, expires_s)
            .finalize()
            .into_bytes(),
    )
}

/// Why a presigned URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    #[error("the presigned URL expired")]
    Expired,
    #[error("the presigned URL's signature does not match")]
    BadSignature,
}

/// Checks a presigned request (constant-time comparison of the signature).
pub fn verify(
    secret: &[u8; 32],
    request: (&str, &str, &str),
    expires_s: u64,
    signature_hex: &str,
    now_s: u64,
) -> Result<(), PresignError> {
    let (method, bucket, key) = request;
    let signature = hex::decode(signature_hex).map_err(|_| PresignError::BadSignature)?;
    mac(secret, method, bucket, key, expires_s)
        .verify_slice(&signature)
        .map_err(|_| PresignError::BadSignature)?;
    if now_s >= expires_s {
        return Err(PresignError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_part_and_expire() {
        let secret = [7u8; 32];
        let sig = sign(&secret, "GET", "private", "a/b.txt", 1_000);
        let ok = ("GET", "private", "a/b.txt");
        assert_eq!(verify(&secret, ok, 1_000, &sig, 999), Ok(()));
        assert_eq!(
            verify(&secret, ok, 1_000, &sig, 1_000),
            Err(PresignError::Expired)
        );
        let bad = PresignError::BadSignature;
        assert_eq!(
            verify(&secret, ("PUT", "private", "a/b.txt"), 1_000, &sig, 0),
            Err(bad.clone())
        );
        assert_eq!(
            verify(&secret, ("GET", "public", "a/b.txt"), 1_000, &sig, 0),
            Err(bad.clone())
        );
        assert_eq!(
            verify(&secret, ("GET", "private", "a/b.txT"), 1_000, &sig, 0),
            Err(bad.clone())
        );
        assert_eq!(verify(&secret, ok, 1_001, &sig, 0), Err(bad.clone()));
        assert_eq!(verify(&[8u8; 32], ok, 1_000, &sig, 0), Err(bad.clone()));
        assert_eq!(verify(&secret, ok, 1_000, "zz", 0), Err(bad));
    }

    #[test]
    fn bearer_parses_the_scheme_case_insensitively() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
