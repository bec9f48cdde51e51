//! Numbers about time that GitLab and Jira send us: `Retry-After`, `RateLimit-Reset`,
//! `X-RateLimit-Reset` and OAuth `expires_in`.
//!
//! A hostile or broken server may send anything there. Each value is parsed strictly (anything that is
//! not the documented form counts as absent, so the caller's default applies), computed without
//! overflow (no panic in debug builds, no wrap-around in release builds) and capped, so that no answer
//! can make the service wait for years or keep a token forever.

use std::time::Duration;

/// The longest any server may make us wait before trying again.
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The longest we believe an OAuth access token lives. GitLab's live two hours and Atlassian's one; a
/// longer claim only means we ask for a fresh token sooner than needed.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;

/// A delay in whole seconds (`Retry-After: 120`), capped at [`MAX_WAIT`]. `None` for anything else:
/// negative, fractional or exponent forms, numbers beyond `u64`, HTTP dates.
pub fn delay_seconds(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only too many of them can fail to parse, and that is more than the cap anyway.
    let secs = value.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_WAIT))
}

/// The wait until an instant given in Unix seconds (GitLab's `RateLimit-Reset`), from `now_ms` (Unix
/// milliseconds): zero when it has passed, at most [`MAX_WAIT`]. `None` when the value is not an integer.
pub fn until_unix_seconds(value: &str, now_ms: i64) -> Option<Duration> {
    let reset_secs: i64 = value.trim().parse().ok()?;
    Some(wait_until_ms(
        i128::from(reset_secs) * 1000,
        i128::from(now_ms),
    ))
}

/// The wait until an RFC 3339 instant (Jira's `X-RateLimit-Reset`, which may omit the seconds, as in
/// `2027-01-15T08:01Z`), from `now_ms`: zero when it has passed, at most [`MAX_WAIT`]. `None` when the
/// value is not such an instant.
pub fn until_rfc3339(value: &str, now_ms: i64) -> Option<Duration> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    let reset = time::OffsetDateTime::parse(value, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&value.replacen('Z', ":00Z", 1), &Rfc3339))
        .ok()?;
    Some(wait_until_ms(
        reset.unix_timestamp_nanos() / 1_000_000,
        i128::from(now_ms),
    ))
}

/// `reset_ms - now_ms`, clamped to `[0, MAX_WAIT]`; `i128` holds any difference of two `i64` values.
fn wait_until_ms(reset_ms: i128, now_ms: i128) -> Duration {
    let max_ms = MAX_WAIT.as_millis() as i128;
    let wait_ms = (reset_ms - now_ms).clamp(0, max_ms);
    Duration::from_millis(wait_ms as u64)
}

/// A token lifetime in seconds as the token endpoint gave it (`expires_in`), within
/// `[0, MAX_TOKEN_LIFETIME_SECS]`: a negative one is already expired.
pub fn token_lifetime_secs(expires_in: i64) -> i64 {
    expires_in.clamp(0, MAX_TOKEN_LIFETIME_SECS)
}

/// When a token issued at `now_ms` with `expires_in` seconds expires, in Unix milliseconds.
pub fn token_expiry_ms(now_ms: i64, expires_in: i64) -> i64 {
    now_ms.saturating_add(token_lifetime_secs(expires_in) * 1000)
}

/// Deserializes `expires_in` whatever JSON the token endpoint put there: an integer as it is (one beyond
/// `i64` as `i64::MAX`), a finite number truncated, a string of digits parsed; anything else, or a
/// value that does not parse, as absent, so that the caller's default lifetime applies instead of
/// the whole response being refused.
pub fn lenient_seconds<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

    #[test]
    fn delays_in_seconds_are_strict_and_capped() {
        let max = Some(MAX_WAIT);
        let table: &[(&str, Option<Duration>)] = &[
            ("7", Some(Duration::from_secs(7))),
            (" 0 ", Some(Duration::ZERO)),
            ("3600", max),
            ("3601", max),
            (&i64::MAX.to_string(), max),
            (&u64::MAX.to_string(), max),
            ("184467440737095516150000", max),
            ("-1", None),
            (&i64::MIN.to_string(), None),
            ("1e99", None),
            ("1.5", None),
            ("+5", None),
            ("", None),
            ("soon", None),
            ("Wed, 21 Oct 2037 07:28:00 GMT", None),
        ];
        for (value, expected) in table {
            assert_eq!(delay_seconds(value), *expected, "{value:?}");
        }
    }

    #[test]
    fn waits_until_unix_seconds_never_overflow_and_are_capped() {
        let now_secs = NOW_MS / 1000;
        let table: &[(String, Option<Duration>)] = &[
            ((now_secs + 30).to_string(), Some(Duration::from_secs(30))),
            (now_secs.to_string(), Some(Duration::ZERO)),
            ((now_secs - 30).to_string(), Some(Duration::ZERO)),
            ((now_secs + 7200).to_string(), Some(MAX_WAIT)),
            (i64::MAX.to_string(), Some(MAX_WAIT)),
            (i64::MIN.to_string(), Some(Duration::ZERO)),
            ("0".into(), Some(Duration::ZERO)),
            ("-1".into(), Some(Duration::ZERO)),
            (u64::MAX.to_string(), None),
            ("1e99".into(), None),
            ("".into(), None),
            ("tomorrow".into(), None),
        ];
        for (value, expected) in table {
            assert_eq!(until_unix_seconds(value, NOW_MS), *expected, "{value:?}");
        }
        // The clock itself at its extremes.
        assert_eq!(until_unix_seconds("0", i64::MAX), Some(Duration::ZERO));
        assert_eq!(
            until_unix_seconds(&i64::MAX.to_string(), i64::MIN),
            Some(MAX_WAIT)
        );
    }

    #[test]
    fn waits_until_rfc3339_instants_are_capped() {
        let table: &[(&str, Option<Duration>)] = &[
            ("2027-01-15T08:01Z", Some(Duration::from_secs(60))),
            (
                "2027-01-15T08:00:30.5Z",
                Some(Duration::from_millis(30_500)),
            ),
            ("2027-01-15T07:00:00Z", Some(Duration::ZERO)),
            ("1970-01-01T00:00:00Z", Some(Duration::ZERO)),
            ("0000-01-01T00:00:00Z", Some(Duration::ZERO)),
            ("9999-12-31T23:59:59Z", Some(MAX_WAIT)),
            ("2027-01-15T10:00:00+01:00", Some(MAX_WAIT)),
            ("yesterday", None),
            ("", None),
            ("1e99", None),
        ];
        for (value, expected) in table {
            assert_eq!(until_rfc3339(value, NOW_MS), *expected, "{value:?}");
        }
    }

    #[test]
    fn token_lifetimes_are_clamped() {
        assert_eq!(token_expiry_ms(NOW_MS, 7200), NOW_MS + 7_200_000);
        assert_eq!(token_expiry_ms(NOW_MS, -5), NOW_MS);
        assert_eq!(token_expiry_ms(NOW_MS, i64::MIN), NOW_MS);
        assert_eq!(
            token_expiry_ms(NOW_MS, i64::MAX),
            NOW_MS + MAX_TOKEN_LIFETIME_SECS * 1000
        );
        assert_eq!(token_expiry_ms(i64::MAX, 3600), i64::MAX);
        assert_eq!(token_lifetime_secs(i64::MAX), MAX_TOKEN_LIFETIME_SECS);
    }

    #[test]
    fn expires_in_accepts_any_json() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "lenient_seconds")]
            expires_in: Option<i64>,
        }
        let table: &[(&str, Option<i64>)] = &[
            (r#"{"expires_in":7200}"#, Some(7200)),
            (r#"{"expires_in":-1}"#, Some(-1)),
            (r#"{"expires_in":18446744073709551615}"#, Some(i64::MAX)),
            (r#"{"expires_in":1e99}"#, Some(i64::MAX)),
            (r#"{"expires_in":3599.9}"#, Some(3599)),
            (r#"{"expires_in":"3600"}"#, Some(3600)),
            (r#"{"expires_in":"soon"}"#, None),
            (r#"{"expires_in":null}"#, None),
            (r#"{"expires_in":[1]}"#, None),
            (r#"{}"#, None),
        ];
        for (json, expected) in table {
            let t: T = serde_json::from_str(json).unwrap();
            assert_eq!(t.expires_in, *expected, "{json}");
        }
    }
}
