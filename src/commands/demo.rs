//! `demo`: the real service against the built-in GitLab and Jira simulators, with sample activity.

use std::collections::BTreeMap;

use gfj_sim::gitlab::{GitLabSim, Plan};
use gfj_sim::jira::{JiraSim, JiraSimConfig};

use super::link::{HookMode, LinkRequest};
use super::serve::Service;
use crate::Settings;

pub async fn run() -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("gitlab-for-jira-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(dir: &std::path::Path) -> anyhow::Result<String> {
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

    // Wait for the queue to drain (bounded), then report.
    for _ in 0..200 {
        let q = store.queue_stats(clock.now_ms()).await?;
        if q.ready + q.running + q.scheduled == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let mut out = vec![format!(
        "Linked GitLab group {} to the simulated Jira site with {} {} hook(s); pushed 4 commits to 3 branches.",
        linked.group_path,
        linked.hooks.len(),
        linked.hook_mode
    )];
    for key in jira.issue_keys() {
        let view = jira.issue(&key);
        out.push(format!("{key}:"));
        for b in &view.branches {
            out.push(format!("  branch  {}", b["name"].as_str().unwrap_or("?")));
        }
        for c in &view.commits {
            out.push(format!(
                "  commit  {}  {}",
                c["displayId"].as_str().unwrap_or("?"),
                c["message"]
                    .as_str()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    let _ = stop_tx.send(());
    server.await??;
    Ok(out.join("\n"))
}
