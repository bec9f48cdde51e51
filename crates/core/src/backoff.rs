//! The durable queue's retry schedule: exponential with full jitter, capped, and never sooner than the
//! upstream asked (`Retry-After`).

/// First retry waits up to this long.
pub const BASE_MS: i64 = 1_000;
/// No retry waits longer than this (plus nothing: the cap bounds the jitter window).
pub const CAP_MS: i64 = 15 * 60 * 1_000;

/// Delay before attempt `attempts + 1`, given `attempts` already made (≥ 1), a uniform random number
/// `jitter` in `[0, 1)`, and the upstream's minimum wait if it gave one.
pub fn retry_delay_ms(attempts: u32, jitter: f64, retry_after_ms: Option<i64>) -> i64 {
    let exp = BASE_MS.saturating_mul(1_i64 << attempts.saturating_sub(1).min(20));
    let window = exp.min(CAP_MS);
    // Full jitter, but at least a tenth of the window so a storm does not retry instantly.
    let jittered = window / 10 + ((window - window / 10) as f64 * jitter.clamp(0.0, 1.0)) as i64;
    jittered.max(retry_after_ms.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_honours_retry_after() {
        assert_eq!(retry_delay_ms(1, 0.0, None), 100);
        assert_eq!(retry_delay_ms(1, 0.999_999, None), 999);
        assert_eq!(retry_delay_ms(3, 1.0, None), 4_000);
        assert_eq!(retry_delay_ms(40, 1.0, None), CAP_MS);
        assert_eq!(retry_delay_ms(1, 0.0, Some(30_000)), 30_000);
        for a in 1..30 {
            let d = retry_delay_ms(a, 0.5, None);
            assert!(d > 0 && d <= CAP_MS);
        }
    }
}
