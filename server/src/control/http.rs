//! The HTTP side of the control server: routes, basic authentication, body limits.
//!
//! `POST /` takes Kea's command envelope ([`super::kea`]); `GET /health`, `/ready` and
//! `/metrics` need no credentials, so that probes and Prometheus can reach them; everything
//! else does when `control.user` is set.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use std::net::IpAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::json;

use super::Live;
use super::commands;
use super::kea;
use super::rest;

/// The largest request body taken; a larger one gets 413.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// The routes, with `auth` (the expected `Authorization` header value, if any) in front of
/// those that change or read leases.
pub(crate) fn router(live: Arc<Live>, auth: Option<String>) -> Router {
    let guarded = Router::new()
        .route("/", post(command))
        .route("/v1/leases", get(leases_list))
        .route("/v1/leases/{address}", get(lease_one))
        .route_layer(middleware::from_fn_with_state(Arc::new(auth), require_auth));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(live)
}

/// The `Authorization` header value that `user` and `password` give (RFC 7617).
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn require_auth(
    State(expected): State<Arc<Option<String>>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = expected.as_deref() {
        let given = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !same(given, expected.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"lessor\"")],
                axum::Json(json!({"result": 1, "text": "Unauthorized"})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Compares two byte strings in time that depends only on their lengths, so a wrong password
/// does not reveal how much of it was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "alive"}))
}

async fn ready(State(live): State<Arc<Live>>) -> Response {
    match live.not_ready() {
        None => axum::Json(json!({"status": "ready"})).into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reason": why})),
        )
            .into_response(),
    }
}

async fn metrics(State(live): State<Arc<Live>>) -> Response {
    let Some(parts) = live.parts() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::render(&parts),
    )
        .into_response()
}

/// The answer when the server is still starting.
fn starting(live: &Live) -> Response {
    let why = live.not_ready().unwrap_or("starting");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": format!("lessor is not serving yet: {why}")})),
    )
        .into_response()
}

fn bad_request(text: String) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": text}))).into_response()
}

async fn leases_list(
    State(live): State<Arc<Live>>,
    query: Result<Query<rest::Query>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let work = move || match live.parts() {
        None => starting(&live),
        Some(parts) => match rest::list(&parts, &query) {
            Ok(v) => axum::Json(v).into_response(),
            Err(text) => bad_request(text),
        },
    };
    blocking(work).await
}

async fn lease_one(State(live): State<Arc<Live>>, Path(address): Path<String>) -> Response {
    let Ok(addr) = address.parse::<IpAddr>() else {
        return bad_request(format!("not an IP address: {address:?}"));
    };
    let work = move || match live.parts() {
        None => starting(&live),
        Some(parts) => match rest::get(&parts, addr) {
            Some(v) => axum::Json(v).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": format!("no lease of {addr}")})),
            )
                .into_response(),
        },
    };
    blocking(work).await
}

/// Runs `work` on the blocking pool: it may walk every shard.
async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(work).await {
        Ok(r) => r,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": format!("the request failed: {e}")})),
        )
            .into_response(),
    }
}

/// `POST /`: one command, answered as Kea's control agent answers, as a list.
async fn command(State(live): State<Arc<Live>>, body: Bytes) -> Response {
    let request: kea::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"result": 1, "text": format!("invalid command: {e}")})),
            )
                .into_response();
        }
    };
    // A command may walk every shard or wait for the journal: off the runtime's thread.
    blocking(move || axum::Json(commands::run(&live, &request)).into_response()).await
}

#[cfg(test)]
mod tests {
    use super::{basic_auth, same};

    #[test]
    fn basic_auth_is_rfc_7617() {
        // RFC 7617 §2's example.
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
