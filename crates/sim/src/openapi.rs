//! Request-body validation against Atlassian's OpenAPI 3.0 document.
//!
//! The document's schemas are inline; OpenAPI-only keywords are translated so that a JSON Schema
//! (draft 4) validator can check them: `nullable: true` adds `"null"` to `type`, `example` is dropped, and
//! Java-only regex classes in `pattern` are rewritten.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

pub struct OpenApi {
    validators: HashMap<(String, String), jsonschema::Validator>,
}

impl OpenApi {
    /// Loads the document and compiles the JSON request-body schema of every operation.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)?;
        let mut validators = HashMap::new();
        for (route, ops) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let Some(schema) = op.pointer("/requestBody/content/application~1json/schema")
                else {
                    continue;
                };
                let schema = to_json_schema(schema.clone());
                let v = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    // Jira's key pattern (`{1,255}` repeats of Unicode classes) exceeds the default limit.
                    .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(256 << 20))
                    .build(&schema)
                    .map_err(|e| anyhow::anyhow!("schema of {method} {route}: {e}"))?;
                validators.insert((method.to_ascii_uppercase(), route.clone()), v);
            }
        }
        Ok(Self { validators })
    }

    /// Errors of `body` against the schema of `method route` (the route as written in the document).
    pub fn validate(&self, method: &str, route: &str, body: &Value) -> Result<(), Vec<String>> {
        let Some(v) = self.validators.get(&(method.to_owned(), route.to_owned())) else {
            return Err(vec![format!("no schema for {method} {route}")]);
        };
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn to_json_schema(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.remove("example");
        if let Some(Value::String(p)) = map.get_mut("pattern") {
            // Atlassian's patterns are Java regexes; `\p{Digit}` is spelled `\p{Nd}` elsewhere.
            *p = p.replace(r"\p{Digit}", r"\p{Nd}");
        }
        if map.remove("nullable") == Some(Value::Bool(true))
            && let Some(Value::String(t)) = map.get("type").cloned()
        {
            map.insert("type".into(), serde_json::json!([t, "null"]));
        }
        for (_, child) in map.iter_mut() {
            *child = to_json_schema(child.take());
        }
    } else if let Value::Array(items) = &mut v {
        for child in items.iter_mut() {
            *child = to_json_schema(child.take());
        }
    }
    v
}
