//! The GitLab simulator behaves like GitLab where our client depends on it: pagination, throttling,
//! faults, hooks (filtering, signing, auto-disable), OAuth with PKCE, and repository pushes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use gfj_sim::gitlab::{AlertStatus, GitLabSim, Plan};
use serde_json::{Value, json};

const DAY: Duration = Duration::from_secs(86_400);

/// A webhook receiver that records every request and answers with a settable status.
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    status: Arc<AtomicU16>,
}

#[derive(Clone)]
struct ReceiverState {
    hits: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start(status: u16) -> Self {
        let state = ReceiverState {
            hits: Arc::default(),
            status: Arc::new(AtomicU16::new(status)),
        };
        async fn record(
            State(st): State<ReceiverState>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            st.hits.lock().unwrap().push((headers, body));
            StatusCode::from_u16(st.status.load(Ordering::SeqCst)).unwrap()
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            hits: state.hits,
            status: state.status,
        }
    }

    fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    fn header(&self, n: usize, name: &str) -> Option<String> {
        self.hits.lock().unwrap()[n]
            .0
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn body(&self, n: usize) -> Value {
        serde_json::from_slice(&self.hits.lock().unwrap()[n].1).unwrap()
    }
}

/// A Premium group `acme` owned by `owner` (token `glpat-owner`) with one project `app`.
struct World {
    sim: GitLabSim,
    http: reqwest::Client,
    owner: i64,
    group: i64,
    project: i64,
}

impl World {
    async fn new() -> Self {
        let sim = GitLabSim::start().await.unwrap();
        let owner = sim.add_user("owner", "glpat-owner");
        let group = sim.add_group("acme", None, Plan::Premium);
        sim.add_member(group, owner, 50);
        let project = sim.add_project(group, "app");
        Self {
            sim,
            http: reqwest::Client::new(),
            owner,
            group,
            project,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/api/v4{path}", self.sim.base_url)
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(path, "glpat-owner").await
    }

    async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("PRIVATE-TOKEN", token)
            .send()
            .await
            .unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(path))
            .header("PRIVATE-TOKEN", "glpat-owner")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn project_hook(&self, body: Value) -> i64 {
        let (status, hook) = self
            .send(
                reqwest::Method::POST,
                &format!("/projects/{}/hooks", self.project),
                body,
            )
            .await;
        assert_eq!(status, 201, "{hook}");
        hook["id"].as_i64().unwrap()
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn next_link(r: &reqwest::Response) -> Option<String> {
    let link = header(r, "link")?;
    link.split(", ")
        .find(|part| part.ends_with("rel=\"next\""))
        .map(|part| part[1..part.find('>').unwrap()].to_owned())
}

fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn rate_limit_headers_then_429_until_the_window_turns() {
    let w = World::new().await;
    let other = w.sim.add_user("other", "glpat-other");
    w.sim.add_member(w.group, other, 30);
    assert!(
        header(&w.get("/user").await, "ratelimit-limit").is_none(),
        "off by default"
    );

    // A day-long window, so the three requests cannot straddle a window boundary.
    w.sim.set_rate_limit(3, DAY);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for remaining in ["2", "1", "0"] {
        let r = w.get("/user").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "ratelimit-name").unwrap(),
            "throttle_authenticated_api"
        );
        assert_eq!(header(&r, "ratelimit-limit").unwrap(), "3");
        assert_eq!(header(&r, "ratelimit-remaining").unwrap(), remaining);
        let reset: i64 = header(&r, "ratelimit-reset").unwrap().parse().unwrap();
        assert!(
            reset > now && reset <= now + 86_401,
            "reset is epoch seconds: {reset}"
        );
    }
    let r = w.get("/user").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "ratelimit-observed").unwrap(), "4");
    let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert!(header(&r, "ratelimit-resettime").unwrap().ends_with(" GMT"));
    assert!(
        header(&r, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.unwrap().trim(), "Retry later");

    // The budget is per user.
    assert_eq!(w.get_as("/user", "glpat-other").await.status(), 200);
    w.sim.advance_clock(DAY);
    let r = w.get("/user").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "ratelimit-remaining").unwrap(), "2");

    let statuses: Vec<u16> = w.sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 200, 200]);
    assert!(
        w.sim
            .requests()
            .iter()
            .all(|r| r.path == "/api/v4/user" && r.method == "GET")
    );
}

#[tokio::test]
async fn fail_next_answers_the_next_requests_with_the_fault() {
    let w = World::new().await;
    w.sim.fail_next(2, 503);
    for _ in 0..2 {
        let r = w.get("/user").await;
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.json::<Value>().await.unwrap()["message"],
            "503 Service Unavailable"
        );
    }
    w.sim.fail_next(1, 502);
    let r = w.get(&format!("/projects/{}", w.project)).await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("GitLab is not responding"));
    assert_eq!(w.get("/user").await.status(), 200);
    let log = w.sim.requests();
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 503, 502, 200]
    );
    assert_eq!(log[2].path, format!("/api/v4/projects/{}", w.project));
}

/// 350 projects spread over nested subgroups, one archived project and one shared into the group.
#[tokio::test]
async fn group_projects_list_each_project_once_with_keyset_and_offset() {
    let w = World::new().await;
    let a = w.sim.add_group("a", Some(w.group), Plan::Premium);
    let b = w.sim.add_group("b", Some(a), Plan::Premium);
    let c = w.sim.add_group("c", Some(w.group), Plan::Premium);
    let mut expected = vec![w.project];
    for n in 0..349 {
        let g = [w.group, a, b, c][n % 4];
        expected.push(w.sim.add_project(g, &format!("p{n}")));
    }
    let archived = w.sim.add_project(b, "old");
    w.sim.archive_project(archived);
    let elsewhere = w.sim.add_group("elsewhere", None, Plan::Free);
    w.sim.add_member(elsewhere, w.owner, 50);
    let shared = w.sim.add_project(elsewhere, "lib");
    w.sim.share_project(shared, w.group);
    let gone = w.sim.add_project(c, "gone");
    w.sim.remove_project(gone);
    expected.sort();

    // Keyset, ascending: only a Link header, followed verbatim, no counts.
    let base = format!(
        "/groups/{}/projects?include_subgroups=true&with_shared=false&archived=false&pagination=keyset&order_by=id&sort=asc&per_page=100",
        w.group
    );
    let mut seen = Vec::new();
    let mut url = w.url(&base);
    let mut pages = 0;
    loop {
        let r = w.get(&url).await;
        assert_eq!(r.status(), 200);
        assert!(header(&r, "x-total").is_none() && header(&r, "x-next-page").is_none());
        let next = next_link(&r);
        seen.extend(ids(&r.json().await.unwrap()));
        pages += 1;
        match next {
            Some(n) => {
                assert!(
                    n.contains("id_after=") && n.contains("with_shared=false"),
                    "{n}"
                );
                url = n;
            }
            None => break,
        }
    }
    assert_eq!(pages, 4, "100 + 100 + 100 + 50, the short page has no link");
    assert_eq!(seen, expected, "ascending, each project exactly once");

    // Descending keyset walks backwards with id_before; a full last page leads to one empty page.
    let mut url = w.url(
        &base
            .replace("sort=asc", "sort=desc")
            .replace("per_page=100", "per_page=50"),
    );
    let mut desc = Vec::new();
    let mut empty_pages = 0;
    loop {
        let r = w.get(&url).await;
        let next = next_link(&r);
        let page = ids(&r.json().await.unwrap());
        empty_pages += usize::from(page.is_empty());
        desc.extend(page);
        match next {
            Some(n) => {
                assert!(n.contains("id_before="), "{n}");
                url = n;
            }
            None => break,
        }
    }
    assert_eq!(empty_pages, 1);
    assert_eq!(desc, expected.iter().rev().copied().collect::<Vec<_>>());

    // Offset with GitLab's defaults: with_shared=true, archived included; per_page clamped to 100.
    let mut page = "1".to_owned();
    let mut offset = Vec::new();
    loop {
        let r = w
            .get(&format!(
                "/groups/{}/projects?include_subgroups=true&order_by=id&sort=asc&per_page=500&page={page}",
                w.group
            ))
            .await;
        assert_eq!(header(&r, "x-per-page").unwrap(), "100");
        assert_eq!(header(&r, "x-total").unwrap(), "352");
        assert_eq!(header(&r, "x-total-pages").unwrap(), "4");
        let next = header(&r, "x-next-page").unwrap();
        offset.extend(ids(&r.json().await.unwrap()));
        if next.is_empty() {
            break;
        }
        page = next;
    }
    assert_eq!(offset.len(), 352);
    assert_eq!(offset.iter().collect::<HashSet<_>>().len(), 352);
    assert!(offset.contains(&shared) && offset.contains(&archived) && !offset.contains(&gone));

    let count = |r: reqwest::Response| header(&r, "x-total").unwrap();
    let direct = format!("/groups/{}/projects", w.group);
    // Without include_subgroups only the group's own projects (and the shared one) are listed.
    assert_eq!(count(w.get(&direct).await), (88 + 1 + 1).to_string());
    assert_eq!(
        count(w.get(&format!("{direct}?with_shared=false")).await),
        "89"
    );
    assert_eq!(
        count(
            w.get(&format!("{direct}?include_subgroups=true&archived=true"))
                .await
        ),
        "1"
    );
    // Default order is newest first.
    let r = w.get(&direct).await;
    let first = ids(&r.json().await.unwrap());
    assert!(first.windows(2).all(|p| p[0] > p[1]));
    let bad = w
        .get(&format!("{direct}?pagination=keyset&order_by=name"))
        .await;
    assert_eq!(bad.status(), 405);
}

#[tokio::test]
async fn subgroups_descendants_and_inherited_members() {
    let w = World::new().await;
    let zed = w.sim.add_group("zed", Some(w.group), Plan::Premium);
    let alpha = w.sim.add_group("alpha", Some(w.group), Plan::Premium);
    let deep = w.sim.add_group("deep", Some(alpha), Plan::Premium);
    let dev = w.sim.add_user("dev", "glpat-dev");
    w.sim.add_member(deep, dev, 30);

    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|g| g["full_path"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = w.get(&format!("/groups/{}/subgroups", w.group)).await;
    assert_eq!(names(r.json().await.unwrap()), ["acme/alpha", "acme/zed"]);
    let r = w
        .get(&format!("/groups/{}/descendant_groups", w.group))
        .await;
    assert_eq!(
        names(r.json().await.unwrap()),
        ["acme/alpha", "acme/alpha/deep", "acme/zed"]
    );

    let r = w.get(&format!("/groups/{deep}/members/all")).await;
    let members: Vec<(i64, i64)> = r
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_i64().unwrap(),
                m["access_level"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        members,
        [(w.owner, 50), (dev, 30)],
        "inherited Owner and direct Developer"
    );
    let r = w.get(&format!("/groups/{zed}/members/all")).await;
    assert_eq!(ids(&r.json().await.unwrap()), [w.owner]);

    // A member of a subgroup sees the path down to it, but not its siblings.
    assert_eq!(
        w.get_as(&format!("/groups/{}", w.group), "glpat-dev")
            .await
            .status(),
        200
    );
    assert_eq!(
        w.get_as(&format!("/groups/{zed}"), "glpat-dev")
            .await
            .status(),
        404
    );
    let r = w
        .get_as(
            &format!("/groups/{}/descendant_groups", w.group),
            "glpat-dev",
        )
        .await;
    assert_eq!(
        names(r.json().await.unwrap()),
        ["acme/alpha", "acme/alpha/deep"]
    );
}

#[tokio::test]
async fn hook_crud_stores_every_flag_and_never_returns_tokens() {
    let w = World::new().await;
    let hooks = format!("/projects/{}/hooks", w.project);
    let (status, body) = w.send(reqwest::Method::POST, &hooks, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("url is missing"))
    );

    let signing = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let (status, created) = w
        .send(
            reqwest::Method::POST,
            &hooks,
            json!({ "url": "http://127.0.0.1:9/a", "token": "s3cret", "signing_token": signing, "name": "jira", "merge_requests_events": true }),
        )
        .await;
    assert_eq!(status, 201);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["push_events"], true);
    assert_eq!(created["merge_requests_events"], true);
    assert_eq!(created["pipeline_events"], false);
    assert_eq!(created["deployment_events"], false);
    assert!(created.get("project_events").is_none(), "group-only flag");
    assert_eq!(created["alert_status"], "executable");
    assert_eq!(created["disabled_until"], Value::Null);
    assert_eq!(created["name"], "jira");
    assert_eq!(
        (
            created["token_present"].as_bool(),
            created["signing_token_present"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(created.get("token").is_none() && created.get("signing_token").is_none());
    assert!(created["created_at"].as_str().unwrap().contains('T'));
    assert_eq!(w.sim.hook_signing_token(id).unwrap(), signing);

    // A new URL drops the token unless one comes with it.
    let one = format!("{hooks}/{id}");
    let (_, updated) = w
        .send(
            reqwest::Method::PUT,
            &one,
            json!({ "url": "http://127.0.0.1:9/b" }),
        )
        .await;
    assert_eq!(updated["token_present"], false);
    assert_eq!(
        updated["merge_requests_events"], true,
        "untouched flags stay"
    );
    let (_, updated) = w
        .send(
            reqwest::Method::PUT,
            &one,
            json!({ "url": "http://127.0.0.1:9/c", "token": "new" }),
        )
        .await;
    assert_eq!(updated["token_present"], true);
    assert_eq!(w.sim.hook_token(id).unwrap(), "new");
    let (status, _) = w
        .send(
            reqwest::Method::PUT,
            &one,
            json!({ "signing_token": "whsec_short" }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = w
        .send(
            reqwest::Method::PUT,
            &one,
            json!({ "push_events": "maybe" }),
        )
        .await;
    assert_eq!(status, 400);

    let r = w.get(&one).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["url"],
        "http://127.0.0.1:9/c"
    );
    let r = w.get(&hooks).await;
    assert_eq!(header(&r, "x-total").unwrap(), "1");

    // Group hooks: Premium and Owner only; they carry the group-only flags.
    let (status, group_hook) = w
        .send(
            reqwest::Method::POST,
            &format!("/groups/{}/hooks", w.group),
            json!({ "url": "http://127.0.0.1:9/g", "project_events": true }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        (
            group_hook["project_events"].as_bool(),
            group_hook["subgroup_events"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let maint = w.sim.add_user("maint", "glpat-maint");
    w.sim.add_member(w.group, maint, 40);
    let r = w
        .http
        .post(w.url(&format!("/groups/{}/hooks", w.group)))
        .header("PRIVATE-TOKEN", "glpat-maint")
        .json(&json!({ "url": "http://127.0.0.1:9/m" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let (status, _) = w.send(reqwest::Method::DELETE, &one, Value::Null).await;
    assert_eq!(status, 204);
    assert_eq!(w.get(&one).await.status(), 404);
    let gid = group_hook["id"].as_i64().unwrap();
    w.sim.delete_hook_externally(gid);
    assert!(w.sim.hook(gid).is_none());
    assert_eq!(
        w.get(&format!("/groups/{}/hooks/{gid}", w.group))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn deliveries_follow_the_event_flags_and_carry_gitlabs_headers() {
    let w = World::new().await;
    let push = Receiver::start(200).await;
    let tags_only = Receiver::start(200).await;
    let group = Receiver::start(200).await;
    let push_hook = w
        .project_hook(json!({ "url": push.url, "token": "tok" }))
        .await;
    w.project_hook(json!({ "url": tags_only.url, "push_events": false, "tag_push_events": true }))
        .await;
    let (status, _) = w
        .send(
            reqwest::Method::POST,
            &format!("/groups/{}/hooks", w.group),
            json!({ "url": group.url, "push_events": true, "project_events": true }),
        )
        .await;
    assert_eq!(status, 201);

    w.sim.push(w.project, "main", &["one"], w.owner).await;
    w.sim.push(w.project, "main", &["two"], w.owner).await;
    assert_eq!((push.count(), tags_only.count(), group.count()), (2, 0, 2));
    assert_eq!(push.header(0, "x-gitlab-event").unwrap(), "Push Hook");
    assert_eq!(push.header(0, "user-agent").unwrap(), "GitLab/19.5.0");
    assert_eq!(push.header(0, "x-gitlab-token").unwrap(), "tok");
    assert!(
        group.header(0, "x-gitlab-token").is_none(),
        "no token, no header"
    );
    assert_eq!(push.header(0, "x-gitlab-instance").unwrap(), w.sim.base_url);
    assert_eq!(
        push.header(0, "x-gitlab-webhook-uuid"),
        push.header(1, "x-gitlab-webhook-uuid")
    );
    assert_ne!(
        push.header(0, "x-gitlab-webhook-uuid"),
        group.header(0, "x-gitlab-webhook-uuid")
    );
    assert_ne!(
        push.header(0, "idempotency-key"),
        push.header(1, "idempotency-key")
    );
    assert_ne!(
        push.header(0, "idempotency-key"),
        group.header(0, "idempotency-key")
    );
    assert_eq!(
        push.header(0, "x-gitlab-event-uuid"),
        group.header(0, "x-gitlab-event-uuid"),
        "one event"
    );
    assert!(
        push.header(0, "webhook-signature").is_none(),
        "no signing token, no signature"
    );

    // Project events reach group hooks only.
    let created = w.sim.create_project(w.group, "new").await;
    assert_eq!((push.count(), group.count()), (2, 3));
    assert_eq!(group.header(2, "x-gitlab-event").unwrap(), "Project Hook");
    assert_eq!(group.body(2)["project_id"], created);
    // The group hook does not subscribe to subgroup events.
    w.sim
        .deliver_group_event(
            w.group,
            "Subgroup Hook",
            json!({ "event_name": "subgroup_create" }),
        )
        .await;
    assert_eq!(group.count(), 3);
    let d = w.sim.deliveries();
    assert_eq!(d.iter().filter(|d| d.hook_id == push_hook).count(), 2);
    assert!(d.iter().all(|d| d.status == Some(200) && !d.skipped));
}

/// HMAC-SHA256 written independently of the simulator's, checked against RFC 4231 below.
fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = key.to_vec();
    if k.len() > 64 {
        k = Sha256::digest(&k).to_vec();
    }
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::digest([ipad.as_slice(), msg].concat());
    Sha256::digest([opad.as_slice(), &inner[..]].concat()).to_vec()
}

#[tokio::test]
async fn signed_deliveries_verify_as_standard_webhooks() {
    let rfc4231 = hmac(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        gfj_core::qsh::hex(&rfc4231),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let w = World::new().await;
    let rx = Receiver::start(204).await;
    let secret: Vec<u8> = (0u8..32).collect();
    let token = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&secret)
    );
    w.project_hook(json!({ "url": rx.url, "signing_token": token }))
        .await;
    w.sim.push(w.project, "main", &["signed"], w.owner).await;

    let id = rx.header(0, "webhook-id").unwrap();
    assert_eq!(Some(id.clone()), rx.header(0, "idempotency-key"));
    let ts: i64 = rx.header(0, "webhook-timestamp").unwrap().parse().unwrap();
    assert!((ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    let body = rx.hits.lock().unwrap()[0].1.clone();
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac(&secret, &signed))
    );
    assert_eq!(rx.header(0, "webhook-signature").unwrap(), expected);
    assert_eq!(rx.body(0)["object_kind"], "push");
}

#[tokio::test]
async fn failing_receivers_disable_the_hook_and_a_test_delivery_revives_it() {
    let w = World::new().await;
    let rx = Receiver::start(500).await;
    let hook = w.project_hook(json!({ "url": rx.url })).await;
    let api = format!("/projects/{}/hooks/{hook}", w.project);

    for n in 0..3 {
        w.sim
            .push(w.project, "main", &[&format!("fail {n}")], w.owner)
            .await;
        assert_eq!(
            w.sim.hook(hook).unwrap().alert_status,
            AlertStatus::Executable
        );
    }
    w.sim.push(w.project, "main", &["fail 3"], w.owner).await;
    let h = w.sim.hook(hook).unwrap();
    assert_eq!(h.alert_status, "temporarily_disabled");
    assert_eq!(h.recent_failures, 4);
    let shown = w.get(&api).await.json::<Value>().await.unwrap();
    assert_eq!(shown["alert_status"], "temporarily_disabled");
    assert!(shown["disabled_until"].is_string());

    // Disabled: nothing is sent, the skip is recorded.
    w.sim.push(w.project, "main", &["skipped"], w.owner).await;
    assert_eq!(rx.count(), 4);
    let last = w.sim.deliveries().last().cloned().unwrap();
    assert!(last.skipped && last.status.is_none());

    // After the first minute one more failure doubles the wait to two minutes.
    w.sim.advance_clock(Duration::from_secs(61));
    assert_eq!(
        w.sim.hook(hook).unwrap().alert_status,
        AlertStatus::Executable
    );
    w.sim.push(w.project, "main", &["fail 4"], w.owner).await;
    assert_eq!(rx.count(), 5);
    w.sim.advance_clock(Duration::from_secs(61));
    assert_eq!(
        w.sim.hook(hook).unwrap().alert_status,
        AlertStatus::TemporarilyDisabled
    );
    w.sim.advance_clock(Duration::from_secs(60));
    assert_eq!(
        w.sim.hook(hook).unwrap().alert_status,
        AlertStatus::Executable
    );

    // A test delivery that fails leaves the hook failing; one that succeeds re-enables it.
    let test = format!("{api}/test/push_events");
    let (status, _) = w.send(reqwest::Method::POST, &test, Value::Null).await;
    assert_eq!(status, 422);
    assert_eq!(
        w.sim.hook(hook).unwrap().alert_status,
        AlertStatus::TemporarilyDisabled
    );
    rx.status.store(200, Ordering::SeqCst);
    let (status, _) = w.send(reqwest::Method::POST, &test, Value::Null).await;
    assert_eq!(status, 201);
    let h = w.sim.hook(hook).unwrap();
    assert_eq!(
        (h.alert_status, h.recent_failures, h.disabled_until),
        (AlertStatus::Executable, 0, None)
    );
    // The sample is a push of the default branch head.
    let head = w
        .get(&format!("/projects/{}/repository/branches/main", w.project))
        .await;
    let head = head.json::<Value>().await.unwrap()["commit"]["id"].clone();
    let sample = rx.body(rx.count() - 1);
    assert_eq!(
        (sample["after"].clone(), sample["ref"].as_str()),
        (head, Some("refs/heads/main"))
    );
    assert_eq!(sample["commits"].as_array().unwrap().len(), 3);

    // Five tests a minute per hook; events that cannot be tested are refused.
    for _ in 0..3 {
        let (status, _) = w.send(reqwest::Method::POST, &test, Value::Null).await;
        assert_eq!(status, 201);
    }
    let (status, body) = w.send(reqwest::Method::POST, &test, Value::Null).await;
    assert_eq!(status, 429, "{body}");
    let (status, _) = w
        .send(
            reqwest::Method::POST,
            &format!("{api}/test/deployment_events"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 400);

    // `disable_hook` is the same state as four failures.
    w.sim.disable_hook(hook);
    assert_eq!(
        w.sim.hook(hook).unwrap().alert_status,
        AlertStatus::TemporarilyDisabled
    );
}

#[tokio::test]
async fn forty_consecutive_failures_disable_a_hook_for_good() {
    let w = World::new().await;
    let rx = Receiver::start(503).await;
    let hook = w.project_hook(json!({ "url": rx.url })).await;
    for n in 0..40 {
        // Wait out any backoff (it never exceeds 24 hours) so every push is really attempted.
        w.sim.advance_clock(Duration::from_secs(25 * 3600));
        w.sim
            .push(w.project, "main", &[&format!("f{n}")], w.owner)
            .await;
    }
    assert_eq!(rx.count(), 40);
    let h = w.sim.hook(hook).unwrap();
    assert_eq!(
        (h.alert_status, h.disabled_until),
        (AlertStatus::Disabled, None)
    );
    w.sim.advance_clock(Duration::from_secs(25 * 3600));
    w.sim.push(w.project, "main", &["still off"], w.owner).await;
    assert_eq!(rx.count(), 40);
    let shown = w
        .get(&format!("/projects/{}/hooks/{hook}", w.project))
        .await;
    assert_eq!(
        shown.json::<Value>().await.unwrap()["alert_status"],
        "disabled"
    );
}

fn challenge(verifier: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[tokio::test]
async fn oauth_authorization_code_with_pkce_and_refresh_rotation() {
    const VERIFIER: &str = "ks02i3jdikdo2k0dkfodf3m39rjfjsdk0wk349rj3jrhf";
    assert_eq!(
        challenge(VERIFIER),
        "2i0WFA-0AerkjQm4X4oDEhqA17QIAKNjXpagHBXmO_U"
    );
    let w = World::new().await;
    let redirect = "http://127.0.0.1:1/callback";
    let (client_id, secret) = w.sim.add_oauth_application(redirect);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authorize = |redirect_uri: &str, scope: &str| {
        let mut u = url::Url::parse(&format!("{}/oauth/authorize", w.sim.base_url)).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("state", "st4te")
            .append_pair("scope", scope)
            .append_pair("code_challenge", &challenge(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        u.to_string()
    };
    let signed_in = |url: String| {
        browser
            .get(url)
            .header("cookie", "_gitlab_session=glpat-owner")
    };

    let r = browser
        .get(authorize(redirect, "api"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(header(&r, "location").unwrap().ends_with("/users/sign_in"));
    let r = signed_in(authorize("http://evil.example/cb", "api"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        header(&r, "location").is_none(),
        "never redirect to an unregistered URI"
    );

    let code_for = |r: reqwest::Response| {
        let location = url::Url::parse(&header(&r, "location").unwrap()).unwrap();
        assert!(location.as_str().starts_with(redirect));
        let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st4te");
        q["code"].clone()
    };
    let code = code_for(signed_in(authorize(redirect, "api")).send().await.unwrap());

    let token_url = format!("{}/oauth/token", w.sim.base_url);
    let post = |form: Vec<(&str, String)>| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        w.http
            .post(&token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let exchange = |code: String, verifier: String| {
        post(vec![
            ("grant_type", "authorization_code".into()),
            ("client_id", client_id.clone()),
            ("client_secret", secret.clone()),
            ("code", code),
            ("redirect_uri", redirect.into()),
            ("code_verifier", verifier),
        ])
    };
    let wrong = exchange(code.clone(), "x".repeat(43)).await.unwrap();
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let r = exchange(code.clone(), VERIFIER.into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert_eq!(
        (tokens["token_type"].as_str(), tokens["expires_in"].as_i64()),
        (Some("Bearer"), Some(7200))
    );
    assert_eq!(tokens["scope"], "api");
    let reused = exchange(code, VERIFIER.into()).await.unwrap();
    assert_eq!(reused.status(), 400, "codes are single-use");

    let as_bearer = |token: &str, path: &str| {
        w.http
            .get(format!("{}/api/v4{path}", w.sim.base_url))
            .bearer_auth(token)
            .send()
    };
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let me = as_bearer(&access, "/user")
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(me["id"], w.owner);
    let info = w
        .http
        .get(format!("{}/oauth/token/info", w.sim.base_url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        (
            info["resource_owner_id"].as_i64(),
            info["application"]["uid"].as_str()
        ),
        (Some(w.owner), Some(client_id.as_str()))
    );

    let refresh = |token: &str| {
        post(vec![
            ("grant_type", "refresh_token".into()),
            ("client_id", client_id.clone()),
            ("client_secret", secret.clone()),
            ("refresh_token", token.into()),
            ("redirect_uri", redirect.into()),
        ])
    };
    let old_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated: Value = refresh(&old_refresh).await.unwrap().json().await.unwrap();
    let new_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, access);
    let old = as_bearer(&access, "/user").await.unwrap();
    assert_eq!(old.status(), 401, "rotation revokes the old access token");
    assert_eq!(old.json::<Value>().await.unwrap()["error"], "invalid_token");
    let again = refresh(&old_refresh).await.unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(as_bearer(&new_access, "/user").await.unwrap().status(), 200);

    w.sim.advance_clock(Duration::from_secs(7201));
    let expired = as_bearer(&new_access, "/user").await.unwrap();
    assert_eq!(expired.status(), 401);
    assert_eq!(
        expired.json::<Value>().await.unwrap()["error_description"],
        "Token is expired. You can either do re-authorization or token refresh."
    );
    assert_eq!(
        w.sim.oauth_grants(),
        ["authorization_code", "refresh_token"]
    );

    // A read_api token may read but not create hooks; a short verifier never matches.
    let code = code_for(
        signed_in(authorize(redirect, "read_api"))
            .send()
            .await
            .unwrap(),
    );
    let short = exchange(code.clone(), VERIFIER[..42].into()).await.unwrap();
    assert_eq!(short.status(), 400);
    let read: Value = exchange(code, VERIFIER.into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let read = read["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        as_bearer(&read, &format!("/projects/{}", w.project))
            .await
            .unwrap()
            .status(),
        200
    );
    let denied = w
        .http
        .post(format!(
            "{}/api/v4/projects/{}/hooks",
            w.sim.base_url, w.project
        ))
        .bearer_auth(&read)
        .json(&json!({ "url": "http://127.0.0.1:9/x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );
}

#[tokio::test]
async fn pushes_cap_commits_at_twenty_and_skip_hooks_beyond_three_refs() {
    let w = World::new().await;
    let rx = Receiver::start(200).await;
    w.project_hook(json!({ "url": rx.url })).await;

    let messages: Vec<String> = (0..25).map(|n| format!("PROJ-{n} work")).collect();
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    let shas = w
        .sim
        .push(w.project, "feature/PROJ-1", &refs, w.owner)
        .await;
    let payload = rx.body(0);
    let commits: Vec<&str> = payload["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(payload["total_commits_count"], 25);
    assert_eq!(
        commits,
        shas[5..].iter().map(String::as_str).collect::<Vec<_>>(),
        "the newest 20, oldest first"
    );
    assert_eq!(
        payload["before"],
        "0000000000000000000000000000000000000000"
    );

    let four: [(&str, &[&str]); 4] = [
        ("a", &["A-1"]),
        ("b", &["B-1"]),
        ("c", &["C-1"]),
        ("d", &["D-1"]),
    ];
    let out = w.sim.push_refs(w.project, &four, w.owner).await;
    assert_eq!(out.len(), 4);
    assert_eq!(rx.count(), 1, "more than 3 refs: no webhook at all");
    let three: [(&str, &[&str]); 3] = [("a", &["A-2"]), ("b", &["B-2"]), ("c", &["C-2"])];
    w.sim.push_refs(w.project, &three, w.owner).await;
    assert_eq!(rx.count(), 4, "one Push Hook per ref");
    assert_eq!(rx.body(1)["ref"], "refs/heads/a");

    // Branches exist, sorted by name; names with a slash are URL-encoded.
    let r = w
        .get(&format!("/projects/{}/repository/branches", w.project))
        .await;
    let names: Vec<String> = r
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "feature/PROJ-1", "main"]);
    let r = w
        .get(&format!(
            "/projects/{}/repository/branches/feature%2FPROJ-1",
            w.project
        ))
        .await;
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["commit"]["id"], shas[24].as_str());
    assert_eq!(b["commit"]["parent_ids"], json!([shas[23]]));

    // Commits: newest first, paginated; compare: oldest first with diffs.
    let r = w
        .get(&format!(
            "/projects/{}/repository/commits?ref_name=feature%2FPROJ-1&per_page=10",
            w.project
        ))
        .await;
    assert_eq!(
        header(&r, "x-total").unwrap(),
        "26",
        "25 pushed + the initial commit"
    );
    let page = ids_of_commits(r.json().await.unwrap());
    assert_eq!(page[0], shas[24]);
    let r = w
        .get(&format!(
            "/projects/{}/repository/compare?from=main&to=feature%2FPROJ-1",
            w.project
        ))
        .await;
    let cmp: Value = r.json().await.unwrap();
    assert_eq!(ids_of_commits(cmp["commits"].clone()), shas);
    assert_eq!(
        cmp["diffs"].as_array().unwrap().len(),
        26,
        "25 new files and README.md"
    );
    let r = w
        .get(&format!(
            "/projects/{}/repository/commits/{}/diff",
            w.project, shas[0]
        ))
        .await;
    assert!(
        r.json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["new_file"] == true)
    );

    // A force push rewrites the branch from main: `before` is the old head, commits only the new ones.
    let old_head = w
        .get(&format!("/projects/{}/repository/branches/a", w.project))
        .await;
    let old_head = old_head.json::<Value>().await.unwrap()["commit"]["id"].clone();
    let forced = w
        .sim
        .force_push(w.project, "a", &["A-3 rewritten"], w.owner)
        .await;
    let payload = rx.body(rx.count() - 1);
    assert_eq!(payload["before"], old_head);
    assert_eq!(payload["after"], forced[0].as_str());
    assert_eq!(payload["total_commits_count"], 1);
    let r = w
        .get(&format!(
            "/projects/{}/repository/commits?ref_name=a",
            w.project
        ))
        .await;
    assert_eq!(
        header(&r, "x-total").unwrap(),
        "2",
        "the old A-1 and A-2 are gone"
    );
}

fn ids_of_commits(v: Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}
