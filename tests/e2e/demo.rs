//! `demo` on its own (nothing beside the binary): every entity kind reaches the simulated panel, and
//! `demo --serve` serves that panel at the URL it prints until SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitlab-for-jira"));
    cmd.arg("demo")
        .args(args)
        .env_clear()
        .env("GFJ_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_every_entity_kind() {
    let out = tokio::task::spawn_blocking(|| demo(&[]).output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "  branch        feature/PROJ-7-login",
        "PROJ-8 validate passwords",
        "  pull request  acme/api!1  Login form (OPEN)",
        "  build         main #1 (successful)",
        "(successful), environment api/production, services b:ZGVtby1zZXJ2aWNl",
        "  feature flag  new_login (on)",
        "DOCS-3 describe the login page",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serve_serves_the_panel_until_sigterm() {
    let mut child = demo(&["--serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (url, mut lines) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let url = lines
            .by_ref()
            .map(Result::unwrap)
            .find_map(|l| {
                l.split_once("development panel: ")
                    .map(|(_, rest)| rest.split(' ').next().unwrap().to_owned())
            })
            .expect("the demo prints the panel's URL");
        (url, lines)
    })
    .await
    .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let index = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(index.contains("href=\"/browse/PROJ-9\""), "{index}");
    let panel = reqwest::get(format!("{url}/PROJ-9"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in ["commits", "builds", "deployments"] {
        assert!(
            panel.contains(&format!("data-kind=\"{kind}\"")),
            "{kind}: {panel}"
        );
    }
    assert!(panel.contains("services b:ZGVtby1zZXJ2aWNl"), "{panel}");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.by_ref().map(Result::unwrap).collect();
        (child.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(rest.last().map(String::as_str), Some("demo stopped"));
}
