//! The S3 archive upload against moto's S3 in server mode (tests/moto.rs): signed
//! requests (checked by moto with botocore once authentication is on), checksums,
//! Object Lock retention, idempotent retries. GetObjectRetention, which moto does not
//! implement, is checked against a scripted server answering as S3 documents it.

use crate::http1::{Answer, Request, Response, Server};
use crate::moto::{Moto, forward};
use auditship::archive::s3::{LockMode, S3Client, S3Config, S3Error, Uploaded};
use auditship::config::daemon::{NetConfig, Secret};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BUCKET: &str = "audit-archive";

fn config(
    endpoint: &str,
    (id, secret): (&str, &str),
    lock: Option<LockMode>,
    retain_days: u32,
    request_timeout: Duration,
) -> S3Config {
    S3Config {
        endpoint: endpoint.to_string(),
        bucket: BUCKET.to_string(),
        prefix: "auditship/".to_string(),
        region: "us-east-1".to_string(),
        access_key_id: Secret::new(id),
        secret_access_key: Secret::new(secret),
        session_token: None,
        object_lock_mode: lock,
        retain_days,
        net: NetConfig {
            endpoint: endpoint.to_string(),
            tls: Default::default(),
            proxy: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout,
        },
    }
}

fn client(cfg: &S3Config) -> S3Client {
    auditship::daemon::install_crypto_provider();
    S3Client::new(cfg).unwrap()
}

/// moto without authentication (any credentials do).
const ANY: (&str, &str) = ("testing", "testing");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates the bucket with Object Lock enabled (which also turns on versioning).
async fn create_locked_bucket(c: &S3Client) {
    c.request(
        reqwest::Method::PUT,
        None,
        &[],
        &[("x-amz-bucket-object-lock-enabled", "true")],
        Bytes::new(),
    )
    .await
    .expect("create the bucket");
}

/// A file of `size` pseudo-random bytes and its SHA-256.
fn archive_file(dir: &Path, name: &str, size: usize) -> (PathBuf, [u8; 32]) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, Sha256::digest(&data).into())
}

/// Standard base64, written again here so the client's encoder is checked against an
/// independent one.
fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = String::new();
    for b in data {
        bits.push_str(&format!("{b:08b}"));
    }
    while !bits.len().is_multiple_of(6) {
        bits.push('0');
    }
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|c| A[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char)
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Seconds since the epoch of an RFC 3339 date.
fn secs(rfc3339: &str) -> i64 {
    let n = auditship::clock::rfc3339_nanos(rfc3339)
        .unwrap_or_else(|| panic!("not an RFC 3339 date: {rfc3339:?}"));
    (n / 1_000_000_000) as i64
}

/// Asserts `until` is `days` from now, within a few minutes.
fn assert_days_ahead(until: &str, days: i64) {
    let want = now_secs() + days * 86_400;
    let got = secs(until);
    assert!(
        (got - want).abs() < 300,
        "retained until {until}, expected about {days} days from now"
    );
}

/// The object's current version, as a signed HEAD reports it.
async fn head(c: &S3Client, key: &str) -> reqwest::header::HeaderMap {
    c.request(
        reqwest::Method::HEAD,
        Some(key),
        &[],
        &[("x-amz-checksum-mode", "ENABLED")],
        Bytes::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("HEAD {key}: {e}"))
    .headers
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
        .to_str()
        .unwrap()
}

/// The keys of every object version the bucket holds (each test's bucket holds one
/// key). Without a `prefix` parameter: moto checks signatures on the URL as werkzeug
/// decodes it, so a `%2F` in a query would fail its check (S3 itself signs it encoded).
async fn versions(c: &S3Client) -> Vec<String> {
    let r = c
        .request(
            reqwest::Method::GET,
            None,
            &[("versions", "")],
            &[],
            Bytes::new(),
        )
        .await
        .expect("list versions");
    let xml = String::from_utf8_lossy(&r.body).into_owned();
    xml.split("<Version>")
        .skip(1)
        .map(|v| crate::moto::xml_text(v, "Key").expect("a version has a key"))
        .collect()
}

#[test]
fn s3_upload_is_signed_checksummed_locked_and_verified() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let keys = moto.enforce_auth();
    let c = client(&config(
        &moto.url,
        (&keys.0, &keys.1),
        Some(LockMode::Governance),
        30,
        Duration::from_secs(10),
    ));
    // moto recomputes every signature with botocore from here on. (Only on keys
    // without percent-escapes: moto verifies the path as werkzeug decodes it, where S3
    // verifies it encoded; encoded keys are checked by the unit tests against AWS's
    // examples and below without authentication.)
    let (path, sha) = archive_file(dir.path(), "a.gz", 300_000);
    let key = c.key_for("host-1/2026/audit-2026-01-02.jsonl.gz");
    assert_eq!(key, "auditship/host-1/2026/audit-2026-01-02.jsonl.gz");
    runtime().block_on(async {
        create_locked_bucket(&c).await;
        let up = c.upload_verified(&key, &path, &sha).await.unwrap();
        assert_eq!(
            (up.key.as_str(), up.size, up.already_there),
            (key.as_str(), 300_000, false)
        );
        assert_eq!(c.puts_sent(), 1);
        assert_days_ahead(up.retain_until.as_deref().expect("retain-until"), 30);

        // What S3 holds: the same bytes, with the checksum and the lock.
        let got = c
            .request(reqwest::Method::GET, Some(&key), &[], &[], Bytes::new())
            .await
            .unwrap();
        assert!(
            got.body == std::fs::read(&path).unwrap(),
            "stored bytes differ"
        );
        let h = head(&c, &key).await;
        assert_eq!(header(&h, "x-amz-checksum-sha256"), b64(&sha));
        assert_eq!(header(&h, "content-length"), "300000");
        assert_eq!(header(&h, "x-amz-object-lock-mode"), "GOVERNANCE");
        assert_eq!(
            header(&h, "x-amz-object-lock-retain-until-date"),
            up.retain_until.as_deref().unwrap()
        );
        assert_eq!(versions(&c).await, vec![key.clone()]);
    });
}

#[test]
fn s3_second_upload_finds_the_object_and_sends_no_put() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let c = client(&config(
        &moto.url,
        ANY,
        Some(LockMode::Governance),
        7,
        Duration::from_secs(10),
    ));
    let (path, sha) = archive_file(dir.path(), "a.gz", 10_000);
    // Spaces, '+', '$' and non-ASCII: encoded on the wire, stored under the very name.
    let key = c.key_for("host 1/audit+$é-2026-01-02.jsonl.gz");
    runtime().block_on(async {
        create_locked_bucket(&c).await;
        let first = c.upload_verified(&key, &path, &sha).await.unwrap();
        assert_eq!(versions(&c).await, vec![key.clone()]);
        let version = header(&head(&c, &key).await, "x-amz-version-id").to_string();
        let again = c.upload_verified(&key, &path, &sha).await.unwrap();
        assert_eq!(
            again,
            Uploaded {
                already_there: true,
                ..first.clone()
            }
        );
        assert!(!first.already_there);
        // No second PUT: by the client's count, and by S3's versions (every PUT to a
        // versioned bucket makes one).
        assert_eq!(c.puts_sent(), 1);
        assert_eq!(versions(&c).await, vec![key.clone()]);
        assert_eq!(header(&head(&c, &key).await, "x-amz-version-id"), version);
    });
}

#[test]
fn s3_file_not_matching_its_sha256_is_not_uploaded() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let c = client(&config(
        &moto.url,
        ANY,
        Some(LockMode::Governance),
        7,
        Duration::from_secs(10),
    ));
    let (path, mut sha) = archive_file(dir.path(), "a.gz", 10_000);
    sha[0] ^= 1;
    let key = c.key_for("a.gz");
    runtime().block_on(async {
        create_locked_bucket(&c).await;
        match c.upload_verified(&key, &path, &sha).await {
            Err(e @ S3Error::Mismatch(_)) => {
                assert!(!e.is_retryable());
                assert!(e.to_string().contains("SHA-256"), "{e}");
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert_eq!(c.puts_sent(), 0);
        match c
            .request(reqwest::Method::HEAD, Some(&key), &[], &[], Bytes::new())
            .await
        {
            Err(S3Error::Status { status: 404, .. }) => {}
            other => panic!("the object should not exist: {other:?}"),
        }
    });
}

#[test]
fn s3_compliance_lock_is_set_and_the_version_cannot_be_deleted() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let c = client(&config(
        &moto.url,
        ANY,
        Some(LockMode::Compliance),
        2555,
        Duration::from_secs(10),
    ));
    let (path, sha) = archive_file(dir.path(), "a.gz", 4096);
    let key = c.key_for("h/audit-2026-01-02.jsonl.gz");
    runtime().block_on(async {
        create_locked_bucket(&c).await;
        let up = c.upload_verified(&key, &path, &sha).await.unwrap();
        assert_days_ahead(up.retain_until.as_deref().unwrap(), 2555);
        let h = head(&c, &key).await;
        assert_eq!(header(&h, "x-amz-object-lock-mode"), "COMPLIANCE");
        let version = header(&h, "x-amz-version-id").to_string();
        // WORM: the version cannot be deleted, not even with the governance bypass.
        match c
            .request(
                reqwest::Method::DELETE,
                Some(&key),
                &[("versionId", &version)],
                &[("x-amz-bypass-governance-retention", "true")],
                Bytes::new(),
            )
            .await
        {
            Err(S3Error::Status {
                status: 403, code, ..
            }) => assert_eq!(code, "AccessDenied"),
            other => panic!("deleting a locked version must be refused: {other:?}"),
        }
        assert_eq!(header(&head(&c, &key).await, "x-amz-version-id"), version);
    });
}

#[test]
fn s3_wrong_credentials_are_refused_by_the_signature_check() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let (id, secret) = moto.enforce_auth();
    let good = client(&config(
        &moto.url,
        (&id, &secret),
        None,
        0,
        Duration::from_secs(10),
    ));
    let wrong_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY";
    let forged = client(&config(
        &moto.url,
        (&id, wrong_secret),
        None,
        0,
        Duration::from_secs(10),
    ));
    let unknown = client(&config(
        &moto.url,
        ("AKIAUNKNOWNKEY000000", &secret),
        None,
        0,
        Duration::from_secs(10),
    ));
    let (path, sha) = archive_file(dir.path(), "a.gz", 1000);
    let key = good.key_for("a.gz");
    runtime().block_on(async {
        create_locked_bucket(&good).await;
        let refused = forged
            .request(
                reqwest::Method::GET,
                None,
                &[("versions", "")],
                &[],
                Bytes::new(),
            )
            .await
            .unwrap_err();
        match &refused {
            S3Error::Status { status, code, .. } => {
                assert_eq!((*status, code.as_str()), (403, "SignatureDoesNotMatch"));
            }
            other => panic!("expected SignatureDoesNotMatch, got {other:?}"),
        }
        assert!(!refused.to_string().contains(wrong_secret));
        let e = forged.upload_verified(&key, &path, &sha).await.unwrap_err();
        assert!(matches!(e, S3Error::Status { status: 403, .. }), "{e:?}");
        assert!(!format!("{e} {e:?}").contains(wrong_secret));
        assert_eq!(forged.puts_sent(), 0);
        match unknown
            .request(
                reqwest::Method::GET,
                None,
                &[("versions", "")],
                &[],
                Bytes::new(),
            )
            .await
        {
            Err(S3Error::Status {
                status: 403, code, ..
            }) => assert_eq!(code, "InvalidAccessKeyId"),
            other => panic!("expected InvalidAccessKeyId, got {other:?}"),
        }
        // Nothing was stored by the refused clients; the right keys still work.
        assert_eq!(versions(&good).await, Vec::<String>::new());
        let up = good.upload_verified(&key, &path, &sha).await.unwrap();
        assert!(!up.already_there);
        assert_eq!(up.retain_until, None);
    });
}

#[test]
fn s3_missing_bucket_is_reported_with_its_code() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let c = client(&config(&moto.url, ANY, None, 0, Duration::from_secs(10)));
    let (path, sha) = archive_file(dir.path(), "a.gz", 100);
    let e = runtime()
        .block_on(c.upload_verified(&c.key_for("a.gz"), &path, &sha))
        .unwrap_err();
    match &e {
        S3Error::Status {
            status: 404, code, ..
        } => assert_eq!(code, "NoSuchBucket"),
        other => panic!("expected NoSuchBucket, got {other:?}"),
    }
    assert!(!e.is_retryable());
    assert!(
        e.to_string().starts_with("S3 answered 404 NoSuchBucket"),
        "{e}"
    );
}

/// A proxy in front of moto: forwards each request (one per connection) and answers
/// verbatim, after two optional faults: the answer to the first object PUT held back
/// for `delay_first_put` (the PUT succeeds in S3 while the client times out, as when a
/// network drops the answer), and request headers named in `drop_headers` removed (a
/// store that ignores them).
struct Proxy {
    url: String,
    /// Object PUTs forwarded.
    puts: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
struct Faults {
    delay_first_put: Option<Duration>,
    drop_headers: &'static [&'static str],
}

impl Proxy {
    fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let puts = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (puts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let (upstream, puts, faults) = (upstream.clone(), p.clone(), faults.clone());
                std::thread::spawn(move || serve(conn, &upstream, &puts, &faults));
            }
        });
        Proxy { url, puts, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One request of a connection: forwarded, answered verbatim with `Connection: close`.
fn serve(conn: std::net::TcpStream, upstream: &str, puts: &AtomicU64, faults: &Faults) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    let Ok(Some(req)) = crate::http1::read_request(&mut reader, &mut conn) else {
        return;
    };
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(k, _)| {
            !faults
                .drop_headers
                .iter()
                .any(|d| k.eq_ignore_ascii_case(d))
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let Ok((_, raw, _)) = forward(upstream, &req.method, &req.target, &headers, &req.body) else {
        return;
    };
    // An object PUT: a path below the bucket.
    if req.method == "PUT" && req.path.matches('/').count() > 1 {
        let n = puts.fetch_add(1, Ordering::SeqCst);
        if let (0, Some(delay)) = (n, faults.delay_first_put) {
            std::thread::sleep(delay);
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut out: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&raw[end + 4..]);
}

#[test]
fn s3_put_that_times_out_is_checked_with_head_before_it_is_sent_again() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let proxy = Proxy::start(
        &moto.url,
        Faults {
            delay_first_put: Some(Duration::from_secs(8)),
            ..Faults::default()
        },
    );
    let direct = client(&config(&moto.url, ANY, None, 0, Duration::from_secs(10)));
    let c = client(&config(
        &proxy.url,
        ANY,
        Some(LockMode::Governance),
        7,
        Duration::from_secs(2),
    ));
    let (path, sha) = archive_file(dir.path(), "a.gz", 20_000);
    let key = c.key_for("a.gz");
    runtime().block_on(async {
        create_locked_bucket(&direct).await;
        let up = c.upload_verified(&key, &path, &sha).await.unwrap();
        // The timed-out PUT had stored it; the HEAD that followed found it.
        assert!(up.already_there, "{up:?}");
        assert_days_ahead(up.retain_until.as_deref().unwrap(), 7);
        assert_eq!(c.puts_sent(), 1);
        assert_eq!(proxy.puts.load(Ordering::SeqCst), 1);
        assert_eq!(versions(&direct).await, vec![key.clone()]);
    });
}

#[test]
fn s3_upload_to_a_store_that_drops_the_checksum_is_not_verified() {
    let dir = crate::util::tempdir();
    let moto = Moto::start(dir.path());
    let proxy = Proxy::start(
        &moto.url,
        Faults {
            drop_headers: &["x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"],
            ..Faults::default()
        },
    );
    let direct = client(&config(&moto.url, ANY, None, 0, Duration::from_secs(10)));
    let c = client(&config(&proxy.url, ANY, None, 0, Duration::from_secs(10)));
    let (path, sha) = archive_file(dir.path(), "a.gz", 5000);
    let key = c.key_for("a.gz");
    runtime().block_on(async {
        create_locked_bucket(&direct).await;
        match c.upload_verified(&key, &path, &sha).await {
            Err(S3Error::Mismatch(why)) => assert!(why.contains("no SHA-256 checksum"), "{why}"),
            other => panic!("an object stored without its checksum must not verify: {other:?}"),
        }
        // It was stored (without the checksum): the verification is what caught it.
        assert_eq!(proxy.puts.load(Ordering::SeqCst), 1);
        assert_eq!(versions(&direct).await, vec![key.clone()]);
    });
}

#[test]
fn s3_retention_reads_the_get_object_retention_document() {
    // moto does not implement GetObjectRetention (a GET ?retention returns the object
    // itself), so this server answers as the S3 API reference documents it.
    let seen: Arc<std::sync::Mutex<Vec<Request>>> = Default::default();
    let log = seen.clone();
    let server = Server::start(Arc::new(move |req: Request| {
        log.lock().unwrap().push(req.clone());
        let xml = |status: u16, body: &str| {
            Answer::Respond(
                Response::new(status)
                    .header("Content-Type", "application/xml")
                    .body(body.as_bytes().to_vec()),
            )
        };
        match req.target.as_str() {
            "/audit-archive/auditship/locked.gz?retention" => xml(
                200,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Mode>COMPLIANCE</Mode><RetainUntilDate>2033-05-24T00:00:00.000Z</RetainUntilDate></Retention>",
            ),
            "/audit-archive/auditship/plain.gz?retention" => xml(
                404,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchObjectLockConfiguration</Code>\
                 <Message>The specified object does not have a ObjectLock configuration</Message></Error>",
            ),
            "/audit-archive/auditship/gone.gz?retention" => xml(
                404,
                "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
            ),
            // What moto answers: the object's bytes.
            _ => Answer::Respond(Response::new(200).body(b"\x1f\x8b not xml".to_vec())),
        }
    }));
    let c = client(&config(&server.url, ANY, None, 0, Duration::from_secs(10)));
    runtime().block_on(async {
        assert_eq!(
            c.retention(&c.key_for("locked.gz")).await.unwrap(),
            Some((
                "COMPLIANCE".to_string(),
                "2033-05-24T00:00:00.000Z".to_string()
            ))
        );
        assert_eq!(c.retention(&c.key_for("plain.gz")).await.unwrap(), None);
        match c.retention(&c.key_for("gone.gz")).await {
            Err(S3Error::Status {
                status: 404, code, ..
            }) => assert_eq!(code, "NoSuchKey"),
            other => panic!("expected NoSuchKey, got {other:?}"),
        }
        match c.retention(&c.key_for("object.gz")).await {
            Err(S3Error::Mismatch(why)) => assert!(why.contains("not a Retention document")),
            other => panic!("a non-retention answer must be an error: {other:?}"),
        }
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for r in seen.iter() {
        assert_eq!(r.method, "GET");
        let auth = r.header("authorization").unwrap_or("");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=testing/")
                && auth.contains(
                    "/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                ),
            "{auth}"
        );
        assert_eq!(
            r.header("x-amz-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }
}
