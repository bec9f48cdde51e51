//! JSM deployment gating end to end, on any GitLab: a blocked deployment to a gated tier waits for a
//! change request, and the decision (Connect callback or gating-status poll) is carried out in GitLab
//! once. On both databases and in both Jira connection modes.

use std::sync::Arc;

use gfj_sim::gitlab::Plan;
use gfj_sim::gitlab::ci::JobSpec;
use gfj_store::testing::TestDatabase;
use gfj_store::{Clock, ManualClock, test_on_both_databases};
use gfj_sync::{Runner, RunnerConfig};
use gitlab_for_jira::commands::jsm::{self, SetRequest, Target};
use gitlab_for_jira::commands::link::{self, HookMode, LinkRequest};
use gitlab_for_jira::commands::{serve, status};
use serde_json::Value;

use crate::helpers::{TestApp, World, now_ms};

const APPROVER_TOKEN: &str = "glpat-jsm-approver";

/// A Premium group with one project whose production environment needs one approval from the
/// `jsm-bot` service account, linked to the Jira site, production gated with the bot's token.
struct Gated {
    app: TestApp,
    w: World,
    p: i64,
    approver: i64,
}

async fn gated(db: TestDatabase, oauth: bool) -> Gated {
    let app = TestApp::start_with(db, false).await;
    let site = if oauth {
        app.add_oauth_site().await;
        app.jira.base_url.clone()
    } else {
        app.install().await;
        app.jira.client_key().to_owned()
    };
    let w = app.world(Plan::Premium, 40, 1);
    let p = w.projects[0];
    let approver = app.gitlab.add_user("jsm-bot", APPROVER_TOKEN);
    app.gitlab.add_member(w.group, approver, 30);
    app.gitlab.add_environment(p, "production", "production");
    app.gitlab.add_environment(p, "staging", "staging");
    app.gitlab
        .protect_environment(p, "production", &[approver], 1);
    app.gitlab.protect_environment(p, "staging", &[approver], 1);
    let req = LinkRequest {
        site,
        group: "acme".into(),
        gitlab_url: app.gitlab.base_url.clone(),
        gitlab_token: w.token.clone(),
        gitlab_connection: None,
        hook_mode: HookMode::Project,
    };
    link::link(&app.settings, &app.store, req, now_ms())
        .await
        .unwrap();
    app.backfilled().await;
    let gating = SetRequest {
        target: Target::Project("acme/p0".into()),
        gating_tiers: Some("production".into()),
        gating_token: Some(APPROVER_TOKEN.into()),
        ..SetRequest::default()
    };
    jsm::set(&app.settings, &app.store, &gating, now_ms())
        .await
        .unwrap();
    Gated {
        app,
        w,
        p,
        approver,
    }
}

impl Gated {
    /// Pushes `message` and runs a pipeline deploying it to `environment`, then lets the service
    /// handle what GitLab delivered. Returns the deployment's id and its job's id.
    async fn deploy(&self, message: &str, environment: &str) -> (i64, i64) {
        self.app
            .gitlab
            .push(self.p, "main", &[message], self.w.user)
            .await;
        let pipeline = self
            .app
            .gitlab
            .run_pipeline(
                self.p,
                "main",
                &[JobSpec::deploy("deploy", environment, environment, false)],
            )
            .await;
        self.app.run_queue_once_through().await;
        let job = pipeline.job_ids[0];
        let deployment = self
            .app
            .gitlab
            .deployments_of(self.p)
            .into_iter()
            .map(|d| d.0)
            .max()
            .unwrap();
        (deployment, job)
    }

    /// The periodic gating check, run `after_ms` from now (past a poll's due time), with its jobs.
    async fn gating_check(&self, after_ms: i64) {
        let clock = ManualClock::starting_at(now_ms() + after_ms);
        let time: Arc<dyn Clock> = Arc::new(clock.clone());
        gfj_sync::gating::schedule_gating_checks(&self.app.store, clock.now_ms(), 30_000)
            .await
            .unwrap();
        let runner = Runner::new(
            self.app.store.clone(),
            time.clone(),
            serve::handlers(&self.app.settings, &self.app.store, time),
            RunnerConfig::default(),
        );
        while runner.run_due().await > 0 {}
    }

    /// JSM decides the change request; a Connect site hears it by callback, an OAuth one by the poll.
    async fn decide(&self, change_request: &str, status: &str, oauth: bool) {
        self.app
            .jira
            .decide_change_request(change_request, status)
            .await;
        if oauth {
            self.gating_check(31_000).await;
        }
        self.app.run_queue_once_through().await;
    }

    /// What GitLab recorded of approvals and plays, as (what, user).
    fn decisions(&self) -> Vec<(String, i64)> {
        self.app
            .gitlab
            .decisions()
            .into_iter()
            .map(|(what, _, user)| (what, user))
            .collect()
    }

    fn jira_deployment(&self, key: &str) -> Value {
        let d = self.app.jira.issue(key).deployments;
        assert_eq!(d.len(), 1, "{key}: {d:?}");
        d[0].clone()
    }

    /// Runs the job GitLab started, to success, and lets the service tell Jira.
    async fn job_succeeds(&self, job: i64) {
        self.app.gitlab.set_job_status(self.p, job, "running").await;
        self.app.gitlab.set_job_status(self.p, job, "success").await;
        self.app.run_queue_once_through().await;
    }
}

fn has_gating_command(d: &Value) -> bool {
    d["commands"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["command"] == "initiate_deployment_gating")
    })
}

async fn approved_and_played(db: TestDatabase, oauth: bool) {
    let g = gated(db, oauth).await;
    let (deployment, job) = g
        .deploy("GATE-1 release the login form", "production")
        .await;

    // Blocked, to a gated tier: pending in Jira with the command; JSM opened a change request.
    let d = g.jira_deployment("GATE-1");
    assert_eq!(d["state"], "pending");
    assert!(has_gating_command(&d), "{d}");
    let requests = g.app.jira.change_requests();
    assert_eq!(requests.len(), 1);
    let change_request = requests[0].0.clone();
    let text = status::status(&g.app.store, now_ms(), false, false)
        .await
        .unwrap();
    assert!(text.contains("open deployment gates: 1"), "{text}");

    g.decide(&change_request, "allowed", oauth).await;
    assert_eq!(
        g.decisions(),
        [
            ("approved".to_owned(), g.approver),
            ("play".to_owned(), g.approver)
        ],
        "approved once, then the manual job started"
    );
    let approvals = g.app.gitlab.approvals_of(deployment);
    assert!(
        approvals[0]
            .2
            .as_deref()
            .unwrap_or("")
            .contains(&change_request),
        "{approvals:?}"
    );

    // Jira follows what happened next.
    g.job_succeeds(job).await;
    let d = g.jira_deployment("GATE-1");
    assert_eq!(d["state"], "successful");
    assert!(!has_gating_command(&d), "{d}");

    // The trail: status has no open gate, and the change request shows its gate.
    let text = status::status(&g.app.store, now_ms(), false, false)
        .await
        .unwrap();
    assert!(text.contains("open deployment gates: 0"), "{text}");
    let trail = status::issue(&g.app.store, &change_request, 30, false)
        .await
        .unwrap();
    assert!(
        trail.contains("allowed: approved in GitLab and job"),
        "{trail}"
    );
    g.app.stop().await;
}

async fn a_gated_deployment_is_approved_and_played_connect(db: TestDatabase) {
    approved_and_played(db, false).await;
}

async fn a_gated_deployment_is_approved_and_played_oauth(db: TestDatabase) {
    approved_and_played(db, true).await;
}

async fn prevented_and_invalid_gates_are_rejected_with_a_reason(db: TestDatabase, oauth: bool) {
    let g = gated(db, oauth).await;
    let (first, job) = g.deploy("GATE-2 risky change", "production").await;
    g.decide("CHG-1", "prevented", oauth).await;
    let approvals = g.app.gitlab.approvals_of(first);
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].1, "rejected");
    let comment = approvals[0].2.clone().unwrap_or_default();
    assert!(
        comment.contains("CHG-1") && comment.contains("prevents"),
        "{comment}"
    );
    // GitLab failed the job; Jira hears it.
    assert_eq!(
        g.app
            .gitlab
            .jobs_of(g.p)
            .iter()
            .find(|j| j.0 == job)
            .unwrap()
            .3,
        "failed"
    );
    g.app.run_queue_once_through().await;
    assert_eq!(g.jira_deployment("GATE-2")["state"], "failed");

    let (second, _) = g.deploy("GATE-3 another one", "production").await;
    g.decide("CHG-2", "invalid", oauth).await;
    let approvals = g.app.gitlab.approvals_of(second);
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].1, "rejected");
    let comment = approvals[0].2.clone().unwrap_or_default();
    assert!(comment.contains("could not evaluate"), "{comment}");
    g.app.stop().await;
}

async fn prevented_and_invalid_gates_are_rejected_connect(db: TestDatabase) {
    prevented_and_invalid_gates_are_rejected_with_a_reason(db, false).await;
}

async fn prevented_and_invalid_gates_are_rejected_oauth(db: TestDatabase) {
    prevented_and_invalid_gates_are_rejected_with_a_reason(db, true).await;
}

/// Jira delivering the callback twice, and the poll finding the same decision, approve once.
async fn duplicate_callbacks_and_a_poll_approve_once(db: TestDatabase) {
    let g = gated(db, false).await;
    g.deploy("GATE-4 ship", "production").await;
    g.app.jira.decide_change_request("CHG-1", "allowed").await;
    g.app.jira.send_gating_callback("CHG-1").await;
    g.gating_check(31_000).await;
    g.app.jira.send_gating_callback("CHG-1").await;
    g.app.run_queue_once_through().await;
    assert_eq!(
        g.app
            .jira
            .gating_callbacks()
            .iter()
            .filter(|c| c.1 == 204)
            .count(),
        3
    );
    assert_eq!(
        g.decisions(),
        [
            ("approved".to_owned(), g.approver),
            ("play".to_owned(), g.approver)
        ]
    );
    g.app.stop().await;
}

/// GitLab recorded the approval but the worker never heard (it died, or the answer was lost): the
/// worker that takes the job over approves nothing more and plays the job once.
async fn a_worker_lost_after_approving_approves_once_after_restart(db: TestDatabase) {
    let g = gated(db, false).await;
    let (deployment, _) = g.deploy("GATE-5 ship", "production").await;
    g.app.gitlab.fail_next_on("/approval", 502, true);
    g.app.jira.decide_change_request("CHG-1", "allowed").await;
    g.app.run_queue_once_through().await;
    assert_eq!(g.decisions(), [("approved".to_owned(), g.approver)]);
    assert_eq!(g.app.gitlab.approvals_of(deployment).len(), 1);
    // The retry, after the backoff, as a restarted worker would run it.
    g.gating_check(600_000).await;
    assert_eq!(
        g.decisions(),
        [
            ("approved".to_owned(), g.approver),
            ("play".to_owned(), g.approver)
        ]
    );
    let approval_posts: Vec<u16> = g
        .app
        .gitlab
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/approval"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        approval_posts,
        [502],
        "the approval GitLab had recorded is not posted again"
    );
    g.app.stop().await;
}

/// A blocked deployment to a tier that is not gated gets no command and no gate, and the gating
/// check leaves it alone.
async fn a_tier_not_gated_gets_no_command(db: TestDatabase, oauth: bool) {
    let g = gated(db, oauth).await;
    g.deploy("GATE-6 stage it", "staging").await;
    let d = g.jira_deployment("GATE-6");
    assert_eq!(d["state"], "pending");
    assert!(!has_gating_command(&d), "{d}");
    assert!(g.app.jira.change_requests().is_empty());
    assert!(g.app.store.gates(None).await.unwrap().is_empty());
    let sent = g.app.jira.requests().len();
    g.gating_check(31_000).await;
    assert_eq!(g.app.jira.requests().len(), sent, "nothing resent");
    let shown = jsm::show(&g.app.store, false).await.unwrap();
    assert!(
        shown.contains("in force for acme/p0: gating production (from acme/p0), manual jobs played after approval"),
        "{shown}"
    );
    assert!(shown.contains("gating token set"), "{shown}");
    assert!(!shown.contains(APPROVER_TOKEN), "the token never shows");
    g.app.stop().await;
}

async fn a_tier_not_gated_gets_no_command_connect(db: TestDatabase) {
    a_tier_not_gated_gets_no_command(db, false).await;
}

async fn a_tier_not_gated_gets_no_command_oauth(db: TestDatabase) {
    a_tier_not_gated_gets_no_command(db, true).await;
}

/// Gating settings GitLab could not honour are refused at `jsm set`, with what to do.
async fn gating_settings_are_checked_against_gitlab(db: TestDatabase) {
    let g = gated(db, false).await;
    let set = |tiers: Option<&str>, token: Option<&str>| SetRequest {
        target: Target::Project("acme/p0".into()),
        gating_tiers: tiers.map(str::to_owned),
        gating_token: token.map(str::to_owned),
        ..SetRequest::default()
    };
    let refused = |req: SetRequest| {
        let app = &g.app;
        async move {
            jsm::set(&app.settings, &app.store, &req, now_ms())
                .await
                .unwrap_err()
                .to_string()
        }
    };
    assert!(
        refused(set(Some("prod"), None))
            .await
            .contains("only available environment names")
    );
    assert!(
        refused(set(Some(""), Some(APPROVER_TOKEN)))
            .await
            .contains("environment names should be provided")
    );
    assert!(
        refused(set(None, Some("glpat-nobody")))
            .await
            .contains("does not accept the gating token")
    );
    // A member who is not an approver of production.
    let other = g.app.gitlab.add_user("other-bot", "glpat-other-bot");
    g.app.gitlab.add_member(g.w.group, other, 30);
    let err = refused(set(None, Some("glpat-other-bot"))).await;
    assert!(
        err.contains("cannot approve deployments to production"),
        "{err}"
    );
    // An approver who may not run the environment's jobs, while approved jobs are to be played.
    g.app
        .gitlab
        .restrict_deploys_to_maintainers(g.p, "production");
    let err = refused(set(None, Some(APPROVER_TOKEN))).await;
    assert!(
        err.contains("may approve but not start deployments to production"),
        "{err}"
    );
    let no_play = SetRequest {
        play_after_approval: Some(false),
        ..set(None, Some(APPROVER_TOKEN))
    };
    jsm::set(&g.app.settings, &g.app.store, &no_play, now_ms())
        .await
        .unwrap();
    // Gating off needs no token check.
    jsm::set(
        &g.app.settings,
        &g.app.store,
        &set(Some(""), None),
        now_ms(),
    )
    .await
    .unwrap();
    g.app.stop().await;
}

/// On GitLab Free, service IDs work and gating is refused: deployment approvals are Premium.
async fn gating_is_refused_on_gitlab_free(db: TestDatabase) {
    let app = TestApp::start_with(db, false).await;
    let w = app.linked_world(1).await;
    let approver = app.gitlab.add_user("jsm-bot", APPROVER_TOKEN);
    app.gitlab.add_member(w.group, approver, 30);
    let req = SetRequest {
        target: Target::Project("acme/p0".into()),
        gating_tiers: Some("production".into()),
        gating_token: Some(APPROVER_TOKEN.into()),
        ..SetRequest::default()
    };
    let err = jsm::set(&app.settings, &app.store, &req, now_ms())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("need GitLab Premium"), "{err}");
    let ids = SetRequest {
        target: Target::Project("acme/p0".into()),
        service_ids: Some("b:AX=".into()),
        ..SetRequest::default()
    };
    jsm::set(&app.settings, &app.store, &ids, now_ms())
        .await
        .unwrap();
    app.stop().await;
}

/// A callback without the site's token, with a token bound to another request, or with a body that
/// claims a decision JSM did not make, decides nothing.
async fn forged_and_unsigned_callbacks_decide_nothing(db: TestDatabase) {
    let g = gated(db, false).await;
    g.deploy("GATE-7 ship", "production").await;
    let url = format!("{}/jira/gating", g.app.base_url);
    let http = reqwest::Client::new();
    let report = serde_json::json!({"gatingStatus": "allowed", "pipelineId": "x", "environmentId": "y", "deploymentSequenceNumber": 1, "details": []});
    let unsigned = http.post(&url).json(&report).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    // A genuine token of the site, but for the configuration page's URL: its qsh does not match.
    let page = g
        .app
        .jira
        .page_url(&g.app.base_url, "/jira/config", "admin-1");
    let token = page.split("jwt=").nth(1).unwrap().to_owned();
    let misbound = http
        .post(&url)
        .header("Authorization", format!("JWT {token}"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(misbound.status(), 401);
    // A valid token replayed with a body claiming `allowed` while JSM still waits.
    g.app
        .jira
        .send_forged_gating_callback("CHG-1", "allowed")
        .await;
    assert_eq!(g.app.jira.gating_callbacks().last().unwrap().1, 204);
    g.app.run_queue_once_through().await;
    let gates = g.app.store.gates(None).await.unwrap();
    assert_eq!(
        gates[0].state,
        gfj_core::jsm::GateState::Open,
        "nothing decided"
    );
    assert!(g.decisions().is_empty());
    // JSM's real decision still goes through.
    g.decide("CHG-1", "prevented", false).await;
    assert_eq!(g.decisions(), [("rejected".to_owned(), g.approver)]);
    g.app.stop().await;
}

/// A gate JSM does not decide within GFJ_GATING_TIMEOUT_SECS is rejected with a comment saying so.
async fn an_undecided_gate_is_rejected_after_its_time(db: TestDatabase) {
    let g = gated(db, true).await;
    let (deployment, _) = g.deploy("GATE-8 ship", "production").await;
    g.gating_check(60_000).await;
    assert!(g.decisions().is_empty(), "JSM still waits");
    g.gating_check(86_400_000 + 1_000).await;
    g.app.run_queue_once_through().await;
    let approvals = g.app.gitlab.approvals_of(deployment);
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].1, "rejected");
    assert!(
        approvals[0]
            .2
            .as_deref()
            .unwrap_or("")
            .contains("within 24 hour(s)"),
        "{approvals:?}"
    );
    g.app.stop().await;
}

/// Someone approves in GitLab before JSM decides: the gate records that, and the service neither
/// approves nor plays.
async fn a_person_deciding_first_in_gitlab_is_respected(db: TestDatabase) {
    let g = gated(db, false).await;
    let (deployment, _) = g.deploy("GATE-10 ship", "production").await;
    let person = g.app.gitlab.add_user("alice", "glpat-alice");
    g.app.gitlab.add_member(g.w.group, person, 40);
    g.app
        .gitlab
        .protect_environment(g.p, "production", &[g.approver, person], 1);
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/{}/deployments/{deployment}/approval",
            g.app.gitlab.base_url, g.p
        ))
        .header("PRIVATE-TOKEN", "glpat-alice")
        .json(&serde_json::json!({"status": "approved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    g.decide("CHG-1", "allowed", false).await;
    assert_eq!(g.decisions(), [("approved".to_owned(), person)]);
    let gates = g.app.store.gates(None).await.unwrap();
    assert!(
        gates[0]
            .outcome
            .as_deref()
            .unwrap_or("")
            .contains("someone decided in GitLab first"),
        "{:?}",
        gates[0].outcome
    );
    g.app.stop().await;
}

/// An environment that needs two approvals: the service's approval is one; once the other approver
/// approves in GitLab, the next gating check plays the job.
async fn a_second_approver_unblocks_and_the_job_is_then_played(db: TestDatabase) {
    let g = gated(db, false).await;
    let person = g.app.gitlab.add_user("alice", "glpat-alice");
    g.app.gitlab.add_member(g.w.group, person, 40);
    g.app
        .gitlab
        .protect_environment(g.p, "production", &[g.approver, person], 2);
    let (deployment, _) = g.deploy("GATE-11 ship", "production").await;
    g.decide("CHG-1", "allowed", false).await;
    assert_eq!(g.decisions(), [("approved".to_owned(), g.approver)]);
    assert_eq!(
        g.app.store.gates(None).await.unwrap()[0].state,
        gfj_core::jsm::GateState::Decided,
        "waiting for the other approver"
    );
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/{}/deployments/{deployment}/approval",
            g.app.gitlab.base_url, g.p
        ))
        .header("PRIVATE-TOKEN", "glpat-alice")
        .json(&serde_json::json!({"status": "approved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    g.gating_check(31_000).await;
    assert_eq!(
        g.decisions(),
        [
            ("approved".to_owned(), g.approver),
            ("approved".to_owned(), person),
            ("play".to_owned(), g.approver)
        ]
    );
    g.app.stop().await;
}

/// The Job Hook of a waiting deployment was lost (the hook was disabled), but newer GitLab reports a
/// person's approval as a Deployment Hook: that opens the gate while the deployment still waits.
async fn an_approval_event_opens_a_gate_the_job_hook_missed(db: TestDatabase) {
    let g = gated(db, false).await;
    let person = g.app.gitlab.add_user("alice", "glpat-alice");
    g.app.gitlab.add_member(g.w.group, person, 40);
    g.app
        .gitlab
        .protect_environment(g.p, "production", &[g.approver, person], 2);
    g.app.gitlab.set_approval_events(true);
    let hook = g
        .app
        .store
        .subscription_hooks(g.app.store.subscriptions().await.unwrap()[0].id)
        .await
        .unwrap()[0]
        .hook_id;
    g.app.gitlab.disable_hook(hook);
    let (deployment, _) = g.deploy("GATE-12 ship", "production").await;
    assert!(
        g.app.jira.issue("GATE-12").deployments.is_empty(),
        "GitLab delivered nothing"
    );
    g.app
        .gitlab
        .advance_clock(std::time::Duration::from_secs(61));
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/{}/deployments/{deployment}/approval",
            g.app.gitlab.base_url, g.p
        ))
        .header("PRIVATE-TOKEN", "glpat-alice")
        .json(&serde_json::json!({"status": "approved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    g.app.run_queue_once_through().await;
    let d = g.jira_deployment("GATE-12");
    assert_eq!(d["state"], "pending");
    assert!(has_gating_command(&d), "{d}");
    assert_eq!(g.app.jira.change_requests().len(), 1);
    assert_eq!(g.app.store.gates(None).await.unwrap().len(), 1);
    g.app.stop().await;
}

test_on_both_databases!(
    an_approval_event_opens_a_gate_the_job_hook_missed,
    a_second_approver_unblocks_and_the_job_is_then_played,
    a_gated_deployment_is_approved_and_played_connect,
    a_gated_deployment_is_approved_and_played_oauth,
    prevented_and_invalid_gates_are_rejected_connect,
    prevented_and_invalid_gates_are_rejected_oauth,
    duplicate_callbacks_and_a_poll_approve_once,
    a_worker_lost_after_approving_approves_once_after_restart,
    a_tier_not_gated_gets_no_command_connect,
    a_tier_not_gated_gets_no_command_oauth,
    gating_settings_are_checked_against_gitlab,
    gating_is_refused_on_gitlab_free,
    forged_and_unsigned_callbacks_decide_nothing,
    an_undecided_gate_is_rejected_after_its_time,
    a_person_deciding_first_in_gitlab_is_respected,
);
