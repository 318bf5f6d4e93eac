//! The report's numbers, gathered event by event while verification walks the
//! streams: counters per user, per host, per day and per session, bounded tables for
//! the rest. Nothing here holds an event once it has been counted.
//!
//! What is bounded and how: top resources and tools are [`TopK`] tables; the listing
//! of denied and failed calls and of AI decisions keeps the first [`MAX_LISTED`]
//! (the rest counted; the CSV output lists every event); compliance tags beyond
//! [`MAX_TAGS`] distinct ones are counted together; sessions, open attempts and
//! silences have the bounds of their modules. Users, hosts and days grow with the
//! data's own variety, not with its size.
//!
//! Pure: no IO.

use super::completeness::{Attempt, Pairing, Place};
use super::facts::{Facts, OTHER_ACTION, OTHER_OUTCOME};
use super::period::{Period, day_of};
use super::silence::{MAX_RUNS, Runs, Silence};
use super::topk::{Fingerprints, Keyed, TopK};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Per outcome: FORMAT.md's four, then any other.
pub type Outcomes = [u64; OTHER_OUTCOME + 1];
/// Per action (FORMAT.md's eleven, then any other) and outcome.
pub type ActionOutcomes = [Outcomes; OTHER_ACTION + 1];

/// First entries kept in each listing (denied and failed calls, AI decisions, open
/// sessions, unclosed attempts).
pub const MAX_LISTED: usize = 200;
/// Distinct compliance tags counted one by one.
pub const MAX_TAGS: usize = 32;
/// Keys held by each top-N table.
const TOP_CAP: usize = 10_000;
const TAG_TOP_CAP: usize = 2_000;
/// Longest decision text quoted, in characters.
const DECISION_CHARS: usize = 300;

#[derive(Debug, Default)]
pub struct UserTally {
    pub user_id: String,
    pub events: u64,
    pub outcomes: Outcomes,
    pub sessions: u64,
    pub prompts: u64,
    pub tool_calls: u64,
    pub decisions: u64,
    pub hosts: BTreeSet<u32>,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub by_day: BTreeMap<i64, Outcomes>,
}

#[derive(Debug, Default)]
pub struct HostTally {
    pub host: String,
    /// People's events in the period.
    pub events: u64,
    /// The daemon's own records (exports only), in the period.
    pub daemon_records: u64,
    pub heartbeats: u64,
    pub users: BTreeSet<u32>,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub runs: Runs,
}

/// A denied or failed call, or any event listed for people.
#[derive(Debug, Clone)]
pub struct Listed {
    pub ms: Option<i64>,
    pub timestamp: String,
    pub user: u32,
    pub host: u32,
    pub session: String,
    pub action: String,
    pub outcome: String,
    pub resource: String,
    pub tool: String,
    pub stream: u32,
    pub file: String,
    pub line: u64,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub timestamp: String,
    pub user: u32,
    pub decision: String,
    pub confidence: Option<f64>,
    pub resource: String,
}

#[derive(Debug)]
pub struct TagTally {
    pub tag: String,
    pub events: u64,
    pub resources: TopK,
}

/// Everything counted.
#[derive(Debug)]
pub struct Tally {
    pub period: Period,
    /// Longer than this without an event, a host is silent (twice the heartbeat).
    pub threshold_ms: i64,
    pub users: Vec<UserTally>,
    user_ix: HashMap<Box<str>, u32>,
    pub hosts: Vec<HostTally>,
    host_ix: HashMap<Box<str>, u32>,
    /// Events in the period.
    pub events: u64,
    /// Events read outside the period (checked, not counted).
    pub outside: u64,
    /// Events whose timestamp does not read, when a period was given (not counted).
    pub undated: u64,
    /// Events in the period without a `user_id` (counted in the totals only).
    pub unattributed: u64,
    pub outcomes: Outcomes,
    pub by_action: ActionOutcomes,
    pub by_day: BTreeMap<i64, Outcomes>,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub resources: TopK,
    pub tools: TopK,
    pub tags: Vec<TagTally>,
    /// Events with a tag past [`MAX_TAGS`].
    pub other_tags: u64,
    pub listed: Vec<Listed>,
    pub denied: u64,
    pub failed: u64,
    pub decisions: Vec<Decision>,
    pub decision_count: u64,
    pub pairing: Pairing,
    fingerprints: Fingerprints,
    run_budget: usize,
    /// True when a host's runs ran out of room (some silence may be unlisted).
    pub silences_incomplete: bool,
}

impl Tally {
    pub fn new(period: Period, threshold_ms: i64) -> Tally {
        Tally {
            period,
            threshold_ms,
            users: Vec::new(),
            user_ix: HashMap::new(),
            hosts: Vec::new(),
            host_ix: HashMap::new(),
            events: 0,
            outside: 0,
            undated: 0,
            unattributed: 0,
            outcomes: Outcomes::default(),
            by_action: ActionOutcomes::default(),
            by_day: BTreeMap::new(),
            first: None,
            last: None,
            resources: TopK::new(TOP_CAP),
            tools: TopK::new(TOP_CAP),
            tags: Vec::new(),
            other_tags: 0,
            listed: Vec::new(),
            denied: 0,
            failed: 0,
            decisions: Vec::new(),
            decision_count: 0,
            pairing: Pairing::default(),
            fingerprints: Fingerprints::default(),
            run_budget: MAX_RUNS,
            silences_incomplete: false,
        }
    }

    fn user(&mut self, id: &str) -> u32 {
        if let Some(&i) = self.user_ix.get(id) {
            return i;
        }
        let i = self.users.len() as u32;
        self.users.push(UserTally {
            user_id: id.to_owned(),
            ..UserTally::default()
        });
        self.user_ix.insert(id.into(), i);
        i
    }

    fn host(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.host_ix.get(name) {
            return i;
        }
        let i = self.hosts.len() as u32;
        self.hosts.push(HostTally {
            host: name.to_owned(),
            ..HostTally::default()
        });
        self.host_ix.insert(name.into(), i);
        i
    }

    /// Whether an event at `ms` is counted: in the period, or any event when no
    /// period was given.
    fn in_period(&mut self, ms: Option<i64>) -> bool {
        match ms {
            Some(ms) => {
                let inside = self.period.contains(ms);
                if !inside {
                    self.outside += 1;
                }
                inside
            }
            None if self.period.is_bounded() => {
                self.undated += 1;
                false
            }
            None => true,
        }
    }

    /// One event of a person's stream. Returns whether it is in the period.
    pub fn event(&mut self, f: &Facts<'_>, at: Place<'_>) -> bool {
        let in_period = self.in_period(f.ms);
        let host = self.host(f.host.unwrap_or_default());
        let user = f.user.map(|u| self.user(u));
        if let Some(user) = user {
            let new_session = self.pairing.event(f, user, host, in_period, at);
            if new_session {
                self.users[user as usize].sessions += 1;
            }
        }
        if !in_period {
            return false;
        }
        self.events += 1;
        let outcome = f.outcome_index();
        self.outcomes[outcome] += 1;
        self.by_action[f.action_index()][outcome] += 1;
        if let Some(ms) = f.ms {
            self.by_day.entry(day_of(ms)).or_default()[outcome] += 1;
            self.first = Some(self.first.map_or(ms, |t| t.min(ms)));
            self.last = Some(self.last.map_or(ms, |t| t.max(ms)));
        }
        self.host_event(host, user, f.ms);
        match user {
            Some(user) => self.user_event(user, host, f, outcome),
            None => self.unattributed += 1,
        }
        self.activity(f, user, host, at);
        true
    }

    fn host_event(&mut self, host: u32, user: Option<u32>, ms: Option<i64>) {
        let threshold = self.threshold_ms;
        let h = &mut self.hosts[host as usize];
        h.events += 1;
        if let Some(u) = user {
            h.users.insert(u);
        }
        if let Some(ms) = ms {
            h.first = Some(h.first.map_or(ms, |t| t.min(ms)));
            h.last = Some(h.last.map_or(ms, |t| t.max(ms)));
            if !h.runs.add(ms, threshold, &mut self.run_budget) {
                self.silences_incomplete = true;
            }
        }
    }

    fn user_event(&mut self, user: u32, host: u32, f: &Facts<'_>, outcome: usize) {
        let u = &mut self.users[user as usize];
        u.events += 1;
        u.outcomes[outcome] += 1;
        u.hosts.insert(host);
        match f.action {
            Some("user_prompt") => u.prompts += 1,
            Some("ai_decision") => u.decisions += 1,
            _ if f.is_tool_call() => u.tool_calls += 1,
            _ => {}
        }
        if let Some(ms) = f.ms {
            u.by_day.entry(day_of(ms)).or_default()[outcome] += 1;
            u.first = Some(u.first.map_or(ms, |t| t.min(ms)));
            u.last = Some(u.last.map_or(ms, |t| t.max(ms)));
        }
    }

    /// Resources, tools, tags, the listing of denied and failed calls, decisions.
    fn activity(&mut self, f: &Facts<'_>, user: Option<u32>, host: u32, at: Place<'_>) {
        let resource = f.resource.unwrap_or_default();
        let keyed = self.fingerprints.of(resource);
        if f.is_tool_call() {
            self.resources.add(keyed);
            if let Some(tool) = f.tool_name {
                self.tools.add(self.fingerprints.of(tool));
            }
        }
        for tag in f.tags() {
            self.tag(tag, keyed);
        }
        let refused = match f.outcome {
            Some("denied") => {
                self.denied += 1;
                true
            }
            Some("failure") => {
                self.failed += 1;
                true
            }
            _ => false,
        };
        if refused && self.listed.len() < MAX_LISTED {
            self.listed.push(Listed {
                ms: f.ms,
                timestamp: f.timestamp.unwrap_or_default().to_owned(),
                user: user.unwrap_or(u32::MAX),
                host,
                session: f.session.unwrap_or_default().to_owned(),
                action: f.action.unwrap_or_default().to_owned(),
                outcome: f.outcome.unwrap_or_default().to_owned(),
                resource: resource.to_owned(),
                tool: f.tool_name.unwrap_or_default().to_owned(),
                stream: at.stream,
                file: at.file.to_owned(),
                line: at.line,
            });
        }
        if f.action == Some("ai_decision") {
            self.decision_count += 1;
            if self.decisions.len() < MAX_LISTED {
                self.decisions.push(Decision {
                    timestamp: f.timestamp.unwrap_or_default().to_owned(),
                    user: user.unwrap_or(u32::MAX),
                    decision: f
                        .decision
                        .unwrap_or_default()
                        .chars()
                        .take(DECISION_CHARS)
                        .collect(),
                    confidence: f.confidence,
                    resource: resource.to_owned(),
                });
            }
        }
    }

    fn tag(&mut self, tag: &str, resource: Keyed<'_>) {
        let t = match self.tags.iter_mut().position(|t| t.tag == tag) {
            Some(i) => &mut self.tags[i],
            None if self.tags.len() >= MAX_TAGS => {
                self.other_tags += 1;
                return;
            }
            None => {
                self.tags.push(TagTally {
                    tag: tag.to_owned(),
                    events: 0,
                    resources: TopK::new(TAG_TOP_CAP),
                });
                self.tags.last_mut().expect("just pushed")
            }
        };
        t.events += 1;
        t.resources.add(resource);
    }

    /// One of the daemon's own records: its host was up at `ms`.
    pub fn daemon_record(&mut self, host: &str, ms: Option<i64>, source_event: &str) {
        let Some(ms) = ms else {
            return;
        };
        if !self.period.contains(ms) {
            return;
        }
        let threshold = self.threshold_ms;
        let i = self.host(host);
        let h = &mut self.hosts[i as usize];
        h.daemon_records += 1;
        if source_event == "heartbeat" {
            h.heartbeats += 1;
        }
        h.first = Some(h.first.map_or(ms, |t| t.min(ms)));
        h.last = Some(h.last.map_or(ms, |t| t.max(ms)));
        if !h.runs.add(ms, threshold, &mut self.run_budget) {
            self.silences_incomplete = true;
        }
    }

    /// Ends the count: users and hosts in name order, the silences found, the open
    /// sessions and unclosed attempts.
    pub fn finish(mut self) -> Finished {
        let (from, to) = (
            self.period.from.or(self.first),
            self.period.to.or(self.last),
        );
        let threshold = self.threshold_ms;
        let mut silences = Vec::new();
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if h.events == 0 && h.daemon_records == 0 && !self.period.is_bounded() {
                continue;
            }
            for s in std::mem::take(&mut h.runs).silences(threshold, from, to) {
                silences.push((i as u32, s));
            }
        }
        silences.sort_by_key(|(h, s)| (*h, s.from));
        let open_sessions = self.open_sessions();
        let (unclosed, unclosed_count) = self.unclosed();
        Finished {
            tally: self,
            silences,
            open_sessions,
            unclosed,
            unclosed_count,
        }
    }

    fn open_sessions(&self) -> OpenSessions {
        let mut open = OpenSessions::default();
        for (user, map) in self.pairing.sessions.iter().enumerate() {
            for (id, s) in map {
                if s.events == 0 {
                    continue;
                }
                if !s.started {
                    open.without_start += 1;
                }
                if s.started && !s.ended {
                    open.count += 1;
                    open.list.push(OpenSession {
                        user: user as u32,
                        host: s.host,
                        session: id.to_string(),
                        first: s.first,
                        last: s.last,
                        events: s.events,
                    });
                }
            }
        }
        open.list
            .sort_by(|a, b| (a.first, &a.session).cmp(&(b.first, &b.session)));
        open.list.truncate(MAX_LISTED);
        open
    }

    fn unclosed(&self) -> (Vec<Attempt>, u64) {
        let mut list: Vec<Attempt> = self
            .pairing
            .attempts
            .values()
            .filter(|a| a.in_period)
            .cloned()
            .collect();
        let count = list.len() as u64;
        list.sort_by(|a, b| (a.ms, &a.session, a.line).cmp(&(b.ms, &b.session, b.line)));
        list.truncate(MAX_LISTED);
        (list, count)
    }
}

#[derive(Debug, Clone)]
pub struct OpenSession {
    pub user: u32,
    pub host: u32,
    pub session: String,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub events: u64,
}

#[derive(Debug, Default)]
pub struct OpenSessions {
    /// Sessions with a start and no end.
    pub count: u64,
    /// Sessions in the period whose start is not in the records read.
    pub without_start: u64,
    /// The first [`MAX_LISTED`], by first event.
    pub list: Vec<OpenSession>,
}

/// The count, finished: what the writers print.
#[derive(Debug)]
pub struct Finished {
    pub tally: Tally,
    /// (host index, silence), by host then time.
    pub silences: Vec<(u32, Silence)>,
    pub open_sessions: OpenSessions,
    /// The first [`MAX_LISTED`] tool calls attempted and never closed, by time.
    pub unclosed: Vec<Attempt>,
    pub unclosed_count: u64,
}

impl Finished {
    pub fn user_name(&self, user: u32) -> &str {
        self.tally
            .users
            .get(user as usize)
            .map_or("", |u| u.user_id.as_str())
    }

    pub fn host_name(&self, host: u32) -> &str {
        self.tally
            .hosts
            .get(host as usize)
            .map_or("", |h| h.host.as_str())
    }

    /// User indices in `user_id` order.
    pub fn users_in_order(&self) -> Vec<u32> {
        let mut v: Vec<u32> = (0..self.tally.users.len() as u32).collect();
        v.sort_by(|a, b| self.user_name(*a).cmp(self.user_name(*b)));
        v
    }

    /// Host indices in name order.
    pub fn hosts_in_order(&self) -> Vec<u32> {
        let mut v: Vec<u32> = (0..self.tally.hosts.len() as u32).collect();
        v.sort_by(|a, b| self.host_name(*a).cmp(self.host_name(*b)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::json;
    use crate::report::period::timestamp_ms;

    fn feed(t: &mut Tally, lines: &[&str]) {
        for (i, line) in lines.iter().enumerate() {
            let v = json::parse(line).unwrap();
            let f = Facts::of(v.as_object().unwrap());
            let at = Place {
                stream: 0,
                file: "f",
                line: i as u64 + 1,
            };
            t.event(&f, at);
        }
    }

    fn ev(ts: &str, user: &str, host: &str, action: &str, outcome: &str) -> String {
        format!(
            r#"{{"timestamp":"{ts}","user_id":"{user}","session_id":"s-{user}","host":"{host}","action":"{action}","outcome":"{outcome}","resource":"/r","compliance_tags":["SOC2"]}}"#
        )
    }

    #[test]
    fn counts_fall_per_user_outcome_and_day_within_the_period_only() {
        let period = Period::parse(Some("2026-11-02"), Some("2026-11-04")).unwrap();
        let mut t = Tally::new(period, 600_000);
        let lines = [
            ev("2026-11-01T10:00:00Z", "a", "h1", "file_read", "success"),
            ev("2026-11-02T10:00:00Z", "a", "h1", "file_read", "denied"),
            ev(
                "2026-11-03T10:00:00Z",
                "a",
                "h1",
                "tool_execution",
                "failure",
            ),
            ev("2026-11-03T10:01:00Z", "b", "h2", "user_prompt", "success"),
            ev("2026-11-04T00:00:00Z", "b", "h2", "file_read", "success"),
        ];
        feed(
            &mut t,
            &lines.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!((t.events, t.outside), (3, 2));
        let f = t.finish();
        let a = &f.tally.users[0];
        assert_eq!((a.events, a.outcomes, a.sessions), (2, [0, 1, 1, 0, 0], 1));
        assert_eq!(f.tally.users[1].prompts, 1);
        assert_eq!(
            (f.tally.denied, f.tally.failed, f.tally.listed.len()),
            (1, 1, 2)
        );
        assert_eq!(f.tally.by_day.len(), 2);
        assert_eq!(f.tally.tags[0].events, 3);
        // h1 silent from the period's start to 10:00 and from its last event on; h2 too.
        let silent: Vec<(&str, i64, i64)> = f
            .silences
            .iter()
            .map(|(h, s)| (f.host_name(*h), s.from, s.to))
            .collect();
        let ms = |s: &str| timestamp_ms(s).unwrap();
        assert_eq!(
            silent,
            [
                ("h1", ms("2026-11-02T00:00:00Z"), ms("2026-11-02T10:00:00Z")),
                ("h1", ms("2026-11-02T10:00:00Z"), ms("2026-11-03T10:00:00Z")),
                ("h1", ms("2026-11-03T10:00:00Z"), ms("2026-11-04T00:00:00Z")),
                ("h2", ms("2026-11-02T00:00:00Z"), ms("2026-11-03T10:01:00Z")),
                ("h2", ms("2026-11-03T10:01:00Z"), ms("2026-11-04T00:00:00Z")),
            ]
        );
    }

    #[test]
    fn heartbeats_keep_a_host_from_being_silent() {
        let mut t = Tally::new(Period::default(), 600_000);
        feed(
            &mut t,
            &[
                &ev("2026-11-01T10:00:00Z", "a", "h1", "file_read", "success"),
                &ev("2026-11-01T11:00:00Z", "a", "h1", "file_read", "success"),
            ],
        );
        for m in (5..60).step_by(5) {
            let ts = format!("2026-11-01T10:{m:02}:00Z");
            t.daemon_record("h1", timestamp_ms(&ts), "heartbeat");
        }
        let f = t.finish();
        assert!(f.silences.is_empty(), "{:?}", f.silences);
        assert_eq!(f.tally.hosts[0].heartbeats, 11);
        assert_eq!(f.tally.users.len(), 1, "the daemon is not a user");
    }
}
