//! What protocol sinks read of a shipped record to build their envelopes: the
//! idempotency id, the event's time, host and a few key fields.
//!
//! `check` writes `_auditship` as the record's last member, opening with
//! `{"v":1,"id":"`, so the id is found by searching from the end of the line: any
//! earlier occurrence of the same bytes lies inside the event's own members, and none
//! can follow, because the rest of the line is metadata `check` wrote itself.

use crate::audit::json::{self, Number, Object, Value};
use std::borrow::Cow;

const ID_MARK: &[u8] = br#""_auditship":{"v":1,"id":""#;

/// The record's `_auditship.id` (64 hex digits), found without parsing the line.
pub fn id(line: &[u8]) -> Option<&str> {
    let at = memchr::memmem::rfind(line, ID_MARK)? + ID_MARK.len();
    let rest = &line[at..];
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The record's `_auditship.stream`, found without parsing the line: `check` writes
/// it right after the id and the source, and a JSON string cannot hold an unescaped
/// `"`, so the first `,"stream":"` after the id mark is that member.
pub fn stream(line: &[u8]) -> Option<Cow<'_, str>> {
    const MARK: &[u8] = br#","stream":""#;
    let from = memchr::memmem::rfind(line, ID_MARK)?;
    let at = from + memchr::memmem::find(&line[from..], MARK)? + MARK.len();
    let rest = &line[at..];
    let mut end = 0;
    let mut escaped = false;
    while end < rest.len() {
        match rest[end] {
            b'"' => break,
            b'\\' => {
                escaped = true;
                end += 1;
            }
            _ => {}
        }
        end += 1;
    }
    let raw = rest.get(..end)?;
    if escaped {
        serde_json::from_slice::<String>(&line[at - 1..at + end + 1])
            .ok()
            .map(Cow::Owned)
    } else {
        std::str::from_utf8(raw).ok().map(Cow::Borrowed)
    }
}

/// What the integrity check said of a record: `_auditship.integrity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity<'r> {
    /// True only when the record says `"ok": true` with an empty `problems` list.
    pub ok: bool,
    /// The problem codes listed, in order.
    pub codes: Vec<&'r str>,
}

/// Reads `_auditship.integrity` from a record's `_auditship` object. This is the one
/// place every sink and shape learns whether a record is intact, and it errs one
/// way: anything it cannot read (no `_auditship`, no `integrity`, `ok` not a
/// boolean, `problems` not a list) is not intact, and `ok: true` with problems
/// listed is not intact either.
pub fn integrity<'r>(meta: Option<&'r Object<'_>>) -> Integrity<'r> {
    let integrity = meta
        .and_then(|m| json::get(m, "integrity"))
        .and_then(Value::as_object);
    let problems = match integrity.and_then(|i| json::get(i, "problems")) {
        Some(Value::Array(items)) => Some(items),
        _ => None,
    };
    let codes = problems
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_object().and_then(|p| json::get(p, "code")))
        .filter_map(Value::as_str)
        .collect();
    let said_ok = matches!(
        integrity.and_then(|i| json::get(i, "ok")),
        Some(Value::Bool(true))
    );
    Integrity {
        ok: said_ok && problems.is_some_and(|p| p.is_empty()),
        codes,
    }
}

/// The members of a record sinks use, each read on its own: a member of the wrong
/// type is absent, and never hides the others. Borrowed where the JSON has no escapes.
#[derive(Debug, Default)]
pub struct Head<'a> {
    pub timestamp: Option<Cow<'a, str>>,
    pub host: Option<Cow<'a, str>>,
    pub action: Option<Cow<'a, str>>,
    pub outcome: Option<Cow<'a, str>>,
    pub user_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub resource: Option<Cow<'a, str>>,
    pub seq: Option<u64>,
    /// `metadata.prompt_id`: the prompt the event belongs to (hook and telemetry
    /// events alike).
    pub prompt_id: Option<Cow<'a, str>>,
    /// `metadata.tool_use_id`: the tool call the event belongs to.
    pub tool_use_id: Option<Cow<'a, str>>,
    pub meta: MetaHead<'a>,
}

#[derive(Debug, Default)]
pub struct MetaHead<'a> {
    pub id: Option<Cow<'a, str>>,
    pub host: Option<Cow<'a, str>>,
    pub received_at: Option<Cow<'a, str>>,
    pub source: Option<Cow<'a, str>>,
    /// [`integrity`]`().ok`: false for a record that cannot be read.
    pub integrity_ok: bool,
}

impl<'a> Head<'a> {
    /// Reads the members sinks use with the crate's JSON reader (the one `check`
    /// used: it reads every record `check` writes). A line that is not an object gives
    /// all `None`, and not intact.
    pub fn parse(line: &'a [u8]) -> Head<'a> {
        let parsed = std::str::from_utf8(line)
            .ok()
            .and_then(|t| json::parse_lossy(t).ok());
        let Some(Value::Object(obj)) = parsed.map(|p| p.value) else {
            return Head::default();
        };
        fn s<'a>(o: &Object<'a>, key: &str) -> Option<Cow<'a, str>> {
            match json::get(o, key) {
                Some(Value::String(v)) => Some(v.clone()),
                _ => None,
            }
        }
        let meta = match json::get(&obj, "_auditship") {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        let metadata = match json::get(&obj, "metadata") {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        };
        Head {
            timestamp: s(&obj, "timestamp"),
            host: s(&obj, "host"),
            action: s(&obj, "action"),
            outcome: s(&obj, "outcome"),
            user_id: s(&obj, "user_id"),
            session_id: s(&obj, "session_id"),
            resource: s(&obj, "resource"),
            seq: match json::get(&obj, "seq") {
                Some(Value::Number(Number::Int(n))) => u64::try_from(*n).ok(),
                _ => None,
            },
            prompt_id: metadata.and_then(|m| s(m, "prompt_id")),
            tool_use_id: metadata.and_then(|m| s(m, "tool_use_id")),
            meta: MetaHead {
                id: meta.and_then(|m| s(m, "id")),
                host: meta.and_then(|m| s(m, "host")),
                received_at: meta.and_then(|m| s(m, "received_at")),
                source: meta.and_then(|m| s(m, "source")),
                integrity_ok: integrity(meta).ok,
            },
        }
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

    /// `integrity` of a record whose `_auditship` is `meta` (JSON text).
    fn read(meta: &str) -> (bool, Vec<String>) {
        let v = json::parse(meta).unwrap();
        let i = integrity(v.as_object());
        (i.ok, i.codes.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn integrity_is_ok_only_when_the_record_says_so_plainly() {
        assert_eq!(
            read(r#"{"integrity":{"ok":true,"problems":[]}}"#),
            (true, vec![])
        );
        let (ok, codes) = read(
            r#"{"integrity":{"ok":false,"problems":[{"code":"chain_break"},{"code":"seq_gap"}]}}"#,
        );
        assert!(!ok);
        assert_eq!(codes, ["chain_break", "seq_gap"]);
        for unreadable in [
            r#"{}"#,
            r#"{"integrity":null}"#,
            r#"{"integrity":{}}"#,
            r#"{"integrity":{"ok":true}}"#,
            r#"{"integrity":{"ok":"true","problems":[]}}"#,
            r#"{"integrity":{"ok":1,"problems":[]}}"#,
            r#"{"integrity":{"ok":true,"problems":{}}}"#,
            r#"{"integrity":{"ok":true,"problems":[{"code":"hash_mismatch"}]}}"#,
            r#"{"integrity":{"ok":true,"problems":[null]}}"#,
            r#"{"integrity":{"problems":[]}}"#,
        ] {
            assert!(!read(unreadable).0, "{unreadable}");
        }
        assert!(!integrity(None).ok);
        // Of duplicate members the last counts, as `check` writes `_auditship` last.
        assert!(
            !read(
                r#"{"integrity":{"ok":true,"problems":[]},"integrity":{"ok":false,"problems":[]}}"#
            )
            .0
        );
    }

    #[test]
    fn a_record_sinks_cannot_type_is_still_read_member_by_member() {
        // `seq` a string and a duplicate key: what serde's typed parse refused whole.
        let line = br#"{"action":"file_read","seq":"7","seq":"8","timestamp":"2026-11-26T07:06:42Z","_auditship":{"v":1,"id":"abc","integrity":{"ok":false,"problems":[{"code":"schema","detail":"x"}]}}}"#;
        let h = Head::parse(line);
        assert!(!h.meta.integrity_ok);
        assert_eq!((h.action.as_deref(), h.seq), (Some("file_read"), None));
        assert!(h.time_nanos().is_some());
        assert!(!Head::parse(b"not json").meta.integrity_ok);
        assert!(!Head::parse(br#"{"seq":1}"#).meta.integrity_ok);
        let clean =
            br#"{"seq":3,"_auditship":{"v":1,"id":"abc","integrity":{"ok":true,"problems":[]}}}"#;
        let h = Head::parse(clean);
        assert!(h.meta.integrity_ok);
        assert_eq!(h.seq, Some(3));
        // A lone surrogate escape (which serde refuses) reads too.
        let h = Head::parse(br#"{"resource":"\ud800","_auditship":{"v":1,"id":"abc","integrity":{"ok":true,"problems":[]}}}"#);
        assert!(h.meta.integrity_ok);
    }
}
