//! From a Claude Code hook payload to an unsealed v1 event (FORMAT.md's table).
//!
//! Pure: the caller supplies the clock reading, the event id, identity and settings.
//! Unknown hook events and fields are kept (under `metadata.extra`), never rejected.
//! Every string that is kept passes through the redactor first; content (prompts,
//! tool inputs and responses, errors, model and notification text: [`content`]) is
//! kept as SHA-256 and length unless configured otherwise, and `resource` is cut to
//! [`MAX_RESOURCE_BYTES`].

use crate::audit::json;
use crate::compliance::ComplianceRules;
use crate::record::content::{self, Keep, Sink};
use crate::redact::Redactor;
use serde_json::{Map, Value};

pub use content::canonical_bytes;

/// Payload fields that go to `metadata` under the same name.
const METADATA_FIELDS: [&str; 10] = [
    "tool_name",
    "tool_use_id",
    "prompt_id",
    "cwd",
    "permission_mode",
    "agent_id",
    "agent_type",
    "model",
    "duration_ms",
    "transcript_path",
];

/// `resource` is cut to this many bytes (`…[truncated]` included); the full value's
/// SHA-256 and length are then in `metadata.resource_sha256` and `resource_bytes`.
pub const MAX_RESOURCE_BYTES: usize = 1024;

/// The unknown fields of a payload (`metadata.extra`), once their free text is
/// digested, are kept up to this size of JSON text; past it only their digest is
/// (`metadata.extra_sha256`, `extra_bytes`), so no payload makes an unbounded event.
pub const MAX_EXTRA_BYTES: usize = 16 * 1024;

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
    pub keep_messages: bool,
    pub max_kept_bytes: usize,
}

impl Context<'_> {
    fn keep(&self) -> Keep {
        Keep {
            prompts: self.keep_prompts,
            tool_input: self.keep_tool_input,
            tool_response: self.keep_tool_response,
            messages: self.keep_messages,
            max_bytes: self.max_kept_bytes,
        }
    }
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
    let session_id = redacted_text(session_id, "session_id", cx.redactor, &mut redacted);
    let stored_event = redacted_text(
        hook_event.clone(),
        "metadata.source_event",
        cx.redactor,
        &mut redacted,
    );
    meta.insert("source_event".into(), Value::String(stored_event));
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

    let resource = resource_of(
        &hook_event,
        payload.get("tool_input"),
        tool_name.as_deref(),
        &payload,
        &meta,
    );
    let resource = bounded_resource(resource, cx.redactor, &mut meta, &mut redacted);

    let keep = cx.keep();
    let mut sink = Sink {
        keep: &keep,
        redactor: cx.redactor,
        redacted: &mut redacted,
    };
    for f in content::TOP_LEVEL {
        if let Some(v) = payload.remove(f.name) {
            sink.store(&mut meta, "metadata", f, v);
        }
    }
    for (name, fields) in content::LISTS {
        if let Some(v) = payload.remove(*name) {
            let list = sink.store_list(v, &format!("metadata.{name}"), fields);
            meta.insert((*name).into(), list);
        }
    }
    if !payload.is_empty() {
        extra_into(&mut meta, payload, cx.redactor, &mut redacted);
    }
    if !redacted.is_empty() {
        // Paths are made of the payload's keys: clean already, redacted once more as
        // joined text.
        let paths = redacted
            .into_iter()
            .map(|p| Value::String(cx.redactor.redact_str(&p).into_owned()));
        meta.insert("redacted".into(), Value::Array(paths.collect()));
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

/// `resource` redacted and cut to [`MAX_RESOURCE_BYTES`]; when cut, the full
/// value's digest goes to `metadata.resource_sha256` and `resource_bytes`.
pub fn bounded_resource(
    resource: String,
    redactor: &Redactor,
    meta: &mut Map<String, Value>,
    redacted: &mut Vec<String>,
) -> String {
    if resource.len() > MAX_RESOURCE_BYTES {
        content::digest_into(meta, "resource", &Value::String(resource.clone()));
    }
    let resource = redacted_text(resource, "resource", redactor, redacted);
    content::cut_redacted(resource, MAX_RESOURCE_BYTES, redactor)
}

/// `text` redacted; its `path` noted in `redacted` when that changed it.
pub fn redacted_text(
    text: String,
    path: &str,
    redactor: &Redactor,
    redacted: &mut Vec<String>,
) -> String {
    match redactor.redact_str(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(clean) => {
            redacted.push(path.into());
            clean
        }
    }
}

/// The payload's remaining (unknown) fields as `metadata.extra`: free text digested
/// (paths and URLs kept), then redacted; only digested whole past
/// [`MAX_EXTRA_BYTES`].
pub fn extra_into(
    meta: &mut Map<String, Value>,
    mut fields: Map<String, Value>,
    redactor: &Redactor,
    redacted: &mut Vec<String>,
) {
    let json_len = |m: &Map<String, Value>| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len());
    // Keep the original only when it could still be too large once minimised (a
    // cheap bound first: most payloads are far below it).
    let could_be_large = json_bound(&fields) > MAX_EXTRA_BYTES;
    let original = (could_be_large && json_len(&fields) > MAX_EXTRA_BYTES).then(|| fields.clone());
    content::minimise_members(&mut fields, &content::PATH_FIELDS);
    if let Some(original) = original
        && json_len(&fields) > MAX_EXTRA_BYTES
    {
        content::digest_into(meta, "extra", &Value::Object(original));
        return;
    }
    let mut extra = Value::Object(fields);
    redactor.redact_json(&mut extra, "metadata.extra", redacted);
    meta.insert("extra".into(), extra);
}

/// At least the length of the JSON text of `m` (each string as if every byte took a
/// six-byte escape), without writing it.
fn json_bound(m: &Map<String, Value>) -> usize {
    fn value(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len() * 6 + 2,
            Value::Array(items) => 2 + items.iter().map(|i| value(i) + 1).sum::<usize>(),
            Value::Object(m) => json_bound(m),
            // null, booleans and numbers: at most 24 characters.
            _ => 24,
        }
    }
    2 + m
        .iter()
        .map(|(k, v)| k.len() * 6 + 4 + value(v))
        .sum::<usize>()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::content::Kind;
    use serde_json::json;

    /// Content that must never be stored in clear by default.
    const SENTINEL: &str = "SENTINEL-c0ntent 7d1f: the text of a file Claude read";

    fn sentinel() -> Value {
        Value::String(SENTINEL.into())
    }

    /// Maps `payload` with the given settings; returns the event and its JSON text.
    fn map_with(payload: Value, keep: &[Kind], max_kept_bytes: usize) -> (Value, String) {
        let redactor = Redactor::builtin();
        let compliance = ComplianceRules::default_rules();
        let identity = Map::new();
        let cx = Context {
            id: "id-1".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            user_id: "dev".into(),
            host: "box".into(),
            project_dir: None,
            identity: &identity,
            redactor: &redactor,
            compliance: &compliance,
            keep_prompts: keep.contains(&Kind::Prompt),
            keep_tool_input: keep.contains(&Kind::ToolInput),
            keep_tool_response: keep.contains(&Kind::ToolResponse),
            keep_messages: keep.contains(&Kind::Message),
            max_kept_bytes,
        };
        let e = Value::Object(map_hook(payload, &cx));
        let text = e.to_string();
        (e, text)
    }

    fn payload(event: &str, members: Value) -> Value {
        let mut p = json!({"session_id": "s-1", "cwd": "/home/dev/app", "hook_event_name": event,
                           "transcript_path": "/home/dev/.claude/t.jsonl"});
        for (k, v) in members.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    }

    fn digest_of(v: &Value) -> (String, usize) {
        let mut m = Map::new();
        content::digest_into(&mut m, "x", v);
        (
            m["x_sha256"].as_str().unwrap().to_owned(),
            m["x_bytes"].as_u64().unwrap() as usize,
        )
    }

    /// A content field holding the sentinel.
    struct Case {
        event: &'static str,
        members: Value,
        /// Where the value holding the sentinel is in the payload.
        value_at: &'static str,
        /// Where its `_sha256` is in the event (`_bytes` is next to it).
        sha_at: &'static str,
        /// Which setting keeps a copy, and where (`None`: digest only).
        kept: Option<(Kind, &'static str)>,
    }

    fn cases() -> Vec<Case> {
        let s = sentinel;
        let case = |event, members, value_at, sha_at, kept| Case {
            event,
            members,
            value_at,
            sha_at,
            kept,
        };
        use Kind::*;
        vec![
            case(
                "PostToolBatch",
                json!({"tool_calls": [{"tool_name": "Read", "tool_use_id": "t1", "tool_input": {"file_path": "/a"}, "tool_response": {"file": {"content": s()}}}]}),
                "/tool_calls/0/tool_response",
                "/metadata/tool_calls/0/response_sha256",
                Some((ToolResponse, "/metadata/tool_calls/0/response")),
            ),
            case(
                "PostToolBatch",
                json!({"tool_calls": [{"tool_name": "Write", "tool_use_id": "t1", "tool_input": {"file_path": "/a", "content": s()}}]}),
                "/tool_calls/0/tool_input",
                "/metadata/tool_calls/0/input_sha256",
                Some((ToolInput, "/metadata/tool_calls/0/input")),
            ),
            case(
                "PostToolUse",
                json!({"tool_name": "Read", "tool_input": {"file_path": "/a"}, "tool_response": {"content": s()}}),
                "/tool_response",
                "/metadata/response_sha256",
                Some((ToolResponse, "/metadata/response")),
            ),
            case(
                "PreToolUse",
                json!({"tool_name": "Write", "tool_input": {"file_path": "/a", "content": s()}}),
                "/tool_input",
                "/metadata/input_sha256",
                Some((ToolInput, "/metadata/input")),
            ),
            case(
                "PostToolUseFailure",
                json!({"tool_name": "Bash", "tool_input": {"command": "make"}, "error": s()}),
                "/error",
                "/metadata/error_sha256",
                Some((ToolResponse, "/metadata/error")),
            ),
            case(
                "StopFailure",
                json!({"error": "rate_limit", "error_details": s()}),
                "/error_details",
                "/metadata/error_details_sha256",
                Some((ToolResponse, "/metadata/error_details")),
            ),
            case(
                "UserPromptSubmit",
                json!({"prompt": s()}),
                "/prompt",
                "/metadata/input_sha256",
                Some((Prompt, "/metadata/prompt")),
            ),
            case(
                "UserPromptSubmit",
                json!({"prompt": "hi", "session_title": s()}),
                "/session_title",
                "/metadata/session_title_sha256",
                Some((Prompt, "/metadata/session_title")),
            ),
            case(
                "UserPromptExpansion",
                json!({"expansion_type": "slash_command", "command_name": "review", "command_args": s(), "prompt": "/review"}),
                "/command_args",
                "/metadata/command_args_sha256",
                Some((Prompt, "/metadata/command_args")),
            ),
            case(
                "PreCompact",
                json!({"trigger": "manual", "custom_instructions": s()}),
                "/custom_instructions",
                "/metadata/custom_instructions_sha256",
                Some((Prompt, "/metadata/custom_instructions")),
            ),
            case(
                "ElicitationResult",
                json!({"mcp_server_name": "db", "action": "accept", "content": {"answer": s()}}),
                "/content",
                "/metadata/content_sha256",
                Some((Prompt, "/metadata/content")),
            ),
            case(
                "Stop",
                json!({"stop_hook_active": false, "last_assistant_message": s()}),
                "/last_assistant_message",
                "/metadata/last_assistant_message_sha256",
                Some((Message, "/metadata/last_assistant_message")),
            ),
            case(
                "SubagentStop",
                json!({"agent_id": "a1", "agent_transcript_path": "/t", "agent_type": "x", "stop_hook_active": false, "last_assistant_message": s()}),
                "/last_assistant_message",
                "/metadata/last_assistant_message_sha256",
                Some((Message, "/metadata/last_assistant_message")),
            ),
            case(
                "StopFailure",
                json!({"error": "overloaded", "last_assistant_message": s()}),
                "/last_assistant_message",
                "/metadata/last_assistant_message_sha256",
                Some((Message, "/metadata/last_assistant_message")),
            ),
            case(
                "PostCompact",
                json!({"trigger": "auto", "compact_summary": s()}),
                "/compact_summary",
                "/metadata/compact_summary_sha256",
                Some((Message, "/metadata/compact_summary")),
            ),
            case(
                "Elicitation",
                json!({"mcp_server_name": "db", "message": s()}),
                "/message",
                "/metadata/message_sha256",
                Some((Message, "/metadata/message")),
            ),
            case(
                "Elicitation",
                json!({"mcp_server_name": "db", "message": "Pick", "requested_schema": {"type": "object", "properties": {"x": {"description": s()}}}}),
                "/requested_schema",
                "/metadata/requested_schema_sha256",
                Some((Message, "/metadata/requested_schema")),
            ),
            case(
                "Notification",
                json!({"notification_type": "idle", "message": s()}),
                "/message",
                "/metadata/message_sha256",
                Some((Message, "/metadata/message")),
            ),
            case(
                "Notification",
                json!({"notification_type": "idle", "message": "m", "title": s()}),
                "/title",
                "/metadata/title_sha256",
                Some((Message, "/metadata/title")),
            ),
            case(
                "TaskCreated",
                json!({"task_id": "1", "task_subject": s()}),
                "/task_subject",
                "/metadata/task_subject_sha256",
                Some((Message, "/metadata/task_subject")),
            ),
            case(
                "TaskCompleted",
                json!({"task_id": "1", "task_subject": "x", "task_description": s()}),
                "/task_description",
                "/metadata/task_description_sha256",
                Some((Message, "/metadata/task_description")),
            ),
            case(
                "MessageDisplay",
                json!({"turn_id": "t", "message_id": "m", "index": 0, "final": true, "delta": s()}),
                "/delta",
                "/metadata/delta_sha256",
                Some((Message, "/metadata/delta")),
            ),
            case(
                "PermissionDenied",
                json!({"tool_name": "Bash", "tool_input": {"command": "rm -rf /"}, "reason": s()}),
                "/reason",
                "/metadata/reason_sha256",
                Some((Message, "/metadata/reason")),
            ),
            case(
                "Stop",
                json!({"stop_hook_active": false, "background_tasks": [{"id": "b1", "type": "shell", "status": "running", "description": "d", "command": s()}]}),
                "/background_tasks/0/command",
                "/metadata/background_tasks/0/command_sha256",
                Some((ToolInput, "/metadata/background_tasks/0/command")),
            ),
            case(
                "Stop",
                json!({"stop_hook_active": false, "background_tasks": [{"id": "b1", "type": "shell", "status": "running", "description": s()}]}),
                "/background_tasks/0/description",
                "/metadata/background_tasks/0/description_sha256",
                Some((Message, "/metadata/background_tasks/0/description")),
            ),
            case(
                "SubagentStop",
                json!({"session_crons": [{"id": "c1", "schedule": "0 9 * * 1-5", "recurring": true, "prompt": s()}]}),
                "/session_crons/0/prompt",
                "/metadata/session_crons/0/prompt_sha256",
                Some((Prompt, "/metadata/session_crons/0/prompt")),
            ),
            case(
                "SomeFutureEvent",
                json!({"future_text": s()}),
                "/future_text",
                "/metadata/extra/future_text_sha256",
                None,
            ),
            case(
                "SomeFutureEvent",
                json!({"future": {"notes": [1, s()]}}),
                "/future/notes/1",
                "/metadata/extra/future/notes/1/sha256",
                None,
            ),
            case(
                "PermissionRequest",
                json!({"tool_name": "Bash", "tool_input": {"command": "ls"}, "permission_suggestions": [{"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": s()}]}]}),
                "/permission_suggestions/0/rules/0/ruleContent",
                "/metadata/extra/permission_suggestions/0/rules/0/ruleContent_sha256",
                None,
            ),
        ]
    }

    #[test]
    fn content_is_stored_as_digest_by_default() {
        for c in cases() {
            let p = payload(c.event, c.members.clone());
            let (sha, bytes) = digest_of(p.pointer(c.value_at).unwrap());
            let (e, text) = map_with(p, &[], 4096);
            assert!(!text.contains("SENTINEL"), "{}: {text}", c.event);
            assert_eq!(e.pointer(c.sha_at), Some(&Value::from(sha)), "{text}");
            let bytes_at = c.sha_at.replace("sha256", "bytes");
            assert_eq!(e.pointer(&bytes_at), Some(&Value::from(bytes)), "{text}");
        }
    }

    #[test]
    fn each_keep_setting_keeps_its_own_fields_only() {
        let all = [
            Kind::Prompt,
            Kind::ToolInput,
            Kind::ToolResponse,
            Kind::Message,
        ];
        for c in cases() {
            let Some((kind, copy_at)) = c.kept else {
                // Unknown fields: digested whatever is kept.
                let (_, text) = map_with(payload(c.event, c.members.clone()), &all, 4096);
                assert!(!text.contains("SENTINEL"), "{text}");
                continue;
            };
            let others: Vec<Kind> = all.iter().copied().filter(|k| *k != kind).collect();
            let (_, text) = map_with(payload(c.event, c.members.clone()), &others, 4096);
            assert!(!text.contains("SENTINEL"), "{kind:?} not kept: {text}");
            let (e, text) = map_with(payload(c.event, c.members.clone()), &[kind], 4096);
            let copy = e.pointer(copy_at).and_then(Value::as_str);
            assert!(copy.is_some_and(|s| s.contains(SENTINEL)), "{text}");
            assert!(e.pointer(c.sha_at).is_some(), "digest kept too: {text}");
        }
    }

    /// Every string and key of the event: redacting it again changes nothing.
    fn assert_clean(v: &Value, redactor: &Redactor) {
        match v {
            Value::String(s) => assert_eq!(redactor.redact_str(s), s.as_str(), "{s}"),
            Value::Array(items) => items.iter().for_each(|i| assert_clean(i, redactor)),
            Value::Object(m) => m.iter().for_each(|(k, i)| {
                assert_eq!(redactor.redact_str(k), k.as_str(), "key {k}");
                assert_clean(i, redactor);
            }),
            _ => {}
        }
    }

    #[test]
    fn session_id_and_event_name_are_redacted() {
        let p = json!({"session_id": "password=hunter2-Secret", "cwd": "/w",
                       "hook_event_name": "token=ghp_0123456789abcdefghijABCDEFGHIJ012345"});
        let (e, text) = map_with(p, &[], 4096);
        assert!(
            !text.contains("hunter2") && !text.contains("ghp_0123"),
            "{text}"
        );
        let redacted = e["metadata"]["redacted"].as_array().unwrap();
        assert!(redacted.contains(&json!("session_id")), "{text}");
        assert!(redacted.contains(&json!("metadata.source_event")), "{text}");
    }

    #[test]
    fn keys_holding_secrets_are_renamed_everywhere() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        let members = json!({
            "tool_name": "mcp__x__y",
            "tool_input": {format!("Bearer {jwt}"): 1, "x password": "hunter2-Secret", "plain": "v"},
            "unknown_field": {format!("Bearer {jwt}"): "a", format!("Bearer {jwt}x"): "b"},
        });
        for keep in [vec![], vec![Kind::ToolInput]] {
            let (e, text) = map_with(payload("PreToolUse", members.clone()), &keep, 4096);
            assert!(!text.contains(jwt) && !text.contains("hunter2"), "{text}");
            assert_clean(&e, &Redactor::builtin());
        }
        // Two keys that redact to the same text both stay, as evidence.
        let (e, _) = map_with(payload("PreToolUse", members), &[], 4096);
        let extra = e["metadata"]["extra"]["unknown_field"].as_object().unwrap();
        assert_eq!(extra.len(), 2, "{extra:?}");
    }

    #[test]
    fn cut_copies_stay_clean_and_bounded() {
        let redactor = Redactor::builtin();
        // The cut falls inside a marker, right after a key word, between a scheme and
        // its credential: at every cap the copy is clean and within the bound.
        let texts = [
            format!(
                "run it with password=S3cr3t-Passw0rd! and {}",
                "y".repeat(300)
            ),
            format!("using password: {} later", "Z".repeat(200)),
            "Authorization: 0222abcdef 9f8e7d6c5b4a39281706f5e4d3c2b1a0 done".to_owned(),
            format!(
                "curl -H 'Authorization: Bearer {}' https://x",
                "q".repeat(80)
            ),
        ];
        for text in &texts {
            for cap in [4, 16, 20, 24, 28, 32, 40, 48, 64, 200] {
                let p = payload("Stop", json!({ "last_assistant_message": text }));
                let (e, _) = map_with(p, &[Kind::Message], cap);
                let copy = e["metadata"]["last_assistant_message"].as_str().unwrap();
                assert!(
                    copy.len() <= cap + content::TRUNCATED.len(),
                    "{cap}: {copy}"
                );
                assert_eq!(redactor.redact_str(copy), copy, "{cap}: {copy}");
                assert!(!copy.contains("S3cr3t"), "{copy}");
            }
            let p = payload(
                "PreToolUse",
                json!({"tool_name": "Bash", "tool_input": {"command": text.repeat(60)}}),
            );
            let (e, _) = map_with(p, &[], 64);
            let resource = e["resource"].as_str().unwrap();
            assert!(resource.len() <= MAX_RESOURCE_BYTES, "{}", resource.len());
            assert_eq!(redactor.redact_str(resource), resource);
        }
    }

    #[test]
    fn kept_copies_are_redacted_and_cut() {
        let p = payload(
            "Stop",
            json!({"last_assistant_message": format!("deploy with password=S3cr3t-Passw0rd! then {}", "x".repeat(100))}),
        );
        let (e, text) = map_with(p, &[Kind::Message], 64);
        assert!(!text.contains("S3cr3t-Passw0rd!"), "{text}");
        let copy = e["metadata"]["last_assistant_message"].as_str().unwrap();
        assert!(copy.contains("[REDACTED:"), "{copy}");
        assert!(copy.ends_with(content::TRUNCATED), "{copy}");
        assert!(copy.len() <= 64 + content::TRUNCATED.len(), "{copy}");
        assert_eq!(
            e["metadata"]["redacted"],
            json!(["metadata.last_assistant_message"])
        );
    }

    #[test]
    fn codes_identifiers_and_paths_stay_in_clear() {
        let long_path = format!("/home/dev/My Projects/{}/CLAUDE.md", "deep/".repeat(20));
        for (event, members, at, expect) in [
            (
                "StopFailure",
                json!({"error": "rate_limit"}),
                "/metadata/error",
                json!("rate_limit"),
            ),
            (
                "SessionEnd",
                json!({"reason": "logout"}),
                "/metadata/reason",
                json!("logout"),
            ),
            (
                "PreCompact",
                json!({"custom_instructions": null}),
                "/metadata/custom_instructions",
                Value::Null,
            ),
            (
                "InstructionsLoaded",
                json!({"file_path": long_path, "memory_type": "Project"}),
                "/metadata/extra/file_path",
                json!(long_path),
            ),
            (
                "InstructionsLoaded",
                json!({"memory_type": "Project"}),
                "/metadata/extra/memory_type",
                json!("Project"),
            ),
            (
                "UserPromptSubmit",
                json!({"prompt": "p", "source": "user"}),
                "/metadata/extra/source",
                json!("user"),
            ),
            (
                "Elicitation",
                json!({"message": "m", "url": "https://example.com/form?id=1"}),
                "/metadata/extra/url",
                json!("https://example.com/form?id=1"),
            ),
            (
                "PostToolBatch",
                json!({"tool_calls": [{"tool_name": "Read", "tool_use_id": "toolu_01", "tool_input": {}}]}),
                "/metadata/tool_calls/0/tool_use_id",
                json!("toolu_01"),
            ),
            (
                "SomeFutureEvent",
                json!({"huge_id": 18446744073709551615u64}),
                "/metadata/extra/huge_id",
                json!("18446744073709551615"),
            ),
        ] {
            let (e, text) = map_with(payload(event, members), &[], 4096);
            assert_eq!(e.pointer(at), Some(&expect), "{text}");
        }
    }

    #[test]
    fn resource_is_bounded_with_the_full_value_digested() {
        let command = format!(
            "cat <<'EOF' > big.txt\n{}\nEOF",
            "line of text\n".repeat(200_000)
        );
        let p = payload(
            "PreToolUse",
            json!({"tool_name": "Bash", "tool_input": {"command": command}}),
        );
        let (e, text) = map_with(p, &[], 4096);
        let resource = e["resource"].as_str().unwrap();
        assert!(resource.len() <= MAX_RESOURCE_BYTES, "{}", resource.len());
        assert!(resource.starts_with("cat <<'EOF'") && resource.ends_with(content::TRUNCATED));
        let (sha, bytes) = digest_of(&Value::String(command));
        assert_eq!(e["metadata"]["resource_sha256"], sha);
        assert_eq!(e["metadata"]["resource_bytes"], bytes);
        assert!(text.len() < 4 * 1024, "event of {} bytes", text.len());

        let short = payload(
            "PreToolUse",
            json!({"tool_name": "Bash", "tool_input": {"command": "ls -la"}}),
        );
        let (e, _) = map_with(short, &[], 4096);
        assert_eq!(e["resource"], "ls -la");
        assert!(e["metadata"].get("resource_sha256").is_none());
    }

    #[test]
    fn unknown_fields_too_large_even_when_minimised_are_digested_whole() {
        let ids: Vec<String> = (0..5000).map(|i| format!("id-{i}")).collect();
        let p = payload("SomeFutureEvent", json!({"ids": ids}));
        let (sha, bytes) = digest_of(&json!({"ids": ids}));
        let (e, text) = map_with(p, &[], 4096);
        assert!(e["metadata"].get("extra").is_none(), "{text}");
        assert_eq!(e["metadata"]["extra_sha256"], sha);
        assert_eq!(e["metadata"]["extra_bytes"], bytes);
        assert!(text.len() < 4 * 1024);
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_digested_when_it_is_text() {
        let (e, text) = map_with(sentinel(), &[], 4096);
        assert!(!text.contains("SENTINEL"), "{text}");
        assert_eq!(
            e["metadata"]["extra"]["payload_sha256"],
            digest_of(&sentinel()).0
        );
    }
}
