//! The sealer's wire protocol, both ends of it (docs/SEALER.md). Pure: bytes in,
//! values out.
//!
//! One request per connection. The client sends a header line, then the payload,
//! then shuts down its write side; the sealer answers with one JSON line and closes:
//!
//! ```text
//! {"proto":1,"kind":"hook","project_dir":"/home/alice/src/app"}\n
//! <the hook payload, as Claude Code gave it, to the end of the stream>
//! ```
//!
//! `kind` is `hook` (the payload is a hook's stdin) or `decision` (the payload is a
//! [`Decision`] as a JSON object). The header carries only what the client alone
//! knows (`$CLAUDE_PROJECT_DIR`); members it does not know are ignored, so a
//! client that claims an identity there (`user_id`, `uid`, …) claims nothing: the
//! sealer takes the caller's identity from the kernel.
//!
//! Answers: `{"ok":true,"stream":"alice","seq":12,"hash":"…"}` (with `"note"` when
//! the payload was recorded as its digest) or `{"ok":false,"error":"…"}`.

use crate::record::Decision;
use serde_json::{Map, Value, json};

/// The protocol version a header names.
pub const VERSION: u64 = 1;
/// A header line (its `\n` included) is at most this long.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// An answer line is at most this long.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A hook payload, as Claude Code wrote it to the hook's stdin.
    Hook,
    /// A [`Decision`], as the JSON object [`decision_payload`] writes.
    Decision,
}

/// The header of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// `$CLAUDE_PROJECT_DIR` of the hook.
    pub project_dir: Option<String>,
}

/// Why a request or an answer cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("the header is not a JSON object on one line: {0}")]
    HeaderNotJson(String),
    #[error("the header names protocol version {0:?}; this sealer speaks version {VERSION}")]
    Version(String),
    #[error("unknown request kind {0:?} (expected \"hook\" or \"decision\")")]
    Kind(String),
    #[error("header member {0:?} must be a string")]
    NotText(&'static str),
    #[error("the header is longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    #[error("the connection ended before the header's end of line")]
    HeaderCut,
    #[error("the decision is not readable: {0}")]
    Decision(String),
    #[error("the answer is not readable: {0}")]
    Answer(String),
}

impl Header {
    /// The header line, `\n` included.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = json!({
            "proto": VERSION,
            "kind": match self.kind { Kind::Hook => "hook", Kind::Decision => "decision" },
        });
        if let Some(dir) = &self.project_dir {
            v["project_dir"] = Value::from(dir.as_str());
        }
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    /// Reads a header line (with or without its `\n`).
    pub fn parse(line: &[u8]) -> Result<Header, ProtoError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let v: Value =
            serde_json::from_slice(line).map_err(|e| ProtoError::HeaderNotJson(e.to_string()))?;
        let Value::Object(m) = v else {
            return Err(ProtoError::HeaderNotJson("not an object".into()));
        };
        match m.get("proto") {
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
            Some(other) => return Err(ProtoError::Version(other.to_string())),
            None => return Err(ProtoError::Version("none".into())),
        }
        let kind = match m.get("kind").and_then(Value::as_str) {
            Some("hook") => Kind::Hook,
            Some("decision") => Kind::Decision,
            Some(other) => return Err(ProtoError::Kind(other.into())),
            None => return Err(ProtoError::Kind(String::new())),
        };
        let project_dir = match m.get("project_dir") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ProtoError::NotText("project_dir")),
        };
        Ok(Header { kind, project_dir })
    }
}

/// Where the header ends in what was received so far: the length of the header
/// line (its `\n` included), `None` while it is incomplete, an error once it is too
/// long to be one.
pub fn header_end(received: &[u8]) -> Result<Option<usize>, ProtoError> {
    match memchr::memchr(b'\n', received) {
        Some(i) if i < MAX_HEADER_BYTES => Ok(Some(i + 1)),
        Some(_) => Err(ProtoError::HeaderTooLong),
        None if received.len() >= MAX_HEADER_BYTES => Err(ProtoError::HeaderTooLong),
        None => Ok(None),
    }
}

/// The payload of a decision request.
pub fn decision_payload(d: &Decision) -> Vec<u8> {
    let mut v = json!({
        "decision": d.decision,
        "factors_considered": d.factors_considered,
        "alternative_options": d.alternative_options,
    });
    let text = |s: &Option<String>| s.as_deref().map(Value::from);
    for (key, value) in [
        ("confidence", d.confidence.map(Value::from)),
        (
            "resource",
            d.resources.first().map(|r| Value::from(r.as_str())),
        ),
        (
            "resources",
            (d.resources.len() > 1).then(|| Value::from(d.resources.clone())),
        ),
        ("session_id", text(&d.session_id)),
        ("outcome", text(&d.outcome)),
        ("tool_use_id", text(&d.tool_use_id)),
    ] {
        if let Some(value) = value {
            v[key] = value;
        }
    }
    v.to_string().into_bytes()
}

/// Reads the payload of a decision request. Its validity (an empty text, a
/// confidence out of range) is for [`Decision::validate`].
pub fn parse_decision(payload: &[u8]) -> Result<Decision, ProtoError> {
    let bad = |m: &str| ProtoError::Decision(m.to_string());
    let v: Value = serde_json::from_slice(payload).map_err(|e| bad(&e.to_string()))?;
    let Value::Object(m) = v else {
        return Err(bad("not an object"));
    };
    let text = |key: &str| -> Result<Option<String>, ProtoError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(&format!("{key} must be a string"))),
        }
    };
    let list = |key: &str| -> Result<Vec<String>, ProtoError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(&format!("{key} must be an array of strings"))),
            Some(_) => Err(bad(&format!("{key} must be an array of strings"))),
        }
    };
    let confidence = match m.get("confidence") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => return Err(bad("confidence must be a number")),
    };
    // `resources` when there are several, else the one `resource` (all a client
    // before `resources` sends).
    let resources = match list("resources")? {
        all if !all.is_empty() => all,
        _ => text("resource")?.into_iter().collect(),
    };
    Ok(Decision {
        decision: text("decision")?.ok_or_else(|| bad("decision is missing"))?,
        factors_considered: list("factors_considered")?,
        confidence,
        alternative_options: list("alternative_options")?,
        resources,
        session_id: text("session_id")?,
        outcome: text("outcome")?,
        tool_use_id: text("tool_use_id")?,
    })
}

/// The sealer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The event is durable in `stream` at `seq`.
    Sealed {
        stream: String,
        seq: u64,
        hash: String,
        /// Set when the payload was recorded as its digest: why.
        note: Option<String>,
    },
    /// Nothing was recorded.
    Refused { error: String },
}

impl Answer {
    /// The answer line, `\n` included; an error longer than the line allows is cut.
    pub fn encode(&self) -> Vec<u8> {
        let v = match self {
            Answer::Sealed {
                stream,
                seq,
                hash,
                note,
            } => {
                let mut v = json!({ "ok": true, "stream": stream, "seq": seq, "hash": hash });
                if let Some(n) = note {
                    v["note"] = Value::from(cut(n, MAX_ANSWER_BYTES / 2));
                }
                v
            }
            Answer::Refused { error } => {
                json!({ "ok": false, "error": cut(error, MAX_ANSWER_BYTES / 2) })
            }
        };
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    /// Reads an answer line.
    pub fn parse(line: &[u8]) -> Result<Answer, ProtoError> {
        let bad = |m: &str| ProtoError::Answer(m.to_string());
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let v: Value = serde_json::from_slice(line).map_err(|e| bad(&e.to_string()))?;
        let m: &Map<String, Value> = v.as_object().ok_or_else(|| bad("not an object"))?;
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        match m.get("ok") {
            Some(Value::Bool(true)) => Ok(Answer::Sealed {
                stream: text("stream").ok_or_else(|| bad("no stream"))?,
                seq: m
                    .get("seq")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| bad("no seq"))?,
                hash: text("hash").ok_or_else(|| bad("no hash"))?,
                note: text("note"),
            }),
            Some(Value::Bool(false)) => Ok(Answer::Refused {
                error: text("error").unwrap_or_else(|| "(no reason given)".into()),
            }),
            _ => Err(bad("no ok member")),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> Result<Header, ProtoError> {
        Header::parse(text.as_bytes())
    }

    #[test]
    fn headers_round_trip() {
        for h in [
            Header {
                kind: Kind::Hook,
                project_dir: Some("/home/a/src/é x".into()),
            },
            Header {
                kind: Kind::Decision,
                project_dir: None,
            },
        ] {
            let line = h.encode();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(header_end(&line), Ok(Some(line.len())));
            assert_eq!(Header::parse(&line), Ok(h));
        }
    }

    #[test]
    fn identity_claims_in_the_header_are_ignored() {
        let h = header(
            r#"{"proto":1,"kind":"hook","user_id":"root","uid":0,"pid":1,"metadata":{"uid":0}}"#,
        )
        .unwrap();
        assert_eq!(
            h,
            Header {
                kind: Kind::Hook,
                project_dir: None
            }
        );
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        let cases: &[(&str, ProtoError)] = &[
            ("", ProtoError::HeaderNotJson(String::new())),
            ("[1]", ProtoError::HeaderNotJson("not an object".into())),
            (r#"{"kind":"hook"}"#, ProtoError::Version("none".into())),
            (
                r#"{"proto":2,"kind":"hook"}"#,
                ProtoError::Version("2".into()),
            ),
            (
                r#"{"proto":"1","kind":"hook"}"#,
                ProtoError::Version("\"1\"".into()),
            ),
            (
                r#"{"proto":1,"kind":"shell"}"#,
                ProtoError::Kind("shell".into()),
            ),
            (r#"{"proto":1}"#, ProtoError::Kind(String::new())),
            (
                r#"{"proto":1,"kind":"hook","project_dir":7}"#,
                ProtoError::NotText("project_dir"),
            ),
        ];
        for (text, want) in cases {
            let got = header(text).unwrap_err();
            match (want, &got) {
                (ProtoError::HeaderNotJson(_), ProtoError::HeaderNotJson(_)) => {}
                _ => assert_eq!(&got, want, "{text}"),
            }
        }
    }

    #[test]
    fn the_header_end_is_found_within_its_bound() {
        assert_eq!(header_end(b"{\"proto\":1"), Ok(None));
        assert_eq!(header_end(b"{}\n{\"payload\":"), Ok(Some(3)));
        let long = vec![b' '; MAX_HEADER_BYTES];
        assert_eq!(header_end(&long), Err(ProtoError::HeaderTooLong));
        let mut late = vec![b' '; MAX_HEADER_BYTES];
        late.push(b'\n');
        assert_eq!(header_end(&late), Err(ProtoError::HeaderTooLong));
        let mut just = vec![b' '; MAX_HEADER_BYTES - 1];
        just.push(b'\n');
        assert_eq!(header_end(&just), Ok(Some(MAX_HEADER_BYTES)));
    }

    #[test]
    fn decisions_round_trip() {
        let d = Decision {
            decision: "use PostgreSQL".into(),
            factors_considered: vec!["latency".into(), "cost".into()],
            confidence: Some(0.8),
            alternative_options: vec!["SQLite".into()],
            resources: vec!["db/schema.sql".into()],
            session_id: Some("s-1".into()),
            outcome: Some("success".into()),
            tool_use_id: Some("toolu_1".into()),
        };
        let back = parse_decision(&decision_payload(&d)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{d:?}"));
        let several = Decision {
            resources: vec!["db/schema.sql".into(), "db/seed.sql".into()],
            ..d.clone()
        };
        let payload: Value = serde_json::from_slice(&decision_payload(&several)).unwrap();
        // A sealer that knows only `resource` still gets the first.
        assert_eq!(payload["resource"], "db/schema.sql");
        let back = parse_decision(&decision_payload(&several)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{several:?}"));
        let bare = parse_decision(br#"{"decision":"x"}"#).unwrap();
        assert!(bare.factors_considered.is_empty() && bare.confidence.is_none());
        for bad in [
            &b"{}"[..],
            br#"{"decision":1}"#,
            br#"{"decision":"x","factors_considered":[1]}"#,
            br#"{"decision":"x","confidence":"high"}"#,
            b"not json",
        ] {
            assert!(
                parse_decision(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            Answer::Sealed {
                stream: "alice".into(),
                seq: 12,
                hash: "ab".repeat(32),
                note: None,
            },
            Answer::Sealed {
                stream: "bob".into(),
                seq: 0,
                hash: "cd".repeat(32),
                note: Some("payload too large".into()),
            },
            Answer::Refused {
                error: "disk full".into(),
            },
        ] {
            let line = a.encode();
            assert_eq!(Answer::parse(&line), Ok(a));
        }
        let long = Answer::Refused {
            error: "é".repeat(MAX_ANSWER_BYTES),
        }
        .encode();
        assert!(long.len() <= MAX_ANSWER_BYTES, "{}", long.len());
        assert!(Answer::parse(&long).is_ok());
        assert!(Answer::parse(b"{\"ok\":true}").is_err());
        assert!(Answer::parse(b"garbage").is_err());
    }
}
