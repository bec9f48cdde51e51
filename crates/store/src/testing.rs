//! Throw-away databases for tests, on both engines. PostgreSQL is never skipped: when it cannot be
//! reached the test fails and says how to start it.

use crate::Store;

/// Base64 of 32 zero bytes: a fixed key for test databases.
pub const TEST_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A fresh database that is removed again by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub url: String,
    admin_url: Option<String>,
    name: String,
    dir: Option<std::path::PathBuf>,
}

/// `GFJ_TEST_PG_URL`, else the local server every machine of this project runs.
pub fn postgres_admin_url() -> String {
    std::env::var("GFJ_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn unique_name() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random bytes");
    format!(
        "gfj_test_{}_{}",
        std::process::id(),
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let name = unique_name();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            url: format!("sqlite://{}", dir.join("test.db").display()),
            admin_url: None,
            name,
            dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let admin_url = postgres_admin_url();
        let mut conn = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test and is not reachable at {admin_url}: {e}. Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or set GFJ_TEST_PG_URL."
            )
        });
        let name = unique_name();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        Self {
            url: format!("{base}/{name}"),
            admin_url: Some(admin_url),
            name,
            dir: None,
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url, Some(TEST_KEY))
            .await
            .expect("open test store")
    }

    pub async fn drop_database(self) {
        use sqlx::Connection;
        if let Some(admin) = &self.admin_url
            && let Ok(mut conn) = sqlx::AnyConnection::connect(admin).await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Declares one `#[tokio::test]` per engine for an `async fn(TestDatabase)` scenario.
#[macro_export]
macro_rules! test_on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::testing::TestDatabase::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::testing::TestDatabase::postgres().await).await;
                }
            )*
        }
    };
}
