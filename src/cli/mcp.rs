//! `auditship mcp`: the MCP server on stdio (`crate::mcp`), its decisions written
//! by `record --decision`'s own path.

use super::record::{self, Place};
use crate::mcp::{self, Server};
use crate::record::Decision;
use std::io::Write;
use std::process::ExitCode;

/// Serve the Model Context Protocol on stdin/stdout: a `record_decision` tool the
/// model calls to record its decisions.
///
/// Claude Code starts this once `install-hooks --mcp` has registered it, and offers
/// the model the tool `mcp__auditship__record_decision` (decision, factors,
/// confidence, alternatives, resources). Each call writes an ai_decision event
/// exactly as `record --decision` does: the same configuration, mapping, redaction,
/// chain and HMAC, sealed through the daemon's sealer when `[record] socket` is set
/// (with `on_error` deciding when it cannot be reached). The session is
/// $CLAUDE_CODE_SESSION_ID, which Claude Code gives the servers it starts, and the
/// tool call's id (which its hooks see too) goes to metadata.tool_use_id. The model
/// is answered with the event's seq and hash, or an error saying why nothing was
/// recorded. Only protocol messages go to stdout; errors go to stderr. Exits 0 when
/// stdin ends.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship install-hooks --mcp            # register it for Claude Code (~/.claude.json)
  claude mcp add auditship -- auditship mcp --config /etc/auditship/auditship.toml
  echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}' | auditship mcp")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: Args) -> ExitCode {
    let flag = args.config.config;
    let recorder = |d: Decision| {
        let r = record::record_decision(flag.as_deref(), d)?;
        Ok(match r.place {
            Place::Sealed(stream) => format!(
                "recorded: ai_decision seq {} hash {} in the sealed stream {stream}",
                r.seq, r.hash
            ),
            Place::Local(file) => format!(
                "recorded: ai_decision seq {} hash {} in {}",
                r.seq,
                r.hash,
                file.display()
            ),
        })
    };
    let mut server = Server::new(recorder, record::session_from_env());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    match mcp::serve(&mut server, &mut stdin.lock(), &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "auditship mcp: {e}");
            ExitCode::from(1)
        }
    }
}
