//! One file per protocol. A sink encodes a run of shipped records (JSON lines) in its
//! protocol's shape, sends it once, and classifies the answer as a [`Verdict`]. It
//! never sleeps between attempts: retries belong to `ship`. (Waiting for a Splunk
//! indexer acknowledgement is part of one send.)

pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod kafka;
pub mod otlp;
pub mod splunk_hec;
pub mod syslog;

use super::Verdict;
use crate::config::daemon::{Compression, NetConfig, SinkConfig, SinkKind};
use std::time::Duration;

/// A configured sink.
pub enum Sink {
    Http(http::HttpSink),
    SplunkHec(splunk_hec::HecSink),
    Elasticsearch(elasticsearch::EsSink),
    Otlp(otlp::OtlpSink),
    Syslog(Box<syslog::SyslogSink>),
    File(file::FileSink),
    Kafka(Box<kafka::KafkaSink>),
}

impl Sink {
    /// Builds the sink, with its own HTTP client or TLS connector.
    pub fn new(cfg: &SinkConfig) -> Result<Sink, String> {
        Ok(match &cfg.kind {
            SinkKind::Http { net, .. } => {
                Sink::Http(http::HttpSink::new(cfg, client(&cfg.name, net)?))
            }
            SinkKind::SplunkHec { net, .. } => {
                Sink::SplunkHec(splunk_hec::HecSink::new(cfg, client(&cfg.name, net)?))
            }
            SinkKind::Elasticsearch { net, .. } => {
                Sink::Elasticsearch(elasticsearch::EsSink::new(cfg, client(&cfg.name, net)?))
            }
            SinkKind::Otlp { net, .. } => {
                Sink::Otlp(otlp::OtlpSink::new(cfg, client(&cfg.name, net)?))
            }
            SinkKind::Syslog { .. } => Sink::Syslog(Box::new(syslog::SyslogSink::new(cfg)?)),
            SinkKind::File { .. } => Sink::File(file::FileSink::new(cfg)),
            SinkKind::Kafka(_) => Sink::Kafka(Box::new(kafka::KafkaSink::new(cfg)?)),
        })
    }

    /// Sends `records` (JSON lines, each ending in `\n`) once. `Bytes` so a retry
    /// or the request body shares the buffer instead of copying it.
    pub async fn send(&mut self, records: &bytes::Bytes, events: u32) -> Verdict {
        match self {
            Sink::Http(s) => s.send(records).await,
            Sink::SplunkHec(s) => s.send(records).await,
            Sink::Elasticsearch(s) => s.send(records).await,
            Sink::Otlp(s) => s.send(records, events).await,
            Sink::Syslog(s) => s.send(records).await,
            Sink::File(s) => s.send(records).await,
            Sink::Kafka(s) => s.send(records).await,
        }
    }

    /// Another handle on this sink for a request sent while others are out: for the
    /// HTTP protocols, whose requests are independent (clones share the client and
    /// its connections; a Splunk clone its channel). `None` for syslog, file and
    /// kafka, which write ordered streams and so send one request at a time.
    pub fn another(&self) -> Option<Sink> {
        match self {
            Sink::Http(s) => Some(Sink::Http(s.clone())),
            Sink::SplunkHec(s) => Some(Sink::SplunkHec(s.clone())),
            Sink::Elasticsearch(s) => Some(Sink::Elasticsearch(s.clone())),
            Sink::Otlp(s) => Some(Sink::Otlp(s.clone())),
            Sink::Syslog(_) | Sink::File(_) | Sink::Kafka(_) => None,
        }
    }

    /// For a sink whose protocol has no acknowledgement (syslog): where the stream
    /// stands after the last successful send. `ship` confirms it later with
    /// [`Sink::confirm`] before moving the cursor. `None` for every other sink: a
    /// successful send is an acknowledgement.
    pub fn mark(&self) -> Option<syslog::Mark> {
        match self {
            Sink::Syslog(s) => Some(s.mark()),
            _ => None,
        }
    }

    /// Whether what was sent up to `mark` can count as delivered.
    pub fn confirm(&mut self, mark: &syslog::Mark) -> syslog::Confirm {
        match self {
            Sink::Syslog(s) => s.confirm(mark),
            _ => syslog::Confirm::Yes,
        }
    }
}

fn client(name: &str, net: &NetConfig) -> Result<reqwest::Client, String> {
    crate::net::sink_client(name, net)
}

/// Gzip-compresses a request body (fast level: CPU matters more than bytes here).
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// An HTTP answer, read whole.
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub location: Option<String>,
    pub body: bytes::Bytes,
}

impl Answer {
    /// The start of the body as text, for reasons and logs.
    pub fn snippet(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
    }
}

/// Posts `body` (compressed first when configured) and reads the whole answer for
/// the sink named `sink`. A transport failure is a retry; the error is described
/// without the request, which could carry a token. A proxy that refuses our
/// credentials for a `CONNECT` tunnel (407) is a configuration error, as a 407
/// answer is ([`classify`]).
pub(crate) async fn post(
    sink: &str,
    req: reqwest::RequestBuilder,
    body: bytes::Bytes,
    compression: Compression,
) -> Result<Answer, Verdict> {
    let (body, gz) = match compression {
        Compression::None => (body, false),
        Compression::Gzip => match tokio::task::spawn_blocking(move || gzip(&body)).await {
            Ok(Ok(b)) => (bytes::Bytes::from(b), true),
            Ok(Err(e)) => return Err(retry(format!("compressing the body: {e}"))),
            Err(e) => return Err(retry(format!("compression task: {e}"))),
        },
    };
    let req = if gz {
        req.header(reqwest::header::CONTENT_ENCODING, "gzip")
    } else {
        req
    };
    let resp = req.body(body).send().await.map_err(|e| {
        if proxy_auth_refused(&e) {
            proxy_auth_error(sink, None, describe(&e))
        } else {
            retry(describe(&e))
        }
    })?;
    let status = resp.status().as_u16();
    let header = |name: reqwest::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry_after = header(reqwest::header::RETRY_AFTER)
        .as_deref()
        .and_then(super::parse_retry_after);
    let location =
        header(reqwest::header::LOCATION).map(|l| l.split('?').next().unwrap_or("").to_owned());
    let body = resp
        .bytes()
        .await
        .map_err(|e| retry(format!("reading the answer: {}", describe(&e))))?;
    Ok(Answer {
        status,
        retry_after,
        location,
        body,
    })
}

fn retry(reason: String) -> Verdict {
    Verdict::Retry {
        reason,
        after: None,
    }
}

/// The shared reading of a failed HTTP answer: 408, 429 and 5xx retry (honouring
/// `Retry-After`); 413 splits the request; 401 and 403, 407 (a proxy on the way wants
/// other credentials) and any 3xx (redirects are never followed: the endpoint is
/// misconfigured) retry too, loudly and slowly, since fixing the configuration must
/// not find the records dead-lettered; any other 4xx is a permanent rejection.
pub(crate) fn classify(sink: &str, a: &Answer) -> Verdict {
    let code = a.status;
    match code {
        200..=299 => Verdict::Success,
        408 | 429 | 500..=599 => Verdict::Retry {
            reason: format!("HTTP {code}: {}", a.snippet()),
            after: a.retry_after,
        },
        413 => Verdict::TooLarge(format!("HTTP 413: {}", a.snippet())),
        401 | 403 => config_error(
            sink,
            a,
            format!("HTTP {code} (credentials): {}", a.snippet()),
            "sink refuses our credentials; fix the token, records wait in the queue",
        ),
        407 => proxy_auth_error(sink, Some(a), format!("HTTP 407: {}", a.snippet())),
        300..=399 => {
            let location = a.location.clone().unwrap_or_default();
            config_error(
                sink,
                a,
                format!("HTTP {code} redirect to {location:?}: not followed"),
                "sink endpoint redirects; fix the endpoint, records wait in the queue",
            )
        }
        _ => Verdict::Permanent(format!("HTTP {code}: {}", a.snippet())),
    }
}

/// A failure only the operator can fix: logged as an error, retried slowly (at
/// least every 30 s), never dead-lettered.
pub(crate) fn config_error(sink: &str, a: &Answer, reason: String, msg: &str) -> Verdict {
    tracing::error!(sink = %sink, status = a.status, reason = %reason, "{msg}");
    Verdict::Retry {
        reason,
        after: Some(a.retry_after.unwrap_or(CONFIG_ERROR_RETRY)),
    }
}

/// How long a configuration error waits before the next try, unless the answer's
/// `Retry-After` says otherwise.
const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(30);

/// A proxy refused our credentials (or wanted some): 407 as an answer, or to a
/// `CONNECT` (`answer` is then `None`). A configuration error, as 401 is.
pub(crate) fn proxy_auth_error(sink: &str, answer: Option<&Answer>, reason: String) -> Verdict {
    let reason = format!("proxy authentication required (407): {reason}");
    let msg = "the proxy refuses our credentials; fix the sink's proxy setting, records wait in the queue";
    match answer {
        Some(a) => config_error(sink, a, reason, msg),
        None => {
            tracing::error!(sink = %sink, status = 407u16, reason = %reason, "{msg}");
            Verdict::Retry {
                reason,
                after: Some(CONFIG_ERROR_RETRY),
            }
        }
    }
}

/// True when a request failed because the proxy answered its `CONNECT` with 407.
/// hyper-util's tunnel error type is private, so its words are what there is to go
/// by; they are fixed in its source ("proxy authorization required").
fn proxy_auth_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().contains("proxy authorization required") {
            return true;
        }
        source = s.source();
    }
    false
}

pub(crate) use crate::net::describe;

/// A client for unit tests that never connect.
#[cfg(test)]
pub(crate) fn test_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Answer {
        Answer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            location: None,
            body: bytes::Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn credentials_and_proxy_credentials_are_retried_slowly_never_dead_lettered() {
        for status in [401, 403, 407, 302] {
            match classify("s", &answer(status, None)) {
                Verdict::Retry { after: Some(d), .. } => {
                    assert!(d >= CONFIG_ERROR_RETRY, "{status}: {d:?}")
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        assert!(matches!(
            classify("s", &answer(407, Some(2))),
            Verdict::Retry { after: Some(d), reason } if d == Duration::from_secs(2) && reason.contains("407")
        ));
        assert!(matches!(
            classify("s", &answer(400, None)),
            Verdict::Permanent(_)
        ));
    }
}
