//! From Claude Code's OTLP log records to unsealed FORMAT v1 events (FORMAT.md,
//! "Claude Code's telemetry").
//!
//! A record is Claude Code's when its body is the string `claude_code.<event>` (or its
//! `event_name` is); any other record is refused and counted. The event carries the
//! same keys in the same places as hook events, so one field joins them:
//! `session_id` from `session.id`, `metadata.prompt_id` from `prompt.id`,
//! `metadata.tool_use_id` and `metadata.tool_name` as sent. `metadata.source_event` is
//! `otel:<event>`. `user_id` and `metadata.uid` name the local user the kernel says
//! sent it ([`Sender`]); the identity Claude Code claims (`user.email`,
//! `user.account_uuid`, `organization.id`) goes to `identity`.
//!
//! Pure: the caller gives the clock reading, ids and settings. Content attributes
//! (`prompt`, `tool_input`, `tool_parameters`, `response`, `error`, raw bodies) are
//! stored like hook content ([`crate::record::content`]): SHA-256 and length, plus a
//! redacted copy when the `keep_*` setting of their kind is on; Claude Code's own
//! `<REDACTED>` placeholder stays as it is. Every string kept passes the redactor,
//! unknown attributes go to `metadata.extra` minimised like a hook's unknown fields,
//! and `resource` is bounded.

use super::{AnyValue, Export, KeyValue, LogRecord};
use crate::record::compliance::ComplianceRules;
use crate::record::content::{self, Field, Keep, Kind, Sink};
use crate::record::map as hook_map;
use crate::redact::Redactor;
use serde_json::{Map, Value};

/// The prefix of Claude Code's event names in a record's body.
pub const EVENT_PREFIX: &str = "claude_code.";

/// Claude Code writes this in place of content it was told not to log.
const PLACEHOLDER: &[&str] = &["<REDACTED>"];

/// Content attributes and the setting that keeps a copy (raw API bodies are never
/// copied: they hold prompts, tool results and model text together).
const CONTENT: &[Field] = &[
    Field {
        name: "prompt",
        digest: "input",
        copy: "prompt",
        kind: Kind::Prompt,
        codes: PLACEHOLDER,
    },
    Field {
        name: "prompt_text",
        digest: "prompt_text",
        copy: "prompt_text",
        kind: Kind::Prompt,
        codes: PLACEHOLDER,
    },
    Field {
        name: "tool_input",
        digest: "input",
        copy: "input",
        kind: Kind::ToolInput,
        codes: PLACEHOLDER,
    },
    Field {
        name: "tool_parameters",
        digest: "tool_parameters",
        copy: "tool_parameters",
        kind: Kind::ToolInput,
        codes: PLACEHOLDER,
    },
    Field {
        name: "response",
        digest: "response",
        copy: "response",
        kind: Kind::Message,
        codes: PLACEHOLDER,
    },
    Field {
        name: "error",
        digest: "error",
        copy: "error",
        kind: Kind::ToolResponse,
        codes: PLACEHOLDER,
    },
];

/// Raw request and response bodies (`OTEL_LOG_RAW_API_BODIES`): digested only.
const DIGEST_ONLY: &[&str] = &["body"];

/// Attributes stored in `metadata` under their own name (redacted): identifiers,
/// codes and names that join or classify the event.
const CLEAR: &[&str] = &[
    "tool_name",
    "tool_use_id",
    "tool_source",
    "decision",
    "source",
    "permission_mode",
    "model",
    "hook_event",
    "hook_name",
    "from_mode",
    "to_mode",
    "trigger",
    "query_source",
    "speed",
    "effort",
    "mcp_server_name",
];

/// Attributes that are numbers, though Claude Code sends many as decimal text: stored
/// as numbers under their own name (text that is not a number stays text).
const NUMBERS: &[&str] = &[
    "duration_ms",
    "total_duration_ms",
    "ttft_ms",
    "attempt",
    "status_code",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "cost_usd_micros",
    "prompt_length",
    "response_length",
    "tool_input_size_bytes",
    "tool_result_size_bytes",
    "num_hooks",
    "num_success",
    "num_blocking",
    "num_non_blocking_error",
    "num_cancelled",
];

/// Identity Claude Code claims, and where it goes in `identity`.
const IDENTITY: &[(&str, &str)] = &[
    ("user.email", "email"),
    ("user.account_uuid", "account_uuid"),
    ("user.account_id", "account_id"),
    ("organization.id", "organization_id"),
];

/// Keys of a tool's input that name what it touched, in order of preference (the
/// hook mapping's, plus `full_command` of Bash's `tool_parameters`).
const RESOURCE_KEYS: &[&str] = &[
    "file_path",
    "notebook_path",
    "path",
    "url",
    "query",
    "pattern",
    "full_command",
    "command",
];

/// Who sent the records: the local user the kernel names.
#[derive(Debug, Clone)]
pub struct Sender {
    pub uid: u32,
    /// The enterprise identity: the configured mapping of the user, else its name.
    pub user_id: String,
    /// Configured identity fields (`[record.identity]` for the daemon's own user).
    pub identity: Map<String, Value>,
}

/// What the mapping needs besides the records.
pub struct Settings<'a> {
    pub host: &'a str,
    pub redactor: &'a Redactor,
    pub compliance: &'a ComplianceRules,
    pub keep: Keep,
}

/// A run of a hook point where auditship is installed that Claude Code reported
/// cancelled or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookProblem {
    pub hook_event: String,
    /// `cancelled` (timed out or stopped) or `failed` (a non-blocking error).
    pub kind: &'static str,
    /// How many runs of the hook point it counts.
    pub runs: u64,
    pub session_id: String,
}

/// A body's records, mapped.
#[derive(Debug, Default)]
pub struct Mapped {
    pub events: Vec<Map<String, Value>>,
    /// Records that are not Claude Code's (`partialSuccess.rejectedLogRecords`).
    pub refused: u64,
    pub hook_problems: Vec<HookProblem>,
}

/// Maps every record of a request. `timestamp` is when the body was received;
/// `id()` gives each event its id.
pub fn map_export(
    export: Export,
    settings: &Settings<'_>,
    sender: &Sender,
    timestamp: &str,
    mut id: impl FnMut() -> String,
) -> Mapped {
    let mut out = Mapped::default();
    for resource in export.resources {
        let service = service_of(&resource.attributes);
        for scope in resource.scopes {
            for record in scope.records {
                let Some(name) = event_name(&record) else {
                    out.refused += 1;
                    continue;
                };
                let (event, problems) =
                    map_record(record, &name, &service, settings, sender, timestamp, id());
                out.events.push(event);
                out.hook_problems.extend(problems);
            }
        }
    }
    out
}

/// The Claude Code event a record reports (`tool_decision`), or `None` when it is
/// not Claude Code's.
pub fn event_name(r: &LogRecord) -> Option<String> {
    let from = |s: &str| {
        s.strip_prefix(EVENT_PREFIX)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    };
    match &r.body {
        Some(AnyValue::String(s)) if s.starts_with(EVENT_PREFIX) => from(s),
        _ => from(&r.event_name),
    }
}

/// `service.name` and `service.version` of the resource (Claude Code and its release).
fn service_of(attributes: &[KeyValue]) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for (key, name) in [
        ("service.name", "service_name"),
        ("service.version", "service_version"),
    ] {
        if let Some(AnyValue::String(s)) = attributes.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
        {
            out.push((name, Value::String(s.clone())));
        }
    }
    out
}

/// An attribute value as JSON: integers and doubles as numbers (a double JSON cannot
/// hold as its text), bytes as lowercase hex, a key-value list as an object.
pub fn to_json(v: AnyValue) -> Value {
    match v {
        AnyValue::String(s) => Value::String(s),
        AnyValue::Bool(b) => Value::Bool(b),
        AnyValue::Int(i) => Value::from(i),
        AnyValue::Double(d) => serde_json::Number::from_f64(d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        AnyValue::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        AnyValue::KvList(items) => Value::Object(attributes_json(items)),
        AnyValue::Bytes(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        AnyValue::Empty => Value::Null,
    }
}

/// Attributes as a JSON object (a repeated key: the last one wins).
fn attributes_json(items: Vec<KeyValue>) -> Map<String, Value> {
    items.into_iter().map(|kv| (kv.key, to_json(kv.value))).collect()
}

/// Text or a JSON number as a number.
fn number(v: Value) -> Value {
    match &v {
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                Value::from(i)
            } else if let Some(n) = t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
            {
                Value::Number(n)
            } else {
                v
            }
        }
        _ => v,
    }
}

fn count(meta: &Map<String, Value>, key: &str) -> u64 {
    meta.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// What a record says happened: `action`, `outcome`.
fn classify(name: &str, attrs: &Map<String, Value>, meta: &Map<String, Value>) -> (&'static str, &'static str) {
    let tool = || hook_map::tool_action(meta.get("tool_name").and_then(Value::as_str).unwrap_or(""));
    match name {
        "tool_decision" => (
            tool(),
            match meta.get("decision").and_then(Value::as_str) {
                Some("reject") => "denied",
                Some("accept") => "success",
                _ => "attempted",
            },
        ),
        "tool_result" => (
            tool(),
            match attrs.get("success") {
                Some(Value::Bool(false)) => "failure",
                Some(Value::String(s)) if s == "false" => "failure",
                _ => "success",
            },
        ),
        "api_request" => ("api_call", "success"),
        "api_error" => ("api_call", "failure"),
        "user_prompt" => ("user_prompt", "success"),
        "permission_mode_changed" => ("permission_change", "success"),
        "hook_execution_complete"
            if count(meta, "num_cancelled") + count(meta, "num_non_blocking_error") > 0 =>
        {
            ("agent_event", "failure")
        }
        _ => ("agent_event", "success"),
    }
}

/// The path, URL, command or name the event touched.
fn resource_of(name: &str, attrs: &Map<String, Value>, meta: &Map<String, Value>) -> String {
    for key in ["tool_parameters", "tool_input"] {
        let parsed = attrs
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        if let Some(Value::Object(input)) = parsed {
            for k in RESOURCE_KEYS {
                if let Some(s) = input.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    return s.to_owned();
                }
            }
        }
    }
    let named = match name {
        "permission_mode_changed" => &["to_mode"][..],
        "api_request" | "api_error" | "assistant_response" => &["model"][..],
        _ => &["tool_name", "hook_name", "hook_event", "model"][..],
    };
    named
        .iter()
        .find_map(|k| meta.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
        .map(str::to_owned)
        .unwrap_or_else(|| name.to_owned())
}

/// A content attribute's value: the JSON a text holds when it is JSON (`tool_input`
/// is the tool's input as JSON text: digested as that value, its digest is the one
/// the hook event of the same call carries), else the text.
fn content_value(v: Value) -> Value {
    match &v {
        Value::String(s) if s.starts_with(['{', '[']) => serde_json::from_str(s).unwrap_or(v),
        _ => v,
    }
}

/// One record as an event, and the hook problems it reports.
fn map_record(
    record: LogRecord,
    name: &str,
    service: &[(&'static str, Value)],
    settings: &Settings<'_>,
    sender: &Sender,
    timestamp: &str,
    id: String,
) -> (Map<String, Value>, Vec<HookProblem>) {
    let mut attrs = attributes_json(record.attributes);
    let mut redacted = Vec::new();
    let redactor = settings.redactor;
    let session = match attrs.remove("session.id") {
        Some(Value::String(s)) => s,
        _ => "unknown".into(),
    };
    let session = hook_map::redacted_text(session, "session_id", redactor, &mut redacted);
    let source_event = hook_map::redacted_text(
        format!("otel:{name}"),
        "metadata.source_event",
        redactor,
        &mut redacted,
    );
    let mut meta = Map::new();
    meta.insert("source_event".into(), Value::String(source_event));
    meta.insert("uid".into(), Value::from(sender.uid));
    let keep_clear = |meta: &mut Map<String, Value>, key: &str, mut v: Value, redacted: &mut Vec<String>| {
        redactor.redact_json(&mut v, &format!("metadata.{key}"), redacted);
        meta.insert(key.to_owned(), v);
    };
    if let Some(v) = attrs.remove("prompt.id") {
        keep_clear(&mut meta, "prompt_id", v, &mut redacted);
    }
    for key in CLEAR {
        if let Some(v) = attrs.remove(*key) {
            keep_clear(&mut meta, key, v, &mut redacted);
        }
    }
    for key in NUMBERS {
        if let Some(v) = attrs.remove(*key) {
            keep_clear(&mut meta, key, number(v), &mut redacted);
        }
    }
    if let Some(v) = attrs.remove("event.sequence") {
        keep_clear(&mut meta, "event_sequence", number(v), &mut redacted);
    }
    match attrs.remove("event.timestamp") {
        Some(v) => keep_clear(&mut meta, "event_timestamp", v, &mut redacted),
        None if record.time_unix_nano > 0 => {
            let nanos = record.time_unix_nano;
            let (ts, _) = crate::record::format_utc(
                (nanos / 1_000_000_000) as i64,
                (nanos / 1_000_000 % 1000) as u32,
            );
            meta.insert("event_timestamp".into(), Value::String(ts));
        }
        None => {}
    }
    attrs.remove("event.name");
    if let Some(v) = attrs.get("success").cloned() {
        let flag = match &v {
            Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
            other => other.clone(),
        };
        keep_clear(&mut meta, "success", flag, &mut redacted);
    }
    for (key, v) in service {
        keep_clear(&mut meta, key, v.clone(), &mut redacted);
    }
    let (action, outcome) = classify(name, &attrs, &meta);
    attrs.remove("success");
    let problems = hook_problems(name, &meta, &session);
    if !problems.is_empty() {
        let runs = problems.iter().map(|p| (p.kind.to_owned(), Value::from(p.runs)));
        meta.insert(
            "auditship_hook_problem".into(),
            Value::Object(runs.collect()),
        );
    }
    let resource = resource_of(name, &attrs, &meta);
    let resource = hook_map::bounded_resource(resource, redactor, &mut meta, &mut redacted);

    let mut identity = sender.identity.clone();
    for (key, to) in IDENTITY {
        if let Some(mut v) = attrs.remove(*key) {
            redactor.redact_json(&mut v, &format!("identity.{to}"), &mut redacted);
            identity.entry(to.to_string()).or_insert(v);
        }
    }
    store_content(&mut meta, &mut attrs, settings, &mut redacted);
    if !attrs.is_empty() {
        hook_map::extra_into(&mut meta, attrs, redactor, &mut redacted);
    }
    if !redacted.is_empty() {
        let paths = redacted
            .into_iter()
            .map(|p| Value::String(redactor.redact_str(&p).into_owned()));
        meta.insert("redacted".into(), Value::Array(paths.collect()));
    }
    let cx = hook_map::Context {
        id,
        timestamp: timestamp.to_owned(),
        user_id: sender.user_id.clone(),
        host: settings.host.to_owned(),
        project_dir: None,
        identity: &identity,
        redactor,
        compliance: settings.compliance,
        keep_prompts: settings.keep.prompts,
        keep_tool_input: settings.keep.tool_input,
        keep_tool_response: settings.keep.tool_response,
        keep_messages: settings.keep.messages,
        max_kept_bytes: settings.keep.max_bytes,
    };
    let mut event = hook_map::base_event(&cx, &session, action, &resource, outcome, meta);
    crate::record::storable(&mut event);
    (event, problems)
}

/// Content attributes: digests (and kept copies) into `meta`, taken out of `attrs`.
fn store_content(
    meta: &mut Map<String, Value>,
    attrs: &mut Map<String, Value>,
    settings: &Settings<'_>,
    redacted: &mut Vec<String>,
) {
    let mut sink = Sink {
        keep: &settings.keep,
        redactor: settings.redactor,
        redacted,
    };
    for f in CONTENT {
        if let Some(v) = attrs.remove(f.name) {
            sink.store(meta, "metadata", f, content_value(v));
        }
    }
    for name in DIGEST_ONLY {
        if let Some(v) = attrs.remove(*name) {
            match v.as_str() {
                Some(s) if PLACEHOLDER.contains(&s) => {
                    meta.insert((*name).into(), v);
                }
                _ => content::digest_into(meta, name, &v),
            }
        }
    }
}

/// A `hook_execution_complete` of a hook point auditship installs for, reporting
/// runs cancelled or failed (one problem per kind). Claude Code counts every hook of
/// the point together, so a failed run may be another hook's: it is reported all the
/// same, since ours may be among them.
fn hook_problems(name: &str, meta: &Map<String, Value>, session: &str) -> Vec<HookProblem> {
    let Some(event) = meta.get("hook_event").and_then(Value::as_str) else {
        return Vec::new();
    };
    if name != "hook_execution_complete"
        || !crate::install_hooks::EVENTS.iter().any(|e| e.name == event)
    {
        return Vec::new();
    }
    [
        ("cancelled", count(meta, "num_cancelled")),
        ("failed", count(meta, "num_non_blocking_error")),
    ]
    .into_iter()
    .filter(|(_, runs)| *runs > 0)
    .map(|(kind, runs)| HookProblem {
        hook_event: event.to_owned(),
        kind,
        runs,
        session_id: session.to_owned(),
    })
    .collect()
}
