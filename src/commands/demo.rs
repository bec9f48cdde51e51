//! `demo [--serve]`: the real service against the built-in GitLab and Jira simulators, with sample
//! activity of every kind (branches, commits, a merge request, a pipeline with a deployment to a JSM
//! service, a feature flag), then what the simulated Jira shows per issue key. `--serve` keeps it all
//! running and serves the simulated development panel at a local URL until SIGTERM/SIGINT.

use std::collections::BTreeMap;
use std::time::Duration;

use gfj_sim::gitlab::ci::JobSpec;
use gfj_sim::gitlab::{GitLabSim, Plan};
use gfj_sim::jira::{JiraSim, JiraSimConfig};
use gfj_store::{Clock, Store};
use serde_json::json;

use super::link::{HookMode, LinkRequest};
use super::serve::Service;
use crate::Settings;

/// The JSM service the demo's deployments name.
const DEMO_SERVICE: &str = "b:ZGVtby1zZXJ2aWNl";
/// How long the demo waits for its events to reach the simulated Jira.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);

pub async fn run(serve: bool) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("gitlab-for-jira-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir, serve).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path, serve: bool) -> anyhow::Result<String> {
    let jira = JiraSim::start(JiraSimConfig::default())
        .await
        .map_err(|e| anyhow::anyhow!("Jira simulator: {e}"))?;
    let gitlab = GitLabSim::start().await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let settings = Settings::from_map(&BTreeMap::from([
        ("GFJ_BASE_URL".to_owned(), base_url.clone()),
        (
            "GFJ_DATABASE_URL".to_owned(),
            format!("sqlite://{}", dir.join("demo.db").display()),
        ),
        ("GFJ_CONNECT_KEYS_URL".to_owned(), jira.connect_keys_url()),
        ("GFJ_GITLAB_URLS".to_owned(), gitlab.base_url.clone()),
        ("GFJ_JIRA_URLS".to_owned(), "http://127.0.0.1:*".to_owned()),
    ]))?;
    let service = Service::open(settings.clone()).await?;
    let store = service.store.clone();
    let clock = service.clock.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service.run(listener, async move {
        let _ = stop_rx.await;
    }));

    anyhow::ensure!(
        jira.install(&base_url).await? == 204,
        "the Jira simulator could not install the app"
    );
    let ada = gitlab.add_user("ada", "glpat-demo");
    let group = gitlab.add_group("acme", None, Plan::Free);
    gitlab.add_member(group, ada, 40);
    let api = gitlab.add_project(group, "api");
    let web = gitlab.add_project(group, "web");
    let linked = super::link::link(
        &settings,
        &store,
        LinkRequest {
            site: jira.client_key().to_owned(),
            group: "acme".into(),
            gitlab_url: gitlab.base_url.clone(),
            gitlab_token: "glpat-demo".into(),
            gitlab_connection: None,
            hook_mode: HookMode::Auto,
        },
        clock.now_ms(),
    )
    .await?;
    super::jsm::set(
        &settings,
        &store,
        &super::jsm::SetRequest {
            site: None,
            target: super::jsm::Target::Group("acme".into()),
            service_ids: Some(DEMO_SERVICE.into()),
            gating_tiers: None,
            gating_token: None,
            play_after_approval: None,
        },
        clock.now_ms(),
    )
    .await?;
    drained(&store, &*clock).await?;

    // Branches and commits.
    gitlab
        .push(
            api,
            "feature/PROJ-7-login",
            &["Add login form", "PROJ-8 validate passwords"],
            ada,
        )
        .await;
    gitlab
        .push(web, "main", &["DOCS-3 describe the login page"], ada)
        .await;
    gitlab.push(web, "spike", &["try things out"], ada).await;
    // A merge request.
    gitlab
        .open_merge_request(
            api,
            "feature/PROJ-7-login",
            "main",
            "Login form",
            "Implements PROJ-7.",
            ada,
        )
        .await;
    // A pipeline (a build) that deploys to production (a deployment, to the group's JSM service).
    gitlab
        .push(api, "main", &["PROJ-9 ship the login form"], ada)
        .await;
    gitlab.add_environment(api, "production", "production");
    let pipeline = gitlab
        .run_pipeline(
            api,
            "main",
            &[
                JobSpec::new("test", "test"),
                JobSpec::deploy("deploy", "production", "production", false),
            ],
        )
        .await;
    for job in &pipeline.job_ids {
        gitlab.set_job_status(api, *job, "running").await;
        gitlab.set_job_status(api, *job, "success").await;
    }
    // A feature flag, toggled on.
    gitlab
        .create_feature_flag(
            api,
            "new_login",
            "Rolls out PROJ-7",
            false,
            vec![json!({"name": "flexibleRollout", "parameters": {"groupId": "default", "rollout": "25", "stickiness": "default"}, "scopes": [{"environment_scope": "production"}]})],
        )
        .await;
    gitlab
        .update_feature_flag(api, "new_login", None, Some(true))
        .await;
    drained(&store, &*clock).await?;

    let mut out = vec![format!(
        "Linked GitLab group {} to the simulated Jira site with {} {} hook(s); pushed 5 commits to 4 branches, \
         opened a merge request, ran a pipeline that deployed to production (JSM service {DEMO_SERVICE}), \
         and turned a feature flag on.",
        linked.group_path,
        linked.hooks.len(),
        linked.hook_mode
    )];
    out.extend(panel_lines(&jira));
    if serve {
        println!("{}", out.join("\n"));
        println!(
            "The simulated Jira's development panel: {}/browse (read-only; Ctrl-C to stop)",
            jira.base_url
        );
        super::serve::signal().await;
        out = vec!["demo stopped".into()];
    }
    let _ = stop_tx.send(());
    server.await??;
    Ok(out.join("\n"))
}

/// Waits, bounded, until the queue holds nothing due, running or scheduled.
async fn drained(store: &Store, clock: &dyn Clock) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    loop {
        let q = store.queue_stats(clock.now_ms()).await?;
        if q.ready + q.running + q.scheduled == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the demo's events did not reach the simulated Jira within {DRAIN_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What the simulated Jira shows per issue key, one line per entity.
fn panel_lines(jira: &JiraSim) -> Vec<String> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let mut out = Vec::new();
    for key in jira.issue_keys() {
        let view = jira.issue(&key);
        out.push(format!("{key}:"));
        for b in &view.branches {
            out.push(format!("  branch        {}", text(&b["name"])));
        }
        for c in &view.commits {
            let message = c["message"].as_str().unwrap_or("");
            out.push(format!(
                "  commit        {}  {}",
                text(&c["displayId"]),
                message.lines().next().unwrap_or("")
            ));
        }
        for p in &view.pull_requests {
            out.push(format!(
                "  pull request  {}  {} ({})",
                text(&p["displayId"]),
                text(&p["title"]),
                text(&p["status"])
            ));
        }
        for b in &view.builds {
            out.push(format!(
                "  build         {} #{} ({})",
                text(&b["displayName"]),
                b["buildNumber"],
                text(&b["state"])
            ));
        }
        for d in &view.deployments {
            let services: Vec<String> = d["associations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["associationType"] == "serviceIdOrKeys")
                .flat_map(|a| a["values"].as_array().cloned().unwrap_or_default())
                .map(|v| text(&v))
                .collect();
            out.push(format!(
                "  deployment    {} ({}), environment {}, services {}",
                text(&d["displayName"]),
                text(&d["state"]),
                text(&d["environment"]["displayName"]),
                services.join(", ")
            ));
        }
        for f in &view.feature_flags {
            let on = f["summary"]["status"]["enabled"] == true;
            out.push(format!(
                "  feature flag  {} ({})",
                text(&f["key"]),
                if on { "on" } else { "off" }
            ));
        }
    }
    out
}
