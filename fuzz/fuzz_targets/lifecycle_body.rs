//! The body of a Connect lifecycle callback, which is read before its token is verified: any bytes, read
//! and checked as `/jira/events/installed` does. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use gfj_core::connect_lifecycle::LifecyclePayload;
use gfj_core::url_pattern::{UrlAllowList, normalize_base_url};
use libfuzzer_sys::fuzz_target;

static JIRA_URLS: LazyLock<UrlAllowList> =
    LazyLock::new(|| UrlAllowList::parse("https://*.atlassian.net").expect("valid list"));

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = serde_json::from_slice::<LifecyclePayload>(data) {
        let _ = JIRA_URLS.allows(&payload.base_url);
        let _ = normalize_base_url(&payload.base_url);
        if let Some(display) = &payload.display_url {
            let _ = normalize_base_url(display);
        }
        let _ = format!("{payload:?}");
    }
});
