//! The fallback file: where `record` keeps a hook call it could not append to the
//! chain, so that the failure and what it was about reach the SIEM anyway (the
//! daemon ships this file as a plain `json` source).
//!
//! A line holds exactly what the event would have held, never the raw payload: the
//! mapped event (minimised and redacted like any event, without `seq`, `prev_hash`
//! and `hash`), the error (redacted too) and the time. An event whose text exceeds
//! [`MAX_EVENT_BYTES`] is kept as a summary: its identifying members and the SHA-256
//! and length of its full text.
//!
//! The file is bounded: it grows to at most [`MAX_FILE_BYTES`]. A failure that no
//! longer fits is counted in `<file>.dropped` (a decimal number) instead, and a short
//! note line with the count is appended each time the count reaches a power of two,
//! so the SIEM sees that failures go on while the file grows by a few kilobytes at
//! most. Removing both files (once the SIEM has them) starts afresh.
//!
//! Writers serialize on an `flock` of the file itself; a line is one `write`, cut
//! back like the chain's own appends when it fails.

use super::writer;
use serde_json::{Map, Value, json};
use std::fs::DirBuilder;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fallback file never grows beyond this by failures (notes aside).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// An event whose JSON text is longer than this is kept as a summary.
pub const MAX_EVENT_BYTES: usize = 64 << 10;

/// Members of an event a summary keeps.
const SUMMARY_MEMBERS: [&str; 9] = [
    "v",
    "id",
    "timestamp",
    "user_id",
    "session_id",
    "host",
    "action",
    "outcome",
    "compliance_tags",
];

/// What became of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Appended as a line.
    Line,
    /// The file is full: counted, this many so far.
    Counted(u64),
}

/// The line for one failure (without its newline).
pub fn line(time: &str, error: &str, event: Option<&Map<String, Value>>) -> String {
    let mut line = json!({ "kind": "record_failure", "time": time, "error": error });
    if let Some(event) = event {
        let text = serde_json::to_string(event).unwrap_or_default();
        if text.len() <= MAX_EVENT_BYTES {
            line["event"] = Value::Object(event.clone());
        } else {
            line["event"] = summary(event);
            line["event_bytes"] = text.len().into();
            line["event_sha256"] = crate::audit::sha256_hex(text.as_bytes()).into();
        }
    }
    line.to_string()
}

fn summary(event: &Map<String, Value>) -> Value {
    let mut s: Map<String, Value> = SUMMARY_MEMBERS
        .iter()
        .filter_map(|k| event.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect();
    if let Some(source) = event.get("metadata").and_then(|m| m.get("source_event")) {
        s.insert("metadata".into(), json!({ "source_event": source }));
    }
    Value::Object(s)
}

/// Appends `line` to the fallback file at `path`, within the bound.
pub fn append(path: &Path, line: &str, time: &str) -> io::Result<Kept> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = writer::open_private(path, true)?;
    // Only `record` processes take this lock, each for a moment; should one hang,
    // go on without it: a line is still one `write` to an `O_APPEND` file.
    let _ = writer::lock_exclusive(&file, Duration::from_secs(1));
    let len = file.metadata()?.len();
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    if len + bytes.len() as u64 <= MAX_FILE_BYTES {
        writer::append_whole(&mut file, &bytes, false)?;
        return Ok(Kept::Line);
    }
    let dropped = count_dropped(&counter_path(path))?;
    if dropped.is_power_of_two() {
        let note = json!({
            "kind": "fallback_full",
            "time": time,
            "dropped": dropped,
            "max_bytes": MAX_FILE_BYTES,
            "counter": counter_path(path).display().to_string(),
        });
        writer::append_whole(&mut file, format!("{note}\n").as_bytes(), false)?;
    }
    Ok(Kept::Counted(dropped))
}

/// `<file>.dropped`.
pub fn counter_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".dropped");
    path.with_file_name(name)
}

/// Adds one to the count in `path` (created at 0); the new count.
fn count_dropped(path: &Path) -> io::Result<u64> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let n = text.trim().parse::<u64>().unwrap_or(0).saturating_add(1);
    f.seek(SeekFrom::Start(0))?;
    f.set_len(0)?;
    f.write_all(format!("{n}\n").as_bytes())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_events_are_summarised() {
        let mut e = Map::new();
        e.insert("id".into(), "x".into());
        e.insert("action".into(), "tool_execution".into());
        e.insert("resource".into(), "r".repeat(MAX_EVENT_BYTES).into());
        e.insert(
            "metadata".into(),
            json!({"source_event": "PreToolUse", "cwd": "/"}),
        );
        let v: Value = serde_json::from_str(&line("t", "disk full", Some(&e))).unwrap();
        assert_eq!(v["event"]["id"], "x");
        assert_eq!(
            v["event"]["metadata"],
            json!({"source_event": "PreToolUse"})
        );
        assert!(v["event"].get("resource").is_none());
        assert!(v["event_bytes"].as_u64().unwrap() > MAX_EVENT_BYTES as u64);
        assert_eq!(v["event_sha256"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn the_file_stops_growing_and_counts() {
        let dir = std::env::temp_dir().join(format!("auditship-fallback-{}", std::process::id()));
        let path = dir.join("errors.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let line = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
        let mut counted = 0;
        for _ in 0..40 {
            if let Kept::Counted(n) = append(&path, &line, "t").unwrap() {
                counted = n;
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().filter(|l| l.contains("pad")).count(), 10);
        assert_eq!(counted, 30);
        // Notes at 1, 2, 4, 8 and 16 dropped.
        assert_eq!(
            text.lines().filter(|l| l.contains("fallback_full")).count(),
            5
        );
        assert!(text.len() < MAX_FILE_BYTES as usize + 2000);
        assert_eq!(
            std::fs::read_to_string(counter_path(&path)).unwrap().trim(),
            "30"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
