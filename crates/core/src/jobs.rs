//! The durable queue's jobs: the contract between whoever queues work (intake, linking, the periodic
//! checks, backfill) and the worker that runs it. [`Job`] holds every kind; the queue stores its tag in
//! `jobs.kind` and the variant's fields in `jobs.payload`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Attempts a job gets before it is dead (kept, shown by `status` and the admin page, which can run it
/// again).
pub const DEFAULT_MAX_ATTEMPTS: i64 = 20;

/// Every kind of job. The tag names are stored in `jobs.kind`: renaming one strands the jobs queued
/// under the old name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum Job {
    GitlabEvent(GitlabEvent),
    HookCheck(HookCheck),
    GitlabTeardown(GitlabTeardown),
    GitlabSignOut(GitlabSignOut),
    JiraCleanup(JiraCleanup),
    Reconcile(Reconcile),
    BackfillPlan(BackfillPlan),
    BackfillPage(BackfillPage),
    BackfillFlush(BackfillFlush),
    GatingCheck(GatingCheck),
    ApplyGate(ApplyGate),
}

/// How one job is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queueing {
    /// Jobs with the same key are queued once (a redelivery, a periodic check already queued).
    pub dedup_key: Option<String>,
    /// Jobs with the same key update the same thing: an older one defers to a newer one.
    pub coalesce_key: Option<String>,
    /// What "newer" means among them: the delivery's sequence number. Replicas queue in their own
    /// batches, so a later delivery can get the lower job id; without it, the id decides.
    pub coalesce_seq: Option<i64>,
    pub max_attempts: i64,
}

impl Job {
    /// Every kind's stored name, as [`Job::encode`] writes it (`/metrics` shows each, at zero too).
    pub const KINDS: [&'static str; 11] = [
        "gitlab_event",
        "hook_check",
        "gitlab_teardown",
        "gitlab_sign_out",
        "jira_cleanup",
        "reconcile",
        "backfill_plan",
        "backfill_page",
        "backfill_flush",
        "gating_check",
        "apply_gate",
    ];

    /// The job as the queue stores it: its kind (the serde tag, which
    /// `jobs_keep_the_kinds_and_payloads_already_queued` holds to these names) and its payload.
    pub fn encode(&self) -> (&'static str, String) {
        let (kind, payload) = match self {
            Job::GitlabEvent(j) => ("gitlab_event", serde_json::to_string(j)),
            Job::HookCheck(j) => ("hook_check", serde_json::to_string(j)),
            Job::GitlabTeardown(j) => ("gitlab_teardown", serde_json::to_string(j)),
            Job::GitlabSignOut(j) => ("gitlab_sign_out", serde_json::to_string(j)),
            Job::JiraCleanup(j) => ("jira_cleanup", serde_json::to_string(j)),
            Job::Reconcile(j) => ("reconcile", serde_json::to_string(j)),
            Job::BackfillPlan(j) => ("backfill_plan", serde_json::to_string(j)),
            Job::BackfillPage(j) => ("backfill_page", serde_json::to_string(j)),
            Job::BackfillFlush(j) => ("backfill_flush", serde_json::to_string(j)),
            Job::GatingCheck(j) => ("gating_check", serde_json::to_string(j)),
            Job::ApplyGate(j) => ("apply_gate", serde_json::to_string(j)),
        };
        (kind, payload.expect("job payloads serialise"))
    }

    /// The subscription the job works for, where its payload names one (for the job's log span).
    pub fn subscription_id(&self) -> Option<i64> {
        match self {
            Job::GitlabEvent(j) => Some(j.subscription_id),
            Job::HookCheck(j) => Some(j.subscription_id),
            Job::Reconcile(j) => Some(j.subscription_id),
            Job::BackfillPlan(j) => Some(j.subscription_id),
            Job::BackfillPage(j) => Some(j.subscription_id),
            Job::BackfillFlush(j) => Some(j.subscription_id),
            Job::GatingCheck(j) => Some(j.subscription_id),
            Job::JiraCleanup(JiraCleanup {
                scope: CleanupScope::Subscription { subscription_id },
                ..
            }) => Some(*subscription_id),
            Job::JiraCleanup(_)
            | Job::ApplyGate(_)
            | Job::GitlabTeardown(_)
            | Job::GitlabSignOut(_) => None,
        }
    }

    /// The job the queue stored as `kind` and `payload`.
    pub fn decode(kind: &str, payload: &str) -> Result<Self, serde_json::Error> {
        let kind = serde_json::to_string(kind)?;
        // The tag first, so that the payload is read straight into its variant (no buffering, which a
        // raw JSON body could not go through).
        serde_json::from_str(&format!(r#"{{"kind":{kind},"payload":{payload}}}"#))
    }

    /// How each kind is queued, all in one place.
    pub fn queueing(&self) -> Queueing {
        let coalesce_seq = match self {
            Job::GitlabEvent(e) if e.entity_key.is_some() => Some(e.seq),
            _ => None,
        };
        let (dedup_key, coalesce_key) = match self {
            Job::GitlabEvent(e) => (
                e.delivery_id
                    .as_ref()
                    .map(|id| id.dedup_key(e.subscription_id)),
                e.entity_key
                    .as_ref()
                    .map(|k| format!("{}:{k}", e.subscription_id)),
            ),
            Job::HookCheck(c) => (
                Some(format!("hook_check:{}:{}", c.subscription_id, c.interval)),
                None,
            ),
            Job::Reconcile(r) => (
                Some(format!("reconcile:{}:{}", r.subscription_id, r.interval)),
                None,
            ),
            Job::BackfillPlan(p) => (Some(format!("backfill_plan:{}", p.subscription_id)), None),
            Job::BackfillPage(p) => (
                Some(format!(
                    "backfill:{}:{}:{}:{}:{}",
                    p.subscription_id,
                    p.project_id,
                    p.entity.as_str(),
                    p.run,
                    p.page
                )),
                None,
            ),
            // Every page queues one; an older one finds the newest behind it and leaves the work to it,
            // so that a flush always runs after the last page was written.
            Job::BackfillFlush(f) => (None, Some(format!("backfill_flush:{}", f.subscription_id))),
            Job::GatingCheck(c) => (
                Some(format!("gating_check:{}:{}", c.subscription_id, c.interval)),
                None,
            ),
            // One at a time per gate: the callback and the poll may both decide it.
            Job::ApplyGate(a) => (Some(format!("apply_gate:{}", a.gate_id)), None),
            Job::GitlabTeardown(_) | Job::GitlabSignOut(_) | Job::JiraCleanup(_) => (None, None),
        };
        Queueing {
            dedup_key,
            coalesce_key,
            coalesce_seq,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// What identifies one GitLab delivery, for redeliveries to be queued once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryId {
    /// The Standard Webhooks `webhook-id`, covered by the signature.
    Signed(String),
    /// GitLab's `Idempotency-Key` (unsigned: a replay can change it).
    Unsigned(String),
}

impl DeliveryId {
    fn dedup_key(&self, subscription_id: i64) -> String {
        match self {
            DeliveryId::Signed(id) => format!("gitlab-signed:{subscription_id}:{id}"),
            DeliveryId::Unsigned(id) => format!("gitlab:{subscription_id}:{id}"),
        }
    }
}

/// A GitLab webhook delivery, as accepted by `POST /gitlab/webhook`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitlabEvent {
    pub subscription_id: i64,
    /// The `X-Gitlab-Event` header.
    pub event: String,
    /// `updateSequenceId` for everything this delivery sends: assigned on arrival, so a retried or late
    /// job never overwrites newer data in Jira.
    pub seq: i64,
    /// The delivery's body: verbatim, or shortened when large (`gitlab::shorten`).
    pub body: Box<RawValue>,
    /// The delivery's id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<DeliveryId>,
    /// The entity whose whole state the event carries (`WebhookEvent::entity_key`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_key: Option<String>,
}

/// A periodic check of one subscription's webhooks: restore what GitLab disabled or lost, hook projects
/// that joined the group (project-hook mode), and record the windows GitLab may not have reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HookCheck {
    pub subscription_id: i64,
    /// Which interval this check is for (time / interval): one check per subscription and interval.
    #[serde(default)]
    pub interval: i64,
}

/// The periodic look at a subscription's deployment gates: blocked deployments no webhook announced are
/// sent to Jira and gated, open gates whose decision is due are asked about (the only route for
/// OAuth-credentials sites), gates past their time are decided, and decided ones not yet applied are
/// applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatingCheck {
    pub subscription_id: i64,
    /// Which interval this check is for: one per subscription and interval.
    pub interval: i64,
}

/// Applying a gate's decision in GitLab: approve (and play the manual job) or reject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyGate {
    pub gate_id: i64,
}

/// Removing from GitLab the hooks of a subscription whose Jira site uninstalled the app (one job per
/// subscription, so a GitLab outage delays it without losing it), then signing out its GitLab sign-in
/// if nothing else uses it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitlabTeardown {
    pub teardown_id: i64,
}

/// Revoking a GitLab sign-in at GitLab and forgetting it, once no subscription, Jira user or pending
/// teardown uses it any more (its Jira site uninstalled the app).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GitlabSignOut {
    pub connection_id: i64,
}

/// Deleting from Jira what no longer belongs there: everything one subscription sent (after unlink), or
/// everything that came from one project (it left the linked group). Queued, so that a Jira outage
/// delays the deletion instead of losing it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JiraCleanup {
    /// The Jira site.
    pub client_key: String,
    pub scope: CleanupScope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupScope {
    Subscription { subscription_id: i64 },
    Project { project_id: i64 },
}

/// A periodic pass over one subscription's projects that reads from GitLab what changed since the last
/// pass (and over any recorded gap) and sends it: what no webhook reports (pushes of more than 3 refs,
/// deployments waiting for approval, anything missed while a hook was disabled or the service down).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reconcile {
    pub subscription_id: i64,
    /// Which interval this pass is for (time / interval): one pass per subscription and interval.
    #[serde(default)]
    pub interval: i64,
}

/// Plans the backfill of a subscription: lists its projects and records one task per project and kind of
/// history (queued by `link`; reconciliation plans projects that joined the group later).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillPlan {
    pub subscription_id: i64,
}

/// One page of one project's history of one kind. The task's cursor lives in the store, not here: the
/// job names the page it expects, and a job whose page was already done (a replay after SIGKILL) does
/// nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillPage {
    pub subscription_id: i64,
    pub project_id: i64,
    pub entity: BackfillEntity,
    /// The task's run (its start time): a resync starts a new run, and jobs of the old one stop.
    pub run: i64,
    pub page: i64,
}

/// Sends a subscription's backfill outbox to Jira: the development information pages have read, packed
/// into as few requests as Jira's limits allow. One is queued at a time per subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillFlush {
    pub subscription_id: i64,
}

/// The kinds of history a backfill reads, one task each per project, in the order they are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillEntity {
    MergeRequests,
    Branches,
    Commits,
    Pipelines,
    Deployments,
    FeatureFlags,
}

impl BackfillEntity {
    pub const ALL: [BackfillEntity; 6] = [
        BackfillEntity::MergeRequests,
        BackfillEntity::Branches,
        BackfillEntity::Commits,
        BackfillEntity::Pipelines,
        BackfillEntity::Deployments,
        BackfillEntity::FeatureFlags,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackfillEntity::MergeRequests => "merge_requests",
            BackfillEntity::Branches => "branches",
            BackfillEntity::Commits => "commits",
            BackfillEntity::Pipelines => "pipelines",
            BackfillEntity::Deployments => "deployments",
            BackfillEntity::FeatureFlags => "feature_flags",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Its place in [`Self::ALL`].
    pub fn rank(self) -> i64 {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_keep_the_kinds_and_payloads_already_queued() {
        // Names and payloads as earlier versions queued them: an upgrade must still run them.
        let cases = [
            (
                "gitlab_event",
                r#"{"subscription_id":1,"event":"Push Hook","seq":5,"body":{"a":[1]}}"#,
            ),
            ("hook_check", r#"{"subscription_id":1}"#),
            ("gitlab_teardown", r#"{"teardown_id":3}"#),
            ("gitlab_sign_out", r#"{"connection_id":4}"#),
            (
                "jira_cleanup",
                r#"{"client_key":"k","scope":{"project":{"project_id":9}}}"#,
            ),
            ("reconcile", r#"{"subscription_id":1}"#),
            ("backfill_plan", r#"{"subscription_id":1}"#),
            (
                "backfill_page",
                r#"{"subscription_id":1,"project_id":2,"entity":"commits","run":7,"page":3}"#,
            ),
            ("backfill_flush", r#"{"subscription_id":1}"#),
            ("gating_check", r#"{"subscription_id":1,"interval":3}"#),
            ("apply_gate", r#"{"gate_id":1}"#),
        ];
        assert_eq!(cases.len(), Job::KINDS.len(), "a case per kind");
        for (kind, payload) in cases {
            let job = Job::decode(kind, payload).unwrap_or_else(|e| panic!("{kind}: {e}"));
            let (again, _) = job.encode();
            assert_eq!(again, kind);
            assert!(Job::KINDS.contains(&kind), "{kind} is not in Job::KINDS");
        }
        let Job::GitlabEvent(event) = Job::decode("gitlab_event", cases[0].1).unwrap() else {
            panic!("a gitlab event");
        };
        assert_eq!(
            event.body.get(),
            r#"{"a":[1]}"#,
            "the body is kept verbatim"
        );
        assert!(Job::decode("no_such_kind", "{}").is_err());
        assert!(Job::decode("hook_check", r#"{"teardown_id":3}"#).is_err());
    }

    #[test]
    fn each_kind_is_queued_with_its_keys() {
        let event = |delivery_id, entity_key: Option<&str>| {
            Job::GitlabEvent(GitlabEvent {
                subscription_id: 4,
                event: "Merge Request Hook".into(),
                seq: 1,
                body: RawValue::from_string("{}".into()).unwrap(),
                delivery_id,
                entity_key: entity_key.map(str::to_owned),
            })
            .queueing()
        };
        let signed = event(Some(DeliveryId::Signed("msg_1".into())), Some("mr:9"));
        assert_eq!(signed.dedup_key.as_deref(), Some("gitlab-signed:4:msg_1"));
        assert_eq!(signed.coalesce_key.as_deref(), Some("4:mr:9"));
        let unsigned = event(Some(DeliveryId::Unsigned("k".into())), None);
        assert_eq!(unsigned.dedup_key.as_deref(), Some("gitlab:4:k"));
        assert_eq!(unsigned.coalesce_key, None);
        assert_eq!(event(None, None).dedup_key, None);

        let page = Job::BackfillPage(BackfillPage {
            subscription_id: 1,
            project_id: 2,
            entity: BackfillEntity::Commits,
            run: 7,
            page: 3,
        })
        .queueing();
        assert_eq!(page.dedup_key.as_deref(), Some("backfill:1:2:commits:7:3"));
        let check = Job::HookCheck(HookCheck {
            subscription_id: 1,
            interval: 12,
        })
        .queueing();
        assert_eq!(check.dedup_key.as_deref(), Some("hook_check:1:12"));
        let flush = Job::BackfillFlush(BackfillFlush { subscription_id: 5 }).queueing();
        assert_eq!(
            (flush.dedup_key, flush.coalesce_key.as_deref()),
            (None, Some("backfill_flush:5"))
        );
        assert_eq!(flush.max_attempts, DEFAULT_MAX_ATTEMPTS);
    }

    #[test]
    fn backfill_entities_round_trip_through_their_names() {
        for e in BackfillEntity::ALL {
            assert_eq!(BackfillEntity::parse(e.as_str()), Some(e));
            assert_eq!(
                serde_json::to_value(e).unwrap(),
                serde_json::json!(e.as_str())
            );
        }
        assert_eq!(BackfillEntity::parse("issues"), None);
    }
}
