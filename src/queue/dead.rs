//! Dead letters: records a sink rejected for good, kept with the sink's reason until
//! an operator sends them again (`dead-letter replay`) or deletes them
//! (`dead-letter purge`). Records are kept as they were shipped, byte for byte, so a
//! replay sends the same `_auditship.id`s.
//!
//! Layout, in the `dead` tree: keys `sink \0 batch-id part n` (`u64`, `u32`, `u32`,
//! big-endian). `n` numbers the chunks of the records (each under 64 KiB: sled 0.34
//! never reclaims larger values); `n = u32::MAX` is the head (`events` as `u32`, then
//! the reason as text); `n = u32::MAX - 1` is when the letter was stored (`[1]` then
//! milliseconds since the epoch as `u64`; absent in letters stored by versions before
//! it). A letter is written, rewritten and removed as one sled batch, then flushed.

use super::{CHUNK_BYTES, Queue, QueueError, id_of};
use crate::clock::now_ms;
use std::path::Path;

const HEAD: u32 = u32::MAX;
const STORED_AT: u32 = u32::MAX - 1;
const STORED_AT_VERSION: u8 = 1;

/// A dead letter as listed for operators.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub sink: String,
    /// The batch (the first of the request) the records were shipped in.
    pub id: u64,
    pub part: u32,
    pub reason: String,
    pub events: u32,
    /// The records as shipped: JSON lines, each ending in `\n`.
    pub records: Vec<u8>,
    /// When it was stored (ms since the epoch); `None` for letters stored by a
    /// version that did not record it.
    pub stored_ms: Option<u64>,
}

impl Queue {
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
        let letter = Letter {
            sink,
            id,
            part,
            reason,
            events,
            records,
            stored_ms: Some(now_ms()),
        };
        write(&self.db, &self.dead, &letter)
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

    /// Every dead letter, oldest batch first per sink.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        read_all(&self.dead)
    }
}

/// The dead letters of a queue, opened by an operator's command without opening the
/// queue for work: nothing else is created, collected or pruned. sled locks the
/// queue, so this fails while a daemon holds it (and a daemon starting meanwhile
/// waits for it).
pub struct DeadLetterStore {
    db: sled::Db,
    dead: sled::Tree,
}

impl DeadLetterStore {
    /// Opens the queue in `dir`; `None` when there is none (no daemon ever ran).
    pub fn open(dir: &Path) -> Result<Option<DeadLetterStore>, QueueError> {
        // `exists` says false for what it cannot see: an unreadable queue is an
        // error, never an empty one.
        match dir.join("db").try_exists() {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(QueueError::Sled(sled::Error::Io(e))),
        }
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(1 << 20)
            .open()?;
        let dead = db.open_tree("dead")?;
        Ok(Some(DeadLetterStore { db, dead }))
    }

    /// Every dead letter, oldest batch first per sink.
    pub fn list(&self) -> Result<Vec<DeadLetter>, QueueError> {
        read_all(&self.dead)
    }

    /// Deletes a dead letter, durably.
    pub fn remove(&self, d: &DeadLetter) -> Result<(), QueueError> {
        let mut b = sled::Batch::default();
        for k in self
            .dead
            .scan_prefix(key_prefix(&d.sink, d.id, d.part))
            .keys()
        {
            b.remove(k?);
        }
        self.dead.apply_batch(b)?;
        self.db.flush()?;
        Ok(())
    }

    /// Keeps only `records` (`events` of them) of a dead letter, with its reason and
    /// time: what a partial replay did not deliver.
    pub fn keep_only(&self, d: &DeadLetter, records: &[u8], events: u32) -> Result<(), QueueError> {
        let letter = Letter {
            sink: &d.sink,
            id: d.id,
            part: d.part,
            reason: &d.reason,
            events,
            records,
            stored_ms: d.stored_ms,
        };
        write(&self.db, &self.dead, &letter)
    }
}

/// A dead letter to write.
struct Letter<'a> {
    sink: &'a str,
    id: u64,
    part: u32,
    reason: &'a str,
    events: u32,
    records: &'a [u8],
    stored_ms: Option<u64>,
}

/// Writes a letter, replacing every chunk of an earlier one under its key.
fn write(db: &sled::Db, dead: &sled::Tree, l: &Letter<'_>) -> Result<(), QueueError> {
    let prefix = key_prefix(l.sink, l.id, l.part);
    let key = |n: u32| {
        let mut k = prefix.clone();
        k.extend_from_slice(&n.to_be_bytes());
        k
    };
    let mut b = sled::Batch::default();
    for old in dead.scan_prefix(&prefix).keys() {
        b.remove(old?);
    }
    let mut head = Vec::with_capacity(l.reason.len() + 8);
    head.extend_from_slice(&l.events.to_be_bytes());
    head.extend_from_slice(l.reason.as_bytes());
    b.insert(key(HEAD), head);
    if let Some(ms) = l.stored_ms {
        let mut v = vec![STORED_AT_VERSION];
        v.extend_from_slice(&ms.to_be_bytes());
        b.insert(key(STORED_AT), v);
    }
    for (n, piece) in l.records.chunks(CHUNK_BYTES).enumerate() {
        b.insert(key(n as u32), piece);
    }
    dead.apply_batch(b)?;
    db.flush()?;
    Ok(())
}

fn read_all(dead: &sled::Tree) -> Result<Vec<DeadLetter>, QueueError> {
    let mut out: Vec<DeadLetter> = Vec::new();
    for item in dead.iter() {
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
                stored_ms: None,
            });
        }
        let d = out.last_mut().expect("pushed above");
        match n {
            HEAD => {
                d.events = u32::from_be_bytes(
                    v.get(..4)
                        .and_then(|s| s.try_into().ok())
                        .unwrap_or_default(),
                );
                d.reason = String::from_utf8_lossy(v.get(4..).unwrap_or_default()).into_owned();
            }
            STORED_AT => {
                if v.first() != Some(&STORED_AT_VERSION) || v.len() != 9 {
                    return Err(QueueError::Corrupt("dead letter time".into()));
                }
                d.stored_ms = Some(id_of(&v[1..]));
            }
            _ => d.records.extend_from_slice(&v),
        }
    }
    Ok(out)
}

fn key_prefix(sink: &str, id: u64, part: u32) -> Vec<u8> {
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

    fn letter(q: &Queue, sink: &str, id: u64, part: u32, records: &[u8]) {
        q.store_dead_letter(sink, id, part, "HTTP 400: no", 2, records)
            .unwrap();
    }

    #[test]
    fn letters_are_listed_rewritten_and_removed_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = b"{\"n\":1}\n".repeat(20_000);
        {
            let q = Queue::open(dir.path(), 1 << 20, &["a".into(), "b".into()]).unwrap();
            letter(&q, "a", 3, 0, &big);
            letter(&q, "a", 3, 1, b"{\"n\":2}\n");
            letter(&q, "b", 3, 0, b"{\"n\":3}\n");
        }
        let store = DeadLetterStore::open(dir.path()).unwrap().unwrap();
        let all = store.list().unwrap();
        let keys: Vec<(&str, u64, u32)> = all
            .iter()
            .map(|d| (d.sink.as_str(), d.id, d.part))
            .collect();
        assert_eq!(keys, [("a", 3, 0), ("a", 3, 1), ("b", 3, 0)]);
        assert_eq!(all[0].records, big, "chunks joined in order");
        let now = now_ms();
        assert!(
            all.iter()
                .all(|d| d.stored_ms.is_some_and(|t| t <= now && t + 60_000 > now))
        );

        store.keep_only(&all[0], b"{\"n\":1}\n", 1).unwrap();
        store.remove(&all[1]).unwrap();
        let left = store.list().unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(
            (
                left[0].records.as_slice(),
                left[0].events,
                left[0].reason.as_str(),
                left[0].stored_ms
            ),
            (&b"{\"n\":1}\n"[..], 1, "HTTP 400: no", all[0].stored_ms),
            "a rewrite keeps reason and time"
        );
        assert_eq!(
            left[1].sink, "b",
            "another sink's letter of the same batch stays"
        );
        drop(store);
        assert!(
            DeadLetterStore::open(&dir.path().join("nothing"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_letter_without_a_time_is_read_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), 1 << 20, &["a".into()]).unwrap();
        // As versions before the time was kept wrote it.
        let letter = Letter {
            sink: "a",
            id: 1,
            part: 0,
            reason: "HTTP 400",
            events: 1,
            records: b"{}\n",
            stored_ms: None,
        };
        write(&q.db, &q.dead, &letter).unwrap();
        let all = q.dead_letters().unwrap();
        assert_eq!((all.len(), all[0].stored_ms, all[0].events), (1, None, 1));
    }
}
