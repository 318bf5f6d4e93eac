//! Output shapes: how one shipped record (the event's own members plus `_auditship`,
//! see `check`) is written for a sink. `native` is the record as it is; `ecs` is an
//! Elastic Common Schema 8.x document; `ocsf` is an OCSF 1.1 event. docs/SHAPES.md has
//! the field tables; this file is their implementation.
//!
//! Invariants: nothing is lost. An ECS document carries the whole native record, byte
//! for byte, under the custom field `auditship`; an OCSF event carries it under
//! `unmapped`. A record that is not a JSON object (`check` never writes one) is wrapped
//! as text, flagged, rather than dropped. Writing never fails.
//!
//! The record is read once with the crate's own JSON reader (`audit::json`), the one
//! `check` used to accept the line: it borrows strings from the record, and it reads
//! every record `check` can write, including a lone surrogate escape that serde_json
//! refuses. The mapped members are written with serde_json from borrowing structs; the
//! native record is then spliced in as text, never re-serialized, so its numbers and
//! member order stay exactly as shipped.
//!
//! Deliberately not done: no IO, no configuration, no redaction (the record is already
//! redacted). The clock is read only to date a record that is not an object.

use crate::audit::json::{self, Number, Object, Value};
use serde::Serialize;
use std::borrow::Cow;

pub use crate::config::sinks::Shape;

/// Appends the record `line` (one shipped record, JSON object text, without trailing
/// newline) in `shape` to `out`, as one JSON object without a newline. Native copies
/// the bytes unchanged. Never fails: a line that is not a JSON object is wrapped so
/// nothing is lost.
pub fn write(shape: Shape, line: &[u8], out: &mut Vec<u8>) {
    if shape == Shape::Native {
        out.extend_from_slice(line);
        return;
    }
    let text = std::str::from_utf8(line).ok();
    let parsed = text.and_then(|t| json::parse_lossy(t).ok());
    let (Some(text), Some(Value::Object(obj))) = (text, parsed.map(|p| p.value)) else {
        unparsed(shape, line, out);
        return;
    };
    let rec = Record::read(&obj);
    let start = out.len();
    let written = if shape == Shape::Ecs {
        splice(&ecs(&rec), b"auditship", text, out)
    } else {
        splice(&ocsf(&rec), b"unmapped", text, out)
    };
    if !written {
        out.truncate(start);
        unparsed(shape, line, out);
    }
}

/// Writes `doc`, then `"<key>": <record text>` as its last member.
fn splice(doc: &impl Serialize, key: &[u8], record: &str, out: &mut Vec<u8>) -> bool {
    // Serializing these structs cannot fail; the check keeps that a non-event.
    if serde_json::to_writer(&mut *out, doc).is_err() || out.last() != Some(&b'}') {
        return false;
    }
    out.pop();
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
    out.extend_from_slice(record.trim_ascii().as_bytes());
    out.push(b'}');
    true
}

/// The members of a shipped record the shapes map, borrowed from the parsed record.
#[derive(Debug, Default)]
struct Record<'r> {
    timestamp: Option<&'r str>,
    id: Option<&'r str>,
    seq: Option<i64>,
    user_id: Option<&'r str>,
    session_id: Option<&'r str>,
    host: Option<&'r str>,
    action: Option<&'r str>,
    resource: Option<&'r str>,
    outcome: Option<&'r str>,
    hash: Option<&'r str>,
    compliance_tags: Vec<&'r str>,
    identity_email: Option<&'r str>,
    roles: Vec<&'r str>,
    tool_name: Option<&'r str>,
    command: Option<&'r str>,
    cwd: Option<&'r str>,
    source_event: Option<&'r str>,
    error: Option<&'r str>,
    duration_ms: Option<i64>,
    /// `_auditship` members.
    ship: Ship<'r>,
}

#[derive(Debug)]
struct Ship<'r> {
    id: Option<&'r str>,
    source: Option<&'r str>,
    stream: Option<&'r str>,
    file: Option<&'r str>,
    host: Option<&'r str>,
    agent_version: Option<&'r str>,
    received_at: Option<&'r str>,
    ok: bool,
    problems: Vec<&'r str>,
}

impl Default for Ship<'_> {
    /// A record without `_auditship`: nothing says it is intact.
    fn default() -> Self {
        Ship {
            id: None,
            source: None,
            stream: None,
            file: None,
            host: None,
            agent_version: None,
            received_at: None,
            ok: false,
            problems: Vec::new(),
        }
    }
}

impl<'r> Record<'r> {
    fn read(obj: &'r Object<'_>) -> Record<'r> {
        let s = |key: &str| text(obj, key);
        let meta = json::get(obj, "metadata").and_then(Value::as_object);
        let m = |key: &str| meta.and_then(|m| text(m, key));
        let identity = json::get(obj, "identity").and_then(Value::as_object);
        let ship = json::get(obj, "_auditship")
            .and_then(Value::as_object)
            .map(Ship::read)
            .unwrap_or_default();
        Record {
            timestamp: s("timestamp"),
            id: s("id"),
            seq: json::get(obj, "seq").and_then(int),
            user_id: s("user_id"),
            session_id: s("session_id"),
            host: s("host"),
            action: s("action"),
            resource: s("resource").filter(|r| !r.is_empty()),
            outcome: s("outcome"),
            hash: s("hash"),
            compliance_tags: strings(json::get(obj, "compliance_tags")),
            identity_email: identity.and_then(|i| text(i, "email")),
            roles: strings(identity.and_then(|i| json::get(i, "roles"))),
            tool_name: m("tool_name"),
            command: m("command"),
            cwd: m("cwd"),
            source_event: m("source_event"),
            error: m("error"),
            duration_ms: meta.and_then(|m| json::get(m, "duration_ms")).and_then(int),
            ship,
        }
    }

    /// `(server, tool)` of an MCP tool (`mcp__<server>__<tool>`).
    fn mcp(&self) -> Option<(&'r str, &'r str)> {
        let rest = self.tool_name?.strip_prefix("mcp__")?;
        Some(rest.split_once("__").unwrap_or((rest, rest)))
    }

    /// The actor's e-mail: `user_id` when it is one, else `identity.email`.
    fn email(&self) -> Option<&'r str> {
        self.user_id.filter(|u| is_email(u)).or(self.identity_email)
    }

    /// The event host, else the shipping host.
    fn host(&self) -> Option<&'r str> {
        self.host.or(self.ship.host)
    }

    /// The event's `outcome` in both shapes' terms.
    fn outcome(&self) -> Outcome<'r> {
        match self.outcome {
            Some("success") => Outcome::new("success", None, 1, "Success", None),
            Some("failure") => Outcome::new("failure", None, 2, "Failure", self.error),
            Some("denied") => Outcome::new(
                "failure",
                Some("permission denied"),
                2,
                "Failure",
                Some("denied"),
            ),
            Some("attempted") => Outcome::new(
                "unknown",
                Some("recorded before the action ran"),
                0,
                "Unknown",
                Some("attempted"),
            ),
            other => Outcome::new("unknown", None, 0, "Unknown", other),
        }
    }

    /// Severity on OCSF's scale (also ECS `event.severity`): `(id, caption)`.
    fn severity(&self) -> (u8, &'static str) {
        if self.ship.ok {
            (1, "Informational")
        } else if self.ship.problems.iter().any(|c| TAMPER.contains(c)) {
            (4, "High")
        } else {
            (3, "Medium")
        }
    }
}

impl<'r> Ship<'r> {
    fn read(obj: &'r Object<'_>) -> Ship<'r> {
        let s = |key: &str| text(obj, key);
        let super::record::Integrity {
            ok,
            codes: problems,
        } = super::record::integrity(Some(obj));
        Ship {
            id: s("id"),
            source: s("source"),
            stream: s("stream"),
            file: s("file"),
            host: s("host"),
            agent_version: s("agent_version"),
            received_at: s("received_at"),
            ok,
            problems,
        }
    }
}

/// Problem codes that mean the trail may have been altered or has a hole (as opposed
/// to a line that is merely malformed or too long): they raise the severity to High.
const TAMPER: [&str; 9] = [
    "hash_mismatch",
    "hmac_missing",
    "unknown_kid",
    "hmac_mismatch",
    "bad_genesis",
    "chain_restart",
    "chain_break",
    "seq_gap",
    "file_truncated",
];

/// An `outcome` as ECS `event.outcome` + `event.reason` and as OCSF status.
struct Outcome<'r> {
    ecs: &'static str,
    ecs_reason: Option<&'static str>,
    status_id: u8,
    status: &'static str,
    status_detail: Option<&'r str>,
}

impl<'r> Outcome<'r> {
    fn new(
        ecs: &'static str,
        ecs_reason: Option<&'static str>,
        status_id: u8,
        status: &'static str,
        status_detail: Option<&'r str>,
    ) -> Self {
        Outcome {
            ecs,
            ecs_reason,
            status_id,
            status,
            status_detail,
        }
    }
}

fn text<'r>(obj: &'r Object<'_>, key: &str) -> Option<&'r str> {
    json::get(obj, key).and_then(Value::as_str)
}

fn int(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Number(Number::Int(i)) => Some(*i),
        // Saturating: a duration of 1e300 ms is still "very long", not an error.
        Value::Number(Number::Float(f)) if f.is_finite() => Some(*f as i64),
        _ => None,
    }
}

/// A string, or the strings of an array.
fn strings<'r>(v: Option<&'r Value<'_>>) -> Vec<&'r str> {
    match v {
        Some(Value::String(s)) => vec![s.as_ref()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The last component of a path (either separator); the path itself when it has none.
fn basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches(['/', '\\']);
    match trimmed.rsplit(['/', '\\']).next() {
        Some(name) if !name.is_empty() => name,
        _ => path,
    }
}

/// `(scheme, host)` of a `scheme://[userinfo@]host[:port]/...` URL.
fn url_parts(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => hostport.split(':').next().unwrap_or_default(),
    };
    (!host.is_empty() && !host.contains(char::is_whitespace)).then_some((scheme, host))
}

/// Milliseconds since the epoch of an RFC 3339 time (`Z` or a `±HH:MM` offset).
fn epoch_ms(t: &str) -> Option<i64> {
    crate::clock::rfc3339_nanos(t).and_then(|n| i64::try_from(n.div_euclid(1_000_000)).ok())
}

/// Now, as epoch milliseconds and as an RFC 3339 string.
fn now() -> (i64, String) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (ts, _) = crate::clock::format_utc(ms.div_euclid(1000), d.subsec_millis());
    (ms, ts)
}

fn is_none<T>(v: &Option<T>) -> bool {
    v.is_none()
}

fn is_empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

// ---------------------------------------------------------------- ECS

/// The ECS version the documents follow (`file` + `access` needs 8.8 or later).
const ECS_VERSION: &str = "8.11.0";
const ECS_DATASET: &str = "auditship.audit";
const ECS_MODULE: &str = "auditship";

#[derive(Serialize, Default)]
struct EcsDoc<'r> {
    #[serde(rename = "@timestamp")]
    timestamp: Cow<'r, str>,
    ecs: EcsVersion,
    event: EcsEvent<'r>,
    #[serde(skip_serializing_if = "is_none")]
    user: Option<EcsUser<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    host: Option<EcsName<'r>>,
    agent: EcsAgent<'r>,
    #[serde(skip_serializing_if = "is_none")]
    log: Option<EcsLog>,
    #[serde(skip_serializing_if = "is_none")]
    file: Option<EcsFile<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    url: Option<EcsUrl<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    process: Option<EcsProcess<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    error: Option<EcsError<'r>>,
    #[serde(skip_serializing_if = "is_empty")]
    tags: &'r [&'r str],
}

#[derive(Serialize)]
struct EcsVersion {
    version: &'static str,
}

impl Default for EcsVersion {
    fn default() -> Self {
        EcsVersion {
            version: ECS_VERSION,
        }
    }
}

#[derive(Serialize, Default)]
struct EcsEvent<'r> {
    kind: &'static str,
    #[serde(skip_serializing_if = "is_empty")]
    category: &'static [&'static str],
    #[serde(rename = "type", skip_serializing_if = "is_empty")]
    types: &'static [&'static str],
    #[serde(skip_serializing_if = "is_none")]
    action: Option<&'r str>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "is_none")]
    code: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    id: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    sequence: Option<i64>,
    #[serde(skip_serializing_if = "is_none")]
    hash: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    created: Option<&'r str>,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_none")]
    duration: Option<i64>,
    severity: u8,
    dataset: &'static str,
    module: &'static str,
    #[serde(skip_serializing_if = "is_none")]
    original: Option<Cow<'r, str>>,
}

#[derive(Serialize)]
struct EcsUser<'r> {
    #[serde(skip_serializing_if = "is_none")]
    id: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    email: Option<&'r str>,
    #[serde(skip_serializing_if = "is_empty")]
    roles: &'r [&'r str],
}

#[derive(Serialize)]
struct EcsName<'r> {
    name: &'r str,
}

#[derive(Serialize)]
struct EcsAgent<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "is_none")]
    version: Option<&'r str>,
}

impl Default for EcsAgent<'_> {
    fn default() -> Self {
        EcsAgent {
            kind: "auditship",
            version: None,
        }
    }
}

#[derive(Serialize)]
struct EcsLog {
    file: EcsPath,
}

#[derive(Serialize)]
struct EcsPath {
    path: String,
}

#[derive(Serialize)]
struct EcsFile<'r> {
    path: &'r str,
    name: &'r str,
}

#[derive(Serialize)]
struct EcsUrl<'r> {
    full: &'r str,
    scheme: &'r str,
    domain: &'r str,
}

#[derive(Serialize)]
struct EcsProcess<'r> {
    command_line: &'r str,
    #[serde(skip_serializing_if = "is_none")]
    name: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    working_directory: Option<&'r str>,
}

#[derive(Serialize)]
struct EcsError<'r> {
    message: &'r str,
}

/// ECS `event.category` and `event.type` of an action.
fn ecs_categories(action: Option<&str>) -> (&'static [&'static str], &'static [&'static str]) {
    match action {
        Some("file_read") => (&["file"], &["access"]),
        Some("file_write") => (&["file"], &["change"]),
        Some("tool_execution") => (&["process"], &["start"]),
        Some("api_call") => (&["web"], &["access"]),
        Some("session_start") => (&["session"], &["start"]),
        Some("session_end") => (&["session"], &["end"]),
        Some("user_prompt" | "ai_decision" | "agent_event") => (&["session"], &["info"]),
        Some("config_change") => (&["configuration"], &["change"]),
        Some("permission_change") => (&["iam"], &["change"]),
        _ => (&[], &[]),
    }
}

fn ecs<'r>(rec: &'r Record<'r>) -> EcsDoc<'r> {
    let (category, types) = ecs_categories(rec.action);
    let outcome = rec.outcome();
    let ts = rec
        .timestamp
        .filter(|t| epoch_ms(t).is_some())
        .or(rec.ship.received_at.filter(|t| epoch_ms(t).is_some()));
    let timestamp = match ts {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(now().1),
    };
    let email = rec.email();
    let user =
        (rec.user_id.is_some() || email.is_some() || !rec.roles.is_empty()).then_some(EcsUser {
            id: rec.user_id,
            email,
            roles: &rec.roles,
        });
    let log = match (rec.ship.stream, rec.ship.file) {
        (Some(dir), Some(file)) if !dir.is_empty() => {
            Some(format!("{}/{file}", dir.strip_suffix('/').unwrap_or(dir)))
        }
        (_, Some(file)) => Some(file.to_owned()),
        _ => None,
    }
    .map(|path| EcsLog {
        file: EcsPath { path },
    });
    let resource = rec.resource;
    let file = match rec.action {
        Some("file_read" | "file_write") => resource.map(|path| EcsFile {
            path,
            name: basename(path),
        }),
        _ => None,
    };
    let url = match (rec.action, resource) {
        (Some("api_call"), Some(full)) => url_parts(full).map(|(scheme, domain)| EcsUrl {
            full,
            scheme,
            domain,
        }),
        _ => None,
    };
    let process = match rec.action {
        Some("tool_execution") => rec.command.or(resource).map(|command_line| EcsProcess {
            command_line,
            name: rec.tool_name,
            working_directory: rec.cwd,
        }),
        _ => None,
    };
    let (severity, _) = rec.severity();
    EcsDoc {
        timestamp,
        ecs: EcsVersion::default(),
        event: EcsEvent {
            kind: if rec.ship.ok { "event" } else { "alert" },
            category,
            types,
            action: rec.action,
            outcome: outcome.ecs,
            reason: outcome.ecs_reason,
            code: rec.source_event,
            id: rec.id,
            sequence: rec.seq,
            hash: rec.hash,
            created: rec.ship.received_at,
            duration: rec.duration_ms.map(|ms| ms.saturating_mul(1_000_000)),
            severity,
            dataset: ECS_DATASET,
            module: ECS_MODULE,
            original: None,
        },
        user,
        host: rec.host().map(|name| EcsName { name }),
        agent: EcsAgent {
            version: rec.ship.agent_version,
            ..EcsAgent::default()
        },
        log,
        file,
        url,
        process,
        error: rec.error.map(|message| EcsError { message }),
        tags: &rec.compliance_tags,
    }
}

// ---------------------------------------------------------------- OCSF

/// The OCSF schema version the events follow.
const OCSF_VERSION: &str = "1.1.0";

#[derive(Serialize, Default)]
struct OcsfEvent<'r> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'r str,
    type_uid: u32,
    type_name: String,
    severity_id: u8,
    severity: &'static str,
    /// Epoch milliseconds.
    time: i64,
    status_id: u8,
    status: &'static str,
    #[serde(skip_serializing_if = "is_none")]
    status_detail: Option<&'r str>,
    /// Milliseconds.
    #[serde(skip_serializing_if = "is_none")]
    duration: Option<i64>,
    #[serde(skip_serializing_if = "is_none")]
    message: Option<&'static str>,
    metadata: OcsfMetadata<'r>,
    #[serde(skip_serializing_if = "is_none")]
    actor: Option<OcsfActor<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    device: Option<OcsfDevice<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    src_endpoint: Option<OcsfHostname<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    file: Option<OcsfFile<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    process: Option<OcsfProcess<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    api: Option<OcsfApi<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    http_request: Option<OcsfHttpRequest<'r>>,
    #[serde(skip_serializing_if = "is_empty")]
    resources: Vec<OcsfName<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    app: Option<OcsfProduct<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    raw_data: Option<Cow<'r, str>>,
}

#[derive(Serialize, Default)]
struct OcsfMetadata<'r> {
    version: &'static str,
    product: OcsfProduct<'r>,
    #[serde(skip_serializing_if = "is_empty")]
    profiles: &'static [&'static str],
    #[serde(skip_serializing_if = "is_none")]
    uid: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    original_time: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    logged_time: Option<i64>,
    #[serde(skip_serializing_if = "is_none")]
    log_name: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    event_code: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    sequence: Option<i64>,
    #[serde(skip_serializing_if = "is_empty")]
    labels: &'r [&'r str],
}

#[derive(Serialize)]
struct OcsfProduct<'r> {
    name: &'static str,
    vendor_name: &'static str,
    #[serde(skip_serializing_if = "is_none")]
    version: Option<&'r str>,
}

impl Default for OcsfProduct<'_> {
    /// auditship, the product that reports every event.
    fn default() -> Self {
        OcsfProduct {
            name: "auditship",
            vendor_name: "auditship",
            version: None,
        }
    }
}

#[derive(Serialize)]
struct OcsfActor<'r> {
    #[serde(skip_serializing_if = "is_none")]
    user: Option<OcsfUser<'r>>,
    #[serde(skip_serializing_if = "is_none")]
    session: Option<OcsfUid<'r>>,
}

#[derive(Serialize)]
struct OcsfUser<'r> {
    #[serde(skip_serializing_if = "is_none")]
    uid: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    email_addr: Option<&'r str>,
}

#[derive(Serialize)]
struct OcsfUid<'r> {
    uid: &'r str,
}

#[derive(Serialize)]
struct OcsfName<'r> {
    name: &'r str,
}

#[derive(Serialize)]
struct OcsfHostname<'r> {
    hostname: &'r str,
}

#[derive(Serialize)]
struct OcsfDevice<'r> {
    hostname: &'r str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OcsfFile<'r> {
    name: &'r str,
    path: &'r str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OcsfProcess<'r> {
    #[serde(skip_serializing_if = "is_none")]
    name: Option<&'r str>,
    #[serde(skip_serializing_if = "is_none")]
    cmd_line: Option<&'r str>,
}

#[derive(Serialize)]
struct OcsfApi<'r> {
    operation: &'r str,
    service: OcsfName<'r>,
}

#[derive(Serialize)]
struct OcsfHttpRequest<'r> {
    url: OcsfUrl<'r>,
}

#[derive(Serialize)]
struct OcsfUrl<'r> {
    url_string: &'r str,
    scheme: &'r str,
    hostname: &'r str,
}

/// An OCSF class with its category.
#[derive(Clone, Copy)]
struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const FILE_SYSTEM_ACTIVITY: Class = Class {
    uid: 1001,
    name: "File System Activity",
    category_uid: 1,
    category_name: "System Activity",
};
const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};
const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};
const API_ACTIVITY: Class = Class {
    uid: 6003,
    name: "API Activity",
    category_uid: 6,
    category_name: "Application Activity",
};
const BASE_EVENT: Class = Class {
    uid: 0,
    name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
};

/// Activity id 99: the class's "Other", named by the source.
const OTHER: u32 = 99;

/// The class and `(activity_id, activity_name)` of a record.
fn ocsf_class<'r>(rec: &Record<'r>) -> (Class, u32, &'r str) {
    match rec.action {
        Some("file_read") => (FILE_SYSTEM_ACTIVITY, 2, "Read"),
        Some("file_write") => (FILE_SYSTEM_ACTIVITY, 3, "Update"),
        Some(a @ "tool_execution") if rec.mcp().is_some() => (API_ACTIVITY, OTHER, a),
        Some("tool_execution") => (PROCESS_ACTIVITY, 1, "Launch"),
        Some("api_call") => (API_ACTIVITY, 2, "Read"),
        Some("config_change") => (API_ACTIVITY, 3, "Update"),
        Some(a @ ("user_prompt" | "ai_decision" | "permission_change")) => (API_ACTIVITY, OTHER, a),
        Some("session_start") => (APPLICATION_LIFECYCLE, 3, "Start"),
        Some("session_end") => (APPLICATION_LIFECYCLE, 4, "Stop"),
        Some(a @ "agent_event") => (APPLICATION_LIFECYCLE, OTHER, rec.source_event.unwrap_or(a)),
        Some(a) => (BASE_EVENT, OTHER, a),
        None => (BASE_EVENT, 0, "Unknown"),
    }
}

/// OCSF `file.type_id` and caption, from the Claude Code tool that touched the file.
fn file_type(tool: Option<&str>) -> (u8, &'static str) {
    match tool {
        Some("Read" | "Write" | "Edit" | "MultiEdit" | "NotebookRead" | "NotebookEdit") => {
            (1, "Regular File")
        }
        Some("LS") => (2, "Folder"),
        _ => (0, "Unknown"),
    }
}

/// What OCSF calls the application the events are about.
const CLAUDE_CODE: OcsfProduct<'static> = OcsfProduct {
    name: "Claude Code",
    vendor_name: "Anthropic",
    version: None,
};

fn ocsf<'r>(rec: &'r Record<'r>) -> OcsfEvent<'r> {
    let (class, activity_id, activity_name) = ocsf_class(rec);
    let outcome = rec.outcome();
    let (severity_id, severity) = rec.severity();
    let time = rec
        .timestamp
        .and_then(epoch_ms)
        .or_else(|| rec.ship.received_at.and_then(epoch_ms))
        .unwrap_or_else(|| now().0);
    let user = (rec.user_id.is_some() || rec.email().is_some()).then(|| OcsfUser {
        uid: rec.user_id,
        email_addr: rec.email(),
    });
    let session = rec.session_id.map(|uid| OcsfUid { uid });
    let actor = (user.is_some() || session.is_some()).then_some(OcsfActor { user, session });
    let is_api = class.uid == API_ACTIVITY.uid;
    let file = (class.uid == FILE_SYSTEM_ACTIVITY.uid)
        .then_some(rec.resource)
        .flatten()
        .map(|path| {
            let (type_id, kind) = file_type(rec.tool_name);
            OcsfFile {
                name: basename(path),
                path,
                type_id,
                kind,
            }
        });
    let process = (class.uid == PROCESS_ACTIVITY.uid).then(|| OcsfProcess {
        name: rec.tool_name,
        cmd_line: rec.command.or(rec.resource),
    });
    let api = is_api.then(|| match rec.mcp() {
        Some((server, tool)) => OcsfApi {
            operation: tool,
            service: OcsfName { name: server },
        },
        None => OcsfApi {
            operation: match rec.action {
                Some("api_call") => rec.tool_name,
                _ => rec.source_event,
            }
            .or(rec.action)
            .unwrap_or("unknown"),
            service: OcsfName {
                name: CLAUDE_CODE.name,
            },
        },
    });
    let http_request = match (rec.action, rec.resource) {
        (Some("api_call"), Some(url_string)) => {
            url_parts(url_string).map(|(scheme, hostname)| OcsfHttpRequest {
                url: OcsfUrl {
                    url_string,
                    scheme,
                    hostname,
                },
            })
        }
        _ => None,
    };
    let resources = match rec.resource {
        Some(name) if is_api => vec![OcsfName { name }],
        _ => Vec::new(),
    };
    let host = rec.host();
    OcsfEvent {
        class_uid: class.uid,
        class_name: class.name,
        category_uid: class.category_uid,
        category_name: class.category_name,
        activity_id,
        activity_name,
        type_uid: class.uid * 100 + activity_id,
        type_name: format!("{}: {activity_name}", class.name),
        severity_id,
        severity,
        time,
        status_id: outcome.status_id,
        status: outcome.status,
        status_detail: outcome.status_detail,
        duration: rec.duration_ms,
        message: None,
        metadata: OcsfMetadata {
            version: OCSF_VERSION,
            product: OcsfProduct {
                version: rec.ship.agent_version,
                ..OcsfProduct::default()
            },
            // System Activity classes have `device` of their own; the others carry it
            // (and `actor`) through the host profile.
            profiles: if class.category_uid == 1 {
                &[]
            } else {
                &["host"]
            },
            uid: rec.ship.id,
            original_time: rec.timestamp,
            logged_time: rec.ship.received_at.and_then(epoch_ms),
            log_name: rec.ship.source,
            event_code: rec.source_event,
            sequence: rec.seq,
            labels: &rec.compliance_tags,
        },
        actor,
        device: host.map(|hostname| OcsfDevice {
            hostname,
            type_id: 0,
            kind: "Unknown",
        }),
        src_endpoint: if is_api {
            host.map(|hostname| OcsfHostname { hostname })
        } else {
            None
        },
        file,
        process,
        api,
        http_request,
        resources,
        app: (class.uid == APPLICATION_LIFECYCLE.uid).then_some(CLAUDE_CODE),
        raw_data: None,
    }
}

// ---------------------------------------------------------------- not an object

/// A line that is not a JSON object: wrapped whole, flagged Medium.
fn unparsed(shape: Shape, line: &[u8], out: &mut Vec<u8>) {
    const WHY: &str = "shipped record is not a JSON object";
    if shape == Shape::Native {
        out.extend_from_slice(line);
        return;
    }
    let original = String::from_utf8_lossy(line);
    let (ms, ts) = now();
    let version = Some(env!("CARGO_PKG_VERSION"));
    let doc = if shape == Shape::Ecs {
        serde_json::to_value(EcsDoc {
            timestamp: Cow::Owned(ts),
            event: EcsEvent {
                kind: "alert",
                outcome: "unknown",
                severity: 3,
                dataset: ECS_DATASET,
                module: ECS_MODULE,
                original: Some(original),
                ..EcsEvent::default()
            },
            agent: EcsAgent {
                version,
                ..EcsAgent::default()
            },
            error: Some(EcsError { message: WHY }),
            ..EcsDoc::default()
        })
    } else {
        serde_json::to_value(OcsfEvent {
            class_uid: BASE_EVENT.uid,
            class_name: BASE_EVENT.name,
            category_uid: BASE_EVENT.category_uid,
            category_name: BASE_EVENT.category_name,
            activity_name: "Unknown",
            type_name: "Base Event: Unknown".to_owned(),
            severity_id: 3,
            severity: "Medium",
            time: ms,
            status: "Unknown",
            message: Some(WHY),
            metadata: OcsfMetadata {
                version: OCSF_VERSION,
                product: OcsfProduct {
                    version,
                    ..OcsfProduct::default()
                },
                ..OcsfMetadata::default()
            },
            raw_data: Some(original),
            ..OcsfEvent::default()
        })
    };
    let mut doc = match doc {
        Ok(serde_json::Value::Object(doc)) => doc,
        // Cannot happen (plain structs); still write something valid.
        _ => serde_json::Map::new(),
    };
    if std::str::from_utf8(line).is_err() {
        // The text above is lossy: keep the exact bytes too.
        let key = if shape == Shape::Ecs {
            "auditship"
        } else {
            "unmapped"
        };
        doc.insert(
            key.to_owned(),
            serde_json::json!({ "raw_base64": base64(line) }),
        );
    }
    let _ = serde_json::to_writer(&mut *out, &doc);
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            s.push(if i <= c.len() {
                char::from(T[(n >> shift) as usize & 63])
            } else {
                '='
            });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as J, json};

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    /// An event with the given action, resource, outcome and metadata.
    fn event(action: &str, resource: &str, outcome: &str, metadata: J) -> J {
        json!({
            "v": 1,
            "id": "e-1",
            "seq": 5,
            "timestamp": "2026-11-26T07:06:42.123Z",
            "user_id": "jane@example.com",
            "session_id": "s-1",
            "host": "dev-laptop",
            "action": action,
            "resource": resource,
            "outcome": outcome,
            "metadata": metadata,
            "compliance_tags": ["SOC2"],
            "identity": {"department": "eng", "roles": ["developer"]},
            "prev_hash": "0".repeat(64),
            "hash": HASH,
        })
    }

    /// A shipped record: the members of `event` plus `_auditship`, whose members
    /// `ship` overrides.
    fn shipped(event: J, ship: J) -> String {
        let mut meta = json!({
            "v": 1,
            "id": HASH,
            "source": "claude",
            "stream": "/home/dev/.claude/audit",
            "file": "audit-2026-11-26.jsonl",
            "line": 7,
            "offset": 1234,
            "host": "shipper-1",
            "agent_version": "0.1.0",
            "received_at": "2026-11-26T10:00:00.000Z",
            "integrity": {"ok": true, "problems": []},
            "redacted": [],
        });
        for (k, v) in ship.as_object().unwrap() {
            meta[k] = v.clone();
        }
        let mut rec = event.as_object().unwrap().clone();
        rec.insert("_auditship".into(), meta);
        J::Object(rec).to_string()
    }

    fn key(shape: Shape) -> &'static str {
        if shape == Shape::Ecs {
            "auditship"
        } else {
            "unmapped"
        }
    }

    /// The shaped document of `line`, with the kept native record taken out after
    /// checking it is `line` byte for byte.
    fn mapped(shape: Shape, line: &str) -> J {
        let mut out = Vec::new();
        write(shape, line.as_bytes(), &mut out);
        assert!(!out.contains(&b'\n'), "one line");
        let tail = format!(",\"{}\":{line}}}", key(shape));
        assert!(
            out.ends_with(tail.as_bytes()),
            "native record kept verbatim: {}",
            String::from_utf8_lossy(&out)
        );
        let mut doc: J = serde_json::from_slice(&out).unwrap();
        let kept = doc.as_object_mut().unwrap().remove(key(shape)).unwrap();
        assert_eq!(kept, serde_json::from_str::<J>(line).unwrap());
        doc
    }

    fn read_meta() -> J {
        json!({"source_event": "PostToolUse", "tool_name": "Read", "cwd": "/repo", "duration_ms": 12})
    }

    #[test]
    fn shape_names_round_trip() {
        for s in [Shape::Native, Shape::Ecs, Shape::Ocsf] {
            assert_eq!(Shape::parse(s.name()), Some(s));
        }
        assert_eq!(Shape::parse("ECS"), None);
        assert_eq!(Shape::parse(""), None);
    }

    #[test]
    fn native_copies_the_bytes() {
        for line in [
            shipped(event("file_read", "/r", "success", json!({})), json!({})),
            "[1,2]".to_owned(),
            "{\"n\":1.0e0}".to_owned(),
        ] {
            let mut out = b"before;".to_vec();
            write(Shape::Native, line.as_bytes(), &mut out);
            assert_eq!(out, [b"before;" as &[u8], line.as_bytes()].concat());
        }
    }

    #[test]
    fn ecs_file_read_golden() {
        let line = shipped(
            event("file_read", "/repo/src/main.rs", "success", read_meta()),
            json!({}),
        );
        assert_eq!(
            mapped(Shape::Ecs, &line),
            json!({
                "@timestamp": "2026-11-26T07:06:42.123Z",
                "ecs": {"version": "8.11.0"},
                "event": {
                    "kind": "event",
                    "category": ["file"],
                    "type": ["access"],
                    "action": "file_read",
                    "outcome": "success",
                    "code": "PostToolUse",
                    "id": "e-1",
                    "sequence": 5,
                    "hash": HASH,
                    "created": "2026-11-26T10:00:00.000Z",
                    "duration": 12_000_000,
                    "severity": 1,
                    "dataset": "auditship.audit",
                    "module": "auditship",
                },
                "user": {"id": "jane@example.com", "email": "jane@example.com", "roles": ["developer"]},
                "host": {"name": "dev-laptop"},
                "agent": {"type": "auditship", "version": "0.1.0"},
                "log": {"file": {"path": "/home/dev/.claude/audit/audit-2026-11-26.jsonl"}},
                "file": {"path": "/repo/src/main.rs", "name": "main.rs"},
                "tags": ["SOC2"],
            })
        );
    }

    #[test]
    fn ocsf_file_read_golden() {
        let line = shipped(
            event("file_read", "/repo/src/main.rs", "success", read_meta()),
            json!({}),
        );
        assert_eq!(
            mapped(Shape::Ocsf, &line),
            json!({
                "class_uid": 1001,
                "class_name": "File System Activity",
                "category_uid": 1,
                "category_name": "System Activity",
                "activity_id": 2,
                "activity_name": "Read",
                "type_uid": 100_102,
                "type_name": "File System Activity: Read",
                "severity_id": 1,
                "severity": "Informational",
                "time": 1_795_676_802_123_i64,
                "status_id": 1,
                "status": "Success",
                "duration": 12,
                "metadata": {
                    "version": "1.1.0",
                    "product": {"name": "auditship", "vendor_name": "auditship", "version": "0.1.0"},
                    "uid": HASH,
                    "original_time": "2026-11-26T07:06:42.123Z",
                    "logged_time": 1_795_687_200_000_i64,
                    "log_name": "claude",
                    "event_code": "PostToolUse",
                    "sequence": 5,
                    "labels": ["SOC2"],
                },
                "actor": {
                    "user": {"uid": "jane@example.com", "email_addr": "jane@example.com"},
                    "session": {"uid": "s-1"},
                },
                "device": {"hostname": "dev-laptop", "type_id": 0, "type": "Unknown"},
                "file": {"name": "main.rs", "path": "/repo/src/main.rs", "type_id": 1, "type": "Regular File"},
            })
        );
    }

    #[test]
    fn file_write_is_a_change_and_an_update() {
        let meta = json!({"source_event": "PostToolUse", "tool_name": "Edit"});
        let line = shipped(
            event("file_write", "C:\\repo\\lib.rs", "success", meta),
            json!({}),
        );
        let e = mapped(Shape::Ecs, &line);
        assert_eq!(e["event"]["category"], json!(["file"]));
        assert_eq!(e["event"]["type"], json!(["change"]));
        assert_eq!(
            e["file"],
            json!({"path": "C:\\repo\\lib.rs", "name": "lib.rs"})
        );
        let o = mapped(Shape::Ocsf, &line);
        assert_eq!(
            (o["class_uid"].clone(), o["activity_id"].clone()),
            (json!(1001), json!(3))
        );
        assert_eq!(o["type_uid"], 100_103);
        assert_eq!(o["activity_name"], "Update");
        assert_eq!(o["file"]["name"], "lib.rs");
        assert_eq!(o["file"]["type_id"], 1);
    }

    #[test]
    fn tool_execution_golden() {
        let meta = json!({"source_event": "PreToolUse", "tool_name": "Bash", "cwd": "/repo"});
        let line = shipped(
            event("tool_execution", "cargo test --locked", "attempted", meta),
            json!({}),
        );
        let e = mapped(Shape::Ecs, &line);
        assert_eq!(
            e["event"],
            json!({
                "kind": "event",
                "category": ["process"],
                "type": ["start"],
                "action": "tool_execution",
                "outcome": "unknown",
                "reason": "recorded before the action ran",
                "code": "PreToolUse",
                "id": "e-1",
                "sequence": 5,
                "hash": HASH,
                "created": "2026-11-26T10:00:00.000Z",
                "severity": 1,
                "dataset": "auditship.audit",
                "module": "auditship",
            })
        );
        assert_eq!(
            e["process"],
            json!({"command_line": "cargo test --locked", "name": "Bash", "working_directory": "/repo"})
        );
        let mut o = mapped(Shape::Ocsf, &line);
        o.as_object_mut().unwrap().remove("metadata");
        assert_eq!(
            o,
            json!({
                "class_uid": 1007,
                "class_name": "Process Activity",
                "category_uid": 1,
                "category_name": "System Activity",
                "activity_id": 1,
                "activity_name": "Launch",
                "type_uid": 100_701,
                "type_name": "Process Activity: Launch",
                "severity_id": 1,
                "severity": "Informational",
                "time": 1_795_676_802_123_i64,
                "status_id": 0,
                "status": "Unknown",
                "status_detail": "attempted",
                "actor": {
                    "user": {"uid": "jane@example.com", "email_addr": "jane@example.com"},
                    "session": {"uid": "s-1"},
                },
                "device": {"hostname": "dev-laptop", "type_id": 0, "type": "Unknown"},
                "process": {"name": "Bash", "cmd_line": "cargo test --locked"},
            })
        );
    }

    #[test]
    fn mcp_tools_are_api_activity_in_ocsf() {
        let meta = json!({"source_event": "PostToolUse", "tool_name": "mcp__github__create_issue"});
        let line = shipped(
            event(
                "tool_execution",
                "mcp__github__create_issue",
                "success",
                meta,
            ),
            json!({}),
        );
        let mut o = mapped(Shape::Ocsf, &line);
        assert_eq!(o["metadata"]["profiles"], json!(["host"]));
        let o = o.as_object_mut().unwrap();
        o.remove("metadata");
        o.remove("actor");
        assert_eq!(
            J::Object(o.clone()),
            json!({
                "class_uid": 6003,
                "class_name": "API Activity",
                "category_uid": 6,
                "category_name": "Application Activity",
                "activity_id": 99,
                "activity_name": "tool_execution",
                "type_uid": 600_399,
                "type_name": "API Activity: tool_execution",
                "severity_id": 1,
                "severity": "Informational",
                "time": 1_795_676_802_123_i64,
                "status_id": 1,
                "status": "Success",
                "device": {"hostname": "dev-laptop", "type_id": 0, "type": "Unknown"},
                "src_endpoint": {"hostname": "dev-laptop"},
                "api": {"operation": "create_issue", "service": {"name": "github"}},
                "resources": [{"name": "mcp__github__create_issue"}],
            })
        );
        let e = mapped(Shape::Ecs, &line);
        assert_eq!(e["event"]["category"], json!(["process"]));
        assert_eq!(e["process"]["name"], "mcp__github__create_issue");
    }

    #[test]
    fn api_call_golden() {
        let meta = json!({"source_event": "PostToolUse", "tool_name": "WebFetch"});
        let url = "https://user@docs.example.com:8443/a/b?q=1#x";
        let line = shipped(event("api_call", url, "success", meta), json!({}));
        let e = mapped(Shape::Ecs, &line);
        assert_eq!(e["event"]["category"], json!(["web"]));
        assert_eq!(e["event"]["type"], json!(["access"]));
        assert_eq!(
            e["url"],
            json!({"full": url, "scheme": "https", "domain": "docs.example.com"})
        );
        let o = mapped(Shape::Ocsf, &line);
        assert_eq!(
            (o["class_uid"].clone(), o["activity_id"].clone()),
            (json!(6003), json!(2))
        );
        assert_eq!(o["type_uid"], 600_302);
        assert_eq!(
            o["api"],
            json!({"operation": "WebFetch", "service": {"name": "Claude Code"}})
        );
        assert_eq!(
            o["http_request"],
            json!({"url": {"url_string": url, "scheme": "https", "hostname": "docs.example.com"}})
        );
        assert_eq!(o["resources"], json!([{"name": url}]));

        // A search query is no URL: no url / http_request, the query stays a resource.
        let meta = json!({"source_event": "PostToolUse", "tool_name": "WebSearch"});
        let line = shipped(
            event("api_call", "rust serde borrow", "success", meta),
            json!({}),
        );
        assert!(mapped(Shape::Ecs, &line).get("url").is_none());
        let o = mapped(Shape::Ocsf, &line);
        assert!(o.get("http_request").is_none());
        assert_eq!(o["api"]["operation"], "WebSearch");
    }

    #[test]
    fn sessions_are_application_lifecycle() {
        for (action, ecs_type, activity, name) in [
            ("session_start", "start", 3, "Start"),
            ("session_end", "end", 4, "Stop"),
        ] {
            let meta = json!({"source_event": "SessionStart"});
            let line = shipped(event(action, "/repo", "success", meta), json!({}));
            let e = mapped(Shape::Ecs, &line);
            assert_eq!(e["event"]["category"], json!(["session"]), "{action}");
            assert_eq!(e["event"]["type"], json!([ecs_type]), "{action}");
            let o = mapped(Shape::Ocsf, &line);
            assert_eq!(o["class_uid"], 6002, "{action}");
            assert_eq!(o["category_uid"], 6, "{action}");
            assert_eq!(o["activity_id"], activity, "{action}");
            assert_eq!(o["activity_name"], name, "{action}");
            assert_eq!(o["type_uid"], 600_200 + activity, "{action}");
            assert_eq!(
                o["app"],
                json!({"name": "Claude Code", "vendor_name": "Anthropic"})
            );
            assert_eq!(o["metadata"]["profiles"], json!(["host"]));
        }
    }

    #[test]
    fn other_actions_by_table() {
        // action, source_event, ECS category, ECS type, OCSF class, activity, activity name
        let table = [
            (
                "user_prompt",
                "UserPromptSubmit",
                "session",
                "info",
                6003,
                99,
                "user_prompt",
            ),
            (
                "ai_decision",
                "Decision",
                "session",
                "info",
                6003,
                99,
                "ai_decision",
            ),
            (
                "permission_change",
                "PermissionRequest",
                "iam",
                "change",
                6003,
                99,
                "permission_change",
            ),
            (
                "config_change",
                "ConfigChange",
                "configuration",
                "change",
                6003,
                3,
                "Update",
            ),
            (
                "agent_event",
                "SubagentStop",
                "session",
                "info",
                6002,
                99,
                "SubagentStop",
            ),
            ("something_new", "Future", "", "", 0, 99, "something_new"),
        ];
        for (action, source, cat, typ, class, activity, name) in table {
            let meta = json!({"source_event": source});
            let line = shipped(event(action, "/repo", "success", meta), json!({}));
            let e = mapped(Shape::Ecs, &line);
            if cat.is_empty() {
                assert!(e["event"].get("category").is_none(), "{action}");
                assert!(e["event"].get("type").is_none(), "{action}");
            } else {
                assert_eq!(e["event"]["category"], json!([cat]), "{action}");
                assert_eq!(e["event"]["type"], json!([typ]), "{action}");
            }
            assert_eq!(e["event"]["action"], action);
            let o = mapped(Shape::Ocsf, &line);
            assert_eq!(o["class_uid"], class, "{action}");
            assert_eq!(o["activity_id"], activity, "{action}");
            assert_eq!(o["activity_name"], name, "{action}");
            assert_eq!(o["type_uid"], class * 100 + activity, "{action}");
            assert_eq!(o["metadata"]["event_code"], source, "{action}");
            if class == 6003 {
                assert_eq!(
                    o["api"],
                    json!({"operation": source, "service": {"name": "Claude Code"}}),
                    "{action}"
                );
                assert_eq!(o["src_endpoint"], json!({"hostname": "dev-laptop"}));
            }
        }
    }

    #[test]
    fn outcomes() {
        // outcome, ECS outcome, ECS reason, OCSF status_id, status, status_detail
        let table = [
            ("success", "success", None, 1, "Success", None),
            (
                "failure",
                "failure",
                None,
                2,
                "Failure",
                Some("exit status 1"),
            ),
            (
                "denied",
                "failure",
                Some("permission denied"),
                2,
                "Failure",
                Some("denied"),
            ),
            (
                "attempted",
                "unknown",
                Some("recorded before the action ran"),
                0,
                "Unknown",
                Some("attempted"),
            ),
        ];
        for (outcome, ecs_outcome, reason, status_id, status, detail) in table {
            let meta = json!({"tool_name": "Bash", "error": "exit status 1"});
            let line = shipped(event("tool_execution", "false", outcome, meta), json!({}));
            let e = mapped(Shape::Ecs, &line);
            assert_eq!(e["event"]["outcome"], ecs_outcome, "{outcome}");
            assert_eq!(
                e["event"].get("reason").and_then(J::as_str),
                reason,
                "{outcome}"
            );
            assert_eq!(e["error"]["message"], "exit status 1");
            let o = mapped(Shape::Ocsf, &line);
            assert_eq!(o["status_id"], status_id, "{outcome}");
            assert_eq!(o["status"], status, "{outcome}");
            assert_eq!(
                o.get("status_detail").and_then(J::as_str),
                detail,
                "{outcome}"
            );
        }
    }

    #[test]
    fn integrity_problems_raise_kind_and_severity() {
        // problem codes, ECS kind, severity id, OCSF caption
        let table: [(&[&str], &str, u8, &str); 4] = [
            (&[], "event", 1, "Informational"),
            (&["schema"], "alert", 3, "Medium"),
            (&["line_too_long"], "alert", 3, "Medium"),
            (&["schema", "chain_break"], "alert", 4, "High"),
        ];
        for (codes, kind, severity, caption) in table {
            let problems: Vec<J> = codes
                .iter()
                .map(|c| json!({"code": c, "detail": "d"}))
                .collect();
            let ship = json!({"integrity": {"ok": codes.is_empty(), "problems": problems}});
            let line = shipped(event("file_read", "/r", "success", json!({})), ship);
            let e = mapped(Shape::Ecs, &line);
            assert_eq!(e["event"]["kind"], kind, "{codes:?}");
            assert_eq!(e["event"]["severity"], severity, "{codes:?}");
            let o = mapped(Shape::Ocsf, &line);
            assert_eq!(o["severity_id"], severity, "{codes:?}");
            assert_eq!(o["severity"], caption, "{codes:?}");
            assert_eq!(o["class_uid"], 1001, "the class still follows the action");
        }
    }

    #[test]
    fn raw_and_file_problem_records_are_base_events() {
        let enc = crate::check::Encoder::new(
            "shipper-1",
            &serde_json::Map::new(),
            crate::redact::Redactor::builtin(),
        );
        let at = crate::check::Origin {
            source: "claude",
            stream: "/s",
            file: "f.jsonl",
            line: 1,
            offset: 0,
            received_at: "2026-11-26T10:00:00.000Z",
        };
        let mut raw = Vec::new();
        enc.encode_line(None, b"{not json", None, &at, &mut raw);
        let mut truncated = Vec::new();
        enc.encode_file_problem("file_truncated", "shorter", &at, &mut truncated);
        for (rec, severity) in [(raw, 3), (truncated, 4)] {
            let line = std::str::from_utf8(rec.trim_ascii_end()).unwrap();
            let e = mapped(Shape::Ecs, line);
            assert_eq!(e["@timestamp"], "2026-11-26T10:00:00.000Z");
            assert_eq!(e["event"]["kind"], "alert");
            assert_eq!(e["event"]["severity"], severity);
            assert_eq!(e["event"]["outcome"], "unknown");
            assert!(e["event"].get("category").is_none() && e["event"].get("action").is_none());
            assert_eq!(
                e["host"]["name"], "shipper-1",
                "the shipping host stands in"
            );
            assert_eq!(e["log"]["file"]["path"], "/s/f.jsonl");
            let o = mapped(Shape::Ocsf, line);
            assert_eq!(
                (
                    o["class_uid"].clone(),
                    o["activity_id"].clone(),
                    o["type_uid"].clone()
                ),
                (json!(0), json!(0), json!(0))
            );
            assert_eq!(o["category_name"], "Uncategorized");
            assert_eq!(o["time"], 1_795_687_200_000_i64, "dated by received_at");
            assert_eq!(o["severity_id"], severity);
            assert_eq!(o["status_id"], 0);
            assert!(o.get("actor").is_none());
        }
    }

    #[test]
    fn records_serde_json_refuses_are_still_mapped_and_kept() {
        // `check` ships a clean event with a lone surrogate escape as it is.
        let event = r#"{"action":"file_read","resource":"/tmp/\ud800.txt","outcome":"success","timestamp":"2026-11-26T07:06:42Z","_auditship":{"id":"x","received_at":"2026-11-26T10:00:00.000Z","integrity":{"ok":true,"problems":[]}}}"#;
        assert!(serde_json::from_str::<J>(event).is_err());
        for shape in [Shape::Ecs, Shape::Ocsf] {
            let mut out = Vec::new();
            write(shape, event.as_bytes(), &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.ends_with(&format!(",\"{}\":{event}}}", key(shape))),
                "{text}"
            );
            let mapped = &text[..text.len() - event.len() - key(shape).len() - 5];
            let doc: J = serde_json::from_str(&format!("{mapped}}}")).unwrap();
            if shape == Shape::Ecs {
                assert_eq!(doc["file"]["path"], "/tmp/\u{fffd}.txt");
            } else {
                assert_eq!(doc["file"]["name"], "\u{fffd}.txt");
            }
        }
    }

    #[test]
    fn non_objects_are_wrapped_not_lost() {
        for line in [&b"[1,2]"[..], b"{not json", b""] {
            let text = std::str::from_utf8(line).unwrap();
            let mut out = Vec::new();
            write(Shape::Ecs, line, &mut out);
            let e: J = serde_json::from_slice(&out).unwrap();
            assert_eq!(e["event"]["original"], text);
            assert_eq!(e["ecs"]["version"], ECS_VERSION);
            assert_eq!(e["event"]["dataset"], "auditship.audit");
            assert_eq!(e["agent"]["type"], "auditship");
            assert_eq!(e["event"]["kind"], "alert");
            assert_eq!(e["event"]["severity"], 3);
            assert_eq!(e["error"]["message"], "shipped record is not a JSON object");
            assert!(epoch_ms(e["@timestamp"].as_str().unwrap()).is_some());
            assert!(e.get("auditship").is_none());
            let mut out = Vec::new();
            write(Shape::Ocsf, line, &mut out);
            let o: J = serde_json::from_slice(&out).unwrap();
            assert_eq!(o["raw_data"], text);
            assert_eq!(o["metadata"]["version"], "1.1.0");
            assert_eq!(o["metadata"]["product"]["name"], "auditship");
            assert_eq!(
                (o["class_uid"].clone(), o["type_uid"].clone()),
                (json!(0), json!(0))
            );
            assert_eq!(o["severity_id"], 3);
            assert!(o["time"].as_i64().unwrap() > 1_700_000_000_000);
        }
        // Bytes that are not UTF-8 keep their exact value too.
        for shape in [Shape::Ecs, Shape::Ocsf] {
            let mut out = Vec::new();
            write(shape, b"\xff\xfe{", &mut out);
            let d: J = serde_json::from_slice(&out).unwrap();
            assert_eq!(d[key(shape)]["raw_base64"], "//57");
        }
    }

    #[test]
    fn actor_fields_and_fallbacks() {
        // A login that is not an e-mail: the identity's e-mail is used.
        let mut ev = event("file_read", "/r", "success", json!({}));
        ev["user_id"] = json!("jdoe");
        ev["identity"] = json!({"email": "jdoe@corp.example", "roles": "admin"});
        ev.as_object_mut().unwrap().remove("host");
        ev["timestamp"] = json!("yesterday");
        let line = shipped(ev, json!({}));
        let e = mapped(Shape::Ecs, &line);
        assert_eq!(
            e["user"],
            json!({"id": "jdoe", "email": "jdoe@corp.example", "roles": ["admin"]})
        );
        assert_eq!(e["host"]["name"], "shipper-1");
        assert_eq!(
            e["@timestamp"], "2026-11-26T10:00:00.000Z",
            "bad timestamp: received_at"
        );
        let o = mapped(Shape::Ocsf, &line);
        assert_eq!(
            o["actor"]["user"],
            json!({"uid": "jdoe", "email_addr": "jdoe@corp.example"})
        );
        assert_eq!(o["device"]["hostname"], "shipper-1");
        assert_eq!(o["time"], 1_795_687_200_000_i64);
        assert_eq!(o["metadata"]["original_time"], "yesterday");
        // No identity at all: no e-mail, no roles.
        let mut ev = event("file_read", "/r", "success", json!({}));
        ev["user_id"] = json!("jdoe");
        ev.as_object_mut().unwrap().remove("identity");
        let e = mapped(Shape::Ecs, &shipped(ev, json!({})));
        assert_eq!(e["user"], json!({"id": "jdoe"}));
    }

    #[test]
    fn times() {
        let table = [
            ("2026-11-26T07:06:42.123Z", Some(1_795_676_802_123)),
            ("2026-11-26T07:06:42Z", Some(1_795_676_802_000)),
            ("2026-11-26T07:06:42.123456789Z", Some(1_795_676_802_123)),
            ("2026-11-26T09:06:42.5+02:00", Some(1_795_676_802_500)),
            ("2024-02-29T23:59:59.999Z", Some(1_709_251_199_999)),
            ("1969-12-31T23:59:59Z", Some(-1000)),
            ("2023-02-29T00:00:00Z", None),
            ("2026-11-26T24:00:00Z", None),
            ("2026-11-26T07:06:42.Z", None),
            ("2026-11-26T07:06:42", None),
            ("2026-11-26T07:06:42+0200", None),
            ("2026-11-26T07:06:42Zjunk", None),
            ("", None),
        ];
        for (t, want) in table {
            assert_eq!(epoch_ms(t), want, "{t}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(basename("/a/b/c.txt"), "c.txt");
        assert_eq!(basename("/a/b/"), "b");
        assert_eq!(basename("c.txt"), "c.txt");
        assert_eq!(basename("/"), "/");
        assert_eq!(url_parts("http://[::1]:80/x"), Some(("http", "::1")));
        assert_eq!(url_parts("ftp://h"), Some(("ftp", "h")));
        assert_eq!(url_parts("not a url"), None);
        assert_eq!(url_parts("://h"), None);
        assert_eq!(url_parts("1http://h"), None);
        assert_eq!(url_parts("http:///path"), None);
        assert!(is_email("a@b.example") && !is_email("a@b") && !is_email("@b.c"));
        assert!(!is_email("a b@c.d") && !is_email("a@b@c.d"));
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
    }
}
