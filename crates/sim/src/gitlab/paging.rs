//! GitLab's two pagination styles.
//!
//! Offset: `page`/`per_page` (default 20, clamped to 100), answered with `x-page`, `x-per-page`,
//! `x-next-page` (empty on the last page), `x-prev-page`, `x-total`, `x-total-pages` and a `Link` header;
//! above 10,000 records GitLab stops counting, so `x-total`, `x-total-pages` and `rel="last"` go away.
//!
//! Keyset: only `Link: <…>; rel="next"`, whose URL carries the cursor (`id_after`/`id_before`) and must
//! be followed verbatim. Like GitLab's pager, a full page always gets a `next` link, so a list whose size
//! is a multiple of `per_page` ends with one empty page; a short page has no link.

use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Above this many records GitLab omits the counting headers.
const COUNT_LIMIT: usize = 10_000;

/// One page of `all`. `link_base` is the list URL with its filters but without `page`/`per_page`.
pub(crate) fn offset_page(
    all: Vec<Value>,
    page: Option<usize>,
    per_page: Option<usize>,
    link_base: &str,
) -> Response {
    let per_page = per_page.unwrap_or(20).clamp(1, 100);
    let page = page.unwrap_or(1).max(1);
    let total = all.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let counted = total <= COUNT_LIMIT;
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let sep = if link_base.contains('?') { '&' } else { '?' };
    let link_base = format!("{link_base}{sep}per_page={per_page}");
    let mut link = Vec::new();
    if !prev.is_empty() {
        link.push(format!("<{link_base}&page={prev}>; rel=\"prev\""));
    }
    if !next.is_empty() {
        link.push(format!("<{link_base}&page={next}>; rel=\"next\""));
    }
    link.push(format!("<{link_base}&page=1>; rel=\"first\""));
    let mut headers = vec![
        ("x-page", page.to_string()),
        ("x-per-page", per_page.to_string()),
        ("x-next-page", next),
        ("x-prev-page", prev),
    ];
    if counted {
        link.push(format!("<{link_base}&page={total_pages}>; rel=\"last\""));
        headers.push(("x-total", total.to_string()));
        headers.push(("x-total-pages", total_pages.to_string()));
    }
    let mut resp = axum::Json(items).into_response();
    for (name, value) in headers.into_iter().chain([("link", link.join(", "))]) {
        if let Ok(v) = value.parse() {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// The first `per_page` of `rest` (the records past the cursor, already in the requested order).
/// `link_base` is the request URL without cursor and `per_page`; `cursor` is `id_after` or `id_before`.
pub(crate) fn keyset_page(
    rest: Vec<(i64, Value)>,
    per_page: Option<usize>,
    link_base: &str,
    cursor: &str,
) -> Response {
    let per_page = per_page.unwrap_or(20).clamp(1, 100);
    let page: Vec<(i64, Value)> = rest.into_iter().take(per_page).collect();
    let next = (page.len() == per_page)
        .then(|| page.last().map(|(id, _)| *id))
        .flatten();
    let mut resp = axum::Json(page.into_iter().map(|(_, v)| v).collect::<Vec<_>>()).into_response();
    if let Some(last) = next {
        let sep = if link_base.contains('?') { '&' } else { '?' };
        let link = format!("<{link_base}{sep}per_page={per_page}&{cursor}={last}>; rel=\"next\"");
        if let Ok(v) = link.parse() {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}
