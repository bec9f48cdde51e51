//! Request-body validation against an OpenAPI 3.0 document: the project's own (`schemas/`, embedded)
//! or Atlassian's official one.
//!
//! The document's schemas are inline; OpenAPI-only keywords are translated so that a JSON Schema
//! (draft 4) validator can check them: `nullable: true` adds `"null"` to `type`, `example` is dropped, and
//! Java-only regex classes in `pattern` are rewritten.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

/// The schemas every request body must pass: the project's own and, when found, Atlassian's official
/// document.
pub struct RequestSchemas(Vec<OpenApi>);

impl RequestSchemas {
    /// The project's own schemas, and the official document at `official` when given.
    pub fn new(official: Option<&Path>) -> anyhow::Result<Self> {
        let mut all = vec![OpenApi::own()?];
        all.extend(official.map(OpenApi::load).transpose()?);
        Ok(Self(all))
    }

    /// The project's own schemas, and the official document when it is found (required under `CI=true`).
    pub fn found() -> anyhow::Result<Self> {
        let name = crate::jira::OFFICIAL_OPENAPI;
        let official = crate::official_fixture(name);
        crate::require_official(name, official.as_deref())?;
        Self::new(official.as_deref())
    }

    /// Errors of `body` against the first set of schemas that refuses it.
    pub fn validate(&self, method: &str, route: &str, body: &Value) -> Result<(), Vec<String>> {
        self.0
            .iter()
            .try_for_each(|schemas| schemas.validate(method, route, body))
    }
}

pub struct OpenApi {
    validators: HashMap<(String, String), jsonschema::Validator>,
}

impl OpenApi {
    /// The project's own schemas, written from Atlassian's documented request shapes.
    pub fn own() -> anyhow::Result<Self> {
        Self::parse(include_str!("../schemas/jira-devops.openapi.json"))
            .map_err(|e| anyhow::anyhow!("schemas/jira-devops.openapi.json: {e}"))
    }

    /// Loads a document from a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Compiles the JSON request-body schema of every operation of the document `text`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let doc: Value = serde_json::from_str(text)?;
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
