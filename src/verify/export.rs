//! Exports of shipped records: what a file sink wrote, or what a SIEM gives back, as
//! JSON Lines of records carrying `_auditship` (docs/SINKS.md), in any order, with
//! re-sends.
//!
//! Records are grouped by the stream they were read from (`_auditship.host`,
//! `source`, `stream`); a re-send (the same `_auditship.id` with the same canonical
//! event, however the SIEM wrote it out) is dropped, while two records with one id and
//! different content are both kept and checked; each group is put in `seq` order and its events, with `_auditship` taken
//! out again, are checked as one chain by the same [`Verifier`] as files on disk. For
//! a clean record the daemon spliced `_auditship` into the event's own text, so taking
//! it out gives back the event as written and its hash verifies; a record the daemon
//! re-serialized to replace secrets cannot match its hash and is reported
//! [`REDACTED`], not `hash_mismatch`. Problems the daemon shipped with a record are
//! reported too (those the check here does not find again).
//!
//! Unlike a stream on disk, an export is held in memory: putting records in `seq`
//! order needs all of them. Memory grows with the export (about its size on disk).

use super::checkpoints::Tracker;
use super::{
    FileDigest, Located, Observer, OnProblem, Seen, StreamFile, Summary, open, open_digested,
    read_line, with_path,
};
use crate::audit::{self, Checked, Code, Keys, Verifier, canon, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;

/// A line of an export that is not a shipped record (an object without
/// `_auditship`, or a record without its `id`).
pub const NOT_A_RECORD: &str = "not_a_record";
/// A record shipped with secrets replaced: its content is not what was hashed, so it
/// cannot be checked; its place in the chain still is.
pub const REDACTED: &str = "redacted";
/// A record whose `_auditship.integrity` is missing or malformed, or says not intact
/// without naming a problem: treated as not intact (docs/SINKS.md).
pub const INTEGRITY_UNREADABLE: &str = "integrity_unreadable";

/// The daemon's own records (lifecycle, refused directories): not chained.
const DAEMON_SOURCE: &str = "auditship";
const DAEMON_STREAM: &str = "agent";

/// True when the first non-blank line of `path` is a shipped record.
pub fn is_export(path: &Path) -> io::Result<bool> {
    let mut reader = open(path)?;
    let mut buf = Vec::new();
    let mut long = None;
    loop {
        buf.clear();
        let Ok((read, complete)) = read_line(&mut reader, &mut buf, &mut long) else {
            // A damaged `.gz`: the stream's reader reports it.
            return Ok(false);
        };
        if (read == 0 && !complete) || long.is_some() {
            return Ok(false);
        }
        if !buf.trim_ascii().is_empty() {
            return Ok(std::str::from_utf8(&buf)
                .ok()
                .and_then(|t| json::parse_with_spans(t, &["_auditship"]).ok())
                .is_some_and(|p| {
                    matches!(p.value, json::Value::Object(_)) && !p.spans.as_slice().is_empty()
                }));
        }
    }
}

/// One stream's records in an export.
#[derive(Debug, Default)]
pub struct Group {
    pub host: String,
    pub source: String,
    pub stream: String,
    records: Vec<Record>,
}

#[derive(Debug)]
struct Record {
    id: String,
    seq: Option<u64>,
    /// Where the daemon read it: `_auditship.file`, `line`, `offset`.
    file: String,
    line: u64,
    offset: u64,
    /// Where it is in the export: file index, line.
    at: (usize, u64),
    /// The event with `_auditship` taken out; `None` for a record with no event
    /// (a line shipped as `raw` text, a problem with a file).
    event: Option<String>,
    /// What a re-send must repeat: SHA-256 of the event's canonical form (or of its
    /// text, or of the raw text).
    payload: [u8; 32],
    /// Problems the daemon shipped: (code, detail).
    shipped: Vec<(String, String)>,
    /// Paths the daemon redacted.
    redacted: Vec<String>,
}

impl Record {
    fn located<'a>(&'a self, files: &'a [String], code: &'a str, detail: &'a str) -> Located<'a> {
        Located {
            file: &self.file,
            line: self.line,
            code,
            detail,
            shipped_at: Some((files[self.at.0].as_str(), self.at.1)),
        }
    }
}

/// An export read whole.
#[derive(Debug, Default)]
pub struct Export {
    /// The export's files as given.
    pub files: Vec<String>,
    /// Non-blank lines read.
    pub lines: u64,
    /// Re-sends dropped: records whose id and content an earlier one has.
    pub resent: u64,
    /// The daemon's own records (`_auditship.source` "auditship", stream "agent"),
    /// each id once: counted, not chained.
    pub daemon_records: u64,
    /// What those records say of their host: one per record counted.
    pub daemon: Vec<DaemonRecord>,
    pub groups: Vec<Group>,
    /// Each file's digest, when read with [`read_digested`].
    pub digests: Vec<(std::path::PathBuf, FileDigest)>,
    /// Lines that are not records: (file index, line, code, detail).
    stray: Vec<(usize, u64, &'static str, String)>,
}

/// One of the daemon's own records (lifecycle: start, heartbeat, reload, stop; a
/// refused directory): that its host was up and shipping at `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRecord {
    /// The event's `host`, else `_auditship.host`.
    pub host: String,
    pub timestamp: String,
    /// `metadata.source_event`: `agent_start`, `heartbeat`, `agent_reload`, …
    pub source_event: String,
}

/// Reads the files of an export, groups its records and puts each group in order.
pub fn read(files: &[StreamFile]) -> io::Result<Export> {
    read_files(files, false)
}

/// [`read`], digesting each file's bytes on disk on the way ([`Export::digests`]).
pub fn read_digested(files: &[StreamFile]) -> io::Result<Export> {
    read_files(files, true)
}

fn read_files(files: &[StreamFile], digests: bool) -> io::Result<Export> {
    let mut export = Export {
        files: files.iter().map(|f| f.name.clone()).collect(),
        ..Export::default()
    };
    let mut groups: BTreeMap<(String, String, String), Vec<Record>> = BTreeMap::new();
    let mut ids: HashMap<(String, String, String), HashMap<String, Vec<usize>>> = HashMap::new();
    let mut daemon_ids = HashSet::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    for (index, file) in files.iter().enumerate() {
        let (mut reader, digesting) = if digests {
            let (r, d) = open_digested(&file.path)?;
            (r, Some(d))
        } else {
            (open(&file.path)?, None)
        };
        let mut long = None;
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let (read, complete) = match read_line(&mut reader, &mut buf, &mut long) {
                Ok(r) => r,
                Err(e) if super::is_gzip_damage(&file.path, &e) => {
                    let detail = format!(
                        "does not decompress after line {line_no}: {e}; the rest of the file is not checked"
                    );
                    export
                        .stray
                        .push((index, line_no + 1, super::GZIP_DAMAGED, detail));
                    break;
                }
                Err(e) => return Err(with_path(e, &file.path)),
            };
            if read == 0 && !complete {
                break;
            }
            line_no += 1;
            if buf.trim_ascii().is_empty() && long.is_none() {
                continue;
            }
            export.lines += 1;
            if long.take().is_some() {
                let detail = format!(
                    "a line of {read} bytes, longer than the {} bytes a record is read whole; not checked",
                    super::MAX_LINE_BYTES
                );
                export.stray.push((index, line_no, NOT_A_RECORD, detail));
                continue;
            }
            let (key, record) = match parse_record(&buf, (index, line_no)) {
                Ok(r) => r,
                Err((code, detail)) => {
                    export.stray.push((index, line_no, code, detail));
                    continue;
                }
            };
            if key.1 == DAEMON_SOURCE && key.2 == DAEMON_STREAM {
                if daemon_ids.insert(record.id.clone()) {
                    export.daemon_records += 1;
                    export.daemon.push(daemon_record(&record, &key.0));
                } else {
                    export.resent += 1;
                }
                continue;
            }
            let list = groups.entry(key.clone()).or_default();
            let same = ids
                .entry(key)
                .or_default()
                .entry(record.id.clone())
                .or_default();
            if same.iter().any(|&i| list[i].payload == record.payload) {
                export.resent += 1;
                continue;
            }
            same.push(list.len());
            list.push(record);
        }
        drop(reader);
        if let Some(d) = digesting {
            let digest = d.finish().map_err(|e| with_path(e, &file.path))?;
            export.digests.push((file.path.clone(), digest));
        }
    }
    export.groups = groups
        .into_iter()
        .map(|((host, source, stream), mut records)| {
            records.sort_by(|a, b| {
                (a.seq.is_none(), a.seq, &a.file, a.offset, a.at).cmp(&(
                    b.seq.is_none(),
                    b.seq,
                    &b.file,
                    b.offset,
                    b.at,
                ))
            });
            Group {
                host,
                source,
                stream,
                records,
            }
        })
        .collect();
    Ok(export)
}

type GroupKey = (String, String, String);

/// The host and time of one of the daemon's own records.
fn daemon_record(record: &Record, shipped_host: &str) -> DaemonRecord {
    let event = record
        .event
        .as_deref()
        .and_then(|e| json::parse(e).ok())
        .unwrap_or(json::Value::Null);
    let text = |v: Option<&json::Value<'_>>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let obj = event.as_object();
    let field = |k: &str| text(obj.and_then(|o| json::get(o, k)));
    let metadata = obj
        .and_then(|o| json::get(o, "metadata"))
        .and_then(|m| m.as_object());
    DaemonRecord {
        host: field("host").unwrap_or_else(|| shipped_host.to_owned()),
        timestamp: field("timestamp").unwrap_or_default(),
        source_event: text(metadata.and_then(|m| json::get(m, "source_event"))).unwrap_or_default(),
    }
}

/// One line of an export as a record, or the problem that makes it none.
fn parse_record(
    line: &[u8],
    at: (usize, u64),
) -> Result<(GroupKey, Record), (&'static str, String)> {
    let text = std::str::from_utf8(line).map_err(|_| {
        (
            Code::InvalidUtf8.as_str(),
            "line is not valid UTF-8".to_string(),
        )
    })?;
    let parsed = json::parse_with_spans(text, &["_auditship"])
        .map_err(|e| (Code::InvalidJson.as_str(), e.to_string()))?;
    let json::Value::Object(obj) = &parsed.value else {
        let detail = format!("line is a JSON {}", parsed.value.type_name());
        return Err((Code::NotObject.as_str(), detail));
    };
    let not_a_record = |why: &str| (NOT_A_RECORD, why.to_string());
    let span = *parsed
        .spans
        .as_slice()
        .first()
        .ok_or_else(|| not_a_record("an object without _auditship: not a shipped record"))?;
    let Some(json::Value::Object(meta)) = json::get(obj, "_auditship") else {
        return Err(not_a_record("_auditship is not an object"));
    };
    let text_of = |k: &str| {
        json::get(meta, k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let id = text_of("id");
    if id.is_empty() {
        return Err(not_a_record("_auditship has no id"));
    }
    let event = (obj.len() > 1).then(|| without_member(text, span));
    let mut canonical = Vec::new();
    let payload = match (&event, json::get(meta, "raw").and_then(|v| v.as_str())) {
        // A SIEM may write a record out again its own way: compare what was hashed.
        (Some(e), _) => match canon::write_object(obj, &["_auditship"], &mut canonical) {
            Ok(()) => audit::sha256(&canonical),
            Err(_) => audit::sha256(e.as_bytes()),
        },
        (None, Some(raw)) => audit::sha256(raw.as_bytes()),
        (None, None) => [0; 32],
    };
    let record = Record {
        id,
        seq: json::get(obj, "seq").and_then(as_u64),
        file: text_of("file"),
        line: json::get(meta, "line").and_then(as_u64).unwrap_or(0),
        offset: json::get(meta, "offset").and_then(as_u64).unwrap_or(0),
        at,
        event,
        payload,
        shipped: shipped_problems(meta),
        redacted: match json::get(meta, "redacted") {
            Some(json::Value::Array(paths)) => paths
                .iter()
                .map(|p| p.as_str().unwrap_or("?").to_owned())
                .collect(),
            _ => Vec::new(),
        },
    };
    let key = (text_of("host"), text_of("source"), text_of("stream"));
    Ok((key, record))
}

fn as_u64(v: &json::Value<'_>) -> Option<u64> {
    match v {
        json::Value::Number(json::Number::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// `_auditship.integrity.problems` as (code, detail); a record whose integrity cannot
/// be read, or says not intact without a problem, gets [`INTEGRITY_UNREADABLE`].
fn shipped_problems(meta: &json::Object<'_>) -> Vec<(String, String)> {
    let unreadable = |why: &str| vec![(INTEGRITY_UNREADABLE.to_string(), why.to_string())];
    let Some(json::Value::Object(integrity)) = json::get(meta, "integrity") else {
        return unreadable("_auditship.integrity is missing or not an object");
    };
    let ok = json::get(integrity, "ok");
    let Some(json::Value::Array(list)) = json::get(integrity, "problems") else {
        return unreadable("_auditship.integrity.problems is missing or not a list");
    };
    let mut out = Vec::new();
    for p in list {
        let field = |k: &str| {
            p.as_object()
                .and_then(|o| json::get(o, k))
                .and_then(|v| v.as_str())
        };
        match field("code") {
            Some(code) => out.push((code.to_owned(), field("detail").unwrap_or("").to_owned())),
            None => return unreadable("a shipped problem without a code"),
        }
    }
    let says_ok = matches!(ok, Some(json::Value::Bool(true)));
    if out.is_empty() != says_ok {
        return unreadable("_auditship.integrity.ok does not agree with its problems");
    }
    out
}

/// `text` (a JSON object) without the member at `span` (key to end of value) and the
/// comma that separated it. For the daemon's clean records (`_auditship` spliced in
/// as the last member) this is the event's own text, byte for byte.
fn without_member(text: &str, (start, end): (usize, usize)) -> String {
    let (before, after) = (&text[..start], &text[end..]);
    match after.trim_start().strip_prefix(',') {
        Some(rest) => format!("{before}{}", rest.trim_start()),
        None => {
            let kept = before.trim_end();
            format!("{}{after}", kept.strip_suffix(',').unwrap_or(kept))
        }
    }
}

impl Export {
    /// Reports the lines that are not records, against the export itself; an export
    /// without any line gets [`NO_EVENTS`].
    pub fn verify_lines(&self, label: &str, mut on_problem: impl FnMut(Located<'_>)) -> Summary {
        let mut summary = Summary {
            files: self.files.clone(),
            events: self.lines,
            ..Summary::default()
        };
        for (index, line, code, detail) in &self.stray {
            summary.report(
                Located {
                    file: &self.files[*index],
                    line: *line,
                    code,
                    detail,
                    shipped_at: None,
                },
                &mut on_problem,
            );
        }
        if self.lines == 0 {
            summary.require_events(label, &mut on_problem);
        }
        summary
    }

    /// Checks one group's events as a chain, in `seq` order.
    pub fn verify_group(
        &self,
        group: &Group,
        keys: &Keys,
        on_problem: impl FnMut(Located<'_>),
    ) -> Summary {
        self.verify_group_with(group, keys, None, on_problem)
    }

    /// [`Export::verify_group`], checking signed checkpoints too when `tracker` is
    /// given.
    pub fn verify_group_with(
        &self,
        group: &Group,
        keys: &Keys,
        tracker: Option<Tracker<'_>>,
        on_problem: impl FnMut(Located<'_>),
    ) -> Summary {
        self.verify_group_observed(group, keys, tracker, &mut OnProblem(on_problem))
    }

    /// [`Export::verify_group_with`], telling `observer` what it reads: each
    /// record's event is seen at its original file and line.
    pub fn verify_group_observed(
        &self,
        group: &Group,
        keys: &Keys,
        mut tracker: Option<Tracker<'_>>,
        observer: &mut impl Observer,
    ) -> Summary {
        let mut verifier = Verifier::new(keys.clone());
        let mut summary = Summary::default();
        let mut seen_files = HashSet::new();
        let mut problems = Vec::new();
        let mut codes: Vec<&str> = Vec::new();
        for r in &group.records {
            summary.events += 1;
            if seen_files.insert(r.file.as_str()) {
                summary.files.push(r.file.clone());
            }
            let place = |code, detail| r.located(&self.files, code, detail);
            problems.clear();
            codes.clear();
            let mut extra: Vec<(&'static str, String)> = Vec::new();
            let checked = r
                .event
                .as_ref()
                .map(|event| verifier.check_line(event.as_bytes(), &mut problems));
            if let (Some(Checked::Member { value, head, .. }), Some(t)) =
                (&checked, tracker.as_mut())
            {
                t.member(value, *head, |code, detail| {
                    extra.push((code, detail.to_owned()));
                });
            }
            let mut report = |p: Located<'_>| summary.report(p, &mut |p| observer.problem(p));
            for p in &problems {
                if !r.redacted.is_empty() && p.code == Code::HashMismatch {
                    let detail = format!(
                        "shipped with secrets replaced ({}): the content is not what was hashed and cannot be checked",
                        r.redacted.join(", ")
                    );
                    report(r.located(&self.files, REDACTED, &detail));
                    codes.push(REDACTED);
                } else {
                    report(place(p.code.as_str(), &p.detail));
                    codes.push(p.code.as_str());
                }
            }
            for (code, detail) in &r.shipped {
                if problems.iter().any(|p| p.code.as_str() == code) {
                    continue;
                }
                let detail = format!("shipped with this problem: {detail}");
                report(r.located(&self.files, code, &detail));
                codes.push(code);
            }
            if r.event.is_none() && r.shipped.is_empty() {
                let detail = "a record with neither an event nor a problem";
                report(place(NOT_A_RECORD, detail));
                codes.push(NOT_A_RECORD);
            }
            for (code, detail) in &extra {
                report(place(code, detail));
                codes.push(code);
            }
            let (value, member) = match &checked {
                Some(Checked::Member { value, .. }) => (Some(value), true),
                Some(Checked::Rejected { value }) => (value.as_ref(), false),
                _ => (None, false),
            };
            if let Some(json::Value::Object(event)) = value {
                observer.event(&Seen {
                    file: &r.file,
                    line: r.line,
                    event,
                    member,
                    codes: &codes,
                });
            }
        }
        summary.members = verifier.members();
        summary.first = verifier.first();
        summary.last = verifier.head();
        if let Some(t) = tracker {
            t.finish(summary.first, summary.last, &mut summary, &mut |p| {
                observer.problem(p)
            });
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_the_spliced_member_out_gives_the_event_back() {
        let event = r#"{"a":1,"b":"x"}"#;
        let rec = r#"{"a":1,"b":"x","_auditship":{"id":"i","n":[1,{"c":2}]}}"#;
        let span = json::parse_with_spans(rec, &["_auditship"]).unwrap().spans;
        assert_eq!(without_member(rec, span.as_slice()[0]), event);
        let first = r#"{ "_auditship" : {"id":"i"} , "a":1}"#;
        let span = json::parse_with_spans(first, &["_auditship"])
            .unwrap()
            .spans;
        assert_eq!(without_member(first, span.as_slice()[0]), r#"{ "a":1}"#);
        let only = r#"{"_auditship":{"id":"i"}}"#;
        let span = json::parse_with_spans(only, &["_auditship"]).unwrap().spans;
        assert_eq!(without_member(only, span.as_slice()[0]), "{}");
    }

    #[test]
    fn shipped_integrity_is_read_strictly() {
        let meta = |m: &str| {
            let v = json::parse(m).unwrap();
            shipped_problems(v.as_object().unwrap())
        };
        assert!(meta(r#"{"integrity":{"ok":true,"problems":[]}}"#).is_empty());
        assert_eq!(
            meta(r#"{"integrity":{"ok":false,"problems":[{"code":"seq_gap","detail":"d"}]}}"#),
            [("seq_gap".to_string(), "d".to_string())]
        );
        for bad in [
            r#"{}"#,
            r#"{"integrity":{"ok":false,"problems":[]}}"#,
            r#"{"integrity":{"ok":true,"problems":[{"code":"x"}]}}"#,
            r#"{"integrity":{"ok":true}}"#,
        ] {
            assert_eq!(meta(bad)[0].0, INTEGRITY_UNREADABLE, "{bad}");
        }
    }
}
