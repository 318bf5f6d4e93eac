//! Claude Code's own telemetry in the trail: a local OTLP/HTTP logs receiver whose
//! `claude_code.*` log records are sealed into one chained stream per local user.
//!
//! The data path: [`server`] reads `POST /v1/logs` on a loopback listener (HTTP/1.1,
//! keep-alive, gzip); [`peer`] tells which local user owns the connecting socket (the
//! kernel's socket table, as identd does); [`proto`] or [`json`] decode the
//! `ExportLogsServiceRequest` into the [`Export`] model; [`map`] turns each log record
//! into an unsealed FORMAT v1 event (minimised and redacted exactly like hook
//! content); [`stream`] seals the events of many bodies into their user's chain with
//! one write and one `fdatasync` per user and group, through `record::writer`. A body
//! is answered only once its events are durable.
//!
//! Invariants:
//! - **Acknowledged means durable.** A 200 goes out only after every accepted record
//!   of the body is fsynced in its stream; any failure before that is a 503, and
//!   Claude Code's exporter sends the body again.
//! - **The kernel names the sender.** The stream a record goes to, its `user_id` and
//!   `metadata.uid` come from the uid owning the peer socket, never from the body.
//! - **Bounded.** Bodies past `max_body_bytes` (compressed or not) are 413, decoding
//!   is bounded in depth, and the bytes held by requests in flight are bounded: past
//!   that, 503 and the exporter retries.
//! - `proto`, `json` and `map` are pure: bytes and settings in, values out.
//!
//! What it deliberately does not do: export metrics or traces (`/v1/metrics` and
//! `/v1/traces` are 404), trust any identity the body claims (Claude Code's
//! `user.email` and friends are kept as the claims they are, in `identity`), or
//! listen anywhere but loopback.

pub mod json;
pub mod map;
pub mod peer;
pub mod proto;
pub mod server;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// An OTLP `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<AnyValue>),
    KvList(Vec<KeyValue>),
    Bytes(Vec<u8>),
    /// A value with none of its members set.
    Empty,
}

/// An OTLP `KeyValue`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: AnyValue,
}

/// An OTLP `LogRecord`: the members auditship reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRecord {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: Option<AnyValue>,
    pub attributes: Vec<KeyValue>,
    pub event_name: String,
}

/// One `ScopeLogs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeLogs {
    pub name: String,
    pub version: String,
    pub records: Vec<LogRecord>,
}

/// One `ResourceLogs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceLogs {
    pub attributes: Vec<KeyValue>,
    pub scopes: Vec<ScopeLogs>,
}

/// An `ExportLogsServiceRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Export {
    pub resources: Vec<ResourceLogs>,
}

impl Export {
    /// How many log records the request holds.
    pub fn records(&self) -> usize {
        self.resources
            .iter()
            .flat_map(|r| &r.scopes)
            .map(|s| s.records.len())
            .sum()
    }
}

/// Nesting of `AnyValue`s (arrays and key-value lists) deeper than this is a
/// malformed body: Claude Code sends flat attributes, and a bound keeps decoding
/// from recursing without end.
pub const MAX_VALUE_DEPTH: usize = 32;

/// Why a body could not be read (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// What the receiver counts, for `/metrics` and `/status`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered, by status code.
    pub answers: Mutex<BTreeMap<u16, u64>>,
    /// Log records sealed into a stream.
    pub records_accepted: AtomicU64,
    /// Log records refused (not `claude_code.*`), reported in `partialSuccess`.
    pub records_refused: AtomicU64,
    /// Failed writes to a telemetry stream (each answered 503).
    pub write_failures: AtomicU64,
    /// Runs of a hook point where auditship is installed that Claude Code reported
    /// cancelled or failed, by hook event and kind (`cancelled`, `failed`).
    pub hook_problems: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// The last such report: hook event, kind, session, time.
    pub last_hook_problem: Mutex<Option<serde_json::Value>>,
}

impl Stats {
    pub fn answered(&self, status: u16) {
        if let Ok(mut m) = self.answers.lock() {
            *m.entry(status).or_insert(0) += 1;
        }
    }

    pub fn hook_problem(&self, problem: &map::HookProblem) {
        if let Ok(mut m) = self.hook_problems.lock() {
            *m.entry((problem.hook_event.clone(), problem.kind))
                .or_insert(0) += problem.runs;
        }
        if let Ok(mut last) = self.last_hook_problem.lock() {
            *last = Some(serde_json::json!({
                "hook_event": problem.hook_event,
                "kind": problem.kind,
                "runs": problem.runs,
                "session_id": problem.session_id,
                "at": crate::clock::utc_now().0,
            }));
        }
    }

    /// Hook runs reported cancelled or failed, all kinds.
    pub fn hook_problem_total(&self) -> u64 {
        self.hook_problems
            .lock()
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    pub fn accepted(&self) -> u64 {
        self.records_accepted.load(Ordering::Relaxed)
    }
}
