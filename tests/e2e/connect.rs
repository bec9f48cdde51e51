//! Atlassian Connect: the descriptor, signed installs (and every way to forge one), uninstall.

use gfj_core::connect_jwt::{self, BoundRequest};
use gfj_sim::jira::{INSTALL_KID, install_private_key, validate_descriptor};
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const UNKNOWN_SIGNER: &str = include_str!("keys/unknown-signer.pem");

fn now() -> i64 {
    crate::helpers::now_ms() / 1000
}

fn payload(app: &TestApp, client_key: &str, secret: &str) -> Value {
    json!({
        "key": "gitlab-for-jira",
        "clientKey": client_key,
        "sharedSecret": secret,
        "baseUrl": app.jira.base_url,
        "displayUrl": app.jira.base_url,
        "productType": "jira",
        "eventType": "installed"
    })
}

struct Forge<'a> {
    key: &'a str,
    kid: &'a str,
    iss: &'a str,
    aud: &'a str,
    path: &'a str,
    now: i64,
}

fn token(f: &Forge<'_>) -> String {
    connect_jwt::sign_rs256_install(
        f.key.as_bytes(),
        f.kid,
        f.iss,
        f.aud,
        &BoundRequest {
            method: "POST",
            path: f.path,
            query: "",
            base_path: "",
        },
        f.now,
    )
    .unwrap()
}

async fn post(app: &TestApp, path: &str, token: Option<String>, body: &Value) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", app.base_url))
        .json(body);
    if let Some(t) = token {
        req = req.header("Authorization", format!("JWT {t}"));
    }
    req.send().await.unwrap().status().as_u16()
}

async fn descriptor_is_valid_and_declares_the_modules(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let d: Value = reqwest::get(format!("{}/atlassian-connect.json", app.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Atlassian's descriptor schema, when found (required under CI=true).
    let name = gfj_sim::jira::OFFICIAL_CONNECT_SCHEMA;
    let schema = gfj_sim::official_fixture(name);
    gfj_sim::require_official(name, schema.as_deref()).unwrap();
    if let Some(schema) = &schema {
        assert_eq!(
            validate_descriptor(schema, &d).unwrap(),
            Vec::<String>::new()
        );
        // A descriptor missing a required part is refused by the same check.
        let mut broken = d.clone();
        broken["modules"]["jiraDevelopmentTool"]["capabilities"] = json!(["everything"]);
        assert!(!validate_descriptor(schema, &broken).unwrap().is_empty());
    }
    assert_eq!(d["baseUrl"], app.base_url.as_str());
    assert_eq!(d["scopes"], json!(["READ", "WRITE", "DELETE"]));
    assert_eq!(
        d["apiMigrations"],
        json!({ "signed-install": true, "context-qsh": true, "gdpr": true })
    );
    for module in [
        "jiraDevelopmentTool",
        "jiraBuildInfoProvider",
        "jiraDeploymentInfoProvider",
        "jiraFeatureFlagInfoProvider",
        "postInstallPage",
        "jiraDeploymentGating",
    ] {
        assert!(d["modules"][module].is_object(), "{module}");
    }
    assert_eq!(
        d["modules"]["postInstallPage"]["conditions"][0]["condition"],
        "user_is_admin"
    );
    app.stop().await;
}

async fn forged_installs_are_refused_and_store_nothing(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let path = "/jira/events/installed";
    let ck = "forge-client";
    let body = payload(&app, ck, "s3cret");
    let good = Forge {
        key: install_private_key(),
        kid: INSTALL_KID,
        iss: ck,
        aud: &app.base_url,
        path,
        now: now(),
    };
    let hs256 = connect_jwt::sign_hs256(
        ck,
        b"s3cret",
        &BoundRequest {
            method: "POST",
            path,
            query: "",
            base_path: "",
        },
        now(),
        60,
    );
    let other_site = {
        let mut b = body.clone();
        b["baseUrl"] = json!("https://evil.example.com");
        b
    };
    let other_app = {
        let mut b = body.clone();
        b["key"] = json!("someone-else");
        b
    };
    let cases: Vec<(&str, Option<String>, &Value)> = vec![
        ("no token", None, &body),
        ("HS256 instead of a signed install", Some(hs256), &body),
        (
            "kid with illegal characters",
            Some(token(&Forge {
                kid: "../keys",
                ..good
            })),
            &body,
        ),
        (
            "kid the key server does not know",
            Some(token(&Forge {
                kid: "unknown-kid",
                ..good
            })),
            &body,
        ),
        (
            "signed by another key",
            Some(token(&Forge {
                key: UNKNOWN_SIGNER,
                ..good
            })),
            &body,
        ),
        (
            "audience is another app",
            Some(token(&Forge {
                aud: "https://other.example.com",
                ..good
            })),
            &body,
        ),
        (
            "issuer is not the body's clientKey",
            Some(token(&Forge {
                iss: "another-client",
                ..good
            })),
            &body,
        ),
        (
            "qsh of another request",
            Some(token(&Forge {
                path: "/jira/events/uninstalled",
                ..good
            })),
            &body,
        ),
        (
            "expired",
            Some(token(&Forge {
                now: now() - 3600,
                ..good
            })),
            &body,
        ),
        (
            "larger than 8 KB",
            Some(format!("{}{}", token(&good), "A".repeat(9000))),
            &body,
        ),
        ("Jira URL not allowed", Some(token(&good)), &other_site),
        ("payload for another app", Some(token(&good)), &other_app),
    ];
    for (what, t, b) in cases {
        assert_eq!(post(&app, path, t, b).await, 401, "{what}");
        assert!(
            app.store.installations().await.unwrap().is_empty(),
            "{what}: nothing stored"
        );
    }
    // The genuine article is accepted.
    assert_eq!(post(&app, path, Some(token(&good)), &body).await, 204);
    assert_eq!(
        app.store
            .installation(ck)
            .await
            .unwrap()
            .unwrap()
            .shared_secret,
        "s3cret"
    );
    app.stop().await;
}

async fn reinstall_replaces_and_uninstall_removes_everything(db: TestDatabase) {
    let app = TestApp::start(db).await;
    app.install().await;
    let ck = app.jira.client_key().to_owned();
    let first = app.store.installation(&ck).await.unwrap().unwrap();
    assert_eq!(first.base_url, app.jira.base_url);

    // Reinstall with a new secret for the same clientKey.
    let path = "/jira/events/installed";
    let t = token(&Forge {
        key: install_private_key(),
        kid: INSTALL_KID,
        iss: &ck,
        aud: &app.base_url,
        path,
        now: now(),
    });
    assert_eq!(
        post(&app, path, Some(t), &payload(&app, &ck, "rotated")).await,
        204
    );
    assert_eq!(
        app.store
            .installation(&ck)
            .await
            .unwrap()
            .unwrap()
            .shared_secret,
        "rotated"
    );
    assert_eq!(app.store.installations().await.unwrap().len(), 1);

    let w = app.world(gfj_sim::gitlab::Plan::Free, 40, 1);
    app.link(
        "acme",
        &w.token,
        gitlab_for_jira::commands::link::HookMode::Auto,
    )
    .await
    .unwrap();
    assert_eq!(app.store.subscriptions().await.unwrap().len(), 1);

    // An unsigned uninstall is refused; the signed one removes installation, secret and subscriptions.
    assert_eq!(
        post(
            &app,
            "/jira/events/uninstalled",
            None,
            &payload(&app, &ck, "")
        )
        .await,
        401
    );
    assert!(app.store.installation(&ck).await.unwrap().is_some());
    assert_eq!(app.jira.uninstall(&app.base_url).await.unwrap(), 204);
    assert!(app.store.installation(&ck).await.unwrap().is_none());
    assert!(app.store.subscriptions().await.unwrap().is_empty());
    app.stop().await;
}

async fn health_and_readiness(db: TestDatabase) {
    let app = TestApp::start(db).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            reqwest::get(format!("{}{path}", app.base_url))
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    app.stop().await;
}

/// Until the operator lists their Jira sites no site may install; a site URL is judged by the host the
/// client would connect to, so `https://2852039166\.atlassian.net` (169.254.169.254) is no Atlassian site.
async fn only_the_operators_jira_sites_install(db: TestDatabase) {
    let unset =
        TestApp::start_with_settings(db, true, Default::default(), &[("GFJ_JIRA_URLS", "")]).await;
    assert!(unset.settings.jira_urls.is_empty(), "no default wildcard");
    assert_eq!(unset.jira.install(&unset.base_url).await.unwrap(), 401);
    assert!(unset.store.installations().await.unwrap().is_empty());
    unset.stop().await;

    let db = TestDatabase::sqlite().await;
    let app = TestApp::start_with_settings(
        db,
        true,
        Default::default(),
        &[("GFJ_JIRA_URLS", "https://*.atlassian.net")],
    )
    .await;
    let path = "/jira/events/installed";
    let ck = "look-alike";
    let good = Forge {
        key: install_private_key(),
        kid: INSTALL_KID,
        iss: ck,
        aud: &app.base_url,
        path,
        now: now(),
    };
    for look_alike in [
        "https://2852039166\\.atlassian.net",
        "https://acme.atlassian.net\\@169.254.169.254",
        "https://acme.atlassian.net@169.254.169.254",
        "https://169.254.169.254/.atlassian.net",
        "https://acme.atlassian.net/../x",
    ] {
        let mut body = payload(&app, ck, "s3cret");
        body["baseUrl"] = json!(look_alike);
        assert_eq!(
            post(&app, path, Some(token(&good)), &body).await,
            401,
            "{look_alike}"
        );
        assert!(app.store.installations().await.unwrap().is_empty());
    }
    let mut body = payload(&app, ck, "s3cret");
    body["baseUrl"] = json!("https://ACME.atlassian.net/");
    assert_eq!(post(&app, path, Some(token(&good)), &body).await, 204);
    assert_eq!(
        app.store.installation(ck).await.unwrap().unwrap().base_url,
        "https://acme.atlassian.net",
        "stored as the canonical origin"
    );
    app.stop().await;
}

test_on_both_databases!(
    only_the_operators_jira_sites_install,
    descriptor_is_valid_and_declares_the_modules,
    forged_installs_are_refused_and_store_nothing,
    reinstall_replaces_and_uninstall_removes_everything,
    health_and_readiness,
);
