//! Jira Service Management settings: a project's own, or a group's defaults for the projects under it
//! (service IDs, gated tiers, the gating token, whether approved jobs are played). The one
//! implementation behind `jsm set`/`clear`/`show`, the admin page and the configuration page in Jira.

use std::collections::BTreeMap;

use gfj_core::domain::{ProjectId, SubscriptionId};
use gfj_core::jsm::{self, JsmInForce, JsmScope, JsmSettings};
use gfj_store::subscriptions::Subscription;
use gfj_store::{Store, StoreError};

use crate::gitlab_access::GitLabAccess;

/// What a change applies to: a project, or a group (the linked group or a subgroup of it), by full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Project(String),
    Group(String),
}

impl Default for Target {
    fn default() -> Self {
        Target::Group(String::new())
    }
}

impl Target {
    fn path(&self) -> &str {
        match self {
            Target::Project(p) | Target::Group(p) => p,
        }
    }
}

/// Where to look for the path's subscription.
#[derive(Debug, Clone, Copy)]
pub enum Within<'a> {
    /// Any subscription of this site (by clientKey), or of any site.
    Site(Option<&'a str>),
    /// This subscription (the pages name it).
    Subscription(i64),
}

/// The settings a change sets; `None` leaves one as it was.
#[derive(Debug, Clone, Default)]
pub struct JsmUpdate {
    /// Comma-separated service IDs; `Some("")` sets none.
    pub service_ids: Option<String>,
    /// Comma-separated tiers whose blocked deployments wait for JSM; `Some("")` turns gating off.
    pub gating_tiers: Option<String>,
    /// The GitLab token that approves, rejects and plays gated deployments.
    pub gating_token: Option<String>,
    pub play_after_approval: Option<bool>,
}

/// Why a change was refused; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum JsmError {
    /// A value GitLab or Jira would refuse.
    #[error("{0}")]
    Invalid(String),
    /// The path is not in a linked group.
    #[error("{0}")]
    NotFound(String),
    /// GitLab refused the gating token, or could not be asked.
    #[error("{0}")]
    GitLab(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<jsm::JsmError> for JsmError {
    fn from(e: jsm::JsmError) -> Self {
        JsmError::Invalid(e.to_string())
    }
}

/// What a change left in place.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JsmChange {
    pub subscription_id: i64,
    pub target: JsmScope,
    pub settings: JsmSettings,
}

/// One linked group's settings: what each scope sets, and what is in force for each project.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionJsm {
    pub subscription_id: i64,
    pub site: String,
    pub group: String,
    pub settings: Vec<ScopeSettings>,
    pub projects: Vec<ProjectJsm>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScopeSettings {
    pub target: JsmScope,
    pub settings: JsmSettings,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProjectJsm {
    pub path: String,
    pub in_force: JsmInForce,
}

/// Sets what `update` names for `target`, leaving the rest of the scope's settings as they were.
/// Gating is checked with GitLab first: the token's user must be able to approve deployments where it
/// will.
pub async fn set(
    store: &Store,
    access: &GitLabAccess,
    within: Within<'_>,
    target: &Target,
    update: &JsmUpdate,
    now_ms: i64,
) -> Result<JsmChange, JsmError> {
    let service_ids = update
        .service_ids
        .as_deref()
        .map(jsm::parse_service_ids)
        .transpose()?;
    let tiers = update
        .gating_tiers
        .as_deref()
        .map(jsm::parse_tiers)
        .transpose()?;
    if update
        .gating_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        return Err(JsmError::Invalid("the gating token is empty".into()));
    }
    let (sub, scope) = resolve(store, within, target).await?;
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
    if let Some(token) = &update.gating_token {
        own.gating_token = Some(jsm::GatingToken(token.trim().to_owned()));
    }
    if let Some(play) = update.play_after_approval {
        own.play_after_approval = Some(play);
    }
    records.retain(|(s, _)| !same_scope(s, &scope));
    records.push((scope.clone(), own.clone()));
    if update.gating_tiers.is_some() || update.gating_token.is_some() {
        check_gating(
            access,
            store,
            &sub,
            &scope,
            &records,
            update.gating_token.is_some(),
        )
        .await?;
    }
    store
        .put_jsm_settings(SubscriptionId(sub.id), &scope, &own, now_ms)
        .await?;
    Ok(JsmChange {
        subscription_id: sub.id,
        target: scope,
        settings: own,
    })
}

/// Removes a scope's own settings, so that it inherits again. Returns the scope and whether it had any.
pub async fn clear(
    store: &Store,
    within: Within<'_>,
    target: &Target,
) -> Result<(JsmScope, bool), JsmError> {
    let (sub, scope) = resolve(store, within, target).await?;
    let removed = store
        .clear_jsm_settings(SubscriptionId(sub.id), &scope)
        .await?;
    Ok((scope, removed))
}

/// The settings of the linked groups (of one site, or all).
pub async fn overview(
    store: &Store,
    client_key: Option<&str>,
) -> Result<Vec<SubscriptionJsm>, StoreError> {
    let sites: BTreeMap<String, String> = store
        .installations()
        .await?
        .into_iter()
        .map(|i| (i.client_key, i.base_url))
        .collect();
    let mut out = Vec::new();
    for sub in store.subscriptions().await? {
        if client_key.is_some_and(|k| k != sub.client_key) {
            continue;
        }
        let records = store.jsm_settings(SubscriptionId(sub.id)).await?;
        let projects = store
            .subscription_projects(SubscriptionId(sub.id))
            .await?
            .into_iter()
            .map(|(id, path)| ProjectJsm {
                in_force: jsm::in_force(&records, id, &path),
                path,
            })
            .collect();
        out.push(SubscriptionJsm {
            subscription_id: sub.id,
            site: sites.get(&sub.client_key).cloned().unwrap_or_default(),
            group: sub.group_path.clone(),
            settings: records
                .into_iter()
                .map(|(target, settings)| ScopeSettings { target, settings })
                .collect(),
            projects,
        });
    }
    Ok(out)
}

fn same_scope(a: &JsmScope, b: &JsmScope) -> bool {
    match (a, b) {
        (JsmScope::Project { id: x, .. }, JsmScope::Project { id: y, .. }) => x == y,
        (JsmScope::Group { path: x }, JsmScope::Group { path: y }) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The subscription the path belongs to, and the scope it names there.
async fn resolve(
    store: &Store,
    within: Within<'_>,
    target: &Target,
) -> Result<(Subscription, JsmScope), JsmError> {
    let path = target.path().trim().trim_matches('/');
    if path.is_empty() {
        return Err(JsmError::Invalid(
            "give the full path of a project or group".into(),
        ));
    }
    let lower = path.to_lowercase();
    let candidates: Vec<Subscription> = store
        .subscriptions()
        .await?
        .into_iter()
        .filter(|s| match within {
            Within::Site(Some(client_key)) => s.client_key == client_key,
            Within::Site(None) => true,
            Within::Subscription(id) => s.id == id,
        })
        .filter(|s| {
            let group = s.group_path.to_lowercase();
            lower == group || lower.starts_with(&format!("{group}/"))
        })
        .collect();
    let sub = match candidates.len() {
        0 => {
            return Err(JsmError::NotFound(format!(
                "{path} is not in a linked group{}",
                match within {
                    Within::Site(Some(site)) => format!(" of {site}"),
                    Within::Site(None) => String::new(),
                    Within::Subscription(id) => format!(" (subscription {id})"),
                }
            )));
        }
        1 => candidates.into_iter().next().expect("one"),
        _ => {
            return Err(JsmError::Invalid(format!(
                "{path} is linked to several Jira sites: name one with --site ({})",
                candidates
                    .iter()
                    .map(|s| s.client_key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let projects = store.subscription_projects(SubscriptionId(sub.id)).await?;
    let scope = match target {
        Target::Project(_) => {
            let (id, path) = projects
                .into_iter()
                .find(|(_, p)| p.eq_ignore_ascii_case(path))
                .ok_or_else(|| {
                    JsmError::NotFound(format!(
                        "{path} is not a project of {} (projects that joined the group recently are added by the next hook check or reconciliation)",
                        sub.group_path
                    ))
                })?;
            JsmScope::Project { id, path }
        }
        Target::Group(_) => {
            let is_group = lower == sub.group_path.to_lowercase()
                || projects
                    .iter()
                    .any(|(_, p)| p.to_lowercase().starts_with(&format!("{lower}/")));
            if !is_group {
                return Err(JsmError::NotFound(format!(
                    "{path} is neither {} nor a subgroup holding any of its projects",
                    sub.group_path
                )));
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
    access: &GitLabAccess,
    store: &Store,
    sub: &Subscription,
    scope: &JsmScope,
    records: &[(JsmScope, jsm::JsmSettings)],
    token_given: bool,
) -> Result<(), JsmError> {
    let projects: Vec<(ProjectId, String)> = store
        .subscription_projects(SubscriptionId(sub.id))
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
            return Err(JsmError::Invalid("environment names should be provided if deployment gating has been enabled (--gating-tiers)".to_string()));
        }
        return Ok(());
    }
    if in_force.gating.is_none() {
        return Err(JsmError::Invalid("deployment gating needs a GitLab token that can approve deployments: give --gating-token-file".to_string()));
    }
    let as_sub = access
        .client_for(
            store,
            sub,
            gfj_store::Clock::now_ms(&gfj_store::SystemClock),
        )
        .await
        .map_err(|e| JsmError::GitLab(e.to_string()))?;
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
                    .map_err(|e| JsmError::GitLab(e.to_string()))?;
                let me = as_gating.current_user().await.map_err(|e| match e {
                    gfj_gitlab_client::GitLabError::Unauthorized => {
                        JsmError::GitLab("GitLab does not accept the gating token (401)".into())
                    }
                    e => JsmError::GitLab(format!(
                        "could not check the gating token with GitLab: {e}"
                    )),
                })?;
                users.insert(gating.token.0.clone(), me.clone());
                me
            }
        };
        let environments = match as_sub.protected_environments(project_id.0).await {
            Ok(list) => list,
            Err(gfj_gitlab_client::GitLabError::NotFound(_)) => {
                return Err(JsmError::Invalid(format!(
                    "deployment approvals need GitLab Premium: {path} cannot be gated (service IDs work on any plan)"
                )));
            }
            Err(e) => {
                return Err(JsmError::GitLab(format!(
                    "could not read the protected environments of {path}: {e}"
                )));
            }
        };
        let member = as_sub
            .project_member(project_id.0, me.id)
            .await
            .map_err(|e| JsmError::GitLab(e.to_string()))?;
        let mut approvable = Vec::new();
        let mut not_approvable = Vec::new();
        let mut cannot_deploy = Vec::new();
        for env in environments.iter().filter(|e| !e.approval_rules.is_empty()) {
            if matches_any(&as_sub, &env.approval_rules, me.id, member.as_ref()).await? {
                approvable.push(env.name.as_str());
                if gating.play_after_approval
                    && !matches_any(&as_sub, &env.deploy_access_levels, me.id, member.as_ref())
                        .await?
                {
                    cannot_deploy.push(env.name.as_str());
                }
            } else {
                not_approvable.push(env.name.as_str());
            }
        }
        if !cannot_deploy.is_empty() {
            return Err(JsmError::Invalid(format!(
                "the gating token's user {} may approve but not start deployments to {} in {path}: add it to the environment's deploy access, or turn playing after approval off",
                me.username,
                cannot_deploy.join(", ")
            )));
        }
        if approvable.is_empty() && !not_approvable.is_empty() {
            return Err(JsmError::Invalid(format!(
                "the gating token's user {} cannot approve deployments to {} in {path}: add it to the environment's approval rules",
                me.username,
                not_approvable.join(", ")
            )));
        }
        if approvable.is_empty() && matches!(scope, JsmScope::Project { .. }) {
            return Err(JsmError::Invalid(format!(
                "{path} has no protected environment with deployment approvals: no deployment would wait for Jira Service Management"
            )));
        }
        checked += 1;
    }
    if checked == 0 && matches!(scope, JsmScope::Project { .. }) {
        return Err(JsmError::Invalid("deployment gating needs a GitLab token that can approve deployments: give --gating-token-file".to_string()));
    }
    Ok(())
}

/// Whether one of `rules` (by user, by group membership, or by access level) names the user.
async fn matches_any(
    gitlab: &gfj_gitlab_client::GitLabClient,
    rules: &[gfj_gitlab_client::ApprovalRule],
    user_id: i64,
    member: Option<&gfj_gitlab_client::Member>,
) -> Result<bool, JsmError> {
    for rule in rules {
        let by_level = rule
            .access_level
            .is_some_and(|l| member.is_some_and(|m| m.access_level >= l));
        if rule.user_id == Some(user_id) || by_level {
            return Ok(true);
        }
        if let Some(group) = rule.group_id {
            let in_group = gitlab
                .group_member(group, user_id)
                .await
                .map_err(|e| JsmError::GitLab(e.to_string()))?
                .is_some();
            if in_group {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
