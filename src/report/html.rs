//! The report as one self-contained HTML page: inline CSS and SVG, no script, no
//! font, image or style fetched, readable on screen and printable to PDF (A4, page
//! breaks between sections). Every figure of the JSON report is on it, as plain
//! digits; every text from the trail is escaped.

use super::json::TOP;
use super::model::{Finished, Outcomes};
use super::period::{format_ms, span_words};
use super::svg::{self, Bar};
use super::topk::TopK;
use super::{Report, StreamReport};
use crate::audit::schema::{ACTIONS, OUTCOMES};
use crate::words::count as plural;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Users drawn in the per-user chart (all are in its table).
const CHART_USERS: usize = 40;

/// A time for a table cell: RFC 3339, which may wrap when the cell is narrow.
fn when(ms: Option<i64>) -> String {
    ms.map(|ms| time_span(&format_ms(ms))).unwrap_or_default()
}

fn time_span(text: &str) -> String {
    format!("<span class=\"time\">{}</span>", escape(text))
}

/// `&`, `<`, `>`, `"` and `'` as character references.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2430; background: #fff; margin: 0; line-height: 1.45; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #1d2430; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 1.05rem; margin: 22px 0 8px; }
p.sub { color: #4a5565; margin: 2px 0; }
.verdict { display: inline-block; margin: 14px 0 6px; padding: 8px 14px; border-radius: 6px; font-weight: 700; font-size: 1.1rem; }
.verdict.ok { background: #e3f3e6; color: #1e5e2a; border: 1px solid #4e9a5b; }
.verdict.bad { background: #fbe4e1; color: #8a1f14; border: 1px solid #c0392b; }
nav { margin: 10px 0 0; font-size: .95rem; }
nav a { margin-right: 14px; color: #2c6fbb; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 14px; font-size: .88rem; }
th, td { border: 1px solid #d5dae1; padding: 4px 7px; text-align: left; vertical-align: top; }
.time { overflow-wrap: anywhere; }
th { background: #eef1f5; font-weight: 600; }
tbody tr:nth-child(even) td { background: #f8f9fb; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.bad { color: #8a1f14; font-weight: 600; }
td.ok { color: #1e5e2a; font-weight: 600; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .82rem; word-break: break-all; }
pre { background: #f4f6f8; border: 1px solid #d5dae1; padding: 10px; white-space: pre-wrap; word-break: break-all; font-size: .82rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; margin: 12px 0; }
.figure { border: 1px solid #d5dae1; border-radius: 6px; padding: 8px 10px; }
.figure .n { font-size: 1.4rem; font-weight: 700; }
.figure .t { color: #4a5565; font-size: .85rem; }
.note { color: #4a5565; font-size: .88rem; }
svg.chart { width: 100%; height: auto; display: block; margin: 6px 0 10px; }
svg .a { font-size: 11px; fill: #4a5565; }
svg .l { font-size: 12px; fill: #1d2430; }
svg .g { stroke: #e3e7ec; stroke-width: 1; }
svg .x { stroke: #1d2430; stroke-width: 1; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section { break-before: page; }
  section#summary { break-before: auto; }
  h2, h3 { break-after: avoid; }
  tr, .figure, svg.chart { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"#;

pub fn write(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(r).as_bytes())?;
    out.flush()
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let f = &r.finished;
    let t = &f.tally;
    let from = t
        .period
        .from
        .or(t.first)
        .map(format_ms)
        .unwrap_or_else(|| "—".into());
    let to = t
        .period
        .to
        .or(t.last)
        .map(format_ms)
        .unwrap_or_else(|| "—".into());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"generator\" content=\"auditship {}\">\
         <title>Audit report {} to {}</title><style>{STYLE}</style></head><body><main>",
        env!("CARGO_PKG_VERSION"),
        escape(&from),
        escape(&to)
    );
    header(&mut h, r, &from, &to);
    summary(&mut h, r);
    integrity(&mut h, r);
    completeness(&mut h, r);
    activity(&mut h, r);
    reproduce(&mut h, r);
    h.push_str("</main></body></html>\n");
    h
}

fn header(h: &mut String, r: &Report, from: &str, to: &str) {
    let t = &r.finished.tally;
    let bounds = match (t.period.from, t.period.to) {
        (None, None) => "the whole trail read: first to last event",
        (Some(_), Some(_)) => "from inclusive, to exclusive",
        (Some(_), None) => "from inclusive, to the last event",
        (None, Some(_)) => "from the first event, to exclusive",
    };
    let _ = write!(
        h,
        "<header><h1>Audit trail report</h1>\
         <p class=\"sub\">Period: <strong>{}</strong> to <strong>{}</strong> ({bounds}). Times are UTC.</p>\
         <p class=\"sub\">Generated by auditship {} from {} files; inputs SHA-256 <code>{}</code>.</p>",
        escape(from),
        escape(to),
        env!("CARGO_PKG_VERSION"),
        r.inputs.len(),
        r.inputs_sha256
    );
    let problems = r.problem_count();
    if r.ok() {
        let _ = write!(
            h,
            "<div class=\"verdict ok\" id=\"verdict\">Integrity: INTACT — {} checked, no problem</div>",
            plural(r.streams.len() as u64, "stream", "streams")
        );
    } else {
        let bad = r.streams.iter().filter(|s| !s.ok()).count() as u64;
        let _ = write!(
            h,
            "<div class=\"verdict bad\" id=\"verdict\">Integrity: NOT INTACT — {} in {} of {}</div>",
            plural(problems, "problem", "problems"),
            bad,
            plural(r.streams.len() as u64, "stream", "streams")
        );
    }
    h.push_str(
        "<nav><a href=\"#summary\">Summary</a><a href=\"#integrity\">Integrity</a>\
         <a href=\"#completeness\">Completeness</a><a href=\"#activity\">Activity</a>\
         <a href=\"#reproduce\">Reproduce</a></nav></header>",
    );
}

fn figure(h: &mut String, id: &str, n: impl std::fmt::Display, text: &str) {
    let _ = write!(
        h,
        "<div class=\"figure\"><div class=\"n\" id=\"fig-{id}\">{n}</div><div class=\"t\">{}</div></div>",
        escape(text)
    );
}

fn summary(h: &mut String, r: &Report) {
    let f = &r.finished;
    let t = &f.tally;
    let people = t.users.iter().filter(|u| u.events > 0).count();
    let sessions: u64 = t.users.iter().map(|u| u.sessions).sum();
    let prompts: u64 = t.users.iter().map(|u| u.prompts).sum();
    let tool_calls: u64 = t.users.iter().map(|u| u.tool_calls).sum();
    let hosts = t
        .hosts
        .iter()
        .filter(|x| x.events > 0 || x.daemon_records > 0)
        .count();
    h.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"figures\">");
    figure(h, "events", t.events, "events in the period");
    figure(h, "users", people, "people");
    figure(h, "hosts", hosts, "hosts");
    figure(h, "sessions", sessions, "sessions");
    figure(h, "prompts", prompts, "prompts");
    figure(h, "tool-calls", tool_calls, "tool call events");
    figure(h, "success", t.outcomes[0], "success");
    figure(h, "failure", t.outcomes[1], "failure");
    figure(h, "denied", t.outcomes[2], "denied");
    figure(h, "attempted", t.outcomes[3], "attempted");
    figure(h, "decisions", t.decision_count, "AI decisions");
    figure(h, "streams", r.streams.len(), "streams checked");
    figure(h, "problems", r.problem_count(), "integrity problems");
    figure(h, "silent", f.silences.len(), "silent periods");
    figure(
        h,
        "open-sessions",
        f.open_sessions.count,
        "sessions without an end",
    );
    figure(
        h,
        "unclosed",
        f.unclosed_count,
        "attempted calls never closed",
    );
    h.push_str("</div>");
    let _ = write!(
        h,
        "<p class=\"note\">Counted: every event whose timestamp lies in the period ({} outside it were checked but not counted{}). \
         The daemon's own records ({}) show that a host was up; they are not people's activity and are not counted here. \
         {} found both in an export and on disk were counted once.</p></section>",
        t.outside,
        if t.undated > 0 {
            format!(", {} without a readable timestamp", t.undated)
        } else {
            String::new()
        },
        r.daemon_records,
        plural(r.duplicates, "event", "events"),
    );
}

fn integrity(h: &mut String, r: &Report) {
    h.push_str(
        "<section id=\"integrity\"><h2>1. Integrity</h2>\
         <p class=\"note\">Each stream is verified whole, whatever the period: every line, the hash chain across its files \
         in name order, HMACs when keys were given, signed checkpoints when public keys were given, archives against \
         their manifest. These are the checks of <code>auditship verify</code> (docs/FORMAT.md, sections 5 and 6).</p>\
         <table><thead><tr><th>stream</th><th>kind</th><th>user / host</th><th class=\"num\">events</th>\
         <th>first seq / hash</th><th>last seq / hash</th><th>checkpoints</th><th>verdict</th></tr></thead><tbody>",
    );
    for s in &r.streams {
        stream_row(h, s);
    }
    h.push_str("</tbody></table>");
    for s in r.streams.iter().filter(|s| !s.ok()) {
        let _ = write!(
            h,
            "<h3>Problems in {}</h3><table class=\"problems\"><thead><tr><th>file</th><th class=\"num\">line</th>\
             <th>code</th><th>detail</th></tr></thead><tbody>",
            escape(&s.path)
        );
        for p in &s.problems {
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"bad\">{}</td><td>{}</td></tr>",
                escape(&p.file),
                p.line,
                escape(&p.code),
                escape(&p.detail)
            );
        }
        h.push_str("</tbody></table>");
        if s.problems_omitted > 0 {
            let _ = write!(
                h,
                "<p class=\"note\">{} more not listed; <code>{}</code> lists them all.</p>",
                s.problems_omitted,
                escape(&s.command)
            );
        }
    }
    h.push_str("</section>");
}

fn stream_row(h: &mut String, s: &StreamReport) {
    let sum = &s.summary;
    let link = |head: Option<crate::audit::Head>| match head {
        Some(x) => format!("{} <code>{}</code>", x.seq, x.hash_str()),
        None => "—".into(),
    };
    let who = match &s.origin {
        Some((host, _)) => {
            let users: Vec<&str> = s.users.iter().map(String::as_str).collect();
            format!("{} / {}", users.join(", "), host)
        }
        None => format!(
            "{} / {}",
            s.users
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            s.hosts
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let checkpoints = match (&sum.checkpoints, s.archives_checked, s.export) {
        (Some(c), _, _) => format!(
            "{} held{}",
            c.held,
            c.covered_to
                .map(|q| format!(", up to seq {q}"))
                .unwrap_or_default()
        ),
        (None, Some(n), _) => format!("{} archives checked", n),
        (None, None, Some((lines, resent, daemon))) => {
            format!("{lines} lines, {resent} re-sends dropped, {daemon} daemon records")
        }
        _ => "—".into(),
    };
    let verdict = if s.ok() {
        "<td class=\"ok\">intact</td>".to_string()
    } else {
        let codes: Vec<String> = sum
            .by_code
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        format!(
            "<td class=\"bad\">NOT INTACT: {}</td>",
            escape(&codes.join(", "))
        )
    };
    let _ = write!(
        h,
        "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td>{verdict}</tr>",
        escape(&s.path),
        s.kind,
        escape(&who),
        sum.events,
        link(sum.first),
        link(sum.last),
        escape(&checkpoints)
    );
}

fn completeness(h: &mut String, r: &Report) {
    let f = &r.finished;
    let t = &f.tally;
    let _ = write!(
        h,
        "<section id=\"completeness\"><h2>2. Completeness</h2><h3>Silent periods</h3>\
         <p class=\"note\">A host is silent when it has no event (heartbeats of the daemon included) for more than {} \
         (twice the heartbeat interval of {}). The period's bounds count as events: silence from its start to a host's \
         first event, and from its last event to the period's end, is listed too.</p>",
        span_words(t.threshold_ms),
        span_words(r.heartbeat.as_millis() as i64)
    );
    if f.silences.is_empty() {
        h.push_str("<p id=\"no-silence\">No host was silent.</p>");
    } else {
        h.push_str(
            "<table id=\"silent-periods\"><thead><tr><th>host</th><th>from</th><th>to</th><th>for</th>\
             <th class=\"num\">seconds</th><th>where</th></tr></thead><tbody>",
        );
        for (host, s) in &f.silences {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(f.host_name(*host)),
                when(Some(s.from)),
                when(Some(s.to)),
                span_words(s.to - s.from),
                (s.to - s.from) / 1000,
                s.kind.as_str()
            );
        }
        h.push_str("</tbody></table>");
    }
    if t.silences_incomplete {
        h.push_str("<p class=\"note\">The list is incomplete: too many silences to hold; some shorter ones are not listed.</p>");
    }
    open_sessions(h, f);
    unclosed(h, r);
    h.push_str("</section>");
}

fn open_sessions(h: &mut String, f: &Finished) {
    let o = &f.open_sessions;
    let _ = write!(
        h,
        "<h3>Sessions with a start and no end</h3><p class=\"note\">{} in the period ({} more had no start in the records read). \
         A session still running when the records were taken has no end yet.</p>",
        plural(o.count, "session", "sessions"),
        o.without_start
    );
    if !o.list.is_empty() {
        h.push_str(
            "<table id=\"open-sessions\"><thead><tr><th>user</th><th>host</th><th>session</th><th>first event</th>\
             <th>last event</th><th class=\"num\">events</th></tr></thead><tbody>",
        );
        for s in &o.list {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(f.user_name(s.user)),
                escape(f.host_name(s.host)),
                escape(&s.session),
                when(s.first),
                when(s.last),
                s.events
            );
        }
        h.push_str("</tbody></table>");
        omitted(h, o.count, o.list.len());
    }
}

fn omitted(h: &mut String, total: u64, listed: usize) {
    if total > listed as u64 {
        let _ = write!(
            h,
            "<p class=\"note\">{} more not listed here; the CSV report lists every event.</p>",
            total - listed as u64
        );
    }
}

fn unclosed(h: &mut String, r: &Report) {
    let f = &r.finished;
    let _ = write!(
        h,
        "<h3>Attempted tool calls never closed</h3><p class=\"note\">{} recorded before running (PreToolUse) with no \
         record of success, failure or denial after them (matched by tool_use_id, else by session and resource).</p>",
        plural(f.unclosed_count, "call", "calls")
    );
    if f.unclosed.is_empty() {
        return;
    }
    h.push_str(
        "<table id=\"unclosed\"><thead><tr><th>time</th><th>user</th><th>host</th><th>tool</th><th>resource</th>\
         <th>where</th></tr></thead><tbody>",
    );
    for a in &f.unclosed {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}:{}</td></tr>",
            when(a.ms),
            escape(f.user_name(a.user)),
            escape(f.host_name(a.host)),
            escape(&a.tool),
            escape(&a.resource),
            escape(&a.file),
            a.line
        );
    }
    h.push_str("</tbody></table>");
    omitted(h, f.unclosed_count, f.unclosed.len());
}

fn outcome_cells(h: &mut String, o: &Outcomes) {
    for n in &o[..OUTCOMES.len()] {
        let _ = write!(h, "<td class=\"num\">{n}</td>");
    }
}

fn outcome_heads(h: &mut String) {
    for name in OUTCOMES {
        let _ = write!(h, "<th class=\"num\">{name}</th>");
    }
}

fn activity(h: &mut String, r: &Report) {
    let f = &r.finished;
    let t = &f.tally;
    h.push_str("<section id=\"activity\"><h2>3. Activity</h2>");
    if let (Some(first), Some(last)) = (
        t.period.from.or(t.first),
        t.period.to.map(|x| x - 1).or(t.last),
    ) {
        let (d0, d1) = svg::day_range(first, last);
        let (bars, unit) = svg::day_bars(&t.by_day, d0, d1);
        let _ = write!(h, "<h3>Events per {unit}, by outcome</h3>");
        h.push_str(&svg::columns(
            &bars,
            &format!("events per {unit} by outcome"),
        ));
    }
    users(h, f);
    hosts(h, f);
    by_action(h, f);
    refused(h, r);
    tops(h, f);
    decisions(h, f);
    h.push_str("</section>");
}

fn users(h: &mut String, f: &Finished) {
    let t = &f.tally;
    let order: Vec<u32> = f
        .users_in_order()
        .into_iter()
        .filter(|u| t.users[*u as usize].events > 0)
        .collect();
    h.push_str("<h3>Per user</h3>");
    let mut by_events = order.clone();
    by_events.sort_by_key(|u| std::cmp::Reverse(t.users[*u as usize].events));
    let bars: Vec<Bar> = by_events
        .iter()
        .take(CHART_USERS)
        .map(|u| Bar {
            label: t.users[*u as usize].user_id.clone(),
            values: t.users[*u as usize].outcomes,
        })
        .collect();
    if !bars.is_empty() {
        h.push_str(&svg::rows(&bars, "events per user by outcome"));
    }
    if order.len() > CHART_USERS {
        let _ = write!(
            h,
            "<p class=\"note\">The chart shows the {CHART_USERS} most active; the table has all {}.</p>",
            order.len()
        );
    }
    h.push_str("<table id=\"users\"><thead><tr><th>user</th><th class=\"num\">events</th>");
    outcome_heads(h);
    h.push_str(
        "<th class=\"num\">sessions</th><th class=\"num\">prompts</th><th class=\"num\">tool calls</th>\
         <th class=\"num\">AI decisions</th><th>hosts</th><th>first</th><th>last</th></tr></thead><tbody>",
    );
    for u in order {
        let u = &t.users[u as usize];
        let hosts: Vec<&str> = u.hosts.iter().map(|x| f.host_name(*x)).collect();
        let _ = write!(
            h,
            "<tr data-user=\"{}\"><td>{}</td><td class=\"num\">{}</td>",
            escape(&u.user_id),
            escape(&u.user_id),
            u.events
        );
        outcome_cells(h, &u.outcomes);
        let _ = write!(
            h,
            "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            u.sessions,
            u.prompts,
            u.tool_calls,
            u.decisions,
            escape(&hosts.join(", ")),
            when(u.first),
            when(u.last)
        );
    }
    let _ = write!(
        h,
        "<tr class=\"total\"><th>all</th><th class=\"num\">{}</th>",
        t.events
    );
    for n in &t.outcomes[..OUTCOMES.len()] {
        let _ = write!(h, "<th class=\"num\">{n}</th>");
    }
    h.push_str("<th colspan=\"7\"></th></tr></tbody></table>");
    if t.unattributed > 0 {
        let _ = write!(
            h,
            "<p class=\"note\">{} events name no user; they are in the totals only.</p>",
            t.unattributed
        );
    }
}

fn hosts(h: &mut String, f: &Finished) {
    h.push_str(
        "<h3>Per host</h3><table id=\"hosts\"><thead><tr><th>host</th><th class=\"num\">events</th>\
         <th class=\"num\">daemon records</th><th class=\"num\">heartbeats</th><th>users</th><th>first</th><th>last</th>\
         </tr></thead><tbody>",
    );
    for i in f.hosts_in_order() {
        let x = &f.tally.hosts[i as usize];
        if x.events == 0 && x.daemon_records == 0 && !f.tally.period.is_bounded() {
            continue;
        }
        let users: Vec<&str> = x.users.iter().map(|u| f.user_name(*u)).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(if x.host.is_empty() { "(none)" } else { &x.host }),
            x.events,
            x.daemon_records,
            x.heartbeats,
            escape(&users.join(", ")),
            when(x.first),
            when(x.last)
        );
    }
    h.push_str("</tbody></table>");
}

fn by_action(h: &mut String, f: &Finished) {
    h.push_str("<h3>By action and outcome</h3><table id=\"by-action\"><thead><tr><th>action</th>");
    outcome_heads(h);
    h.push_str("<th class=\"num\">all</th></tr></thead><tbody>");
    for (i, row) in f.tally.by_action.iter().enumerate() {
        let all: u64 = row.iter().sum();
        if all == 0 {
            continue;
        }
        let _ = write!(
            h,
            "<tr><td>{}</td>",
            ACTIONS.get(i).copied().unwrap_or("other")
        );
        outcome_cells(h, row);
        let _ = write!(h, "<td class=\"num\">{all}</td></tr>");
    }
    h.push_str("</tbody></table>");
}

fn refused(h: &mut String, r: &Report) {
    let f = &r.finished;
    let t = &f.tally;
    let _ = write!(
        h,
        "<h3>Denied and failed</h3><p class=\"note\">{} denied, {} failed.</p>",
        t.denied, t.failed
    );
    if t.listed.is_empty() {
        return;
    }
    h.push_str(
        "<table id=\"denied-failed\"><thead><tr><th>time</th><th>user</th><th>host</th><th>outcome</th><th>action</th>\
         <th>tool</th><th>resource</th><th>where</th></tr></thead><tbody>",
    );
    for l in &t.listed {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td>\
             <td class=\"mono\">{}:{}</td></tr>",
            time_span(&l.timestamp),
            escape(f.user_name(l.user)),
            escape(f.host_name(l.host)),
            escape(&l.outcome),
            escape(&l.action),
            escape(&l.tool),
            escape(&l.resource),
            escape(&l.file),
            l.line
        );
    }
    h.push_str("</tbody></table>");
    omitted(h, t.denied + t.failed, t.listed.len());
}

fn top_table(h: &mut String, id: &str, what: &str, t: &TopK) {
    let _ = write!(
        h,
        "<table id=\"{id}\"><thead><tr><th>{what}</th><th class=\"num\">events</th></tr></thead><tbody>"
    );
    for x in t.top(TOP) {
        let n = if x.error > 0 {
            format!("{} (at least {})", x.count, x.count - x.error)
        } else {
            x.count.to_string()
        };
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{n}</td></tr>",
            escape(x.key)
        );
    }
    h.push_str("</tbody></table>");
}

fn tops(h: &mut String, f: &Finished) {
    let t = &f.tally;
    h.push_str("<h3>Top resources of tool calls</h3>");
    top_table(h, "top-resources", "resource", &t.resources);
    h.push_str("<h3>Top tools</h3>");
    top_table(h, "top-tools", "tool", &t.tools);
    h.push_str(
        "<h3>Regulated resources by compliance tag</h3><p class=\"note\">Tags are those `record` gave each event from its \
         resource (docs/FORMAT.md); a tag every event carries marks the trail, the others the regulated data touched.</p>",
    );
    if t.tags.is_empty() {
        h.push_str("<p>No event carries a compliance tag.</p>");
    }
    for tag in &t.tags {
        let _ = write!(h, "<h4>{} — {} events</h4>", escape(&tag.tag), tag.events);
        top_table(
            h,
            &format!("tag-{}", escape(&tag.tag)),
            "resource",
            &tag.resources,
        );
    }
    if t.other_tags > 0 {
        let _ = write!(
            h,
            "<p class=\"note\">{} tag uses beyond the first 32 tags are not broken down.</p>",
            t.other_tags
        );
    }
}

fn decisions(h: &mut String, f: &Finished) {
    let t = &f.tally;
    let _ = write!(
        h,
        "<h3>AI decisions</h3><p class=\"note\">{} recorded.</p>",
        plural(t.decision_count, "decision", "decisions")
    );
    if t.decisions.is_empty() {
        return;
    }
    h.push_str(
        "<table id=\"decisions\"><thead><tr><th>time</th><th>user</th><th>decision</th><th class=\"num\">confidence</th>\
         <th>resource</th></tr></thead><tbody>",
    );
    for d in &t.decisions {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td></tr>",
            time_span(&d.timestamp),
            escape(f.user_name(d.user)),
            escape(&d.decision),
            d.confidence.map(|c| c.to_string()).unwrap_or_default(),
            escape(&d.resource)
        );
    }
    h.push_str("</tbody></table>");
    omitted(h, t.decision_count, t.decisions.len());
}

fn reproduce(h: &mut String, r: &Report) {
    h.push_str(
        "<section id=\"reproduce\"><h2>4. How to reproduce</h2>\
         <p class=\"note\">Each stream's integrity verdict is that of these commands (exit 0 intact, 1 problems):</p><pre>",
    );
    for c in &r.commands {
        let _ = writeln!(h, "{}", escape(c));
    }
    let _ = write!(
        h,
        "</pre><p>Inputs SHA-256: <code id=\"inputs-sha256\">{}</code></p>\
         <p class=\"note\">the SHA-256 of the lines <code>&lt;sha256&gt;  &lt;path&gt;</code> below, in this order \
         (what <code>sha256sum</code> prints for these files, each line ended by a newline).</p>\
         <table id=\"inputs\"><thead><tr><th>path</th><th class=\"num\">bytes</th><th>SHA-256</th></tr></thead><tbody>",
        r.inputs_sha256
    );
    for i in &r.inputs {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td><code>{}</code></td></tr>",
            escape(&i.path),
            i.bytes,
            i.sha256
        );
    }
    h.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
