//! Durability: the on-disk queue of shipped-record batches, the reader's checkpoints,
//! each sink's cursor and the dead-letter store. **The only module that names sled.**
//!
//! Invariants:
//! - A batch is stored in the same transaction as the checkpoints (file offsets, line
//!   numbers, chain heads) it advances, and `flush` makes both durable before
//!   `commit` returns: an offset is never durable without the events read up to it.
//! - Batches, not events, are the unit on disk; every stored value stays under 64 KiB
//!   (a batch is split into chunks), because sled 0.34 never reclaims larger values.
//! - A sink's cursor moves only through [`Queue::ack`] (after the sink acknowledged)
//!   or [`Queue::dead_letter`] (after the batch was stored as a dead letter). A batch
//!   is deleted once every configured sink's cursor has passed it.
//!
//! Checkpoint keys and values are opaque bytes here; their format belongs to `tail`.
//! Calls block (sled and fsync): callers run them off the async workers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Largest value written to sled.
pub const CHUNK_BYTES: usize = 60 * 1024;

const META_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("queue record {0} is corrupt")]
    Corrupt(String),
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

/// A stored batch as a sink reads it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: u64,
    pub events: u32,
    pub created_ms: u64,
    pub records: Vec<u8>,
}

/// A dead letter as listed for operators.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub sink: String,
    pub id: u64,
    pub part: u32,
    pub reason: String,
    pub events: u32,
    pub records: Vec<u8>,
}

pub struct Queue {
    db: sled::Db,
    chunks: sled::Tree,
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
    /// Serialises commits (ids must be stored in order) and garbage collection.
    write: Mutex<()>,
    /// Signalled whenever batches are deleted (room for a paused reader).
    room: (Mutex<()>, std::sync::Condvar),
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

fn chunk_key(id: u64, n: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

/// `[version, events u32, bytes u32, chunks u32, created_ms u64]`, big-endian.
fn encode_meta(events: u32, bytes: u32, chunks: u32, created_ms: u64) -> [u8; 21] {
    let mut m = [0u8; 21];
    m[0] = META_VERSION;
    m[1..5].copy_from_slice(&events.to_be_bytes());
    m[5..9].copy_from_slice(&bytes.to_be_bytes());
    m[9..13].copy_from_slice(&chunks.to_be_bytes());
    m[13..21].copy_from_slice(&created_ms.to_be_bytes());
    m
}

struct Meta {
    events: u32,
    bytes: u32,
    chunks: u32,
    created_ms: u64,
}

fn decode_meta(v: &[u8]) -> Result<Meta, QueueError> {
    if v.len() != 21 || v[0] != META_VERSION {
        return Err(QueueError::Corrupt("batch header".into()));
    }
    let u32_at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().unwrap_or_default());
    Ok(Meta {
        events: u32_at(1),
        bytes: u32_at(5),
        chunks: u32_at(9),
        created_ms: u64::from_be_bytes(v[13..21].try_into().unwrap_or_default()),
    })
}

fn id_of(k: &[u8]) -> u64 {
    u64::from_be_bytes(
        k.get(..8)
            .and_then(|s| s.try_into().ok())
            .unwrap_or_default(),
    )
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
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
        let q = Queue {
            chunks: db.open_tree("chunks")?,
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
            write: Mutex::new(()),
            room: (Mutex::new(()), std::sync::Condvar::new()),
        };
        let mut bytes = 0u64;
        let mut count = 0u64;
        let mut last = 0u64;
        for item in q.meta.iter() {
            let (k, v) = item?;
            bytes += u64::from(decode_meta(&v)?.bytes);
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
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let has_records = batch.events > 0 && !batch.records.is_empty();
        let id = if has_records {
            self.next_id.load(Ordering::SeqCst)
        } else {
            0
        };
        let pieces: Vec<&[u8]> = if has_records {
            batch.records.chunks(CHUNK_BYTES).collect()
        } else {
            Vec::new()
        };
        let meta = encode_meta(
            batch.events,
            batch.records.len() as u32,
            pieces.len() as u32,
            now_ms(),
        );
        let result: Result<(), TransactionError<()>> =
            (&self.chunks, &self.meta, &self.checkpoints, &self.cursors).transaction(
                |(chunks, metas, checkpoints, cursors)| {
                    if has_records {
                        for (n, piece) in pieces.iter().enumerate() {
                            chunks.insert(&chunk_key(id, n as u32)[..], *piece)?;
                        }
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
            self.next_id.store(id + 1, Ordering::SeqCst);
            self.bytes
                .fetch_add(batch.records.len() as u64, Ordering::SeqCst);
            self.batches.fetch_add(1, Ordering::SeqCst);
        }
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

    /// The id of the last batch `sink` has passed (acknowledged or dead-lettered).
    pub fn cursor(&self, sink: &str) -> Result<u64, QueueError> {
        Ok(self
            .cursors
            .get(sink.as_bytes())?
            .map(|v| id_of(&v))
            .unwrap_or(0))
    }

    /// The first stored batch after `after`, if any.
    pub fn next_after(&self, after: u64) -> Result<Option<Batch>, QueueError> {
        let Some(item) = self.meta.range(u64_key(after.saturating_add(1))..).next() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let id = id_of(&k);
        let meta = decode_meta(&v)?;
        let mut records = Vec::with_capacity(meta.bytes as usize);
        for n in 0..meta.chunks {
            let piece = self
                .chunks
                .get(chunk_key(id, n))?
                .ok_or_else(|| QueueError::Corrupt(format!("batch {id} chunk {n} missing")))?;
            records.extend_from_slice(&piece);
        }
        if records.len() != meta.bytes as usize {
            return Err(QueueError::Corrupt(format!(
                "batch {id} has the wrong length"
            )));
        }
        Ok(Some(Batch {
            id,
            events: meta.events,
            created_ms: meta.created_ms,
            records,
        }))
    }

    /// Records that `sink` acknowledged every batch up to `id`, durably, then deletes
    /// the batches every sink has passed.
    pub fn ack(&self, sink: &str, id: u64) -> Result<(), QueueError> {
        self.cursors.insert(sink.as_bytes(), &u64_key(id)[..])?;
        self.gc()?;
        self.db.flush()?;
        Ok(())
    }

    /// Stores records a sink rejected for good, under (`sink`, `id`, `part`), with the
    /// reason. The cursor does not move here: the caller acks once every part of the
    /// batch was shipped or stored. Storing the same key twice (after a crash) is
    /// harmless. Values are chunked like batches.
    pub fn store_dead_letter(
        &self,
        sink: &str,
        id: u64,
        part: u32,
        reason: &str,
        events: u32,
        records: &[u8],
    ) -> Result<(), QueueError> {
        let prefix = dead_prefix(sink, id, part);
        let mut b = sled::Batch::default();
        // A rewrite (after a crash) replaces every chunk of an earlier attempt.
        for old in self.dead.scan_prefix(&prefix).keys() {
            b.remove(old?);
        }
        let mut head = Vec::with_capacity(reason.len() + 8);
        head.extend_from_slice(&events.to_be_bytes());
        head.extend_from_slice(reason.as_bytes());
        let mut k = prefix.clone();
        k.extend_from_slice(&u32::MAX.to_be_bytes());
        b.insert(k, head);
        for (n, piece) in records.chunks(CHUNK_BYTES).enumerate() {
            let mut k = prefix.clone();
            k.extend_from_slice(&(n as u32).to_be_bytes());
            b.insert(k, piece);
        }
        self.dead.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// Dead-letters a whole batch and moves the sink's cursor past it.
    pub fn dead_letter(
        &self,
        sink: &str,
        id: u64,
        reason: &str,
        events: u32,
        records: &[u8],
    ) -> Result<(), QueueError> {
        self.store_dead_letter(sink, id, 0, reason, events, records)?;
        self.ack(sink, id)
    }

    /// Every dead letter, oldest first per sink.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out: Vec<DeadLetter> = Vec::new();
        for item in self.dead.iter() {
            let (k, v) = item?;
            let Some(nul) = k.iter().position(|&b| b == 0) else {
                return Err(QueueError::Corrupt("dead letter key".into()));
            };
            let sink = String::from_utf8_lossy(&k[..nul]).into_owned();
            let rest = &k[nul + 1..];
            if rest.len() != 16 {
                return Err(QueueError::Corrupt("dead letter key".into()));
            }
            let id = id_of(rest);
            let part = u32::from_be_bytes(rest[8..12].try_into().unwrap_or_default());
            let n = u32::from_be_bytes(rest[12..16].try_into().unwrap_or_default());
            let same = out
                .last()
                .is_some_and(|d| d.sink == sink && d.id == id && d.part == part);
            if !same {
                out.push(DeadLetter {
                    sink,
                    id,
                    part,
                    reason: String::new(),
                    events: 0,
                    records: Vec::new(),
                });
            }
            let d = out.last_mut().expect("pushed above");
            if n == u32::MAX {
                d.events = u32::from_be_bytes(
                    v.get(..4)
                        .and_then(|s| s.try_into().ok())
                        .unwrap_or_default(),
                );
                d.reason = String::from_utf8_lossy(v.get(4..).unwrap_or_default()).into_owned();
            } else {
                d.records.extend_from_slice(&v);
            }
        }
        Ok(out)
    }

    /// Deletes batches that every configured sink has passed.
    fn gc(&self) -> Result<(), QueueError> {
        let mut min = u64::MAX;
        for s in &self.sinks {
            min = min.min(self.cursor(s)?);
        }
        if self.sinks.is_empty() {
            return Ok(());
        }
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut metas = sled::Batch::default();
        let mut chunks = sled::Batch::default();
        let (mut freed, mut count) = (0u64, 0u64);
        for item in self.meta.range(..=u64_key(min)) {
            let (k, v) = item?;
            let id = id_of(&k);
            let meta = decode_meta(&v)?;
            for n in 0..meta.chunks {
                chunks.remove(&chunk_key(id, n)[..]);
            }
            metas.remove(k);
            freed += u64::from(meta.bytes);
            count += 1;
        }
        if count > 0 {
            // Headers first: a crash in between leaves orphan chunks (harmless), never
            // a header whose chunks are gone.
            self.meta.apply_batch(metas)?;
            self.chunks.apply_batch(chunks)?;
            self.bytes.fetch_sub(freed, Ordering::SeqCst);
            self.batches.fetch_sub(count, Ordering::SeqCst);
            let _g = self.room.0.lock().unwrap_or_else(|e| e.into_inner());
            self.room.1.notify_all();
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

fn dead_prefix(sink: &str, id: u64, part: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(sink.len() + 17);
    k.extend_from_slice(sink.as_bytes());
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k.extend_from_slice(&part.to_be_bytes());
    k
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
}
