//! Configuration: the TOML files as written ([`RawConfig`], serde, unknown keys
//! rejected) and the validated, typed [`Config`] the program runs on.
//!
//! Validation collects every error before failing, so an operator fixes the files in
//! one pass; each error names the file, line and column where the key was written.
//! Secrets are never in the files themselves: only paths to key files or names of
//! environment variables, and loaded key material lives in types whose `Debug` hides it.
//!
//! The main file is found as: `--config PATH`, else `$AUDITSHIP_CONFIG`, else the
//! user's `$XDG_CONFIG_HOME/auditship/auditship.toml` (default `~/.config/…`) when it
//! exists, else `/etc/auditship/auditship.toml`; then the drop-ins `conf.d/*.toml`
//! next to it apply
//! on top, in name order ([`layers`] has the merge rules). With neither, built-in
//! defaults apply. `${VAR}` and `${VAR:-default}` expand in string values
//! ([`interpolate`]).
//!
//! [`load`] (for `record`) and [`load_daemon`] (for everything else) read every file
//! again on each call, so a reload is another call: it returns the new configuration
//! or every error, and the caller keeps the old one on error. [`Config::hash`]
//! identifies the merged settings for status, metrics and heartbeats.

pub mod archive;
pub mod coverage;
pub mod daemon;
pub mod effective;
pub mod interpolate;
pub mod kafka;
pub mod layers;
pub mod salvage;
pub mod sealer;
pub mod sinks;

use crate::audit::Keys;
use crate::compliance::{ComplianceRules, RuleConfig};
use crate::redact::{PatternConfig, Redactor};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/auditship/auditship.toml";

/// Where `record` keeps failures by default; the daemon's embedded default ships it.
pub const DEFAULT_FALLBACK_FILE: &str = "~/.claude/audit-errors/record-errors.jsonl";

/// How long `record` waits for the stream lock by default: well below the 5 s that
/// `install-hooks` gives a hook, so `record` can still fail closed before Claude Code
/// kills it (`check-config` refuses a value that is not below the hook timeout).
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 3_000;

/// How long `record` waits for the sealer by default (connect, send, answer): with
/// the lock timeout of a local fallback after it, still below the 5 s hook timeout.
pub const DEFAULT_SOCKET_TIMEOUT_MS: u64 = 1_500;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub agent: daemon::RawAgent,
    #[serde(default)]
    pub source: Vec<daemon::RawSource>,
    #[serde(default)]
    pub sink: Vec<daemon::RawSink>,
    #[serde(default)]
    pub queue: daemon::RawQueue,
    #[serde(default)]
    pub archive: daemon::RawArchive,
    #[serde(default)]
    pub metrics: daemon::RawMetrics,
    #[serde(default)]
    pub telemetry: daemon::RawTelemetry,
    #[serde(default)]
    pub record: RawRecord,
    #[serde(default)]
    pub redact: RawRedact,
    #[serde(default)]
    pub compliance: RawCompliance,
    /// `[sealer]`: present (even empty) means the daemon runs the sealer.
    pub sealer: Option<sealer::RawSealer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub dir: Option<String>,
    pub user_id: Option<String>,
    pub on_error: Option<String>,
    pub fallback_file: Option<String>,
    pub keep_prompts: Option<bool>,
    pub keep_tool_input: Option<bool>,
    pub keep_tool_response: Option<bool>,
    pub keep_messages: Option<bool>,
    pub max_kept_bytes: Option<usize>,
    pub hmac_kid: Option<String>,
    pub hmac_key_file: Option<String>,
    pub hmac_key_env: Option<String>,
    pub fsync: Option<bool>,
    pub lock_timeout_ms: Option<u64>,
    pub socket: Option<String>,
    pub socket_timeout_ms: Option<u64>,
    #[serde(default)]
    pub identity: RawIdentity,
}

/// `[record.identity]`: the fields of FORMAT.md's `identity` object, each with its
/// type, so that a misspelt key is an error rather than a field sealed into every
/// event. Fields of the site's own go in `[record.identity.extra]`, copied beside
/// the known ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub email: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
    pub roles: Option<Vec<String>>,
    pub clearance_level: Option<String>,
    pub mfa_verified: Option<bool>,
    pub last_authentication: Option<String>,
    #[serde(default)]
    pub extra: toml::Table,
}

/// The known members of the `identity` object, in the order FORMAT.md lists them.
pub const IDENTITY_FIELDS: [&str; 7] = [
    "email",
    "department",
    "manager",
    "roles",
    "clearance_level",
    "mfa_verified",
    "last_authentication",
];

impl RawIdentity {
    /// The `identity` object: the known fields that are set, then the extra ones.
    /// An extra field named like a known one is an error.
    fn to_json(&self, errors: &mut Vec<String>) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut m = serde_json::Map::new();
        let text = |v: &Option<String>| v.clone().map(Value::from);
        let known = [
            text(&self.email),
            text(&self.department),
            text(&self.manager),
            self.roles.clone().map(Value::from),
            text(&self.clearance_level),
            self.mfa_verified.map(Value::from),
            text(&self.last_authentication),
        ];
        for (name, value) in IDENTITY_FIELDS.iter().zip(known) {
            if let Some(v) = value {
                m.insert((*name).to_string(), v);
            }
        }
        for (k, v) in &self.extra {
            if IDENTITY_FIELDS.contains(&k.as_str()) {
                errors.push(format!(
                    "record.identity.extra.{k}: {k} is a field of [record.identity]; set it there"
                ));
                continue;
            }
            match toml_to_json(v) {
                Some(v) => {
                    m.insert(k.clone(), v);
                }
                None => errors.push(format!(
                    "record.identity.extra.{k}: a number that is not finite has no JSON form"
                )),
            }
        }
        m
    }
}

/// A TOML value as JSON: date-times become their RFC 3339 text. `None` for a float
/// that is not finite.
fn toml_to_json(v: &toml::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::Number(serde_json::Number::from_f64(*f)?),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect::<Option<_>>()?),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Some((k.clone(), toml_to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedact {
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompliance {
    /// Use the built-in rules (true by default); configured rules come after them.
    pub builtin: Option<bool>,
    pub always: Option<Vec<String>>,
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
}

/// What `record` does when it cannot write the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Never block Claude Code: report the error, exit 0.
    Allow,
    /// Fail closed, by the mechanism each hook event honours
    /// ([`crate::record::fail_closed`]).
    Block,
}

/// Validated configuration of the `record` producer.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub dir: PathBuf,
    pub user_id: Option<String>,
    pub on_error: OnError,
    pub fallback_file: PathBuf,
    pub keep_prompts: bool,
    pub keep_tool_input: bool,
    pub keep_tool_response: bool,
    pub keep_messages: bool,
    pub max_kept_bytes: usize,
    /// `(kid, keys)` when events are signed.
    pub signer: Option<(String, Keys)>,
    pub fsync: bool,
    pub lock_timeout_ms: u64,
    /// Sealed mode: the sealer's socket, to which `record` forwards every call.
    pub socket: Option<PathBuf>,
    /// How long `record` waits for the sealer (connect, send, answer).
    pub socket_timeout_ms: u64,
    /// Identity fields added to every event (`identity` member), as JSON.
    pub identity: serde_json::Map<String, serde_json::Value>,
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// The main file; `None` for the built-in defaults (drop-ins may still apply).
    pub file: Option<PathBuf>,
    /// Every file read, in the order applied: the main file, then the drop-ins.
    pub files: Vec<PathBuf>,
    /// SHA-256 (hex) of the effective settings, defaults filled in: equal on hosts
    /// given the same settings, whatever the file split and whether defaults are
    /// written out; the environment and the contents of key files do not count
    /// ([`effective::hash`]). For [`load`], over `record`'s sections only. Empty for
    /// a [`Config::from_raw`].
    pub hash: String,
    pub record: RecordConfig,
    pub redactor: Redactor,
    /// The configured patterns the redactor adds to the built-in detectors.
    pub redact_patterns: Vec<PatternConfig>,
    pub compliance: ComplianceRules,
    /// What the compliance rules were built from.
    pub compliance_settings: ComplianceSettings,
}

/// `[compliance]` as it takes effect, defaults filled in.
#[derive(Debug, Clone)]
pub struct ComplianceSettings {
    /// The built-in rules apply (before the configured ones).
    pub builtin: bool,
    pub always: Vec<String>,
    /// The configured rules only.
    pub rules: Vec<RuleConfig>,
}

impl ComplianceSettings {
    fn from_raw(raw: &RawCompliance) -> ComplianceSettings {
        ComplianceSettings {
            builtin: raw.builtin.unwrap_or(true),
            always: raw
                .always
                .clone()
                .unwrap_or_else(|| crate::compliance::DEFAULT_ALWAYS.map(String::from).to_vec()),
            rules: raw.rule.clone(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field("files", &self.files)
            .field("hash", &self.hash)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Every problem found in a configuration, each naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Which main file to read: the flag, the environment, or the system default.
/// Returns `None` when no file was named and the default does not exist.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    layers::locate(flag).0
}

/// Loads and validates what `record` needs ([record], [redact], [compliance]) from
/// the main file and its drop-ins. `${VAR}` expands only in those sections.
pub fn load(flag: Option<&Path>) -> Result<Config, ConfigError> {
    let loaded = layers::load(flag, layers::Scope::Record, |raw, errors| {
        Config::validate(raw, None, errors)
    })?;
    let hash = effective::hash(&loaded.value, None, &loaded.from_env);
    Ok(loaded.value.with_origin(loaded.main, loaded.files, hash))
}

/// Parses TOML text (errors carry line and column).
pub fn parse(text: &str) -> Result<RawConfig, toml::de::Error> {
    toml::from_str(text)
}

/// `~` and `~/…` expand to `$HOME`.
pub fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix('~'), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            PathBuf::from(format!("{}{rest}", home.to_string_lossy()))
        }
        _ => PathBuf::from(p),
    }
}

impl Config {
    pub fn from_raw(raw: RawConfig, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let config = Self::validate(&raw, source, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(config.error(errors))
        }
    }

    fn with_origin(mut self, file: Option<PathBuf>, files: Vec<PathBuf>, hash: String) -> Config {
        self.file = file;
        self.files = files;
        self.hash = hash;
        self
    }

    fn error(&self, errors: Vec<String>) -> ConfigError {
        let prefix = self
            .file
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        ConfigError(errors.into_iter().map(|e| format!("{prefix}{e}")).collect())
    }

    /// Validates the producer's sections and the shared ones, pushing every problem.
    fn validate(raw: &RawConfig, source: Option<PathBuf>, errors: &mut Vec<String>) -> Config {
        let r = &raw.record;
        let on_error = match r.on_error.as_deref() {
            None | Some("allow") => OnError::Allow,
            Some("block") => OnError::Block,
            Some(other) => {
                errors.push(format!(
                    "record.on_error: expected \"allow\" or \"block\", found {other:?}"
                ));
                OnError::Allow
            }
        };
        let signer = match (&r.hmac_kid, &r.hmac_key_file, &r.hmac_key_env) {
            (None, None, None) => None,
            (Some(kid), file, env) if file.is_some() != env.is_some() => {
                let key = match (file, env) {
                    (Some(f), _) => {
                        crate::keyfile::read_key_file(&expand_home(f)).map_err(|e| e.to_string())
                    }
                    (_, Some(var)) => std::env::var(var)
                        .ok()
                        .and_then(|v| crate::audit::decode_hex(v.trim()))
                        .filter(|k| k.len() >= 32)
                        .ok_or_else(|| {
                            format!("environment variable {var} must hold at least 64 hex digits")
                        }),
                    _ => unreachable!("one of file or env is set"),
                };
                match key {
                    Ok(key) => {
                        let mut keys = Keys::new();
                        keys.insert(kid.clone(), &key);
                        Some((kid.clone(), keys))
                    }
                    Err(e) => {
                        errors.push(format!("record.hmac_key_file/hmac_key_env: {e}"));
                        None
                    }
                }
            }
            _ => {
                errors.push(
                    "record: signing needs hmac_kid and exactly one of hmac_key_file or hmac_key_env".to_string(),
                );
                None
            }
        };
        let identity = r.identity.to_json(errors);
        let max_kept_bytes = r.max_kept_bytes.unwrap_or(4096);
        if max_kept_bytes == 0 {
            errors.push("record.max_kept_bytes: must be greater than 0".to_string());
        }
        let dir = expand_home(r.dir.as_deref().unwrap_or("~/.claude/audit"));
        let socket = r.socket.as_deref().map(expand_home);
        if let Some(p) = &socket
            && !p.is_absolute()
        {
            errors.push(format!(
                "record.socket: expected an absolute path, found {p:?}"
            ));
        }
        let socket_timeout_ms = r.socket_timeout_ms.unwrap_or(DEFAULT_SOCKET_TIMEOUT_MS);
        if socket_timeout_ms == 0 {
            errors.push("record.socket_timeout_ms: must be greater than 0".to_string());
        }
        let fallback_file = r
            .fallback_file
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(|| expand_home(DEFAULT_FALLBACK_FILE));
        let redactor = Redactor::new(&raw.redact.patterns).unwrap_or_else(|e| {
            errors.push(format!("redact.patterns: {e}"));
            Redactor::builtin()
        });
        let compliance = build_compliance(&raw.compliance).unwrap_or_else(|e| {
            errors.push(format!("compliance: {e}"));
            ComplianceRules::default_rules()
        });
        Config {
            files: source.iter().cloned().collect(),
            file: source,
            hash: String::new(),
            record: RecordConfig {
                dir,
                user_id: r.user_id.clone(),
                on_error,
                fallback_file,
                keep_prompts: r.keep_prompts.unwrap_or(false),
                keep_tool_input: r.keep_tool_input.unwrap_or(false),
                keep_tool_response: r.keep_tool_response.unwrap_or(false),
                keep_messages: r.keep_messages.unwrap_or(false),
                max_kept_bytes,
                signer,
                fsync: r.fsync.unwrap_or(true),
                lock_timeout_ms: r.lock_timeout_ms.unwrap_or(DEFAULT_LOCK_TIMEOUT_MS),
                socket,
                socket_timeout_ms,
                identity,
            },
            redactor,
            redact_patterns: raw.redact.patterns.clone(),
            compliance,
            compliance_settings: ComplianceSettings::from_raw(&raw.compliance),
        }
    }
}

/// Loads the main file and its drop-ins once and validates everything the daemon
/// needs: the shared sections and the daemon's own (loading its key and token
/// files). All errors at once. Also the reload: call it again on SIGHUP.
pub fn load_daemon(flag: Option<&Path>) -> Result<(Config, daemon::DaemonConfig), ConfigError> {
    let loaded = layers::load(flag, layers::Scope::All, |raw, errors| {
        let config = Config::validate(raw, None, errors);
        let daemon = daemon::DaemonConfig::from_raw(raw, errors);
        (config, daemon)
    })?;
    let (config, mut daemon) = loaded.value;
    let hash = effective::hash(&config, Some(&daemon), &loaded.from_env);
    daemon.hash = hash.clone();
    daemon.from_env = loaded.from_env;
    Ok((config.with_origin(loaded.main, loaded.files, hash), daemon))
}

fn build_compliance(raw: &RawCompliance) -> Result<ComplianceRules, String> {
    let builtin = raw.builtin.unwrap_or(true);
    if builtin && raw.always.is_none() && raw.rule.is_empty() {
        return Ok(ComplianceRules::default_rules());
    }
    let settings = ComplianceSettings::from_raw(raw);
    let mut rules = if settings.builtin {
        crate::compliance::builtin_rule_configs()
    } else {
        Vec::new()
    };
    rules.extend(settings.rules);
    ComplianceRules::new(&settings.always, &rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../../config.example.toml");
        let raw = parse(text).unwrap();
        Config::from_raw(raw, None).unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected_with_a_position() {
        let e = parse("[record]\ndri = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("dri"), "{e}");
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let raw = parse(
            "[record]\non_error = \"maybe\"\nmax_kept_bytes = 0\nhmac_kid = \"k\"\n[redact]\npatterns = [{name = \"x\", regex = \"(\"}]\n",
        )
        .unwrap();
        let e = Config::from_raw(raw, None).unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
    }

    #[test]
    fn defaults() {
        let c = Config::from_raw(RawConfig::default(), None).unwrap();
        assert_eq!(c.record.on_error, OnError::Allow);
        assert!(c.record.fsync);
        assert!(c.record.signer.is_none());
        assert!(c.record.dir.ends_with(".claude/audit"));
    }
}
