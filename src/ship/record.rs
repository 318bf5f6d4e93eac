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

/// Searchers built once: each record is searched several times.
static ID_FINDER: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(ID_MARK));
static STREAM_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br#","stream":""#));

/// The record's `_auditship.id` (64 hex digits), found without parsing the line.
pub fn id(line: &[u8]) -> Option<&str> {
    let at = ID_FINDER.rfind(line)? + ID_MARK.len();
    let rest = &line[at..];
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// The record's `_auditship.stream`, found without parsing the line: `check` writes
/// it right after the id and the source, and a JSON string cannot hold an unescaped
/// `"`, so the first `,"stream":"` after the id mark is that member.
pub fn stream(line: &[u8]) -> Option<Cow<'_, str>> {
    let from = ID_FINDER.rfind(line)?;
    let at = from + STREAM_FINDER.find(&line[from..])? + STREAM_FINDER.needle().len();
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
            .and_then(crate::clock::rfc3339_nanos)
            .or_else(|| {
                self.meta
                    .received_at
                    .as_deref()
                    .and_then(crate::clock::rfc3339_nanos)
            })
    }

    /// The host the event happened on: the event's `host`, else the shipping host.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref().or(self.meta.host.as_deref())
    }

    pub fn id(&self) -> Option<&str> {
        self.meta.id.as_deref()
    }
}

/// The event's time, as [`Head::time_nanos`] reads it (the last top-level
/// `timestamp` string, else `_auditship.received_at`), without building the record's
/// tree: the top-level members are stepped over, and only a `timestamp` written
/// plainly is read here. Any other line is read whole by [`Head::parse`].
pub fn time_nanos(line: &[u8]) -> Option<i128> {
    match top_level_string(line, b"timestamp") {
        Some(Some(t)) => std::str::from_utf8(t)
            .ok()
            .and_then(crate::clock::rfc3339_nanos)
            .or_else(|| Head::parse(line).time_nanos()),
        _ => Head::parse(line).time_nanos(),
    }
}

/// The text of the last top-level member `key` of a JSON object line when it is a
/// string without escapes: `Some(Some(text))`; `Some(None)` when that member is
/// absent or something else. `None` when the walk meets what it does not read
/// (an escaped key, a line that is not an object), for the caller to parse instead.
fn top_level_string<'l>(line: &'l [u8], key: &[u8]) -> Option<Option<&'l [u8]>> {
    let ws = |mut i: usize| {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = line.get(i) {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    let mut found = None;
    if line.get(i) == Some(&b'}') {
        return Some(None);
    }
    loop {
        let (k, escaped, end) = string_at(line, i)?;
        if escaped {
            return None;
        }
        i = ws(end);
        if line.get(i) != Some(&b':') {
            return None;
        }
        i = ws(i + 1);
        let value_end = value_end(line, i)?;
        if k == key {
            found = match string_at(line, i) {
                Some((text, false, _)) => Some(text),
                _ => None,
            };
        }
        i = ws(value_end);
        match line.get(i)? {
            b',' => i = ws(i + 1),
            b'}' => return Some(found),
            _ => return None,
        }
    }
}

/// The string opening at `at`: its raw text, whether it holds escapes, and where it
/// ends (past the closing quote).
fn string_at(line: &[u8], at: usize) -> Option<(&[u8], bool, usize)> {
    if line.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i += memchr::memchr2(b'"', b'\\', line.get(i..)?)?;
        if line[i] == b'"' {
            return Some((&line[at + 1..i], escaped, i + 1));
        }
        escaped = true;
        i += 2;
    }
}

/// Where the value starting at `at` ends.
fn value_end(line: &[u8], at: usize) -> Option<usize> {
    match line.get(at)? {
        b'"' => string_at(line, at).map(|(_, _, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match line.get(i)? {
                    b'"' => {
                        i = string_at(line, i)?.2;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => Some(
            at + line[at..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(line.len() - at),
        ),
    }
}

/// The lines of a request body (each ends in `\n`; the last may not).
pub fn lines(records: &[u8]) -> impl Iterator<Item = &[u8]> {
    records.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_time_is_read_as_the_whole_record_reads_it() {
        let cases: [&[u8]; 9] = [
            br#"{"timestamp":"2026-11-26T10:00:00.123Z","_auditship":{"v":1,"id":"a","received_at":"2026-11-27T00:00:00Z"}}"#,
            br#"{ "metadata" : {"timestamp":"1999-01-01T00:00:00Z","x":[1,{"y":"}"}]} , "timestamp" : "2026-11-26T10:00:00Z" }"#,
            br#"{"timestamp":"2026-11-26T10:00:00Z","timestamp":"2025-01-01T00:00:00Z"}"#,
            br#"{"timestamp":"2026-11-26T10:00:00Z","timestamp":5,"_auditship":{"v":1,"id":"a","received_at":"2026-11-27T00:00:00Z"}}"#,
            br#"{"timestamp":"2026-11-26T10:00:00\u005a","_auditship":{"v":1,"id":"a","received_at":"2026-11-27T00:00:00Z"}}"#,
            br#"{"time\u0073tamp":"2026-11-26T10:00:00Z","_auditship":{"v":1,"id":"a","received_at":"2026-11-27T00:00:00Z"}}"#,
            br#"{"timestamp":"not a time","_auditship":{"v":1,"id":"a","received_at":"2026-11-27T00:00:00Z"}}"#,
            br#"{"a":"\"timestamp\":\"2020-01-01T00:00:00Z\"","_auditship":{"v":1,"id":"a","received_at":"2026-11-27T00:00:00Z"}}"#,
            b"[1,2]",
        ];
        for line in cases {
            assert_eq!(
                time_nanos(line),
                Head::parse(line).time_nanos(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            time_nanos(cases[1]),
            crate::clock::rfc3339_nanos("2026-11-26T10:00:00Z")
        );
    }
}
