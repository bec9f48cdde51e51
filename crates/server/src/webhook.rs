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

pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
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
    let parsed = match WebhookEvent::parse(kind, &body) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Ok(body) = std::str::from_utf8(&body)
        .map(str::to_owned)
        .map_err(drop)
        .and_then(|b| RawValue::from_string(b).map_err(drop))
    else {
        return (StatusCode::BAD_REQUEST, "body is not JSON".into());
    };
    let dedup_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .map(|k| format!("gitlab:{subscription_id}:{k}"));
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
        coalesce_key: parsed
            .entity_key()
            .map(|k| format!("{subscription_id}:{k}")),
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
