//! `jsm set`, `jsm clear` and `jsm show`: Jira Service Management settings of a project, or defaults of a
//! group (the linked group or a subgroup of it) for the projects under it.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::jsm::{self, JsmScope};
use gfj_store::Store;
use gfj_store::subscriptions::Subscription;
use serde_json::json;

/// What `jsm set` and `jsm clear` apply to.
#[derive(Debug, Clone)]
pub enum Target {
    Project(String),
    Group(String),
}

impl Target {
    fn path(&self) -> &str {
        match self {
            Target::Project(p) | Target::Group(p) => p,
        }
    }
}

pub struct SetRequest {
    /// The Jira site (clientKey or base URL), needed only when the path is linked to several.
    pub site: Option<String>,
    pub target: Target,
    /// Comma-separated service IDs; `Some("")` sets none; `None` leaves them as they are.
    pub service_ids: Option<String>,
}

/// Sets what the request names, leaving the rest of the scope's settings as they were.
pub async fn set(store: &Store, req: &SetRequest, now_ms: i64) -> anyhow::Result<String> {
    let service_ids = req
        .service_ids
        .as_deref()
        .map(jsm::parse_service_ids)
        .transpose()?;
    let (sub, scope) = resolve(store, req.site.as_deref(), &req.target).await?;
    let records = store.jsm_settings(SubscriptionId(sub.id)).await?;
    let mut settings = records
        .into_iter()
        .find(|(s, _)| same_scope(s, &scope))
        .map(|(_, s)| s)
        .unwrap_or_default();
    if let Some(ids) = service_ids {
        settings.service_ids = Some(ids);
    }
    store
        .put_jsm_settings(SubscriptionId(sub.id), &scope, &settings, now_ms)
        .await?;
    Ok(serde_json::to_string(&json!({
        "subscription_id": sub.id,
        "target": scope,
        "settings": settings,
    }))?)
}

/// Removes a scope's own settings: its projects (or the project) inherit again.
pub async fn clear(store: &Store, site: Option<&str>, target: &Target) -> anyhow::Result<String> {
    let (sub, scope) = resolve(store, site, target).await?;
    let removed = store
        .clear_jsm_settings(SubscriptionId(sub.id), &scope)
        .await?;
    Ok(if removed {
        format!("cleared the JSM settings of {}", scope.path())
    } else {
        format!("{} had no JSM settings of its own", scope.path())
    })
}

/// The settings of every linked group: what each scope sets, and what is in force for each project.
pub async fn show(store: &Store, as_json: bool) -> anyhow::Result<String> {
    let sites: BTreeMap<String, String> = store
        .installations()
        .await?
        .into_iter()
        .map(|i| (i.client_key, i.base_url))
        .collect();
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for sub in store.subscriptions().await? {
        let records = store.jsm_settings(SubscriptionId(sub.id)).await?;
        let projects = known_projects(store, &sub).await?;
        let site = sites.get(&sub.client_key).cloned().unwrap_or_default();
        let in_force: Vec<_> = projects
            .iter()
            .map(|(id, path)| (path, jsm::in_force(&records, *id, path)))
            .collect();
        lines.push(format!("{} → {site}", sub.group_path));
        if records.is_empty() {
            lines.push("  no JSM settings".into());
        }
        for (scope, settings) in &records {
            let kind = match scope {
                JsmScope::Group { .. } => "group",
                JsmScope::Project { .. } => "project",
            };
            lines.push(format!(
                "  {kind} {}: service IDs {}",
                scope.path(),
                describe_ids(settings.service_ids.as_deref())
            ));
        }
        for (path, f) in in_force
            .iter()
            .filter(|(_, f)| f.service_ids_from.is_some())
        {
            lines.push(format!(
                "  in force for {path}: service IDs {} (from {})",
                describe_ids(Some(&f.service_ids)),
                f.service_ids_from.as_deref().unwrap_or_default()
            ));
        }
        out.push(json!({
            "subscription_id": sub.id,
            "site": site,
            "group": sub.group_path,
            "settings": records.iter().map(|(scope, s)| json!({ "target": scope, "settings": s })).collect::<Vec<_>>(),
            "projects": in_force.iter().map(|(path, f)| json!({ "path": path, "in_force": f })).collect::<Vec<_>>(),
        }));
    }
    if as_json {
        return Ok(serde_json::to_string_pretty(&out)?);
    }
    if lines.is_empty() {
        return Ok("no linked groups".into());
    }
    Ok(lines.join("\n"))
}

fn describe_ids(ids: Option<&[String]>) -> String {
    match ids {
        None => "inherited".into(),
        Some([]) => "none".into(),
        Some(ids) => ids.join(","),
    }
}

fn same_scope(a: &JsmScope, b: &JsmScope) -> bool {
    match (a, b) {
        (JsmScope::Project { id: x, .. }, JsmScope::Project { id: y, .. }) => x == y,
        (JsmScope::Group { path: x }, JsmScope::Group { path: y }) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The projects a subscription covers, as its backfill planned them: (id, full path).
async fn known_projects(
    store: &Store,
    sub: &Subscription,
) -> anyhow::Result<Vec<(ProjectId, String)>> {
    let mut projects: BTreeMap<i64, String> = BTreeMap::new();
    for t in store.backfill_tasks(Some(sub.id)).await? {
        projects.insert(t.project_id, t.project_path);
    }
    let mut list: Vec<(ProjectId, String)> = projects
        .into_iter()
        .map(|(id, path)| (ProjectId(id), path))
        .collect();
    list.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(list)
}

/// The subscription the path belongs to, and the scope it names there.
async fn resolve(
    store: &Store,
    site: Option<&str>,
    target: &Target,
) -> anyhow::Result<(Subscription, JsmScope)> {
    let path = target.path().trim().trim_matches('/');
    if path.is_empty() {
        bail!("give the full path of a project or group");
    }
    let client_key = match site {
        Some(site) => Some(super::link::site(store, site).await?.client_key),
        None => None,
    };
    let lower = path.to_lowercase();
    let candidates: Vec<Subscription> = store
        .subscriptions()
        .await?
        .into_iter()
        .filter(|s| client_key.as_ref().is_none_or(|k| *k == s.client_key))
        .filter(|s| {
            let group = s.group_path.to_lowercase();
            lower == group || lower.starts_with(&format!("{group}/"))
        })
        .collect();
    let sub = match candidates.len() {
        0 => bail!(
            "{path} is not in a linked group{}",
            match site {
                Some(site) => format!(" of {site}"),
                None => String::new(),
            }
        ),
        1 => candidates.into_iter().next().expect("one"),
        _ => bail!(
            "{path} is linked to several Jira sites: name one with --site ({})",
            candidates
                .iter()
                .map(|s| s.client_key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let projects = known_projects(store, &sub).await?;
    let scope = match target {
        Target::Project(_) => {
            let (id, path) = projects
                .into_iter()
                .find(|(_, p)| p.eq_ignore_ascii_case(path))
                .with_context(|| {
                    format!(
                        "{path} is not a project of {} (projects that joined the group recently are added by the next hook check or reconciliation)",
                        sub.group_path
                    )
                })?;
            JsmScope::Project { id, path }
        }
        Target::Group(_) => {
            let is_group = lower == sub.group_path.to_lowercase()
                || projects
                    .iter()
                    .any(|(_, p)| p.to_lowercase().starts_with(&format!("{lower}/")));
            if !is_group {
                bail!(
                    "{path} is neither {} nor a subgroup holding any of its projects",
                    sub.group_path
                );
            }
            JsmScope::Group {
                path: path.to_owned(),
            }
        }
    };
    Ok((sub, scope))
}
