//! Deployment → Jira deployment. The webhook lacks the iid and full SHA, so the caller gathers the facts
//! from GitLab's REST API first.

use crate::gitlab::{GitLabTime, Project};
use crate::issue_keys;
use crate::jira::{
    self, Association, Deployment, DeploymentCommand, DeploymentEnvironment, DeploymentPipeline,
};

use super::{short_sha, time_or_seq};

/// What the caller read from GitLab about one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentFacts {
    pub project: Project,
    pub deployment_id: i64,
    pub iid: i64,
    /// GitLab's status: created, blocked, running, success, failed, canceled, skipped.
    pub status: String,
    pub git_ref: String,
    pub sha: String,
    pub environment_id: i64,
    pub environment_name: String,
    /// production, staging, testing, development, other.
    pub environment_tier: Option<String>,
    /// The deploying job (id, name); `None` for deployments created through the API.
    pub job: Option<(i64, String)>,
    /// The job's pipeline (id, iid).
    pub pipeline: Option<(i64, i64)>,
    /// When the deployment last changed, in any format GitLab uses.
    pub updated_at: String,
    /// Texts whose issue keys the deployment carries, in order: the deployed commit's message, the
    /// pipeline's MRs (source branch, title, description), and the messages of the commits since the
    /// previous successful deployment of the ref to the environment (at most 5,000).
    pub key_texts: Vec<String>,
    /// Jira Service Management service ids configured for the project.
    pub service_ids: Vec<String>,
    /// Whether deployment gating applies (environment tier gated and status blocked).
    pub gating: bool,
}

/// `None` when the deployment has neither issue keys nor service ids.
pub fn map_deployment(f: &DeploymentFacts, seq: i64) -> Option<Deployment> {
    let associations = associations(f);
    if associations.is_empty() {
        return None;
    }
    let p = &f.project;
    let short = short_sha(&f.sha);
    let env = &f.environment_name;
    let environment_url = format!("{}/-/environments/{}", p.web_url, f.environment_id);
    let job_name = f.job.as_ref().map_or("", |(_, name)| name.as_str());
    let pipeline = match (&f.job, f.pipeline) {
        (Some(_), Some((id, iid))) => DeploymentPipeline {
            id: id.to_string(),
            display_name: short_text(&format!("{} pipeline {iid}", p.name)),
            url: format!("{}/-/pipelines/{id}", p.web_url),
        },
        // Jira requires a pipeline, which deployments created through the API do not have (GitLab's app
        // leaves it out, and Jira rejects those): the deployment stands for its own pipeline.
        _ => DeploymentPipeline {
            id: format!("deployment-{}", f.deployment_id),
            display_name: short_text(&format!("{} deployment {}", p.name, f.iid)),
            url: environment_url.clone(),
        },
    };
    Some(Deployment {
        schema_version: "1.0".into(),
        deployment_sequence_number: f.iid,
        update_sequence_number: seq,
        associations,
        display_name: short_text(&format!(
            "Deployment {} ({}@{short}) to {env}",
            f.iid, f.git_ref
        )),
        url: match &f.job {
            Some((job_id, _)) => format!("{}/-/jobs/{job_id}", p.web_url),
            None => environment_url,
        },
        description: short_text(&format!(
            "Deployment {} (deployment-{}) of {} (project-{})\n at {short} ({job_name}) to {env}",
            f.iid, f.deployment_id, p.name, p.id
        )),
        last_updated: time_or_seq(GitLabTime::parse(&f.updated_at), seq),
        label: Some(short_text(&format!(
            "{}-{env}-{}-{short}",
            super::full_path(p),
            f.iid
        ))),
        state: state(&f.status).into(),
        pipeline,
        environment: DeploymentEnvironment {
            id: f.environment_id.to_string(),
            display_name: short_text(&format!("{}/{env}", p.name)),
            kind: environment_type(f.environment_tier.as_deref()).into(),
        },
        commands: if f.gating {
            vec![DeploymentCommand {
                command: "initiate_deployment_gating".into(),
            }]
        } else {
            vec![]
        },
    })
}

fn short_text(s: &str) -> String {
    jira::cap(s, jira::MAX_SHORT_TEXT_CHARS)
}

/// Services first, as GitLab's app sends them, then issue keys, within Jira's 500 values per deployment.
fn associations(f: &DeploymentFacts) -> Vec<Association> {
    let mut services: Vec<String> = Vec::new();
    for id in &f.service_ids {
        let id = id.trim();
        // An id Jira cannot store would get the whole deployment rejected.
        if !id.is_empty()
            && id.chars().count() <= jira::MAX_SHORT_TEXT_CHARS
            && !services.iter().any(|s| s == id)
        {
            services.push(id.to_owned());
        }
    }
    services.truncate(jira::MAX_ASSOCIATION_VALUES);
    let mut keys = issue_keys::extract(f.key_texts.iter().map(String::as_str)).into_keys();
    keys.truncate(jira::MAX_ASSOCIATION_VALUES - services.len());

    let mut out = Vec::new();
    if !services.is_empty() {
        out.push(Association {
            association_type: "serviceIdOrKeys".into(),
            values: services,
        });
    }
    if !keys.is_empty() {
        out.push(Association {
            association_type: "issueKeys".into(),
            values: keys,
        });
    }
    out
}

fn state(status: &str) -> &'static str {
    match status {
        "created" | "blocked" => "pending",
        "running" => "in_progress",
        "success" => "successful",
        "failed" => "failed",
        "canceled" | "skipped" => "cancelled",
        _ => "unknown",
    }
}

fn environment_type(tier: Option<&str>) -> &'static str {
    match tier {
        Some("production") => "production",
        Some("staging") => "staging",
        Some("testing") => "testing",
        Some("development") => "development",
        _ => "unmapped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> DeploymentFacts {
        DeploymentFacts {
            project: crate::mapping::test_project(),
            deployment_id: 700,
            iid: 3,
            status: "success".into(),
            git_ref: "main".into(),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            environment_id: 8,
            environment_name: "production".into(),
            environment_tier: Some("production".into()),
            job: Some((55, "deploy".into())),
            pipeline: Some((31, 4)),
            updated_at: "2021-04-28 21:50:00 +0200".into(),
            key_texts: vec![
                "PROJ-1 fix".into(),
                "feature/PROJ-2".into(),
                "PROJ-1 again, QA-3".into(),
            ],
            service_ids: vec![],
            gating: false,
        }
    }

    #[test]
    fn a_job_deployment_as_gitlab_sends_it() {
        let d = map_deployment(&facts(), 42).unwrap();
        assert_eq!(d.schema_version, "1.0");
        assert_eq!(d.deployment_sequence_number, 3, "the iid");
        assert_eq!(d.update_sequence_number, 42);
        assert_eq!(d.display_name, "Deployment 3 (main@01234567) to production");
        assert_eq!(
            d.description,
            "Deployment 3 (deployment-700) of api (project-15)\n at 01234567 (deploy) to production"
        );
        assert_eq!(d.label.as_deref(), Some("g/api-production-3-01234567"));
        assert_eq!(d.url, "https://gitlab.example/g/api/-/jobs/55");
        assert_eq!(d.last_updated, "2021-04-28T19:50:00Z");
        assert_eq!(d.state, "successful");
        assert_eq!(
            d.pipeline,
            DeploymentPipeline {
                id: "31".into(),
                display_name: "api pipeline 4".into(),
                url: "https://gitlab.example/g/api/-/pipelines/31".into()
            }
        );
        assert_eq!(
            d.environment,
            DeploymentEnvironment {
                id: "8".into(),
                display_name: "api/production".into(),
                kind: "production".into()
            }
        );
        assert_eq!(
            d.associations,
            [Association {
                association_type: "issueKeys".into(),
                values: vec!["PROJ-1".into(), "PROJ-2".into(), "QA-3".into()]
            }]
        );
        assert!(d.commands.is_empty());
    }

    #[test]
    fn api_deployments_get_a_synthesized_pipeline() {
        let mut f = facts();
        f.job = None;
        f.pipeline = None;
        let d = map_deployment(&f, 1).unwrap();
        assert_eq!(d.url, "https://gitlab.example/g/api/-/environments/8");
        assert_eq!(
            d.pipeline,
            DeploymentPipeline {
                id: "deployment-700".into(),
                display_name: "api deployment 3".into(),
                url: "https://gitlab.example/g/api/-/environments/8".into()
            }
        );
        assert_eq!(
            d.description,
            "Deployment 3 (deployment-700) of api (project-15)\n at 01234567 () to production"
        );
    }

    #[test]
    fn state_and_environment_tables() {
        let states = [
            ("created", "pending"),
            ("blocked", "pending"),
            ("running", "in_progress"),
            ("success", "successful"),
            ("failed", "failed"),
            ("canceled", "cancelled"),
            ("skipped", "cancelled"),
            ("approved", "unknown"),
            ("", "unknown"),
        ];
        for (status, want) in states {
            let mut f = facts();
            f.status = status.into();
            assert_eq!(map_deployment(&f, 1).unwrap().state, want, "{status}");
        }
        let tiers = [
            (Some("production"), "production"),
            (Some("staging"), "staging"),
            (Some("testing"), "testing"),
            (Some("development"), "development"),
            (Some("other"), "unmapped"),
            (Some("Production"), "unmapped"),
            (None, "unmapped"),
        ];
        for (tier, want) in tiers {
            let mut f = facts();
            f.environment_tier = tier.map(Into::into);
            assert_eq!(map_deployment(&f, 1).unwrap().environment.kind, want);
        }
    }

    #[test]
    fn services_come_first_and_gating_adds_the_command() {
        let mut f = facts();
        f.service_ids = vec!["b:AX=".into(), " b:BX= ".into(), "".into(), "b:AX=".into()];
        f.gating = true;
        f.status = "blocked".into();
        let d = map_deployment(&f, 1).unwrap();
        assert_eq!(
            d.associations
                .iter()
                .map(|a| (a.association_type.as_str(), a.values.len()))
                .collect::<Vec<_>>(),
            [("serviceIdOrKeys", 2), ("issueKeys", 3)]
        );
        assert_eq!(d.associations[0].values, ["b:AX=", "b:BX="]);
        assert_eq!(
            d.commands,
            [DeploymentCommand {
                command: "initiate_deployment_gating".into()
            }]
        );

        // Service ids alone are enough.
        f.key_texts.clear();
        let d = map_deployment(&f, 1).unwrap();
        assert_eq!(d.associations.len(), 1);
        f.service_ids.clear();
        assert_eq!(map_deployment(&f, 1), None);
    }

    #[test]
    fn associations_stay_within_500_values() {
        let mut f = facts();
        f.key_texts = vec![(1..=600).map(|n| format!("K{n}-1 ")).collect()];
        let d = map_deployment(&f, 1).unwrap();
        assert_eq!(d.associations[0].values.len(), 500);
        assert_eq!(d.associations[0].values[499], "K500-1", "first-seen order");

        f.service_ids = (0..10).map(|n| format!("svc{n}")).collect();
        let d = map_deployment(&f, 1).unwrap();
        let total: usize = d.associations.iter().map(|a| a.values.len()).sum();
        assert_eq!(total, jira::MAX_ASSOCIATION_VALUES);
        assert_eq!(d.associations[1].values.len(), 490);

        f.service_ids = (0..600).map(|n| format!("svc{n}")).collect();
        let d = map_deployment(&f, 1).unwrap();
        assert_eq!(d.associations.len(), 1, "no room left for keys");
        assert_eq!(d.associations[0].values.len(), 500);
    }

    #[test]
    fn long_names_are_cut_and_odd_dates_fall_back() {
        let mut f = facts();
        f.project.name = "p".repeat(300);
        f.environment_name = "e".repeat(300);
        f.updated_at = "yesterday".into();
        let d = map_deployment(&f, 0).unwrap();
        for s in [
            &d.display_name,
            &d.description,
            d.label.as_ref().unwrap(),
            &d.pipeline.display_name,
            &d.environment.display_name,
        ] {
            assert!(s.chars().count() <= jira::MAX_SHORT_TEXT_CHARS);
        }
        assert_eq!(d.last_updated, "1970-01-01T00:00:00Z");
        f.sha = "ab".into();
        assert!(map_deployment(&f, 0).unwrap().display_name.contains("@ab)"));
    }
}
