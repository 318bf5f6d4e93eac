//! Protocol-faithful test servers for the SIEM sinks, on std threads and 127.0.0.1:
//!
//! - [`HecServer`]: Splunk HTTP Event Collector, `/services/collector/event` and
//!   `/services/collector/ack` (indexer acknowledgement).
//! - [`EsServer`]: Elasticsearch / OpenSearch `_bulk` with `create` / `index` /
//!   `delete` semantics over a store keyed by (index, `_id`).
//! - [`OtlpServer`]: OTLP/HTTP logs in the JSON encoding, `/v1/logs`.
//!
//! Each one checks what the real service checks (authentication, framing, the shape
//! of the payload), answers with the real service's status codes and JSON bodies,
//! records what it accepted, and takes a script: a closure from the request number
//! (0-based, per server and endpoint) to a scripted failure, so tests are
//! deterministic. The protocol checks come first; the script decides only about
//! requests the real service would have accepted, except where a server says
//! otherwise. Sources of the protocol details are named on each server. HTTP/1.1
//! framing (keep-alive, chunked, gzip) is `http1`'s. The servers' own tests are in
//! `siem_servers`; the daemon tests that use them in `siem_sinks`.

#![allow(dead_code)]

use crate::http1::{self, Answer, Request, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request as a server saw it, and what it answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Arrival order over every request this server received, from 0.
    pub seq: u64,
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub chunked: bool,
    /// Body bytes on the wire (compressed, when `gzip`).
    pub wire_len: usize,
    /// The decoded body.
    pub body: Vec<u8>,
    /// The status answered; `None` when the server closed the connection instead.
    pub status: Option<u16>,
    pub answer: Vec<u8>,
}

impl Seen {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The answer body as JSON (`Null` when it is not JSON).
    pub fn answer_json(&self) -> Value {
        serde_json::from_slice(&self.answer).unwrap_or(Value::Null)
    }
}

/// The log of requests every server keeps.
#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
}

impl Log {
    fn push(&mut self, req: &Request, answer: &Answer) {
        let (status, body) = match answer {
            Answer::Respond(r) => (Some(r.status), r.body.clone()),
            Answer::Reset => (None, Vec::new()),
        };
        self.seen.push(Seen {
            seq: self.seen.len() as u64,
            at: Instant::now(),
            method: req.method.clone(),
            path: req.path.clone(),
            target: req.target.clone(),
            headers: req.headers.clone(),
            gzip: req.gzip,
            chunked: req.chunked,
            wire_len: req.wire_len,
            body: req.body.clone(),
            status,
            answer: body,
        });
    }
}

/// Counts of `_auditship.id` over shipped records.
pub fn count_ids<'a>(records: impl IntoIterator<Item = &'a Value>) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for r in records {
        let id = r["_auditship"]["id"].as_str().unwrap_or("").to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

/// Standard base64 (RFC 4648 section 4, with padding), for expected credentials.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

// ---------------------------------------------------------------------------------
// Splunk HTTP Event Collector
// ---------------------------------------------------------------------------------

/// What a [`HecServer`] does with one event request (the script's answer).
///
/// The failure answers are the HEC status codes of Splunk's "Troubleshoot HTTP Event
/// Collector" table (code, HTTP status, text): 2/401 "Token is required", 4/403
/// "Invalid token", 6/400 "Invalid data format", 8/500 "Internal server error",
/// 9/503 "Server is busy".
#[derive(Debug, Clone)]
pub enum HecReply {
    /// Index the events (in ack mode: assign an ackId confirmed after the server's
    /// default number of polls).
    Normal,
    /// 503 `{"text":"Server is busy","code":9}`.
    Busy,
    /// 400 `{"text":"Invalid data format","code":6,"invalid-event-number":0}`.
    InvalidFormat,
    /// 500 `{"text":"Internal server error","code":8}`.
    Internal,
    /// 401 `{"text":"Token is required","code":2}`.
    TokenRequired,
    /// 403 `{"text":"Invalid token","code":4}`.
    InvalidToken,
    /// Close the connection without answering (nothing indexed).
    Reset,
    /// Ack mode: accept and assign an ackId that is never confirmed.
    NeverAck,
    /// Ack mode: accept; the ackId answers `false` to its first `k` polls, then `true`.
    AckAfterPolls(u32),
}

type HecScript = Box<dyn Fn(u64, &[Value]) -> HecReply + Send + Sync>;

/// An ackId waiting for confirmation.
struct PendingAck {
    /// Polls still answered `false`; `None`: never confirmed.
    polls_left: Option<u32>,
    events: Vec<Value>,
}

#[derive(Default)]
struct HecChannel {
    next_ack: u64,
    pending: HashMap<u64, PendingAck>,
}

#[derive(Default)]
struct HecState {
    log: Log,
    event_requests: u64,
    ack_polls: u64,
    /// Envelopes of requests answered success, in arrival order.
    indexed: Vec<Value>,
    /// Events whose ackId was confirmed `true`.
    confirmed: Vec<Value>,
    channels: HashMap<String, HecChannel>,
    /// The most ackIds assigned and not yet confirmed at one time.
    max_pending: usize,
}

struct HecConfig {
    token: Mutex<String>,
    indexer_ack: bool,
    ack_after_polls: u32,
    indexes: Option<Vec<String>>,
    script: HecScript,
}

/// A Splunk HTTP Event Collector.
///
/// - `POST /services/collector/event` (also `/services/collector` and
///   `/services/collector/event/1.0`) with `Authorization: Splunk <token>`: missing
///   header 401 code 2, a header of another form 401 code 3 "Invalid authorization",
///   a wrong token 403 code 4.
/// - The body is JSON event objects one after another, any whitespace between them.
///   Each needs `event` (absent or `null`: 400 code 12 "Event field is required";
///   `""`: code 13 "Event field cannot be blank"); `time` is epoch seconds, a number
///   or a numeric string, a fraction allowed; `host`, `source`, `sourcetype`,
///   `index` are strings; `fields` is an object of flat values (else code 15 "Error
///   in handling indexed fields"). Bad JSON or a member of the wrong type: 400 code
///   6 "Invalid data format". Errors about one event carry its 0-based
///   `invalid-event-number`. An empty body: 400 code 5 "No data". With an index
///   allow-list, another index: 400 code 7 "Incorrect index". A rejected request
///   indexes nothing here (real Splunk may have indexed the events before the
///   invalid one).
/// - Success: 200 `{"text":"Success","code":0}`.
/// - Indexer acknowledgement (server option): event requests need a channel
///   (`X-Splunk-Request-Channel` header or `channel` query parameter; none: 400 code
///   10 "Data channel is missing"; not a GUID: 400 code 11 "Invalid data channel") and
///   are answered `{"text":"Success","code":0,"ackId":N}`, ackIds counting from 0 per
///   channel. `POST /services/collector/ack?channel=GUID` with `{"acks":[0,1]}` answers
///   `{"acks":{"0":true,"1":false}}`; once an ackId was answered `true` it is
///   forgotten and answers `false` after that (Splunk drops confirmed ackIds). Without
///   ack mode the ack endpoint answers 400 code 14 "ACK is disabled".
///
/// Sources: help.splunk.com "Format events for HTTP Event Collector" and "HTTP Event
/// Collector REST API endpoints"; the status code table of "Troubleshoot HTTP Event
/// Collector" (as reproduced in splunk-library-javalogging's `ServerErrors`);
/// docs.splunk.com "About HTTP Event Collector Indexer Acknowledgment" (as summarised
/// in Vector's RFC 9465, observed against Splunk 7.3.2).
pub struct HecServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<Mutex<HecState>>,
    config: Arc<HecConfig>,
    _server: http1::Server,
}

pub struct HecBuilder {
    token: String,
    indexer_ack: bool,
    ack_after_polls: u32,
    indexes: Option<Vec<String>>,
    script: HecScript,
}

impl HecBuilder {
    /// Indexer acknowledgement on or off (off by default).
    pub fn indexer_ack(mut self, on: bool) -> Self {
        self.indexer_ack = on;
        self
    }

    /// Ack mode: how many polls of an ackId of a [`HecReply::Normal`] request answer
    /// `false` before `true` (0 by default: the first poll confirms).
    pub fn confirm_after_polls(mut self, k: u32) -> Self {
        self.ack_after_polls = k;
        self
    }

    /// Only these indexes may be named by an event (default: any).
    pub fn indexes(mut self, allowed: &[&str]) -> Self {
        self.indexes = Some(allowed.iter().map(|s| s.to_string()).collect());
        self
    }

    /// The answer to event request `n`, given its parsed events. `n` counts every
    /// request to the event endpoint from 0, those refused before the script is
    /// asked (authentication, channel, bad data) included.
    pub fn script(mut self, f: impl Fn(u64, &[Value]) -> HecReply + Send + Sync + 'static) -> Self {
        self.script = Box::new(f);
        self
    }

    pub fn start(self) -> HecServer {
        let state = Arc::new(Mutex::new(HecState::default()));
        let config = Arc::new(HecConfig {
            token: Mutex::new(self.token),
            indexer_ack: self.indexer_ack,
            ack_after_polls: self.ack_after_polls,
            indexes: self.indexes,
            script: self.script,
        });
        let handler: http1::Handler = {
            let (state, config) = (state.clone(), config.clone());
            Arc::new(move |req: Request| {
                let answer = hec_handle(&req, &state, &config);
                state.lock().unwrap().log.push(&req, &answer);
                answer
            })
        };
        let server = http1::Server::start(handler);
        HecServer {
            url: server.url.clone(),
            state,
            config,
            _server: server,
        }
    }
}

impl HecServer {
    /// A collector accepting `token`, without indexer acknowledgement, indexing
    /// everything valid.
    pub fn start(token: &str) -> HecServer {
        Self::builder(token).start()
    }

    pub fn builder(token: &str) -> HecBuilder {
        HecBuilder {
            token: token.to_string(),
            indexer_ack: false,
            ack_after_polls: 0,
            indexes: None,
            script: Box::new(|_, _| HecReply::Normal),
        }
    }

    /// Accept `token` from now on (and refuse the old one).
    pub fn set_token(&self, token: &str) {
        *self.config.token.lock().unwrap() = token.to_string();
    }

    /// Requests to the event endpoint so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().event_requests
    }

    /// Requests to the ack endpoint so far.
    pub fn ack_polls(&self) -> u64 {
        self.state.lock().unwrap().ack_polls
    }

    /// Every request, any endpoint, with its answer.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.seen.clone()
    }

    /// Event-endpoint requests only.
    pub fn event_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| hec_is_event_path(&s.path))
            .collect()
    }

    /// The event envelopes (`time`, `host`, ..., `event`) of requests answered
    /// success, in arrival order.
    pub fn indexed(&self) -> Vec<Value> {
        self.state.lock().unwrap().indexed.clone()
    }

    /// The `event` members of [`indexed`](Self::indexed).
    pub fn records(&self) -> Vec<Value> {
        self.indexed()
            .into_iter()
            .map(|e| e["event"].clone())
            .collect()
    }

    /// Indexed events counted by `event._auditship.id`.
    pub fn ids(&self) -> HashMap<String, u32> {
        count_ids(&self.records())
    }

    /// Ack mode: events whose ackId was confirmed `true`, as envelopes.
    pub fn confirmed(&self) -> Vec<Value> {
        self.state.lock().unwrap().confirmed.clone()
    }

    /// Ack mode: confirmed events counted by `event._auditship.id`.
    pub fn confirmed_ids(&self) -> HashMap<String, u32> {
        let records: Vec<Value> = self
            .confirmed()
            .into_iter()
            .map(|e| e["event"].clone())
            .collect();
        count_ids(&records)
    }

    /// Ack mode: the most ackIds that were assigned and not yet confirmed at one
    /// time, over all channels.
    pub fn max_pending_acks(&self) -> usize {
        self.state.lock().unwrap().max_pending
    }

    /// Ack mode: ackIds assigned and not yet confirmed, over all channels.
    pub fn pending_acks(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.channels.values().map(|c| c.pending.len()).sum()
    }
}

fn hec_is_event_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/services/collector" | "/services/collector/event" | "/services/collector/event/1.0"
    )
}

fn hec_answer(status: u16, body: Value) -> Answer {
    Answer::Respond(Response::json(status, &body))
}

fn hec_error(status: u16, code: u32, text: &str, event: Option<usize>) -> Answer {
    let mut body = json!({ "text": text, "code": code });
    if let Some(n) = event {
        body["invalid-event-number"] = json!(n);
    }
    hec_answer(status, body)
}

/// A GUID as Splunk takes it for a channel: 8-4-4-4-12 hex digits.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn hec_auth(req: &Request, config: &HecConfig) -> Option<Answer> {
    let Some(h) = req.header("authorization") else {
        return Some(hec_error(401, 2, "Token is required", None));
    };
    let Some((scheme, token)) = h.trim().split_once(' ') else {
        return Some(hec_error(401, 3, "Invalid authorization", None));
    };
    if !scheme.eq_ignore_ascii_case("splunk") || token.trim().is_empty() {
        return Some(hec_error(401, 3, "Invalid authorization", None));
    }
    if token.trim() != *config.token.lock().unwrap() {
        return Some(hec_error(403, 4, "Invalid token", None));
    }
    None
}

/// The request's channel; `Err` with the answer when it is required and missing, or
/// malformed.
fn hec_channel(req: &Request, required: bool) -> Result<Option<String>, Answer> {
    let ch = req
        .header("x-splunk-request-channel")
        .map(str::to_string)
        .or_else(|| req.query("channel"));
    match ch {
        None if required => Err(hec_error(400, 10, "Data channel is missing", None)),
        None => Ok(None),
        Some(c) if !is_guid(&c) => Err(hec_error(400, 11, "Invalid data channel", None)),
        Some(c) => Ok(Some(c)),
    }
}

/// Parses concatenated event objects; `Err` is the 400 answer.
fn hec_parse(body: &[u8], indexes: Option<&Vec<String>>) -> Result<Vec<Value>, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(hec_error(400, 5, "No data", None));
    }
    let mut events = Vec::new();
    for (i, v) in serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .enumerate()
    {
        let bad = || hec_error(400, 6, "Invalid data format", Some(i));
        let Ok(v) = v else {
            return Err(bad());
        };
        let Some(obj) = v.as_object() else {
            return Err(bad());
        };
        match obj.get("event") {
            None | Some(Value::Null) => {
                return Err(hec_error(400, 12, "Event field is required", Some(i)));
            }
            Some(Value::String(s)) if s.is_empty() => {
                return Err(hec_error(400, 13, "Event field cannot be blank", Some(i)));
            }
            Some(_) => {}
        }
        match obj.get("time") {
            None | Some(Value::Number(_)) => {}
            Some(Value::String(s)) if s.parse::<f64>().is_ok() => {}
            Some(_) => return Err(bad()),
        }
        for k in ["host", "source", "sourcetype", "index"] {
            if obj.get(k).is_some_and(|v| !v.is_string()) {
                return Err(bad());
            }
        }
        if let Some(f) = obj.get("fields") {
            let flat = f.as_object().is_some_and(|m| {
                m.values().all(|v| match v {
                    Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
                    Value::Object(_) => false,
                    _ => true,
                })
            });
            if !flat {
                return Err(hec_error(
                    400,
                    15,
                    "Error in handling indexed fields",
                    Some(i),
                ));
            }
        }
        if let (Some(allowed), Some(index)) = (indexes, obj.get("index").and_then(Value::as_str))
            && !allowed.iter().any(|a| a == index)
        {
            return Err(hec_error(400, 7, "Incorrect index", Some(i)));
        }
        events.push(v);
    }
    Ok(events)
}

fn hec_handle(req: &Request, state: &Mutex<HecState>, config: &HecConfig) -> Answer {
    let path = req.path.trim_end_matches('/');
    if path == "/services/collector/health" {
        return hec_error(200, 17, "HEC is healthy", None);
    }
    if path == "/services/collector/ack" {
        state.lock().unwrap().ack_polls += 1;
        return hec_ack(req, state, config);
    }
    if !hec_is_event_path(path) {
        return hec_error(
            404,
            404,
            "The requested URL was not found on this server.",
            None,
        );
    }
    let n = {
        let mut s = state.lock().unwrap();
        s.event_requests += 1;
        s.event_requests - 1
    };
    if req.method != "POST" {
        return hec_error(405, 405, "Method Not Allowed", None);
    }
    if let Some(a) = hec_auth(req, config) {
        return a;
    }
    let channel = match hec_channel(req, config.indexer_ack) {
        Ok(c) => c,
        Err(a) => return a,
    };
    let events = match hec_parse(&req.body, config.indexes.as_ref()) {
        Ok(e) => e,
        Err(a) => return a,
    };
    let polls_left = match (config.script)(n, &events) {
        HecReply::Normal => Some(config.ack_after_polls),
        HecReply::NeverAck => None,
        HecReply::AckAfterPolls(k) => Some(k),
        HecReply::Busy => return hec_error(503, 9, "Server is busy", None),
        HecReply::InvalidFormat => return hec_error(400, 6, "Invalid data format", Some(0)),
        HecReply::Internal => return hec_error(500, 8, "Internal server error", None),
        HecReply::TokenRequired => return hec_error(401, 2, "Token is required", None),
        HecReply::InvalidToken => return hec_error(403, 4, "Invalid token", None),
        HecReply::Reset => return Answer::Reset,
    };
    let mut s = state.lock().unwrap();
    s.indexed.extend(events.iter().cloned());
    if !config.indexer_ack {
        return hec_answer(200, json!({"text": "Success", "code": 0}));
    }
    let ch = s
        .channels
        .entry(channel.expect("ack mode requires a channel"))
        .or_default();
    let ack = ch.next_ack;
    ch.next_ack += 1;
    ch.pending.insert(ack, PendingAck { polls_left, events });
    let pending = s.channels.values().map(|c| c.pending.len()).sum();
    s.max_pending = s.max_pending.max(pending);
    hec_answer(200, json!({"text": "Success", "code": 0, "ackId": ack}))
}

fn hec_ack(req: &Request, state: &Mutex<HecState>, config: &HecConfig) -> Answer {
    if req.method != "POST" {
        return hec_error(405, 405, "Method Not Allowed", None);
    }
    if let Some(a) = hec_auth(req, config) {
        return a;
    }
    if !config.indexer_ack {
        return hec_error(400, 14, "ACK is disabled", None);
    }
    let channel = match hec_channel(req, true) {
        Ok(c) => c.expect("required"),
        Err(a) => return a,
    };
    let ids: Option<Vec<u64>> = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| {
            v.get("acks")?
                .as_array()?
                .iter()
                .map(Value::as_u64)
                .collect()
        });
    let Some(ids) = ids else {
        return hec_error(400, 6, "Invalid data format", None);
    };
    let mut s = state.lock().unwrap();
    let mut answers = serde_json::Map::new();
    let mut confirmed = Vec::new();
    let ch = s.channels.entry(channel).or_default();
    for id in ids {
        let done = match ch.pending.get_mut(&id) {
            None => false,
            Some(p) => match &mut p.polls_left {
                None => false,
                Some(0) => true,
                Some(k) => {
                    *k -= 1;
                    false
                }
            },
        };
        if done && let Some(p) = ch.pending.remove(&id) {
            confirmed.extend(p.events);
        }
        answers.insert(id.to_string(), Value::Bool(done));
    }
    s.confirmed.extend(confirmed);
    hec_answer(200, json!({ "acks": answers }))
}

// ---------------------------------------------------------------------------------
// Elasticsearch / OpenSearch _bulk
// ---------------------------------------------------------------------------------

/// Credentials an [`EsServer`] expects.
#[derive(Debug, Clone)]
pub enum EsAuth {
    /// Anything goes.
    None,
    /// `Authorization: ApiKey <base64(id:key)>` (the "encoded" form Elasticsearch
    /// shows when it creates a key).
    ApiKey { id: String, key: String },
    /// `Authorization: Basic <base64(user:password)>`.
    Basic { user: String, password: String },
}

impl EsAuth {
    /// The header value a client must send.
    pub fn header(&self) -> Option<String> {
        match self {
            EsAuth::None => None,
            EsAuth::ApiKey { id, key } => Some(format!(
                "ApiKey {}",
                base64(format!("{id}:{key}").as_bytes())
            )),
            EsAuth::Basic { user, password } => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
        }
    }

    /// The encoded API key (`base64(id:key)`), as an `api_key_file` holds it.
    pub fn encoded_api_key(&self) -> Option<String> {
        match self {
            EsAuth::ApiKey { id, key } => Some(base64(format!("{id}:{key}").as_bytes())),
            _ => None,
        }
    }
}

/// A whole-request answer of an [`EsServer`] (the request script's answer).
#[derive(Debug, Clone)]
pub enum EsReply {
    /// Process the bulk request.
    Normal,
    /// Close the connection without answering (nothing stored).
    Reset,
    /// Process the bulk request (store the documents) and then close the connection
    /// without answering: the answer is lost on the way.
    ProcessThenReset,
    /// 429 `es_rejected_execution_exception` (a full write queue).
    TooManyRequests,
    /// 503 `cluster_block_exception` (state not recovered).
    Unavailable,
    /// 401 `security_exception`, whatever the credentials.
    Unauthorized,
    /// Any status with this JSON body.
    Status(u16, Value),
}

/// A per-item failure of a bulk request (the item script's answer).
#[derive(Debug, Clone)]
pub enum ItemFailure {
    /// 429 `es_rejected_execution_exception`: retry later.
    Rejected,
    /// 400 `mapper_parsing_exception`: the document does not fit the mapping.
    MapperParsing,
    /// 500 `illegal_state_exception`.
    Internal,
    /// Any status, error type and reason.
    Other {
        status: u16,
        kind: String,
        reason: String,
    },
}

/// One bulk item, as the item script sees it.
pub struct EsItem<'a> {
    pub action: &'a str,
    pub index: &'a str,
    pub id: &'a str,
    pub doc: &'a Value,
    /// How many times this (index, `_id`) appeared in earlier bulk items.
    pub attempt: u32,
}

/// One item of a bulk request as the server answered it.
#[derive(Debug, Clone)]
pub struct EsItemSeen {
    pub action: String,
    pub index: String,
    pub id: String,
    pub doc: Value,
    pub status: u16,
    /// The error `type`, for failed items.
    pub error: Option<String>,
}

/// A processed bulk request and its items.
#[derive(Debug, Clone)]
pub struct EsBulk {
    /// The bulk request number (0-based).
    pub n: u64,
    pub items: Vec<EsItemSeen>,
}

#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub doc: Value,
    pub version: u64,
    pub seq_no: u64,
}

type EsRequestScript = Box<dyn Fn(u64) -> EsReply + Send + Sync>;
type EsItemScript = Box<dyn Fn(&EsItem<'_>) -> Option<ItemFailure> + Send + Sync>;

#[derive(Default)]
struct EsState {
    log: Log,
    bulk_requests: u64,
    store: BTreeMap<(String, String), StoredDoc>,
    attempts: HashMap<(String, String), u32>,
    statuses: BTreeMap<u16, u64>,
    bulks: Vec<EsBulk>,
    seq_no: u64,
    auto_id: u64,
}

struct EsConfig {
    auth: EsAuth,
    max_content_length: Option<usize>,
    on_request: EsRequestScript,
    on_item: EsItemScript,
}

/// An Elasticsearch (or OpenSearch) node's `_bulk` endpoint.
///
/// - `POST` or `PUT` `/_bulk` or `/<index>/_bulk` (query parameters ignored); other
///   paths: 400 "no handler found".
/// - The body limit (`http.max_content_length`, 100 MB by default in Elasticsearch)
///   applies to the *decompressed* body, as in Elasticsearch: over it, 413 with an
///   empty body, before authentication.
/// - Authentication (configurable, `ApiKey` or `Basic`): missing or wrong
///   credentials: 401 with `security_exception` in Elasticsearch's error shape
///   (`{"error":{"root_cause":[..],"type":..,"reason":..,"header":{"WWW-Authenticate":[..]}},"status":401}`)
///   and the `WWW-Authenticate` header.
/// - `Content-Type` must be `application/x-ndjson` or `application/json` (or the
///   `vnd.elasticsearch+` forms): else 406.
/// - Then the request script (whole-request failures), then the NDJSON body: it must
///   end with a newline (else 400 `illegal_argument_exception`); action lines
///   `{"create"|"index"|"delete": {"_index", "_id"}}` (an unknown action: 400
///   `illegal_argument_exception`; `update` is not implemented here: 400; no index:
///   400 `action_request_validation_exception`), each `create`/`index` followed by its
///   source; no actions: 400 "no requests added".
/// - Items: the item script may fail an item; else `create` of an existing
///   (index, `_id`): 409 `version_conflict_engine_exception`; a new one: 201
///   "created"; `index` replaces (200 "updated") or creates (201); `delete`: 200
///   "deleted" or 404 "not_found". A source that is not a JSON object: 400
///   `mapper_parsing_exception`.
/// - Answer 200 `{"took":N,"errors":bool,"items":[{"<action>":{"_index","_id","status",
///   "result","_version","_shards","_seq_no","_primary_term"}}]}`, failed items with
///   `"error":{"type","reason","index_uuid","shard","index"}` instead of the result.
///
/// Sources: elastic.co "Bulk API" reference (NDJSON, final newline, create vs index
/// semantics, per-item results with `errors`); Elasticsearch's error bodies for
/// `version_conflict_engine_exception` ("[id]: version conflict, document already
/// exists (current version [1])"), `es_rejected_execution_exception` and
/// `security_exception` as Elasticsearch prints them; elastic/elasticsearch PR 94408
/// (maintainer: `http.max_content_length` applies to the body before compression,
/// that is the decompressed size) and issue 2902 (413 since Netty 4).
pub struct EsServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<Mutex<EsState>>,
    _server: http1::Server,
}

pub struct EsBuilder {
    auth: EsAuth,
    max_content_length: Option<usize>,
    on_request: EsRequestScript,
    on_item: EsItemScript,
}

impl EsBuilder {
    pub fn api_key(mut self, id: &str, key: &str) -> Self {
        self.auth = EsAuth::ApiKey {
            id: id.into(),
            key: key.into(),
        };
        self
    }

    pub fn basic(mut self, user: &str, password: &str) -> Self {
        self.auth = EsAuth::Basic {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Bodies longer than `n` bytes once decompressed get 413.
    pub fn max_content_length(mut self, n: usize) -> Self {
        self.max_content_length = Some(n);
        self
    }

    /// The whole-request answer to bulk request `n`. `n` counts every request to a
    /// bulk path from 0, those refused before the script is asked (413, 401, 406)
    /// included.
    pub fn on_request(mut self, f: impl Fn(u64) -> EsReply + Send + Sync + 'static) -> Self {
        self.on_request = Box::new(f);
        self
    }

    /// A failure for an item, or `None` to apply the normal semantics.
    pub fn on_item(
        mut self,
        f: impl Fn(&EsItem<'_>) -> Option<ItemFailure> + Send + Sync + 'static,
    ) -> Self {
        self.on_item = Box::new(f);
        self
    }

    pub fn start(self) -> EsServer {
        let state = Arc::new(Mutex::new(EsState::default()));
        let config = Arc::new(EsConfig {
            auth: self.auth,
            max_content_length: self.max_content_length,
            on_request: self.on_request,
            on_item: self.on_item,
        });
        let handler: http1::Handler = {
            let state = state.clone();
            Arc::new(move |req: Request| {
                let answer = es_handle(&req, &state, &config);
                state.lock().unwrap().log.push(&req, &answer);
                answer
            })
        };
        let server = http1::Server::start(handler);
        EsServer {
            url: server.url.clone(),
            state,
            _server: server,
        }
    }
}

impl EsServer {
    /// A node without security that accepts everything valid.
    pub fn start() -> EsServer {
        Self::builder().start()
    }

    pub fn builder() -> EsBuilder {
        EsBuilder {
            auth: EsAuth::None,
            max_content_length: None,
            on_request: Box::new(|_| EsReply::Normal),
            on_item: Box::new(|_| None),
        }
    }

    /// Stores a document as if an earlier client had indexed it.
    pub fn preload(&self, index: &str, id: &str, doc: Value) {
        let mut s = self.state.lock().unwrap();
        s.seq_no += 1;
        let seq_no = s.seq_no;
        s.store.insert(
            (index.into(), id.into()),
            StoredDoc {
                doc,
                version: 1,
                seq_no,
            },
        );
    }

    /// Every request, any path, with its answer.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.seen.clone()
    }

    /// Requests to a bulk path so far (whatever their answer).
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().bulk_requests
    }

    /// Bulk requests whose items were processed, with the items.
    pub fn bulks(&self) -> Vec<EsBulk> {
        self.state.lock().unwrap().bulks.clone()
    }

    /// Items answered, by status.
    pub fn item_statuses(&self) -> BTreeMap<u16, u64> {
        self.state.lock().unwrap().statuses.clone()
    }

    /// The store: (index, `_id`) -> document.
    pub fn docs(&self) -> BTreeMap<(String, String), StoredDoc> {
        self.state.lock().unwrap().store.clone()
    }

    pub fn doc_count(&self) -> usize {
        self.state.lock().unwrap().store.len()
    }
}

fn es_error_body(status: u16, kind: &str, reason: &str) -> Value {
    let cause = json!({"type": kind, "reason": reason});
    json!({"error": {"root_cause": [cause], "type": kind, "reason": reason}, "status": status})
}

fn es_answer(status: u16, body: Value) -> Answer {
    Answer::Respond(Response::json(status, &body))
}

fn es_unauthorized(reason: String) -> Answer {
    let challenge =
        json!({"WWW-Authenticate": ["Basic realm=\"security\", charset=\"UTF-8\"", "ApiKey"]});
    let cause = json!({"type": "security_exception", "reason": reason, "header": challenge});
    let body = json!({
        "error": {"root_cause": [cause], "type": "security_exception", "reason": reason, "header": challenge},
        "status": 401
    });
    Answer::Respond(
        Response::json(401, &body)
            .header(
                "WWW-Authenticate",
                "Basic realm=\"security\", charset=\"UTF-8\"",
            )
            .header("WWW-Authenticate", "ApiKey"),
    )
}

fn es_auth(req: &Request, auth: &EsAuth) -> Option<Answer> {
    let expected = auth.header()?;
    let Some(got) = req.header("authorization") else {
        return Some(es_unauthorized(format!(
            "missing authentication credentials for REST request [{}]",
            req.target
        )));
    };
    if got.trim() == expected {
        return None;
    }
    Some(es_unauthorized(match auth {
        EsAuth::Basic { user, .. } => {
            format!("unable to authenticate user [{user}] for REST request [{}]", req.target)
        }
        _ => "unable to authenticate with provided credentials and anonymous access is not allowed for this request".into(),
    }))
}

/// The default index of a bulk path, `Err` when the path is not a bulk path.
fn es_bulk_path(path: &str) -> Result<Option<String>, ()> {
    let p = path.trim_end_matches('/');
    if p == "/_bulk" {
        return Ok(None);
    }
    match p.strip_suffix("/_bulk").and_then(|i| i.strip_prefix('/')) {
        Some(i) if !i.is_empty() && !i.contains('/') => Ok(Some(i.to_string())),
        _ => Err(()),
    }
}

struct BulkAction {
    action: String,
    index: String,
    id: Option<String>,
    source: Option<Value>,
}

/// Parses the NDJSON body; `Err` is the 400 answer.
fn es_parse(body: &[u8], default_index: Option<&str>) -> Result<Vec<BulkAction>, Answer> {
    let bad = |kind: &str, reason: String| es_answer(400, es_error_body(400, kind, &reason));
    if !body.is_empty() && body.last() != Some(&b'\n') {
        return Err(bad(
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]".into(),
        ));
    }
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    let mut out = Vec::new();
    while let Some((no, line)) = lines.next() {
        let meta: Value = serde_json::from_slice(line).map_err(|e| {
            bad(
                "x_content_parse_exception",
                format!("[{no}:1] Malformed action/metadata line: {e}"),
            )
        })?;
        let Some((action, params)) = meta
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
        else {
            return Err(bad(
                "illegal_argument_exception",
                format!(
                    "Malformed action/metadata line [{no}], expected a simple value for field [_index] but found [START_OBJECT]"
                ),
            ));
        };
        match action.as_str() {
            "create" | "index" | "delete" => {}
            "update" => {
                return Err(bad(
                    "illegal_argument_exception",
                    "this test server implements create, index and delete only".into(),
                ));
            }
            other => {
                return Err(bad(
                    "illegal_argument_exception",
                    format!(
                        "Malformed action/metadata line [{no}], expected one of [create, delete, index, update] but found [{other}]"
                    ),
                ));
            }
        }
        let index = params
            .get("_index")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| default_index.map(str::to_string));
        let Some(index) = index else {
            return Err(bad(
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;".into(),
            ));
        };
        let id = params
            .get("_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let source = if action == "delete" {
            None
        } else {
            let Some((_, src)) = lines.next() else {
                return Err(bad(
                    "action_request_validation_exception",
                    format!(
                        "Validation Failed: 1: source is missing for the action on line [{no}];"
                    ),
                ));
            };
            Some(serde_json::from_slice(src).unwrap_or(Value::Null))
        };
        if action == "delete" && id.is_none() {
            return Err(bad(
                "action_request_validation_exception",
                "Validation Failed: 1: id is missing;".into(),
            ));
        }
        out.push(BulkAction {
            action: action.clone(),
            index,
            id,
            source,
        });
    }
    if out.is_empty() {
        return Err(bad(
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;".into(),
        ));
    }
    Ok(out)
}

fn es_handle(req: &Request, state: &Mutex<EsState>, config: &EsConfig) -> Answer {
    let Ok(default_index) = es_bulk_path(&req.path) else {
        return es_answer(
            400,
            json!({"error": format!("no handler found for uri [{}] and method [{}]", req.target, req.method)}),
        );
    };
    let n = {
        let mut s = state.lock().unwrap();
        s.bulk_requests += 1;
        s.bulk_requests - 1
    };
    if req.method != "POST" && req.method != "PUT" {
        return es_answer(
            405,
            json!({"error": format!("Incorrect HTTP method for uri [{}] and method [{}], allowed: [POST, PUT]", req.target, req.method), "status": 405}),
        );
    }
    if config
        .max_content_length
        .is_some_and(|max| req.body.len() > max)
    {
        return Answer::Respond(Response::new(413));
    }
    if let Some(a) = es_auth(req, &config.auth) {
        return a;
    }
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !matches!(
        mime,
        "application/x-ndjson"
            | "application/json"
            | "application/vnd.elasticsearch+x-ndjson"
            | "application/vnd.elasticsearch+json"
    ) {
        let ct = req.header("content-type").unwrap_or("");
        return es_answer(
            406,
            json!({"error": format!("Content-Type header [{ct}] is not supported"), "status": 406}),
        );
    }
    let mut then_reset = false;
    match (config.on_request)(n) {
        EsReply::Normal => {}
        EsReply::ProcessThenReset => then_reset = true,
        EsReply::Reset => return Answer::Reset,
        EsReply::TooManyRequests => {
            return es_answer(
                429,
                es_error_body(
                    429,
                    "es_rejected_execution_exception",
                    "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_primary_bytes=0]",
                ),
            );
        }
        EsReply::Unavailable => {
            return es_answer(
                503,
                es_error_body(
                    503,
                    "cluster_block_exception",
                    "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];",
                ),
            );
        }
        EsReply::Unauthorized => {
            return es_unauthorized(
                "unable to authenticate with provided credentials and anonymous access is not allowed for this request".into(),
            );
        }
        EsReply::Status(code, body) => return es_answer(code, body),
    }
    let actions = match es_parse(&req.body, default_index.as_deref()) {
        Ok(a) => a,
        Err(a) => return a,
    };
    let mut s = state.lock().unwrap();
    let mut items = Vec::with_capacity(actions.len());
    let mut seen_items = Vec::with_capacity(actions.len());
    let mut errors = false;
    for a in actions {
        let id = match a.id {
            Some(id) => id,
            None => {
                s.auto_id += 1;
                format!("auto-{}", s.auto_id)
            }
        };
        let key = (a.index.clone(), id.clone());
        let attempt = {
            let c = s.attempts.entry(key.clone()).or_insert(0);
            *c += 1;
            *c - 1
        };
        let doc = a.source.clone().unwrap_or(Value::Null);
        let failure = (config.on_item)(&EsItem {
            action: &a.action,
            index: &a.index,
            id: &id,
            doc: &doc,
            attempt,
        });
        let failure = failure.or_else(|| {
            (a.action != "delete" && !doc.is_object()).then(|| ItemFailure::Other {
                status: 400,
                kind: "mapper_parsing_exception".into(),
                reason: "failed to parse".into(),
            })
        });
        let mut item = json!({"_index": a.index, "_id": id});
        let (status, error) = match failure {
            Some(f) => {
                let (status, kind, reason) = match f {
                    ItemFailure::Rejected => (
                        429,
                        "es_rejected_execution_exception".to_string(),
                        "rejected execution of primary operation [shard_detail=[audit][0][node-1], shard_write_queue_full]".to_string(),
                    ),
                    ItemFailure::MapperParsing => (
                        400,
                        "mapper_parsing_exception".to_string(),
                        format!("failed to parse field [metadata] of type [keyword] in document with id '{id}'. Preview of field's value: '{{...}}'"),
                    ),
                    ItemFailure::Internal => (
                        500,
                        "illegal_state_exception".to_string(),
                        "shard is closed".to_string(),
                    ),
                    ItemFailure::Other {
                        status,
                        kind,
                        reason,
                    } => (status, kind, reason),
                };
                item["status"] = json!(status);
                item["error"] = json!({"type": kind, "reason": reason, "index_uuid": "aAsd9f0ZQ2W7DpJ3u1hmvA", "shard": "0", "index": a.index});
                (status, Some(kind))
            }
            None => {
                let existing = s.store.get(&key).cloned();
                let (status, result, version) = match (a.action.as_str(), existing) {
                    ("create", Some(cur)) => {
                        item["status"] = json!(409);
                        let reason = format!(
                            "[{id}]: version conflict, document already exists (current version [{}])",
                            cur.version
                        );
                        item["error"] = json!({"type": "version_conflict_engine_exception", "reason": reason, "index_uuid": "aAsd9f0ZQ2W7DpJ3u1hmvA", "shard": "0", "index": a.index});
                        (409, None, 0)
                    }
                    ("delete", Some(cur)) => {
                        s.store.remove(&key);
                        (200, Some("deleted"), cur.version + 1)
                    }
                    ("delete", None) => (404, Some("not_found"), 1),
                    (_, cur) => {
                        s.seq_no += 1;
                        let version = cur.as_ref().map_or(1, |c| c.version + 1);
                        let seq_no = s.seq_no;
                        s.store.insert(
                            key.clone(),
                            StoredDoc {
                                doc: doc.clone(),
                                version,
                                seq_no,
                            },
                        );
                        if cur.is_some() {
                            (200, Some("updated"), version)
                        } else {
                            (201, Some("created"), version)
                        }
                    }
                };
                if let Some(result) = result {
                    item["_version"] = json!(version);
                    item["result"] = json!(result);
                    item["_shards"] = json!({"total": 2, "successful": 1, "failed": 0});
                    item["_seq_no"] = json!(s.seq_no);
                    item["_primary_term"] = json!(1);
                    item["status"] = json!(status);
                    (status, None)
                } else {
                    (
                        status,
                        Some("version_conflict_engine_exception".to_string()),
                    )
                }
            }
        };
        errors |= error.is_some();
        *s.statuses.entry(status).or_insert(0) += 1;
        seen_items.push(EsItemSeen {
            action: a.action.clone(),
            index: a.index.clone(),
            id,
            doc,
            status,
            error,
        });
        let mut wrapped = serde_json::Map::new();
        wrapped.insert(a.action.clone(), item);
        items.push(Value::Object(wrapped));
    }
    s.bulks.push(EsBulk {
        n,
        items: seen_items,
    });
    if then_reset {
        return Answer::Reset;
    }
    es_answer(200, json!({"took": 3, "errors": errors, "items": items}))
}

// ---------------------------------------------------------------------------------
// OTLP/HTTP logs, JSON encoding
// ---------------------------------------------------------------------------------

/// The answer of an [`OtlpServer`] to a valid export request (the script's answer).
#[derive(Debug, Clone)]
pub enum OtlpReply {
    /// 200 `{}`: everything accepted.
    Ok,
    /// 200 `{"partialSuccess":{"rejectedLogRecords":"N","errorMessage":".."}}`.
    PartialSuccess { rejected: u64, message: String },
    /// A failure status with a `google.rpc.Status` JSON body and optional
    /// `Retry-After` (seconds). 429, 502, 503, 504 are the retryable ones.
    Status {
        status: u16,
        retry_after: Option<u64>,
        message: String,
    },
    /// Close the connection without answering.
    Reset,
}

impl OtlpReply {
    pub fn status(status: u16, retry_after: Option<u64>) -> OtlpReply {
        OtlpReply::Status {
            status,
            retry_after,
            message: format!("scripted {status}"),
        }
    }
}

/// One log record as received, with the resource and scope around it.
#[derive(Debug, Clone)]
pub struct OtlpLog {
    /// The export request number (0-based) it came in.
    pub request: u64,
    /// `resource.attributes` (the KeyValue list as sent; `Null` when absent).
    pub resource_attributes: Value,
    pub scope: Value,
    /// The `logRecord` object as sent.
    pub record: Value,
}

impl OtlpLog {
    /// The AnyValue of a record attribute.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        attribute(&self.record["attributes"], key)
    }

    /// The AnyValue of a resource attribute.
    pub fn resource_attribute(&self, key: &str) -> Option<&Value> {
        attribute(&self.resource_attributes, key)
    }
}

/// The AnyValue of `key` in a KeyValue list.
pub fn attribute<'a>(attrs: &'a Value, key: &str) -> Option<&'a Value> {
    attrs
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// An export request as processed, with its answer.
#[derive(Debug, Clone)]
pub struct OtlpExport {
    pub n: u64,
    pub body: Value,
    pub logs: Vec<OtlpLog>,
    /// `None`: the connection was closed instead of answering.
    pub status: Option<u16>,
    /// Rejected records of a partial success.
    pub rejected: Option<u64>,
}

type OtlpScript = Box<dyn Fn(u64, &[OtlpLog]) -> OtlpReply + Send + Sync>;

#[derive(Default)]
struct OtlpState {
    log: Log,
    requests: u64,
    exports: Vec<OtlpExport>,
}

struct OtlpConfig {
    bearer: Option<String>,
    max_body: usize,
    script: OtlpScript,
}

/// An OTLP/HTTP logs receiver for the JSON encoding.
///
/// - `POST /v1/logs`; other paths 404. `Content-Type: application/json` (parameters
///   allowed); `application/x-protobuf` or anything else: 415 (this server decodes
///   JSON only). Optional bearer token: none or wrong: 401.
/// - Body limit after decompression (20 MiB by default, the spec's recommendation):
///   413.
/// - The body is an `ExportLogsServiceRequest` in the protobuf JSON mapping with the
///   OTLP deviations: lowerCamelCase keys only (snake_case keys are unknown fields,
///   and unknown fields are ignored), enums as integers only (`severityNumber` 0..=24;
///   a name string is invalid), 64-bit integers as decimal strings or numbers
///   (`timeUnixNano`, `observedTimeUnixNano`, `intValue`), `traceId`/`spanId` as hex
///   (32 / 16 digits, or empty). AnyValue holds at most one of `stringValue`,
///   `boolValue`, `intValue`, `doubleValue`, `arrayValue`, `kvlistValue`,
///   `bytesValue`. Invalid: 400 with a `google.rpc.Status` JSON body (`code` 3,
///   `message`, `details` with a `google.rpc.BadRequest` field violation).
/// - A valid request goes to the script: 200 `{}` (an empty request too), 200 with
///   `partialSuccess` (`rejectedLogRecords` as a decimal string, `errorMessage`), or a
///   failure status with a Status body and optional `Retry-After`. Responses carry
///   `Content-Type: application/json`.
///
/// Source: the OTLP specification (opentelemetry-proto `docs/specification.md`):
/// "OTLP/HTTP", "JSON Protobuf Encoding", "OTLP/HTTP Response" (full and partial
/// success, failures with a Status message, retryable codes 429/502/503/504, 400 not
/// retried, Retry-After on 429/503, 413 after decompression and not retried).
pub struct OtlpServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    state: Arc<Mutex<OtlpState>>,
    _server: http1::Server,
}

pub struct OtlpBuilder {
    bearer: Option<String>,
    max_body: usize,
    script: OtlpScript,
}

impl OtlpBuilder {
    /// Require `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }

    /// The body limit after decompression (default 20 MiB).
    pub fn max_body(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// The answer to a valid export request carrying `logs`. `n` counts every
    /// request to `/v1/logs` from 0, those refused before the script is asked (415,
    /// 401, 413, 400) included.
    pub fn script(
        mut self,
        f: impl Fn(u64, &[OtlpLog]) -> OtlpReply + Send + Sync + 'static,
    ) -> Self {
        self.script = Box::new(f);
        self
    }

    pub fn start(self) -> OtlpServer {
        let state = Arc::new(Mutex::new(OtlpState::default()));
        let config = Arc::new(OtlpConfig {
            bearer: self.bearer,
            max_body: self.max_body,
            script: self.script,
        });
        let handler: http1::Handler = {
            let state = state.clone();
            Arc::new(move |req: Request| {
                let answer = otlp_handle(&req, &state, &config);
                state.lock().unwrap().log.push(&req, &answer);
                answer
            })
        };
        let server = http1::Server::start(handler);
        OtlpServer {
            url: server.url.clone(),
            state,
            _server: server,
        }
    }
}

impl OtlpServer {
    /// A receiver without authentication that accepts everything valid.
    pub fn start() -> OtlpServer {
        Self::builder().start()
    }

    pub fn builder() -> OtlpBuilder {
        OtlpBuilder {
            bearer: None,
            max_body: 20 << 20,
            script: Box::new(|_, _| OtlpReply::Ok),
        }
    }

    /// Every request, any path, with its answer.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.seen.clone()
    }

    /// Requests to `/v1/logs` so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Valid export requests, with their answers.
    pub fn exports(&self) -> Vec<OtlpExport> {
        self.state.lock().unwrap().exports.clone()
    }

    /// Log records of requests answered 200 without a partial success.
    pub fn accepted(&self) -> Vec<OtlpLog> {
        self.exports()
            .into_iter()
            .filter(|e| e.status == Some(200) && e.rejected.is_none())
            .flat_map(|e| e.logs)
            .collect()
    }

    /// Accepted log records counted by their `auditship.id` attribute.
    pub fn ids(&self) -> HashMap<String, u32> {
        let mut m = HashMap::new();
        for l in self.accepted() {
            let id = l
                .attribute("auditship.id")
                .and_then(|v| v["stringValue"].as_str())
                .unwrap_or("")
                .to_string();
            *m.entry(id).or_insert(0) += 1;
        }
        m
    }
}

/// The `google.rpc.Status` code that goes with an HTTP status.
fn rpc_code(status: u16) -> u32 {
    match status {
        400 | 415 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        413 | 429 => 8,
        500 => 13,
        502 | 503 => 14,
        504 => 4,
        _ => 2,
    }
}

fn otlp_status(status: u16, message: &str, details: Vec<Value>) -> Response {
    let body = json!({"code": rpc_code(status), "message": message, "details": details});
    Response::json(status, &body)
}

fn otlp_bad(field: &str, description: &str) -> Answer {
    let detail = json!({
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": field, "description": description}]
    });
    Answer::Respond(otlp_status(
        400,
        &format!("invalid ExportLogsServiceRequest: {field}: {description}"),
        vec![detail],
    ))
}

type Invalid = (String, String);

fn invalid(field: &str, what: &str) -> Invalid {
    (field.to_string(), what.to_string())
}

/// A 64-bit integer: a decimal string or a JSON integer.
fn check_u64(v: &Value, field: &str) -> Result<(), Invalid> {
    match v {
        Value::String(s) if s.parse::<u64>().is_ok() => Ok(()),
        Value::Number(n) if n.is_u64() => Ok(()),
        _ => Err(invalid(
            field,
            "expected an unsigned 64-bit integer (decimal string or number)",
        )),
    }
}

fn check_i64(v: &Value, field: &str) -> Result<(), Invalid> {
    match v {
        Value::String(s) if s.parse::<i64>().is_ok() => Ok(()),
        Value::Number(n) if n.is_i64() => Ok(()),
        _ => Err(invalid(
            field,
            "expected a 64-bit integer (decimal string or number)",
        )),
    }
}

fn check_u32(v: &Value, field: &str) -> Result<(), Invalid> {
    match v.as_u64() {
        Some(n) if n <= u64::from(u32::MAX) => Ok(()),
        _ => Err(invalid(field, "expected an unsigned 32-bit integer")),
    }
}

fn check_object<'a>(
    v: &'a Value,
    field: &str,
) -> Result<&'a serde_json::Map<String, Value>, Invalid> {
    v.as_object()
        .ok_or_else(|| invalid(field, "expected an object"))
}

fn check_array<'a>(v: &'a Value, field: &str) -> Result<&'a Vec<Value>, Invalid> {
    v.as_array()
        .ok_or_else(|| invalid(field, "expected an array"))
}

fn check_any_value(v: &Value, field: &str) -> Result<(), Invalid> {
    let m = check_object(v, field)?;
    let kinds = [
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
    ];
    let present: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| m.contains_key(*k))
        .collect();
    if present.len() > 1 {
        return Err(invalid(field, "AnyValue holds more than one value"));
    }
    let Some(kind) = present.first() else {
        return Ok(()); // an empty AnyValue
    };
    let inner = &m[*kind];
    let f = format!("{field}.{kind}");
    match *kind {
        "stringValue" if inner.is_string() => Ok(()),
        "boolValue" if inner.is_boolean() => Ok(()),
        "intValue" => check_i64(inner, &f),
        "doubleValue"
            if inner.is_number()
                || matches!(inner.as_str(), Some("NaN" | "Infinity" | "-Infinity")) =>
        {
            Ok(())
        }
        "bytesValue" if inner.is_string() => Ok(()),
        "arrayValue" => {
            let a = check_object(inner, &f)?;
            if let Some(values) = a.get("values") {
                for (i, x) in check_array(values, &format!("{f}.values"))?
                    .iter()
                    .enumerate()
                {
                    check_any_value(x, &format!("{f}.values[{i}]"))?;
                }
            }
            Ok(())
        }
        "kvlistValue" => {
            let a = check_object(inner, &f)?;
            if let Some(values) = a.get("values") {
                check_key_values(values, &format!("{f}.values"))?;
            }
            Ok(())
        }
        _ => Err(invalid(&f, "wrong JSON type")),
    }
}

fn check_key_values(v: &Value, field: &str) -> Result<(), Invalid> {
    for (i, kv) in check_array(v, field)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let m = check_object(kv, &f)?;
        match m.get("key") {
            Some(Value::String(_)) => {}
            _ => return Err(invalid(&format!("{f}.key"), "expected a string")),
        }
        if let Some(value) = m.get("value") {
            check_any_value(value, &format!("{f}.value"))?;
        }
    }
    Ok(())
}

fn check_hex(v: &Value, field: &str, digits: usize) -> Result<(), Invalid> {
    match v.as_str() {
        Some("") => Ok(()),
        Some(s) if s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(()),
        _ => Err(invalid(field, &format!("expected {digits} hex digits"))),
    }
}

fn check_log_record(r: &Value, field: &str) -> Result<(), Invalid> {
    let m = check_object(r, field)?;
    for k in ["timeUnixNano", "observedTimeUnixNano"] {
        if let Some(v) = m.get(k) {
            check_u64(v, &format!("{field}.{k}"))?;
        }
    }
    if let Some(v) = m.get("severityNumber") {
        match v.as_u64() {
            Some(n) if n <= 24 => {}
            _ => {
                return Err(invalid(
                    &format!("{field}.severityNumber"),
                    "expected an integer enum value 0..=24 (names are not allowed in OTLP/JSON)",
                ));
            }
        }
    }
    if let Some(v) = m.get("severityText")
        && !v.is_string()
    {
        return Err(invalid(
            &format!("{field}.severityText"),
            "expected a string",
        ));
    }
    if let Some(v) = m.get("body") {
        check_any_value(v, &format!("{field}.body"))?;
    }
    if let Some(v) = m.get("attributes") {
        check_key_values(v, &format!("{field}.attributes"))?;
    }
    if let Some(v) = m.get("droppedAttributesCount") {
        check_u32(v, &format!("{field}.droppedAttributesCount"))?;
    }
    if let Some(v) = m.get("flags") {
        check_u32(v, &format!("{field}.flags"))?;
    }
    if let Some(v) = m.get("traceId") {
        check_hex(v, &format!("{field}.traceId"), 32)?;
    }
    if let Some(v) = m.get("spanId") {
        check_hex(v, &format!("{field}.spanId"), 16)?;
    }
    if let Some(v) = m.get("eventName")
        && !v.is_string()
    {
        return Err(invalid(&format!("{field}.eventName"), "expected a string"));
    }
    Ok(())
}

/// Validates an ExportLogsServiceRequest and flattens its log records.
fn otlp_parse(body: &Value, n: u64) -> Result<Vec<OtlpLog>, Invalid> {
    let root = check_object(body, "")?;
    let mut logs = Vec::new();
    let Some(rls) = root.get("resourceLogs") else {
        return Ok(logs);
    };
    for (i, rl) in check_array(rls, "resourceLogs")?.iter().enumerate() {
        let f = format!("resourceLogs[{i}]");
        let rlm = check_object(rl, &f)?;
        let mut resource_attributes = Value::Null;
        if let Some(res) = rlm.get("resource") {
            let rm = check_object(res, &format!("{f}.resource"))?;
            if let Some(a) = rm.get("attributes") {
                check_key_values(a, &format!("{f}.resource.attributes"))?;
                resource_attributes = a.clone();
            }
        }
        let Some(sls) = rlm.get("scopeLogs") else {
            continue;
        };
        for (j, sl) in check_array(sls, &format!("{f}.scopeLogs"))?
            .iter()
            .enumerate()
        {
            let g = format!("{f}.scopeLogs[{j}]");
            let slm = check_object(sl, &g)?;
            let scope = slm.get("scope").cloned().unwrap_or(Value::Null);
            if !scope.is_null() {
                let sm = check_object(&scope, &format!("{g}.scope"))?;
                if let Some(a) = sm.get("attributes") {
                    check_key_values(a, &format!("{g}.scope.attributes"))?;
                }
            }
            let Some(lrs) = slm.get("logRecords") else {
                continue;
            };
            for (k, lr) in check_array(lrs, &format!("{g}.logRecords"))?
                .iter()
                .enumerate()
            {
                check_log_record(lr, &format!("{g}.logRecords[{k}]"))?;
                logs.push(OtlpLog {
                    request: n,
                    resource_attributes: resource_attributes.clone(),
                    scope: scope.clone(),
                    record: lr.clone(),
                });
            }
        }
    }
    Ok(logs)
}

fn otlp_handle(req: &Request, state: &Mutex<OtlpState>, config: &OtlpConfig) -> Answer {
    if req.path.trim_end_matches('/') != "/v1/logs" {
        return Answer::Respond(otlp_status(
            404,
            &format!("no handler for {}", req.path),
            vec![],
        ));
    }
    let n = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        s.requests - 1
    };
    if req.method != "POST" {
        return Answer::Respond(
            otlp_status(405, "method not allowed, supported: [POST]", vec![])
                .header("Allow", "POST"),
        );
    }
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.split(';').next().unwrap_or("").trim() != "application/json" {
        return Answer::Respond(otlp_status(
            415,
            &format!(
                "unsupported content type {ct:?}: this receiver decodes application/json only"
            ),
            vec![],
        ));
    }
    if let Some(token) = &config.bearer {
        let ok = req
            .header("authorization")
            .and_then(|h| h.trim().split_once(' '))
            .is_some_and(|(s, t)| s.eq_ignore_ascii_case("bearer") && t.trim() == token);
        if !ok {
            return Answer::Respond(otlp_status(401, "missing or invalid bearer token", vec![]));
        }
    }
    if req.body.len() > config.max_body {
        return Answer::Respond(otlp_status(
            413,
            &format!(
                "request body of {} bytes exceeds the limit of {} bytes",
                req.body.len(),
                config.max_body
            ),
            vec![],
        ));
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return otlp_bad("", &format!("not JSON: {e}")),
    };
    let logs = match otlp_parse(&body, n) {
        Ok(l) => l,
        Err((field, what)) => return otlp_bad(&field, &what),
    };
    let reply = (config.script)(n, &logs);
    let (answer, status, rejected) = match reply {
        OtlpReply::Ok => (
            Answer::Respond(Response::json(200, &json!({}))),
            Some(200),
            None,
        ),
        OtlpReply::PartialSuccess { rejected, message } => (
            Answer::Respond(Response::json(
                200,
                &json!({"partialSuccess": {"rejectedLogRecords": rejected.to_string(), "errorMessage": message}}),
            )),
            Some(200),
            Some(rejected),
        ),
        OtlpReply::Status {
            status,
            retry_after,
            message,
        } => {
            let mut r = otlp_status(status, &message, vec![]);
            if let Some(s) = retry_after {
                r = r.header("Retry-After", &s.to_string());
            }
            (Answer::Respond(r), Some(status), None)
        }
        OtlpReply::Reset => (Answer::Reset, None, None),
    };
    state.lock().unwrap().exports.push(OtlpExport {
        n,
        body,
        logs,
        status,
        rejected,
    });
    answer
}
