//! Every metric family of `GET /metrics`, named once: the crates that record them use these constants,
//! and the server describes each with its help text from [`FAMILIES`]. Labels take values from closed
//! sets (event kinds, job kinds, outcomes, API names, HTTP statuses), never ids or paths, so the number
//! of series stays bounded however many projects and sites there are.

/// Webhook deliveries answered, by `event` (`push`, `merge_request`, …, `other`) and `outcome`
/// (`queued`, `ignored`, `refused`, `unauthorized`, `too_large`, `unavailable`, `other`). Requests the
/// edge turns away before the handler (too many in flight, too slow) are not counted here.
pub const WEBHOOKS_RECEIVED: &str = "gfj_webhooks_received_total";
/// Time from a delivery's first byte to its answer (durable when 202).
pub const WEBHOOK_INTAKE_SECONDS: &str = "gfj_webhook_intake_seconds";
/// Jobs waiting or running, by `kind` and `state` (`ready`, `scheduled`, `running`, `dead`).
pub const QUEUE_JOBS: &str = "gfj_queue_jobs";
/// Age of the oldest ready job, by `kind`.
pub const QUEUE_OLDEST_AGE_SECONDS: &str = "gfj_queue_oldest_ready_age_seconds";
/// Job runs ended, by `kind` and `outcome` (`done`, `retried`, `postponed`, `dead`).
pub const JOBS_FINISHED: &str = "gfj_jobs_finished_total";
/// Requests to Jira's APIs, by `api` (`devinfo`, `builds`, `deployments`, `featureflags`, `other`) and
/// `status` (the HTTP status, or `error` when none came back). OAuth token fetches are not counted.
pub const JIRA_REQUESTS: &str = "gfj_jira_requests_total";
pub const JIRA_REQUEST_SECONDS: &str = "gfj_jira_request_seconds";
/// Requests to GitLab, by `endpoint` (the resource words of the path, e.g. `projects/repository/commits`)
/// and `status`.
pub const GITLAB_REQUESTS: &str = "gfj_gitlab_requests_total";
pub const GITLAB_REQUEST_SECONDS: &str = "gfj_gitlab_request_seconds";
/// Waits for GitLab's rate limit (`RateLimit-Remaining` at 0, or a 429), and their total length.
pub const GITLAB_RATE_LIMIT_WAITS: &str = "gfj_gitlab_rate_limit_waits_total";
pub const GITLAB_RATE_LIMIT_WAIT_SECONDS: &str = "gfj_gitlab_rate_limit_wait_seconds_total";
/// Backfill tasks by `state` (`pending`, `running`, `done`, `failed`).
pub const BACKFILL_TASKS: &str = "gfj_backfill_tasks";
/// Entities read by backfill and waiting in the outbox for Jira.
pub const OUTBOX_ENTITIES: &str = "gfj_backfill_outbox_entities";
/// Events or entities not sent, by `reason`.
pub const EVENTS_DROPPED: &str = "gfj_events_dropped_total";
/// Jira sites paused by a 429, and sites needing attention (401/403).
pub const SITES_PAUSED: &str = "gfj_jira_sites_paused";
pub const SITES_NEEDING_ATTENTION: &str = "gfj_jira_sites_needing_attention";
/// Registered GitLab hooks by `state` (`ok`, `disabled`, `missing`) as the last hook check found them.
pub const HOOKS: &str = "gfj_gitlab_hooks";
/// Deployment gates not yet applied in GitLab.
pub const GATES_OPEN: &str = "gfj_gates_open";

/// What kind of series a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
}

/// Each family with its kind and the help line `/metrics` prints.
#[rustfmt::skip]
pub const FAMILIES: &[(&str, FamilyKind, &str)] = &[
    (WEBHOOKS_RECEIVED, FamilyKind::Counter, "Webhook deliveries answered, by event kind and outcome"),
    (WEBHOOK_INTAKE_SECONDS, FamilyKind::Histogram, "Time to answer a webhook delivery (durable when queued)"),
    (QUEUE_JOBS, FamilyKind::Gauge, "Jobs in the queue by kind and state"),
    (QUEUE_OLDEST_AGE_SECONDS, FamilyKind::Gauge, "Age of the oldest job that is due and not running, by kind"),
    (JOBS_FINISHED, FamilyKind::Counter, "Job runs ended, by kind and outcome"),
    (JIRA_REQUESTS, FamilyKind::Counter, "Requests to Jira by API and HTTP status"),
    (JIRA_REQUEST_SECONDS, FamilyKind::Histogram, "Latency of requests to Jira by API"),
    (GITLAB_REQUESTS, FamilyKind::Counter, "Requests to GitLab by endpoint class and HTTP status"),
    (GITLAB_REQUEST_SECONDS, FamilyKind::Histogram, "Latency of requests to GitLab by endpoint class"),
    (GITLAB_RATE_LIMIT_WAITS, FamilyKind::Counter, "Waits for GitLab's rate limit"),
    (GITLAB_RATE_LIMIT_WAIT_SECONDS, FamilyKind::Counter, "Time spent waiting for GitLab's rate limit"),
    (BACKFILL_TASKS, FamilyKind::Gauge, "Backfill tasks by state"),
    (OUTBOX_ENTITIES, FamilyKind::Gauge, "Entities read by backfill and waiting to be sent to Jira"),
    (EVENTS_DROPPED, FamilyKind::Counter, "Events or entities not sent to Jira, by reason"),
    (SITES_PAUSED, FamilyKind::Gauge, "Jira sites paused after a 429"),
    (SITES_NEEDING_ATTENTION, FamilyKind::Gauge, "Jira sites whose credentials Jira refused (401/403)"),
    (HOOKS, FamilyKind::Gauge, "Registered GitLab webhooks by state"),
    (GATES_OPEN, FamilyKind::Gauge, "Deployment gates waiting for JSM or being applied in GitLab"),
];

/// The `api` label of a Jira request path: `/rest/<api>/…` for Connect, `/jira/<api>/…` on the
/// OAuth-credentials gateway; anything else is `other`.
pub fn jira_api(path: &str) -> &'static str {
    const APIS: [&str; 4] = ["devinfo", "builds", "deployments", "featureflags"];
    let mut segments = path.trim_start_matches('/').split('/');
    let (Some(root), Some(api)) = (segments.next(), segments.next()) else {
        return "other";
    };
    if root != "rest" && root != "jira" {
        return "other";
    }
    APIS.into_iter().find(|a| *a == api).unwrap_or("other")
}

/// The `endpoint` label of a GitLab API path: its resource words (ids, names and encoded paths left
/// out), at most four, from a closed list; e.g. `/api/v4/projects/7/repository/commits/abc/diff` →
/// `projects/repository/commits/diff`.
pub fn gitlab_endpoint(path: &str) -> String {
    const RESOURCES: [&str; 24] = [
        "user",
        "users",
        "groups",
        "subgroups",
        "projects",
        "members",
        "all",
        "hooks",
        "test",
        "repository",
        "commits",
        "branches",
        "diff",
        "refs",
        "merge_requests",
        "pipelines",
        "jobs",
        "deployments",
        "environments",
        "protected_environments",
        "feature_flags",
        "approval",
        "play",
        "oauth",
    ];
    let words: Vec<&str> = path
        .split('/')
        .skip_while(|s| *s != "v4")
        .skip(1)
        .filter(|s| RESOURCES.contains(s))
        .take(4)
        .collect();
    if words.is_empty() {
        "other".to_owned()
    } else {
        words.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jira_paths_are_labelled_by_api() {
        for (path, api) in [
            ("/rest/devinfo/0.10/bulk", "devinfo"),
            ("/rest/builds/0.1/bulk", "builds"),
            ("/jira/deployments/0.1/cloud/abc/bulk", "deployments"),
            ("/rest/featureflags/0.1/bulk", "featureflags"),
            ("/rest/api/3/user/groups", "other"),
            ("/oauth/token", "other"),
            ("", "other"),
        ] {
            assert_eq!(jira_api(path), api, "{path}");
        }
    }

    #[test]
    fn gitlab_paths_keep_only_resource_words() {
        for (path, endpoint) in [
            (
                "/api/v4/projects/7/repository/commits/abc/diff",
                "projects/repository/commits/diff",
            ),
            (
                "/api/v4/projects/acme%2Fapi/merge_requests",
                "projects/merge_requests",
            ),
            (
                "/api/v4/projects/7/repository/branches/feature%2Fprojects",
                "projects/repository/branches",
            ),
            ("/gitlab/api/v4/groups/3/hooks/9", "groups/hooks"),
            ("/api/v4/user", "user"),
            ("/api/v4/12345", "other"),
            ("/oauth/token", "other"),
        ] {
            assert_eq!(gitlab_endpoint(path), endpoint, "{path}");
        }
    }

    #[test]
    fn every_family_is_named_once_with_the_project_prefix() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        assert!(names.iter().all(|n| n.starts_with("gfj_")));
    }
}
