//! How every GitLab request is sent: one gate per instance that honours GitLab's rate limits
//! (`RateLimit-Remaining`/`RateLimit-Reset`, and `Retry-After` on 429) for all clients of this process,
//! bounded retries with jittered backoff for 5xx and connection errors on idempotent requests, and
//! pagination that follows GitLab's own `Link` header (offset or keyset) or `x-next-page`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::GitLabError;

/// Attempts for one idempotent request before the error goes back to the caller (whose job is then
/// retried later by the durable queue, so nothing is lost).
const ATTEMPTS: u32 = 4;
/// First backoff window; doubled per attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Rate-limit waits one request sits through in-line before its caller postpones the work instead.
const MAX_THROTTLED: u32 = 5;
/// A rate-limit wait longer than this is not slept through in-line: the caller gets `RateLimited` and
/// postpones its work instead of holding a worker.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);
/// When GitLab answers 429 without saying for how long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Per-instance rate-limit state, shared by every client of the same GitLab in this process.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    /// The gate of an instance (by API base URL). Process-wide, because GitLab counts per user and
    /// instance, not per client object.
    pub(crate) fn of(api: &str) -> Arc<Gate> {
        static GATES: OnceLock<Mutex<HashMap<String, Arc<Gate>>>> = OnceLock::new();
        GATES
            .get_or_init(Default::default)
            .lock()
            .expect("gate registry lock")
            .entry(api.to_owned())
            .or_default()
            .clone()
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

/// `RateLimit-Reset` is Unix epoch seconds (not a delta).
fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let reset = header_i64(headers, "ratelimit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(reset.saturating_sub(now).max(1) as u64))
}

/// How long a 429 asks us to wait: `Retry-After` first, then `RateLimit-Reset`, then a default.
fn retry_after(headers: &HeaderMap) -> Duration {
    header_i64(headers, "retry-after")
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .or_else(|| reset_wait(headers))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    // Spreading retries needs no cryptographic randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % 10_000) as f64 / 10_000.0
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
    loop {
        gate.wait(max_inline).await?;
        let mut req = http
            .request(call.method.clone(), &call.url)
            .bearer_auth(auth);
        if let Some(body) = call.json {
            req = req.json(body);
        }
        let outcome = match req.send().await {
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
        let window = BACKOFF_BASE * 2u32.pow(attempt - 1);
        tokio::time::sleep(window.mul_f64(0.5 + jitter() / 2.0)).await;
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
