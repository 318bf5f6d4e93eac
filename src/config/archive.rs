//! `[archive]` as validated: where archives go, when, how compressed, and the S3
//! upload (`[archive.s3]`) with its Object Lock mode. Read by `config`, used by
//! `archive`.

use super::daemon::{NetConfig, Secret};
use std::path::PathBuf;
use std::time::Duration;

/// `[archive]`.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub after_days: u32,
    pub dir: PathBuf,
    pub level: u32,
    pub interval: Duration,
    pub retention_days: Option<u32>,
    /// Upload to S3-compatible storage before an original is removed.
    pub s3: Option<S3Config>,
}

/// Where archives go and how they are locked.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, or `http://127.0.0.1:9000` for a local
    /// S3-compatible store. Requests are path-style: `{endpoint}/{bucket}/{key}`.
    pub endpoint: String,
    pub bucket: String,
    /// Prepended to every key, e.g. `auditship/`.
    pub prefix: String,
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// Object Lock mode of every upload; `None` uploads without retention (the
    /// bucket's default retention, if any, still applies).
    pub object_lock_mode: Option<LockMode>,
    /// Retention from the time of upload, in days.
    pub retain_days: u32,
    /// TLS, proxy and timeouts (its `endpoint` is replaced by `endpoint` above).
    pub net: NetConfig,
}

/// S3 Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete or shorten it.
    Governance,
    /// Nobody, not even the root account, can delete the object before the date.
    Compliance,
}

impl LockMode {
    /// The wire name: `GOVERNANCE` or `COMPLIANCE`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Parses the wire name (case-insensitive).
    pub fn parse(s: &str) -> Option<LockMode> {
        if s.eq_ignore_ascii_case("GOVERNANCE") {
            Some(LockMode::Governance)
        } else if s.eq_ignore_ascii_case("COMPLIANCE") {
            Some(LockMode::Compliance)
        } else {
            None
        }
    }
}
