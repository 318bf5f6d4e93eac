//! `otlp`: OpenTelemetry logs over HTTP, JSON encoding (`POST {endpoint}/v1/logs`).
//!
//! One `resourceLogs` per request (resource attributes `host.name` of the shipping
//! host, `service.name`, `service.version`), one log record per event: `timeUnixNano`
//! from the event's timestamp, `observedTimeUnixNano` from when it was read, a
//! severity (INFO; WARN for `failure` and `denied`; ERROR when the integrity check
//! found a problem), the shipped record as the string body, and the event's key
//! fields as attributes, `auditship.id` among them. The keys that join an event to
//! Claude Code's own telemetry carry Claude Code's attribute names: `session.id`,
//! `prompt.id`, `tool_use_id`. The enterprise identity is `enduser.id` (OpenTelemetry's
//! name for it), never `user.id`, which Claude Code uses for its anonymous install id.
//!
//! Answers, as the OTLP specification has them: 2xx is delivered; 429, 502, 503 and
//! 504 are retried, honouring `Retry-After`; every other status is not retryable and
//! the request becomes a dead letter, except 401/403 and redirects, which only the
//! operator can fix (retried slowly and logged, as for every sink), and 413, which
//! splits the request. A 2xx with `partialSuccess.rejectedLogRecords` > 0 does not
//! say which records were refused: the whole request is kept as a dead letter with
//! the count and the server's message, and is not sent again.

use super::super::Verdict;
use super::super::record::{self, Head};
use super::config_error;
use crate::config::daemon::{Compression, Secret, SinkConfig, SinkKind};
use serde::Deserialize;
use std::io::Write;
use std::time::Duration;

/// Cloned for each request in flight: clones share the HTTP client (and its
/// connections).
#[derive(Clone)]
pub struct OtlpSink {
    name: String,
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
    token: Option<Secret>,
    service_name: String,
    compression: Compression,
    timeout: Duration,
}

#[derive(Deserialize, Default)]
struct ExportReply {
    #[serde(rename = "partialSuccess", default)]
    partial: Option<PartialSuccess>,
}

#[derive(Deserialize, Default)]
struct PartialSuccess {
    #[serde(rename = "rejectedLogRecords", default)]
    rejected: Option<serde_json::Value>,
    #[serde(rename = "errorMessage", default)]
    message: String,
}

impl OtlpSink {
    pub fn new(cfg: &SinkConfig, client: reqwest::Client) -> OtlpSink {
        let SinkKind::Otlp {
            net,
            headers,
            token,
            service_name,
        } = &cfg.kind
        else {
            unreachable!("OtlpSink::new is called for otlp sinks only");
        };
        OtlpSink {
            name: cfg.name.clone(),
            client,
            url: format!("{}/v1/logs", net.endpoint),
            headers: headers.clone(),
            token: token.clone(),
            service_name: service_name.clone(),
            compression: cfg.compression,
            timeout: net.request_timeout,
        }
    }

    /// The `ExportLogsServiceRequest` in OTLP's JSON encoding.
    pub fn encode(&self, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.len() * 2 + 512);
        let mut first = true;
        for line in record::lines(records) {
            let head = Head::parse(line);
            if first {
                out.extend_from_slice(br#"{"resourceLogs":[{"resource":{"attributes":["#);
                if let Some(h) = head.meta.host.as_deref() {
                    attr_str("host.name", h, &mut out);
                    out.push(b',');
                }
                attr_str("service.name", &self.service_name, &mut out);
                out.push(b',');
                attr_str("service.version", env!("CARGO_PKG_VERSION"), &mut out);
                let _ = write!(
                    out,
                    r#"]}},"scopeLogs":[{{"scope":{{"name":"auditship","version":"{}"}},"logRecords":["#,
                    env!("CARGO_PKG_VERSION")
                );
            } else {
                out.push(b',');
            }
            first = false;
            log_record(&head, line, &mut out);
        }
        if first {
            out.extend_from_slice(br#"{"resourceLogs":[]}"#);
        } else {
            out.extend_from_slice(b"]}]}]}");
        }
        out
    }

    pub async fn send(&mut self, records: &bytes::Bytes, events: u32) -> Verdict {
        let body = bytes::Bytes::from(self.encode(records));
        let mut req = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let a = match super::post(&self.name, req, body, self.compression).await {
            Ok(a) => a,
            Err(v) => return v,
        };
        let code = a.status;
        match code {
            200..=299 => {
                let reply: ExportReply = serde_json::from_slice(&a.body).unwrap_or_default();
                let Some(p) = reply.partial else {
                    return Verdict::Success;
                };
                let rejected = match &p.rejected {
                    Some(serde_json::Value::String(s)) => s.parse::<u64>().unwrap_or(0),
                    Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
                    _ => 0,
                };
                if rejected == 0 {
                    if !p.message.is_empty() {
                        tracing::warn!(sink = %self.name, message = %p.message, "OTLP receiver accepted every record with a warning");
                    }
                    return Verdict::Success;
                }
                tracing::warn!(sink = %self.name, rejected, events, message = %p.message, "OTLP receiver rejected part of a request; keeping the request as a dead letter");
                Verdict::Permanent(format!(
                    "OTLP partial success: {rejected} of {events} log records rejected (which ones is not reported; the whole request is kept): {}",
                    p.message
                ))
            }
            429 | 502 | 503 | 504 => Verdict::Retry {
                reason: format!("HTTP {code}: {}", a.snippet()),
                after: a.retry_after,
            },
            413 => Verdict::TooLarge(format!("HTTP 413: {}", a.snippet())),
            401 | 403 => config_error(
                &self.name,
                &a,
                format!("HTTP {code} (credentials): {}", a.snippet()),
                "OTLP receiver refuses our credentials; fix them, records wait in the queue",
            ),
            407 => {
                super::proxy_auth_error(&self.name, Some(&a), format!("HTTP 407: {}", a.snippet()))
            }
            300..=399 => config_error(
                &self.name,
                &a,
                format!("HTTP {code} redirect: not followed"),
                "OTLP endpoint redirects; fix the endpoint, records wait in the queue",
            ),
            _ => Verdict::Permanent(format!("HTTP {code}: {}", a.snippet())),
        }
    }
}

fn log_record(head: &Head<'_>, line: &[u8], out: &mut Vec<u8>) {
    out.push(b'{');
    if let Some(t) = head
        .timestamp
        .as_deref()
        .and_then(crate::clock::rfc3339_nanos)
        .or_else(|| head.time_nanos())
    {
        let _ = write!(out, "\"timeUnixNano\":\"{}\",", t.max(0));
    }
    if let Some(t) = head
        .meta
        .received_at
        .as_deref()
        .and_then(crate::clock::rfc3339_nanos)
    {
        let _ = write!(out, "\"observedTimeUnixNano\":\"{}\",", t.max(0));
    }
    let (num, text) = if !head.meta.integrity_ok {
        (17, "ERROR")
    } else if matches!(head.outcome.as_deref(), Some("failure" | "denied")) {
        (13, "WARN")
    } else {
        (9, "INFO")
    };
    let _ = write!(
        out,
        "\"severityNumber\":{num},\"severityText\":\"{text}\",\"body\":{{\"stringValue\":"
    );
    match std::str::from_utf8(line) {
        Ok(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Err(_) => {
            let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(line));
        }
    }
    out.extend_from_slice(b"},\"attributes\":[");
    let id = record::id(line).or(head.id()).unwrap_or("");
    attr_str("auditship.id", id, out);
    let strings = [
        ("auditship.action", head.action.as_deref()),
        ("auditship.outcome", head.outcome.as_deref()),
        ("auditship.resource", head.resource.as_deref()),
        ("enduser.id", head.user_id.as_deref()),
        ("session.id", head.session_id.as_deref()),
        ("prompt.id", head.prompt_id.as_deref()),
        ("tool_use_id", head.tool_use_id.as_deref()),
        ("host.name", head.host.as_deref()),
        ("auditship.source", head.meta.source.as_deref()),
    ];
    for (k, v) in strings {
        if let Some(v) = v {
            out.push(b',');
            attr_str(k, v, out);
        }
    }
    if let Some(seq) = head.seq {
        let _ = write!(
            out,
            ",{{\"key\":\"auditship.seq\",\"value\":{{\"intValue\":\"{seq}\"}}}}"
        );
    }
    let _ = write!(
        out,
        ",{{\"key\":\"auditship.integrity_ok\",\"value\":{{\"boolValue\":{}}}}}]}}",
        head.meta.integrity_ok
    );
}

fn attr_str(key: &str, value: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"key\":");
    let _ = serde_json::to_writer(&mut *out, key);
    out.extend_from_slice(b",\"value\":{\"stringValue\":");
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_export_request() {
        let s = OtlpSink {
            name: "otlp".into(),
            client: super::super::test_client(),
            url: String::new(),
            headers: Vec::new(),
            token: None,
            service_name: "auditship".into(),
            compression: Compression::None,
            timeout: Duration::from_secs(1),
        };
        let rec = r#"{"action":"file_read","host":"devbox","metadata":{"prompt_id":"p1","tool_use_id":"toolu_1"},"outcome":"denied","seq":3,"session_id":"s1","timestamp":"1970-01-01T00:00:01.5Z","user_id":"dev@example.com","_auditship":{"v":1,"id":"abc","source":"claude","host":"agent","received_at":"1970-01-01T00:00:02Z","integrity":{"ok":true,"problems":[]}}}"#;
        let got: serde_json::Value =
            serde_json::from_slice(&s.encode(format!("{rec}\n").as_bytes())).unwrap();
        let want = serde_json::json!({"resourceLogs":[{
            "resource":{"attributes":[
                {"key":"host.name","value":{"stringValue":"agent"}},
                {"key":"service.name","value":{"stringValue":"auditship"}},
                {"key":"service.version","value":{"stringValue":env!("CARGO_PKG_VERSION")}}]},
            "scopeLogs":[{"scope":{"name":"auditship","version":env!("CARGO_PKG_VERSION")},"logRecords":[{
                "timeUnixNano":"1500000000","observedTimeUnixNano":"2000000000",
                "severityNumber":13,"severityText":"WARN",
                "body":{"stringValue":rec},
                "attributes":[
                    {"key":"auditship.id","value":{"stringValue":"abc"}},
                    {"key":"auditship.action","value":{"stringValue":"file_read"}},
                    {"key":"auditship.outcome","value":{"stringValue":"denied"}},
                    {"key":"enduser.id","value":{"stringValue":"dev@example.com"}},
                    {"key":"session.id","value":{"stringValue":"s1"}},
                    {"key":"prompt.id","value":{"stringValue":"p1"}},
                    {"key":"tool_use_id","value":{"stringValue":"toolu_1"}},
                    {"key":"host.name","value":{"stringValue":"devbox"}},
                    {"key":"auditship.source","value":{"stringValue":"claude"}},
                    {"key":"auditship.seq","value":{"intValue":"3"}},
                    {"key":"auditship.integrity_ok","value":{"boolValue":true}}]}]}]}]});
        assert_eq!(got, want);
    }
}
