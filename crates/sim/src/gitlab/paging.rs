//! GitLab's offset pagination: `page`/`per_page` (default 20, clamped to 100), answered with `x-page`,
//! `x-per-page`, `x-next-page` (empty on the last page), `x-prev-page`, `x-total`, `x-total-pages` and a
//! `Link` header. Every list endpoint of the simulator answers through here.

use axum::response::{IntoResponse, Response};
use serde_json::Value;

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
    link.push(format!("<{link_base}&page={total_pages}>; rel=\"last\""));
    (
        [
            ("x-page", page.to_string()),
            ("x-per-page", per_page.to_string()),
            ("x-next-page", next),
            ("x-prev-page", prev),
            ("x-total", total.to_string()),
            ("x-total-pages", total_pages.to_string()),
            ("link", link.join(", ")),
        ],
        axum::Json(items),
    )
        .into_response()
}
