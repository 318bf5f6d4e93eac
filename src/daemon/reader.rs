//! The reading side of the daemon, on one dedicated thread: rescan (watch), read new
//! complete lines (tail), turn each into a shipped record (check), and commit batches
//! together with the checkpoints they advance (queue).
//!
//! Invariants: in-memory offsets and chain heads run ahead of the queue only until
//! the next commit; if a commit fails, that state is thrown away and rebuilt from the
//! last durable checkpoints, so nothing read is ever skipped. When the queue is full
//! the reader stops reading (the files are the buffer) until sinks catch up.

use super::refusals::{Refusals, RefusedCounts};
use crate::audit::{Head, Verifier};
use crate::check::{Encoder, Origin, Truncated};
use crate::config::daemon::{SourceConfig, SourceFormat};
use crate::queue::keys::{file_key, stream_key};
use crate::queue::{NewBatch, Queue, QueueError, Tip};
use crate::tail::{Checkpoint, Hold, Prior, Resume, Tail};
use crate::watch::{self, Hints, Listed, StreamListing};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Limits of one committed batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub batch_events: u32,
    pub batch_bytes: usize,
    pub rescan: Duration,
}

/// Room kept under a sink's request size for the record that ends a batch: the batch
/// closes once it holds `max_bytes - BATCH_SLACK` bytes, so a batch fits one request
/// unless its last record alone is larger than this.
pub const BATCH_SLACK: usize = 64 * 1024;

impl Limits {
    /// Batches sized so that each fits one request of every sink (the smallest
    /// `max_events` and `max_bytes`, less [`BATCH_SLACK`]): a sink then sends a
    /// stored batch as it is, without splitting or copying it. At least 64 KiB and at
    /// most 4 MiB of records, at most 10,000 events.
    pub fn for_sinks(sinks: impl IntoIterator<Item = (usize, usize)>, rescan: Duration) -> Limits {
        let (events, bytes) = sinks
            .into_iter()
            .fold((10_000usize, 4usize << 20), |(e, b), (se, sb)| {
                (e.min(se), b.min(sb.saturating_sub(BATCH_SLACK)))
            });
        Limits {
            batch_events: events.max(1) as u32,
            batch_bytes: bytes.max(64 * 1024),
            rescan,
        }
    }
}

/// Counters shared with the rest of the daemon.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub lines: AtomicU64,
    pub problems: AtomicU64,
    pub redacted: AtomicU64,
    pub batches: AtomicU64,
    pub files: AtomicU64,
    pub paused: AtomicBool,
    /// Times reading paused for a full queue.
    pub pauses: AtomicU64,
    /// When the reader last showed progress (a pass ended, a batch went to the
    /// queue, or it waited for room): ms since the epoch. Feeds the watchdog.
    pub alive_ms: AtomicU64,
    /// Events read, by source name.
    pub by_source: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Problems attached to shipped records, by code.
    pub by_code: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Symlinks not followed, by kind.
    pub refused: RefusedCounts,
}

/// Under steady backpressure reading pauses many times a second: say so at most this
/// often.
const PAUSE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The stream checkpoint (boundary format, versioned).
#[derive(Debug, Serialize, Deserialize)]
struct StreamCheckpoint {
    v: u32,
    head: Option<(u64, String)>,
    /// What was read of files truncated or deleted since (their last line each):
    /// a copy of one of them continues after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    priors: Vec<Prior>,
}

/// Files truncated or deleted that a stream remembers, to recognise copies of them.
const PRIORS: usize = 8;

struct Stream {
    source: usize,
    name: String,
    key: Vec<u8>,
    verifier: Option<Verifier>,
    tails: Vec<Tail>,
    /// Files that left the directory, read to their end, kept open until the commit
    /// that forgets them is durable.
    departing: Vec<Tail>,
    /// Checkpoint keys of files dropped since the last commit.
    removed: Vec<Vec<u8>>,
    /// What was read of files truncated or deleted lately, newest last.
    priors: std::collections::VecDeque<Prior>,
    dirty: bool,
}

impl Stream {
    fn remember(&mut self, prior: Option<Prior>) {
        let Some(p) = prior else { return };
        if self.priors.len() == PRIORS {
            self.priors.pop_front();
        }
        self.priors.push_back(p);
        self.dirty = true;
    }

    /// Makes the new tail `idx` continue a file it is a copy of, one truncated or
    /// gone since it was read. Returns whether it does.
    fn continue_copy(&mut self, idx: usize) -> std::io::Result<bool> {
        let Some(fp) = self.tails[idx].fingerprint.clone() else {
            return Ok(false);
        };
        for i in (0..self.priors.len()).rev() {
            if self.priors[i].fingerprint == fp
                && self.tails[idx].continue_after(&self.priors[i])?
            {
                self.priors.remove(i);
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Where a new file read in full goes among others found with it: by the `seq` of
/// its first event (a chained stream's files in chain order, whatever their names
/// or times), then, for files without one, by when it was last written
/// (`audit.jsonl.1` before `audit.jsonl`); the caller's order breaks ties.
fn chain_place(t: &Tail) -> (u64, (i64, i64)) {
    let seq = t
        .first_line()
        .ok()
        .flatten()
        .and_then(|line| first_seq(&line));
    (seq.unwrap_or(u64::MAX), t.modified().unwrap_or_default())
}

/// The top-level `seq` of a JSON line, if it has a non-negative integer one.
fn first_seq(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let value = crate::audit::json::parse(text).ok()?;
    match crate::audit::json::get(value.as_object()?, "seq")? {
        crate::audit::json::Value::Number(crate::audit::json::Number::Int(n)) => {
            u64::try_from(*n).ok()
        }
        _ => None,
    }
}

/// What is done with a file in a pass.
enum Placed {
    /// Read from its offset.
    Read,
    /// Read first: a copy that continues after what was read of its original.
    Copy,
    /// A new file, read in full (after the files read further).
    Whole,
    /// Not read yet (see [`Hold`]).
    Held,
}

/// Whether the held tail `idx` is so far a copy of a tracked file still being read
/// (see [`Tail::copies_so_far`]), trying first the one it was found to copy
/// before; the hold that says so, or `None` if it copies none.
fn copy_so_far(
    st: &Stream,
    idx: usize,
    before: Option<(u64, u64, u64)>,
) -> std::io::Result<Option<Hold>> {
    let copy = &st.tails[idx];
    let mut candidates: Vec<(usize, u64)> = st
        .tails
        .iter()
        .enumerate()
        .filter(|(j, t)| *j != idx && t.hold.is_none() && t.fingerprint == copy.fingerprint)
        .map(|(j, t)| match before {
            Some((dev, ino, checked)) if (dev, ino) == (t.dev, t.ino) => (j, checked),
            _ => (j, 0),
        })
        .collect();
    candidates.sort_by_key(|&(_, checked)| std::cmp::Reverse(checked));
    for (j, checked) in candidates {
        let original = &st.tails[j];
        let hold = |checked| Hold::CopyOf {
            dev: original.dev,
            ino: original.ino,
            checked,
        };
        match copy.copies_so_far(original, checked)? {
            Some(upto) => return Ok(Some(hold(upto))),
            // They differ because the original was truncated and written again
            // since its last look: decided once its next look says so.
            None if original.replaced_in_place()? => return Ok(Some(hold(checked))),
            None => {}
        }
    }
    Ok(None)
}

pub struct Reader {
    sources: Vec<(SourceConfig, globset::GlobMatcher)>,
    queue: Arc<Queue>,
    encoder: Encoder,
    limits: Limits,
    streams: HashMap<Vec<u8>, Stream>,
    /// Checkpoints loaded at start, consumed as their files are found again.
    stored: BTreeMap<Vec<u8>, Vec<u8>>,
    pending: NewBatch,
    /// Stores batches on its own thread while the next one is read.
    committer: Committer,
    /// The batch being stored, with the files that left their streams before it (their
    /// descriptors close once it is durable).
    in_flight: Option<Vec<(Vec<u8>, Vec<Tail>)>>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<ReaderStats>,
    buf: Vec<u8>,
    /// When a pause was last logged, and the pause count then.
    pause_logged: Option<(Instant, u64)>,
    /// This pass stored a batch before its end (a full one, or before pausing for a
    /// full queue): it is working through a backlog, and its last batch is the rest
    /// of it, not records that trickled in at the live edge.
    backlog: bool,
    /// Symlinks refused, reported once per path.
    pub refusals: Refusals,
    /// A file was found truncated while being read: the next pass starts at once
    /// (its listing then holds a copy made before the truncation).
    again: bool,
}

/// Why a pass stopped: the queue's storage (fatal) or anything else (retried).
#[derive(Debug)]
pub enum PassError {
    Queue(crate::queue::QueueError),
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Queue(e) => write!(f, "{e}"),
            PassError::Other(e) => write!(f, "{e}"),
        }
    }
}

fn head_of((seq, hash): (u64, String)) -> Option<Head> {
    let mut h = [0u8; 64];
    (hash.len() == 64).then(|| {
        h.copy_from_slice(hash.as_bytes());
        Head { seq, hash: h }
    })
}

impl Reader {
    pub fn new(
        sources: Vec<SourceConfig>,
        queue: Arc<Queue>,
        encoder: Encoder,
        limits: Limits,
        committed: Box<dyn Fn(Tip) + Send>,
        stop: Arc<AtomicBool>,
    ) -> Result<Reader, crate::queue::QueueError> {
        let sources = sources
            .into_iter()
            .map(|s| {
                let m = globset::Glob::new(&s.files)
                    .map(|g| g.compile_matcher())
                    .unwrap_or_else(|_| {
                        globset::Glob::new("*.jsonl")
                            .expect("valid glob")
                            .compile_matcher()
                    });
                (s, m)
            })
            .collect();
        let stored = queue.checkpoints()?;
        Ok(Reader {
            sources,
            queue: queue.clone(),
            encoder,
            limits,
            streams: HashMap::new(),
            stored,
            pending: NewBatch {
                records: Vec::with_capacity(limits.batch_bytes + BATCH_SLACK),
                ..NewBatch::default()
            },
            committer: Committer::start(queue.clone(), committed, limits.batch_bytes)?,
            in_flight: None,
            stop,
            stats: Arc::default(),
            buf: Vec::new(),
            pause_logged: None,
            backlog: false,
            refusals: Refusals::default(),
            again: false,
        })
    }

    /// Runs until the stop flag is set, then commits what it has read. Returns an
    /// error only when the queue's storage failed: the caller stops the daemon (the
    /// data stays in the files; a restart, e.g. by systemd, reopens the storage).
    pub fn run(mut self, hints: &mut Hints) -> Result<(), crate::queue::QueueError> {
        let mut failures = 0u32;
        loop {
            let r = self.pass(hints);
            self.stats
                .alive_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
            match r {
                Ok(()) => failures = 0,
                Err(PassError::Queue(e)) => {
                    tracing::error!(error = %e, "queue storage failed; stopping (nothing is lost: the rest is still in the files)");
                    self.reset();
                    return Err(e);
                }
                Err(PassError::Other(e)) => {
                    failures += 1;
                    tracing::error!(error = %e, failures, "reading failed; starting again from the last durable checkpoints");
                    self.reset();
                    let pause = Duration::from_millis(200u64 << failures.min(6));
                    self.sleep(pause);
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            hints.wait(self.limits.rescan);
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    /// Throws away progress that is not durable: every tail and chain head goes back
    /// to its last committed checkpoint. Open files stay open (a deleted file's
    /// descriptor may be the only way left to its lines), and files that left their
    /// directory since the last commit are tracked again, to be drained again.
    fn reset(&mut self) {
        // The batch being stored decides what is durable: wait for it. If it failed,
        // its departed files are back in their streams, to be tracked again below.
        let _ = self.settle();
        self.pending.records.clear();
        self.pending.events = 0;
        self.pending.put.clear();
        self.pending.remove.clear();
        let durable = match self.queue.checkpoints() {
            Ok(c) => c,
            Err(e) => {
                // Without the durable state nothing can be trusted: start over from it
                // when it can be read again.
                tracing::error!(error = %e, "cannot reload checkpoints");
                self.streams.clear();
                return;
            }
        };
        for st in self.streams.values_mut() {
            let head = durable
                .get(&st.key)
                .and_then(|v| serde_json::from_slice::<StreamCheckpoint>(v).ok())
                .and_then(|c| c.head)
                .and_then(head_of);
            if let Some(v) = st.verifier.as_mut() {
                *v = Verifier::resume(self.sources[st.source].0.keys.clone(), head);
            }
            st.tails.append(&mut st.departing);
            st.removed.clear();
            for t in &mut st.tails {
                let cp = durable
                    .get(&file_key(&st.key, t.dev, t.ino))
                    .and_then(|v| serde_json::from_slice::<Checkpoint>(v).ok());
                t.rewind(cp.as_ref());
            }
            st.dirty = true;
        }
        self.stored = durable;
    }

    /// One rescan: every stream, every file, every new complete line.
    pub fn pass(&mut self, hints: &mut Hints) -> Result<(), PassError> {
        self.backlog = false;
        let mut listings = Vec::new();
        let mut present: HashSet<Vec<u8>> = HashSet::new();
        let mut refused = Vec::new();
        for (i, (src, matcher)) in self.sources.iter().enumerate() {
            let mut found = Vec::new();
            for pattern in &src.paths {
                for sd in watch::expand_dirs(pattern, &mut found) {
                    present.insert(stream_key(&src.name, &sd.path));
                    match watch::list_files(&sd, matcher, &mut found) {
                        Ok(files) => listings.push(StreamListing {
                            source: i,
                            dir: sd.path,
                            handle: sd.dir,
                            files,
                        }),
                        // Not the same as gone: keep its state, try again next pass.
                        Err(e) => {
                            tracing::warn!(dir = %sd.path.display(), error = %e, "cannot list stream directory")
                        }
                    }
                }
            }
            refused.extend(found.into_iter().map(|r| (src.name.clone(), r)));
        }
        self.pending.events += self.refusals.report(
            &refused,
            &self.encoder,
            &self.stats.refused,
            &mut self.pending.records,
        );
        hints.watch(&listings.iter().map(|l| l.dir.clone()).collect::<Vec<_>>());
        for listing in listings {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            self.read_stream(listing)?;
        }
        // Streams whose directory is gone (or renamed away): read what is left through
        // the open files, and keep their state, so that a directory that comes back
        // is not read again from the start.
        let gone: Vec<Vec<u8>> = self
            .streams
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let n = self.streams.get(&key).map_or(0, |s| s.tails.len());
            for idx in 0..n {
                if let Err(e) = self.read_file(&key, idx, false) {
                    self.file_error(&key, idx, e)?;
                }
            }
        }
        // Every file was read to its end. If that took no more than this batch, the
        // reader is at the live edge and says so with it (a sink may wait for more to
        // fill a request); the rest of a backlog goes out at once.
        self.commit(!self.backlog)?;
        // Caught up: what was read is durable before the reader idles.
        self.settle()?;
        let files: usize = self.streams.values().map(|s| s.tails.len()).sum();
        self.stats.files.store(files as u64, Ordering::Relaxed);
        if std::mem::take(&mut self.again) {
            hints.waker().wake();
        }
        Ok(())
    }

    /// Logs a file's read error and carries on with the other files; a queue error
    /// is passed up.
    fn file_error(&mut self, key: &[u8], idx: usize, e: PassError) -> Result<(), PassError> {
        match e {
            PassError::Queue(q) => Err(PassError::Queue(q)),
            PassError::Other(e) => {
                let name = self
                    .streams
                    .get(key)
                    .and_then(|s| s.tails.get(idx))
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                tracing::warn!(file = %name, error = %e, "cannot read file; other files go on, this one is tried again later");
                Ok(())
            }
        }
    }

    fn load_stream(&mut self, source: usize, dir: &std::path::Path) -> Stream {
        let src = &self.sources[source].0;
        let key = stream_key(&src.name, dir);
        let stored = self
            .stored
            .get(&key)
            .and_then(|v| serde_json::from_slice::<StreamCheckpoint>(v).ok());
        let priors = stored
            .as_ref()
            .map(|c| c.priors.iter().cloned().collect())
            .unwrap_or_default();
        let head = stored.and_then(|c| c.head).and_then(head_of);
        let verifier = match src.format {
            SourceFormat::AuditshipV1 => Some(Verifier::resume(src.keys.clone(), head)),
            SourceFormat::Json => None,
        };
        Stream {
            source,
            name: dir.display().to_string(),
            key,
            verifier,
            tails: Vec::new(),
            departing: Vec::new(),
            removed: Vec::new(),
            priors,
            dirty: false,
        }
    }

    fn read_stream(&mut self, listing: StreamListing) -> Result<(), PassError> {
        let key = stream_key(&self.sources[listing.source].0.name, &listing.dir);
        if !self.streams.contains_key(&key) {
            let st = self.load_stream(listing.source, &listing.dir);
            self.streams.insert(key.clone(), st);
        }
        // Files no longer listed (deleted or renamed away): read to their very end
        // first, since they precede whatever replaced them, then let them go once
        // the commit that forgets them is durable.
        let listed: HashSet<(u64, u64)> = listing.files.iter().map(|f| (f.dev, f.ino)).collect();
        loop {
            let st = &self.streams[&key];
            let Some(i) = st
                .tails
                .iter()
                .position(|t| !listed.contains(&(t.dev, t.ino)))
            else {
                break;
            };
            if let Err(e) = self.read_file(&key, i, true) {
                // Keep it tracked: the next pass tries again.
                self.file_error(&key, i, e)?;
                break;
            }
            let st = self.streams.get_mut(&key).expect("inserted above");
            let t = st.tails.remove(i);
            tracing::debug!(file = %t.name, "file left its stream directory; read to its end");
            if !t.still_linked() {
                // Deleted: its checkpoint goes with it.
                st.removed.push(file_key(&key, t.dev, t.ino));
            }
            // What was read of it stays, for a copy of it.
            st.remember(t.prior());
            // Renamed (perhaps caught between the two steps of a rotation): its
            // checkpoint stays, so that if it shows up again it resumes, not restarts.
            st.departing.push(t);
            st.dirty = true;
        }
        // Known files first (a truncation is seen before a new file is matched
        // against what was read), then new ones.
        let known = |st: &Stream, stored: &BTreeMap<Vec<u8>, Vec<u8>>, f: &Listed| {
            st.tails.iter().any(|t| t.dev == f.dev && t.ino == f.ino)
                || stored.contains_key(&file_key(&st.key, f.dev, f.ino))
        };
        let st = &self.streams[&key];
        let (old, new): (Vec<&Listed>, Vec<&Listed>) = listing
            .files
            .iter()
            .partition(|f| known(st, &self.stored, f));
        let mut looked = Vec::new();
        for f in old.into_iter().chain(new) {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            looked.extend(self.follow(&key, &listing, f));
        }
        // In the order of what they hold: copies continuing a truncated original
        // first, then files read further, then new files read in full (the one
        // written last last: `audit.jsonl.1` before `audit.jsonl`), then files read
        // from their start again (a truncated original's new lines come after its
        // copy, even one that holds lines of it never read). Held files wait.
        let mut order = Vec::new();
        for idx in looked {
            let rank = match self.place(&key, idx) {
                Ok(Placed::Copy) => 0,
                Ok(Placed::Read) if self.streams[&key].tails[idx].offset > 0 => 1,
                Ok(Placed::Whole) => 2,
                Ok(Placed::Read) => 3,
                Ok(Placed::Held) => continue,
                Err(e) => {
                    let name = &self.streams[&key].tails[idx].name;
                    tracing::warn!(file = %name, error = %e, "cannot compare file with the others; tried again later");
                    continue;
                }
            };
            let place = match rank {
                2 => chain_place(&self.streams[&key].tails[idx]),
                _ => Default::default(),
            };
            order.push((rank, place, idx));
        }
        order.sort_unstable();
        let order: Vec<usize> = order.into_iter().map(|(_, _, idx)| idx).collect();
        let later = self.starts_to_defer(&key, &order, &listing);
        for idx in order {
            if later.contains(&idx) {
                continue;
            }
            if let Err(e) = self.read_file(&key, idx, false) {
                self.file_error(&key, idx, e)?;
            }
        }
        Ok(())
    }

    /// The files of `order` at offset 0 that are not read from their start in this
    /// pass. Their lines may follow others copied away and truncated (logrotate
    /// `copytruncate`) while nothing of them was read, unseen; the copy, made before,
    /// must be read first. So their first lines are taken, then the directory listed
    /// again: if a file came since the listing, they wait for the next pass (at
    /// once), which reads them in order; otherwise each read must find the first
    /// line taken ([`Tail::expect_start`]). A file whose first line changed since it
    /// was seen waits too (a copy held on it is decided again first). A file read
    /// further needs none of this: a truncation shows under its offset.
    fn starts_to_defer(
        &mut self,
        key: &[u8],
        order: &[usize],
        listing: &StreamListing,
    ) -> Vec<usize> {
        let st = self.streams.get_mut(key).expect("stream exists");
        let (mut later, mut firsts, mut moved) = (Vec::new(), Vec::new(), false);
        for &idx in order {
            let t = &mut st.tails[idx];
            if t.offset > 0 || t.hold.is_some() {
                continue;
            }
            match t.first_line_now() {
                Ok(first) if t.fingerprint.is_some() && t.fingerprint != first => {
                    t.fingerprint = first;
                    later.push(idx);
                    moved = true;
                }
                Ok(first) => firsts.push((idx, first)),
                Err(e) => {
                    tracing::warn!(file = %t.name, error = %e, "cannot read file; other files go on, this one is tried again later");
                    later.push(idx);
                }
            }
        }
        // Without a first line there is nothing to read yet: a read that finds one
        // finds another than expected.
        if firsts.iter().any(|(_, first)| first.is_some()) {
            match listing.outdated(&self.sources[listing.source].1) {
                Ok(false) => {}
                Ok(true) => {
                    self.again = true;
                    later.extend(firsts.iter().map(|(idx, _)| *idx));
                    return later;
                }
                Err(e) => {
                    tracing::warn!(dir = %listing.dir.display(), error = %e, "cannot list stream directory");
                    later.extend(firsts.iter().map(|(idx, _)| *idx));
                    return later;
                }
            }
        }
        self.again |= moved;
        let st = self.streams.get_mut(key).expect("stream exists");
        for (idx, first) in firsts {
            st.tails[idx].expect_start(first);
        }
        later
    }

    /// Decides whether a new file, held until then, is read: in full, as the copy
    /// of a file truncated or gone (after what was read of it), or not yet (it has
    /// no first line, or is a copy of a file still being read and not truncated:
    /// that one is read instead, and the copy continues after what it gave once it
    /// is truncated or gone).
    fn place(&mut self, key: &[u8], idx: usize) -> std::io::Result<Placed> {
        let st = self.streams.get_mut(key).expect("stream exists");
        let Some(hold) = st.tails[idx].hold.clone() else {
            return Ok(Placed::Read);
        };
        if st.tails[idx].refresh_fingerprint()?.is_none() {
            return Ok(Placed::Held);
        }
        // A file started again from 0 and not read since may be what the new one
        // copies (its lines never read): it is compared by its first line now.
        for t in st
            .tails
            .iter_mut()
            .filter(|t| t.hold.is_none() && t.offset == 0)
        {
            t.fingerprint = t.first_line_now()?;
        }
        let checked = match hold {
            Hold::CopyOf { dev, ino, checked } => Some((dev, ino, checked)),
            Hold::Undecided => None,
        };
        if let Some(held) = copy_so_far(st, idx, checked)? {
            st.tails[idx].hold = Some(held);
            return Ok(Placed::Held);
        }
        st.tails[idx].hold = None;
        st.dirty = true;
        if st.continue_copy(idx)? {
            let t = &st.tails[idx];
            tracing::info!(file = %t.name, offset = t.offset, "a new file is a copy of a file already read; continuing after what was read of it");
            return Ok(Placed::Copy);
        }
        Ok(Placed::Whole)
    }

    /// Tracks a listed file, follows a rename, and sees a truncation. Returns its
    /// tail's index, or `None` if it cannot be looked at this pass.
    fn follow(&mut self, key: &[u8], listing: &StreamListing, f: &Listed) -> Option<usize> {
        let idx = match self.track(key, &listing.handle, f) {
            // Found truncated or replaced on resuming: read from 0 from the next
            // pass on, as below.
            Ok((_, true)) => {
                self.again = true;
                return None;
            }
            Ok((i, false)) => i,
            Err(e) => {
                tracing::warn!(file = %listing.dir.join(&f.name).display(), error = %e, "cannot open file; other files go on, this one is tried again later");
                return None;
            }
        };
        // A renamed file keeps its identity and offset, under its new name.
        let st = self.streams.get_mut(key).expect("stream exists");
        if st.tails[idx].name != f.name {
            st.tails[idx].name = f.name.clone();
            st.dirty = true;
        }
        match st.tails[idx].check_truncation() {
            Ok(true) => {
                // Read from 0 from the next pass on: see `rewritten`.
                let previous = st.tails[idx].take_previous();
                self.rewritten(key, idx, previous);
                return None;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(file = %listing.dir.join(&f.name).display(), error = %e, "cannot check file");
                return None;
            }
        }
        Some(idx)
    }

    /// The index of the tail for a listed file, opening and resuming it if new, and
    /// whether it was just found truncated or replaced since its checkpoint. It is
    /// opened relative to the directory it was listed from, and only if it is still
    /// the file the listing saw.
    fn track(
        &mut self,
        key: &[u8],
        dir: &watch::Dir,
        f: &Listed,
    ) -> std::io::Result<(usize, bool)> {
        let st = self.streams.get_mut(key).expect("stream exists");
        if let Some(i) = st
            .tails
            .iter()
            .position(|t| t.dev == f.dev && t.ino == f.ino)
        {
            return Ok((i, false));
        }
        let file = dir.open_file(f.entry(), Some((f.dev, f.ino)))?;
        let fkey = file_key(key, f.dev, f.ino);
        let stored = self
            .stored
            .remove(&fkey)
            .and_then(|v| serde_json::from_slice::<Checkpoint>(&v).ok());
        let (tail, how) = match &stored {
            Some(cp) => Tail::resume(file, &f.name, cp)?,
            None => {
                // A file never seen before may be the copy of one already read:
                // nothing of it is read until that is decided (`place`).
                let mut t = Tail::new(file, &f.name)?;
                t.hold = Some(Hold::Undecided);
                (t, Resume::Continue)
            }
        };
        let st = self.streams.get_mut(key).expect("stream exists");
        st.tails.push(tail);
        st.dirty = true;
        let idx = st.tails.len() - 1;
        if how != Resume::Continue
            && let Some(cp) = &stored
            && let (Some(fingerprint), Some(last)) = (&cp.fingerprint, &cp.last)
        {
            // What was read of it before it was truncated or replaced.
            st.remember(Some(Prior {
                fingerprint: fingerprint.clone(),
                marks: vec![last.clone()],
            }));
        }
        match how {
            Resume::Continue => {}
            Resume::Truncated => {
                self.file_problem(
                    key,
                    &f.name,
                    "file_truncated",
                    "file is shorter than its checkpoint: read again from the start",
                );
            }
            Resume::Replaced => {
                tracing::info!(file = %f.name, "a new file reuses an old inode; reading it from the start");
            }
        }
        Ok((idx, how != Resume::Continue))
    }

    fn file_problem(&mut self, key: &[u8], file: &str, code: &'static str, detail: &str) {
        let st = &self.streams[key];
        let received_at = crate::clock::utc_now().0;
        let at = Origin {
            source: &self.sources[st.source].0.name,
            stream: &st.name,
            file,
            line: 0,
            offset: 0,
            received_at: &received_at,
        };
        self.encoder
            .encode_file_problem(code, detail, &at, &mut self.pending.records);
        self.pending.events += 1;
        self.stats.problems.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.stats.by_code.lock() {
            *m.entry(code).or_insert(0) += 1;
        }
        tracing::warn!(stream = %st.name, file, code, "file problem");
    }

    /// Reads every new complete line of one file, committing whenever a batch fills,
    /// until its end. When stopping, returns early unless `drain` (a file that left
    /// its directory must be read to its end before it is let go).
    fn read_file(&mut self, key: &[u8], idx: usize, drain: bool) -> Result<(), PassError> {
        if self.streams[key].tails[idx].hold.is_some() {
            // Nothing of a held file is read: its lines are another file's.
            return Ok(());
        }
        loop {
            if self.stop.load(Ordering::SeqCst) && !drain {
                // What is pending is committed at the end of the pass; the rest stays
                // in the file for the next start.
                return Ok(());
            }
            self.wait_for_room()?;
            let room_bytes = self
                .limits
                .batch_bytes
                .saturating_sub(self.pending.records.len()) as u64;
            let room_events = self.limits.batch_events.saturating_sub(self.pending.events);
            if room_bytes == 0 || room_events == 0 {
                self.commit(false)?;
                continue;
            }
            let received_at = crate::clock::utc_now().0;
            let Reader {
                streams,
                sources,
                encoder,
                pending,
                stats,
                buf,
                ..
            } = self;
            let st = streams.get_mut(key).expect("stream exists");
            let source = &sources[st.source].0;
            let (verifier, tails) = (&mut st.verifier, &mut st.tails);
            let tail = &mut tails[idx];
            let file_name = tail.name.clone();
            let mut events = 0u32;
            let (max_bytes, max_events) = (self.limits.batch_bytes, room_events);
            let scan = verifier.is_some();
            let (consumed, at_end) = tail
                .read_lines(buf, source.max_line_bytes, scan, |line| {
                    let at = Origin {
                        source: &source.name,
                        stream: &st.name,
                        file: &file_name,
                        line: line.number,
                        offset: line.offset,
                        received_at: &received_at,
                    };
                    let truncated = line.truncated.as_ref().map(|t| Truncated {
                        full_bytes: t.full_bytes,
                        sha256_hex: &t.sha256_hex,
                        whole: t.whole,
                        scanned: t.scanned.as_ref(),
                    });
                    let s = encoder.encode_line(
                        verifier.as_mut(),
                        line.bytes,
                        truncated,
                        &at,
                        &mut pending.records,
                    );
                    if !s.blank {
                        events += 1;
                    }
                    if !s.problems.is_empty() {
                        stats
                            .problems
                            .fetch_add(s.problems.len() as u64, Ordering::Relaxed);
                        if let Ok(mut m) = stats.by_code.lock() {
                            for code in &s.problems {
                                *m.entry(code).or_insert(0) += 1;
                            }
                        }
                    }
                    if s.redacted {
                        stats.redacted.fetch_add(1, Ordering::Relaxed);
                    }
                    // Stop at the line that fills the batch: batches keep their limits.
                    events < max_events && pending.records.len() < max_bytes
                })
                .map_err(|e| PassError::Other(Box::new(e)))?;
            let previous = tail.take_rewritten().then(|| tail.take_previous());
            let moved = tail.take_start_moved();
            if consumed > 0 || previous.is_some() {
                st.dirty = true;
            }
            pending.events += events;
            stats.lines.fetch_add(u64::from(events), Ordering::Relaxed);
            if events > 0
                && let Ok(mut m) = stats.by_source.lock()
            {
                match m.get_mut(source.name.as_str()) {
                    Some(n) => *n += u64::from(events),
                    None => {
                        m.insert(source.name.clone(), u64::from(events));
                    }
                }
            }
            if let Some(previous) = previous {
                self.rewritten(key, idx, previous);
                return Ok(());
            }
            if moved {
                // Read nothing: the next pass lists what came meanwhile.
                self.again = true;
                return Ok(());
            }
            let full = pending.events >= self.limits.batch_events
                || pending.records.len() >= self.limits.batch_bytes;
            if full {
                self.commit(false)?;
            }
            if at_end {
                return Ok(());
            }
        }
    }

    /// A file found truncated and written again while it was read: it starts again
    /// from 0, but not in this pass. A copy made before the truncation (logrotate
    /// `copytruncate`) holds what came before its new lines and may be missing
    /// from this pass's listing; the next pass, at once, lists it.
    fn rewritten(&mut self, key: &[u8], idx: usize, previous: Option<Prior>) {
        let st = self.streams.get_mut(key).expect("stream exists");
        st.dirty = true;
        st.remember(previous);
        let name = st.tails[idx].name.clone();
        self.file_problem(key, &name, "file_truncated", "file was truncated or rewritten under the offset already read: read again from the start");
        self.again = true;
    }

    /// Blocks while the queue is at its limit (sinks are behind).
    fn wait_for_room(&mut self) -> Result<(), PassError> {
        if !self.queue.is_full() {
            return Ok(());
        }
        // Paused with more to read: not the live edge, sinks should not wait.
        self.commit(false)?;
        self.stats.paused.store(true, Ordering::SeqCst);
        let pauses = self.stats.pauses.fetch_add(1, Ordering::Relaxed) + 1;
        let due = self
            .pause_logged
            .is_none_or(|(at, _)| at.elapsed() >= PAUSE_LOG_EVERY);
        if due {
            let since = pauses - self.pause_logged.map_or(0, |(_, n)| n);
            tracing::warn!(
                queue_bytes = self.queue.bytes(),
                pauses_since_last_report = since,
                "queue full: reading pauses until sinks catch up (the source files hold the rest)"
            );
            self.pause_logged = Some((Instant::now(), pauses));
        }
        while !self.queue.wait_for_room(Duration::from_millis(100))
            && !self.stop.load(Ordering::SeqCst)
        {
            self.stats
                .alive_ms
                .store(crate::clock::now_ms(), Ordering::Relaxed);
        }
        self.stats.paused.store(false, Ordering::SeqCst);
        tracing::debug!("queue has room again: reading resumed");
        Ok(())
    }

    /// Commits the pending records with the checkpoints of every changed stream.
    /// `caught_up`: the batch holds all the reader found since it was last caught
    /// up, every file read to its end, rather than being full or stored before a
    /// pause with more to read; sinks learn it with the batch id ([`Tip`]).
    fn commit(&mut self, caught_up: bool) -> Result<(), PassError> {
        if !caught_up && self.pending.events > 0 {
            self.backlog = true;
        }
        // The batch buffer is reused from commit to commit: allocated once at full
        // size, it never regrows or churns the allocator on the hot path.
        let batch = &mut self.pending;
        for st in self.streams.values_mut().filter(|s| s.dirty) {
            let head = st
                .verifier
                .as_ref()
                .and_then(Verifier::head)
                .map(|h| (h.seq, h.hash_str().to_owned()));
            let encode = |e: serde_json::Error| PassError::Other(Box::new(e));
            batch.put.push((
                st.key.clone(),
                serde_json::to_vec(&StreamCheckpoint {
                    v: 1,
                    head,
                    priors: st
                        .priors
                        .iter()
                        .map(|p| Prior {
                            fingerprint: p.fingerprint.clone(),
                            marks: p.marks.last().cloned().into_iter().collect(),
                        })
                        .collect(),
                })
                .map_err(encode)?,
            ));
            // A held file has no checkpoint: after a restart it is decided again.
            for t in st.tails.iter().filter(|t| t.hold.is_none()) {
                batch.put.push((
                    file_key(&st.key, t.dev, t.ino),
                    serde_json::to_vec(&t.checkpoint()).map_err(encode)?,
                ));
            }
            // Departed files: a deleted one's checkpoint is removed, a renamed one's
            // is kept at its end.
            for t in &st.departing {
                let k = file_key(&st.key, t.dev, t.ino);
                if !st.removed.contains(&k) {
                    batch
                        .put
                        .push((k, serde_json::to_vec(&t.checkpoint()).map_err(encode)?));
                }
            }
            batch.remove.append(&mut st.removed);
        }
        if batch.events == 0 && batch.put.is_empty() && batch.remove.is_empty() {
            return Ok(());
        }
        // One batch in flight at a time: the previous one is durable before this one
        // goes (batch ids and checkpoints advance in order).
        self.settle()?;
        self.stats
            .alive_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
        let mut departed = Vec::new();
        for st in self.streams.values_mut() {
            st.dirty = false;
            if !st.departing.is_empty() {
                departed.push((st.key.clone(), std::mem::take(&mut st.departing)));
            }
        }
        let next = self.committer.spare();
        let batch = std::mem::replace(&mut self.pending, next);
        self.committer.send(batch, caught_up);
        self.in_flight = Some(departed);
        Ok(())
    }

    /// Waits until the batch in flight, if any, is stored. Then the files that left
    /// before it close (a renamed one's checkpoint is kept for when it shows up
    /// again). If storing failed, they go back to their streams and the error is
    /// returned.
    fn settle(&mut self) -> Result<(), PassError> {
        let Some(departed) = self.in_flight.take() else {
            return Ok(());
        };
        match self.committer.result() {
            Ok(id) => {
                if id > 0 {
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                }
                for (key, tails) in departed {
                    for t in tails {
                        if t.still_linked()
                            && let Ok(v) = serde_json::to_vec(&t.checkpoint())
                        {
                            self.stored.insert(file_key(&key, t.dev, t.ino), v);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                for (key, mut tails) in departed {
                    if let Some(st) = self.streams.get_mut(&key) {
                        st.departing.append(&mut tails);
                    }
                }
                Err(PassError::Queue(e))
            }
        }
    }
}

/// The thread that stores batches ([`Queue::commit`]: a transaction and an fsync) while
/// the reader reads on. It tells the sinks about each stored batch (its id, and
/// whether the reader was caught up), and hands the buffer back for reuse, so two
/// batch buffers serve the whole run.
struct Committer {
    to: Option<std::sync::mpsc::SyncSender<(NewBatch, bool)>>,
    from: std::sync::mpsc::Receiver<(Result<u64, QueueError>, NewBatch)>,
    spare: Option<NewBatch>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    fn start(
        queue: Arc<Queue>,
        committed: Box<dyn Fn(Tip) + Send>,
        batch_bytes: usize,
    ) -> Result<Committer, QueueError> {
        let (to, rx) = std::sync::mpsc::sync_channel::<(NewBatch, bool)>(1);
        let (tx, from) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("auditship-commit".into())
            .spawn(move || {
                for (batch, caught_up) in rx {
                    let r = queue.commit(&batch);
                    if let Ok(id @ 1..) = r {
                        committed(Tip { id, caught_up });
                    }
                    if tx.send((r, batch)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| QueueError::Corrupt(format!("cannot start the commit thread: {e}")))?;
        Ok(Committer {
            to: Some(to),
            from,
            spare: Some(NewBatch {
                records: Vec::with_capacity(batch_bytes + BATCH_SLACK),
                ..NewBatch::default()
            }),
            thread: Some(thread),
        })
    }

    /// An empty batch buffer (the one handed back by the last commit).
    fn spare(&mut self) -> NewBatch {
        self.spare.take().unwrap_or_default()
    }

    fn send(&mut self, batch: NewBatch, caught_up: bool) {
        if let Some(to) = &self.to {
            // The thread only ends when this side closes the channel.
            let _ = to.send((batch, caught_up));
        }
    }

    /// The outcome of the batch sent last (call once per `send`).
    fn result(&mut self) -> Result<u64, QueueError> {
        let (r, mut batch) = self
            .from
            .recv()
            .map_err(|_| QueueError::Corrupt("the commit thread is gone".into()))?;
        batch.records.clear();
        batch.events = 0;
        batch.put.clear();
        batch.remove.clear();
        self.spare = Some(batch);
        r
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.to = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Keys;
    use crate::config::daemon::SourceConfig;
    use std::io::Write;

    fn event(seq: u64, prev: &str) -> crate::audit::Sealed {
        let e = format!(
            r#"{{"v":1,"id":"i{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42Z","user_id":"u","session_id":"s","host":"h","action":"file_read","resource":"/r{seq}","outcome":"success","prev_hash":"{prev}"}}"#
        );
        crate::audit::seal(&e, None).unwrap()
    }

    #[test]
    fn new_files_are_placed_by_the_seq_of_their_first_event() {
        assert_eq!(first_seq(br#"{"v":1,"seq":42,"x":{"seq":1}}"#), Some(42));
        assert_eq!(first_seq(br#"{"x":{"seq":1}}"#), None);
        assert_eq!(first_seq(br#"{"seq":-1}"#), None);
        assert_eq!(first_seq(br#"{"seq":"3"}"#), None);
        assert_eq!(first_seq(b"not json"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"seq\":7}\n{\"seq\":8}\n").unwrap();
        let t = Tail::new(std::fs::File::open(&path).unwrap(), "a.jsonl").unwrap();
        assert_eq!(chain_place(&t).0, 7);
        std::fs::write(&path, "{\"seq\":7}").unwrap();
        assert_eq!(chain_place(&t).0, u64::MAX, "no complete first line yet");
    }

    fn reader(dir: &std::path::Path, queue: Arc<Queue>) -> Reader {
        let source = SourceConfig {
            name: "t".into(),
            paths: vec![dir.display().to_string()],
            files: "*.jsonl".into(),
            format: SourceFormat::AuditshipV1,
            keys: Keys::new(),
            max_line_bytes: 1 << 20,
        };
        let limits = Limits {
            batch_events: 2000,
            batch_bytes: 1 << 20,
            rescan: Duration::from_secs(3600),
        };
        let encoder = Encoder::new(
            "h",
            &serde_json::Map::new(),
            crate::redact::Redactor::builtin(),
        );
        Reader::new(
            vec![source],
            queue,
            encoder,
            limits,
            Box::new(|_| {}),
            Arc::default(),
        )
        .unwrap()
    }

    /// A stream directory, a queue and a reader over it.
    fn setup() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Arc<Queue>,
        Reader,
        Hints,
    ) {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("audit");
        std::fs::create_dir(&dir).unwrap();
        let queue = Arc::new(Queue::open(&t.path().join("q"), 1 << 20, &["s".into()]).unwrap());
        let r = reader(&dir, queue.clone());
        (t, dir, queue, r, Hints::new())
    }

    fn shipped(queue: &Queue) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut after = 0;
        while let Some(b) = queue.next_after(after).unwrap() {
            after = b.id;
            out.extend(
                b.records
                    .split(|&c| c == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_slice(l).unwrap()),
            );
        }
        out
    }

    #[test]
    fn a_file_renamed_away_is_read_to_its_end_even_past_many_blank_lines() {
        let (_t, dir, queue, mut r, mut hints) = setup();
        let e0 = event(0, crate::audit::ZERO_HASH);
        let e1 = event(1, &e0.hash);
        let file = dir.join("a.jsonl");
        std::fs::write(&file, &e0.line).unwrap();
        r.pass(&mut hints).unwrap();
        // 2 MiB of blank lines (more than one batch's read budget), then an event,
        // then the file leaves the glob.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(&vec![b'\n'; 2 << 20]).unwrap();
        f.write_all(&e1.line).unwrap();
        drop(f);
        std::fs::rename(&file, dir.join("a.jsonl.1")).unwrap();
        r.pass(&mut hints).unwrap();
        let recs = shipped(&queue);
        let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [0, 1]);
        assert!(
            recs.iter()
                .all(|r| r["_auditship"]["integrity"]["ok"] == true)
        );
        // Renamed, not deleted: its checkpoint stays, at its end, for if it comes back.
        let size = std::fs::metadata(dir.join("a.jsonl.1")).unwrap().len();
        let cps: Vec<Checkpoint> = queue
            .checkpoints()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.first() == Some(&b'f'))
            .map(|(_, v)| serde_json::from_slice(v).unwrap())
            .collect();
        assert_eq!(cps.len(), 1);
        assert_eq!(cps[0].offset, size);
    }

    #[test]
    fn a_directory_away_and_back_is_not_read_again() {
        let (t, dir, queue, mut r, mut hints) = setup();
        let e0 = event(0, crate::audit::ZERO_HASH);
        std::fs::write(dir.join("a.jsonl"), &e0.line).unwrap();
        r.pass(&mut hints).unwrap();
        std::fs::rename(&dir, t.path().join("away")).unwrap();
        r.pass(&mut hints).unwrap();
        std::fs::rename(t.path().join("away"), &dir).unwrap();
        let e1 = event(1, &e0.hash);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("a.jsonl"))
            .unwrap()
            .write_all(&e1.line)
            .unwrap();
        r.pass(&mut hints).unwrap();
        // A restart in between must not re-read it either.
        drop(r);
        let mut r = reader(&dir, queue.clone());
        r.pass(&mut hints).unwrap();
        let recs = shipped(&queue);
        let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [0, 1]);
        assert!(
            recs.iter()
                .all(|r| r["_auditship"]["integrity"]["ok"] == true),
            "no invented chain problem"
        );
    }

    /// Lists the stream directory `dir` as a pass does.
    fn listing(dir: &std::path::Path) -> StreamListing {
        let mut refused = Vec::new();
        let sd = watch::expand_dirs(&dir.display().to_string(), &mut refused)
            .pop()
            .unwrap();
        let m = globset::Glob::new("*.jsonl").unwrap().compile_matcher();
        let files = watch::list_files(&sd, &m, &mut refused).unwrap();
        StreamListing {
            source: 0,
            dir: sd.path,
            handle: sd.dir,
            files,
        }
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_the_listing_is_never_read() {
        let (t, dir, queue, mut r, _hints) = setup();
        let e0 = event(0, crate::audit::ZERO_HASH);
        std::fs::write(dir.join("a.jsonl"), &e0.line).unwrap();
        let secret = t.path().join("secret.jsonl");
        std::fs::write(&secret, "{\"SECRET\":1}\n").unwrap();
        let listed = listing(&dir);
        assert_eq!(listed.files.len(), 1);
        // Between the listing and the open, the name becomes a link to the secret.
        std::fs::remove_file(dir.join("a.jsonl")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("a.jsonl")).unwrap();
        r.read_stream(listed).unwrap();
        r.commit(true).unwrap();
        r.settle().unwrap();
        let shipped = shipped(&queue);
        assert!(shipped.is_empty(), "{shipped:?}");
        assert!(r.streams.values().all(|s| s.tails.is_empty()));
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_listing_is_read_as_listed() {
        let (t, dir, queue, mut r, _hints) = setup();
        let e0 = event(0, crate::audit::ZERO_HASH);
        std::fs::write(dir.join("a.jsonl"), &e0.line).unwrap();
        let listed = listing(&dir);
        // The stream directory's path now leads to a directory holding a secret
        // under the same file name: the descriptor still holds the one listed.
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("a.jsonl"), "{\"SECRET\":1}\n").unwrap();
        std::fs::rename(&dir, t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        r.read_stream(listed).unwrap();
        r.commit(true).unwrap();
        r.settle().unwrap();
        let recs = shipped(&queue);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["seq"], 0);
        assert!(!recs[0].to_string().contains("SECRET"));
    }

    #[test]
    fn a_failed_commit_rewinds_without_losing_a_deleted_file() {
        let (_t, dir, queue, mut r, mut hints) = setup();
        let e0 = event(0, crate::audit::ZERO_HASH);
        let e1 = event(1, &e0.hash);
        let file = dir.join("a.jsonl");
        std::fs::write(&file, &e0.line).unwrap();
        r.pass(&mut hints).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap()
            .write_all(&e1.line)
            .unwrap();
        std::fs::remove_file(&file).unwrap();
        // As if the commit of what was just read had failed: progress is thrown away.
        r.streams.values_mut().for_each(|s| s.dirty = true);
        let n = r.streams.values().map(|s| s.tails.len()).sum::<usize>();
        assert_eq!(n, 1);
        let key = r.streams.keys().next().unwrap().clone();
        r.read_file(&key, 0, true).unwrap();
        r.reset();
        r.pass(&mut hints).unwrap();
        let seqs: Vec<u64> = shipped(&queue)
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            [0, 1],
            "the deleted file's last line survived the reset"
        );
    }
}
