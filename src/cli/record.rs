//! `auditship record`: the producer Claude Code hooks call.

use crate::config::{self, OnError};
use crate::record::fail_closed::{self, Mechanism};
use crate::record::{self, Decision, Input};
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
    /// What the decision is about: a path, URL or name (with --decision)
    #[arg(long, requires = "decision")]
    pub resource: Option<String>,
    /// Session id [default: $CLAUDE_SESSION_ID] (with --decision)
    #[arg(long, requires = "decision")]
    pub session_id: Option<String>,
    /// Outcome: success, failure, denied or attempted (with --decision)
    #[arg(long, requires = "decision")]
    pub outcome: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    if let Some(d) = decision(&args)
        && let Err(e) = d.validate()
    {
        // A script's mistake, not a hook call to keep: nothing is recorded, and the
        // script is told so.
        let _ = writeln!(std::io::stderr(), "auditship record: {e}");
        return ExitCode::from(2);
    }
    let mut stdin = Vec::new();
    let read = match args.decision {
        Some(_) => Ok(()),
        None => std::io::stdin().lock().read_to_end(&mut stdin).map(|_| ()),
    };
    let flag = args.config.config.clone();
    let is_hook = args.decision.is_none();
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt(args, read, &stdin)))
            .unwrap_or_else(|_| {
                // A bug must not let the call through unrecorded when the configuration
                // asks to block: report what can be reported and fail closed.
                let defaults = defaults(flag.as_deref());
                if let Some(d) = &defaults {
                    record::report_failure(
                        d,
                        "internal error (panic); the event was not written",
                        None,
                    );
                }
                Outcome::Failed(
                    config::salvage::on_error(flag.as_deref()).unwrap_or(OnError::Allow),
                )
            });
    match outcome {
        Outcome::Recorded => ExitCode::SUCCESS,
        // A script's call: it must learn that its decision was not recorded.
        Outcome::Failed(_) if !is_hook => ExitCode::from(1),
        Outcome::Failed(OnError::Allow) => ExitCode::SUCCESS,
        Outcome::Failed(OnError::Block) => fail_closed(&stdin),
    }
}

enum Outcome {
    Recorded,
    /// Not recorded; the failure was reported. What `on_error` asks for.
    Failed(OnError),
}

/// The decision the arguments give, if they give one.
fn decision(args: &Args) -> Option<Decision> {
    Some(Decision {
        decision: args.decision.clone()?,
        factors_considered: args.factors.clone(),
        confidence: args.confidence,
        alternative_options: args.alternatives.clone(),
        resource: args.resource.clone(),
        session_id: args.session_id.clone().or_else(session_from_env),
        outcome: args.outcome.clone(),
    })
}

fn attempt(args: Args, read: std::io::Result<()>, stdin: &[u8]) -> Outcome {
    let flag = args.config.config.as_deref();
    let input = match decision(&args) {
        Some(d) => Input::Decision(d),
        None => Input::Hook(stdin),
    };
    let config = match config::load(flag) {
        Ok(c) => c,
        Err(e) => {
            // The file's on_error still counts: read it without loading the rest.
            let on_error = config::salvage::on_error(flag).unwrap_or(OnError::Allow);
            let message = format!("configuration: {e}");
            match defaults(flag) {
                // Keep the event as the defaults make it: minimised, redacted.
                Some(d) => {
                    let event = record::event(&d, input, record::utc_now().0).ok();
                    record::report_failure(&d, &message, event.as_ref());
                }
                None => {
                    let _ = writeln!(std::io::stderr(), "auditship record: {message}");
                }
            }
            return Outcome::Failed(on_error);
        }
    };
    if let Err(e) = read {
        record::report_failure(&config, &format!("reading stdin: {e}"), None);
        return Outcome::Failed(config.record.on_error);
    }
    match record::record(&config, input) {
        Ok(_) => Outcome::Recorded,
        Err(failure) => {
            record::report_failure(&config, &failure.to_string(), failure.event.as_ref());
            Outcome::Failed(config.record.on_error)
        }
    }
}

/// The session Claude Code runs this in, from the environment it gives its Bash tool
/// and hooks. (Not a clap `env` default: hooks run with it set and without
/// --decision, which the flag requires.)
fn session_from_env() -> Option<String> {
    std::env::var("CLAUDE_CODE_SESSION_ID")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// The built-in configuration, for reporting when the configured one fails.
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
