//! The HTTP edge under hostile clients: a webhook's token is checked before its body is read; slow
//! clients are cut off and cannot hold up a shutdown; connections are capped; every answer carries the
//! security headers; random install `kid`s cannot make the service hammer Atlassian's key server.

use std::time::Duration;

use gfj_core::connect_jwt;
use gfj_sim::jira::install_private_key;
use gfj_store::test_on_both_databases;
use gfj_store::testing::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Longest a test waits for the service to answer or close; far above the timeouts set below.
const BOUND: Duration = Duration::from_secs(15);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base_url.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the service closes the connection (or `BOUND` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

/// A webhook with an unknown token is answered 401 from its headers: the service does not wait for (or
/// read) the 10 MB body it announces.
async fn a_webhook_token_is_checked_before_the_body_is_read(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /gitlab/webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: guess\r\n\
              X-Gitlab-Event: Push Hook\r\nContent-Type: application/json\r\n\
              Content-Length: 10000000\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(BOUND, stream.read_exact(&mut head))
        .await
        .expect("answered without the body")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");

    // A declared length over GFJ_WEBHOOK_MAX_BYTES from a genuine hook is refused before reading it.
    app.linked_world(1).await;
    let token = app.gitlab.hook_token(app.gitlab.hooks()[0].id).unwrap();
    let mut stream = connect(&app).await;
    stream
        .write_all(
            format!(
                "POST /gitlab/webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: {token}\r\n\
                 X-Gitlab-Event: Push Hook\r\nContent-Length: {}\r\n\r\n{{",
                1u64 << 40
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::timeout(BOUND, stream.read_exact(&mut head))
        .await
        .expect("answered without the body")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    app.stop().await;
}

/// A client that sends its headers or its body too slowly is cut off, and one that stalls mid-request
/// does not hold up a graceful shutdown beyond GFJ_HTTP_DRAIN_SECS.
async fn slow_clients_are_cut_off_and_do_not_block_shutdown(db: TestDatabase) {
    let app = TestApp::start_with_settings(
        db,
        true,
        Default::default(),
        &[
            ("GFJ_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("GFJ_HTTP_REQUEST_TIMEOUT_SECS", "2"),
            ("GFJ_HTTP_DRAIN_SECS", "2"),
        ],
    )
    .await;
    app.linked_world(1).await;
    let token = app.gitlab.hook_token(app.gitlab.hooks()[0].id).unwrap();

    // Headers that never end: the connection is closed.
    let mut slow_headers = connect(&app).await;
    slow_headers
        .write_all(b"POST /gitlab/webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut slow_headers).await.is_some(),
        "a client that never finishes its headers is disconnected"
    );

    // A body that never ends: 408, and the connection is closed.
    let stalled_request = format!(
        "POST /gitlab/webhook HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: {token}\r\n\
         X-Gitlab-Event: Push Hook\r\nContent-Length: 1000\r\n\r\n{{\"object_kind\""
    );
    let mut slow_body = connect(&app).await;
    slow_body
        .write_all(stalled_request.as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_body)
        .await
        .expect("a client that never finishes its body is disconnected");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A shutdown with a stalled request in flight completes within the drain time.
    let mut stalled = connect(&app).await;
    stalled.write_all(stalled_request.as_bytes()).await.unwrap();
    let healthz = reqwest::get(format!("{}/healthz", app.base_url))
        .await
        .unwrap();
    assert_eq!(healthz.status().as_u16(), 200, "the service is up");
    tokio::time::timeout(BOUND, app.stop())
        .await
        .expect("the shutdown did not wait for the stalled client");
}

/// Connections beyond GFJ_HTTP_MAX_CONNECTIONS are closed at once; the service stays usable for the
/// ones it holds.
async fn connections_are_capped(db: TestDatabase) {
    let app = TestApp::start_with_settings(
        db,
        true,
        Default::default(),
        &[("GFJ_HTTP_MAX_CONNECTIONS", "2")],
    )
    .await;
    let mut first = connect(&app).await;
    let _second = connect(&app).await;
    // The first connection is served: the service accepted it before the third arrives.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(BOUND, first.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut third = connect(&app).await;
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut third)
        .await
        .expect("the third connection is closed");
    assert!(answer.is_empty(), "nothing served beyond the cap: {answer}");
    drop(first);
    drop(_second);
    app.stop().await;
}

/// Every answer says `nosniff` and `no-referrer` (the configuration page's URL carries Jira's JWT);
/// every HTML answer has a CSP.
async fn every_answer_carries_security_headers(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/healthz",
        "/atlassian-connect.json",
        "/jira/config",
        "/jira/config?jwt=forged",
        "/admin",
        "/gitlab/oauth/begin?ticket=unknown",
        "/gitlab/oauth/callback?code=c&state=s",
        "/static/config.js",
        "/no/such/route",
    ] {
        let resp = http
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        // A request id, made here when the client sent none, for matching an answer with the logs.
        assert_eq!(h["x-request-id"].len(), 36, "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let html = h
            .get("content-type")
            .is_some_and(|t| t.to_str().unwrap().starts_with("text/html"));
        if html {
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors"), "{path}: {csp}");
        }
    }
    let traced = http
        .get(format!("{}/healthz", app.base_url))
        .header("x-request-id", "lb-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        traced.headers()["x-request-id"],
        "lb-7f3a",
        "the proxy's id is kept"
    );
    let forged = http
        .get(format!("{}/healthz", app.base_url))
        .header("x-request-id", "x\" forged=\"yes")
        .send()
        .await
        .unwrap();
    let id = forged.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "anything but a plain token is replaced: {id}");
    app.stop().await;
}

/// Install tokens with `kid`s the key server does not know: each unknown `kid` is asked about once, and
/// the key server is asked at most a budget's worth whatever the number of `kid`s; a flood of lifecycle
/// callbacks is answered 429 before any work.
async fn random_kids_do_not_hammer_the_key_server(db: TestDatabase) {
    let app = TestApp::start(db).await;
    let path = "/jira/events/installed";
    let body = serde_json::json!({
        "key": "gitlab-for-jira",
        "clientKey": "kid-prober",
        "sharedSecret": "s",
        "baseUrl": app.jira.base_url,
        "productType": "jira",
        "eventType": "installed"
    });
    let token = |kid: &str| {
        connect_jwt::sign_rs256_install(
            install_private_key().as_bytes(),
            kid,
            "kid-prober",
            &app.base_url,
            &connect_jwt::BoundRequest {
                method: "POST",
                path,
                query: "",
                base_path: "",
            },
            crate::helpers::now_ms() / 1000,
        )
        .unwrap()
    };
    let post = |kid: String| {
        let t = token(&kid);
        let b = body.clone();
        let url = format!("{}{path}", app.base_url);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("Authorization", format!("JWT {t}"))
                .json(&b)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..5 {
        assert_eq!(post("unknown/kid-1".into()).await, 401);
    }
    assert_eq!(
        app.jira.key_fetches(),
        1,
        "an unknown kid is asked about once"
    );
    for n in 0..14 {
        assert_eq!(post(format!("random/kid-{n}")).await, 401);
    }
    let fetched = app.jira.key_fetches();
    assert!(
        fetched <= 12,
        "15 distinct kids cost at most the fetch budget, not 15 fetches: {fetched}"
    );

    // A burst of callbacks beyond what Jira ever sends gets 429 before any verification.
    let burst: Vec<u16> = futures_join_all((0..60).map(|n| post(format!("burst/kid-{n}")))).await;
    assert!(
        burst.contains(&429),
        "a flood of lifecycle callbacks is throttled: {burst:?}"
    );
    assert!(
        app.jira.key_fetches() <= fetched + 2,
        "and costs the key server nothing more"
    );
    app.stop().await;
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F: std::future::Future<Output = u16> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

test_on_both_databases!(
    a_webhook_token_is_checked_before_the_body_is_read,
    slow_clients_are_cut_off_and_do_not_block_shutdown,
    connections_are_capped,
    every_answer_carries_security_headers,
    random_kids_do_not_hammer_the_key_server,
);
