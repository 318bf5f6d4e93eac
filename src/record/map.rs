//! From a Claude Code hook payload to an unsealed v1 event (FORMAT.md's table).
//!
//! Pure: the caller supplies the clock reading, the event id, identity and settings.
//! Unknown hook events and fields are kept (under `metadata.extra`), never rejected.
//! Every string that is kept passes through the redactor first; prompts, tool inputs
//! and tool responses are kept as SHA-256 and length unless configured otherwise.

use crate::audit::{canon, json};
use crate::record::compliance::ComplianceRules;
use crate::redact::Redactor;
use serde_json::{Map, Value};

/// Payload fields that go to `metadata` under the same name.
const METADATA_FIELDS: [&str; 11] = [
    "tool_name",
    "tool_use_id",
    "prompt_id",
    "cwd",
    "permission_mode",
    "agent_id",
    "agent_type",
    "model",
    "duration_ms",
    "error",
    "transcript_path",
];

/// Payload fields handled elsewhere (never copied to `extra`).
const CONSUMED: [&str; 5] = [
    "session_id",
    "hook_event_name",
    "tool_input",
    "tool_response",
    "prompt",
];

/// What the mapping needs besides the payload.
pub struct Context<'a> {
    pub id: String,
    pub timestamp: String,
    pub user_id: String,
    pub host: String,
    /// `$CLAUDE_PROJECT_DIR`, when the hook runs with one.
    pub project_dir: Option<String>,
    pub identity: &'a Map<String, Value>,
    pub redactor: &'a Redactor,
    pub compliance: &'a ComplianceRules,
    pub keep_prompts: bool,
    pub keep_tool_input: bool,
    pub keep_tool_response: bool,
    pub max_kept_bytes: usize,
}

/// `action` and `outcome` for a hook event (and tool, for tool events).
pub fn classify(hook_event: &str, tool_name: Option<&str>) -> (&'static str, &'static str) {
    let by_tool = || tool_action(tool_name.unwrap_or(""));
    match hook_event {
        "SessionStart" | "Setup" => ("session_start", "success"),
        "SessionEnd" => ("session_end", "success"),
        "UserPromptSubmit" | "UserPromptExpansion" => ("user_prompt", "success"),
        "PreToolUse" => (by_tool(), "attempted"),
        "PostToolUse" => (by_tool(), "success"),
        "PostToolUseFailure" => (by_tool(), "failure"),
        "PermissionDenied" => (by_tool(), "denied"),
        "PermissionRequest" => ("permission_change", "attempted"),
        "ConfigChange" => ("config_change", "success"),
        _ => ("agent_event", "success"),
    }
}

/// The action a tool's use stands for.
pub fn tool_action(tool: &str) -> &'static str {
    match tool {
        "Read" | "Glob" | "Grep" | "LS" | "NotebookRead" => "file_read",
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "file_write",
        "WebFetch" | "WebSearch" => "api_call",
        _ => "tool_execution",
    }
}

/// Builds the event (without `seq`, `prev_hash`, `hash`, `hmac`, `kid`).
pub fn map_hook(payload: Value, cx: &Context<'_>) -> Map<String, Value> {
    let mut payload = match payload {
        Value::Object(m) => m,
        other => {
            // Not an object: keep it whole as evidence.
            let mut m = Map::new();
            m.insert("payload".into(), other);
            m
        }
    };
    let hook_event =
        take_string(&mut payload, "hook_event_name").unwrap_or_else(|| "unknown".into());
    let session_id = take_string(&mut payload, "session_id").unwrap_or_else(|| "unknown".into());
    let tool_name = payload
        .get("tool_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (action, outcome) = classify(&hook_event, tool_name.as_deref());

    let mut redacted = Vec::new();
    let mut meta = Map::new();
    meta.insert("source_event".into(), Value::String(hook_event.clone()));
    for field in METADATA_FIELDS {
        if let Some(mut v) = payload.remove(field) {
            cx.redactor
                .redact_json(&mut v, &format!("metadata.{field}"), &mut redacted);
            meta.insert(field.into(), v);
        }
    }
    if let Some(dir) = &cx.project_dir {
        meta.insert("project_dir".into(), Value::String(dir.clone()));
    }

    let tool_input = payload.remove("tool_input");
    let resource = resource_of(
        &hook_event,
        tool_input.as_ref(),
        tool_name.as_deref(),
        &payload,
        &meta,
    );
    let resource = match cx.redactor.redact_str(&resource) {
        std::borrow::Cow::Borrowed(_) => resource,
        std::borrow::Cow::Owned(clean) => {
            redacted.push("resource".into());
            clean
        }
    };

    if let Some(input) = tool_input {
        digest_into(&mut meta, "input", &input);
        if cx.keep_tool_input {
            keep_copy(&mut meta, "input", input, cx, &mut redacted);
        }
    }
    if let Some(prompt) = payload.remove("prompt") {
        digest_into(&mut meta, "input", &prompt);
        if cx.keep_prompts {
            keep_copy(&mut meta, "prompt", prompt, cx, &mut redacted);
        }
    }
    if let Some(response) = payload.remove("tool_response") {
        digest_into(&mut meta, "response", &response);
        if cx.keep_tool_response {
            keep_copy(&mut meta, "response", response, cx, &mut redacted);
        }
    }
    for k in CONSUMED {
        payload.remove(k);
    }
    if !payload.is_empty() {
        let mut extra = Value::Object(payload);
        cx.redactor
            .redact_json(&mut extra, "metadata.extra", &mut redacted);
        meta.insert("extra".into(), extra);
    }
    if !redacted.is_empty() {
        meta.insert(
            "redacted".into(),
            Value::Array(redacted.into_iter().map(Value::String).collect()),
        );
    }
    base_event(cx, &session_id, action, &resource, outcome, meta)
}

/// The members every event has, around the given metadata.
pub fn base_event(
    cx: &Context<'_>,
    session_id: &str,
    action: &str,
    resource: &str,
    outcome: &str,
    metadata: Map<String, Value>,
) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("v".into(), Value::from(1));
    e.insert("id".into(), Value::String(cx.id.clone()));
    e.insert("timestamp".into(), Value::String(cx.timestamp.clone()));
    e.insert("user_id".into(), Value::String(cx.user_id.clone()));
    e.insert("session_id".into(), Value::String(session_id.into()));
    e.insert("host".into(), Value::String(cx.host.clone()));
    e.insert("action".into(), Value::String(action.into()));
    e.insert("resource".into(), Value::String(resource.into()));
    e.insert("outcome".into(), Value::String(outcome.into()));
    e.insert("metadata".into(), Value::Object(metadata));
    let tags = cx.compliance.tags_for(resource);
    if !tags.is_empty() {
        e.insert(
            "compliance_tags".into(),
            Value::Array(tags.into_iter().map(Value::String).collect()),
        );
    }
    if !cx.identity.is_empty() {
        e.insert("identity".into(), Value::Object(cx.identity.clone()));
    }
    make_canonicalizable(&mut Value::Object(std::mem::take(&mut e))).unwrap_or_default()
}

/// The file path, URL, search query, command line or tool name the event touched.
fn resource_of(
    hook_event: &str,
    tool_input: Option<&Value>,
    tool_name: Option<&str>,
    payload: &Map<String, Value>,
    meta: &Map<String, Value>,
) -> String {
    const PREFERENCE: [&str; 7] = [
        "file_path",
        "notebook_path",
        "path",
        "url",
        "query",
        "pattern",
        "command",
    ];
    if let Some(Value::Object(input)) = tool_input {
        for key in PREFERENCE {
            if let Some(s) = input
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                return s.to_owned();
            }
        }
    }
    if let Some(tool) = tool_name {
        return tool.to_owned();
    }
    for key in ["file_path", "path"] {
        if let Some(s) = payload.get(key).and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    meta.get("cwd")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| hook_event.to_owned())
}

fn take_string(m: &mut Map<String, Value>, key: &str) -> Option<String> {
    match m.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            // Keep an oddly typed field as evidence rather than lose it.
            m.insert(format!("{key}_raw"), other);
            None
        }
        None => None,
    }
}

/// `<prefix>_sha256` and `<prefix>_bytes` of a value: of the UTF-8 text for strings,
/// of the RFC 8785 canonical form for anything else (so an auditor holding the
/// transcript can recompute it).
fn digest_into(meta: &mut Map<String, Value>, prefix: &str, v: &Value) {
    let bytes = match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => canonical_bytes(other),
    };
    meta.insert(
        format!("{prefix}_sha256"),
        Value::String(crate::audit::sha256_hex(&bytes)),
    );
    meta.insert(format!("{prefix}_bytes"), Value::from(bytes.len()));
}

/// Canonical bytes of a serde value (falls back to serde's text for the rare value
/// that has no canonical form).
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    let text = v.to_string();
    let mut out = Vec::with_capacity(text.len());
    match json::parse(&text) {
        Ok(parsed) if canon::write_value(&parsed, &mut out).is_ok() => out,
        _ => text.into_bytes(),
    }
}

/// A redacted copy of `v` cut to `max_kept_bytes` of text.
fn keep_copy(
    meta: &mut Map<String, Value>,
    name: &str,
    mut v: Value,
    cx: &Context<'_>,
    redacted: &mut Vec<String>,
) {
    let path = format!("metadata.{name}");
    cx.redactor.redact_json(&mut v, &path, redacted);
    let kept = match v {
        Value::String(s) => truncate(s, cx.max_kept_bytes),
        other => truncate(other.to_string(), cx.max_kept_bytes),
    };
    meta.insert(name.into(), Value::String(kept));
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("…[truncated]");
    }
    s
}

/// Replaces what RFC 8785 cannot represent (integers beyond ±2^53, which serde keeps
/// exactly) by their decimal text, so any payload can be sealed.
pub fn make_canonicalizable(v: &mut Value) -> Option<Map<String, Value>> {
    fn fix(v: &mut Value) {
        match v {
            Value::Number(n) if n.is_u64() || n.is_i64() => {
                let big = n
                    .as_u64()
                    .map(|u| u > json::MAX_SAFE_INTEGER)
                    .or_else(|| {
                        n.as_i64()
                            .map(|i| i.unsigned_abs() > json::MAX_SAFE_INTEGER)
                    })
                    .unwrap_or(false);
                if big {
                    *v = Value::String(n.to_string());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(fix),
            Value::Object(m) => m.values_mut().for_each(fix),
            _ => {}
        }
    }
    fix(v);
    match std::mem::take(v) {
        Value::Object(m) => Some(m),
        _ => None,
    }
}
