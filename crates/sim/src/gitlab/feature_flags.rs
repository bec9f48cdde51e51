//! Feature flags (Unleash-style, `new_version_flag`).
//!
//! GitLab executes the Feature Flag Hook only from `FeatureFlags::UpdateService` and only when `active`
//! changed: creating, describing, renaming, editing strategies and deleting are all silent, which is why a
//! service has to poll the list. The REST entity has no `id` (flags are addressed by name); the hook's
//! `object_attributes` does carry one.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::merge_requests::{
    authorize, body_params, check_values, clock, deliver_all, find_user, list_url, param_bool,
    param_str, project_of, rest_time, user_hook,
};
use super::{GitLabSim, Inner, Shared, err, paging, project_json};

#[derive(Debug, Clone)]
pub(super) struct FeatureFlag {
    id: i64,
    project_id: i64,
    name: String,
    description: Option<String>,
    active: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    strategies: Vec<Strategy>,
}

#[derive(Debug, Clone)]
struct Strategy {
    id: i64,
    name: String,
    parameters: Value,
    /// (scope id, environment scope)
    scopes: Vec<(i64, String)>,
}

const STRATEGY_NAMES: &[&str] = &[
    "default",
    "gradualRolloutUserId",
    "userWithId",
    "gitlabUserList",
    "flexibleRollout",
];

/// `Operations::FeatureFlag` name validation: lowercase letters, digits, `_` and `-`, starting with a
/// letter and not ending with `_` or `-`.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        && !name.ends_with(['_', '-'])
}

fn entity(f: &FeatureFlag) -> Value {
    json!({
        "name": f.name,
        "description": f.description,
        "active": f.active,
        "version": "new_version_flag",
        "created_at": rest_time(f.created_at),
        "updated_at": rest_time(f.updated_at),
        "scopes": [],
        "strategies": f.strategies.iter().map(|s| json!({
            "id": s.id,
            "name": s.name,
            "parameters": s.parameters,
            "scopes": s.scopes.iter().map(|(id, scope)| json!({ "id": id, "environment_scope": scope })).collect::<Vec<_>>(),
            "user_list": null,
        })).collect::<Vec<_>>(),
    })
}

fn hook(base: &str, i: &Inner, f: &FeatureFlag, actor: i64) -> Value {
    let p = project_of(i, f.project_id);
    let u = find_user(i, actor);
    json!({
        "object_kind": "feature_flag",
        "project": project_json(base, &p),
        "user": user_hook(base, &u),
        "user_url": format!("{base}/{}", u.username),
        "object_attributes": {
            "id": f.id,
            "name": f.name,
            "description": f.description,
            "active": f.active,
        },
    })
}

/// Validation failures the services report, as `{"message": [...]}` with 400.
fn invalid(messages: &[&str]) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "message": messages })),
    )
        .into_response()
}

/// Builds strategies from request/control JSON: `{name, parameters, scopes: [{environment_scope}]}`.
/// `parameters` may arrive as an object or as a JSON string (Grape's `JSON` type accepts both).
fn new_strategy(i: &mut Inner, v: &Value) -> Result<Strategy, Response> {
    let name = v.get("name").and_then(Value::as_str).unwrap_or("default");
    if !STRATEGY_NAMES.contains(&name) {
        return Err(invalid(&["Strategies name strategy name is invalid"]));
    }
    let parameters = match v.get("parameters") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| json!({})),
        Some(p @ Value::Object(_)) => p.clone(),
        _ => json!({}),
    };
    let id = GitLabSim::next_id(i);
    let mut scopes = Vec::new();
    for s in v
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let scope = s
            .get("environment_scope")
            .and_then(Value::as_str)
            .unwrap_or("*")
            .to_owned();
        scopes.push((GitLabSim::next_id(i), scope));
    }
    Ok(Strategy {
        id,
        name: name.into(),
        parameters,
        scopes,
    })
}

fn insert(
    i: &mut Inner,
    now: OffsetDateTime,
    project_id: i64,
    name: &str,
    description: Option<String>,
    active: bool,
    strategies: &[Value],
) -> Result<i64, Response> {
    if !valid_name(name) {
        return Err(invalid(&[
            "Name can contain only lowercase letters, digits, '_' and '-'. Must start with a letter, and cannot end with '-' or '_'",
        ]));
    }
    if i.feature_flags
        .iter()
        .any(|f| f.project_id == project_id && f.name == name)
    {
        return Err(invalid(&["Name has already been taken"]));
    }
    let strategies = strategies
        .iter()
        .map(|v| new_strategy(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    let id = GitLabSim::next_id(i);
    i.feature_flags.push(FeatureFlag {
        id,
        project_id,
        name: name.into(),
        description,
        active,
        created_at: now,
        updated_at: now,
        strategies,
    });
    Ok(id)
}

/// Applies `UpdateService`'s attributes; returns whether `active` toggled (the only case with a hook).
fn apply_update(
    i: &mut Inner,
    now: OffsetDateTime,
    n: usize,
    m: &serde_json::Map<String, Value>,
) -> Result<bool, Response> {
    let mut f = i.feature_flags[n].clone();
    if let Some(name) = param_str(m, "name").filter(|x| *x != f.name) {
        if !valid_name(&name) {
            return Err(invalid(&[
                "Name can contain only lowercase letters, digits, '_' and '-'. Must start with a letter, and cannot end with '-' or '_'",
            ]));
        }
        if i.feature_flags
            .iter()
            .any(|x| x.project_id == f.project_id && x.name == name)
        {
            return Err(invalid(&["Name has already been taken"]));
        }
        f.name = name;
    }
    if m.contains_key("description") {
        f.description = param_str(m, "description");
    }
    let was_active = f.active;
    if let Some(active) = param_bool(m, "active") {
        f.active = active?;
    }
    if let Some(list) = m.get("strategies").and_then(Value::as_array) {
        for v in list {
            let destroy = v.get("_destroy").and_then(Value::as_bool).unwrap_or(false);
            match v.get("id").and_then(Value::as_i64) {
                Some(id) => {
                    let Some(k) = f.strategies.iter().position(|s| s.id == id) else {
                        return Err(err(StatusCode::NOT_FOUND, "404 Not found"));
                    };
                    if destroy {
                        f.strategies.remove(k);
                        continue;
                    }
                    let s = &mut f.strategies[k];
                    if let Some(name) = v.get("name").and_then(Value::as_str) {
                        if !STRATEGY_NAMES.contains(&name) {
                            return Err(invalid(&["Strategies name strategy name is invalid"]));
                        }
                        s.name = name.into();
                    }
                    match v.get("parameters") {
                        Some(Value::String(p)) => {
                            s.parameters = serde_json::from_str(p).unwrap_or_else(|_| json!({}));
                        }
                        Some(p @ Value::Object(_)) => s.parameters = p.clone(),
                        _ => {}
                    }
                }
                None if !destroy => {
                    let s = new_strategy(i, v)?;
                    f.strategies.push(s);
                }
                None => {}
            }
        }
    }
    f.updated_at = now;
    let toggled = f.active != was_active;
    i.feature_flags[n] = f;
    Ok(toggled)
}

fn flag_index(i: &Inner, project_id: i64, name: &str) -> Option<usize> {
    i.feature_flags
        .iter()
        .position(|f| f.project_id == project_id && f.name == name)
}

impl GitLabSim {
    /// Creates a flag; `strategies` as the API takes them (`{"name": "default", "parameters": {},
    /// "scopes": [{"environment_scope": "*"}]}`). Returns the flag's internal id (the one the webhook shows).
    /// Sends nothing, like GitLab.
    pub async fn create_feature_flag(
        &self,
        project_id: i64,
        name: &str,
        description: &str,
        active: bool,
        strategies: Vec<Value>,
    ) -> i64 {
        let now = clock(&self.shared);
        let mut i = self.shared.inner.lock().unwrap();
        insert(
            &mut i,
            now,
            project_id,
            name,
            Some(description.into()),
            active,
            &strategies,
        )
        .unwrap_or_else(|_| panic!("feature flag {name} is valid and new"))
    }

    /// Edits a flag as the project's highest-level member; delivers the Feature Flag Hook only when `active`
    /// toggles.
    pub async fn update_feature_flag(
        &self,
        project_id: i64,
        name: &str,
        description: Option<&str>,
        active: Option<bool>,
    ) {
        let actor = self.top_member(project_id);
        let now = clock(&self.shared);
        let payload = {
            let mut i = self.shared.inner.lock().unwrap();
            let n = flag_index(&i, project_id, name).expect("feature flag exists");
            let mut m = serde_json::Map::new();
            if let Some(d) = description {
                m.insert("description".into(), json!(d));
            }
            if let Some(a) = active {
                m.insert("active".into(), json!(a));
            }
            let toggled = apply_update(&mut i, now, n, &m).expect("valid update");
            toggled.then(|| hook(&self.base_url, &i, &i.feature_flags[n], actor))
        };
        if let Some(payload) = payload {
            self.deliver(project_id, "Feature Flag Hook", payload).await;
        }
    }

    /// Deletes a flag. Sends nothing, like GitLab.
    pub async fn delete_feature_flag(&self, project_id: i64, name: &str) {
        let mut i = self.shared.inner.lock().unwrap();
        let n = flag_index(&i, project_id, name).expect("feature flag exists");
        i.feature_flags.remove(n);
    }
}

// ---- REST --------------------------------------------------------------------------------------------------

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/api/v4/projects/{id}/feature_flags",
            get(list).post(create),
        )
        .route(
            "/api/v4/projects/{id}/feature_flags/{name}",
            get(show).put(update).delete(remove),
        )
}

#[derive(serde::Deserialize)]
struct ListQuery {
    scope: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 30, StatusCode::FORBIDDEN)?;
    check_values("scope", &q.scope, &["enabled", "disabled"])?;
    let all: Vec<Value> = {
        let i = s.inner.lock().unwrap();
        i.feature_flags
            .iter()
            .filter(|f| f.project_id == p.id)
            .filter(|f| match q.scope.as_deref() {
                Some("enabled") => f.active,
                Some("disabled") => !f.active,
                _ => true,
            })
            .map(entity)
            .collect()
    };
    let link = list_url(
        &s,
        &format!("/projects/{}/feature_flags", p.id),
        &[("scope", &q.scope)],
    );
    Ok(paging::offset_page(all, q.page, q.per_page, &link))
}

async fn create(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    s.user(&headers)?;
    let m = body_params(&headers, &body)?;
    let Some(name) = param_str(&m, "name") else {
        return Err(super::merge_requests::grape_error("name is missing"));
    };
    let active = param_bool(&m, "active").transpose()?.unwrap_or(true);
    let (_, p, _) = authorize(&s, &headers, &id, 30, StatusCode::FORBIDDEN)?;
    let now = clock(&s);
    let mut i = s.inner.lock().unwrap();
    let strategies = m
        .get("strategies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let fid = insert(
        &mut i,
        now,
        p.id,
        &name,
        param_str(&m, "description"),
        active,
        &strategies,
    )?;
    let f = i
        .feature_flags
        .iter()
        .find(|f| f.id == fid)
        .expect("just created");
    Ok((StatusCode::CREATED, axum::Json(entity(f))).into_response())
}

async fn show(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 30, StatusCode::FORBIDDEN)?;
    let i = s.inner.lock().unwrap();
    let n =
        flag_index(&i, p.id, &name).ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    Ok(axum::Json(entity(&i.feature_flags[n])).into_response())
}

/// `PUT .../feature_flags/:name`; the Feature Flag Hook goes out only if `active` toggled.
async fn update(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Response> {
    let m = body_params(&headers, &body)?;
    let (u, p, _) = authorize(&s, &headers, &id, 30, StatusCode::FORBIDDEN)?;
    let base = s.base_url.lock().unwrap().clone();
    let now = clock(&s);
    let (payload, body) = {
        let mut i = s.inner.lock().unwrap();
        let n = flag_index(&i, p.id, &name)
            .ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
        let toggled = apply_update(&mut i, now, n, &m)?;
        let f = &i.feature_flags[n];
        (toggled.then(|| hook(&base, &i, f, u.id)), entity(f))
    };
    if let Some(payload) = payload {
        deliver_all(&s, p.id, vec![("Feature Flag Hook", payload)]).await;
    }
    Ok(axum::Json(body).into_response())
}

async fn remove(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (_, p, _) = authorize(&s, &headers, &id, 30, StatusCode::FORBIDDEN)?;
    let mut i = s.inner.lock().unwrap();
    let n =
        flag_index(&i, p.id, &name).ok_or_else(|| err(StatusCode::NOT_FOUND, "404 Not found"))?;
    let f = i.feature_flags.remove(n);
    Ok(axum::Json(entity(&f)).into_response())
}
