use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use gfj_sim::gitlab::{GitLabSim, Plan};
use gfj_sim::jira::{JiraSim, JiraSimConfig};
use gfj_store::Store;
use gfj_store::testing::{TEST_KEY, TestDatabase};
use gitlab_for_jira::Settings;
use gitlab_for_jira::commands::link::{self, HookMode, LinkRequest, LinkedSubscription};
use gitlab_for_jira::commands::serve::Service;

/// `GFJ_ADMIN_TOKEN` of every test service.
pub const ADMIN_TOKEN: &str = "kT9vQ2mXw7LrB4nYc8ZpHs3JdF6gA1eU5oR0iWq+zNE=";

/// The service running against both simulators.
pub struct TestApp {
    pub base_url: String,
    pub settings: Settings,
    pub store: Store,
    pub jira: JiraSim,
    pub gitlab: GitLabSim,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    db: Option<TestDatabase>,
    run_workers: bool,
}

/// A GitLab user with a group and projects, ready to link.
pub struct World {
    pub user: i64,
    pub token: String,
    pub group: i64,
    pub projects: Vec<i64>,
}

impl TestApp {
    pub async fn start(db: TestDatabase) -> Self {
        Self::start_with(db, true).await
    }

    /// Starts the service; `run_workers: false` leaves draining the queue to the test.
    pub async fn start_with(db: TestDatabase, run_workers: bool) -> Self {
        Self::start_custom(db, run_workers, JiraSimConfig::default()).await
    }

    pub async fn start_custom(db: TestDatabase, run_workers: bool, jira: JiraSimConfig) -> Self {
        Self::start_with_settings(db, run_workers, jira, &[]).await
    }

    /// Starts the service with extra `GFJ_*` settings over the test defaults.
    pub async fn start_with_settings(
        db: TestDatabase,
        run_workers: bool,
        jira: JiraSimConfig,
        extra: &[(&str, &str)],
    ) -> Self {
        let jira = JiraSim::start(jira).await.expect("Jira simulator");
        let gitlab = GitLabSim::start().await.expect("GitLab simulator");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        // GitLab sign-in: an OAuth application registered for this service's callback.
        let (client_id, client_secret) =
            gitlab.add_oauth_application(&format!("{base_url}/gitlab/oauth/callback"));
        let mut values = BTreeMap::from([
            (
                "GFJ_GITLAB_OAUTH_APPS".to_owned(),
                format!("{}={client_id}:{client_secret}", gitlab.base_url),
            ),
            ("GFJ_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            ("GFJ_BASE_URL".to_owned(), base_url.clone()),
            ("GFJ_DATABASE_URL".to_owned(), db.url.clone()),
            ("GFJ_ENCRYPTION_KEY".to_owned(), TEST_KEY.to_owned()),
            ("GFJ_CONNECT_KEYS_URL".to_owned(), jira.connect_keys_url()),
            ("GFJ_GITLAB_URLS".to_owned(), gitlab.base_url.clone()),
            ("GFJ_JIRA_URLS".to_owned(), "http://127.0.0.1:*".to_owned()),
            // The simulator also plays api.atlassian.com for OAuth-credentials sites.
            ("GFJ_ATLASSIAN_API_URL".to_owned(), jira.base_url.clone()),
        ]);
        values.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let settings = Settings::from_map(&values).unwrap();
        let mut service = Service::open(settings.clone()).await.unwrap();
        service.run_workers = run_workers;
        let store = service.store.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(service.run(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base_url,
            settings,
            store,
            jira,
            gitlab,
            stop: Some(stop),
            server: Some(server),
            db: Some(db),
            run_workers,
        }
    }

    /// A user who is `access_level` on a new group of `plan` with `projects` projects.
    pub fn world(&self, plan: Plan, access_level: i64, projects: usize) -> World {
        let token = format!(
            "glpat-{}",
            self.gitlab.hooks().len() + 1000 * projects + access_level as usize
        );
        let user = self.gitlab.add_user(&format!("user{access_level}"), &token);
        let group = self.gitlab.add_group("acme", None, plan);
        self.gitlab.add_member(group, user, access_level);
        let projects = (0..projects)
            .map(|n| self.gitlab.add_project(group, &format!("p{n}")))
            .collect();
        World {
            user,
            token,
            group,
            projects,
        }
    }

    /// Installed in Jira, with a Maintainer's Free group of `projects` projects linked to it.
    pub async fn linked_world(&self, projects: usize) -> World {
        self.install().await;
        let w = self.world(Plan::Free, 40, projects);
        self.link("acme", &w.token, HookMode::Auto).await.unwrap();
        w
    }

    pub async fn install(&self) {
        assert_eq!(self.jira.install(&self.base_url).await.unwrap(), 204);
    }

    /// Registers the Jira site in OAuth-credentials mode, with the credentials its admin created.
    pub async fn add_oauth_site(&self) {
        let (id, secret) = self.jira.oauth_credentials();
        gitlab_for_jira::commands::sites::add_oauth(
            &self.settings,
            &self.store,
            &self.jira.base_url,
            &id,
            &secret,
            now_ms(),
        )
        .await
        .unwrap();
    }

    /// Links without waiting for the backfill the link queues.
    pub async fn link_only(
        &self,
        group: &str,
        token: &str,
        mode: HookMode,
    ) -> anyhow::Result<LinkedSubscription> {
        let req = LinkRequest {
            site: self.jira.client_key().to_owned(),
            group: group.to_owned(),
            gitlab_url: self.gitlab.base_url.clone(),
            gitlab_token: token.to_owned(),
            gitlab_connection: None,
            hook_mode: mode,
        };
        link::link(&self.settings, &self.store, req, 1).await
    }

    pub async fn link(
        &self,
        group: &str,
        token: &str,
        mode: HookMode,
    ) -> anyhow::Result<LinkedSubscription> {
        let linked = self.link_only(group, token, mode).await?;
        self.backfilled().await;
        Ok(linked)
    }

    /// Waits until the link's backfill is done: tests start from a linked group whose history is in.
    pub async fn backfilled(&self) {
        if self.run_workers {
            self.drained().await;
        } else {
            self.run_queue_once_through().await;
        }
    }

    /// Runs due jobs in this task until none is left (for tests that run no background workers).
    pub async fn run_queue_once_through(&self) {
        let clock: std::sync::Arc<dyn gfj_store::Clock> =
            std::sync::Arc::new(gfj_store::SystemClock);
        let runner = gfj_sync::Runner::new(
            self.store.clone(),
            clock.clone(),
            gitlab_for_jira::commands::serve::handlers(&self.settings, &self.store, clock),
            gfj_sync::RunnerConfig::default(),
        );
        while runner.run_due().await > 0 {}
    }

    /// How many jobs of `kind` the queue holds.
    pub async fn queued(&self, kind: &str) -> usize {
        let jobs = self.store.jobs().await.unwrap();
        jobs.iter().filter(|j| j.kind == kind).count()
    }

    /// Waits (bounded) until the queue holds nothing that is due, running or scheduled.
    pub async fn drained(&self) {
        eventually("the queue drains", || async {
            let q = self.store.queue_stats(now_ms()).await.unwrap();
            q.ready + q.running + q.scheduled == 0
        })
        .await;
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
        self.store.close().await;
        self.db.take().unwrap().drop_database().await;
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls `condition` until it holds, failing the test after ten seconds.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
