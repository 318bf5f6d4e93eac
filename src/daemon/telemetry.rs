//! What the daemon tells its operators: `/metrics` (Prometheus text), `/health`
//! (200 or 503 with the reason) and `/status` (JSON), on a loopback listener.
//!
//! The listener answers GET requests with `Connection: close`; it is for a local
//! scraper and `auditship status`, so it is deliberately small: no keep-alive, one
//! request per connection, requests larger than 8 KiB refused. Its address is written
//! to `<state_dir>/metrics.addr` once bound (and removed before binding and at stop),
//! so `auditship status` finds this daemon through its own state directory, even when
//! the port was chosen by the system (`listen = "127.0.0.1:0"`), and never mistakes
//! another daemon on the configured port for it: `/status` names the state directory.

use super::reader::ReaderStats;
use crate::queue::Queue;
use crate::ship::SinkStats;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sink as telemetry sees it.
pub struct SinkView {
    pub name: String,
    pub kind: &'static str,
    pub stats: Arc<SinkStats>,
}

/// The telemetry receiver as the endpoints report it.
#[derive(Clone)]
pub struct ReceiverView {
    /// The address it listens on.
    pub listen: String,
    pub stats: Arc<crate::otel::Stats>,
}

impl ReceiverView {
    fn status(&self) -> Value {
        let s = &self.stats;
        let answers: serde_json::Map<String, Value> = s
            .answers
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(*v)))
                    .collect()
            })
            .unwrap_or_default();
        let problems: Vec<Value> = s
            .hook_problems
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((event, kind), n)| json!({ "hook_event": event, "kind": kind, "runs": n }))
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "listen": self.listen,
            "records_accepted": s.accepted(),
            "records_refused": s.records_refused.load(Ordering::Relaxed),
            "write_failures": s.write_failures.load(Ordering::Relaxed),
            "answers": answers,
            "hook_problems": s.hook_problem_total(),
            "hook_problems_by_event": problems,
            "last_hook_problem": s.last_hook_problem.lock().ok().and_then(|l| l.clone()),
        })
    }

    fn prometheus(&self, o: &mut String) {
        let s = &self.stats;
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP auditship_{name} {help}");
            let _ = writeln!(o, "# TYPE auditship_{name} {kind}");
        };
        family(
            o,
            "telemetry_records_total",
            "counter",
            "Claude Code log records the telemetry receiver sealed (accepted) or refused (not claude_code.*).",
        );
        let _ = writeln!(
            o,
            "auditship_telemetry_records_total{{result=\"accepted\"}} {}",
            s.accepted()
        );
        let _ = writeln!(
            o,
            "auditship_telemetry_records_total{{result=\"refused\"}} {}",
            s.records_refused.load(Ordering::Relaxed)
        );
        family(
            o,
            "telemetry_requests_total",
            "counter",
            "Requests the telemetry receiver answered, by status code.",
        );
        if let Ok(m) = s.answers.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(
                    o,
                    "auditship_telemetry_requests_total{{code=\"{code}\"}} {n}"
                );
            }
        }
        family(
            o,
            "telemetry_write_failures_total",
            "counter",
            "Groups of telemetry records that could not be written to their stream (answered 503).",
        );
        let _ = writeln!(
            o,
            "auditship_telemetry_write_failures_total {}",
            s.write_failures.load(Ordering::Relaxed)
        );
        family(
            o,
            "hook_problems_total",
            "counter",
            "Runs of a hook point where auditship is installed that Claude Code reported cancelled or failed, by hook event and kind.",
        );
        if let Ok(m) = s.hook_problems.lock() {
            for ((event, kind), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "auditship_hook_problems_total{{hook_event=\"{}\",kind=\"{kind}\"}} {n}",
                    escape_label(event)
                );
            }
        }
    }
}

/// Everything the endpoints report, shared with the pipeline.
pub struct Telemetry {
    /// The telemetry receiver, when it listens.
    pub receiver: Option<ReceiverView>,
    pub started_ms: u64,
    pub config_hash: String,
    pub host: String,
    /// The state directory, as configured: `auditship status` checks it is the one it
    /// asked about.
    pub state_dir: std::path::PathBuf,
    pub queue: Arc<Queue>,
    pub reader: Arc<ReaderStats>,
    pub reader_alive: Arc<AtomicBool>,
    pub sinks: Vec<SinkView>,
    pub unhealthy_after: Duration,
    /// The sealer's counts, when one runs.
    pub sealer: Option<SealerView>,
}

/// What `/status` and `/metrics` tell of the sealer.
pub struct SealerView {
    pub listen: String,
    pub stats: Arc<crate::sealer::Stats>,
    pub streams: Arc<crate::sealer::streams::Streams>,
}

/// A sink's position and failure state.
struct SinkState {
    cursor: u64,
    lag_batches: u64,
    lag_seconds: f64,
    failing_for: Option<Duration>,
}

impl Telemetry {
    fn sink_state(&self, s: &SinkView, now_ms: u64) -> SinkState {
        let cursor = self.queue.cursor(&s.name).unwrap_or(0);
        let last = self.queue.last_id();
        let lag_seconds = match self.queue.created_after(cursor) {
            Ok(Some(created)) => now_ms.saturating_sub(created) as f64 / 1000.0,
            _ => 0.0,
        };
        let since = s.stats.failing_since_ms.load(Ordering::Relaxed);
        SinkState {
            cursor,
            lag_batches: last.saturating_sub(cursor),
            lag_seconds,
            failing_for: (since > 0).then(|| Duration::from_millis(now_ms.saturating_sub(since))),
        }
    }

    /// Healthy, or the reason it is not.
    pub fn health(&self) -> Result<(), String> {
        if !self.reader_alive.load(Ordering::SeqCst) {
            return Err("the reader stopped".into());
        }
        let now = crate::clock::now_ms();
        let mut failing = Vec::new();
        for s in &self.sinks {
            if s.stats.ended.load(Ordering::SeqCst) {
                failing.push(format!("sink {}: its task ended", s.name));
                continue;
            }
            if let Some(d) = self.sink_state(s, now).failing_for
                && d >= self.unhealthy_after
            {
                let err = s
                    .stats
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_default();
                failing.push(format!(
                    "sink {} failing for {}s: {err}",
                    s.name,
                    d.as_secs()
                ));
            }
        }
        if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join("; "))
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> Value {
        let now = crate::clock::now_ms();
        let health = self.health();
        let r = &self.reader;
        let sinks: Vec<Value> = self
            .sinks
            .iter()
            .map(|s| {
                let st = self.sink_state(s, now);
                let last_success = s.stats.last_success_ms.load(Ordering::Relaxed);
                json!({
                    "name": s.name,
                    "type": s.kind,
                    "cursor": st.cursor,
                    "lag_batches": st.lag_batches,
                    "lag_seconds": st.lag_seconds,
                    "events": s.stats.events.load(Ordering::Relaxed),
                    "requests": s.stats.batches.load(Ordering::Relaxed),
                    "retries": s.stats.retries.load(Ordering::Relaxed),
                    "dead_lettered": s.stats.dead_lettered.load(Ordering::Relaxed),
                    "last_success_ms": (last_success > 0).then_some(last_success),
                    "failing_for_seconds": st.failing_for.map(|d| d.as_secs()),
                    "last_error": s.stats.last_error.lock().ok().and_then(|e| e.clone()),
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "host": self.host,
            "config_hash": self.config_hash,
            "state_dir": self.state_dir.display().to_string(),
            "pid": std::process::id(),
            "uptime_seconds": now.saturating_sub(self.started_ms) / 1000,
            "healthy": health.is_ok(),
            "reason": health.err(),
            "config_reloads": super::RELOADS_APPLIED.load(Ordering::Relaxed),
            "config_reload_failures": super::RELOAD_FAILURES.load(Ordering::Relaxed),
            "config_reload_error": super::last_reload_error(),
            "reader": {
                "alive": self.reader_alive.load(Ordering::SeqCst),
                "files": r.files.load(Ordering::Relaxed),
                "events": r.lines.load(Ordering::Relaxed),
                "problems": r.problems.load(Ordering::Relaxed),
                "redacted": r.redacted.load(Ordering::Relaxed),
                "symlinks_refused": r.refused.directories.load(Ordering::Relaxed)
                    + r.refused.files.load(Ordering::Relaxed),
                "paused_for_full_queue": r.paused.load(Ordering::Relaxed),
            },
            "queue": {
                "batches": self.queue.batches(),
                "bytes": self.queue.bytes(),
                "full": self.queue.is_full(),
            },
            "sinks": sinks,
            "sealer": self.sealer.as_ref().map(|v| json!({
                "listen": v.listen,
                "streams": v.streams.heads().len(),
                "sealed": v.stats.sealed.load(Ordering::Relaxed),
                "digests": v.stats.digests.load(Ordering::Relaxed),
                "refused": v.stats.refused.load(Ordering::Relaxed),
                "turned_away": v.stats.turned_away.load(Ordering::Relaxed),
            })),

            "telemetry": self.receiver.as_ref().map(ReceiverView::status),
        })
    }

    /// The `/metrics` text, Prometheus exposition format 0.0.4.
    pub fn prometheus(&self) -> String {
        let now = crate::clock::now_ms();
        let mut o = String::with_capacity(4096);
        let r = &self.reader;
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP auditship_{name} {help}");
            let _ = writeln!(o, "# TYPE auditship_{name} {kind}");
        };
        family(
            &mut o,
            "build_info",
            "gauge",
            "Build and configuration of this daemon.",
        );
        let _ = writeln!(
            o,
            "auditship_build_info{{version=\"{}\",config_hash=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            self.config_hash
        );
        family(
            &mut o,
            "config_reload_failures_total",
            "counter",
            "Configuration reloads refused (the daemon ran on its previous configuration).",
        );
        let _ = writeln!(
            o,
            "auditship_config_reload_failures_total {}",
            super::RELOAD_FAILURES.load(Ordering::Relaxed)
        );
        family(
            &mut o,
            "start_time_seconds",
            "gauge",
            "When the daemon started, seconds since the epoch.",
        );
        let _ = writeln!(o, "auditship_start_time_seconds {}", self.started_ms / 1000);
        family(
            &mut o,
            "up",
            "gauge",
            "1 while every stage is alive and no sink fails longer than the threshold.",
        );
        let _ = writeln!(o, "auditship_up {}", u8::from(self.health().is_ok()));
        family(
            &mut o,
            "events_read_total",
            "counter",
            "Lines read and shipped as records.",
        );
        let _ = writeln!(
            o,
            "auditship_events_read_total {}",
            r.lines.load(Ordering::Relaxed)
        );
        family(
            &mut o,
            "source_events_read_total",
            "counter",
            "Lines read and shipped as records, by source.",
        );
        if let Ok(m) = r.by_source.lock() {
            for (source, n) in m.iter() {
                let _ = writeln!(
                    o,
                    "auditship_source_events_read_total{{source=\"{}\"}} {n}",
                    escape_label(source)
                );
            }
        }
        family(
            &mut o,
            "problems_total",
            "counter",
            "Problems attached to shipped records, by code.",
        );
        if let Ok(m) = r.by_code.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(o, "auditship_problems_total{{code=\"{code}\"}} {n}");
            }
        }
        family(
            &mut o,
            "symlinks_refused_total",
            "counter",
            "Symlinks not followed (each path once while it stays refused), by kind: a stream directory's component, or a file entry leading out of its directory.",
        );
        for (kind, n) in [
            ("directory", &r.refused.directories),
            ("file", &r.refused.files),
        ] {
            let _ = writeln!(
                o,
                "auditship_symlinks_refused_total{{kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        family(
            &mut o,
            "redacted_total",
            "counter",
            "Records with at least one redacted value.",
        );
        let _ = writeln!(
            o,
            "auditship_redacted_total {}",
            r.redacted.load(Ordering::Relaxed)
        );
        if let Some(v) = &self.sealer {
            family(
                &mut o,
                "sealer_requests_total",
                "counter",
                "Requests to the sealer, by outcome: sealed, digest (recorded as the payload's SHA-256 and length), refused (nothing recorded), turned_away (max_connections reached).",
            );
            for (outcome, n) in [
                ("sealed", &v.stats.sealed),
                ("digest", &v.stats.digests),
                ("refused", &v.stats.refused),
                ("turned_away", &v.stats.turned_away),
            ] {
                let _ = writeln!(
                    o,
                    "auditship_sealer_requests_total{{outcome=\"{outcome}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        family(
            &mut o,
            "files_tracked",
            "gauge",
            "Audit files being followed.",
        );
        let _ = writeln!(
            o,
            "auditship_files_tracked {}",
            r.files.load(Ordering::Relaxed)
        );
        family(
            &mut o,
            "reader_paused",
            "gauge",
            "1 while reading waits for room in the queue.",
        );
        let _ = writeln!(
            o,
            "auditship_reader_paused {}",
            u8::from(r.paused.load(Ordering::Relaxed))
        );
        family(
            &mut o,
            "queue_batches",
            "gauge",
            "Batches in the durable queue.",
        );
        let _ = writeln!(o, "auditship_queue_batches {}", self.queue.batches());
        family(
            &mut o,
            "queue_bytes",
            "gauge",
            "Record bytes in the durable queue.",
        );
        let _ = writeln!(o, "auditship_queue_bytes {}", self.queue.bytes());
        let states: Vec<SinkState> = self.sinks.iter().map(|s| self.sink_state(s, now)).collect();
        type Metric = (
            &'static str,
            &'static str,
            &'static str,
            fn(&SinkView, &SinkState) -> f64,
        );
        let per_sink: [Metric; 8] = [
            (
                "sink_events_total",
                "counter",
                "Records the sink acknowledged.",
                |s, _| s.stats.events.load(Ordering::Relaxed) as f64,
            ),
            (
                "sink_requests_total",
                "counter",
                "Requests the sink completed.",
                |s, _| s.stats.batches.load(Ordering::Relaxed) as f64,
            ),
            (
                "sink_retries_total",
                "counter",
                "Attempts that failed and were retried.",
                |s, _| s.stats.retries.load(Ordering::Relaxed) as f64,
            ),
            (
                "sink_dead_lettered_total",
                "counter",
                "Records the sink rejected for good, kept as dead letters.",
                |s, _| s.stats.dead_lettered.load(Ordering::Relaxed) as f64,
            ),
            (
                "sink_lag_batches",
                "gauge",
                "Batches stored but not yet acknowledged by the sink.",
                |_, st| st.lag_batches as f64,
            ),
            (
                "sink_lag_seconds",
                "gauge",
                "Age of the oldest batch the sink has not acknowledged.",
                |_, st| st.lag_seconds,
            ),
            (
                "sink_last_success_seconds",
                "gauge",
                "When the sink last acknowledged, seconds since the epoch (0: not yet).",
                |s, _| s.stats.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "sink_failing_seconds",
                "gauge",
                "How long every attempt has failed (0 while it works).",
                |_, st| st.failing_for.map_or(0.0, |d| d.as_secs_f64()),
            ),
        ];
        for (name, kind, help, value) in per_sink {
            family(&mut o, name, kind, help);
            for (s, st) in self.sinks.iter().zip(&states) {
                let _ = writeln!(
                    o,
                    "auditship_{name}{{sink=\"{}\",type=\"{}\"}} {}",
                    escape_label(&s.name),
                    s.kind,
                    value(s, st)
                );
            }
        }
        if let Some(r) = &self.receiver {
            r.prometheus(&mut o);
        }
        o
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds the listener and records its address; `None` (logged) when it cannot.
pub async fn bind(
    addr: std::net::SocketAddr,
    state_dir: &std::path::Path,
) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            if let Ok(a) = l.local_addr() {
                let _ = std::fs::write(state_dir.join(ADDR_FILE), a.to_string());
                tracing::info!(listen = %a, "metrics, health and status listening");
            }
            Some(l)
        }
        Err(e) => {
            tracing::error!(listen = %addr, error = %e, "cannot listen for metrics, health and status; shipping goes on without them");
            None
        }
    }
}

/// Where the daemon writes the address it listens on.
pub const ADDR_FILE: &str = "metrics.addr";

/// Answers requests until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    t: Arc<Telemetry>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = cancel.cancelled() => return,
        };
        let Ok((mut sock, _)) = conn else { continue };
        let t = t.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&buf);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = path.split('?').next().unwrap_or("");
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") => (200, "text/plain; version=0.0.4", t.prometheus()),
                ("GET", "/health") => match t.health() {
                    Ok(()) => (200, "text/plain", "ok\n".to_string()),
                    Err(why) => (503, "text/plain", format!("unhealthy: {why}\n")),
                },
                ("GET", "/status") => (200, "application/json", format!("{}\n", t.status())),
                ("GET", _) => (
                    404,
                    "text/plain",
                    "not found: /metrics, /health, /status\n".into(),
                ),
                _ => (405, "text/plain", "GET only\n".into()),
            };
            let reason = match status {
                200 => "OK",
                404 => "Not Found",
                405 => "Method Not Allowed",
                _ => "Service Unavailable",
            };
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
