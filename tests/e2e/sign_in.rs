//! GitLab sign-in bound to the browser that started it: a start URL opened elsewhere, a callback from
//! another browser or a forged confirmation stores nothing; the person signing in sees which Jira site
//! and user they connect, and nothing is stored until they confirm. Admin linking uses only sign-ins
//! made through the admin flow.

use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, TestApp, World};

pub const JIRA_ADMIN: &str = "557058:admin";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One browser: the sign-in cookie it was given (if any), and the GitLab session it is signed in with.
pub struct Browser {
    pub cookie: Option<String>,
    pub gitlab_session: String,
}

impl Browser {
    pub fn of(w: &World) -> Self {
        Self {
            cookie: None,
            gitlab_session: w.token.clone(),
        }
    }

    fn with_cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header("Cookie", format!("gfj_gitlab_sign_in={c}")),
            None => req,
        }
    }

    /// Opens a start URL; returns GitLab's authorize URL it was sent to.
    pub async fn open_start_url(&mut self, start_url: &str) -> reqwest::Response {
        let resp = http().get(start_url).send().await.unwrap();
        if let Some(set) = resp.headers().get("set-cookie") {
            let set = set.to_str().unwrap();
            assert!(set.contains("HttpOnly"), "{set}");
            assert!(set.contains("SameSite=Lax"), "{set}");
            assert!(set.contains("Path=/gitlab/oauth"), "{set}");
            let value = set
                .strip_prefix("gfj_gitlab_sign_in=")
                .and_then(|v| v.split(';').next())
                .unwrap();
            self.cookie = Some(value.to_owned());
        }
        resp
    }

    /// Signs in at GitLab (where this browser has a session); returns the callback URL GitLab sends to.
    pub async fn authorize_at_gitlab(&self, authorize_url: &str) -> String {
        let at_gitlab = http()
            .get(authorize_url)
            .header("Cookie", format!("_gitlab_session={}", self.gitlab_session))
            .send()
            .await
            .unwrap();
        assert_eq!(at_gitlab.status().as_u16(), 302);
        at_gitlab.headers()["location"].to_str().unwrap().to_owned()
    }

    pub async fn get(&self, url: &str) -> (u16, String) {
        let resp = self.with_cookie(http().get(url)).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    pub async fn decide(&self, app: &TestApp, state: &str, decision: &str) -> (u16, String) {
        let resp = self
            .with_cookie(http().post(format!("{}/gitlab/oauth/confirm", app.base_url)))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("state", state)
                    .append_pair("decision", decision)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// The whole sign-in from a start URL, confirmed: returns the final page's text.
    pub async fn sign_in(&mut self, app: &TestApp, start_url: &str) -> String {
        let begun = self.open_start_url(start_url).await;
        assert_eq!(begun.status().as_u16(), 303);
        let authorize = begun.headers()["location"].to_str().unwrap().to_owned();
        assert!(authorize.starts_with(&app.gitlab.base_url), "{authorize}");
        let callback = self.authorize_at_gitlab(&authorize).await;
        assert!(callback.starts_with(&format!("{}/gitlab/oauth/callback?", app.base_url)));
        let (status, question) = self.get(&callback).await;
        assert_eq!(status, 200, "{question}");
        let (status, done) = self.decide(app, &state_in(&question), "connect").await;
        assert_eq!(status, 200, "{done}");
        done
    }
}

/// The `state` the confirmation form posts back.
pub fn state_in(question: &str) -> String {
    question
        .split("name=\"state\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the confirmation form carries the state")
        .to_owned()
}

/// A Jira user starts a sign-in from the configuration page's API; returns the start URL.
pub async fn start_from_jira(app: &TestApp, account_id: &str) -> String {
    let token = app.jira.context_token(account_id);
    let resp = http()
        .post(format!("{}/jira/gitlab/sign-in", app.base_url))
        .header("Authorization", format!("JWT {token}"))
        .json(&json!({ "gitlab_url": app.gitlab.base_url }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let start = body["start_url"].as_str().unwrap().to_owned();
    assert!(
        start.starts_with(&format!("{}/gitlab/oauth/begin?ticket=", app.base_url)),
        "the window opens on this service's own origin first: {start}"
    );
    start
}

/// An operator starts a sign-in from the admin page's API; returns the start URL.
pub async fn start_from_admin(app: &TestApp) -> String {
    let resp = http()
        .post(format!("{}/gitlab/oauth/start", app.base_url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "gitlab_url": app.gitlab.base_url }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    body["start_url"].as_str().unwrap().to_owned()
}

async fn setup(db: TestDatabase) -> (TestApp, World) {
    let app = TestApp::start(db).await;
    app.install().await;
    app.jira.add_user(JIRA_ADMIN, &["site-admins"]);
    let w = app.world(Plan::Free, 40, 1);
    (app, w)
}

async fn nothing_stored(app: &TestApp) {
    let user = gfj_store::gitlab_connections::JiraUser {
        client_key: app.jira.client_key().to_owned(),
        account_id: JIRA_ADMIN.to_owned(),
    };
    assert_eq!(
        app.store
            .jira_sign_in(&user, &app.gitlab.base_url)
            .await
            .unwrap(),
        None,
        "no GitLab sign-in was handed to the Jira user"
    );
    assert!(
        app.store.gitlab_connection(1).await.unwrap().is_none(),
        "no GitLab connection was stored"
    );
}

/// The attack: a Jira user starts a sign-in and sends the link to a GitLab user, who completes it in
/// their own browser. Their callback, without the starting browser's cookie, stores nothing; a start URL
/// works once; and whoever opens it is asked about the foreign Jira site and can refuse.
async fn a_sign_in_completes_only_in_the_browser_that_started_it(db: TestDatabase) {
    let (app, victim) = setup(db).await;

    // The attacker opens the start URL (their browser gets the cookie) and sends GitLab's page onward.
    let start = start_from_jira(&app, JIRA_ADMIN).await;
    let mut attacker = Browser::of(&victim);
    let begun = attacker.open_start_url(&start).await;
    assert_eq!(begun.status().as_u16(), 303);
    let authorize = begun.headers()["location"].to_str().unwrap().to_owned();
    // The victim signs in at GitLab in their own browser, which has no cookie of this sign-in.
    let victims_browser = Browser::of(&victim);
    let callback = victims_browser.authorize_at_gitlab(&authorize).await;
    let (status, page) = victims_browser.get(&callback).await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("another browser"), "{page}");
    nothing_stored(&app).await;
    // The state is used up: the attacker cannot complete it with the victim's code either.
    let (status, _) = attacker.get(&callback).await;
    assert_eq!(status, 400);
    nothing_stored(&app).await;

    // A start URL works once: a second browser opening it is refused.
    let start = start_from_jira(&app, JIRA_ADMIN).await;
    let mut first = Browser::of(&victim);
    assert_eq!(first.open_start_url(&start).await.status().as_u16(), 303);
    let mut second = Browser::of(&victim);
    let again = second.open_start_url(&start).await;
    assert_eq!(again.status().as_u16(), 400);
    assert!(second.cookie.is_none());

    // The victim opens a start URL sent to them: they are shown who they would connect to what, and
    // refuse. Nothing is stored.
    let start = start_from_jira(&app, JIRA_ADMIN).await;
    let mut victims_browser = Browser::of(&victim);
    let begun = victims_browser.open_start_url(&start).await;
    let authorize = begun.headers()["location"].to_str().unwrap().to_owned();
    let callback = victims_browser.authorize_at_gitlab(&authorize).await;
    let (status, question) = victims_browser.get(&callback).await;
    assert_eq!(status, 200);
    assert!(
        question.contains("Connect GitLab user <b>@user40</b>"),
        "{question}"
    );
    assert!(
        question.contains(&app.jira.base_url),
        "the Jira site: {question}"
    );
    assert!(question.contains(JIRA_ADMIN), "the Jira user: {question}");
    nothing_stored(&app).await;
    let state = state_in(&question);
    // A forged confirmation (another browser, or a cross-site post, which carries no Lax cookie) is
    // refused and does not use up the question.
    let (status, _) = Browser::of(&victim).decide(&app, &state, "connect").await;
    assert_eq!(status, 403);
    nothing_stored(&app).await;
    let (status, done) = victims_browser.decide(&app, &state, "cancel").await;
    assert_eq!(
        (status, done.contains("Nothing was connected")),
        (200, true),
        "{done}"
    );
    nothing_stored(&app).await;
    let (status, _) = victims_browser.decide(&app, &state, "connect").await;
    assert_eq!(status, 400, "a decision is taken once");
    nothing_stored(&app).await;

    // The Jira user's own, confirmed sign-in is stored and belongs to them.
    let start = start_from_jira(&app, JIRA_ADMIN).await;
    let done = Browser::of(&victim).sign_in(&app, &start).await;
    assert!(done.contains("go back to Jira"), "{done}");
    let user = gfj_store::gitlab_connections::JiraUser {
        client_key: app.jira.client_key().to_owned(),
        account_id: JIRA_ADMIN.to_owned(),
    };
    let connection = app
        .store
        .jira_sign_in(&user, &app.gitlab.base_url)
        .await
        .unwrap()
        .expect("stored on confirmation");
    let (conn, _) = app
        .store
        .gitlab_connection(connection)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((conn.username.as_str(), conn.via_admin), ("user40", false));
    app.stop().await;
}

/// The admin page links only with sign-ins made through its own flow, never with a Jira user's.
async fn admin_linking_uses_only_admin_sign_ins(db: TestDatabase) {
    let (app, w) = setup(db).await;
    let start = start_from_jira(&app, JIRA_ADMIN).await;
    Browser::of(&w).sign_in(&app, &start).await;
    let user = gfj_store::gitlab_connections::JiraUser {
        client_key: app.jira.client_key().to_owned(),
        account_id: JIRA_ADMIN.to_owned(),
    };
    let jira_users_connection = app
        .store
        .jira_sign_in(&user, &app.gitlab.base_url)
        .await
        .unwrap()
        .unwrap();
    let link = |connection: i64| {
        http()
            .post(format!("{}/admin/api/subscriptions", app.base_url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({
                "site": app.jira.client_key(),
                "group": "acme",
                "gitlab_url": app.gitlab.base_url,
                "gitlab_connection": connection,
            }))
            .send()
    };
    let refused = link(jira_users_connection).await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    assert!(
        refused.text().await.unwrap().contains("admin page"),
        "says how to get an admin sign-in"
    );
    assert!(app.store.subscriptions().await.unwrap().is_empty());

    // The same GitLab user signing in through the admin flow makes the connection usable there.
    let start = start_from_admin(&app).await;
    let done = Browser::of(&w).sign_in(&app, &start).await;
    assert!(done.contains("GitLab connection"), "{done}");
    let linked = link(jira_users_connection).await.unwrap();
    assert_eq!(
        linked.status().as_u16(),
        201,
        "{}",
        linked.text().await.unwrap()
    );
    app.stop().await;
}

test_on_both_databases!(
    a_sign_in_completes_only_in_the_browser_that_started_it,
    admin_linking_uses_only_admin_sign_ins,
);
