//! Large deliveries are queued shortened, so that one huge body costs the queue (and every delivery that
//! shares its commit) no more than an ordinary one. What the worker reads from a shortened body is what it
//! would have read from the original: the same issue keys (the first [`MAX_KEYS_PER_ENTITY`] of each
//! text, in order, and whether there were more), the same displayed text (Jira shows at most 2,000
//! characters of any field we send), the same array items (the typed payloads keep at most
//! [`MAX_QUEUED_ITEMS`] of any array, see [`super::capped`]).
//!
//! One difference is accepted: a string longer than [`LONG_TEXT_BYTES`] that is an identifier rather than
//! a text (a branch name, a URL) is shortened like a text. GitLab sends no identifier that long; a URL
//! that long is dropped by the mapping either way (Jira takes 2,000 characters).

use serde_json::Value;

use super::capped::MAX_PIPELINE_BUILDS;
use crate::issue_keys::{self, MAX_KEYS_PER_ENTITY};

/// A string longer than this is queued shortened.
pub const LONG_TEXT_BYTES: usize = 16 * 1024;

/// What a shortened text keeps of its beginning: at least 2,048 characters however wide they are, more
/// than any Jira field we fill displays.
pub const KEPT_PREFIX_BYTES: usize = 8 * 1024;

/// Arrays are queued up to the largest cap the typed payloads read, so the worker reads the same items.
pub const MAX_QUEUED_ITEMS: usize = MAX_PIPELINE_BUILDS;

/// What [`shorten`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shortening {
    /// Texts shortened.
    pub texts: usize,
    /// Array items left out.
    pub items: usize,
}

impl Shortening {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Shortens every text longer than [`LONG_TEXT_BYTES`] and every array longer than
/// [`MAX_QUEUED_ITEMS`] in a parsed delivery. Linear in the size of `value`.
pub fn shorten(value: &mut Value) -> Shortening {
    let mut done = Shortening::default();
    shorten_into(value, &mut done);
    done
}

// Recursion is bounded: `serde_json` refuses documents nested deeper than 128 levels.
fn shorten_into(value: &mut Value, done: &mut Shortening) {
    match value {
        Value::String(text) if text.len() > LONG_TEXT_BYTES => {
            *text = shorten_text(text);
            done.texts += 1;
        }
        Value::Array(items) => {
            if items.len() > MAX_QUEUED_ITEMS {
                done.items += items.len() - MAX_QUEUED_ITEMS;
                items.truncate(MAX_QUEUED_ITEMS);
            }
            for item in items {
                shorten_into(item, done);
            }
        }
        Value::Object(fields) => {
            for field in fields.values_mut() {
                shorten_into(field, done);
            }
        }
        _ => {}
    }
}

/// The beginning of `text`, then the issue keys the whole text names (as far as extraction searches),
/// one more than Jira's limit when there are more, so that the worker still records that some were not
/// sent.
pub fn shorten_text(text: &str) -> String {
    let mut cut = text.floor_char_boundary(KEPT_PREFIX_BYTES);
    // Never end inside a key's number: "ABC-1" of "ABC-123" names another issue.
    if text.as_bytes().get(cut).is_some_and(u8::is_ascii_digit) {
        cut = text[..cut]
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .len();
    }
    let keys = issue_keys::first_distinct(text, MAX_KEYS_PER_ENTITY + 1);
    format!(
        "{}\n\n[shortened on arrival from {} bytes; the issue keys it names follow]\n{}",
        &text[..cut],
        text.len(),
        keys.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::issue_keys::extract;

    fn same_keys(original: &str, shortened: &str) {
        let (a, b) = (extract([original]), extract([shortened]));
        assert_eq!(a.keys(), b.keys());
        assert_eq!(
            a.dropped() > 0,
            b.dropped() > 0,
            "whether keys were left out"
        );
    }

    #[test]
    fn a_long_text_keeps_its_beginning_and_its_keys() {
        let text = format!(
            "Fix PROJ-1 {} then PROJ-2 and PROJ-1, {}",
            "x".repeat(20_000),
            "é".repeat(20_000)
        );
        let short = shorten_text(&text);
        assert!(short.len() < KEPT_PREFIX_BYTES + 200, "{}", short.len());
        assert!(short.starts_with(&text[..KEPT_PREFIX_BYTES]));
        assert_eq!(extract([short.as_str()]).keys(), ["PROJ-1", "PROJ-2"]);
        same_keys(&text, &short);
    }

    #[test]
    fn the_cut_never_shortens_a_key() {
        // "AB-12345" straddles the cut: the kept part must not end in "AB-12".
        let text = format!(
            "{}AB-12345 {}",
            " ".repeat(KEPT_PREFIX_BYTES - 5),
            " ".repeat(LONG_TEXT_BYTES)
        );
        let short = shorten_text(&text);
        assert_eq!(extract([short.as_str()]).keys(), ["AB-12345"]);
    }

    #[test]
    fn more_keys_than_jira_takes_still_show_as_more() {
        let text: String = (1..=2_000).map(|n| format!("KEY-{n} ")).collect();
        let text = format!("{text}{}", " ".repeat(LONG_TEXT_BYTES));
        let short = shorten_text(&text);
        assert!(short.len() < text.len() / 2);
        same_keys(&text, &short);
        assert!(extract([short.as_str()]).dropped() > 0);
    }

    #[test]
    fn only_long_texts_and_long_arrays_change() {
        let long = "PROJ-9 ".repeat(LONG_TEXT_BYTES);
        let mut value = json!({
            "object_kind": "push",
            "ref": "refs/heads/main",
            "commits": [{"message": long, "id": "abc"}, {"message": "short PROJ-3"}],
            "builds": (0..MAX_QUEUED_ITEMS + 5).collect::<Vec<_>>(),
        });
        let done = shorten(&mut value);
        assert_eq!(done, Shortening { texts: 1, items: 5 });
        assert_eq!(value["ref"], "refs/heads/main");
        assert_eq!(value["commits"][1]["message"], "short PROJ-3");
        assert_eq!(value["commits"][0]["id"], "abc");
        let message = value["commits"][0]["message"].as_str().unwrap();
        assert!(message.len() < KEPT_PREFIX_BYTES + 200);
        assert_eq!(value["builds"].as_array().unwrap().len(), MAX_QUEUED_ITEMS);
        assert_eq!(value["builds"][MAX_QUEUED_ITEMS - 1], MAX_QUEUED_ITEMS - 1);

        let mut small = json!({"commits": [{"message": "x".repeat(LONG_TEXT_BYTES)}]});
        let before = small.clone();
        assert!(shorten(&mut small).is_empty());
        assert_eq!(small, before);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn shortened_texts_name_the_same_keys(
            words in proptest::collection::vec(
                prop_oneof!["[A-C]{1,2}-[0-9]{1,3}", "[a-z ]{1,40}", "é{1,3}", "[0-9]{1,6}"],
                1..4_000,
            ),
            pad in 0usize..3 * KEPT_PREFIX_BYTES,
        ) {
            let text = format!("{}{}", " ".repeat(pad), words.join(""));
            let text = if text.len() > LONG_TEXT_BYTES { text } else { format!("{text}{}", " ".repeat(LONG_TEXT_BYTES)) };
            let short = shorten_text(&text);
            let (a, b) = (extract([text.as_str()]), extract([short.as_str()]));
            prop_assert_eq!(a.keys(), b.keys());
            prop_assert_eq!(a.dropped() > 0, b.dropped() > 0);
        }
    }
}
