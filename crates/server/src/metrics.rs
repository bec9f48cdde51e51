//! `GET /metrics`: Prometheus text. Counters and histograms are recorded where things happen (intake here,
//! jobs in `gfj-sync`, requests in both clients) through the `metrics` facade into one process-wide
//! recorder; the gauges describe the shared database and are read from it at each scrape
//! (`Store::gauges`). Families and their help lines: `gfj_core::metric_names`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gfj_core::domain::HookState;
use gfj_core::metric_names::{self as names, FamilyKind};
use gfj_store::backfill::TaskState;
use gfj_store::gauges::Gauges;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// Latency buckets in seconds: from a fast fsync to a slow Jira.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are folded when nobody scrapes, so that their samples do not pile up.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. When another recorder was installed first (a test
/// harness's), this one still renders the gauges set through it but sees no counters.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows gauges only");
        }
        for (name, kind, help) in names::FAMILIES {
            match kind {
                FamilyKind::Counter => metrics::describe_counter!(*name, *help),
                FamilyKind::Gauge => metrics::describe_gauge!(*name, *help),
                FamilyKind::Histogram => {
                    metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help)
                }
            }
        }
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread; histograms fold at each scrape only");
        }
        handle
    })
}

/// `GET /metrics`.
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    match state.store.gauges(state.clock.now_ms()).await {
        Ok(gauges) => set_gauges(&gauges),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the database");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

/// Sets every gauge from the database's figures. A label value seen at an earlier scrape and absent
/// now (a job kind whose jobs are all gone) is set to 0, not left at its last value.
fn set_gauges(g: &Gauges) {
    static JOB_KINDS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    static TASK_STATES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    static HOOK_STATES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let known =
        |names: &mut dyn Iterator<Item = &str>| names.map(str::to_owned).collect::<Vec<_>>();
    let kinds = known(&mut gfj_core::jobs::Job::KINDS.into_iter());
    let task_states = known(&mut TaskState::ALL.iter().map(|s| s.as_str()));
    let hook_states = known(&mut HookState::ALL.iter().map(|s| s.as_str()));
    for kind in remembered(&JOB_KINDS, kinds.iter().chain(g.jobs_by_kind.keys())) {
        let k = g.jobs_by_kind.get(&kind).cloned().unwrap_or_default();
        for (state, n) in [
            ("ready", k.ready),
            ("scheduled", k.scheduled),
            ("running", k.running),
            ("dead", k.dead),
        ] {
            metrics::gauge!(names::QUEUE_JOBS, "kind" => kind.clone(), "state" => state)
                .set(n as f64);
        }
        metrics::gauge!(names::QUEUE_OLDEST_AGE_SECONDS, "kind" => kind.clone())
            .set(k.oldest_ready_age_ms.max(0) as f64 / 1000.0);
    }
    for state in remembered(
        &TASK_STATES,
        task_states.iter().chain(g.backfill_tasks_by_state.keys()),
    ) {
        let n = g.backfill_tasks_by_state.get(&state).copied().unwrap_or(0);
        metrics::gauge!(names::BACKFILL_TASKS, "state" => state).set(n as f64);
    }
    for state in remembered(
        &HOOK_STATES,
        hook_states.iter().chain(g.hooks_by_state.keys()),
    ) {
        let n = g.hooks_by_state.get(&state).copied().unwrap_or(0);
        metrics::gauge!(names::HOOKS, "state" => state).set(n as f64);
    }
    metrics::gauge!(names::OUTBOX_ENTITIES).set(g.outbox_entities as f64);
    metrics::gauge!(names::SITES_PAUSED).set(g.sites_paused as f64);
    metrics::gauge!(names::SITES_NEEDING_ATTENTION).set(g.sites_needing_attention as f64);
    metrics::gauge!(names::GATES_OPEN).set(g.gates_open as f64);
}

/// `now` added to the label values `seen` so far; all of them, to be set.
fn remembered<'a>(
    seen: &Mutex<BTreeSet<String>>,
    now: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let mut seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    seen.extend(now.cloned());
    seen.iter().cloned().collect()
}

/// The intake's `outcome` label of a webhook answer.
pub(crate) fn webhook_outcome(status: StatusCode) -> &'static str {
    match status {
        StatusCode::ACCEPTED => "queued",
        StatusCode::OK => "ignored",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::BAD_REQUEST => "refused",
        _ if status.is_server_error() => "unavailable",
        _ => "other",
    }
}
