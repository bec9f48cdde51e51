//! GitLab users who signed in with OAuth, and sign-ins in progress. Token pairs are stored encrypted
//! and replaced with compare-and-swap, because GitLab revokes the old pair on every refresh: of two
//! replicas refreshing at once, only the one whose swap lands may use its pair, and the other re-reads.

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError};

/// Sign-ins older than this are refused (GitLab's authorization codes live ten minutes too).
pub const PENDING_TTL_MS: i64 = 10 * 60 * 1000;

/// A sign-in's start URL must be opened within this time (and only once).
pub const START_TTL_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitLabConnection {
    pub id: i64,
    pub gitlab_url: String,
    pub user_id: i64,
    pub username: String,
    pub updated_at: i64,
    /// Signed in through the admin page's flow: only such connections may link groups from the admin
    /// page or the command line.
    pub via_admin: bool,
}

/// A connection's decrypted token pair (opaque JSON to the store), with the stored record it came
/// from, which a later swap must still find.
pub struct ConnectionTokens {
    pub tokens: String,
    record: Vec<u8>,
}

impl std::fmt::Debug for ConnectionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionTokens(..)")
    }
}

fn tokens_context(gitlab_url: &str, user_id: i64) -> String {
    format!("gitlab_connections.tokens:{gitlab_url}:{user_id}")
}

fn verifier_context(state: &str) -> String {
    format!("gitlab_oauth_pending.verifier:{state}")
}

fn staged_context(state: &str) -> String {
    format!("gitlab_oauth_pending.tokens:{state}")
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<GitLabConnection, sqlx::Error> {
    Ok(GitLabConnection {
        id: r.try_get("id")?,
        gitlab_url: r.try_get("gitlab_url")?,
        user_id: r.try_get("user_id")?,
        username: r.try_get("username")?,
        updated_at: r.try_get("updated_at")?,
        via_admin: r.try_get::<i64, _>("via_admin")? != 0,
    })
}

/// A Jira user: the site (Connect clientKey) and the Atlassian account id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JiraUser {
    pub client_key: String,
    pub account_id: String,
}

/// A sign-in whose browser opened its start URL: where to send that browser.
pub struct StartedSignIn {
    pub state: String,
    pub gitlab_url: String,
    pub verifier: String,
}

impl std::fmt::Debug for StartedSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSignIn")
            .field("gitlab_url", &self.gitlab_url)
            .finish_non_exhaustive()
    }
}

/// A sign-in whose callback came back.
#[derive(Clone)]
pub struct PendingSignIn {
    pub gitlab_url: String,
    pub verifier: String,
    /// Who started it from the Jira configuration page, if a Jira user did.
    pub jira_user: Option<JiraUser>,
    /// SHA-256 (hex) of the cookie of the browser that opened the start URL.
    pub browser_hash: String,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("gitlab_url", &self.gitlab_url)
            .field("jira_user", &self.jira_user)
            .finish_non_exhaustive()
    }
}

/// A sign-in GitLab completed, waiting for its browser's confirmation.
pub struct StagedSignIn {
    pub gitlab_url: String,
    pub jira_user: Option<JiraUser>,
    pub browser_hash: String,
    pub user_id: i64,
    pub username: String,
    /// The token pair (JSON), to store once confirmed.
    pub tokens: String,
}

impl std::fmt::Debug for StagedSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedSignIn")
            .field("gitlab_url", &self.gitlab_url)
            .field("jira_user", &self.jira_user)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn jira_user_of(row: &sqlx::any::AnyRow) -> Result<Option<JiraUser>, sqlx::Error> {
    let client_key: Option<String> = row.try_get("jira_client_key")?;
    let account_id: Option<String> = row.try_get("jira_account_id")?;
    Ok(client_key
        .zip(account_id)
        .map(|(client_key, account_id)| JiraUser {
            client_key,
            account_id,
        }))
}

impl Store {
    /// Remembers a sign-in about to start, until its browser opens the start URL (which carries the
    /// ticket whose digest is `ticket_hash`); `jira_user` (site and account id) when a Jira user started
    /// it from the configuration page, `None` for the admin page.
    pub async fn put_oauth_pending(
        &self,
        state: &str,
        gitlab_url: &str,
        verifier: &str,
        jira_user: Option<&JiraUser>,
        ticket_hash: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let verifier = self
            .cipher
            .encrypt(verifier.as_bytes(), &verifier_context(state))?;
        sqlx::query("DELETE FROM gitlab_oauth_pending WHERE created_at < $1")
            .bind(now_ms - PENDING_TTL_MS)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO gitlab_oauth_pending (state, gitlab_url, verifier, created_at, jira_client_key, jira_account_id, ticket_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(state)
            .bind(gitlab_url)
            .bind(verifier)
            .bind(now_ms)
            .bind(jira_user.map(|u| u.client_key.clone()))
            .bind(jira_user.map(|u| u.account_id.clone()))
            .bind(ticket_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Opens a sign-in by its start ticket, once and within [`START_TTL_MS`], binding it to the browser
    /// whose cookie digest is `browser_hash`. Returns what the redirect to GitLab needs.
    pub async fn begin_oauth_sign_in(
        &self,
        ticket_hash: &str,
        browser_hash: &str,
        now_ms: i64,
    ) -> Result<Option<StartedSignIn>, StoreError> {
        let row = sqlx::query(
            "UPDATE gitlab_oauth_pending SET browser_hash = $1, ticket_hash = NULL \
             WHERE ticket_hash = $2 AND browser_hash IS NULL AND created_at >= $3 \
             RETURNING state, gitlab_url, verifier",
        )
        .bind(browser_hash)
        .bind(ticket_hash)
        .bind(now_ms - START_TTL_MS)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        let verifier = self.pending_verifier(&row, &state)?;
        Ok(Some(StartedSignIn {
            gitlab_url: row.try_get("gitlab_url")?,
            state,
            verifier,
        }))
    }

    fn pending_verifier(&self, row: &sqlx::any::AnyRow, state: &str) -> Result<String, StoreError> {
        let verifier: Vec<u8> = row.try_get("verifier")?;
        String::from_utf8(self.cipher.decrypt(&verifier, &verifier_context(state))?)
            .map_err(|_| StoreError::Crypto("verifier is not UTF-8".into()))
    }

    /// Takes (once) the callback of the sign-in a `state` names: `None` for an unknown, unopened, used
    /// or expired state. The caller must check [`PendingSignIn::browser_hash`] against the browser.
    pub async fn take_oauth_callback(
        &self,
        state: &str,
        now_ms: i64,
    ) -> Result<Option<PendingSignIn>, StoreError> {
        let row = sqlx::query(
            "UPDATE gitlab_oauth_pending SET callback_at = $1 \
             WHERE state = $2 AND callback_at IS NULL AND browser_hash IS NOT NULL AND created_at >= $3 \
             RETURNING gitlab_url, verifier, jira_client_key, jira_account_id, browser_hash",
        )
        .bind(now_ms)
        .bind(state)
        .bind(now_ms - PENDING_TTL_MS)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PendingSignIn {
            gitlab_url: row.try_get("gitlab_url")?,
            verifier: self.pending_verifier(&row, state)?,
            jira_user: jira_user_of(&row)?,
            browser_hash: row.try_get("browser_hash")?,
        }))
    }

    /// Parks the GitLab user and token pair a callback obtained until the browser confirms (or not).
    pub async fn stage_oauth_sign_in(
        &self,
        state: &str,
        user_id: i64,
        username: &str,
        tokens: &str,
    ) -> Result<bool, StoreError> {
        let record = self
            .cipher
            .encrypt(tokens.as_bytes(), &staged_context(state))?;
        let n = sqlx::query(
            "UPDATE gitlab_oauth_pending SET tokens = $1, gitlab_user_id = $2, gitlab_username = $3 \
             WHERE state = $4 AND tokens IS NULL AND callback_at IS NOT NULL",
        )
        .bind(record)
        .bind(user_id)
        .bind(username)
        .bind(state)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Takes (once) a sign-in waiting for its confirmation: `None` when unknown, already decided or
    /// expired. The caller must check [`StagedSignIn::browser_hash`] before storing anything.
    pub async fn take_staged_sign_in(
        &self,
        state: &str,
        now_ms: i64,
    ) -> Result<Option<StagedSignIn>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM gitlab_oauth_pending WHERE state = $1 AND tokens IS NOT NULL AND created_at >= $2 \
             RETURNING gitlab_url, jira_client_key, jira_account_id, browser_hash, tokens, gitlab_user_id, gitlab_username",
        )
        .bind(state)
        .bind(now_ms - PENDING_TTL_MS)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let record: Vec<u8> = row.try_get("tokens")?;
        let tokens = String::from_utf8(self.cipher.decrypt(&record, &staged_context(state))?)
            .map_err(|_| StoreError::Crypto("tokens are not UTF-8".into()))?;
        Ok(Some(StagedSignIn {
            gitlab_url: row.try_get("gitlab_url")?,
            jira_user: jira_user_of(&row)?,
            browser_hash: row.try_get("browser_hash")?,
            user_id: row.try_get("gitlab_user_id")?,
            username: row.try_get("gitlab_username")?,
            tokens,
        }))
    }

    /// A sign-in waiting for its confirmation, without taking it (to show the question again).
    pub async fn staged_sign_in_browser(&self, state: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT browser_hash FROM gitlab_oauth_pending WHERE state = $1 AND tokens IS NOT NULL",
        )
        .bind(state)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// Records that a Jira user links groups of `gitlab_url` as this GitLab sign-in.
    pub async fn remember_jira_sign_in(
        &self,
        user: &JiraUser,
        gitlab_url: &str,
        connection_id: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // One statement, so that two sign-ins of one user finishing at once cannot collide.
        sqlx::query(
            "INSERT INTO jira_gitlab_sign_ins (client_key, account_id, gitlab_url, connection_id, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_key, account_id, gitlab_url) \
             DO UPDATE SET connection_id = excluded.connection_id, updated_at = excluded.updated_at",
        )
        .bind(&user.client_key)
        .bind(&user.account_id)
        .bind(gitlab_url)
        .bind(connection_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The GitLab sign-in a Jira user links groups of `gitlab_url` with, if they signed in.
    pub async fn jira_sign_in(
        &self,
        user: &JiraUser,
        gitlab_url: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT connection_id FROM jira_gitlab_sign_ins WHERE client_key = $1 AND account_id = $2 AND gitlab_url = $3",
        )
        .bind(&user.client_key)
        .bind(&user.account_id)
        .bind(gitlab_url)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a signed-in user's tokens; signing in again replaces them. `via_admin` marks a sign-in
    /// through the admin flow (kept once set). Returns the connection.
    pub async fn upsert_gitlab_connection(
        &self,
        gitlab_url: &str,
        user_id: i64,
        username: &str,
        tokens: &str,
        via_admin: bool,
        now_ms: i64,
    ) -> Result<GitLabConnection, StoreError> {
        let record = self
            .cipher
            .encrypt(tokens.as_bytes(), &tokens_context(gitlab_url, user_id))?;
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE gitlab_connections SET username = $1, tokens = $2, updated_at = $3, \
             via_admin = CASE WHEN $4 = 1 THEN 1 ELSE via_admin END WHERE gitlab_url = $5 AND user_id = $6",
        )
        .bind(username)
        .bind(&record)
        .bind(now_ms)
        .bind(i64::from(via_admin))
        .bind(gitlab_url)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query("INSERT INTO gitlab_connections (gitlab_url, user_id, username, tokens, created_at, updated_at, via_admin) VALUES ($1, $2, $3, $4, $5, $5, $6)")
                .bind(gitlab_url)
                .bind(user_id)
                .bind(username)
                .bind(&record)
                .bind(now_ms)
                .bind(i64::from(via_admin))
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query("SELECT id, gitlab_url, user_id, username, updated_at, via_admin FROM gitlab_connections WHERE gitlab_url = $1 AND user_id = $2")
            .bind(gitlab_url)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(from_row(&row)?)
    }

    pub async fn gitlab_connection(
        &self,
        id: i64,
    ) -> Result<Option<(GitLabConnection, ConnectionTokens)>, StoreError> {
        let row = sqlx::query("SELECT id, gitlab_url, user_id, username, updated_at, via_admin, tokens FROM gitlab_connections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let conn = from_row(&row)?;
        let record: Vec<u8> = row.try_get("tokens")?;
        let plain = self
            .cipher
            .decrypt(&record, &tokens_context(&conn.gitlab_url, conn.user_id))?;
        let tokens = String::from_utf8(plain)
            .map_err(|_| StoreError::Crypto("tokens are not UTF-8".into()))?;
        Ok(Some((conn, ConnectionTokens { tokens, record })))
    }

    /// Replaces a connection's tokens if they are still the ones read as `old`. `false` when another
    /// process replaced them first (its pair is then the valid one).
    pub async fn swap_gitlab_connection_tokens(
        &self,
        conn: &GitLabConnection,
        old: &ConnectionTokens,
        tokens: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let record = self.cipher.encrypt(
            tokens.as_bytes(),
            &tokens_context(&conn.gitlab_url, conn.user_id),
        )?;
        let n = sqlx::query(
            "UPDATE gitlab_connections SET tokens = $1, updated_at = $2 WHERE id = $3 AND tokens = $4",
        )
        .bind(record)
        .bind(now_ms)
        .bind(conn.id)
        .bind(&old.record)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
