//! `POST /gitlab/webhook`: authenticate by `X-Gitlab-Token`, then queue the delivery durably (group
//! commit) and answer 202 only once it is committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gfj_core::gitlab::{EventKind, WebhookEvent, shorten, webhook_token_hash};
use gfj_core::jobs::{DeliveryId, GitlabEvent, Job};
use gfj_core::{metric_names, standard_webhooks};
use gfj_store::queue::NewJob;
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

/// Bodies at least this large are parsed off the runtime ([`LargeBodies`]), so that one huge delivery
/// cannot hold a runtime worker (and every request queued behind it) for the milliseconds a parse takes,
/// and are queued shortened.
const PARSE_OFF_RUNTIME_BYTES: usize = 256 * 1024;

type Answer = (StatusCode, String);

/// Handles large bodies one at a time, on a thread of its own whose priority is lowered: on a machine of
/// few cores, a large body then waits for the small deliveries around it rather than the reverse.
pub struct LargeBodies {
    tx: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl Default for LargeBodies {
    /// Starts the thread; it ends when the handle is dropped.
    fn default() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("gfj-large-bodies".into())
            .spawn(move || {
                lower_this_threads_priority();
                for task in rx {
                    // A panic drops the task's reply, which its request answers as a failure.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                }
            })
            .expect("starting the large-body thread");
        Self { tx }
    }
}

impl LargeBodies {
    async fn run<T: Send + 'static>(
        &self,
        task: impl FnOnce() -> Result<T, Answer> + Send + 'static,
    ) -> Result<T, Answer> {
        let (reply, parsed) = tokio::sync::oneshot::channel();
        let task = Box::new(move || {
            let _ = reply.send(task());
        });
        if self.tx.send(task).is_err() {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down, retry".to_owned(),
            ));
        }
        parsed.await.unwrap_or_else(|_| {
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not parse the body".to_owned(),
            ))
        })
    }
}

/// Nice 19, the lowest: about 1.5% of the CPU share of a normal thread when the cores are busy, all of
/// it otherwise.
#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    // On Linux, a thread id given as the process of `setpriority` sets that one thread's nice value.
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!(error = %e, "could not lower the large-body thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

/// A body as read: its chunks, joined only where the bytes are used ([`BodyChunks::into_bytes`]), so that
/// copying a large body happens off the runtime.
struct BodyChunks {
    chunks: Vec<Bytes>,
    len: usize,
}

impl BodyChunks {
    fn into_bytes(mut self) -> Bytes {
        if self.chunks.len() == 1 {
            return self.chunks.remove(0);
        }
        let mut joined = Vec::with_capacity(self.len);
        for chunk in &self.chunks {
            joined.extend_from_slice(chunk);
        }
        joined.into()
    }
}

/// Reads the body, within `limit` bytes: `Err` with the answer otherwise.
async fn read_body(
    body: axum::body::Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<BodyChunks, Answer> {
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
    let mut limited = http_body_util::Limited::new(body, limit);
    let mut read = BodyChunks {
        chunks: Vec::new(),
        len: 0,
    };
    while let Some(frame) = http_body_util::BodyExt::frame(&mut limited).await {
        match frame {
            Ok(frame) => {
                if let Ok(chunk) = frame.into_data() {
                    read.len += chunk.len();
                    read.chunks.push(chunk);
                }
            }
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
            Err(e) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                ));
            }
        }
    }
    Ok(read)
}

/// A subscription's Standard Webhooks signature check of one delivery, with what it needs from the
/// request, so that it can run where the body is joined.
struct SignatureCheck {
    key: Arc<Vec<u8>>,
    id: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    now_s: i64,
    subscription_id: i64,
}

impl SignatureCheck {
    fn check(&self, body: &[u8]) -> Result<(), Answer> {
        standard_webhooks::verify(
            &self.key,
            self.id.as_deref(),
            self.timestamp.as_deref(),
            self.signature.as_deref(),
            body,
            self.now_s,
        )
        .map_err(|e| {
            tracing::warn!(subscription = self.subscription_id, reason = %e, "webhook signature refused");
            (StatusCode::UNAUTHORIZED, "invalid webhook signature".into())
        })
    }
}

/// What a delivery's body becomes: checked, parsed, ready to queue (or the answer refusing it).
fn accept_body(
    body: BodyChunks,
    signature: Option<&SignatureCheck>,
    kind: EventKind,
) -> Result<Option<Queued>, Answer> {
    let body = body.into_bytes();
    if let Some(signature) = signature {
        signature.check(&body)?;
    }
    if !kind.is_acted_on() {
        return Ok(None);
    }
    parse_delivery(kind, &body).map(Some)
}

/// A delivery's entity key (for coalescing) and its body as JSON to queue.
type Queued = (Option<String>, Box<RawValue>);

/// The delivery's entity key (for coalescing) and its body as JSON to queue, or the answer refusing it.
/// A large body is queued shortened ([`shorten`]): what the worker reads from it is the same, and the
/// queue, whose commits every delivery shares, writes kilobytes rather than megabytes.
fn parse_delivery(kind: EventKind, body: &[u8]) -> Result<Queued, Answer> {
    let refused = |e: gfj_core::gitlab::PayloadError| (StatusCode::BAD_REQUEST, e.to_string());
    let entity_key = WebhookEvent::parse(kind, body)
        .map_err(refused)?
        .entity_key();
    let not_json = |e: serde_json::Error| (StatusCode::BAD_REQUEST, format!("not JSON: {e}"));
    if body.len() < PARSE_OFF_RUNTIME_BYTES {
        // The parse above read every byte, so this is valid UTF-8 JSON; `RawValue` offers no way to skip
        // its own check, which costs a scan without allocating.
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| (StatusCode::BAD_REQUEST, "not JSON: not UTF-8".to_owned()))?;
        return Ok((entity_key, RawValue::from_string(text).map_err(not_json)?));
    }
    let mut value = serde_json::from_slice(body).map_err(not_json)?;
    let done = shorten::shorten(&mut value);
    if !done.is_empty() {
        tracing::info!(
            bytes = body.len(),
            texts_shortened = done.texts,
            array_items_left_out = done.items,
            "large delivery queued shortened"
        );
    }
    let raw = serde_json::value::to_raw_value(&value)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((entity_key, raw))
}

/// `POST /gitlab/webhook`, counted and timed for `/metrics` by event kind and outcome.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, String) {
    let started = std::time::Instant::now();
    let event = headers
        .get("x-gitlab-event")
        .and_then(|v| v.to_str().ok())
        .map_or(EventKind::Other, EventKind::from_header);
    let answer = receive_delivery(state, &headers, body).await;
    metrics::counter!(
        metric_names::WEBHOOKS_RECEIVED,
        "event" => event.label(),
        "outcome" => crate::metrics::webhook_outcome(answer.0),
    )
    .increment(1);
    metrics::histogram!(metric_names::WEBHOOK_INTAKE_SECONDS).record(started.elapsed());
    answer
}

/// The token is checked from the headers before a byte of the body is read, so an unauthenticated
/// client cannot make the service read (or wait for) a large body.
async fn receive_delivery(
    state: Arc<AppState>,
    headers: &HeaderMap,
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
    let body = match read_body(body, headers, state.config.webhook_max_bytes).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let subscription_id = known.subscription_id;
    let signature = known.signing_key.clone().map(|key| SignatureCheck {
        key,
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        now_s: now.div_euclid(1000),
        subscription_id,
    });
    let event = header("x-gitlab-event").unwrap_or_default();
    let kind = EventKind::from_header(&event);
    // Strict about what routes the event (kind, ids), lenient about the rest; a refused body is never
    // queued, and the reason shows in the hook's "Recent events" in GitLab.
    let accepted = if body.len >= PARSE_OFF_RUNTIME_BYTES {
        state
            .large_bodies
            .run(move || accept_body(body, signature.as_ref(), kind))
            .await
    } else {
        accept_body(body, signature.as_ref(), kind)
    };
    let (entity_key, body) = match accepted {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return (StatusCode::OK, "event type not used".into()),
        Err(answer) => return answer,
    };
    // A signed delivery is deduplicated on its signed `webhook-id`: the unsigned `Idempotency-Key` of a
    // replayed delivery can be changed without breaking the signature.
    let delivery_key = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .map(str::to_owned)
    };
    let delivery_id = if known.signing_key.is_some() {
        delivery_key("webhook-id").map(DeliveryId::Signed)
    } else {
        delivery_key("idempotency-key").map(DeliveryId::Unsigned)
    };
    let job = Job::GitlabEvent(GitlabEvent {
        subscription_id,
        event,
        seq: state.sequence.next(now),
        body,
        delivery_id,
        entity_key,
    });
    let new = NewJob::of(&job, now);
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
    fn large_deliveries_are_queued_shortened_and_small_ones_verbatim() {
        // GitLab's documented push example, with the message under test.
        let example: serde_json::Value = serde_json::from_str(include_str!(
            "../../core/tests/fixtures/gitlab/push_redacted_email.json"
        ))
        .unwrap();
        let push = |message: &str| {
            let mut body = example.clone();
            body["commits"][0]["message"] = message.into();
            body.to_string()
        };
        let small = push("PROJ-1 small");
        let (_, queued) = parse_delivery(EventKind::Push, small.as_bytes()).unwrap();
        assert_eq!(queued.get(), small);

        let huge = push(&format!("PROJ-1 {}", "PROJ-2 filler ".repeat(600_000)));
        assert!(huge.len() > 8 << 20);
        let (_, queued) = parse_delivery(EventKind::Push, huge.as_bytes()).unwrap();
        assert!(
            queued.get().len() < 32 << 10,
            "{} bytes queued",
            queued.get().len()
        );
        let event = WebhookEvent::parse(EventKind::Push, queued.get().as_bytes()).unwrap();
        let WebhookEvent::Push(event) = event else {
            panic!("a push")
        };
        let keys = gfj_core::issue_keys::extract([event.commits[0].message.as_str()]);
        assert_eq!(keys.keys(), ["PROJ-1", "PROJ-2"]);
    }

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
