//! `auditship run`: the daemon.

use crate::config;
use crate::daemon::{Begin, End};
use std::io::Write;
use std::process::ExitCode;

/// Run the shipping daemon: watch audit directories, verify, queue durably, ship.
///
/// Without a configuration file it runs on an embedded default for one user: it
/// watches ~/.claude/audit, keeps its state (queue, checkpoints) under
/// $XDG_STATE_HOME/auditship (else ~/.local/state/auditship) and ships to
/// shipped.jsonl there. SIGTERM or SIGINT stop it gracefully (reading stops, sinks
/// drain for up to agent.shutdown_timeout); a second signal exits at once, losing
/// nothing, since the queue is durable. SIGHUP reloads the configuration: a file with
/// errors is refused (logged, counted in /metrics) and the daemon runs on; a valid
/// one restarts the pipeline in place on it (the queue and checkpoints carry over)
/// and ships one `agent_reload` record, not a stop and a start.
/// Logs go to stderr (RUST_LOG sets the level).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship run                                   # embedded default, no config needed
  auditship run --config /etc/auditship/auditship.toml
  RUST_LOG=debug auditship run")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: Args) -> ExitCode {
    // A stop asked for while the daemon is still starting is kept, not left to the
    // signal's default action (the process killed): see `EarlySignals`.
    let early = EarlySignals::catch();
    let (cfg, daemon) = match config::load_daemon(args.config.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship run: invalid configuration:\n{e}"
            );
            return ExitCode::from(1);
        }
    };
    init_logging(daemon.agent.log_json);
    if let Some(w) = config::coverage::record_dir_warning(&cfg, &daemon) {
        tracing::warn!("{w}");
    }
    crate::daemon::limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("auditship-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship run: cannot start the runtime: {e}"
            );
            return ExitCode::from(1);
        }
    };
    let flag = args.config.config.clone();
    let result = runtime.block_on(async move {
        let mut events = match signal_events(flag, early) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return Err(());
            }
        };
        let (mut cfg, mut daemon) = (cfg, daemon);
        let mut begin = Begin::Start;
        // The configuration the running pipeline was started on: a reloaded one that
        // cannot start (a listener address taken, a certificate unreadable) gives way
        // to it again, so a bad reload never stops the daemon.
        let mut last_good: Option<(config::Config, config::daemon::DaemonConfig)> = None;
        let mut sealer = crate::daemon::sealing::SealerSlot::new();
        let result = loop {
            let mut next = None;
            let shutdown = async {
                next = events.recv().await;
                match next {
                    Some(Event::Reload(_)) => End::Reload,
                    _ => End::Stop,
                }
            };
            let hash = daemon.hash.clone();
            let current = (cfg.clone(), daemon.clone());
            if let Err(e) =
                crate::daemon::run_pipeline(cfg, daemon, begin, shutdown, &mut sealer).await
            {
                let Some(good) = last_good.take().filter(|_| e.before_start()) else {
                    tracing::error!(error = %e, "daemon failed");
                    break Err(());
                };
                tracing::error!(error = %e, config_hash = %hash, "the reloaded configuration cannot start; going back to the previous one");
                crate::daemon::note_reload(Some(format!("the new configuration cannot start: {e}")));
                (cfg, daemon) = good;
                begin = Begin::Reload {
                    previous_config_hash: hash,
                };
                continue;
            }
            match next {
                Some(Event::Reload(new)) => {
                    tracing::info!(config_hash = %new.1.hash, "configuration reloaded: the pipeline starts again on it");
                    last_good = Some(current);
                    (cfg, daemon) = *new;
                    begin = Begin::Reload {
                        previous_config_hash: hash,
                    };
                }
                Some(Event::Stop) | None => break Ok(()),
            }
        };
        sealer.stop().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::from(1),
    }
}

/// SIGTERM, SIGINT and SIGHUP caught from the first moment of `run`, before the
/// handlers that act on them exist, and raised again once they do: a stop or a
/// reload asked for while the daemon starts is acted on as at any other moment.
struct EarlySignals {
    caught: Vec<(i32, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

impl EarlySignals {
    fn catch() -> EarlySignals {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut caught = Vec::new();
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            match signal_hook::flag::register(sig, flag.clone()) {
                Ok(_) => caught.push((sig, flag)),
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "auditship run: signal {sig}: {e}");
                }
            }
        }
        EarlySignals { caught }
    }

    /// Raises again each signal caught so far, for the handlers now installed.
    fn replay(&self) {
        for (sig, flag) in &self.caught {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = signal_hook::low_level::raise(*sig);
            }
        }
    }
}

/// What the signals ask for.
enum Event {
    Stop,
    /// A new configuration, already validated.
    Reload(Box<(config::Config, config::daemon::DaemonConfig)>),
}

/// SIGTERM or SIGINT: stop (a second one exits the process at once). SIGHUP: load
/// and validate the configuration again; a valid one is a reload, an invalid one is
/// logged and counted, and the daemon runs on with what it has.
fn signal_events(
    flag: Option<std::path::PathBuf>,
    early: EarlySignals,
) -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<Event>> {
    use futures_util::StreamExt;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    early.replay();
    tokio::spawn(async move {
        let mut stopping = false;
        while let Some(sig) = signals.next().await {
            if sig == SIGHUP {
                if stopping {
                    continue;
                }
                let flag = flag.clone();
                let loaded =
                    tokio::task::spawn_blocking(move || config::load_daemon(flag.as_deref())).await;
                match loaded {
                    Ok(Ok(new)) => {
                        tracing::info!("SIGHUP: configuration valid; reloading");
                        // READY=1 follows once the pipeline runs again.
                        crate::daemon::notify::reloading();
                        crate::daemon::note_reload(None);
                        let _ = tx.send(Event::Reload(Box::new(new)));
                    }
                    Ok(Err(e)) => {
                        tracing::error!(
                            "SIGHUP: configuration refused, running on the previous one:\n{e}"
                        );
                        crate::daemon::note_reload(Some(e.to_string()));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: loading the configuration failed")
                    }
                }
                continue;
            }
            if !stopping {
                stopping = true;
                crate::daemon::notify::stopping();
                tracing::info!(signal = sig, "shutdown requested");
                let _ = tx.send(Event::Stop);
            } else {
                tracing::warn!(
                    signal = sig,
                    "second signal: exiting now (queued batches ship after the next start)"
                );
                std::process::exit(0);
            }
        }
    });
    Ok(rx)
}

/// Logs to stderr: plain lines (journald adds its own metadata), or one JSON object
/// per line with `[agent] log_format = "json"`. RUST_LOG sets the level.
fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
