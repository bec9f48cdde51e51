//! URL allow-lists (`GFJ_JIRA_URLS`, `GFJ_GITLAB_URLS`): any list (the input's first line) against any URLs
//! (the other lines). Nothing may panic.
#![no_main]

use gfj_core::url_pattern::{UrlAllowList, normalize_base_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let list = lines.next().unwrap_or("");
    let allow_list = UrlAllowList::parse(list).ok();
    for url in lines {
        let normalized = normalize_base_url(url);
        if let Some(allow_list) = &allow_list {
            let _ = allow_list.allows(url);
            let _ = allow_list.allows(&normalized);
        }
    }
});
