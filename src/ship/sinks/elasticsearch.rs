//! `elasticsearch` (and OpenSearch): the `_bulk` API.
//!
//! Every record becomes a `create` action with `_id` = its `_auditship.id`, into an
//! index named by a pattern over the record's own date (UTC), so a resend lands on
//! the same document and is answered 409: already there, which counts as success.
//! A 200 answer can still carry failures: every item is read. 201 and 409 are
//! delivered; items failing with 429 or 5xx are sent again, alone; items rejected
//! with any other status become dead letters with Elasticsearch's error type and
//! reason. Whole-request answers follow [`super::classify`] (413 splits the batch).

use super::super::Verdict;
use super::super::record::{self, Head};
use super::super::shape::{self, Shape};
use crate::config::daemon::{Compression, EsAuth, SinkConfig, SinkKind};
use crate::config::sinks::{IndexPart, parse_index_pattern};
use serde::Deserialize;
use std::time::Duration;

/// Cloned for each request in flight: clones share the HTTP client (and its
/// connections).
#[derive(Clone)]
pub struct EsSink {
    name: String,
    client: reqwest::Client,
    url: String,
    index: Vec<IndexPart>,
    auth: EsAuth,
    shape: Shape,
    compression: Compression,
    timeout: Duration,
}

#[derive(Deserialize)]
struct BulkTop {
    errors: bool,
}

#[derive(Deserialize)]
struct BulkReply {
    items: Vec<std::collections::HashMap<String, Item>>,
}

#[derive(Deserialize)]
struct Item {
    status: u16,
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

impl EsSink {
    pub fn new(cfg: &SinkConfig, client: reqwest::Client) -> EsSink {
        let SinkKind::Elasticsearch {
            net,
            index,
            auth,
            shape,
        } = &cfg.kind
        else {
            unreachable!("EsSink::new is called for elasticsearch sinks only");
        };
        EsSink {
            name: cfg.name.clone(),
            client,
            url: format!("{}/_bulk", net.endpoint),
            // Checked when the configuration was loaded.
            index: parse_index_pattern(index)
                .unwrap_or_else(|_| vec![IndexPart::Text(index.clone())]),
            auth: auth.clone(),
            shape: *shape,
            compression: cfg.compression,
            timeout: net.request_timeout,
        }
    }

    /// The `_bulk` body: a `create` action and the document, per record.
    pub fn encode(&self, records: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(records.len() + records.len() / 2);
        for line in record::lines(records) {
            out.extend_from_slice(b"{\"create\":{\"_index\":\"");
            let date = record::time_nanos(line).map(crate::clock::civil_date);
            for p in &self.index {
                match (p, date) {
                    (IndexPart::Text(t), _) => push_escaped(t, &mut out),
                    (IndexPart::Year, Some((y, _, _))) => {
                        out.extend_from_slice(format!("{y:04}").as_bytes())
                    }
                    (IndexPart::Month, Some((_, m, _))) => {
                        out.extend_from_slice(format!("{m:02}").as_bytes())
                    }
                    (IndexPart::Day, Some((_, _, d))) => {
                        out.extend_from_slice(format!("{d:02}").as_bytes())
                    }
                    // No usable time: a fixed name, so a resend still finds its document.
                    (IndexPart::Year, None) => out.extend_from_slice(b"0000"),
                    (IndexPart::Month | IndexPart::Day, None) => out.extend_from_slice(b"00"),
                }
            }
            out.push(b'"');
            // Every shipped record has an id; should one not, Elasticsearch picks one.
            let parsed;
            let id = match record::id(line) {
                Some(id) => Some(id),
                None => {
                    parsed = Head::parse(line);
                    parsed.id()
                }
            };
            if let Some(id) = id {
                out.extend_from_slice(b",\"_id\":\"");
                push_escaped(id, &mut out);
                out.push(b'"');
            }
            out.extend_from_slice(b"}}\n");
            shape::write(self.shape, line, &mut out);
            out.push(b'\n');
        }
        out
    }

    pub async fn send(&mut self, records: &bytes::Bytes) -> Verdict {
        let body = bytes::Bytes::from(self.encode(records));
        let mut req = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson");
        req = match &self.auth {
            EsAuth::None => req,
            EsAuth::ApiKey(k) => req.header(
                reqwest::header::AUTHORIZATION,
                format!("ApiKey {}", k.expose()),
            ),
            EsAuth::Basic { username, password } => {
                req.basic_auth(username, Some(password.expose()))
            }
        };
        let a = match super::post(&self.name, req, body, self.compression).await {
            Ok(a) => a,
            Err(v) => return v,
        };
        if !(200..300).contains(&a.status) {
            return super::classify(&self.name, &a);
        }
        items_verdict(&a.body, record::lines(records).count(), a.retry_after)
    }
}

/// Reads a 2xx bulk answer: success when `errors` is false, else the items' fates.
fn items_verdict(body: &[u8], sent: usize, after: Option<Duration>) -> Verdict {
    match serde_json::from_slice::<BulkTop>(body) {
        Ok(t) if !t.errors => return Verdict::Success,
        Ok(_) => {}
        Err(e) => {
            return Verdict::Retry {
                reason: format!("unreadable bulk answer: {e}"),
                after,
            };
        }
    }
    let reply: BulkReply = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return Verdict::Retry {
                reason: format!("unreadable bulk items: {e}"),
                after,
            };
        }
    };
    if reply.items.len() != sent {
        // Creates are idempotent: sending everything again is harmless.
        return Verdict::Retry {
            reason: format!(
                "bulk answer has {} items for {sent} actions",
                reply.items.len()
            ),
            after,
        };
    }
    let (mut retry, mut rejected) = (Vec::new(), Vec::new());
    for (i, item) in reply.items.into_iter().enumerate() {
        let Some(item) = item.into_values().next() else {
            retry.push(i);
            continue;
        };
        let why = || match &item.error {
            Some(e) => format!("{} {}: {}", item.status, e.kind, e.reason),
            None => format!("{}", item.status),
        };
        match item.status {
            200..=299 | 409 => {}
            408 | 429 | 500..=599 => retry.push(i),
            _ => rejected.push((i, why())),
        }
    }
    if retry.is_empty() && rejected.is_empty() {
        return Verdict::Success;
    }
    Verdict::Partial {
        retry,
        rejected,
        after,
    }
}

fn push_escaped(s: &str, out: &mut Vec<u8>) {
    let mut v = Vec::with_capacity(s.len() + 2);
    let _ = serde_json::to_writer(&mut v, s);
    out.extend_from_slice(&v[1..v.len() - 1]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sinks::check_index_pattern;

    fn sink(pattern: &str) -> EsSink {
        EsSink {
            name: "es".into(),
            client: super::super::test_client(),
            url: "http://127.0.0.1:1/_bulk".into(),
            index: parse_index_pattern(pattern).unwrap(),
            auth: EsAuth::None,
            shape: Shape::Native,
            compression: Compression::None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn golden_bulk_body() {
        let records = concat!(
            r#"{"timestamp":"2026-11-26T23:59:59.999Z","_auditship":{"v":1,"id":"aa11"}}"#,
            "\n",
            r#"{"timestamp":"2026-11-27T00:30:00+02:00","_auditship":{"v":1,"id":"bb22"}}"#,
            "\n"
        );
        let got = String::from_utf8(sink("audit-%Y.%m.%d").encode(records.as_bytes())).unwrap();
        let want = concat!(
            r#"{"create":{"_index":"audit-2026.11.26","_id":"aa11"}}"#,
            "\n",
            r#"{"timestamp":"2026-11-26T23:59:59.999Z","_auditship":{"v":1,"id":"aa11"}}"#,
            "\n",
            r#"{"create":{"_index":"audit-2026.11.26","_id":"bb22"}}"#,
            "\n",
            r#"{"timestamp":"2026-11-27T00:30:00+02:00","_auditship":{"v":1,"id":"bb22"}}"#,
            "\n"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn index_patterns() {
        assert!(check_index_pattern("audit-%Y.%m.%d").is_ok());
        assert!(check_index_pattern("audit").is_ok());
        assert!(check_index_pattern("Audit").is_err());
        assert!(check_index_pattern("_audit").is_err());
        assert!(check_index_pattern("audit-%H").is_err());
        assert_eq!(
            parse_index_pattern("a%%b-%Y").unwrap(),
            vec![IndexPart::Text("a%b-".into()), IndexPart::Year]
        );
    }

    #[test]
    fn bulk_items_are_read_one_by_one() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","status":201,"result":"created"}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},
            {"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [seq]"}}},
            {"create":{"_index":"a","_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
        ]}"#;
        match items_verdict(body, 5, None) {
            Verdict::Partial {
                retry, rejected, ..
            } => {
                assert_eq!(retry, [2, 4]);
                assert_eq!(rejected.len(), 1);
                assert_eq!(rejected[0].0, 3);
                assert!(
                    rejected[0]
                        .1
                        .contains("400 mapper_parsing_exception: failed to parse field [seq]")
                );
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            items_verdict(br#"{"took":1,"errors":false,"items":[]}"#, 0, None),
            Verdict::Success
        );
        assert!(matches!(
            items_verdict(br#"{"took":1,"errors":true,"items":[]}"#, 2, None),
            Verdict::Retry { .. }
        ));
    }
}
