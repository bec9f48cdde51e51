//! `jsm set`, `jsm clear` and `jsm show`: Jira Service Management settings of a project, or defaults of a
//! group (the linked group or a subgroup of it) for the projects under it (`gfj-sync::jsm_settings`).

use gfj_core::jsm::{self, JsmScope};
use gfj_store::Store;
pub use gfj_sync::jsm_settings::Target;
use gfj_sync::jsm_settings::{self, JsmUpdate, Within};

use crate::Settings;

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

/// Sets what the request names, leaving the rest of the scope's settings as they were; prints the
/// scope's settings as JSON (the token shown only as set).
pub async fn set(
    settings: &Settings,
    store: &Store,
    req: &SetRequest,
    now_ms: i64,
) -> anyhow::Result<String> {
    let client_key = match &req.site {
        Some(site) => Some(super::link::site(store, site).await?.client_key),
        None => None,
    };
    let update = JsmUpdate {
        service_ids: req.service_ids.clone(),
        gating_tiers: req.gating_tiers.clone(),
        gating_token: req.gating_token.clone(),
        play_after_approval: req.play_after_approval,
    };
    let change = jsm_settings::set(
        store,
        &settings.gitlab_access(),
        Within::Site(client_key.as_deref()),
        &req.target,
        &update,
        now_ms,
    )
    .await?;
    Ok(serde_json::to_string(&change)?)
}

/// Removes a scope's own settings: its projects (or the project) inherit again.
pub async fn clear(store: &Store, site: Option<&str>, target: &Target) -> anyhow::Result<String> {
    let client_key = match site {
        Some(site) => Some(super::link::site(store, site).await?.client_key),
        None => None,
    };
    let (scope, removed) =
        jsm_settings::clear(store, Within::Site(client_key.as_deref()), target).await?;
    Ok(if removed {
        format!("cleared the JSM settings of {}", scope.path())
    } else {
        format!("{} had no JSM settings of its own", scope.path())
    })
}

/// The settings of every linked group: what each scope sets, and what is in force for each project.
pub async fn show(store: &Store, as_json: bool) -> anyhow::Result<String> {
    let all = jsm_settings::overview(store, None).await?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&all)?);
    }
    let mut lines = Vec::new();
    for sub in &all {
        let records: Vec<(&JsmScope, &jsm::JsmSettings)> = sub
            .settings
            .iter()
            .map(|s| (&s.target, &s.settings))
            .collect();
        let in_force: Vec<(&String, &jsm::JsmInForce)> = sub
            .projects
            .iter()
            .map(|p| (&p.path, &p.in_force))
            .collect();
        lines.push(format!("{} → {}", sub.group, sub.site));
        if records.is_empty() {
            lines.push("  no JSM settings".into());
        }
        for (scope, settings) in records {
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
        for (path, f) in in_force {
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
