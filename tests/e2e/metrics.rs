//! `GET /metrics`: each family moves when what it counts happens (the service's own recorder; every
//! test runs in its own process under nextest, so counts start at zero), and `GFJ_METRICS_LISTEN`
//! moves the route to its own address.

use gfj_core::metric_names as names;
use gfj_sim::jira::{Fault, JiraSimConfig};
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;

use crate::helpers::{TestApp, eventually};

/// The samples of one scrape.
struct Scrape(String);

impl Scrape {
    async fn of(url: &str) -> Self {
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        Self(resp.text().await.unwrap())
    }

    /// The sum of `name`'s samples carrying every label of `labels` (0 when there is none).
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().unwrap())
            })
            .sum()
    }

    fn has_help(&self, name: &str) -> bool {
        self.0.contains(&format!("# HELP {name} "))
    }
}

async fn every_family_moves_with_what_it_counts(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let url = format!("{}/metrics", app.base_url);
    let before = Scrape::of(&url).await;
    assert_eq!(before.sum(names::WEBHOOKS_RECEIVED, &[]), 0.0);
    assert_eq!(before.sum(names::GITLAB_REQUESTS, &[]), 0.0);

    let w = app.linked_world(1).await;
    let p = w.projects[0];
    app.gitlab
        .push(p, "main", &["OPS-1 tune the pool"], w.user)
        .await;
    // One commit naming more keys than Jira takes: the rest are dropped, and counted.
    let many: Vec<String> = (1..=501).map(|n| format!("KEY-{n}")).collect();
    app.gitlab.push(p, "main", &[&many.join(" ")], w.user).await;
    app.drained().await;
    let unknown = reqwest::Client::new()
        .post(format!("{}/gitlab/webhook", app.base_url))
        .header("X-Gitlab-Token", "not-a-token")
        .header("X-Gitlab-Event", "Push Hook")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);

    let after = Scrape::of(&url).await;
    let push = |outcome| [("event", "push"), ("outcome", outcome)];
    assert_eq!(after.sum(names::WEBHOOKS_RECEIVED, &push("queued")), 2.0);
    assert_eq!(
        after.sum(names::WEBHOOKS_RECEIVED, &push("unauthorized")),
        1.0
    );
    assert_eq!(
        after.sum(&format!("{}_count", names::WEBHOOK_INTAKE_SECONDS), &[]),
        3.0
    );
    assert!(
        after.sum(
            names::JOBS_FINISHED,
            &[("kind", "gitlab_event"), ("outcome", "done")]
        ) >= 2.0
    );
    assert!(after.sum(names::JOBS_FINISHED, &[("kind", "backfill_page")]) >= 1.0);
    assert!(
        after.sum(
            names::JIRA_REQUESTS,
            &[("api", "devinfo"), ("status", "202")]
        ) >= 2.0,
        "{}",
        after.0
    );
    assert!(
        after.sum(
            &format!("{}_count", names::JIRA_REQUEST_SECONDS),
            &[("api", "devinfo")]
        ) >= 2.0
    );
    assert!(
        after.sum(
            names::GITLAB_REQUESTS,
            &[("endpoint", "projects/hooks"), ("status", "201")]
        ) >= 1.0,
        "linking registered a project hook:\n{}",
        after.0
    );
    assert_eq!(
        after.sum(
            names::EVENTS_DROPPED,
            &[("reason", "issue_keys_over_limit")]
        ),
        1.0
    );
    // The gauges describe the database: the backfill is done, the hook healthy, the queue empty.
    assert_eq!(
        after.sum(names::BACKFILL_TASKS, &[("state", "pending")]),
        0.0
    );
    assert!(after.sum(names::BACKFILL_TASKS, &[("state", "done")]) >= 6.0);
    assert_eq!(after.sum(names::HOOKS, &[("state", "ok")]), 1.0);
    assert_eq!(after.sum(names::QUEUE_JOBS, &[("state", "ready")]), 0.0);
    assert_eq!(after.sum(names::SITES_PAUSED, &[]), 0.0);
    assert_eq!(after.sum(names::GATES_OPEN, &[]), 0.0);
    for family in [
        names::WEBHOOKS_RECEIVED,
        names::JOBS_FINISHED,
        names::JIRA_REQUESTS,
        names::GITLAB_REQUESTS,
        names::QUEUE_JOBS,
        names::BACKFILL_TASKS,
        names::SITES_PAUSED,
    ] {
        assert!(after.has_help(family), "{family} has no help line");
    }

    // Jira answers 429 for an hour: the site is paused, and the job waits in the queue.
    app.jira.inject([Fault::RateLimited {
        retry_after_secs: 3600,
    }]);
    app.gitlab
        .push(p, "main", &["OPS-2 raise the limit"], w.user)
        .await;
    eventually("the site is paused", || async {
        Scrape::of(&url).await.sum(names::SITES_PAUSED, &[]) == 1.0
    })
    .await;
    let paused = Scrape::of(&url).await;
    assert_eq!(
        paused.sum(
            names::JIRA_REQUESTS,
            &[("api", "devinfo"), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(
        paused.sum(
            names::QUEUE_JOBS,
            &[("kind", "gitlab_event"), ("state", "scheduled")]
        ),
        1.0
    );
    assert!(
        paused.sum(
            names::JOBS_FINISHED,
            &[("kind", "gitlab_event"), ("outcome", "postponed")]
        ) >= 1.0
    );
    app.stop().await;
}

async fn a_separate_metrics_address_takes_the_route_off_the_main_one(db: TestDatabase) {
    let address = format!("127.0.0.1:{}", gfj_sim::free_port());
    let app = TestApp::start_with_settings(
        db,
        true,
        JiraSimConfig::default(),
        &[("GFJ_METRICS_LISTEN", &address)],
    )
    .await;
    let main = reqwest::get(format!("{}/metrics", app.base_url))
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
    let separate = Scrape::of(&format!("http://{address}/metrics")).await;
    assert!(separate.has_help(names::SITES_PAUSED), "{}", separate.0);
    app.stop().await;
}

test_on_both_databases!(
    every_family_moves_with_what_it_counts,
    a_separate_metrics_address_takes_the_route_off_the_main_one,
);
