//! The outbound HTTP client that the GitLab and Jira clients (and the install-key fetch) share.

use std::time::Duration;

/// Timeouts, our user agent, and no redirects: a redirect could leave the allow-list of GitLab
/// instances and Jira sites, which is checked on the URL we ask for.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gitlab-for-jira/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("static client configuration")
}
