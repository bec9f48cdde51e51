//! URL allow-lists (`GFJ_JIRA_URLS`, `GFJ_GITLAB_URLS`): any list (the input's first line) against any URLs
//! (the other lines). Nothing may panic, and the canonical origin of an allowed URL, which is what gets
//! stored and later re-checked before every call, is allowed too.
#![no_main]

use gfj_core::url_pattern::{UrlAllowList, canonical_origin, normalize_base_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let list = lines.next().unwrap_or("");
    let allow_list = UrlAllowList::parse(list).ok();
    for url in lines {
        let _ = normalize_base_url(url);
        let _ = canonical_origin(url);
        if let Some(allow_list) = &allow_list
            && let Some(origin) = allow_list.allowed_origin(url)
        {
            assert!(allow_list.allows(url));
            assert!(allow_list.allows(&origin), "{url:?} allowed as {origin:?}");
        }
    }
});
