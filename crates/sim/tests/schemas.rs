//! The project's own request schemas (`schemas/`) accept and refuse the same bodies as Atlassian's
//! official OpenAPI: every node of a fully populated body of each route is mutated in the ways a client
//! bug would (wrong type, null, missing, too long, too many, unknown value), and the two must agree on
//! every one. Runs when the official document is found; required under `CI=true`.

use gfj_sim::jira::OFFICIAL_OPENAPI;
use gfj_sim::openapi::OpenApi;
use serde_json::{Value, json};

/// Every node of `value`, as JSON pointers (the root included).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(field, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// The bodies a client bug could send instead of `body`, by changing the node at `pointer`.
fn mutations(body: &Value, pointer: &str) -> Vec<Value> {
    let node = body
        .pointer(pointer)
        .expect("a pointer of the body")
        .clone();
    let mut replacements = vec![
        Value::Null,
        json!("x"),
        json!(""),
        json!(7),
        json!(-1),
        json!(1.5),
        json!(true),
        json!([]),
        json!({}),
        json!(["x"]),
        json!("bogus"),
        json!("ABC-"),
        json!("A-1"),
        json!("x ABC-12 y"),
        json!("2026-11-27"),
        json!("not a uri"),
    ];
    match &node {
        Value::String(text) => {
            for n in [255, 256, 1024, 1025, 2000, 2001] {
                replacements.push(json!("x".repeat(n)));
                replacements.push(json!("🙂".repeat(n)));
            }
            replacements.push(json!(text.to_uppercase()));
            replacements.push(json!(text.to_lowercase()));
        }
        Value::Array(items) => {
            let first = items.first().cloned().unwrap_or(json!("x"));
            for n in [2, 6, 11, 101, 501] {
                replacements.push(Value::Array(vec![first.clone(); n]));
            }
        }
        Value::Object(fields) => {
            let mut extra = fields.clone();
            extra.insert("zzExtra".into(), json!({"deep": [1]}));
            replacements.push(Value::Object(extra));
        }
        Value::Number(_) => {
            replacements.extend([json!(0), json!(2_147_483_648_i64), json!("1")]);
        }
        Value::Bool(flag) => replacements.push(json!(!flag)),
        Value::Null => {}
    }
    let mut bodies: Vec<Value> = replacements
        .into_iter()
        .map(|replacement| {
            let mut mutated = body.clone();
            *mutated.pointer_mut(pointer).expect("a pointer of the body") = replacement;
            mutated
        })
        .collect();
    // The node removed, when it is a member of an object.
    if let Some((parent, key)) = pointer.rsplit_once('/') {
        let key = key.replace("~1", "/").replace("~0", "~");
        let mut removed = body.clone();
        if let Some(Value::Object(fields)) = removed.pointer_mut(parent) {
            fields.remove(&key);
            bodies.push(removed);
        }
    }
    bodies
}

#[test]
fn own_schemas_agree_with_atlassians_openapi() {
    let official = gfj_sim::official_fixture(OFFICIAL_OPENAPI);
    gfj_sim::require_official(OFFICIAL_OPENAPI, official.as_deref()).unwrap();
    let Some(official) = official else {
        eprintln!(
            "{OFFICIAL_OPENAPI} not found: the cross-check of the project's schemas did not run"
        );
        return;
    };
    let official = OpenApi::load(&official).unwrap();
    let own = OpenApi::own().unwrap();
    let seeds: serde_json::Map<String, Value> =
        serde_json::from_str(include_str!("fixtures/request-bodies.json")).unwrap();
    assert_eq!(seeds.len(), 4, "one body per route");
    for (route, seed) in &seeds {
        let verdict = |api: &OpenApi, body: &Value| api.validate("POST", route, body).is_ok();
        assert!(
            verdict(&own, seed) && verdict(&official, seed),
            "{route}: the seed is valid"
        );
        let (mut accepted, mut refused) = (0, 0);
        let mut sites = Vec::new();
        pointers(seed, String::new(), &mut sites);
        for pointer in &sites {
            for body in mutations(seed, pointer) {
                let ours = verdict(&own, &body);
                assert_eq!(
                    ours,
                    verdict(&official, &body),
                    "{route}: the schemas disagree on a change at {pointer:?} (ours accept: {ours})\n{body}"
                );
                if ours {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Both verdicts occur, or agreeing would say nothing.
        assert!(
            accepted > 50 && refused > 50,
            "{route}: {accepted} accepted, {refused} refused"
        );
        eprintln!(
            "{route}: {} sites, {accepted} accepted, {refused} refused, all agreed",
            sites.len()
        );
    }
}
