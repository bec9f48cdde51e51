//! A small load balancer in front of several replicas, as operators run one: each request goes to the
//! next replica in turn, and a replica that does not take the connection (killed, restarting) is
//! skipped, as a balancer's health check would. Requests are forwarded one by one (not connections), so
//! a client that keeps its connection open is still spread over every replica.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

/// Bodies larger than this are refused (the replicas' own limit is lower).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct RoundRobin {
    pub base_url: String,
    shared: Arc<Shared>,
}

struct Shared {
    backends: Mutex<Vec<String>>,
    pinned: Mutex<Option<usize>>,
    next: AtomicUsize,
    client: reqwest::Client,
    forwarded: Mutex<Vec<usize>>,
}

impl RoundRobin {
    /// Listens on a free loopback port, with no replica yet (see [`RoundRobin::set_backends`]).
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            backends: Mutex::new(Vec::new()),
            pinned: Mutex::new(None),
            next: AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            forwarded: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url, shared })
    }

    /// The replicas' base URLs, in turn order.
    pub fn set_backends(&self, backends: Vec<String>) {
        let n = backends.len();
        *self.shared.backends.lock().unwrap() = backends;
        *self.shared.forwarded.lock().unwrap() = vec![0; n];
    }

    /// Sends every request to replica `index` (while it answers), or `None`: in turn again.
    pub fn pin(&self, index: Option<usize>) {
        *self.shared.pinned.lock().unwrap() = index;
    }

    /// Requests each replica answered.
    pub fn forwarded(&self) -> Vec<usize> {
        self.shared.forwarded.lock().unwrap().clone()
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let backends = shared.backends.lock().unwrap().clone();
    if backends.is_empty() {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    let first = shared
        .pinned
        .lock()
        .unwrap()
        .unwrap_or_else(|| shared.next.fetch_add(1, Ordering::Relaxed));
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    for attempt in 0..backends.len() {
        let index = (first + attempt) % backends.len();
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if !hop_by_hop(name) {
                headers.append(name, value.clone());
            }
        }
        let sent = shared
            .client
            .request(parts.method.clone(), format!("{}{path}", backends[index]))
            .headers(headers)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(answer) => {
                if let Some(n) = shared.forwarded.lock().unwrap().get_mut(index) {
                    *n += 1;
                }
                let status = answer.status();
                let mut headers = HeaderMap::new();
                for (name, value) in answer.headers() {
                    if !hop_by_hop(name) {
                        headers.append(name, value.clone());
                    }
                }
                let bytes = answer.bytes().await.unwrap_or_default();
                let mut response = Response::new(Body::from(bytes));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                return response;
            }
            // Not taken (the replica is down): the next one gets it. Anything later (the replica
            // died mid-request) is answered 502, as a balancer does, since the request may have
            // been acted on.
            Err(e) if e.is_connect() => continue,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    StatusCode::BAD_GATEWAY.into_response()
}

fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade"
    )
}
