//! `splunk_hec`: the Splunk HTTP Event Collector's event endpoint.
//!
//! A request is the batch's records as concatenated HEC event objects
//! (`{"time","host","source","sourcetype","index"?,"event"}`, one per line), with
//! `Authorization: Splunk <token>`. Answers carry `{"text","code"}`:
//! - 200 (`code` 0): delivered, or, with `indexer_ack`, accepted with an `ackId`
//!   that is polled at `/services/collector/ack` until it is true. Not confirmed
//!   within `ack_timeout`: the request is sent again (the records carry their ids).
//! - 400 with a data code (5 no data, 6 invalid data format, 12/13 event field
//!   missing or blank, 15 indexed fields): the batch can never be accepted, so it
//!   becomes a dead letter with HEC's text.
//! - 400 with a configuration code (7 incorrect index, 10/11 channel, 14 ack
//!   disabled, 16 query-string auth), 401 and 403: only the operator can fix these;
//!   logged as errors, retried slowly, never dead-lettered.
//! - 503 (code 9 busy, 18–20 unhealthy), other 5xx, 429, 408: retried.
//! - 413: the batch is split.

use super::super::Verdict;
use super::super::record::{self, Head};
use super::{Answer, classify, config_error};
use crate::config::daemon::{Compression, SinkConfig, SinkKind};
use serde::Deserialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// Cloned for each request in flight: clones share the HTTP client (and its
/// connections).
#[derive(Clone)]
pub struct HecSink {
    name: String,
    client: reqwest::Client,
    event_url: String,
    ack_url: String,
    auth: String,
    index: Option<String>,
    source: String,
    sourcetype: String,
    indexer_ack: bool,
    ack_timeout: Duration,
    compression: Compression,
    timeout: Duration,
    /// This run's channel: a fresh GUID per start, so ack ids never collide with an
    /// earlier run's.
    channel: String,
    /// Shared by the clones: the warning is logged once.
    warned_no_ack: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Deserialize, Default)]
struct HecReply {
    #[serde(default)]
    text: String,
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Deserialize)]
struct AckReply {
    acks: std::collections::HashMap<String, bool>,
}

impl HecSink {
    pub fn new(cfg: &SinkConfig, client: reqwest::Client) -> HecSink {
        let SinkKind::SplunkHec {
            net,
            token,
            index,
            source,
            sourcetype,
            indexer_ack,
            ack_timeout,
        } = &cfg.kind
        else {
            unreachable!("HecSink::new is called for splunk_hec sinks only");
        };
        HecSink {
            name: cfg.name.clone(),
            client,
            event_url: format!("{}/services/collector/event", net.endpoint),
            ack_url: format!("{}/services/collector/ack", net.endpoint),
            auth: format!("Splunk {}", token.expose()),
            index: index.clone(),
            source: source.clone(),
            sourcetype: sourcetype.clone(),
            indexer_ack: *indexer_ack,
            ack_timeout: *ack_timeout,
            compression: cfg.compression,
            timeout: net.request_timeout,
            channel: uuid::Uuid::new_v4().to_string(),
            warned_no_ack: Default::default(),
        }
    }

    /// The request body: one HEC event object per record.
    pub fn encode(&self, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.len() + records.len() / 4);
        for line in record::lines(records) {
            let head = Head::parse(line);
            out.extend_from_slice(b"{");
            if let Some(ns) = head.time_nanos() {
                let ms = ns.div_euclid(1_000_000);
                let _ = write!(
                    out,
                    "\"time\":{}.{:03},",
                    ms.div_euclid(1000),
                    ms.rem_euclid(1000)
                );
            }
            if let Some(h) = head.host() {
                out.extend_from_slice(b"\"host\":");
                json_string(h, &mut out);
                out.push(b',');
            }
            out.extend_from_slice(b"\"source\":");
            json_string(&self.source, &mut out);
            out.extend_from_slice(b",\"sourcetype\":");
            json_string(&self.sourcetype, &mut out);
            if let Some(i) = &self.index {
                out.extend_from_slice(b",\"index\":");
                json_string(i, &mut out);
            }
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(line);
            out.extend_from_slice(b"}\n");
        }
        out
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let req = self
            .client
            .post(url)
            .timeout(self.timeout)
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if self.indexer_ack {
            req.header("X-Splunk-Request-Channel", &self.channel)
        } else {
            req
        }
    }

    pub async fn send(&mut self, records: &bytes::Bytes) -> Verdict {
        let body = bytes::Bytes::from(self.encode(records));
        let a = match super::post(
            &self.name,
            self.request(&self.event_url),
            body,
            self.compression,
        )
        .await
        {
            Ok(a) => a,
            Err(v) => return v,
        };
        if !(200..300).contains(&a.status) {
            return self.classify(&a);
        }
        if !self.indexer_ack {
            return Verdict::Success;
        }
        let reply: HecReply = serde_json::from_slice(&a.body).unwrap_or_default();
        match reply.ack_id {
            Some(id) => self.await_ack(id).await,
            None => {
                if !self
                    .warned_no_ack
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(sink = %self.name, "HEC answered without an ackId: indexer acknowledgement is off for this token; delivery counts at HTTP 200");
                }
                Verdict::Success
            }
        }
    }

    /// Polls the ack endpoint until `id` is confirmed, or the timeout passes (then
    /// the batch is sent again).
    async fn await_ack(&mut self, id: u64) -> Verdict {
        let deadline = Instant::now() + self.ack_timeout;
        let mut pause = Duration::from_millis(10);
        let body = bytes::Bytes::from(format!("{{\"acks\":[{id}]}}"));
        let url = format!("{}?channel={}", self.ack_url, self.channel);
        let mut last = String::from("no answer yet");
        loop {
            match super::post(
                &self.name,
                self.request(&url),
                body.clone(),
                Compression::None,
            )
            .await
            {
                Ok(a) if (200..300).contains(&a.status) => {
                    match serde_json::from_slice::<AckReply>(&a.body) {
                        Ok(r) if r.acks.get(&id.to_string()) == Some(&true) => {
                            return Verdict::Success;
                        }
                        Ok(_) => last = "not yet indexed".into(),
                        Err(e) => last = format!("unreadable ack answer: {e}"),
                    }
                }
                Ok(a) => {
                    // Logged loudly by classify when only the operator can fix it.
                    let _ = self.classify(&a);
                    last = format!("ack poll: HTTP {}: {}", a.status, a.snippet());
                }
                Err(Verdict::Retry { reason, .. }) => last = format!("ack poll: {reason}"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Verdict::Retry {
                    reason: format!(
                        "indexer acknowledgement {id} not confirmed within {:?} ({last}): sending the batch again",
                        self.ack_timeout
                    ),
                    after: None,
                };
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn classify(&self, a: &Answer) -> Verdict {
        let reply: HecReply = serde_json::from_slice(&a.body).unwrap_or_default();
        let what = match reply.code {
            Some(c) => format!("HTTP {} code {c}: {}", a.status, reply.text),
            None => format!("HTTP {}: {}", a.status, a.snippet()),
        };
        match (a.status, reply.code) {
            (400, Some(5 | 6 | 12 | 13 | 15)) => Verdict::Permanent(what),
            (400, Some(7 | 10 | 11 | 14 | 16)) => config_error(
                &self.name,
                a,
                what,
                "HEC refuses the sink's settings (index, channel or acknowledgement); fix the configuration, records wait in the queue",
            ),
            // From a proxy on the way, not from HEC: its body is not HEC's.
            (407, _) => classify(&self.name, a),
            (401 | 403, _) => config_error(
                &self.name,
                a,
                what,
                "HEC refuses the token; fix it, records wait in the queue",
            ),
            (408 | 429 | 500..=599, _) => Verdict::Retry {
                reason: what,
                after: a.retry_after,
            },
            (400..=499, Some(_)) if a.status != 413 => Verdict::Permanent(what),
            _ => classify(&self.name, a),
        }
    }
}

fn json_string(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::NetConfig;

    fn sink(index: Option<&str>) -> HecSink {
        let cfg = SinkConfig {
            name: "hec".into(),
            kind: SinkKind::SplunkHec {
                net: NetConfig {
                    endpoint: "http://127.0.0.1:1".into(),
                    tls: Default::default(),
                    proxy: None,
                    connect_timeout: Duration::from_secs(1),
                    request_timeout: Duration::from_secs(1),
                },
                token: crate::config::daemon::Secret::for_tests("t0k"),
                index: index.map(str::to_owned),
                source: "auditship".into(),
                sourcetype: "_json".into(),
                indexer_ack: false,
                ack_timeout: Duration::from_secs(1),
            },
            compression: Compression::None,
            max_events: 10,
            max_bytes: 1 << 20,
            max_wait: Duration::ZERO,
            max_in_flight: 1,
            retry_initial: Duration::from_millis(1),
            retry_max_delay: Duration::from_millis(1),
        };
        HecSink::new(&cfg, super::super::test_client())
    }

    #[test]
    fn golden_event_envelope() {
        let rec = br#"{"host":"devbox","timestamp":"2026-11-26T07:06:42.123Z","_auditship":{"v":1,"id":"ab","host":"agent"}}"#;
        let mut records = rec.to_vec();
        records.push(b'\n');
        records.extend_from_slice(br#"{"_auditship":{"v":1,"id":"cd","host":"agent","received_at":"1970-01-01T00:00:01.5Z"}}"#);
        records.push(b'\n');
        let got = String::from_utf8(sink(Some("audit")).encode(&records)).unwrap();
        let want = concat!(
            r#"{"time":1795676802.123,"host":"devbox","source":"auditship","sourcetype":"_json","index":"audit","event":{"host":"devbox","timestamp":"2026-11-26T07:06:42.123Z","_auditship":{"v":1,"id":"ab","host":"agent"}}}"#,
            "\n",
            r#"{"time":1.500,"host":"agent","source":"auditship","sourcetype":"_json","index":"audit","event":{"_auditship":{"v":1,"id":"cd","host":"agent","received_at":"1970-01-01T00:00:01.5Z"}}}"#,
            "\n"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn answers_are_classified_by_status_and_hec_code() {
        let s = sink(None);
        let a = |status: u16, body: &str| Answer {
            status,
            retry_after: None,
            location: None,
            body: bytes::Bytes::from(body.to_string()),
        };
        assert!(matches!(
            s.classify(&a(400, r#"{"text":"Invalid data format","code":6,"invalid-event-number":0}"#)),
            Verdict::Permanent(r) if r.contains("code 6") && r.contains("Invalid data format")
        ));
        assert!(matches!(
            s.classify(&a(503, r#"{"text":"Server is busy","code":9}"#)),
            Verdict::Retry { after: None, .. }
        ));
        for (status, body) in [
            (403, r#"{"text":"Invalid token","code":4}"#),
            (401, r#"{"text":"Token is required","code":2}"#),
            (400, r#"{"text":"Incorrect index","code":7}"#),
            (400, r#"{"text":"ACK is disabled","code":14}"#),
            // A proxy's answer, whatever its body looks like.
            (407, r#"{"text":"Proxy Authentication Required","code":6}"#),
        ] {
            assert!(
                matches!(s.classify(&a(status, body)), Verdict::Retry { after: Some(d), .. } if d >= Duration::from_secs(30)),
                "{status} {body}"
            );
        }
        assert!(matches!(s.classify(&a(413, "")), Verdict::TooLarge(_)));
        assert!(matches!(s.classify(&a(500, "oops")), Verdict::Retry { .. }));
    }
}
