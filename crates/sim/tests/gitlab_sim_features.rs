//! The GitLab simulator's merge requests, pipelines/jobs, deployments (with approvals) and feature flags,
//! driven over HTTP with a real webhook receiver. Control methods and REST handlers await their deliveries,
//! so once a call returns the receiver holds every hook it caused.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gfj_sim::gitlab::ci::JobSpec;
use gfj_sim::gitlab::{GitLabSim, Plan};
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<(String, Value)>>>;

struct Fixture {
    sim: GitLabSim,
    http: reqwest::Client,
    project: i64,
    maint: i64,
    dev: i64,
    approver: i64,
    received: Received,
}

const FLAGS: &[&str] = &[
    "push_events",
    "tag_push_events",
    "merge_requests_events",
    "pipeline_events",
    "job_events",
    "deployment_events",
    "feature_flag_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "wiki_page_events",
    "releases_events",
    "emoji_events",
    "resource_access_token_events",
];

async fn record(
    State(r): State<Received>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let event = headers
        .get("x-gitlab-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&body).expect("hook bodies are JSON");
    r.lock().unwrap().push((event, body));
    StatusCode::OK
}

/// Users: `maint` (Maintainer), `dev` and `approver` (Developers), `reporter`, `guest`, and `outsider` (no
/// membership); one project with a hook subscribed to everything.
async fn fixture() -> Fixture {
    let sim = GitLabSim::start().await.unwrap();
    let maint = sim.add_user("maint", "t-maint");
    let dev = sim.add_user("dev", "t-dev");
    let approver = sim.add_user("approver", "t-approver");
    let reporter = sim.add_user("reporter", "t-reporter");
    let guest = sim.add_user("guest", "t-guest");
    sim.add_user("outsider", "t-outsider");
    let group = sim.add_group("acme", None, Plan::Premium);
    sim.add_member(group, maint, 40);
    sim.add_member(group, dev, 30);
    sim.add_member(group, approver, 30);
    sim.add_member(group, reporter, 20);
    sim.add_member(group, guest, 10);
    let project = sim.add_project(group, "app");

    let received = Received::default();
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let http = reqwest::Client::new();
    let mut body = json!({ "url": url, "token": "s3cret" });
    for flag in FLAGS {
        body[*flag] = json!(true);
    }
    let resp = http
        .post(format!("{}/api/v4/projects/{project}/hooks", sim.base_url))
        .header("PRIVATE-TOKEN", "t-maint")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    Fixture {
        sim,
        http,
        project,
        maint,
        dev,
        approver,
        received,
    }
}

impl Fixture {
    /// Everything received since the last call.
    fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }

    fn take_events(&self) -> (Vec<String>, Vec<Value>) {
        self.take().into_iter().unzip()
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/api/v4/projects/{}{path}",
            self.sim.base_url, self.project
        )
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, HeaderMap, Value) {
        let resp = self
            .http
            .get(self.url(path))
            .header("PRIVATE-TOKEN", token)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap())
    }

    async fn send(
        &self,
        method: &str,
        token: &str,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = self
            .http
            .request(method, self.url(path))
            .header("PRIVATE-TOKEN", token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.json().await.unwrap())
    }
}

fn is_hook_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 23 && s.ends_with(" UTC") && s.as_bytes()[10] == b' ')
}

fn is_rest_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.')
}

fn iids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["iid"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn merge_request_lifecycle_sends_each_action() {
    let f = fixture().await;
    let shas = f
        .sim
        .push(f.project, "feature", &["PROJ-1 first", "second"], f.dev)
        .await;
    f.take();

    let mr = f
        .sim
        .open_merge_request(
            f.project,
            "feature",
            "main",
            "PROJ-1 Add thing",
            "Body",
            f.dev,
        )
        .await;
    assert_eq!(mr.iid, 1);
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Merge Request Hook"]);
    let h = &hooks[0];
    assert_eq!(h["object_kind"], "merge_request");
    assert_eq!(h["user"]["id"], f.dev);
    let a = &h["object_attributes"];
    assert_eq!(a["action"], "open");
    assert_eq!(a["state"], "opened");
    assert_eq!(a["id"], mr.id);
    assert_eq!(a["iid"], 1);
    assert_eq!(a["source_branch"], "feature");
    assert_eq!(a["target_branch"], "main");
    assert_eq!(a["target_project_id"], f.project);
    assert_eq!(a["author_id"], f.dev);
    assert_eq!(a["last_commit"]["id"], shas[1].as_str());
    assert_eq!(a["detailed_merge_status"], "mergeable");
    assert_eq!(a["draft"], false);
    assert!(is_hook_time(&a["created_at"]), "{}", a["created_at"]);
    assert!(
        a["url"]
            .as_str()
            .unwrap()
            .ends_with("/acme/app/-/merge_requests/1")
    );

    f.sim
        .update_merge_request(f.project, 1, Some("PROJ-1 Better title"), None)
        .await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Merge Request Hook"]);
    assert_eq!(hooks[0]["object_attributes"]["action"], "update");
    assert_eq!(hooks[0]["changes"]["title"]["previous"], "PROJ-1 Add thing");
    assert_eq!(
        hooks[0]["changes"]["title"]["current"],
        "PROJ-1 Better title"
    );
    assert!(is_hook_time(
        &hooks[0]["object_attributes"]["last_edited_at"]
    ));

    // An edit that changes nothing is no update.
    f.sim
        .update_merge_request(f.project, 1, Some("PROJ-1 Better title"), Some("Body"))
        .await;
    assert!(f.take().is_empty());

    f.sim.add_reviewer(f.project, 1, f.approver).await;
    let (_, hooks) = f.take_events();
    assert_eq!(hooks[0]["object_attributes"]["action"], "update");
    assert_eq!(hooks[0]["reviewers"][0]["id"], f.approver);
    assert_eq!(
        hooks[0]["object_attributes"]["reviewer_ids"],
        json!([f.approver])
    );

    f.sim.approve_merge_request(f.project, 1, f.approver).await;
    let (_, hooks) = f.take_events();
    assert_eq!(hooks[0]["object_attributes"]["action"], "approved");
    assert_eq!(hooks[0]["user"]["id"], f.approver);

    f.sim.merge_merge_request(f.project, 1, f.maint).await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Merge Request Hook"]);
    let a = &hooks[0]["object_attributes"];
    assert_eq!(a["action"], "merge");
    assert_eq!(a["state"], "merged");
    assert!(is_hook_time(&a["merged_at"]));
    let merge_sha = a["merge_commit_sha"].as_str().unwrap().to_owned();

    let (status, _, mr_json) = f.get("t-reporter", "/merge_requests/1").await;
    assert_eq!(status, 200);
    assert_eq!(mr_json["state"], "merged");
    assert_eq!(mr_json["merge_commit_sha"], merge_sha.as_str());
    assert_eq!(mr_json["sha"], shas[1].as_str());
    assert_eq!(mr_json["merged_by"]["id"], f.maint);
    assert_eq!(mr_json["reviewers"][0]["id"], f.approver);
    assert_eq!(mr_json["references"]["full"], "acme/app!1");
    assert!(
        is_rest_time(&mr_json["merged_at"]),
        "{}",
        mr_json["merged_at"]
    );

    let (_, _, commits) = f.get("t-dev", "/merge_requests/1/commits").await;
    let ids: Vec<&str> = commits
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [shas[1].as_str(), shas[0].as_str()]);

    let (_, _, approvals) = f.get("t-dev", "/merge_requests/1/approvals").await;
    assert_eq!(approvals["approved_by"][0]["user"]["id"], f.approver);

    f.sim.push(f.project, "other", &["x"], f.dev).await;
    f.sim
        .open_merge_request(f.project, "other", "main", "Other", "", f.dev)
        .await;
    f.take();
    f.sim.close_merge_request(f.project, 2, f.maint).await;
    let (_, hooks) = f.take_events();
    assert_eq!(hooks[0]["object_attributes"]["action"], "close");
    assert_eq!(hooks[0]["object_attributes"]["state"], "closed");
    assert_eq!(hooks[0]["user"]["id"], f.maint);
}

#[tokio::test]
async fn merge_request_list_filters_sorts_and_pages() {
    let f = fixture().await;
    for b in ["b1", "b2", "b3"] {
        f.sim.push(f.project, b, &["work"], f.dev).await;
        f.sim
            .open_merge_request(f.project, b, "main", &format!("MR {b}"), "", f.dev)
            .await;
        f.sim.advance_clock(std::time::Duration::from_secs(5));
    }
    f.sim.close_merge_request(f.project, 3, f.dev).await;
    f.sim.advance_clock(std::time::Duration::from_secs(5));
    f.sim
        .update_merge_request(f.project, 1, Some("MR b1 edited"), None)
        .await;

    let (status, _, all) = f.get("t-reporter", "/merge_requests").await;
    assert_eq!(status, 200);
    assert_eq!(iids(&all), [3, 2, 1], "created_at desc by default");
    let (_, _, asc) = f.get("t-reporter", "/merge_requests?sort=asc").await;
    assert_eq!(iids(&asc), [1, 2, 3]);
    let (_, _, by_update) = f
        .get("t-reporter", "/merge_requests?order_by=updated_at")
        .await;
    assert_eq!(iids(&by_update), [1, 3, 2]);

    let (_, _, opened) = f.get("t-reporter", "/merge_requests?state=opened").await;
    assert_eq!(iids(&opened), [2, 1]);
    let (_, _, closed) = f.get("t-reporter", "/merge_requests?state=closed").await;
    assert_eq!(iids(&closed), [3]);
    let (_, _, b2) = f
        .get("t-reporter", "/merge_requests?source_branch=b2")
        .await;
    assert_eq!(iids(&b2), [2]);

    let since = all[0]["updated_at"].as_str().unwrap().to_owned(); // MR 3, closed after MR 2 was opened
    let (_, _, recent) = f
        .get(
            "t-reporter",
            &format!("/merge_requests?updated_after={since}&order_by=updated_at"),
        )
        .await;
    assert_eq!(iids(&recent), [1, 3]);
    let (_, _, older) = f
        .get(
            "t-reporter",
            &format!("/merge_requests?updated_before={since}"),
        )
        .await;
    assert_eq!(iids(&older), [3, 2]);

    let (_, headers, page1) = f.get("t-reporter", "/merge_requests?per_page=2").await;
    assert_eq!(iids(&page1), [3, 2]);
    assert_eq!(headers["x-total"], "3");
    assert_eq!(headers["x-total-pages"], "2");
    assert_eq!(headers["x-next-page"], "2");
    assert!(headers["link"].to_str().unwrap().contains("rel=\"next\""));
    let (_, headers, page2) = f
        .get("t-reporter", "/merge_requests?per_page=2&page=2")
        .await;
    assert_eq!(iids(&page2), [1]);
    assert_eq!(headers["x-next-page"], "");

    let (status, _, body) = f.get("t-reporter", "/merge_requests?order_by=size").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "order_by does not have a valid value");
    let (status, _, body) = f.get("t-guest", "/merge_requests").await;
    assert_eq!(
        (status, &body["message"]),
        (StatusCode::NOT_FOUND, &json!("404 Project Not Found"))
    );
    let (status, _, _) = f.get("t-outsider", "/merge_requests/1").await;
    assert_eq!(status, 404);
    let (status, _, body) = f.get("t-dev", "/merge_requests/99").await;
    assert_eq!(
        (status, &body["message"]),
        (StatusCode::NOT_FOUND, &json!("404 Not found"))
    );
}

#[tokio::test]
async fn pipeline_with_an_environment_job_reports_jobs_deployment_and_pipeline() {
    let f = fixture().await;
    let p = f
        .sim
        .run_pipeline(
            f.project,
            "main",
            &[
                JobSpec::new("build", "build"),
                JobSpec::deploy("deploy", "staging", "staging", false),
            ],
        )
        .await;
    let (build, deploy) = (p.job_ids[0], p.job_ids[1]);
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Job Hook", "Job Hook", "Pipeline Hook"]);
    assert_eq!(hooks[0]["object_kind"], "build");
    assert_eq!(hooks[0]["build_status"], "pending");
    assert_eq!(hooks[0]["environment"], Value::Null);
    assert_eq!(hooks[1]["build_id"], deploy);
    assert_eq!(
        hooks[1]["environment"],
        json!({ "name": "staging", "action": "start", "deployment_tier": "staging" })
    );
    assert_eq!(hooks[1]["pipeline_id"], p.id);
    assert_eq!(
        hooks[1]["commit"]["id"], p.id,
        "GitLab puts the pipeline id there"
    );
    assert_eq!(hooks[1]["project_id"], f.project);
    let sha = hooks[1]["sha"].as_str().unwrap().to_owned();
    assert_eq!(sha.len(), 40);
    let pl = &hooks[2]["object_attributes"];
    assert_eq!(pl["status"], "pending");
    assert_eq!(pl["iid"], 1);
    assert_eq!(pl["source"], "push");
    assert_eq!(pl["stages"], json!(["build", "deploy"]));
    assert!(is_hook_time(&pl["created_at"]));
    assert_eq!(hooks[2]["merge_request"], Value::Null);

    f.sim.set_job_status(f.project, build, "running").await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Job Hook", "Pipeline Hook"]);
    assert_eq!(hooks[1]["object_attributes"]["status"], "running");

    // The pipeline stays `running` while `deploy` is pending: no Pipeline Hook.
    f.sim.set_job_status(f.project, build, "success").await;
    assert_eq!(f.take_events().0, ["Job Hook"]);

    f.sim.set_job_status(f.project, deploy, "running").await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Job Hook", "Deployment Hook"]);
    let d = &hooks[1];
    assert_eq!(d["object_kind"], "deployment");
    assert_eq!(d["status"], "running");
    assert_eq!(d["deployable_id"], deploy);
    assert!(
        d["deployable_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/acme/app/-/jobs/{deploy}"))
    );
    assert_eq!(d["environment"], "staging");
    assert_eq!(d["environment_tier"], "staging");
    assert_eq!(d["environment_slug"], "staging");
    assert_eq!(d["short_sha"], &sha[..8]);
    assert_eq!(d["ref"], "main");
    assert!(d["status_changed_at"].as_str().unwrap().ends_with(" +0000"));
    assert!(d.get("iid").is_none() && d.get("sha").is_none());
    let deployment_id = d["deployment_id"].as_i64().unwrap();

    f.sim.set_job_status(f.project, deploy, "success").await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Job Hook", "Deployment Hook", "Pipeline Hook"]);
    assert_eq!(hooks[1]["status"], "success");
    let pl = &hooks[2];
    assert_eq!(pl["object_attributes"]["status"], "success");
    assert_eq!(pl["object_attributes"]["detailed_status"], "passed");
    assert!(is_hook_time(&pl["object_attributes"]["finished_at"]));
    let deploy_build = pl["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == deploy)
        .unwrap();
    assert_eq!(deploy_build["environment"]["deployment_tier"], "staging");
    assert_eq!(deploy_build["status"], "success");

    let (_, _, list) = f.get("t-reporter", "/pipelines?status=success").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], p.id);
    let (_, _, list) = f.get("t-reporter", "/pipelines?status=failed").await;
    assert_eq!(list, json!([]));
    let (_, _, one) = f.get("t-reporter", &format!("/pipelines/{}", p.id)).await;
    assert_eq!(one["status"], "success");
    assert_eq!(one["detailed_status"]["label"], "passed");
    assert!(is_rest_time(&one["created_at"]));
    let (_, _, jobs) = f
        .get("t-reporter", &format!("/pipelines/{}/jobs", p.id))
        .await;
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    let (_, _, job) = f.get("t-reporter", &format!("/jobs/{deploy}")).await;
    assert_eq!(job["status"], "success");
    assert_eq!(job["pipeline"]["id"], p.id);

    let (_, _, dep) = f
        .get("t-reporter", &format!("/deployments/{deployment_id}"))
        .await;
    assert_eq!(dep["iid"], 1);
    assert_eq!(dep["sha"], sha.as_str());
    assert_eq!(dep["status"], "success");
    assert_eq!(dep["environment"]["tier"], "staging");
    assert_eq!(dep["deployable"]["id"], deploy);
    assert_eq!(dep["deployable"]["pipeline"]["id"], p.id);
    assert_eq!(dep["deployable"]["pipeline"]["iid"], 1);
    assert_eq!(dep["pending_approval_count"], 0);

    let (_, _, envs) = f.get("t-reporter", "/environments?name=staging").await;
    assert_eq!(envs[0]["tier"], "staging");
    let env_id = envs[0]["id"].as_i64().unwrap();
    let (_, _, env) = f
        .get("t-reporter", &format!("/environments/{env_id}"))
        .await;
    assert_eq!(env["last_deployment"]["id"], deployment_id);
    let (status, _, _) = f.get("t-guest", "/pipelines").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn merge_request_pipeline_carries_its_merge_request() {
    let f = fixture().await;
    f.sim
        .push(f.project, "feature", &["PROJ-7 work"], f.dev)
        .await;
    let mr = f
        .sim
        .open_merge_request(f.project, "feature", "main", "PROJ-7", "", f.dev)
        .await;
    f.take();
    let p = f
        .sim
        .run_pipeline(f.project, "feature", &[JobSpec::new("test", "test")])
        .await;
    let (_, hooks) = f.take_events();
    let pl = hooks.last().unwrap();
    assert_eq!(pl["object_attributes"]["source"], "merge_request_event");
    assert_eq!(pl["merge_request"]["iid"], mr.iid);
    assert_eq!(pl["merge_request"]["id"], mr.id);
    assert_eq!(
        pl["user"]["id"], f.dev,
        "MR pipelines run as the MR's author"
    );
    let (_, _, mr_json) = f.get("t-dev", "/merge_requests/1").await;
    assert_eq!(mr_json["head_pipeline"]["id"], p.id);
}

#[tokio::test]
async fn blocked_deployment_is_listed_but_sends_no_deployment_hook() {
    let f = fixture().await;
    f.sim
        .protect_environment(f.project, "production", &[f.approver], 1);
    let p = f
        .sim
        .run_pipeline(
            f.project,
            "main",
            &[
                JobSpec::new("build", "build"),
                JobSpec::deploy("deploy", "production", "production", true),
            ],
        )
        .await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Job Hook", "Job Hook", "Pipeline Hook"]);
    assert_eq!(hooks[1]["build_status"], "manual");
    assert_eq!(hooks[1]["environment"]["name"], "production");

    let (_, _, blocked) = f.get("t-reporter", "/deployments?status=blocked").await;
    let blocked = blocked.as_array().unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["status"], "blocked");
    assert_eq!(blocked[0]["pending_approval_count"], 1);
    assert_eq!(blocked[0]["deployable"]["status"], "manual");
    assert_eq!(blocked[0]["deployable"]["id"], p.job_ids[1]);
    let (_, _, created) = f.get("t-reporter", "/deployments?status=created").await;
    assert_eq!(created, json!([]));
    assert_eq!(f.sim.deployments_of(f.project)[0].2, "blocked");

    // The build finishing makes the pipeline pass (the manual job may fail); the deployment stays silent.
    f.sim
        .set_job_status(f.project, p.job_ids[0], "running")
        .await;
    f.sim
        .set_job_status(f.project, p.job_ids[0], "success")
        .await;
    let (events, hooks) = f.take_events();
    assert_eq!(
        events,
        ["Job Hook", "Pipeline Hook", "Job Hook", "Pipeline Hook"]
    );
    let last = &hooks[3];
    assert_eq!(last["object_attributes"]["status"], "success");
    let deploy = last["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "deploy")
        .unwrap();
    assert_eq!(deploy["status"], "manual");
    assert_eq!(deploy["manual"], true);
    assert_eq!(deploy["environment"]["deployment_tier"], "production");
    assert_eq!(f.sim.deployments_of(f.project)[0].2, "blocked");
}

#[tokio::test]
async fn approval_answers_with_gitlabs_validation_messages() {
    let f = fixture().await;
    f.sim
        .protect_environment(f.project, "production", &[f.approver, f.dev], 2);
    let p = f
        .sim
        .run_pipeline_as(
            f.project,
            "main",
            &[JobSpec::deploy("deploy", "production", "production", true)],
            f.approver,
        )
        .await;
    let (deployment, _, _) = f.sim.deployments_of(f.project)[0].clone();
    let path = format!("/deployments/{deployment}/approval");
    f.take();

    let (status, body) = f
        .send("POST", "t-dev", &path, json!({ "status": "maybe" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "status does not have a valid value");
    let (status, body) = f.send("POST", "t-dev", &path, json!({})).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("status is missing"))
    );

    let (status, body) = f
        .send("POST", "t-approver", &path, json!({ "status": "approved" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "You cannot approve your own deployment. This configuration can be adjusted in the protected environment settings."
    );
    let (status, body) = f
        .send("POST", "t-reporter", &path, json!({ "status": "approved" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "You don't have permission to approve this deployment. Contact the project or group owner for help."
    );
    let (status, body) = f
        .send(
            "POST",
            "t-dev",
            &path,
            json!({ "status": "approved", "represented_as": "QA group" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "There are no approval rules for the given `represent_as` parameter. Use a valid User/Group/Role name instead."
    );

    let (status, first) = f
        .send(
            "POST",
            "t-dev",
            &path,
            json!({ "status": "approved", "comment": "LGTM" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(first["status"], "approved");
    assert_eq!(first["user"]["id"], f.dev);
    assert_eq!(first["comment"], "LGTM");
    assert!(is_rest_time(&first["created_at"]));
    // One of two approvals: still blocked, and re-posting returns the same approval.
    let (status, again) = f
        .send(
            "POST",
            "t-dev",
            &path,
            json!({ "status": "approved", "comment": "changed my mind about the comment" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(again, first);
    let (_, _, dep) = f.get("t-dev", &format!("/deployments/{deployment}")).await;
    assert_eq!(dep["status"], "blocked");
    assert_eq!(dep["pending_approval_count"], 1);
    assert_eq!(dep["approvals"][0]["user"]["id"], f.dev);
    assert!(f.take().is_empty(), "approving sends nothing");

    // The triggerer may reject: the job is dropped with `deployment_rejected`, the deployment fails.
    let (status, body) = f
        .send("POST", "t-approver", &path, json!({ "status": "rejected" }))
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["status"], "rejected");
    let (events, hooks) = f.take_events();
    assert_eq!(&events[..2], ["Job Hook", "Deployment Hook"]);
    assert_eq!(hooks[0]["build_status"], "failed");
    assert_eq!(hooks[0]["build_failure_reason"], "deployment_rejected");
    assert_eq!(hooks[1]["status"], "failed");
    let (_, _, job) = f.get("t-dev", &format!("/jobs/{}", p.job_ids[0])).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["failure_reason"], "deployment_rejected");

    let (status, body) = f
        .send("POST", "t-dev", &path, json!({ "status": "approved" }))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "This deployment is not waiting for approvals."
    );
    let (status, _) = f
        .send("POST", "t-outsider", &path, json!({ "status": "approved" }))
        .await;
    assert_eq!(status, 404);
    let (status, body) = f
        .send(
            "POST",
            "t-dev",
            "/deployments/424242/approval",
            json!({ "status": "approved" }),
        )
        .await;
    assert_eq!(
        (status, &body["message"]),
        (StatusCode::NOT_FOUND, &json!("404 Not found"))
    );
}

#[tokio::test]
async fn approval_unblocks_but_only_playing_runs_the_job() {
    let f = fixture().await;
    f.sim
        .protect_environment(f.project, "production", &[f.approver], 1);
    let p = f
        .sim
        .run_pipeline(
            f.project,
            "main",
            &[JobSpec::deploy("deploy", "production", "production", true)],
        )
        .await;
    let job = p.job_ids[0];
    let (deployment, _, _) = f.sim.deployments_of(f.project)[0].clone();
    f.take();

    let play = format!("/jobs/{job}/play");
    let (status, body) = f.send("POST", "t-maint", &play, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "400 Bad request - Unplayable Job");

    let (status, _) = f
        .send(
            "POST",
            "t-approver",
            &format!("/deployments/{deployment}/approval"),
            json!({ "status": "approved" }),
        )
        .await;
    assert_eq!(status, 201);
    assert!(f.take().is_empty(), "unblocking is silent");
    assert_eq!(f.sim.deployments_of(f.project)[0].2, "created");
    let (_, _, j) = f.get("t-dev", &format!("/jobs/{job}")).await;
    assert_eq!(j["status"], "manual", "the approval does not run the job");

    // Deploy access on the protected environment: Maintainers and its approvers.
    let (status, body) = f.send("POST", "t-dev", &play, json!({})).await;
    assert_eq!(
        (status, &body["message"]),
        (StatusCode::FORBIDDEN, &json!("403 Forbidden"))
    );
    let (status, _) = f.send("POST", "t-reporter", &play, json!({})).await;
    assert_eq!(status, 403);

    let (status, body) = f.send("POST", "t-approver", &play, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pending");
    let (events, hooks) = f.take_events();
    assert_eq!(events[0], "Job Hook");
    assert_eq!(hooks[0]["build_status"], "pending");
    assert_eq!(hooks[0]["user"]["id"], f.approver);
    assert!(!events.contains(&"Deployment Hook".to_owned()));

    let (status, _) = f.send("POST", "t-approver", &play, json!({})).await;
    assert_eq!(status, 400, "no longer manual");

    f.sim.set_job_status(f.project, job, "running").await;
    let (events, hooks) = f.take_events();
    assert!(events.contains(&"Deployment Hook".to_owned()));
    let d = hooks
        .iter()
        .find(|h| h["object_kind"] == "deployment")
        .unwrap();
    assert_eq!(d["status"], "running");
    assert_eq!(d["deployment_id"], deployment);
}

#[tokio::test]
async fn api_created_deployments_have_no_deployable() {
    let f = fixture().await;
    let p = f
        .sim
        .run_pipeline(f.project, "main", &[JobSpec::new("build", "build")])
        .await;
    let (_, _, pl) = f.get("t-dev", &format!("/pipelines/{}", p.id)).await;
    let sha = pl["sha"].as_str().unwrap().to_owned();
    f.take();

    let (status, created) = f
        .send(
            "POST",
            "t-dev",
            "/deployments",
            json!({ "environment": "review/PROJ-9", "sha": sha, "ref": "main", "tag": false, "status": "running" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["deployable"], Value::Null);
    assert_eq!(created["status"], "running");
    assert_eq!(created["iid"], 1);
    let id = created["id"].as_i64().unwrap();
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Deployment Hook"]);
    assert_eq!(hooks[0]["deployable_url"], Value::Null);
    assert_eq!(hooks[0]["deployable_id"], Value::Null);
    assert_eq!(hooks[0]["environment"], "review/PROJ-9");
    assert_ne!(hooks[0]["environment_slug"], "review/PROJ-9");
    assert_eq!(hooks[0]["user"]["id"], f.dev);

    // Form-encoded bodies work as well.
    let resp = f
        .http
        .put(f.url(&format!("/deployments/{id}")))
        .header("PRIVATE-TOKEN", "t-dev")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("status=success")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, hooks) = f.take_events();
    assert_eq!(hooks[0]["status"], "success");
    assert_eq!(hooks[0]["deployment_id"], id);

    let (status, body) = f
        .send(
            "PUT",
            "t-dev",
            &format!("/deployments/{id}"),
            json!({ "status": "running" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"]["status"][0],
        "cannot transition via \"run\""
    );

    let (status, body) = f
        .send(
            "POST",
            "t-dev",
            "/deployments",
            json!({ "environment": "x", "sha": sha, "ref": "nope", "tag": false, "status": "success" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"]["ref"][0],
        "The branch or tag does not exist"
    );
    let (status, body) = f
        .send(
            "POST",
            "t-dev",
            "/deployments",
            json!({ "environment": "x", "tag": false }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "sha is missing, ref is missing, status is missing"
    );
    let (status, _) = f
        .send(
            "POST",
            "t-reporter",
            "/deployments",
            json!({ "environment": "x", "sha": sha, "ref": "main", "tag": false, "status": "success" }),
        )
        .await;
    assert_eq!(status, 403);

    // A deployment a job created can't be edited through the API.
    let q = f
        .sim
        .run_pipeline(
            f.project,
            "main",
            &[JobSpec::deploy("deploy", "staging", "staging", false)],
        )
        .await;
    let (_, _, staged) = f.get("t-dev", "/deployments?environment=staging").await;
    assert_eq!(staged[0]["deployable"]["id"], q.job_ids[0]);
    let job_deployment = staged[0]["id"].as_i64().unwrap();
    let (status, body) = f
        .send(
            "PUT",
            "t-dev",
            &format!("/deployments/{job_deployment}"),
            json!({ "status": "success" }),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["message"],
        "403 Forbidden - Deployments created using GitLab CI can not be updated using the API"
    );

    let (status, _, body) = f
        .get("t-dev", "/deployments?finished_after=2020-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "400 Bad request - `finished_at` filter and `finished_at` sorting must be paired"
    );
    let (_, _, finished) = f
        .get(
            "t-dev",
            "/deployments?finished_after=2020-01-01T00:00:00Z&order_by=finished_at&status=success",
        )
        .await;
    assert_eq!(finished.as_array().unwrap().len(), 1);
    assert_eq!(finished[0]["id"], id);
    let (_, _, envs) = f.get("t-dev", "/environments?search=PROJ").await;
    assert_eq!(envs[0]["name"], "review/PROJ-9");
    assert_eq!(envs[0]["tier"], "development");
}

#[tokio::test]
async fn feature_flag_hook_fires_only_when_active_toggles() {
    let f = fixture().await;
    let id = f
        .sim
        .create_feature_flag(
            f.project,
            "new-checkout",
            "PROJ-5 rollout",
            true,
            vec![json!({ "name": "default", "parameters": {}, "scopes": [{ "environment_scope": "production" }] })],
        )
        .await;
    let (status, created) = f
        .send(
            "POST",
            "t-dev",
            "/feature_flags",
            json!({ "name": "dark-mode", "description": "PROJ-6", "active": false }),
        )
        .await;
    assert_eq!(status, 201);
    assert!(created.get("id").is_none());
    assert_eq!(created["version"], "new_version_flag");
    f.sim
        .update_feature_flag(
            f.project,
            "new-checkout",
            Some("PROJ-5 PROJ-8 rollout"),
            None,
        )
        .await;
    let (status, _) = f
        .send(
            "PUT",
            "t-dev",
            "/feature_flags/dark-mode",
            json!({ "description": "PROJ-6 PROJ-9" }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        f.take().is_empty(),
        "create and description edits are silent"
    );

    f.sim
        .update_feature_flag(f.project, "new-checkout", None, Some(false))
        .await;
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Feature Flag Hook"]);
    assert_eq!(hooks[0]["object_kind"], "feature_flag");
    assert_eq!(
        hooks[0]["object_attributes"],
        json!({ "id": id, "name": "new-checkout", "description": "PROJ-5 PROJ-8 rollout", "active": false })
    );
    assert_eq!(hooks[0]["project"]["id"], f.project);

    let (status, body) = f
        .send(
            "PUT",
            "t-dev",
            "/feature_flags/dark-mode",
            json!({ "active": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    let (events, hooks) = f.take_events();
    assert_eq!(events, ["Feature Flag Hook"]);
    assert_eq!(hooks[0]["user"]["id"], f.dev);
    assert!(hooks[0]["user_url"].as_str().unwrap().ends_with("/dev"));
    let (_, _) = f
        .send(
            "PUT",
            "t-dev",
            "/feature_flags/dark-mode",
            json!({ "active": true }),
        )
        .await;
    assert!(f.take().is_empty(), "no toggle, no hook");

    let (_, _, flag) = f.get("t-dev", "/feature_flags/new-checkout").await;
    assert!(flag.get("id").is_none());
    assert_eq!(flag["description"], "PROJ-5 PROJ-8 rollout");
    let strategy = &flag["strategies"][0];
    assert_eq!(strategy["name"], "default");
    assert!(strategy["id"].is_i64());
    assert_eq!(strategy["scopes"][0]["environment_scope"], "production");
    assert!(strategy["scopes"][0]["id"].is_i64());
    let (_, headers, enabled) = f.get("t-dev", "/feature_flags?scope=enabled").await;
    assert_eq!(enabled.as_array().unwrap().len(), 1);
    assert_eq!(enabled[0]["name"], "dark-mode");
    assert_eq!(headers["x-total"], "1");
    let (_, _, disabled) = f.get("t-dev", "/feature_flags?scope=disabled").await;
    assert_eq!(disabled[0]["name"], "new-checkout");

    let (status, body) = f
        .send(
            "POST",
            "t-dev",
            "/feature_flags",
            json!({ "name": "dark-mode" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], json!(["Name has already been taken"]));
    let (status, _, _) = f.get("t-reporter", "/feature_flags").await;
    assert_eq!(status, 403);
    let (status, _, _) = f.get("t-outsider", "/feature_flags").await;
    assert_eq!(status, 404);

    f.sim.delete_feature_flag(f.project, "new-checkout").await;
    let (status, deleted) = f
        .send("DELETE", "t-dev", "/feature_flags/dark-mode", json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["name"], "dark-mode");
    assert!(f.take().is_empty(), "deleting is silent");
    let (_, _, none) = f.get("t-dev", "/feature_flags").await;
    assert_eq!(none, json!([]));
    let (status, _, _) = f.get("t-dev", "/feature_flags/dark-mode").await;
    assert_eq!(status, 404);
}
