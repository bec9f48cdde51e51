//! `sites list` and `status`: what is installed, linked and queued.

use gfj_store::Store;
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

pub async fn status(store: &Store, now_ms: i64, as_json: bool) -> anyhow::Result<String> {
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
            .filter(|h| h.state != "ok")
            .collect();
        hooks.push((unhealthy, store.open_gaps(s.id).await?));
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
                })
            }).collect::<Vec<_>>(),
            "subscriptions": subs.iter().zip(&hooks).map(|(s, (unhealthy, gaps))| {
                let mut v = json!(s);
                v["unhealthy_hooks"] = json!(unhealthy);
                v["open_gaps"] = json!(gaps);
                v
            }).collect::<Vec<_>>(),
            "queue": queue,
            "rejected_entities": rejected,
        }))?);
    }
    let mut out = vec![format!("sites: {}", sites.len())];
    for i in &sites {
        let mut line = format!("  {}  ({})", i.base_url, i.client_key);
        let unknown = store.unknown_keys(&i.client_key).await?;
        if !unknown.is_empty() {
            line.push_str(&format!(
                "  issue keys Jira does not know: {}",
                unknown.join(", ")
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
    for (s, (unhealthy, gaps)) in subs.iter().zip(&hooks) {
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
    }
    out.push(format!(
        "queue: {} ready, {} scheduled for retry, {} running, {} failed permanently; oldest ready {} ms",
        queue.ready, queue.scheduled, queue.running, queue.dead, queue.oldest_ready_age_ms
    ));
    out.push(format!("entities Jira refused: {rejected}"));
    Ok(out.join("\n"))
}
