//! S3 upload of archives, with Object Lock retention (WORM), for auditors who want the
//! trail kept for years where nobody on the machine can delete it.
//!
//! Owns: AWS Signature Version 4 (written here: a signer is a page of HMAC, an SDK is
//! 87 crates), path-style requests (`{endpoint}/{bucket}/{key}`) over the sinks' HTTP
//! client (same TLS, CA pinning, mTLS and proxy settings), and the upload protocol:
//!
//! 1. read the file into memory (archives are at most tens of MB) and check that its
//!    SHA-256 is the one the archiver recorded: a file that changed since is refused
//!    before anything is sent;
//! 2. HEAD the key (`x-amz-checksum-mode: ENABLED`): an object already there with the
//!    same size, the same SHA-256 and, when Object Lock is configured, the configured
//!    retention is not uploaded again (an earlier attempt that timed out may have
//!    succeeded, or the daemon crashed before writing its manifest);
//! 3. PUT with `x-amz-checksum-sha256` (S3 recomputes it and refuses a body that
//!    differs), `x-amz-content-sha256` (the same digest, signed), and when configured
//!    `x-amz-object-lock-mode` + `x-amz-object-lock-retain-until-date`;
//! 4. HEAD the version just written and verify its size, checksum and retention.
//!
//! A PUT that times out is followed by a HEAD before it is tried again (at most
//! [`MAX_PUT_ATTEMPTS`] times in one call). Other failures are returned at once with
//! [`S3Error::is_retryable`] saying whether a later call may succeed: this module does
//! not sleep; the archiver decides when to try again.
//!
//! Secrets (the secret key, the session token) are used to sign and sent as the
//! session-token header; they are never logged, formatted or put in an error. Errors
//! carry S3's `Code` and `Message`, which never contain them.
//!
//! Not here: multipart uploads (archives are small), virtual-hosted-style addressing,
//! credentials from instance metadata or profiles.

pub use crate::config::archive::{LockMode, S3Config};
use crate::config::daemon::Secret;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// PUT attempts in one [`S3Client::upload_verified`] call when each one times out.
pub const MAX_PUT_ATTEMPTS: u32 = 3;

/// A PUT may take its request timeout plus one second per MiB of body: a floor of
/// 1 MiB/s before an upload counts as stuck.
const PUT_SECS_PER_MIB: u64 = 1;

/// The most an S3 error body is read (they are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// SigV4 tolerates this much clock skew between client and server.
const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

/// The outcome of a verified upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub key: String,
    pub size: u64,
    /// True when a HEAD found the object in place (same size and SHA-256, and the
    /// configured retention), so no PUT of this call was acknowledged: an earlier call
    /// stored it, or an attempt of this call that timed out did.
    pub already_there: bool,
    /// The retain-until date S3 reports for the object, as S3 wrote it.
    pub retain_until: Option<String>,
}

/// What went wrong talking to S3. `Display` never includes a secret.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// No answer: connection failed, timed out, or was cut.
    #[error("S3 transport: {0}")]
    Transport(String),
    /// S3 answered with an error status; `code` and `message` from its XML body.
    #[error("S3 answered {status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// The file or the stored object is not what it should be.
    #[error("S3 upload not verified: {0}")]
    Mismatch(String),
    /// Reading the archive failed.
    #[error("reading the archive: {0}")]
    Io(#[from] std::io::Error),
}

impl S3Error {
    /// True when trying the same upload again later may succeed: transport trouble,
    /// 408, 429, 5xx, and S3's throttling and clock-skew codes. A refused request
    /// (bad credentials, no such bucket, a mismatch) needs the operator first.
    pub fn is_retryable(&self) -> bool {
        match self {
            S3Error::Transport(_) => true,
            S3Error::Status { status, code, .. } => {
                matches!(status, 408 | 429 | 500..=599)
                    || matches!(
                        code.as_str(),
                        "RequestTimeout" | "SlowDown" | "RequestTimeTooSkewed" | "InternalError"
                    )
            }
            S3Error::Mismatch(_) | S3Error::Io(_) => false,
        }
    }
}

/// An S3 answer with a 2xx status.
#[derive(Debug, Clone)]
pub struct S3Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl S3Response {
    /// The value of header `name`, when it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client for one bucket. Cheap to share: requests take `&self`.
#[derive(Debug)]
pub struct S3Client {
    http: reqwest::Client,
    /// `scheme://host[:port]`.
    origin: String,
    /// The endpoint's own path without its trailing `/` (usually empty).
    base_path: String,
    bucket: String,
    prefix: String,
    region: String,
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Option<Secret>,
    lock: Option<LockMode>,
    retain_days: u32,
    timeout: Duration,
    /// PUTs of objects sent so far (for metrics and tests).
    puts: AtomicU64,
}

impl S3Client {
    /// Checks the settings and builds the HTTP client (TLS material, proxy).
    pub fn new(cfg: &S3Config) -> Result<S3Client, String> {
        let url = reqwest::Url::parse(&cfg.endpoint)
            .map_err(|e| format!("endpoint {:?}: {e}", cfg.endpoint))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "endpoint {:?}: expected an http:// or https:// URL",
                cfg.endpoint
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(format!("endpoint {:?}: no host", cfg.endpoint));
        };
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(format!(
                "endpoint {:?}: no query, fragment or user info allowed",
                cfg.endpoint
            ));
        }
        if cfg.bucket.is_empty() || cfg.bucket.contains('/') {
            return Err(format!("bucket {:?}: expected a bucket name", cfg.bucket));
        }
        if cfg.region.is_empty() {
            return Err("region: must not be empty".into());
        }
        if cfg.access_key_id.expose().is_empty() || cfg.secret_access_key.expose().is_empty() {
            return Err("the access key id and the secret access key must not be empty".into());
        }
        if cfg.object_lock_mode.is_some() && cfg.retain_days == 0 {
            return Err("retain_days: must be at least 1 with an Object Lock mode".into());
        }
        let origin = match url.port() {
            Some(p) => format!("{}://{host}:{p}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        let mut net = cfg.net.clone();
        net.endpoint = cfg.endpoint.clone();
        Ok(S3Client {
            http: crate::net::http_client(&net)?,
            origin,
            base_path: url.path().trim_end_matches('/').to_string(),
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.trim_start_matches('/').to_string(),
            region: cfg.region.clone(),
            access_key_id: cfg.access_key_id.clone(),
            secret_access_key: cfg.secret_access_key.clone(),
            session_token: cfg.session_token.clone(),
            lock: cfg.object_lock_mode,
            retain_days: cfg.retain_days,
            timeout: cfg.net.request_timeout,
            puts: AtomicU64::new(0),
        })
    }

    /// The object key for an archive: the prefix, then `relative` with its `/`
    /// separated segments, empty, `.` and `..` segments dropped (a key never walks up).
    /// Deterministic, so a retried upload addresses the same object. Segments are
    /// URI-encoded only on the wire.
    pub fn key_for(&self, relative: &str) -> String {
        let segments: Vec<&str> = relative
            .split('/')
            .filter(|s| !matches!(*s, "" | "." | ".."))
            .collect();
        format!("{}{}", self.prefix, segments.join("/"))
    }

    /// How many object PUTs this client has sent (acknowledged or not).
    pub fn puts_sent(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    /// Uploads the file at `path` as `key` and proves it stored: see the module
    /// documentation for the steps. `sha256` is the SHA-256 of the file's bytes as the
    /// archiver computed it. The file is read into memory.
    pub async fn upload_verified(
        &self,
        key: &str,
        path: &Path,
        sha256: &[u8; 32],
    ) -> Result<Uploaded, S3Error> {
        let owned = path.to_path_buf();
        let (body, actual) = tokio::task::spawn_blocking(move || {
            let data = std::fs::read(&owned)?;
            let digest: [u8; 32] = Sha256::digest(&data).into();
            Ok::<_, std::io::Error>((Bytes::from(data), digest))
        })
        .await
        .map_err(|e| S3Error::Io(std::io::Error::other(e.to_string())))??;
        if &actual != sha256 {
            return Err(S3Error::Mismatch(format!(
                "{} has SHA-256 {}, expected {}: not uploaded",
                path.display(),
                hex(&actual),
                hex(sha256)
            )));
        }
        let size = body.len() as u64;
        let checksum = base64(sha256);
        let content_sha = hex(sha256);

        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(found) = self.head(key, None).await? {
                match self.accept_existing(&found, size, &checksum) {
                    Ok(()) => {
                        tracing::info!(key, size, "archive already in S3, verified");
                        return Ok(Uploaded {
                            key: key.to_string(),
                            size,
                            already_there: true,
                            retain_until: found.retain_until,
                        });
                    }
                    Err(why) => {
                        tracing::warn!(key, reason = %why, "S3 object differs, uploading a new version");
                    }
                }
            }
            let now = unix_now();
            let lock = self.lock.map(|mode| {
                let until = now + i64::from(self.retain_days) * 86_400;
                (mode, until, rfc3339_secs(until))
            });
            let mut headers: Vec<(&str, &str)> = vec![
                ("x-amz-checksum-sha256", &checksum),
                // Names the algorithm of the checksum header: what the SDKs send, and
                // with it S3 accepts an Object Lock PUT without Content-MD5.
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
                // No Content-Encoding: the object is the .gz file itself, which no
                // client may gunzip on the way down.
                ("content-type", "application/octet-stream"),
            ];
            if let Some((mode, _, until)) = &lock {
                headers.push(("x-amz-object-lock-mode", mode.as_str()));
                headers.push(("x-amz-object-lock-retain-until-date", until));
            }
            let timeout = self.timeout + Duration::from_secs(PUT_SECS_PER_MIB * (size >> 20));
            self.puts.fetch_add(1, Ordering::Relaxed);
            let sent = self
                .send(
                    reqwest::Method::PUT,
                    Some(key),
                    &[],
                    &headers,
                    body.clone(),
                    &content_sha,
                    timeout,
                )
                .await;
            let put = match sent {
                Err(e) if e.is_timeout() && attempt < MAX_PUT_ATTEMPTS => {
                    tracing::warn!(
                        key,
                        attempt,
                        "S3 PUT timed out, checking before trying again"
                    );
                    continue;
                }
                Err(e) => return Err(S3Error::Transport(crate::net::describe(&e))),
                Ok(resp) => answer(resp).await?,
            };
            let version = put.header("x-amz-version-id").map(str::to_string);
            let stored = self.head(key, version.as_deref()).await?.ok_or_else(|| {
                S3Error::Mismatch(format!("{key}: not found right after it was stored"))
            })?;
            self.verify_stored(&stored, size, &checksum, lock.map(|(m, u, _)| (m, u)))
                .map_err(|why| S3Error::Mismatch(format!("{key}: {why}")))?;
            tracing::info!(
                key,
                size,
                version = version.as_deref().unwrap_or(""),
                "archive uploaded to S3, verified"
            );
            return Ok(Uploaded {
                key: key.to_string(),
                size,
                already_there: false,
                retain_until: stored.retain_until,
            });
        }
    }

    /// The Object Lock retention of an object: `(mode, retain-until)` as S3 reports
    /// them, or `None` when the object has no retention.
    pub async fn retention(&self, key: &str) -> Result<Option<(String, String)>, S3Error> {
        let resp = self
            .request(
                reqwest::Method::GET,
                Some(key),
                &[("retention", "")],
                &[],
                Bytes::new(),
            )
            .await;
        let resp = match resp {
            Err(S3Error::Status { code, .. }) if code == "NoSuchObjectLockConfiguration" => {
                return Ok(None);
            }
            other => other?,
        };
        let xml = String::from_utf8_lossy(&resp.body);
        if !xml.contains("<Retention") {
            // A store without GetObjectRetention may answer with the object itself.
            return Err(S3Error::Mismatch(format!(
                "{key}: the answer to GET ?retention is not a Retention document"
            )));
        }
        match (xml_text(&xml, "Mode"), xml_text(&xml, "RetainUntilDate")) {
            (Some(mode), Some(until)) => Ok(Some((mode, until))),
            (None, None) => Ok(None),
            _ => Err(S3Error::Mismatch(format!(
                "{key}: retention answer without a mode or a date"
            ))),
        }
    }

    /// A signed request to the bucket (`key` = `None`) or to an object, with `query`
    /// parameters (unencoded; an empty value is sent as a bare name) and extra
    /// `headers` (all signed). Non-2xx answers are [`S3Error::Status`]. For tools and
    /// tests: creating buckets, listing versions, reading objects back.
    pub async fn request(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<S3Response, S3Error> {
        let payload: [u8; 32] = Sha256::digest(&body).into();
        let resp = self
            .send(
                method,
                key,
                query,
                headers,
                body,
                &hex(&payload),
                self.timeout,
            )
            .await
            .map_err(|e| S3Error::Transport(crate::net::describe(&e)))?;
        answer(resp).await
    }

    /// HEAD an object (a given version, or the current one): `None` when absent.
    async fn head(&self, key: &str, version: Option<&str>) -> Result<Option<Head>, S3Error> {
        let query: Vec<(&str, &str)> = version.map(|v| ("versionId", v)).into_iter().collect();
        let resp = self
            .request(
                reqwest::Method::HEAD,
                Some(key),
                &query,
                &[("x-amz-checksum-mode", "ENABLED")],
                Bytes::new(),
            )
            .await;
        match resp {
            Ok(r) => Ok(Some(Head::from_response(&r))),
            Err(S3Error::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether an object found before uploading can stand for this upload: same size
    /// and checksum and, with Object Lock configured, locked at least as strictly for
    /// `retain_days` from when it was stored.
    fn accept_existing(&self, found: &Head, size: u64, checksum: &str) -> Result<(), String> {
        let lock = match self.lock {
            None => None,
            Some(mode) => {
                let stored = found
                    .last_modified
                    .as_deref()
                    .and_then(http_date_secs)
                    .ok_or("no Last-Modified date")?;
                // The retain-until date was computed by the client that stored it,
                // before the server's Last-Modified: allow for the clock skew SigV4
                // itself allows.
                let until = stored + i64::from(self.retain_days) * 86_400 - MAX_CLOCK_SKEW_SECS;
                Some((mode, until))
            }
        };
        self.verify_stored(found, size, checksum, lock)
    }

    /// Checks a HEAD answer against what was stored: size, SHA-256 checksum, and the
    /// lock mode (the one asked for, or COMPLIANCE, which is stricter) with a
    /// retain-until date no earlier than `until` (seconds since the epoch).
    fn verify_stored(
        &self,
        h: &Head,
        size: u64,
        checksum: &str,
        lock: Option<(LockMode, i64)>,
    ) -> Result<(), String> {
        if h.size != Some(size) {
            return Err(match h.size {
                Some(found) => format!("size {found}, expected {size}"),
                None => format!("no size reported, expected {size}"),
            });
        }
        match &h.checksum {
            Some(c) if c == checksum => {}
            Some(c) => return Err(format!("checksum {c}, expected {checksum}")),
            None => return Err("no SHA-256 checksum reported".into()),
        }
        if let Some((mode, until)) = lock {
            let found = h.lock_mode.as_deref().and_then(LockMode::parse);
            if !(found == Some(mode) || found == Some(LockMode::Compliance)) {
                return Err(format!(
                    "lock mode {}, expected {}",
                    h.lock_mode.as_deref().unwrap_or("none"),
                    mode.as_str()
                ));
            }
            let reported = h
                .retain_until
                .as_deref()
                .and_then(crate::clock::rfc3339_nanos)
                .ok_or_else(|| match &h.retain_until {
                    Some(d) => format!("retain-until date {d:?} unreadable"),
                    None => "no retain-until date reported".to_string(),
                })?;
            if reported < i128::from(until) * 1_000_000_000 {
                return Err(format!(
                    "retained until {}, expected at least {}",
                    h.retain_until.as_deref().unwrap_or(""),
                    rfc3339_secs(until)
                ));
            }
        }
        Ok(())
    }

    /// Builds and sends one signed request; the answer is not looked at.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: reqwest::Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Bytes,
        payload_sha_hex: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let p = self.prepare(
            method.as_str(),
            key,
            query,
            headers,
            payload_sha_hex,
            &amz_date(unix_now()),
        );
        let mut req = self.http.request(method, &p.url).timeout(timeout);
        for (k, v) in &p.headers {
            // reqwest writes Host from the URL, exactly as `prepare` signed it.
            if k != "host" {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        req.body(body).send().await
    }

    /// The URL and the headers (Authorization included) of a request; pure.
    fn prepare(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        payload_sha_hex: &str,
        amz_date: &str,
    ) -> Prepared {
        let mut path = format!("{}/{}", self.base_path, uri_encode(&self.bucket, true));
        if let Some(k) = key {
            path.push('/');
            path.push_str(&encode_key(k));
        }
        let mut url = format!("{}{path}", self.origin);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&uri_encode(k, true));
            if !v.is_empty() {
                url.push('=');
                url.push_str(&uri_encode(v, true));
            }
        }
        let host = self
            .origin
            .split_once("://")
            .map_or(self.origin.as_str(), |(_, h)| h);
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host.into()),
            ("x-amz-date".into(), amz_date.into()),
            ("x-amz-content-sha256".into(), payload_sha_hex.into()),
        ];
        if let Some(t) = &self.session_token {
            headers.push(("x-amz-security-token".into(), t.expose().into()));
        }
        headers.extend(
            extra
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())),
        );
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let signed = sign(
            &Credentials {
                access_key_id: self.access_key_id.expose(),
                secret_access_key: self.secret_access_key.expose(),
                region: &self.region,
            },
            &Request {
                method,
                canonical_uri: &path,
                query: &query,
                headers: &headers,
                payload_sha_hex,
                amz_date,
            },
        );
        headers.push(("authorization".into(), signed.authorization));
        Prepared { url, headers }
    }
}

/// A request ready to send.
struct Prepared {
    url: String,
    /// Lower-case names; `host` first, `authorization` last.
    headers: Vec<(String, String)>,
}

/// What a HEAD says about an object.
#[derive(Debug, Default)]
struct Head {
    size: Option<u64>,
    checksum: Option<String>,
    lock_mode: Option<String>,
    retain_until: Option<String>,
    last_modified: Option<String>,
}

impl Head {
    fn from_response(r: &S3Response) -> Head {
        let text = |n: &str| r.header(n).map(str::to_string);
        Head {
            size: r.header("content-length").and_then(|v| v.parse().ok()),
            checksum: text("x-amz-checksum-sha256"),
            lock_mode: text("x-amz-object-lock-mode"),
            retain_until: text("x-amz-object-lock-retain-until-date"),
            last_modified: text("last-modified"),
        }
    }
}

/// A 2xx answer read whole, anything else as [`S3Error::Status`].
async fn answer(resp: reqwest::Response) -> Result<S3Response, S3Error> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if (200..300).contains(&status) {
        let body = resp
            .bytes()
            .await
            .map_err(|e| S3Error::Transport(crate::net::describe(&e)))?;
        return Ok(S3Response {
            status,
            headers,
            body,
        });
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    let xml = String::from_utf8_lossy(&body);
    Err(S3Error::Status {
        status,
        code: xml_text(&xml, "Code").unwrap_or_default(),
        message: xml_text(&xml, "Message")
            .map(|m| m.chars().take(300).collect())
            .unwrap_or_default(),
    })
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded. Enough for S3's
/// error and retention documents; not an XML parser.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let raw = &xml[start..start + len];
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

// ---------------------------------------------------------------------------------
// AWS Signature Version 4, header form, for S3 (no double encoding of the path).

/// Who signs, and where.
struct Credentials<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    region: &'a str,
}

/// The parts of a request SigV4 covers. `canonical_uri` is the path as sent (already
/// URI-encoded); `query` pairs are unencoded; `headers` must include `host`,
/// `x-amz-date` and `x-amz-content-sha256`, and are all signed.
struct Request<'a> {
    method: &'a str,
    canonical_uri: &'a str,
    query: &'a [(String, String)],
    headers: &'a [(String, String)],
    payload_sha_hex: &'a str,
    /// `YYYYMMDDTHHMMSSZ`
    amz_date: &'a str,
}

/// A signature and the documents it was computed from (kept for the tests).
struct Signed {
    #[cfg_attr(not(test), allow(dead_code))]
    canonical_request: String,
    #[cfg_attr(not(test), allow(dead_code))]
    string_to_sign: String,
    #[cfg_attr(not(test), allow(dead_code))]
    signature: String,
    authorization: String,
}

fn sign(c: &Credentials<'_>, r: &Request<'_>) -> Signed {
    let mut query: Vec<(String, String)> = r
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");

    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (k, v) in &headers {
        if names.last() == Some(&k.as_str()) {
            // A repeated header: values joined with commas, in the order given.
            canonical_headers.pop();
            canonical_headers.push(',');
        } else {
            canonical_headers.push_str(k);
            canonical_headers.push(':');
            names.push(k);
        }
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let signed_headers = names.join(";");

    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        r.method, r.canonical_uri, r.payload_sha_hex
    );
    let date = &r.amz_date[..8.min(r.amz_date.len())];
    let scope = format!("{date}/{}/s3/aws4_request", c.region);
    let cr_hash: [u8; 32] = Sha256::digest(canonical_request.as_bytes()).into();
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        r.amz_date,
        hex(&cr_hash)
    );

    let k_date = hmac(
        format!("AWS4{}", c.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, c.region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
        c.access_key_id
    );
    Signed {
        canonical_request,
        string_to_sign,
        signature,
        authorization,
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// SigV4's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX` (upper-case
/// hex); `/` too when `encode_slash`.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An object key as a URI path: each `/`-separated segment encoded.
fn encode_key(key: &str) -> String {
    uri_encode(key, false)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Standard base64 (RFC 4648 section 4) with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `YYYYMMDDTHHMMSSZ` (UTC).
fn amz_date(secs: i64) -> String {
    let (y, m, d) = crate::clock::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC).
fn rfc3339_secs(secs: i64) -> String {
    let (y, m, d) = crate::clock::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37
/// GMT`, the form S3 sends).
fn http_date_secs(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|n| n == month)? + 1;
    let day: u32 = day.parse().ok()?;
    let nanos = crate::clock::rfc3339_nanos(&format!("{year}-{m:02}-{day:02}T{time}Z"))?;
    Some((nanos / 1_000_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::NetConfig;

    const EMPTY_SHA256_HEX: &str =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ACCESS: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20130524T000000Z";
    const HOST: &str = "examplebucket.s3.amazonaws.com";

    /// Signs one of the examples of AWS's "Signature Calculations for the
    /// Authorization Header: Transferring Payload in a Single Chunk" (S3 API
    /// reference, sig-v4-header-based-auth), whose requests are addressed
    /// virtual-hosted-style to `examplebucket`.
    fn example(
        method: &str,
        uri: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        payload: &str,
    ) -> Signed {
        let mut all: Vec<(String, String)> = vec![
            ("Host".into(), HOST.into()),
            ("x-amz-date".into(), DATE.into()),
            ("x-amz-content-sha256".into(), payload.into()),
        ];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sign(
            &Credentials {
                access_key_id: ACCESS,
                secret_access_key: SECRET,
                region: "us-east-1",
            },
            &Request {
                method,
                canonical_uri: uri,
                query: &query,
                headers: &all,
                payload_sha_hex: payload,
                amz_date: DATE,
            },
        )
    }

    #[test]
    fn sigv4_get_object_example() {
        let s = example(
            "GET",
            "/test.txt",
            &[],
            &[("Range", "bytes=0-9")],
            EMPTY_SHA256_HEX,
        );
        assert_eq!(
            s.canonical_request,
            "GET\n/test.txt\n\n\
             host:examplebucket.s3.amazonaws.com\n\
             range:bytes=0-9\n\
             x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-amz-date:20130524T000000Z\n\n\
             host;range;x-amz-content-sha256;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
             7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            s.signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn sigv4_put_object_example() {
        let body = b"Welcome to Amazon S3.";
        let payload = hex(Sha256::digest(body).as_slice());
        assert_eq!(
            payload,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let uri = format!("/{}", encode_key("test$file.text"));
        assert_eq!(uri, "/test%24file.text");
        let s = example(
            "PUT",
            &uri,
            &[],
            &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            &payload,
        );
        assert!(s.authorization.contains(
            "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
        ));
        assert_eq!(
            s.signature,
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
    }

    #[test]
    fn sigv4_bucket_examples_with_query_strings() {
        // GET Bucket Lifecycle: a parameter without a value signs as `lifecycle=`.
        let s = example("GET", "/", &[("lifecycle", "")], &[], EMPTY_SHA256_HEX);
        assert!(s.canonical_request.starts_with("GET\n/\nlifecycle=\n"));
        assert_eq!(
            s.signature,
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
        // List Objects: parameters sorted by name whatever the order given.
        let s = example(
            "GET",
            "/",
            &[("prefix", "J"), ("max-keys", "2")],
            &[],
            EMPTY_SHA256_HEX,
        );
        assert!(
            s.canonical_request
                .starts_with("GET\n/\nmax-keys=2&prefix=J\n")
        );
        assert_eq!(
            s.signature,
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_inner_spaces_collapsed() {
        let a = example(
            "GET",
            "/k",
            &[],
            &[("x-amz-meta-a", "  one   two ")],
            EMPTY_SHA256_HEX,
        );
        let b = example(
            "GET",
            "/k",
            &[],
            &[("X-Amz-Meta-A", "one two")],
            EMPTY_SHA256_HEX,
        );
        assert!(a.canonical_request.contains("\nx-amz-meta-a:one two\n"));
        assert_eq!(a.signature, b.signature);
    }

    #[test]
    fn base64_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
        // x-amz-checksum-sha256 of an empty body, as S3 documents it.
        assert_eq!(
            base64(Sha256::digest(b"").as_slice()),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn uri_encoding_of_keys_and_query_values() {
        for (key, want) in [
            ("test$file.text", "test%24file.text"),
            ("a/b c+d", "a/b%20c%2Bd"),
            ("~x_y-z.gz", "~x_y-z.gz"),
            ("é", "%C3%A9"),
            ("100%", "100%25"),
        ] {
            assert_eq!(encode_key(key), want, "{key:?}");
        }
        assert_eq!(uri_encode("a/b=c&d", true), "a%2Fb%3Dc%26d");
    }

    fn client(prefix: &str, endpoint: &str, token: Option<&str>) -> S3Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        S3Client::new(&S3Config {
            endpoint: endpoint.into(),
            bucket: "archive".into(),
            prefix: prefix.into(),
            region: "eu-west-1".into(),
            access_key_id: Secret::for_tests(ACCESS),
            secret_access_key: Secret::for_tests(SECRET),
            session_token: token.map(Secret::for_tests),
            object_lock_mode: Some(LockMode::Compliance),
            retain_days: 2555,
            net: NetConfig {
                endpoint: String::new(),
                tls: Default::default(),
                proxy: None,
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
            },
        })
        .unwrap()
    }

    #[test]
    fn keys_are_the_prefix_and_the_normalized_relative_path() {
        let c = client("auditship/", "http://127.0.0.1:9", None);
        for (relative, want) in [
            (
                "host-a/2026/audit-2026-01-02.jsonl.gz",
                "auditship/host-a/2026/audit-2026-01-02.jsonl.gz",
            ),
            ("/host-a//./x.gz", "auditship/host-a/x.gz"),
            ("../../etc/x.gz", "auditship/etc/x.gz"),
            ("a b+c.gz", "auditship/a b+c.gz"),
        ] {
            assert_eq!(c.key_for(relative), want, "{relative:?}");
        }
        let c = client("/lead/", "http://127.0.0.1:9", None);
        assert_eq!(c.key_for("x.gz"), "lead/x.gz");
    }

    #[test]
    fn a_prepared_request_signs_the_path_it_sends() {
        let c = client("", "https://s3.example.test:8443/gateway/", Some("tok/en"));
        let p = c.prepare(
            "PUT",
            Some("p/a b.gz"),
            &[("versionId", "v 1")],
            &[("X-Amz-Object-Lock-Mode", "COMPLIANCE")],
            EMPTY_SHA256_HEX,
            DATE,
        );
        assert_eq!(
            p.url,
            "https://s3.example.test:8443/gateway/archive/p/a%20b.gz?versionId=v%201"
        );
        let get = |n: &str| {
            p.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get("host"), "s3.example.test:8443");
        assert_eq!(get("x-amz-security-token"), "tok/en");
        assert_eq!(get("x-amz-object-lock-mode"), "COMPLIANCE");
        let auth = get("authorization");
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-object-lock-mode;x-amz-security-token,"
        ), "{auth}");
        assert!(!auth.contains(SECRET));
        // The same request, signed by hand from its parts.
        let headers: Vec<(String, String)> = p.headers[..p.headers.len() - 1].to_vec();
        let again = sign(
            &Credentials {
                access_key_id: ACCESS,
                secret_access_key: SECRET,
                region: "eu-west-1",
            },
            &Request {
                method: "PUT",
                canonical_uri: "/gateway/archive/p/a%20b.gz",
                query: &[("versionId".into(), "v 1".into())],
                headers: &headers,
                payload_sha_hex: EMPTY_SHA256_HEX,
                amz_date: DATE,
            },
        );
        assert_eq!(auth, again.authorization);
        assert!(
            again
                .canonical_request
                .starts_with("PUT\n/gateway/archive/p/a%20b.gz\nversionId=v%201\n")
        );
        // The default port is left out of Host, as reqwest leaves it out.
        let c = client("", "https://s3.eu-west-1.amazonaws.com", None);
        let p = c.prepare("HEAD", None, &[], &[], EMPTY_SHA256_HEX, DATE);
        assert_eq!(p.url, "https://s3.eu-west-1.amazonaws.com/archive");
        assert_eq!(
            p.headers[0],
            ("host".into(), "s3.eu-west-1.amazonaws.com".into())
        );
    }

    #[test]
    fn no_secret_in_debug_output() {
        let c = client("", "http://127.0.0.1:9", Some("SESSIONTOKEN"));
        let text = format!("{c:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("SESSIONTOKEN"),
            "{text}"
        );
        assert!(!text.contains(ACCESS), "{text}");
    }

    #[test]
    fn settings_are_checked() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = S3Config {
            endpoint: "http://127.0.0.1:9".into(),
            bucket: "b".into(),
            prefix: String::new(),
            region: "us-east-1".into(),
            access_key_id: Secret::for_tests("a"),
            secret_access_key: Secret::for_tests("s"),
            session_token: None,
            object_lock_mode: None,
            retain_days: 0,
            net: NetConfig {
                endpoint: String::new(),
                tls: Default::default(),
                proxy: None,
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
            },
        };
        assert!(S3Client::new(&base).is_ok());
        let bad = |f: &dyn Fn(&mut S3Config)| {
            let mut c = base.clone();
            f(&mut c);
            S3Client::new(&c).unwrap_err()
        };
        assert!(bad(&|c| c.endpoint = "ftp://x".into()).contains("http"));
        assert!(bad(&|c| c.endpoint = "http://x/?a=b".into()).contains("query"));
        assert!(bad(&|c| c.bucket = "a/b".into()).contains("bucket"));
        assert!(bad(&|c| c.region = String::new()).contains("region"));
        assert!(bad(&|c| c.secret_access_key = Secret::for_tests("")).contains("secret"));
        assert!(bad(&|c| c.object_lock_mode = Some(LockMode::Governance)).contains("retain_days"));
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(rfc3339_secs(1_369_353_600 + 3661), "2013-05-24T01:01:01Z");
        assert_eq!(
            http_date_secs("Fri, 24 May 2013 01:01:01 GMT"),
            Some(1_369_353_600 + 3661)
        );
        assert_eq!(http_date_secs("Fri, 24 Mai 2013 01:01:01 GMT"), None);
        assert_eq!(http_date_secs("2013-05-24T01:01:01Z"), None);
    }

    #[test]
    fn s3_error_documents_are_read() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
                   <Message>The specified bucket does not exist &amp; never did</Message>\
                   <BucketName>b</BucketName></Error>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(
            xml_text(xml, "Message").as_deref(),
            Some("The specified bucket does not exist & never did")
        );
        assert_eq!(xml_text(xml, "RequestId"), None);
        let e = S3Error::Status {
            status: 503,
            code: "SlowDown".into(),
            message: "Please reduce your request rate.".into(),
        };
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "S3 answered 503 SlowDown: Please reduce your request rate."
        );
        let e = S3Error::Status {
            status: 403,
            code: "SignatureDoesNotMatch".into(),
            message: String::new(),
        };
        assert!(!e.is_retryable());
        assert!(S3Error::Transport("timeout".into()).is_retryable());
        assert!(!S3Error::Mismatch("x".into()).is_retryable());
    }

    fn head(size: u64, checksum: &str, mode: Option<&str>, until: Option<&str>) -> Head {
        Head {
            size: Some(size),
            checksum: Some(checksum.into()),
            lock_mode: mode.map(Into::into),
            retain_until: until.map(Into::into),
            last_modified: Some("Fri, 24 May 2013 00:00:00 GMT".into()),
        }
    }

    #[test]
    fn stored_objects_are_checked_field_by_field() {
        let c = client("", "http://127.0.0.1:9", None);
        let until = 1_369_353_600 + 10 * 86_400;
        let lock = Some((LockMode::Governance, until));
        let ok = head(5, "abc=", Some("GOVERNANCE"), Some("2013-06-03T00:00:00Z"));
        assert_eq!(c.verify_stored(&ok, 5, "abc=", lock), Ok(()));
        // S3 writes the date with milliseconds.
        let ms = head(
            5,
            "abc=",
            Some("GOVERNANCE"),
            Some("2013-06-03T00:00:00.000Z"),
        );
        assert_eq!(c.verify_stored(&ms, 5, "abc=", lock), Ok(()));
        // COMPLIANCE is stricter than GOVERNANCE, so it stands for it; not the reverse.
        let strict = head(5, "abc=", Some("COMPLIANCE"), Some("2013-06-03T00:00:00Z"));
        assert_eq!(c.verify_stored(&strict, 5, "abc=", lock), Ok(()));
        assert!(
            c.verify_stored(&ok, 5, "abc=", Some((LockMode::Compliance, until)))
                .is_err()
        );
        for (h, why) in [
            (
                head(6, "abc=", Some("GOVERNANCE"), Some("2013-06-03T00:00:00Z")),
                "size",
            ),
            (
                head(5, "abd=", Some("GOVERNANCE"), Some("2013-06-03T00:00:00Z")),
                "checksum",
            ),
            (head(5, "abc=", None, None), "lock mode"),
            (
                head(5, "abc=", Some("GOVERNANCE"), Some("2013-06-02T23:59:59Z")),
                "retained until",
            ),
            (
                head(5, "abc=", Some("GOVERNANCE"), Some("soon")),
                "unreadable",
            ),
        ] {
            let e = c.verify_stored(&h, 5, "abc=", lock).unwrap_err();
            assert!(e.contains(why), "{e} should mention {why}");
        }
        let mut none = ok;
        none.checksum = None;
        assert!(
            c.verify_stored(&none, 5, "abc=", None)
                .unwrap_err()
                .contains("no SHA-256")
        );
    }

    #[test]
    fn an_existing_object_counts_when_locked_for_the_days_from_its_upload() {
        // client(): COMPLIANCE for 2555 days. Stored 2013-05-24 00:00:00.
        let c = client("", "http://127.0.0.1:9", None);
        let full = 1_369_353_600 + 2555 * 86_400;
        let h = |until: i64| head(5, "abc=", Some("COMPLIANCE"), Some(&rfc3339_secs(until)));
        assert_eq!(c.accept_existing(&h(full), 5, "abc="), Ok(()));
        // Dated by a client clock a few minutes behind the server's: still accepted.
        assert_eq!(c.accept_existing(&h(full - 600), 5, "abc="), Ok(()));
        // A day short of the configured retention: uploaded again.
        assert!(c.accept_existing(&h(full - 86_400), 5, "abc=").is_err());
        let mut undated = h(full);
        undated.last_modified = None;
        assert!(c.accept_existing(&undated, 5, "abc=").is_err());
    }
}
