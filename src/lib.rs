//! auditship: turns what Claude Code does on a developer's machine into a
//! tamper-evident audit trail and ships it to the company's SIEM.
//!
//! See ARCHITECTURE.md for the map of modules and their invariants.

pub mod audit;
pub mod cli;
pub mod config;
pub mod install_hooks;
pub mod record;
pub mod redact;
pub mod verify;
