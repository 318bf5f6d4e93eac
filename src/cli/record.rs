//! `auditship record`: the producer Claude Code hooks call.

use crate::config::{self, OnError};
use crate::record::{self, Decision, Input};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Append one hook event (JSON on stdin) to the audit log, hash-chained and redacted.
///
/// Claude Code runs this from its hooks (see `auditship install-hooks`). With
/// --decision it records an ai_decision event for skills and scripts instead, and
/// does not read stdin. On failure the error goes to stderr and to the fallback
/// file; with `on_error = "block"` it exits 2, which blocks a PreToolUse tool call
/// or a submitted prompt (other events exit 1, which Claude Code shows but ignores).
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
    #[arg(long, requires = "decision")]
    pub confidence: Option<f64>,
    /// An alternative option that was not chosen (repeatable; with --decision)
    #[arg(long = "alternative", value_name = "TEXT", requires = "decision")]
    pub alternatives: Vec<String>,
    /// What the decision is about: a path, URL or name (with --decision)
    #[arg(long, requires = "decision")]
    pub resource: Option<String>,
    /// Session id [default: $CLAUDE_CODE_SESSION_ID, which Claude Code sets for its
    /// Bash tool and hooks] (with --decision)
    #[arg(long, requires = "decision")]
    pub session_id: Option<String>,
    /// Outcome: success, failure, denied or attempted (with --decision)
    #[arg(long, requires = "decision")]
    pub outcome: Option<String>,
}

/// Hook events for which exit status 2 blocks what Claude Code was about to do.
const BLOCKABLE: [&str; 3] = ["PreToolUse", "UserPromptSubmit", "PermissionRequest"];

pub fn run(args: Args) -> ExitCode {
    let config = match config::load(args.config.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // Without a valid file we cannot know its on_error: report, never block.
            let _ = writeln!(std::io::stderr(), "auditship record: configuration: {e}");
            if let Ok(defaults) = config::Config::from_raw(Default::default(), None) {
                record::report_failure(&defaults, &format!("configuration: {e}"), None);
            }
            return ExitCode::SUCCESS;
        }
    };
    let mut stdin_buf = Vec::new();
    let (input, payload) = match args.decision {
        Some(decision) => (
            Input::Decision(Decision {
                decision,
                factors_considered: args.factors,
                confidence: args.confidence,
                alternative_options: args.alternatives,
                resource: args.resource,
                session_id: args.session_id.or_else(session_from_env),
                outcome: args.outcome,
            }),
            None,
        ),
        None => {
            if let Err(e) = std::io::stdin().lock().read_to_end(&mut stdin_buf) {
                record::report_failure(&config, &format!("reading stdin: {e}"), None);
                return failure_exit(config.record.on_error, None);
            }
            (Input::Hook(&stdin_buf), Some(stdin_buf.as_slice()))
        }
    };
    match record::record(&config, input) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            record::report_failure(&config, &e, payload);
            let event = payload
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .and_then(|v| {
                    v.get("hook_event_name")
                        .and_then(|n| n.as_str())
                        .map(str::to_owned)
                });
            failure_exit(config.record.on_error, event.as_deref())
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

fn failure_exit(on_error: OnError, hook_event: Option<&str>) -> ExitCode {
    match on_error {
        OnError::Allow => ExitCode::SUCCESS,
        OnError::Block if hook_event.is_some_and(|e| BLOCKABLE.contains(&e)) => ExitCode::from(2),
        OnError::Block => ExitCode::from(1),
    }
}
