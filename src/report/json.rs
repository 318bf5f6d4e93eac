//! The report as one JSON object, for tools: the same numbers as the HTML. Its
//! members are an interface (docs/REPORT.md): members are added, never renamed.

use super::model::{Finished, Outcomes};
use super::period::{day_label, format_ms};
use super::topk::TopK;
use super::{Report, StreamReport};
use crate::audit::schema::{ACTIONS, OUTCOMES};
use serde_json::{Map, Value, json};
use std::io::{self, Write};

/// How many entries the `top_*` lists have.
pub const TOP: usize = 20;

pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &to_value(report))?;
    writeln!(out)
}

pub fn to_value(r: &Report) -> Value {
    let f = &r.finished;
    let t = &f.tally;
    let mut v = json!({
        "report": "auditship report",
        "report_version": 1,
        "generator": concat!("auditship ", env!("CARGO_PKG_VERSION")),
        "from": t.period.from.or(t.first).map(format_ms),
        "to": t.period.to.or(t.last).map(format_ms),
        "from_given": t.period.from.is_some(),
        "to_given": t.period.to.is_some(),
        "first_event": t.first.map(format_ms),
        "last_event": t.last.map(format_ms),
        "ok": r.ok(),
        "problem_count": r.problem_count(),
        "inputs_sha256": r.inputs_sha256,
        "inputs": r.inputs.iter().map(|i| json!({
            "path": i.path, "bytes": i.bytes, "sha256": i.sha256,
        })).collect::<Vec<_>>(),
        "events": t.events,
        "outcomes": outcomes(&t.outcomes),
        "events_outside_period": t.outside,
        "events_undated": t.undated,
        "events_unattributed": t.unattributed,
        "duplicates_counted_once": r.duplicates,
        "daemon_records": r.daemon_records,
        "users": users(f),
        "hosts": hosts(f),
        "streams": r.streams.iter().map(stream).collect::<Vec<_>>(),
        "heartbeat_interval_seconds": r.heartbeat.as_secs(),
        "silence_threshold_seconds": t.threshold_ms / 1000,
        "silent_periods": f.silences.iter().map(|(h, s)| json!({
            "host": f.host_name(*h),
            "from": format_ms(s.from),
            "to": format_ms(s.to),
            "seconds": (s.to - s.from) / 1000,
            "kind": s.kind.as_str(),
        })).collect::<Vec<_>>(),
        "silent_periods_complete": !t.silences_incomplete,
        "open_sessions": open_sessions(f),
        "unclosed_attempts": unclosed(r),
        "activity": activity(r),
        "reproduce": {
            "commands": r.commands,
            "inputs_sha256": r.inputs_sha256,
            "inputs_sha256_is": "SHA-256 of the lines \"<sha256>  <path>\\n\" of `inputs`, in that order (sha256sum's output)",
        },
    });
    if t.pairing.sessions_untracked > 0 {
        v["sessions_untracked"] = t.pairing.sessions_untracked.into();
    }
    v
}

/// `{"success", "failure", "denied", "attempted"}`, and `other` when some outcome
/// was none of those.
pub fn outcomes(o: &Outcomes) -> Value {
    let mut m = Map::new();
    for (i, name) in OUTCOMES.iter().enumerate() {
        m.insert((*name).into(), o[i].into());
    }
    if o[OUTCOMES.len()] > 0 {
        m.insert("other".into(), o[OUTCOMES.len()].into());
    }
    Value::Object(m)
}

fn users(f: &Finished) -> Vec<Value> {
    f.users_in_order()
        .into_iter()
        .map(|i| &f.tally.users[i as usize])
        .filter(|u| u.events > 0)
        .map(|u| {
            let by_day: Map<String, Value> = u
                .by_day
                .iter()
                .map(|(d, o)| (day_label(*d), outcomes(o)))
                .collect();
            json!({
                "user_id": u.user_id,
                "events": u.events,
                "outcomes": outcomes(&u.outcomes),
                "sessions": u.sessions,
                "prompts": u.prompts,
                "tool_calls": u.tool_calls,
                "ai_decisions": u.decisions,
                "hosts": u.hosts.iter().map(|h| f.host_name(*h)).collect::<Vec<_>>(),
                "first": u.first.map(format_ms),
                "last": u.last.map(format_ms),
                "by_day": by_day,
            })
        })
        .collect()
}

fn hosts(f: &Finished) -> Vec<Value> {
    f.hosts_in_order()
        .into_iter()
        .map(|i| &f.tally.hosts[i as usize])
        .filter(|h| h.events > 0 || h.daemon_records > 0 || f.tally.period.is_bounded())
        .map(|h| {
            let silent_ms: i64 = f
                .silences
                .iter()
                .filter(|(i, _)| f.host_name(*i) == h.host)
                .map(|(_, s)| s.to - s.from)
                .sum();
            json!({
                "host": h.host,
                "events": h.events,
                "daemon_records": h.daemon_records,
                "heartbeats": h.heartbeats,
                "users": h.users.iter().map(|u| f.user_name(*u)).collect::<Vec<_>>(),
                "first": h.first.map(format_ms),
                "last": h.last.map(format_ms),
                "silent_seconds": silent_ms / 1000,
            })
        })
        .collect()
}

fn stream(s: &StreamReport) -> Value {
    let sum = &s.summary;
    let mut v = json!({
        "path": s.path,
        "kind": s.kind,
        "ok": s.ok(),
        "files": sum.files,
        "events": sum.events,
        "members": sum.members,
        "first_seq": sum.first.map(|h| h.seq),
        "first_hash": sum.first.as_ref().map(|h| h.hash_str().to_owned()),
        "last_seq": sum.last.map(|h| h.seq),
        "last_hash": sum.last.as_ref().map(|h| h.hash_str().to_owned()),
        "problem_count": sum.problems,
        "by_code": sum.by_code,
        "problems": s.problems.iter().map(|p| json!({
            "file": p.file, "path": p.path, "line": p.line, "code": p.code, "detail": p.detail,
        })).collect::<Vec<_>>(),
        "problems_omitted": s.problems_omitted,
        "users": s.users,
        "hosts": s.hosts,
        "command": s.command,
    });
    if !s.joined.is_empty() {
        v["joined"] = json!(s.joined);
    }
    if let Some((file, line, bytes)) = &sum.pending {
        v["pending"] = json!({"file": file, "line": line, "bytes": bytes});
    }
    if let Some((host, source)) = &s.origin {
        v["host"] = host.as_str().into();
        v["source"] = source.as_str().into();
    }
    if let Some((lines, resent, daemon)) = s.export {
        v["records"] = lines.into();
        v["resent_dropped"] = resent.into();
        v["daemon_records"] = daemon.into();
    }
    if let Some(n) = s.archives_checked {
        v["archives_checked"] = n.into();
    }
    if let Some(c) = &sum.checkpoints {
        v["checkpoints"] = json!({
            "stream": c.stream,
            "held": c.held,
            "covered_to_seq": c.covered_to,
            "before_files": c.before_files,
        });
    }
    v
}

fn open_sessions(f: &Finished) -> Value {
    let o = &f.open_sessions;
    json!({
        "count": o.count,
        "without_start": o.without_start,
        "listed": o.list.iter().map(|s| json!({
            "user_id": f.user_name(s.user),
            "host": f.host_name(s.host),
            "session_id": s.session,
            "first": s.first.map(format_ms),
            "last": s.last.map(format_ms),
            "events": s.events,
        })).collect::<Vec<_>>(),
        "omitted": o.count.saturating_sub(o.list.len() as u64),
        "tracked": f.tally.pairing.sessions_tracked,
    })
}

fn unclosed(r: &Report) -> Value {
    let f = &r.finished;
    json!({
        "count": f.unclosed_count,
        "listed": f.unclosed.iter().map(|a| json!({
            "user_id": f.user_name(a.user),
            "host": f.host_name(a.host),
            "session_id": &*a.session,
            "timestamp": a.ms.map(format_ms),
            "tool_name": &*a.tool,
            "resource": &*a.resource,
            "stream": stream_path(r, a.stream),
            "file": &*a.file,
            "line": a.line,
        })).collect::<Vec<_>>(),
        "omitted": f.unclosed_count.saturating_sub(f.unclosed.len() as u64),
        "untracked": f.tally.pairing.attempts_untracked,
    })
}

/// Streams are numbered in the order read; the report names them by path.
pub fn stream_path(r: &Report, index: u32) -> &str {
    r.streams
        .get(index as usize)
        .map_or("", |s| s.path.as_str())
}

fn activity(r: &Report) -> Value {
    let f = &r.finished;
    let t = &f.tally;
    let mut by_action = Map::new();
    for (i, row) in t.by_action.iter().enumerate() {
        if row.iter().sum::<u64>() == 0 {
            continue;
        }
        let name = ACTIONS.get(i).copied().unwrap_or("other");
        by_action.insert(name.into(), outcomes(row));
    }
    let by_day: Map<String, Value> = t
        .by_day
        .iter()
        .map(|(d, o)| (day_label(*d), outcomes(o)))
        .collect();
    json!({
        "by_action": by_action,
        "by_day": by_day,
        "denied": t.denied,
        "failed": t.failed,
        "denied_and_failed": t.listed.iter().map(|l| json!({
            "timestamp": l.timestamp,
            "user_id": f.user_name(l.user),
            "host": f.host_name(l.host),
            "session_id": l.session,
            "action": l.action,
            "outcome": l.outcome,
            "tool_name": l.tool,
            "resource": l.resource,
            "stream": stream_path(r, l.stream),
            "file": l.file,
            "line": l.line,
        })).collect::<Vec<_>>(),
        "denied_and_failed_omitted": (t.denied + t.failed).saturating_sub(t.listed.len() as u64),
        "top_resources": top(&t.resources, "resource"),
        "top_resources_exact": t.resources.exact(),
        "top_tools": top(&t.tools, "tool_name"),
        "compliance_tags": t.tags.iter().map(|tag| json!({
            "tag": tag.tag,
            "events": tag.events,
            "top_resources": top(&tag.resources, "resource"),
        })).collect::<Vec<_>>(),
        "other_tags_events": t.other_tags,
        "ai_decisions": {
            "count": t.decision_count,
            "listed": t.decisions.iter().map(|d| json!({
                "timestamp": d.timestamp,
                "user_id": f.user_name(d.user),
                "decision": d.decision,
                "confidence": d.confidence,
                "resource": d.resource,
            })).collect::<Vec<_>>(),
            "omitted": t.decision_count.saturating_sub(t.decisions.len() as u64),
        },
    })
}

fn top(t: &TopK, name: &str) -> Vec<Value> {
    t.top(TOP)
        .into_iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert(name.into(), r.key.into());
            m.insert("events".into(), r.count.into());
            m.insert("error".into(), r.error.into());
            Value::Object(m)
        })
        .collect()
}
