//! Data minimisation: which parts of a hook payload are content (text a person typed,
//! the model wrote, or a tool read or produced) and how content is stored.
//!
//! Content is stored as the SHA-256 and byte length of the original value
//! (`<name>_sha256`, `<name>_bytes`); a `keep_*` setting adds a redacted copy cut to
//! `max_kept_bytes`. Known content fields are listed here with the setting that keeps
//! them ([`TOP_LEVEL`], [`LISTS`]); unknown fields fall under [`minimise_unknown`]:
//! a string that looks like free text is digested wherever it sits.
//!
//! Pure: values in, values out. Digests are always of the original, unredacted value,
//! so that someone holding the transcript can confirm which text an event refers to;
//! what is kept in clear passes the redactor.

use crate::audit::{canon, json};
use crate::redact::Redactor;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// The `keep_*` setting that keeps a copy of a kind of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `keep_prompts`: what the user typed or had submitted as a prompt.
    Prompt,
    /// `keep_tool_input`: what a tool was asked to do.
    ToolInput,
    /// `keep_tool_response`: what a tool returned, and errors.
    ToolResponse,
    /// `keep_messages`: text from the model, MCP servers and Claude Code itself.
    Message,
}

/// Which kinds are kept as copies, and how long a copy may be.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    pub prompts: bool,
    pub tool_input: bool,
    pub tool_response: bool,
    pub messages: bool,
    pub max_bytes: usize,
}

impl Keep {
    fn keeps(&self, kind: Kind) -> bool {
        match kind {
            Kind::Prompt => self.prompts,
            Kind::ToolInput => self.tool_input,
            Kind::ToolResponse => self.tool_response,
            Kind::Message => self.messages,
        }
    }
}

/// A content field of a payload (or of an element of one of its lists).
#[derive(Debug)]
pub struct Field {
    /// Its name in the payload.
    pub name: &'static str,
    /// Its digest is stored as `<digest>_sha256` and `<digest>_bytes`.
    pub digest: &'static str,
    /// The name of the kept copy.
    pub copy: &'static str,
    pub kind: Kind,
    /// Values that are codes from a closed set, not text: stored in clear as `copy`.
    pub codes: &'static [&'static str],
}

const fn field(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        digest: name,
        copy: name,
        kind,
        codes: &[],
    }
}

/// `StopFailure.error`: the kinds of API failure.
const STOP_FAILURE_ERRORS: &[&str] = &[
    "authentication_failed",
    "oauth_org_not_allowed",
    "account_on_hold",
    "verification_required",
    "billing_error",
    "rate_limit",
    "overloaded",
    "invalid_request",
    "model_not_found",
    "server_error",
    "unknown",
    "max_output_tokens",
    "cloud_credential_error",
];

/// `SessionEnd.reason`.
const SESSION_END_REASONS: &[&str] = &["clear", "resume", "logout", "prompt_input_exit", "other"];

/// Content fields at the top of a payload, stored under `metadata`.
pub const TOP_LEVEL: &[Field] = &[
    Field {
        name: "tool_input",
        digest: "input",
        copy: "input",
        kind: Kind::ToolInput,
        codes: &[],
    },
    // The prompt's digest shares `input_*` with tool input (an event has one or the other).
    Field {
        name: "prompt",
        digest: "input",
        copy: "prompt",
        kind: Kind::Prompt,
        codes: &[],
    },
    Field {
        name: "tool_response",
        digest: "response",
        copy: "response",
        kind: Kind::ToolResponse,
        codes: &[],
    },
    // PostToolUseFailure: the command's output; StopFailure: a code.
    Field {
        name: "error",
        digest: "error",
        copy: "error",
        kind: Kind::ToolResponse,
        codes: STOP_FAILURE_ERRORS,
    },
    field("error_details", Kind::ToolResponse),
    field("command_args", Kind::Prompt),
    field("custom_instructions", Kind::Prompt),
    field("content", Kind::Prompt),
    field("session_title", Kind::Prompt),
    field("last_assistant_message", Kind::Message),
    field("compact_summary", Kind::Message),
    field("delta", Kind::Message),
    field("message", Kind::Message),
    field("title", Kind::Message),
    field("requested_schema", Kind::Message),
    field("task_subject", Kind::Message),
    field("task_description", Kind::Message),
    // PermissionDenied: the classifier's explanation; SessionEnd: a code.
    Field {
        name: "reason",
        digest: "reason",
        copy: "reason",
        kind: Kind::Message,
        codes: SESSION_END_REASONS,
    },
];

/// Lists of objects whose elements hold content fields, stored under `metadata`.
pub const LISTS: &[(&str, &[Field])] = &[
    (
        "tool_calls",
        &[
            Field {
                name: "tool_input",
                digest: "input",
                copy: "input",
                kind: Kind::ToolInput,
                codes: &[],
            },
            Field {
                name: "tool_response",
                digest: "response",
                copy: "response",
                kind: Kind::ToolResponse,
                codes: &[],
            },
        ],
    ),
    (
        "background_tasks",
        &[
            field("command", Kind::ToolInput),
            field("description", Kind::Message),
        ],
    ),
    ("session_crons", &[field("prompt", Kind::Prompt)]),
];

/// Paths and URLs among the payload's other fields: kept in clear (redacted) even when
/// they look like text to [`minimise_unknown`].
pub const PATH_FIELDS: [&str; 10] = [
    "agent_transcript_path",
    "file_path",
    "trigger_file_path",
    "parent_file_path",
    "worktree_path",
    "old_cwd",
    "new_cwd",
    "directory",
    "url",
    "globs",
];

/// A string in an unknown field is kept in clear only if it is at most this long and
/// holds no white space: identifiers, codes, names, short paths. Anything else is text.
pub const CLEAR_TEXT_MAX: usize = 64;

/// Where a field's digest and copy go, and what kept copies need.
pub struct Sink<'a, 'r> {
    pub keep: &'a Keep,
    pub redactor: &'a Redactor,
    /// Dotted paths of redacted values (`metadata.redacted`).
    pub redacted: &'r mut Vec<String>,
}

impl Sink<'_, '_> {
    /// Stores `v`, the value of content field `f`, into `out` (whose path is `path`).
    pub fn store(&mut self, out: &mut Map<String, Value>, path: &str, f: &Field, v: Value) {
        let code = v.as_str().is_some_and(|s| f.codes.contains(&s));
        if v.is_null() || code {
            // Nothing to hide: an absent value, or one of a closed set of codes.
            out.insert(f.copy.into(), v);
            return;
        }
        digest_into(out, f.digest, &v);
        if self.keep.keeps(f.kind) {
            let copy = kept_copy(v, &join(path, f.copy), self);
            out.insert(f.copy.into(), Value::String(copy));
        }
    }

    /// A list named in [`LISTS`]: each element's content fields stored in place, its
    /// other members minimised as unknown fields and redacted.
    pub fn store_list(&mut self, v: Value, path: &str, fields: &[Field]) -> Value {
        let Value::Array(items) = v else {
            let mut other = v;
            minimise_unknown(&mut other);
            self.redactor.redact_json(&mut other, path, self.redacted);
            return other;
        };
        let items = items.into_iter().enumerate().map(|(i, item)| {
            let path = format!("{path}[{i}]");
            let Value::Object(mut m) = item else {
                let mut other = item;
                minimise_unknown(&mut other);
                self.redactor.redact_json(&mut other, &path, self.redacted);
                return other;
            };
            let mut out = Map::new();
            for f in fields {
                if let Some(x) = m.remove(f.name) {
                    self.store(&mut out, &path, f, x);
                }
            }
            let mut rest = Value::Object(m);
            minimise_unknown(&mut rest);
            self.redactor.redact_json(&mut rest, &path, self.redacted);
            if let Value::Object(rest) = rest {
                out.extend(rest);
            }
            Value::Object(out)
        });
        Value::Array(items.collect())
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A number literal up to this long is a value, not text, however long: the payload
/// reader keeps a number that no 64-bit integer or double holds (an integer of 70
/// digits) as its literal, in a string, and such a value stays in clear.
pub const NUMBER_TEXT_MAX: usize = 512;

/// Whether an unknown field's string is text to digest rather than keep.
pub fn is_free_text(s: &str) -> bool {
    if s.chars().any(char::is_whitespace) {
        return true;
    }
    let number =
        || s.len() <= NUMBER_TEXT_MAX && matches!(json::parse(s), Ok(json::Value::Number(_)));
    s.len() > CLEAR_TEXT_MAX && !number()
}

/// Digests every free-text string inside `v` (see [`is_free_text`]): an object
/// member `k` becomes `k_sha256` and `k_bytes`; an array element, or `v` itself,
/// becomes `{"sha256": …, "bytes": …}`. Numbers, booleans, codes stay.
pub fn minimise_unknown(v: &mut Value) {
    match v {
        Value::String(s) if is_free_text(s) => {
            let mut m = Map::new();
            digest_into(&mut m, "", v);
            *v = Value::Object(m);
        }
        Value::Array(items) => items.iter_mut().for_each(minimise_unknown),
        Value::Object(m) => minimise_members(m, &[]),
        _ => {}
    }
}

/// [`minimise_unknown`] for each member of `m` except those named in `clear`.
pub fn minimise_members(m: &mut Map<String, Value>, clear: &[&str]) {
    let text: Vec<String> = m
        .iter()
        .filter(|(k, v)| v.as_str().is_some_and(is_free_text) && !clear.contains(&k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    for k in text {
        if let Some(v) = m.remove(&k) {
            digest_into(m, &k, &v);
        }
    }
    for (k, v) in m.iter_mut() {
        if !clear.contains(&k.as_str()) {
            minimise_unknown(v);
        }
    }
}

/// `<prefix>_sha256` and `<prefix>_bytes` of a value (`sha256` and `bytes` for an
/// empty prefix): of the UTF-8 text for strings, of the RFC 8785 canonical form for
/// anything else (so an auditor holding the transcript can recompute it).
pub fn digest_into(meta: &mut Map<String, Value>, prefix: &str, v: &Value) {
    let owned;
    let bytes = match v {
        Value::String(s) => s.as_bytes(),
        other => {
            owned = canonical_bytes(other);
            &owned[..]
        }
    };
    let sep = if prefix.is_empty() { "" } else { "_" };
    meta.insert(
        format!("{prefix}{sep}sha256"),
        Value::String(crate::audit::sha256_hex(bytes)),
    );
    meta.insert(format!("{prefix}{sep}bytes"), Value::from(bytes.len()));
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

/// A redacted copy of `v` as text, cut to `max_kept_bytes`. `path` names the copy in
/// `metadata.redacted`. An object or array is redacted value by value with its
/// structure, then once more as the text it is written as: a key and its value can
/// read as a secret only side by side (`{"x password": "hunter2"}`).
fn kept_copy(mut v: Value, path: &str, sink: &mut Sink<'_, '_>) -> String {
    sink.redactor.redact_json(&mut v, path, sink.redacted);
    let text = match v {
        Value::String(s) => s,
        other => {
            let text = other.to_string();
            match sink.redactor.redact_str(&text) {
                Cow::Borrowed(_) => text,
                Cow::Owned(clean) => {
                    if sink.redacted.last().map(String::as_str) != Some(path) {
                        sink.redacted.push(path.to_owned());
                    }
                    clean
                }
            }
        }
    };
    cut_redacted(text, sink.keep.max_bytes + TRUNCATED.len(), sink.redactor)
}

/// The marker a cut copy ends with.
pub const TRUNCATED: &str = "…[truncated]";

/// `text`, already redacted, cut so that it is at most `max` bytes with
/// [`TRUNCATED`], and still clean. A cut never falls inside a redaction marker, but
/// it changes what the detectors see: a key word whose value it removed now has the
/// marker for a value, a header scheme whose credential it removed now reads as the
/// credential. So the cut copy is redacted again, and cut again should the markers
/// have made it longer; what comes out is never longer than `max` and redacting it
/// changes nothing. In the unlikely case that does not settle, only the marker is
/// left.
pub fn cut_redacted(mut text: String, max: usize, redactor: &Redactor) -> String {
    for _ in 0..4 {
        if text.len() <= max {
            return text;
        }
        let cut = truncate_within(text, max);
        match redactor.redact_str(&cut) {
            Cow::Borrowed(_) => return cut,
            Cow::Owned(again) => text = again,
        }
    }
    if text.len() <= max {
        text
    } else if TRUNCATED.len() <= max {
        TRUNCATED.to_owned()
    } else {
        String::new()
    }
}

/// `s` cut to at most `max` bytes (on a character boundary, never inside a
/// redaction marker), then [`TRUNCATED`].
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let at = Redactor::cut_point(&s, floor_char_boundary(&s, max));
        s.truncate(at);
        s.push_str(TRUNCATED);
    }
    s
}

/// `s` cut so that, with [`TRUNCATED`] appended, it is at most `max` bytes in all.
pub fn truncate_within(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    truncate(s, max.saturating_sub(TRUNCATED.len()))
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_number_literals_are_values_and_long_words_are_text() {
        let seventy = "1234567890".repeat(7);
        assert!(!is_free_text(&seventy));
        assert!(!is_free_text(&format!("-{seventy}")));
        assert!(!is_free_text("1e400"));
        assert!(!is_free_text("short_code"));
        assert!(is_free_text(&"a".repeat(CLEAR_TEXT_MAX + 1)));
        assert!(is_free_text(&format!("{seventy}x")));
        assert!(is_free_text(&"9".repeat(NUMBER_TEXT_MAX + 1)));
        assert!(is_free_text("two words"));
        assert!(is_free_text(" 1"));
    }
}
