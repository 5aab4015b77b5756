//! The web dashboard: static assets compiled into the binary and served at
//! `/` and `/dashboard/…` on every node's HTTP port. The page holds no data of
//! its own: it signs in with an API token (kept in the browser's session
//! storage) and does everything through the REST routes under `/api/v1`, so it
//! can show nothing a token would not. No build step, no external network.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Scripts and styles only from this origin, no frames, no inline code: names
/// of files, keys and messages are shown as text, and a policy backs that up.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// One file of `src/api/dashboard/`: name, content type, bytes.
macro_rules! asset {
    ($name:literal, script) => {
        asset!($name, "text/javascript; charset=utf-8")
    };
    ($name:literal, $content_type:literal) => {
        (
            $name,
            $content_type,
            include_str!(concat!("dashboard/", $name)),
        )
    };
}

/// Every asset the page loads.
const ASSETS: &[(&str, &str, &str)] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", script),
    asset!("api.js", script),
    asset!("ui.js", script),
    asset!("files.js", script),
    asset!("imports.js", script),
    asset!("objects.js", script),
    asset!("kv.js", script),
    asset!("queues.js", script),
    asset!("cluster.js", script),
];

const INDEX: &str = include_str!("dashboard/index.html");

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard/{name}", get(asset))
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // A new binary brings new assets: never run yesterday's script.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(content_type, body),
        None => (StatusCode::NOT_FOUND, "no such dashboard file").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_scripts_import_is_served() {
        for (_, _, body) in ASSETS {
            for line in body.lines() {
                let Some(rest) = line.split(" from \"./").nth(1) else {
                    continue;
                };
                let name = rest.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == name),
                    "{name} is imported but not served"
                );
            }
        }
        assert!(INDEX.contains("/dashboard/app.js"));
    }
}
