//! `auditship check-config`: validate the configuration and print what takes effect.

use crate::config::daemon::DaemonConfig;
use crate::config::{self, Config};
use crate::install_hooks as hooks;
use crate::tls::cleartext_exposure;
use crate::words::count;
use std::io::Write;
use std::process::ExitCode;

/// Validate the configuration and print the effective settings, secrets masked.
///
/// The main file and every conf.d/*.toml next to it are merged first (later files
/// win; [[source]] and [[sink]] merge by name) and ${VAR} references expanded. Every
/// error is reported at once, each with its file, line and column. Key and token
/// files are read (so a missing file is an error here, not at 3 a.m.) but their
/// contents are never printed; nor are settings taken from the environment (shown as
/// written, "${VAR}"), credentials in proxy URLs, or header values that look like
/// credentials. Plain http:// that leaves this machine (allowed by allow_plaintext)
/// is listed as a warning. The output ends with the configuration's hash (the same on
/// every host given the same settings) and the files read. Exit 0 when valid, 1 on
/// any error.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship check-config
  auditship check-config --config /etc/auditship/auditship.toml")]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub fn run(args: Args) -> ExitCode {
    match config::load_daemon(args.config.config.as_deref()) {
        Ok((cfg, _)) if lock_timeout_problem(&cfg).is_some() => {
            let problem = lock_timeout_problem(&cfg).unwrap_or_default();
            let at = cfg
                .file
                .as_ref()
                .map(|f| format!("{}: ", f.display()))
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr(),
                "auditship check-config: 1 error:\n{at}{problem}"
            );
            ExitCode::from(1)
        }
        Ok((cfg, daemon)) => {
            let settings = config::effective::settings(&cfg, Some(&daemon), &daemon.from_env);
            let text = match toml::to_string(&settings) {
                Ok(t) => t,
                Err(e) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "auditship check-config: cannot render: {e}"
                    );
                    return ExitCode::from(1);
                }
            };
            let source = match (&cfg.file, cfg.files.len()) {
                (Some(p), 1) => p.display().to_string(),
                (Some(p), n) => format!(
                    "{} and {}",
                    p.display(),
                    count((n - 1) as u64, "drop-in", "drop-ins")
                ),
                (None, 0) => "built-in defaults (no configuration file)".into(),
                (None, n) => format!(
                    "built-in defaults and {}",
                    count(n as u64, "drop-in", "drop-ins")
                ),
            };
            let mut files = String::new();
            for f in &cfg.files {
                files.push_str(&format!("#   {}\n", f.display()));
            }
            if files.is_empty() {
                files.push_str("#   (none)\n");
            }
            let mut notes = String::new();
            let warnings = plaintext_warnings(&daemon)
                .into_iter()
                .chain(config::coverage::record_dir_warning(&cfg, &daemon));
            for w in warnings {
                let _ = writeln!(std::io::stderr(), "auditship check-config: warning: {w}");
                notes.push_str(&format!("# warning: {w}\n"));
            }
            let mut out = std::io::stdout().lock();
            let _ = write!(
                out,
                "# configuration: {source}\n# valid; effective settings (secrets masked; settings from the environment as written):\n{notes}\n{text}\n# config hash: {}\n# files read, in order:\n{files}",
                cfg.hash
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "auditship check-config: {}:\n{e}",
                count(e.0.len() as u64, "error", "errors")
            );
            ExitCode::from(1)
        }
    }
}

/// `record` must give up on the stream lock (in sealed mode: on the sealer, and
/// then on the lock), and fail closed, before Claude Code kills it: its timeouts
/// must be below the hook timeout. That is the shortest
/// `timeout` of our hooks in the managed and the user settings, or, with none
/// installed yet, the one `install-hooks` writes.
fn lock_timeout_problem(cfg: &Config) -> Option<String> {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "auditship".into());
    let mut settings = vec![std::path::PathBuf::from(hooks::MANAGED_SETTINGS_PATH)];
    if let Some(home) = std::env::var_os("HOME") {
        let dir = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty());
        settings.push(hooks::user_settings_path(
            home.as_ref(),
            dir.as_deref().map(AsRef::as_ref),
        ));
    }
    let (secs, from) = match hooks::installed_timeout(&settings, &program) {
        Some((secs, file)) => (
            secs,
            format!("the shortest hook timeout in {}", file.display()),
        ),
        None => (
            hooks::DEFAULT_TIMEOUT_SECS as f64,
            "the hook timeout install-hooks writes".to_string(),
        ),
    };
    let lock = cfg.record.lock_timeout_ms;
    if (lock as f64) >= secs * 1000.0 {
        return Some(format!(
            "record.lock_timeout_ms: {lock} ms is not below {from} ({secs} s): Claude Code would \
             kill `record` before it could report the failure or fail closed; set it lower \
             (default {})",
            config::DEFAULT_LOCK_TIMEOUT_MS
        ));
    }
    cfg.record.socket.as_ref()?;
    // Sealed mode: `record` waits for the sealer, then, under `allow`, for the lock
    // of the user's own stream.
    let socket = cfg.record.socket_timeout_ms;
    let (worst, what) = match cfg.record.on_error {
        config::OnError::Allow => (
            socket + lock,
            "with lock_timeout_ms after it (on_error = \"allow\")",
        ),
        config::OnError::Block => (socket, "alone"),
    };
    ((worst as f64) >= secs * 1000.0).then(|| {
        format!(
            "record.socket_timeout_ms: {socket} ms, {what}, is not below {from} ({secs} s): \
             Claude Code would kill `record` before it could fail closed or record locally; set \
             it lower (default {})",
            config::DEFAULT_SOCKET_TIMEOUT_MS
        )
    })
}

/// What the configuration sends unencrypted off this machine, as `allow_plaintext`
/// permits: one line per exposure, naming the table and setting.
fn plaintext_warnings(d: &DaemonConfig) -> Vec<String> {
    let nets = d
        .sinks
        .iter()
        .filter_map(|s| Some((format!("sink {:?}", s.name), s.kind.net()?)))
        .chain(
            d.archive
                .s3
                .iter()
                .map(|s3| ("archive.s3".to_string(), &s3.net)),
        );
    let mut out = Vec::new();
    for s in &d.sinks {
        if let crate::config::daemon::SinkKind::Kafka(k) = &s.kind {
            for host in crate::config::kafka::plaintext_brokers(k) {
                out.push(format!(
                    "sink {:?}: brokers: plain TCP to {host}, which is not a loopback address: records and credentials cross the network unencrypted (allow_plaintext = true)",
                    s.name
                ));
            }
        }
    }
    for (table, net) in nets {
        for (setting, risk) in cleartext_exposure(&net.endpoint, net.proxy.as_deref()) {
            out.push(format!(
                "{table}: {setting}: {risk} (allow_plaintext = true)"
            ));
        }
    }
    out
}
