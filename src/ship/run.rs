//! One sink's loop: which stored batches make the next request, whether to wait for
//! a fuller one, up to `max_in_flight` requests out at once, and the cursor stored
//! over the contiguous prefix of finished requests.
//!
//! Invariants:
//! - A request goes out at once unless the reader said, with the newest batch, that
//!   it had read every file to its end (the live edge, [`Tip`]) and the request could
//!   still grow: only then does it wait for more, at most `batch.max_wait` after its
//!   oldest batch was stored, and a commit that fills it sends it sooner. A reader
//!   paused behind a full queue, or a batch stored because it was full, never makes
//!   a sink wait.
//! - At most `max_in_flight` requests are out ([`Window`]); a finished one waiting
//!   behind an older one still counts. The cursor moves only over requests that all
//!   finished, and one acknowledgement is stored at a time while the next requests
//!   go out, so an interruption repeats at most the requests out and those whose
//!   acknowledgement was being stored: 2 × `max_in_flight` requests.
//! - A sink without acknowledgements (syslog) has one request out; its cursor is
//!   stored only once the sink confirms the mark taken after a request.
//! - Blocking queue work (reads, acknowledgements, dead letters) runs in
//!   `spawn_blocking`; a request runs in a task of its own with its own handle on
//!   the sink ([`sinks::Sink::another`]).

use super::window::Window;
use super::{Outage, Pool, Shared, SinkStats, Unit, UnitDone};
use super::{blocking, collect, ship_unit, sinks, sleep_or_cancel, units};
use crate::config::daemon::SinkConfig;
use crate::queue::{Batch, Queue, Tip};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Runs one sink until `cancel` fires, or until `draining` fired and everything
/// stored was delivered. `committed` says which batch is the newest and whether the
/// reader was caught up when it stored it.
pub async fn run_sink(
    cfg: SinkConfig,
    sink: sinks::Sink,
    queue: Arc<Queue>,
    mut committed: watch::Receiver<Tip>,
    draining: CancellationToken,
    cancel: CancellationToken,
    stats: Arc<SinkStats>,
) {
    let Some(durable) = blocking(&queue, {
        let name = cfg.name.clone();
        move |q| q.cursor(&name)
    })
    .await
    else {
        return;
    };
    let mut s = Shipper::new(cfg, sink, queue, stats, cancel.clone(), durable);
    let mut outage = s.sh.outage.subscribe();
    let mut reader_gone = false;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        while let Some(r) = s.tasks.try_join_next() {
            if !s.finished(r) {
                return;
            }
        }
        s.confirm_marks().await;
        s.store_cursor().await;
        if s.rewind && s.window.is_empty() {
            // Storing the cursor failed: what was shipped since the stored one is
            // sent again, after a pause (storage trouble does not clear up in
            // microseconds).
            s.restart_from_stored().await;
            if sleep_or_cancel(Duration::from_secs(1), &cancel).await {
                return;
            }
            continue;
        }
        let tip = *committed.borrow_and_update();
        let next = s.fill(tip, draining.is_cancelled()).await;
        if matches!(next, Next::Idle) && s.window.is_empty() {
            // Before idling (or returning), the last ack must be stored.
            if !s.acks.settle().await {
                s.rewind = true;
                continue;
            }
            if draining.is_cancelled() && s.drained() {
                return;
            }
        }
        let linger = match next {
            Next::Linger(d) => Some(d),
            _ => None,
        };
        let watch_commits = matches!(next, Next::Idle | Next::Linger(_)) && !reader_gone;
        // Nothing runs until a request finishes, the reader commits, a wait ends or
        // shutdown begins.
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(r) = s.tasks.join_next(), if !s.tasks.is_empty() => {
                if !s.finished(r) {
                    return;
                }
            }
            r = committed.changed(), if watch_commits => {
                // The reader is gone: wait for shutdown.
                reader_gone = r.is_err();
            }
            // The receiver answers again: the other requests may go.
            _ = outage.wait_for(Option::is_none), if s.sh.outage.on() => {}
            _ = tokio::time::sleep(linger.unwrap_or_default()), if linger.is_some() => {}
            // Ask a sink without acknowledgements again shortly.
            _ = tokio::time::sleep(Duration::from_millis(100)), if !s.unconfirmed.is_empty() => {}
            // The queue could not be read: wait and retry.
            _ = tokio::time::sleep(Duration::from_secs(1)), if matches!(next, Next::Storage) => {}
            _ = draining.cancelled(), if !draining.is_cancelled() => {}
        }
    }
}

/// Why [`Shipper::fill`] stopped starting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// As many requests are out as may be, one probes a failing receiver, or the
    /// sink is rewinding: wait for one.
    Busy,
    /// Nothing stored that was not taken.
    Idle,
    /// At the live edge with room in the request: wait this long for more.
    Linger(Duration),
    /// The queue could not be read.
    Storage,
}

/// A request's task, once it ended.
struct Finished {
    seq: u64,
    /// The sink handle it used, back for the next request.
    sink: sinks::Sink,
    unit: Unit,
    /// False when cancelled before every record was delivered or dead-lettered.
    sent: bool,
    /// Sinks without acknowledgements: where the stream stood after the request.
    mark: Option<sinks::syslog::Mark>,
}

/// A sink's state between requests.
struct Shipper {
    sh: Arc<Shared>,
    cfg: SinkConfig,
    queue: Arc<Queue>,
    /// Handles on the sink not sending now: one per request that may be out.
    idle: Vec<sinks::Sink>,
    tasks: JoinSet<Finished>,
    window: Window,
    acks: Acks,
    /// Everything up to here was delivered (or dead-lettered); stored through `acks`.
    cursor: u64,
    /// The newest batch taken into a request (sent, ready or held).
    taken: u64,
    /// Requests made and not sent yet (the window was full).
    ready: VecDeque<Unit>,
    /// Batches read for the next request while it may still grow.
    held: Vec<Batch>,
    /// The batches after `.0`, being read while requests are out.
    read_ahead: Option<(u64, JoinHandle<Option<Vec<Batch>>>)>,
    /// Sends not confirmed yet, for sinks without acknowledgements (syslog): the
    /// last batch id of each and where the stream stood after it.
    unconfirmed: VecDeque<(u64, sinks::syslog::Mark)>,
    pool: Pool,
    /// Storing the cursor failed: no new request until the window is empty, then
    /// everything after the stored cursor goes again.
    rewind: bool,
}

impl Shipper {
    fn new(
        cfg: SinkConfig,
        sink: sinks::Sink,
        queue: Arc<Queue>,
        stats: Arc<SinkStats>,
        cancel: CancellationToken,
        durable: u64,
    ) -> Shipper {
        let mut idle = Vec::with_capacity(cfg.max_in_flight);
        while idle.len() + 1 < cfg.max_in_flight {
            match sink.another() {
                Some(s) => idle.push(s),
                None => break,
            }
        }
        idle.push(sink);
        let acks = Acks {
            queue: queue.clone(),
            sink: cfg.name.clone(),
            durable,
            requested: durable,
            storing: None,
        };
        Shipper {
            window: Window::new(idle.len()),
            // Buffers for the requests out, the one being read and one more.
            pool: Pool::new(idle.len() + 2),
            idle,
            sh: Arc::new(Shared {
                cfg: cfg.clone(),
                queue: queue.clone(),
                stats,
                cancel,
                outage: Outage::new(),
            }),
            cfg,
            queue,
            tasks: JoinSet::new(),
            acks,
            cursor: durable,
            taken: durable,
            ready: VecDeque::new(),
            held: Vec::new(),
            read_ahead: None,
            unconfirmed: VecDeque::new(),
            rewind: false,
        }
    }

    /// Starts requests while the window has room and there is something to send.
    async fn fill(&mut self, tip: Tip, draining: bool) -> Next {
        loop {
            if self.rewind || !self.window.has_room() || self.sh.outage.on() {
                return Next::Busy;
            }
            if let Some(unit) = self.ready.pop_front() {
                self.start(unit);
                continue;
            }
            if !self.gather().await {
                return Next::Storage;
            }
            if self.held.is_empty() {
                return Next::Idle;
            }
            if let Some(rest) = self.linger_for(tip, draining) {
                return Next::Linger(rest);
            }
            let batches = std::mem::take(&mut self.held);
            self.ready.extend(units(batches, &self.cfg));
            self.read_ahead();
        }
    }

    /// Adds to `held` the batches stored after the last one taken, as many as fit
    /// one request. False if the queue could not be read.
    async fn gather(&mut self) -> bool {
        let (events, bytes) = self.held_size();
        if events >= self.cfg.max_events
            || bytes >= self.cfg.max_bytes
            || self.queue.last_id() <= self.taken
        {
            return true;
        }
        let limits = (self.cfg.max_events, self.cfg.max_bytes);
        let batches = match self.read_ahead.take() {
            Some((after, task)) if after == self.taken && self.held.is_empty() => {
                task.await.ok().flatten()
            }
            _ => collect(&self.queue, self.taken, limits, (events, bytes), &self.pool).await,
        };
        let Some(batches) = batches else {
            return false;
        };
        if let Some(b) = batches.last() {
            self.taken = b.id;
        }
        self.held.extend(batches);
        true
    }

    /// Starts reading the next request's batches while this one goes out.
    fn read_ahead(&mut self) {
        if self.read_ahead.is_some() || self.queue.last_id() <= self.taken {
            return;
        }
        let (q, p, after) = (self.queue.clone(), self.pool.clone(), self.taken);
        let limits = (self.cfg.max_events, self.cfg.max_bytes);
        self.read_ahead = Some((
            after,
            tokio::spawn(async move { collect(&q, after, limits, (0, 0), &p).await }),
        ));
    }

    fn held_size(&self) -> (usize, usize) {
        self.held.iter().fold((0, 0), |(e, b), x| {
            (e + x.events as usize, b + x.records.len())
        })
    }

    /// How long to wait for a fuller request: only at the live edge (the reader was
    /// caught up when it stored the newest batch, which `held` ends with) while the
    /// request has room, and no longer than `max_wait` after its oldest batch was
    /// stored. `None`: send now.
    fn linger_for(&self, tip: Tip, draining: bool) -> Option<Duration> {
        let (events, bytes) = self.held_size();
        let room = events < self.cfg.max_events && bytes < self.cfg.max_bytes;
        let live_edge = tip.caught_up
            && tip.id == self.taken
            && self.queue.last_id() <= self.taken
            && !self.queue.is_full();
        if draining || !room || !live_edge {
            return None;
        }
        let age = crate::clock::now_ms().saturating_sub(self.held.first()?.created_ms);
        let wait = self.cfg.max_wait.as_millis() as u64;
        (age < wait).then(|| Duration::from_millis(wait - age))
    }

    /// Sends `unit` in a task of its own, with an idle handle on the sink.
    fn start(&mut self, unit: Unit) {
        let Some(mut sink) = self.idle.pop() else {
            self.ready.push_front(unit);
            return;
        };
        let seq = self.window.open(unit.last_id, unit.complete);
        let sh = self.sh.clone();
        self.tasks.spawn(async move {
            let sent = ship_unit(&sh, &mut sink, &unit, seq).await;
            let mark = if sent { sink.mark() } else { None };
            Finished {
                seq,
                sink,
                unit,
                sent,
                mark,
            }
        });
    }

    /// Takes a request's end into account. False when the sink must stop (it was
    /// cancelled, or the task failed).
    fn finished(&mut self, r: Result<Finished, JoinError>) -> bool {
        let f = match r {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(sink = %self.cfg.name, error = %e, "a request's task failed; the sink stops");
                return false;
            }
        };
        self.idle.push(f.sink);
        if !f.sent {
            return false;
        }
        let UnitDone { last_id, complete } = self.pool.reclaim(f.unit);
        match f.mark {
            Some(mark) => {
                // Confirmed later, before the cursor is stored. A part of a batch goes
                // in under the previous batch's id, so a connection lost in between
                // sends the whole batch again.
                let id = if complete {
                    last_id
                } else {
                    last_id.saturating_sub(1).max(self.acks.durable)
                };
                self.unconfirmed.push_back((id, mark));
                let _ = self.window.finish(f.seq);
            }
            None => {
                if let Some(id) = self.window.finish(f.seq) {
                    self.cursor = self.cursor.max(id);
                }
            }
        }
        true
    }

    /// Starts storing the cursor if it moved (after the previous one is stored).
    async fn store_cursor(&mut self) {
        if !self.rewind && self.cursor > self.acks.requested && !self.acks.ack(self.cursor).await {
            self.rewind = true;
        }
    }

    /// Sinks without acknowledgements: confirms what can be of the sends, between
    /// requests (the check needs the sink's connection).
    async fn confirm_marks(&mut self) {
        if self.unconfirmed.is_empty() || !self.window.is_empty() {
            return;
        }
        let Some(sink) = self.idle.last_mut() else {
            return;
        };
        match confirm(sink, &mut self.unconfirmed) {
            Confirmed::Nothing => {}
            Confirmed::Upto(id) => self.cursor = self.cursor.max(id),
            Confirmed::Lost => {
                // The connection broke before these were confirmed: send again from
                // the last stored ack.
                let _ = self.acks.settle().await;
                tracing::warn!(sink = %self.cfg.name, from = self.acks.durable, to = self.taken, "connection lost before delivery was confirmed; sending those batches again");
                self.restart_from_stored().await;
            }
        }
    }

    /// Forgets what was taken after the stored cursor, to send it again (the window
    /// is empty).
    async fn restart_from_stored(&mut self) {
        let _ = self.acks.settle().await;
        let durable = self.acks.durable;
        self.acks.requested = durable;
        self.cursor = durable;
        self.taken = durable;
        for b in self.held.drain(..) {
            self.pool.put(b.records);
        }
        self.ready.clear();
        self.read_ahead = None;
        self.unconfirmed.clear();
        self.rewind = false;
    }

    /// Everything stored was taken, sent and delivered.
    fn drained(&self) -> bool {
        self.window.is_empty()
            && self.ready.is_empty()
            && self.held.is_empty()
            && self.unconfirmed.is_empty()
            && self.queue.last_id() <= self.taken
    }
}

/// The sink's stored cursor and the ack being stored.
struct Acks {
    queue: Arc<Queue>,
    sink: String,
    /// The newest ack known stored.
    durable: u64,
    /// The newest ack asked for (stored or being stored).
    requested: u64,
    storing: Option<(u64, JoinHandle<Option<()>>)>,
}

impl Acks {
    /// Starts storing `id` as the cursor once the previous ack is stored (acks are
    /// stored in order). False if the previous one failed (logged).
    async fn ack(&mut self, id: u64) -> bool {
        if !self.settle().await {
            return false;
        }
        let (q, n) = (self.queue.clone(), self.sink.clone());
        self.requested = id;
        self.storing = Some((
            id,
            tokio::spawn(async move { blocking(&q, move |q| q.ack(&n, id)).await }),
        ));
        true
    }

    /// Waits for the ack being stored, if any. False if storing it failed.
    async fn settle(&mut self) -> bool {
        match self.storing.take() {
            None => true,
            Some((id, task)) => match task.await.ok().flatten() {
                Some(()) => {
                    self.durable = self.durable.max(id);
                    true
                }
                None => false,
            },
        }
    }
}

enum Confirmed {
    Nothing,
    Upto(u64),
    Lost,
}

/// Confirms what can be of the unconfirmed sends, oldest first.
fn confirm(
    sink: &mut sinks::Sink,
    unconfirmed: &mut VecDeque<(u64, sinks::syslog::Mark)>,
) -> Confirmed {
    let mut upto = None;
    while let Some((id, mark)) = unconfirmed.front() {
        match sink.confirm(mark) {
            sinks::syslog::Confirm::Yes => {
                upto = Some(*id);
                unconfirmed.pop_front();
            }
            sinks::syslog::Confirm::NotYet => break,
            sinks::syslog::Confirm::Lost => return Confirmed::Lost,
        }
    }
    upto.map_or(Confirmed::Nothing, Confirmed::Upto)
}
