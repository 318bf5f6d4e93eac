//! `auditship check-config`: validate the configuration and print what takes effect.

use crate::config::daemon::{
    Compression, DaemonConfig, EsAuth, HttpFormat, NetConfig, SinkKind, SourceFormat,
};
use crate::config::{self, Config, OnError};
use crate::ship::shape::Shape;
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Validate the configuration and print the effective settings, secrets masked.
///
/// The main file and every conf.d/*.toml next to it are merged first (later files
/// win; [[source]] and [[sink]] merge by name) and ${VAR} references expanded. Every
/// error is reported at once, each with its file, line and column. Key and token
/// files are read (so a missing file is an error here, not at 3 a.m.) but their
/// contents are never printed. The output ends with the configuration's hash (the
/// same on every host given the same settings) and the files read. Exit 0 when
/// valid, 1 on any error.
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
            let source = match (&cfg.file, cfg.files.len()) {
                (Some(p), 1) => p.display().to_string(),
                (Some(p), n) => format!("{} and {} drop-in(s)", p.display(), n - 1),
                (None, 0) => "built-in defaults (no configuration file)".into(),
                (None, n) => format!("built-in defaults and {n} drop-in(s)"),
            };
            let mut files = String::new();
            for f in &cfg.files {
                files.push_str(&format!("#   {}\n", f.display()));
            }
            if files.is_empty() {
                files.push_str("#   (none)\n");
            }
            let mut out = std::io::stdout().lock();
            let _ = write!(
                out,
                "# configuration: {source}\n# valid; effective settings (secrets masked):\n\n{text}\n# config hash: {}\n# files read, in order:\n{files}",
                cfg.hash
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

/// The effective settings as check-config prints them (secrets masked).
pub fn effective(cfg: &Config, d: &DaemonConfig) -> Value {
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
                SinkKind::Http { net, format, shape, headers, token } => {
                    v["type"] = "http".into();
                    net_json(net, &mut v);
                    v["format"] = match (format, shape) {
                        (HttpFormat::JsonArray, _) => "json_array",
                        (_, Shape::Native) => "ndjson",
                        (_, s) => s.name(),
                    }
                    .into();
                    v["headers"] = headers_json(headers);
                    v["token"] = if token.is_some() { "***" } else { "none" }.into();
                }
                SinkKind::SplunkHec { net, token: _, index, source, sourcetype, indexer_ack, ack_timeout } => {
                    v["type"] = "splunk_hec".into();
                    net_json(net, &mut v);
                    v["token"] = "***".into();
                    if let Some(i) = index {
                        v["index"] = i.as_str().into();
                    }
                    v["source"] = source.as_str().into();
                    v["sourcetype"] = sourcetype.as_str().into();
                    v["indexer_ack"] = (*indexer_ack).into();
                    v["ack_timeout"] = dur(*ack_timeout).into();
                }
                SinkKind::Elasticsearch { net, index, auth, shape } => {
                    v["type"] = "elasticsearch".into();
                    net_json(net, &mut v);
                    v["index"] = index.as_str().into();
                    v["auth"] = match auth {
                        EsAuth::None => "none".to_string(),
                        EsAuth::ApiKey(_) => "api key ***".to_string(),
                        EsAuth::Basic { username, .. } => format!("basic {username}:***"),
                    }
                    .into();
                    v["format"] = shape.name().into();
                }
                SinkKind::Otlp { net, headers, token, service_name } => {
                    v["type"] = "otlp".into();
                    net_json(net, &mut v);
                    v["headers"] = headers_json(headers);
                    v["token"] = if token.is_some() { "***" } else { "none" }.into();
                    v["service_name"] = service_name.as_str().into();
                }
                SinkKind::Syslog { net, app_name, facility } => {
                    v["type"] = "syslog".into();
                    net_json(net, &mut v);
                    v["app_name"] = app_name.as_str().into();
                    v["facility"] = (*facility).into();
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
            "heartbeat_interval": dur(d.agent.heartbeat_interval),
            "log_format": if d.agent.log_json { "json" } else { "plain" },
        },
        "queue": { "max_bytes": d.queue.max_bytes, "cache_capacity": d.queue.cache_capacity },
        "archive": archive_json(&d.archive),
        "metrics": match d.metrics.listen {
            Some(a) => json!({ "enabled": true, "listen": a.to_string(), "unhealthy_after": dur(d.metrics.unhealthy_after) }),
            None => json!({ "enabled": false }),
        },
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

fn net_json(net: &NetConfig, v: &mut Value) {
    v["endpoint"] = net.endpoint.as_str().into();
    let mut tls = json!({
        "ca_file": net.tls.ca_file.clone().unwrap_or_else(|| "(system roots)".into()),
    });
    if let Some(c) = &net.tls.client_cert_file {
        tls["client_cert_file"] = c.as_str().into();
        tls["client_key_file"] = "***".into();
    }
    if let Some(n) = &net.tls.server_name_text {
        tls["server_name"] = n.as_str().into();
    }
    v["tls"] = tls;
    if let Some(p) = &net.proxy {
        v["proxy"] = p.as_str().into();
    }
    v["connect_timeout"] = dur(net.connect_timeout).into();
    v["request_timeout"] = dur(net.request_timeout).into();
}

fn headers_json(headers: &[(String, String)]) -> Value {
    headers
        .iter()
        .map(|(k, val)| (k.clone(), Value::from(mask_header(k, val))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn archive_json(a: &crate::archive::ArchiveConfig) -> Value {
    let mut v = json!({
        "after_days": a.after_days,
        "dir": a.dir.display().to_string(),
        "level": a.level,
        "interval": dur(a.interval),
    });
    match a.retention_days {
        Some(r) => v["retention_days"] = r.into(),
        None => v["retention"] = "keep for ever".into(),
    }
    if let Some(s3) = &a.s3 {
        let mut t = json!({
            "bucket": s3.bucket,
            "prefix": s3.prefix,
            "region": s3.region,
            "access_key_id": "***",
            "secret_access_key": "***",
            "retain_days": s3.retain_days,
        });
        net_json(&s3.net, &mut t);
        if let Some(m) = s3.object_lock_mode {
            t["object_lock_mode"] = m.as_str().into();
        }
        v["s3"] = t;
    }
    v
}
