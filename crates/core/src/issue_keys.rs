//! Jira issue-key extraction, with GitLab's rule (`\b([A-Z][A-Z_0-9]+-\d+)`), so that the same texts
//! link the same issues as GitLab's own app.

use std::sync::LazyLock;

use regex::Regex;

/// Jira accepts at most this many issue keys on one entity (`issueKeys` is `[1..500]`).
pub const MAX_KEYS_PER_ENTITY: usize = 500;

// ASCII word boundary: GitLab's Ruby `\b` does not treat non-ASCII letters as word characters.
static KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)([A-Z][A-Z_0-9]+-[0-9]+)").expect("static regex"));

/// The issue keys in `texts`, in order of first appearance, without duplicates. The texts are scanned as if
/// joined by a space, as GitLab does. Apply [`cap`] before sending them on one entity.
pub fn extract<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for text in texts {
        for m in KEY.captures_iter(text) {
            let key = &m[1];
            // Jira allows at most 255 characters on either side of the dash.
            if key
                .split_once('-')
                .is_some_and(|(p, n)| p.len() > 255 || n.len() > 255)
            {
                continue;
            }
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
    }
    keys
}

/// Whether any of `texts` mentions an issue key.
pub fn mentions_key<'a>(texts: impl IntoIterator<Item = &'a str>) -> bool {
    texts.into_iter().any(|t| KEY.is_match(t))
}

/// Keeps the first [`MAX_KEYS_PER_ENTITY`] keys, which is all Jira takes on one entity, and says how many
/// were dropped so that the caller can record it.
pub fn cap(mut keys: Vec<String>) -> (Vec<String>, usize) {
    let dropped = keys.len().saturating_sub(MAX_KEYS_PER_ENTITY);
    keys.truncate(MAX_KEYS_PER_ENTITY);
    (keys, dropped)
}

/// Appends `extra` keys that are not in `keys` yet.
pub fn merge(keys: &mut Vec<String>, extra: &[String]) {
    for k in extra {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(extract([*input]), *want, "input {input:?}");
        }
    }

    #[test]
    fn texts_are_joined_and_deduplicated_across_inputs() {
        assert_eq!(
            extract(["ABC-1 x", "ABC-1 DEF-2", "GHI-3"]),
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
        assert_eq!(extract([fits.as_str()]), vec![fits]);
    }

    #[test]
    fn capped_at_jira_limit() {
        let text: String = (1..=600).map(|n| format!("AB-{n} ")).collect();
        let keys = extract([text.as_str()]);
        assert_eq!(keys.len(), 600, "extraction finds them all");
        let (kept, dropped) = cap(keys);
        assert_eq!((kept.len(), dropped), (MAX_KEYS_PER_ENTITY, 100));
        assert_eq!(kept[499], "AB-500");
        assert_eq!(cap(vec!["A-1".into()]), (vec!["A-1".to_owned()], 0));
    }

    proptest::proptest! {
        #[test]
        fn every_key_matches_jiras_pattern(s in "[A-Z0-9_a-z /é-]{0,80}") {
            let jira = Regex::new(r"^\p{L}[\p{L}\p{Nd}_]+-\p{Nd}+$").unwrap();
            for k in extract([s.as_str()]) {
                proptest::prop_assert!(jira.is_match(&k), "{k}");
            }
        }
    }
}
