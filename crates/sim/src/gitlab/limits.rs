//! What stands in front of every route: the request log, injected faults, GitLab's authenticated-API
//! throttle (Rack::Attack's `throttle_authenticated_api`) and the OAuth scope check.
//!
//! The throttle counts per user in fixed windows aligned to the Unix epoch, as Rack::Attack does, on the
//! simulator clock so that `advance_clock` opens the next window. Every `/api/v4` response carries the
//! `RateLimit-*` headers while a limit is set; a request over the limit gets 429 `Retry later` with
//! `Retry-After` and `RateLimit-ResetTime`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{GitLabSim, Shared};

/// One request the simulator answered.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub at: std::time::Instant,
}

#[derive(Default)]
pub(super) struct Limits {
    log: Vec<ApiRequest>,
    rate: Option<(u32, Duration)>,
    /// Throttle key → (window index, requests seen in it).
    windows: HashMap<String, (i64, u32)>,
    faults: VecDeque<u16>,
    /// `GitLabSim::fail_next_on`: (path suffix, status, after the request was processed).
    path_faults: Vec<(String, u16, bool)>,
    /// `GitLabSim::hold_next_on`: path suffixes whose next request waits.
    path_holds: Vec<String>,
    /// Requests waiting now, and how many times `release_holds` was called.
    held: usize,
    releases: u64,
    /// `GitLabSim::set_pagination_loops`.
    pagination_loops: bool,
}

impl GitLabSim {
    /// Every `/api/v4` and `/oauth` request so far, oldest first, with the status it got.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.limits.lock().unwrap().log.clone()
    }

    /// Turns on the authenticated-API throttle: `limit` requests per user per fixed `window`.
    pub fn set_rate_limit(&self, limit: u32, window: Duration) {
        let mut l = self.shared.limits.lock().unwrap();
        l.rate = Some((limit, window.max(Duration::from_secs(1))));
        l.windows.clear();
    }

    /// Turns every list into one that never ends, as a hostile or broken GitLab could: each page's
    /// `Link: rel="next"` points back at the page itself and `x-next-page` repeats the current page.
    pub fn set_pagination_loops(&self, on: bool) {
        self.shared.limits.lock().unwrap().pagination_loops = on;
    }

    /// The next API request whose path ends with `path_suffix` fails with `status`: before GitLab
    /// handles it, or, with `after_processing`, after (GitLab did the work, but the caller never hears
    /// of it, as when a proxy times out or the caller dies waiting).
    pub fn fail_next_on(&self, path_suffix: &str, status: u16, after_processing: bool) {
        self.shared.limits.lock().unwrap().path_faults.push((
            path_suffix.to_owned(),
            status,
            after_processing,
        ));
    }

    /// The next API request whose path ends with `path_suffix` waits, unprocessed, until
    /// [`GitLabSim::release_holds`] (then GitLab handles it, whether or not its caller is still there).
    pub fn hold_next_on(&self, path_suffix: &str) {
        self.shared
            .limits
            .lock()
            .unwrap()
            .path_holds
            .push(path_suffix.to_owned());
    }

    /// Waits (at most 10 s) until a request is held.
    pub async fn wait_until_held(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.shared.limits.lock().unwrap().held == 0 {
            assert!(std::time::Instant::now() < deadline, "no request was held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets every held request go on.
    pub fn release_holds(&self) {
        self.shared.limits.lock().unwrap().releases += 1;
    }

    /// The next `n` API or OAuth requests fail with `status`, before authentication, as a failing
    /// proxy or an overloaded Puma would answer them.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared
            .limits
            .lock()
            .unwrap()
            .faults
            .extend(std::iter::repeat_n(status, n));
    }
}

pub(super) async fn middleware(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let at = std::time::Instant::now();
    let api = path.starts_with("/api/v4/") || path == "/api/v4";
    let resp = if api || path.starts_with("/oauth/") {
        if let Some(epoch) = take_hold(&s, &path) {
            // GitLab handles a request it received even when its caller has gone meanwhile: the wait
            // and the work run in their own task, which a closed connection does not cancel.
            let s = s.clone();
            let work = async move {
                while s.limits.lock().unwrap().releases == epoch {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                s.limits.lock().unwrap().held -= 1;
                handle(&s, req, next, api).await
            };
            match tokio::spawn(work).await {
                Ok(resp) => resp,
                Err(_) => fault_response(500),
            }
        } else {
            handle(&s, req, next, api).await
        }
    } else {
        next.run(req).await
    };
    s.limits.lock().unwrap().log.push(ApiRequest {
        method,
        path,
        query,
        status: resp.status().as_u16(),
        at,
    });
    resp
}

/// Whether `hold_next_on` asked to hold this request: then it counts as held, and the release count
/// it waits to change is returned.
fn take_hold(s: &Shared, path: &str) -> Option<u64> {
    let mut l = s.limits.lock().unwrap();
    let n = l
        .path_holds
        .iter()
        .position(|suffix| path.ends_with(suffix.as_str()))?;
    l.path_holds.remove(n);
    l.held += 1;
    Some(l.releases)
}

async fn handle(s: &Shared, req: Request, next: Next, api: bool) -> Response {
    let fault = s.limits.lock().unwrap().faults.pop_front();
    if let Some(status) = fault {
        return fault_response(status);
    }
    let path_fault = {
        let mut l = s.limits.lock().unwrap();
        let path = req.uri().path();
        l.path_faults
            .iter()
            .position(|(suffix, _, _)| path.ends_with(suffix.as_str()))
            .map(|n| l.path_faults.remove(n))
    };
    match path_fault {
        Some((_, status, false)) => return fault_response(status),
        Some((_, status, true)) => {
            let _ = next.run(req).await;
            return fault_response(status);
        }
        None => {}
    }
    if !api {
        return next.run(req).await;
    }
    let rate = throttle(s, req.headers());
    if let Some(Throttle { over: true, .. }) = &rate {
        return throttled(rate.as_ref().unwrap());
    }
    if let Some(denied) =
        super::oauth::check_scope(s, req.method(), req.uri().path(), req.headers())
    {
        return with_rate_headers(denied, rate.as_ref());
    }
    let this_page = format!("{}{}", s.base(), req.uri());
    let mut resp = next.run(req).await;
    if s.limits.lock().unwrap().pagination_loops {
        loop_pagination(&mut resp, &this_page);
    }
    with_rate_headers(resp, rate.as_ref())
}

/// Points a list page's next page back at itself.
fn loop_pagination(resp: &mut Response, this_page: &str) {
    let h = resp.headers_mut();
    if let Ok(link) = HeaderValue::from_str(&format!("<{this_page}>; rel=\"next\"")) {
        h.insert("link", link);
    }
    if let Some(page) = h.get("x-page").cloned() {
        h.insert("x-next-page", page);
    }
}

struct Throttle {
    name: &'static str,
    limit: u32,
    observed: u32,
    /// Unix milliseconds at which the current window closes.
    reset_ms: i64,
    now_ms: i64,
    over: bool,
}

fn throttle(s: &Shared, headers: &axum::http::HeaderMap) -> Option<Throttle> {
    let (limit, window) = s.limits.lock().unwrap().rate?;
    // GitLab throttles the user, whichever of their tokens is used; unknown tokens share one bucket.
    let (key, name) = match s.user(headers) {
        Ok(u) => (format!("user:{}", u.id), "throttle_authenticated_api"),
        Err(_) => ("anonymous".to_owned(), "throttle_unauthenticated_api"),
    };
    let now_ms = i64::try_from((s.now() - time::OffsetDateTime::UNIX_EPOCH).whole_milliseconds())
        .unwrap_or(i64::MAX);
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    let index = now_ms / window_ms;
    let mut l = s.limits.lock().unwrap();
    let slot = l.windows.entry(key).or_insert((index, 0));
    if slot.0 != index {
        *slot = (index, 0);
    }
    slot.1 += 1;
    Some(Throttle {
        name,
        limit,
        observed: slot.1,
        reset_ms: (index + 1) * window_ms,
        now_ms,
        over: slot.1 > limit,
    })
}

fn with_rate_headers(mut resp: Response, rate: Option<&Throttle>) -> Response {
    let Some(t) = rate else { return resp };
    let h = resp.headers_mut();
    let reset_secs = t.reset_ms.div_euclid(1000) + i64::from(t.reset_ms.rem_euclid(1000) != 0);
    for (name, value) in [
        ("ratelimit-name", t.name.to_owned()),
        ("ratelimit-limit", t.limit.to_string()),
        ("ratelimit-observed", t.observed.to_string()),
        (
            "ratelimit-remaining",
            t.limit.saturating_sub(t.observed).to_string(),
        ),
        ("ratelimit-reset", reset_secs.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn throttled(t: &Throttle) -> Response {
    let retry_after = ((t.reset_ms - t.now_ms + 999) / 1000).max(1);
    let reset_time = time::OffsetDateTime::from_unix_timestamp(t.reset_ms.div_euclid(1000))
        .ok()
        .and_then(|at| at.format(HTTP_DATE).ok())
        .unwrap_or_default();
    let resp = (
        StatusCode::TOO_MANY_REQUESTS,
        [
            ("content-type", "text/plain".to_owned()),
            ("retry-after", retry_after.to_string()),
            ("ratelimit-resettime", reset_time),
        ],
        "Retry later\n",
    )
        .into_response();
    with_rate_headers(resp, Some(t))
}

/// RFC 2616's HTTP-date, as Rack::Attack writes `RateLimit-ResetTime`.
const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// What GitLab's stack answers when something behind the API fails: Workhorse's plain text for a dead
/// Puma (502), Rack::Attack's text for 429, Grape's JSON `message` otherwise.
fn fault_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        502 => (
            code,
            [("content-type", "text/plain; charset=utf-8")],
            "GitLab is not responding\n",
        )
            .into_response(),
        429 => (
            code,
            [("content-type", "text/plain"), ("retry-after", "1")],
            "Retry later\n",
        )
            .into_response(),
        _ => (
            code,
            axum::Json(json!({
                "message": format!("{} {}", status, code.canonical_reason().unwrap_or("Error"))
            })),
        )
            .into_response(),
    }
}
