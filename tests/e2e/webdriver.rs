//! A small W3C WebDriver client over reqwest, for the browser tests: Debian's chromedriver driving
//! headless Chromium. Written here rather than taken from a WebDriver crate because the ten commands the
//! tests use are plain JSON over HTTP, and the crates pull a second HTTP stack and Unicode segmentation
//! data into every cold build.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where screenshots go: `GFJ_TEST_ARTIFACTS`, or `target/test-artifacts`.
pub fn artifacts_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("GFJ_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
        });
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

/// A chromedriver process and one browser session; both end when it is dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: String,
    child: Child,
    profile: std::path::PathBuf,
}

#[derive(Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile and no background traffic.
    pub async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{driver}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("gfj-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{driver}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        Browser {
            http,
            session,
            driver,
            child,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn add_cookie(&self, name: &str, value: &str) {
        self.post(
            "/cookie",
            json!({ "cookie": { "name": name, "value": value, "path": "/" } }),
        )
        .await;
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await;
        // The W3C element reference key; an error answer has none.
        v.get("element-6066-11e4-a52e-4f735466cecf")
            .and_then(Value::as_str)
            .map(|id| Element(id.to_owned()))
    }

    /// Waits (bounded) until an element matches, and returns it.
    pub async fn wait_for(&self, css: &str, within: Duration) -> Element {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self.text_of("body").await;
                panic!("no element {css} after {within:?}; the page says: {text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text }))
            .await;
    }

    /// Empties an input.
    pub async fn clear(&self, e: &Element) {
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    /// Chooses the option with this value in a `<select>` (by clicking it).
    pub async fn select(&self, select_css: &str, value: &str) {
        let option = self
            .wait_for(
                &format!("{select_css} option[value=\"{value}\"]"),
                Duration::from_secs(10),
            )
            .await;
        self.click(&option).await;
    }

    pub async fn text_of(&self, css: &str) -> String {
        match self.find(css).await {
            Some(e) => self
                .get(&format!("/element/{}/text", e.0))
                .await
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            None => String::new(),
        }
    }

    pub async fn window_handles(&self) -> Vec<String> {
        self.get("/window/handles")
            .await
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// The window commands go to from now on.
    pub async fn switch_to_window(&self, handle: &str) {
        self.post("/window", json!({ "handle": handle })).await;
    }

    /// The handle of the window commands go to now.
    pub async fn current_window(&self) -> String {
        self.get("/window")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a PNG of the current window as an artifact; returns its path.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("a screenshot"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Browser {
    /// Ends the session (and its Chromium) before the driver goes.
    pub async fn close(self) {
        let url = format!("{}/session/{}", self.driver, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
