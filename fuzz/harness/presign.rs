//! Presigned URLs (`src/api/auth.rs` `verify`, `sign`; `src/api/service/object.rs`
//! `object_path`) through the extraction the object routes of
//! `src/api/http_objects.rs` do: an axum router on the same route
//! (`/o/{bucket}/{*key}`) with `Path<(String, String)>` and `Query<Presigned>`,
//! then `auth::verify` as `authorize` calls it.
//!
//! Input: `[mode][rest]`; `mode % 4`:
//! - 0: `rest` is the request target (path and query) of a `GET`;
//! - 1: `rest` is the query of `GET /o/private/a/b.txt?<rest>`;
//! - 2: `[expires u64 LE][now u64 LE][put? u8][bucket_len u8][bucket][key]`: a URL
//!   presigned as `ObjectService::presign` builds one (bucket and key must pass their
//!   validators) must come back through the router with the same bucket and key and
//!   verify if `now < expires`, else be refused as expired;
//! - 3: the same URL with one thing changed (the signature, the expiry, the method,
//!   the key), chosen by the byte after `mode`, must be refused.
//!
//! Shared by `fuzz/fuzz_targets/presign.rs` and `tests/fuzz_regressions.rs`.

#![allow(dead_code)] // each user takes what it needs

use std::cell::RefCell;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cairn::api::auth::{sign, verify, PresignError};
use cairn::api::http_objects::Presigned;
use cairn::api::service::object::object_path;
use serde::Deserialize;
use tower::ServiceExt;

const SECRET: [u8; 32] = [0x5a; 32];

/// The fields of `Presigned` (private there), with its serde attributes.
#[derive(Debug, Default, Deserialize)]
struct PresignedFields {
    expires: Option<u64>,
    signature: Option<String>,
}

/// What the route did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The router found no route (404) or refused the method.
    NoRoute(u16),
    PathRejected,
    QueryRejected,
    /// No `expires` and `signature`: `authorize` would go on to tokens.
    Unsigned,
    Verified {
        bucket: String,
        key: String,
        result: Result<(), PresignError>,
    },
}

thread_local! {
    static NOW_S: RefCell<u64> = const { RefCell::new(0) };
    static OUTCOME: RefCell<Option<Outcome>> = const { RefCell::new(None) };
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    static ROUTER: Router = Router::new().route(
        "/o/{bucket}/{*key}",
        get(handler).put(handler).head(handler),
    );
}

fn set(outcome: Outcome) {
    OUTCOME.with(|o| *o.borrow_mut() = Some(outcome));
}

async fn handler(
    method: axum::http::Method,
    path: Result<Path<(String, String)>, PathRejection>,
    presigned: Result<Query<Presigned>, QueryRejection>,
    fields: Result<Query<PresignedFields>, QueryRejection>,
) -> StatusCode {
    assert_eq!(
        presigned.is_ok(),
        fields.is_ok(),
        "PresignedFields must mirror Presigned"
    );
    let Ok(Path((bucket, key))) = path else {
        set(Outcome::PathRejected);
        return StatusCode::BAD_REQUEST;
    };
    let Ok(Query(fields)) = fields else {
        set(Outcome::QueryRejected);
        return StatusCode::BAD_REQUEST;
    };
    let (Some(expires), Some(signature)) = (fields.expires, fields.signature) else {
        set(Outcome::Unsigned);
        return StatusCode::OK;
    };
    let method = if method == axum::http::Method::PUT {
        "PUT"
    } else {
        "GET"
    };
    let now_s = NOW_S.with(|n| *n.borrow());
    let result = verify(&SECRET, (method, &bucket, &key), expires, &signature, now_s);
    let _ = result.as_ref().map_err(|e| e.to_string());
    set(Outcome::Verified {
        bucket,
        key,
        result,
    });
    StatusCode::OK
}

/// Sends `method target` through the router; `Err` if `target` is no URI.
pub fn request(method: &str, target: &[u8], now_s: u64) -> Result<Outcome, String> {
    let uri = axum::http::Uri::try_from(target).map_err(|e| format!("not a URI: {e}"))?;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .map_err(|e| format!("not a request: {e}"))?;
    NOW_S.with(|n| *n.borrow_mut() = now_s);
    OUTCOME.with(|o| *o.borrow_mut() = None);
    let router = ROUTER.with(Router::clone);
    let response = RUNTIME.with(|rt| rt.block_on(router.oneshot(request)));
    let status = response.expect("a router never fails").status();
    Ok(OUTCOME
        .with(|o| o.borrow_mut().take())
        .unwrap_or(Outcome::NoRoute(status.as_u16())))
}

/// A presigned URL's path and query, as `ObjectService::presign` builds it.
pub fn presigned_target(method: &str, bucket: &str, key: &str, expires: u64) -> String {
    let signature = sign(&SECRET, method, bucket, key, expires);
    format!(
        "{}?expires={expires}&signature={signature}",
        object_path(bucket, key)
    )
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..) {
        let n = src.len().min(8);
        word[..n].copy_from_slice(&src[..n]);
    }
    u64::from_le_bytes(word)
}

/// Round trip of a presigned URL, and (`tamper`) of a changed one.
fn round_trip(rest: &[u8], tamper: Option<u8>) -> Result<Outcome, String> {
    let (expires, now) = (u64_at(rest, 0), u64_at(rest, 8));
    let method = if rest.get(16).copied().unwrap_or(0) & 1 == 1 {
        "PUT"
    } else {
        "GET"
    };
    let bucket_len = rest.get(17).copied().unwrap_or(0) as usize;
    let names = rest.get(18..).unwrap_or(&[]);
    let (bucket, key) = names.split_at(bucket_len.min(names.len()));
    let bucket = std::str::from_utf8(bucket).map_err(|e| e.to_string())?;
    let key = std::str::from_utf8(key).map_err(|e| e.to_string())?;
    cairn::state::object::validate_bucket_name(bucket).map_err(|e| e.to_string())?;
    cairn::state::object::validate_key(key).map_err(|e| e.to_string())?;
    let target = presigned_target(method, bucket, key, expires);
    let Some(tamper) = tamper else {
        let outcome = request(method, target.as_bytes(), now)
            .unwrap_or_else(|e| panic!("a presigned URL {target:?} is refused: {e}"));
        let expected = if now < expires {
            Ok(())
        } else {
            Err(PresignError::Expired)
        };
        let wanted = Outcome::Verified {
            bucket: bucket.to_string(),
            key: key.to_string(),
            result: expected,
        };
        assert_eq!(outcome, wanted, "presigned {target:?}");
        return Ok(outcome);
    };
    let (method, target) = match tamper % 4 {
        0 => {
            // One hex digit of the signature, another value.
            let at = target.len() - 1 - (tamper as usize / 4) % 64;
            let mut bytes = target.into_bytes();
            let digit = bytes[at].to_ascii_lowercase();
            bytes[at] = if digit == b'0' { b'1' } else { b'0' };
            (method, String::from_utf8(bytes).expect("ASCII"))
        }
        1 => match expires.checked_add(1) {
            Some(later) => {
                let signature = sign(&SECRET, method, bucket, key, expires);
                let path = object_path(bucket, key);
                (
                    method,
                    format!("{path}?expires={later}&signature={signature}"),
                )
            }
            None => return Err("expires is the largest u64".into()),
        },
        2 => (if method == "GET" { "PUT" } else { "GET" }, target),
        _ => {
            let signature = sign(&SECRET, method, bucket, key, expires);
            let path = object_path(bucket, &format!("{key}x"));
            (
                method,
                format!("{path}?expires={expires}&signature={signature}"),
            )
        }
    };
    let outcome = request(method, target.as_bytes(), now)
        .unwrap_or_else(|e| panic!("a URL {target:?} is refused: {e}"));
    match &outcome {
        Outcome::Verified {
            result: Err(PresignError::BadSignature),
            ..
        } => Ok(outcome),
        other => panic!("a changed presigned URL {target:?} ({method}) gave {other:?}"),
    }
}

/// What the route made of the request, or `Err` if it is no request at all (or,
/// in modes 2 and 3, the bucket or key is one no URL is presigned for). Panics
/// only on a bug.
pub fn run(data: &[u8]) -> Result<Outcome, String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Err("empty input".into());
    };
    match mode % 4 {
        0 => request("GET", rest, 1_000),
        1 => {
            let mut target = b"/o/private/a/b.txt?".to_vec();
            target.extend_from_slice(rest);
            request("GET", &target, 1_000)
        }
        2 => round_trip(rest, None),
        _ => {
            let (&tamper, rest) = rest.split_first().ok_or("no tamper byte")?;
            round_trip(rest, Some(tamper))
        }
    }
}
