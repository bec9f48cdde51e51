//! GitLab's webhook dates. Pipeline and older merge request payloads say `2016-08-12 15:23:28 UTC`,
//! deployments say `2021-04-28 21:50:00 +0200`, newer fields are RFC 3339, and the format of a given field
//! has changed between GitLab versions, so every date field accepts all of them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// An instant as GitLab wrote it, keeping the sender's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GitLabTime(OffsetDateTime);

impl GitLabTime {
    /// Reads any of GitLab's date formats; `None` for anything else. A bare `2020-12-14` is midnight UTC,
    /// because that is what GitLab means by a date without a time (for example membership expiry).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let date_text = text.get(..10)?;
        // `[year]` alone would also take a sign; GitLab only ever writes four digits.
        if !date_text.get(..4)?.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let date = Date::parse(date_text, format_description!("[year]-[month]-[day]")).ok()?;
        let rest = text.get(10..)?;
        if rest.is_empty() {
            return Some(Self(date.midnight().assume_utc()));
        }
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let (clock_text, offset) = split_offset(rest)?;
        let clock = Time::parse(
            clock_text,
            format_description!("[hour]:[minute]:[second][optional [.[subsecond]]]"),
        )
        .ok()?;
        Some(Self(
            PrimitiveDateTime::new(date, clock).assume_offset(offset),
        ))
    }

    /// The instant `ms` milliseconds after the Unix epoch (UTC); `None` outside the years `time` supports.
    pub fn from_unix_ms(ms: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .map(Self)
    }

    /// `ms` since the Unix epoch as RFC 3339 in UTC, for GitLab's `updated_after` and similar filters;
    /// a time out of range reads as the epoch.
    pub fn rfc3339_at(ms: i64) -> String {
        Self::from_unix_ms(ms.max(0))
            .map(|t| t.rfc3339())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        self.0.unix_timestamp() * 1000 + i64::from(self.0.millisecond())
    }

    /// RFC 3339 in UTC (`2021-04-28T19:50:00Z`, with `.mmm` only when there are milliseconds): the ISO 8601
    /// form Jira accepts, and one that sorts as text.
    pub fn rfc3339(&self) -> String {
        // Only a date at the very edge of the supported range cannot move to UTC; it keeps its own offset
        // rather than being mislabelled.
        let at = self.0.checked_to_offset(UtcOffset::UTC).unwrap_or(self.0);
        let millis = at.millisecond();
        let fraction = if millis == 0 {
            String::new()
        } else {
            format!(".{millis:03}")
        };
        let offset = at.offset();
        let zone = if offset.is_utc() {
            "Z".to_owned()
        } else {
            let sign = if offset.is_negative() { '-' } else { '+' };
            format!(
                "{sign}{:02}:{:02}",
                offset.whole_hours().unsigned_abs(),
                offset.minutes_past_hour().unsigned_abs()
            )
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{zone}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        )
    }

    pub fn offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

/// Splits `21:50:00 +0200`, `17:15:43Z`, `15:23:28 UTC` or `10:00:00.123+02:00` into clock and offset.
fn split_offset(rest: &str) -> Option<(&str, UtcOffset)> {
    for utc_marker in ["UTC", "Z", "z"] {
        if let Some(clock) = rest.strip_suffix(utc_marker) {
            return Some((clock.trim_end(), UtcOffset::UTC));
        }
    }
    let sign_at = rest.rfind(['+', '-'])?;
    let (clock, zone) = rest.split_at(sign_at);
    let negative = zone.starts_with('-');
    let digits: String = zone.chars().skip(1).filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i8>().ok()?, 0),
        4 => (
            digits.get(..2)?.parse::<i8>().ok()?,
            digits.get(2..)?.parse::<i8>().ok()?,
        ),
        _ => return None,
    };
    // The `time` crate allows offsets up to 25:59; RFC 3339 and GitLab stop at 23:59.
    if hours > 23 || minutes > 59 {
        return None;
    }
    let (hours, minutes) = if negative {
        (-hours, -minutes)
    } else {
        (hours, minutes)
    };
    let offset = UtcOffset::from_hms(hours, minutes, 0).ok()?;
    Some((clock.trim_end(), offset))
}

impl From<OffsetDateTime> for GitLabTime {
    fn from(at: OffsetDateTime) -> Self {
        Self(at)
    }
}

impl fmt::Display for GitLabTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl Serialize for GitLabTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.rfc3339())
    }
}

/// Strict: a required date that cannot be read is an error. Optional fields are lenient instead (see
/// `lenient_time`).
impl<'de> Deserialize<'de> for GitLabTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unrecognised date {text:?}")))
    }
}

/// For optional date fields: `null`, a non-string or an unreadable date is `None`, because losing one
/// timestamp is better than refusing the whole webhook.
pub(crate) fn lenient_time<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<GitLabTime>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => GitLabTime::parse(&text),
        _ => None,
    })
}

/// GitLab sends `null` for empty lists and strings in some versions and omits them in others.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_a_gitlab_date() {
        for text in [
            "",
            "yesterday",
            "2021-04-28 21:50:00",
            "2021-04-28X21:50:00Z",
            "2021-13-28T21:50:00Z",
            "2021-04-28T25:50:00Z",
            "2021-04-28T21:50:00+2",
            "2021-04-28T21:50:00+24:00",
            "2021-04-28T21:50:00 CEST",
            "+202-04-28T21:50:00Z",
            "2021-04-28T21:50:00Zé",
            "é021-04-28",
        ] {
            assert_eq!(GitLabTime::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn rfc3339_keeps_milliseconds_only_when_present() {
        let whole = GitLabTime::parse("2016-08-12 15:23:28 UTC").map(|t| t.rfc3339());
        assert_eq!(whole.as_deref(), Some("2016-08-12T15:23:28Z"));
        let fractional = GitLabTime::parse("2021-02-23T02:41:37.886123Z").map(|t| t.rfc3339());
        assert_eq!(fractional.as_deref(), Some("2021-02-23T02:41:37.886Z"));
    }

    #[test]
    fn unix_ms_before_the_epoch_counts_down() {
        let t = GitLabTime::parse("1969-12-31T23:59:59.500Z").map(|t| t.unix_ms());
        assert_eq!(t, Some(-500));
    }

    #[test]
    fn extreme_offsets_never_panic() {
        for text in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59"] {
            let t = GitLabTime::parse(text);
            assert!(t.is_some(), "{text}");
            if let Some(t) = t {
                assert!(!t.rfc3339().is_empty());
                let _ = t.unix_ms();
            }
        }
    }

    #[test]
    fn serializes_as_rfc3339_and_reads_back() {
        let t = GitLabTime::parse("2021-04-28 21:50:00 +0200");
        let json = serde_json::to_string(&t).unwrap_or_default();
        assert_eq!(json, "\"2021-04-28T19:50:00Z\"");
        assert_eq!(
            serde_json::from_str::<Option<GitLabTime>>(&json)
                .ok()
                .flatten(),
            t
        );
    }

    #[test]
    fn strict_deserialize_names_the_bad_date() {
        let err = serde_json::from_str::<GitLabTime>("\"soon\"")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("unrecognised date \"soon\"")));
    }
}
