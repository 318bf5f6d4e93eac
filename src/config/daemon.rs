//! The daemon's sections: `[agent]`, `[[source]]`, `[[sink]]`, `[queue]`,
//! `[archive]`, `[metrics]`, `[telemetry]`.
//!
//! Kept apart from the producer's settings on purpose: `record` runs as the developer
//! and must neither read the daemon's secrets (sink tokens, readable only by the
//! service user) nor fail because of them. Only `run` and `check-config` validate
//! these sections and load their secrets.

use super::sinks::Shape;
use super::{RawConfig, expand_home};
use crate::audit::Keys;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<String>,
    pub host: Option<String>,
    /// Fields added to every shipped record, under `_auditship.fields`.
    #[serde(default)]
    pub fields: toml::Table,
    pub rescan_interval: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub heartbeat_interval: Option<String>,
    pub log_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: String,
    pub paths: Vec<String>,
    pub files: Option<String>,
    pub format: Option<String>,
    #[serde(default)]
    pub hmac_keys: BTreeMap<String, String>,
    pub max_line_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub max_events: Option<usize>,
    pub max_bytes: Option<usize>,
    pub max_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub initial: Option<String>,
    pub max_delay: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub endpoint: Option<String>,
    pub path: Option<String>,
    pub format: Option<String>,
    pub compression: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub max_files: Option<u32>,
    /// `splunk_hec`: index, source, sourcetype, indexer acknowledgement.
    /// `elasticsearch`: index pattern.
    pub index: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub indexer_ack: Option<bool>,
    pub ack_timeout: Option<String>,
    pub api_key_file: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    /// `otlp`: the resource's `service.name`.
    pub service_name: Option<String>,
    /// `syslog`: APP-NAME and facility.
    pub app_name: Option<String>,
    pub facility: Option<String>,
    pub proxy: Option<String>,
    /// Accept sending unencrypted off this machine (see [`crate::tls::cleartext_exposure`]).
    pub allow_plaintext: Option<bool>,
    /// Requests sent before the oldest is answered (HTTP sinks).
    pub max_in_flight: Option<usize>,
    /// `kafka`: bootstrap brokers (`host:port`), topic, record key, acknowledgement,
    /// idempotence, the largest record batch, SASL.
    pub brokers: Option<Vec<String>>,
    pub topic: Option<String>,
    pub key: Option<String>,
    pub acks: Option<String>,
    pub idempotence: Option<bool>,
    pub message_max_bytes: Option<usize>,
    pub sasl: Option<RawSasl>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub batch: RawBatch,
    #[serde(default)]
    pub retry: RawRetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub unhealthy_after: Option<String>,
}

/// `[telemetry]`: the OTLP/HTTP logs receiver for Claude Code's own telemetry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub listen: Option<String>,
    pub dir: Option<String>,
    pub hmac_kid: Option<String>,
    pub hmac_key_file: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Local user name → the enterprise identity its records carry as `user_id`.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
}

/// The receiver, when `[telemetry] listen` is set.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// A loopback address.
    pub listen: std::net::SocketAddr,
    /// Streams go to `<dir>/<user>/`.
    pub dir: PathBuf,
    /// `(kid, keys)` when the streams are signed.
    pub signer: Option<(String, Keys)>,
    pub max_body_bytes: usize,
    pub users: BTreeMap<String, String>,
}

/// Default `[telemetry] max_body_bytes`.
pub const TELEMETRY_MAX_BODY: usize = 8 << 20;

/// The name of the source the daemon adds for the telemetry streams.
pub const TELEMETRY_SOURCE: &str = "telemetry";

/// `[metrics]`: the loopback listener for `/metrics`, `/health` and `/status`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `None` when disabled.
    pub listen: Option<std::net::SocketAddr>,
    /// A sink failing longer than this makes `/health` answer 503.
    pub unhealthy_after: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    pub after_days: Option<u32>,
    pub dir: Option<String>,
    pub level: Option<u32>,
    pub interval: Option<String>,
    pub retention_days: Option<u32>,
    pub s3: Option<RawS3>,
}

/// `[archive.s3]`: where archives are uploaded, with Object Lock retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub region: Option<String>,
    pub access_key_id_file: Option<String>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_file: Option<String>,
    pub session_token_env: Option<String>,
    pub object_lock_mode: Option<String>,
    pub retain_days: Option<u32>,
    pub proxy: Option<String>,
    pub allow_plaintext: Option<bool>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    #[serde(default)]
    pub tls: RawTls,
}

/// `[sink.sasl]` of a kafka sink.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    pub mechanism: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `kafka` only: TLS even without any other `tls.*` setting (system roots).
    pub enabled: Option<bool>,
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub max_bytes: Option<u64>,
    pub cache_capacity: Option<u64>,
}

/// A secret string: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from a value read elsewhere (credentials handed over by a caller).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn for_tests(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// FORMAT.md v1: schema, hash chain and HMAC are checked.
    AuditshipV1,
    /// Any JSON lines, shipped without chain checks.
    Json,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    /// Globs matching directories; each matching directory is one stream.
    pub paths: Vec<String>,
    /// Glob on file names inside a stream directory.
    pub files: String,
    pub format: SourceFormat,
    pub keys: Keys,
    pub max_line_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    Ndjson,
    JsonArray,
}

/// Where a network sink connects and how: its endpoint, TLS material, proxy and
/// timeouts. Certificates and keys are read and parsed when the config is loaded,
/// so `check-config` reports a bad file and the daemon never starts half-configured.
/// `Debug` hides the proxy's credentials.
#[derive(Clone)]
pub struct NetConfig {
    /// Base URL (`http(s)://host:port[/prefix]`), or `tls://host:port` for syslog.
    pub endpoint: String,
    pub tls: crate::tls::TlsSettings,
    pub proxy: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl std::fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConfig")
            .field("endpoint", &self.endpoint)
            .field("tls", &self.tls)
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::tls::without_credentials),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// How an Elasticsearch sink authenticates.
#[derive(Debug, Clone)]
pub enum EsAuth {
    None,
    ApiKey(Secret),
    Basic { username: String, password: Secret },
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Http {
        net: NetConfig,
        format: HttpFormat,
        shape: Shape,
        headers: Vec<(String, String)>,
        token: Option<Secret>,
    },
    SplunkHec {
        net: NetConfig,
        token: Secret,
        index: Option<String>,
        source: String,
        sourcetype: String,
        indexer_ack: bool,
        ack_timeout: Duration,
    },
    Elasticsearch {
        net: NetConfig,
        /// Index name pattern: `%Y`, `%m`, `%d` from the record's timestamp (UTC).
        index: String,
        auth: EsAuth,
        shape: Shape,
    },
    Otlp {
        net: NetConfig,
        headers: Vec<(String, String)>,
        token: Option<Secret>,
        service_name: String,
    },
    Syslog {
        net: NetConfig,
        app_name: String,
        facility: u8,
    },
    File {
        path: PathBuf,
        max_file_bytes: u64,
        max_files: u32,
    },
    Kafka(Box<KafkaConfig>),
}

/// A `kafka` sink's settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap brokers, tried in order.
    pub brokers: Vec<(String, u16)>,
    pub topic: String,
    pub key: KafkaKey,
    pub codec: crate::config::kafka::Codec,
    /// -1 (all in-sync replicas) or 1 (the leader).
    pub acks: i16,
    pub idempotence: bool,
    /// The largest record batch sent; a record that cannot fit is dead-lettered.
    pub message_max_bytes: usize,
    /// `None`: plain TCP.
    pub tls: Option<crate::tls::TlsSettings>,
    pub sasl: Option<KafkaSasl>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// What a kafka record's key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaKey {
    /// `_auditship.stream`: a stream's records stay in order in one partition.
    Stream,
    /// `_auditship.id`.
    Id,
    /// No key: records spread over the partitions, request by request.
    None,
}

impl KafkaKey {
    pub fn name(self) -> &'static str {
        match self {
            KafkaKey::Stream => "stream",
            KafkaKey::Id => "id",
            KafkaKey::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// Default `message_max_bytes`: Kafka's default `max.request.size`.
pub const KAFKA_MESSAGE_MAX_BYTES: usize = 1 << 20;

impl SinkKind {
    /// The network settings of a network sink.
    pub fn net(&self) -> Option<&NetConfig> {
        match self {
            SinkKind::Http { net, .. }
            | SinkKind::SplunkHec { net, .. }
            | SinkKind::Elasticsearch { net, .. }
            | SinkKind::Otlp { net, .. }
            | SinkKind::Syslog { net, .. } => Some(net),
            SinkKind::File { .. } | SinkKind::Kafka(_) => None,
        }
    }

    /// The `type` this sink was configured with.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Http { .. } => "http",
            SinkKind::SplunkHec { .. } => "splunk_hec",
            SinkKind::Elasticsearch { .. } => "elasticsearch",
            SinkKind::Otlp { .. } => "otlp",
            SinkKind::Syslog { .. } => "syslog",
            SinkKind::File { .. } => "file",
            SinkKind::Kafka(_) => "kafka",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub compression: Compression,
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
    /// Requests out at once; 1 for the sinks that write one ordered stream (syslog,
    /// file).
    pub max_in_flight: usize,
    pub retry_initial: Duration,
    pub retry_max_delay: Duration,
}

/// Requests an HTTP sink has out at once unless `max_in_flight` says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;

/// The most `max_in_flight` may be.
pub const MAX_IN_FLIGHT_LIMIT: usize = 64;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub state_dir: PathBuf,
    pub host: String,
    /// `host` was not configured: it is this machine's name.
    pub host_default: bool,
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub rescan_interval: Duration,
    pub shutdown_timeout: Duration,
    /// How often an `agent_event` heartbeat is shipped; zero: no lifecycle records
    /// at all (start, heartbeat, stop).
    pub heartbeat_interval: Duration,
    /// Log lines as JSON objects instead of plain text.
    pub log_json: bool,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub max_bytes: u64,
    pub cache_capacity: u64,
}

/// The validated daemon configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub agent: AgentConfig,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    pub queue: QueueConfig,
    pub archive: super::archive::ArchiveConfig,
    pub metrics: MetricsConfig,
    /// `[sealer]`, when the daemon runs one.
    pub sealer: Option<super::sealer::SealerConfig>,

    /// The telemetry receiver; `None` when off.
    pub telemetry: Option<TelemetryConfig>,
    /// Identifies the configuration a host runs (status, metrics, heartbeats).
    pub hash: String,
    /// Settings whose value came from the environment (`${VAR}`): `check-config`
    /// shows them as written, since any of them may hold a secret.
    pub from_env: Vec<super::layers::FromEnv>,
}

/// `[agent] heartbeat_interval` when not configured; `auditship report` judges
/// silence against it by default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"2h"`, `"1d"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration like \"10s\" or \"500ms\", found {s:?}"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => {
            return Err(format!(
                "expected a duration unit ms, s, m, h or d in {s:?}"
            ));
        }
    };
    Ok(d)
}

/// `$XDG_STATE_HOME/auditship`, else `~/.local/state/auditship`.
pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("auditship"),
        None => expand_home("~/.local/state/auditship"),
    }
}

pub(super) struct Errors<'a> {
    list: &'a mut Vec<String>,
}

impl Errors<'_> {
    pub(super) fn duration(&mut self, what: &str, v: Option<&str>, default: Duration) -> Duration {
        match v.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.list.push(format!("{what}: {e}"));
                default
            }
        }
    }

    pub(super) fn push(&mut self, e: String) {
        self.list.push(e);
    }
}

/// The embedded default's second source: `record`'s fallback file (see
/// `record::fallback`), shipped as plain JSON lines so record failures reach the SIEM.
fn record_errors_source(raw: &RawConfig) -> SourceConfig {
    let file = expand_home(
        raw.record
            .fallback_file
            .as_deref()
            .unwrap_or(super::DEFAULT_FALLBACK_FILE),
    );
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    SourceConfig {
        name: "record-errors".into(),
        paths: vec![globset::escape(&dir.display().to_string())],
        files: globset::escape(&name),
        format: SourceFormat::Json,
        keys: Keys::new(),
        max_line_bytes: 4 << 20,
    }
}

/// The sealed streams are shipped like any source, with no configuration of their
/// own: a chained source over `<dir>/*`, checked with the sealer's key, unless a
/// `[[source]]` already covers them (that one gets the key when it lacks it).
fn add_sealed_source(
    s: &super::sealer::SealerConfig,
    sources: &mut Vec<SourceConfig>,
    e: &mut Errors<'_>,
) {
    let probe = s.dir.join("user");
    let mut covered = false;
    for src in sources.iter_mut() {
        if src.paths.iter().any(|p| super::coverage::covers(p, &probe)) {
            covered = true;
            if let Some(keys) = &s.hmac_key
                && !src.keys.contains(&s.hmac_kid)
            {
                src.keys.merge(keys);
            }
        }
    }
    if covered {
        return;
    }
    let name = super::sealer::SEALED_SOURCE;
    if sources.iter().any(|src| src.name == name) {
        e.push(format!(
            "sealer.dir: the source {name:?} does not cover {}/*; cover it there or rename that source",
            s.dir.display()
        ));
        return;
    }
    sources.push(SourceConfig {
        name: name.into(),
        paths: vec![format!(
            "{}/*",
            globset::escape(&s.dir.display().to_string())
        )],
        files: "*.jsonl".into(),
        format: SourceFormat::AuditshipV1,
        keys: s.hmac_key.clone().unwrap_or_default(),
        max_line_bytes: 4 << 20,
    });
}

impl DaemonConfig {
    /// Validates the daemon sections, loading key and token files. Every problem is
    /// pushed to `errors`.
    pub fn from_raw(raw: &RawConfig, errors: &mut Vec<String>) -> DaemonConfig {
        let mut e = Errors { list: errors };
        let a = &raw.agent;
        let state_dir = a
            .state_dir
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(default_state_dir);
        let fields = match serde_json::to_value(&a.fields) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        };
        let agent = AgentConfig {
            host: a.host.clone().unwrap_or_else(crate::host::host_name),
            host_default: a.host.is_none(),
            fields,
            rescan_interval: e.duration(
                "agent.rescan_interval",
                a.rescan_interval.as_deref(),
                Duration::from_secs(10),
            ),
            shutdown_timeout: e.duration(
                "agent.shutdown_timeout",
                a.shutdown_timeout.as_deref(),
                Duration::from_secs(10),
            ),
            log_json: match a.log_format.as_deref() {
                None | Some("plain") => false,
                Some("json") => true,
                Some(other) => {
                    e.push(format!(
                        "agent.log_format: expected \"plain\" or \"json\", found {other:?}"
                    ));
                    false
                }
            },
            heartbeat_interval: e.duration(
                "agent.heartbeat_interval",
                a.heartbeat_interval.as_deref(),
                DEFAULT_HEARTBEAT_INTERVAL,
            ),
            state_dir: state_dir.clone(),
        };
        if !agent.heartbeat_interval.is_zero() && agent.heartbeat_interval < Duration::from_secs(1)
        {
            e.push("agent.heartbeat_interval: at least 1s, or 0s for no lifecycle records".into());
        }
        if agent.rescan_interval.is_zero() {
            e.push("agent.rescan_interval: must be greater than 0".into());
        }

        let mut sources = Vec::new();
        if raw.source.is_empty() {
            sources.push(SourceConfig {
                name: "claude".into(),
                paths: vec![expand_home("~/.claude/audit").display().to_string()],
                files: "*.jsonl".into(),
                format: SourceFormat::AuditshipV1,
                keys: Keys::new(),
                max_line_bytes: 4 << 20,
            });
            sources.push(record_errors_source(raw));
        }
        for (i, s) in raw.source.iter().enumerate() {
            let at = format!("source[{i}] ({:?})", s.name);
            if s.name.is_empty() {
                e.push(format!("{at}.name: must not be empty"));
            }
            if raw.source.iter().filter(|o| o.name == s.name).count() > 1 {
                e.push(format!("{at}.name: used by more than one source"));
            }
            if s.paths.is_empty() {
                e.push(format!("{at}.paths: needs at least one directory glob"));
            }
            for p in &s.paths {
                if let Err(err) = globset::Glob::new(&expand_home(p).display().to_string()) {
                    e.push(format!("{at}.paths: {p:?}: {err}"));
                }
            }
            let files = s.files.clone().unwrap_or_else(|| "*.jsonl".into());
            if let Err(err) = globset::Glob::new(&files) {
                e.push(format!("{at}.files: {err}"));
            }
            let format = match s.format.as_deref() {
                None | Some("auditship-v1") => SourceFormat::AuditshipV1,
                Some("json") => SourceFormat::Json,
                Some(other) => {
                    e.push(format!(
                        "{at}.format: expected \"auditship-v1\" or \"json\", found {other:?}"
                    ));
                    SourceFormat::AuditshipV1
                }
            };
            let mut keys = Keys::new();
            for (kid, file) in &s.hmac_keys {
                match crate::keyfile::read_key_file(&expand_home(file)) {
                    Ok(k) => keys.insert(kid.clone(), &k),
                    Err(err) => e.push(format!("{at}.hmac_keys.{kid}: {err}")),
                }
            }
            let max_line_bytes = s.max_line_bytes.unwrap_or(4 << 20);
            if !(1024..=(256 << 20)).contains(&max_line_bytes) {
                e.push(format!(
                    "{at}.max_line_bytes: must be between 1024 and 268435456"
                ));
            }
            sources.push(SourceConfig {
                name: s.name.clone(),
                paths: s
                    .paths
                    .iter()
                    .map(|p| expand_home(p).display().to_string())
                    .collect(),
                files,
                format,
                keys,
                max_line_bytes: max_line_bytes as usize,
            });
        }

        let mut sinks = Vec::new();
        if raw.sink.is_empty() {
            sinks.push(SinkConfig {
                name: "local".into(),
                kind: SinkKind::File {
                    path: state_dir.join("shipped.jsonl"),
                    max_file_bytes: 64 << 20,
                    max_files: 0,
                },
                compression: Compression::None,
                max_events: 1000,
                max_bytes: 1 << 20,
                max_wait: Duration::from_secs(1),
                max_in_flight: 1,
                retry_initial: Duration::from_millis(500),
                retry_max_delay: Duration::from_secs(60),
            });
        }
        for (i, s) in raw.sink.iter().enumerate() {
            let at = format!("sink[{i}] ({:?})", s.name);
            if s.name.is_empty() || s.name.contains(['/', '\0']) {
                e.push(format!("{at}.name: must be non-empty, without '/'"));
            }
            if raw.sink.iter().filter(|o| o.name == s.name).count() > 1 {
                e.push(format!("{at}.name: used by more than one sink"));
            }
            let compression = match s.compression.as_deref() {
                None | Some("none") => Compression::None,
                Some("gzip") => Compression::Gzip,
                // Record batch codecs: read by the kafka sink itself.
                Some(_) if s.kind == "kafka" => Compression::None,
                Some(other) => {
                    e.push(format!(
                        "{at}.compression: expected \"none\" or \"gzip\", found {other:?}"
                    ));
                    Compression::None
                }
            };
            for key in s.keys_not_for_type() {
                e.push(format!("{at}.{key}: not a setting of a {:?} sink", s.kind));
            }
            let kind = match s.kind.as_str() {
                "http" => {
                    let (format, shape) = match s.format.as_deref() {
                        None | Some("ndjson") | Some("native") => {
                            (HttpFormat::Ndjson, Shape::Native)
                        }
                        Some("json_array") => (HttpFormat::JsonArray, Shape::Native),
                        Some("ecs") => (HttpFormat::Ndjson, Shape::Ecs),
                        Some("ocsf") => (HttpFormat::Ndjson, Shape::Ocsf),
                        Some(other) => {
                            e.push(format!(
                                "{at}.format: expected \"ndjson\", \"json_array\", \"native\", \"ecs\" or \"ocsf\", found {other:?}"
                            ));
                            (HttpFormat::Ndjson, Shape::Native)
                        }
                    };
                    SinkKind::Http {
                        net: net_config(&at, &s.net_raw(), &["http", "https"], &mut e),
                        format,
                        shape,
                        headers: headers(&at, s, &mut e),
                        token: load_token(&at, s, &mut e),
                    }
                }
                "splunk_hec" => {
                    let token = load_token(&at, s, &mut e).unwrap_or_else(|| {
                        if s.token_file.is_none() && s.token_env.is_none() {
                            e.push(format!(
                                "{at}: a splunk_hec sink needs token_file or token_env"
                            ));
                        }
                        Secret(String::new())
                    });
                    SinkKind::SplunkHec {
                        net: net_config(&at, &s.net_raw(), &["http", "https"], &mut e),
                        token,
                        index: s.index.clone(),
                        source: s.source.clone().unwrap_or_else(|| "auditship".into()),
                        sourcetype: s.sourcetype.clone().unwrap_or_else(|| "_json".into()),
                        indexer_ack: s.indexer_ack.unwrap_or(false),
                        ack_timeout: e.duration(
                            &format!("{at}.ack_timeout"),
                            s.ack_timeout.as_deref(),
                            Duration::from_secs(60),
                        ),
                    }
                }
                "elasticsearch" => {
                    let shape = match s.format.as_deref() {
                        None => Shape::Native,
                        Some(f) => Shape::parse(f).unwrap_or_else(|| {
                            e.push(format!(
                                "{at}.format: expected \"native\", \"ecs\" or \"ocsf\", found {f:?}"
                            ));
                            Shape::Native
                        }),
                    };
                    let auth = match (&s.api_key_file, &s.username, &s.password_file) {
                        (None, None, None) => EsAuth::None,
                        (Some(f), None, None) => match read_secret_file(f) {
                            Ok(k) => EsAuth::ApiKey(k),
                            Err(err) => {
                                e.push(format!("{at}.api_key_file: {err}"));
                                EsAuth::None
                            }
                        },
                        (None, Some(u), Some(f)) => match read_secret_file(f) {
                            Ok(p) => EsAuth::Basic {
                                username: u.clone(),
                                password: p,
                            },
                            Err(err) => {
                                e.push(format!("{at}.password_file: {err}"));
                                EsAuth::None
                            }
                        },
                        _ => {
                            e.push(format!(
                                "{at}: set api_key_file, or username and password_file"
                            ));
                            EsAuth::None
                        }
                    };
                    let index = s
                        .index
                        .clone()
                        .unwrap_or_else(|| "auditship-%Y.%m.%d".into());
                    if let Err(err) = super::sinks::check_index_pattern(&index) {
                        e.push(format!("{at}.index: {err}"));
                    }
                    SinkKind::Elasticsearch {
                        net: net_config(&at, &s.net_raw(), &["http", "https"], &mut e),
                        index,
                        auth,
                        shape,
                    }
                }
                "otlp" => {
                    if !matches!(s.format.as_deref(), None | Some("json")) {
                        e.push(format!("{at}.format: an otlp sink sends \"json\""));
                    }
                    SinkKind::Otlp {
                        net: net_config(&at, &s.net_raw(), &["http", "https"], &mut e),
                        headers: headers(&at, s, &mut e),
                        token: load_token(&at, s, &mut e),
                        service_name: s.service_name.clone().unwrap_or_else(|| "auditship".into()),
                    }
                }
                "syslog" => {
                    let facility = match s.facility.as_deref() {
                        None => 13,
                        Some(f) => super::sinks::facility(f).unwrap_or_else(|| {
                            e.push(format!("{at}.facility: expected a syslog facility name such as \"audit\", \"authpriv\" or \"local0\", found {f:?}"));
                            13
                        }),
                    };
                    let app_name = s.app_name.clone().unwrap_or_else(|| "auditship".into());
                    if app_name.is_empty()
                        || app_name.len() > 48
                        || !app_name.bytes().all(|b| (33..=126).contains(&b))
                    {
                        e.push(format!("{at}.app_name: 1 to 48 printable ASCII characters"));
                    }
                    if s.proxy.is_some() {
                        e.push(format!(
                            "{at}.proxy: syslog connects directly; proxies apply to HTTP sinks"
                        ));
                    }
                    if !matches!(s.format.as_deref(), None | Some("rfc5424")) {
                        e.push(format!("{at}.format: a syslog sink sends \"rfc5424\""));
                    }
                    SinkKind::Syslog {
                        net: net_config(&at, &s.net_raw(), &["tls"], &mut e),
                        app_name,
                        facility,
                    }
                }
                "file" => {
                    let path = match &s.path {
                        Some(p) => expand_home(p),
                        None => {
                            e.push(format!("{at}.path: a file sink needs a path"));
                            PathBuf::new()
                        }
                    };
                    if !matches!(s.format.as_deref(), None | Some("jsonl")) {
                        e.push(format!("{at}.format: a file sink writes \"jsonl\""));
                    }
                    SinkKind::File {
                        path,
                        max_file_bytes: s.max_file_bytes.unwrap_or(64 << 20),
                        max_files: s.max_files.unwrap_or(0),
                    }
                }
                "kafka" => SinkKind::Kafka(Box::new(super::kafka::kafka_config(&at, s, &mut e))),
                other => {
                    e.push(format!(
                        "{at}.type: expected \"http\", \"splunk_hec\", \"elasticsearch\", \"otlp\", \"syslog\", \"kafka\" or \"file\", found {other:?}"
                    ));
                    continue;
                }
            };
            if compression == Compression::Gzip
                && matches!(kind, SinkKind::Syslog { .. } | SinkKind::File { .. })
            {
                e.push(format!(
                    "{at}.compression: {} sinks do not compress",
                    s.kind
                ));
            }
            let max_events = s.batch.max_events.unwrap_or(1000);
            let max_bytes = s.batch.max_bytes.unwrap_or(1 << 20);
            if max_events == 0 || max_bytes < 1024 {
                e.push(format!(
                    "{at}.batch: max_events must be > 0 and max_bytes >= 1024"
                ));
            }
            let max_in_flight = max_in_flight(&at, &kind, s.max_in_flight, &mut e);
            sinks.push(SinkConfig {
                name: s.name.clone(),
                kind,
                compression,
                max_events,
                max_bytes,
                max_wait: e.duration(
                    &format!("{at}.batch.max_wait"),
                    s.batch.max_wait.as_deref(),
                    Duration::from_secs(1),
                ),
                max_in_flight,
                retry_initial: e.duration(
                    &format!("{at}.retry.initial"),
                    s.retry.initial.as_deref(),
                    Duration::from_millis(500),
                ),
                retry_max_delay: e.duration(
                    &format!("{at}.retry.max_delay"),
                    s.retry.max_delay.as_deref(),
                    Duration::from_secs(60),
                ),
            });
        }

        let queue = QueueConfig {
            max_bytes: raw.queue.max_bytes.unwrap_or(16 << 20),
            cache_capacity: raw.queue.cache_capacity.unwrap_or(8 << 20),
        };
        if queue.max_bytes < (1 << 20) {
            e.push("queue.max_bytes: must be at least 1048576".into());
        }
        let ra = &raw.archive;
        let s3 = ra.s3.as_ref().map(|r| s3_config(r, &mut e));
        let archive = super::archive::ArchiveConfig {
            s3,
            after_days: ra.after_days.unwrap_or(30),
            dir: ra
                .dir
                .as_deref()
                .map(expand_home)
                .unwrap_or_else(|| state_dir.join("archive")),
            level: ra.level.unwrap_or(6),
            interval: e.duration(
                "archive.interval",
                ra.interval.as_deref(),
                Duration::from_secs(3600),
            ),
            retention_days: ra.retention_days,
        };
        if archive.level > 9 {
            e.push("archive.level: a gzip level 0-9".into());
        }
        if archive.interval < Duration::from_secs(1) {
            e.push("archive.interval: at least 1s".into());
        }
        if let Some(r) = archive.retention_days
            && r <= archive.after_days
        {
            e.push("archive.retention_days: must be more than after_days".into());
        }
        let rm = &raw.metrics;
        let listen = if rm.enabled == Some(false) {
            None
        } else {
            let text = rm.listen.as_deref().unwrap_or("127.0.0.1:9877");
            loopback_addr("metrics.listen", text, "127.0.0.1:9877", &mut e)
        };
        let metrics = MetricsConfig {
            listen,
            unhealthy_after: e.duration(
                "metrics.unhealthy_after",
                rm.unhealthy_after.as_deref(),
                Duration::from_secs(300),
            ),
        };
        let sealer = raw
            .sealer
            .as_ref()
            .map(|r| super::sealer::SealerConfig::from_raw(r, e.list));
        if let Some(s) = &sealer {
            add_sealed_source(s, &mut sources, &mut e);
        }
        let telemetry = telemetry_config(&raw.telemetry, &state_dir, &mut e);
        if let (Some(t), Some(m)) = (&telemetry, metrics.listen)
            && t.listen == m
            && t.listen.port() != 0
        {
            e.push(format!(
                "telemetry.listen: {} is metrics.listen too; give each its own port",
                t.listen
            ));
        }
        if let Some(t) = &telemetry {
            add_telemetry_source(t, &mut sources, &mut e);
        }
        DaemonConfig {
            agent,
            sources,
            sinks,
            queue,
            archive,
            metrics,
            sealer,

            telemetry,
            hash: String::new(),
            from_env: Vec::new(),
        }
    }
}

/// A loopback listener address, or the error for `what`.
fn loopback_addr(
    what: &str,
    text: &str,
    example: &str,
    e: &mut Errors<'_>,
) -> Option<std::net::SocketAddr> {
    match text.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Some(a),
        Ok(_) => {
            e.push(format!(
                "{what}: {text:?} is not a loopback address (127.0.0.1 or ::1); the listener is for this machine only"
            ));
            None
        }
        Err(_) => {
            e.push(format!(
                "{what}: expected an address like \"{example}\", found {text:?}"
            ));
            None
        }
    }
}

/// `[telemetry]`: `None` unless `listen` is set.
fn telemetry_config(
    r: &RawTelemetry,
    state_dir: &std::path::Path,
    e: &mut Errors<'_>,
) -> Option<TelemetryConfig> {
    let Some(text) = &r.listen else {
        let set = r.dir.is_some()
            || r.hmac_kid.is_some()
            || r.hmac_key_file.is_some()
            || r.max_body_bytes.is_some()
            || !r.users.is_empty();
        if set {
            e.push("telemetry: the receiver is off without listen; set listen = \"127.0.0.1:4318\" to turn it on".into());
        }
        return None;
    };
    let listen = loopback_addr("telemetry.listen", text, "127.0.0.1:4318", e);
    let signer = match (&r.hmac_kid, &r.hmac_key_file) {
        (None, None) => None,
        (Some(kid), Some(file)) => match crate::keyfile::read_key_file(&expand_home(file)) {
            Ok(key) => {
                let mut keys = Keys::new();
                keys.insert(kid.clone(), &key);
                Some((kid.clone(), keys))
            }
            Err(err) => {
                e.push(format!("telemetry.hmac_key_file: {err}"));
                None
            }
        },
        _ => {
            e.push("telemetry: signing needs both hmac_kid and hmac_key_file".into());
            None
        }
    };
    let max_body_bytes = r.max_body_bytes.unwrap_or(TELEMETRY_MAX_BODY);
    if !(64 << 10..=256 << 20).contains(&max_body_bytes) {
        e.push("telemetry.max_body_bytes: must be between 65536 and 268435456".into());
    }
    for (user, id) in &r.users {
        if id.trim().is_empty() {
            e.push(format!("telemetry.users.{user}: an empty identity"));
        }
    }
    Some(TelemetryConfig {
        listen: listen?,
        dir: r
            .dir
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(|| state_dir.join("telemetry")),
        signer,
        max_body_bytes,
        users: r.users.clone(),
    })
}

/// Ships the telemetry streams: a chained source over `<dir>/*` (one stream per
/// user, HMACs checked with the receiver's key), unless a configured source already
/// reads them.
fn add_telemetry_source(t: &TelemetryConfig, sources: &mut Vec<SourceConfig>, e: &mut Errors<'_>) {
    let user_dir = t.dir.join("someone");
    let covered = sources.iter().any(|s| {
        s.paths
            .iter()
            .any(|p| super::coverage::covers(p, &user_dir))
            && globset::Glob::new(&s.files)
                .is_ok_and(|g| g.compile_matcher().is_match("audit-2000-01-01.jsonl"))
    });
    if covered {
        return;
    }
    if sources.iter().any(|s| s.name == TELEMETRY_SOURCE) {
        e.push(format!(
            "source ({TELEMETRY_SOURCE:?}).name: the daemon names the telemetry streams' source so; rename this source, or make it read {}/*",
            t.dir.display()
        ));
        return;
    }
    let mut keys = Keys::new();
    if let Some((_, k)) = &t.signer {
        keys = k.clone();
    }
    sources.push(SourceConfig {
        name: TELEMETRY_SOURCE.into(),
        paths: vec![format!(
            "{}/*",
            globset::escape(&t.dir.display().to_string())
        )],
        files: "*.jsonl".into(),
        format: SourceFormat::AuditshipV1,
        keys,
        max_line_bytes: 4 << 20,
    });
}

/// A sink's token from `token_file` or `token_env`. Messages name the key, so the
/// loader can point at the line that set it.
fn load_token(at: &str, s: &RawSink, e: &mut Errors<'_>) -> Option<Secret> {
    let (key, read) = match (&s.token_file, &s.token_env) {
        (None, None) => return None,
        (Some(_), Some(_)) => (
            "token_env",
            Err("set token_file or token_env, not both".to_string()),
        ),
        (Some(f), None) => (
            "token_file",
            std::fs::read_to_string(expand_home(f)).map_err(|err| format!("{f:?}: {err}")),
        ),
        (None, Some(var)) => (
            "token_env",
            std::env::var(var).map_err(|_| format!("{var} is not set")),
        ),
    };
    match read.map(|t| t.trim().to_string()) {
        Ok(t) if !t.is_empty() => Some(Secret(t)),
        Ok(_) => {
            e.push(format!("{at}.{key}: the token is empty"));
            None
        }
        Err(err) => {
            e.push(format!("{at}.{key}: {err}"));
            None
        }
    }
}

/// A credential from `<name>_file`, else `<name>_env`, else the AWS variable
/// `default_env` (when set). `required` reports its absence.
fn credential(
    at: &str,
    file: Option<&String>,
    env: Option<&String>,
    default_env: &str,
    required: bool,
    e: &mut Errors<'_>,
) -> Option<Secret> {
    let (key, read) = match (file, env) {
        (Some(_), Some(_)) => (
            format!("{at}_env"),
            Err("set the _file or the _env form, not both".to_string()),
        ),
        (Some(f), None) => (format!("{at}_file"), read_secret_file(f)),
        (None, Some(v)) => (
            format!("{at}_env"),
            std::env::var(v)
                .map(|x| Secret(x.trim().to_string()))
                .map_err(|_| format!("{v} is not set")),
        ),
        (None, None) => (
            at.to_string(),
            match std::env::var(default_env) {
                Ok(x) if !x.trim().is_empty() => Ok(Secret(x.trim().to_string())),
                _ if required => Err(format!("give a _file or _env form, or set {default_env}")),
                _ => return None,
            },
        ),
    };
    match read {
        Ok(s) if !s.0.is_empty() => Some(s),
        Ok(_) => {
            e.push(format!("{key}: empty"));
            None
        }
        Err(err) => {
            e.push(format!("{key}: {err}"));
            None
        }
    }
}

fn s3_config(r: &RawS3, e: &mut Errors<'_>) -> super::archive::S3Config {
    let at = "archive.s3";
    let net = net_config(
        at,
        &NetRaw {
            endpoint: r.endpoint.as_ref(),
            tls: &r.tls,
            proxy: r.proxy.as_ref(),
            allow_plaintext: r.allow_plaintext.unwrap_or(false),
            connect_timeout: r.connect_timeout.as_deref(),
            request_timeout: r.request_timeout.as_deref(),
        },
        &["http", "https"],
        e,
    );
    let bucket = r.bucket.clone().unwrap_or_default();
    if bucket.is_empty() {
        e.push(format!("{at}.bucket: required"));
    }
    let object_lock_mode = r.object_lock_mode.as_deref().and_then(|m| {
        let mode = super::archive::LockMode::parse(m);
        if mode.is_none() {
            e.push(format!(
                "{at}.object_lock_mode: expected \"GOVERNANCE\" or \"COMPLIANCE\", found {m:?}"
            ));
        }
        mode
    });
    let retain_days = r.retain_days.unwrap_or(0);
    if object_lock_mode.is_some() && retain_days == 0 {
        e.push(format!("{at}.retain_days: required with object_lock_mode"));
    }
    super::archive::S3Config {
        endpoint: net.endpoint.clone(),
        bucket,
        prefix: r.prefix.clone().unwrap_or_default(),
        region: r.region.clone().unwrap_or_else(|| "us-east-1".into()),
        access_key_id: credential(
            &format!("{at}.access_key_id"),
            r.access_key_id_file.as_ref(),
            r.access_key_id_env.as_ref(),
            "AWS_ACCESS_KEY_ID",
            true,
            e,
        )
        .unwrap_or_else(|| Secret(String::new())),
        secret_access_key: credential(
            &format!("{at}.secret_access_key"),
            r.secret_access_key_file.as_ref(),
            r.secret_access_key_env.as_ref(),
            "AWS_SECRET_ACCESS_KEY",
            true,
            e,
        )
        .unwrap_or_else(|| Secret(String::new())),
        session_token: credential(
            &format!("{at}.session_token"),
            r.session_token_file.as_ref(),
            r.session_token_env.as_ref(),
            "AWS_SESSION_TOKEN",
            false,
            e,
        ),
        object_lock_mode,
        retain_days,
        net,
    }
}

/// Requests a sink may have out at once: 1 to [`MAX_IN_FLIGHT_LIMIT`] for HTTP sinks
/// ([`DEFAULT_MAX_IN_FLIGHT`] when unset); always 1 for syslog and file, which write
/// one ordered stream (syslog's delivery is confirmed by the position in it).
fn max_in_flight(at: &str, kind: &SinkKind, v: Option<usize>, e: &mut Errors<'_>) -> usize {
    if matches!(
        kind,
        SinkKind::Syslog { .. } | SinkKind::File { .. } | SinkKind::Kafka(_)
    ) {
        if v.is_some_and(|n| n != 1) {
            e.push(format!(
                "{at}.max_in_flight: a {} sink writes one ordered stream and sends one request at a time; leave it out or set 1",
                kind.name()
            ));
        }
        return 1;
    }
    match v {
        None => DEFAULT_MAX_IN_FLIGHT,
        Some(n) if (1..=MAX_IN_FLIGHT_LIMIT).contains(&n) => n,
        Some(_) => {
            e.push(format!(
                "{at}.max_in_flight: between 1 and {MAX_IN_FLIGHT_LIMIT}"
            ));
            DEFAULT_MAX_IN_FLIGHT
        }
    }
}

/// The extra headers of a sink, each checked to be sendable. A value is never quoted
/// in a message: it may be a credential (often from `${VAR}`).
fn headers(at: &str, s: &RawSink, e: &mut Errors<'_>) -> Vec<(String, String)> {
    for (k, v) in &s.headers {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            e.push(format!("{at}.headers.{k}: not a valid HTTP header name"));
        } else if reqwest::header::HeaderValue::from_str(v).is_err() {
            e.push(format!(
                "{at}.headers.{k}: the value is not a valid HTTP header value (control characters or a line break)"
            ));
        }
    }
    s.headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Reads a secret from a file: trimmed, not empty.
pub(super) fn read_secret_file(f: &str) -> Result<Secret, String> {
    let t = std::fs::read_to_string(expand_home(f)).map_err(|err| format!("{f:?}: {err}"))?;
    let t = t.trim();
    if t.is_empty() {
        return Err(format!("{f:?} is empty"));
    }
    Ok(Secret(t.to_string()))
}

/// The network settings of a table, as written.
struct NetRaw<'a> {
    endpoint: Option<&'a String>,
    tls: &'a RawTls,
    proxy: Option<&'a String>,
    allow_plaintext: bool,
    connect_timeout: Option<&'a str>,
    request_timeout: Option<&'a str>,
}

impl RawSink {
    fn net_raw(&self) -> NetRaw<'_> {
        NetRaw {
            endpoint: self.endpoint.as_ref(),
            tls: &self.tls,
            proxy: self.proxy.as_ref(),
            allow_plaintext: self.allow_plaintext.unwrap_or(false),
            connect_timeout: self.connect_timeout.as_deref(),
            request_timeout: self.request_timeout.as_deref(),
        }
    }
}

/// The endpoint, TLS material, proxy and timeouts of a network table. `schemes` are
/// the URL schemes the sink type speaks. Plain `http://` may not leave this machine
/// unless the table sets `allow_plaintext = true` ([`crate::tls::cleartext_exposure`]).
fn net_config(at: &str, s: &NetRaw<'_>, schemes: &[&str], e: &mut Errors<'_>) -> NetConfig {
    let endpoint = s.endpoint.cloned().unwrap_or_default();
    let scheme = endpoint.split_once("://").map(|(sch, _)| sch);
    if !scheme.is_some_and(|sch| schemes.contains(&sch)) {
        let list: Vec<String> = schemes.iter().map(|x| format!("{x}://")).collect();
        e.push(format!(
            "{at}.endpoint: expected a {} URL, found {:?}",
            list.join(" or "),
            crate::tls::without_credentials(&endpoint)
        ));
    } else if let Some((_, rest)) = endpoint.split_once("://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        if host.is_empty() || host.contains('@') {
            e.push(format!(
                "{at}.endpoint: expected a host (no credentials in the URL: use token_file or password_file)"
            ));
        }
    }
    let tls = match crate::tls::TlsSettings::load(
        s.tls.ca_file.as_deref().map(expand_home).as_deref(),
        s.tls
            .client_cert_file
            .as_deref()
            .map(expand_home)
            .as_deref(),
        s.tls.client_key_file.as_deref().map(expand_home).as_deref(),
        s.tls.server_name.as_deref(),
    ) {
        Ok(t) => t,
        Err(err) => {
            e.push(format!("{at}.tls: {err}"));
            Default::default()
        }
    };
    if let Some(p) = s.proxy
        && !((p.starts_with("http://") || p.starts_with("https://"))
            && reqwest::Url::parse(p).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty())))
    {
        // Never quoted: the URL may carry the proxy's credentials.
        e.push(format!(
            "{at}.proxy: expected an http:// or https:// proxy URL with a host"
        ));
    }
    if !s.allow_plaintext {
        for (setting, risk) in
            crate::tls::cleartext_exposure(&endpoint, s.proxy.map(String::as_str))
        {
            e.push(format!(
                "{at}.{setting}: {risk}; use https://, or set allow_plaintext = true to accept that"
            ));
        }
    }
    NetConfig {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        tls,
        proxy: s.proxy.cloned(),
        connect_timeout: e.duration(
            &format!("{at}.connect_timeout"),
            s.connect_timeout,
            Duration::from_secs(10),
        ),
        request_timeout: e.duration(
            &format!("{at}.request_timeout"),
            s.request_timeout,
            Duration::from_secs(30),
        ),
    }
}

impl RawSink {
    /// Settings that were given but mean nothing for this sink's type.
    fn keys_not_for_type(&self) -> Vec<&'static str> {
        let given: [(&'static str, bool); 29] = [
            ("brokers", self.brokers.is_some()),
            ("topic", self.topic.is_some()),
            ("key", self.key.is_some()),
            ("acks", self.acks.is_some()),
            ("idempotence", self.idempotence.is_some()),
            ("message_max_bytes", self.message_max_bytes.is_some()),
            ("sasl", self.sasl.is_some()),
            ("tls.enabled", self.tls.enabled.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("path", self.path.is_some()),
            ("headers", !self.headers.is_empty()),
            ("token_file", self.token_file.is_some()),
            ("token_env", self.token_env.is_some()),
            ("max_file_bytes", self.max_file_bytes.is_some()),
            ("max_files", self.max_files.is_some()),
            ("index", self.index.is_some()),
            ("source", self.source.is_some()),
            ("sourcetype", self.sourcetype.is_some()),
            ("indexer_ack", self.indexer_ack.is_some()),
            ("ack_timeout", self.ack_timeout.is_some()),
            ("api_key_file", self.api_key_file.is_some()),
            (
                "username",
                self.username.is_some() || self.password_file.is_some(),
            ),
            ("service_name", self.service_name.is_some()),
            (
                "app_name",
                self.app_name.is_some() || self.facility.is_some(),
            ),
            (
                "tls",
                self.tls.ca_file.is_some()
                    || self.tls.client_cert_file.is_some()
                    || self.tls.client_key_file.is_some()
                    || self.tls.server_name.is_some(),
            ),
            ("connect_timeout", self.connect_timeout.is_some()),
            ("request_timeout", self.request_timeout.is_some()),
            ("proxy", self.proxy.is_some()),
            ("allow_plaintext", self.allow_plaintext.is_some()),
        ];
        let net: &[&str] = &[
            "endpoint",
            "tls",
            "connect_timeout",
            "request_timeout",
            "proxy",
            "allow_plaintext",
        ];
        let allowed: Vec<&str> = match self.kind.as_str() {
            "http" => [net, &["headers", "token_file", "token_env"]].concat(),
            "splunk_hec" => [
                net,
                &[
                    "token_file",
                    "token_env",
                    "index",
                    "source",
                    "sourcetype",
                    "indexer_ack",
                    "ack_timeout",
                ],
            ]
            .concat(),
            "elasticsearch" => [net, &["index", "api_key_file", "username"]].concat(),
            "otlp" => [net, &["headers", "token_file", "token_env", "service_name"]].concat(),
            // Always TLS: there is no plain text to allow.
            "syslog" => [net, &["app_name"]]
                .concat()
                .into_iter()
                .filter(|k| *k != "allow_plaintext")
                .collect(),
            "file" => vec!["path", "max_file_bytes", "max_files"],
            "kafka" => vec![
                "brokers",
                "topic",
                "key",
                "acks",
                "idempotence",
                "message_max_bytes",
                "sasl",
                "tls",
                "tls.enabled",
                "connect_timeout",
                "request_timeout",
                "allow_plaintext",
            ],
            _ => return Vec::new(),
        };
        given
            .iter()
            .filter(|(k, set)| *set && !allowed.contains(k))
            .map(|(k, _)| *k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1w").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
    }

    #[test]
    fn embedded_default_watches_the_user_audit_dir_and_ships_to_a_file() {
        let mut errors = Vec::new();
        let c = DaemonConfig::from_raw(&RawConfig::default(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.sources.len(), 2);
        assert!(c.sources[0].paths[0].ends_with(".claude/audit"));
        assert_eq!(c.sources[1].name, "record-errors");
        assert_eq!(c.sources[1].format, SourceFormat::Json);
        assert!(c.sources[1].paths[0].ends_with(".claude/audit-errors"));
        assert_eq!(c.sources[1].files, "record-errors.jsonl");
        assert!(
            matches!(&c.sinks[0].kind, SinkKind::File { path, .. } if path.ends_with("shipped.jsonl"))
        );
    }

    fn sink_errors(table: &str) -> Vec<String> {
        let raw: RawConfig = toml::from_str(&format!("[[sink]]\nname = \"s\"\n{table}")).unwrap();
        let mut errors = Vec::new();
        DaemonConfig::from_raw(&raw, &mut errors);
        errors
    }

    fn sinks(table: &str) -> Vec<SinkConfig> {
        let raw: RawConfig = toml::from_str(&format!("[[sink]]\nname = \"s\"\n{table}")).unwrap();
        let mut errors = Vec::new();
        let c = DaemonConfig::from_raw(&raw, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        c.sinks
    }

    #[test]
    fn max_in_flight_defaults_per_kind_and_is_bounded() {
        let http = "type = \"http\"\nendpoint = \"http://127.0.0.1:8088\"\n";
        assert_eq!(sinks(http)[0].max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(
            sinks(&format!("{http}max_in_flight = 9\n"))[0].max_in_flight,
            9
        );
        for bad in [0, MAX_IN_FLIGHT_LIMIT + 1] {
            let e = sink_errors(&format!("{http}max_in_flight = {bad}\n"));
            assert_eq!(
                e,
                [format!(
                    "sink[0] (\"s\").max_in_flight: between 1 and {MAX_IN_FLIGHT_LIMIT}"
                )]
            );
        }
        let file = "type = \"file\"\npath = \"/tmp/x.jsonl\"\n";
        assert_eq!(sinks(file)[0].max_in_flight, 1);
        assert_eq!(
            sinks(&format!("{file}max_in_flight = 1\n"))[0].max_in_flight,
            1
        );
        let e = sink_errors(&format!("{file}max_in_flight = 2\n"));
        assert!(e.len() == 1 && e[0].contains("one ordered stream"), "{e:?}");
        let syslog =
            "type = \"syslog\"\nendpoint = \"tls://logs.example.com:6514\"\nmax_in_flight = 4\n";
        assert_eq!(sink_errors(syslog).len(), 1);
    }

    #[test]
    fn plaintext_needs_a_loopback_host_or_allow_plaintext() {
        for kind in ["http", "otlp", "elasticsearch"] {
            let remote = format!("type = \"{kind}\"\nendpoint = \"http://10.1.2.3:8088\"\n");
            let e = sink_errors(&remote);
            assert_eq!(e.len(), 1, "{kind}: {e:?}");
            assert!(
                e[0].starts_with("sink[0] (\"s\").endpoint: plain http:// to 10.1.2.3")
                    && e[0].contains("allow_plaintext = true"),
                "{e:?}"
            );
            assert!(sink_errors(&format!("{remote}allow_plaintext = true\n")).is_empty());
            let local = format!("type = \"{kind}\"\nendpoint = \"http://127.0.0.1:8088\"\n");
            assert!(sink_errors(&local).is_empty(), "{kind}");
        }
        let hec = "type = \"splunk_hec\"\nendpoint = \"http://splunk.example.com:8088\"\ntoken_env = \"PATH\"\n";
        assert_eq!(sink_errors(hec).len(), 1);
        let proxy = "type = \"http\"\nendpoint = \"https://siem.example.com\"\nproxy = \"http://user:hunter2@proxy.example.com:3128\"\n";
        let e = sink_errors(proxy);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("sink[0] (\"s\").proxy: ") && !e[0].contains("hunter2"),
            "{e:?}"
        );
        assert!(sink_errors(&format!("{proxy}allow_plaintext = true\n")).is_empty());
        let syslog = "type = \"syslog\"\nendpoint = \"tls://logs.example.com:6514\"\nallow_plaintext = true\n";
        assert_eq!(
            sink_errors(syslog),
            ["sink[0] (\"s\").allow_plaintext: not a setting of a \"syslog\" sink"]
        );
    }

    #[test]
    fn header_values_are_checked_and_never_quoted() {
        let e = sink_errors(
            "type = \"http\"\nendpoint = \"https://x.example.com\"\nheaders = { \"X-Key\" = \"sec\\nret\", \"Bad Name\" = \"v\" }\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().all(|m| !m.contains("sec")), "{e:?}");
    }

    #[test]
    fn errors_are_collected() {
        let raw: RawConfig = toml::from_str(
            r#"
            [agent]
            rescan_interval = "soon"
            [[source]]
            name = "a"
            paths = []
            format = "xml"
            [[sink]]
            name = "s"
            type = "http"
            endpoint = "ftp://x"
            [[sink]]
            name = "s"
            type = "carrier-pigeon"
            "#,
        )
        .unwrap();
        let mut errors = Vec::new();
        DaemonConfig::from_raw(&raw, &mut errors);
        assert_eq!(errors.len(), 7, "{errors:#?}");
    }

    fn telemetry(table: &str) -> (DaemonConfig, Vec<String>) {
        let raw: RawConfig = toml::from_str(table).unwrap();
        let mut errors = Vec::new();
        let c = DaemonConfig::from_raw(&raw, &mut errors);
        (c, errors)
    }

    #[test]
    fn the_telemetry_receiver_listens_on_loopback_only_and_its_streams_ship() {
        let (c, e) = telemetry("");
        assert!(e.is_empty() && c.telemetry.is_none(), "off by default");
        assert!(c.sources.iter().all(|s| s.name != TELEMETRY_SOURCE));

        let (c, e) = telemetry(
            "[agent]\nstate_dir = \"/var/lib/a\"\n[telemetry]\nlisten = \"127.0.0.1:4318\"\n",
        );
        assert!(e.is_empty(), "{e:?}");
        let t = c.telemetry.as_ref().unwrap();
        assert_eq!(t.dir, PathBuf::from("/var/lib/a/telemetry"));
        assert_eq!(t.max_body_bytes, TELEMETRY_MAX_BODY);
        let source = c
            .sources
            .iter()
            .find(|s| s.name == TELEMETRY_SOURCE)
            .unwrap();
        assert_eq!(source.paths, ["/var/lib/a/telemetry/*"]);
        assert_eq!(source.format, SourceFormat::AuditshipV1);

        for bad in ["0.0.0.0:4318", "10.1.2.3:4318", "[::]:4318", "localhost"] {
            let (_, e) = telemetry(&format!("[telemetry]\nlisten = \"{bad}\"\n"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].starts_with("telemetry.listen: "), "{e:?}");
        }
        let (_, e) = telemetry("[telemetry]\nmax_body_bytes = 1048576\n");
        assert!(e[0].contains("off without listen"), "{e:?}");
        let (_, e) = telemetry(
            "[telemetry]\nlisten = \"127.0.0.1:4318\"\nhmac_kid = \"k\"\nmax_body_bytes = 10\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        let (_, e) = telemetry(
            "[metrics]\nlisten = \"127.0.0.1:4318\"\n[telemetry]\nlisten = \"127.0.0.1:4318\"\n",
        );
        assert!(e[0].contains("metrics.listen too"), "{e:?}");

        // A source that reads the streams already: none added. One that takes the
        // name without reading them: an error.
        let covered = "[telemetry]\nlisten = \"127.0.0.1:4318\"\ndir = \"/srv/t\"\n[[source]]\nname = \"mine\"\npaths = [\"/srv/t/*\"]\n";
        let (c, e) = telemetry(covered);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.sources.len(), 1);
        let (_, e) = telemetry(
            &covered
                .replace("\"mine\"", "\"telemetry\"")
                .replace("/srv/t/*", "/elsewhere"),
        );
        assert!(
            e[0].contains("names the telemetry streams' source"),
            "{e:?}"
        );
    }
}
