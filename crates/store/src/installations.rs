//! Jira sites: installed through Atlassian Connect, or registered with OAuth credentials. Both live in one
//! table so that subscriptions and everything downstream treat them alike.

use sqlx::Row;

use crate::{Store, StoreError};

/// How a site registered with OAuth credentials is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSite {
    pub cloud_id: String,
    pub client_id: String,
}

#[derive(Clone, PartialEq)]
pub struct Installation {
    /// The Connect `clientKey`, or `oauth:<cloudId>` for an OAuth site.
    pub client_key: String,
    pub base_url: String,
    pub display_url: Option<String>,
    /// The Connect shared secret, or the OAuth client secret.
    pub shared_secret: String,
    /// Set for sites in OAuth-credentials mode.
    pub oauth: Option<OAuthSite>,
}

impl Installation {
    pub fn mode(&self) -> &'static str {
        if self.oauth.is_some() {
            "oauth"
        } else {
            "connect"
        }
    }
}

impl std::fmt::Debug for Installation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installation")
            .field("client_key", &self.client_key)
            .field("base_url", &self.base_url)
            .field("display_url", &self.display_url)
            .field("shared_secret", &"<redacted>")
            .field("oauth", &self.oauth)
            .finish()
    }
}

fn secret_context(client_key: &str) -> String {
    format!("installations.shared_secret:{client_key}")
}

const COLUMNS: &str =
    "client_key, base_url, display_url, shared_secret, mode, cloud_id, oauth_client_id";

impl Store {
    /// Stores a site, or replaces secret and URLs of a known `client_key` (a reinstall).
    pub async fn upsert_installation(
        &self,
        i: &Installation,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let secret = self
            .cipher
            .encrypt(i.shared_secret.as_bytes(), &secret_context(&i.client_key))?;
        sqlx::query(
            "INSERT INTO installations (client_key, base_url, display_url, shared_secret, installed_at, updated_at,
                                        mode, cloud_id, oauth_client_id)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)
             ON CONFLICT (client_key) DO UPDATE SET base_url = excluded.base_url,
                 display_url = excluded.display_url, shared_secret = excluded.shared_secret,
                 updated_at = excluded.updated_at, mode = excluded.mode, cloud_id = excluded.cloud_id,
                 oauth_client_id = excluded.oauth_client_id",
        )
        .bind(&i.client_key)
        .bind(&i.base_url)
        .bind(&i.display_url)
        .bind(secret)
        .bind(now_ms)
        .bind(i.mode())
        .bind(i.oauth.as_ref().map(|o| o.cloud_id.clone()))
        .bind(i.oauth.as_ref().map(|o| o.client_id.clone()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn installation(&self, client_key: &str) -> Result<Option<Installation>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM installations WHERE client_key = $1"
        ))
        .bind(client_key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.installation_from_row(&r)).transpose()
    }

    /// Finds a site by `clientKey` or by its base URL (trailing slash ignored).
    pub async fn find_installation(&self, site: &str) -> Result<Option<Installation>, StoreError> {
        if let Some(i) = self.installation(site).await? {
            return Ok(Some(i));
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM installations WHERE base_url = $1 ORDER BY mode LIMIT 1"
        ))
        .bind(site.trim_end_matches('/'))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.installation_from_row(&r)).transpose()
    }

    pub async fn installations(&self) -> Result<Vec<Installation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM installations ORDER BY client_key"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.installation_from_row(r)).collect()
    }

    /// Removes an installation with its secret, its subscriptions (and their hook records) and its state.
    /// Returns whether it existed.
    pub async fn delete_installation(&self, client_key: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let existed = delete_installation_rows(&mut tx, client_key).await?;
        tx.commit().await?;
        Ok(existed)
    }

    fn installation_from_row(&self, r: &sqlx::any::AnyRow) -> Result<Installation, StoreError> {
        let client_key: String = r.try_get("client_key")?;
        let secret: Vec<u8> = r.try_get("shared_secret")?;
        let secret = self.cipher.decrypt(&secret, &secret_context(&client_key))?;
        let mode: String = r.try_get("mode")?;
        let oauth = if mode == "oauth" {
            Some(OAuthSite {
                cloud_id: r
                    .try_get::<Option<String>, _>("cloud_id")?
                    .unwrap_or_default(),
                client_id: r
                    .try_get::<Option<String>, _>("oauth_client_id")?
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        Ok(Installation {
            base_url: r.try_get("base_url")?,
            display_url: r.try_get("display_url")?,
            shared_secret: String::from_utf8(secret)
                .map_err(|_| StoreError::Crypto("secret is not UTF-8".into()))?,
            client_key,
            oauth,
        })
    }
}

/// Deletes a site's rows within a caller's write transaction; whether the installation existed.
pub(crate) async fn delete_installation_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    client_key: &str,
) -> Result<bool, StoreError> {
    sqlx::query(
        "DELETE FROM subscription_hooks WHERE subscription_id IN (SELECT id FROM subscriptions WHERE client_key = $1)",
    )
    .bind(client_key)
    .execute(&mut **tx)
    .await?;
    for table in [
        "subscriptions",
        "site_state",
        "jira_rejections",
        "jira_unknown_keys",
    ] {
        sqlx::query(&format!("DELETE FROM {table} WHERE client_key = $1"))
            .bind(client_key)
            .execute(&mut **tx)
            .await?;
    }
    let n = sqlx::query("DELETE FROM installations WHERE client_key = $1")
        .bind(client_key)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n > 0)
}
