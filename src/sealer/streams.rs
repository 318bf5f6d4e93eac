//! The sealed streams: one directory, one chain per user (`<dir>/<user>/`), each
//! written by one thread that commits in groups.
//!
//! A stream's writer thread takes every event waiting for it, chains and seals them (HMAC
//! with the sealer's key), writes them with one `write` and one `fdatasync`, and
//! only then answers each caller. A write or sync that fails is cut back
//! (`ftruncate`, [`writer::append_whole`]) and every event of the group is refused:
//! the chain head moves only when the group is durable, so a refused event never
//! leaves a gap or a torn line.
//!
//! The head is read once, when the stream opens (from the files' tails, as
//! `record` does, after terminating a partial last line), and kept in memory: the
//! sealer holds the stream's `flock` (`<dir>/<user>/.lock`) from then on, so no other
//! writer that honours the format's lock can append behind its back. Files follow
//! `record`'s rule: the file named by the event's UTC date, or the last file when
//! its name sorts later.
//!
//! For signed checkpoints, [`Streams::heads`] tells every stream's name, head and
//! whether it gained events since a [`Mark`], and [`Streams::append_own`] appends
//! the daemon's own events through the same commit path.

use crate::audit::checkpoint::SigningKey;
use crate::audit::{self, Keys};
use crate::record::writer::{self, Appended};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, mpsc, oneshot};

/// Events chained, written and synced together at most.
const MAX_GROUP: usize = 512;
/// Events waiting for one stream at most; callers beyond wait for room.
const QUEUE: usize = 1024;
/// How long opening a stream waits for its lock (held by another writer).
const LOCK_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("stream {0} is locked by another writer")]
    Locked(PathBuf),
    #[error("sealing the event: {0}")]
    Seal(#[from] audit::SealError),
    #[error("the sealer is stopping")]
    Stopped,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StreamError + '_ {
    move |source| StreamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A point in the sealer's history, for [`StreamHead::gained_since`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(u64);

/// A stream's head as last committed. Exists for signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    /// The stream's name: the user's name, its directory under the sealed dir.
    pub name: String,
    /// `seq` of the last event, `None` for a stream without events.
    pub seq: Option<u64>,
    /// `hash` of the last event (64 zeros for a stream without events).
    pub hash: String,
    /// The mark of its last commit.
    changed: Mark,
}

impl StreamHead {
    /// Whether the stream gained events after `mark` was taken.
    pub fn gained_since(&self, mark: Mark) -> bool {
        self.changed > mark
    }
}

/// The sealed streams of one directory.
pub struct Streams {
    dir: PathBuf,
    signer: Arc<(String, Keys)>,
    open: Mutex<BTreeMap<String, Arc<OnceCell<Stream>>>>,
    /// Commits so far, over all streams: the clock of [`Mark`]s.
    commits: Arc<AtomicU64>,
    threads: Threads,
    closed: std::sync::atomic::AtomicBool,
    /// Told when a stream directory is made, so the reader looks at once.
    new_stream: Mutex<Option<NewStream>>,
}

type NewStream = Box<dyn Fn() + Send + Sync>;

/// An open stream: its writer thread's queue and its head.
struct Stream {
    tx: mpsc::Sender<Job>,
    head: Arc<Mutex<StreamHead>>,
}

struct Job {
    event: Map<String, Value>,
    date: String,
    /// For a checkpoint event: the key that signs the head it follows, at commit.
    sign: Option<Arc<SigningKey>>,
    reply: oneshot::Sender<Result<Appended, String>>,
}

/// An event to commit, its file's date, and the key of a checkpoint it carries.
type Pending = (Map<String, Value>, String, Option<Arc<SigningKey>>);

impl Streams {
    /// The streams under `dir` (an existing private directory), sealed with the key
    /// `kid` of `keys`. Every stream already there is opened (its head read, its lock
    /// taken), so [`Streams::heads`] names them all from the start; one that cannot be
    /// opened is logged and tried again at its next event. Blocking: file work.
    pub fn open(dir: &Path, kid: &str, keys: &Keys) -> Result<Streams, StreamError> {
        let streams = Streams {
            dir: dir.to_path_buf(),
            signer: Arc::new((kid.to_string(), keys.clone())),
            open: Mutex::new(BTreeMap::new()),
            commits: Arc::new(AtomicU64::new(0)),
            threads: Threads::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
            new_stream: Mutex::new(None),
        };
        for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || name.starts_with('.') {
                if !name.starts_with('.') {
                    tracing::warn!(path = %entry.path().display(), "not a stream directory; left alone");
                }
                continue;
            }
            // A stream that cannot open now is tried again at its next event.
            match streams.start(&name) {
                Ok(stream) => {
                    let cell = Arc::new(OnceCell::new_with(Some(stream)));
                    streams.lock_map().insert(name, cell);
                }
                Err(e) => {
                    tracing::error!(stream = %name, error = %e, "sealed stream cannot be opened")
                }
            }
        }
        Ok(streams)
    }

    fn lock_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<OnceCell<Stream>>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seals `event` (an event without chain members) into `user`'s stream and
    /// returns once it is durable. `date` (`YYYY-MM-DD`, UTC) names its file.
    pub async fn append(
        &self,
        user: &str,
        event: Map<String, Value>,
        date: String,
    ) -> Result<Appended, String> {
        self.submit(user, event, date, None).await
    }

    async fn submit(
        &self,
        user: &str,
        event: Map<String, Value>,
        date: String,
        sign: Option<Arc<SigningKey>>,
    ) -> Result<Appended, String> {
        let cell = {
            let mut map = self.lock_map();
            if self.closed.load(Ordering::SeqCst) {
                return Err(StreamError::Stopped.to_string());
            }
            map.entry(user.to_string()).or_default().clone()
        };
        let stream = cell
            .get_or_try_init(|| async {
                let (this, name) = (self.opening(), user.to_string());
                let opened = tokio::task::spawn_blocking(move || this.start(&name))
                    .await
                    .map_err(|e| StreamError::Io {
                        path: PathBuf::new(),
                        source: io::Error::other(e),
                    })?;
                if let Some(tell) = &*self.new_stream.lock().unwrap_or_else(|e| e.into_inner()) {
                    tell();
                }
                opened
            })
            .await
            .map_err(|e| e.to_string())?;
        let (reply, answer) = oneshot::channel();
        stream
            .tx
            .send(Job {
                event,
                date,
                sign,
                reply,
            })
            .await
            .map_err(|_| StreamError::Stopped.to_string())?;
        answer
            .await
            .unwrap_or_else(|_| Err(StreamError::Stopped.to_string()))
    }

    /// Appends an event of the daemon's own (an `agent_event` it made, without chain
    /// members) to `user`'s stream, through the same commit path as the callers'
    /// events (chain, HMAC, fsync).
    pub async fn append_own(
        &self,
        user: &str,
        event: Map<String, Value>,
    ) -> Result<Appended, String> {
        let (_, date) = crate::clock::utc_now();
        self.append(user, event, date).await
    }

    /// Appends a checkpoint event to `user`'s stream: `event` gets its
    /// `metadata.checkpoint` at commit, signed by `key` over the event just before it,
    /// so it always covers its own predecessor.
    pub async fn append_checkpoint(
        &self,
        user: &str,
        event: Map<String, Value>,
        key: Arc<SigningKey>,
    ) -> Result<Appended, String> {
        let (_, date) = crate::clock::utc_now();
        self.submit(user, event, date, Some(key)).await
    }

    /// Calls `tell` each time a new stream is opened (its directory made), in place
    /// of what was told before.
    pub fn on_new_stream(&self, tell: impl Fn() + Send + Sync + 'static) {
        *self.new_stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(tell));
    }

    /// Every open stream's head, by name. Exists for signed checkpoints.
    pub fn heads(&self) -> Vec<StreamHead> {
        self.lock_map()
            .values()
            .filter_map(|cell| cell.get())
            .map(|s| s.head.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// A mark to ask later which streams gained events since. Exists for signed
    /// checkpoints.
    pub fn mark(&self) -> Mark {
        Mark(self.commits.load(Ordering::SeqCst))
    }

    /// Lets every stream's thread commit what it was given, then waits for them.
    /// Appends after this are refused.
    pub async fn close(&self) {
        {
            let mut map = self.lock_map();
            self.closed.store(true, Ordering::SeqCst);
            map.clear();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// What opening a stream needs, without borrowing `self` into a blocking task.
    fn opening(&self) -> Opening {
        Opening {
            dir: self.dir.clone(),
            signer: self.signer.clone(),
            commits: self.commits.clone(),
            threads: self.threads.clone(),
        }
    }

    fn start(&self, user: &str) -> Result<Stream, StreamError> {
        self.opening().start(user)
    }
}

/// Opens a stream and starts its writer thread.
struct Opening {
    dir: PathBuf,
    signer: Arc<(String, Keys)>,
    commits: Arc<AtomicU64>,
    threads: Threads,
}

/// The streams' writer threads, joined at close.
type Threads = Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>;

impl Opening {
    fn start(&self, user: &str) -> Result<Stream, StreamError> {
        let writer = Writer::open(&self.dir.join(user), self.signer.clone())?;
        let head = Arc::new(Mutex::new(StreamHead {
            name: user.to_string(),
            seq: writer.next_seq.checked_sub(1),
            hash: writer.prev.clone(),
            changed: Mark(0),
        }));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (h, commits) = (head.clone(), self.commits.clone());
        let thread = std::thread::Builder::new()
            .name(format!(
                "auditship-seal-{}",
                user.chars().take(8).collect::<String>()
            ))
            .spawn(move || run(writer, rx, h, commits))
            .map_err(|e| StreamError::Io {
                path: self.dir.join(user),
                source: e,
            })?;
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(thread);
        Ok(Stream { tx, head })
    }
}

/// A stream's writer thread: takes what waits, commits it as one group, answers.
fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Job>,
    head: Arc<Mutex<StreamHead>>,
    commits: Arc<AtomicU64>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (events, replies): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .map(|j| ((j.event, j.date, j.sign), j.reply))
            .unzip();
        let n = events.len();
        let committed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.commit(events)));
        let results = committed.unwrap_or_else(|_| {
            // The head moves only after a durable write: the stream goes on.
            tracing::error!(stream = %writer.dir.display(), "a sealed stream's commit panicked");
            (0..n)
                .map(|_| Err("internal error (panic)".to_string()))
                .collect()
        });
        if results.iter().any(Result::is_ok) {
            let mark = commits.fetch_add(1, Ordering::SeqCst) + 1;
            let mut h = head.lock().unwrap_or_else(|e| e.into_inner());
            h.seq = writer.next_seq.checked_sub(1);
            h.hash = writer.prev.clone();
            h.changed = Mark(mark);
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// The writing end of one stream, with its head.
struct Writer {
    dir: PathBuf,
    signer: Arc<(String, Keys)>,
    /// Held for the writer's life: the format's lock on the stream.
    _lock: File,
    next_seq: u64,
    prev: String,
    /// The stream's last file, as far as this writer knows.
    last: Option<PathBuf>,
}

impl Writer {
    fn open(dir: &Path, signer: Arc<(String, Keys)>) -> Result<Writer, StreamError> {
        super::setup::private_dir(dir).map_err(io_at(dir))?;
        let lock_path = dir.join(".lock");
        let lock = writer::open_private(&lock_path, false).map_err(io_at(&lock_path))?;
        writer::lock_exclusive(&lock, LOCK_WAIT).map_err(|e| match e {
            None => StreamError::Locked(dir.to_path_buf()),
            Some(e) => StreamError::Io {
                path: lock_path.clone(),
                source: e,
            },
        })?;
        let files = writer::stream_files(dir).map_err(io_at(dir))?;
        if let Some(last) = files.last() {
            writer::terminate_partial_line(last).map_err(io_at(last))?;
        }
        let mut head = None;
        for f in files.iter().rev() {
            head = writer::last_member(f).map_err(io_at(f))?;
            if head.is_some() {
                break;
            }
        }
        let (next_seq, prev) = match head {
            Some(h) => (h.seq + 1, h.hash_str().to_owned()),
            None => (0, audit::ZERO_HASH.to_owned()),
        };
        Ok(Writer {
            dir: dir.to_path_buf(),
            signer,
            _lock: lock,
            next_seq,
            prev,
            last: files.last().cloned(),
        })
    }

    /// Chains, seals, writes and syncs `events` as one group. One result per event:
    /// where it was appended, or why not.
    fn commit(&mut self, events: Vec<Pending>) -> Vec<Result<Appended, String>> {
        let date = events
            .iter()
            .map(|(_, d, _)| d.as_str())
            .max()
            .unwrap_or("");
        let target = self.target(date);
        let (kid, keys) = (&self.signer.0, &self.signer.1);
        let mut bytes = Vec::new();
        let mut sealed = Vec::with_capacity(events.len());
        let (mut seq, mut prev) = (self.next_seq, self.prev.clone());
        for (event, _, sign) in &events {
            let signed;
            let event = match (sign, seq.checked_sub(1)) {
                (Some(key), Some(covered)) => {
                    signed = with_checkpoint(event, &self.name(), covered, &prev, key);
                    &signed
                }
                _ => event,
            };
            let body = serde_json::to_string(event).unwrap_or_else(|_| "{}".into());
            match audit::seal(
                &crate::record::chained(&body, seq, &prev),
                Some((kid, keys)),
            ) {
                Ok(s) => {
                    bytes.extend_from_slice(&s.line);
                    sealed.push(Ok((seq, s.hash.clone())));
                    prev = s.hash;
                    seq += 1;
                }
                Err(e) => sealed.push(Err(StreamError::Seal(e).to_string())),
            }
        }
        // A group none of whose events could be sealed writes nothing.
        if !bytes.is_empty() {
            if let Err(e) = self.write(&target, &bytes) {
                let e = e.to_string();
                return sealed.into_iter().map(|_| Err(e.clone())).collect();
            }
            self.next_seq = seq;
            self.prev = prev;
            self.last = Some(target.clone());
        }
        sealed
            .into_iter()
            .map(|r| {
                r.map(|(seq, hash)| Appended {
                    file: target.clone(),
                    seq,
                    hash,
                })
            })
            .collect()
    }

    /// The stream's name: its directory's, the user's name.
    fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The file for events of `date`: that day's, or the last file when its name
    /// sorts later (name order is chain order).
    fn target(&self, date: &str) -> PathBuf {
        let day = self.dir.join(format!("audit-{date}.jsonl"));
        match &self.last {
            Some(last) if last.file_name() > day.file_name() => last.clone(),
            _ => day,
        }
    }

    /// Appends `bytes` to `target` in one `write`, then syncs it (and the directory
    /// when the file is new); cut back on failure.
    fn write(&self, target: &Path, bytes: &[u8]) -> Result<(), StreamError> {
        let is_new = !target.exists();
        let mut file = writer::open_private(target, true).map_err(io_at(target))?;
        writer::append_whole(&mut file, bytes, true).map_err(io_at(target))?;
        if is_new {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_at(&self.dir))?;
        }
        Ok(())
    }
}

/// `event` with `metadata.checkpoint`: `key`'s signature over `stream`'s head
/// `seq`/`hash`.
fn with_checkpoint(
    event: &Map<String, Value>,
    stream: &str,
    seq: u64,
    hash: &str,
    key: &SigningKey,
) -> Map<String, Value> {
    let mut event = event.clone();
    let checkpoint = key.sign(stream, seq, hash).to_json();
    if let Some(Value::Object(meta)) = event.get_mut("metadata") {
        meta.insert("checkpoint".into(), checkpoint);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(n: u64) -> Map<String, Value> {
        let v = json!({
            "v": 1, "id": format!("e{n}"), "timestamp": "2026-11-26T07:06:42.000Z",
            "user_id": "u", "session_id": "s", "host": "h", "action": "agent_event",
            "resource": "r", "outcome": "success", "metadata": {"n": n},
        });
        v.as_object().unwrap().clone()
    }

    fn keys() -> Keys {
        let mut k = Keys::new();
        k.insert("k", &[7u8; 32]);
        k
    }

    /// The lines of a stream, checked as one chain with the key: their `seq`s.
    fn checked_seqs(dir: &Path) -> Vec<u64> {
        let mut verifier = audit::Verifier::new(keys());
        let mut seqs = Vec::new();
        for f in writer::stream_files(dir).unwrap() {
            for line in std::fs::read(&f).unwrap().split(|&b| b == b'\n') {
                let mut problems = Vec::new();
                if let audit::Checked::Member { head, .. } =
                    verifier.check_line(line, &mut problems)
                {
                    assert!(problems.is_empty(), "{problems:?}");
                    seqs.push(head.seq);
                }
            }
        }
        seqs
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_chain_per_user_and_heads_tell_what_moved_since_a_mark() {
        let t = std::env::temp_dir().join(format!("auditship-streams-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        super::super::setup::private_dir(&t).unwrap();
        let streams = {
            let t = t.clone();
            tokio::task::spawn_blocking(move || Streams::open(&t, "k", &keys()))
                .await
                .unwrap()
                .unwrap()
        };
        let streams = Arc::new(streams);
        let mut calls = Vec::new();
        for n in 0..200u64 {
            let (s, user) = (streams.clone(), if n % 4 == 0 { "bob" } else { "alice" });
            calls.push(tokio::spawn(async move {
                s.append(user, event(n), "2026-11-26".into()).await
            }));
        }
        for c in calls {
            c.await.unwrap().unwrap();
        }
        assert_eq!(checked_seqs(&t.join("alice")), (0..150).collect::<Vec<_>>());
        assert_eq!(checked_seqs(&t.join("bob")), (0..50).collect::<Vec<_>>());

        let mark = streams.mark();
        let own = streams.append_own("alice", event(999)).await.unwrap();
        assert_eq!(own.seq, 150);
        let heads = streams.heads();
        let head = |name: &str| heads.iter().find(|h| h.name == name).unwrap().clone();
        assert_eq!(head("alice").seq, Some(150));
        assert_eq!(head("alice").hash, own.hash);
        assert!(head("alice").gained_since(mark));
        assert!(!head("bob").gained_since(mark));
        assert_eq!(head("bob").seq, Some(49));
        streams.close().await;
        assert!(
            streams
                .append("alice", event(1), "2026-11-26".into())
                .await
                .is_err()
        );

        // Opened again, each stream goes on from its files.
        let again = {
            let t = t.clone();
            tokio::task::spawn_blocking(move || Streams::open(&t, "k", &keys()))
                .await
                .unwrap()
                .unwrap()
        };
        let heads = again.heads();
        assert_eq!(heads.len(), 2);
        let next = again
            .append("alice", event(1000), "2099-01-02".into())
            .await
            .unwrap();
        assert_eq!(next.seq, 151);
        assert!(
            next.file.ends_with("audit-2099-01-02.jsonl"),
            "{:?}",
            next.file
        );
        // A clock set back writes to the last file, never before it.
        let back = again
            .append("alice", event(1001), "2026-11-20".into())
            .await
            .unwrap();
        assert!(back.file.ends_with("audit-2099-01-02.jsonl"));
        assert_eq!(checked_seqs(&t.join("alice")), (0..153).collect::<Vec<_>>());
        again.close().await;
        std::fs::remove_dir_all(&t).unwrap();
    }
}
