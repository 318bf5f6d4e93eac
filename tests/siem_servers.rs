//! Self-tests of the SIEM test servers in `siem`: requests written by hand on std
//! TcpStreams (keep-alive, chunked, gzip), answers compared with what the real
//! services document.

use crate::http1;
use crate::siem::*;
use serde_json::{Value, json};
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A client connection that can send several requests (keep-alive).
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Client {
    fn connect(url: &str) -> Client {
        let addr = url.strip_prefix("http://").unwrap();
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Client { w, r }
    }

    fn raw(&mut self, bytes: &[u8]) -> Reply {
        self.w.write_all(bytes).unwrap();
        let r = http1::read_response(&mut self.r).unwrap();
        Reply {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    fn post(&mut self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.raw(&request(target, headers, body))
    }

    /// True when the server closed the connection (EOF or reset) without answering.
    fn closed(&mut self) -> bool {
        use std::io::Read;
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

fn request(target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn chunked(target: &str, headers: &[(&str, &str)], body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out =
        format!("POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const CHANNEL: &str = "0aeeac95-ac74-4aa9-b30d-6c4c0ac581ba";

fn splunk() -> (&'static str, String) {
    ("Authorization", format!("Splunk {TOKEN}"))
}

// ----- HEC -----

#[test]
fn hec_authentication_answers() {
    let hec = HecServer::start(TOKEN);
    let mut c = Client::connect(&hec.url);
    let ev = br#"{"event":"x"}"#;
    let r = c.post("/services/collector/event", &[], ev);
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"text":"Token is required","code":2}))
    );
    let r = c.post(
        "/services/collector/event",
        &[("Authorization", "Bearer abc")],
        ev,
    );
    assert_eq!(
        (r.status, r.json()),
        (401, json!({"text":"Invalid authorization","code":3}))
    );
    let r = c.post(
        "/services/collector/event",
        &[("Authorization", "Splunk nope")],
        ev,
    );
    assert_eq!(
        (r.status, r.json()),
        (403, json!({"text":"Invalid token","code":4}))
    );
    assert!(hec.indexed().is_empty());
    hec.set_token("nope");
    let r = c.post(
        "/services/collector/event",
        &[("Authorization", "Splunk nope")],
        ev,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"text":"Success","code":0}))
    );
    assert_eq!(
        hec.requests(),
        4,
        "one keep-alive connection carried all four"
    );
    assert_eq!(hec.seen().len(), 4);
}

#[test]
fn hec_indexes_concatenated_events_with_their_metadata() {
    let hec = HecServer::start(TOKEN);
    let mut c = Client::connect(&hec.url);
    let (k, v) = splunk();
    let body = br#"{"time":1795676802.25,"host":"devbox","source":"auditship","sourcetype":"_json","index":"audit","event":{"_auditship":{"id":"a"}}}
  {"time":"1795676803","event":{"_auditship":{"id":"b"}},"fields":{"env":"prod","tags":["x","y"]}}{"event":"plain text"}"#;
    let r = c.post("/services/collector/event", &[(k, &v)], body);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"text":"Success","code":0}))
    );
    let got = hec.indexed();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["time"], json!(1795676802.25));
    assert_eq!(got[0]["index"], "audit");
    assert_eq!(got[2]["event"], "plain text");
    let ids = hec.ids();
    assert_eq!((ids["a"], ids["b"]), (1, 1));
    // The other event paths are the same endpoint.
    for path in ["/services/collector", "/services/collector/event/1.0"] {
        let r = c.post(path, &[(k, &v)], br#"{"event":1}"#);
        assert_eq!(r.status, 200, "{path}");
    }
    assert_eq!(hec.indexed().len(), 5);
}

#[test]
fn hec_rejects_bad_events_with_their_number_and_indexes_nothing() {
    let hec = HecServer::builder(TOKEN).indexes(&["audit"]).start();
    let mut c = Client::connect(&hec.url);
    let (k, v) = splunk();
    let h = [(k, v.as_str())];
    let cases: &[(&[u8], Value)] = &[
        (b"  \n", json!({"text":"No data","code":5})),
        (
            br#"{"event":1}{"event":2"#,
            json!({"text":"Invalid data format","code":6,"invalid-event-number":1}),
        ),
        (
            br#"{"event":1} [1,2]"#,
            json!({"text":"Invalid data format","code":6,"invalid-event-number":1}),
        ),
        (
            br#"{"event":1}{"time":"soon","event":2}"#,
            json!({"text":"Invalid data format","code":6,"invalid-event-number":1}),
        ),
        (
            br#"{"event":1}{"host":7,"event":2}"#,
            json!({"text":"Invalid data format","code":6,"invalid-event-number":1}),
        ),
        (
            br#"{"time":1}"#,
            json!({"text":"Event field is required","code":12,"invalid-event-number":0}),
        ),
        (
            br#"{"event":1}{"event":null}"#,
            json!({"text":"Event field is required","code":12,"invalid-event-number":1}),
        ),
        (
            br#"{"event":""}"#,
            json!({"text":"Event field cannot be blank","code":13,"invalid-event-number":0}),
        ),
        (
            br#"{"event":1,"fields":{"a":{"b":1}}}"#,
            json!({"text":"Error in handling indexed fields","code":15,"invalid-event-number":0}),
        ),
        (
            br#"{"event":1,"index":"audit"}{"event":1,"index":"main"}"#,
            json!({"text":"Incorrect index","code":7,"invalid-event-number":1}),
        ),
    ];
    for (body, want) in cases {
        let r = c.post("/services/collector/event", &h, body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(&r.json(), want, "{}", String::from_utf8_lossy(body));
    }
    assert!(
        hec.indexed().is_empty(),
        "a rejected request indexes nothing"
    );
}

#[test]
fn hec_scripted_failures_and_gzip_chunked_bodies() {
    let hec = HecServer::builder(TOKEN)
        .script(|n, _| match n {
            0 => HecReply::Busy,
            1 => HecReply::InvalidFormat,
            2 => HecReply::Internal,
            3 => HecReply::InvalidToken,
            4 => HecReply::TokenRequired,
            5 => HecReply::Reset,
            _ => HecReply::Normal,
        })
        .start();
    let (k, v) = splunk();
    let ev = br#"{"event":{"_auditship":{"id":"z"}}}"#;
    let mut c = Client::connect(&hec.url);
    let want = [
        (503, json!({"text":"Server is busy","code":9})),
        (
            400,
            json!({"text":"Invalid data format","code":6,"invalid-event-number":0}),
        ),
        (500, json!({"text":"Internal server error","code":8})),
        (403, json!({"text":"Invalid token","code":4})),
        (401, json!({"text":"Token is required","code":2})),
    ];
    for (status, body) in want {
        let r = c.post("/services/collector/event", &[(k, &v)], ev);
        assert_eq!((r.status, r.json()), (status, body));
    }
    c.w.write_all(&request("/services/collector/event", &[(k, &v)], ev))
        .unwrap();
    assert!(c.closed(), "request 5 is reset");
    assert!(hec.indexed().is_empty());
    // Gzip, chunked, on a fresh connection.
    let mut c = Client::connect(&hec.url);
    let body = gzip(&ev.repeat(50));
    let r = c.raw(&chunked(
        "/services/collector/event",
        &[(k, &v), ("Content-Encoding", "gzip")],
        &body,
        7,
    ));
    assert_eq!(r.status, 200);
    assert_eq!(hec.ids()["z"], 50);
    let last = hec.event_requests().pop().unwrap();
    assert!(last.gzip && last.chunked && last.wire_len == body.len());
    // A body that says gzip but is not: 400 and the connection closes.
    let r = c.post(
        "/services/collector/event",
        &[(k, &v), ("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(r.status, 400);
    assert!(c.closed());
}

#[test]
fn hec_indexer_ack_needs_a_channel_and_confirms_per_ack_id() {
    let hec = HecServer::builder(TOKEN)
        .indexer_ack(true)
        .script(|n, _| match n {
            1 => HecReply::NeverAck,
            2 => HecReply::AckAfterPolls(2),
            _ => HecReply::Normal,
        })
        .start();
    let (k, v) = splunk();
    let mut c = Client::connect(&hec.url);
    let ev = |id: &str| format!(r#"{{"event":{{"_auditship":{{"id":"{id}"}}}}}}"#);
    let r = c.post("/services/collector/event", &[(k, &v)], ev("a").as_bytes());
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"text":"Data channel is missing","code":10}))
    );
    let r = c.post(
        "/services/collector/event",
        &[(k, &v), ("X-Splunk-Request-Channel", "not-a-guid")],
        ev("a").as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"text":"Invalid data channel","code":11}))
    );
    // Script numbers count event requests: these are requests 2.. after the two
    // refused ones, so renumber with a fresh server for clarity.
    drop(c);
    let hec = HecServer::builder(TOKEN)
        .indexer_ack(true)
        .script(|n, _| match n {
            1 => HecReply::NeverAck,
            2 => HecReply::AckAfterPolls(2),
            _ => HecReply::Normal,
        })
        .start();
    let mut c = Client::connect(&hec.url);
    let ch = [(k, v.as_str()), ("X-Splunk-Request-Channel", CHANNEL)];
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let r = c.post("/services/collector/event", &ch, ev(id).as_bytes());
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"text":"Success","code":0,"ackId":i}))
        );
    }
    // Another channel (as a query parameter) counts from 0 again.
    let other = "8F0E4C5B-1A2B-4C3D-9E8F-0123456789AB";
    let r = c.post(
        &format!("/services/collector/event?channel={other}"),
        &[(k, &v)],
        ev("d").as_bytes(),
    );
    assert_eq!(r.json()["ackId"], 0);
    assert_eq!(hec.pending_acks(), 4);
    let poll = |c: &mut Client, ch: &str, ids: &str| {
        c.post(
            &format!("/services/collector/ack?channel={ch}"),
            &[(k, &v)],
            format!(r#"{{"acks":[{ids}]}}"#).as_bytes(),
        )
    };
    let r = poll(&mut c, CHANNEL, "0,1,2,7");
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"acks":{"0":true,"1":false,"2":false,"7":false}})
        )
    );
    let r = poll(&mut c, CHANNEL, "0,1,2");
    assert_eq!(
        r.json(),
        json!({"acks":{"0":false,"1":false,"2":false}}),
        "0 was forgotten once confirmed"
    );
    let r = poll(&mut c, CHANNEL, "1,2");
    assert_eq!(
        r.json(),
        json!({"acks":{"1":false,"2":true}}),
        "2 confirms at its third poll"
    );
    for _ in 0..5 {
        assert_eq!(
            poll(&mut c, CHANNEL, "1").json(),
            json!({"acks":{"1":false}})
        );
    }
    assert_eq!(poll(&mut c, other, "0").json(), json!({"acks":{"0":true}}));
    let confirmed = hec.confirmed_ids();
    assert_eq!(confirmed.len(), 3);
    assert!(!confirmed.contains_key("b"), "never confirmed");
    assert_eq!(hec.ids().len(), 4, "all four were answered success");
    assert_eq!(hec.pending_acks(), 1);
    // Ack polls need a channel and a well-formed body.
    let r = c.post("/services/collector/ack", &[(k, &v)], br#"{"acks":[0]}"#);
    assert_eq!(
        r.json(),
        json!({"text":"Data channel is missing","code":10})
    );
    let r = poll(&mut c, CHANNEL, "\"x\"");
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"text":"Invalid data format","code":6}))
    );
    assert_eq!(hec.ack_polls(), 11);
}

#[test]
fn hec_ack_endpoint_without_ack_mode() {
    let hec = HecServer::start(TOKEN);
    let (k, v) = splunk();
    let mut c = Client::connect(&hec.url);
    let r = c.post(
        &format!("/services/collector/ack?channel={CHANNEL}"),
        &[(k, &v)],
        br#"{"acks":[0]}"#,
    );
    assert_eq!(
        (r.status, r.json()),
        (400, json!({"text":"ACK is disabled","code":14}))
    );
    // A channel is accepted, and no ackId is given, without ack mode.
    let r = c.post(
        "/services/collector/event",
        &[(k, &v), ("X-Splunk-Request-Channel", CHANNEL)],
        br#"{"event":1}"#,
    );
    assert_eq!(r.json(), json!({"text":"Success","code":0}));
}

// ----- Elasticsearch -----

fn ndjson(lines: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

#[test]
fn es_create_index_delete_semantics_and_the_response_shape() {
    let es = EsServer::start();
    let mut c = Client::connect(&es.url);
    let body = ndjson(&[
        json!({"create": {"_index": "audit-2026.11.26", "_id": "a"}}),
        json!({"n": 1}),
        json!({"create": {"_id": "b"}}),
        json!({"n": 2}),
        json!({"create": {"_index": "audit-2026.11.26", "_id": "a"}}),
        json!({"n": 3}),
        json!({"index": {"_index": "audit-2026.11.26", "_id": "a"}}),
        json!({"n": 4}),
        json!({"delete": {"_index": "other", "_id": "zz"}}),
    ]);
    let r = c.post("/audit-2026.11.26/_bulk?refresh=false", &[NDJSON], &body);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["errors"], true);
    assert!(v["took"].is_u64());
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    let a = &items[0]["create"];
    assert_eq!(
        (
            &a["_index"],
            &a["_id"],
            &a["status"],
            &a["result"],
            &a["_version"]
        ),
        (
            &json!("audit-2026.11.26"),
            &json!("a"),
            &json!(201),
            &json!("created"),
            &json!(1)
        )
    );
    assert_eq!(a["_shards"]["successful"], 1);
    assert_eq!(
        items[1]["create"]["_index"], "audit-2026.11.26",
        "index from the path"
    );
    let conflict = &items[2]["create"];
    assert_eq!(conflict["status"], 409);
    assert_eq!(
        conflict["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(
        conflict["error"]["reason"],
        "[a]: version conflict, document already exists (current version [1])"
    );
    assert!(conflict.get("result").is_none());
    assert_eq!(items[3]["index"]["status"], 200);
    assert_eq!(items[3]["index"]["result"], "updated");
    assert_eq!(items[3]["index"]["_version"], 2);
    assert_eq!(items[4]["delete"]["status"], 404);
    assert_eq!(items[4]["delete"]["result"], "not_found");
    let docs = es.docs();
    assert_eq!(docs.len(), 2);
    assert_eq!(
        docs[&("audit-2026.11.26".into(), "a".into())].doc,
        json!({"n": 4})
    );
    assert_eq!(
        es.item_statuses().into_iter().collect::<Vec<_>>(),
        vec![(200, 1), (201, 2), (404, 1), (409, 1)]
    );
    // Only conflicts: errors is still true; a clean request has errors false.
    let r = c.post(
        "/_bulk",
        &[NDJSON],
        &ndjson(&[json!({"create": {"_index": "x", "_id": "1"}}), json!({})]),
    );
    assert_eq!(r.json()["errors"], false);
    assert_eq!(es.bulks().len(), 2);
}

#[test]
fn es_rejects_malformed_bulk_bodies() {
    let es = EsServer::start();
    let mut c = Client::connect(&es.url);
    let cases: &[(&[u8], &str)] = &[
        (
            b"{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{}",
            "illegal_argument_exception",
        ),
        (b"", "action_request_validation_exception"),
        (
            b"{\"upsert\":{\"_index\":\"i\"}}\n{}\n",
            "illegal_argument_exception",
        ),
        (
            b"{\"create\":{\"_id\":\"1\"}}\n{}\n",
            "action_request_validation_exception",
        ),
        (
            b"{\"create\":{\"_index\":\"i\"}}\n",
            "action_request_validation_exception",
        ),
        (b"not json\n", "x_content_parse_exception"),
    ];
    for (body, kind) in cases {
        let r = c.post("/_bulk", &[NDJSON], body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        let v = r.json();
        assert_eq!(v["error"]["type"], *kind, "{v}");
        assert_eq!(v["error"]["root_cause"][0]["type"], *kind);
        assert_eq!(v["status"], 400);
    }
    assert!(
        r_reason(&mut c, b"{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{}")
            .contains("terminated by a newline")
    );
    let r = c.post("/_bulk", &[("Content-Type", "text/plain")], b"{}\n");
    assert_eq!(r.status, 406);
    let r = c.post("/_search", &[NDJSON], b"{}\n");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("no handler found")
    );
    // A source that is not an object fails its item only.
    let r = c.post(
        "/_bulk",
        &[NDJSON],
        b"{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n[1]\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["items"][0]["create"]["error"]["type"],
        "mapper_parsing_exception"
    );
    assert_eq!(es.doc_count(), 0);
}

fn r_reason(c: &mut Client, body: &[u8]) -> String {
    c.post("/_bulk", &[NDJSON], body).json()["error"]["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn es_authentication_with_api_key_and_basic() {
    let es = EsServer::builder()
        .api_key("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw")
        .start();
    let mut c = Client::connect(&es.url);
    let body = ndjson(&[json!({"create": {"_index": "i", "_id": "1"}}), json!({})]);
    let r = c.post("/_bulk", &[NDJSON], &body);
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["error"]["type"], "security_exception");
    assert_eq!(
        v["error"]["reason"],
        "missing authentication credentials for REST request [/_bulk]"
    );
    assert_eq!(v["status"], 401);
    assert_eq!(r.header("WWW-Authenticate").len(), 2);
    // The encoded key of Elasticsearch's own example.
    let key = EsAuth::ApiKey {
        id: "VuaCfGcBCdbkQm-e5aOx".into(),
        key: "ui2lp2axTNmsyakw9tvNnw".into(),
    };
    assert_eq!(
        key.encoded_api_key().unwrap(),
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
    );
    let r = c.post(
        "/_bulk",
        &[NDJSON, ("Authorization", "ApiKey d3Jvbmc6a2V5")],
        &body,
    );
    assert_eq!(r.status, 401);
    let good = key.header().unwrap();
    let r = c.post("/_bulk", &[NDJSON, ("Authorization", &good)], &body);
    assert_eq!(r.status, 200);

    let es = EsServer::builder().basic("elastic", "changeme").start();
    let mut c = Client::connect(&es.url);
    let r = c.post(
        "/_bulk",
        &[NDJSON, ("Authorization", "Basic ZWxhc3RpYzp3cm9uZw==")],
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["reason"],
        "unable to authenticate user [elastic] for REST request [/_bulk]"
    );
    let r = c.post(
        "/_bulk",
        &[NDJSON, ("Authorization", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(es.doc_count(), 1);
}

#[test]
fn es_scripted_item_and_request_failures() {
    let es = EsServer::builder()
        .on_request(|n| match n {
            0 => EsReply::TooManyRequests,
            1 => EsReply::Unavailable,
            2 => EsReply::Unauthorized,
            3 => EsReply::Reset,
            4 => EsReply::ProcessThenReset,
            _ => EsReply::Normal,
        })
        .on_item(|it| match it.doc["seq"].as_u64() {
            Some(1) if it.attempt < 2 => Some(ItemFailure::Rejected),
            Some(2) => Some(ItemFailure::MapperParsing),
            Some(3) if it.attempt == 0 => Some(ItemFailure::Internal),
            _ => None,
        })
        .start();
    let body = ndjson(&[
        json!({"create": {"_index": "i", "_id": "0"}}),
        json!({"seq": 0}),
        json!({"create": {"_index": "i", "_id": "1"}}),
        json!({"seq": 1}),
        json!({"create": {"_index": "i", "_id": "2"}}),
        json!({"seq": 2}),
        json!({"create": {"_index": "i", "_id": "3"}}),
        json!({"seq": 3}),
    ]);
    let mut c = Client::connect(&es.url);
    let want = [
        (429, "es_rejected_execution_exception"),
        (503, "cluster_block_exception"),
        (401, "security_exception"),
    ];
    for (status, kind) in want {
        let r = c.post("/_bulk", &[NDJSON], &body);
        assert_eq!(
            (r.status, r.json()["error"]["type"].as_str().unwrap()),
            (status, kind)
        );
        assert_eq!(r.json()["status"], status);
    }
    c.w.write_all(&request("/_bulk", &[NDJSON], &body)).unwrap();
    assert!(c.closed());
    assert_eq!(es.doc_count(), 0, "nothing processed so far");
    let mut c = Client::connect(&es.url);
    c.w.write_all(&request("/_bulk", &[NDJSON], &body)).unwrap();
    assert!(c.closed(), "processed, then the answer is lost");
    assert_eq!(
        es.doc_count(),
        1,
        "seq 0 stored; 1 rejected, 2 unparsable, 3 internal"
    );
    let mut c = Client::connect(&es.url);
    let r = c.post("/_bulk", &[NDJSON], &body);
    let statuses: Vec<u64> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [409, 429, 400, 201]);
    let items = &r.json()["items"];
    assert_eq!(
        items[1]["create"]["error"]["type"],
        "es_rejected_execution_exception"
    );
    assert_eq!(
        items[2]["create"]["error"]["type"],
        "mapper_parsing_exception"
    );
    let r = c.post("/_bulk", &[NDJSON], &body);
    let statuses: Vec<u64> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [409, 201, 400, 409],
        "seq 1 passes at its third attempt"
    );
    assert_eq!(es.doc_count(), 3);
    assert_eq!(es.requests(), 7);
    assert_eq!(es.bulks().len(), 3);
    assert_eq!(es.bulks()[0].items[3].status, 500);
}

#[test]
fn es_body_limit_applies_to_the_decompressed_body() {
    let es = EsServer::builder().max_content_length(1000).start();
    let mut lines = Vec::new();
    for i in 0..30 {
        lines.push(json!({"create": {"_index": "i", "_id": i.to_string()}}));
        lines.push(json!({"msg": "the same words again and again"}));
    }
    let body = ndjson(&lines);
    assert!(body.len() > 1000);
    let packed = gzip(&body);
    assert!(
        packed.len() < 1000,
        "compressed it would fit: {}",
        packed.len()
    );
    let mut c = Client::connect(&es.url);
    let r = c.post("/_bulk", &[NDJSON, ("Content-Encoding", "gzip")], &packed);
    assert_eq!((r.status, r.body.len()), (413, 0));
    let small = ndjson(&lines[..10]);
    let r = c.post(
        "/_bulk",
        &[NDJSON, ("Content-Encoding", "gzip")],
        &gzip(&small),
    );
    assert_eq!(r.status, 200);
    assert_eq!(es.doc_count(), 5);
    assert!(es.seen().last().unwrap().gzip);
}

// ----- OTLP -----

fn export(records: Vec<Value>) -> Value {
    json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "host.name", "value": {"stringValue": "devbox"}},
            {"key": "service.name", "value": {"stringValue": "auditship"}}
        ]},
        "scopeLogs": [{"scope": {"name": "auditship"}, "logRecords": records}]
    }]})
}

fn record(id: &str) -> Value {
    json!({
        "timeUnixNano": "1795676802250000000",
        "observedTimeUnixNano": 1795676802300000000u64,
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": "{\"a\":1}"},
        "attributes": [
            {"key": "auditship.id", "value": {"stringValue": id}},
            {"key": "n", "value": {"intValue": "42"}},
            {"key": "ok", "value": {"boolValue": true}},
            {"key": "list", "value": {"arrayValue": {"values": [{"doubleValue": 1.5}]}}},
            {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"intValue": 7}}]}}}
        ],
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "someFutureField": {"x": 1}
    })
}

const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn otlp_accepts_valid_exports_and_records_them() {
    let otlp = OtlpServer::builder().bearer("t0k").start();
    let mut c = Client::connect(&otlp.url);
    let auth = ("Authorization", "Bearer t0k");
    let body = export(vec![record("a"), record("b")]).to_string();
    let r = c.post("/v1/logs", &[JSON_CT], body.as_bytes());
    assert_eq!((r.status, r.json()["code"].clone()), (401, json!(16)));
    let r = c.post(
        "/v1/logs",
        &[JSON_CT, ("Authorization", "Bearer nope")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = c.post("/v1/logs", &[JSON_CT, auth], body.as_bytes());
    assert_eq!((r.status, r.json()), (200, json!({})));
    assert_eq!(r.header("Content-Type"), ["application/json"]);
    // Gzip and chunked, same connection.
    let gz = gzip(export(vec![record("c")]).to_string().as_bytes());
    let r = c.raw(&chunked(
        "/v1/logs",
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            auth,
            ("Content-Encoding", "gzip"),
        ],
        &gz,
        5,
    ));
    assert_eq!(r.status, 200);
    // An empty request is a success.
    let r = c.post("/v1/logs", &[JSON_CT, auth], b"{}");
    assert_eq!((r.status, r.json()), (200, json!({})));
    let logs = otlp.accepted();
    assert_eq!(logs.len(), 3);
    assert_eq!(
        logs[0].resource_attribute("host.name").unwrap()["stringValue"],
        "devbox"
    );
    assert_eq!(logs[0].record["timeUnixNano"], "1795676802250000000");
    assert_eq!(logs[2].request, 3);
    let ids = otlp.ids();
    assert_eq!((ids["a"], ids["b"], ids["c"]), (1, 1, 1));
    assert_eq!(otlp.requests(), 5);
}

#[test]
fn otlp_rejects_malformed_exports_with_a_status_body() {
    let otlp = OtlpServer::start();
    let mut c = Client::connect(&otlp.url);
    let mut bad_enum = record("x");
    bad_enum["severityNumber"] = json!("SEVERITY_NUMBER_INFO");
    let mut bad_time = record("x");
    bad_time["timeUnixNano"] = json!("yesterday");
    let mut two_values = record("x");
    two_values["body"] = json!({"stringValue": "a", "intValue": "1"});
    let mut bad_attr = record("x");
    bad_attr["attributes"] = json!([{"value": {"stringValue": "no key"}}]);
    let mut bad_trace = record("x");
    bad_trace["traceId"] = json!("xyz");
    let cases = [
        ("not json".to_string(), ""),
        (json!({"resourceLogs": {}}).to_string(), "resourceLogs"),
        (
            export(vec![bad_enum]).to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[0].severityNumber",
        ),
        (
            export(vec![record("ok"), bad_time]).to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[1].timeUnixNano",
        ),
        (
            export(vec![two_values]).to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[0].body",
        ),
        (
            export(vec![bad_attr]).to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[0].attributes[0].key",
        ),
        (
            export(vec![bad_trace]).to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[0].traceId",
        ),
    ];
    for (body, field) in &cases {
        let r = c.post("/v1/logs", &[JSON_CT], body.as_bytes());
        assert_eq!(r.status, 400, "{body}");
        let v = r.json();
        assert_eq!(v["code"], 3);
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
        assert_eq!(
            v["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(v["details"][0]["fieldViolations"][0]["field"], *field);
    }
    let r = c.post(
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        b"\x0a\x00",
    );
    assert_eq!(r.status, 415);
    let r = c.post("/v1/traces", &[JSON_CT], b"{}");
    assert_eq!(r.status, 404);
    // snake_case keys are unknown fields: ignored, so nothing is received.
    let snake = json!({"resource_logs": [{"scope_logs": [{"log_records": [record("s")]}]}]});
    let r = c.post("/v1/logs", &[JSON_CT], snake.to_string().as_bytes());
    assert_eq!(r.status, 200);
    assert!(otlp.accepted().is_empty());
}

#[test]
fn otlp_scripted_answers_partial_success_throttling_and_limits() {
    let otlp = OtlpServer::builder()
        .max_body(2000)
        .script(|n, _| match n {
            0 => OtlpReply::PartialSuccess {
                rejected: 2,
                message: "2 log records exceed the attribute limit".into(),
            },
            1 => OtlpReply::status(429, Some(3)),
            2 => OtlpReply::status(503, None),
            3 => OtlpReply::status(502, None),
            4 => OtlpReply::status(504, None),
            5 => OtlpReply::status(400, None),
            6 => OtlpReply::status(500, None),
            7 => OtlpReply::Reset,
            _ => OtlpReply::Ok,
        })
        .start();
    let body = export(vec![record("a"), record("b")]).to_string();
    let mut c = Client::connect(&otlp.url);
    let r = c.post("/v1/logs", &[JSON_CT], body.as_bytes());
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "2 log records exceed the attribute limit"}})
        )
    );
    for (status, code, retry_after) in [
        (429, 8, Some("3")),
        (503, 14, None),
        (502, 14, None),
        (504, 4, None),
        (400, 3, None),
        (500, 13, None),
    ] {
        let r = c.post("/v1/logs", &[JSON_CT], body.as_bytes());
        assert_eq!((r.status, r.json()["code"].clone()), (status, json!(code)));
        assert_eq!(r.header("Retry-After").first().copied(), retry_after);
    }
    c.w.write_all(&request("/v1/logs", &[JSON_CT], body.as_bytes()))
        .unwrap();
    assert!(c.closed());
    assert!(otlp.accepted().is_empty(), "only partial or failed so far");
    let mut c = Client::connect(&otlp.url);
    let r = c.post("/v1/logs", &[JSON_CT], body.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(otlp.accepted().len(), 2);
    // The limit applies after decompression.
    let big = export((0..20).map(|i| record(&i.to_string())).collect()).to_string();
    assert!(big.len() > 2000);
    let r = c.post(
        "/v1/logs",
        &[JSON_CT, ("Content-Encoding", "gzip")],
        &gzip(big.as_bytes()),
    );
    assert_eq!((r.status, r.json()["code"].clone()), (413, json!(8)));
    let ex = otlp.exports();
    assert_eq!(ex.len(), 9);
    assert_eq!(ex[0].rejected, Some(2));
    assert_eq!(ex[7].status, None);
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    let v = [
        "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy",
    ];
    for (i, want) in v.iter().enumerate() {
        assert_eq!(base64(&b"foobar"[..i]), *want);
    }
}

#[test]
fn a_dropped_server_closes_its_connections() {
    let hec = HecServer::start(TOKEN);
    let mut c = Client::connect(&hec.url);
    let (k, v) = splunk();
    assert_eq!(
        c.post("/services/collector/event", &[(k, &v)], br#"{"event":1}"#)
            .status,
        200
    );
    drop(hec);
    assert!(c.closed(), "the kept-alive connection is shut down");
}
