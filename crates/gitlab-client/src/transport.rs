//! How every GitLab request is sent: one gate per instance and credential that honours GitLab's rate
//! limits (`RateLimit-Remaining`/`RateLimit-Reset`, and `Retry-After` on 429) for all clients of this
//! process, bounded retries with jittered backoff for 5xx and connection errors on idempotent
//! requests, and pagination that follows GitLab's own `Link` header (offset or keyset) or
//! `x-next-page`, guarded against pages that never end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gfj_core::{metric_names, server_time};
use reqwest::Method;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use gfj_core::backoff::{self, Backoff};

use crate::GitLabError;

/// Attempts for one idempotent request before the error goes back to the caller (whose job is then
/// retried later by the durable queue, so nothing is lost).
const ATTEMPTS: u32 = 4;
/// Rate-limit waits one request sits through in-line before its caller postpones the work instead.
const MAX_THROTTLED: u32 = 5;
/// A rate-limit wait longer than this is not slept through in-line: the caller gets `RateLimited` and
/// postpones its work instead of holding a worker.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);
/// When GitLab answers 429 without saying for how long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Rate-limit state of one credential on one instance, shared by every client of this process that
/// uses that credential there. GitLab counts requests per user, so one tenant's exhausted budget must
/// pause only that tenant's token, not every tenant of the same instance.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    paused_until: Mutex<Option<Instant>>,
}

/// A gate's key: the instance's API base URL and the SHA-256 of the credential, so that no token is
/// kept in the registry.
type GateKey = (String, [u8; 32]);

impl Gate {
    /// The gate of `token` on an instance (by API base URL). Process-wide, because GitLab counts per
    /// user and instance, not per client object.
    pub(crate) fn of(api: &str, token: &str) -> Arc<Gate> {
        static GATES: OnceLock<Mutex<HashMap<GateKey, Arc<Gate>>>> = OnceLock::new();
        let key = (api.to_owned(), Sha256::digest(token.as_bytes()).into());
        let mut gates = GATES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !gates.contains_key(&key) {
            // Tokens rotate (OAuth, every two hours): forget the gates no client holds any more and
            // that pause nothing, so that the registry does not grow with every token ever used.
            gates.retain(|_, gate| Arc::strong_count(gate) > 1 || gate.is_paused());
        }
        gates.entry(key).or_default().clone()
    }

    fn is_paused(&self) -> bool {
        self.paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|until| until > Instant::now())
    }

    fn pause(&self, until: Instant) {
        let mut p = self.paused_until.lock().expect("gate lock");
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Waits while the instance is paused; a wait beyond `MAX_INLINE_WAIT` is returned as an error.
    async fn wait(&self, max_inline: Duration) -> Result<(), GitLabError> {
        let until = *self.paused_until.lock().expect("gate lock");
        let Some(until) = until else { return Ok(()) };
        let now = Instant::now();
        if until <= now {
            return Ok(());
        }
        let wait = until - now;
        if wait > max_inline {
            return Err(GitLabError::RateLimited {
                retry_after_ms: wait.as_millis() as i64,
            });
        }
        metrics::counter!(metric_names::GITLAB_RATE_LIMIT_WAITS).increment(1);
        metrics::counter!(metric_names::GITLAB_RATE_LIMIT_WAIT_SECONDS)
            .increment(wait.as_secs_f64().ceil() as u64);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Reads GitLab's rate-limit headers: an exhausted budget pauses until `RateLimit-Reset`.
    fn observe(&self, headers: &HeaderMap) {
        let remaining = header_i64(headers, "ratelimit-remaining");
        if remaining == Some(0)
            && let Some(wait) = reset_wait(headers)
        {
            self.pause(Instant::now() + wait);
        }
    }
}

fn header_i64(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `RateLimit-Reset` is Unix epoch seconds (not a delta). At least a second, at most `MAX_WAIT`.
fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let wait = server_time::until_unix_seconds(header_str(headers, "ratelimit-reset")?, now_ms())?;
    Some(wait.max(Duration::from_secs(1)))
}

/// How long a 429 asks us to wait: `Retry-After` first, then `RateLimit-Reset`, then a default. A
/// value that is not a number counts as absent; none is longer than `server_time::MAX_WAIT`.
fn retry_after(headers: &HeaderMap) -> Duration {
    header_str(headers, "retry-after")
        .and_then(server_time::delay_seconds)
        .map(|wait| wait.max(Duration::from_secs(1)))
        .or_else(|| reset_wait(headers))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// One request, described so that it can be sent again.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: String,
    pub json: Option<&'a serde_json::Value>,
    /// Retry and wait out rate limits in-line; `false` for best-effort calls that must fail fast.
    pub patient: bool,
}

pub(crate) async fn send(
    http: &reqwest::Client,
    gate: &Gate,
    auth: &str,
    call: Call<'_>,
) -> Result<reqwest::Response, GitLabError> {
    let idempotent = call.method != Method::POST;
    // Failures and throttling are counted apart: waiting out a rate limit is not a failed attempt.
    let (mut attempt, mut throttled) = (0, 0);
    let (attempts, max_throttled, max_inline) = if call.patient {
        (ATTEMPTS, MAX_THROTTLED, MAX_INLINE_WAIT)
    } else {
        (1, 0, Duration::ZERO)
    };
    let endpoint = url::Url::parse(&call.url)
        .map(|u| metric_names::gitlab_endpoint(u.path()))
        .unwrap_or_else(|_| "other".to_owned());
    loop {
        gate.wait(max_inline).await?;
        let started = Instant::now();
        let mut req = http
            .request(call.method.clone(), &call.url)
            .bearer_auth(auth);
        if let Some(body) = call.json {
            req = req.json(body);
        }
        let sent = req.send().await;
        let status = sent
            .as_ref()
            .map_or("error".to_owned(), |r| r.status().as_u16().to_string());
        metrics::counter!(metric_names::GITLAB_REQUESTS, "endpoint" => endpoint.clone(), "status" => status)
            .increment(1);
        metrics::histogram!(metric_names::GITLAB_REQUEST_SECONDS, "endpoint" => endpoint.clone())
            .record(started.elapsed());
        let outcome = match sent {
            Ok(resp) => {
                gate.observe(resp.headers());
                let status = resp.status().as_u16();
                if resp.status().is_success() {
                    return Ok(resp);
                }
                if status == 429 {
                    let wait = retry_after(resp.headers());
                    gate.pause(Instant::now() + wait);
                    throttled += 1;
                    if wait > max_inline || throttled > max_throttled {
                        return Err(GitLabError::RateLimited {
                            retry_after_ms: wait.as_millis() as i64,
                        });
                    }
                    continue;
                }
                error_of(status, resp).await
            }
            Err(e) => GitLabError::Transient(e.without_url().to_string()),
        };
        attempt += 1;
        let retryable = matches!(outcome, GitLabError::Transient(_)) && idempotent;
        if !retryable || attempt >= attempts {
            return Err(outcome);
        }
        let delay = Backoff::IN_LINE.delay_ms(attempt, backoff::jitter(), None);
        tokio::time::sleep(Duration::from_millis(delay.max(0) as u64)).await;
    }
}

async fn error_of(status: u16, resp: reqwest::Response) -> GitLabError {
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or(v.get("error"))
                .map(|m| m.as_str().map(str::to_owned).unwrap_or(m.to_string()))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    match status {
        401 => GitLabError::Unauthorized,
        403 => GitLabError::Forbidden(message),
        404 => GitLabError::NotFound(message),
        500..=599 => GitLabError::Transient(format!("{status} {message}")),
        _ => GitLabError::Other { status, message },
    }
}

/// The next page of a list: GitLab's `Link: <…>; rel="next"` (offset and keyset pagination alike),
/// else `x-next-page`. `None` on the last page.
pub(crate) fn next_page_url(headers: &HeaderMap, current: &str) -> Option<String> {
    let from_link = headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (url, params) = part.split_once(';')?;
            params
                .split(';')
                .any(|p| {
                    let p = p.trim();
                    p == "rel=\"next\"" || p == "rel=next"
                })
                .then(|| {
                    url.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                })
        });
    if from_link.is_some() {
        return from_link;
    }
    let next = headers
        .get("x-next-page")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())?;
    let mut url = url::Url::parse(current).ok()?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("page", next);
    Some(url.into())
}

/// The most pages one list is followed through: 1,000 pages of 100 is more than any list this service
/// reads whole, and a GitLab that never stops paging must not hold a worker forever.
pub(crate) const MAX_PAGES: usize = 1_000;

/// The highest page number a backfill cursor moves to (ten million records of one kind in one project).
pub(crate) const MAX_PAGE_NUMBER: i64 = 100_000;

/// Refuses what a hostile or buggy GitLab could loop us through while following a list's pages: a next
/// page already visited (a `Link` that repeats, an `x-next-page` that does not advance, a keyset cursor
/// seen before), a page number that goes down, and more than `max_pages` pages.
pub(crate) struct PageGuard {
    visited: HashSet<String>,
    current: String,
    max_pages: usize,
}

impl PageGuard {
    pub(crate) fn new(first: &str, max_pages: usize) -> Self {
        Self {
            visited: HashSet::from([first.to_owned()]),
            current: first.to_owned(),
            max_pages,
        }
    }

    /// Accepts `next` as the page to read after the current one.
    pub(crate) fn admit(&mut self, next: &str) -> Result<(), GitLabError> {
        let refuse = |why: String| {
            Err(GitLabError::Other {
                status: 200,
                message: format!("pagination does not end: {why}"),
            })
        };
        if self.visited.contains(next) {
            return refuse(format!("the next page repeats an earlier one ({next})"));
        }
        if let (Some(cur), Some(nxt)) = (page_number(&self.current), page_number(next))
            && nxt <= cur
        {
            return refuse(format!("page {nxt} follows page {cur}"));
        }
        if self.visited.len() >= self.max_pages {
            return refuse(format!("more than {} pages", self.max_pages));
        }
        self.visited.insert(next.to_owned());
        next.clone_into(&mut self.current);
        Ok(())
    }
}

/// The `page` parameter of an offset-paginated URL.
fn page_number(url: &str) -> Option<i64> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())
}

/// The page a backfill cursor moves to after `current`, given GitLab's `x-next-page`: only a page
/// after the current one and within `MAX_PAGE_NUMBER`, so that a stored cursor always advances.
pub(crate) fn next_page_number(current: i64, next: Option<i64>) -> Option<i64> {
    next.filter(|&n| n > current && n <= MAX_PAGE_NUMBER)
}

/// A list's `x-total`, when it is a count a list could have (GitLab stops counting at 10,000): a
/// backfill adds these up for its progress, so a hostile value must not overflow the sum.
pub(crate) fn list_total(total: Option<i64>) -> Option<i64> {
    total.filter(|t| (0..=MAX_PAGE_NUMBER * 100).contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn next_page_prefers_link_and_falls_back_to_x_next_page() {
        let cur = "https://gl.example/api/v4/groups/1/projects?per_page=100&page=1";
        let h = headers(&[(
            "link",
            "<https://gl.example/api/v4/groups/1/projects?id_after=42&per_page=100>; rel=\"next\", <https://gl.example/x?page=1>; rel=\"first\"",
        )]);
        assert_eq!(
            next_page_url(&h, cur).as_deref(),
            Some("https://gl.example/api/v4/groups/1/projects?id_after=42&per_page=100")
        );
        let h = headers(&[("x-next-page", "3")]);
        assert_eq!(
            next_page_url(&h, cur).as_deref(),
            Some("https://gl.example/api/v4/groups/1/projects?per_page=100&page=3")
        );
        let h = headers(&[
            ("x-next-page", ""),
            ("link", "<https://gl.example/x?page=1>; rel=\"first\""),
        ]);
        assert_eq!(next_page_url(&h, cur), None);
    }

    #[test]
    fn the_page_guard_refuses_loops_backward_pages_and_endless_lists() {
        let base = "https://gl.example/api/v4/groups/1/projects?per_page=100";
        let mut g = PageGuard::new(&format!("{base}&page=1"), 3);
        assert!(g.admit(&format!("{base}&page=2")).is_ok());
        assert!(g.admit(&format!("{base}&page=2")).is_err(), "a repeat");
        assert!(g.admit(&format!("{base}&page=1")).is_err(), "page 1 again");
        assert!(g.admit(&format!("{base}&page=3")).is_ok());
        assert!(g.admit(&format!("{base}&page=4")).is_err(), "over the cap");

        let mut g = PageGuard::new(&format!("{base}&page=5"), 100);
        assert!(g.admit(&format!("{base}&page=4")).is_err(), "going back");
        assert!(
            g.admit(&format!("{base}&page=5&x=1")).is_err(),
            "not advancing"
        );

        // Keyset: the cursor travels in the URL; one seen before is a loop.
        let keyset = |after: i64| format!("{base}&pagination=keyset&id_after={after}");
        let mut g = PageGuard::new(&format!("{base}&pagination=keyset"), 100);
        assert!(g.admit(&keyset(10)).is_ok());
        assert!(g.admit(&keyset(20)).is_ok());
        assert!(g.admit(&keyset(10)).is_err(), "cursor seen before");
    }

    #[test]
    fn a_backfill_cursor_only_moves_forward() {
        assert_eq!(next_page_number(1, Some(2)), Some(2));
        assert_eq!(next_page_number(3, Some(3)), None);
        assert_eq!(next_page_number(3, Some(1)), None);
        assert_eq!(next_page_number(3, Some(-7)), None);
        assert_eq!(next_page_number(3, Some(i64::MAX)), None);
        assert_eq!(
            next_page_number(MAX_PAGE_NUMBER, Some(MAX_PAGE_NUMBER + 1)),
            None
        );
        assert_eq!(next_page_number(3, None), None);
        assert_eq!(list_total(Some(10_000)), Some(10_000));
        assert_eq!(list_total(Some(i64::MAX)), None);
        assert_eq!(list_total(Some(-1)), None);
    }

    #[test]
    fn waits_come_from_retry_after_then_reset() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Duration::from_secs(7)
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let w = retry_after(&headers(&[("ratelimit-reset", &(now + 30).to_string())]));
        assert!((29..=30).contains(&w.as_secs()), "{w:?}");
        assert_eq!(retry_after(&headers(&[])), DEFAULT_RETRY_AFTER);
    }

    #[test]
    fn hostile_waits_are_capped_and_garbage_is_ignored() {
        let hour = server_time::MAX_WAIT;
        let max = i64::MAX.to_string();
        let umax = u64::MAX.to_string();
        /// Response headers and the wait they ask for.
        type Case<'a> = (&'a [(&'static str, &'a str)], Duration);
        let table: &[Case] = &[
            (&[("retry-after", &max)], hour),
            (&[("retry-after", &umax)], hour),
            (&[("retry-after", "-5")], DEFAULT_RETRY_AFTER),
            (&[("retry-after", "1e99")], DEFAULT_RETRY_AFTER),
            (&[("retry-after", "0")], Duration::from_secs(1)),
            (&[("ratelimit-reset", &max)], hour),
            (&[("ratelimit-reset", "-1")], Duration::from_secs(1)),
            (&[("ratelimit-reset", &umax)], DEFAULT_RETRY_AFTER),
            (&[("ratelimit-reset", "1e99")], DEFAULT_RETRY_AFTER),
            (&[("retry-after", "1e99"), ("ratelimit-reset", &max)], hour),
        ];
        for (pairs, expected) in table {
            assert_eq!(retry_after(&headers(pairs)), *expected, "{pairs:?}");
        }
    }

    #[tokio::test]
    async fn a_reset_in_the_far_future_pauses_for_at_most_the_cap() {
        for reset in [i64::MAX.to_string(), "99999999999999".to_owned()] {
            let gate = Gate::default();
            gate.observe(&headers(&[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", &reset),
            ]));
            match gate.wait(MAX_INLINE_WAIT).await {
                Err(GitLabError::RateLimited { retry_after_ms }) => assert!(
                    retry_after_ms > 3_500_000 && retry_after_ms <= 3_600_000,
                    "{reset}: {retry_after_ms}"
                ),
                other => panic!("{reset}: expected a capped pause, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_exhausted_budget_pauses_the_instance() {
        let gate = Gate::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        gate.observe(&headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", &(now + 120).to_string()),
        ]));
        match gate.wait(MAX_INLINE_WAIT).await {
            Err(GitLabError::RateLimited { retry_after_ms }) => {
                assert!(retry_after_ms > 100_000, "{retry_after_ms}")
            }
            other => panic!("expected a long pause, got {other:?}"),
        }
        let fresh = Gate::default();
        fresh.observe(&headers(&[("ratelimit-remaining", "5")]));
        assert!(fresh.wait(MAX_INLINE_WAIT).await.is_ok());
    }
}
