//! Configuration: the TOML file as written ([`RawConfig`], serde, unknown keys
//! rejected) and the validated, typed [`Config`] the program runs on.
//!
//! Validation collects every error before failing, so an operator fixes a file in one
//! pass. Secrets are never in the file itself: only paths to key files or names of
//! environment variables, and loaded key material lives in types whose `Debug` hides it.
//!
//! The file is found as: `--config PATH`, else `$AUDITSHIP_CONFIG`, else
//! `/etc/auditship/auditship.toml`; when that default is absent, built-in defaults apply.

pub mod daemon;

use crate::audit::Keys;
use crate::record::compliance::{ComplianceRules, RuleConfig};
use crate::redact::{PatternConfig, Redactor};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/auditship/auditship.toml";

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
    pub record: RawRecord,
    #[serde(default)]
    pub redact: RawRedact,
    #[serde(default)]
    pub compliance: RawCompliance,
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
    pub max_kept_bytes: Option<usize>,
    pub hmac_kid: Option<String>,
    pub hmac_key_file: Option<String>,
    pub hmac_key_env: Option<String>,
    pub fsync: Option<bool>,
    pub lock_timeout_ms: Option<u64>,
    #[serde(default)]
    pub identity: toml::Table,
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
    /// Fail closed: exit 2, which blocks the tool call from a PreToolUse hook.
    Block,
}

/// Validated configuration of the `record` producer.
#[derive(Debug)]
pub struct RecordConfig {
    pub dir: PathBuf,
    pub user_id: Option<String>,
    pub on_error: OnError,
    pub fallback_file: PathBuf,
    pub keep_prompts: bool,
    pub keep_tool_input: bool,
    pub keep_tool_response: bool,
    pub max_kept_bytes: usize,
    /// `(kid, keys)` when events are signed.
    pub signer: Option<(String, Keys)>,
    pub fsync: bool,
    pub lock_timeout_ms: u64,
    /// Identity fields added to every event (`identity` member), as JSON.
    pub identity: serde_json::Map<String, serde_json::Value>,
}

/// The validated configuration.
pub struct Config {
    /// The file it came from; `None` for the built-in defaults.
    pub file: Option<PathBuf>,
    pub record: RecordConfig,
    pub redactor: Redactor,
    pub compliance: ComplianceRules,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Every problem found in a configuration, each naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Which file to read: the flag, the environment, or the system default.
/// Returns `None` when no file was named and the default does not exist.
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("AUDITSHIP_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = Path::new(DEFAULT_PATH);
    default.exists().then(|| default.to_path_buf())
}

/// Loads and validates the configuration named by the flag, environment or default.
pub fn load(flag: Option<&Path>) -> Result<Config, ConfigError> {
    match locate(flag) {
        None => Config::from_raw(RawConfig::default(), None),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
            let raw =
                parse(&text).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
            Config::from_raw(raw, Some(path))
        }
    }
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
                        crate::verify::read_key_file(&expand_home(f)).map_err(|e| e.to_string())
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
        let identity = match serde_json::to_value(&r.identity) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                errors.push("record.identity: must be a table of values".to_string());
                Default::default()
            }
        };
        let max_kept_bytes = r.max_kept_bytes.unwrap_or(4096);
        if max_kept_bytes == 0 {
            errors.push("record.max_kept_bytes: must be greater than 0".to_string());
        }
        let dir = expand_home(r.dir.as_deref().unwrap_or("~/.claude/audit"));
        let fallback_file = r
            .fallback_file
            .as_deref()
            .map(expand_home)
            .unwrap_or_else(|| expand_home("~/.claude/auditship-record-errors.log"));
        let redactor = Redactor::new(&raw.redact.patterns).unwrap_or_else(|e| {
            errors.push(format!("redact.patterns: {e}"));
            Redactor::builtin()
        });
        let compliance = build_compliance(&raw.compliance).unwrap_or_else(|e| {
            errors.push(format!("compliance: {e}"));
            ComplianceRules::default_rules()
        });
        Config {
            file: source,
            record: RecordConfig {
                dir,
                user_id: r.user_id.clone(),
                on_error,
                fallback_file,
                keep_prompts: r.keep_prompts.unwrap_or(false),
                keep_tool_input: r.keep_tool_input.unwrap_or(false),
                keep_tool_response: r.keep_tool_response.unwrap_or(false),
                max_kept_bytes,
                signer,
                fsync: r.fsync.unwrap_or(true),
                lock_timeout_ms: r.lock_timeout_ms.unwrap_or(10_000),
                identity,
            },
            redactor,
            compliance,
        }
    }
}

/// Loads the file once and validates everything the daemon needs: the shared sections
/// and the daemon's own (loading its key and token files). All errors at once.
pub fn load_daemon(flag: Option<&Path>) -> Result<(Config, daemon::DaemonConfig), ConfigError> {
    let (raw, file, text) = match locate(flag) {
        None => (RawConfig::default(), None, String::new()),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
            let raw =
                parse(&text).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
            (raw, Some(path), text)
        }
    };
    let mut errors = Vec::new();
    let config = Config::validate(&raw, file, &mut errors);
    let mut daemon = daemon::DaemonConfig::from_raw(&raw, &mut errors);
    {
        use sha2::Digest;
        daemon.hash = crate::archive::hex(&sha2::Sha256::digest(text.as_bytes()).into());
    }
    if errors.is_empty() {
        Ok((config, daemon))
    } else {
        Err(config.error(errors))
    }
}

fn build_compliance(raw: &RawCompliance) -> Result<ComplianceRules, String> {
    let builtin = raw.builtin.unwrap_or(true);
    if builtin && raw.always.is_none() && raw.rule.is_empty() {
        return Ok(ComplianceRules::default_rules());
    }
    let always = raw
        .always
        .clone()
        .unwrap_or_else(|| vec!["SOC2".to_string(), "ISO27001".to_string()]);
    let mut rules = if builtin {
        crate::record::compliance::builtin_rule_configs()
    } else {
        Vec::new()
    };
    rules.extend(raw.rule.iter().cloned());
    ComplianceRules::new(&always, &rules)
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
