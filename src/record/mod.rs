//! The producer: turns one Claude Code hook payload (or an `ai_decision` given on the
//! command line) into one sealed, chained event appended to the user's audit directory.
//!
//! Invariants: nothing reaches the file before redaction; the chain head is always
//! derived from the files under the directory lock; an error never loses the payload
//! silently (it goes to stderr and, redacted, to the fallback file).

pub mod compliance;
pub mod content;
pub mod map;
pub mod writer;

use crate::config::Config;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use writer::Appended;

/// An `ai_decision` event given by a skill or script.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub decision: String,
    pub factors_considered: Vec<String>,
    pub confidence: Option<f64>,
    pub alternative_options: Vec<String>,
    pub resource: Option<String>,
    pub session_id: Option<String>,
    pub outcome: Option<String>,
}

/// What to record.
pub enum Input<'a> {
    /// A hook payload as read from stdin.
    Hook(&'a [u8]),
    Decision(Decision),
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("hook payload is not JSON: {0}")]
    Payload(serde_json::Error),
    #[error("invalid decision: {0}")]
    Decision(String),
    #[error(transparent)]
    Append(#[from] writer::AppendError),
}

/// Records one event. The hook event name (if any) is returned with the error so the
/// caller can decide what failing closed means for it.
pub fn record(config: &Config, input: Input<'_>) -> Result<Appended, RecordError> {
    let rc = &config.record;
    let (timestamp, date) = utc_now();
    let cx = map::Context {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp,
        user_id: rc.user_id.clone().unwrap_or_else(os_user),
        host: host_name(),
        project_dir: std::env::var("CLAUDE_PROJECT_DIR")
            .ok()
            .filter(|s| !s.is_empty()),
        identity: &rc.identity,
        redactor: &config.redactor,
        compliance: &config.compliance,
        keep_prompts: rc.keep_prompts,
        keep_tool_input: rc.keep_tool_input,
        keep_tool_response: rc.keep_tool_response,
        keep_messages: rc.keep_messages,
        max_kept_bytes: rc.max_kept_bytes,
    };
    let event = match input {
        Input::Hook(bytes) => {
            let payload: Value = serde_json::from_slice(bytes).map_err(RecordError::Payload)?;
            map::map_hook(payload, &cx)
        }
        Input::Decision(d) => decision_event(&d, &cx)?,
    };
    let opts = writer::AppendOptions {
        signer: rc.signer.as_ref().map(|(kid, keys)| (kid.as_str(), keys)),
        fsync: rc.fsync,
        lock_timeout: Duration::from_millis(rc.lock_timeout_ms),
        date: &date,
    };
    let appended = writer::append(&rc.dir, &opts, move |seq, prev| {
        let mut e = event;
        e.insert("seq".into(), Value::from(seq));
        e.insert("prev_hash".into(), Value::String(prev.to_owned()));
        Value::Object(e).to_string()
    })?;
    Ok(appended)
}

fn decision_event(d: &Decision, cx: &map::Context<'_>) -> Result<Map<String, Value>, RecordError> {
    if d.decision.trim().is_empty() {
        return Err(RecordError::Decision("the decision text is empty".into()));
    }
    if let Some(c) = d.confidence
        && !(0.0..=1.0).contains(&c)
    {
        return Err(RecordError::Decision(format!(
            "confidence {c} is not between 0 and 1"
        )));
    }
    let outcome = d.outcome.as_deref().unwrap_or("success");
    if !crate::audit::schema::OUTCOMES.contains(&outcome) {
        return Err(RecordError::Decision(format!(
            "unknown outcome {outcome:?}"
        )));
    }
    let mut redacted = Vec::new();
    let mut decision = serde_json::json!({
        "decision": d.decision,
        "factors_considered": d.factors_considered,
        "alternative_options": d.alternative_options,
    });
    if let Some(c) = d.confidence {
        decision["confidence"] = Value::from(c);
    }
    cx.redactor
        .redact_json(&mut decision, "decision", &mut redacted);
    let resource = d.resource.clone().unwrap_or_else(|| "ai_decision".into());
    let resource = cx.redactor.redact_str(&resource).into_owned();
    let mut meta = Map::new();
    meta.insert("source_event".into(), Value::String("ai_decision".into()));
    if let Some(dir) = &cx.project_dir {
        meta.insert("project_dir".into(), Value::String(dir.clone()));
    }
    if !redacted.is_empty() {
        meta.insert(
            "redacted".into(),
            redacted.into_iter().map(Value::String).collect(),
        );
    }
    let session = d
        .session_id
        .clone()
        .or_else(|| std::env::var("CLAUDE_SESSION_ID").ok())
        .unwrap_or_else(|| "unknown".into());
    let mut e = map::base_event(cx, &session, "ai_decision", &resource, outcome, meta);
    e.insert("decision".into(), decision);
    Ok(e)
}

/// Reports a failure to stderr and to the fallback file (one JSON line with the
/// redacted payload), so the event survives if at all possible.
pub fn report_failure(config: &Config, error: &dyn std::fmt::Display, payload: Option<&[u8]>) {
    let _ = writeln!(std::io::stderr(), "auditship record: {error}");
    let mut line = serde_json::json!({
        "time": utc_now().0,
        "error": error.to_string(),
    });
    if let Some(p) = payload {
        let text = String::from_utf8_lossy(p);
        line["payload"] = Value::String(config.redactor.redact_str(&text).into_owned());
    }
    let path = &config.record.fallback_file;
    if let Err(e) = append_fallback(path, &line.to_string()) {
        let _ = writeln!(
            std::io::stderr(),
            "auditship record: fallback file {}: {e}",
            path.display()
        );
    }
}

fn append_fallback(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    writer::open_private(path, true)?.write_all(format!("{line}\n").as_bytes())
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ` and `YYYY-MM-DD`, in UTC.
pub fn utc_now() -> (String, String) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(d.as_secs() as i64, d.subsec_millis())
}

/// Formats seconds since the epoch (UTC) with milliseconds.
pub fn format_utc(secs: i64, millis: u32) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let ts = format!(
        "{date}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (ts, date)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The OS user name of the effective uid, else `$USER`, else the uid.
pub fn os_user() -> String {
    // SAFETY: getpwuid_r writes into the buffers we pass and returns a pointer into
    // them; nothing outlives this function.
    unsafe {
        let uid = libc::geteuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) == 0
            && !result.is_null()
            && !pw.pw_name.is_null()
        {
            return std::ffi::CStr::from_ptr(pw.pw_name)
                .to_string_lossy()
                .into_owned();
        }
        std::env::var("USER").unwrap_or_else(|_| format!("uid:{uid}"))
    }
}

/// The machine's host name.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0, 0).0, "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1_795_000_000, 7).0, "2026-11-18T11:06:40.007Z");
        assert_eq!(format_utc(951_782_400, 0).1, "2000-02-29");
        assert_eq!(format_utc(-1, 999).0, "1969-12-31T23:59:59.999Z");
    }
}
