//! The receiver's HTTP/1.1 side: `POST /v1/logs` on a loopback listener, keep-alive,
//! `Content-Length` or chunked bodies, `Expect: 100-continue`, gzip.
//!
//! Answers, as OTLP/HTTP has them: 200 with an `ExportLogsServiceResponse` in the
//! request's encoding (`partialSuccess` counting the records that are not Claude
//! Code's); 400 for a body that does not decode; 413 past `max_body_bytes`, on the
//! wire or once decompressed; 415 for another content type or encoding; 503 with
//! `Retry-After` when the bytes of requests in flight are at their bound or a stream
//! cannot be written (the exporter retries); 403 when the kernel cannot say which
//! local user sent the connection. Error bodies are `google.rpc.Status`. Paths other
//! than `/v1/logs` are 404, methods other than POST 405.
//!
//! Each connection finds its user once, after `accept` ([`super::peer`]); each
//! body is decoded and mapped off the async workers, then handed to the sealing
//! thread ([`super::stream`]); the answer waits for it.

use super::map::{self, Sender, Settings as MapSettings};
use super::peer::{self, User};
use super::stream::{Target, Writer};
use super::{DecodeError, Stats, json, proto};
use crate::compliance::ComplianceRules;
use crate::record::content::Keep;
use crate::redact::Redactor;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The request head may not exceed this (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A kept-alive connection may sit idle this long between requests.
const IDLE: Duration = Duration::from_secs(120);
/// A request, once begun, must arrive within this.
const REQUEST_TIME: Duration = Duration::from_secs(60);
/// Connections served at once; past this a connection is answered 503 and closed.
const MAX_CONNECTIONS: usize = 256;
/// What Claude Code's exporter is told to wait before it sends a refused body again.
const RETRY_AFTER_SECS: u64 = 1;

/// What the receiver runs on.
pub struct Settings {
    pub max_body_bytes: usize,
    /// Bytes that requests in flight (read, decoded, waiting to be sealed) may hold
    /// together; past it new bodies are answered 503.
    pub max_pending_bytes: usize,
    pub host: String,
    pub redactor: Redactor,
    pub compliance: ComplianceRules,
    pub keep: Keep,
    /// Local user name → enterprise identity (`user_id`).
    pub users: BTreeMap<String, String>,
    /// The daemon's own user: its `[record] user_id` and `[record.identity]`, which
    /// apply to telemetry sent by that same user.
    pub own: Option<Own>,
    pub target: Target,
    /// Wakes the daemon's reader when a user's stream is new (its directory is not
    /// watched yet), so it ships without waiting for the next rescan.
    pub wake: Option<crate::watch::Waker>,
}

/// The daemon's own user and the identity `record` gives it.
#[derive(Debug, Clone)]
pub struct Own {
    pub uid: u32,
    pub user_id: Option<String>,
    pub identity: Map<String, Value>,
}

/// Shared by the connections of one receiver.
struct Shared {
    settings: Settings,
    stats: Arc<Stats>,
    writer: Writer,
    pending: AtomicUsize,
}

impl Shared {
    /// Who `uid` is, for the records it sends, and the name of its stream.
    fn sender(&self, uid: u32) -> (Sender, String) {
        let user = User::of(uid);
        let dir = user.dir_name();
        let s = &self.settings;
        let own = s.own.as_ref().filter(|o| o.uid == uid);
        let user_id = own
            .and_then(|o| o.user_id.clone())
            .or_else(|| user.name.as_ref().and_then(|n| s.users.get(n).cloned()))
            .or_else(|| user.name.clone())
            .unwrap_or_else(|| format!("uid:{uid}"));
        let identity = own.map(|o| o.identity.clone()).unwrap_or_default();
        (
            Sender {
                uid,
                user_id,
                identity,
            },
            dir,
        )
    }

    /// Holds `n` more bytes for a request, or `None` when that passes the bound.
    fn reserve(self: &Arc<Self>, n: usize) -> Option<Reserved> {
        let limit = self.settings.max_pending_bytes;
        let mut now = self.pending.load(Ordering::Relaxed);
        loop {
            let next = now.checked_add(n).filter(|v| *v <= limit)?;
            match self
                .pending
                .compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(Reserved(self.clone(), n)),
                Err(v) => now = v,
            }
        }
    }
}

/// Bytes held for a request, given back when dropped.
struct Reserved(Arc<Shared>, usize);

impl Reserved {
    /// Holds `other`'s bytes with these, until this one is dropped.
    fn absorb(&mut self, mut other: Reserved) {
        self.1 += std::mem::take(&mut other.1);
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// A bound listener with its sealing thread, until [`Receiver::serve`] returns.
pub struct Receiver {
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Binds `addr` (loopback, checked when the configuration was loaded) and starts
    /// the sealing thread.
    pub async fn bind(
        addr: SocketAddr,
        settings: Settings,
        stats: Arc<Stats>,
    ) -> std::io::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let writer = Writer::start(
            settings.target.clone(),
            stats.clone(),
            settings.wake.clone(),
        )?;
        Ok(Receiver {
            listener,
            shared: Arc::new(Shared {
                settings,
                stats,
                writer,
                pending: AtomicUsize::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel`; then stops accepting, lets the requests in flight
    /// finish (idle connections close), and seals what was handed over.
    pub async fn serve(self, cancel: CancellationToken) {
        let tracker = TaskTracker::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = cancel.cancelled() => break,
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry receiver: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let shared = self.shared.clone();
            let cancel = cancel.clone();
            match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    tracker.spawn(async move {
                        let _slot = slot;
                        connection(sock, peer, shared, cancel).await;
                    });
                }
                Err(_) => {
                    tracker.spawn(async move {
                        let (_, mut wr) = sock.into_split();
                        let answer = Answer::error(503, Encoding::Json, "too many connections");
                        shared.stats.answered(503);
                        let _ = answer.write(&mut wr, true).await;
                    });
                }
            }
        }
        drop(self.listener);
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("telemetry receiver: requests still in flight at stop");
        }
        // Every connection has ended: the sealing thread seals what it was handed and
        // stops. (After the timeout, the last connection to end stops it instead.)
        if let Ok(shared) = Arc::try_unwrap(self.shared) {
            let writer = shared.writer;
            let _ = tokio::task::spawn_blocking(move || writer.stop()).await;
        }
    }
}

/// How a body (and our answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// A request head.
#[derive(Debug, Default)]
struct Head {
    method: String,
    path: String,
    content_length: Option<usize>,
    chunked: bool,
    content_type: Option<String>,
    content_encoding: Option<String>,
    expect_continue: bool,
    close: bool,
}

/// One answer.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Answer {
    fn ok(encoding: Encoding, rejected: u64, message: &str) -> Answer {
        let (content_type, body) = match encoding {
            Encoding::Protobuf => ("application/x-protobuf", proto::response(rejected, message)),
            Encoding::Json => ("application/json", json::response(rejected, message)),
        };
        Answer {
            status: 200,
            content_type,
            body,
        }
    }

    fn error(status: u16, encoding: Encoding, message: &str) -> Answer {
        // google.rpc.Code: INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND,
        // RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAVAILABLE.
        let code = match status {
            400 | 415 => 3,
            403 => 7,
            404 => 5,
            413 => 8,
            405 => 12,
            _ => 14,
        };
        let (content_type, body) = match encoding {
            Encoding::Protobuf => ("application/x-protobuf", proto::status(code, message)),
            Encoding::Json => ("application/json", json::status(code, message)),
        };
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn write(&self, wr: &mut OwnedWriteHalf, close: bool) -> std::io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            415 => "Unsupported Media Type",
            _ => "Service Unavailable",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 503 {
            head.push_str(&format!("Retry-After: {RETRY_AFTER_SECS}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        wr.write_all(&out).await?;
        if close {
            let _ = wr.shutdown().await;
        }
        Ok(())
    }
}

/// Serves one connection: requests one after the other until the peer closes, asks
/// to, a request cannot be read to its end, or the receiver stops.
async fn connection(
    sock: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    // Who sent it, once per connection (the kernel's table, the password database).
    let sender = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || peer::uid_of(peer, local).map(|uid| shared.sender(uid)))
            .await
            .ok()
            .flatten()
    };
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    loop {
        let head = tokio::select! {
            h = tokio::time::timeout(IDLE, read_head(&mut rd)) => h,
            _ = cancel.cancelled() => return,
        };
        let head = match head {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                shared.stats.answered(400);
                let _ = Answer::error(400, Encoding::Json, &e)
                    .write(&mut wr, true)
                    .await;
                return;
            }
            Ok(Ok(Some(h))) => h,
        };
        let exchange = exchange(&head, &mut rd, &mut wr, sender.as_ref(), &shared);
        let (answer, close) = match tokio::time::timeout(REQUEST_TIME, exchange).await {
            Ok(r) => r,
            Err(_) => (
                Answer::error(400, Encoding::Json, "the request did not arrive in time"),
                true,
            ),
        };
        shared.stats.answered(answer.status);
        let close = close || head.close;
        if answer.write(&mut wr, close).await.is_err() || close {
            return;
        }
    }
}

/// Reads one request's body and answers it: the answer, and whether the connection
/// must close after it (the body was not read to its end).
async fn exchange(
    head: &Head,
    rd: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    sender: Option<&(Sender, String)>,
    shared: &Arc<Shared>,
) -> (Answer, bool) {
    let encoding = match head.content_type.as_deref().map(media_type) {
        Some(t) if t == "application/x-protobuf" || t == "application/protobuf" => {
            Some(Encoding::Protobuf)
        }
        Some(t) if t == "application/json" => Some(Encoding::Json),
        _ => None,
    };
    let reply = encoding.unwrap_or(Encoding::Json);
    let refuse = |status, message: &str| (Answer::error(status, reply, message), true);
    if head.path != "/v1/logs" {
        return refuse(404, "not found: this receiver takes OTLP logs at /v1/logs");
    }
    if head.method != "POST" {
        return refuse(405, "POST only");
    }
    let Some(encoding) = encoding else {
        return refuse(
            415,
            "expected Content-Type application/x-protobuf or application/json",
        );
    };
    let gzip = match head.content_encoding.as_deref().map(str::trim) {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(_) => return refuse(415, "expected Content-Encoding gzip or none"),
    };
    let max = shared.settings.max_body_bytes;
    if head.content_length.is_some_and(|n| n > max) {
        return refuse(413, &format!("the body exceeds {max} bytes"));
    }
    let Some(sender) = sender else {
        tracing::warn!("telemetry receiver: no local user owns the connecting socket; refused");
        return refuse(403, "cannot tell which local user sent this connection");
    };
    let Some(reserved) = shared.reserve(head.content_length.unwrap_or(max)) else {
        return refuse(503, "the receiver is busy; send again later");
    };
    if head.expect_continue
        && wr
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return refuse(400, "connection lost");
    }
    let body = match read_body(head, rd, max).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return refuse(413, &format!("the body exceeds {max} bytes")),
        Err(BodyError::Bad(e)) => return refuse(400, &e),
    };
    let answer = accept(body, gzip, encoding, sender.clone(), shared, reserved).await;
    (answer, false)
}

/// Decodes, maps and seals a body; the answer once its events are durable.
async fn accept(
    body: Vec<u8>,
    gzip: bool,
    encoding: Encoding,
    (sender, user): (Sender, String),
    shared: &Arc<Shared>,
    mut reserved: Reserved,
) -> Answer {
    let work = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || decode_and_map(body, gzip, encoding, &sender, &shared))
    };
    let mapped = match work.await {
        Ok(Ok(done)) => done,
        Ok(Err((status, message))) => return Answer::error(status, encoding, &message),
        Err(e) => {
            tracing::error!(error = %e, "telemetry receiver: decoding task failed");
            return Answer::error(503, encoding, "internal error; send again later");
        }
    };
    let events = mapped.events;
    let text_bytes: usize = events.iter().map(String::len).sum();
    match shared.reserve(text_bytes) {
        Some(more) => reserved.absorb(more),
        None => return Answer::error(503, encoding, "the receiver is busy; send again later"),
    }
    for p in &mapped.hook_problems {
        tracing::warn!(hook_event = %p.hook_event, kind = p.kind, runs = p.runs, session = %p.session_id, "Claude Code reports a hook run of auditship's hook point cancelled or failed");
        shared.stats.hook_problem(p);
    }
    if !events.is_empty() {
        match shared.writer.submit(user, events).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Answer::error(
                    503,
                    encoding,
                    &format!("not stored ({e}); send again later"),
                );
            }
            Err(_) => {
                return Answer::error(503, encoding, "the receiver is stopping; send again later");
            }
        }
    }
    drop(reserved);
    if mapped.refused > 0 {
        shared
            .stats
            .records_refused
            .fetch_add(mapped.refused, Ordering::Relaxed);
        let message = format!(
            "{} log record(s) are not Claude Code events (body claude_code.<event>); only those are kept",
            mapped.refused
        );
        return Answer::ok(encoding, mapped.refused, &message);
    }
    Answer::ok(encoding, 0, "")
}

/// A body's events as JSON text, and what else its mapping found.
struct Decoded {
    events: Vec<String>,
    refused: u64,
    hook_problems: Vec<map::HookProblem>,
}

/// The blocking part of a body: gunzip, decode, map, write the events' JSON. `Err`
/// is the status and message to answer.
fn decode_and_map(
    body: Vec<u8>,
    gzip: bool,
    encoding: Encoding,
    sender: &Sender,
    shared: &Shared,
) -> Result<Decoded, (u16, String)> {
    let max = shared.settings.max_body_bytes;
    let body = if gzip { gunzip(&body, max)? } else { body };
    let export = match encoding {
        Encoding::Protobuf => proto::decode(&body),
        Encoding::Json => json::decode(&body),
    }
    .map_err(|DecodeError(e)| (400, e))?;
    drop(body);
    let s = &shared.settings;
    let settings = MapSettings {
        host: &s.host,
        redactor: &s.redactor,
        compliance: &s.compliance,
        keep: s.keep,
    };
    let timestamp = crate::clock::utc_now().0;
    let mapped = map::map_export(export, &settings, sender, &timestamp, || {
        uuid::Uuid::new_v4().to_string()
    });
    let events = mapped
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_else(|_| "{}".into()))
        .collect();
    Ok(Decoded {
        events,
        refused: mapped.refused,
        hook_problems: mapped.hook_problems,
    })
}

/// A gzip body, decompressed to at most `max` bytes.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, (u16, String)> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(max as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| (400, format!("the gzip body does not decompress: {e}")))?;
    if out.len() > max {
        return Err((413, format!("the decompressed body exceeds {max} bytes")));
    }
    Ok(out)
}

/// `type/subtype` of a Content-Type, lowercase, without parameters.
fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads a line ending in `\n` (without it and a `\r` before it), at most `max`
/// bytes; `None` at end of stream before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    loop {
        let buf = rd.fill_buf().await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err("the connection closed mid-line".into())
            };
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        rd.consume(take);
        if line.len() > max {
            return Err("the request head is too large".into());
        }
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return String::from_utf8(line)
                .map(Some)
                .map_err(|_| "the request head is not UTF-8".into());
        }
    }
}

/// Reads a request head; `None` when the connection ended cleanly before one.
async fn read_head<R: AsyncBufRead + Unpin>(rd: &mut R) -> Result<Option<Head>, String> {
    let mut budget = MAX_HEAD_BYTES;
    let request_line = loop {
        match read_line(rd, budget).await? {
            None => return Ok(None),
            // Blank lines before a request are allowed (RFC 9112, 2.2).
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    budget = budget.saturating_sub(request_line.len());
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line".into());
    };
    if !version.starts_with("HTTP/1.") {
        return Err("HTTP/1.x only".into());
    }
    let mut head = Head {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or("").to_owned(),
        close: version == "HTTP/1.0",
        ..Head::default()
    };
    loop {
        let Some(line) = read_line(rd, budget).await? else {
            return Err("the connection closed in the request head".into());
        };
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err("malformed header line".into());
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<usize>()
                    .map_err(|_| "malformed Content-Length".to_string())?;
                if head.content_length.is_some_and(|m| m != n) {
                    return Err("conflicting Content-Length headers".into());
                }
                head.content_length = Some(n);
            }
            "transfer-encoding" => {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                if !last.eq_ignore_ascii_case("chunked") {
                    return Err("only chunked transfer coding is understood".into());
                }
                head.chunked = true;
            }
            "content-type" => head.content_type = Some(value.to_owned()),
            "content-encoding" => head.content_encoding = Some(value.to_owned()),
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.close = true;
                    } else if token.eq_ignore_ascii_case("keep-alive") {
                        head.close = false;
                    }
                }
            }
            _ => {}
        }
    }
    if head.chunked {
        // A chunked body's length is its chunks' (RFC 9112, 6.3).
        head.content_length = None;
    }
    Ok(Some(head))
}

enum BodyError {
    TooLarge,
    Bad(String),
}

/// Reads the body the head announces, at most `max` bytes.
async fn read_body<R: AsyncBufRead + Unpin>(
    head: &Head,
    rd: &mut R,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    let lost = |e: std::io::Error| BodyError::Bad(format!("the body was cut short: {e}"));
    if !head.chunked {
        let n = head.content_length.unwrap_or(0);
        if n > max {
            return Err(BodyError::TooLarge);
        }
        let mut body = vec![0u8; n];
        rd.read_exact(&mut body).await.map_err(lost)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    loop {
        let line = read_line(rd, 1024)
            .await
            .map_err(BodyError::Bad)?
            .ok_or_else(|| BodyError::Bad("the body was cut short".into()))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| BodyError::Bad("malformed chunk size".into()))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                match read_line(rd, MAX_HEAD_BYTES)
                    .await
                    .map_err(BodyError::Bad)?
                {
                    Some(l) if !l.is_empty() => continue,
                    _ => return Ok(body),
                }
            }
        }
        if body.len() + size > max {
            return Err(BodyError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        rd.read_exact(&mut body[start..]).await.map_err(lost)?;
        let mut crlf = [0u8; 2];
        rd.read_exact(&mut crlf).await.map_err(lost)?;
        if &crlf != b"\r\n" {
            return Err(BodyError::Bad("a chunk does not end in CRLF".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut rd = BufReader::new(text.as_bytes());
            read_head(&mut rd).await
        })
    }

    fn body(text: &str, max: usize) -> Result<Vec<u8>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut rd = BufReader::new(text.as_bytes());
            let h = read_head(&mut rd).await?.unwrap();
            read_body(&h, &mut rd, max).await.map_err(|e| match e {
                BodyError::TooLarge => "too large".to_string(),
                BodyError::Bad(e) => e,
            })
        })
    }

    #[test]
    fn heads() {
        let h = head("\r\nPOST /v1/logs?x=1 HTTP/1.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\nContent-Encoding: gzip\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("POST", "/v1/logs"));
        assert_eq!(h.content_length, Some(3));
        assert!(h.expect_continue && !h.close && !h.chunked);
        assert_eq!(h.content_encoding.as_deref(), Some("gzip"));
        assert!(head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().close);
        assert!(head("").unwrap().is_none());
        for bad in [
            "GET\r\n\r\n",
            "GET / SPDY/3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nno colon\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let huge = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert!(head(&huge).is_err());
    }

    #[test]
    fn bodies() {
        assert_eq!(
            body("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcdef", 10).unwrap(),
            b"abc"
        );
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
        assert_eq!(body(chunked, 10).unwrap(), b"abcde");
        assert_eq!(body(chunked, 4).unwrap_err(), "too large");
        assert!(body("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab", 10).is_err());
        assert!(
            body(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                10
            )
            .is_err()
        );
        assert!(
            body(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
                10
            )
            .is_err()
        );
    }

    #[test]
    fn gzip_is_bounded() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&[b'a'; 1000]).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(gunzip(&gz, 1000).unwrap().len(), 1000);
        assert_eq!(gunzip(&gz, 999).unwrap_err().0, 413);
        assert_eq!(gunzip(b"not gzip", 1000).unwrap_err().0, 400);
    }
}
