//! Issue-key extraction on any texts (the input split at NUL bytes): at most Jira's 500 keys, each one
//! GitLab's rule and storable by Jira, no duplicates, and merging text by text gives what extracting all
//! at once gives.
#![no_main]

use std::collections::HashSet;
use std::sync::LazyLock;

use gfj_core::issue_keys::{self, ExtractedKeys, MAX_KEYS_PER_ENTITY};
use libfuzzer_sys::fuzz_target;
use regex::Regex;

static WHOLE_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Z][A-Z_0-9]+-[0-9]+$").expect("static regex"));

/// GitLab's rule, within Jira's 255 characters on either side of the dash (checked apart: a bounded
/// repetition of 255 makes the regex slow enough to cost the fuzzer most of its runs).
fn is_storable_key(key: &str) -> bool {
    WHOLE_KEY.is_match(key)
        && key
            .split_once('-')
            .is_some_and(|(project, number)| project.len() <= 255 && number.len() <= 255)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let texts: Vec<&str> = text.split('\0').collect();
    let found = issue_keys::extract(texts.iter().copied());
    assert!(found.keys().len() <= MAX_KEYS_PER_ENTITY);
    assert!(found.dropped() == 0 || found.keys().len() == MAX_KEYS_PER_ENTITY);
    let mut distinct = HashSet::new();
    for key in found.keys() {
        assert!(is_storable_key(key), "{key:?}");
        assert!(distinct.insert(key), "duplicate {key:?}");
    }
    let mut merged = ExtractedKeys::default();
    for t in &texts {
        merged.merge(&issue_keys::extract([*t]));
    }
    assert_eq!(merged.keys(), found.keys());
    assert_eq!(merged.dropped(), found.dropped());
});
