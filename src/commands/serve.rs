//! `serve`: the HTTP edge and the queue workers in one process, until SIGTERM/SIGINT.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gfj_server::{AppState, ServerConfig};
use gfj_store::intake::Intake;
use gfj_store::{Backend, Clock, DatabaseClock, Store, SystemClock};
use gfj_sync::Handlers;
use gfj_sync::upkeep::Upkeep;
use gfj_sync::{Runner, RunnerConfig};
use tokio::net::TcpListener;

use crate::Settings;

/// Everything `serve` runs on, built from settings.
pub struct Service {
    pub store: Store,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    /// Whether this process also drains the queue (tests run their own workers).
    pub run_workers: bool,
    /// With SQLite, held while the service lives: a second `serve` on the same file is refused.
    _one_process: Option<std::fs::File>,
}

/// A machine clock further than this from the database's is worth a warning.
const CLOCK_WARNING_MS: i64 = 2_000;

impl Service {
    pub async fn open(settings: Settings) -> anyhow::Result<Self> {
        Self::open_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Self::open`] on `machine`'s time (tests give a replica a wrong clock): the service runs on
    /// the database's time, measured through it.
    pub async fn open_with_clock(
        settings: Settings,
        machine: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        if let Some(token) = &settings.admin_token {
            crate::settings::check_admin_token(token)?;
        }
        if settings.jira_urls.is_empty() {
            tracing::warn!(
                "GFJ_JIRA_URLS is not set: Atlassian Connect installs are refused until it lists your Jira \
                 site(s), e.g. GFJ_JIRA_URLS=https://your-site.atlassian.net"
            );
        }
        let one_process = Store::lock_for_one_process(&settings.database_url)?;
        let store = settings.open_store().await?;
        let clock = DatabaseClock::start(&store, machine).await?;
        if clock.offset_ms().abs() > CLOCK_WARNING_MS {
            tracing::warn!(
                offset_ms = clock.offset_ms(),
                "this machine's clock differs from the database's; the service runs on the database's"
            );
        }
        Ok(Self {
            store,
            settings,
            clock,
            run_workers: true,
            _one_process: one_process,
        })
    }

    pub fn handlers(&self) -> Handlers {
        handlers(&self.settings, &self.store, self.clock.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then stops taking requests, lets running jobs
    /// finish, and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if self.store.backend() == Backend::Sqlite {
            // One process owns a SQLite database, so any lease left behind belongs to a dead process.
            let freed = self.store.release_all_leases().await?;
            if freed > 0 {
                tracing::info!(
                    jobs = freed,
                    "resuming jobs interrupted by the previous run"
                );
            }
        }
        let intake = Intake::start(self.store.clone(), self.clock.clone());
        let config = ServerConfig {
            base_url: self.settings.base_url.clone(),
            app_key: self.settings.app_key.clone(),
            jira_urls: self.settings.jira_urls.clone(),
            connect_keys_url: self.settings.connect_keys_url.clone(),
            webhook_max_bytes: self.settings.webhook_max_bytes,
            admin_token_digest: self
                .settings
                .admin_token
                .as_deref()
                .map(|t| gfj_core::digest::sha256_hex(t.as_bytes())),
            gitlab_oauth_apps: self.settings.gitlab_oauth_apps.clone(),
            backfill_tasks: self.settings.backfill_tasks as i64,
            edge: self.settings.http.clone(),
            metrics_on_main_listener: self.settings.metrics_listen.is_none(),
        };
        let http = gfj_http::client();
        let jira = self.settings.jira_client();
        let state = AppState::new(
            self.store.clone(),
            intake,
            config,
            self.clock.clone(),
            http,
            self.settings.gitlab_access(),
            jira,
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let workers = if self.run_workers {
            let config = RunnerConfig {
                concurrency: self.settings.worker_concurrency,
                lease_ms: self.settings.job_lease_secs * 1000,
                drain: Duration::from_secs(self.settings.job_drain_secs.unsigned_abs()),
                ..RunnerConfig::default()
            };
            let runner = Runner::new(
                self.store.clone(),
                self.clock.clone(),
                self.handlers(),
                config,
            );
            let upkeep = Upkeep {
                hook_check_ms: self.settings.hook_check_secs * 1000,
                reconcile_ms: self.settings.reconcile_secs * 1000,
                gating_ms: self.settings.gating_poll_secs * 1000,
                audit_retention_ms: self.settings.audit_days * 86_400_000,
                backfill_tasks: self.settings.backfill_tasks as i64,
            };
            tokio::spawn(upkeep.run(self.store.clone(), self.clock.clone(), stop_rx.clone()));
            Some(tokio::spawn(runner.run(stop_rx.clone())))
        } else {
            None
        };
        let metrics = match &self.settings.metrics_listen {
            Some(address) => {
                let listener = TcpListener::bind(address).await.map_err(|e| {
                    anyhow::anyhow!("cannot listen on {address} (GFJ_METRICS_LISTEN): {e}")
                })?;
                tracing::info!(listen = %listener.local_addr()?, "serving /metrics");
                let (app, limits, mut stopped) = (
                    gfj_server::metrics_router(state.clone()),
                    self.settings.http.clone(),
                    stop_rx.clone(),
                );
                Some(tokio::spawn(async move {
                    let stop = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    gfj_server::edge::serve(listener, app, &limits, stop).await
                }))
            }
            None => None,
        };
        tracing::info!(listen = %listener.local_addr()?, base_url = %self.settings.base_url, "serving");
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests and running jobs");
            let _ = stop_tx.send(true);
        };
        gfj_server::edge::serve(
            listener,
            gfj_server::router(state),
            &self.settings.http,
            stop,
        )
        .await?;
        if let Some(w) = workers {
            w.await?;
        }
        if let Some(m) = metrics {
            m.await??;
        }
        self.store.close().await;
        Ok(())
    }
}

/// The queue handlers, with clients restricted to the allow-lists.
pub fn handlers(settings: &Settings, store: &Store, clock: Arc<dyn Clock>) -> Handlers {
    Handlers {
        store: store.clone(),
        jira: settings.jira_client(),
        gitlab: settings.gitlab_access(),
        clock,
        cicd_batch_size: settings.jira_batch_size,
        webhook_url: gfj_sync::hooks::webhook_url(&settings.base_url),
        merge_request_options: gfj_core::mapping::merge_request::MergeRequestOptions {
            keys_from_source_branch: settings.mr_keys_from_branch,
        },
        backfill: gfj_sync::shared::BackfillSettings {
            window_ms: settings.backfill_window_ms,
            max_running: settings.backfill_tasks as i64,
        },
        backfill_shared: Default::default(),
        coverage_checks: Default::default(),
        gating: gfj_sync::gating::GatingSettings {
            poll_ms: settings.gating_poll_secs * 1000,
            timeout_ms: settings.gating_timeout_secs * 1000,
            undecided: settings.gating_undecided,
        },
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    Service::open(settings).await?.run(listener, signal()).await
}
