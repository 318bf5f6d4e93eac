//! `auditship record`: the producer Claude Code hooks call.

use crate::config::{self, OnError};
use crate::record::fail_closed::{self, Mechanism};
use crate::record::{self, Caller, Decision, Input};
use crate::sealer::client;
use crate::sealer::proto::{self, Header, Kind};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Append one hook event (JSON on stdin) to the audit log, hash-chained and redacted.
///
/// Claude Code runs this from its hooks (see `auditship install-hooks`). With
/// --decision it records an ai_decision event for skills and scripts instead, and
/// does not read stdin; a script learns whether its decision was recorded from the
/// exit status, whatever `on_error` says: 0 recorded, 2 invalid input (an empty
/// decision, a confidence outside 0 to 1, an unknown outcome; the reason on
/// stderr), 1 any other failure. Every payload becomes an event, even one that is not JSON.
/// On failure the error goes to stderr and, as the event it would have been, to the
/// fallback file. With `on_error = "block"` every failure fails closed, configuration
/// errors included, by what the hook event honours: exit 2 (PreToolUse,
/// UserPromptSubmit and the other events whose exit 2 blocks something), a deny
/// decision on stdout for PermissionRequest, exit 1 where nothing can be blocked.
///
/// Sealed mode ([record] socket): the call goes to the daemon's sealer, which records
/// it as the caller the kernel names, and `record` exits once it is durable. When the
/// sealer cannot be reached, on_error decides: "block" fails closed as above, "allow"
/// appends to the user's own stream, marked metadata.sealed = false.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  echo '{\"hook_event_name\":\"PreToolUse\",\"session_id\":\"s1\",\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"ls\"}}' | auditship record
  auditship record --decision \"use PostgreSQL\" --factor latency --factor cost \\
      --confidence 0.8 --alternative SQLite --resource db/schema.sql")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Record an ai_decision event with this decision text instead of reading stdin
    #[arg(long, value_name = "TEXT")]
    pub decision: Option<String>,
    /// A factor considered (repeatable; with --decision)
    #[arg(long = "factor", value_name = "TEXT", requires = "decision")]
    pub factors: Vec<String>,
    /// Confidence between 0 and 1 (with --decision)
    #[arg(long, requires = "decision", allow_negative_numbers = true)]
    pub confidence: Option<f64>,
    /// An alternative option that was not chosen (repeatable; with --decision)
    #[arg(long = "alternative", value_name = "TEXT", requires = "decision")]
    pub alternatives: Vec<String>,
    /// What the decision is about: a path, URL or name (repeatable; the first is the
    /// event's resource; with --decision)
    #[arg(long = "resource", value_name = "TEXT", requires = "decision")]
    pub resources: Vec<String>,
    /// Session id [default: $CLAUDE_SESSION_ID] (with --decision)
    #[arg(long, requires = "decision")]
    pub session_id: Option<String>,
    /// Outcome: success, failure, denied or attempted (with --decision)
    #[arg(long, requires = "decision")]
    pub outcome: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    let decision = decision(&args);
    if let Some(d) = &decision
        && let Err(e) = d.validate()
    {
        // A script's mistake, not a hook call to keep: nothing is recorded, and the
        // script is told so.
        let _ = writeln!(std::io::stderr(), "auditship record: {e}");
        return ExitCode::from(2);
    }
    let mut stdin = Vec::new();
    let read = match decision {
        Some(_) => Ok(()),
        None => std::io::stdin().lock().read_to_end(&mut stdin).map(|_| ()),
    };
    let flag = args.config.config.as_deref();
    let is_hook = decision.is_none();
    let input = match decision {
        Some(d) => Input::Decision(d),
        None => Input::Hook(&stdin),
    };
    match guarded(flag, || attempt(flag, input, read)) {
        Outcome::Recorded(_) => ExitCode::SUCCESS,
        // A script's call: it must learn that its decision was not recorded.
        Outcome::Failed(..) if !is_hook => ExitCode::from(1),
        Outcome::Failed(OnError::Allow, _) => ExitCode::SUCCESS,
        Outcome::Failed(OnError::Block, _) => fail_closed(&stdin),
    }
}

/// Records `decision` exactly as `record --decision` does (the configuration of
/// `flag` loaded for this call; local or sealed mode; `on_error` when the sealer
/// cannot be reached; failures to stderr and the fallback file), for callers that
/// record decisions one after another (`auditship mcp`). `Err` says why nothing was
/// recorded.
pub fn record_decision(
    flag: Option<&std::path::Path>,
    decision: Decision,
) -> Result<Recorded, String> {
    match guarded(flag, || attempt(flag, Input::Decision(decision), Ok(()))) {
        Outcome::Recorded(r) => Ok(r),
        Outcome::Failed(_, why) => Err(why),
    }
}

/// Where an event was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub seq: u64,
    pub hash: String,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The sealer's stream of this name.
    Sealed(String),
    /// The user's own stream, in this file.
    Local(std::path::PathBuf),
}

enum Outcome {
    Recorded(Recorded),
    /// Not recorded; the failure was reported. What `on_error` asks for, and why.
    Failed(OnError, String),
}

/// `attempt`, with a panic reported and taken for a failure: a bug must not let
/// the call through unrecorded when the configuration asks to block.
fn guarded(flag: Option<&std::path::Path>, attempt: impl FnOnce() -> Outcome) -> Outcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt)).unwrap_or_else(|_| {
        let why = "internal error (panic); the event was not written";
        if let Some(d) = defaults(flag) {
            record::report_failure(&d, why, None);
        }
        Outcome::Failed(
            config::salvage::on_error(flag).unwrap_or(OnError::Allow),
            why.into(),
        )
    })
}

/// The decision the arguments give, if they give one.
fn decision(args: &Args) -> Option<Decision> {
    Some(Decision {
        decision: args.decision.clone()?,
        factors_considered: args.factors.clone(),
        confidence: args.confidence,
        alternative_options: args.alternatives.clone(),
        resources: args.resources.clone(),
        session_id: args.session_id.clone().or_else(session_from_env),
        outcome: args.outcome.clone(),
        tool_use_id: None,
    })
}

fn attempt(flag: Option<&std::path::Path>, input: Input<'_>, read: std::io::Result<()>) -> Outcome {
    let config = match config::load(flag) {
        Ok(c) => c,
        Err(e) => {
            // A sealer named in the files needs nothing else from them.
            if read.is_ok()
                && let Some(socket) = config::salvage::socket(flag)
                && let Ok(sealed) = forward(&socket, &input, config::DEFAULT_SOCKET_TIMEOUT_MS)
            {
                return Outcome::Recorded(sealed.into());
            }
            // The file's on_error still counts: read it without loading the rest.
            let on_error = config::salvage::on_error(flag).unwrap_or(OnError::Allow);
            let message = format!("configuration: {e}");
            match defaults(flag) {
                // Keep the event as the defaults make it: minimised, redacted.
                Some(d) => {
                    let caller = Caller::local(&d);
                    let event = record::event(&d, input, crate::clock::utc_now().0, &caller).ok();
                    record::report_failure(&d, &message, event.as_ref());
                }
                None => {
                    let _ = writeln!(std::io::stderr(), "auditship record: {message}");
                }
            }
            return Outcome::Failed(on_error, message);
        }
    };
    if let Err(e) = read {
        let message = format!("reading stdin: {e}");
        record::report_failure(&config, &message, None);
        return Outcome::Failed(config.record.on_error, message);
    }
    match config.record.socket.clone() {
        Some(socket) => sealed(&config, &socket, input),
        None => local(&config, input, &Caller::local(&config)),
    }
}

impl From<client::Sealed> for Recorded {
    fn from(s: client::Sealed) -> Recorded {
        Recorded {
            seq: s.seq,
            hash: s.hash,
            place: Place::Sealed(s.stream),
        }
    }
}

/// Appends to the user's own stream.
fn local(config: &config::Config, input: Input<'_>, caller: &Caller) -> Outcome {
    match record::record(config, input, caller) {
        Ok(a) => Outcome::Recorded(Recorded {
            seq: a.seq,
            hash: a.hash,
            place: Place::Local(a.file),
        }),
        Err(failure) => {
            let message = failure.to_string();
            record::report_failure(config, &message, failure.event.as_ref());
            Outcome::Failed(config.record.on_error, message)
        }
    }
}

/// Sealed mode: the sealer records the call. When it cannot, `on_error` decides:
/// `block` fails closed, `allow` appends to the user's own stream, marked unsealed.
fn sealed(config: &config::Config, socket: &std::path::Path, input: Input<'_>) -> Outcome {
    let error = match forward(socket, &input, config.record.socket_timeout_ms) {
        Ok(sealed) => return Outcome::Recorded(sealed.into()),
        Err(e) => format!("sealed mode: {e}"),
    };
    let mut caller = Caller::local(config);
    caller
        .metadata
        .insert("sealed".into(), serde_json::Value::Bool(false));
    match config.record.on_error {
        OnError::Block => {
            let event = record::event(config, input, crate::clock::utc_now().0, &caller).ok();
            record::report_failure(config, &error, event.as_ref());
            Outcome::Failed(OnError::Block, error)
        }
        OnError::Allow => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship record: {error}; recorded in the local stream instead (not sealed)"
            );
            let redacted = config.redactor.redact_str(&error).into_owned();
            caller
                .metadata
                .insert("sealer_error".into(), serde_json::Value::String(redacted));
            local(config, input, &caller)
        }
    }
}

/// Sends the call to the sealer at `socket` and waits for its answer.
fn forward(
    socket: &std::path::Path,
    input: &Input<'_>,
    timeout_ms: u64,
) -> Result<client::Sealed, client::ClientError> {
    let project_dir = record::env_text("CLAUDE_PROJECT_DIR");
    let (kind, payload) = match input {
        Input::Hook(bytes) => (Kind::Hook, std::borrow::Cow::Borrowed(*bytes)),
        Input::Decision(d) => {
            let mut d = d.clone();
            if d.session_id.is_none() {
                d.session_id = record::env_text("CLAUDE_SESSION_ID");
            }
            (
                Kind::Decision,
                std::borrow::Cow::Owned(proto::decision_payload(&d)),
            )
        }
        Input::Digest(_) => unreachable!("record reads whole payloads"),
    };
    let header = Header { kind, project_dir };
    client::send(
        socket,
        &header,
        &payload,
        std::time::Duration::from_millis(timeout_ms),
    )
}

/// The session Claude Code runs this in, from the environment it gives its Bash tool
/// and hooks. (Not a clap `env` default: hooks run with it set and without
/// --decision, which the flag requires.)
pub fn session_from_env() -> Option<String> {
    std::env::var("CLAUDE_CODE_SESSION_ID")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// The built-in configuration, reporting to the fallback file the configuration
/// files name (if they name one) when they do not load.
fn defaults(flag: Option<&std::path::Path>) -> Option<config::Config> {
    let mut d = config::Config::from_raw(Default::default(), None).ok()?;
    if let Some(file) = config::salvage::fallback_file(flag) {
        d.record.fallback_file = file;
    }
    Some(d)
}

/// Blocks the hook call by the mechanism its event honours, decided from the raw
/// bytes so that a payload that does not parse still blocks the right way.
fn fail_closed(stdin: &[u8]) -> ExitCode {
    match fail_closed::mechanism_of(stdin) {
        Mechanism::Exit2 => ExitCode::from(2),
        Mechanism::Exit1 => ExitCode::from(1),
        Mechanism::DenyDecision => {
            let decision = fail_closed::deny_decision(
                "auditship could not record this permission request in the audit trail; \
                 denied because the audit policy fails closed (the error is on stderr and in \
                 the fallback file)",
            );
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{decision}").and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                // Without the decision on stdout, exit 2 is the nearest thing left.
                Err(_) => ExitCode::from(2),
            }
        }
    }
}
