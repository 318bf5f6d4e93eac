//! `http`: POST batches as NDJSON or a JSON array, in the native, ECS or OCSF shape,
//! optionally gzip-compressed, with a bearer token and custom headers. Answers are
//! read by [`super::classify`].

use super::super::Verdict;
use super::super::shape::{self, Shape};
use crate::config::daemon::{Compression, HttpFormat, Secret, SinkConfig, SinkKind};
use std::time::Duration;

/// Cloned for each request in flight: clones share the HTTP client (and its
/// connections).
#[derive(Clone)]
pub struct HttpSink {
    name: String,
    client: reqwest::Client,
    endpoint: String,
    format: HttpFormat,
    shape: Shape,
    headers: Vec<(String, String)>,
    token: Option<Secret>,
    compression: Compression,
    timeout: Duration,
}

impl HttpSink {
    pub fn new(cfg: &SinkConfig, client: reqwest::Client) -> HttpSink {
        let SinkKind::Http {
            net,
            format,
            shape,
            headers,
            token,
        } = &cfg.kind
        else {
            unreachable!("HttpSink::new is called for http sinks only");
        };
        HttpSink {
            name: cfg.name.clone(),
            client,
            endpoint: net.endpoint.clone(),
            format: *format,
            shape: *shape,
            headers: headers.clone(),
            token: token.clone(),
            compression: cfg.compression,
            timeout: net.request_timeout,
        }
    }

    /// The request body for `records` in the configured framing and shape.
    pub fn encode(&self, records: &bytes::Bytes) -> bytes::Bytes {
        if self.format == HttpFormat::Ndjson && self.shape == Shape::Native {
            return records.clone();
        }
        let mut out = Vec::with_capacity(records.len() + records.len() / 2 + 2);
        if self.format == HttpFormat::JsonArray {
            out.push(b'[');
        }
        for (i, line) in super::super::record::lines(records).enumerate() {
            if i > 0 && self.format == HttpFormat::JsonArray {
                out.push(b',');
            }
            shape::write(self.shape, line, &mut out);
            if self.format == HttpFormat::Ndjson {
                out.push(b'\n');
            }
        }
        if self.format == HttpFormat::JsonArray {
            out.push(b']');
        }
        out.into()
    }

    pub async fn send(&mut self, records: &bytes::Bytes) -> Verdict {
        let body = self.encode(records);
        let content_type = match self.format {
            HttpFormat::Ndjson => "application/x-ndjson",
            HttpFormat::JsonArray => "application/json",
        };
        let mut req = self
            .client
            .post(&self.endpoint)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, content_type);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        match super::post(&self.name, req, body, self.compression).await {
            Ok(a) => super::classify(&self.name, &a),
            Err(v) => v,
        }
    }
}
