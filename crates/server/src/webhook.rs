//! `POST /gitlab/webhook`: authenticate by `X-Gitlab-Token`, then queue the delivery durably (group
//! commit) and answer 202 only once it is committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gfj_core::gitlab::{EventKind, WebhookEvent, webhook_token_hash};
use gfj_core::jobs::GitlabEvent;
use gfj_core::standard_webhooks;
use gfj_store::queue::{DEFAULT_MAX_ATTEMPTS, NewJob};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;

use crate::AppState;

/// How long a token → subscription lookup is trusted before asking the database again.
const TOKEN_CACHE_MS: i64 = 30_000;

/// The subscription a webhook token belongs to, as cached.
#[derive(Clone)]
struct KnownToken {
    subscription_id: i64,
    /// Standard Webhooks key, when the subscription's deliveries must be signed.
    signing_key: Option<Arc<Vec<u8>>>,
    cached_at: i64,
}

/// Recently seen webhook tokens (by hash), so that a busy hook costs no database read per delivery.
#[derive(Default)]
pub struct TokenCache(RwLock<HashMap<String, KnownToken>>);

/// Hands out `updateSequenceId`s: microseconds since the epoch, strictly increasing in this process.
#[derive(Default)]
pub struct SequenceClock(AtomicI64);

impl SequenceClock {
    fn next(&self, now_ms: i64) -> i64 {
        let now_us = now_ms.saturating_mul(1000);
        let mut prev = self.0.load(Ordering::Relaxed);
        loop {
            let next = now_us.max(prev + 1);
            match self
                .0
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

/// Bodies at least this large are parsed on the blocking pool, so that one huge delivery cannot hold a
/// runtime worker (and every request queued behind it) for the milliseconds a parse takes.
const PARSE_OFF_RUNTIME_BYTES: usize = 256 * 1024;

/// Reads the body, within `limit` bytes: `Err` with the answer otherwise.
async fn read_body(
    body: axum::body::Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than GFJ_WEBHOOK_MAX_BYTES ({limit} bytes)"),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    if headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
    {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, limit);
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("could not read the body: {e}"),
        )),
    }
}

/// The delivery's entity key (for coalescing) and its body as JSON to queue, or the answer refusing it.
fn parse_delivery(
    kind: EventKind,
    body: &[u8],
) -> Result<(Option<String>, Box<RawValue>), (StatusCode, String)> {
    let entity_key = WebhookEvent::parse(kind, body)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?
        .entity_key();
    let raw = std::str::from_utf8(body)
        .ok()
        .and_then(|b| RawValue::from_string(b.to_owned()).ok())
        .ok_or_else(|| (StatusCode::BAD_REQUEST, "body is not JSON".to_owned()))?;
    Ok((entity_key, raw))
}

/// `POST /gitlab/webhook`. The token is checked from the headers before a byte of the body is read, so
/// an unauthenticated client cannot make the service read (or wait for) a large body.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, String) {
    let Some(token) = headers.get("x-gitlab-token").map(|v| v.as_bytes()) else {
        return (StatusCode::UNAUTHORIZED, "missing X-Gitlab-Token".into());
    };
    let now = state.clock.now_ms();
    let known = match subscription_for(&state, token, now).await {
        Ok(Some(k)) => k,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "unknown X-Gitlab-Token".into()),
        Err(()) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage unavailable, retry".into(),
            );
        }
    };
    let body = match read_body(body, &headers, state.config.webhook_max_bytes).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    if let Some(key) = &known.signing_key {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Err(e) = standard_webhooks::verify(
            key,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
            now.div_euclid(1000),
        ) {
            tracing::warn!(subscription = known.subscription_id, reason = %e, "webhook signature refused");
            return (StatusCode::UNAUTHORIZED, "invalid webhook signature".into());
        }
    }
    let subscription_id = known.subscription_id;
    let event = headers
        .get("x-gitlab-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let kind = EventKind::from_header(&event);
    if kind == EventKind::Other {
        return (StatusCode::OK, "event type not used".into());
    }
    // Strict about what routes the event (kind, ids), lenient about the rest; a refused body is never
    // queued, and the reason shows in the hook's "Recent events" in GitLab.
    let parsed = if body.len() >= PARSE_OFF_RUNTIME_BYTES {
        tokio::task::spawn_blocking(move || parse_delivery(kind, &body))
            .await
            .unwrap_or_else(|_| {
                Err((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not parse the body".into(),
                ))
            })
    } else {
        parse_delivery(kind, &body)
    };
    let (entity_key, body) = match parsed {
        Ok(parsed) => parsed,
        Err(answer) => return answer,
    };
    // A signed delivery is deduplicated on its signed `webhook-id`: the unsigned `Idempotency-Key` of a
    // replayed delivery can be changed without breaking the signature.
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty() && k.len() <= 200)
    };
    let dedup_key = if known.signing_key.is_some() {
        header("webhook-id").map(|k| format!("gitlab-signed:{subscription_id}:{k}"))
    } else {
        header("idempotency-key").map(|k| format!("gitlab:{subscription_id}:{k}"))
    };
    let job = GitlabEvent {
        subscription_id,
        event,
        seq: state.sequence.next(now),
        body,
    };
    let payload = serde_json::to_string(&job).expect("serialising a job payload cannot fail");
    let new = NewJob {
        kind: GitlabEvent::KIND.to_owned(),
        payload,
        dedup_key,
        run_at: now,
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        coalesce_key: entity_key.map(|k| format!("{subscription_id}:{k}")),
    };
    match state.intake.submit(new).await {
        Ok(()) => (StatusCode::ACCEPTED, "queued".into()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "could not queue, retry".into(),
        ),
    }
}

/// The subscription whose secret token this is. Only SHA-256 digests of tokens are stored and looked
/// up; the final comparison runs in constant time.
async fn subscription_for(
    state: &AppState,
    token: &[u8],
    now: i64,
) -> Result<Option<KnownToken>, ()> {
    let hash = webhook_token_hash(token);
    if let Some(known) = state
        .webhook_tokens
        .0
        .read()
        .expect("token cache lock")
        .get(&hash)
        && now - known.cached_at < TOKEN_CACHE_MS
    {
        return Ok(Some(known.clone()));
    }
    let storage_failed = |e: gfj_store::StoreError| {
        tracing::error!(error = %e, "webhook token lookup failed");
    };
    let found = state
        .store
        .subscription_by_token_hash(&hash)
        .await
        .map_err(storage_failed)?;
    let Some(sub) =
        found.filter(|s| bool::from(s.webhook_token_hash.as_bytes().ct_eq(hash.as_bytes())))
    else {
        state
            .webhook_tokens
            .0
            .write()
            .expect("token cache lock")
            .remove(&hash);
        return Ok(None);
    };
    let signing_key = state
        .store
        .subscription_signing_key(&sub)
        .await
        .map_err(storage_failed)?
        .map(Arc::new);
    let known = KnownToken {
        subscription_id: sub.id,
        signing_key,
        cached_at: now,
    };
    state
        .webhook_tokens
        .0
        .write()
        .expect("token cache lock")
        .insert(hash, known.clone());
    Ok(Some(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_is_strictly_increasing_and_tracks_time() {
        let c = SequenceClock::default();
        let a = c.next(1_000);
        let b = c.next(1_000);
        let d = c.next(999);
        assert_eq!(a, 1_000_000);
        assert!(b > a && d > b);
        assert_eq!(c.next(5_000), 5_000_000);
    }
}
