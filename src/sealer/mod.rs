//! The sealer: the daemon's side of sealed mode. `record` forwards each hook call
//! over a Unix socket; the sealer learns who called from the kernel, maps, minimises
//! and redacts the payload exactly as `record` does ([`crate::record::event`]),
//! seals it into that user's stream (chain + HMAC with a key only the service
//! holds), makes it durable, and only then answers (docs/SEALER.md).
//!
//! Invariants:
//! - an event's `user_id`, `metadata.os_user`, `uid`, `gid` and `pid` come from
//!   `SO_PEERCRED` and the user database (and `[sealer.identity]`), never from the
//!   request;
//! - an answer `ok` means the event is synced to disk; nothing is answered `ok`
//!   before that;
//! - no client can hold more than its own connection: reading a request has a
//!   deadline (`read_timeout`), a payload beyond `max_payload_bytes` (or beyond what
//!   `max_buffered_bytes` leaves) is hashed as it streams past and recorded as its
//!   digest, connections beyond `max_connections` are answered with an error at
//!   once, and hashing a large payload runs off the async workers.
//!
//! What it does not do: it keeps no payload on disk except as the event it maps
//! to, and it does not ship; the daemon's reader ships the sealed directory like
//! any source.

pub mod checkpoints;
pub mod client;
pub mod peer;
pub mod proto;
pub mod setup;
pub mod streams;

use crate::audit::Keys;
use crate::audit::checkpoint::SigningKey;
use crate::config::Config;
use crate::config::sealer::{Limits, SealerConfig};
use crate::record::{self, Caller, Input};
use checkpoints::Checkpointer;
use proto::{Answer, Header, Kind};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use streams::Streams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The first bytes of a payload kept only as its digest, read for its top-level
/// members (event name, session, cwd).
const DIGEST_PREFIX: usize = 64 * 1024;
/// Payload bytes read at a time once a payload is hashed rather than held.
const CHUNK: usize = 64 * 1024;
/// Room made for a held payload before each read, at least.
const MIN_SPARE: usize = 4 * 1024;
/// Payloads up to this size are mapped on the async worker that read them.
const INLINE_MAPPING: usize = 16 * 1024;
/// How long writing an answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SealerError {
    #[error("sealed directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("HMAC key {0}: {1}")]
    Key(PathBuf, std::io::Error),
    #[error("signing key: {0}")]
    SigningKey(std::io::Error),
    #[error("socket {0}: {1}")]
    Socket(PathBuf, std::io::Error),
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
    #[error("starting the sealer: {0}")]
    Start(String),
}

/// What a reload may change without the socket or the streams changing.
struct Settings {
    config: Arc<Config>,
    identity: BTreeMap<String, String>,
    limits: Limits,
    host: String,
}

/// What every connection shares.
struct Shared {
    settings: RwLock<Arc<Settings>>,
    streams: Arc<Streams>,
    /// Payload bytes held in memory by all requests.
    buffered: Arc<AtomicU64>,
    stats: Arc<Stats>,
    /// Login names by uid, looked up at most once a minute each.
    names: std::sync::Mutex<std::collections::HashMap<u32, (String, Instant)>>,
}

/// How long a uid's name is taken from [`Shared::names`].
const NAME_TTL: Duration = Duration::from_secs(60);

impl Shared {
    /// The peer with these credentials, named from the user database (off the
    /// async workers, and only once a minute per uid: a flood of connections from
    /// one user costs one lookup).
    async fn peer(&self, c: peer::Credentials) -> Result<peer::Peer, String> {
        let cached = {
            let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            names
                .get(&c.uid)
                .filter(|(_, at)| at.elapsed() < NAME_TTL)
                .map(|(name, _)| name.clone())
        };
        if let Some(user) = cached {
            return Ok(peer::Peer {
                uid: c.uid,
                gid: c.gid,
                pid: c.pid,
                user,
            });
        }
        let p = tokio::task::spawn_blocking(move || c.named())
            .await
            .map_err(|e| e.to_string())?;
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names.insert(p.uid, (p.user.clone(), Instant::now()));
        Ok(p)
    }
}

/// Counts since the sealer started; each request counts once.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events sealed from whole payloads.
    pub sealed: AtomicU64,
    /// Events sealed from a payload's digest (too large, or not arrived whole).
    pub digests: AtomicU64,
    /// Requests answered with an error (nothing recorded).
    pub refused: AtomicU64,
    /// Connections turned away at once: `max_connections` reached.
    pub turned_away: AtomicU64,
}

/// A running sealer.
pub struct Sealer {
    listen: PathBuf,
    /// Device and inode of the socket it bound: removed at stop only if still ours.
    socket_id: (u64, u64),
    place: Place,
    keys: Keys,
    shared: Arc<Shared>,
    stop: CancellationToken,
    accept: tokio::task::JoinHandle<()>,
    connections: TaskTracker,
    checkpointer: Arc<tokio::sync::Mutex<Checkpointer>>,
    /// The round every `checkpoint_interval`, stopped before the last round.
    ticker: (CancellationToken, tokio::task::JoinHandle<()>),
}

/// What cannot change without starting the sealer again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    listen: PathBuf,
    dir: PathBuf,
    hmac_kid: String,
    hmac_key_file: PathBuf,
    max_connections: usize,
    signing_key_file: PathBuf,
    checkpoint_interval: Duration,
}

impl Place {
    fn of(cfg: &SealerConfig) -> Place {
        Place {
            listen: cfg.listen.clone(),
            dir: cfg.dir.clone(),
            hmac_kid: cfg.hmac_kid.clone(),
            hmac_key_file: cfg.hmac_key_file.clone(),
            max_connections: cfg.limits.max_connections,
            signing_key_file: cfg.signing_key_file.clone(),
            checkpoint_interval: cfg.checkpoint_interval,
        }
    }
}

impl Sealer {
    /// Prepares the sealed directory and the key, opens the streams, binds the
    /// socket and starts serving. `config` is what the mapping runs on (`[record]`,
    /// `[redact]`, `[compliance]`).
    pub async fn start(cfg: &SealerConfig, config: Arc<Config>) -> Result<Sealer, SealerError> {
        let (keys, streams, signing_key) = prepare(cfg).await?;
        let streams = Arc::new(streams);
        let (listener, socket_id) = match bind(&cfg.listen) {
            Ok(bound) => bound,
            Err(e) => {
                streams.close().await;
                return Err(SealerError::Socket(cfg.listen.clone(), e));
            }
        };
        let shared = Arc::new(Shared {
            settings: RwLock::new(Arc::new(Settings::of(cfg, config))),
            streams,
            buffered: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(Stats::default()),
            names: Default::default(),
        });
        let checkpointer = Arc::new(tokio::sync::Mutex::new(Checkpointer::new(signing_key)));
        let ticker_stop = CancellationToken::new();
        let ticker = tokio::spawn(checkpoints::every(
            checkpointer.clone(),
            shared.streams.clone(),
            cfg.checkpoint_interval,
            crate::host::host_name(),
            stream_user_id(shared.clone()),
            ticker_stop.clone(),
        ));
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            Arc::new(tokio::sync::Semaphore::new(cfg.limits.max_connections)),
            stop.clone(),
            connections.clone(),
        ));
        tracing::info!(
            listen = %cfg.listen.display(),
            dir = %cfg.dir.display(),
            kid = %cfg.hmac_kid,
            "sealer listening"
        );
        Ok(Sealer {
            listen: cfg.listen.clone(),
            socket_id,
            place: Place::of(cfg),
            keys,
            shared,
            stop,
            accept,
            connections,
            checkpointer,
            ticker: (ticker_stop, ticker),
        })
    }

    /// The sealer's HMAC key (for checking the sealed streams when shipping them).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The sealed streams. Exists for signed checkpoints: their heads, marks, and
    /// the daemon's own events ([`Streams::append_own`]).
    pub fn streams(&self) -> &Arc<Streams> {
        &self.shared.streams
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// The socket it listens on.
    pub fn listen(&self) -> &std::path::Path {
        &self.listen
    }

    /// Whether `cfg` can be applied to this sealer in place ([`Sealer::update`]):
    /// same socket, directory, key and connection limit.
    pub fn fits(&self, cfg: &SealerConfig) -> bool {
        let same_key = match &cfg.hmac_key {
            Some(k) => k.mac(&cfg.hmac_kid, b"fit") == self.keys.mac(&self.place.hmac_kid, b"fit"),
            // The file is gone since: starting again creates a new one.
            None => false,
        };
        self.place == Place::of(cfg) && same_key
    }

    /// Applies a reloaded configuration: the mapping, identities and limits
    /// (requests already being read keep the ones they started with).
    pub fn update(&self, cfg: &SealerConfig, config: Arc<Config>) {
        let settings = Arc::new(Settings::of(cfg, config));
        *self
            .shared
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// Stops accepting, serves the connections already accepted to their end, signs
    /// every stream's head that is not yet signed, lets every stream commit what it
    /// holds, and removes the socket.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.accept.await;
        self.connections.close();
        self.connections.wait().await;
        self.ticker.0.cancel();
        let _ = self.ticker.1.await;
        let signed = self
            .checkpointer
            .lock()
            .await
            .round(
                &self.shared.streams,
                &crate::host::host_name(),
                stream_user_id(self.shared.clone()),
            )
            .await;
        tracing::info!(streams = signed, "sealer: stream heads signed at stop");
        self.shared.streams.close().await;
        use std::os::unix::fs::MetadataExt;
        if std::fs::symlink_metadata(&self.listen)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.socket_id)
        {
            let _ = std::fs::remove_file(&self.listen);
        }
        let s = &self.shared.stats;
        tracing::info!(
            sealed = s.sealed.load(Ordering::Relaxed),
            digests = s.digests.load(Ordering::Relaxed),
            refused = s.refused.load(Ordering::Relaxed),
            turned_away = s.turned_away.load(Ordering::Relaxed),
            "sealer stopped"
        );
    }
}

/// The sealed directory made private, the HMAC and signing keys read or created,
/// the streams opened.
async fn prepare(cfg: &SealerConfig) -> Result<(Keys, Streams, SigningKey), SealerError> {
    let (dir, kid, key_file, loaded, signing_key_file) = (
        cfg.dir.clone(),
        cfg.hmac_kid.clone(),
        cfg.hmac_key_file.clone(),
        cfg.hmac_key.clone(),
        cfg.signing_key_file.clone(),
    );
    tokio::task::spawn_blocking(move || {
        setup::private_dir(&dir).map_err(|e| SealerError::Dir(dir.clone(), e))?;
        let keys = match loaded {
            Some(k) => k,
            None => setup::hmac_key(&kid, &key_file)
                .map_err(|e| SealerError::Key(key_file.clone(), e))?,
        };
        let signing_key = setup::signing_key(&signing_key_file).map_err(SealerError::SigningKey)?;
        let streams = Streams::open(&dir, &kid, &keys)?;
        Ok((keys, streams, signing_key))
    })
    .await
    .map_err(|e| SealerError::Start(e.to_string()))?
}

/// The listening socket, and the device and inode of its file.
fn bind(path: &std::path::Path) -> std::io::Result<(tokio::net::UnixListener, (u64, u64))> {
    use std::os::unix::fs::MetadataExt;
    let listener = setup::bind(path)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok((listener, (meta.dev(), meta.ino())))
}

/// The `user_id` of a stream's own events: its user's identity as the settings in
/// force map it.
fn stream_user_id(shared: Arc<Shared>) -> impl Fn(&str) -> String + Send + Sync + 'static {
    move |name: &str| {
        let settings = shared
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        settings
            .identity
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }
}

impl Settings {
    fn of(cfg: &SealerConfig, config: Arc<Config>) -> Settings {
        Settings {
            config,
            identity: cfg.identity.clone(),
            limits: cfg.limits,
            host: crate::host::host_name(),
        }
    }
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    shared: Arc<Shared>,
    slots: Arc<tokio::sync::Semaphore>,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((conn, _)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        serve(conn, &shared).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    shared.stats.turned_away.fetch_add(1, Ordering::Relaxed);
                    let answer = Answer::Refused {
                        error: "the sealer is serving its maximum of connections (max_connections); try again".into(),
                    };
                    let _ = conn.try_write(&answer.encode());
                }
            },
            Err(e) => {
                // Out of descriptors, most likely: let connections end, then go on.
                tracing::warn!(error = %e, "sealer: accepting a connection failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// One connection: who, what, sealed, answered.
async fn serve(conn: UnixStream, shared: &Shared) {
    let settings = shared
        .settings
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let peer = match peer::credentials(&conn) {
        Ok(c) => shared.peer(c).await,
        Err(e) => Err(e.to_string()),
    };
    let (conn, answer) = match peer {
        Err(e) => {
            let error = format!("cannot tell who is calling (SO_PEERCRED): {e}");
            (Some(conn), Answer::Refused { error })
        }
        Ok(peer) => {
            let deadline = Instant::now() + settings.limits.read_timeout;
            match read_request(conn, &settings.limits, &shared.buffered, deadline).await {
                (conn, Err(error)) => {
                    tracing::debug!(uid = peer.uid, pid = peer.pid, %error, "sealer: request refused");
                    (conn, Answer::Refused { error })
                }
                (conn, Ok(request)) => (conn, seal(request, &peer, &settings, shared).await),
            }
        }
    };
    let counter = match &answer {
        Answer::Refused { .. } => &shared.stats.refused,
        Answer::Sealed { note: None, .. } => &shared.stats.sealed,
        Answer::Sealed { note: Some(_), .. } => &shared.stats.digests,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let Some(mut conn) = conn else {
        return;
    };
    let line = answer.encode();
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        conn.write_all(&line).await?;
        conn.shutdown().await
    })
    .await;
}

/// A request as read.
struct Request {
    header: Header,
    body: Body,
}

enum Body {
    /// The whole payload, and its share of the memory budget (held until the event
    /// is mapped).
    Whole { bytes: Vec<u8>, _held: Reserved },
    /// Only its digest: it was too large, or did not arrive whole in time.
    Digest {
        prefix: Vec<u8>,
        sha256: String,
        bytes: u64,
        complete: bool,
        error: String,
    },
}

/// A share of the sealer's memory budget, given back when dropped.
struct Reserved {
    budget: Arc<AtomicU64>,
    held: u64,
}

impl Reserved {
    fn new(budget: &Arc<AtomicU64>) -> Reserved {
        Reserved {
            budget: budget.clone(),
            held: 0,
        }
    }

    /// Holds `total` bytes instead of what it held, if the budget `max` allows.
    fn hold(&mut self, total: u64, max: u64) -> bool {
        if total <= self.held {
            return true;
        }
        let more = total - self.held;
        let before = self.budget.fetch_add(more, Ordering::SeqCst);
        if before + more > max {
            self.budget.fetch_sub(more, Ordering::SeqCst);
            return false;
        }
        self.held = total;
        true
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// A connection after reading: still there to answer, or lost on the way.
type Conn = Option<UnixStream>;

/// Reads the header and the payload within `deadline`. The connection comes back
/// for the answer whatever happened.
async fn read_request(
    mut conn: UnixStream,
    limits: &Limits,
    budget: &Arc<AtomicU64>,
    deadline: Instant,
) -> (Conn, Result<Request, String>) {
    let mut buf = Vec::with_capacity(8 * 1024);
    let end = loop {
        match proto::header_end(&buf) {
            Ok(Some(end)) => break end,
            Ok(None) => {}
            Err(e) => return (Some(conn), Err(e.to_string())),
        }
        let room = proto::MAX_HEADER_BYTES - buf.len();
        let mut chunk = vec![0u8; room.min(8 * 1024)];
        match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
            Err(_) => {
                let error = format!(
                    "no complete header within read_timeout ({:?})",
                    limits.read_timeout
                );
                return (Some(conn), Err(error));
            }
            Ok(Err(e)) => return (Some(conn), Err(format!("reading the header: {e}"))),
            Ok(Ok(0)) => return (Some(conn), Err(proto::ProtoError::HeaderCut.to_string())),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let header = match Header::parse(&buf[..end]) {
        Ok(h) => h,
        Err(e) => return (Some(conn), Err(e.to_string())),
    };
    buf.drain(..end);
    let (conn, body) = read_payload(conn, buf, limits, budget, deadline).await;
    (conn, body.map(|body| Request { header, body }))
}

/// Reads the payload to its end, in memory while it stays within the limits,
/// else as its digest.
async fn read_payload(
    mut conn: UnixStream,
    mut buf: Vec<u8>,
    limits: &Limits,
    budget: &Arc<AtomicU64>,
    deadline: Instant,
) -> (Conn, Result<Body, String>) {
    let mut reserved = Reserved::new(budget);
    loop {
        if buf.len() as u64 > limits.max_payload_bytes {
            let why = format!(
                "the payload is larger than max_payload_bytes ({})",
                limits.max_payload_bytes
            );
            return digest_rest(conn, buf, why, deadline).await;
        }
        if buf.capacity() - buf.len() < MIN_SPARE {
            // Doubling from a small start: a request holds about what it sent.
            let cap = limits.max_payload_bytes as usize + CHUNK;
            let more = buf
                .capacity()
                .max(MIN_SPARE * 2)
                .min(cap.saturating_sub(buf.len()));
            let total = (buf.len() + more) as u64;
            if !reserved.hold(total, limits.max_buffered_bytes) {
                let why = format!(
                    "the sealer holds its maximum of payload bytes in memory (max_buffered_bytes {})",
                    limits.max_buffered_bytes
                );
                return digest_rest(conn, buf, why, deadline).await;
            }
            buf.reserve_exact(more);
        }
        match tokio::time::timeout_at(deadline, conn.read_buf(&mut buf)).await {
            Err(_) => {
                let why = format!(
                    "the payload did not arrive whole within read_timeout ({:?})",
                    limits.read_timeout
                );
                return (Some(conn), Ok(digest_of(&buf, false, why)));
            }
            Ok(Err(e)) => {
                let why = format!("reading the payload: {e}");
                return (Some(conn), Ok(digest_of(&buf, false, why)));
            }
            Ok(Ok(0)) => {
                return (
                    Some(conn),
                    Ok(Body::Whole {
                        bytes: buf,
                        _held: reserved,
                    }),
                );
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// The digest body of `buf`, all that was received.
fn digest_of(buf: &[u8], complete: bool, error: String) -> Body {
    let mut hasher = Sha256::new();
    hasher.update(buf);
    Body::Digest {
        prefix: buf[..buf.len().min(DIGEST_PREFIX)].to_vec(),
        sha256: hex(hasher),
        bytes: buf.len() as u64,
        complete,
        error,
    }
}

fn hex(hasher: Sha256) -> String {
    let digest: [u8; 32] = hasher.finalize().into();
    String::from_utf8_lossy(&crate::audit::hex_lower(&digest)).into_owned()
}

/// Hashes what is held and the rest of the payload as it streams past, off the
/// async workers, until its end or the deadline.
async fn digest_rest(
    conn: UnixStream,
    buf: Vec<u8>,
    why: String,
    deadline: Instant,
) -> (Conn, Result<Body, String>) {
    let mut hasher = Sha256::new();
    hasher.update(&buf);
    let prefix = buf[..buf.len().min(DIGEST_PREFIX)].to_vec();
    let received = buf.len() as u64;
    drop(buf);
    let std_conn = match conn.into_std() {
        Ok(c) => c,
        Err(e) => return (None, Err(format!("reading the payload: {e}"))),
    };
    let hashed = tokio::task::spawn_blocking(move || {
        let r = hash_until(&std_conn, &mut hasher, deadline.into_std());
        (std_conn, hasher, r)
    })
    .await;
    let Ok((std_conn, hasher, (more, complete))) = hashed else {
        return (None, Err("hashing the payload failed".into()));
    };
    let conn = std_conn
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(std_conn))
        .ok();
    let error = if complete {
        why
    } else {
        format!("{why}; it did not arrive whole within read_timeout")
    };
    let body = Body::Digest {
        prefix,
        sha256: hex(hasher),
        bytes: received + more,
        complete,
        error,
    };
    (conn, Ok(body))
}

/// Reads `conn` (blocking) into `hasher` until its end or `deadline`: how many
/// bytes, and whether the end was reached.
fn hash_until(
    conn: &std::os::unix::net::UnixStream,
    hasher: &mut Sha256,
    deadline: std::time::Instant,
) -> (u64, bool) {
    use std::io::Read;
    let mut total = 0u64;
    let mut chunk = vec![0u8; CHUNK];
    if conn.set_nonblocking(false).is_err() {
        return (0, false);
    }
    let mut reader = conn;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || reader.set_read_timeout(Some(left)).is_err() {
            return (total, false);
        }
        match reader.read(&mut chunk) {
            Ok(0) => return (total, true),
            Ok(n) => {
                hasher.update(&chunk[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (total, false),
        }
    }
}

/// Maps the request as `peer`'s, seals it into their stream, and says how it went.
async fn seal(
    request: Request,
    peer: &peer::Peer,
    settings: &Arc<Settings>,
    shared: &Shared,
) -> Answer {
    let Request { header, body } = request;
    let note = match &body {
        Body::Digest { error, .. } => {
            tracing::warn!(uid = peer.uid, pid = peer.pid, %error, "sealer: payload recorded as its digest");
            Some(format!(
                "recorded as the payload's SHA-256 and length: {error}"
            ))
        }
        Body::Whole { .. } => None,
    };
    let caller = caller_of(peer, &header, settings);
    let (timestamp, date) = crate::clock::utc_now();
    let config = settings.config.clone();
    // A payload of the usual size maps in well under a millisecond: on this worker,
    // without a hop to another thread. A larger one maps off the async workers.
    let small = matches!(&body, Body::Whole { bytes, .. } if bytes.len() <= INLINE_MAPPING);
    let mapped = if small {
        Ok(map_request(&config, header.kind, &body, timestamp, &caller))
    } else {
        tokio::task::spawn_blocking(move || {
            map_request(&config, header.kind, &body, timestamp, &caller)
        })
        .await
    };
    let event = match mapped {
        Ok(Ok(e)) => e,
        Ok(Err(error)) => return Answer::Refused { error },
        Err(e) => {
            return Answer::Refused {
                error: format!("internal error mapping the payload: {e}"),
            };
        }
    };
    match shared.streams.append(&peer.user, event, date).await {
        Ok(a) => Answer::Sealed {
            stream: peer.user.clone(),
            seq: a.seq,
            hash: a.hash,
            note,
        },
        Err(error) => {
            tracing::error!(user = %peer.user, %error, "sealer: the event could not be made durable");
            Answer::Refused { error }
        }
    }
}

/// The event for a request, mapped as `record` maps it, made by `caller`.
fn map_request(
    config: &Config,
    kind: Kind,
    body: &Body,
    timestamp: String,
    caller: &Caller,
) -> Result<Map<String, Value>, String> {
    let input = match body {
        Body::Whole { bytes, .. } => match kind {
            Kind::Hook => Input::Hook(bytes),
            Kind::Decision => {
                Input::Decision(proto::parse_decision(bytes).map_err(|e| e.to_string())?)
            }
        },
        Body::Digest {
            prefix,
            sha256,
            bytes,
            complete,
            error,
        } => Input::Digest(record::Digest {
            prefix,
            sha256: sha256.clone(),
            bytes: *bytes,
            complete: *complete,
            error: error.clone(),
        }),
    };
    record::event(config, input, timestamp, caller).map_err(|e| e.to_string())
}

/// The caller as the kernel names it: `user_id` from `[sealer.identity]`, else the
/// login name; the kernel's ids in `metadata`.
fn caller_of(peer: &peer::Peer, header: &Header, settings: &Settings) -> Caller {
    let mut metadata = Map::new();
    metadata.insert("os_user".into(), Value::from(peer.user.as_str()));
    metadata.insert("uid".into(), Value::from(peer.uid));
    metadata.insert("gid".into(), Value::from(peer.gid));
    metadata.insert("pid".into(), Value::from(peer.pid));
    metadata.insert("sealed".into(), Value::Bool(true));
    Caller {
        user_id: settings
            .identity
            .get(&peer.user)
            .cloned()
            .unwrap_or_else(|| peer.user.clone()),
        host: settings.host.clone(),
        project_dir: header.project_dir.clone(),
        decision_session: None,
        metadata,
    }
}
