//! A scriptable HTTP sink on 127.0.0.1 for the daemon tests: records every request
//! body (gunzipped), answers as the test's script says, counts shipped records by
//! their `_auditship.id`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
type Script = Box<dyn Fn(u64, &[serde_json::Value]) -> Reply + Send + Sync>;

pub struct Received {
    pub requests: u64,
    /// Records of accepted requests, in arrival order.
    pub records: Vec<serde_json::Value>,
}

pub struct TestSink {
    pub addr: String,
    state: Arc<Mutex<Received>>,
    stop: Arc<AtomicBool>,
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
        Self::build(
            Box::new(|_, _| Reply::Ok),
            Some(Arc::new(Mutex::new(HashMap::new()))),
        )
    }

    fn build(script: Script, fast_ids: Option<FastIds>) -> TestSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Received {
            requests: 0,
            records: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let script: Arc<Script> = Arc::new(script);
        listener.set_nonblocking(true).unwrap();
        {
            let (state, stop, count, fast) =
                (state.clone(), stop.clone(), count.clone(), fast_ids.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (state, script, count, fast) =
                                (state.clone(), script.clone(), count.clone(), fast.clone());
                            std::thread::spawn(move || serve(conn, state, script, count, fast));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        TestSink {
            addr,
            state,
            stop,
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

impl Drop for TestSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    conn: TcpStream,
    state: Arc<Mutex<Received>>,
    script: Arc<Script>,
    count: Arc<AtomicU64>,
    fast: Option<FastIds>,
) {
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut gzip = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "content-encoding" => gzip = v.trim() == "gzip",
                _ => {}
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .unwrap();
            body = out;
        }
        if let Some(fast) = &fast {
            // Cheap on purpose: the benchmark measures the daemon, not this sink.
            const KEY: &[u8] = b"\"_auditship\":{\"v\":1,\"id\":\"";
            let finder = memchr::memmem::FinderRev::new(KEY);
            let mut ids = fast.lock().unwrap();
            let mut n = 0u64;
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let at = finder.rfind(line).expect("record has _auditship.id") + KEY.len();
                let id: [u8; 64] = line[at..at + 64].try_into().unwrap();
                *ids.entry(id).or_insert(0) += 1;
                n += 1;
            }
            drop(ids);
            count.fetch_add(n, Ordering::SeqCst);
            state.lock().unwrap().requests += 1;
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                .is_err()
            {
                return;
            }
            continue;
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
        let reply = script(n, &records);
        let (status, retry_after) = match reply {
            Reply::Reset => return,
            Reply::Ok => (200, None),
            Reply::Status(s, r) => (s, r),
        };
        if (200..300).contains(&status) {
            let mut s = state.lock().unwrap();
            count.fetch_add(records.len() as u64, Ordering::SeqCst);
            s.records.extend(records);
        }
        let extra = retry_after
            .map(|r| format!("Retry-After: {r}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\n{extra}Content-Type: application/json\r\n\r\n{{}}"
        );
        if conn.write_all(msg.as_bytes()).is_err() {
            return;
        }
    }
}
