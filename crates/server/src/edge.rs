//! The HTTP edge's own defences: every connection and every request is bounded in number and in time, so
//! that slow or numerous clients can neither exhaust the service nor hold up a graceful shutdown, and
//! every answer carries the security headers.
//!
//! Connections are served here rather than by `axum::serve`, which has no header-read timeout, no cap on
//! connections and no bound on how long a shutdown waits for them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::AppState;

/// A request id a client (a proxy, a load balancer) may set: a short plain token. Anything else is
/// replaced by a new id, so that no client writes what it likes into the logs.
fn plain_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Drops an `X-Request-Id` that is not a plain token, before the id layer sets a new one.
pub(crate) async fn drop_foreign_request_id(mut req: Request, next: Next) -> Response {
    if req
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !plain_request_id(v.as_bytes()))
    {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

/// A request's log span: its id, method and path. Never the query, which holds Jira's JWT on the
/// configuration page.
pub(crate) fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

/// How much of the service one process lends to HTTP clients.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Open connections at once (`GFJ_HTTP_MAX_CONNECTIONS`); more are closed at once.
    pub max_connections: usize,
    /// Requests in flight at once (`GFJ_HTTP_MAX_REQUESTS`); more get 503 with `Retry-After`.
    pub max_requests: usize,
    /// Time a client has to send a request's headers (`GFJ_HTTP_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// Time for a whole request, body and answer included (`GFJ_HTTP_REQUEST_TIMEOUT_SECS`); then 408.
    pub request_timeout: Duration,
    /// On shutdown, how long requests in flight may finish before their connections are cut
    /// (`GFJ_HTTP_DRAIN_SECS`).
    pub drain_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        use gfj_core::settings::default_number;
        let secs = |name| Duration::from_secs(default_number(name) as u64);
        Self {
            max_connections: default_number("GFJ_HTTP_MAX_CONNECTIONS") as usize,
            max_requests: default_number("GFJ_HTTP_MAX_REQUESTS") as usize,
            header_timeout: secs("GFJ_HTTP_HEADER_TIMEOUT_SECS"),
            request_timeout: secs("GFJ_HTTP_REQUEST_TIMEOUT_SECS"),
            drain_timeout: secs("GFJ_HTTP_DRAIN_SECS"),
        }
    }
}

/// The CSP of an HTML answer that sets none of its own: nothing loads, nothing frames it.
const DEFAULT_HTML_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/// Per request: the in-flight cap, the whole-request timeout and the security headers.
pub(crate) async fn guard_request(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match state.requests_in_flight.clone().try_acquire_owned() {
        Err(_) => {
            let mut busy = (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests in flight; retry",
            )
                .into_response();
            busy.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            busy
        }
        Ok(_permit) => {
            match tokio::time::timeout(state.config.edge.request_timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    "the request took too long and was cut off",
                )
                    .into_response(),
            }
        }
    };
    security_headers(&mut response);
    response
}

/// `nosniff` and `no-referrer` everywhere (the configuration page's URL carries Jira's JWT, which must
/// not leak to other sites as a referrer); a CSP on every HTML answer.
fn security_headers(response: &mut Response) {
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if is_html && !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_HTML_CSP),
        );
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets requests in flight
/// finish for at most the drain timeout, and cuts what is left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &EdgeLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection closed: GFJ_HTTP_MAX_CONNECTIONS reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = graceful.watch(
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone())),
        );
        tasks.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
        // Finished connections leave the set as they go, so it holds only open ones.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(
                open = tasks.len(),
                "connections still open after GFJ_HTTP_DRAIN_SECS were cut"
            );
        }
    }
    tasks.abort_all();
    Ok(())
}
