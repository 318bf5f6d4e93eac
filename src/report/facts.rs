//! What the report reads from one event: the members FORMAT.md defines, borrowed
//! from the parsed line, and the few `metadata` members `record` writes that name the
//! hook and the tool. Anything missing or of another type is `None`: a line the
//! schema rejected is still counted for what it says.
//!
//! Pure: no IO.

use super::period::timestamp_ms;
use crate::audit::json::{self, Number, Object, Value};
use crate::audit::schema::{ACTIONS, OUTCOMES};

/// Index of an `outcome` not among FORMAT.md's four (a line the schema rejected).
pub const OTHER_OUTCOME: usize = OUTCOMES.len();
/// Index of an `action` not among FORMAT.md's eleven.
pub const OTHER_ACTION: usize = ACTIONS.len();

/// The actions of tool calls (FORMAT.md section 8: by tool).
const TOOL_ACTIONS: [&str; 4] = ["file_read", "file_write", "tool_execution", "api_call"];

#[derive(Debug, Clone, Default)]
pub struct Facts<'e> {
    pub timestamp: Option<&'e str>,
    /// `timestamp` in milliseconds since the epoch, when it reads as RFC 3339.
    pub ms: Option<i64>,
    pub user: Option<&'e str>,
    pub session: Option<&'e str>,
    pub host: Option<&'e str>,
    pub action: Option<&'e str>,
    pub outcome: Option<&'e str>,
    pub resource: Option<&'e str>,
    pub seq: Option<u64>,
    pub hash: Option<&'e str>,
    /// `metadata.source_event`: the hook event.
    pub source_event: Option<&'e str>,
    pub tool_name: Option<&'e str>,
    pub tool_use_id: Option<&'e str>,
    pub tags: Option<&'e [Value<'e>]>,
    /// `decision.decision` and `decision.confidence` of an `ai_decision`.
    pub decision: Option<&'e str>,
    pub confidence: Option<f64>,
}

impl<'e> Facts<'e> {
    pub fn of(event: &'e Object<'e>) -> Facts<'e> {
        let text = |o: &'e Object<'e>, k: &str| json::get(o, k).and_then(Value::as_str);
        let object = |o: &'e Object<'e>, k: &str| json::get(o, k).and_then(Value::as_object);
        let metadata = object(event, "metadata");
        let decision = object(event, "decision");
        let timestamp = text(event, "timestamp");
        Facts {
            timestamp,
            ms: timestamp.and_then(timestamp_ms),
            user: text(event, "user_id"),
            session: text(event, "session_id"),
            host: text(event, "host"),
            action: text(event, "action"),
            outcome: text(event, "outcome"),
            resource: text(event, "resource"),
            seq: match json::get(event, "seq") {
                Some(Value::Number(Number::Int(n))) => u64::try_from(*n).ok(),
                _ => None,
            },
            hash: text(event, "hash"),
            source_event: metadata.and_then(|m| text(m, "source_event")),
            tool_name: metadata.and_then(|m| text(m, "tool_name")),
            tool_use_id: metadata.and_then(|m| text(m, "tool_use_id")),
            tags: match json::get(event, "compliance_tags") {
                Some(Value::Array(a)) => Some(a.as_slice()),
                _ => None,
            },
            decision: decision.and_then(|d| text(d, "decision")),
            confidence: decision.and_then(|d| match json::get(d, "confidence") {
                Some(Value::Number(Number::Int(n))) => Some(*n as f64),
                Some(Value::Number(Number::Float(f))) => Some(*f),
                _ => None,
            }),
        }
    }

    /// Index into FORMAT.md's outcomes, [`OTHER_OUTCOME`] for anything else.
    pub fn outcome_index(&self) -> usize {
        self.outcome
            .and_then(|o| OUTCOMES.iter().position(|x| *x == o))
            .unwrap_or(OTHER_OUTCOME)
    }

    /// Index into FORMAT.md's actions, [`OTHER_ACTION`] for anything else.
    pub fn action_index(&self) -> usize {
        self.action
            .and_then(|a| ACTIONS.iter().position(|x| *x == a))
            .unwrap_or(OTHER_ACTION)
    }

    /// A tool call: reading, editing, web or any other tool.
    pub fn is_tool_call(&self) -> bool {
        self.action.is_some_and(|a| TOOL_ACTIONS.contains(&a))
    }

    /// A signed checkpoint the sealer wrote into the chain (docs/FORMAT.md, "Signed
    /// checkpoints"): the service's record, not a person's act.
    pub fn is_checkpoint(&self) -> bool {
        self.action == Some("agent_event") && self.source_event == Some("checkpoint")
    }

    /// The compliance tags that are strings.
    pub fn tags(&self) -> impl Iterator<Item = &'e str> {
        self.tags
            .unwrap_or_default()
            .iter()
            .filter_map(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_read_member_by_member_and_gaps_stay_none() {
        let line = r#"{"v":1,"seq":7,"timestamp":"2026-11-26T07:06:42.5Z","user_id":"a@x","session_id":"s","host":"h","action":"file_read","resource":"/r","outcome":"denied","metadata":{"source_event":"PermissionDenied","tool_name":"Read","tool_use_id":"t1"},"compliance_tags":["SOC2",3,"GDPR"],"hash":"ab"}"#;
        let v = json::parse(line).unwrap();
        let f = Facts::of(v.as_object().unwrap());
        assert_eq!(f.user, Some("a@x"));
        assert_eq!(f.seq, Some(7));
        assert_eq!(
            f.ms.map(super::super::period::format_ms).as_deref(),
            Some("2026-11-26T07:06:42.500Z")
        );
        assert_eq!((f.outcome_index(), f.action_index()), (2, 0));
        assert!(f.is_tool_call());
        assert_eq!(f.tool_use_id, Some("t1"));
        assert_eq!(f.tags().collect::<Vec<_>>(), ["SOC2", "GDPR"]);

        let v = json::parse(
            r#"{"user_id":5,"outcome":"maybe","decision":{"decision":"d","confidence":0.5}}"#,
        )
        .unwrap();
        let f = Facts::of(v.as_object().unwrap());
        assert_eq!((f.user, f.ms), (None, None));
        assert_eq!(
            (f.outcome_index(), f.action_index()),
            (OTHER_OUTCOME, OTHER_ACTION)
        );
        assert_eq!((f.decision, f.confidence), (Some("d"), Some(0.5)));
    }
}
