//! `[sealer]`: the daemon's sealer, which seals every local user's hook calls into
//! a stream per user that only the service can write ([`crate::sealer`]).
//!
//! Validation reads the HMAC key file when it exists; a missing one is not an error
//! here, since the sealer creates it when it starts (`check-config` says so). The
//! signing key and the checkpoint interval are parsed and kept for signed
//! checkpoints; nothing here reads or writes the signing key.

use super::daemon::parse_duration;
use super::expand_home;
use crate::audit::Keys;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "/run/auditship/record.sock";
pub const DEFAULT_DIR: &str = "/var/lib/auditship/sealed";
pub const DEFAULT_HMAC_KID: &str = "sealer";
pub const DEFAULT_HMAC_KEY_FILE: &str = "/var/lib/auditship/sealer-hmac.key";
pub const DEFAULT_SIGNING_KEY_FILE: &str = "/var/lib/auditship/sealer.ed25519";
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 16 << 20;
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_BUFFERED_BYTES: u64 = 64 << 20;

/// The name of the source the daemon adds for the sealed streams when no
/// `[[source]]` covers them.
pub const SEALED_SOURCE: &str = "sealed";

/// A Unix socket's path must fit `sun_path` (108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSealer {
    pub listen: Option<String>,
    pub dir: Option<String>,
    pub hmac_kid: Option<String>,
    pub hmac_key_file: Option<String>,
    pub signing_key_file: Option<String>,
    pub checkpoint_interval: Option<String>,
    pub max_payload_bytes: Option<u64>,
    pub read_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_buffered_bytes: Option<u64>,
    /// OS user name → enterprise identity (the events' `user_id`).
    #[serde(default)]
    pub identity: BTreeMap<String, String>,
}

/// What one client may cost the sealer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A payload larger than this is recorded as its SHA-256 and length.
    pub max_payload_bytes: u64,
    /// The whole request (header and payload) must arrive within this.
    pub read_timeout: Duration,
    /// Connections served at once; more are answered with an error at once.
    pub max_connections: usize,
    /// Payload bytes held in memory by all requests together; a request that would
    /// go beyond is recorded as its digest.
    pub max_buffered_bytes: u64,
}

/// The validated `[sealer]`.
#[derive(Debug, Clone)]
pub struct SealerConfig {
    /// The Unix socket `record` connects to.
    pub listen: PathBuf,
    /// `<dir>/<user name>/audit-YYYY-MM-DD.jsonl`.
    pub dir: PathBuf,
    pub hmac_kid: String,
    pub hmac_key_file: PathBuf,
    /// The key, when the file exists; `None`: the sealer creates it when it starts.
    pub hmac_key: Option<Keys>,
    /// For signed checkpoints (kept, not read here).
    pub signing_key_file: PathBuf,
    /// For signed checkpoints.
    pub checkpoint_interval: Duration,
    pub limits: Limits,
    /// OS user name → the `user_id` of their events.
    pub identity: BTreeMap<String, String>,
}

impl SealerConfig {
    /// Validates `[sealer]`, pushing every problem to `errors`.
    pub fn from_raw(r: &RawSealer, errors: &mut Vec<String>) -> SealerConfig {
        let mut path = |key: &str, v: Option<&String>, default: &str| {
            let p = expand_home(v.map_or(default, String::as_str));
            if !p.is_absolute() {
                errors.push(format!(
                    "sealer.{key}: expected an absolute path, found {p:?}"
                ));
            }
            p
        };
        let listen = path("listen", r.listen.as_ref(), DEFAULT_LISTEN);
        let dir = path("dir", r.dir.as_ref(), DEFAULT_DIR);
        let hmac_key_file = path(
            "hmac_key_file",
            r.hmac_key_file.as_ref(),
            DEFAULT_HMAC_KEY_FILE,
        );
        let signing_key_file = path(
            "signing_key_file",
            r.signing_key_file.as_ref(),
            DEFAULT_SIGNING_KEY_FILE,
        );
        if listen.as_os_str().len() > MAX_SOCKET_PATH {
            errors.push(format!(
                "sealer.listen: a socket path holds at most {MAX_SOCKET_PATH} bytes"
            ));
        }
        if listen.parent().is_none_or(|p| p.as_os_str().is_empty()) {
            errors.push("sealer.listen: names no directory to hold the socket".into());
        }
        let hmac_kid = r
            .hmac_kid
            .clone()
            .unwrap_or_else(|| DEFAULT_HMAC_KID.into());
        if hmac_kid.trim().is_empty() {
            errors.push("sealer.hmac_kid: must not be empty".into());
        }
        let hmac_key = load_key(&hmac_kid, &hmac_key_file, errors);
        let checkpoint_interval = duration(
            "checkpoint_interval",
            r.checkpoint_interval.as_deref(),
            DEFAULT_CHECKPOINT_INTERVAL,
            (Duration::from_secs(1), Duration::from_secs(86_400)),
            errors,
        );
        let limits = limits(r, errors);
        for (user, id) in &r.identity {
            if id.trim().is_empty() {
                errors.push(format!("sealer.identity.{user}: must not be empty"));
            }
        }
        SealerConfig {
            listen,
            dir,
            hmac_kid,
            hmac_key_file,
            hmac_key,
            signing_key_file,
            checkpoint_interval,
            limits,
            identity: r.identity.clone(),
        }
    }

    /// The key's MAC of a fixed text: tells two loaded keys apart without holding
    /// either outside `Keys`.
    pub fn key_fingerprint(&self) -> Option<[u8; 64]> {
        self.hmac_key
            .as_ref()?
            .mac(&self.hmac_kid, b"auditship sealer key fingerprint")
    }
}

/// The key in `file`, `None` when the file does not exist yet.
fn load_key(kid: &str, file: &Path, errors: &mut Vec<String>) -> Option<Keys> {
    match std::fs::symlink_metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        _ => {}
    }
    match crate::keyfile::read_key_file(file) {
        Ok(key) => {
            let mut keys = Keys::new();
            keys.insert(kid, &key);
            Some(keys)
        }
        Err(e) => {
            errors.push(format!("sealer.hmac_key_file: {e}"));
            None
        }
    }
}

fn duration(
    key: &str,
    v: Option<&str>,
    default: Duration,
    (min, max): (Duration, Duration),
    errors: &mut Vec<String>,
) -> Duration {
    let Some(text) = v else {
        return default;
    };
    match parse_duration(text) {
        Ok(d) if d >= min && d <= max => d,
        Ok(_) => {
            errors.push(format!(
                "sealer.{key}: expected between {min:?} and {max:?}, found {text:?}"
            ));
            default
        }
        Err(e) => {
            errors.push(format!("sealer.{key}: {e}"));
            default
        }
    }
}

fn limits(r: &RawSealer, errors: &mut Vec<String>) -> Limits {
    let max_payload_bytes = r.max_payload_bytes.unwrap_or(DEFAULT_MAX_PAYLOAD_BYTES);
    if !(1024..=(1 << 30)).contains(&max_payload_bytes) {
        errors.push("sealer.max_payload_bytes: expected between 1024 and 1073741824".into());
    }
    let max_buffered_bytes = r
        .max_buffered_bytes
        .unwrap_or(DEFAULT_MAX_BUFFERED_BYTES.max(max_payload_bytes));
    if max_buffered_bytes < max_payload_bytes {
        errors.push(
            "sealer.max_buffered_bytes: must be at least max_payload_bytes (one whole payload)"
                .into(),
        );
    }
    let max_connections = r.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=65_536).contains(&max_connections) {
        errors.push("sealer.max_connections: expected between 1 and 65536".into());
    }
    Limits {
        max_payload_bytes,
        read_timeout: duration(
            "read_timeout",
            r.read_timeout.as_deref(),
            DEFAULT_READ_TIMEOUT,
            (Duration::from_millis(100), Duration::from_secs(60)),
            errors,
        ),
        max_connections,
        max_buffered_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        let raw: RawSealer = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        SealerConfig::from_raw(&raw, &mut errors);
        errors
    }

    #[test]
    fn an_empty_table_takes_the_defaults() {
        let mut errors = Vec::new();
        let c = SealerConfig::from_raw(&RawSealer::default(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.listen, Path::new(DEFAULT_LISTEN));
        assert_eq!(c.dir, Path::new(DEFAULT_DIR));
        assert_eq!(c.checkpoint_interval, Duration::from_secs(300));
        assert_eq!(c.limits.max_payload_bytes, 16 << 20);
        assert_eq!(c.limits.read_timeout, Duration::from_secs(2));
    }

    #[test]
    fn every_problem_is_named() {
        let e = errors_of(
            "listen = \"relative.sock\"\nhmac_kid = \" \"\ncheckpoint_interval = \"soon\"\nmax_payload_bytes = 10\nmax_buffered_bytes = 5\nmax_connections = 0\nread_timeout = \"1h\"\nidentity = { alice = \"\" }\n",
        );
        for key in [
            "sealer.listen: expected an absolute path",
            "sealer.hmac_kid",
            "sealer.checkpoint_interval",
            "sealer.max_payload_bytes",
            "sealer.max_buffered_bytes",
            "sealer.max_connections",
            "sealer.read_timeout",
            "sealer.identity.alice",
        ] {
            assert!(e.iter().any(|m| m.starts_with(key)), "{key}: {e:#?}");
        }
        let long = format!("listen = \"/{}\"\n", "x".repeat(120));
        assert!(errors_of(&long)[0].contains("at most 107 bytes"));
    }

    #[test]
    fn a_missing_key_file_waits_for_the_start_and_a_bad_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("auditship-sealer-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.key");
        let bad = dir.join("bad.key");
        std::fs::write(&bad, "not hex\n").unwrap();
        let good = dir.join("good.key");
        std::fs::write(&good, format!("{}\n", "ab".repeat(32))).unwrap();
        let load = |p: &Path| {
            let mut errors = Vec::new();
            let raw = RawSealer {
                hmac_key_file: Some(p.display().to_string()),
                ..Default::default()
            };
            let c = SealerConfig::from_raw(&raw, &mut errors);
            (c.hmac_key.is_some(), errors.len())
        };
        assert_eq!(load(&missing), (false, 0));
        assert_eq!(load(&bad), (false, 1));
        assert_eq!(load(&good), (true, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
