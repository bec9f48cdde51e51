//! `sites list` and `status`: what is installed, linked and queued.

use gfj_store::Store;
use gfj_store::backfill::{BackfillTask, OutboxState, Progress, TaskState};
use serde_json::json;

pub async fn sites(store: &Store, as_json: bool) -> anyhow::Result<String> {
    let sites = store.installations().await?;
    if as_json {
        let list: Vec<_> = sites
            .iter()
            .map(|i| json!({ "mode": i.mode(), "client_key": i.client_key, "base_url": i.base_url, "display_url": i.display_url }))
            .collect();
        return Ok(serde_json::to_string_pretty(&list)?);
    }
    if sites.is_empty() {
        return Ok("no Jira sites installed".into());
    }
    Ok(sites
        .iter()
        .map(|i| format!("{:<8} {}  {}", i.mode(), i.base_url, i.client_key))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `bars`: draw progress bars (on a terminal) rather than plain counts.
pub async fn status(
    store: &Store,
    now_ms: i64,
    as_json: bool,
    bars: bool,
) -> anyhow::Result<String> {
    let sites = store.installations().await?;
    let subs = store.subscriptions().await?;
    let queue = store.queue_stats(now_ms).await?;
    let states = store.site_states().await?;
    let rejected = store.rejections().await?.len();
    let state_of = |ck: &str| states.iter().find(|s| s.client_key == ck);
    let mut hooks = Vec::new();
    for s in &subs {
        let unhealthy: Vec<_> = store
            .subscription_hook_status(s.id)
            .await?
            .into_iter()
            .filter(|h| h.state != gfj_core::domain::HookState::Ok)
            .collect();
        hooks.push((unhealthy, store.open_gaps(s.id).await?));
    }
    let mut unknown = std::collections::HashMap::new();
    for i in &sites {
        unknown.insert(
            i.client_key.clone(),
            unknown_by_kind(store.unknown_keys(&i.client_key).await?),
        );
    }
    let open_gates: Vec<gfj_store::gates::Gate> = store
        .gates(None)
        .await?
        .into_iter()
        .filter(|g| g.state != gfj_core::jsm::GateState::Done)
        .collect();
    let tasks = store.backfill_tasks(None).await?;
    let mut outboxes = Vec::with_capacity(subs.len());
    let mut backfills = Vec::with_capacity(subs.len());
    for s in &subs {
        outboxes.push(store.outbox_state(s.id).await?);
        backfills.push(store.backfill_report(s.id, now_ms).await?);
    }
    if as_json {
        return Ok(serde_json::to_string_pretty(&json!({
            "sites": sites.iter().map(|i| {
                let st = state_of(&i.client_key);
                json!({
                    "client_key": i.client_key,
                    "base_url": i.base_url,
                    "paused_until": st.map(|s| s.paused_until).filter(|&p| p > now_ms),
                    "attention": st.and_then(|s| s.attention.clone()),
                    "unknown_issue_keys": unknown[&i.client_key].0,
                    "unknown_services": unknown[&i.client_key].1,
                })
            }).collect::<Vec<_>>(),
            "subscriptions": subs.iter().zip(&hooks).map(|(s, (unhealthy, gaps))| {
                let mut v = json!(s);
                v["unhealthy_hooks"] = json!(unhealthy);
                v["open_gaps"] = json!(gaps);
                v
            }).collect::<Vec<_>>(),
            "queue": queue,
            "open_gates": open_gates.iter().map(|g| {
                let mut v = json!(g);
                v["age_ms"] = json!(now_ms - g.opened_at);
                v
            }).collect::<Vec<_>>(),
            "rejected_entities": rejected,
            "backfill": backfills,
        }))?);
    }
    let mut out = vec![format!("sites: {}", sites.len())];
    for i in &sites {
        let mut line = format!("  {}  ({})", i.base_url, i.client_key);
        let (keys, services) = &unknown[&i.client_key];
        if !keys.is_empty() {
            line.push_str(&format!(
                "  issue keys Jira does not know: {}",
                keys.join(", ")
            ));
        }
        if !services.is_empty() {
            line.push_str(&format!(
                "  JSM services Jira does not know: {}",
                services.join(", ")
            ));
        }
        if let Some(st) = state_of(&i.client_key) {
            if st.paused_until > now_ms {
                line.push_str(&format!(
                    "  paused for {} ms: {}",
                    st.paused_until - now_ms,
                    st.pause_reason.as_deref().unwrap_or("")
                ));
            }
            if let Some(why) = &st.attention {
                line.push_str(&format!("  NEEDS ATTENTION: {why}"));
            }
        }
        out.push(line);
    }
    out.push(format!("subscriptions: {}", subs.len()));
    for ((s, (unhealthy, gaps)), outbox) in subs.iter().zip(&hooks).zip(&outboxes) {
        let mut line = format!(
            "  #{} {} {} → {} ({} hooks)",
            s.id, s.gitlab_url, s.group_path, s.client_key, s.hook_mode
        );
        for h in unhealthy {
            line.push_str(&format!(
                "  HOOK {} on {} {}: {}",
                h.hook.hook_id, h.hook.scope, h.hook.target_id, h.state
            ));
        }
        if !gaps.is_empty() {
            line.push_str(&format!(
                "  {} window(s) GitLab may not have reported, to reconcile",
                gaps.len()
            ));
        }
        out.push(line);
        backfill_lines(&mut out, s.id, &tasks, outbox, now_ms, bars);
    }
    out.push(format!(
        "queue: {} ready, {} scheduled for retry, {} running, {} failed permanently; oldest ready {} ms",
        queue.ready, queue.scheduled, queue.running, queue.dead, queue.oldest_ready_age_ms
    ));
    out.push(format!("entities Jira refused: {rejected}"));
    out.push(format!("open deployment gates: {}", open_gates.len()));
    for g in &open_gates {
        out.push(format!("  {}", describe_gate(g, now_ms)));
    }
    Ok(out.join("\n"))
}

/// `status --issue KEY`: what was sent to Jira under an issue key, with Jira's verdicts, and why nothing
/// may have been.
pub async fn issue(
    store: &Store,
    key: &str,
    audit_days: i64,
    as_json: bool,
) -> anyhow::Result<String> {
    const SHOWN: i64 = 200;
    let report = store.issue_report(key, SHOWN).await?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&report)?);
    }
    let (entries, gates, notes) = (report.sent, report.gates, report.notes);
    let mut out = Vec::new();
    if entries.is_empty() {
        out.push(format!(
            "nothing was sent to Jira under {key} in the last {audit_days} days: no linked GitLab activity mentioned it"
        ));
    } else {
        out.push(format!("sent to Jira under {key} (newest first):"));
        for e in &entries {
            let when = gfj_core::gitlab::GitLabTime::from_unix_ms(e.at)
                .map_or_else(|| e.at.to_string(), |t| t.rfc3339());
            let verdict = match &e.message {
                Some(m) => format!("{}: {m}", e.verdict),
                None => e.verdict.clone(),
            };
            out.push(format!(
                "  {when}  {:<12} {}  seq {}  {verdict}",
                e.entity_type, e.entity_id, e.seq
            ));
        }
    }
    if !gates.is_empty() {
        let now = gfj_store::Clock::now_ms(&gfj_store::SystemClock);
        out.push(format!("deployment gates of {key}:"));
        out.extend(gates.iter().map(|g| format!("  {}", describe_gate(g, now))));
    }
    out.extend(notes.into_iter().map(|n| format!("note: {n}")));
    Ok(out.join("\n"))
}

/// One line about a gate: the deployment, where the gate is, and what was done.
fn describe_gate(g: &gfj_store::gates::Gate, now_ms: i64) -> String {
    let change_request = g
        .change_request
        .as_deref()
        .map_or_else(String::new, |cr| format!(", change request {cr}"));
    let state = match (g.state, g.decision) {
        (gfj_core::jsm::GateState::Open, _) => format!(
            "waiting for Jira Service Management for {} s",
            (now_ms - g.opened_at) / 1000
        ),
        (_, Some(d)) => format!(
            "{}: {}",
            d.as_str(),
            g.outcome.as_deref().unwrap_or("being applied in GitLab")
        ),
        (state, None) => state.as_str().to_owned(),
    };
    format!(
        "gate {}: deployment {} of project {} to {} ({}){change_request}; {state}",
        g.id, g.deployment_id, g.project_id, g.environment_name, g.tier
    )
}

fn backfill_lines(
    out: &mut Vec<String>,
    subscription_id: i64,
    tasks: &[BackfillTask],
    outbox: &OutboxState,
    now_ms: i64,
    bars: bool,
) {
    let mine: Vec<BackfillTask> = tasks
        .iter()
        .filter(|t| t.subscription_id == subscription_id)
        .cloned()
        .collect();
    if mine.is_empty() {
        out.push("    backfill: not planned yet".into());
        return;
    }
    let overall = Progress::of(&mine, now_ms);
    out.push(format!(
        "    backfill {}: {}/{} tasks done, {} running, {} pending, {} failed; {} items read, {} for Jira ({} still to send){}",
        overall.state_with_outbox(outbox),
        overall.done,
        overall.tasks,
        overall.running,
        overall.pending,
        overall.failed,
        overall.items_done,
        overall.items_sent,
        outbox.entities,
        eta_text(&overall)
    ));
    for (path, tasks) in gfj_store::reports::by_project(&mine) {
        let p = Progress::of(&tasks, now_ms);
        let head = if bars {
            format!("      {path:<40} {} {}", bar(p.fraction(), 24), p.state())
        } else {
            format!("      {path}: {}", p.state())
        };
        let detail: Vec<String> = tasks
            .iter()
            .map(|t| {
                let count = match t.items_total {
                    Some(total) if t.state != TaskState::Done => {
                        format!("{}/{total}", t.items_done)
                    }
                    _ => t.items_done.to_string(),
                };
                let mut d = format!("{} {} {count}", t.entity.as_str(), t.state.as_str());
                if let Some(e) = &t.error {
                    d.push_str(&format!(" ({e})"));
                }
                d
            })
            .collect();
        out.push(format!("{head}{}  {}", eta_text(&p), detail.join(" · ")));
    }
}

fn eta_text(p: &Progress) -> String {
    match (p.state(), p.eta_ms) {
        ("running" | "pending", Some(ms)) => format!("; about {} left", human_duration(ms)),
        _ => String::new(),
    }
}

fn human_duration(ms: i64) -> String {
    let s = (ms + 999) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", (s + 59) / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// A text progress bar: `[######------]  50%`.
fn bar(fraction: f64, width: usize) -> String {
    let f = fraction.clamp(0.0, 1.0);
    let filled = (f * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3}%",
        "#".repeat(filled),
        "-".repeat(width - filled),
        (f * 100.0).floor() as u32
    )
}

/// What a site answered it does not know, as (issue keys, JSM service IDs): unknown associations are
/// kept beside unknown keys with their association type in front.
fn unknown_by_kind(unknown: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut keys = Vec::new();
    let mut services = Vec::new();
    for u in unknown {
        match u.strip_prefix("serviceIdOrKeys:") {
            Some(service) => services.push(service.to_owned()),
            None => keys.push(u),
        }
    }
    (keys, services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_durations_read_well() {
        assert_eq!(bar(0.5, 10), "[#####-----]  50%");
        assert_eq!(bar(1.5, 4), "[####] 100%");
        assert_eq!(bar(0.0, 4), "[----]   0%");
        assert_eq!(human_duration(1), "1 s");
        assert_eq!(human_duration(90_000), "2 min");
        assert_eq!(human_duration(5_400_000), "1.5 h");
    }
}
