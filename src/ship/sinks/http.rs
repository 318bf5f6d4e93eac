//! `http`: POST batches as NDJSON or a JSON array, optionally gzip-compressed, with a
//! bearer token and custom headers. Status classes: 2xx success; 408, 429, 5xx retry
//! (honouring `Retry-After`); 401 and 403, and any 3xx (redirects are never followed:
//! the endpoint is misconfigured), retry too, loudly, since fixing the configuration
//! must not find the records dead-lettered; any other 4xx is a permanent rejection.

use super::super::{Verdict, parse_retry_after};
use crate::config::daemon::{Compression, HttpFormat, Secret, SinkConfig, SinkKind};
use std::time::Duration;

pub struct HttpSink {
    name: String,
    client: reqwest::Client,
    endpoint: String,
    format: HttpFormat,
    headers: Vec<(String, String)>,
    token: Option<Secret>,
    compression: Compression,
    timeout: Duration,
}

impl HttpSink {
    pub fn new(cfg: &SinkConfig, client: reqwest::Client) -> HttpSink {
        let SinkKind::Http {
            endpoint,
            format,
            headers,
            token,
            request_timeout,
            ..
        } = &cfg.kind
        else {
            unreachable!("HttpSink::new is called for http sinks only");
        };
        HttpSink {
            name: cfg.name.clone(),
            client,
            endpoint: endpoint.clone(),
            format: *format,
            headers: headers.clone(),
            token: token.clone(),
            compression: cfg.compression,
            timeout: *request_timeout,
        }
    }

    /// The request body for `records` in the configured shape.
    pub fn encode(&self, records: &bytes::Bytes) -> bytes::Bytes {
        match self.format {
            HttpFormat::Ndjson => records.clone(),
            HttpFormat::JsonArray => {
                let mut out = Vec::with_capacity(records.len() + 2);
                out.push(b'[');
                for (i, line) in records
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .enumerate()
                {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(line);
                }
                out.push(b']');
                out.into()
            }
        }
    }

    pub async fn send(&mut self, records: &bytes::Bytes, _events: u32) -> Verdict {
        let body = self.encode(records);
        let (body, gz) = match self.compression {
            Compression::None => (body, false),
            Compression::Gzip => {
                match tokio::task::spawn_blocking(move || super::gzip(&body)).await {
                    Ok(Ok(b)) => (bytes::Bytes::from(b), true),
                    Ok(Err(e)) => {
                        return Verdict::Retry {
                            reason: format!("compressing the body: {e}"),
                            after: None,
                        };
                    }
                    Err(e) => {
                        return Verdict::Retry {
                            reason: format!("compression task: {e}"),
                            after: None,
                        };
                    }
                }
            }
        };
        let content_type = match self.format {
            HttpFormat::Ndjson => "application/x-ndjson",
            HttpFormat::JsonArray => "application/json",
        };
        let mut req = self
            .client
            .post(&self.endpoint)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        if gz {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            // Never format the request: it could carry the token.
            Err(e) => {
                return Verdict::Retry {
                    reason: describe(&e),
                    after: None,
                };
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status.is_success() {
            return Verdict::Success;
        }
        let resp_location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| l.split('?').next().unwrap_or("").to_owned());
        let text = resp.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(300).collect();
        let code = status.as_u16();
        match code {
            408 | 429 | 500..=599 => Verdict::Retry {
                reason: format!("HTTP {code}: {snippet}"),
                after: retry_after,
            },
            401 | 403 => {
                tracing::error!(sink = %self.name, status = code, "sink refuses our credentials; fix the token, records wait in the queue");
                Verdict::Retry {
                    reason: format!("HTTP {code} (credentials): {snippet}"),
                    after: Some(retry_after.unwrap_or(Duration::from_secs(30))),
                }
            }
            300..=399 => {
                let location = resp_location.unwrap_or_default();
                tracing::error!(sink = %self.name, status = code, location = %location, "sink endpoint redirects; fix the endpoint, records wait in the queue");
                Verdict::Retry {
                    reason: format!("HTTP {code} redirect to {location:?}: not followed"),
                    after: Some(retry_after.unwrap_or(Duration::from_secs(30))),
                }
            }
            _ => Verdict::Permanent(format!("HTTP {code}: {snippet}")),
        }
    }
}

/// A transport error in words, without the URL's query or anything from headers.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
