//! auditship: turns what Claude Code does on a developer's machine into a
//! tamper-evident audit trail and ships it to the company's SIEM.
//!
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod archive;
pub mod audit;
pub mod check;
pub mod cli;
pub mod clock;
pub mod compliance;
pub mod config;
pub mod daemon;
pub mod files;
pub mod hooks;
pub mod host;
pub mod install_hooks;
pub mod keyfile;
pub mod mcp;
pub mod net;
pub mod otel;
pub mod queue;
pub mod record;
pub mod redact;
pub mod report;
pub mod sealer;
pub mod ship;
pub mod tail;
pub mod tls;
pub mod users;
pub mod verify;
pub mod watch;
pub mod words;
