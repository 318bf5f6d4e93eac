//! A scriptable HTTP sink on 127.0.0.1 for the daemon tests: records every request
//! body (gunzipped), answers as the test's script says, counts shipped records by
//! their `_auditship.id`.

#![allow(dead_code)]

use crate::http1;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the sink answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok,
    Status(u16, Option<u64>),
    /// Close the connection without answering.
    Reset,
}

/// Counting mode's tally: times each id arrived.
type FastIds = Arc<Mutex<HashMap<[u8; 64], u32>>>;

/// Counting mode: where ids are found, and how long each answer waits.
#[derive(Clone)]
struct Counting {
    ids: FastIds,
    /// Markers an id follows (64 hex digits right after one of them).
    keys: Vec<&'static [u8]>,
    delay: Duration,
}

/// Where a record's `_auditship.id` stands: as plain JSON (http, Splunk HEC,
/// Elasticsearch) or as OTLP's `auditship.id` attribute (where the record itself is
/// an escaped string).
const AUDITSHIP_ID_KEYS: [&[u8]; 2] = [
    b"\"_auditship\":{\"v\":1,\"id\":\"",
    b"{\"key\":\"auditship.id\",\"value\":{\"stringValue\":\"",
];
type Script = Box<dyn Fn(u64, &[serde_json::Value]) -> Reply + Send + Sync>;

pub struct Received {
    pub requests: u64,
    /// Records of accepted requests, in arrival order.
    pub records: Vec<serde_json::Value>,
}

pub struct TestSink {
    pub addr: String,
    state: Arc<Mutex<Received>>,
    /// Stops accepting and closes its connections when the sink is dropped.
    _server: http1::Server,
    count: Arc<AtomicU64>,
    /// Counting mode: ids counted without parsing records (for benchmarks).
    fast_ids: Option<FastIds>,
}

impl TestSink {
    /// Starts a sink answering 200 to everything.
    pub fn start() -> TestSink {
        Self::with(|_, _| Reply::Ok)
    }

    /// Starts a sink whose answer to request `n` (0-based) with `records` is chosen by
    /// `script`. Only records of requests answered 2xx count as received.
    pub fn with(
        script: impl Fn(u64, &[serde_json::Value]) -> Reply + Send + Sync + 'static,
    ) -> TestSink {
        Self::build(Box::new(script), None)
    }

    /// A sink that answers 200 and only counts `_auditship.id`s, without parsing
    /// records: cheap enough to sit beside the daemon in a benchmark.
    pub fn counting() -> TestSink {
        Self::counting_by(&AUDITSHIP_ID_KEYS, Duration::ZERO)
    }

    /// A counting sink whose ids are the 64 hex digits after any of `keys` (e.g. an
    /// event's own `"hash":"`, which every shipper keeps), answering each request
    /// only after `delay` (a receiver across a network).
    pub fn counting_by(keys: &[&'static [u8]], delay: Duration) -> TestSink {
        Self::build(
            Box::new(|_, _| Reply::Ok),
            Some(Counting {
                ids: Arc::new(Mutex::new(HashMap::new())),
                keys: keys.to_vec(),
                delay,
            }),
        )
    }

    fn build(script: Script, counting: Option<Counting>) -> TestSink {
        let fast_ids = counting.as_ref().map(|c| c.ids.clone());
        let state = Arc::new(Mutex::new(Received {
            requests: 0,
            records: Vec::new(),
        }));
        let count = Arc::new(AtomicU64::new(0));
        let handler: http1::Handler = {
            let (state, count, fast) = (state.clone(), count.clone(), counting);
            Arc::new(move |req: http1::Request| answer(req, &state, &script, &count, fast.as_ref()))
        };
        let server = http1::Server::start(handler);
        TestSink {
            addr: server.url.clone(),
            state,
            _server: server,
            count,
            fast_ids,
        }
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    pub fn records(&self) -> Vec<serde_json::Value> {
        self.state.lock().unwrap().records.clone()
    }

    pub fn accepted(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` records were accepted, or panics after `limit`.
    pub fn wait_for(&self, n: u64, limit: Duration) {
        let start = Instant::now();
        while self.accepted() < n {
            assert!(
                start.elapsed() < limit,
                "sink got {} of {n} records within {limit:?}",
                self.accepted()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Distinct ids counted so far (counting mode).
    pub fn distinct(&self) -> usize {
        self.fast_ids
            .as_ref()
            .map_or(0, |f| f.lock().unwrap().len())
    }

    /// Accepted records counted by `_auditship.id`.
    pub fn ids(&self) -> HashMap<String, u32> {
        if let Some(f) = &self.fast_ids {
            let ids = f.lock().unwrap();
            return ids
                .iter()
                .map(|(k, n)| (String::from_utf8_lossy(k).into_owned(), *n))
                .collect();
        }
        let mut m = HashMap::new();
        for r in self.records() {
            *m.entry(r["_auditship"]["id"].as_str().unwrap_or("").to_string())
                .or_insert(0) += 1;
        }
        m
    }
}

fn answer(
    req: http1::Request,
    state: &Mutex<Received>,
    script: &Script,
    count: &AtomicU64,
    fast: Option<&Counting>,
) -> http1::Answer {
    let body = req.body;
    if let Some(fast) = fast {
        // Cheap on purpose: the benchmark measures the daemon, not this sink. Ids
        // are found wherever a protocol puts them, without parsing.
        if !fast.delay.is_zero() {
            std::thread::sleep(fast.delay);
        }
        let mut ids = fast.ids.lock().unwrap();
        let mut n = 0u64;
        for &key in &fast.keys {
            for at in memchr::memmem::find_iter(&body, key) {
                let at = at + key.len();
                let id: [u8; 64] = body[at..at + 64].try_into().unwrap();
                *ids.entry(id).or_insert(0) += 1;
                n += 1;
            }
        }
        drop(ids);
        count.fetch_add(n, Ordering::SeqCst);
        state.lock().unwrap().requests += 1;
        // An answer every protocol reads as full success: HEC's code 0, a bulk
        // answer without errors, an OTLP export without partial success.
        const OK: &[u8] = br#"{"text":"Success","code":0,"took":0,"errors":false,"items":[]}"#;
        return http1::Answer::Respond(http1::Response::new(200).body(OK.to_vec()));
    }
    let text = String::from_utf8_lossy(&body);
    let records: Vec<serde_json::Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap_or_default()
    } else {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    };
    let n = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        s.requests - 1
    };
    let (status, retry_after) = match script(n, &records) {
        Reply::Reset => return http1::Answer::Reset,
        Reply::Ok => (200, None),
        Reply::Status(s, r) => (s, r),
    };
    if (200..300).contains(&status) {
        let mut s = state.lock().unwrap();
        count.fetch_add(records.len() as u64, Ordering::SeqCst);
        s.records.extend(records);
    }
    let mut resp = http1::Response::new(status);
    if let Some(r) = retry_after {
        resp = resp.header("Retry-After", &r.to_string());
    }
    http1::Answer::Respond(
        resp.header("Content-Type", "application/json")
            .body(b"{}".to_vec()),
    )
}
