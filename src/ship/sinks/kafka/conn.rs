//! One connection to one broker: TCP, then TLS when configured (rustls, verified),
//! ApiVersions, then SASL (PLAIN, SCRAM-SHA-256/512) when configured; then requests
//! one at a time, each answered before the next is sent.

use super::scram::{self, Scram};
use super::wire;
use crate::config::daemon::{KafkaSasl, SaslMechanism};
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a connection or a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The network, a timeout, a broker that went away: try again.
    Network(String),
    /// The broker refused our credentials or the mechanism: only the operator can
    /// fix it.
    Auth(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Network(m) | Failure::Auth(m) => f.write_str(m),
        }
    }
}

/// How to reach brokers: shared by every connection of a sink.
#[derive(Clone)]
pub struct Dialer {
    pub tls: Option<(tokio_rustls::TlsConnector, Option<ServerName<'static>>)>,
    pub sasl: Option<KafkaSasl>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub client_id: String,
}

pub struct Conn {
    io: Box<dyn Io>,
    correlation: i32,
    client_id: String,
    timeout: Duration,
    /// `(api key, min, max)` the broker supports.
    pub versions: Vec<wire::ApiRange>,
    /// `host:port`, for messages.
    pub addr: String,
}

impl Dialer {
    /// Connects and, when configured, authenticates.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Conn, Failure> {
        let addr = format!("{host}:{port}");
        let net = |e: String| Failure::Network(format!("{addr}: {e}"));
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| net("connection timed out".into()))?
            .map_err(|e| net(format!("connection failed: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => ServerName::try_from(host.to_string())
                        .map_err(|_| net("not a DNS name or IP address".into()))?,
                };
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| net("TLS handshake timed out".into()))?
                    .map_err(|e| net(format!("TLS handshake: {e}")))?;
                Box::new(tls)
            }
        };
        let mut conn = Conn {
            io,
            correlation: 0,
            client_id: self.client_id.clone(),
            timeout: self.request_timeout,
            versions: Vec::new(),
            addr: addr.clone(),
        };
        let body = conn.request(wire::API_VERSIONS, 0, &[]).await?;
        let (error, versions) = wire::api_versions(&body).map_err(|e| net(e.to_string()))?;
        if error != 0 {
            return Err(net(format!("ApiVersions: error {error}")));
        }
        conn.versions = versions;
        if let Some(sasl) = &self.sasl {
            conn.authenticate(sasl).await?;
        }
        Ok(conn)
    }
}

impl Conn {
    /// Sends one request and reads its answer (the body after the correlation id).
    pub async fn request(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        self.correlation = self.correlation.wrapping_add(1);
        let id = self.correlation;
        let frame = wire::frame(api_key, version, id, &self.client_id, body);
        let addr = self.addr.clone();
        let io = &mut self.io;
        let exchange = async move {
            io.write_all(&frame).await?;
            io.flush().await?;
            let mut size = [0u8; 4];
            io.read_exact(&mut size).await?;
            let size = i32::from_be_bytes(size);
            if !(4..=(256 << 20)).contains(&size) {
                return Err(std::io::Error::other(format!("answer of {size} bytes")));
            }
            let mut buf = vec![0u8; size as usize];
            io.read_exact(&mut buf).await?;
            Ok(buf)
        };
        let buf = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Failure::Network(format!("{addr}: request timed out")))?
            .map_err(|e| Failure::Network(format!("{addr}: {e}")))?;
        if buf[..4] != id.to_be_bytes() {
            return Err(Failure::Network(format!(
                "{addr}: answer to another request (correlation id)"
            )));
        }
        if wire::flexible(api_key, version) {
            let rest = wire::skip_tagged_fields(&buf[4..])
                .map_err(|e| Failure::Network(format!("{addr}: {e}")))?;
            return Ok(rest.to_vec());
        }
        Ok(buf[4..].to_vec())
    }

    /// The version of `api_key` to use with this broker (InitProducerId: never v2,
    /// the first flexible one, which has no producer id fields yet).
    pub fn version(&self, api_key: i16) -> Option<i16> {
        let v = wire::pick(&self.versions, api_key)?;
        if api_key == wire::INIT_PRODUCER_ID && v == 2 {
            return self
                .versions
                .iter()
                .any(|(k, lo, _)| *k == api_key && *lo <= 1)
                .then_some(1);
        }
        Some(v)
    }

    async fn authenticate(&mut self, sasl: &KafkaSasl) -> Result<(), Failure> {
        let (addr, name) = (self.addr.clone(), sasl.mechanism.name());
        let auth = move |m: String| Failure::Auth(format!("{addr}: SASL {name}: {m}"));
        if self.version(wire::SASL_HANDSHAKE).is_none() {
            return Err(auth("the broker does not offer SASL handshake v1".into()));
        }
        let body = self
            .request(
                wire::SASL_HANDSHAKE,
                1,
                &wire::sasl_handshake_request(sasl.mechanism.name()),
            )
            .await?;
        let (error, offered) = wire::sasl_handshake(&body).map_err(|e| auth(e.to_string()))?;
        if error != 0 {
            return Err(auth(format!(
                "mechanism refused ({}); the broker offers {}",
                super::error_name(error),
                offered.join(", ")
            )));
        }
        let version = self.version(wire::SASL_AUTHENTICATE).unwrap_or(0);
        let user = &sasl.username;
        let password = sasl.password.expose();
        match sasl.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{user}\0{password}");
                self.sasl_round(version, token.as_bytes(), &auth).await?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let hash = if sasl.mechanism == SaslMechanism::ScramSha256 {
                    scram::Hash::Sha256
                } else {
                    scram::Hash::Sha512
                };
                let (mut s, first) = Scram::start(hash, user, password, &scram::nonce());
                let server_first = self.sasl_round(version, &first, &auth).await?;
                let fin = s.answer(&server_first).map_err(&auth)?;
                let server_final = self.sasl_round(version, &fin, &auth).await?;
                s.finish(&server_final).map_err(&auth)?;
            }
        }
        Ok(())
    }

    async fn sasl_round(
        &mut self,
        version: i16,
        token: &[u8],
        auth: &impl Fn(String) -> Failure,
    ) -> Result<Vec<u8>, Failure> {
        let body = self
            .request(
                wire::SASL_AUTHENTICATE,
                version,
                &wire::sasl_authenticate_request(token),
            )
            .await?;
        let (error, message, token) =
            wire::sasl_authenticate(&body).map_err(|e| auth(e.to_string()))?;
        if error != 0 {
            return Err(auth(format!(
                "authentication failed ({}): {}",
                super::error_name(error),
                message.unwrap_or_default()
            )));
        }
        Ok(token)
    }
}
