//! The effective settings: every setting that takes effect, defaults filled in, as
//! `check-config` prints them and as the configuration hash is taken over.
//!
//! Secrets never appear: key, token and password values are `***`, header values
//! that look like credentials too, and a setting whose value came from the
//! environment is shown as written (`"${TOKEN}"`), since any of them may hold one.

use super::daemon::{
    Compression, DaemonConfig, EsAuth, HttpFormat, NetConfig, SinkKind, SourceFormat,
};
use super::layers::FromEnv;
use super::sinks::Shape;
use super::{Config, OnError};
use crate::tls::{cleartext_exposure, without_credentials};
use serde_json::{Value, json};
use std::time::Duration;

/// The settings `record` takes from the configuration: `[record]`, `[redact]` and
/// `[compliance]`; with `daemon`, also the daemon's sections. Settings from the
/// environment are shown as written.
pub fn settings(cfg: &Config, daemon: Option<&DaemonConfig>, from_env: &[FromEnv]) -> Value {
    let mut v = json!({
        "record": record_json(cfg),
        "redact": redact_json(cfg),
        "compliance": compliance_json(cfg),
    });
    if let Some(d) = daemon {
        daemon_sections(d, &mut v);
    }
    show_as_written(&mut v, from_env);
    v
}

/// The configuration hash: SHA-256 (hex) of the effective [`settings`], so writing a
/// default out does not change it, nor does the file split, the layout, or a value
/// spelt another way (`"60s"` and `"1m"`). What the environment holds does not count
/// (settings from it count as written), nor the contents of key and token files.
/// Paths under the home directory count as `~/…`, and a host name left to its
/// default as that default, so the same settings give the same hash on every host
/// and for every user.
pub fn hash(cfg: &Config, daemon: Option<&DaemonConfig>, from_env: &[FromEnv]) -> String {
    let mut v = settings(cfg, daemon, from_env);
    if let Some(d) = daemon
        && d.agent.host_default
    {
        v["agent"]["host"] = "(host name)".into();
    }
    // Whether the sealer's key exists yet is not a setting.
    if let Some(k) = v.pointer_mut("/sealer/hmac_key") {
        *k = "***".into();
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        let home = home.to_string_lossy();
        collapse_home(&mut v, home.trim_end_matches('/'));
    }
    let mut text = String::from("auditship-config-v2\n");
    canonical(&v, &mut text);
    crate::audit::sha256_hex(text.as_bytes())
}

/// Strings naming a path under `home` become `~/…`.
fn collapse_home(v: &mut Value, home: &str) {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(home)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                *s = format!("~{rest}");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| collapse_home(x, home)),
        Value::Object(m) => m.values_mut().for_each(|x| collapse_home(x, home)),
        _ => {}
    }
}

/// JSON with object keys sorted, whatever the map's order.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn record_json(cfg: &Config) -> Value {
    let r = &cfg.record;
    json!({
            "dir": r.dir.display().to_string(),
            "user_id": r.user_id.clone().unwrap_or_else(|| "(OS user)".into()),
            "on_error": match r.on_error { OnError::Allow => "allow", OnError::Block => "block" },
            "fallback_file": r.fallback_file.display().to_string(),
            "keep_prompts": r.keep_prompts,
            "keep_tool_input": r.keep_tool_input,
            "keep_tool_response": r.keep_tool_response,
            "keep_messages": r.keep_messages,
            "max_kept_bytes": r.max_kept_bytes,
            "hmac": match &r.signer { Some((kid, _)) => format!("kid {kid}, key ***"), None => "off".into() },
            "fsync": r.fsync,
            "lock_timeout_ms": r.lock_timeout_ms,
            "socket": r.socket.as_ref().map_or_else(|| "none: local mode".into(), |p| p.display().to_string()),
            "socket_timeout_ms": r.socket_timeout_ms,
            "identity": r.identity,
    })
}

/// `[sealer]`: where it listens and writes, its key (named, never shown), the
/// signing key's file and the checkpoint interval, its limits and identities.
fn sealer_json(s: &super::sealer::SealerConfig) -> Value {
    let l = &s.limits;
    json!({
        "listen": s.listen.display().to_string(),
        "dir": s.dir.display().to_string(),
        "hmac_kid": s.hmac_kid,
        "hmac_key_file": s.hmac_key_file.display().to_string(),
        "hmac_key": if s.hmac_key.is_some() { "***" } else { "(created when the sealer starts)" },
        "signing_key_file": s.signing_key_file.display().to_string(),
        "checkpoint_interval": dur(s.checkpoint_interval),
        "max_payload_bytes": l.max_payload_bytes,
        "read_timeout": dur(l.read_timeout),
        "max_connections": l.max_connections,
        "max_buffered_bytes": l.max_buffered_bytes,
        "identity": s.identity,
    })
}

/// The built-in detectors always run; the configured patterns add to them.
fn redact_json(cfg: &Config) -> Value {
    json!({
        "builtin_detectors": crate::redact::builtin_detectors(),
        "patterns": cfg
            .redact_patterns
            .iter()
            .map(|p| json!({ "name": p.name, "regex": p.regex }))
            .collect::<Vec<_>>(),
    })
}

/// The built-in rules are named by their tag and size (docs/FORMAT.md lists them);
/// the configured ones are shown in full.
fn compliance_json(cfg: &Config) -> Value {
    let c = &cfg.compliance_settings;
    let builtin: Vec<String> = if c.builtin {
        crate::compliance::builtin_rule_configs()
            .iter()
            .map(|r| format!("{}: {} resource globs", r.tags.join(", "), r.resource.len()))
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "builtin": c.builtin,
        "builtin_rules": builtin,
        "always": c.always,
        "rule": c
            .rules
            .iter()
            .map(|r| json!({ "resource": r.resource, "tags": r.tags }))
            .collect::<Vec<_>>(),
    })
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

fn daemon_sections(d: &DaemonConfig, v: &mut Value) {
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
                "max_in_flight": s.max_in_flight,
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
                SinkKind::Kafka(k) => {
                    v["type"] = "kafka".into();
                    v.as_object_mut().map(|o| o.remove("compression"));
                    kafka_json(k, &mut v);
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
    let daemon = json!({
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
        "telemetry": match &d.telemetry {
            Some(t) => json!({
                "listen": t.listen.to_string(),
                "dir": t.dir.display().to_string(),
                "hmac": match &t.signer { Some((kid, _)) => format!("kid {kid}, key ***"), None => "off".into() },
                "max_body_bytes": t.max_body_bytes,
                "users": t.users,
            }),
            None => json!({ "enabled": false }),
        },
        "source": sources,
        "sink": sinks,
    });
    let mut daemon = daemon;
    if let Some(sealer) = &d.sealer {
        daemon["sealer"] = sealer_json(sealer);
    }
    if let (Value::Object(into), Value::Object(from)) = (v, daemon) {
        into.extend(from);
    }
}

/// Replaces every setting that came from the environment by its value as written
/// (`"Bearer ${TOKEN}"`), or by `***` where the output combines it with others.
fn show_as_written(v: &mut Value, from_env: &[FromEnv]) {
    for f in from_env {
        let mut path = f.path.clone();
        let combined = combined_into(&path);
        if let Some((depth, shown_as)) = combined {
            path.truncate(depth);
            path.push(shown_as.to_string());
        }
        let pointer: String = path
            .iter()
            .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
            .collect();
        if let Some(slot) = v.pointer_mut(&pointer) {
            *slot = match combined {
                Some(_) => "***".into(),
                None => f.written.as_str().into(),
            };
        }
    }
}

/// For a setting the output shows combined with others under another name: the
/// depth of its table and that name.
fn combined_into(path: &[String]) -> Option<(usize, &'static str)> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["sink", _, "token_file" | "token_env", ..] => Some((2, "token")),
        ["sink", _, "api_key_file" | "username" | "password_file", ..] => Some((2, "auth")),
        ["record", "hmac_kid" | "hmac_key_file" | "hmac_key_env", ..] => Some((1, "hmac")),
        ["telemetry", "hmac_kid" | "hmac_key_file", ..] => Some((1, "hmac")),
        _ => None,
    }
}

fn kafka_json(k: &crate::config::daemon::KafkaConfig, v: &mut Value) {
    let brokers: Vec<String> = k
        .brokers
        .iter()
        .map(|(h, p)| {
            if h.contains(':') {
                format!("[{h}]:{p}")
            } else {
                format!("{h}:{p}")
            }
        })
        .collect();
    v["brokers"] = brokers.into();
    v["topic"] = k.topic.as_str().into();
    v["key"] = k.key.name().into();
    v["compression"] = k.codec.name().into();
    v["acks"] = if k.acks == -1 { "all" } else { "1" }.into();
    v["idempotence"] = k.idempotence.into();
    v["message_max_bytes"] = k.message_max_bytes.into();
    match &k.tls {
        None => {
            v["tls"] = json!({ "enabled": false });
            if !crate::config::kafka::plaintext_brokers(k).is_empty() {
                v["allow_plaintext"] = true.into();
            }
        }
        Some(t) => {
            let mut tls = json!({
                "enabled": true,
                "ca_file": t.ca_file.clone().unwrap_or_else(|| "(system roots)".into()),
            });
            if let Some(c) = &t.client_cert_file {
                tls["client_cert_file"] = c.as_str().into();
                tls["client_key_file"] = "***".into();
            }
            if let Some(n) = &t.server_name_text {
                tls["server_name"] = n.as_str().into();
            }
            v["tls"] = tls;
        }
    }
    if let Some(s) = &k.sasl {
        v["sasl"] =
            json!({ "mechanism": s.mechanism.name(), "username": s.username, "password": "***" });
    }
    v["connect_timeout"] = dur(k.connect_timeout).into();
    v["request_timeout"] = dur(k.request_timeout).into();
}

fn net_json(net: &NetConfig, v: &mut Value) {
    v["endpoint"] = net.endpoint.as_str().into();
    if !cleartext_exposure(&net.endpoint, net.proxy.as_deref()).is_empty() {
        v["allow_plaintext"] = true.into();
    }
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
        v["proxy"] = without_credentials(p).into();
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

fn archive_json(a: &super::archive::ArchiveConfig) -> Value {
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
