//! A raw line → one shipped record: the event's own members plus `_auditship`
//! (identity key, origin, integrity problems, redacted fields), written as one JSON
//! line into the batch being built.
//!
//! No IO. Problems in the data are attached to the record, never used to drop it:
//! a line that is not a JSON object travels as `_auditship.raw` (and `raw_base64`
//! when it is not UTF-8); a line over the source's limit travels truncated with a
//! `line_too_long` problem, its full size and SHA-256, and the problems the verifier
//! found in the whole line (which the reader held or scanned), so the chain goes on.
//!
//! The id: a clean chain member's own hash; any other line's is derived from its
//! bytes, its problem codes and its place (`Id::of_line`).
//!
//! Redaction is the same for every line, ours or a foreign one: the text detectors,
//! and the JSON context (values under secret-named keys at any depth, name/value
//! pairs, argument vectors, numbers; keys compared unescaped). A redacted event is
//! re-serialized in canonical form, with the changed paths in `_auditship.redacted`.
//!
//! Hot path: a clean event (no secret found) is not re-serialized. Its text is copied
//! and `_auditship` is spliced in before the closing brace. A chained line in
//! canonical form but for its members' order, with nothing to redact, takes the fast
//! lane: read into an `audit::tape` instead of a value, screened by `redact::lane`,
//! checked by `Verifier::check_tape`; it gets the record the general path would give
//! it (`lane_tests.rs`), and every other line takes the general path.

#[cfg(test)]
mod lane_tests;

use crate::audit::tape::Tape;
use crate::audit::{self, Checked, Code, Problem, Scanned, Verifier, canon, json};
use crate::redact::{LaneScratch, Redactor, Scope};
use std::borrow::Cow;

/// The fast lane's buffers, kept by the thread between lines.
struct Lane {
    tape: Tape,
    scratch: LaneScratch,
}

thread_local! {
    static LANE: std::cell::RefCell<Lane> = const {
        std::cell::RefCell::new(Lane {
            tape: Tape::new(),
            scratch: LaneScratch::new(),
        })
    };
}

/// Where a line came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub source: &'a str,
    pub stream: &'a str,
    pub file: &'a str,
    pub line: u64,
    pub offset: u64,
    pub received_at: &'a str,
}

/// A line whose full text was not kept.
#[derive(Debug, Clone, Copy)]
pub struct Truncated<'a> {
    pub full_bytes: u64,
    pub sha256_hex: &'a str,
    /// The whole line, when the reader held it.
    pub whole: Option<&'a [u8]>,
    /// Otherwise the scan of the whole line made while it streamed past.
    pub scanned: Option<&'a Scanned>,
}

/// Per-line result, for counting.
#[derive(Debug, Default, Clone)]
pub struct LineStats {
    pub blank: bool,
    /// Codes of the problems attached.
    pub problems: Vec<&'static str>,
    pub redacted: bool,
}

/// Builds shipped records. One per daemon; cheap to share by reference.
pub struct Encoder {
    host: String,
    agent_version: &'static str,
    /// `[agent.fields]` as a JSON object text, or empty.
    fields: String,
    redactor: Redactor,
}

impl Encoder {
    pub fn new(
        host: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
        redactor: Redactor,
    ) -> Self {
        let fields = if fields.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(fields.clone()).to_string()
        };
        Encoder {
            host: host.to_owned(),
            agent_version: env!("CARGO_PKG_VERSION"),
            fields,
            redactor,
        }
    }

    /// Appends the shipped record of `raw` (one line without `\n`) to `out`.
    /// `verifier` is the stream's chain state for `auditship-v1` sources, `None` for
    /// plain JSON sources.
    pub fn encode_line(
        &self,
        verifier: Option<&mut Verifier>,
        raw: &[u8],
        truncated: Option<Truncated<'_>>,
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) -> LineStats {
        if let Some(t) = truncated {
            return self.encode_truncated(verifier, raw, t, at, out);
        }
        let mut verifier = verifier;
        if let Some(v) = verifier.as_deref_mut()
            && let Some(stats) = self.encode_in_lane(v, raw, at, out)
        {
            return stats;
        }
        self.encode_general(verifier, raw, at, out)
    }

    /// The fast lane: a chained line in canonical form but for its members' order,
    /// with nothing to redact (most lines of most producers), checked and spliced
    /// without building its value. `None`, with nothing written and the stream's
    /// state unchanged, for every other line: [`Encoder::encode_general`] takes it
    /// and gives it the same record the lane would have (`lane_tests.rs`).
    fn encode_in_lane(
        &self,
        verifier: &mut Verifier,
        raw: &[u8],
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) -> Option<LineStats> {
        let line = std::str::from_utf8(raw).ok()?;
        // Nothing the lane calls comes back here: the buffers are never borrowed twice.
        LANE.with_borrow_mut(|lane| self.lane_line(lane, verifier, line, at, out))
    }

    fn lane_line(
        &self,
        lane: &mut Lane,
        verifier: &mut Verifier,
        line: &str,
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) -> Option<LineStats> {
        if !lane.tape.read(line) {
            return None;
        }
        let nodes = lane.tape.nodes();
        let ours = lane.tape.members(0).any(|(k, _)| {
            let key = nodes[k];
            line.get(key.start as usize..key.end as usize) == Some("\"_auditship\"")
        });
        if ours
            || !self
                .redactor
                .lane_clean(line, &lane.tape, &mut lane.scratch)
        {
            return None;
        }
        let mut problems = Vec::new();
        let (head, hash_ok) = verifier.check_tape(line, &mut lane.tape, &mut problems)?;
        let codes: Vec<&'static str> = problems.iter().map(|p| p.code.as_str()).collect();
        let id = if hash_ok && problems.is_empty() {
            Id(head.hash)
        } else {
            Id::of_line(
                &audit::hex_lower(&audit::sha256(line.as_bytes())),
                &codes,
                at,
            )
        };
        let rec = Meta {
            id: id.as_str(),
            problems: &problems,
            extra_problem: None,
            redacted: &[],
        };
        // A schema-valid event has members.
        splice(line, false, out, |out| self.write_meta(&rec, at, out));
        Some(LineStats {
            blank: false,
            problems: codes,
            redacted: false,
        })
    }

    /// Every line the lane does not take: parsed into a value, checked, redacted.
    fn encode_general(
        &self,
        verifier: Option<&mut Verifier>,
        raw: &[u8],
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) -> LineStats {
        let mut stats = LineStats::default();
        let mut problems: Vec<Problem> = Vec::new();
        let checked = match verifier {
            Some(v) => v.check_line(raw, &mut problems),
            None => plain_json(raw, &mut problems),
        };
        let (value, hash, text) = match checked {
            Checked::Blank => {
                stats.blank = true;
                return stats;
            }
            Checked::Member {
                value,
                head,
                hash_ok: true,
                text,
            } => (Some(value), Some(head.hash), text),
            Checked::Member { value, text, .. } => (Some(value), None, text),
            Checked::Rejected { value } => (value, None, None),
        };
        stats.problems = problems.iter().map(|p| p.code.as_str()).collect();
        let id = match hash {
            Some(hash) if problems.is_empty() => Id(hash),
            _ => Id::of_line(&audit::hex_lower(&audit::sha256(raw)), &stats.problems, at),
        };
        let id = id.as_str();
        match value {
            Some(json::Value::Object(obj)) if !obj.iter().any(|(k, _)| k == "_auditship") => {
                // UTF-8 was checked by the parse that produced an object.
                let text = text
                    .or_else(|| std::str::from_utf8(raw).ok())
                    .unwrap_or_default()
                    .trim_end();
                let empty = obj.is_empty();
                let mut value = json::Value::Object(obj);
                let paths = self.redact(text, &mut value);
                if paths.is_empty() {
                    let rec = Meta {
                        id,
                        problems: &problems,
                        extra_problem: None,
                        redacted: &[],
                    };
                    splice(text, empty, out, |out| self.write_meta(&rec, at, out));
                } else {
                    stats.redacted = true;
                    let rec = Meta {
                        id,
                        problems: &problems,
                        extra_problem: None,
                        redacted: &paths,
                    };
                    self.write_redacted(text, &value, &rec, at, out);
                }
            }
            _ => {
                let rec = Meta {
                    id,
                    problems: &problems,
                    extra_problem: None,
                    redacted: &[],
                };
                self.write_raw_record(raw, None, &rec, at, out);
            }
        }
        stats
    }

    /// A line longer than the source's limit: checked whole (or as scanned while it
    /// streamed past), so the chain goes on after it, and shipped cut, as raw text,
    /// with the verifier's problems and `line_too_long`, its full size and SHA-256.
    fn encode_truncated(
        &self,
        verifier: Option<&mut Verifier>,
        raw: &[u8],
        t: Truncated<'_>,
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) -> LineStats {
        let mut problems: Vec<Problem> = Vec::new();
        if let Some(v) = verifier {
            match (t.whole, t.scanned) {
                (Some(whole), _) => {
                    v.check_line(whole, &mut problems);
                }
                (None, Some(scanned)) => {
                    v.check_scanned(scanned, &mut problems);
                }
                (None, None) => problems.push(Problem::new(
                    Code::InvalidJson,
                    "line was neither held nor scanned whole; not checked",
                )),
            }
        }
        let mut stats = LineStats {
            problems: problems.iter().map(|p| p.code.as_str()).collect(),
            ..LineStats::default()
        };
        stats.problems.push(LINE_TOO_LONG);
        let id = Id::of_line(t.sha256_hex.as_bytes(), &stats.problems, at);
        let rec = Meta {
            id: id.as_str(),
            problems: &problems,
            extra_problem: Some((
                LINE_TOO_LONG,
                format!(
                    "line of {} bytes exceeds the source's max_line_bytes",
                    t.full_bytes
                ),
            )),
            redacted: &[],
        };
        self.write_raw_record(raw, Some(t), &rec, at, out);
        stats
    }

    /// A synthetic record for something that happened to a file rather than in a line
    /// (e.g. `file_truncated`): `_auditship` only, with the problem.
    pub fn encode_file_problem(
        &self,
        code: &'static str,
        detail: &str,
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) {
        let id = audit::sha256_hex(
            format!(
                "{}\0{}\0{}\0{}\0{}",
                at.source, at.stream, at.file, code, at.received_at
            )
            .as_bytes(),
        );
        let rec = Meta {
            id: &id,
            problems: &[],
            extra_problem: Some((code, detail.to_owned())),
            redacted: &[],
        };
        out.extend_from_slice(b"{\"_auditship\":");
        self.write_meta(&rec, at, out);
        out.extend_from_slice(b"}\n");
    }

    /// Redacts the parsed event in place and returns the paths it changed (none for
    /// a clean event). Key context counts for every line, ours or not: a value under
    /// a secret-named key, in a name/value pair or after a credential flag goes even
    /// when its text alone looks harmless, and keys are compared unescaped
    /// (`"pass\u0077ord"`). The text detectors run on each string only when a scan of
    /// the whole line found something, which keeps clean lines cheap.
    fn redact(&self, text: &str, value: &mut json::Value<'_>) -> Vec<String> {
        let scope = if self.text_is_clean(text, value) {
            Scope::Context
        } else {
            Scope::All
        };
        let mut paths = Vec::new();
        self.redactor.redact_value(value, "", scope, &mut paths);
        paths
    }

    /// True when no string (value or key) of the event holds a secret by its text.
    /// Unescaped strings appear verbatim in the line, so one scan of the text covers
    /// them; strings that had escapes are scanned decoded as well.
    fn text_is_clean(&self, text: &str, value: &json::Value<'_>) -> bool {
        if matches!(self.redactor.redact_str(text), Cow::Owned(_)) {
            return false;
        }
        if !text.contains('\\') {
            return true;
        }
        fn escaped_clean(r: &Redactor, v: &json::Value<'_>) -> bool {
            match v {
                json::Value::String(Cow::Owned(s)) => matches!(r.redact_str(s), Cow::Borrowed(_)),
                json::Value::Array(items) => items.iter().all(|i| escaped_clean(r, i)),
                json::Value::Object(members) => members.iter().all(|(k, v)| {
                    let key_clean = match k {
                        Cow::Owned(k) => matches!(r.redact_str(k), Cow::Borrowed(_)),
                        Cow::Borrowed(_) => true,
                    };
                    key_clean && escaped_clean(r, v)
                }),
                _ => true,
            }
        }
        escaped_clean(&self.redactor, value)
    }

    /// The rare path: a secret was found and `value` holds the redacted event.
    /// Written in canonical form; an event the canonical form cannot hold (a
    /// duplicate key, an integer beyond 2^53) goes through serde instead, redacted the
    /// same way; text that serde refuses too ships as raw text, redacted.
    fn write_redacted(
        &self,
        text: &str,
        value: &json::Value<'_>,
        rec: &Meta<'_>,
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) {
        let mut body = Vec::with_capacity(text.len());
        if canon::write_value(value, &mut body).is_ok() {
            let body = String::from_utf8(body).unwrap_or_default();
            let empty = value.as_object().is_none_or(|o| o.is_empty());
            splice(&body, empty, out, |out| self.write_meta(rec, at, out));
            return;
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(mut v) => {
                let mut redacted = Vec::new();
                self.redactor.redact_json(&mut v, "", &mut redacted);
                let rec = Meta {
                    id: rec.id,
                    problems: rec.problems,
                    extra_problem: None,
                    redacted: &redacted,
                };
                let body = v.to_string();
                let empty = v.as_object().is_none_or(|o| o.is_empty());
                splice(&body, empty, out, |out| self.write_meta(&rec, at, out));
            }
            Err(_) => {
                let rec = Meta {
                    id: rec.id,
                    problems: rec.problems,
                    extra_problem: None,
                    redacted: &[],
                };
                self.write_raw_record(text.as_bytes(), None, &rec, at, out);
            }
        }
    }

    /// `{"_auditship": {..., "raw": ..., "raw_base64"?: ...}}`
    fn write_raw_record(
        &self,
        raw: &[u8],
        truncated: Option<Truncated<'_>>,
        rec: &Meta<'_>,
        at: &Origin<'_>,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(b"{\"_auditship\":");
        self.write_meta(rec, at, out);
        out.pop(); // reopen `_auditship`
        let text = String::from_utf8_lossy(raw);
        let redacted = self.redactor.redact_str(&text);
        out.extend_from_slice(b",\"raw\":");
        canon::write_string(&redacted, out);
        if matches!(redacted, Cow::Owned(_)) {
            out.extend_from_slice(b",\"raw_redacted\":true");
        }
        if std::str::from_utf8(raw).is_err() && matches!(redacted, Cow::Borrowed(_)) {
            out.extend_from_slice(b",\"raw_base64\":\"");
            base64_into(raw, out);
            out.push(b'"');
        }
        if let Some(t) = truncated {
            out.extend_from_slice(
                format!(",\"size\":{},\"sha256\":\"{}\"", t.full_bytes, t.sha256_hex).as_bytes(),
            );
        }
        out.extend_from_slice(b"}}\n");
    }

    fn write_meta(&self, rec: &Meta<'_>, at: &Origin<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"v\":1,\"id\":\"");
        out.extend_from_slice(rec.id.as_bytes());
        out.extend_from_slice(b"\",\"source\":");
        canon::write_string(at.source, out);
        out.extend_from_slice(b",\"stream\":");
        canon::write_string(at.stream, out);
        out.extend_from_slice(b",\"file\":");
        canon::write_string(at.file, out);
        out.extend_from_slice(b",\"line\":");
        push_u64(at.line, out);
        out.extend_from_slice(b",\"offset\":");
        push_u64(at.offset, out);
        out.extend_from_slice(b",\"host\":");
        canon::write_string(&self.host, out);
        out.extend_from_slice(b",\"agent_version\":\"");
        out.extend_from_slice(self.agent_version.as_bytes());
        out.extend_from_slice(b"\",\"received_at\":\"");
        out.extend_from_slice(at.received_at.as_bytes());
        let ok = rec.problems.is_empty() && rec.extra_problem.is_none();
        out.extend_from_slice(if ok {
            b"\",\"integrity\":{\"ok\":true,\"problems\":["
        } else {
            b"\",\"integrity\":{\"ok\":false,\"problems\":["
        });
        let mut first = true;
        let mut problem = |code: &str, detail: &str, out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(b"{\"code\":\"");
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(b"\",\"detail\":");
            canon::write_string(&short(detail), out);
            out.push(b'}');
        };
        for p in rec.problems {
            problem(p.code.as_str(), &p.detail, out);
        }
        if let Some((code, detail)) = &rec.extra_problem {
            problem(code, detail, out);
        }
        out.extend_from_slice(b"]},\"redacted\":[");
        for (i, p) in rec.redacted.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            canon::write_string(p, out);
        }
        out.push(b']');
        if !self.fields.is_empty() {
            out.extend_from_slice(b",\"fields\":");
            out.extend_from_slice(self.fields.as_bytes());
        }
        out.push(b'}');
    }
}

/// `n` in decimal.
fn push_u64(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

struct Meta<'a> {
    id: &'a str,
    problems: &'a [Problem],
    extra_problem: Option<(&'static str, String)>,
    redacted: &'a [String],
}

/// Longest problem detail shipped: a detail may quote a value of the line (an unknown
/// `action`, a `kid`), and the line may be megabytes long.
const MAX_DETAIL: usize = 1024;

/// `detail`, cut to [`MAX_DETAIL`] bytes at a character boundary, ending in `…` when cut.
fn short(detail: &str) -> Cow<'_, str> {
    if detail.len() <= MAX_DETAIL {
        return Cow::Borrowed(detail);
    }
    let mut end = MAX_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &detail[..end]))
}

/// The problem of a line cut to the source's `max_line_bytes`.
const LINE_TOO_LONG: &str = "line_too_long";

/// A record's `_auditship.id`, 64 lowercase hex digits.
struct Id([u8; 64]);

impl Id {
    /// The id of a line that is not a clean chain member (it has problems, or its
    /// source has no chain): the SHA-256 of its raw bytes' SHA-256, its problem codes
    /// and its place (stream, file, offset). The same line read again at the same
    /// place (a resend after a crash) gets the same id; a copy of it elsewhere, or
    /// the clean original a replayed copy repeats, gets another, so no receiver that
    /// deduplicates on ids can drop the evidence.
    fn of_line(raw_sha256_hex: &[u8], codes: &[&str], at: &Origin<'_>) -> Id {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"auditship-line-id-v1\0");
        h.update(raw_sha256_hex);
        h.update(b"\0");
        h.update(codes.join(",").as_bytes());
        h.update(b"\0");
        h.update(at.stream.as_bytes());
        h.update(b"\0");
        h.update(at.file.as_bytes());
        h.update(b"\0");
        h.update(at.offset.to_string().as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        Id(audit::hex_lower(&digest))
    }

    fn as_str(&self) -> &str {
        // Built from lowercase hex only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Writes `text` (a JSON object) with `"_auditship": <meta>` added as its last member.
fn splice(text: &str, empty: bool, out: &mut Vec<u8>, meta: impl FnOnce(&mut Vec<u8>)) {
    let body = text.trim_end().strip_suffix('}').unwrap_or(text);
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(if empty {
        b"\"_auditship\":" as &[u8]
    } else {
        b",\"_auditship\":"
    });
    meta(out);
    out.extend_from_slice(b"}\n");
}

/// Classifies a line of a plain JSON source: no chain, no schema.
fn plain_json<'a>(raw: &'a [u8], problems: &mut Vec<Problem>) -> Checked<'a> {
    match crate::audit::chain::read_object(raw, problems) {
        Ok(parsed) => Checked::Rejected {
            value: Some(parsed.value),
        },
        Err(checked) => checked,
    }
}

fn base64_into(data: &[u8], out: &mut Vec<u8>) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Keys;
    use serde_json::Value;

    fn at() -> Origin<'static> {
        Origin {
            source: "claude",
            stream: "/home/dev/.claude/audit",
            file: "audit-2026-11-26.jsonl",
            line: 7,
            offset: 1234,
            received_at: "2026-11-26T10:00:00.000Z",
        }
    }

    fn encode(v: Option<&mut Verifier>, raw: &[u8]) -> (Value, LineStats) {
        let enc = Encoder::new("host-1", &serde_json::Map::new(), Redactor::builtin());
        let mut out = Vec::new();
        let stats = enc.encode_line(v, raw, None, &at(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        (serde_json::from_slice(&out).unwrap(), stats)
    }

    fn sealed(seq: u64, prev: &str, resource: &str) -> audit::Sealed {
        let e = format!(
            r#"{{"v":1,"id":"i{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42Z","user_id":"u","session_id":"s","host":"h","action":"file_read","resource":"{resource}","outcome":"success","prev_hash":"{prev}"}}"#
        );
        audit::seal(&e, None).unwrap()
    }

    #[test]
    fn a_clean_event_keeps_its_members_and_gets_its_hash_as_id() {
        let s = sealed(0, audit::ZERO_HASH, "/r");
        let mut v = Verifier::new(Keys::new());
        let (rec, stats) = encode(Some(&mut v), s.line.trim_ascii_end());
        assert!(stats.problems.is_empty());
        assert_eq!(rec["resource"], "/r");
        let m = &rec["_auditship"];
        assert_eq!(m["id"], s.hash.as_str());
        assert_eq!(m["integrity"]["ok"], true);
        assert_eq!(
            (m["line"].as_u64(), m["offset"].as_u64()),
            (Some(7), Some(1234))
        );
        assert_eq!(m["host"], "host-1");
        assert_eq!(m["redacted"], serde_json::json!([]));
    }

    #[test]
    fn problems_are_attached_and_the_id_is_the_lines_own() {
        let s = sealed(0, audit::ZERO_HASH, "/r");
        let tampered = String::from_utf8(s.line.clone())
            .unwrap()
            .replace("/r", "/x");
        let mut v = Verifier::new(Keys::new());
        let (rec, stats) = encode(Some(&mut v), tampered.trim_end().as_bytes());
        assert_eq!(stats.problems, ["hash_mismatch"]);
        assert_eq!(rec["_auditship"]["integrity"]["ok"], false);
        assert_eq!(
            rec["_auditship"]["integrity"]["problems"][0]["code"],
            "hash_mismatch"
        );
        // As docs/SINKS.md gives it, for anyone to recompute.
        let a = at();
        let id = audit::sha256_hex(
            format!(
                "auditship-line-id-v1\0{}\0hash_mismatch\0{}\0{}\0{}",
                audit::sha256_hex(tampered.trim_end().as_bytes()),
                a.stream,
                a.file,
                a.offset
            )
            .as_bytes(),
        );
        assert_eq!(rec["_auditship"]["id"], id.as_str());
        assert_ne!(rec["_auditship"]["id"], s.hash.as_str());
    }

    #[test]
    fn non_objects_travel_raw() {
        let (rec, stats) = encode(None, b"[1,2]");
        assert_eq!(stats.problems, ["not_object"]);
        assert_eq!(rec["_auditship"]["raw"], "[1,2]");
        let (rec, _) = encode(None, b"\xff\xfe{");
        assert_eq!(rec["_auditship"]["raw_base64"], "//57");
        assert_eq!(
            rec["_auditship"]["integrity"]["problems"][0]["code"],
            "invalid_utf8"
        );
        let (rec, _) = encode(None, b"{not json");
        assert_eq!(rec["_auditship"]["raw"], "{not json");
        let enc = Encoder::new("h", &serde_json::Map::new(), Redactor::builtin());
        let mut out = Vec::new();
        assert!(enc.encode_line(None, b"  \r", None, &at(), &mut out).blank);
        assert!(out.is_empty(), "blank lines ship nothing");
    }

    #[test]
    fn secrets_are_redacted_in_shipped_copies_with_their_paths() {
        let line = br#"{"cmd":"curl https://deploy:hunter2pass@git.example.com","nested":{"k":"AKIAIOSFODNN7EXAMPLE"},"ok":"fine"}"#;
        let (rec, stats) = encode(None, line);
        assert!(stats.redacted);
        let text = rec.to_string();
        assert!(
            !text.contains("hunter2pass") && !text.contains("AKIAIOSFODNN7EXAMPLE"),
            "{text}"
        );
        let paths = rec["_auditship"]["redacted"].as_array().unwrap();
        assert!(
            paths.contains(&Value::from("cmd")) && paths.contains(&Value::from("nested.k")),
            "{paths:?}"
        );
        // A secret hidden behind escapes is found too.
        let (rec, _) = encode(None, br#"{"u":"https:\/\/deploy:hunter2pass@host\/x"}"#);
        assert!(!rec.to_string().contains("hunter2pass"), "{rec}");
    }

    #[test]
    fn foreign_lines_get_key_context_and_a_canonical_body() {
        // Nothing here is a secret by its text alone: only the keys say so.
        let line = br#"{"zeta":1,"cfg":{"password":{"value":"plain words"}},"env":[{"name":"DB_PASSWORD","value":"xyz"}],"pass\u0077ord":"abc def","n":{"token":123456},"argv":["sshpass","-p","qwe","ssh"]}"#;
        let (rec, stats) = encode(None, line);
        assert!(stats.redacted);
        let text = rec.to_string();
        for secret in ["plain words", "xyz", "abc def", "123456", "qwe"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let mut paths: Vec<&str> = rec["_auditship"]["redacted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "argv[2]",
                "cfg.password.value",
                "env[0].value",
                "n.token",
                "password"
            ]
        );
        assert_eq!(rec["zeta"], 1);
        assert_eq!(rec["env"][0]["name"], "DB_PASSWORD");

        // Written canonically: keys in order, no white space, `_auditship` last.
        let enc = Encoder::new("h", &serde_json::Map::new(), Redactor::builtin());
        let mut out = Vec::new();
        enc.encode_line(
            None,
            br#"{ "b" : 1, "a": {"secret": 7} }"#,
            None,
            &at(),
            &mut out,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with(
                r#"{"a":{"secret":"[REDACTED:secret_assignment]"},"b":1,"_auditship":{"#
            ),
            "{out}"
        );
    }

    #[test]
    fn keys_holding_secrets_are_renamed_in_shipped_copies() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        // Verbatim, and behind escapes (the line's text alone does not show it).
        let plain = format!(r#"{{"a":{{"Bearer {jwt}":1}},"z":2}}"#);
        let escaped = format!(r#"{{"a":{{"Bearer {jwt}":1}},"z":2}}"#);
        for line in [plain, escaped] {
            let (rec, stats) = encode(None, line.as_bytes());
            assert!(stats.redacted, "{line}");
            let text = rec.to_string();
            assert!(!text.contains(jwt), "{text}");
            assert_eq!(rec["a"].as_object().unwrap().len(), 1, "{text}");
            assert_eq!(rec["z"], 2);
            let paths = rec["_auditship"]["redacted"].as_array().unwrap();
            assert!(
                paths[0]
                    .as_str()
                    .unwrap()
                    .starts_with("a.Bearer [REDACTED:"),
                "{paths:?}"
            );
        }
    }

    #[test]
    fn lines_the_canonical_form_cannot_hold_are_still_redacted() {
        // A duplicate key: serde takes over, with the same key context.
        let (rec, stats) = encode(None, br#"{"a":1,"a":2,"password":{"v":"dup secret"}}"#);
        assert!(stats.redacted);
        assert!(!rec.to_string().contains("dup secret"), "{rec}");
        assert_eq!(rec["_auditship"]["redacted"][0], "password.v");
    }

    #[test]
    fn our_own_clean_events_ship_untouched() {
        let s = sealed(
            0,
            audit::ZERO_HASH,
            "git show 3f2a9c1e0b7d4a6e8f9c0d1b2a3e4f5a6b7c8d9e",
        );
        let mut v = Verifier::new(Keys::new());
        let (rec, stats) = encode(Some(&mut v), s.line.trim_ascii_end());
        assert!(!stats.redacted);
        assert_eq!(rec["hash"], s.hash.as_str());
        assert_eq!(rec["_auditship"]["id"], s.hash.as_str());
    }

    #[test]
    fn empty_objects_and_existing_auditship_members_stay_valid_json() {
        let (rec, _) = encode(None, b"{}");
        assert!(rec["_auditship"].is_object());
        let (rec, _) = encode(None, br#"{"_auditship":"spoofed"}"#);
        assert_eq!(rec["_auditship"]["raw"], r#"{"_auditship":"spoofed"}"#);
    }

    #[test]
    fn truncated_lines_carry_size_and_digest() {
        let enc = Encoder::new("h", &serde_json::Map::new(), Redactor::builtin());
        let mut out = Vec::new();
        let t = Truncated {
            full_bytes: 99_999,
            sha256_hex: "ab",
            whole: None,
            scanned: None,
        };
        let stats = enc.encode_line(None, b"{\"partial", Some(t), &at(), &mut out);
        assert_eq!(stats.problems, ["line_too_long"]);
        let rec: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(rec["_auditship"]["size"], 99_999);
        assert_eq!(
            rec["_auditship"]["integrity"]["problems"][0]["code"],
            "line_too_long"
        );
    }

    /// Encodes the truncated line `whole` (cut to 100 bytes) of a chained stream.
    fn encode_cut(v: &mut Verifier, whole: &[u8], scanned: bool) -> (Value, LineStats) {
        let enc = Encoder::new("h", &serde_json::Map::new(), Redactor::builtin());
        let sha = audit::sha256_hex(whole);
        let scan = scanned.then(|| {
            let mut l = audit::LongLine::new();
            l.feed(whole);
            l.finish()
        });
        let t = Truncated {
            full_bytes: whole.len() as u64,
            sha256_hex: &sha,
            whole: (!scanned).then_some(whole),
            scanned: scan.as_ref(),
        };
        let mut out = Vec::new();
        let stats = enc.encode_line(Some(v), &whole[..100], Some(t), &at(), &mut out);
        (serde_json::from_slice(&out).unwrap(), stats)
    }

    #[test]
    fn the_chain_goes_on_after_a_cut_line() {
        for scanned in [false, true] {
            let big = "x".repeat(5000);
            let first = sealed(0, audit::ZERO_HASH, &big);
            let next = sealed(1, &first.hash, "/r");
            let mut v = Verifier::new(Keys::new());
            let (rec, stats) = encode_cut(&mut v, first.line.trim_ascii_end(), scanned);
            assert_eq!(stats.problems, ["line_too_long"]);
            assert_eq!(
                rec["_auditship"]["sha256"],
                audit::sha256_hex(first.line.trim_ascii_end()).as_str()
            );
            assert_eq!(rec["_auditship"]["raw"].as_str().map(str::len), Some(100));
            let (rec, stats) = encode(Some(&mut v), next.line.trim_ascii_end());
            assert!(
                stats.problems.is_empty(),
                "{scanned}: {:?}",
                rec["_auditship"]
            );
            assert_eq!(rec["_auditship"]["id"], next.hash.as_str());
            // A cut line that was tampered with says so besides being cut.
            let tampered = String::from_utf8(first.line.clone())
                .unwrap()
                .replacen("xxx", "xyx", 1);
            let mut v = Verifier::new(Keys::new());
            let (_, stats) = encode_cut(&mut v, tampered.trim_end().as_bytes(), scanned);
            assert_eq!(stats.problems, ["hash_mismatch", "line_too_long"]);
        }
    }

    #[test]
    fn long_details_are_cut() {
        let action = "é".repeat(5000);
        let s = sealed(0, audit::ZERO_HASH, "/r");
        let line = String::from_utf8(s.line)
            .unwrap()
            .replacen("file_read", &action, 1);
        let mut v = Verifier::new(Keys::new());
        let (rec, stats) = encode(Some(&mut v), line.trim_end().as_bytes());
        assert_eq!(stats.problems, ["schema"]);
        let detail = rec["_auditship"]["integrity"]["problems"][0]["detail"]
            .as_str()
            .unwrap();
        assert!(detail.starts_with("unknown action \"éé"), "{detail}");
        assert!(
            detail.len() <= MAX_DETAIL + 3 && detail.ends_with('…'),
            "{detail}"
        );
    }

    #[test]
    fn a_replayed_line_gets_an_id_of_its_own_stable_at_its_place() {
        let a = sealed(0, audit::ZERO_HASH, "/a");
        let b = sealed(1, &a.hash, "/b");
        let enc = Encoder::new("h", &serde_json::Map::new(), Redactor::builtin());
        let id_at = |v: &mut Verifier, line: &[u8], offset: u64| {
            let mut out = Vec::new();
            let origin = Origin { offset, ..at() };
            enc.encode_line(Some(v), line.trim_ascii_end(), None, &origin, &mut out);
            let rec: Value = serde_json::from_slice(&out).unwrap();
            rec["_auditship"]["id"].as_str().unwrap().to_string()
        };
        let mut v = Verifier::new(Keys::new());
        assert_eq!(id_at(&mut v, &a.line, 0), a.hash);
        assert_eq!(id_at(&mut v, &b.line, 300), b.hash);
        let after_b = v.head();
        let replay = id_at(&mut v, &a.line, 600);
        assert_ne!(replay, a.hash, "a replayed copy is not its original");
        // Read again at the same place after the same head: a resend after a crash.
        let mut again = Verifier::resume(Keys::new(), after_b);
        assert_eq!(id_at(&mut again, &a.line, 600), replay);
        // The same bytes with the same problems elsewhere are another record.
        let mut elsewhere = Verifier::resume(Keys::new(), after_b);
        assert_ne!(id_at(&mut elsewhere, &a.line, 601), replay);
    }

    #[test]
    fn base64() {
        let mut o = Vec::new();
        base64_into(b"Man", &mut o);
        base64_into(b"Ma", &mut o);
        base64_into(b"M", &mut o);
        assert_eq!(o, b"TWFuTWE=TQ==");
    }
}
