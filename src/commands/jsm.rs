//! `jsm set`, `jsm clear` and `jsm show`: Jira Service Management settings of a project, or defaults of a
//! group (the linked group or a subgroup of it) for the projects under it.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::jsm::{self, JsmScope};
use gfj_store::Store;
use gfj_store::subscriptions::Subscription;
use serde_json::json;

use crate::Settings;

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

#[derive(Default)]
pub struct SetRequest {
    /// The Jira site (clientKey or base URL), needed only when the path is linked to several.
    pub site: Option<String>,
    pub target: Target,
    /// Comma-separated service IDs; `Some("")` sets none; `None` leaves them as they are.
    pub service_ids: Option<String>,
    /// Comma-separated tiers whose blocked deployments wait for JSM; `Some("")` turns gating off.
    pub gating_tiers: Option<String>,
    /// The GitLab token that approves, rejects and plays gated deployments.
    pub gating_token: Option<String>,
    pub play_after_approval: Option<bool>,
}

impl Default for Target {
    fn default() -> Self {
        Target::Group(String::new())
    }
}

/// Sets what the request names, leaving the rest of the scope's settings as they were. Gating is
/// checked against GitLab first: the token's user must be able to approve deployments where it will.
pub async fn set(
    settings: &Settings,
    store: &Store,
    req: &SetRequest,
    now_ms: i64,
) -> anyhow::Result<String> {
    let service_ids = req
        .service_ids
        .as_deref()
        .map(jsm::parse_service_ids)
        .transpose()?;
    let tiers = req
        .gating_tiers
        .as_deref()
        .map(jsm::parse_tiers)
        .transpose()?;
    let (sub, scope) = resolve(store, req.site.as_deref(), &req.target).await?;
    let mut records = store.jsm_settings(SubscriptionId(sub.id)).await?;
    let mut own = records
        .iter()
        .find(|(s, _)| same_scope(s, &scope))
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    if let Some(ids) = service_ids {
        own.service_ids = Some(ids);
    }
    if let Some(tiers) = tiers {
        own.gating_tiers = Some(tiers);
    }
    if let Some(token) = &req.gating_token {
        own.gating_token = Some(jsm::GatingToken(token.clone()));
    }
    if let Some(play) = req.play_after_approval {
        own.play_after_approval = Some(play);
    }
    records.retain(|(s, _)| !same_scope(s, &scope));
    records.push((scope.clone(), own.clone()));
    let gating_changed = req.gating_tiers.is_some() || req.gating_token.is_some();
    if gating_changed {
        check_gating(
            settings,
            store,
            &sub,
            &scope,
            &records,
            req.gating_token.is_some(),
        )
        .await?;
    }
    store
        .put_jsm_settings(SubscriptionId(sub.id), &scope, &own, now_ms)
        .await?;
    let settings = own;
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
            let tiers = match &settings.gating_tiers {
                None => "inherited".to_owned(),
                Some(t) if t.is_empty() => "off".to_owned(),
                Some(t) => tier_list(t),
            };
            lines.push(format!(
                "  {kind} {}: service IDs {}; gating tiers {tiers}; gating token {}; play after approval {}",
                scope.path(),
                describe_ids(settings.service_ids.as_deref()),
                if settings.gating_token.is_some() {
                    "set"
                } else {
                    "inherited"
                },
                settings
                    .play_after_approval
                    .map_or_else(|| "inherited".to_owned(), |p| p.to_string()),
            ));
        }
        for (path, f) in &in_force {
            if let Some(from) = &f.service_ids_from {
                lines.push(format!(
                    "  in force for {path}: service IDs {} (from {from})",
                    describe_ids(Some(&f.service_ids)),
                ));
            }
            if let Some(g) = &f.gating {
                lines.push(format!(
                    "  in force for {path}: gating {} (from {}), {}",
                    tier_list(&g.tiers),
                    g.from,
                    if g.play_after_approval {
                        "manual jobs played after approval"
                    } else {
                        "manual jobs left to people after approval"
                    }
                ));
            } else if !f.gating_tiers.is_empty() {
                lines.push(format!(
                    "  in force for {path}: gating tiers set but no gating token, so nothing is gated"
                ));
            }
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

fn tier_list(tiers: &[jsm::GatingTier]) -> String {
    tiers
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
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

async fn known_projects(
    store: &Store,
    sub: &Subscription,
) -> anyhow::Result<Vec<(ProjectId, String)>> {
    Ok(store.subscription_projects(SubscriptionId(sub.id)).await?)
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
            // GitLab paths are case-insensitive: one group, one row.
            JsmScope::Group {
                path: path.to_lowercase(),
            }
        }
    };
    Ok((sub, scope))
}

/// What gating at `scope` would act on: each project under it (or the project) where gating is now in
/// force. Refuses tiers without a token and a token without tiers (GitLab's message), a token GitLab
/// does not take, GitLab Free (deployment approvals are Premium), and projects whose protected
/// environments the token's user may not approve.
async fn check_gating(
    settings: &Settings,
    store: &Store,
    sub: &Subscription,
    scope: &JsmScope,
    records: &[(JsmScope, jsm::JsmSettings)],
    token_given: bool,
) -> anyhow::Result<()> {
    let projects: Vec<(ProjectId, String)> = known_projects(store, sub)
        .await?
        .into_iter()
        .filter(|(id, path)| match scope {
            JsmScope::Project { id: own, .. } => own == id,
            JsmScope::Group { path: group } => path
                .to_lowercase()
                .starts_with(&format!("{}/", group.to_lowercase())),
        })
        .collect();
    // The settings as the scope itself resolves them (a group: as a project directly under it would).
    let probe_id = match scope {
        JsmScope::Project { id, .. } => *id,
        JsmScope::Group { .. } => ProjectId(-1),
    };
    let in_force = jsm::in_force(records, probe_id, &format!("{}/-", scope.path()));
    if in_force.gating_tiers.is_empty() {
        if token_given {
            bail!(
                "environment names should be provided if deployment gating has been enabled (--gating-tiers)"
            );
        }
        return Ok(());
    }
    if in_force.gating.is_none() {
        bail!(
            "deployment gating needs a GitLab token that can approve deployments: give --gating-token-file"
        );
    }
    let access = settings.gitlab_access();
    let as_sub = access
        .client_for(
            store,
            sub,
            gfj_store::Clock::now_ms(&gfj_store::SystemClock),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Each project is checked with the token in force for it (a project may set its own).
    let mut users: BTreeMap<String, gfj_gitlab_client::User> = BTreeMap::new();
    let mut checked = 0;
    for (project_id, path) in &projects {
        let Some(gating) = jsm::in_force(records, *project_id, path).gating else {
            continue;
        };
        let me = match users.get(&gating.token.0) {
            Some(me) => me.clone(),
            None => {
                let as_gating = access
                    .client_with_token(&sub.gitlab_url, &gating.token.0)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let me = as_gating.current_user().await.map_err(|e| match e {
                    gfj_gitlab_client::GitLabError::Unauthorized => {
                        anyhow::anyhow!("GitLab does not accept the gating token (401)")
                    }
                    e => anyhow::anyhow!("could not check the gating token with GitLab: {e}"),
                })?;
                users.insert(gating.token.0.clone(), me.clone());
                me
            }
        };
        let environments = match as_sub.protected_environments(project_id.0).await {
            Ok(list) => list,
            Err(gfj_gitlab_client::GitLabError::NotFound(_)) => bail!(
                "deployment approvals need GitLab Premium: {path} cannot be gated (service IDs work on any plan)"
            ),
            Err(e) => bail!("could not read the protected environments of {path}: {e}"),
        };
        let member = as_sub.project_member(project_id.0, me.id).await?;
        let mut approvable = Vec::new();
        let mut not_approvable = Vec::new();
        for env in environments.iter().filter(|e| !e.approval_rules.is_empty()) {
            let mut can = false;
            for rule in &env.approval_rules {
                can |= rule.user_id == Some(me.id)
                    || rule
                        .access_level
                        .is_some_and(|l| member.as_ref().is_some_and(|m| m.access_level >= l));
                if let (false, Some(group)) = (can, rule.group_id) {
                    can = as_sub.group_member(group, me.id).await?.is_some();
                }
            }
            if can {
                approvable.push(env.name.as_str());
            } else {
                not_approvable.push(env.name.as_str());
            }
        }
        if approvable.is_empty() && !not_approvable.is_empty() {
            bail!(
                "the gating token's user {} cannot approve deployments to {} in {path}: add it to the environment's approval rules",
                me.username,
                not_approvable.join(", ")
            );
        }
        if approvable.is_empty() && matches!(scope, JsmScope::Project { .. }) {
            bail!(
                "{path} has no protected environment with deployment approvals: no deployment would wait for Jira Service Management"
            );
        }
        checked += 1;
    }
    if checked == 0 && matches!(scope, JsmScope::Project { .. }) {
        bail!(
            "deployment gating needs a GitLab token that can approve deployments: give --gating-token-file"
        );
    }
    Ok(())
}
