//! Backfill benchmark (issue 6, item 7): a group of `GFJ_BENCH_PROJECTS` projects, each with
//! `GFJ_BENCH_COMMITS` commits on its default branch, `GFJ_BENCH_BRANCHES` branches with a commit each and
//! `GFJ_BENCH_MRS` merge requests, is linked under a GitLab and a Jira rate limit set in the simulators.
//! Reports the time from `link` until the backfill is finished (every task done and no backfill job left,
//! so whatever the tasks read has been sent) as a ratio to the lower bound
//! `max(GitLab requests needed / GitLab rate, Jira requests needed / Jira rate)`, the `serve` process's
//! peak RSS (`VmHWM`), and the requests each simulator answered; then checks that Jira holds every entity.
//!
//! `cargo bench --bench backfill` (see BENCHMARKS.md for the settings). The service runs as the release
//! `serve` binary in its own process on SQLite in a temporary directory; the simulators and this driver
//! share the bench process. Everything is on loopback.
//!
//! Rate limits: `GFJ_BENCH_GITLAB_PER_MIN` (default 2,000, GitLab.com's authenticated API limit) and
//! `GFJ_BENCH_JIRA_PER_MIN` (default 200; Atlassian publishes no number: 200 puts the Jira bound, 132 s,
//! just under the GitLab one, 156 s, so that a backfill wasting Jira requests shows), counted in fixed
//! windows of `GFJ_BENCH_GITLAB_WINDOW_SECS` and `GFJ_BENCH_JIRA_WINDOW_SECS` (default 3: the same rate with
//! bursts of 100 and 10, so that the time does not depend on where in a window the run starts; 60 is
//! GitLab.com's window, and lets a client spend a whole minute's budget at once).
//!
//! Requests needed, per project with M merge requests, B branches and N commits (the default branch and
//! its initial commit count too: its branch list holds B + 1 branches and `commits?all=true` N + B + 1
//! commits), in pages of 100:
//!
//! - GitLab: `ceil(P / 100)` pages of the group's projects, then per project `ceil(M / 100)` +
//!   `ceil((B + 1) / 100)` + `ceil((N + B + 1) / 100)` + 1 (pipelines, empty) + 1 (deployments, empty).
//! - Jira: `ceil(P × (N + B + B + M) / 1000)`: every commit but the initial one, every branch but the
//!   default one and every merge request carries an issue key, and one devinfo request takes at most
//!   1,000 entities.

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gfj_sim::gitlab::bulk::{HistorySpec, SeededHistory};
use gfj_sim::gitlab::{GitLabSim, Plan};
use gfj_sim::jira::{JiraSim, JiraSimConfig, RateLimit};
use gfj_store::backfill::TaskState;
use gfj_store::testing::TEST_KEY;
use gitlab_for_jira::Settings;
use gitlab_for_jira::commands::link::{self, HookMode, LinkRequest};
use serde_json::Value;

const TOKEN: &str = "glpat-bench";
const KEY_PROJECT: &str = "BENCH";
/// Kinds of history a project's backfill has (merge requests, branches, commits, pipelines, deployments,
/// feature flags).
const KINDS: usize = 6;

fn env_num(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        _ => default,
    }
}

struct Config {
    projects: usize,
    mrs: usize,
    branches: usize,
    commits: usize,
    /// Requests per fixed window, and the window.
    gitlab_limit: u32,
    gitlab_window: Duration,
    jira_limit: u32,
    jira_window: Duration,
    timeout: Duration,
    probe_only: bool,
}

impl Config {
    fn from_env() -> Self {
        let per_window = |per_min: u64, window_secs: u64| -> u32 {
            u32::try_from((per_min * window_secs).div_ceil(60).max(1)).expect("limit fits u32")
        };
        let gitlab_window = env_num("GFJ_BENCH_GITLAB_WINDOW_SECS", 3).max(1);
        let jira_window = env_num("GFJ_BENCH_JIRA_WINDOW_SECS", 3).max(1);
        let c = Self {
            projects: env_num("GFJ_BENCH_PROJECTS", 200) as usize,
            mrs: env_num("GFJ_BENCH_MRS", 400) as usize,
            branches: env_num("GFJ_BENCH_BRANCHES", 400) as usize,
            commits: env_num("GFJ_BENCH_COMMITS", 1000) as usize,
            gitlab_limit: per_window(env_num("GFJ_BENCH_GITLAB_PER_MIN", 2000), gitlab_window),
            gitlab_window: Duration::from_secs(gitlab_window),
            jira_limit: per_window(env_num("GFJ_BENCH_JIRA_PER_MIN", 200), jira_window),
            jira_window: Duration::from_secs(jira_window),
            timeout: Duration::from_secs(env_num("GFJ_BENCH_TIMEOUT_SECS", 3600)),
            probe_only: env_num("GFJ_BENCH_PROBE_ONLY", 0) != 0,
        };
        assert!(c.mrs <= c.branches, "each merge request needs a branch");
        c
    }

    fn gitlab_per_sec(&self) -> f64 {
        f64::from(self.gitlab_limit) / self.gitlab_window.as_secs_f64()
    }

    fn jira_per_sec(&self) -> f64 {
        f64::from(self.jira_limit) / self.jira_window.as_secs_f64()
    }

    fn gitlab_needed_per_project(&self) -> usize {
        self.mrs.div_ceil(100)
            + (self.branches + 1).div_ceil(100)
            + (self.commits + self.branches + 1).div_ceil(100)
            + 2
    }

    fn gitlab_needed(&self) -> usize {
        self.projects.div_ceil(100) + self.projects * self.gitlab_needed_per_project()
    }

    fn keyed_entities(&self) -> usize {
        self.projects * (self.commits + 2 * self.branches + self.mrs)
    }

    fn jira_needed(&self) -> usize {
        self.keyed_entities().div_ceil(1000)
    }

    fn bound_secs(&self) -> (f64, f64) {
        (
            self.gitlab_needed() as f64 / self.gitlab_per_sec(),
            self.jira_needed() as f64 / self.jira_per_sec(),
        )
    }

    /// Issue numbers used by one project.
    fn stride(&self) -> u64 {
        (self.commits + self.branches) as u64 + 1
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A process's memory from `/proc/<pid>/status`, in kB.
#[derive(Debug, Clone, Copy, Default)]
struct Mem {
    /// `VmHWM`: the peak resident set size over the process's life.
    hwm: u64,
    rss: u64,
    anon: u64,
    file: u64,
}

fn memory(pid: u32) -> Option<Mem> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Mem {
        hwm: field("VmHWM:")?,
        rss: field("VmRSS:")?,
        anon: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
    })
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (clock ticks of 1/100 s, as
/// Linux reports them to user space).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Serve's environment: what `tests/e2e/process.rs` sets, plus any service setting (`GFJ_*` of
/// `Settings`) given to the benchmark, e.g. `GFJ_BACKFILL_TASKS`, and `RUST_LOG` and `MALLOC_ARENA_MAX`.
fn serve_env(db_url: &str, port: u16, jira: &JiraSim, gitlab: &GitLabSim) -> Vec<(String, String)> {
    let mut vars: BTreeMap<String, String> = [
        ("GFJ_LISTEN", format!("127.0.0.1:{port}")),
        ("GFJ_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("GFJ_DATABASE_URL", db_url.to_owned()),
        ("GFJ_ENCRYPTION_KEY", TEST_KEY.to_owned()),
        ("GFJ_CONNECT_KEYS_URL", jira.connect_keys_url()),
        ("GFJ_GITLAB_URLS", gitlab.base_url.clone()),
        ("GFJ_JIRA_URLS", "http://127.0.0.1:*".to_owned()),
        ("GFJ_LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let passed = gitlab_for_jira::settings::names().chain(["RUST_LOG", "MALLOC_ARENA_MAX"]);
    for name in passed {
        if let Ok(v) = std::env::var(name)
            && !vars.contains_key(name)
        {
            vars.insert(name.to_owned(), v);
        }
    }
    vars.into_iter().collect()
}

/// Seeds the group: user `bench` (Owner), Premium group `bench` (so that one group hook suffices) with
/// `projects` projects. Returns each project's id and history.
fn seed(gitlab: &GitLabSim, c: &Config) -> Vec<(i64, SeededHistory)> {
    let user = gitlab.add_user("bench", TOKEN);
    let group = gitlab.add_group("bench", None, Plan::Premium);
    gitlab.add_member(group, user, 50);
    let mut out = Vec::with_capacity(c.projects);
    for n in 0..c.projects {
        let id = gitlab.add_project(group, &format!("p{n:03}"));
        let history = gitlab.seed_history(
            id,
            &HistorySpec {
                commits: c.commits,
                branches: c.branches,
                merge_requests: c.mrs,
                key_project: KEY_PROJECT.into(),
                first_issue: n as u64 * c.stride(),
                span: Duration::from_secs(3 * 24 * 3600),
                author_id: user,
            },
        );
        out.push((id, history));
    }
    out
}

/// How long the simulator takes to answer the list pages a backfill reads, on one project (median of 3).
async fn probe(gitlab: &GitLabSim, project: i64) -> Vec<(String, f64)> {
    let http = reqwest::Client::new();
    let until = "2100-01-01T00:00:00Z";
    let paths = [
        "merge_requests?state=all&order_by=created_at&sort=asc&per_page=100&page=1".to_owned(),
        "merge_requests?state=opened&per_page=100&page=1".to_owned(),
        "repository/branches?per_page=100&page=1".to_owned(),
        format!("repository/commits?all=true&until={until}&per_page=100&page=1"),
        format!("repository/commits?all=true&until={until}&per_page=100&page=8"),
        "pipelines?order_by=id&sort=asc&per_page=100&page=1".to_owned(),
        "deployments?per_page=100&page=1".to_owned(),
    ];
    let mut out = Vec::new();
    for path in paths {
        let url = format!("{}/api/v4/projects/{project}/{path}", gitlab.base_url);
        let mut times = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let resp = http
                .get(&url)
                .header("private-token", TOKEN)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{url}: {}", resp.status());
            resp.bytes().await.unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        out.push((path, times[1]));
    }
    out
}

fn spawn_serve(vars: &[(String, String)], log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"))
        .arg("serve")
        .env_clear()
        .envs(vars.iter().cloned())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start gitlab-for-jira serve")
}

/// Whether `base` answers `/readyz` within a minute.
async fn ready(base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `serve` in its own process, once it answers `/readyz`.
async fn start_serve(vars: &[(String, String)], log: &std::path::Path) -> Child {
    let mut child = spawn_serve(vars, log);
    let base = &vars.iter().find(|(k, _)| k == "GFJ_BASE_URL").unwrap().1;
    if !ready(base).await {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "serve did not become ready; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    child
}

fn stop_serve(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Warnings and errors in serve's JSON log: count per level, and the most frequent messages.
fn log_summary(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut levels: BTreeMap<String, usize> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let level = v["level"].as_str().unwrap_or("?").to_owned();
        *levels.entry(level.clone()).or_default() += 1;
        if level == "WARN" || level == "ERROR" {
            let f = &v["fields"];
            let mut m = format!("{level} {}", f["message"].as_str().unwrap_or(""));
            if let Some(e) = f["error"].as_str() {
                m.push_str(&format!(
                    " (error: {})",
                    e.chars().take(160).collect::<String>()
                ));
            }
            *messages.entry(m).or_default() += 1;
        }
    }
    let mut out = vec![format!(
        "log lines by level: {}",
        levels
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let mut top: Vec<(String, usize)> = messages.into_iter().collect();
    top.sort_by_key(|m| std::cmp::Reverse(m.1));
    for (m, n) in top.into_iter().take(8) {
        out.push(format!("  {n} × {m}"));
    }
    out
}

/// Which list (or other call) a GitLab request was.
fn gitlab_kind(path: &str, query: &str) -> &'static str {
    let rest = path.strip_prefix("/api/v4").unwrap_or(path);
    if rest.contains("/merge_requests") {
        if query.contains("state=opened") {
            "merge requests, open (keys for branches)"
        } else {
            "merge requests"
        }
    } else if rest.contains("/repository/branches") {
        "branches"
    } else if rest.contains("/repository/commits") {
        "commits"
    } else if rest.contains("/pipelines") {
        "pipelines"
    } else if rest.contains("/deployments") {
        "deployments"
    } else if rest.contains("/feature_flags") {
        "feature flags"
    } else if rest.starts_with("/groups/") && rest.ends_with("/projects") {
        "group projects"
    } else if rest.starts_with("/projects/") && rest.matches('/').count() == 2 {
        "project"
    } else {
        "other (link: user, group, member, hooks)"
    }
}

/// What the Jira simulator received, counted from its request log.
#[derive(Default)]
struct JiraTally {
    by_status: BTreeMap<u16, usize>,
    by_route: BTreeMap<String, usize>,
    devinfo_accepted: usize,
    /// Entities in accepted devinfo requests (repeats included), and their JSON bytes.
    entities_sent: usize,
    body_bytes: usize,
    max_entities_in_one: usize,
    /// Accepted requests whose entities (type, repository, id, sequence number) repeat an earlier one's.
    repeated_requests: usize,
    /// Entities of each type in accepted requests, repeats included.
    sent: BTreeMap<&'static str, usize>,
    /// The same, without the requests that repeat an earlier one.
    sent_once: BTreeMap<&'static str, usize>,
    /// Branches sent that were not seeded (the seeded ones are `feature/…`): count and a few names.
    other_branches: HashSet<(String, String)>,
    /// Distinct (repository, id) of each type accepted.
    distinct: BTreeMap<&'static str, HashSet<(String, String)>>,
}

fn tally_jira(jira: &JiraSim, skip: usize) -> JiraTally {
    let mut t = JiraTally::default();
    let mut fingerprints = HashSet::new();
    for r in jira.requests().into_iter().skip(skip) {
        *t.by_status.entry(r.status).or_default() += 1;
        let route = r.path.split('?').next().unwrap_or("").to_owned();
        *t.by_route
            .entry(format!("{} {route}", r.method))
            .or_default() += 1;
        if !(r.method == "POST" && route.ends_with("/devinfo/0.10/bulk") && r.status == 202) {
            continue;
        }
        let Some(body) = r.body else { continue };
        t.devinfo_accepted += 1;
        t.body_bytes += serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0);
        let mut in_this = 0;
        let mut by_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut fingerprint = Vec::new();
        for repo in body["repositories"].as_array().into_iter().flatten() {
            let repo_id = repo["id"].as_str().unwrap_or("").to_owned();
            for kind in ["commits", "branches", "pullRequests"] {
                for e in repo[kind].as_array().into_iter().flatten() {
                    in_this += 1;
                    *by_kind.entry(kind).or_default() += 1;
                    let name = e["name"].as_str().unwrap_or("");
                    if kind == "branches" && !name.starts_with("feature/") {
                        t.other_branches.insert((repo_id.clone(), name.to_owned()));
                    }
                    fingerprint.push(format!(
                        "{kind}/{repo_id}/{}/{}",
                        e["id"].as_str().unwrap_or(""),
                        e["updateSequenceId"]
                    ));
                    t.distinct
                        .entry(kind)
                        .or_default()
                        .insert((repo_id.clone(), e["id"].as_str().unwrap_or("").to_owned()));
                }
            }
        }
        fingerprint.sort();
        let repeated = !fingerprints.insert(fingerprint);
        t.repeated_requests += usize::from(repeated);
        for (kind, n) in by_kind {
            *t.sent.entry(kind).or_default() += n;
            if !repeated {
                *t.sent_once.entry(kind).or_default() += n;
            }
        }
        t.entities_sent += in_this;
        t.max_entities_in_one = t.max_entities_in_one.max(in_this);
    }
    t
}

/// Samples issue keys of the first, a middle and the last project and checks Jira shows what GitLab holds.
fn check_samples(jira: &JiraSim, seeded: &[(i64, SeededHistory)]) -> Vec<String> {
    let mut problems = Vec::new();
    let n = seeded.len();
    for &p in &[0, n / 2, n.saturating_sub(1)] {
        let Some((_, h)) = seeded.get(p) else {
            continue;
        };
        let c = h.commits.len();
        for idx in [0, c / 2, c.saturating_sub(1)] {
            let Some((sha, key)) = h.commits.get(idx) else {
                continue;
            };
            let view = jira.issue(key);
            if !view.commits.iter().any(|x| x["id"] == sha.as_str()) {
                problems.push(format!("{key}: commit {sha} missing"));
            }
        }
        // Branches with each state of merge request, and one without any.
        let mut picked = Vec::new();
        for want in [Some("merged"), Some("opened"), Some("closed"), None] {
            if let Some(b) = h
                .branches
                .iter()
                .find(|b| b.merge_request.map(|m| m.1) == want)
            {
                picked.push(b);
            }
        }
        for b in picked {
            let view = jira.issue(&b.key);
            if !view.commits.iter().any(|x| x["id"] == b.sha.as_str()) {
                problems.push(format!("{}: branch commit {} missing", b.key, b.sha));
            }
            if !view
                .branches
                .iter()
                .any(|x| x["name"] == b.name.as_str() && x["lastCommit"]["id"] == b.sha.as_str())
            {
                problems.push(format!("{}: branch {} missing or stale", b.key, b.name));
            }
            if let Some((_, state)) = b.merge_request {
                let want = match state {
                    "merged" => "MERGED",
                    "closed" => "DECLINED",
                    _ => "OPEN",
                };
                if !view.pull_requests.iter().any(|x| x["status"] == want) {
                    problems.push(format!(
                        "{}: {want} merge request missing: {:?}",
                        b.key, view.pull_requests
                    ));
                }
            }
        }
    }
    problems
}

fn main() {
    let c = Config::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(run(c));
    if !ok {
        std::process::exit(1);
    }
}

async fn run(c: Config) -> bool {
    let (gitlab_bound, jira_bound) = c.bound_secs();
    let bound = gitlab_bound.max(jira_bound);
    println!("# gitlab-for-jira backfill benchmark\n");
    println!(
        "group: {} projects × ({} MRs, {} branches, {} commits on the default branch); GitLab limit {} per {} s ({:.0}/min); Jira limit {} per {} s ({:.0}/min)",
        c.projects,
        c.mrs,
        c.branches,
        c.commits,
        c.gitlab_limit,
        c.gitlab_window.as_secs(),
        c.gitlab_per_sec() * 60.0,
        c.jira_limit,
        c.jira_window.as_secs(),
        c.jira_per_sec() * 60.0,
    );

    let gitlab = GitLabSim::start().await.unwrap();
    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let t = Instant::now();
    let seeded = seed(&gitlab, &c);
    println!("seeded in {:.1} s", t.elapsed().as_secs_f64());
    if let Some((project, _)) = seeded.first() {
        println!("simulator, one page read on a seeded project (median of 3, no rate limit):");
        for (path, ms) in probe(&gitlab, *project).await {
            println!("  {ms:8.1} ms  GET …/{path}");
        }
    }
    if c.probe_only {
        return true;
    }

    let dir = std::env::temp_dir().join(format!("gfj-bench-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db_url = format!("sqlite://{}", dir.join("bench.db").display());
    let log = dir.join("serve.log");
    let port = gfj_sim::free_port();
    let vars = serve_env(&db_url, port, &jira, &gitlab);
    let child = start_serve(&vars, &log).await;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(jira.install(&base).await.unwrap(), 204, "install");
    let settings = Settings::from_map(&vars.iter().cloned().collect()).unwrap();
    let store = settings.open_store().await.unwrap();

    gitlab.set_rate_limit(c.gitlab_limit, c.gitlab_window);
    jira.set_rate_limit(Some(RateLimit {
        requests: c.jira_limit,
        window: c.jira_window,
    }));
    let gitlab_skip = gitlab.requests().len();
    let jira_skip = jira.requests().len();

    // Peak RSS, sampled beside the end-of-run VmHWM.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop_sampling.clone();
        std::thread::spawn(move || {
            let mut peak = Mem::default();
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = memory(pid)
                    && m.rss > peak.rss
                {
                    peak = m;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        })
    };

    let (serve_cpu0, sims_cpu0) = (cpu_secs(&pid.to_string()), cpu_secs("self"));
    println!(
        "\nlinking; lower bound {bound:.1} s (GitLab {gitlab_bound:.1} s, Jira {jira_bound:.1} s)"
    );
    let started = Instant::now();
    let req = LinkRequest {
        site: jira.client_key().into(),
        group: "bench".into(),
        gitlab_url: gitlab.base_url.clone(),
        gitlab_token: TOKEN.into(),
        gitlab_connection: None,
        hook_mode: HookMode::Auto,
    };
    link::link(&settings, &store, req, now_ms())
        .await
        .expect("link");
    let expected_tasks = c.projects * KINDS;
    let mut last_report = Instant::now();
    let mut failed = false;
    // When the last task was done (its pages read); sending what they read may take longer.
    let mut tasks_done: Option<Duration> = None;
    let elapsed = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let tasks = store.backfill_tasks(None).await.unwrap();
        let failures: Vec<_> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .collect();
        if !failures.is_empty() {
            eprintln!("{} backfill task(s) failed:", failures.len());
            for t in failures.iter().take(10) {
                eprintln!(
                    "  {} {}: {}",
                    t.project_path,
                    t.entity.as_str(),
                    t.error.as_deref().unwrap_or("?")
                );
            }
            failed = true;
            break started.elapsed();
        }
        let done = tasks.iter().filter(|t| t.state == TaskState::Done).count();
        if tasks.len() >= expected_tasks && done == tasks.len() {
            tasks_done.get_or_insert(started.elapsed());
            let jobs = store.jobs().await.unwrap();
            if !jobs.iter().any(|j| j.kind.starts_with("backfill")) {
                break started.elapsed();
            }
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let sent: i64 = tasks.iter().map(|t| t.items_sent).sum();
            let errors = tasks.iter().filter(|t| t.error.is_some()).count();
            println!(
                "  {:6.1} s: tasks {done}/{} done, {sent} items sent, GitLab requests {}, RSS {:.1} MB{}",
                started.elapsed().as_secs_f64(),
                tasks.len(),
                gitlab.requests().len() - gitlab_skip,
                mb(memory(pid).map(|m| m.rss).unwrap_or(0)),
                if errors > 0 {
                    format!(", {errors} tasks retrying after an error")
                } else {
                    String::new()
                }
            );
        }
        if started.elapsed() > c.timeout {
            eprintln!(
                "timed out after {:.0} s with {done}/{} tasks done",
                c.timeout.as_secs_f64(),
                tasks.len()
            );
            failed = true;
            break started.elapsed();
        }
    };
    let end = memory(pid).unwrap_or_default();
    let serve_cpu = cpu_secs(&pid.to_string()) - serve_cpu0;
    let sims_cpu = cpu_secs("self") - sims_cpu0;
    stop_sampling.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let secs = elapsed.as_secs_f64();

    // GitLab's side.
    let gl: Vec<_> = gitlab.requests().into_iter().skip(gitlab_skip).collect();
    let mut gl_kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for r in &gl {
        let e = gl_kinds.entry(gitlab_kind(&r.path, &r.query)).or_default();
        e.0 += 1;
        if r.status == 429 {
            e.1 += 1;
        }
    }
    let gl_429 = gl.iter().filter(|r| r.status == 429).count();
    let gl_last = gl
        .iter()
        .map(|r| r.at.saturating_duration_since(started).as_secs_f64())
        .fold(0.0, f64::max);

    // Jira's side, and what it holds.
    let jt = tally_jira(&jira, jira_skip);
    let jira_total: usize = jt.by_status.values().sum();
    let distinct = |k: &str| jt.distinct.get(k).map_or(0, HashSet::len);
    let want_commits = c.projects * (c.commits + c.branches);
    let want_branches = c.projects * c.branches;
    let want_prs = c.projects * c.mrs;
    let mut problems = check_samples(&jira, &seeded);
    for (kind, got, want) in [
        ("commits", distinct("commits"), want_commits),
        ("branches", distinct("branches"), want_branches),
        ("pull requests", distinct("pullRequests"), want_prs),
    ] {
        if got < want {
            problems.push(format!("{kind}: {got} distinct in Jira, {want} expected"));
        }
    }

    let ratio = secs / bound;
    println!("\n## Result\n");
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| time, link → backfill finished (every task done, nothing left to send) | {secs:.1} s (tasks done at {:.1} s) |",
        tasks_done.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    println!(
        "| lower bound | {bound:.1} s = max(GitLab {} / {:.2} per s = {gitlab_bound:.1} s, Jira {} / {:.2} per s = {jira_bound:.1} s) |",
        c.gitlab_needed(),
        c.gitlab_per_sec(),
        c.jira_needed(),
        c.jira_per_sec()
    );
    println!(
        "| ratio to the bound | **{ratio:.2}** (target ≤ 1.2: {}) |",
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );
    println!(
        "| serve peak RSS (VmHWM) | **{:.1} MB** (target < 64 MB: {}) |",
        mb(end.hwm),
        if mb(end.hwm) < 64.0 { "met" } else { "NOT met" },
    );
    println!(
        "| serve RSS, highest sample (every 200 ms) / at the end | {:.1} MB (anonymous {:.1}, file {:.1}) / {:.1} MB (anonymous {:.1}, file {:.1}) |",
        mb(peak.rss),
        mb(peak.anon),
        mb(peak.file),
        mb(end.rss),
        mb(end.anon),
        mb(end.file)
    );
    println!(
        "| CPU used during the run | serve {serve_cpu:.0} s, simulators and this driver {sims_cpu:.0} s (2 cores: {:.0} s available) |",
        2.0 * secs
    );
    println!(
        "| GitLab requests | {} ({gl_429} answered 429), needed {}: {:.2}× ; last one at {gl_last:.1} s |",
        gl.len(),
        c.gitlab_needed(),
        gl.len() as f64 / c.gitlab_needed() as f64
    );
    println!(
        "| Jira requests | {jira_total} ({} answered 429), needed {}: {:.2}× |",
        jt.by_status.get(&429).copied().unwrap_or(0),
        c.jira_needed(),
        jira_total as f64 / c.jira_needed() as f64
    );
    println!(
        "| devinfo requests accepted | {}, {} entities ({:.0} per request, at most {}), {:.1} MB of JSON |",
        jt.devinfo_accepted,
        jt.entities_sent,
        jt.entities_sent as f64 / jt.devinfo_accepted.max(1) as f64,
        jt.max_entities_in_one,
        jt.body_bytes as f64 / 1e6
    );
    let sent = |k: &str| jt.sent.get(k).copied().unwrap_or(0);
    let once = |k: &str| jt.sent_once.get(k).copied().unwrap_or(0);
    println!(
        "| entities: sent / sent without repeated requests / distinct / expected | commits {} / {} / {} / {want_commits}, branches {} / {} / {} / {want_branches}, pull requests {} / {} / {} / {want_prs} |",
        sent("commits"),
        once("commits"),
        distinct("commits"),
        sent("branches"),
        once("branches"),
        distinct("branches"),
        sent("pullRequests"),
        once("pullRequests"),
        distinct("pullRequests")
    );
    println!(
        "| accepted devinfo requests repeating an earlier one exactly (same entities and sequence numbers) | {} |",
        jt.repeated_requests
    );
    if !jt.other_branches.is_empty() {
        let names: BTreeMap<&str, usize> =
            jt.other_branches
                .iter()
                .fold(BTreeMap::new(), |mut m, (_, name)| {
                    *m.entry(name.as_str()).or_default() += 1;
                    m
                });
        println!(
            "| branches sent that were not seeded as keyed branches | {} ({names:?}) |",
            jt.other_branches.len()
        );
    }
    println!("\nGitLab requests by list (429s in brackets):");
    for (kind, (n, limited)) in &gl_kinds {
        println!("  {n:7} [{limited}]  {kind}");
    }
    println!("Jira requests by route:");
    for (route, n) in &jt.by_route {
        println!("  {n:7}  {route}");
    }
    println!("Jira answers by status: {:?}", jt.by_status);

    stop_serve(child);
    println!("\nserve's log ({}):", log.display());
    for line in log_summary(&log) {
        println!("  {line}");
    }
    store.close().await;
    if problems.is_empty() {
        println!(
            "\ncorrectness: every expected entity reached Jira; sampled keys show the right commits, branches and merge request states"
        );
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("\ncorrectness: {} problem(s):", problems.len());
        for p in problems.iter().take(20) {
            println!("  {p}");
        }
        println!("(kept {} for inspection)", dir.display());
    }
    !failed && problems.is_empty()
}
