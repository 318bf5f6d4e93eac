//! Wires the stages: one reader thread (watch → tail → check → queue) and one task per
//! sink (queue → ship), owned here, stopped here.
//!
//! Shutdown (the future passed to [`run`] resolves): the reader stops reading and
//! commits what it has; sinks get `shutdown_timeout` to drain the queue; then they are
//! cancelled and the queue is flushed. Nothing is lost at any point: what was not
//! shipped stays in the queue or in the source files for the next start.

pub mod heartbeat;
pub mod notify;
pub mod reader;
pub mod refusals;
pub mod sealing;
pub mod telemetry;

use crate::check::Encoder;
use crate::config::Config;
use crate::config::daemon::DaemonConfig;
use crate::queue::{Queue, Tip};
use crate::ship::{self, SinkStats, sinks::Sink};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("state directory {0}: {1}")]
    StateDir(std::path::PathBuf, std::io::Error),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("sink {0}: {1}")]
    Sink(String, String),
    #[error("reader thread: {0}")]
    Thread(std::io::Error),
    #[error("the reader stopped (queue storage failure or a bug); see the log above")]
    ReaderFailed,
    #[error("sealer: {0}")]
    Sealer(#[from] crate::sealer::SealerError),
}

impl DaemonError {
    /// Whether the pipeline failed while starting, before it read or shipped
    /// anything: a previous configuration can take over.
    pub fn before_start(&self) -> bool {
        !matches!(self, DaemonError::ReaderFailed)
    }
}

/// Installs rustls' ring provider once (reqwest is built without a default provider).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How a run of the pipeline begins: the lifecycle record it ships first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The process starts: `agent_start`.
    Start,
    /// A reload replaced the configuration with this hash: `agent_reload`.
    Reload { previous_config_hash: String },
}

/// How a run of the pipeline ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The process stops: `agent_stop` ships with the drain.
    Stop,
    /// A new pipeline follows on a new configuration: no record here, the next
    /// run's `agent_reload` says it.
    Reload,
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    daemon: DaemonConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut sealer = sealing::SealerSlot::new();
    let result = run_pipeline(
        config,
        daemon,
        Begin::Start,
        async {
            shutdown.await;
            End::Stop
        },
        &mut sealer,
    )
    .await;
    sealer.stop().await;
    result
}

/// Runs one pipeline until `shutdown` resolves (saying whether the process stops or
/// a reload follows), then drains and returns. The sealer in `sealer` is brought in
/// line with the configuration first; it runs on across a reload, and is stopped
/// before the last pass when the process stops.
pub async fn run_pipeline(
    config: Config,
    mut daemon: DaemonConfig,
    begin: Begin,
    shutdown: impl Future<Output = End>,
    sealer: &mut sealing::SealerSlot,
) -> Result<(), DaemonError> {
    install_crypto_provider();
    raise_open_file_limit();
    // Sinks first: a bad TLS setting stops the start before anything is opened.
    let mut sinks = Vec::with_capacity(daemon.sinks.len());
    for cfg in &daemon.sinks {
        sinks.push(Sink::new(cfg).map_err(|e| DaemonError::Sink(cfg.name.clone(), e))?);
    }
    sealer.apply(&config, &mut daemon).await?;
    let state = daemon.agent.state_dir.clone();
    let queue = open_queue(&daemon).await?;
    tracing::info!(
        state_dir = %state.display(),
        sources = daemon.sources.len(),
        sinks = daemon.sinks.len(),
        queued_batches = queue.batches(),
        "auditship started"
    );
    let (committed_tx, committed_rx) = tokio::sync::watch::channel(Tip::default());
    let announce = Announce(Arc::new(committed_tx));
    let reading = ReaderTask::start(&config, &daemon, &queue, &announce, sealer)?;
    let mut shipping = Shipping::start(&daemon, sinks, &queue, &committed_rx);
    let archiver = spawn_archiver(&daemon, &queue)?;
    let receiver = match &daemon.telemetry {
        Some(t) => receiver(&config, &daemon, t, reading.waker.clone()).await,
        None => None,
    };
    let telemetry = Arc::new(telemetry::Telemetry {
        receiver: receiver.as_ref().map(|r| r.view.clone()),
        started_ms: crate::clock::now_ms(),
        config_hash: daemon.hash.clone(),
        host: daemon.agent.host.clone(),
        state_dir: state.clone(),
        queue: queue.clone(),
        reader: reading.stats.clone(),
        reader_alive: reading.alive.clone(),
        sinks: std::mem::take(&mut shipping.views),
        unhealthy_after: daemon.metrics.unhealthy_after,
        sealer: sealer.sealer().map(|s| telemetry::SealerView {
            listen: s.listen().display().to_string(),
            stats: s.stats().clone(),
            streams: s.streams().clone(),
        }),
    });
    let lifecycle = Lifecycle::new(&config, &daemon, &begin, &queue, &announce, &telemetry);
    if lifecycle.beats {
        lifecycle
            .store(match begin {
                Begin::Start => "agent_start",
                Begin::Reload { .. } => "agent_reload",
            })
            .await;
    }
    let beating = CancellationToken::new();
    lifecycle.beat_every(daemon.agent.heartbeat_interval, &beating);
    // systemd: ready once the queue is open, checkpoints loaded and every stage runs;
    // the watchdog is fed only while the reader shows progress (or waits, healthy).
    notify::ready();
    notify::status("shipping");
    feed_watchdog(&telemetry, daemon.agent.rescan_interval, &beating);
    let listening = CancellationToken::new();
    // An address left by a run that did not stop cleanly must not lead `status` to
    // whoever listens there now: withdrawn before binding, written once bound.
    let _ = std::fs::remove_file(state.join(telemetry::ADDR_FILE));
    if let Some(addr) = daemon.metrics.listen
        && let Some(l) = telemetry::bind(addr, &state).await
    {
        tokio::spawn(telemetry::serve(l, telemetry.clone(), listening.clone()));
    }

    let mut reading = reading;
    let mut failed = false;
    let mut end = End::Stop;
    tokio::select! {
        e = shutdown => end = e,
        ok = &mut reading.done => {
            // The reader ended on its own: its queue storage failed, or it panicked.
            failed = !matches!(ok, Ok(true));
            tracing::error!("the reader stopped unexpectedly; stopping the daemon");
        }
    }
    if end == End::Stop || failed {
        // Requests already accepted are sealed before the last pass reads them.
        sealer.stop().await;
    }
    tracing::info!("stopping: reading ends, sinks drain");
    if let Some(r) = receiver {
        // First, so what it acknowledged is in its streams before the last pass reads.
        r.stop.cancel();
        let _ = r.task.await;
        let _ = std::fs::remove_file(state.join(TELEMETRY_ADDR_FILE));
    }
    // STOPPING=1 or RELOADING=1 was sent by whoever asked (`cli::run`): a reload
    // ends this pipeline too, and systemd must not take it for a stop.
    notify::status("pipeline stopping: sinks drain");
    reading.stop().await;
    let _ = tokio::task::spawn_blocking(move || archiver.stop()).await;
    beating.cancel();
    if lifecycle.beats && !failed && end == End::Stop {
        // Shipped with the drain: the SIEM sees this host stop on purpose.
        lifecycle.store("agent_stop").await;
    }
    shipping.drain(daemon.agent.shutdown_timeout, &queue).await;
    listening.cancel();
    let _ = std::fs::remove_file(state.join(telemetry::ADDR_FILE));
    shipping.tracker.wait().await;
    let q = queue.clone();
    let _ = tokio::task::spawn_blocking(move || q.flush()).await;
    tracing::info!(queued_batches = queue.batches(), "auditship stopped");
    if failed {
        return Err(DaemonError::ReaderFailed);
    }
    Ok(())
}

/// Creates the state directory (0700) and opens the queue in it, waiting up to 10 s
/// for an operator's command that holds its lock for a moment (a second daemon holds
/// it for good).
async fn open_queue(daemon: &DaemonConfig) -> Result<Arc<Queue>, DaemonError> {
    let state = daemon.agent.state_dir.clone();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&state)
            .map_err(|e| DaemonError::StateDir(state.clone(), e))?;
    }
    let sink_names: Vec<String> = daemon.sinks.iter().map(|s| s.name.clone()).collect();
    let queue_dir = state.join("queue");
    let cache = daemon.queue.cache_capacity;
    let queue = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Queue::open(&queue_dir, cache, &sink_names) {
                Err(e) if e.is_locked() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                r => return r,
            }
        }
    })
    .await
    .map_err(|e| DaemonError::Thread(std::io::Error::other(e)))??;
    queue.set_limit(daemon.queue.max_bytes);
    Ok(Arc::new(queue))
}

/// Tells the sinks of stored batches. Two writers (the reader's commits, lifecycle
/// records): the newest id wins. Only the reader knows whether it is at the live
/// edge; a lifecycle record (`caught_up: None`) leaves that as the reader last said.
#[derive(Clone)]
struct Announce(Arc<tokio::sync::watch::Sender<Tip>>);

impl Announce {
    fn send(&self, id: u64, caught_up: Option<bool>) {
        self.0.send_if_modified(|v| {
            let newer = id > v.id;
            if newer {
                v.id = id;
                v.caught_up = caught_up.unwrap_or(v.caught_up);
            }
            newer
        });
    }
}

/// The reader thread while it runs.
struct ReaderTask {
    thread: std::thread::JoinHandle<()>,
    /// Resolves when the reader ends, however it ends (`true`: it stopped as asked).
    done: tokio::sync::oneshot::Receiver<bool>,
    stop: Arc<AtomicBool>,
    waker: crate::watch::Waker,
    stats: Arc<reader::ReaderStats>,
    alive: Arc<AtomicBool>,
}

impl ReaderTask {
    /// Builds the reader over the sources and starts its thread.
    fn start(
        config: &Config,
        daemon: &DaemonConfig,
        queue: &Arc<Queue>,
        announce: &Announce,
        sealer: &sealing::SealerSlot,
    ) -> Result<ReaderTask, DaemonError> {
        let stop = Arc::new(AtomicBool::new(false));
        let encoder = Encoder::new(
            &daemon.agent.host,
            &daemon.agent.fields,
            config.redactor.clone(),
        );
        let limits = reader::Limits::for_sinks(
            daemon.sinks.iter().map(|s| (s.max_events, s.max_bytes)),
            daemon.agent.rescan_interval,
        );
        let mut rdr = reader::Reader::new(
            daemon.sources.clone(),
            queue.clone(),
            encoder,
            limits,
            Box::new({
                let announce = announce.clone();
                move |tip: Tip| announce.send(tip.id, Some(tip.caught_up))
            }),
            stop.clone(),
        )?;
        rdr.refusals.host = daemon.agent.host.clone();
        let stats = rdr.stats.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let mut hints = crate::watch::Hints::new();
        let waker = hints.waker();
        if let Some(s) = sealer.sealer() {
            // A user's first sealed event makes a stream directory no watch covers yet.
            let waker = hints.waker();
            s.streams().on_new_stream(move || waker.wake());
        }
        // Tells the main task when the reader ends, however it ends (a panic included).
        struct Done(Option<tokio::sync::oneshot::Sender<bool>>);
        impl Drop for Done {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(false);
                }
            }
        }
        let (done_tx, done) = tokio::sync::oneshot::channel::<bool>();
        let thread = std::thread::Builder::new()
            .name("auditship-reader".into())
            .spawn({
                let alive = alive.clone();
                move || {
                    let mut done = Done(Some(done_tx));
                    let ok = rdr.run(&mut hints).is_ok();
                    alive.store(false, Ordering::SeqCst);
                    if let Some(tx) = done.0.take() {
                        let _ = tx.send(ok);
                    }
                }
            })
            .map_err(DaemonError::Thread)?;
        Ok(ReaderTask {
            thread,
            done,
            stop,
            waker,
            stats,
            alive,
        })
    }

    /// Asks the reader to stop (it commits what it read) and waits for its thread.
    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// One task per sink, and what stops them: `draining` (ship what is queued, then
/// end) and `cancel` (end now).
struct Shipping {
    tracker: TaskTracker,
    draining: CancellationToken,
    cancel: CancellationToken,
    views: Vec<telemetry::SinkView>,
}

impl Shipping {
    fn start(
        daemon: &DaemonConfig,
        sinks: Vec<Sink>,
        queue: &Arc<Queue>,
        committed: &tokio::sync::watch::Receiver<Tip>,
    ) -> Shipping {
        let tracker = TaskTracker::new();
        let draining = CancellationToken::new();
        let cancel = CancellationToken::new();
        let mut views = Vec::new();
        for (cfg, sink) in daemon.sinks.iter().zip(sinks) {
            let stats = Arc::new(SinkStats::default());
            views.push(telemetry::SinkView {
                name: cfg.name.clone(),
                kind: cfg.kind.name(),
                stats: stats.clone(),
            });
            let ended = Ended(stats.clone());
            let run = ship::run_sink(
                cfg.clone(),
                sink,
                queue.clone(),
                committed.clone(),
                draining.clone(),
                cancel.clone(),
                stats,
            );
            tracker.spawn(async move {
                // Marks the sink's task ended however it ends (a panic included).
                let _ended = ended;
                run.await
            });
        }
        tracker.close();
        Shipping {
            tracker,
            draining,
            cancel,
            views,
        }
    }

    /// Lets the sinks drain the queue for at most `timeout`, then cancels them.
    async fn drain(&self, timeout: std::time::Duration, queue: &Queue) {
        self.draining.cancel();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                queued_batches = queue.batches(),
                "sinks did not drain within the shutdown timeout; the rest ships after the next start"
            );
        }
        self.cancel.cancel();
    }
}

/// Lifecycle records (`agent_start`, `agent_reload`, `heartbeat`, `agent_stop`),
/// stored as batches of their own and announced to the sinks.
struct Lifecycle {
    beat: Arc<heartbeat::Heartbeat>,
    queue: Arc<Queue>,
    announce: Announce,
    /// Whether lifecycle records are on (`heartbeat_interval` not zero).
    beats: bool,
}

impl Lifecycle {
    fn new(
        config: &Config,
        daemon: &DaemonConfig,
        begin: &Begin,
        queue: &Arc<Queue>,
        announce: &Announce,
        telemetry: &telemetry::Telemetry,
    ) -> Arc<Lifecycle> {
        let beat = Arc::new(heartbeat::Heartbeat {
            encoder: Encoder::new(
                &daemon.agent.host,
                &daemon.agent.fields,
                config.redactor.clone(),
            ),
            host: daemon.agent.host.clone(),
            config_hash: daemon.hash.clone(),
            previous_config_hash: match begin {
                Begin::Start => None,
                Begin::Reload {
                    previous_config_hash,
                } => Some(previous_config_hash.clone()),
            },
            started_ms: telemetry.started_ms,
        });
        Arc::new(Lifecycle {
            beat,
            queue: queue.clone(),
            announce: announce.clone(),
            beats: !daemon.agent.heartbeat_interval.is_zero(),
        })
    }

    /// Stores one lifecycle record (off the async workers) and announces it; a
    /// failure is logged.
    async fn store(&self, what: &'static str) {
        let (beat, queue) = (self.beat.clone(), self.queue.clone());
        match tokio::task::spawn_blocking(move || beat.store(what, &queue)).await {
            Ok(Ok(id)) => self.announce.send(id, None),
            Ok(Err(e)) => tracing::error!(error = %e, what, "cannot store a lifecycle record"),
            Err(e) => tracing::error!(error = %e, what, "lifecycle record task"),
        }
    }

    /// A `heartbeat` every `every` until `beating` is cancelled.
    fn beat_every(self: &Arc<Self>, every: std::time::Duration, beating: &CancellationToken) {
        if !self.beats {
            return;
        }
        let (me, beating) = (self.clone(), beating.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => me.store("heartbeat").await,
                    _ = beating.cancelled() => return,
                }
            }
        });
    }
}

/// Feeds systemd's watchdog (when it asks for one) while the reader runs and showed
/// progress within three rescans (at least 30 s), until `beating` is cancelled.
fn feed_watchdog(
    telemetry: &telemetry::Telemetry,
    rescan: std::time::Duration,
    beating: &CancellationToken,
) {
    let Some(every) = notify::watchdog_interval() else {
        return;
    };
    let (reader, alive, beating) = (
        telemetry.reader.clone(),
        telemetry.reader_alive.clone(),
        beating.clone(),
    );
    tokio::spawn(async move {
        let grace = (rescan * 3).max(std::time::Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = beating.cancelled() => return,
            }
            let last = reader.alive_ms.load(Ordering::Relaxed);
            let quiet = crate::clock::now_ms().saturating_sub(last);
            if alive.load(Ordering::SeqCst) && (last == 0 || quiet < grace.as_millis() as u64) {
                notify::watchdog();
            } else {
                tracing::error!(
                    quiet_ms = quiet,
                    "the reader shows no progress; not feeding the watchdog"
                );
            }
        }
    });
}

/// Where the daemon writes the address its telemetry receiver listens on, in its
/// state directory (removed at stop).
pub const TELEMETRY_ADDR_FILE: &str = "telemetry.addr";

/// The telemetry receiver while it runs.
struct Running {
    view: telemetry::ReceiverView,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the telemetry receiver; `None` (logged) when it cannot listen: shipping
/// goes on without it.
async fn receiver(
    config: &Config,
    daemon: &DaemonConfig,
    t: &crate::config::daemon::TelemetryConfig,
    wake: crate::watch::Waker,
) -> Option<Running> {
    use crate::otel::server;
    let rc = &config.record;
    let settings = server::Settings {
        max_body_bytes: t.max_body_bytes,
        max_pending_bytes: t.max_body_bytes.saturating_mul(8).max(64 << 20),
        host: daemon.agent.host.clone(),
        redactor: config.redactor.clone(),
        compliance: config.compliance.clone(),
        keep: crate::record::content::Keep {
            prompts: rc.keep_prompts,
            tool_input: rc.keep_tool_input,
            tool_response: rc.keep_tool_response,
            messages: rc.keep_messages,
            max_bytes: rc.max_kept_bytes,
        },
        users: t.users.clone(),
        own: Some(server::Own {
            // SAFETY: geteuid has no preconditions.
            uid: unsafe { libc::geteuid() },
            user_id: rc.user_id.clone(),
            identity: rc.identity.clone(),
        }),
        target: crate::otel::stream::Target {
            dir: t.dir.clone(),
            signer: t.signer.clone(),
        },
        wake: Some(wake),
    };
    let stats = Arc::new(crate::otel::Stats::default());
    let r = match server::Receiver::bind(t.listen, settings, stats.clone()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(listen = %t.listen, error = %e, "cannot listen for Claude Code's telemetry; shipping goes on without it");
            return None;
        }
    };
    let listen = r.local_addr().unwrap_or(t.listen);
    // For `install-hooks --telemetry` when the port was the system's choice.
    let _ = std::fs::write(
        daemon.agent.state_dir.join(TELEMETRY_ADDR_FILE),
        listen.to_string(),
    );
    tracing::info!(listen = %listen, dir = %t.dir.display(), "telemetry receiver listening");
    let stop = CancellationToken::new();
    let task = tokio::spawn(r.serve(stop.clone()));
    Some(Running {
        view: telemetry::ReceiverView {
            listen: listen.to_string(),
            stats,
        },
        stop,
        task,
    })
}

/// Marks a sink's task as ended when dropped: `/health` reports a sink task that
/// ended while the daemon runs.
struct Ended(Arc<SinkStats>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::SeqCst);
    }
}

/// Configuration reloads refused since the process started, and the last refusal.
pub static RELOAD_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Configuration reloads applied since the process started.
pub static RELOADS_APPLIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static LAST_RELOAD_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records a reload attempt: `None` when it was applied, else why it was refused.
pub fn note_reload(error: Option<String>) {
    if error.is_some() {
        RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
    } else {
        RELOADS_APPLIED.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(mut e) = LAST_RELOAD_ERROR.lock() {
        *e = error;
    }
}

/// Why the last reload was refused, if it was.
pub fn last_reload_error() -> Option<String> {
    LAST_RELOAD_ERROR.lock().ok().and_then(|e| e.clone())
}

/// The archive thread: a pass shortly after start (within a minute), then every
/// `[archive] interval`. Passes are blocking file work, off the async workers.
struct Archiver {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Archiver {
    /// Stops the thread after its current pass, if any.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn spawn_archiver(daemon: &DaemonConfig, queue: &Arc<Queue>) -> Result<Archiver, DaemonError> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (cfg, queue) = (daemon.clone(), queue.clone());
    let thread = std::thread::Builder::new()
        .name("auditship-archive".into())
        .spawn(move || {
            let mut wait = cfg.archive.interval.min(std::time::Duration::from_secs(60));
            loop {
                match rx.recv_timeout(wait) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let r = crate::archive::pass(&cfg, &queue, std::time::SystemTime::now());
                log_archive_pass(&r);
                wait = cfg.archive.interval;
            }
        })
        .map_err(DaemonError::Thread)?;
    Ok(Archiver { stop: tx, thread })
}

/// One line per pass that did something (each error was logged by the pass, with
/// its file and cause).
fn log_archive_pass(r: &crate::archive::Report) {
    if !r.archived.is_empty() || !r.errors.is_empty() || !r.expired.is_empty() {
        tracing::info!(
            archived = r.archived.len(),
            waiting = r.skipped.len(),
            expired = r.expired.len(),
            errors = r.errors.len(),
            "archive pass"
        );
    }
}

/// Tracked files keep their descriptors open: raise the soft limit to the hard one.
/// glibc gives each thread that allocates an arena of its own (up to 8 per core), and
/// each keeps what its thread freed. The daemon's threads pass batch buffers between
/// them, so arenas only multiply retained memory: two are enough (measured: peak RSS
/// 40 MB with the default, 35 MB with two, same CPU). Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit write to and read from a local struct only.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
