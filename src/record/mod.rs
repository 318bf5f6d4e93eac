//! The producer: turns one Claude Code hook payload (or an `ai_decision` given on the
//! command line) into one sealed, chained event appended to the user's audit directory.
//!
//! Invariants: nothing reaches the file before redaction; the chain head is always
//! derived from the files under the directory lock; every hook call becomes an event
//! (a payload that is not JSON becomes an `agent_event` naming its digest and the
//! parse error); an error never loses the call silently: it goes to stderr and, as
//! the event it would have been, to the bounded fallback file ([`fallback`]).

pub mod content;
pub mod fail_closed;
pub mod fallback;
pub mod map;
pub mod payload;
pub mod writer;

use crate::config::Config;
use serde_json::{Map, Value};
use std::io::Write;
use std::time::Duration;

pub use writer::Appended;

/// Values nested deeper than this in an event (the event itself is depth 1) are
/// stored as the SHA-256 and length of their canonical form, so every consumer of
/// the trail (serde-based SIEM tooling stops at 128) can read what `record` writes.
pub const MAX_STORED_DEPTH: usize = 64;

/// An `ai_decision` event given by a skill or script.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub decision: String,
    pub factors_considered: Vec<String>,
    pub confidence: Option<f64>,
    pub alternative_options: Vec<String>,
    /// What the decision is about (paths, URLs, names): the first is the event's
    /// `resource`; with more than one, all of them are `decision.resources`.
    pub resources: Vec<String>,
    pub session_id: Option<String>,
    pub outcome: Option<String>,
    /// The tool call that carried the decision (an MCP `tools/call`'s
    /// `claudecode/toolUseId`): `metadata.tool_use_id`, which the hook records of
    /// that call name too.
    pub tool_use_id: Option<String>,
}

/// What to record.
pub enum Input<'a> {
    /// A hook payload as read from stdin.
    Hook(&'a [u8]),
    Decision(Decision),
    /// A payload that was not kept whole (larger than a bound, or not received to
    /// its end): its first bytes, what it amounted to, and why.
    Digest(Digest<'a>),
}

/// What is known of a payload kept only as its digest.
#[derive(Debug, Clone)]
pub struct Digest<'a> {
    /// Its first bytes, for the top-level members they still tell (event name,
    /// session, cwd).
    pub prefix: &'a [u8],
    /// SHA-256 (hex) of every byte received.
    pub sha256: String,
    /// How many bytes were received.
    pub bytes: u64,
    /// Whether the payload was received to its end.
    pub complete: bool,
    /// Why it was not kept whole.
    pub error: String,
}

/// Who made the call, as the writer of the event vouches for it: `record` for its
/// own process ([`Caller::local`]), the sealer for the peer the kernel names.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The event's `user_id`.
    pub user_id: String,
    pub host: String,
    /// `$CLAUDE_PROJECT_DIR` of the hook, when it has one.
    pub project_dir: Option<String>,
    /// The session of a decision that names none.
    pub decision_session: Option<String>,
    /// Members set in `metadata` whatever the payload holds (the sealer's `os_user`,
    /// `uid`, `pid`, `sealed`).
    pub metadata: Map<String, Value>,
}

impl Caller {
    /// This process: the configured `user_id`, else the OS user; this host; the
    /// hook's environment.
    pub fn local(config: &Config) -> Caller {
        Caller {
            user_id: config.record.user_id.clone().unwrap_or_else(os_user),
            host: crate::host::host_name(),
            project_dir: env_text("CLAUDE_PROJECT_DIR"),
            decision_session: env_text("CLAUDE_SESSION_ID"),
            metadata: Map::new(),
        }
    }
}

/// A variable of the environment, when it is set and not empty.
pub fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("invalid decision: {0}")]
    Decision(String),
    #[error(transparent)]
    Append(#[from] writer::AppendError),
}

/// A failed call: the error, and the event it would have appended (for the fallback
/// file) when it got that far.
#[derive(Debug)]
pub struct Failure {
    pub error: RecordError,
    pub event: Option<Map<String, Value>>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// Records one event, made by `caller`.
pub fn record(config: &Config, input: Input<'_>, caller: &Caller) -> Result<Appended, Failure> {
    let (timestamp, date) = crate::clock::utc_now();
    let event =
        event(config, input, timestamp, caller).map_err(|error| Failure { error, event: None })?;
    append(config, &date, &event).map_err(|e| Failure {
        error: e.into(),
        event: Some(event),
    })
}

/// The event for `input` made by `caller`, ready to seal: mapped, redacted, and
/// bounded in depth. The one mapping both `record` and the sealer use.
pub fn event(
    config: &Config,
    input: Input<'_>,
    timestamp: String,
    caller: &Caller,
) -> Result<Map<String, Value>, RecordError> {
    let cx = context(config, timestamp, caller);
    let mut event = match input {
        Input::Hook(bytes) => hook_event(bytes, &cx),
        Input::Decision(d) => decision_event(&d, &cx, caller)?,
        Input::Digest(d) => digest_event(&d, &cx),
    };
    if let Some(Value::Object(meta)) = event.get_mut("metadata") {
        for (k, v) in &caller.metadata {
            meta.insert(k.clone(), v.clone());
        }
    }
    let cut = storable(&mut event);
    if cut > 0 {
        add_note(&mut event, "nesting_cut", cut);
    }
    Ok(event)
}

fn context<'a>(config: &'a Config, timestamp: String, caller: &Caller) -> map::Context<'a> {
    let rc = &config.record;
    map::Context {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp,
        user_id: caller.user_id.clone(),
        host: caller.host.clone(),
        project_dir: caller.project_dir.clone(),
        identity: &rc.identity,
        redactor: &config.redactor,
        compliance: &config.compliance,
        keep_prompts: rc.keep_prompts,
        keep_tool_input: rc.keep_tool_input,
        keep_tool_response: rc.keep_tool_response,
        keep_messages: rc.keep_messages,
        max_kept_bytes: rc.max_kept_bytes,
    }
}

/// Appends a finished event to the configured stream.
pub fn append(
    config: &Config,
    date: &str,
    event: &Map<String, Value>,
) -> Result<Appended, writer::AppendError> {
    let rc = &config.record;
    let opts = writer::AppendOptions {
        signer: rc.signer.as_ref().map(|(kid, keys)| (kid.as_str(), keys)),
        fsync: rc.fsync,
        lock_timeout: Duration::from_millis(rc.lock_timeout_ms),
        date,
    };
    let body = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
    writer::append(&rc.dir, &opts, |seq, prev| chained(&body, seq, prev))
}

/// The JSON text of an event (`body`, an object without chain members) as the
/// chain member at `seq` after `prev`: `prev_hash` and `seq` put in front.
pub fn chained(body: &str, seq: u64, prev: &str) -> String {
    let rest = body.strip_prefix('{').unwrap_or("}");
    let sep = if rest == "}" { "" } else { "," };
    format!("{{\"prev_hash\":\"{prev}\",\"seq\":{seq}{sep}{rest}")
}

/// A hook payload as an event, whatever the bytes are.
fn hook_event(bytes: &[u8], cx: &map::Context<'_>) -> Map<String, Value> {
    match payload::read(bytes) {
        payload::Read::Json(p) => {
            let mut e = map::map_hook(p.value, cx);
            if p.replaced_invalid_unicode {
                add_note(&mut e, "replaced_invalid_unicode", true);
            }
            if p.nesting_cut > 0 {
                add_note(&mut e, "nesting_cut", p.nesting_cut);
            }
            e
        }
        payload::Read::NotJson {
            error,
            sha256,
            bytes: len,
        } => not_json_event(bytes, error, sha256, len, cx),
    }
}

/// An `agent_event` for a payload that is not JSON: its digest, length and the parse
/// error, and what its top-level members still tell (event name, session, cwd).
fn not_json_event(
    bytes: &[u8],
    error: String,
    sha256: String,
    len: usize,
    cx: &map::Context<'_>,
) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("payload_sha256".into(), Value::String(sha256));
    meta.insert("payload_bytes".into(), Value::from(len));
    meta.insert("parse_error".into(), Value::String(error));
    unread_payload_event(bytes, meta, cx)
}

/// An `agent_event` for a payload kept only as its digest: its SHA-256 and length,
/// whether it arrived whole, why it was not kept, and what its first bytes tell.
fn digest_event(d: &Digest<'_>, cx: &map::Context<'_>) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("payload_sha256".into(), Value::String(d.sha256.clone()));
    meta.insert("payload_bytes".into(), Value::from(d.bytes));
    meta.insert("payload_complete".into(), Value::Bool(d.complete));
    let error = cx.redactor.redact_str(&d.error).into_owned();
    meta.insert("payload_error".into(), Value::String(error));
    unread_payload_event(d.prefix, meta, cx)
}

/// The `agent_event` of a payload that could not be mapped: `meta` (its digest and
/// why) plus what the top-level members of `bytes` still tell, redacted.
fn unread_payload_event(
    bytes: &[u8],
    mut meta: Map<String, Value>,
    cx: &map::Context<'_>,
) -> Map<String, Value> {
    let found =
        |key: &str| payload::member(bytes, key).map(|v| cx.redactor.redact_str(&v).into_owned());
    let hook_event = found("hook_event_name");
    let session = found("session_id").unwrap_or_else(|| "unknown".into());
    let cwd = found("cwd");
    meta.insert(
        "source_event".into(),
        Value::String(hook_event.clone().unwrap_or_else(|| "unknown".into())),
    );
    if let Some(cwd) = &cwd {
        meta.insert("cwd".into(), Value::String(cwd.clone()));
    }
    if let Some(dir) = &cx.project_dir {
        meta.insert("project_dir".into(), Value::String(dir.clone()));
    }
    let resource = cwd.or(hook_event).unwrap_or_else(|| "unknown".into());
    map::base_event(cx, &session, "agent_event", &resource, "attempted", meta)
}

/// Sets `metadata.<key>` (adding to a number already there).
fn add_note(event: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    let value = value.into();
    let Some(Value::Object(meta)) = event.get_mut("metadata") else {
        return;
    };
    let sum = match (meta.get(key).and_then(Value::as_u64), value.as_u64()) {
        (Some(a), Some(b)) => Value::from(a + b),
        _ => value,
    };
    meta.insert(key.into(), sum);
}

/// Makes every value of the event storable in the trail: what is nested deeper
/// than [`MAX_STORED_DEPTH`] is replaced by `{"nested_bytes", "nested_sha256"}` of
/// its canonical form, and numbers beyond ±2^53 that the canonical form would write
/// as integers (which no verifier may accept) become their decimal text. Returns
/// the number of values replaced for depth.
pub fn storable(event: &mut Map<String, Value>) -> usize {
    fn fix(v: &mut Value, depth: usize, cut: &mut usize) {
        match v {
            Value::Array(_) | Value::Object(_) if depth > MAX_STORED_DEPTH => {
                let bytes = map::canonical_bytes(v);
                *v = serde_json::json!({
                    "nested_bytes": bytes.len(),
                    "nested_sha256": crate::audit::sha256_hex(&bytes),
                });
                *cut += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|i| fix(i, depth + 1, cut)),
            Value::Object(m) => m.values_mut().for_each(|i| fix(i, depth + 1, cut)),
            Value::Number(n) => {
                let unsafe_integer = n.as_f64().is_some_and(|f| {
                    f.abs() > crate::audit::json::MAX_SAFE_INTEGER as f64 && f.abs() < 1e21
                });
                if unsafe_integer {
                    *v = Value::String(match n.as_f64() {
                        Some(f) if n.is_f64() => format!("{f}"),
                        _ => n.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    let mut cut = 0;
    for v in event.values_mut() {
        fix(v, 2, &mut cut);
    }
    cut
}

impl Decision {
    /// Why this decision cannot be recorded as given, if it cannot: an empty text, a
    /// confidence outside 0 to 1, an outcome the format does not know. Pure: the
    /// command line checks it before anything else.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.decision.trim().is_empty() {
            return Err(RecordError::Decision("the decision text is empty".into()));
        }
        if let Some(c) = self.confidence
            && !(0.0..=1.0).contains(&c)
        {
            return Err(RecordError::Decision(format!(
                "confidence {c} is not between 0 and 1"
            )));
        }
        let outcome = self.outcome.as_deref().unwrap_or("success");
        if !crate::audit::schema::OUTCOMES.contains(&outcome) {
            return Err(RecordError::Decision(format!(
                "unknown outcome {outcome:?} (expected one of {})",
                crate::audit::schema::OUTCOMES.join(", ")
            )));
        }
        Ok(())
    }
}

fn decision_event(
    d: &Decision,
    cx: &map::Context<'_>,
    caller: &Caller,
) -> Result<Map<String, Value>, RecordError> {
    d.validate()?;
    let outcome = d.outcome.as_deref().unwrap_or("success");
    let mut redacted = Vec::new();
    let mut decision = serde_json::json!({
        "decision": d.decision,
        "factors_considered": d.factors_considered,
        "alternative_options": d.alternative_options,
    });
    if let Some(c) = d.confidence {
        decision["confidence"] = Value::from(c);
    }
    if d.resources.len() > 1 {
        decision["resources"] = Value::from(d.resources.clone());
    }
    cx.redactor
        .redact_json(&mut decision, "decision", &mut redacted);
    let resource = d.resources.first().map_or("ai_decision", String::as_str);
    let resource = cx.redactor.redact_str(resource).into_owned();
    let mut meta = Map::new();
    meta.insert("source_event".into(), Value::String("ai_decision".into()));
    if let Some(dir) = &cx.project_dir {
        meta.insert("project_dir".into(), Value::String(dir.clone()));
    }
    if let Some(id) = &d.tool_use_id {
        let id = cx.redactor.redact_str(id).into_owned();
        meta.insert("tool_use_id".into(), Value::String(id));
    }
    if !redacted.is_empty() {
        meta.insert(
            "redacted".into(),
            redacted.into_iter().map(Value::String).collect(),
        );
    }
    let session = d
        .session_id
        .clone()
        .or_else(|| caller.decision_session.clone())
        .unwrap_or_else(|| "unknown".into());
    let mut e = map::base_event(cx, &session, "ai_decision", &resource, outcome, meta);
    if let Some(Value::Array(all)) = decision.get("resources") {
        more_compliance_tags(&mut e, all.iter().skip(1).filter_map(Value::as_str), cx);
    }
    e.insert("decision".into(), decision);
    Ok(e)
}

/// Adds the compliance tags of `resources` (beyond the event's own `resource`) to
/// the event's `compliance_tags`, each tag once.
fn more_compliance_tags<'r>(
    event: &mut Map<String, Value>,
    resources: impl Iterator<Item = &'r str>,
    cx: &map::Context<'_>,
) {
    let mut tags: Vec<Value> = match event.remove("compliance_tags") {
        Some(Value::Array(t)) => t,
        _ => Vec::new(),
    };
    for tag in resources.flat_map(|r| cx.compliance.tags_for(r)) {
        let tag = Value::String(tag);
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if !tags.is_empty() {
        event.insert("compliance_tags".into(), Value::Array(tags));
    }
}

/// Reports a failure: to stderr, and to the fallback file as the event it would
/// have appended (when it got that far), the error redacted.
pub fn report_failure(config: &Config, error: &str, event: Option<&Map<String, Value>>) {
    let _ = writeln!(std::io::stderr(), "auditship record: {error}");
    let time = crate::clock::utc_now().0;
    let error = config.redactor.redact_str(error);
    let line = fallback::line(&time, &error, event);
    let path = &config.record.fallback_file;
    match fallback::append(path, &line, &time) {
        Ok(fallback::Kept::Line) => {}
        Ok(fallback::Kept::Counted(n)) => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship record: fallback file {} is full; {n} failure(s) counted in {}",
                path.display(),
                fallback::counter_path(path).display()
            );
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship record: fallback file {}: {e}",
                path.display()
            );
        }
    }
}

/// The OS user name of the effective uid, else `$USER`, else the uid.
pub fn os_user() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    crate::users::name_of(uid)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid:{uid}"))
}
