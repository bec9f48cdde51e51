//! Jira issue-key extraction, with GitLab's rule (`\b([A-Z][A-Z_0-9]+-\d+)`), so that the same texts
//! link the same issues as GitLab's own app.
//!
//! The work per text is bounded, because texts come from whoever can push: at most the first
//! [`MAX_SCAN_BYTES`] of each text are searched, each key costs constant time to de-duplicate, and an
//! entity keeps at most [`MAX_KEYS_PER_ENTITY`] keys (with a count of the rest).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;

use regex::Regex;

/// Jira accepts at most this many issue keys on one entity (`issueKeys` is `[1..500]`).
pub const MAX_KEYS_PER_ENTITY: usize = 500;

/// How much of one text is searched for keys. People write commit messages and descriptions of
/// kilobytes; a text of megabytes is generated or hostile, and searching all of it would let one push hold
/// a worker for as long as its author likes. 1 MiB is searched in milliseconds (`benches/issue_keys.rs`)
/// and still holds hundreds of times more keys than Jira takes on one entity.
pub const MAX_SCAN_BYTES: usize = 1 << 20;

// ASCII word boundary: GitLab's Ruby `\b` does not treat non-ASCII letters as word characters.
static KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)[A-Z][A-Z_0-9]+-[0-9]+").expect("static regex"));

/// Keys are de-duplicated by a 64-bit fingerprint, so that dropped keys are counted without keeping their
/// text. The hash is keyed at random per process, so no text can be crafted to make two keys collide, and
/// an accidental collision among a million keys has odds of about one in thirty million.
static FINGERPRINT: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// The issue keys for one entity: at most [`MAX_KEYS_PER_ENTITY`], in order of first appearance, without
/// duplicates, and how many distinct keys beyond those were found ([`ExtractedKeys::dropped`]), which the
/// caller records as not sent.
#[derive(Debug, Clone, Default)]
pub struct ExtractedKeys {
    keys: Vec<String>,
    /// The fingerprint of every distinct key found, kept or not.
    seen: HashSet<u64>,
}

impl ExtractedKeys {
    /// The keys Jira gets, at most [`MAX_KEYS_PER_ENTITY`].
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn into_keys(self) -> Vec<String> {
        self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many distinct keys were found beyond the kept ones.
    pub fn dropped(&self) -> usize {
        self.seen.len() - self.keys.len()
    }

    /// Adds the keys of `other` after these, with the same result as extracting both texts at once.
    pub fn merge(&mut self, other: &ExtractedKeys) {
        for key in &other.keys {
            self.add(key);
        }
        // `other` dropped keys only once it was full, so this now is too: its dropped keys only count.
        debug_assert!(other.dropped() == 0 || self.keys.len() == MAX_KEYS_PER_ENTITY);
        self.seen.extend(&other.seen);
    }

    /// Adds one key found after all that are here.
    fn add(&mut self, key: &str) {
        if self.seen.insert(FINGERPRINT.hash_one(key)) && self.keys.len() < MAX_KEYS_PER_ENTITY {
            self.keys.push(key.to_owned());
        }
    }
}

/// The issue keys in `texts`, in order of first appearance, without duplicates, as if the texts were
/// joined by a space (as GitLab does), within Jira's limit per entity. Only the first [`MAX_SCAN_BYTES`]
/// of each text are searched.
pub fn extract<'a>(texts: impl IntoIterator<Item = &'a str>) -> ExtractedKeys {
    extract_within(texts, MAX_SCAN_BYTES)
}

/// [`extract`], searching the first `max_scan_bytes` of each text (tests use small bounds).
fn extract_within<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    max_scan_bytes: usize,
) -> ExtractedKeys {
    let mut out = ExtractedKeys::default();
    for text in texts {
        for key in keys_in(text, max_scan_bytes) {
            out.add(key);
        }
    }
    out
}

/// The first `keep` distinct keys of one text, in order of first appearance, searching what [`extract`]
/// searches. For texts shortened on arrival, which keep the keys rather than the text that held them.
pub fn first_distinct(text: &str, keep: usize) -> Vec<&str> {
    let mut seen = HashSet::new();
    keys_in(text, MAX_SCAN_BYTES)
        .filter(|key| seen.insert(*key))
        .take(keep)
        .collect()
}

/// Every key occurrence in the first `max_scan_bytes` of `text`, duplicates included.
fn keys_in(text: &str, max_scan_bytes: usize) -> impl Iterator<Item = &str> {
    let scanned = &text[..text.floor_char_boundary(max_scan_bytes)];
    KEY.find_iter(scanned).filter_map(move |m| {
        // The bound may cut a key's number ("ABC-12" of "ABC-123"): that is not a key the text names.
        let cut_short = m.end() == scanned.len()
            && text.as_bytes().get(m.end()).is_some_and(u8::is_ascii_digit);
        (!cut_short && jira_can_store(m.as_str())).then_some(m.as_str())
    })
}

/// Jira allows at most 255 characters on either side of the dash.
fn jira_can_store(key: &str) -> bool {
    key.split_once('-')
        .is_some_and(|(project, number)| project.len() <= 255 && number.len() <= 255)
}

/// Whether any of `texts` mentions an issue key.
pub fn mentions_key<'a>(texts: impl IntoIterator<Item = &'a str>) -> bool {
    texts.into_iter().any(|t| KEY.is_match(t))
}

/// Appends `extra` keys that are not in `keys` yet, in linear time (for entities already mapped, such as
/// one commit that two requests carry).
pub fn merge(keys: &mut Vec<String>, extra: &[String]) {
    let present: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut added: HashSet<&str> = HashSet::new();
    let new_keys: Vec<String> = extra
        .iter()
        .filter(|k| !present.contains(k.as_str()) && added.insert(k.as_str()))
        .cloned()
        .collect();
    keys.extend(new_keys);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keys_of(text: &str) -> Vec<String> {
        extract([text]).into_keys()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("PROJ-7", &["PROJ-7"]),
            ("feature/PROJ-7-login", &["PROJ-7"]),
            ("fix PROJ-8: login", &["PROJ-8"]),
            ("JRA-123 with JRA-123 and TBD-123", &["JRA-123", "TBD-123"]),
            ("jra-123", &[]),         // GitLab's rule is case-sensitive
            ("F-67-my-feature", &[]), // one-letter project part
            ("2PAC-123", &[]),        // starts with a digit
            ("J42-123", &["J42-123"]),
            ("ABC_DEF-1", &["ABC_DEF-1"]), // underscore is part of the project key
            ("xABC-1", &[]),               // no word boundary before the key
            ("[ABC-1]", &["ABC-1"]),
            ("(ABC-12), DEF-3.", &["ABC-12", "DEF-3"]),
            ("café-ABC-1", &["ABC-1"]),
            ("prefix-kebab-JRA-123", &["JRA-123"]),
            ("JRA-123-suffix", &["JRA-123"]),
            ("CVE-2021-1234", &["CVE-2021"]), // GitLab's current rule matches these too
        ];
        for (input, want) in cases {
            assert_eq!(keys_of(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn texts_are_joined_and_deduplicated_across_inputs() {
        assert_eq!(
            extract(["ABC-1 x", "ABC-1 DEF-2", "GHI-3"]).keys(),
            ["ABC-1", "DEF-2", "GHI-3"]
        );
        assert!(mentions_key(["nothing", "see QA-9"]));
        assert!(!mentions_key(["nothing", "here-1"]));
    }

    #[test]
    fn keys_jira_cannot_store_are_skipped() {
        let long = format!("A{}-1 B-2 AB-{}", "B".repeat(255), "9".repeat(256));
        assert!(extract([long.as_str()]).is_empty());
        let fits = format!("A{}-1", "B".repeat(254));
        assert_eq!(keys_of(&fits), vec![fits]);
    }

    #[test]
    fn extraction_keeps_jiras_limit_and_counts_the_rest() {
        let text: String = (1..=600).map(|n| format!("AB-{n} AB-{n} ")).collect();
        let found = extract([text.as_str()]);
        assert_eq!(found.keys().len(), MAX_KEYS_PER_ENTITY);
        assert_eq!(found.keys()[499], "AB-500");
        assert_eq!(found.dropped(), 100, "distinct keys beyond the limit");
        let one = extract(["A-1 AB-1 AB-1"]);
        assert_eq!((one.keys(), one.dropped()), (&["AB-1".to_owned()][..], 0));
    }

    #[test]
    fn only_a_bounded_prefix_of_each_text_is_searched() {
        let far = format!("PROJ-1 {} PROJ-2", " ".repeat(MAX_SCAN_BYTES));
        assert_eq!(keys_of(&far), ["PROJ-1"]);
        // Each text has its own bound.
        assert_eq!(
            extract([far.as_str(), "PROJ-3"]).keys(),
            ["PROJ-1", "PROJ-3"]
        );
        // A key whose number the bound cuts is not taken for a shorter one; one that ends at it is kept.
        let cut = format!("{}ABC-123", " ".repeat(MAX_SCAN_BYTES - 6));
        assert!(extract([cut.as_str()]).is_empty());
        let ends = format!("{}ABC-12 x", " ".repeat(MAX_SCAN_BYTES - 6));
        assert_eq!(keys_of(&ends), ["ABC-12"]);
        // The bound never splits a character.
        let wide = format!("{}PROJ-4", "é".repeat(MAX_SCAN_BYTES / 2 + 1));
        assert!(extract([wide.as_str()]).is_empty());
        assert_eq!(extract_within(["éPROJ-5 x"], 1).keys(), [] as [String; 0]);
    }

    #[test]
    fn merging_counts_each_dropped_key_once() {
        let a: String = (1..=520).map(|n| format!("AB-{n} ")).collect();
        let b: String = (511..=530).map(|n| format!("AB-{n} ")).collect();
        let mut merged = extract(["CD-1"]);
        merged.merge(&extract([a.as_str()]));
        merged.merge(&extract([b.as_str()]));
        let at_once = extract(["CD-1", a.as_str(), b.as_str()]);
        assert_eq!(merged.keys(), at_once.keys());
        assert_eq!((merged.dropped(), at_once.dropped()), (31, 31));
    }

    #[test]
    fn merging_vectors_appends_only_new_keys() {
        let mut keys = vec!["A-1".to_owned(), "B-2".to_owned()];
        merge(
            &mut keys,
            &["B-2".into(), "C-3".into(), "C-3".into(), "A-1".into()],
        );
        assert_eq!(keys, ["A-1", "B-2", "C-3"]);
    }

    /// The rule as first written: every match, in order, de-duplicated by a linear search, uncapped.
    fn naive(texts: &[&str], max_scan_bytes: usize) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for text in texts {
            let end = text.floor_char_boundary(max_scan_bytes);
            for m in KEY.find_iter(text) {
                if m.end() <= end
                    && jira_can_store(m.as_str())
                    && !keys.iter().any(|k| k == m.as_str())
                {
                    keys.push(m.as_str().to_owned());
                }
            }
        }
        keys
    }

    /// Texts made of few distinct keys, so that duplicates and the cap both happen.
    fn texts() -> impl Strategy<Value = Vec<String>> {
        let word = prop_oneof![
            4 => (prop::sample::select(vec!["AB", "CD", "X_1", "é", "ab"]), 0u16..700)
                .prop_map(|(p, n)| format!("{p}-{n}")),
            1 => "[A-Z0-9_a-z /é()-]{0,12}",
        ];
        let text = prop::collection::vec(
            (word, prop::sample::select(vec![" ", "-", "", "\n"])),
            0..1200,
        )
        .prop_map(|parts| {
            parts
                .into_iter()
                .map(|(w, sep)| w + sep)
                .collect::<String>()
        });
        prop::collection::vec(text, 1..4)
    }

    proptest! {
        #[test]
        fn every_key_matches_jiras_pattern(s in "[A-Z0-9_a-z /é-]{0,80}") {
            let jira = Regex::new(r"^\p{L}[\p{L}\p{Nd}_]+-\p{Nd}+$").unwrap();
            for k in keys_of(&s) {
                prop_assert!(jira.is_match(&k), "{k}");
            }
        }
    }

    proptest! {
        // The reference is quadratic: fewer, larger cases (a third of them exceed the cap).
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn extraction_equals_the_naive_rule_capped(texts in texts(), bound in 0usize..12_000) {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let want = naive(&texts, bound);
            let got = extract_within(texts.iter().copied(), bound);
            let kept = want.len().min(MAX_KEYS_PER_ENTITY);
            prop_assert_eq!(got.keys(), &want[..kept]);
            prop_assert_eq!(got.dropped(), want.len() - kept);
        }

        #[test]
        fn merging_equals_extracting_at_once(texts in texts()) {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut merged = ExtractedKeys::default();
            for t in &texts {
                merged.merge(&extract([*t]));
            }
            let at_once = extract(texts.iter().copied());
            prop_assert_eq!(merged.keys(), at_once.keys());
            prop_assert_eq!(merged.dropped(), at_once.dropped());
        }
    }
}
