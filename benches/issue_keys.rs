//! Issue-key extraction on hostile texts (see BENCHMARKS.md): a commit message of 1, 4 and 8 MB packed
//! with distinct keys, against the rule's first implementation (de-duplication by linear search over
//! every key found, no bound), which is quadratic in the number of distinct keys.
//!
//! `cargo bench --bench issue_keys` (no database, no network). Target: 1 MB with 100,000 distinct keys in
//! under 50 ms.

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use gfj_core::issue_keys;
use regex::Regex;

/// A text of `keys` distinct keys (`K0-0 K0-1 … K9999-9 …`, eight or nine bytes each), padded with spaces
/// to at least `bytes`.
fn hostile_text(keys: usize, bytes: usize) -> String {
    let mut text = String::with_capacity(bytes.max(keys * 10));
    for n in 0..keys {
        text.push_str(&format!("K{}-{} ", n / 10, n % 10));
    }
    while text.len() < bytes {
        text.push(' ');
    }
    text
}

/// The rule as it was first implemented: every key found is compared with every key kept so far.
fn quadratic(text: &str) -> Vec<String> {
    static KEY: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?-u:\b)([A-Z][A-Z_0-9]+-[0-9]+)").expect("static regex"));
    let mut keys: Vec<String> = Vec::new();
    for m in KEY.captures_iter(text) {
        let key = &m[1];
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_owned());
        }
    }
    keys
}

/// The fastest of `runs` runs, after one warm-up.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = f();
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        out = black_box(f());
        best = best.min(start.elapsed());
    }
    (best, out)
}

fn main() {
    const MB: usize = 1_000_000;
    println!("| text | distinct keys | algorithm | best time ms | keys kept | dropped |");
    println!("|---|---|---|---|---|---|");
    for (bytes, keys) in [(MB, 100_000), (4 * MB, 400_000), (8 * MB, 800_000)] {
        let text = hostile_text(keys, bytes);
        let (t, found) = best_of(5, || issue_keys::extract([text.as_str()]));
        println!(
            "| {} MB | {keys} | linear, bounded (`extract`) | {:.2} | {} | {} |",
            bytes / MB,
            t.as_secs_f64() * 1e3,
            found.keys().len(),
            found.dropped()
        );
    }
    for keys in [10_000, 40_000] {
        let text = hostile_text(keys, 0);
        let (linear, _) = best_of(5, || issue_keys::extract([text.as_str()]));
        let (old, found) = best_of(1, || quadratic(&text));
        assert_eq!(found.len(), keys);
        println!(
            "| {} KB | {keys} | linear, bounded (`extract`) | {:.2} | | |",
            text.len() / 1000,
            linear.as_secs_f64() * 1e3
        );
        println!(
            "| {} KB | {keys} | quadratic (first implementation) | {:.2} | {} | 0 |",
            text.len() / 1000,
            old.as_secs_f64() * 1e3,
            found.len()
        );
        println!(
            "ratio at {keys} keys: quadratic / linear = {:.0}x",
            old.as_secs_f64() / linear.as_secs_f64()
        );
    }
}
