//! `auditship check-config`: validate the configuration and print what takes effect.

use crate::config::daemon::{Compression, DaemonConfig, HttpFormat, SinkKind, SourceFormat};
use crate::config::{self, Config, OnError};
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Validate the configuration and print the effective settings, secrets masked.
///
/// Every error is reported at once, with its file, line and column where the TOML
/// itself is wrong. Key and token files are read (so a missing file is an error
/// here, not at 3 a.m.) but their contents are never printed. Exit 0 when valid,
/// 1 on any error.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship check-config
  auditship check-config --config /etc/auditship/auditship.toml")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: Args) -> ExitCode {
    match config::load_daemon(args.config.config.as_deref()) {
        Ok((cfg, daemon)) => {
            let text = match toml::to_string(&effective(&cfg, &daemon)) {
                Ok(t) => t,
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "auditship check-config: cannot render: {e}"
                    );
                    return ExitCode::from(1);
                }
            };
            let source = cfg
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults (no configuration file)".into());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "# configuration: {source}\n# valid; effective settings (secrets masked):\n\n{text}"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship check-config: {} error(s):\n{e}",
                e.0.len()
            );
            ExitCode::from(1)
        }
    }
}

fn dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Header values that look like credentials are masked.
fn mask_header(name: &str, value: &str) -> String {
    let n = name.to_ascii_lowercase();
    let secret = [
        "authorization",
        "token",
        "key",
        "secret",
        "cookie",
        "password",
    ]
    .iter()
    .any(|s| n.contains(s));
    if secret { "***".into() } else { value.into() }
}

fn effective(cfg: &Config, d: &DaemonConfig) -> Value {
    let r = &cfg.record;
    let sources: Vec<Value> = d
        .sources
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "paths": s.paths,
                "files": s.files,
                "format": match s.format { SourceFormat::AuditshipV1 => "auditship-v1", SourceFormat::Json => "json" },
                "hmac_keys": s.keys.kids().iter().map(|k| format!("{k} = ***")).collect::<Vec<_>>(),
                "max_line_bytes": s.max_line_bytes,
            })
        })
        .collect();
    let sinks: Vec<Value> = d
        .sinks
        .iter()
        .map(|s| {
            let mut v = json!({
                "name": s.name,
                "compression": match s.compression { Compression::None => "none", Compression::Gzip => "gzip" },
                "batch": { "max_events": s.max_events, "max_bytes": s.max_bytes, "max_wait": dur(s.max_wait) },
                "retry": { "initial": dur(s.retry_initial), "max_delay": dur(s.retry_max_delay) },
            });
            match &s.kind {
                SinkKind::Http { endpoint, format, headers, token, connect_timeout, request_timeout } => {
                    v["type"] = "http".into();
                    v["endpoint"] = endpoint.as_str().into();
                    v["format"] = match format { HttpFormat::Ndjson => "ndjson", HttpFormat::JsonArray => "json_array" }.into();
                    v["headers"] = headers.iter().map(|(k, val)| (k.clone(), Value::from(mask_header(k, val)))).collect::<serde_json::Map<_, _>>().into();
                    v["token"] = if token.is_some() { "***" } else { "none" }.into();
                    v["connect_timeout"] = dur(*connect_timeout).into();
                    v["request_timeout"] = dur(*request_timeout).into();
                }
                SinkKind::File { path, max_file_bytes, max_files } => {
                    v["type"] = "file".into();
                    v["path"] = path.display().to_string().into();
                    v["max_file_bytes"] = (*max_file_bytes).into();
                    v["max_files"] = (*max_files).into();
                }
            }
            v
        })
        .collect();
    json!({
        "agent": {
            "state_dir": d.agent.state_dir.display().to_string(),
            "host": d.agent.host,
            "fields": d.agent.fields,
            "rescan_interval": dur(d.agent.rescan_interval),
            "shutdown_timeout": dur(d.agent.shutdown_timeout),
        },
        "queue": { "max_bytes": d.queue.max_bytes, "cache_capacity": d.queue.cache_capacity },
        "record": {
            "dir": r.dir.display().to_string(),
            "user_id": r.user_id.clone().unwrap_or_else(|| "(OS user)".into()),
            "on_error": match r.on_error { OnError::Allow => "allow", OnError::Block => "block" },
            "fallback_file": r.fallback_file.display().to_string(),
            "keep_prompts": r.keep_prompts,
            "keep_tool_input": r.keep_tool_input,
            "keep_tool_response": r.keep_tool_response,
            "max_kept_bytes": r.max_kept_bytes,
            "hmac": match &r.signer { Some((kid, _)) => format!("kid {kid}, key ***"), None => "off".into() },
            "fsync": r.fsync,
            "lock_timeout_ms": r.lock_timeout_ms,
            "identity": r.identity,
        },
        "source": sources,
        "sink": sinks,
    })
}
