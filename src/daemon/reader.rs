//! The reading side of the daemon, on one dedicated thread: rescan (watch), read new
//! complete lines (tail), turn each into a shipped record (check), and commit batches
//! together with the checkpoints they advance (queue).
//!
//! Invariants: in-memory offsets and chain heads run ahead of the queue only until
//! the next commit; if a commit fails, that state is thrown away and rebuilt from the
//! last durable checkpoints, so nothing read is ever skipped. When the queue is full
//! the reader stops reading (the files are the buffer) until sinks catch up.

use crate::audit::{Head, Verifier};
use crate::check::{Encoder, Origin, Truncated};
use crate::config::daemon::{SourceConfig, SourceFormat};
use crate::queue::{NewBatch, Queue};
use crate::tail::{self, Checkpoint, Resume, Tail};
use crate::watch::{self, Hints, Listed, StreamListing};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
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

/// Counters shared with the rest of the daemon.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub lines: AtomicU64,
    pub problems: AtomicU64,
    pub redacted: AtomicU64,
    pub batches: AtomicU64,
    pub files: AtomicU64,
    pub paused: AtomicBool,
}

/// The stream checkpoint (boundary format, versioned).
#[derive(Debug, Serialize, Deserialize)]
struct StreamCheckpoint {
    v: u32,
    head: Option<(u64, String)>,
}

struct Stream {
    source: usize,
    dir: PathBuf,
    name: String,
    key: Vec<u8>,
    verifier: Option<Verifier>,
    tails: Vec<Tail>,
    /// Checkpoint keys of files dropped since the last commit.
    removed: Vec<Vec<u8>>,
    dirty: bool,
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
    committed: Box<dyn Fn(u64) + Send>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<ReaderStats>,
    buf: Vec<u8>,
}

fn stream_key(source: &str, dir: &std::path::Path) -> Vec<u8> {
    let mut k = b"s\0".to_vec();
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    k
}

fn file_key(stream_key: &[u8], dev: u64, ino: u64) -> Vec<u8> {
    let mut k = b"f".to_vec();
    k.extend_from_slice(&stream_key[1..]);
    k.push(0);
    k.extend_from_slice(format!("{dev}:{ino}").as_bytes());
    k
}

impl Reader {
    pub fn new(
        sources: Vec<SourceConfig>,
        queue: Arc<Queue>,
        encoder: Encoder,
        limits: Limits,
        committed: Box<dyn Fn(u64) + Send>,
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
            queue,
            encoder,
            limits,
            streams: HashMap::new(),
            stored,
            pending: NewBatch {
                records: Vec::with_capacity(limits.batch_bytes + 64 * 1024),
                ..NewBatch::default()
            },
            committed,
            stop,
            stats: Arc::default(),
            buf: Vec::new(),
        })
    }

    /// Runs until the stop flag is set, then commits what it has read.
    pub fn run(mut self, hints: &mut Hints) {
        let mut failures = 0u32;
        loop {
            match self.pass(hints) {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %e, failures, "reading or committing failed; restarting from the last durable checkpoints");
                    self.reset();
                    let pause = Duration::from_millis(200u64 << failures.min(6));
                    self.sleep(pause);
                }
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            hints.wait(self.limits.rescan);
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    /// Drops all in-memory progress and reloads the durable checkpoints.
    fn reset(&mut self) {
        self.streams.clear();
        self.pending.records.clear();
        self.pending.events = 0;
        self.pending.put.clear();
        self.pending.remove.clear();
        match self.queue.checkpoints() {
            Ok(c) => self.stored = c,
            Err(e) => tracing::error!(error = %e, "cannot reload checkpoints"),
        }
    }

    /// One rescan: every stream, every file, every new complete line.
    pub fn pass(&mut self, hints: &mut Hints) -> Result<(), Box<dyn std::error::Error>> {
        let mut listings = Vec::new();
        for (i, (src, matcher)) in self.sources.iter().enumerate() {
            for pattern in &src.paths {
                for dir in watch::expand_dirs(pattern) {
                    match watch::list_files(&dir, matcher) {
                        Ok(files) => listings.push(StreamListing {
                            source: i,
                            dir,
                            files,
                        }),
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot list stream directory")
                        }
                    }
                }
            }
        }
        hints.watch(&listings.iter().map(|l| l.dir.clone()).collect::<Vec<_>>());
        let seen: HashSet<Vec<u8>> = listings
            .iter()
            .map(|l| stream_key(&self.sources[l.source].0.name, &l.dir))
            .collect();
        for listing in listings {
            self.read_stream(listing)?;
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        // Streams whose directory vanished: read what is left through open files.
        let gone: Vec<Vec<u8>> = self
            .streams
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(st) = self.streams.get(&key) {
                let listing = StreamListing {
                    source: st.source,
                    dir: st.dir.clone(),
                    files: Vec::new(),
                };
                self.read_stream(listing)?;
            }
        }
        self.commit()?;
        let files: usize = self.streams.values().map(|s| s.tails.len()).sum();
        self.stats.files.store(files as u64, Ordering::Relaxed);
        Ok(())
    }

    fn load_stream(&mut self, source: usize, dir: &std::path::Path) -> Stream {
        let src = &self.sources[source].0;
        let key = stream_key(&src.name, dir);
        let head = self
            .stored
            .get(&key)
            .and_then(|v| serde_json::from_slice::<StreamCheckpoint>(v).ok())
            .and_then(|c| c.head)
            .and_then(|(seq, hash)| {
                let mut h = [0u8; 64];
                (hash.len() == 64).then(|| {
                    h.copy_from_slice(hash.as_bytes());
                    Head { seq, hash: h }
                })
            });
        let verifier = match src.format {
            SourceFormat::AuditshipV1 => Some(Verifier::resume(src.keys.clone(), head)),
            SourceFormat::Json => None,
        };
        Stream {
            source,
            dir: dir.to_path_buf(),
            name: dir.display().to_string(),
            key,
            verifier,
            tails: Vec::new(),
            removed: Vec::new(),
            dirty: false,
        }
    }

    fn read_stream(&mut self, listing: StreamListing) -> Result<(), Box<dyn std::error::Error>> {
        let key = stream_key(&self.sources[listing.source].0.name, &listing.dir);
        if !self.streams.contains_key(&key) {
            let st = self.load_stream(listing.source, &listing.dir);
            self.streams.insert(key.clone(), st);
        }
        // Files no longer listed (deleted or renamed away): read to their end first,
        // since they precede whatever replaced them, then let them go.
        let listed: HashSet<(u64, u64)> = listing.files.iter().map(|f| (f.dev, f.ino)).collect();
        let departed: Vec<usize> = {
            let st = &self.streams[&key];
            (0..st.tails.len())
                .filter(|&i| !listed.contains(&(st.tails[i].dev, st.tails[i].ino)))
                .collect()
        };
        for &i in departed.iter().rev() {
            self.read_file(&key, i)?;
            let st = self.streams.get_mut(&key).expect("inserted above");
            let t = st.tails.remove(i);
            tracing::debug!(file = %t.name, "file left its stream directory; closed");
            st.removed.push(file_key(&key, t.dev, t.ino));
            st.dirty = true;
        }
        for f in &listing.files {
            let idx = self.track(&key, f)?;
            // A renamed file keeps its identity and offset, under its new name.
            let st = self.streams.get_mut(&key).expect("inserted above");
            if st.tails[idx].name != f.name {
                st.tails[idx].name = f.name.clone();
                st.dirty = true;
            }
            if st.tails[idx].check_truncation()? {
                let name = st.tails[idx].name.clone();
                self.file_problem(
                    &key,
                    &name,
                    "file_truncated",
                    "file is shorter than the offset already read: read again from the start",
                );
            }
            self.read_file(&key, idx)?;
        }
        if listing.files.is_empty()
            && self
                .streams
                .get(&key)
                .is_some_and(|s| s.tails.is_empty() && !s.dirty)
        {
            // Nothing tracked, nothing to say: keep no state for an empty directory.
        }
        Ok(())
    }

    /// The index of the tail for a listed file, opening and resuming it if new.
    fn track(&mut self, key: &[u8], f: &Listed) -> Result<usize, Box<dyn std::error::Error>> {
        let st = self.streams.get_mut(key).expect("stream exists");
        if let Some(i) = st
            .tails
            .iter()
            .position(|t| t.dev == f.dev && t.ino == f.ino)
        {
            return Ok(i);
        }
        let file = tail::open_nofollow(&f.path)?;
        let fkey = file_key(key, f.dev, f.ino);
        let (tail, how) = match self
            .stored
            .remove(&fkey)
            .and_then(|v| serde_json::from_slice::<Checkpoint>(&v).ok())
        {
            Some(cp) => Tail::resume(file, &f.name, &cp)?,
            None => (Tail::new(file, &f.name)?, Resume::Continue),
        };
        let st = self.streams.get_mut(key).expect("stream exists");
        st.tails.push(tail);
        st.dirty = true;
        let idx = st.tails.len() - 1;
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
        Ok(idx)
    }

    fn file_problem(&mut self, key: &[u8], file: &str, code: &'static str, detail: &str) {
        let st = &self.streams[key];
        let received_at = crate::record::utc_now().0;
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
        tracing::warn!(stream = %st.name, file, code, "file problem");
    }

    /// Reads every new complete line of one file, committing whenever a batch fills.
    fn read_file(&mut self, key: &[u8], idx: usize) -> Result<(), Box<dyn std::error::Error>> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                // Stopping: what is pending is committed at the end of the pass; the
                // rest stays in the file for the next start.
                return Ok(());
            }
            self.wait_for_room()?;
            let room_bytes = self
                .limits
                .batch_bytes
                .saturating_sub(self.pending.records.len()) as u64;
            let room_events = self.limits.batch_events.saturating_sub(self.pending.events);
            if room_bytes == 0 || room_events == 0 {
                self.commit()?;
                continue;
            }
            let received_at = crate::record::utc_now().0;
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
            let consumed =
                tail.read_lines(buf, source.max_line_bytes, room_bytes.max(1), |line| {
                    let at = Origin {
                        source: &source.name,
                        stream: &st.name,
                        file: &file_name,
                        line: line.number,
                        offset: line.offset,
                        received_at: &received_at,
                    };
                    let truncated = line.truncated.as_ref().map(|(n, h)| Truncated {
                        full_bytes: *n,
                        sha256_hex: h,
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
                    }
                    if s.redacted {
                        stats.redacted.fetch_add(1, Ordering::Relaxed);
                    }
                })?;
            if consumed > 0 {
                st.dirty = true;
            }
            pending.events += events;
            stats.lines.fetch_add(u64::from(events), Ordering::Relaxed);
            let full = pending.events >= self.limits.batch_events
                || pending.records.len() >= self.limits.batch_bytes;
            if full {
                self.commit()?;
                continue;
            }
            return Ok(());
        }
    }

    /// Blocks while the queue is at its limit (sinks are behind).
    fn wait_for_room(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        if !self.queue.is_full() {
            return Ok(());
        }
        self.commit()?;
        if !self.stats.paused.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                queue_bytes = self.queue.bytes(),
                "queue full: reading paused until sinks catch up"
            );
        }
        while !self.queue.wait_for_room(Duration::from_millis(100))
            && !self.stop.load(Ordering::SeqCst)
        {}
        if self.stats.paused.swap(false, Ordering::SeqCst) {
            tracing::info!("queue has room again: reading resumed");
        }
        Ok(())
    }

    /// Commits the pending records with the checkpoints of every changed stream.
    fn commit(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        // The batch buffer is reused from commit to commit: allocated once at full
        // size, it never regrows or churns the allocator on the hot path.
        let batch = &mut self.pending;
        for st in self.streams.values_mut().filter(|s| s.dirty) {
            let head = st
                .verifier
                .as_ref()
                .and_then(Verifier::head)
                .map(|h| (h.seq, h.hash_str().to_owned()));
            batch.put.push((
                st.key.clone(),
                serde_json::to_vec(&StreamCheckpoint { v: 1, head })?,
            ));
            for t in &st.tails {
                batch.put.push((
                    file_key(&st.key, t.dev, t.ino),
                    serde_json::to_vec(&t.checkpoint())?,
                ));
            }
            batch.remove.append(&mut st.removed);
        }
        if batch.events == 0 && batch.put.is_empty() && batch.remove.is_empty() {
            return Ok(());
        }
        let id = self.queue.commit(batch)?;
        batch.records.clear();
        batch.events = 0;
        batch.put.clear();
        batch.remove.clear();
        for st in self.streams.values_mut() {
            st.dirty = false;
        }
        if id > 0 {
            self.stats.batches.fetch_add(1, Ordering::Relaxed);
            (self.committed)(id);
        }
        Ok(())
    }
}
