//! Time as auditship writes and reads it: now (milliseconds since the epoch, and
//! `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC), civil dates of the proleptic Gregorian calendar,
//! and RFC 3339 times read back to nanoseconds.
//!
//! The one place that reads the clock for a timestamp; everything else here is pure.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ` and `YYYY-MM-DD`, in UTC.
pub fn utc_now() -> (String, String) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(d.as_secs() as i64, d.subsec_millis())
}

/// Formats seconds since the epoch (UTC) with milliseconds.
pub fn format_utc(secs: i64, millis: u32) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let ts = format!(
        "{date}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (ts, date)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
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
    civil_from_days((nanos.div_euclid(1_000_000_000) as i64).div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0, 0).0, "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1_795_000_000, 7).0, "2026-11-18T11:06:40.007Z");
        assert_eq!(format_utc(951_782_400, 0).1, "2000-02-29");
        assert_eq!(format_utc(-1, 999).0, "1969-12-31T23:59:59.999Z");
    }

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
}
