//! The S3-compatible source of an import (AWS S3, Cloudflare R2, MinIO, moto):
//! what the request names, and listing and reading it with `rust-s3`.
//!
//! Credentials live only in a [`Source`] (inside `rust-s3`'s `Bucket`, whose own
//! `Debug` redacts them) and in the [`SourceSpec`] the request carried, whose
//! `Debug` shows `<redacted>`. Neither is serialized, logged or kept after the
//! job ends. S3 error bodies are reduced to their `Code` and `Message`: AWS puts
//! the access key id and the string it signed into a `SignatureDoesNotMatch`
//! body, and none of that may reach a status or a log.
//!
//! Every request has a timeout (`IMPORT_REQUEST_MS_MAX`); one that fails for a
//! reason that may pass (no answer, 408, 429, 5xx) is tried again, up to
//! `IMPORT_REQUEST_ATTEMPTS_MAX` times with doubling backoff. `rust-s3`'s own
//! retry is turned off so that this loop is the only one.

use std::fmt;
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use s3::creds::Credentials;
use s3::{Bucket, Region};
use serde::Deserialize;

use super::{
    IMPORT_LIST_PAGE_KEYS_MAX, IMPORT_REQUEST_ATTEMPTS_MAX, IMPORT_REQUEST_MS_MAX,
    IMPORT_RETRY_BACKOFF_MS_MAX, IMPORT_RETRY_BACKOFF_MS_MIN, IMPORT_VALIDATE_MS_MAX,
};
use crate::api::error::ApiError;
use crate::raft::NodeError;
use crate::state;

/// The longest S3 error message kept (they are one sentence; a proxy's HTML
/// error page is not).
const SOURCE_MESSAGE_CHARS_MAX: usize = 300;

/// A secret string: deserialized from requests, never shown by `Debug`, never
/// serialized.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The source as a request names it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourceSpec {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub url: String,
    /// `https://…` (R2: `https://ACCOUNT.r2.cloudflarestorage.com`); empty or
    /// absent: AWS, `https://s3.REGION.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Empty or absent: `us-east-1`; R2 takes `auto`.
    #[serde(default)]
    pub region: Option<String>,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
}

/// The region signed with when the request names none.
pub const REGION_DEFAULT: &str = "us-east-1";

/// Bucket and prefix of an `s3://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    pub bucket: String,
    /// The key prefix as given (may be empty; not yet a directory prefix).
    pub prefix: String,
}

pub fn parse_url(url: &str) -> Result<SourceUrl, ApiError> {
    let invalid = |why: &str| state::Error::invalid("source.url", why.to_string());
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(invalid("must start with s3:// (s3://BUCKET or s3://BUCKET/PREFIX)").into());
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // Bucket names are 3-63 of a-z 0-9 . - on AWS and R2; older AWS buckets may
    // hold capitals and `_`, so only what a URL host or path cannot carry is refused.
    let bucket_ok = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
    if !bucket_ok {
        return Err(invalid("the bucket name must be letters, digits, '.', '-' or '_'").into());
    }
    Ok(SourceUrl {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// Why a request to the source failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The source answered with an HTTP error: its status, S3 code and message.
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// No usable answer: connection, TLS, timeout, a body cut short or unreadable.
    Transport(String),
    /// The object changed while it was being read.
    Changed(String),
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Status {
                status,
                code,
                message,
            } => match (code.is_empty(), message.is_empty()) {
                (true, true) => write!(f, "HTTP {status}"),
                (false, true) => write!(f, "HTTP {status} {code}"),
                (true, false) => write!(f, "HTTP {status}: {message}"),
                (false, false) => write!(f, "HTTP {status} {code}: {message}"),
            },
            SourceError::Transport(why) => write!(f, "no answer from the source: {why}"),
            SourceError::Changed(why) => write!(f, "the object changed while it was read: {why}"),
        }
    }
}

impl SourceError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            SourceError::Transport(_) => true,
            SourceError::Changed(_) => false,
        }
    }

    fn from_s3(e: s3::error::S3Error) -> Self {
        use s3::error::S3Error as E;
        match e {
            E::HttpFailWithBody(status, body) => SourceError::Status {
                status,
                code: xml_field(&body, "Code"),
                message: xml_field(&body, "Message"),
            },
            E::HttpFail => SourceError::Status {
                status: 0,
                code: String::new(),
                message: "a non-2xx answer".into(),
            },
            // Display of these carries no request headers (the signature) and no
            // response body; a reqwest error names the URL, which holds no secret.
            E::Reqwest(e) => SourceError::Transport(e.to_string()),
            E::SerdeXml(e) => SourceError::Transport(format!("an unreadable listing: {e}")),
            E::Io(e) => SourceError::Transport(e.to_string()),
            other => SourceError::Transport(other.to_string()),
        }
    }

    /// The error a start request gets when its first listing fails: the cause
    /// named, nothing imported.
    fn refusal(self, source: &Source) -> ApiError {
        let bucket = &source.bucket_name;
        match &self {
            SourceError::Status { status: 403, .. } => state::Error::invalid(
                "source.credentials",
                format!(
                    "the source refused the access key and secret ({self}); check both, \
                     and that they may list and read bucket {bucket:?}"
                ),
            )
            .into(),
            SourceError::Status { status: 404, .. } => state::Error::NotFound {
                what: format!("source bucket {bucket:?} ({self})"),
            }
            .into(),
            SourceError::Status {
                status: 301 | 307, ..
            } => state::Error::invalid(
                "source.region",
                format!(
                    "the source answered {self}: the bucket lives in another region or endpoint"
                ),
            )
            .into(),
            SourceError::Status { status: 400, .. } => state::Error::invalid(
                "source",
                format!(
                    "the source refused the listing ({self}); check the region and the endpoint"
                ),
            )
            .into(),
            SourceError::Status { .. } => NodeError::Unavailable(format!(
                "the source at {} failed the listing ({self}); try again",
                source.endpoint
            ))
            .into(),
            SourceError::Transport(_) | SourceError::Changed(_) => state::Error::invalid(
                "source.endpoint",
                format!(
                    "cannot list bucket {bucket:?} at {}: {self}",
                    source.endpoint
                ),
            )
            .into(),
        }
    }
}

/// The text of `<name>…</name>` in an S3 error body, unescaped and bounded;
/// empty when absent.
fn xml_field(body: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let Some(start) = body.find(&open).map(|i| i + open.len()) else {
        return String::new();
    };
    let end = body[start..].find(&close).map_or(body.len(), |i| start + i);
    let text = body[start..end]
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    text.chars().take(SOURCE_MESSAGE_CHARS_MAX).collect()
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size_bytes: u64,
    /// Without quotes; empty when the source sent none.
    pub etag: String,
    /// Unix time in nanoseconds, when the source's `LastModified` parses.
    pub mtime_ns: Option<i64>,
}

/// One page of a listing, and the token of the next one (`None`: the last).
#[derive(Debug, Clone)]
pub struct Page {
    pub objects: Vec<Listed>,
    pub next: Option<String>,
}

/// An opened source: the bucket handle (with the credentials) and where it lives.
pub struct Source {
    bucket: Box<Bucket>,
    pub bucket_name: String,
    /// The listing's prefix: empty or ending in `/` (`paths::directory_prefix`).
    pub prefix: String,
    /// As shown in statuses (no credentials in it).
    pub endpoint: String,
    pub region: String,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("bucket", &self.bucket_name)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// An ETag without quotes (and without a weak `W/` mark).
pub fn bare_etag(etag: &str) -> String {
    etag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// The region signed for and the endpoint (without a trailing `/`) a spec names.
fn region_and_endpoint(spec: &SourceSpec) -> Result<(String, String), ApiError> {
    let region = match spec.region.as_deref().map(str::trim) {
        None | Some("") => REGION_DEFAULT.to_string(),
        Some(region) => region.to_string(),
    };
    let endpoint = match spec.endpoint.as_deref().map(str::trim) {
        Some(e) if !e.is_empty() => e.trim_end_matches('/').to_string(),
        _ if region == "auto" => {
            let why =
                "region `auto` needs an endpoint (R2: https://ACCOUNT.r2.cloudflarestorage.com)";
            return Err(state::Error::invalid("source.endpoint", why).into());
        }
        _ => format!("https://s3.{region}.amazonaws.com"),
    };
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(
            state::Error::invalid("source.endpoint", "must be an http:// or https:// URL").into(),
        );
    }
    Ok((region, endpoint))
}

/// The host of an `http(s)://host[:port][/path]` URL.
fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

fn parse_mtime_ns(last_modified: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(last_modified)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
}

impl Source {
    /// Checks the spec and builds the bucket handle; sends nothing yet.
    pub fn open(spec: &SourceSpec) -> Result<Source, ApiError> {
        // rust-s3 retries some requests by itself (once, after 1 s, process-wide);
        // the import's own bounded loop is the only retry wanted.
        static NO_LIBRARY_RETRIES: Once = Once::new();
        NO_LIBRARY_RETRIES.call_once(|| s3::set_retries(0));
        let url = parse_url(&spec.url)?;
        if spec.access_key_id.is_empty() || spec.secret_access_key.is_empty() {
            return Err(state::Error::invalid(
                "source.credentials",
                "an access key id and a secret access key are required",
            )
            .into());
        }
        let (region, endpoint) = region_and_endpoint(spec)?;
        let credentials = Credentials::new(
            Some(spec.access_key_id.expose()),
            Some(spec.secret_access_key.expose()),
            None,
            None,
            None,
        )
        .map_err(|e| state::Error::invalid("source.credentials", e.to_string()))?;
        let s3_region = Region::Custom {
            region: region.clone(),
            endpoint: endpoint.clone(),
        };
        let invalid = |e: s3::error::S3Error| {
            ApiError::from(state::Error::invalid(
                "source",
                SourceError::from_s3(e).to_string(),
            ))
        };
        let bucket = Bucket::new(&url.bucket, s3_region, credentials).map_err(invalid)?;
        // Another service's endpoint (R2, MinIO, moto) may not resolve
        // BUCKET.host names; every S3 implementation takes path style. On AWS,
        // virtual-host style, unless a dot in the name would break the TLS
        // certificate's wildcard.
        let aws = endpoint_host(&endpoint).ends_with(".amazonaws.com");
        let bucket = if !aws || url.bucket.contains('.') {
            bucket.with_path_style()
        } else {
            bucket
        };
        let bucket = bucket
            .with_request_timeout(Duration::from_millis(IMPORT_REQUEST_MS_MAX))
            .map_err(invalid)?;
        Ok(Source {
            bucket,
            bucket_name: url.bucket,
            prefix: super::paths::directory_prefix(&url.prefix),
            endpoint,
            region,
        })
    }

    /// Lists the first page once, with a short timeout: the start request's
    /// check that the endpoint answers, the credentials hold and the bucket exists.
    pub async fn validate(&self) -> Result<Page, ApiError> {
        let wait = Duration::from_millis(IMPORT_VALIDATE_MS_MAX);
        match tokio::time::timeout(wait, self.list_page_once(None)).await {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(e)) => Err(e.refusal(self)),
            Err(_) => Err(state::Error::invalid(
                "source.endpoint",
                format!(
                    "{} did not answer the listing within {} s",
                    self.endpoint,
                    IMPORT_VALIDATE_MS_MAX / 1000
                ),
            )
            .into()),
        }
    }

    /// The page after `token` (`None`: the first), tried again while transient.
    pub async fn list_page(&self, token: Option<String>) -> Result<Page, SourceError> {
        retry(|| self.list_page_once(token.clone())).await
    }

    async fn list_page_once(&self, token: Option<String>) -> Result<Page, SourceError> {
        let (result, _) = self
            .bucket
            .list_page(
                self.prefix.clone(),
                None,
                token,
                None,
                Some(IMPORT_LIST_PAGE_KEYS_MAX),
            )
            .await
            .map_err(SourceError::from_s3)?;
        let objects = result
            .contents
            .into_iter()
            .map(|o| Listed {
                etag: o.e_tag.as_deref().map(bare_etag).unwrap_or_default(),
                mtime_ns: parse_mtime_ns(&o.last_modified),
                key: o.key,
                size_bytes: o.size,
            })
            .collect();
        let next = match result.next_continuation_token {
            Some(token) if result.is_truncated && !token.is_empty() => Some(token),
            _ => None,
        };
        Ok(Page { objects, next })
    }

    /// Bytes `offset..offset + length_bytes` of `object`, tried again while
    /// transient; the answer must be exactly that long and carry the listed ETag.
    pub async fn read_range(
        &self,
        object: &Listed,
        offset: u64,
        length_bytes: u64,
    ) -> Result<Bytes, SourceError> {
        assert!(length_bytes > 0, "an empty range is never requested");
        retry(|| self.read_range_once(object, offset, length_bytes)).await
    }

    async fn read_range_once(
        &self,
        object: &Listed,
        offset: u64,
        length_bytes: u64,
    ) -> Result<Bytes, SourceError> {
        let last = offset + length_bytes - 1;
        // The leading `/` is the one rust-s3 strips: a key that itself starts
        // with `/` keeps it.
        let path = format!("/{}", object.key);
        let response = self
            .bucket
            .get_object_range(&path, offset, Some(last))
            .await
            .map_err(SourceError::from_s3)?;
        let headers = response.headers();
        let etag = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("etag"))
            .map(|(_, value)| bare_etag(value));
        if let Some(etag) = etag {
            if !object.etag.is_empty() && etag != object.etag {
                return Err(SourceError::Changed(format!(
                    "listed with ETag {}, read with ETag {etag}",
                    object.etag
                )));
            }
        }
        let data = response.into_bytes();
        if data.len() as u64 != length_bytes {
            return Err(SourceError::Transport(format!(
                "asked for bytes {offset}-{last}, got {} bytes",
                data.len()
            )));
        }
        Ok(data)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has run
/// `IMPORT_REQUEST_ATTEMPTS_MAX` times; waits double between attempts.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SourceError>>,
{
    let mut backoff_ms = IMPORT_RETRY_BACKOFF_MS_MIN;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && attempts < IMPORT_REQUEST_ATTEMPTS_MAX => {
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(IMPORT_RETRY_BACKOFF_MS_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let url = parse_url("s3://photos/2024/trip").unwrap();
        assert_eq!(url.bucket, "photos");
        assert_eq!(url.prefix, "2024/trip");
        assert_eq!(parse_url("s3://photos").unwrap().prefix, "");
        assert_eq!(parse_url("s3://photos/").unwrap().prefix, "");
        assert!(parse_url("https://photos").is_err());
        assert!(parse_url("s3://").is_err());
        assert!(parse_url("s3://a b/c").is_err());
    }

    #[test]
    fn error_bodies_keep_only_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match</Message>\
            <AWSAccessKeyId>AKIASECRETISH</AWSAccessKeyId><StringToSign>x</StringToSign></Error>";
        let e = SourceError::from_s3(s3::error::S3Error::HttpFailWithBody(403, body.into()));
        let shown = e.to_string();
        assert!(shown.contains("403 SignatureDoesNotMatch"), "{shown}");
        assert!(!shown.contains("AKIASECRETISH"), "{shown}");
        assert!(!e.is_transient());
        let busy = SourceError::Status {
            status: 503,
            code: "SlowDown".into(),
            message: String::new(),
        };
        assert!(busy.is_transient());
        assert_eq!(xml_field("<Code>A&amp;B</Code>", "Code"), "A&B");
        assert_eq!(xml_field("no xml", "Code"), "");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let spec = SourceSpec {
            url: "s3://b".into(),
            access_key_id: Secret::new("AKIDVISIBLE"),
            secret_access_key: Secret::new("hunter2"),
            ..Default::default()
        };
        let shown = format!("{spec:?}");
        assert!(
            !shown.contains("AKIDVISIBLE") && !shown.contains("hunter2"),
            "{shown}"
        );
        let source = Source::open(&spec).unwrap();
        let shown = format!("{source:?}");
        assert!(
            !shown.contains("AKIDVISIBLE") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(source.endpoint, "https://s3.us-east-1.amazonaws.com");
    }

    #[test]
    fn only_aws_endpoints_get_virtual_host_style() {
        let host = endpoint_host;
        assert_eq!(
            host("https://s3.eu-west-1.amazonaws.com"),
            "s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(host("http://127.0.0.1:9000/"), "127.0.0.1");
        assert_eq!(
            host("https://acct.r2.cloudflarestorage.com"),
            "acct.r2.cloudflarestorage.com"
        );
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(bare_etag("\"abc-2\""), "abc-2");
        assert_eq!(bare_etag("W/\"abc\""), "abc");
        assert_eq!(bare_etag("abc"), "abc");
    }
}
