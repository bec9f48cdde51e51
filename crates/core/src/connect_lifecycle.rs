//! The body Jira posts to the Connect lifecycle callbacks (`/jira/events/installed`, `…/uninstalled`).
//! It arrives before the token is verified, so reading it must take any bytes without harm.

use serde::Deserialize;

/// The fields of a lifecycle body that the app uses; others are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePayload {
    /// The app key the site installed; must be ours.
    pub key: String,
    pub client_key: String,
    /// Present on `installed` only.
    #[serde(default)]
    pub shared_secret: Option<String>,
    pub base_url: String,
    #[serde(default)]
    pub display_url: Option<String>,
}

impl std::fmt::Debug for LifecyclePayload {
    /// Never prints the shared secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecyclePayload")
            .field("key", &self.key)
            .field("client_key", &self.client_key)
            .field(
                "shared_secret",
                &self.shared_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("base_url", &self.base_url)
            .field("display_url", &self.display_url)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_it_needs_and_hides_the_secret() {
        let body = br#"{"key":"app","clientKey":"ck","sharedSecret":"s3cr3t","baseUrl":"https://a.atlassian.net","extra":1}"#;
        let p: LifecyclePayload = serde_json::from_slice(body).unwrap();
        assert_eq!((p.key.as_str(), p.client_key.as_str()), ("app", "ck"));
        assert_eq!(p.shared_secret.as_deref(), Some("s3cr3t"));
        assert!(!format!("{p:?}").contains("s3cr3t"));
        assert!(serde_json::from_slice::<LifecyclePayload>(br#"{"key":"app"}"#).is_err());
    }
}
