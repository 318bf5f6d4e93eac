//! A small HTTP/1.1 server core for the test servers (`sink`, `siem`): requests read
//! from a keep-alive connection (Content-Length or chunked bodies, `Expect:
//! 100-continue`, gzip bodies decoded), answers written with a Content-Length, and a
//! listener on 127.0.0.1 that serves each connection on its own std thread until the
//! server is dropped. No tokio: the tests drive the real binary and need nothing more.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received. `body` is decoded: de-chunked, and gunzipped when the
/// request said `Content-Encoding: gzip`.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// `target` without the query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes of body on the wire (before gunzip).
    pub wire_len: usize,
    pub gzip: bool,
    pub chunked: bool,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// True when the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed or closed mid-request: nothing to answer.
    Io(std::io::Error),
    /// The bytes are not a request we can read (bad framing, bad gzip): answer 400
    /// and close.
    Malformed(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn line(r: &mut impl BufRead) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Malformed("request head is not UTF-8".into()))
}

/// Reads the next request of a connection; `Ok(None)` when the client closed it
/// cleanly between requests. `conn` gets `100 Continue` when the client expects it.
pub fn read_request(
    r: &mut impl BufRead,
    conn: &mut impl Write,
) -> Result<Option<Request>, ReadError> {
    let request_line = loop {
        match line(r)? {
            None => return Ok(None),
            // RFC 9112 2.2: a server SHOULD ignore empty lines before the request line.
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(format!(
            "bad request line {request_line:?}"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed(format!(
            "unsupported version {version}"
        )));
    }
    let mut headers = Vec::new();
    loop {
        let Some(h) = line(r)? else {
            return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        };
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(ReadError::Malformed(format!("bad header line {h:?}")));
        };
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers,
        body: Vec::new(),
        wire_len: 0,
        gzip: false,
        chunked: false,
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    req.chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if req.chunked {
        loop {
            let Some(size_line) = line(r)? else {
                return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            };
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| ReadError::Malformed(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    match line(r)? {
                        Some(t) if t.is_empty() => break,
                        Some(_) => {}
                        None => {
                            return Err(
                                std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()
                            );
                        }
                    }
                }
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            match line(r)? {
                Some(l) if l.is_empty() => {}
                _ => return Err(ReadError::Malformed("chunk not followed by CRLF".into())),
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Malformed(format!("bad Content-Length {len:?}")))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    req.wire_len = body.len();
    req.gzip = req
        .header("content-encoding")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if req.gzip {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(|e| ReadError::Malformed(format!("body is not valid gzip: {e}")))?;
        body = out;
    }
    req.body = body;
    Ok(Some(req))
}

/// An answer to write back.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(body.to_string().into_bytes())
    }

    pub fn header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn body(mut self, b: Vec<u8>) -> Response {
        self.body = b;
        self
    }
}

/// What a handler does with one request.
#[derive(Debug, Clone)]
pub enum Answer {
    Respond(Response),
    /// Close the connection without answering.
    Reset,
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes `resp` with a Content-Length (and `Connection: close` when `close`).
pub fn write_response(w: &mut impl Write, resp: &Response, close: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    w.write_all(&out)?;
    w.flush()
}

pub type Handler = Arc<dyn Fn(Request) -> Answer + Send + Sync>;

/// A listening server on 127.0.0.1: one thread accepts, one thread per connection
/// serves requests in turn through the handler. Dropping it stops accepting and shuts
/// every open connection down, so a client sees the server go away.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    stop: Arc<AtomicBool>,
    conns: Conns,
}

/// Open connections by number, so `Drop` can shut them down.
type Conns = Arc<Mutex<HashMap<u64, TcpStream>>>;

impl Server {
    pub fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Conns = Arc::new(Mutex::new(HashMap::new()));
        {
            let (stop, conns) = (stop.clone(), conns.clone());
            std::thread::spawn(move || {
                let mut next = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            conn.set_nonblocking(false).ok();
                            next += 1;
                            if let Ok(c) = conn.try_clone() {
                                conns.lock().unwrap().insert(next, c);
                            }
                            let (handler, conns, id) = (handler.clone(), conns.clone(), next);
                            std::thread::spawn(move || {
                                serve_connection(conn, handler);
                                if let Some(c) = conns.lock().unwrap().remove(&id) {
                                    let _ = c.shutdown(Shutdown::Both);
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        Server { url, stop, conns }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, c) in self.conns.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Serves requests of one connection until it closes, fails, or is to be closed.
fn serve_connection(conn: TcpStream, handler: Handler) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    conn.set_nodelay(true).ok();
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut conn = conn;
    loop {
        let req = match read_request(&mut reader, &mut conn) {
            Ok(Some(r)) => r,
            Ok(None) | Err(ReadError::Io(_)) => return,
            Err(ReadError::Malformed(why)) => {
                let resp = Response::new(400)
                    .header("Content-Type", "text/plain")
                    .body(why.into_bytes());
                let _ = write_response(&mut conn, &resp, true);
                return;
            }
        };
        let close = req.wants_close();
        match handler(req) {
            Answer::Reset => return,
            Answer::Respond(resp) => {
                if write_response(&mut conn, &resp, close).is_err() || close {
                    return;
                }
            }
        }
    }
}

/// A response as a hand-written test client reads it.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Test client side: reads one response (Content-Length framed, as these servers
/// answer) from a connection. For the servers' self-tests, which write requests by
/// hand.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<ClientResponse> {
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(ClientResponse {
        status,
        headers,
        body,
    })
}
