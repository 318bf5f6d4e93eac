//! What protocol sinks read of a shipped record to build their envelopes: the
//! idempotency id, the event's time, host and a few key fields.
//!
//! `check` writes `_auditship` as the record's last member, opening with
//! `{"v":1,"id":"`, so the id is found by searching from the end of the line: any
//! earlier occurrence of the same bytes lies inside the event's own members, and none
//! can follow, because the rest of the line is metadata `check` wrote itself.

use serde::Deserialize;
use std::borrow::Cow;

const ID_MARK: &[u8] = br#""_auditship":{"v":1,"id":""#;

/// The record's `_auditship.id` (64 hex digits), found without parsing the line.
pub fn id(line: &[u8]) -> Option<&str> {
    let at = memchr::memmem::rfind(line, ID_MARK)? + ID_MARK.len();
    let rest = &line[at..];
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The members of a record sinks use. Borrowed where the JSON has no escapes.
#[derive(Debug, Default, Deserialize)]
pub struct Head<'a> {
    #[serde(borrow)]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub host: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub resource: Option<Cow<'a, str>>,
    pub seq: Option<u64>,
    #[serde(borrow, rename = "_auditship", default)]
    pub meta: MetaHead<'a>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MetaHead<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub host: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub received_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub source: Option<Cow<'a, str>>,
    #[serde(default)]
    pub integrity: Integrity,
}

#[derive(Debug, Deserialize)]
pub struct Integrity {
    pub ok: bool,
}

impl Default for Integrity {
    fn default() -> Self {
        Integrity { ok: true }
    }
}

impl<'a> Head<'a> {
    /// Parses the members sinks use; a line that is not an object gives all `None`.
    pub fn parse(line: &'a [u8]) -> Head<'a> {
        serde_json::from_slice(line).unwrap_or_default()
    }

    /// The event's time in nanoseconds since the epoch: its `timestamp`, else the
    /// time the daemon read it.
    pub fn time_nanos(&self) -> Option<i128> {
        self.timestamp
            .as_deref()
            .and_then(rfc3339_nanos)
            .or_else(|| self.meta.received_at.as_deref().and_then(rfc3339_nanos))
    }

    /// The host the event happened on: the event's `host`, else the shipping host.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref().or(self.meta.host.as_deref())
    }

    pub fn id(&self) -> Option<&str> {
        self.meta.id.as_deref()
    }
}

/// Parses an RFC 3339 date-time (`2026-11-26T07:06:42.123Z`, `...+02:00`) into
/// nanoseconds since the Unix epoch. Fractions beyond nanoseconds are cut.
pub fn rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = 100_000_000i128;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac += i128::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_s: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(i128::from(secs) * 1_000_000_000 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC calendar date (year, month, day) of a time in nanoseconds.
pub fn civil_date(nanos: i128) -> (i64, u32, u32) {
    crate::record::civil_from_days((nanos.div_euclid(1_000_000_000) as i64).div_euclid(86_400))
}

/// The lines of a request body (each ends in `\n`; the last may not).
pub fn lines(records: &[u8]) -> impl Iterator<Item = &[u8]> {
    records.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_nanos("2026-11-26T07:06:42.123Z"),
            Some(1_795_676_802_123_000_000)
        );
        assert_eq!(
            rfc3339_nanos("2026-11-26T09:06:42.123+02:00"),
            rfc3339_nanos("2026-11-26T07:06:42.123Z")
        );
        assert_eq!(
            rfc3339_nanos("2000-02-29T00:00:00.000000001Z"),
            Some(951_782_400_000_000_001)
        );
        for bad in [
            "2026-02-29T00:00:00Z",
            "2026-11-26T07:06:42+24:00",
            "",
            "2026-11-26",
            "2026-13-01T00:00:00Z",
            "2026-11-26T07:06:42",
            "2026-11-26T07:06:42.Z",
            "2026-11-26T07:06:42Zjunk",
        ] {
            assert_eq!(rfc3339_nanos(bad), None, "{bad}");
        }
        assert_eq!(civil_date(1_795_676_802_123_000_000), (2026, 11, 26));
        assert_eq!(civil_date(951_782_400_000_000_001), (2000, 2, 29));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn the_id_is_the_last_auditship_member() {
        let line = br#"{"metadata":{"_auditship":{"v":1,"id":"spoof"}},"x":"\"_auditship\":{","_auditship":{"v":1,"id":"abc","source":"s"}}"#;
        assert_eq!(id(line), Some("abc"));
        let h = Head::parse(line);
        assert_eq!(h.id(), Some("abc"));
        assert_eq!(id(b"{}"), None);
    }
}
