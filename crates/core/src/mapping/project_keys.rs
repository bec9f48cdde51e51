//! A site's optional allow-list of Jira project keys. GitLab's key rule also matches `UTF-8`,
//! `SHA-256` or `ISO-8601`; a site that names its projects gets only their keys, and an entity left
//! without keys is not sent at all.

use crate::jira::{Build, Deployment, DevinfoRequest, FeatureFlag};

/// Jira's association type for issue keys on deployments.
const ISSUE_KEYS: &str = "issueKeys";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectKeys(Vec<String>);

impl ProjectKeys {
    /// Empty means every project.
    pub fn new(projects: Vec<String>) -> Self {
        Self(projects)
    }

    pub fn allows(&self, issue_key: &str) -> bool {
        self.0.is_empty()
            || issue_key
                .rsplit_once('-')
                .is_some_and(|(project, _)| self.0.iter().any(|p| p == project))
    }

    fn retain(&self, keys: &mut Vec<String>) {
        keys.retain(|k| self.allows(k));
    }

    /// Drops other projects' keys, and the commits, branches and pull requests left without any.
    pub fn filter_devinfo(&self, request: &mut DevinfoRequest) {
        if self.0.is_empty() {
            return;
        }
        for repo in &mut request.repositories {
            repo.commits.retain_mut(|c| {
                self.retain(&mut c.issue_keys);
                !c.issue_keys.is_empty()
            });
            repo.branches.retain_mut(|b| {
                self.retain(&mut b.issue_keys);
                self.retain(&mut b.last_commit.issue_keys);
                !b.issue_keys.is_empty()
            });
            repo.pull_requests.retain_mut(|p| {
                self.retain(&mut p.issue_keys);
                !p.issue_keys.is_empty()
            });
        }
        request.repositories.retain(|r| {
            !(r.commits.is_empty() && r.branches.is_empty() && r.pull_requests.is_empty())
        });
    }

    pub fn filter_build(&self, mut build: Build) -> Option<Build> {
        self.retain(&mut build.issue_keys);
        (!build.issue_keys.is_empty()).then_some(build)
    }

    /// Service associations stay; a deployment left with no association is not sent.
    pub fn filter_deployment(&self, mut d: Deployment) -> Option<Deployment> {
        for a in &mut d.associations {
            if a.association_type == ISSUE_KEYS {
                self.retain(&mut a.values);
            }
        }
        d.associations.retain(|a| !a.values.is_empty());
        (!d.associations.is_empty()).then_some(d)
    }

    pub fn filter_flag(&self, mut flag: FeatureFlag) -> Option<FeatureFlag> {
        self.retain(&mut flag.issue_keys);
        (!flag.issue_keys.is_empty()).then_some(flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::{Commit, CommitAuthor, PushEvent};
    use crate::mapping::{PushAction, map_push, test_project};

    #[test]
    fn only_named_projects_pass() {
        let all = ProjectKeys::default();
        let some = ProjectKeys::new(vec!["PROJ".into(), "OPS_2".into()]);
        for (key, everything, named) in [
            ("PROJ-7", true, true),
            ("OPS_2-1", true, true),
            ("UTF-8", true, false),
            ("SHA-256", true, false),
            ("PROJX-1", true, false),
        ] {
            assert_eq!(all.allows(key), everything, "{key}");
            assert_eq!(some.allows(key), named, "{key}");
        }
    }

    #[test]
    fn entities_left_without_keys_are_dropped() {
        let commit = |id: &str, message: &str| Commit {
            id: id.into(),
            message: message.into(),
            title: String::new(),
            timestamp: "2026-11-27T10:00:00Z".into(),
            url: "https://gitlab.example/c".into(),
            author: CommitAuthor {
                name: "Ada".into(),
                email: String::new(),
            },
            added: vec![],
            modified: vec![],
            removed: vec![],
        };
        let push = PushEvent {
            object_kind: "push".into(),
            before: "b".repeat(40),
            after: "2".repeat(40),
            git_ref: "refs/heads/main".into(),
            checkout_sha: None,
            user_username: None,
            project_id: 15,
            project: test_project(),
            commits: vec![
                commit(&"1".repeat(40), "Switch to UTF-8 for PROJ-4"),
                commit(&"2".repeat(40), "Use SHA-256"),
            ],
            total_commits_count: 2,
        };
        let PushAction::Store { mut request, .. } = map_push(&push, 1, None).unwrap() else {
            panic!("keys were found")
        };
        ProjectKeys::new(vec!["PROJ".into()]).filter_devinfo(&mut request);
        let commits = &request.repositories[0].commits;
        assert_eq!(commits.len(), 1);
        assert_eq!(commits[0].issue_keys, ["PROJ-4"]);

        ProjectKeys::new(vec!["OTHER".into()]).filter_devinfo(&mut request);
        assert!(request.repositories.is_empty(), "nothing left to send");
    }
}
