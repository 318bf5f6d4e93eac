//! moto (the AWS service emulator, from PyPI) in server mode on 127.0.0.1, for the S3
//! archive tests: S3 with Object Lock, and IAM, so request signatures can be checked.
//!
//! The Python that runs it: `$AUDITSHIP_TEST_PYTHON`, else the venv `tests/run.sh`
//! makes (`target/moto-venv`), else `python3`. Without moto the tests fail with a
//! pointer to `bash tests/run.sh`; they never skip.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    addr: String,
    child: Child,
    log: PathBuf,
}

/// The Python interpreter with moto, as `tests/run.sh` arranges it.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AUDITSHIP_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/python3");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

impl Moto {
    /// Starts `python3 -m moto.server` on a free port, logging to `dir/moto.log`, and
    /// waits until it answers. Panics, saying how to install it, when moto is missing.
    pub fn start(dir: &Path) -> Moto {
        let py = python();
        let check = Command::new(&py)
            .args(["-c", "import moto.server"])
            .output();
        match check {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "moto is not installed for {}: run `bash tests/run.sh`, which installs \
                 moto[server] (or set AUDITSHIP_TEST_PYTHON to a Python that has it).\n{}",
                py.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "cannot run {} ({e}): run `bash tests/run.sh`, which installs python3 and \
                 moto[server]",
                py.display()
            ),
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = dir.join("moto.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&py)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start moto with {}: {e}", py.display()));
        let addr = format!("127.0.0.1:{port}");
        let mut moto = Moto {
            url: format!("http://{addr}"),
            addr,
            child,
            log,
        };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto exited ({status}) before answering:\n{}",
                    moto.log_text()
                );
            }
            if let Ok((200, _)) = moto.try_raw("GET", "/moto-api/", &[], b"") {
                return moto;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("moto did not answer within 60 s:\n{}", moto.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// moto's own output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Makes moto check every request from now on, as S3 does: creates an IAM user
    /// allowed `s3:*`, returns its (access key id, secret access key), then turns on
    /// moto's authentication. moto then recomputes each request's SigV4 signature with
    /// botocore and refuses a mismatch with `SignatureDoesNotMatch`.
    pub fn enforce_auth(&self) -> (String, String) {
        let iam = |params: &[(&str, &str)]| -> String {
            let mut body = String::from("Version=2010-05-08");
            for (k, v) in params {
                body.push_str(&format!("&{k}={}", form_encode(v)));
            }
            let (status, text) = self.raw(
                "POST",
                "/",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    // Unsigned (moto does not check yet); the scope routes it to IAM.
                    (
                        "Authorization",
                        "AWS4-HMAC-SHA256 Credential=AKIASETUP/20260101/us-east-1/iam/aws4_request, \
                         SignedHeaders=host, Signature=0",
                    ),
                ],
                body.as_bytes(),
            );
            assert_eq!(status, 200, "IAM {params:?}: {text}");
            text
        };
        iam(&[("Action", "CreateUser"), ("UserName", "archiver")]);
        iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "archiver"),
            ("PolicyName", "archive"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
        ]);
        let keys = iam(&[("Action", "CreateAccessKey"), ("UserName", "archiver")]);
        let id = xml_text(&keys, "AccessKeyId").expect("AccessKeyId");
        let secret = xml_text(&keys, "SecretAccessKey").expect("SecretAccessKey");
        let (status, text) = self.raw("POST", "/moto-api/reset-auth", &[], b"0");
        assert_eq!(status, 200, "reset-auth: {text}");
        (id, secret)
    }

    /// One request on its own connection: (status, body as text). Panics on IO errors.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        self.try_raw(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} to moto: {e}\n{}", self.log_text()))
    }

    fn try_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let (status, _, body) = forward(&self.addr, method, path, headers, body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one HTTP/1.1 request to `addr` with `Connection: close` and reads the answer
/// to the end: (status, raw response bytes, body). For HEAD the body is empty.
pub fn forward(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    let mut has_host = false;
    for (k, v) in headers {
        if [
            "connection",
            "content-length",
            "transfer-encoding",
            "expect",
        ]
        .iter()
        .any(|h| k.eq_ignore_ascii_case(h))
        {
            continue;
        }
        has_host |= k.eq_ignore_ascii_case("host");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_host {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no complete response head"))?;
    let status: u16 = String::from_utf8_lossy(&raw[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        raw[end + 4..].to_vec()
    };
    Ok((status, raw, body))
}

/// `application/x-www-form-urlencoded` value encoding.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text of the first `<tag>…</tag>`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..start + len].to_string())
}
