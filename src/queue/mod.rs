//! Durability: the on-disk queue of shipped-record batches, the reader's checkpoints,
//! each sink's cursor and the dead-letter store. **The only module that names sled.**
//!
//! Layout: a batch's record bytes are appended to a segment file (`segments/*.seg`,
//! about 16 MiB each, 0600) and made durable with fdatasync; then one sled
//! transaction stores the batch's header (events, length, segment, offset, CRC-32)
//! together with the checkpoints it advances. sled so sees batches, never single
//! events, and keeps small values only: record bytes are neither copied through its
//! log nor held in its cache (they are read back from the page cache when shipped).
//!
//! Invariants:
//! - The sled transaction is the commit point. A batch exists once its header is
//!   stored; its bytes were durable before that, so a header never points at missing
//!   data. Bytes written by a commit that did not complete are never referenced and
//!   go with their segment.
//! - An offset is never durable without the events read up to it: the header and the
//!   checkpoints are one transaction, and `flush` makes it durable before `commit`
//!   returns.
//! - Every read is checked against the header's length and CRC-32: damage is an
//!   error, never silently shipped.
//! - A sink's cursor moves only through [`Queue::ack`] (after the sink acknowledged)
//!   or [`Queue::dead_letter`] (after the batch was stored as a dead letter). A batch
//!   is deleted once every configured sink's cursor has passed it; a segment file is
//!   deleted once no stored batch is in it.
//! - Dead letters (rare) stay in sled, split into values under 64 KiB, because sled
//!   0.34 never reclaims larger values ([`dead`]).
//!
//! Checkpoint values are opaque bytes here (their format belongs to `tail`); their
//! keys are laid out by [`keys`].
//! Calls block (sled and fsync): callers run them off the async workers.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

mod dead;
pub mod keys;

pub use dead::{DeadLetter, DeadLetterStore};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Largest value written to sled (dead letters are split into such chunks).
pub const CHUNK_BYTES: usize = 60 * 1024;

/// A new segment file starts once the current one holds this much.
pub const SEGMENT_BYTES: u64 = 16 << 20;

const META_VERSION: u8 = 2;

/// What a buffer that batches are read into grows by.
const BUFFER_STEP: usize = 128 << 10;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("queue segment {0}: {1}")]
    Segment(PathBuf, std::io::Error),
    #[error("queue record {0} is corrupt")]
    Corrupt(String),
}

impl QueueError {
    /// True when another process holds the queue's lock.
    pub fn is_locked(&self) -> bool {
        // sled reports a held lock as an I/O error of kind `Other`, in words.
        matches!(self, QueueError::Sled(sled::Error::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().contains("could not acquire lock"))
    }
}

/// What the reader hands over in one commit.
#[derive(Debug, Default)]
pub struct NewBatch {
    /// Shipped records, one JSON object per line, each ending in `\n`.
    pub records: Vec<u8>,
    pub events: u32,
    /// Checkpoints to write (key, value) and to remove, in the same transaction.
    pub put: Vec<(Vec<u8>, Vec<u8>)>,
    pub remove: Vec<Vec<u8>>,
}

/// The newest stored batch, as sinks are told of it: its id, and whether the reader
/// was at the live edge when it stored it (it had read every file to its end, and
/// found no more than this batch since it last was). Only then may a sink wait for a
/// fuller request. A batch stored because it was full, before a pause for a full
/// queue, or as the rest of a backlog means more follows, or nothing soon: it goes
/// out at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tip {
    pub id: u64,
    pub caught_up: bool,
}

/// A stored batch as a sink reads it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: u64,
    pub events: u32,
    pub created_ms: u64,
    pub records: Vec<u8>,
}

pub struct Queue {
    db: sled::Db,
    segments: PathBuf,
    /// Segment files open for reading, by number.
    readers: Mutex<HashMap<u64, Arc<File>>>,
    meta: sled::Tree,
    checkpoints: sled::Tree,
    cursors: sled::Tree,
    dead: sled::Tree,
    sinks: Vec<String>,
    next_id: AtomicU64,
    bytes: AtomicU64,
    /// The size at which the reader pauses ([`Queue::set_limit`]).
    limit: AtomicU64,
    batches: AtomicU64,
    /// Serialises commits (ids must be stored in order) and the removal of segment
    /// files, and owns the segment being appended to.
    write: Mutex<Writer>,
    /// Serialises garbage collection (the deletion of batch headers and the count
    /// of bytes and batches they free). Apart from `write`, so a sink's
    /// acknowledgement never waits for a commit's fsync.
    collect: Mutex<()>,
    /// Signalled whenever batches are deleted (room for a paused reader).
    room: (Mutex<()>, std::sync::Condvar),
}

/// The append side of the segment files.
struct Writer {
    /// The segment being appended to: number, file, bytes in it.
    current: Option<(u64, File, u64)>,
    /// The number the next new segment gets.
    next: u64,
    /// Segments below this number are deleted.
    live_from: u64,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016x}.seg"))
}

/// Numbers of the segment files in `dir`.
fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".seg")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Writer {
    /// Appends `data` durably; returns (segment, offset). A failed write leaves the
    /// segment's length as it was, so the next append writes over the torn bytes.
    fn append(&mut self, dir: &Path, data: &[u8]) -> Result<(u64, u64), QueueError> {
        if self
            .current
            .as_ref()
            .is_none_or(|(_, _, len)| *len >= SEGMENT_BYTES)
        {
            let n = self.next;
            let path = segment_path(dir, n);
            let file = crate::files::open_private(&path, false)
                .map_err(|e| QueueError::Segment(path.clone(), e))?;
            // The new name must survive a crash before any header points into it.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| QueueError::Segment(dir.to_path_buf(), e))?;
            self.next = n + 1;
            self.current = Some((n, file, 0));
        }
        let Some((n, file, len)) = self.current.as_mut() else {
            unreachable!("a segment was opened above");
        };
        let io = |e| QueueError::Segment(segment_path(dir, *n), e);
        file.write_all_at(data, *len).map_err(io)?;
        file.sync_data().map_err(io)?;
        let at = *len;
        *len += data.len() as u64;
        Ok((*n, at))
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("bytes", &self.bytes())
            .field("batches", &self.batches())
            .finish_non_exhaustive()
    }
}

fn u64_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Where a batch's records are, and what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    events: u32,
    bytes: u32,
    segment: u64,
    offset: u64,
    crc: u32,
    created_ms: u64,
}

const META_LEN: usize = 37;

impl Meta {
    /// `[version, events u32, bytes u32, segment u64, offset u64, crc32 u32,
    /// created_ms u64]`, big-endian.
    fn encode(&self) -> [u8; META_LEN] {
        let mut m = [0u8; META_LEN];
        m[0] = META_VERSION;
        m[1..5].copy_from_slice(&self.events.to_be_bytes());
        m[5..9].copy_from_slice(&self.bytes.to_be_bytes());
        m[9..17].copy_from_slice(&self.segment.to_be_bytes());
        m[17..25].copy_from_slice(&self.offset.to_be_bytes());
        m[25..29].copy_from_slice(&self.crc.to_be_bytes());
        m[29..37].copy_from_slice(&self.created_ms.to_be_bytes());
        m
    }

    fn decode(v: &[u8]) -> Result<Meta, QueueError> {
        if v.first() == Some(&1) {
            return Err(QueueError::Corrupt(
                "batch header of queue format 1 (a development build); this queue cannot be \
                 read: move the queue directory away to start afresh (the audit files are \
                 read again from their start, so events may ship twice but none is lost)"
                    .into(),
            ));
        }
        if v.len() != META_LEN || v[0] != META_VERSION {
            return Err(QueueError::Corrupt("batch header".into()));
        }
        let u32_at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().unwrap_or_default());
        Ok(Meta {
            events: u32_at(1),
            bytes: u32_at(5),
            segment: u64_at(9),
            offset: u64_at(17),
            crc: u32_at(25),
            created_ms: u64_at(29),
        })
    }
}

fn id_of(k: &[u8]) -> u64 {
    u64::from_be_bytes(
        k.get(..8)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default(),
    )
}

impl Queue {
    /// Opens (or creates) the queue in `dir` for the given sinks. Cursors of sinks no
    /// longer configured are dropped; a sink seen for the first time starts at the
    /// oldest batch still stored.
    pub fn open(dir: &Path, cache_capacity: u64, sinks: &[String]) -> Result<Queue, QueueError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .flush_every_ms(None)
            .open()?;
        let segments = dir.join("segments");
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&segments)
                .map_err(|e| QueueError::Segment(segments.clone(), e))?;
        }
        let existing =
            list_segments(&segments).map_err(|e| QueueError::Segment(segments.clone(), e))?;
        // Appends always go to a new segment: whatever a crash left at the end of the
        // last one is never referenced, and goes when that segment does.
        let writer = Writer {
            current: None,
            next: existing.last().map_or(1, |n| n + 1),
            live_from: existing.first().copied().unwrap_or(1),
        };
        let q = Queue {
            segments,
            readers: Mutex::new(HashMap::new()),
            meta: db.open_tree("batches")?,
            checkpoints: db.open_tree("checkpoints")?,
            cursors: db.open_tree("cursors")?,
            dead: db.open_tree("dead")?,
            db,
            sinks: sinks.to_vec(),
            next_id: AtomicU64::new(1),
            bytes: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            batches: AtomicU64::new(0),
            write: Mutex::new(writer),
            collect: Mutex::new(()),
            room: (Mutex::new(()), std::sync::Condvar::new()),
        };
        let mut bytes = 0u64;
        let mut count = 0u64;
        let mut last = 0u64;
        for item in q.meta.iter() {
            let (k, v) = item?;
            bytes += u64::from(Meta::decode(&v)?.bytes);
            count += 1;
            last = id_of(&k);
        }
        // Ids never go back, even when every batch was deleted.
        let stored_next = q.cursors.get(b"\0next_id")?.map(|v| id_of(&v)).unwrap_or(1);
        q.next_id.store(stored_next.max(last + 1), Ordering::SeqCst);
        q.bytes.store(bytes, Ordering::SeqCst);
        q.batches.store(count, Ordering::SeqCst);
        for item in q.cursors.iter() {
            let (k, _) = item?;
            if k.first() != Some(&0) && !sinks.iter().any(|s| s.as_bytes() == &k[..]) {
                q.cursors.remove(&k)?;
            }
        }
        q.gc()?;
        q.db.flush()?;
        Ok(q)
    }

    /// Bytes of shipped records stored and not yet acknowledged by every sink.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Sets the size at which the queue counts as full.
    pub fn set_limit(&self, max_bytes: u64) {
        self.limit.store(max_bytes, Ordering::SeqCst);
    }

    /// True when the stored bytes reached the limit: the reader pauses, and sinks
    /// should send what they have rather than wait for fuller requests.
    pub fn is_full(&self) -> bool {
        self.bytes() >= self.limit.load(Ordering::SeqCst)
    }

    /// Batches stored.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::SeqCst)
    }

    /// Stores a batch with the checkpoints it advances, durably. A batch without
    /// events stores only the checkpoints. Returns the batch id (0 when none stored).
    pub fn commit(&self, batch: &NewBatch) -> Result<u64, QueueError> {
        let mut writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let has_records = batch.events > 0 && !batch.records.is_empty();
        let id = if has_records {
            self.next_id.load(Ordering::SeqCst)
        } else {
            0
        };
        let meta = if has_records {
            // The bytes first, durably: the header stored below points at them.
            let (segment, offset) = writer.append(&self.segments, &batch.records)?;
            Some(
                Meta {
                    events: batch.events,
                    bytes: u32::try_from(batch.records.len())
                        .map_err(|_| QueueError::Corrupt("batch over 4 GiB".into()))?,
                    segment,
                    offset,
                    crc: crc32fast::hash(&batch.records),
                    created_ms: crate::clock::now_ms(),
                }
                .encode(),
            )
        } else {
            None
        };
        let result: Result<(), TransactionError<()>> =
            (&self.meta, &self.checkpoints, &self.cursors).transaction(
                |(metas, checkpoints, cursors)| {
                    if let Some(meta) = &meta {
                        metas.insert(&u64_key(id)[..], &meta[..])?;
                        cursors.insert(&b"\0next_id"[..], &u64_key(id + 1)[..])?;
                    }
                    for (k, v) in &batch.put {
                        checkpoints.insert(k.as_slice(), v.as_slice())?;
                    }
                    for k in &batch.remove {
                        checkpoints.remove(k.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            );
        result.map_err(|e| match e {
            TransactionError::Storage(s) => QueueError::Sled(s),
            TransactionError::Abort(()) => QueueError::Corrupt("transaction aborted".into()),
        })?;
        self.db.flush()?;
        if has_records {
            // Before the lock goes: the next committer must see the next id.
            self.next_id.store(id + 1, Ordering::SeqCst);
            self.bytes
                .fetch_add(batch.records.len() as u64, Ordering::SeqCst);
            self.batches.fetch_add(1, Ordering::SeqCst);
        }
        drop(writer);
        Ok(id)
    }

    /// Every stored checkpoint.
    pub fn checkpoints(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, QueueError> {
        let mut out = BTreeMap::new();
        for item in self.checkpoints.iter() {
            let (k, v) = item?;
            out.insert(k.to_vec(), v.to_vec());
        }
        Ok(out)
    }

    /// True when every batch stored so far was passed by every configured sink:
    /// whatever was read before this call is acknowledged everywhere.
    pub fn all_acknowledged(&self) -> Result<bool, QueueError> {
        let last = self.next_id.load(Ordering::SeqCst).saturating_sub(1);
        for s in &self.sinks {
            if self.cursor(s)? < last {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes checkpoints (of files that are gone for good), durably.
    pub fn remove_checkpoints(&self, keys: &[Vec<u8>]) -> Result<(), QueueError> {
        for k in keys {
            self.checkpoints.remove(k.as_slice())?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// The id of the last batch `sink` has passed (acknowledged or dead-lettered).
    pub fn cursor(&self, sink: &str) -> Result<u64, QueueError> {
        Ok(self
            .cursors
            .get(sink.as_bytes())?
            .map(|v| id_of(&v))
            .unwrap_or(0))
    }

    /// The id of the newest batch stored so far (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// When the first batch after `after` was stored (ms since the epoch), reading
    /// only its header: how far behind a sink at cursor `after` is.
    pub fn created_after(&self, after: u64) -> Result<Option<u64>, QueueError> {
        let Some(item) = self.meta.range(u64_key(after.saturating_add(1))..).next() else {
            return Ok(None);
        };
        let (_, v) = item?;
        Ok(Some(Meta::decode(&v)?.created_ms))
    }

    /// The first stored batch after `after`, if any.
    pub fn next_after(&self, after: u64) -> Result<Option<Batch>, QueueError> {
        self.next_after_into(after, Vec::new())
    }

    /// [`Queue::next_after`], reading the records into `buf` (a reused buffer, whose
    /// contents do not matter).
    pub fn next_after_into(
        &self,
        after: u64,
        mut buf: Vec<u8>,
    ) -> Result<Option<Batch>, QueueError> {
        let Some(item) = self.meta.range(u64_key(after.saturating_add(1))..).next() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let id = id_of(&k);
        let meta = Meta::decode(&v)?;
        let file = self.segment_reader(meta.segment)?;
        let mut records = std::mem::take(&mut buf);
        let len = meta.bytes as usize;
        // Grown to a whole number of steps, never doubled: batches of one size limit
        // differ by a few bytes, and a buffer doubled for a batch a few bytes longer
        // than the last one would hold twice the memory it needs from then on.
        if records.capacity() < len {
            records.reserve_exact(len.next_multiple_of(BUFFER_STEP) - records.len());
        }
        // Every byte is read over below: only what the buffer grows by is zeroed
        // (a reused buffer keeps its length).
        records.resize(len, 0);
        file.read_exact_at(&mut records, meta.offset)
            .map_err(|e| QueueError::Segment(segment_path(&self.segments, meta.segment), e))?;
        if crc32fast::hash(&records) != meta.crc {
            return Err(QueueError::Corrupt(format!(
                "batch {id} does not match its checksum (segment {})",
                segment_path(&self.segments, meta.segment).display()
            )));
        }
        Ok(Some(Batch {
            id,
            events: meta.events,
            created_ms: meta.created_ms,
            records,
        }))
    }

    fn segment_reader(&self, n: u64) -> Result<Arc<File>, QueueError> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = readers.get(&n) {
            return Ok(f.clone());
        }
        let path = segment_path(&self.segments, n);
        let f = Arc::new(
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| QueueError::Segment(path, e))?,
        );
        readers.insert(n, f.clone());
        Ok(f)
    }

    /// Records that `sink` acknowledged every batch up to `id`, durably, then deletes
    /// the batches every sink has passed.
    pub fn ack(&self, sink: &str, id: u64) -> Result<(), QueueError> {
        self.cursors.insert(sink.as_bytes(), &u64_key(id)[..])?;
        self.gc()?;
        self.db.flush()?;
        Ok(())
    }

    /// Deletes batches that every configured sink has passed, then the segment
    /// files that hold none of the rest, unless a commit is appending (it holds the
    /// writer through its fsync): those go at a later collection.
    fn gc(&self) -> Result<(), QueueError> {
        if self.sinks.is_empty() {
            return Ok(());
        }
        let _collecting = self.collect.lock().unwrap_or_else(|e| e.into_inner());
        let mut min = u64::MAX;
        for s in &self.sinks {
            min = min.min(self.cursor(s)?);
        }
        // Commits only add headers above every cursor: deleting below needs no writer.
        let mut metas = sled::Batch::default();
        let (mut freed, mut count) = (0u64, 0u64);
        for item in self.meta.range(..=u64_key(min)) {
            let (k, v) = item?;
            freed += u64::from(Meta::decode(&v)?.bytes);
            metas.remove(k);
            count += 1;
        }
        if count > 0 {
            self.meta.apply_batch(metas)?;
            self.bytes.fetch_sub(freed, Ordering::SeqCst);
            self.batches.fetch_sub(count, Ordering::SeqCst);
            let _g = self.room.0.lock().unwrap_or_else(|e| e.into_inner());
            self.room.1.notify_all();
        }
        let mut writer = match self.write.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        // Segments before the oldest stored batch's (and before the one being
        // appended to) hold nothing stored any more.
        let oldest_used = match self.meta.iter().next() {
            Some(item) => Meta::decode(&item?.1)?.segment,
            None => writer.current.as_ref().map_or(writer.next, |c| c.0),
        };
        if oldest_used > writer.live_from {
            // The deletions must be durable before the files go: a crash in
            // between must not leave a header pointing at a deleted segment.
            self.db.flush()?;
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            for n in writer.live_from..oldest_used {
                readers.remove(&n);
                let path = segment_path(&self.segments, n);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(QueueError::Segment(path, e)),
                }
            }
            writer.live_from = oldest_used;
        }
        Ok(())
    }

    /// Waits until the queue is below its limit, or `timeout` passes. Returns whether
    /// there is room.
    pub fn wait_for_room(&self, timeout: std::time::Duration) -> bool {
        let guard = self.room.0.lock().unwrap_or_else(|e| e.into_inner());
        if !self.is_full() {
            return true;
        }
        let _ = self
            .room
            .1
            .wait_timeout_while(guard, timeout, |_| self.is_full());
        !self.is_full()
    }

    /// Flushes everything to disk (at shutdown).
    pub fn flush(&self) -> Result<(), QueueError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u32, size: usize) -> NewBatch {
        let line = format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(size));
        NewBatch {
            records: line.into_bytes(),
            events: 1,
            put: vec![(b"file-a".to_vec(), n.to_be_bytes().to_vec())],
            remove: vec![],
        }
    }

    #[test]
    fn a_reused_buffer_reads_any_batch_and_grows_by_steps() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".to_string()]).unwrap();
        for (n, size) in [(1, 900_000), (2, 900_010), (3, 10), (4, 900_020)] {
            q.commit(&batch(n, size)).unwrap();
        }
        let mut buf = Vec::new();
        for id in 1..=4 {
            let b = q.next_after_into(id - 1, buf).unwrap().unwrap();
            assert_eq!(b.records, q.next_after(id - 1).unwrap().unwrap().records);
            // 900 kB and a little more fit the same seven steps: never doubled.
            assert_eq!(b.records.capacity(), 7 * BUFFER_STEP, "batch {id}");
            buf = b.records;
        }
    }

    #[test]
    fn batches_checkpoints_cursors_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = vec!["a".to_string(), "b".to_string()];
        {
            let q = Queue::open(dir.path(), 1 << 20, &sinks).unwrap();
            assert_eq!(q.commit(&batch(1, 10)).unwrap(), 1);
            assert_eq!(q.commit(&batch(2, 200_000)).unwrap(), 2);
            assert_eq!(q.batches(), 2);
            let b2 = q.next_after(1).unwrap().unwrap();
            assert_eq!((b2.id, b2.records.len()), (2, 200_000 + 17));
            q.ack("a", 2).unwrap();
            assert_eq!(q.batches(), 2, "b has not acknowledged yet");
            q.ack("b", 1).unwrap();
            assert_eq!(q.batches(), 1);
        }
        let q = Queue::open(dir.path(), 1 << 20, &sinks).unwrap();
        assert_eq!(q.cursor("a").unwrap(), 2);
        assert_eq!(q.cursor("b").unwrap(), 1);
        assert_eq!(q.next_after(1).unwrap().unwrap().id, 2);
        assert_eq!(
            q.checkpoints().unwrap()[&b"file-a".to_vec()],
            2u32.to_be_bytes().to_vec()
        );
        q.ack("b", 2).unwrap();
        assert_eq!((q.batches(), q.bytes()), (0, 0));
        assert_eq!(q.commit(&batch(3, 1)).unwrap(), 3, "ids never repeat");
    }

    #[test]
    fn removed_sinks_lose_their_cursor_and_stop_holding_batches() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 20, &["a".into(), "gone".into()]).unwrap();
            q.commit(&batch(1, 10)).unwrap();
            q.ack("a", 1).unwrap();
            assert_eq!(q.batches(), 1);
        }
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        assert_eq!(q.batches(), 0);
        assert_eq!(q.cursor("gone").unwrap(), 0);
    }

    #[test]
    fn dead_letters_keep_reason_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        q.commit(&batch(1, 100_000)).unwrap();
        let b = q.next_after(0).unwrap().unwrap();
        q.dead_letter("a", b.id, "400 bad request", b.events, &b.records)
            .unwrap();
        assert_eq!(q.batches(), 0);
        let dl = q.dead_letters().unwrap();
        assert_eq!(dl.len(), 1);
        assert_eq!(
            (dl[0].sink.as_str(), dl[0].id, dl[0].reason.as_str()),
            ("a", 1, "400 bad request")
        );
        assert_eq!(dl[0].records, b.records);
    }

    #[test]
    fn concurrent_commits_get_ids_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let q = std::sync::Arc::new(Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..25u8 {
                        q.commit(&NewBatch {
                            records: vec![b'a' + t, b'0' + i % 10, b'\n'],
                            events: 1,
                            ..Default::default()
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut seen = 0;
        let mut after = 0;
        while let Some(b) = q.next_after(after).unwrap() {
            after = b.id;
            seen += 1;
        }
        assert_eq!(seen, 100, "every commit kept");
        assert_eq!(q.last_id(), 100);
    }

    #[test]
    fn a_checkpoint_only_commit_stores_no_batch() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        let id = q
            .commit(&NewBatch {
                put: vec![(b"k".to_vec(), b"v".to_vec())],
                ..Default::default()
            })
            .unwrap();
        assert_eq!((id, q.batches()), (0, 0));
        assert_eq!(q.checkpoints().unwrap().len(), 1);
    }

    fn segment_files(dir: &Path) -> Vec<u64> {
        list_segments(&dir.join("segments")).unwrap()
    }

    #[test]
    fn segments_go_once_every_batch_in_them_is_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        // Batches of a third of a segment: a new segment every third batch.
        let big = (SEGMENT_BYTES / 3 + 1) as usize;
        for n in 1..=7 {
            q.commit(&batch(n, big)).unwrap();
        }
        assert_eq!(segment_files(dir.path()), [1, 2, 3]);
        q.ack("a", 3).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            [2, 3],
            "segment 1 held batches 1-3"
        );
        q.ack("a", 5).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            [2, 3],
            "batch 6 is still in segment 2"
        );
        q.ack("a", 7).unwrap();
        assert_eq!(
            segment_files(dir.path()),
            [3],
            "the segment being appended to stays"
        );
        assert_eq!((q.batches(), q.bytes()), (0, 0));
        drop(q);
        // After a restart appends go to a new segment; the old one goes at the next
        // collection.
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        assert_eq!(q.commit(&batch(8, 10)).unwrap(), 8);
        q.ack("a", 8).unwrap();
        assert_eq!(segment_files(dir.path()), [4]);
    }

    #[test]
    fn bytes_a_crash_left_unreferenced_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
            q.commit(&batch(1, 100)).unwrap();
        }
        // A commit that wrote its bytes but died before its header was stored.
        let seg = segment_path(&dir.path().join("segments"), 1);
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, b"{\"torn\":").unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        assert_eq!(q.batches(), 1);
        assert_eq!(q.commit(&batch(2, 100)).unwrap(), 2);
        let b1 = q.next_after(0).unwrap().unwrap();
        let b2 = q.next_after(1).unwrap().unwrap();
        assert_eq!(b1.records, batch(1, 100).records);
        assert_eq!(b2.records, batch(2, 100).records);
        assert_eq!(q.next_after(2).unwrap().map(|b| b.id), None);
    }

    #[test]
    fn damaged_record_bytes_are_an_error_not_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        q.commit(&batch(1, 100)).unwrap();
        let seg = segment_path(&dir.path().join("segments"), 1);
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(b"X", 10).unwrap();
        let err = q.next_after(0).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        std::fs::remove_file(&seg).unwrap();
        q.readers.lock().unwrap().clear();
        assert!(matches!(q.next_after(0), Err(QueueError::Segment(..))));
    }

    #[test]
    fn a_queue_of_the_first_format_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let mut old = [0u8; 21];
            old[0] = 1;
            db.open_tree("batches")
                .unwrap()
                .insert(u64_key(1), &old[..])
                .unwrap();
            db.flush().unwrap();
        }
        let err = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap_err();
        assert!(
            err.to_string().contains("move the queue directory away"),
            "{err}"
        );
    }
}
