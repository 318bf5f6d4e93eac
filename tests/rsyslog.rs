//! A real rsyslogd receiving RFC 5424 messages over TLS (RFC 5425), for the syslog
//! sink's tests.
//!
//! `Rsyslog::start` writes a config under `dir/rsyslog/` and runs
//! `rsyslogd -n -f <conf> -i <pidfile>` with no system inputs (no imuxsock, no
//! imklog), its own work directory, `maxMessageSize` 256k, and one `imtcp` listener
//! on 127.0.0.1 behind the gtls (GnuTLS) stream driver, octet-counted framing on.
//! Every message received goes, unparsed, to `received.log` as `%rawmsg%` plus "\n":
//! the complete RFC 5424 message as sent (PRI, header, structured data, MSG; the
//! octet count and its space are framing and are not part of it). Alongside it,
//! `parsed.jsonl` holds rsyslog's own reading of each message (its RFC 5424 parser's
//! fields as JSON), to prove the message is well formed, not just intact.
//!
//! As received, with rsyslog's defaults kept: control characters inside a message are
//! escaped on reception (LF becomes `#012`, TAB `#011`), so one message is one line;
//! one trailing LF is dropped; a UTF-8 BOM is kept. A frame larger than 256k is cut to
//! exactly 256k and the rest of that frame discarded, the next frame intact
//! (`maxFrameSize` is raised from its 200000 default, past which rsyslog would stop
//! honouring the octet count and fall back to LF framing mid-stream).
//!
//! TLS: in "anon" mode GnuTLS here negotiates TLS 1.2 only; with "x509/certvalid" it
//! negotiates TLS 1.3, so a client without a certificate finishes its handshake,
//! writes, and only learns on its next read that rsyslogd closed the connection (no
//! alert, no close_notify); what it wrote is dropped. SIGTERM also closes connections
//! without close_notify; a client's first write after that still succeeds locally and
//! is lost, only later writes fail. A restarted rsyslogd binds the same port at once.
//!
//! rsyslogd's own messages (handshake failures, framing errors) are in `log()`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Pki;
use crate::util::free_port;

pub const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// `maxMessageSize`: longer messages arrive cut to this many bytes.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

const START_LIMIT: Duration = Duration::from_secs(10);
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// How the listener treats client certificates (`StreamDriver.AuthMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// "anon": no client certificate asked for. rsyslog then negotiates TLS 1.2.
    Anon,
    /// "x509/certvalid": a client certificate signed by the CA is required (any
    /// name). rsyslog then negotiates TLS 1.3.
    CertValid,
}

pub struct Rsyslog {
    dir: PathBuf,
    conf: PathBuf,
    pidfile: PathBuf,
    output: PathBuf,
    parsed: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd accepting TLS from any client that trusts the `Pki`'s CA.
    pub fn start(dir: &Path, pki: &Pki) -> Rsyslog {
        Self::start_with(dir, pki, ClientAuth::Anon)
    }

    /// Starts rsyslogd with the given client certificate policy.
    pub fn start_with(dir: &Path, pki: &Pki, auth: ClientAuth) -> Rsyslog {
        require_rsyslog();
        let dir = dir.join("rsyslog");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let mut r = Rsyslog {
            conf: dir.join("rsyslog.conf"),
            pidfile: dir.join("rsyslogd.pid"),
            output: dir.join("received.log"),
            parsed: dir.join("parsed.jsonl"),
            log: dir.join("rsyslogd.log"),
            dir,
            port: 0,
            child: None,
        };
        // The port was free when we looked; should something take it before rsyslogd
        // binds it, try another.
        for _ in 0..5 {
            r.port = free_port();
            std::fs::write(&r.conf, r.config(&work, pki, auth)).unwrap();
            let check = Command::new(RSYSLOGD)
                .arg("-N1")
                .arg("-f")
                .arg(&r.conf)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "rsyslogd refused its test config {}:\n{}{}",
                r.conf.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            if r.spawn() {
                return r;
            }
        }
        panic!("rsyslogd could not bind a port:\n{}", r.log());
    }

    /// The TLS listener's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The messages received so far, one per line, as sent (see the module doc).
    pub fn messages(&self) -> Vec<String> {
        match std::fs::read_to_string(&self.output) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// rsyslog's parse of each message received so far: JSON objects with `pri`,
    /// `version` ("1" for RFC 5424, "0" when it fell back to the BSD format),
    /// `timestamp`, `hostname`, `app_name`, `procid`, `msgid`, `structured_data`
    /// and `msg`, all strings.
    pub fn parsed(&self) -> Vec<serde_json::Value> {
        match std::fs::read_to_string(&self.parsed) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Waits until at least `n` messages were received and returns them all; panics
    /// with rsyslogd's log after `limit`.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < limit,
                "rsyslog received {} of {n} messages within {limit:?}: {got:#?}\nrsyslogd log:\n{}",
                got.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What rsyslogd reported about itself (its stderr, over all restarts).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops rsyslogd (SIGTERM, waiting for it to exit) and starts it again on the
    /// same port. Received messages are kept: the output file is appended to.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.spawn(),
            "rsyslogd could not bind 127.0.0.1:{} again:\n{}",
            self.port,
            self.log()
        );
    }

    /// SIGTERM, then waits for rsyslogd to exit (SIGKILL and a panic past 10 s).
    /// Its connections are closed without a TLS close_notify.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > STOP_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rsyslogd did not stop within {STOP_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs rsyslogd and waits until it listens on `self.port`; false when the port
    /// was taken (rsyslogd then runs on without a listener, so it is killed).
    fn spawn(&mut self) -> bool {
        let log_before = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(&self.pidfile)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {RSYSLOGD}: {e}"));
        let pid = child.id();
        self.child = Some(child);
        let start = Instant::now();
        // Watching the kernel's socket table rather than connecting keeps probes out
        // of rsyslogd's log, and tells rsyslogd's socket from anyone else's.
        while !listening(pid, self.port) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("rsyslogd exited with {status} at start:\n{}", self.log());
            }
            if self
                .log()
                .get(log_before..)
                .is_some_and(|l| l.contains("Could not create tcp listener"))
            {
                self.kill();
                return false;
            }
            if start.elapsed() > START_LIMIT {
                panic!(
                    "rsyslogd is not listening on 127.0.0.1:{} after {START_LIMIT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn config(&self, work: &Path, pki: &Pki, auth: ClientAuth) -> String {
        let mode = match auth {
            ClientAuth::Anon => "anon",
            ClientAuth::CertValid => "x509/certvalid",
        };
        format!(
            r#"# auditship test receiver: RFC 5424 over TLS (RFC 5425), octet-counted frames.
global(
  workDirectory="{work}"
  maxMessageSize="256k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp"
  streamDriver.name="gtls"
  streamDriver.mode="1"
  streamDriver.authMode="{mode}"
)

# The message exactly as received (framing removed).
template(name="auditship_raw" type="string" string="%rawmsg%\n")
# rsyslog's own RFC 5424 parse of it.
template(name="auditship_parsed" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timestamp" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}

ruleset(name="auditship") {{
  action(type="omfile" file="{output}" template="auditship_raw"
         asyncWriting="off" flushOnTXEnd="on")
  action(type="omfile" file="{parsed}" template="auditship_parsed"
         asyncWriting="off" flushOnTXEnd="on")
}}

input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="auditship"
  supportOctetCountedFraming="on" maxFrameSize="4194304" discardTruncatedMsg="on")
"#,
            work = work.display(),
            ca = pki.ca_file.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            output = self.output.display(),
            parsed = self.parsed.display(),
            port = self.port,
        )
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Panics, saying how to get them, unless rsyslogd and its TLS driver are installed.
pub fn require_rsyslog() {
    let missing = if !Path::new(RSYSLOGD).exists() {
        RSYSLOGD
    } else if gtls_driver().is_none() {
        "rsyslog's GnuTLS driver (lmnsd_gtls.so)"
    } else {
        return;
    };
    panic!(
        "{missing} is missing: the syslog tests run a real rsyslogd with TLS. \
         `bash tests/run.sh` installs it (Debian packages rsyslog and rsyslog-gnutls)."
    );
}

/// Where Debian's `rsyslog-gnutls` put the GnuTLS stream driver, on any architecture
/// (e.g. /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so).
pub fn gtls_driver() -> Option<PathBuf> {
    let multiarch = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("rsyslog/lmnsd_gtls.so"));
    std::iter::once(PathBuf::from("/usr/lib/rsyslog/lmnsd_gtls.so"))
        .chain(multiarch)
        .find(|p| p.exists())
}

/// Whether process `pid` listens on 127.0.0.1:`port`: a LISTEN socket for that
/// address in /proc/net/tcp whose inode is one of the process's open files.
fn listening(pid: u32, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1] == want && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}

/// One RFC 6587 / RFC 5425 octet-counted frame: "<length> <message>".
pub fn octet_frame(message: &str) -> Vec<u8> {
    let mut f = format!("{} ", message.len()).into_bytes();
    f.extend_from_slice(message.as_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::client_config_trusting;
    use crate::tls_server::{eventually, tls_connect};
    use crate::util::tempdir;
    use std::io::Read;

    const LIMIT: Duration = Duration::from_secs(5);

    const M1: &str =
        r#"<110>1 2026-11-26T07:06:42.123Z host app - msgid [auditship@32473 id="x"] {"a":1}"#;
    const M2: &str = r#"<110>1 2026-11-26T07:06:42.124Z host app 4242 msgid [auditship@32473 id="y" q="a\"b\]c\\"][meta@32473 k="v"] {"b":"ü"}"#;

    fn send(s: &mut impl Write, messages: &[&str]) {
        let bytes: Vec<u8> = messages.iter().flat_map(|m| octet_frame(m)).collect();
        s.write_all(&bytes).unwrap();
        s.flush().unwrap();
    }

    #[test]
    fn rsyslog_receives_octet_counted_frames_over_tls_and_after_a_restart() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let mut rsyslog = Rsyslog::start(dir.path(), &pki);

        let mut s = tls_connect(
            &rsyslog.addr(),
            "localhost",
            client_config_trusting(&pki.ca_file),
        )
        .unwrap();
        assert_eq!(
            s.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2),
            "rsyslog's gtls driver in anon mode negotiates TLS 1.2"
        );
        // Both frames in one write: the octet counts, not the writes, delimit them.
        send(&mut s, &[M1, M2]);
        assert_eq!(rsyslog.wait_for(2, LIMIT), vec![M1, M2]);

        let parsed = rsyslog.parsed();
        assert_eq!(parsed[0]["version"], "1", "{parsed:?}");
        assert_eq!(parsed[0]["pri"], "110");
        assert_eq!(parsed[0]["timestamp"], "2026-11-26T07:06:42.123Z");
        assert_eq!(parsed[0]["structured_data"], r#"[auditship@32473 id="x"]"#);
        assert_eq!(parsed[0]["msg"], r#"{"a":1}"#);
        assert_eq!(parsed[1]["procid"], "4242");
        assert_eq!(
            parsed[1]["structured_data"],
            r#"[auditship@32473 id="y" q="a\"b\]c\\"][meta@32473 k="v"]"#
        );
        assert_eq!(parsed[1]["msg"], r#"{"b":"ü"}"#);

        rsyslog.restart();
        // The old connection was closed under the client, without close_notify.
        let mut buf = [0u8; 16];
        let old = s.read(&mut buf);
        assert!(
            matches!(&old, Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
                || matches!(old, Ok(0)),
            "{old:?}"
        );

        let m3 = M1.replace("id=\"x\"", "id=\"z\"");
        let mut s = tls_connect(&rsyslog.addr(), "localhost", pki.client_config(false)).unwrap();
        send(&mut s, &[&m3]);
        assert_eq!(rsyslog.wait_for(3, LIMIT), vec![M1, M2, &m3]);
    }

    #[test]
    fn rsyslog_cuts_a_message_at_max_message_size_and_keeps_framing() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let rsyslog = Rsyslog::start(dir.path(), &pki);
        let head = "<110>1 2026-11-26T07:06:42.123Z host app - big - ";
        let fits = format!("{head}{}", "a".repeat(MAX_MESSAGE_SIZE - head.len()));
        let over = format!("{head}{}", "b".repeat(MAX_MESSAGE_SIZE));

        let mut s = tls_connect(&rsyslog.addr(), "localhost", pki.client_config(false)).unwrap();
        send(&mut s, &[&fits, &over, M1]);
        let got = rsyslog.wait_for(3, LIMIT);
        assert_eq!(got[0], fits);
        assert_eq!(got[1], over[..MAX_MESSAGE_SIZE]);
        assert_eq!(got[2], M1);
        assert!(
            rsyslog.log().contains("oversize message"),
            "{}",
            rsyslog.log()
        );
    }

    #[test]
    fn rsyslog_delivers_nothing_from_a_plain_tcp_connection() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let rsyslog = Rsyslog::start(dir.path(), &pki);

        let mut plain = std::net::TcpStream::connect(rsyslog.addr()).unwrap();
        plain.set_read_timeout(Some(LIMIT)).unwrap();
        send(&mut plain, &[M1]);
        // rsyslogd drops the connection once the handshake fails.
        let mut buf = [0u8; 64];
        let closed = plain.read(&mut buf);
        assert!(!matches!(closed, Ok(n) if n > 0), "{closed:?}");

        // A TLS message sent afterwards arrives alone.
        let mut s = tls_connect(&rsyslog.addr(), "localhost", pki.client_config(false)).unwrap();
        send(&mut s, &[M2]);
        assert_eq!(rsyslog.wait_for(1, LIMIT), vec![M2]);
        assert!(
            eventually(LIMIT, || rsyslog.log().to_lowercase().contains("gnutls")),
            "{}",
            rsyslog.log()
        );
        assert_eq!(rsyslog.messages(), vec![M2]);
    }

    #[test]
    fn rsyslog_certvalid_takes_only_clients_with_our_certificate() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let rsyslog = Rsyslog::start_with(dir.path(), &pki, ClientAuth::CertValid);

        // No client certificate: TLS 1.3 lets the client finish its handshake, then
        // rsyslogd closes the connection and drops what was sent.
        let mut s = tls_connect(&rsyslog.addr(), "localhost", pki.client_config(false)).unwrap();
        assert_eq!(
            s.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        send(&mut s, &[M1]);
        let mut buf = [0u8; 16];
        let closed = s.read(&mut buf);
        assert!(!matches!(closed, Ok(n) if n > 0), "{closed:?}");
        assert!(
            eventually(LIMIT, || rsyslog
                .log()
                .contains("did not provide a certificate")),
            "{}",
            rsyslog.log()
        );

        let mut s = tls_connect(&rsyslog.addr(), "localhost", pki.client_config(true)).unwrap();
        send(&mut s, &[M2]);
        assert_eq!(rsyslog.wait_for(1, LIMIT), vec![M2]);
        assert_eq!(rsyslog.messages(), vec![M2]);
    }

    #[test]
    fn rsyslog_that_cannot_bind_its_port_is_noticed() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let mut rsyslog = Rsyslog::start(dir.path(), &pki);
        rsyslog.stop();
        let _taken = std::net::TcpListener::bind(rsyslog.addr()).unwrap();
        assert!(!rsyslog.spawn(), "{}", rsyslog.log());
        assert!(rsyslog.child.is_none());
        assert!(rsyslog.log().contains("Could not create tcp listener"));
    }
}
