//! The one retry schedule: exponential with full jitter (at least a tenth of the window, so that a storm
//! never retries at once), capped, and never sooner than the upstream asked (`Retry-After`). The durable
//! queue uses it between attempts of a job ([`Backoff::QUEUE`]); the GitLab client between in-line
//! retries of one request ([`Backoff::IN_LINE`]).

/// A schedule: the first window and the longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: i64,
    pub cap_ms: i64,
}

impl Backoff {
    /// Between attempts of a queued job.
    pub const QUEUE: Backoff = Backoff {
        base_ms: 1_000,
        cap_ms: 15 * 60 * 1_000,
    };

    /// Between in-line retries of one request (the caller's job is retried later if they all fail).
    pub const IN_LINE: Backoff = Backoff {
        base_ms: 200,
        cap_ms: 5_000,
    };

    /// Delay before attempt `attempts + 1`, given `attempts` already made (≥ 1), a uniform random number
    /// `jitter` in `[0, 1)` ([`jitter`]), and the upstream's minimum wait if it gave one.
    pub fn delay_ms(self, attempts: u32, jitter: f64, retry_after_ms: Option<i64>) -> i64 {
        let exp = self
            .base_ms
            .saturating_mul(1_i64 << attempts.saturating_sub(1).min(20));
        let window = exp.min(self.cap_ms);
        let jittered =
            window / 10 + ((window - window / 10) as f64 * jitter.clamp(0.0, 1.0)) as i64;
        jittered.max(retry_after_ms.unwrap_or(0))
    }
}

/// A uniform number in `[0, 1)` for spreading retries; no cryptographic randomness needed.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_honours_retry_after() {
        let q = Backoff::QUEUE;
        assert_eq!(q.delay_ms(1, 0.0, None), 100);
        assert_eq!(q.delay_ms(1, 0.999_999, None), 999);
        assert_eq!(q.delay_ms(3, 1.0, None), 4_000);
        assert_eq!(q.delay_ms(40, 1.0, None), q.cap_ms);
        assert_eq!(q.delay_ms(1, 0.0, Some(30_000)), 30_000);
        for a in 1..30 {
            let d = q.delay_ms(a, 0.5, None);
            assert!(d > 0 && d <= q.cap_ms);
        }
        assert_eq!(Backoff::IN_LINE.delay_ms(2, 1.0, None), 400);
        assert_eq!(Backoff::IN_LINE.delay_ms(30, 1.0, None), 5_000);
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let samples: Vec<f64> = (0..100).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        assert!(samples.windows(2).any(|w| w[0] != w[1]));
    }
}
