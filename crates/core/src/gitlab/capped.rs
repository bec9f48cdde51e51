//! Arrays of webhook payloads are read up to a cap. GitLab itself sends 20 commits per push, but a forged
//! body can carry millions of commits, builds or labels, and everything downstream (key extraction,
//! mapping, Jira requests) iterates them; what lies beyond the cap is skipped without being kept, and
//! logged.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};

/// Commits kept from one push payload. GitLab sends at most 20; the rest of a large push is read from
/// GitLab's compare API, which has its own cap.
pub const MAX_PAYLOAD_COMMITS: usize = 100;
/// Builds kept from one pipeline payload (GitLab sends all of the pipeline's jobs).
pub const MAX_PIPELINE_BUILDS: usize = 1_000;
/// Labels, assignees, reviewers, stages, owners.
pub const MAX_PEOPLE_AND_LABELS: usize = 100;
/// Changed files listed per commit.
pub const MAX_COMMIT_FILES: usize = 1_000;

/// Reads a JSON array (or `null`, as an empty one), keeping its first `N` items.
pub(crate) fn at_most<'de, D, T, const N: usize>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Capped<T, const N: usize>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Capped<T, N> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
            d.deserialize_seq(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut kept = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
            while kept.len() < N {
                match seq.next_element()? {
                    Some(item) => kept.push(item),
                    None => return Ok(kept),
                }
            }
            let mut skipped = 0usize;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                skipped += 1;
            }
            if skipped > 0 {
                tracing::warn!(
                    kept = N,
                    skipped,
                    "webhook payload array longer than its cap; the rest is ignored"
                );
            }
            Ok(kept)
        }
    }

    deserializer.deserialize_option(Capped::<T, N>(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::at_most::<_, _, 3>")]
        items: Vec<i64>,
    }

    #[test]
    fn keeps_the_first_items_and_skips_the_rest() {
        let b: Body = serde_json::from_str(r#"{"items":[1,2,3,4,5,{"x":[6]}]}"#).unwrap();
        assert_eq!(b.items, [1, 2, 3]);
        let b: Body = serde_json::from_str(r#"{"items":[1]}"#).unwrap();
        assert_eq!(b.items, [1]);
        let b: Body = serde_json::from_str(r#"{"items":null}"#).unwrap();
        assert!(b.items.is_empty());
        let b: Body = serde_json::from_str(r#"{}"#).unwrap();
        assert!(b.items.is_empty());
        assert!(serde_json::from_str::<Body>(r#"{"items":[1,"x"]}"#).is_err());
        assert!(serde_json::from_str::<Body>(r#"{"items":3}"#).is_err());
        // Beyond the cap, items are skipped whatever they hold (but must still be JSON).
        let b: Body = serde_json::from_str(r#"{"items":[1,2,3,"x",null]}"#).unwrap();
        assert_eq!(b.items, [1, 2, 3]);
        let v = serde_json::json!({"items": [1, 2, 3, 4]});
        let b: Body = serde_json::from_value(v).unwrap();
        assert_eq!(b.items, [1, 2, 3]);
    }

    #[test]
    fn a_forged_push_and_pipeline_keep_only_their_caps() {
        let commit = serde_json::json!({
            "id": "a", "message": "PROJ-1", "timestamp": "2026-01-01T00:00:00Z",
            "url": "http://gl/c", "author": {"name": "n"}
        });
        let push = serde_json::json!({
            "object_kind": "push", "before": "b", "after": "c", "ref": "refs/heads/x",
            "project_id": 1, "project": {"id": 1, "name": "p", "web_url": "http://gl/p"},
            "commits": vec![commit; 10_000], "total_commits_count": 10_000
        });
        let push: crate::gitlab::PushEvent = serde_json::from_value(push).unwrap();
        assert_eq!(push.commits.len(), super::MAX_PAYLOAD_COMMITS);
        // The rest of a real large push is then read from GitLab's compare API, as beyond 20.
        assert_eq!(push.missing_commits_base().as_deref(), Some("b"));

        let build = serde_json::json!({"id": 1, "stage": "test", "name": "t", "status": "success"});
        let pipeline = serde_json::json!({
            "object_kind": "pipeline",
            "object_attributes": {"id": 5, "ref": "main", "sha": "c", "status": "success"},
            "project": {"id": 1, "name": "p", "web_url": "http://gl/p"},
            "builds": vec![build; 5_000]
        });
        let event = crate::gitlab::WebhookEvent::parse(
            crate::gitlab::EventKind::Pipeline,
            &serde_json::to_vec(&pipeline).unwrap(),
        )
        .unwrap();
        let crate::gitlab::WebhookEvent::Pipeline(p) = event else {
            panic!("a pipeline event")
        };
        assert_eq!(p.builds.len(), super::MAX_PIPELINE_BUILDS);
    }
}
