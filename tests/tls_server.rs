//! Loopback peers for the TLS tests, on std threads: an HTTPS server that records
//! what it is sent (`TlsHttpServer`), an HTTP proxy for `CONNECT` tunnels and
//! absolute-form requests (`ConnectProxy`), and a minimal rustls client to prove them.
//!
//! The server speaks HTTP/1.1 only (ALPN "http/1.1"), keeps connections alive, reads
//! Content-Length and chunked bodies, gunzips `Content-Encoding: gzip` bodies and
//! answers every request `200 OK` with `{}`. Any connection whose TLS handshake does
//! not complete (wrong CA, missing client certificate, a bare TCP probe) counts as a
//! handshake failure. Both peers stop accepting and cut their open connections when
//! dropped.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::pki::Pki;

/// One request as the HTTPS server received it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent (origin-form, e.g. `/_bulk`).
    pub target: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    /// Whether the client presented a certificate during the handshake.
    pub client_cert: bool,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Accept loop, live connections and a stop flag shared by both peers.
struct Listener {
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Listener {
    /// Binds 127.0.0.1:0 and hands every accepted connection to `serve` on its own
    /// thread. Returns the bound address.
    fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> (Listener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let serve = Arc::new(serve);
        {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
                            if let Ok(c) = conn.try_clone() {
                                open.lock().unwrap().push(c);
                            }
                            let serve = serve.clone();
                            std::thread::spawn(move || serve(conn));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        (Listener { stop, open }, addr)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

#[derive(Default)]
struct ServerState {
    requests: Mutex<Vec<HttpRequest>>,
    handshake_errors: Mutex<Vec<String>>,
}

/// A loopback HTTPS server presenting the `Pki`'s server certificate.
pub struct TlsHttpServer {
    /// "https://127.0.0.1:PORT"
    pub url: String,
    /// "127.0.0.1:PORT"
    pub addr: String,
    state: Arc<ServerState>,
    _listener: Listener,
}

impl TlsHttpServer {
    /// Starts the server. With `require_client_cert`, a client must present a
    /// certificate signed by the `Pki`'s CA or its handshake fails.
    pub fn start(pki: &Pki, require_client_cert: bool) -> TlsHttpServer {
        let mut config = pki.server_config(require_client_cert);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let state = Arc::new(ServerState::default());
        let (listener, addr) = {
            let state = state.clone();
            Listener::start(move |conn| serve_https(conn, config.clone(), &state))
        };
        TlsHttpServer {
            url: format!("https://{addr}"),
            addr,
            state,
            _listener: listener,
        }
    }

    /// Complete requests received (each answered 200).
    pub fn requests(&self) -> u64 {
        self.state.requests.lock().unwrap().len() as u64
    }

    /// Connections whose TLS handshake failed or was abandoned.
    pub fn handshake_failures(&self) -> u64 {
        self.state.handshake_errors.lock().unwrap().len() as u64
    }

    /// Why each failed handshake failed, as rustls put it (e.g. "received fatal
    /// alert: UnknownCA", "peer sent no certificates").
    pub fn handshake_errors(&self) -> Vec<String> {
        self.state.handshake_errors.lock().unwrap().clone()
    }

    /// Request bodies in arrival order, gunzipped.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.received().into_iter().map(|r| r.body).collect()
    }

    /// Every request in arrival order, with its headers.
    pub fn received(&self) -> Vec<HttpRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn serve_https(mut sock: TcpStream, config: Arc<rustls::ServerConfig>, state: &ServerState) {
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            state.handshake_errors.lock().unwrap().push(e.to_string());
            return;
        }
    }
    let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, sock));
    loop {
        let Ok(Some(head)) = read_head(&mut reader) else {
            return;
        };
        if head
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && reader
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            return;
        }
        let Ok(mut body) = read_body(&mut reader, &head.headers) else {
            return;
        };
        if head
            .header("content-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("a gzip body that gunzips");
            body = out;
        }
        let close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        state.requests.lock().unwrap().push(HttpRequest {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            client_cert,
        });
        let stream = reader.get_mut();
        let reply =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        if stream
            .write_all(reply)
            .and_then(|_| stream.flush())
            .is_err()
            || close
        {
            stream.conn.send_close_notify();
            let _ = stream.flush();
            return;
        }
    }
}

/// What the proxy was asked to do.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// "CONNECT", or the method of a forwarded request.
    pub method: String,
    /// "host:port" for CONNECT, the absolute URI otherwise.
    pub target: String,
    pub proxy_authorization: Option<String>,
}

#[derive(Default)]
struct ProxyState {
    tunnels: AtomicU64,
    forwarded: AtomicU64,
    seen: Mutex<Vec<ProxyRequest>>,
    /// Connections still to be answered 407.
    refuse: AtomicU64,
    refused: AtomicU64,
}

impl ProxyState {
    /// True (and one fewer to go) while connections are to be refused.
    fn take_refusal(&self) -> bool {
        let taken = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if taken {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
}

/// A loopback HTTP proxy: `CONNECT host:port` opens a tunnel; an absolute-form
/// request (`POST http://127.0.0.1:PORT/path HTTP/1.1`) is forwarded in origin-form
/// with the hop-by-hop `Proxy-*` headers removed, and the origin's answers are
/// relayed back as they come. A kept-alive connection may carry several requests to
/// the same origin; a request for another origin closes it (as a client that pools
/// per origin never sends one).
pub struct ConnectProxy {
    /// "http://127.0.0.1:PORT"
    pub url: String,
    state: Arc<ProxyState>,
    _listener: Listener,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        Self::refusing(0)
    }

    /// A proxy that answers the first request of its first `n` connections (a
    /// `CONNECT` or a forwarded request) `407 Proxy Authentication Required`, with
    /// `Proxy-Authenticate`, `Retry-After: 1` and `Connection: close`, and then works
    /// as [`ConnectProxy::start`]'s does.
    pub fn refusing(n: u64) -> ConnectProxy {
        let state = Arc::new(ProxyState {
            refuse: AtomicU64::new(n),
            ..Default::default()
        });
        let (listener, addr) = {
            let state = state.clone();
            Listener::start(move |conn| {
                let _ = serve_proxy(conn, &state);
            })
        };
        ConnectProxy {
            url: format!("http://{addr}"),
            state,
            _listener: listener,
        }
    }

    /// CONNECT tunnels established.
    pub fn tunnels(&self) -> u64 {
        self.state.tunnels.load(Ordering::SeqCst)
    }

    /// Absolute-form requests forwarded to their origin.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Every CONNECT and forwarded request, in arrival order.
    pub fn seen(&self) -> Vec<ProxyRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests answered 407.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }
}

const PROXY_AUTH_REQUIRED: &[u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test proxy\"\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

fn serve_proxy(client: TcpStream, state: &ProxyState) -> io::Result<()> {
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let note = |head: &Head| {
        state.seen.lock().unwrap().push(ProxyRequest {
            method: head.method.clone(),
            target: head.target.clone(),
            proxy_authorization: head.header("proxy-authorization").map(str::to_string),
        })
    };
    let connect = head.method.eq_ignore_ascii_case("CONNECT");
    if state.take_refusal() {
        note(&head);
        if !connect {
            read_body(&mut reader, &head.headers)?;
        }
        writer.write_all(PROXY_AUTH_REQUIRED)?;
        let _ = writer.shutdown(Shutdown::Both);
        return Ok(());
    }
    if connect {
        note(&head);
        let Ok(upstream) = TcpStream::connect(&head.target) else {
            return writer.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        };
        writer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        state.tunnels.fetch_add(1, Ordering::SeqCst);
        relay(upstream.try_clone()?, writer);
        // Bytes the client sent right behind the CONNECT head sit in `reader`'s buffer:
        // copying from the reader forwards them first.
        let mut upstream = upstream;
        let _ = io::copy(&mut reader, &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
        return Ok(());
    }
    let Some((origin, _)) = split_absolute(&head.target) else {
        return writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    };
    let origin = origin.to_string();
    let Ok(mut upstream) = TcpStream::connect(&origin) else {
        return writer.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    };
    relay(upstream.try_clone()?, writer);
    let mut head = head;
    loop {
        note(&head);
        let body = read_body(&mut reader, &head.headers)?;
        let (_, path) = split_absolute(&head.target).unwrap();
        let mut out = format!("{} {path} HTTP/1.1\r\n", head.method);
        let framed = header(&head.headers, "content-length").is_some()
            || header(&head.headers, "transfer-encoding").is_some();
        for (k, v) in &head.headers {
            if !matches!(
                k.as_str(),
                "proxy-authorization" | "proxy-connection" | "content-length" | "transfer-encoding"
            ) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        if framed {
            out.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        out.push_str("\r\n");
        upstream.write_all(out.as_bytes())?;
        upstream.write_all(&body)?;
        state.forwarded.fetch_add(1, Ordering::SeqCst);
        match read_head(&mut reader)? {
            Some(next) if split_absolute(&next.target).is_some_and(|(o, _)| o == origin) => {
                head = next
            }
            _ => break,
        }
    }
    let _ = upstream.shutdown(Shutdown::Write);
    Ok(())
}

/// Copies `from` to `to` on a thread until `from` ends, then ends `to`'s sending side.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// "http://host:port/path?q" -> ("host:port", "/path?q").
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let rest = target.strip_prefix("http://")?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// A request line and its headers.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a request head; `None` at a clean end of the connection.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, line));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Some(Head {
        method,
        target,
        headers,
    }))
}

/// Reads a request body framed by Content-Length or chunked transfer coding.
fn read_body(r: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        let length: usize = header(headers, "content-length")
            .map(|v| v.parse().unwrap_or(0))
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if r.read_line(&mut size)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = size.trim_end().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, size.to_string()))?;
        if size == 0 {
            // Trailers, if any, up to the empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// A TLS client connection to `addr` ("127.0.0.1:PORT") with `server_name` checked
/// against the certificate. The handshake is completed here, so a refused
/// certificate is this function's error (for TLS 1.3, a server's refusal of the
/// client's certificate only shows on the first read).
pub fn tls_connect(
    addr: &str,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    tls_over(TcpStream::connect(addr)?, server_name, config)
}

/// A TLS client connection over an already connected socket (e.g. a proxy tunnel).
pub fn tls_over(
    mut sock: TcpStream,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Sends `POST path` with `body` and the extra `headers` (each "Name: value"), and
/// reads the answer: (status, body).
pub fn post(
    s: &mut (impl Read + Write),
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        req.push_str(&format!("{h}\r\n"));
    }
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let (status, headers) = read_response_head(s)?;
    let length: usize = header(&headers, "content-length")
        .map(|v| v.parse().unwrap_or(0))
        .unwrap_or(0);
    let mut answer = vec![0u8; length];
    s.read_exact(&mut answer)?;
    Ok((status, answer))
}

/// Reads a response head byte by byte (so nothing behind it is consumed):
/// (status, lowercased headers).
pub fn read_response_head(s: &mut impl Read) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, text.to_string()))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// Opens a CONNECT tunnel to `target` ("host:port") through the proxy at `proxy_url`.
pub fn connect_via(proxy_url: &str, target: &str) -> io::Result<TcpStream> {
    let mut sock = TcpStream::connect(proxy_url.trim_start_matches("http://"))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())?;
    let (status, _) = read_response_head(&mut sock)?;
    if status != 200 {
        return Err(io::Error::other(format!("proxy answered {status}")));
    }
    Ok(sock)
}

/// Polls `f` until it holds or `limit` passes; returns its last value.
pub fn eventually(limit: Duration, f: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Pki, client_config_for, client_config_trusting};
    use crate::util::tempdir;

    const LIMIT: Duration = Duration::from_secs(5);

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn tls_server_answers_a_client_trusting_the_ca_with_keep_alive() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let server = TlsHttpServer::start(&pki, false);
        assert!(server.url.starts_with("https://127.0.0.1:"));

        // A client that would prefer HTTP/2 gets HTTP/1.1.
        let mut config = (*client_config_trusting(&pki.ca_file)).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut s = tls_connect(&server.addr, "audit.test", Arc::new(config)).unwrap();
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

        // Three requests on one connection: plain, gzip, chunked.
        let (status, body) = post(&mut s, "/one", &[], b"{\"a\":1}\n").unwrap();
        assert_eq!((status, &body[..]), (200, &b"{}"[..]));
        let zipped = gzip(b"{\"b\":2}\n");
        let (status, _) = post(&mut s, "/two", &["Content-Encoding: gzip"], &zipped).unwrap();
        assert_eq!(status, 200);
        let chunked = b"4\r\n{\"c\"\r\n5;ext=1\r\n:3}\n\n\r\n0\r\n\r\n";
        let (status, _) = post(&mut s, "/three", &["Transfer-Encoding: chunked"], chunked).unwrap();
        assert_eq!(status, 200);

        assert_eq!(server.requests(), 3);
        assert_eq!(
            server.bodies(),
            vec![
                b"{\"a\":1}\n".to_vec(),
                b"{\"b\":2}\n".to_vec(),
                b"{\"c\":3}\n\n".to_vec()
            ]
        );
        let received = server.received();
        assert_eq!(received[1].header("content-encoding"), Some("gzip"));
        assert_eq!(received[2].target, "/three");
        assert!(!received[0].client_cert);
        assert_eq!(server.handshake_failures(), 0);
    }

    #[test]
    fn tls_server_is_refused_by_a_client_trusting_another_ca_or_name() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let other = Pki::other_ca(dir.path());
        let server = TlsHttpServer::start(&pki, false);

        let err = tls_connect(
            &server.addr,
            "localhost",
            client_config_trusting(&other.ca_file),
        )
        .expect_err("a client trusting another CA refuses the server");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
        let err = tls_connect(&server.addr, "wrong.test", pki.client_config(false))
            .expect_err("a name the certificate is not for is refused");
        assert!(err.to_string().contains("not valid for name"), "{err}");

        assert!(eventually(LIMIT, || server.handshake_failures() == 2));
        assert_eq!(server.requests(), 0);
        // The right CA and name still work.
        let mut s = tls_connect(&server.addr, "127.0.0.1", pki.client_config(false)).unwrap();
        assert_eq!(post(&mut s, "/", &[], b"{}").unwrap().0, 200);
        assert_eq!(server.requests(), 1);
    }

    #[test]
    fn tls_server_requiring_client_certs_takes_only_ours() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let other = Pki::other_ca(dir.path());
        let server = TlsHttpServer::start(&pki, true);

        // Without a certificate: with TLS 1.3 the client's side of the handshake
        // completes and the refusal arrives as an alert on the first read.
        let refused = tls_connect(&server.addr, "localhost", pki.client_config(false))
            .and_then(|mut s| post(&mut s, "/", &[], b"{}"));
        assert!(refused.is_err(), "{refused:?}");
        // A certificate from another CA.
        let config = client_config_for(
            std::slice::from_ref(&pki.ca_der),
            Some((other.client_cert_der.clone(), other.client_key())),
        );
        let refused = tls_connect(&server.addr, "localhost", config)
            .and_then(|mut s| post(&mut s, "/", &[], b"{}"));
        assert!(refused.is_err(), "{refused:?}");
        assert!(eventually(LIMIT, || server.handshake_failures() == 2));
        let errors = server.handshake_errors();
        assert!(
            errors[0].contains("no certificates") || errors[1].contains("no certificates"),
            "{errors:?}"
        );
        assert_eq!(server.requests(), 0);

        let mut s = tls_connect(&server.addr, "localhost", pki.client_config(true)).unwrap();
        assert_eq!(post(&mut s, "/", &[], b"{\"m\":1}").unwrap().0, 200);
        assert_eq!(server.requests(), 1);
        assert!(server.received()[0].client_cert);
    }

    #[test]
    fn connect_proxy_tunnels_to_the_tls_server() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let server = TlsHttpServer::start(&pki, true);
        let proxy = ConnectProxy::start();
        assert!(proxy.url.starts_with("http://127.0.0.1:"));

        let tunnel = connect_via(&proxy.url, &server.addr).unwrap();
        let mut s = tls_over(tunnel, "localhost", pki.client_config(true)).unwrap();
        for i in 0..2 {
            let body = format!("{{\"i\":{i}}}\n");
            assert_eq!(post(&mut s, "/_bulk", &[], body.as_bytes()).unwrap().0, 200);
        }
        assert_eq!(proxy.tunnels(), 1);
        assert_eq!(proxy.forwarded(), 0);
        assert_eq!(server.requests(), 2);
        assert_eq!(server.bodies()[1], b"{\"i\":1}\n");
        assert_eq!(proxy.seen()[0].method, "CONNECT");
        assert_eq!(proxy.seen()[0].target, server.addr);
    }

    #[test]
    fn connect_proxy_forwards_absolute_form_requests() {
        // A plain HTTP origin that takes one connection and records two requests.
        let origin = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin_addr = origin.local_addr().unwrap().to_string();
        let origin = std::thread::spawn(move || {
            let (conn, _) = origin.accept().unwrap();
            conn.set_read_timeout(Some(LIMIT)).unwrap();
            let mut answer = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            let mut got = Vec::new();
            for _ in 0..2 {
                let head = read_head(&mut r).unwrap().unwrap();
                let body = read_body(&mut r, &head.headers).unwrap();
                answer
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .unwrap();
                got.push((
                    format!("{} {}", head.method, head.target),
                    head.headers,
                    body,
                ));
            }
            got
        });
        let proxy = ConnectProxy::start();

        let mut s = TcpStream::connect(proxy.url.trim_start_matches("http://")).unwrap();
        s.set_read_timeout(Some(LIMIT)).unwrap();
        let target = format!("http://{origin_addr}/ingest?x=1");
        let auth = "Proxy-Authorization: Basic dXNlcjpwYXNz";
        let (status, body) = post(&mut s, &target, &[auth], b"{\"n\":1}\n").unwrap();
        assert_eq!((status, &body[..]), (200, &b"{}"[..]));
        // A second, chunked request on the same connection.
        let chunked = b"8\r\n{\"n\":2}\n\r\n0\r\n\r\n";
        let (status, _) = post(&mut s, &target, &["Transfer-Encoding: chunked"], chunked).unwrap();
        assert_eq!(status, 200);

        let got = origin.join().unwrap();
        // Origin-form request lines, the proxy's credentials kept to itself, the
        // chunked body passed on whole.
        assert_eq!(got[0].0, "POST /ingest?x=1");
        assert_eq!(got[1].0, "POST /ingest?x=1");
        assert_eq!(got[0].2, b"{\"n\":1}\n");
        assert_eq!(got[1].2, b"{\"n\":2}\n");
        assert_eq!(header(&got[0].1, "proxy-authorization"), None);
        assert_eq!(header(&got[0].1, "host"), Some("localhost"));
        assert_eq!(header(&got[1].1, "content-length"), Some("8"));
        assert_eq!(header(&got[1].1, "transfer-encoding"), None);

        assert_eq!(proxy.forwarded(), 2);
        assert_eq!(proxy.tunnels(), 0);
        let seen = proxy.seen();
        assert_eq!(seen[0].target, target);
        assert_eq!(
            seen[0].proxy_authorization.as_deref(),
            Some("Basic dXNlcjpwYXNz")
        );
        assert_eq!(seen[1].proxy_authorization, None);
    }

    #[test]
    fn dropping_the_tls_server_cuts_its_connections() {
        let dir = tempdir();
        let pki = Pki::generate(dir.path());
        let server = TlsHttpServer::start(&pki, false);
        let mut s = tls_connect(&server.addr, "localhost", pki.client_config(false)).unwrap();
        assert_eq!(post(&mut s, "/", &[], b"{}").unwrap().0, 200);
        let addr = server.addr.clone();
        drop(server);
        assert!(post(&mut s, "/", &[], b"{}").is_err());
        assert!(eventually(LIMIT, || TcpStream::connect(&addr).is_err()));
    }
}
