//! The simulated Jira site's development panel as a person sees it: one page per issue key with its
//! branches, commits, pull requests, builds, deployments and feature flags, from what the site stored.
//! Read-only HTML, every stored text escaped (it came from GitLab).

use serde_json::Value;

use crate::jira::IssueView;

/// `/browse`: the issue keys with data.
pub fn index(keys: &[String]) -> String {
    let items: String = keys
        .iter()
        .map(|k| {
            let k = escape(k);
            format!("<li><a href=\"/browse/{k}\">{k}</a></li>")
        })
        .collect();
    let body = if keys.is_empty() {
        "<p>No development information yet.</p>".to_owned()
    } else {
        format!("<ul>{items}</ul>")
    };
    page("Development information", &body)
}

/// A panel section: its title, its entities, and how one entity reads.
type Section<'a> = (&'static str, &'a [Value], fn(&Value) -> String);

/// `/browse/{key}`: one issue's development panel.
pub fn issue(key: &str, view: &IssueView) -> String {
    let mut body = String::from("<p><a href=\"/browse\">All issue keys</a></p>");
    let sections: [Section; 6] = [
        ("Branches", &view.branches, |b| {
            format!(
                "{} <small>last commit {}</small>",
                text(&b["name"]),
                text(&b["lastCommit"]["displayId"])
            )
        }),
        ("Commits", &view.commits, |c| {
            let first_line = c["message"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            format!(
                "<code>{}</code> {}",
                text(&c["displayId"]),
                escape(first_line)
            )
        }),
        ("Pull requests", &view.pull_requests, |p| {
            format!(
                "{} {} <strong>{}</strong>",
                text(&p["displayId"]),
                text(&p["title"]),
                text(&p["status"])
            )
        }),
        ("Builds", &view.builds, |b| {
            format!(
                "{} #{} <strong>{}</strong>",
                text(&b["displayName"]),
                text(&b["buildNumber"]),
                text(&b["state"])
            )
        }),
        ("Deployments", &view.deployments, |d| {
            let services: Vec<String> = d["associations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["associationType"] == "serviceIdOrKeys")
                .flat_map(|a| a["values"].as_array().cloned().unwrap_or_default())
                .map(|v| text(&v))
                .collect();
            let services = if services.is_empty() {
                String::new()
            } else {
                format!(" <small>services {}</small>", services.join(", "))
            };
            format!(
                "{} <strong>{}</strong> <small>environment {}</small>{services}",
                text(&d["displayName"]),
                text(&d["state"]),
                text(&d["environment"]["displayName"])
            )
        }),
        ("Feature flags", &view.feature_flags, |f| {
            let on = if f["summary"]["status"]["enabled"] == true {
                "on"
            } else {
                "off"
            };
            format!("{} <strong>{on}</strong>", text(&f["key"]))
        }),
    ];
    let mut any = false;
    for (title, entities, line) in sections {
        if entities.is_empty() {
            continue;
        }
        any = true;
        let items: String = entities
            .iter()
            .map(|e| format!("<li>{}</li>", line(e)))
            .collect();
        body.push_str(&format!(
            "<section data-kind=\"{}\"><h2>{title} ({})</h2><ul>{items}</ul></section>",
            title.to_lowercase().replace(' ', "-"),
            entities.len()
        ));
    }
    if !any {
        body.push_str("<p>Nothing in the development panel.</p>");
    }
    page(&format!("{} — development", escape(key)), &body)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#172b4d}}\
         li{{margin:.3rem 0}}small{{color:#5e6c84}}</style></head>\
         <body><h1>{title}</h1><p><small>Simulated Jira site, read-only.</small></p>{body}</body></html>"
    )
}

/// A stored value as escaped text (strings without their quotes).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_has_its_section_and_stored_text_is_escaped() {
        let view = IssueView {
            commits: vec![
                json!({"displayId": "abc1234", "message": "PROJ-1 <script>alert(1)</script>\nbody"}),
            ],
            branches: vec![
                json!({"name": "feature/PROJ-1", "lastCommit": {"displayId": "abc1234"}}),
            ],
            deployments: vec![
                json!({"displayName": "deploy", "environment": {"displayName": "production"}, "state": "successful",
                "associations": [{"associationType": "serviceIdOrKeys", "values": ["svc-1"]}]}),
            ],
            feature_flags: vec![
                json!({"key": "new_login", "summary": {"status": {"enabled": true}}}),
            ],
            ..Default::default()
        };
        let html = issue("PROJ-1", &view);
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(
            !html.contains("body</li>"),
            "only the first line of a message"
        );
        for kind in ["branches", "commits", "deployments", "feature-flags"] {
            assert!(html.contains(&format!("data-kind=\"{kind}\"")), "{kind}");
        }
        assert!(
            !html.contains("data-kind=\"builds\""),
            "empty kinds are left out"
        );
        assert!(html.contains("services svc-1"));
        assert!(html.contains("new_login <strong>on</strong>"));
        assert!(index(&["A&B-1".into()]).contains("/browse/A&amp;B-1"));
        assert!(index(&[]).contains("No development information yet"));
    }
}
