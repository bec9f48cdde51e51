//! Uninstall leaves nothing behind: the site's hooks go from GitLab, its users' GitLab sign-ins go and
//! their tokens are revoked unless another site still uses them; a replayed uninstall token cannot
//! remove a newer install; a site the operator no longer lists can still uninstall.

use gfj_gitlab_client::GitLabClient;
use gfj_sim::gitlab::Plan;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;

use crate::helpers::{TestApp, now_ms};

const ADMIN: &str = "557058:admin";
const OTHER_ADMIN: &str = "557058:other";

/// Signs a GitLab user in with OAuth, as the callback would store it: returns the connection id and the
/// access token GitLab issued.
async fn signed_in(app: &TestApp, user_token: &str) -> (i64, String) {
    use gfj_gitlab_client::oauth;
    let gitlab_app = &app.settings.gitlab_oauth_apps[0];
    let verifier = oauth::pkce_verifier(&[7; 32]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at_gitlab = http
        .get(oauth::authorize_url(gitlab_app, "st", &verifier))
        .header("Cookie", format!("_gitlab_session={user_token}"))
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(at_gitlab.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = oauth::exchange_code(&http, gitlab_app, &code, &verifier, now_ms())
        .await
        .unwrap();
    let me = GitLabClient::new(http, &app.gitlab.base_url, &tokens.access_token)
        .current_user()
        .await
        .unwrap();
    let conn = app
        .store
        .upsert_gitlab_connection(
            &app.gitlab.base_url,
            me.id,
            &me.username,
            &serde_json::to_string(&tokens).unwrap(),
            false,
            now_ms(),
        )
        .await
        .unwrap();
    (conn.id, tokens.access_token)
}

/// What GitLab answers to an API call with an OAuth access token (401 once revoked).
async fn gitlab_status_with(app: &TestApp, access_token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/api/v4/user", app.gitlab.base_url))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Links as a Jira user does from the configuration page: with their own GitLab sign-in.
async fn link_as(app: &TestApp, site: &str, group: &str, connection: i64) {
    let install = app.store.find_installation(site).await.unwrap().unwrap();
    let access = app.settings.gitlab_access();
    let linker = gfj_sync::linking::Linker {
        store: &app.store,
        access: &access,
        base_url: &app.settings.base_url,
    };
    let req = gfj_sync::linking::LinkRequest {
        install: &install,
        group,
        gitlab_url: &app.gitlab.base_url,
        credentials: gfj_sync::linking::GitLabCredentials::Connection(connection),
        hook_mode: gfj_sync::linking::HookMode::Auto,
    };
    linker.link(req, now_ms()).await.unwrap();
    app.backfilled().await;
}

fn jira_user(client_key: &str, account_id: &str) -> gfj_store::gitlab_connections::JiraUser {
    gfj_store::gitlab_connections::JiraUser {
        client_key: client_key.to_owned(),
        account_id: account_id.to_owned(),
    }
}

async fn uninstall_removes_hooks_and_sign_ins_and_revokes_unused_tokens(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let connect = app.jira.client_key().to_owned();
    // The same Jira also connected with OAuth credentials: another site, which stays.
    app.add_oauth_site().await;
    let gitlab = app.gitlab.base_url.clone();

    // Alice links "acme" to the Connect site as her GitLab sign-in.
    let w = app.world(Plan::Free, 40, 1);
    let (alice, alice_token) = signed_in(&app, &w.token).await;
    app.store
        .remember_jira_sign_in(&jira_user(&connect, ADMIN), &gitlab, alice, now_ms())
        .await
        .unwrap();
    link_as(&app, &connect, "acme", alice).await;

    // Bob signed in on the Connect site too, but his sign-in also serves a link of the OAuth site.
    let bob_user = app.gitlab.add_user("bob", "glpat-bob");
    let beta = app.gitlab.add_group("beta", None, Plan::Free);
    app.gitlab.add_member(beta, bob_user, 40);
    let beta_project = app.gitlab.add_project(beta, "b0");
    let (bob, bob_token) = signed_in(&app, "glpat-bob").await;
    app.store
        .remember_jira_sign_in(&jira_user(&connect, OTHER_ADMIN), &gitlab, bob, now_ms())
        .await
        .unwrap();
    let oauth_site = format!("oauth:{}", app.jira.cloud_id());
    link_as(&app, &oauth_site, "beta", bob).await;

    let hooked = |project: i64| {
        app.gitlab
            .hooks()
            .iter()
            .filter(|h| h.scope == "project" && h.target_id == project)
            .count()
    };
    assert_eq!((hooked(w.projects[0]), hooked(beta_project)), (1, 1));

    // GitLab fails the first removal: the queued job tries again rather than losing it.
    let mark = app.gitlab.requests().len();
    app.gitlab.fail_next(1, 503);
    assert_eq!(app.jira.uninstall(&app.base_url).await.unwrap(), 204);
    app.drained().await;
    let deletes: Vec<u16> = app
        .gitlab
        .requests()
        .iter()
        .skip(mark)
        .filter(|r| r.method == "DELETE")
        .map(|r| r.status)
        .collect();
    assert_eq!(deletes.first(), Some(&503), "{deletes:?}");
    assert!(
        deletes.contains(&204),
        "removed on a later attempt: {deletes:?}"
    );

    assert!(app.store.installation(&connect).await.unwrap().is_none());
    assert_eq!(
        (hooked(w.projects[0]), hooked(beta_project)),
        (0, 1),
        "the uninstalled site's hooks are removed from GitLab; the other site's stay"
    );
    for account in [ADMIN, OTHER_ADMIN] {
        assert_eq!(
            app.store
                .jira_sign_in(&jira_user(&connect, account), &gitlab)
                .await
                .unwrap(),
            None,
            "the site's GitLab sign-ins are deleted"
        );
    }
    assert!(app.store.gitlab_connection(alice).await.unwrap().is_none());
    assert_eq!(
        gitlab_status_with(&app, &alice_token).await,
        401,
        "a sign-in nobody uses any more is revoked at GitLab"
    );
    assert!(app.store.gitlab_connection(bob).await.unwrap().is_some());
    assert_eq!(
        gitlab_status_with(&app, &bob_token).await,
        200,
        "a sign-in another site's subscription still uses is kept"
    );
    app.stop().await;
}

fn uninstall_token(app: &TestApp, issued_at: i64) -> String {
    gfj_core::connect_jwt::sign_rs256_install(
        gfj_sim::jira::install_private_key().as_bytes(),
        gfj_sim::jira::INSTALL_KID,
        app.jira.client_key(),
        &app.base_url,
        &gfj_core::connect_jwt::BoundRequest {
            method: "POST",
            path: "/jira/events/uninstalled",
            query: "",
            base_path: "",
        },
        issued_at,
    )
    .unwrap()
}

async fn post_uninstall(app: &TestApp, token: &str) -> u16 {
    let body = serde_json::json!({
        "key": "gitlab-for-jira",
        "clientKey": app.jira.client_key(),
        "baseUrl": app.jira.base_url,
        "productType": "jira",
        "eventType": "uninstalled"
    });
    reqwest::Client::new()
        .post(format!("{}/jira/events/uninstalled", app.base_url))
        .header("Authorization", format!("JWT {token}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn a_replayed_uninstall_cannot_remove_a_newer_install(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let ck = app.jira.client_key().to_owned();
    app.install().await;
    // Captured before the site installed again, never used: signed before the current install.
    let captured = uninstall_token(&app, now_ms() / 1000 - 30);
    assert_eq!(post_uninstall(&app, &captured).await, 401);
    assert!(app.store.installation(&ck).await.unwrap().is_some());

    // A genuine uninstall, then a fresh install, then the same uninstall token again.
    let genuine = uninstall_token(&app, now_ms() / 1000);
    assert_eq!(post_uninstall(&app, &genuine).await, 204);
    assert!(app.store.installation(&ck).await.unwrap().is_none());
    app.install().await;
    assert_eq!(post_uninstall(&app, &genuine).await, 401);
    assert!(
        app.store.installation(&ck).await.unwrap().is_some(),
        "the replay left the new install in place"
    );
    app.stop().await;
}

async fn a_site_removed_from_the_allow_list_can_still_uninstall(db: TestDatabase) {
    let app = TestApp::start_with_settings(
        db,
        true,
        gfj_sim::jira::JiraSimConfig::default(),
        &[("GFJ_JIRA_URLS", "https://*.atlassian.net")],
    )
    .await;
    // Installed while the operator still listed it.
    let install = gfj_store::installations::Installation {
        client_key: app.jira.client_key().to_owned(),
        base_url: app.jira.base_url.clone(),
        display_url: None,
        shared_secret: "secret".into(),
        oauth: None,
    };
    app.store
        .upsert_installation(&install, now_ms() - 60_000)
        .await
        .unwrap();
    assert_eq!(
        post_uninstall(&app, &uninstall_token(&app, now_ms() / 1000)).await,
        204
    );
    assert!(
        app.store
            .installation(app.jira.client_key())
            .await
            .unwrap()
            .is_none()
    );
    app.stop().await;
}

test_on_both_databases!(
    uninstall_removes_hooks_and_sign_ins_and_revokes_unused_tokens,
    a_replayed_uninstall_cannot_remove_a_newer_install,
    a_site_removed_from_the_allow_list_can_still_uninstall,
);
