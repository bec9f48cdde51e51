use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::Notify;

use crate::StoreError;
use crate::crypto::Cipher;

/// Which engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database, its engine, the secrets cipher and the queue's wake-up signal.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    pub(crate) cipher: Cipher,
    pub(crate) wake: Arc<Notify>,
    /// SQLite: a background checkpoint has copied the log since [`finish_checkpoint`] last ran.
    log_copied: Arc<AtomicBool>,
}

impl Store {
    /// Opens (creating a SQLite file if missing) and migrates. `encryption_key` is base64 of 32 bytes; when
    /// absent, SQLite uses `<database file>.key` (created on first use) and PostgreSQL refuses to start.
    pub async fn open(url: &str, encryption_key: Option<&str>) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = backend_of(url)?;
        let cipher = match (encryption_key, backend) {
            (Some(k), _) => Cipher::from_base64(k)?,
            (None, Backend::Sqlite) => Cipher::from_key_file(&sqlite_key_path(url))?,
            (None, Backend::Postgres) => {
                return Err(StoreError::Config(
                    "GFJ_ENCRYPTION_KEY is required with PostgreSQL".into(),
                ));
            }
        };
        let log_copied = Arc::new(AtomicBool::new(false));
        let pool = match backend {
            Backend::Sqlite => {
                restrict_sqlite_files(&sqlite_file_path(url))?;
                sqlite_pool(url).await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect(url)
                    .await?
            }
        };
        match backend {
            Backend::Sqlite => {
                SQLITE_MIGRATIONS.run(&pool).await?;
                // SQLite gives the WAL and shared-memory files the database file's mode; checked
                // again now that they exist.
                restrict_sqlite_files(&sqlite_file_path(url))?;
                tokio::spawn(checkpoints(
                    pool.clone(),
                    sqlite_pool(url).await?,
                    log_copied.clone(),
                ));
            }
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Self {
            pool,
            backend,
            cipher,
            wake: Arc::new(Notify::new()),
            log_copied,
        })
    }

    /// For `serve` on SQLite: makes sure no other `serve` process uses the same database file, and
    /// keeps it so while the returned lock lives. SQLite's queue has no leases between processes (a
    /// process frees every lease it finds at start), so two would run each job twice. Other commands
    /// (`status`, `link`, …) may still open the database beside it. `None` on PostgreSQL.
    pub fn lock_for_one_process(url: &str) -> Result<Option<std::fs::File>, StoreError> {
        if backend_of(url)? != Backend::Sqlite {
            return Ok(None);
        }
        let db = sqlite_file_path(url);
        let mut path = db.clone().into_os_string();
        path.push(".serve.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot open {}: {e}",
                    std::path::Path::new(&path).display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Config(format!(
                "another `serve` process already runs on the SQLite database {}: SQLite serves one process. \
                 Stop the other one, or run several replicas on PostgreSQL (GFJ_DATABASE_URL=postgres://…)",
                db.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Config(format!(
                "cannot lock {}: {e}",
                std::path::Path::new(&path).display()
            ))),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers and every migration this build knows is applied.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        let known = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.iter().count(),
            Backend::Postgres => POSTGRES_MIGRATIONS.iter().count(),
        } as i64;
        if applied < known {
            return Err(StoreError::Config(format!(
                "{applied} of {known} migrations applied"
            )));
        }
        Ok(())
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`), which
    /// avoids the deferred-upgrade deadlock where `busy_timeout` does not apply.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A pool of one connection to a SQLite database. SQLite lets one writer in at a time, and a second
/// connection that finds the lock taken sleeps in SQLite's busy handler by whole milliseconds (1, 2, 5,
/// 10…), however soon the lock is free: webhook intake's commits then waited behind any worker's write
/// (p99 16 ms against 5.5 ms with one connection while 8 MB pushes arrived; BENCHMARKS.md). With one
/// connection, statements queue in the pool, in turn, and wake as soon as it is free.
async fn sqlite_pool(url: &str) -> Result<AnyPool, StoreError> {
    // Created when missing.
    let url = if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok(AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL so the checkpoint connection never blocks the writer; FULL so a 2xx means the
                // event reached the disk (group commit keeps this cheap, see intake.rs). Checkpoints run
                // in the background (see `checkpoints`), not inside a commit.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 0;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?)
}

/// Copies SQLite's write-ahead log back into the database file every half second, off the commit path: with
/// SQLite's automatic checkpoints, the commit that crosses the threshold pays for the whole checkpoint and
/// its fsyncs, which shows as latency spikes on webhook intake. It runs on a connection of its own
/// (`checkpointer`), beside the store's, and `PASSIVE` never blocks writers. Stops when the store's pool is
/// closed.
async fn checkpoints(pool: AnyPool, checkpointer: AnyPool, log_copied: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            checkpointer.close().await;
            return;
        }
        match copy_most_of_the_log(&checkpointer).await {
            Ok(()) => log_copied.store(true, Ordering::Release),
            Err(e) => {
                if pool.is_closed() {
                    checkpointer.close().await;
                    return;
                }
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
            }
        }
    }
}

/// Most `PASSIVE` passes in one background checkpoint.
const CHECKPOINT_PASSES: usize = 8;

/// Frames left for [`finish_checkpoint`] to copy that make one more background pass not worth it: a
/// few commits' worth.
const FRAMES_LEFT_TO_FINISH: i64 = 256;

/// Copies the log into the database file in `PASSIVE` passes (which never block a writer). A pass
/// copies the frames committed when it began; the next copies those committed during it, fewer each
/// time, until one finds fewer than [`FRAMES_LEFT_TO_FINISH`] new frames.
async fn copy_most_of_the_log(checkpointer: &AnyPool) -> Result<(), sqlx::Error> {
    let mut frames_before = 0;
    for _ in 0..CHECKPOINT_PASSES {
        // (busy, frames in the log, frames copied)
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(checkpointer)
            .await?;
        let frames: i64 = row.try_get(1)?;
        if frames - frames_before < FRAMES_LEFT_TO_FINISH {
            break;
        }
        frames_before = frames;
    }
    Ok(())
}

/// Finishes a checkpoint on the connection that writes, between two commits, when the background one
/// ([`checkpoints`]) has copied most of the log since the last call: SQLite starts the log over only
/// when a write begins with every frame copied, and under steady load a commit always lands while the
/// background checkpoint runs, so without this the log grows for as long as the load lasts (50 MB a
/// second at full intake, every fsync then also extending the file). What is left to copy is the
/// commits made during the background pass, so this costs about one commit.
pub(crate) async fn finish_checkpoint(store: &Store, conn: &mut sqlx::AnyConnection) {
    if store.backend != Backend::Sqlite || !store.log_copied.swap(false, Ordering::AcqRel) {
        return;
    }
    if let Err(e) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
        tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::Config(
            "GFJ_DATABASE_URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

/// The file a `sqlite://` URL names.
fn sqlite_file_path(url: &str) -> std::path::PathBuf {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    path.split('?').next().unwrap_or(path).into()
}

fn sqlite_key_path(url: &str) -> std::path::PathBuf {
    let mut path = sqlite_file_path(url).into_os_string();
    path.push(".key");
    path.into()
}

/// The database holds encrypted secrets and every event's payload: only its owner may read it. Creates
/// the file with mode 0600 when missing, and narrows the database, its WAL and its shared memory to 0600
/// when they are wider.
fn restrict_sqlite_files(db: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if db.as_os_str().is_empty() || db.as_os_str() == ":memory:" {
        return Ok(());
    }
    let config_error =
        |e: std::io::Error| StoreError::Config(format!("database file {}: {e}", db.display()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(db)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(config_error(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let path = std::path::PathBuf::from(path);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(config_error)?;
            tracing::warn!(file = %path.display(), "narrowed the database file's permissions to 0600");
        }
    }
    Ok(())
}

/// The engine a connection talks to.
pub(crate) fn backend_of_connection(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// The `VALUES` of a multi-row insert of `rows` rows of `columns` bound parameters each, bound in order:
/// `($1, $2, …), ($n+1, …), …` on PostgreSQL, `(?, ?, …), …` on SQLite. SQLite gets anonymous
/// parameters because the driver asks SQLite for each parameter's name, a lookup that walks the list of
/// named ones: numbered, a 512-row statement spent ≈ 5% of the SQLite thread there (BENCHMARKS.md).
pub(crate) fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * columns + column + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(backend_of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            placeholders(Backend::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Backend::Postgres, 1, 1), "($1)");
        assert_eq!(placeholders(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(backend_of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert!(backend_of("mysql://h/db").is_err());
        assert_eq!(
            sqlite_key_path("sqlite://data/x.db?mode=rwc"),
            std::path::PathBuf::from("data/x.db.key")
        );
    }

    /// PostgreSQL refuses `?` (every PostgreSQL conformance test would fail); SQLite takes both forms,
    /// so only this shows SQLite is told apart.
    #[tokio::test]
    async fn a_connection_knows_its_engine() {
        use sqlx::Connection as _;
        install_default_drivers();
        let conn = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        assert_eq!(backend_of_connection(&conn), Backend::Sqlite);
    }

    #[test]
    fn both_migration_trees_have_the_same_versions() {
        let v = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(v(&SQLITE_MIGRATIONS), v(&POSTGRES_MIGRATIONS));
    }
}
