//! Packing Jira entities into as few requests as Jira's limits allow, and splitting a request Jira found
//! too large. Pure, so that the limits are proven by tests rather than by hope.

use crate::jira::{
    self, DevinfoRequest, MAX_ENTITIES_PER_REQUEST, MAX_PER_TYPE_PER_REPOSITORY,
    MAX_REPOSITORIES_PER_REQUEST, Repository,
};

fn entity_count(r: &Repository) -> usize {
    r.commits.len() + r.branches.len() + r.pull_requests.len()
}

fn empty_like(r: &Repository) -> Repository {
    Repository {
        commits: Vec::new(),
        branches: Vec::new(),
        pull_requests: Vec::new(),
        ..r.clone()
    }
}

fn request_like(template: &DevinfoRequest, repositories: Vec<Repository>) -> DevinfoRequest {
    DevinfoRequest {
        repositories,
        ..template.clone()
    }
}

enum Entity {
    Commit(jira::Commit),
    Branch(jira::Branch),
    PullRequest(jira::PullRequest),
}

/// A repository's entities, in the order they are sent: commits, branches, pull requests.
fn entities_of(repo: &Repository) -> Vec<Entity> {
    repo.commits
        .iter()
        .cloned()
        .map(Entity::Commit)
        .chain(repo.branches.iter().cloned().map(Entity::Branch))
        .chain(repo.pull_requests.iter().cloned().map(Entity::PullRequest))
        .collect()
}

/// Whether `entity` of the repository `repo_id` may join `repos` within Jira's per-request limits of
/// repositories and of entities per type per repository; with `distinct`, not if the request already
/// holds the same entity.
fn has_room(repos: &[Repository], repo_id: &str, entity: &Entity, distinct: bool) -> bool {
    let Some(r) = repos.iter().find(|r| r.id == repo_id) else {
        return repos.len() < MAX_REPOSITORIES_PER_REQUEST;
    };
    match entity {
        Entity::Commit(c) => {
            r.commits.len() < MAX_PER_TYPE_PER_REPOSITORY
                && !(distinct && r.commits.iter().any(|x| x.id == c.id))
        }
        Entity::Branch(b) => {
            r.branches.len() < MAX_PER_TYPE_PER_REPOSITORY
                && !(distinct && r.branches.iter().any(|x| x.id == b.id))
        }
        Entity::PullRequest(p) => {
            r.pull_requests.len() < MAX_PER_TYPE_PER_REPOSITORY
                && !(distinct && r.pull_requests.iter().any(|x| x.id == p.id))
        }
    }
}

/// Adds `entity` of the repository `repo` to `repos`.
fn place(repos: &mut Vec<Repository>, repo: &Repository, entity: Entity) {
    let i = match repos.iter().position(|r| r.id == repo.id) {
        Some(i) => i,
        None => {
            repos.push(empty_like(repo));
            repos.len() - 1
        }
    };
    match entity {
        Entity::Commit(c) => repos[i].commits.push(c),
        Entity::Branch(b) => repos[i].branches.push(b),
        Entity::PullRequest(p) => repos[i].pull_requests.push(p),
    }
}

/// Packs the repositories of `request` into requests within Jira's limits (≤100 repositories, ≤1000
/// entities, ≤400 of each type (commits, branches, pull requests) per repository), filling each request before starting the next. Entities
/// keep their order, and a second update of the same entity goes to a later request than the first, so
/// updates are never reordered and no request holds an id twice.
pub fn pack_devinfo(request: DevinfoRequest) -> Vec<DevinfoRequest> {
    let template = request_like(&request, Vec::new());
    let mut out = Vec::new();
    let mut current: Vec<Repository> = Vec::new();
    let mut total = 0;
    for repo in &request.repositories {
        for entity in entities_of(repo) {
            if !has_room(&current, &repo.id, &entity, true) || total == MAX_ENTITIES_PER_REQUEST {
                out.push(request_like(&template, std::mem::take(&mut current)));
                total = 0;
            }
            place(&mut current, repo, entity);
            total += 1;
        }
    }
    if !current.is_empty() {
        out.push(request_like(&template, current));
    }
    out
}

/// Packs a request whose entities are all distinct (as [`combine_devinfo`] leaves them) into as few
/// requests as Jira's limits allow, placing each entity in the first request with room for it (first
/// fit), so that one repository's 400-per-type limit does not close a request that others can still fill.
/// For backfills, where order between different entities does not matter; live updates keep
/// [`pack_devinfo`]'s order.
pub fn pack_devinfo_dense(request: DevinfoRequest) -> Vec<DevinfoRequest> {
    let template = request_like(&request, Vec::new());
    let mut out: Vec<(Vec<Repository>, usize)> = Vec::new();
    for repo in &request.repositories {
        for entity in entities_of(repo) {
            let slot = out.iter().position(|(repos, total)| {
                *total < MAX_ENTITIES_PER_REQUEST && has_room(repos, &repo.id, &entity, false)
            });
            let slot = slot.unwrap_or_else(|| {
                out.push((Vec::new(), 0));
                out.len() - 1
            });
            let (repos, total) = &mut out[slot];
            place(repos, repo, entity);
            *total += 1;
        }
    }
    out.into_iter()
        .map(|(repos, _)| request_like(&template, repos))
        .collect()
}

/// Combines many requests (one per branch, merge request or commit page of a backfill) into one, to be
/// packed by [`pack_devinfo`]: repositories with the same id become one, and an entity sent twice (a
/// commit at the tip of several branches) becomes one whose issue keys are the union, capped at Jira's
/// limit. `None` when nothing is left. The first request's flags and properties apply to all.
pub fn combine_devinfo(requests: Vec<DevinfoRequest>) -> Option<DevinfoRequest> {
    let mut requests = requests.into_iter();
    let mut out = requests.next()?;
    let mut repositories: Vec<Repository> = Vec::new();
    for repo in out
        .repositories
        .drain(..)
        .chain(requests.flat_map(|r| r.repositories))
    {
        let i = match repositories.iter().position(|r| r.id == repo.id) {
            Some(i) => i,
            None => {
                repositories.push(empty_like(&repo));
                repositories.len() - 1
            }
        };
        let into = &mut repositories[i];
        into.update_sequence_id = into.update_sequence_id.max(repo.update_sequence_id);
        for c in repo.commits {
            match into.commits.iter_mut().find(|x| x.id == c.id) {
                Some(existing) => {
                    crate::issue_keys::merge(&mut existing.issue_keys, &c.issue_keys);
                    existing.issue_keys.truncate(jira::MAX_ASSOCIATION_VALUES);
                }
                None => into.commits.push(c),
            }
        }
        for b in repo.branches {
            match into.branches.iter_mut().find(|x| x.id == b.id) {
                Some(existing) => *existing = b,
                None => into.branches.push(b),
            }
        }
        for p in repo.pull_requests {
            match into.pull_requests.iter_mut().find(|x| x.id == p.id) {
                Some(existing) => *existing = p,
                None => into.pull_requests.push(p),
            }
        }
    }
    repositories.retain(|r| entity_count(r) > 0);
    if repositories.is_empty() {
        return None;
    }
    out.repositories = repositories;
    Some(out)
}

/// Splits a request into two with about half the entities each, or `None` when it holds one entity.
pub fn split_devinfo(request: &DevinfoRequest) -> Option<(DevinfoRequest, DevinfoRequest)> {
    let total: usize = request.repositories.iter().map(entity_count).sum();
    if total < 2 {
        return None;
    }
    let mut first = Vec::new();
    let mut second = Vec::new();
    let mut budget = total / 2;
    for repo in &request.repositories {
        let n = entity_count(repo);
        if budget >= n {
            budget -= n;
            first.push(repo.clone());
        } else if budget == 0 {
            second.push(repo.clone());
        } else {
            let (mut a, mut b) = (empty_like(repo), empty_like(repo));
            let take_commits = budget.min(repo.commits.len());
            a.commits = repo.commits[..take_commits].to_vec();
            b.commits = repo.commits[take_commits..].to_vec();
            let take_branches = (budget - take_commits).min(repo.branches.len());
            a.branches = repo.branches[..take_branches].to_vec();
            b.branches = repo.branches[take_branches..].to_vec();
            let take_pull_requests = budget - take_commits - take_branches;
            a.pull_requests = repo.pull_requests[..take_pull_requests].to_vec();
            b.pull_requests = repo.pull_requests[take_pull_requests..].to_vec();
            budget = 0;
            first.push(a);
            second.push(b);
        }
    }
    Some((request_like(request, first), request_like(request, second)))
}

/// The number of entities in a request.
pub fn devinfo_entities(request: &DevinfoRequest) -> usize {
    request.repositories.iter().map(entity_count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jira::{Author, OperationType, ProviderMetadata};

    #[test]
    fn dense_packing_fills_requests_that_one_repositorys_limit_would_close() {
        // Three repositories with 600 commits each: 1,800 entities, at most 400 per repository per
        // request, so two requests (1,000 + 800) suffice; filling in order would take five.
        let repos: Vec<Repository> = (0..3)
            .map(|r| Repository {
                id: r.to_string(),
                name: format!("p{r}"),
                url: "https://g/p".into(),
                update_sequence_id: 1,
                avatar: None,
                commits: (0..600).map(|n| commit(r * 1000 + n)).collect(),
                branches: vec![],
                pull_requests: vec![],
            })
            .collect();
        let request = DevinfoRequest {
            repositories: repos,
            prevent_transitions: true,
            operation_type: OperationType::Backfill,
            properties: Default::default(),
            provider_metadata: ProviderMetadata {
                product: "GitLab".into(),
            },
        };
        let packed = pack_devinfo_dense(request.clone());
        assert_eq!(packed.len(), 2);
        assert_eq!(
            packed.iter().map(devinfo_entities).collect::<Vec<_>>(),
            [1000, 800]
        );
        for p in &packed {
            assert!(
                p.repositories
                    .iter()
                    .all(|r| r.commits.len() <= MAX_PER_TYPE_PER_REPOSITORY)
            );
        }
        assert!(
            pack_devinfo(request).len() > 2,
            "in-order packing needs more"
        );
    }

    #[test]
    fn combining_merges_repositories_and_unites_the_keys_of_a_commit_sent_twice() {
        let repo = |commits: Vec<jira::Commit>| Repository {
            id: "15".into(),
            name: "api".into(),
            url: "https://g/api".into(),
            update_sequence_id: 1,
            avatar: None,
            commits,
            branches: vec![],
            pull_requests: vec![],
        };
        let request = |repos: Vec<Repository>| DevinfoRequest {
            repositories: repos,
            prevent_transitions: true,
            operation_type: OperationType::Backfill,
            properties: Default::default(),
            provider_metadata: ProviderMetadata {
                product: "GitLab".into(),
            },
        };
        let mut shared = commit(1);
        shared.issue_keys = vec!["B-2".into()];
        let combined = combine_devinfo(vec![
            request(vec![repo(vec![commit(1)])]),
            request(vec![repo(vec![shared, commit(2)])]),
            request(vec![repo(vec![])]),
        ])
        .unwrap();
        assert_eq!(combined.repositories.len(), 1);
        let commits = &combined.repositories[0].commits;
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].issue_keys, ["PROJ-1", "B-2"]);
        assert_eq!(pack_devinfo(combined).len(), 1, "one Jira request");
        assert!(combine_devinfo(vec![request(vec![repo(vec![])])]).is_none());
        assert!(combine_devinfo(Vec::new()).is_none());
    }

    fn commit(n: usize) -> jira::Commit {
        jira::Commit {
            id: format!("{n:040x}"),
            issue_keys: vec!["PROJ-1".into()],
            update_sequence_id: 1,
            display_id: format!("{n:08x}"),
            message: "PROJ-1".into(),
            author: Author {
                name: "a".into(),
                email: None,
            },
            file_count: 1,
            url: "https://g/c".into(),
            author_timestamp: "2026-11-27T10:00:00Z".into(),
            files: vec![],
            flags: vec![],
        }
    }

    fn branch(n: usize) -> jira::Branch {
        jira::Branch {
            id: format!("b{n}"),
            issue_keys: vec!["PROJ-1".into()],
            update_sequence_id: 1,
            name: format!("PROJ-1-{n}"),
            last_commit: commit(n),
            url: "https://g/b".into(),
            create_pull_request_url: None,
        }
    }

    fn pull_request(n: usize) -> jira::PullRequest {
        jira::PullRequest {
            id: n.to_string(),
            issue_keys: vec!["PROJ-1".into()],
            update_sequence_id: 1,
            status: jira::PullRequestStatus::Open,
            title: "PROJ-1".into(),
            author: Author {
                name: "a".into(),
                email: None,
            },
            comment_count: 0,
            source_branch: format!("PROJ-1-{n}"),
            source_branch_url: None,
            destination_branch: Some("main".into()),
            destination_branch_url: None,
            last_update: "2026-11-27T10:00:00Z".into(),
            url: format!("https://g/r/-/merge_requests/{n}"),
            display_id: format!("g/r!{n}"),
            reviewers: vec![],
        }
    }

    fn repo(id: usize, commits: usize, branches: usize) -> Repository {
        repo_with_prs(id, commits, branches, 0)
    }

    fn repo_with_prs(id: usize, commits: usize, branches: usize, prs: usize) -> Repository {
        Repository {
            id: id.to_string(),
            name: format!("r{id}"),
            url: "https://g/r".into(),
            update_sequence_id: 1,
            avatar: None,
            commits: (0..commits).map(commit).collect(),
            branches: (0..branches).map(branch).collect(),
            pull_requests: (0..prs).map(pull_request).collect(),
        }
    }

    fn request(repos: Vec<Repository>) -> DevinfoRequest {
        DevinfoRequest {
            repositories: repos,
            prevent_transitions: true,
            operation_type: OperationType::Backfill,
            properties: Default::default(),
            provider_metadata: ProviderMetadata::ours(),
        }
    }

    fn within_limits(r: &DevinfoRequest) {
        assert!(r.repositories.len() <= MAX_REPOSITORIES_PER_REQUEST);
        assert!(devinfo_entities(r) <= MAX_ENTITIES_PER_REQUEST);
        for repo in &r.repositories {
            assert!(
                repo.commits.len() <= MAX_PER_TYPE_PER_REPOSITORY
                    && repo.branches.len() <= MAX_PER_TYPE_PER_REPOSITORY
                    && repo.pull_requests.len() <= MAX_PER_TYPE_PER_REPOSITORY
            );
            assert!(entity_count(repo) > 0);
        }
    }

    #[test]
    fn packs_to_the_minimum_number_of_requests() {
        // 2,500 commits of one repository: 400 per request is the binding limit → 7 requests.
        let packed = pack_devinfo(request(vec![repo(1, 2500, 0)]));
        assert_eq!(packed.len(), 7);
        packed.iter().for_each(within_limits);
        let ids: Vec<String> = packed
            .iter()
            .flat_map(|r| r.repositories[0].commits.iter().map(|c| c.id.clone()))
            .collect();
        assert_eq!(
            ids,
            (0..2500).map(|n| format!("{n:040x}")).collect::<Vec<_>>(),
            "order kept, nothing lost"
        );
        assert!(
            packed
                .iter()
                .all(|r| r.operation_type == OperationType::Backfill && r.prevent_transitions)
        );

        // 300 repositories of 10 entities: the 1000-entity limit binds → 3 requests of 100 repositories.
        let packed = pack_devinfo(request((0..300).map(|i| repo(i, 5, 5)).collect()));
        assert_eq!(packed.len(), 3);
        packed.iter().for_each(within_limits);

        // 150 small repositories: the 100-repository limit binds → 2 requests.
        let packed = pack_devinfo(request((0..150).map(|i| repo(i, 1, 0)).collect()));
        assert_eq!(
            packed
                .iter()
                .map(|r| r.repositories.len())
                .collect::<Vec<_>>(),
            [100, 50]
        );
        assert!(pack_devinfo(request(vec![repo(1, 0, 0)])).is_empty());
    }

    #[test]
    fn pull_requests_are_packed_like_commits_and_branches() {
        // 900 pull requests: 400 per repository and request binds → 400, 400, 100, in order.
        let packed = pack_devinfo(request(vec![repo_with_prs(1, 0, 0, 900)]));
        packed.iter().for_each(within_limits);
        assert_eq!(
            packed
                .iter()
                .map(|r| r.repositories[0].pull_requests.len())
                .collect::<Vec<_>>(),
            [400, 400, 100]
        );
        let ids: Vec<String> = packed
            .iter()
            .flat_map(|r| r.repositories[0].pull_requests.iter().map(|p| p.id.clone()))
            .collect();
        assert_eq!(ids, (0..900).map(|n| n.to_string()).collect::<Vec<_>>());

        // 400 commits + 400 branches + 400 pull requests: the 1000-entity limit binds, and pull requests
        // count towards it.
        let packed = pack_devinfo(request(vec![repo_with_prs(1, 400, 400, 400)]));
        packed.iter().for_each(within_limits);
        assert_eq!(
            packed.iter().map(devinfo_entities).collect::<Vec<_>>(),
            [1000, 200]
        );
        assert_eq!(packed[0].repositories[0].pull_requests.len(), 200);

        // A second update of the same pull request waits for the next request.
        let mut r = repo_with_prs(1, 0, 0, 2);
        let mut newer = pull_request(0);
        newer.update_sequence_id = 2;
        r.pull_requests.push(newer);
        let packed = pack_devinfo(request(vec![r]));
        assert_eq!(packed.len(), 2);
        assert_eq!(
            packed[1].repositories[0].pull_requests[0].update_sequence_id,
            2
        );
        assert_eq!(
            devinfo_entities(&request(vec![repo_with_prs(1, 1, 2, 3)])),
            6
        );
    }

    #[test]
    fn a_second_update_of_an_entity_goes_to_a_later_request() {
        let mut r = repo(1, 3, 0);
        let mut newer = commit(1);
        newer.update_sequence_id = 2;
        r.commits.push(newer);
        let packed = pack_devinfo(request(vec![r]));
        assert_eq!(packed.len(), 2);
        assert_eq!(packed[0].repositories[0].commits.len(), 3);
        assert_eq!(packed[1].repositories[0].commits[0].update_sequence_id, 2);
    }

    #[test]
    fn splitting_halves_until_single_entities() {
        let r = request(vec![repo_with_prs(1, 3, 2, 3), repo(2, 4, 0)]);
        let (a, b) = split_devinfo(&r).unwrap();
        assert_eq!((devinfo_entities(&a), devinfo_entities(&b)), (6, 6));
        let mut all: Vec<String> = Vec::new();
        for part in [&a, &b] {
            for repo in &part.repositories {
                assert!(entity_count(repo) > 0, "no empty repository in a part");
                all.extend(repo.commits.iter().map(|c| format!("{}:{}", repo.id, c.id)));
                all.extend(
                    repo.branches
                        .iter()
                        .map(|b| format!("{}:{}", repo.id, b.id)),
                );
                all.extend(
                    repo.pull_requests
                        .iter()
                        .map(|p| format!("{}:pr{}", repo.id, p.id)),
                );
            }
        }
        assert_eq!(all.len(), 12);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12, "every entity exactly once");
        // A split inside the pull requests of one repository.
        let (a, b) = split_devinfo(&request(vec![repo_with_prs(1, 1, 1, 4)])).unwrap();
        assert_eq!(
            (
                a.repositories[0].pull_requests.len(),
                b.repositories[0].pull_requests.len()
            ),
            (1, 3)
        );
        let single = request(vec![repo(1, 1, 0)]);
        assert!(split_devinfo(&single).is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn packing_respects_limits_and_loses_nothing(sizes in proptest::collection::vec((0usize..450, 0usize..30, 0usize..60), 0..120)) {
            let repos: Vec<Repository> = sizes.iter().enumerate().map(|(i, (c, b, p))| repo_with_prs(i, *c, *b, *p)).collect();
            let expected: usize = repos.iter().map(entity_count).sum();
            let packed = pack_devinfo(request(repos));
            packed.iter().for_each(within_limits);
            proptest::prop_assert_eq!(packed.iter().map(devinfo_entities).sum::<usize>(), expected);
        }
    }
}
