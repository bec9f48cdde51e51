//! `sites add-oauth`: a Jira site in OAuth-credentials mode, checked against Atlassian before it is stored.

use gfj_jira_client::JiraError;
use gfj_store::Store;
use gfj_store::installations::{Installation, OAuthSite};
use serde_json::json;

use crate::Settings;

pub async fn add_oauth(
    settings: &Settings,
    store: &Store,
    url: &str,
    client_id: &str,
    client_secret: &str,
    now_ms: i64,
) -> anyhow::Result<String> {
    let url = settings.jira_urls.allowed_origin(url).ok_or_else(|| {
        anyhow::anyhow!(
            "{url} is not in GFJ_JIRA_URLS: list your Jira site there first (e.g. GFJ_JIRA_URLS={})",
            gfj_core::url_pattern::canonical_origin(url).unwrap_or_else(|_| "https://your-site.atlassian.net".into())
        )
    })?;
    let jira = settings.jira_client();
    let cloud_id = jira.cloud_id(&url).await.map_err(|e| match e {
        JiraError::Other { status: 404, .. } => {
            anyhow::anyhow!("{url} is not a Jira Cloud site (no /_edge/tenant_info)")
        }
        e => anyhow::anyhow!("could not read the cloud id of {url}: {e}"),
    })?;
    jira.oauth_token(client_id, client_secret, true)
        .await
        .map_err(|e| match e {
            JiraError::Unauthorized | JiraError::Forbidden | JiraError::BadRequest(_) => {
                anyhow::anyhow!("Atlassian rejected the client id and secret ({e})")
            }
            e => anyhow::anyhow!(
                "could not obtain a token from {}: {e}",
                settings.atlassian_api_url
            ),
        })?;
    let site = Installation {
        client_key: format!("oauth:{cloud_id}"),
        base_url: url.clone(),
        display_url: None,
        shared_secret: client_secret.to_owned(),
        oauth: Some(OAuthSite {
            cloud_id: cloud_id.clone(),
            client_id: client_id.to_owned(),
        }),
    };
    store.upsert_installation(&site, now_ms).await?;
    Ok(serde_json::to_string(
        &json!({ "site": site.client_key, "mode": "oauth", "base_url": url, "cloud_id": cloud_id }),
    )?)
}

/// `sites set-project-keys`: which Jira projects' issue keys a site gets.
pub async fn set_project_keys(store: &Store, site: &str, keys: &str) -> anyhow::Result<String> {
    let install = store.find_installation(site).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "no Jira site {site:?} is installed (give its clientKey or base URL; see `sites list`)"
        )
    })?;
    let keys: Vec<String> = keys
        .split(',')
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    // Jira project keys as GitLab's issue-key rule sees them: [A-Z][A-Z_0-9]+.
    let valid = |k: &str| {
        k.len() >= 2
            && k.starts_with(|c: char| c.is_ascii_uppercase())
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    if let Some(bad) = keys.iter().find(|k| !valid(k)) {
        anyhow::bail!(
            "{bad:?} is not a Jira project key (two or more of A-Z, 0-9, _; starting with a letter)"
        );
    }
    store
        .set_site_project_keys(&install.client_key, &keys)
        .await?;
    Ok(if keys.is_empty() {
        format!("{}: every issue key is sent", install.base_url)
    } else {
        format!(
            "{}: only issue keys of {} are sent",
            install.base_url,
            keys.join(", ")
        )
    })
}
