//! Completeness within the trail: sessions that started and never ended, and tool
//! calls recorded as `attempted` (PreToolUse) that no closing record (PostToolUse,
//! PostToolUseFailure, PermissionDenied) followed.
//!
//! Start and end, attempt and close, are paired over every event read, inside the
//! period or not, so a session that ends after `--to` is not called open; only
//! sessions and attempts with an event inside the period are reported. A call is
//! known by its `metadata.tool_use_id`, else by its session and resource. Both tables
//! are bounded ([`MAX_SESSIONS`], [`MAX_OPEN_ATTEMPTS`]); what does not fit is
//! counted, and the report says so.
//!
//! Pure: no IO.

use super::facts::Facts;
use std::collections::HashMap;

/// Most sessions followed, across all users.
pub const MAX_SESSIONS: usize = 500_000;
/// Most attempts waiting for their closing record at one time.
pub const MAX_OPEN_ATTEMPTS: usize = 100_000;

/// One session of one user.
#[derive(Debug, Clone)]
pub struct Session {
    pub host: u32,
    /// First and last event in the period.
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub started: bool,
    pub ended: bool,
    pub events: u64,
}

/// A tool call recorded before it ran, not closed (yet).
#[derive(Debug, Clone)]
pub struct Attempt {
    pub user: u32,
    pub host: u32,
    pub session: Box<str>,
    pub ms: Option<i64>,
    pub in_period: bool,
    pub resource: Box<str>,
    pub tool: Box<str>,
    pub stream: u32,
    pub file: Box<str>,
    pub line: u64,
}

/// Where an event was read.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub stream: u32,
    pub file: &'a str,
    pub line: u64,
}

#[derive(Debug, Default)]
pub struct Pairing {
    /// Per user index: session id → session.
    pub sessions: Vec<HashMap<Box<str>, Session>>,
    pub sessions_tracked: usize,
    /// Sessions not followed once [`MAX_SESSIONS`] were (events of theirs counted
    /// elsewhere as usual).
    pub sessions_untracked: u64,
    pub attempts: HashMap<Box<str>, Attempt>,
    /// Attempts not followed because [`MAX_OPEN_ATTEMPTS`] were open.
    pub attempts_untracked: u64,
}

impl Pairing {
    /// One event of user `user` on host `host`. Returns true when the event is the
    /// first of its session inside the period (the user has one more session).
    pub fn event(
        &mut self,
        f: &Facts<'_>,
        user: u32,
        host: u32,
        in_period: bool,
        at: Place<'_>,
    ) -> bool {
        let new_session = self.session(f, user, host, in_period);
        if f.is_tool_call() {
            self.tool_call(f, user, host, in_period, at);
        }
        new_session
    }

    fn session(&mut self, f: &Facts<'_>, user: u32, host: u32, in_period: bool) -> bool {
        let Some(id) = f.session else {
            return false;
        };
        let index = user as usize;
        if self.sessions.len() <= index {
            self.sessions.resize_with(index + 1, HashMap::new);
        }
        let map = &mut self.sessions[index];
        let s = match map.get_mut(id) {
            Some(s) => s,
            None if self.sessions_tracked >= MAX_SESSIONS => {
                self.sessions_untracked += 1;
                return false;
            }
            None => {
                self.sessions_tracked += 1;
                map.entry(id.into()).or_insert(Session {
                    host,
                    first: None,
                    last: None,
                    started: false,
                    ended: false,
                    events: 0,
                })
            }
        };
        match f.action {
            Some("session_start") => s.started = true,
            Some("session_end") => s.ended = true,
            _ => {}
        }
        if !in_period {
            return false;
        }
        let new = s.events == 0;
        s.events += 1;
        if let Some(ms) = f.ms {
            s.first = Some(s.first.map_or(ms, |t| t.min(ms)));
            s.last = Some(s.last.map_or(ms, |t| t.max(ms)));
        }
        new
    }

    fn tool_call(&mut self, f: &Facts<'_>, user: u32, host: u32, in_period: bool, at: Place<'_>) {
        let closing = f.outcome != Some("attempted");
        if closing && self.attempts.is_empty() {
            return;
        }
        let key = match (f.tool_use_id, f.session) {
            (Some(id), _) if !id.is_empty() => {
                if closing {
                    self.attempts.remove(id);
                    return;
                }
                id.to_owned()
            }
            (_, Some(session)) => format!("{session}\0{}", f.resource.unwrap_or_default()),
            _ => return,
        };
        if closing {
            self.attempts.remove(key.as_str());
            return;
        }
        if self.attempts.len() >= MAX_OPEN_ATTEMPTS && !self.attempts.contains_key(key.as_str()) {
            self.attempts_untracked += 1;
            return;
        }
        self.attempts.insert(
            key.into(),
            Attempt {
                user,
                host,
                session: f.session.unwrap_or_default().into(),
                ms: f.ms,
                in_period,
                resource: f.resource.unwrap_or_default().into(),
                tool: f.tool_name.unwrap_or_default().into(),
                stream: at.stream,
                file: at.file.into(),
                line: at.line,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::json;

    fn feed(p: &mut Pairing, line: &str, in_period: bool) -> bool {
        let v = json::parse(line).unwrap();
        let f = Facts::of(v.as_object().unwrap());
        let at = Place {
            stream: 0,
            file: "f",
            line: 1,
        };
        p.event(&f, 0, 0, in_period, at)
    }

    #[test]
    fn sessions_pair_start_and_end_and_count_once_in_the_period() {
        let mut p = Pairing::default();
        assert!(!feed(
            &mut p,
            r#"{"session_id":"a","action":"session_start"}"#,
            false
        ));
        assert!(feed(
            &mut p,
            r#"{"session_id":"a","action":"user_prompt"}"#,
            true
        ));
        assert!(!feed(
            &mut p,
            r#"{"session_id":"a","action":"user_prompt"}"#,
            true
        ));
        assert!(feed(
            &mut p,
            r#"{"session_id":"b","action":"session_start"}"#,
            true
        ));
        feed(
            &mut p,
            r#"{"session_id":"a","action":"session_end"}"#,
            false,
        );
        let a = &p.sessions[0]["a"];
        assert!(a.started && a.ended && a.events == 2);
        let b = &p.sessions[0]["b"];
        assert!(b.started && !b.ended);
    }

    #[test]
    fn attempts_close_by_tool_use_id_or_by_session_and_resource() {
        let mut p = Pairing::default();
        let pre = |id: &str| {
            format!(
                r#"{{"session_id":"s","action":"tool_execution","outcome":"attempted","resource":"ls","metadata":{{"tool_use_id":"{id}","tool_name":"Bash"}}}}"#
            )
        };
        feed(&mut p, &pre("t1"), true);
        feed(&mut p, &pre("t2"), true);
        feed(
            &mut p,
            r#"{"session_id":"s","action":"tool_execution","outcome":"denied","resource":"ls","metadata":{"tool_use_id":"t1"}}"#,
            true,
        );
        feed(
            &mut p,
            r#"{"session_id":"s","action":"file_read","outcome":"attempted","resource":"/etc/hosts"}"#,
            true,
        );
        feed(
            &mut p,
            r#"{"session_id":"s","action":"file_read","outcome":"success","resource":"/etc/hosts"}"#,
            true,
        );
        // A permission request is not a tool call.
        feed(
            &mut p,
            r#"{"session_id":"s","action":"permission_change","outcome":"attempted","resource":"x"}"#,
            true,
        );
        let open: Vec<&str> = p.attempts.keys().map(|k| &**k).collect();
        assert_eq!(open, ["t2"]);
        assert_eq!(&*p.attempts["t2"].tool, "Bash");
    }
}
