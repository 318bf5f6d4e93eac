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
use crate::compliance::ComplianceRules;
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

/// Identifiers, codes and names are short: a longer string kept in clear (an
/// attribute of `CLEAR`, a number that is not one, a claimed identity) is stored as
/// `{"sha256", "bytes"}` instead, so no attribute makes an unbounded event.
pub const MAX_CLEAR_BYTES: usize = 256;

/// `v`, or the digest of a string longer than [`MAX_CLEAR_BYTES`].
fn bounded(v: Value) -> Value {
    match &v {
        Value::String(s) if s.len() > MAX_CLEAR_BYTES => {
            let mut m = Map::new();
            content::digest_into(&mut m, "", &v);
            Value::Object(m)
        }
        _ => v,
    }
}

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
        if let Some(AnyValue::String(s)) = attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
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
    items
        .into_iter()
        .map(|kv| (kv.key, to_json(kv.value)))
        .collect()
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
fn classify(
    name: &str,
    attrs: &Map<String, Value>,
    meta: &Map<String, Value>,
) -> (&'static str, &'static str) {
    let tool =
        || hook_map::tool_action(meta.get("tool_name").and_then(Value::as_str).unwrap_or(""));
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
                if let Some(s) = input
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
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
        .find_map(|k| {
            meta.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
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
    let mut meta = clear_metadata(name, record.time_unix_nano, &mut attrs, service, sender.uid);
    redact_clear(&mut meta, redactor, &mut redacted);
    let (action, outcome) = classify(name, &attrs, &meta);
    attrs.remove("success");
    let problems = hook_problems(name, &meta, &session);
    if !problems.is_empty() {
        let runs = problems
            .iter()
            .map(|p| (p.kind.to_owned(), Value::from(p.runs)));
        meta.insert(
            "auditship_hook_problem".into(),
            Value::Object(runs.collect()),
        );
    }
    let resource = resource_of(name, &attrs, &meta);
    let resource = hook_map::bounded_resource(resource, redactor, &mut meta, &mut redacted);

    let mut identity = sender.identity.clone();
    for (key, to) in IDENTITY {
        if let Some(v) = attrs.remove(*key) {
            let mut v = bounded(v);
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

/// The metadata kept in clear, not yet redacted: `source_event`, `uid`, the joining
/// keys, the identifiers and codes of `CLEAR`, the numbers, Claude Code's time and
/// release. Taken out of `attrs`, each bounded to [`MAX_CLEAR_BYTES`].
fn clear_metadata(
    name: &str,
    time_unix_nano: u64,
    attrs: &mut Map<String, Value>,
    service: &[(&'static str, Value)],
    uid: u32,
) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("source_event".into(), Value::String(format!("otel:{name}")));
    meta.insert("uid".into(), Value::from(uid));
    let mut keep = |key: &str, v: Value| {
        meta.insert(key.to_owned(), bounded(v));
    };
    if let Some(v) = attrs.remove("prompt.id") {
        keep("prompt_id", v);
    }
    for key in CLEAR {
        if let Some(v) = attrs.remove(*key) {
            keep(key, v);
        }
    }
    for key in NUMBERS {
        if let Some(v) = attrs.remove(*key) {
            keep(key, number(v));
        }
    }
    if let Some(v) = attrs.remove("event.sequence") {
        keep("event_sequence", number(v));
    }
    match attrs.remove("event.timestamp") {
        Some(v) => keep("event_timestamp", v),
        None if time_unix_nano > 0 => {
            let nanos = time_unix_nano;
            let (ts, _) = crate::clock::format_utc(
                (nanos / 1_000_000_000) as i64,
                (nanos / 1_000_000 % 1000) as u32,
            );
            keep("event_timestamp", Value::String(ts));
        }
        None => {}
    }
    attrs.remove("event.name");
    // Left in `attrs` for the outcome; a copy in clear, a boolean when it is one.
    if let Some(v) = attrs.get("success") {
        let flag = match v {
            Value::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
            other => other.clone(),
        };
        keep("success", flag);
    }
    for (key, v) in service {
        keep(key, v.clone());
    }
    meta
}

/// Redacts the metadata kept in clear. Its keys are ours and name no secret, so only
/// the values are read: a string through the text detectors, anything else (an
/// attribute sent as a list or map, the digest of a long value) through the
/// structural walk. Paths go to `redacted` as `metadata.<key>`.
fn redact_clear(meta: &mut Map<String, Value>, redactor: &Redactor, redacted: &mut Vec<String>) {
    for (key, v) in meta.iter_mut() {
        match v {
            Value::String(s) => {
                if let std::borrow::Cow::Owned(clean) = redactor.redact_str(s) {
                    *s = clean;
                    redacted.push(format!("metadata.{key}"));
                }
            }
            Value::Array(_) | Value::Object(_) => {
                redactor.redact_json(v, &format!("metadata.{key}"), redacted)
            }
            _ => {}
        }
    }
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
    if name != "hook_execution_complete" || !crate::hooks::EVENTS.iter().any(|e| e.name == event) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otel::{ResourceLogs, ScopeLogs, proto};
    use serde_json::json;

    fn fixture(name: &str) -> Export {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/otel")
            .join(name);
        proto::decode(&std::fs::read(path).unwrap()).unwrap()
    }

    fn keep(on: bool) -> Keep {
        Keep {
            prompts: on,
            tool_input: on,
            tool_response: on,
            messages: on,
            max_bytes: 4096,
        }
    }

    /// Maps `export` for uid 1001 (`alice@example.com`) with every copy kept or none.
    fn map_all(export: Export, kept: bool) -> Mapped {
        let redactor = Redactor::builtin();
        let compliance = ComplianceRules::default_rules();
        let settings = Settings {
            host: "devbox",
            redactor: &redactor,
            compliance: &compliance,
            keep: keep(kept),
        };
        let sender = Sender {
            uid: 1001,
            user_id: "alice@example.com".into(),
            identity: Map::new(),
        };
        let mut n = 0;
        map_export(
            export,
            &settings,
            &sender,
            "2026-12-03T07:00:00.000Z",
            || {
                n += 1;
                format!("id-{n}")
            },
        )
    }

    fn by_event<'a>(m: &'a Mapped, name: &str) -> Vec<&'a Map<String, Value>> {
        m.events
            .iter()
            .filter(|e| e["metadata"]["source_event"] == format!("otel:{name}").as_str())
            .collect()
    }

    /// One record with the given body and attributes.
    fn record(body: &str, attrs: Value) -> Export {
        let attributes = attrs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: match v {
                    Value::String(s) => AnyValue::String(s.clone()),
                    Value::Bool(b) => AnyValue::Bool(*b),
                    other => AnyValue::Int(other.as_i64().unwrap()),
                },
            })
            .collect();
        Export {
            resources: vec![ResourceLogs {
                attributes: vec![],
                scopes: vec![ScopeLogs {
                    records: vec![LogRecord {
                        body: Some(AnyValue::String(body.into())),
                        attributes,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }],
        }
    }

    #[test]
    fn refused_tool_calls_become_denied_events_with_the_hooks_keys() {
        let export = fixture("denied.pb");
        let total = export.records();
        let m = map_all(export, false);
        assert_eq!((m.events.len(), m.refused), (total, 0));
        let denied: Vec<_> = m
            .events
            .iter()
            .filter(|e| e["outcome"] == "denied")
            .collect();
        let want = [
            ("toolu_write", "file_write", "Write"),
            (
                "toolu_rm",
                "tool_execution",
                "rm -rf /tmp/otelcap/project/build",
            ),
        ];
        assert_eq!(denied.len(), want.len(), "{denied:?}");
        for (e, (id, action, resource)) in denied.iter().zip(want) {
            assert_eq!(e["metadata"]["tool_use_id"], id);
            assert_eq!(e["action"], action);
            assert_eq!(e["resource"], resource);
            assert_eq!(e["metadata"]["decision"], "reject");
            assert_eq!(e["metadata"]["source"], "config");
            assert_eq!(
                e["metadata"]["prompt_id"],
                "7db4b7be-dabf-45e0-aa78-d51f67f01351"
            );
            assert_eq!(e["session_id"], "6c83aebe-3502-47bc-87e0-2faf897faff8");
            assert_eq!(e["user_id"], "alice@example.com");
            assert_eq!(e["metadata"]["uid"], 1001);
        }
        for e in &m.events {
            assert_eq!(e["session_id"], "6c83aebe-3502-47bc-87e0-2faf897faff8");
            assert!(crate::audit::schema::OUTCOMES.contains(&e["outcome"].as_str().unwrap()));
        }
        let accepted = by_event(&m, "tool_decision");
        assert!(
            accepted
                .iter()
                .any(|e| e["outcome"] == "success" && e["metadata"]["tool_use_id"] == "toolu_read")
        );
        let results = by_event(&m, "tool_result");
        let read = results
            .iter()
            .find(|e| e["metadata"]["tool_use_id"] == "toolu_read")
            .unwrap();
        assert_eq!(read["action"], "file_read");
        assert_eq!(read["resource"], "/tmp/otelcap/project/notes.txt");
        assert_eq!(read["metadata"]["duration_ms"], 40);
        assert_eq!(read["metadata"]["success"], true);
        // The digest of the tool's input is the one the hook event of the same call has.
        let mut hook = Map::new();
        content::digest_into(
            &mut hook,
            "input",
            &json!({"file_path": "/tmp/otelcap/project/notes.txt"}),
        );
        assert_eq!(read["metadata"]["input_sha256"], hook["input_sha256"]);
        let api = by_event(&m, "api_request");
        assert_eq!(api[0]["action"], "api_call");
        assert_eq!(api[0]["resource"], "claude-opus-5-5");
        assert_eq!(api[0]["metadata"]["cost_usd"], 0.00044);
        assert_eq!(by_event(&m, "user_prompt")[0]["action"], "user_prompt");
        assert!(m.hook_problems.is_empty());
    }

    #[test]
    fn content_stays_out_unless_kept() {
        let sentinels = ["prompt-sentinel", "All done here.", "Reading."];
        for name in ["content-1.pb", "content-2.pb"] {
            let m = map_all(fixture(name), false);
            let text = serde_json::to_string(&m.events).unwrap();
            for s in sentinels {
                assert!(!text.contains(s), "{name}: {s} in clear");
            }
        }
        let m = map_all(fixture("content-1.pb"), false);
        let prompt = &by_event(&m, "user_prompt")[0]["metadata"];
        let (sha, bytes) = (
            prompt["input_sha256"].clone(),
            prompt["input_bytes"].clone(),
        );
        assert_eq!(bytes, "Do the thing prompt-sentinel".len());
        assert_eq!(
            sha,
            crate::audit::sha256_hex(b"Do the thing prompt-sentinel")
        );
        let kept = map_all(fixture("content-1.pb"), true);
        let prompt = &by_event(&kept, "user_prompt")[0]["metadata"];
        assert_eq!(prompt["prompt"], "Do the thing prompt-sentinel");
        assert_eq!(prompt["input_sha256"], sha);
    }

    #[test]
    fn failed_and_cancelled_runs_of_our_hook_points_are_problems() {
        let mut problems = Vec::new();
        for name in ["content-1.pb", "content-2.pb"] {
            let m = map_all(fixture(name), false);
            for e in by_event(&m, "hook_execution_complete") {
                let bad = e["metadata"]["num_cancelled"].as_u64().unwrap()
                    + e["metadata"]["num_non_blocking_error"].as_u64().unwrap();
                assert_eq!(e["outcome"], if bad > 0 { "failure" } else { "success" });
                assert_eq!(
                    e["metadata"].get("auditship_hook_problem").is_some(),
                    bad > 0
                );
            }
            problems.extend(m.hook_problems);
        }
        let kinds: std::collections::BTreeSet<(&str, &str)> = problems
            .iter()
            .map(|p| (p.hook_event.as_str(), p.kind))
            .collect();
        assert!(kinds.contains(&("PreToolUse", "failed")), "{problems:?}");
        assert!(
            kinds.contains(&("PostToolUse", "cancelled")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .all(|p| p.session_id == "c9f22cd3-acae-43d9-b5b5-f10215df4894")
        );
        // A hook point auditship does not install for is not ours to report.
        let other = record(
            "claude_code.hook_execution_complete",
            json!({"hook_event": "WorktreeCreate", "num_cancelled": "1", "num_non_blocking_error": "0"}),
        );
        let m = map_all(other, false);
        assert!(m.hook_problems.is_empty());
        assert_eq!(m.events[0]["outcome"], "failure");
    }

    #[test]
    fn records_that_are_not_claude_codes_are_refused() {
        let mut export = record("claude_code.user_prompt", json!({"prompt.id": "p"}));
        let scope = &mut export.resources[0].scopes[0];
        for body in [
            Some(AnyValue::String("hello".into())),
            Some(AnyValue::Int(1)),
            None,
        ] {
            scope.records.push(LogRecord {
                body,
                ..Default::default()
            });
        }
        scope.records.push(LogRecord {
            event_name: "claude_code.tool_result".into(),
            ..Default::default()
        });
        scope.records.push(LogRecord {
            body: Some(AnyValue::String("claude_code.".into())),
            ..Default::default()
        });
        let m = map_all(export, false);
        assert_eq!((m.events.len(), m.refused), (2, 4));
        assert_eq!(m.events[1]["metadata"]["source_event"], "otel:tool_result");
    }

    #[test]
    fn claims_of_identity_and_secrets() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let params = json!({"full_command": format!("curl -H 'Authorization: Bearer {jwt}' https://x"), "bash_command": "curl"}).to_string();
        let export = record(
            "claude_code.tool_decision",
            json!({
                "session.id": "s-1", "prompt.id": "p-1", "tool_name": "Bash", "tool_use_id": "t-1",
                "decision": "accept", "source": "user_temporary",
                "user.email": "dev@example.com", "organization.id": "org-1",
                "tool_parameters": params, "future.attribute": format!("token={jwt}"),
            }),
        );
        for kept in [false, true] {
            let m = map_all(export.clone(), kept);
            let e = &m.events[0];
            let text = Value::Object(e.clone()).to_string();
            assert!(!text.contains("dozjgNry"), "{text}");
            assert_eq!(e["identity"]["email"], "dev@example.com");
            assert_eq!(e["identity"]["organization_id"], "org-1");
            assert_eq!(
                e["user_id"], "alice@example.com",
                "the kernel's user, not the claim"
            );
            assert_eq!(e["metadata"]["source"], "user_temporary");
            assert!(
                e["resource"]
                    .as_str()
                    .unwrap()
                    .starts_with("curl -H 'Authorization: Bearer [REDACTED")
            );
            assert!(
                e["metadata"]["redacted"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("resource"))
            );
        }
    }

    #[test]
    fn long_values_kept_in_clear_are_digested() {
        let long = "m".repeat(MAX_CLEAR_BYTES + 1);
        let export = record(
            "claude_code.api_request",
            json!({"model": long, "user.email": long, "prompt.id": long, "duration_ms": long}),
        );
        let m = map_all(export, false);
        let e = Value::Object(m.events[0].clone());
        assert!(!e.to_string().contains(&long));
        let digest =
            json!({"sha256": crate::audit::sha256_hex(long.as_bytes()), "bytes": long.len()});
        for at in [
            "/metadata/model",
            "/metadata/prompt_id",
            "/metadata/duration_ms",
            "/identity/email",
        ] {
            assert_eq!(e.pointer(at), Some(&digest), "{at}");
        }
    }

    #[test]
    fn values_as_json() {
        assert_eq!(to_json(AnyValue::Bytes(vec![0, 255])), json!("00ff"));
        assert_eq!(to_json(AnyValue::Double(f64::NAN)), json!("NaN"));
        assert_eq!(
            to_json(AnyValue::KvList(vec![KeyValue {
                key: "a".into(),
                value: AnyValue::Empty
            }])),
            json!({"a": null})
        );
        assert_eq!(number(json!("12")), json!(12));
        assert_eq!(number(json!("1.5")), json!(1.5));
        assert_eq!(number(json!("x")), json!("x"));
    }
}
