//! The period a report covers, and the clock readings it prints.
//!
//! `--from` is inclusive and `--to` exclusive: `--from 2026-11-01 --to 2026-12-01`
//! is November, every event whose `timestamp` is at or after midnight UTC of the
//! first and before midnight UTC of the second. A bound is a date (`YYYY-MM-DD`,
//! midnight UTC) or an RFC 3339 date-time with any offset. Times are kept as
//! milliseconds since the Unix epoch, UTC: events carry millisecond timestamps.
//!
//! Pure: no IO, no clock.

use crate::clock::rfc3339_nanos;

pub const DAY_MS: i64 = 86_400_000;

/// The bounds given, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// Inclusive.
    pub from: Option<i64>,
    /// Exclusive.
    pub to: Option<i64>,
}

impl Period {
    /// Parses the command line's bounds; `to` must come after `from`.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Period, String> {
        let bound = |flag: &str, s: Option<&str>| {
            s.map(|s| {
                parse_bound(s).ok_or_else(|| {
                    format!("{flag} {s:?}: expected YYYY-MM-DD or an RFC 3339 date-time")
                })
            })
            .transpose()
        };
        let period = Period {
            from: bound("--from", from)?,
            to: bound("--to", to)?,
        };
        if let (Some(f), Some(t)) = (period.from, period.to)
            && t <= f
        {
            return Err("--to must come after --from (--from is inclusive, --to exclusive)".into());
        }
        Ok(period)
    }

    /// True when an event at `ms` is reported.
    pub fn contains(&self, ms: i64) -> bool {
        self.from.is_none_or(|f| ms >= f) && self.to.is_none_or(|t| ms < t)
    }

    pub fn is_bounded(&self) -> bool {
        self.from.is_some() || self.to.is_some()
    }
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339, to milliseconds since the epoch.
pub fn parse_bound(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() == 10 {
        return timestamp_ms(&format!("{s}T00:00:00Z"));
    }
    timestamp_ms(s)
}

/// An RFC 3339 date-time to milliseconds since the epoch (fractions below a
/// millisecond dropped, towards the past).
pub fn timestamp_ms(s: &str) -> Option<i64> {
    let nanos = rfc3339_nanos(s)?;
    i64::try_from(nanos.div_euclid(1_000_000)).ok()
}

/// Milliseconds since the epoch as RFC 3339 UTC: `2026-11-26T07:06:42.123Z`.
pub fn format_ms(ms: i64) -> String {
    crate::clock::format_utc(ms.div_euclid(1000), ms.rem_euclid(1000) as u32).0
}

/// The day (since the epoch, UTC) of a time.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// `YYYY-MM-DD` of a day since the epoch.
pub fn day_label(day: i64) -> String {
    let (y, m, d) = crate::clock::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A duration in words for people: `3 d 4 h`, `2 h 5 min`, `40 min`, `12 s`.
pub fn span_words(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_dates_or_rfc3339_and_to_is_exclusive() {
        let p = Period::parse(Some("2026-11-01"), Some("2026-11-02T00:00:00+01:00")).unwrap();
        assert_eq!(format_ms(p.from.unwrap()), "2026-11-01T00:00:00.000Z");
        assert_eq!(format_ms(p.to.unwrap()), "2026-11-01T23:00:00.000Z");
        assert!(p.contains(p.from.unwrap()));
        assert!(!p.contains(p.to.unwrap()));
        assert!(p.contains(p.to.unwrap() - 1));
        assert!(Period::parse(Some("2026-11-02"), Some("2026-11-01")).is_err());
        assert!(Period::parse(Some("2026-11-02"), Some("2026-11-02")).is_err());
        assert!(Period::parse(Some("yesterday"), None).is_err());
        assert!(Period::parse(Some("2026-13-01"), None).is_err());
        assert!(Period::default().contains(i64::MIN));
    }

    #[test]
    fn readings_format_and_days_fall_in_utc() {
        let ms = timestamp_ms("2026-11-26T07:06:42.1239Z").unwrap();
        assert_eq!(format_ms(ms), "2026-11-26T07:06:42.123Z");
        assert_eq!(day_label(day_of(ms)), "2026-11-26");
        assert_eq!(day_label(day_of(-1)), "1969-12-31");
        assert_eq!(span_words(90_061_000), "1 d 1 h");
        assert_eq!(span_words(3_720_000), "1 h 2 min");
        assert_eq!(span_words(5_000), "5 s");
    }
}
