//! Shipping: one task per sink, each with its own cursor in the queue, so a dead sink
//! never stalls another. Sinks (in `sinks/`) only encode and classify; this module
//! owns batching and requests in flight (`run`, `window`), retries with exponential
//! backoff and full jitter (`backoff`), the dead-letter decision and cursor
//! movement. `replay` sends a dead letter again for an operator.
//!
//! Invariants: a cursor moves only after the sink acknowledged everything up to it
//! (or the rejected part was stored as a dead letter), whatever order requests were
//! answered in; retryable failures are retried forever, each request on its own;
//! nothing is dropped.

pub mod record;
pub mod replay;
mod run;
pub mod shape;
pub mod sinks;
mod window;

pub use run::run_sink;

use crate::config::daemon::SinkConfig;
use crate::queue::{Batch, Queue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a sink said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Try again later (connection errors, timeouts, 408, 429, 5xx, auth trouble).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx): store as a dead letter with the reason.
    Permanent(String),
    /// Some records were not accepted (by line index, in request order): `retry`
    /// are sent again, alone; `rejected` become dead letters with their reasons.
    /// Every other record was delivered.
    Partial {
        retry: Vec<usize>,
        rejected: Vec<(usize, String)>,
        after: Option<Duration>,
    },
    /// The request is too large for the receiver: send it in two halves (a single
    /// record that is still too large becomes a dead letter).
    TooLarge(String),
}

/// Counters of one sink, shared with status reporting.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub last_success_ms: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Since when every attempt failed (ms since the epoch; 0 while it works).
    pub failing_since_ms: AtomicU64,
    /// The sink's task ended (at shutdown, or because it failed).
    pub ended: std::sync::atomic::AtomicBool,
}

/// A send unit: whole queue batches, or one part of a batch too big for one request.
struct Unit {
    /// Last batch id covered; acked once the unit is done (if `complete`).
    last_id: u64,
    first_id: u64,
    part: u32,
    /// True when the unit ends its last batch (ack after sending it).
    complete: bool,
    events: u32,
    records: bytes::Bytes,
}

/// What a sink's requests share: its settings, the queue, its counters, shutdown and
/// the receiver's trouble.
struct Shared {
    cfg: SinkConfig,
    queue: Arc<Queue>,
    stats: Arc<SinkStats>,
    cancel: CancellationToken,
    outage: Outage,
}

/// A receiver's trouble, shared by a sink's requests. While one request retries after
/// a failure (the probe), the others hold their retries and no new request starts;
/// once the probe is answered, they all go again. During an outage a sink so sends
/// one request at a time, backing off as one, and goes back to `max_in_flight` as
/// soon as the receiver answers.
#[derive(Clone)]
struct Outage(Arc<tokio::sync::watch::Sender<Option<u64>>>);

impl Outage {
    fn new() -> Outage {
        Outage(Arc::new(tokio::sync::watch::channel(None).0))
    }

    /// True while a request probes.
    fn on(&self) -> bool {
        self.0.borrow().is_some()
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.0.subscribe()
    }

    /// Request `seq` failed: true when it is the probe (it was, or none was).
    fn failed(&self, seq: u64) -> bool {
        let mut probe = false;
        self.0.send_if_modified(|p| match p {
            None => {
                *p = Some(seq);
                probe = true;
                true
            }
            Some(s) => {
                probe = *s == seq;
                false
            }
        });
        probe
    }

    /// Request `seq` was answered: if it was the probe, the outage is over.
    fn answered(&self, seq: u64) {
        self.0.send_if_modified(|p| {
            let over = *p == Some(seq);
            if over {
                *p = None;
            }
            over
        });
    }

    /// Waits while another request probes. False if cancelled first.
    async fn my_turn(&self, seq: u64, cancel: &CancellationToken) -> bool {
        let mut rx = self.0.subscribe();
        tokio::select! {
            _ = rx.wait_for(|p| p.is_none_or(|s| s == seq)) => true,
            _ = cancel.cancelled() => false,
        }
    }
}

/// Sends one unit (request `seq` of its sink) until every record of it is
/// acknowledged or stored as a dead letter. Returns false if cancelled first.
async fn ship_unit(sh: &Shared, sink: &mut sinks::Sink, unit: &Unit, seq: u64) -> bool {
    let (cfg, stats) = (&sh.cfg, &sh.stats);
    let mut policy = RetryPolicy::new(cfg.retry_initial, cfg.retry_max_delay);
    // What is left to send, in order: the unit, or pieces of it after a split or a
    // partial answer.
    let mut work: std::collections::VecDeque<(bytes::Bytes, u32)> =
        std::collections::VecDeque::from([(unit.records.clone(), unit.events)]);
    // Dead letters of this unit are keyed (first batch id, part): each gets a part
    // number of its own, above the unit's.
    let mut dead = 0u32;
    while let Some((records, events)) = work.pop_front() {
        if !sh.outage.my_turn(seq, &sh.cancel).await {
            return false;
        }
        let verdict = tokio::select! {
            v = sink.send(&records, events) => v,
            _ = sh.cancel.cancelled() => return false,
        };
        if !matches!(verdict, Verdict::Retry { .. }) {
            // The receiver answered: whatever it said, the sink is not failing.
            stats.failing_since_ms.store(0, Ordering::Relaxed);
            sh.outage.answered(seq);
        }
        let mut reject = |reason: String, records: bytes::Bytes, events: u32| {
            let part = unit.part * DEAD_PARTS + dead;
            dead += 1;
            (reason, records, events, part)
        };
        match verdict {
            Verdict::Success => {
                stats.events.fetch_add(u64::from(events), Ordering::Relaxed);
                continue;
            }
            Verdict::Retry { reason, after } => {
                let _ = stats.failing_since_ms.compare_exchange(
                    0,
                    crate::clock::now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if let Ok(mut e) = stats.last_error.lock() {
                    *e = Some(reason.clone());
                }
                work.push_front((records, events));
                if !retry_later(sh, &mut policy, unit, seq, after, &reason).await {
                    return false;
                }
            }
            Verdict::TooLarge(reason) if events > 1 => {
                let (a, b) = halves(&records);
                tracing::warn!(sink = %cfg.name, batch = unit.first_id, events, reason = %reason, "receiver refused the request's size; sending it in halves");
                work.push_front(b);
                work.push_front(a);
            }
            Verdict::TooLarge(reason) | Verdict::Permanent(reason) => {
                let r = reject(reason, records, events);
                if !store_dead(sh, unit, r).await {
                    return false;
                }
            }
            Verdict::Partial {
                retry,
                rejected,
                after,
            } => {
                let lines: Vec<&[u8]> = record::lines(&records).collect();
                let accepted = lines.len().saturating_sub(retry.len() + rejected.len());
                stats.events.fetch_add(accepted as u64, Ordering::Relaxed);
                if !rejected.is_empty() {
                    let (recs, reason) = rejected_records(&lines, &rejected);
                    let r = reject(reason, recs, rejected.len() as u32);
                    if !store_dead(sh, unit, r).await {
                        return false;
                    }
                }
                if !retry.is_empty() {
                    let mut recs = Vec::new();
                    for i in &retry {
                        if let Some(line) = lines.get(*i) {
                            recs.extend_from_slice(line);
                            recs.push(b'\n');
                        }
                    }
                    work.push_front((recs.into(), retry.len() as u32));
                    let why = format!("the receiver could not take {} records", retry.len());
                    if !retry_later(sh, &mut policy, unit, seq, after, &why).await {
                        return false;
                    }
                }
            }
        }
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .last_success_ms
        .store(crate::clock::now_ms(), Ordering::Relaxed);
    true
}

/// After a retryable failure of request `seq`: the probe of an outage backs off
/// (at least `after`, a `Retry-After`); any other request waits for the probe
/// instead, at the top of its next try. False if cancelled first.
async fn retry_later(
    sh: &Shared,
    policy: &mut RetryPolicy,
    unit: &Unit,
    seq: u64,
    after: Option<Duration>,
    reason: &str,
) -> bool {
    sh.stats.retries.fetch_add(1, Ordering::Relaxed);
    if !sh.outage.failed(seq) {
        tracing::debug!(sink = %sh.cfg.name, batch = unit.first_id, reason = %reason, "request failed while another retries; it waits for that one");
        return true;
    }
    let delay = policy.next(after);
    tracing::warn!(sink = %sh.cfg.name, batch = unit.first_id, delay_ms = delay.as_millis() as u64, reason = %reason, "retrying batch");
    !sleep_or_cancel(delay, &sh.cancel).await
}

/// The records a receiver rejected (by line index), and the reason naming each.
fn rejected_records(lines: &[&[u8]], rejected: &[(usize, String)]) -> (bytes::Bytes, String) {
    let mut recs = Vec::new();
    let mut reason = format!("{} of {} records rejected:", rejected.len(), lines.len());
    for (i, why) in rejected {
        let Some(line) = lines.get(*i) else { continue };
        recs.extend_from_slice(line);
        recs.push(b'\n');
        let id = record::id(line).unwrap_or("?");
        reason.push_str(&format!("\n{id}: {why}"));
    }
    (recs.into(), reason)
}

/// Dead-letter part numbers a unit may use: a unit's rejections are at most its
/// records (≤ 10,000 by the batch limits), so `unit.part * DEAD_PARTS + n` never
/// collides.
const DEAD_PARTS: u32 = 1 << 14;

/// Stores rejected records as a dead letter, retrying storage until it works.
/// Returns false if cancelled first.
async fn store_dead(
    sh: &Shared,
    unit: &Unit,
    (reason, records, events, part): (String, bytes::Bytes, u32, u32),
) -> bool {
    tracing::error!(sink = %sh.cfg.name, batch = unit.first_id, part, events, reason = %reason, "sink rejected records for good; stored as a dead letter");
    loop {
        let (n, id, reason, recs) = (
            sh.cfg.name.clone(),
            unit.first_id,
            reason.clone(),
            records.clone(),
        );
        let stored = blocking(&sh.queue, move |q| {
            q.store_dead_letter(&n, id, part, &reason, events, &recs)
        })
        .await;
        if stored.is_some() {
            sh.stats
                .dead_lettered
                .fetch_add(u64::from(events), Ordering::Relaxed);
            return true;
        }
        if sleep_or_cancel(Duration::from_secs(1), &sh.cancel).await {
            return false;
        }
    }
}

/// Splits request records into two halves at a line boundary.
fn halves(records: &bytes::Bytes) -> ((bytes::Bytes, u32), (bytes::Bytes, u32)) {
    let n = record::lines(records).count();
    let half = n / 2;
    let mut at = 0usize;
    for _ in 0..half {
        at += memchr::memchr(b'\n', &records[at..]).map_or(records.len() - at, |i| i + 1);
    }
    (
        (records.slice(..at), half as u32),
        (records.slice(at..), (n - half) as u32),
    )
}

/// Exponential backoff with jitter, capped, honouring a server's `Retry-After`.
/// Kept behind this type so the `backoff` crate can be swapped in one place.
pub struct RetryPolicy {
    inner: backoff::ExponentialBackoff,
    max: Duration,
}

impl RetryPolicy {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let inner = backoff::ExponentialBackoff {
            current_interval: initial,
            initial_interval: initial,
            randomization_factor: 1.0,
            multiplier: 2.0,
            max_interval: max,
            max_elapsed_time: None,
            ..Default::default()
        };
        RetryPolicy { inner, max }
    }

    /// The next delay: jittered exponential, at most the cap, at least `retry_after`.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        use backoff::backoff::Backoff;
        let d = self.inner.next_backoff().unwrap_or(self.max).min(self.max);
        match retry_after {
            Some(r) => d.max(r.min(Duration::from_secs(3600))),
            None => d,
        }
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

/// Runs a queue call off the async workers; `None` (logged) on failure.
async fn blocking<T: Send + 'static>(
    queue: &Arc<Queue>,
    f: impl FnOnce(&Queue) -> Result<T, crate::queue::QueueError> + Send + 'static,
) -> Option<T> {
    let q = queue.clone();
    match tokio::task::spawn_blocking(move || f(&q)).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "queue operation failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "queue task failed");
            None
        }
    }
}

/// Consecutive batches after `cursor`, as many as fit one request
/// (`(max_events, max_bytes)`) beside `held` (events, bytes) already in it. A first
/// batch over the limits alone is taken (it goes out in parts).
async fn collect(
    queue: &Arc<Queue>,
    cursor: u64,
    (max_events, max_bytes): (usize, usize),
    held: (usize, usize),
    pool: &Pool,
) -> Option<Vec<Batch>> {
    let pool = pool.clone();
    blocking(queue, move |q| {
        let mut out: Vec<Batch> = Vec::new();
        let (mut events, mut bytes) = held;
        let mut after = cursor;
        while let Some(b) = q.next_after_into(after, pool.take())? {
            if (events, bytes) != (0, 0)
                && (events + b.events as usize > max_events || bytes + b.records.len() > max_bytes)
            {
                pool.put(b.records);
                break;
            }
            after = b.id;
            events += b.events as usize;
            bytes += b.records.len();
            out.push(b);
            if events >= max_events || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    })
    .await
}

/// Request buffers kept for reuse: a sink reads every batch into one of a few
/// buffers instead of a fresh allocation of its size, so the allocator neither
/// fragments nor pages them in and out.
#[derive(Clone)]
struct Pool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Buffers kept at most.
    keep: usize,
}

impl Pool {
    fn new(keep: usize) -> Pool {
        Pool {
            free: Arc::default(),
            keep,
        }
    }

    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default()
    }

    /// Keeps `buf` for reuse. Its length stays: what reads into it next overwrites
    /// that much without zeroing it first.
    fn put(&self, buf: Vec<u8>) {
        if let Ok(mut v) = self.free.lock()
            && v.len() < self.keep
        {
            v.push(buf);
        }
    }

    /// Takes a sent unit's buffer back when nothing else holds it; returns what is
    /// still needed of the unit.
    fn reclaim(&self, unit: Unit) -> UnitDone {
        let done = UnitDone {
            last_id: unit.last_id,
            complete: unit.complete,
        };
        if let Ok(b) = unit.records.try_into_mut() {
            self.put(Vec::from(b));
        }
        done
    }
}

/// What is left of a unit once sent.
struct UnitDone {
    last_id: u64,
    complete: bool,
}

/// Groups batches into send units: several small batches form one unit; a batch
/// over the sink's limits is split at line boundaries into parts.
fn units(batches: Vec<Batch>, cfg: &SinkConfig) -> Vec<Unit> {
    let fits =
        |b: &Batch| (b.events as usize) <= cfg.max_events && b.records.len() <= cfg.max_bytes;
    if batches.iter().all(fits) {
        let first_id = batches[0].id;
        let last_id = batches.last().map(|b| b.id).unwrap_or(first_id);
        let events = batches.iter().map(|b| b.events).sum();
        let records = if batches.len() == 1 {
            // The common case: hand the batch's buffer over, no copy.
            batches
                .into_iter()
                .next()
                .map(|b| b.records)
                .unwrap_or_default()
        } else {
            let mut joined = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
            for b in &batches {
                joined.extend_from_slice(&b.records);
            }
            joined
        };
        return vec![Unit {
            last_id,
            first_id,
            part: 0,
            complete: true,
            events,
            records: records.into(),
        }];
    }
    let mut out = Vec::new();
    for b in batches {
        let mut part = 0u32;
        let mut start = 0usize;
        let mut lines = 0u32;
        let mut pos = 0usize;
        let data = &b.records;
        while pos < data.len() {
            let end = data[pos..]
                .iter()
                .position(|&c| c == b'\n')
                .map(|i| pos + i + 1)
                .unwrap_or(data.len());
            if lines > 0 && (lines as usize >= cfg.max_events || end - start > cfg.max_bytes) {
                out.push(Unit {
                    last_id: b.id,
                    first_id: b.id,
                    part,
                    complete: false,
                    events: lines,
                    records: bytes::Bytes::copy_from_slice(&data[start..pos]),
                });
                part += 1;
                start = pos;
                lines = 0;
            }
            lines += 1;
            pos = end;
        }
        out.push(Unit {
            last_id: b.id,
            first_id: b.id,
            part,
            complete: true,
            events: lines,
            records: bytes::Bytes::copy_from_slice(&data[start..]),
        });
    }
    out
}

/// Parses `Retry-After` as delay-seconds (HTTP-dates are ignored: backoff applies).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::daemon::{Compression, SinkKind};

    fn cfg(max_events: usize, max_bytes: usize) -> SinkConfig {
        SinkConfig {
            name: "s".into(),
            kind: SinkKind::File {
                path: "/dev/null".into(),
                max_file_bytes: 1,
                max_files: 1,
            },
            compression: Compression::None,
            max_events,
            max_bytes,
            max_wait: Duration::ZERO,
            max_in_flight: 1,
            retry_initial: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
        }
    }

    fn batch(id: u64, n: u32) -> Batch {
        let records: Vec<u8> = (0..n)
            .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
            .collect();
        Batch {
            id,
            events: n,
            created_ms: 0,
            records,
        }
    }

    #[test]
    fn small_batches_merge_big_ones_split_at_lines() {
        let u = units(vec![batch(1, 2), batch(2, 3)], &cfg(10, 1 << 20));
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].first_id, u[0].last_id, u[0].events, u[0].complete),
            (1, 2, 5, true)
        );
        let u = units(vec![batch(7, 5)], &cfg(2, 1 << 20));
        let shape: Vec<(u32, u32, bool)> =
            u.iter().map(|x| (x.part, x.events, x.complete)).collect();
        assert_eq!(shape, [(0, 2, false), (1, 2, false), (2, 1, true)]);
        let joined: Vec<u8> = u.iter().flat_map(|x| x.records.clone()).collect();
        assert_eq!(joined, batch(7, 5).records, "parts cover the batch exactly");
    }

    #[test]
    fn one_request_probes_an_outage_and_only_its_answer_ends_it() {
        let o = Outage::new();
        assert!(!o.on());
        assert!(o.failed(3), "the first request to fail probes");
        assert!(!o.failed(5), "another that fails waits for it");
        assert!(o.failed(3), "the probe stays the probe");
        o.answered(5);
        assert!(o.on(), "an answer to another request does not end it");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let cancel = CancellationToken::new();
        rt.block_on(async {
            assert!(o.my_turn(3, &cancel).await, "the probe goes on");
            let waiting = o.my_turn(5, &cancel);
            let held = tokio::time::timeout(Duration::from_millis(50), waiting).await;
            assert!(held.is_err(), "the others wait while the probe retries");
            let (turn, ()) = tokio::join!(o.my_turn(5, &cancel), async { o.answered(3) });
            assert!(turn, "the probe's answer lets them go");
        });
        assert!(!o.on());
    }

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let mut p = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(2));
        for _ in 0..50 {
            assert!(p.next(None) <= Duration::from_secs(2));
        }
        assert!(p.next(Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
