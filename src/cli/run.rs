//! `auditship run`: the daemon.

use crate::config;
use std::io::Write;
use std::process::ExitCode;

/// Run the shipping daemon: watch audit directories, verify, queue durably, ship.
///
/// Without a configuration file it runs on an embedded default for one user: it
/// watches ~/.claude/audit, keeps its state (queue, checkpoints) under
/// $XDG_STATE_HOME/auditship (else ~/.local/state/auditship) and ships to
/// shipped.jsonl there. SIGTERM or SIGINT stop it gracefully (reading stops, sinks
/// drain for up to agent.shutdown_timeout); a second signal exits at once, losing
/// nothing, since the queue is durable. Logs go to stderr (RUST_LOG sets the level).
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
    init_logging();
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
    let result = runtime.block_on(async {
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return Err(());
            }
        };
        crate::daemon::run(cfg, daemon, shutdown)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "daemon failed");
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::from(1),
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use futures_util::StreamExt;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Some(sig) = signals.next().await {
            if sig == SIGHUP {
                tracing::warn!(
                    "SIGHUP: configuration reload is not supported yet; restart to apply changes"
                );
                continue;
            }
            match tx.take() {
                Some(tx) => {
                    tracing::info!(signal = sig, "shutdown requested");
                    let _ = tx.send(());
                }
                None => {
                    tracing::warn!(
                        signal = sig,
                        "second signal: exiting now (queued batches ship after the next start)"
                    );
                    std::process::exit(0);
                }
            }
        }
    });
    Ok(async move {
        let _ = rx.await;
    })
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
