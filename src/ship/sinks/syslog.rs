//! `syslog`: RFC 5424 messages over TLS (RFC 5425), octet-counting framing
//! (`MSG-LEN SP SYSLOG-MSG`, RFC 6587), on one long-lived connection.
//!
//! A message is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [auditship@32473 ...] MSG`:
//! PRI from the configured facility (default 13, log audit) and a severity (info;
//! warning for `failure`/`denied`; error when the integrity check found a problem),
//! the event's time and host, MSGID = the action, structured data with the id and
//! key fields, and the shipped record (JSON) as MSG.
//!
//! Syslog has no acknowledgement. A batch is *sent* once written and flushed; it is
//! *confirmed*, and the cursor moves, only when the peer's TCP stack has acknowledged
//! every byte of it (the socket's unsent queue has drained past it), the connection
//! is still open, and then either a second has passed or 8 MiB more were delivered
//! after it on the same connection (more than Linux's largest default receive buffer,
//! so the receiver has read it). If the connection breaks first, everything not yet
//! confirmed is sent again on the next connection: delivery is at least once, and a
//! restart of the receiver repeats at most about a second of records, never loses
//! them. The receiver must accept messages as large as the largest record (rsyslog:
//! `global(maxMessageSize=...)`).

use super::super::Verdict;
use super::super::record::{self, Head};
use crate::config::daemon::{SinkConfig, SinkKind};
use rustls::pki_types::ServerName;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Time after which a batch delivered to the peer's TCP stack on a still-open
/// connection counts as confirmed.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// Bytes delivered after a batch on the same connection that confirm it early.
const CONFIRM_BYTES: u64 = 8 << 20;

pub struct SyslogSink {
    name: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    app_name: String,
    facility: u8,
    connect_timeout: Duration,
    write_timeout: Duration,
    conn: Option<TlsStream<TcpStream>>,
    /// Counts connections: a mark from an earlier one can no longer be confirmed.
    generation: u64,
    /// Bytes written on the current connection.
    sent: u64,
}

/// Where the stream stood after a send.
#[derive(Debug, Clone)]
pub struct Mark {
    generation: u64,
    bytes: u64,
    at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Delivered: the cursor may move past it.
    Yes,
    /// Not known yet: ask again later.
    NotYet,
    /// The connection it went out on is gone: send it again.
    Lost,
}

/// The facility number of a name (`audit` = 13, `authpriv` = 10, `local0`–`local7`
impl SyslogSink {
    pub fn new(cfg: &SinkConfig) -> Result<SyslogSink, String> {
        let SinkKind::Syslog {
            net,
            app_name,
            facility,
        } = &cfg.kind
        else {
            unreachable!("SyslogSink::new is called for syslog sinks only");
        };
        let rest = net.endpoint.strip_prefix("tls://").unwrap_or(&net.endpoint);
        let (host, port) = split_host_port(rest)
            .ok_or_else(|| format!("endpoint {:?}: expected tls://host:port", net.endpoint))?;
        let server_name = match net.tls.server_name() {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.clone())
                .map_err(|_| format!("endpoint host {host:?} is not a DNS name or IP address"))?,
        };
        let config = net.tls.client_config(true, &[])?;
        Ok(SyslogSink {
            name: cfg.name.clone(),
            host,
            port,
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            app_name: app_name.clone(),
            facility: *facility,
            connect_timeout: net.connect_timeout,
            write_timeout: net.request_timeout,
            conn: None,
            generation: 0,
            sent: 0,
        })
    }

    /// The frames for `records`: one octet-counted RFC 5424 message per record.
    pub fn encode(&self, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.len() + records.len() / 2);
        let mut msg = Vec::with_capacity(1024);
        for line in record::lines(records) {
            msg.clear();
            self.message(line, &mut msg);
            let _ = write!(out, "{} ", msg.len());
            out.extend_from_slice(&msg);
        }
        out
    }

    fn message(&self, line: &[u8], out: &mut Vec<u8>) {
        let head = Head::parse(line);
        let severity = if !head.meta.integrity_ok {
            3
        } else if matches!(head.outcome.as_deref(), Some("failure" | "denied")) {
            4
        } else {
            6
        };
        let _ = write!(out, "<{}>1 ", u32::from(self.facility) * 8 + severity);
        match head.time_nanos() {
            Some(ns) => timestamp(ns, out),
            None => out.push(b'-'),
        }
        out.push(b' ');
        header_field(head.host(), 255, out);
        out.push(b' ');
        out.extend_from_slice(self.app_name.as_bytes());
        out.extend_from_slice(b" - ");
        header_field(head.action.as_deref(), 32, out);
        out.extend_from_slice(b" [auditship@32473");
        let id = record::id(line).or(head.id());
        let params = [
            ("id", id),
            ("action", head.action.as_deref()),
            ("outcome", head.outcome.as_deref()),
            ("user", head.user_id.as_deref()),
            ("session", head.session_id.as_deref()),
            ("resource", head.resource.as_deref()),
        ];
        for (k, v) in params {
            if let Some(v) = v {
                sd_param(k, v, out);
            }
        }
        if let Some(seq) = head.seq {
            let _ = write!(out, " seq=\"{seq}\"");
        }
        let _ = write!(
            out,
            " integrity=\"{}\"] ",
            if head.meta.integrity_ok {
                "ok"
            } else {
                "problem"
            }
        );
        out.extend_from_slice(line);
    }

    async fn connect(&mut self) -> Result<(), String> {
        let addr = (self.host.as_str(), self.port);
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect: timeout".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            self.connect_timeout,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| "TLS handshake: timeout".to_string())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
        self.conn = Some(tls);
        self.generation += 1;
        self.sent = 0;
        tracing::info!(sink = %self.name, host = %self.host, port = self.port, "syslog connection open");
        Ok(())
    }

    pub async fn send(&mut self, records: &bytes::Bytes) -> Verdict {
        if self.conn.is_some() && self.probe().is_err() {
            self.conn = None;
        }
        if self.conn.is_none()
            && let Err(reason) = self.connect().await
        {
            return Verdict::Retry {
                reason,
                after: None,
            };
        }
        let frames = self.encode(records);
        let Some(conn) = self.conn.as_mut() else {
            return Verdict::Retry {
                reason: "not connected".into(),
                after: None,
            };
        };
        let write = async {
            conn.write_all(&frames).await?;
            conn.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => {
                self.sent += frames.len() as u64;
                Verdict::Success
            }
            Ok(Err(e)) => {
                self.conn = None;
                Verdict::Retry {
                    reason: format!("write: {e}"),
                    after: None,
                }
            }
            Err(_) => {
                self.conn = None;
                Verdict::Retry {
                    reason: "write: timeout".into(),
                    after: None,
                }
            }
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            generation: self.generation,
            bytes: self.sent,
            at: Instant::now(),
        }
    }

    pub fn confirm(&mut self, mark: &Mark) -> Confirm {
        if mark.generation != self.generation || self.conn.is_none() {
            return Confirm::Lost;
        }
        let unsent = match self.probe() {
            Ok(u) => u,
            Err(()) => {
                self.conn = None;
                return Confirm::Lost;
            }
        };
        // TLS framing makes `unsent` slightly larger than the plain bytes it holds:
        // this errs on the side of waiting.
        let delivered = self.sent.saturating_sub(unsent);
        if delivered < mark.bytes {
            return Confirm::NotYet;
        }
        if mark.at.elapsed() >= CONFIRM_AFTER || delivered - mark.bytes >= CONFIRM_BYTES {
            Confirm::Yes
        } else {
            Confirm::NotYet
        }
    }

    /// Checks the connection without blocking: `Err` if the peer closed it or it
    /// failed, else the bytes the peer's TCP stack has not acknowledged yet.
    fn probe(&mut self) -> Result<u64, ()> {
        use futures_util::FutureExt;
        let conn = self.conn.as_mut().ok_or(())?;
        let mut buf = [0u8; 512];
        // Receivers send nothing but TLS housekeeping: read whatever is there, to
        // notice a close or an alert.
        loop {
            match conn.read(&mut buf).now_or_never() {
                None => break,
                Some(Ok(0)) | Some(Err(_)) => return Err(()),
                Some(Ok(_)) => continue,
            }
        }
        Ok(unacked_bytes(conn.get_ref().0))
    }
}

#[cfg(target_os = "linux")]
fn unacked_bytes(tcp: &TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int, the size of the socket's unacknowledged send
    // queue, to the pointer given.
    let rc = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 { n.max(0) as u64 } else { 0 }
}

#[cfg(not(target_os = "linux"))]
fn unacked_bytes(_tcp: &TcpStream) -> u64 {
    0
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim_end_matches('/');
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ`, as RFC 5424 allows (at most 6 fraction digits).
fn timestamp(ns: i128, out: &mut Vec<u8>) {
    let (y, m, d) = crate::clock::civil_date(ns);
    let secs = ns.div_euclid(1_000_000_000);
    let sod = secs.rem_euclid(86_400) as u32;
    let ms = (ns.rem_euclid(1_000_000_000) / 1_000_000) as u32;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

/// A header field: printable US-ASCII only, at most `max` bytes, `-` when empty.
fn header_field(v: Option<&str>, max: usize, out: &mut Vec<u8>) {
    let start = out.len();
    if let Some(v) = v {
        out.extend(v.bytes().filter(|b| (33..=126).contains(b)).take(max));
    }
    if out.len() == start {
        out.push(b'-');
    }
}

/// ` name="value"` with `"`, `\` and `]` escaped as RFC 5424 requires.
fn sd_param(name: &str, value: &str, out: &mut Vec<u8>) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for b in value.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::{Compression, NetConfig};
    use crate::config::sinks::facility;

    fn sink() -> SyslogSink {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = SinkConfig {
            name: "syslog".into(),
            kind: SinkKind::Syslog {
                net: NetConfig {
                    endpoint: "tls://127.0.0.1:6514".into(),
                    tls: Default::default(),
                    proxy: None,
                    connect_timeout: Duration::from_secs(1),
                    request_timeout: Duration::from_secs(1),
                },
                app_name: "auditship".into(),
                facility: 13,
            },
            compression: Compression::None,
            max_events: 10,
            max_bytes: 1 << 20,
            max_wait: Duration::ZERO,
            max_in_flight: 1,
            retry_initial: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(1),
        };
        SyslogSink::new(&cfg).unwrap()
    }

    #[test]
    fn golden_frames() {
        let rec = r#"{"action":"tool_execution","host":"dev box","outcome":"denied","resource":"rm -rf \"x\" ]","seq":7,"session_id":"s1","timestamp":"2026-11-26T07:06:42.123456Z","user_id":"dev@example.com","_auditship":{"v":1,"id":"abc","host":"agent","integrity":{"ok":true,"problems":[]}}}"#;
        let got = String::from_utf8(sink().encode(format!("{rec}\n").as_bytes())).unwrap();
        let msg = format!(
            "<108>1 2026-11-26T07:06:42.123Z devbox auditship - tool_execution [auditship@32473 id=\"abc\" action=\"tool_execution\" outcome=\"denied\" user=\"dev@example.com\" session=\"s1\" resource=\"rm -rf \\\"x\\\" \\]\" seq=\"7\" integrity=\"ok\"] {rec}"
        );
        assert_eq!(got, format!("{} {msg}", msg.len()));
    }

    #[test]
    fn facilities_and_endpoints() {
        assert_eq!(facility("audit"), Some(13));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("4"), Some(4));
        assert_eq!(facility("24"), None);
        assert_eq!(facility("bogus"), None);
        assert_eq!(
            split_host_port("logs.example.com:6514"),
            Some(("logs.example.com".into(), 6514))
        );
        assert_eq!(split_host_port("[::1]:6514"), Some(("::1".into(), 6514)));
        assert_eq!(split_host_port("nohost"), None);
    }
}
