//! The Jira client against the simulator, without the rest of the service.

use gfj_core::batching::pack_devinfo;
use gfj_core::jira::{Author, Commit, DevinfoRequest, OperationType, ProviderMetadata, Repository};
use gfj_jira_client::{JiraClient, Site, SiteAuth};
use gfj_sim::jira::{JiraSim, JiraSimConfig};

/// The simulators listen on loopback.
fn loopback_sites() -> gfj_core::url_pattern::UrlAllowList {
    gfj_core::url_pattern::UrlAllowList::parse("http://127.0.0.1:*").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_hundred_commits_arrive_in_the_fewest_valid_requests() {
    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let (client_id, client_secret) = jira.oauth_credentials();
    let site = Site {
        base_url: jira.base_url.clone(),
        auth: SiteAuth::OAuth {
            cloud_id: jira.cloud_id().to_owned(),
            client_id,
            client_secret,
        },
    };
    let client = JiraClient::new(
        gfj_http::client(),
        "gitlab-for-jira",
        &jira.base_url,
        loopback_sites(),
    );
    let commits = (0..2500)
        .map(|n| {
            commit(
                n,
                "BULK-1",
                format!("BULK-1 change {n}"),
                format!("https://gitlab.example/g/p/-/commit/{n:040x}"),
            )
        })
        .collect();
    let request = devinfo(commits, OperationType::Backfill);
    let packed = pack_devinfo(request);
    assert_eq!(
        packed.len(),
        7,
        "400 commits per repository per request is the binding limit"
    );
    for r in &packed {
        client.store_devinfo(&site, r).await.unwrap();
    }
    assert_eq!(jira.issue("BULK-1").commits.len(), 2500);
    let requests = jira.requests();
    assert_eq!(requests.len(), 7);
    assert!(
        requests.iter().all(|r| r.status == 202),
        "each request valid against the OpenAPI"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.body.as_ref().unwrap()["operationType"] == "BACKFILL")
    );
}

fn oauth_site(jira: &JiraSim) -> Site {
    let (client_id, client_secret) = jira.oauth_credentials();
    Site {
        base_url: jira.base_url.clone(),
        auth: SiteAuth::OAuth {
            cloud_id: jira.cloud_id().to_owned(),
            client_id,
            client_secret,
        },
    }
}

/// Commit `n`, mentioning `key`.
fn commit(n: usize, key: &str, message: String, url: String) -> Commit {
    Commit {
        id: format!("{n:040x}"),
        issue_keys: vec![key.into()],
        update_sequence_id: 1,
        display_id: format!("{n:08x}"),
        message,
        author: Author {
            name: "Ada".into(),
            email: None,
        },
        file_count: 1,
        url,
        author_timestamp: "2026-11-27T10:00:00Z".into(),
        files: vec![],
        flags: vec![],
    }
}

/// These commits of project 7, as one request; history (backfill) does not trigger transitions.
fn devinfo(commits: Vec<Commit>, operation_type: OperationType) -> DevinfoRequest {
    DevinfoRequest {
        repositories: vec![Repository {
            id: "7".into(),
            name: "api".into(),
            url: "https://gitlab.example/g/api".into(),
            update_sequence_id: 1,
            avatar: None,
            commits,
            branches: vec![],
            pull_requests: vec![],
        }],
        prevent_transitions: operation_type == OperationType::Backfill,
        operation_type,
        properties: Default::default(),
        provider_metadata: ProviderMetadata::ours(),
    }
}

fn one_commit(n: usize) -> DevinfoRequest {
    devinfo(
        vec![commit(
            n,
            "CAP-1",
            "CAP-1".into(),
            "https://gitlab.example/c".into(),
        )],
        OperationType::Normal,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_site_concurrency_and_rate_caps_hold() {
    use gfj_jira_client::SiteLimits;
    use std::sync::Arc;

    // Concurrency: with a cap of 2, six concurrent sends put two in flight and four in the queue.
    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let site = oauth_site(&jira);
    let limits = SiteLimits {
        concurrency: 2,
        rate_per_sec: None,
    };
    let client = Arc::new(JiraClient::with_limits(
        gfj_http::client(),
        "gitlab-for-jira",
        &jira.base_url,
        loopback_sites(),
        limits,
    ));
    client
        .oauth_token(
            &jira.oauth_credentials().0,
            &jira.oauth_credentials().1,
            true,
        )
        .await
        .unwrap();
    jira.hold_next_writes(2);
    let mut tasks = Vec::new();
    for n in 0..6 {
        let (client, site) = (client.clone(), site.clone());
        tasks.push(tokio::spawn(async move {
            client
                .store_devinfo(&site, &one_commit(n))
                .await
                .map(|_| ())
        }));
    }
    jira.wait_until_held(2).await;
    crate::helpers::eventually("four sends wait for the cap", || async {
        client.waiting_for(&site) == 4
    })
    .await;
    jira.release_held();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(jira.issue("CAP-1").commits.len(), 6);

    // Rate: at 20 requests per second, requests are at least 50 ms apart.
    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let site = oauth_site(&jira);
    let limits = SiteLimits {
        concurrency: 8,
        rate_per_sec: std::num::NonZeroU32::new(20),
    };
    let client = JiraClient::with_limits(
        gfj_http::client(),
        "gitlab-for-jira",
        &jira.base_url,
        loopback_sites(),
        limits,
    );
    let started = std::time::Instant::now();
    for n in 0..5 {
        client.store_devinfo(&site, &one_commit(n)).await.unwrap();
    }
    // The first request goes at once, each of the next four waits its 50 ms turn.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(195),
        "five requests took only {elapsed:?}"
    );
    assert_eq!(jira.issue("CAP-1").commits.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_deployments_and_flags_reach_the_issue() {
    use gfj_core::jira::*;
    use gfj_jira_client::JiraError;

    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let site = oauth_site(&jira);
    let client = JiraClient::new(
        gfj_http::client(),
        "gitlab-for-jira",
        &jira.base_url,
        loopback_sites(),
    );
    let ts = "2026-11-27T10:00:00Z".to_owned();
    let build = Build {
        schema_version: "1.0".into(),
        pipeline_id: "7-main".into(),
        build_number: 12,
        update_sequence_number: 5,
        display_name: "main".into(),
        url: "https://gitlab.example/g/p/-/pipelines/1".into(),
        state: "successful".into(),
        last_updated: ts.clone(),
        issue_keys: vec!["CI-1".into()],
        label: None,
        test_info: None,
        references: vec![],
    };
    let builds = BuildsRequest {
        properties: Default::default(),
        builds: vec![build.clone()],
        provider_metadata: ProviderMetadata::ours(),
    };
    let result = client.submit(&site, &builds).await.unwrap();
    assert!(result.rejected().is_empty());
    let deployment = Deployment {
        schema_version: "1.0".into(),
        deployment_sequence_number: 3,
        update_sequence_number: 5,
        associations: vec![Association {
            association_type: "issueKeys".into(),
            values: vec!["CI-1".into()],
        }],
        display_name: "Deployment 3 (main@abc) to production".into(),
        url: "https://gitlab.example/g/p/-/jobs/9".into(),
        description: "deploy".into(),
        last_updated: ts.clone(),
        label: None,
        state: "successful".into(),
        pipeline: DeploymentPipeline {
            id: "7-main".into(),
            display_name: "main".into(),
            url: "https://gitlab.example/g/p/-/pipelines/1".into(),
        },
        environment: DeploymentEnvironment {
            id: "prod".into(),
            display_name: "production".into(),
            kind: "production".into(),
        },
        commands: vec![],
    };
    let deployments = DeploymentsRequest {
        properties: Default::default(),
        deployments: vec![deployment],
        provider_metadata: ProviderMetadata::ours(),
    };
    client.submit(&site, &deployments).await.unwrap();
    let status = FlagStatus {
        enabled: true,
        default_value: Some(String::new()),
        rollout: None,
    };
    let flag = FeatureFlag {
        schema_version: "1.0".into(),
        id: "42".into(),
        key: "new-login".into(),
        update_sequence_id: 5,
        display_name: Some("new-login".into()),
        issue_keys: vec!["CI-1".into()],
        summary: FlagSummary {
            url: None,
            status: status.clone(),
            last_updated: ts.clone(),
        },
        details: vec![FlagDetails {
            url: "https://gitlab.example/g/p/-/feature_flags/42".into(),
            last_updated: ts.clone(),
            environment: FlagEnvironment {
                name: "production".into(),
                kind: Some("production".into()),
            },
            status,
        }],
    };
    let flags = FeatureFlagsRequest {
        properties: [("projectId".to_owned(), "project-7".to_owned())].into(),
        flags: vec![flag],
        provider_metadata: ProviderMetadata::ours(),
    };
    client.submit(&site, &flags).await.unwrap();
    assert_eq!(jira.issue("CI-1").feature_flags.len(), 1);
    // Delete by property removes what was stored with it, and only that.
    client
        .delete_by_properties(
            &site,
            gfj_jira_client::JiraApi::FeatureFlags,
            &[("projectId", "project-8")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(jira.issue("CI-1").feature_flags.len(), 1);
    client
        .delete_by_properties(
            &site,
            gfj_jira_client::JiraApi::FeatureFlags,
            &[("projectId", "project-7")],
            None,
        )
        .await
        .unwrap();
    assert!(jira.issue("CI-1").feature_flags.is_empty());
    client.submit(&site, &flags).await.unwrap();
    let view = jira.issue("CI-1");
    assert_eq!(
        (
            view.builds.len(),
            view.deployments.len(),
            view.feature_flags.len()
        ),
        (1, 1, 1)
    );

    // Jira's array-shaped errors are read; a schema violation is a 400 with the validator's message.
    let mut bad = builds.clone();
    bad.builds[0].state = "exploded".into();
    match client.submit(&site, &bad).await {
        Err(JiraError::BadRequest(message)) => assert!(message.contains("exploded"), "{message}"),
        other => panic!("expected a 400, got {other:?}"),
    }
    jira.inject([gfj_sim::jira::Fault::ServerError(503)]);
    assert!(matches!(
        client.submit(&site, &builds).await,
        Err(JiraError::Unavailable { status: 503, .. })
    ));
    let last = jira.requests().pop().unwrap();
    assert_eq!(last.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sites_read_a_users_groups() {
    let app =
        crate::helpers::TestApp::start(gfj_store::testing::TestDatabase::sqlite().await).await;
    app.install().await;
    app.jira.add_user("admin-1", &["jira-users", "site-admins"]);
    let install = app
        .store
        .installation(app.jira.client_key())
        .await
        .unwrap()
        .unwrap();
    let site = gfj_sync::jira_out::site_of(install);
    let client = JiraClient::new(
        gfj_http::client(),
        "gitlab-for-jira",
        &app.jira.base_url,
        loopback_sites(),
    );
    assert_eq!(
        client.user_groups(&site, "admin-1").await.unwrap(),
        Some(vec!["jira-users".to_owned(), "site-admins".to_owned()])
    );
    assert_eq!(client.user_groups(&site, "nobody").await.unwrap(), None);
    assert_eq!(
        client
            .user_groups(&oauth_site(&app.jira), "admin-1")
            .await
            .unwrap(),
        None,
        "no user API with OAuth credentials"
    );
    app.stop().await;
}

/// Jira's 413 at 1 MB (the simulator's default): 400 commits with long messages are over it, so the packed
/// request is split until each part fits, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_at_one_megabyte_is_resolved_by_splitting() {
    let app =
        crate::helpers::TestApp::start(gfj_store::testing::TestDatabase::sqlite().await).await;
    let (client_key, site, handlers) = oauth_handlers(&app).await;
    // Long (but valid) URLs make 400 commits weigh over 1 MB.
    let commits = (0..800)
        .map(|n| {
            let url = format!(
                "https://gitlab.example/{}/-/commit/{n:040x}",
                "g".repeat(1_800)
            );
            commit(n, "MB-1", format!("MB-1 {}", "m".repeat(1_000)), url)
        })
        .collect();
    let request = devinfo(commits, OperationType::Normal);
    let size = serde_json::to_vec(&request).unwrap().len();
    assert!(
        size / 2 > 1024 * 1024,
        "each packed half ({}) is over 1 MB",
        size / 2
    );
    handlers
        .store_devinfo(&client_key, &site, request)
        .await
        .unwrap();
    assert_eq!(app.jira.issue("MB-1").commits.len(), 800, "nothing lost");
    let statuses: Vec<u16> = app.jira.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 413).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        4,
        "{statuses:?}"
    );
    assert!(app.store.rejections().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_go_in_batches_of_the_configured_size_and_unknown_keys_are_recorded() {
    use gfj_core::jira::Build;
    let config = JiraSimConfig {
        known_issue_keys: Some(vec!["CI-1".into()]),
        ..Default::default()
    };
    let app = crate::helpers::TestApp::start_custom(
        gfj_store::testing::TestDatabase::sqlite().await,
        true,
        config,
    )
    .await;
    let (client_key, site, handlers) = oauth_handlers(&app).await;
    assert_eq!(handlers.cicd_batch_size, 100);
    let builds: Vec<Build> = (0..250)
        .map(|n| Build {
            schema_version: "1.0".into(),
            pipeline_id: "7-main".into(),
            build_number: n,
            update_sequence_number: 1,
            display_name: "main".into(),
            url: format!("https://gitlab.example/g/p/-/pipelines/{n}"),
            state: "successful".into(),
            last_updated: "2026-11-27T10:00:00Z".into(),
            issue_keys: if n == 7 {
                vec!["CI-1".into(), "NOPE-1".into()]
            } else {
                vec!["CI-1".into()]
            },
            label: None,
            test_info: None,
            references: vec![],
        })
        .collect();
    handlers
        .send(&client_key, &site, Default::default(), builds)
        .await
        .unwrap();
    let sizes: Vec<usize> = app
        .jira
        .requests()
        .iter()
        .map(|r| r.body.as_ref().unwrap()["builds"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(app.jira.issue("CI-1").builds.len(), 250);
    assert_eq!(
        app.store.unknown_keys(&client_key).await.unwrap(),
        ["NOPE-1"]
    );
    app.stop().await;
}

/// The app's queue handlers, with the simulator registered as an OAuth-credentials site.
async fn oauth_handlers(app: &crate::helpers::TestApp) -> (String, Site, gfj_sync::Handlers) {
    let (client_id, client_secret) = app.jira.oauth_credentials();
    gitlab_for_jira::commands::sites::add_oauth(
        &app.settings,
        &app.store,
        &app.jira.base_url,
        &client_id,
        &client_secret,
        1,
    )
    .await
    .unwrap();
    let install = app.store.installations().await.unwrap().remove(0);
    let client_key = install.client_key.clone();
    let clock: std::sync::Arc<dyn gfj_store::Clock> = std::sync::Arc::new(gfj_store::SystemClock);
    let handlers = gitlab_for_jira::commands::serve::handlers(&app.settings, &app.store, clock);
    (client_key, gfj_sync::jira_out::site_of(install), handlers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_associations_are_recorded() {
    use gfj_core::jira::*;
    let config = JiraSimConfig {
        known_services: Some(vec!["svc-1".into()]),
        ..Default::default()
    };
    let app = crate::helpers::TestApp::start_custom(
        gfj_store::testing::TestDatabase::sqlite().await,
        true,
        config,
    )
    .await;
    let (client_key, site, handlers) = oauth_handlers(&app).await;
    let deployment = Deployment {
        schema_version: "1.0".into(),
        deployment_sequence_number: 1,
        update_sequence_number: 1,
        associations: vec![
            Association {
                association_type: "serviceIdOrKeys".into(),
                values: vec!["svc-1".into(), "svc-404".into()],
            },
            Association {
                association_type: "issueKeys".into(),
                values: vec!["OPS-1".into()],
            },
        ],
        display_name: "Deployment 1".into(),
        url: "https://gitlab.example/g/p/-/jobs/1".into(),
        description: "deploy".into(),
        last_updated: "2026-11-27T10:00:00Z".into(),
        label: None,
        state: "successful".into(),
        pipeline: DeploymentPipeline {
            id: "p".into(),
            display_name: "main".into(),
            url: "https://gitlab.example/g/p/-/pipelines/1".into(),
        },
        environment: DeploymentEnvironment {
            id: "prod".into(),
            display_name: "production".into(),
            kind: "production".into(),
        },
        commands: vec![],
    };
    handlers
        .send(&client_key, &site, Default::default(), vec![deployment])
        .await
        .unwrap();
    assert_eq!(app.jira.issue("OPS-1").deployments.len(), 1);
    assert_eq!(
        app.store.unknown_keys(&client_key).await.unwrap(),
        ["serviceIdOrKeys:svc-404"]
    );
    app.stop().await;
}

/// `GFJ_JIRA_URLS` is checked on every call, not only at install: a site the operator removed, or one
/// whose stored URL only looks allowed, gets nothing, in either connection mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_outside_the_allow_list_get_no_request() {
    use gfj_core::jira::*;
    use gfj_jira_client::JiraError;

    let jira = JiraSim::start(JiraSimConfig::default()).await.unwrap();
    let port = jira.base_url.rsplit(':').next().unwrap().to_owned();
    let elsewhere = gfj_core::url_pattern::UrlAllowList::parse("https://*.atlassian.net").unwrap();
    let client = JiraClient::new(
        gfj_http::client(),
        "gitlab-for-jira",
        &jira.base_url,
        elsewhere,
    );
    let connect = Site {
        base_url: jira.base_url.clone(),
        auth: SiteAuth::Connect {
            shared_secret: "secret".into(),
        },
    };
    let look_alike = Site {
        // Parsed as reqwest would: the host is 127.0.0.1, not a subdomain of atlassian.net.
        base_url: format!("http://127.0.0.1:{port}\\.atlassian.net"),
        ..connect.clone()
    };
    let request = devinfo(
        vec![commit(
            1,
            "GATE-1",
            "GATE-1 x".into(),
            "https://gitlab.example/c/1".into(),
        )],
        OperationType::Normal,
    );
    for site in [&connect, &oauth_site(&jira), &look_alike] {
        let err = client.store_devinfo(site, &request).await.unwrap_err();
        assert!(matches!(err, JiraError::SiteNotAllowed(_)), "{err}");
        let flags = FeatureFlagsRequest {
            properties: Default::default(),
            flags: vec![],
            provider_metadata: ProviderMetadata::ours(),
        };
        let err = client.submit(site, &flags).await.unwrap_err();
        assert!(matches!(err, JiraError::SiteNotAllowed(_)), "{err}");
    }
    let err = client.cloud_id(&jira.base_url).await.unwrap_err();
    assert!(matches!(err, JiraError::SiteNotAllowed(_)), "{err}");
    assert!(jira.requests().is_empty(), "nothing reached the site");
}
