//! `auditship install-hooks`: wire Claude Code's hooks to `auditship record`.

use crate::install_hooks::{self as hooks, Scope, Version, mcp};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Write hook entries that run `auditship record` for every Claude Code hook event.
///
/// Merges idempotently into the settings file: other settings and other hooks are
/// kept, entries of ours are updated in place, a backup of the old file is written
/// next to it. Claude Code releases before 2.1.101 reject a settings file that names
/// an event they do not know, so the installer asks `claude --version` (or takes
/// --claude-version) and installs only the events that release knows.
///
/// Managed hooks name their configuration file (`record --config PATH`, by default
/// /etc/auditship/auditship.toml), so AUDITSHIP_CONFIG in a user's environment cannot
/// point them elsewhere. With --sealed-socket, a drop-in next to that file
/// (conf.d/50-auditship-sealed.toml, 0644) sets `[record] socket`: sealed mode, where
/// the daemon's sealer writes every user's trail. Claude Code has no per-hook setting that makes a failed or
/// timed-out hook block: failing closed is `record`'s own `on_error = "block"`.
///
/// With --telemetry, the settings' `env` block also turns on Claude Code's
/// telemetry and points its OTLP log exporter (http/protobuf, with tool details) at
/// the daemon's receiver: the endpoint given, else the `[telemetry] listen` of the
/// configuration the hooks use (--config, or the one the command names), else
/// http://127.0.0.1:4318/v1/logs. Other variables, metrics
/// and traces settings among them, are left as they are.
///
/// With --mcp, also registers `auditship mcp` (with the same --config as the hooks)
/// as the MCP server `auditship` where Claude Code reads MCP servers for the scope,
/// keeping every other server: the model then has the tool
/// mcp__auditship__record_decision, which writes ai_decision events. A managed-mcp.json
/// gives the servers it names exclusive control: users' own servers stop loading.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship install-hooks                       # ~/.claude/settings.json
  sudo auditship install-hooks --scope managed  # /etc/claude-code/managed-settings.json, all users
  sudo auditship install-hooks --scope managed --sealed-socket /run/auditship/record.sock

  sudo auditship install-hooks --scope managed --telemetry  # and Claude Code's OTLP logs to the receiver
  auditship install-hooks --mcp                 # and the model's record_decision tool
  auditship install-hooks --dry-run --claude-version 2.1.90")]
pub struct Args {
    /// user: ~/.claude/settings.json ($CLAUDE_CONFIG_DIR honoured); managed: /etc/claude-code/managed-settings.json
    #[arg(long, value_enum, default_value = "user")]
    pub scope: ScopeArg,
    /// Print the resulting settings and what would change; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Edit this settings file instead (e.g. /etc/claude-code/managed-settings.d/50-auditship.json)
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// The command hooks run [default: this binary followed by `record`]
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// Claude Code version to install for [default: ask `claude --version`]
    #[arg(long, value_name = "X.Y.Z")]
    pub claude_version: Option<String>,
    /// Seconds Claude Code waits for one `record` call
    #[arg(long, default_value_t = hooks::DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// The configuration hooks pass to `record --config` [default: none for user scope; /etc/auditship/auditship.toml for managed scope]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Sealed mode: also write conf.d/50-auditship-sealed.toml next to that
    /// configuration, so `record` forwards every call to the sealer at this socket
    /// (e.g. /run/auditship/record.sock)
    #[arg(long, value_name = "SOCKET")]
    pub sealed_socket: Option<PathBuf>,

    /// Also point Claude Code's OTLP log exporter at the telemetry receiver [default endpoint: from the configuration's [telemetry] listen, else http://127.0.0.1:4318/v1/logs]
    #[arg(long, value_name = "ENDPOINT", num_args = 0..=1, default_missing_value = "")]
    pub telemetry: Option<String>,
    /// The same as --telemetry ENDPOINT
    #[arg(long, value_name = "ENDPOINT", conflicts_with = "telemetry")]
    pub telemetry_endpoint: Option<String>,

    /// Also register `auditship mcp` as Claude Code's MCP server `auditship`, so the model can record its decisions (user: ~/.claude.json, $CLAUDE_CONFIG_DIR honoured; managed: /etc/claude-code/managed-mcp.json)
    #[arg(long)]
    pub mcp: bool,
    /// Register the MCP server in this file instead (e.g. a project's .mcp.json)
    #[arg(long, value_name = "FILE", requires = "mcp")]
    pub mcp_path: Option<PathBuf>,
}

/// The drop-in `--sealed-socket` writes, in the `conf.d` next to the hooks'
/// configuration.
pub const SEALED_DROP_IN: &str = "50-auditship-sealed.toml";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ScopeArg {
    User,
    Managed,
}

pub fn run(args: Args) -> ExitCode {
    match install(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "auditship install-hooks: {e}");
            ExitCode::from(2)
        }
    }
}

fn install(args: Args) -> Result<(), String> {
    let scope = match args.scope {
        ScopeArg::User => Scope::User,
        ScopeArg::Managed => Scope::Managed,
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config_dir = std::env::var_os("CLAUDE_CONFIG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = match (args.path, scope) {
        (Some(p), _) => p,
        (None, Scope::Managed) => PathBuf::from(hooks::MANAGED_SETTINGS_PATH),
        (None, Scope::User) => {
            let home = home.as_deref().ok_or("HOME is not set")?;
            hooks::user_settings_path(home, config_dir.as_deref())
        }
    };
    let mcp_path = match (args.mcp, args.mcp_path, scope) {
        (false, _, _) => None,
        (true, Some(p), _) => Some(p),
        (true, None, Scope::Managed) => Some(PathBuf::from(mcp::MANAGED_MCP_PATH)),
        (true, None, Scope::User) => {
            let home = home.as_deref().ok_or("HOME is not set")?;
            Some(mcp::user_mcp_path(home, config_dir.as_deref()))
        }
    };
    let given_command = args.command.clone();
    let command = match args.command {
        Some(c) => c,
        None => {
            let exe = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
            let exe = exe.to_str().ok_or("the path of this binary is not UTF-8")?;
            format!("{} record", hooks::shell_quote(exe))
        }
    };
    let config = match (args.config, scope) {
        (Some(p), _) => Some(p),
        (None, Scope::Managed) => Some(PathBuf::from(crate::config::DEFAULT_PATH)),
        (None, Scope::User) => None,
    };
    let config = match config {
        Some(p) if p.is_relative() => {
            let cwd = std::env::current_dir().map_err(|e| format!("--config: {e}"))?;
            Some(cwd.join(p))
        }
        other => other,
    };
    let command = match &config {
        Some(p) => hooks::with_config(&command, p),
        None => command,
    };
    if let Some(socket) = &args.sealed_socket {
        let config = config.as_deref().ok_or(
            "--sealed-socket needs the configuration the hooks name: --config, or --scope managed",
        )?;
        sealed_client(config, socket, args.dry_run)?;
    }
    let version = match args.claude_version {
        Some(v) => Some(
            v.parse::<Version>()
                .map_err(|e| format!("--claude-version {v:?}: {e}"))?,
        ),
        None => hooks::detect_claude_version(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let env = match args.telemetry.or(args.telemetry_endpoint) {
        None => Vec::new(),
        Some(endpoint) => {
            // The receiver's address is in the configuration the hooks use.
            let named = config
                .clone()
                .or_else(|| hooks::config_of_command(&command));
            let endpoint = telemetry_endpoint(&endpoint, named.as_deref(), &mut out)?;
            hooks::telemetry_env(&endpoint)
        }
    };
    hooks::run(
        scope,
        &path,
        &command,
        args.timeout,
        version,
        &env,
        args.dry_run,
        &mut out,
    )?;
    // The hooks' configuration, when it loads here, must let `record` give up on the
    // lock before Claude Code gives up on `record`.
    if let Ok(c) = crate::config::load(config.as_deref())
        && c.record.lock_timeout_ms >= args.timeout.saturating_mul(1000)
    {
        let _ = writeln!(
            out,
            "warning: record.lock_timeout_ms ({} ms) is not below the hook timeout ({} s): \
             Claude Code would kill `record` before it can fail closed",
            c.record.lock_timeout_ms, args.timeout
        );
    }
    if let Some(mcp_path) = mcp_path {
        let config = config.or_else(|| hooks::config_of_command(&command));
        let entry = mcp::server_entry(&mcp_program(given_command.as_deref())?, config.as_deref());
        mcp::run(scope, &mcp_path, &entry, args.dry_run, &mut out)?;
    }
    Ok(())
}

/// The program the MCP server entry runs: the one the hook command runs (`--command
/// "/opt/auditship record"`), else this binary.
fn mcp_program(command: Option<&str>) -> Result<String, String> {
    if let Some(program) = command.and_then(hooks::recorder_path) {
        return Ok(program);
    }
    let exe = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    exe.to_str()
        .map(str::to_owned)
        .ok_or_else(|| "the path of this binary is not UTF-8".to_string())
}

/// Writes the sealed client's drop-in next to `config`: `[record] socket`. Prints
/// what it did (or would do); leaves an identical file alone.
fn sealed_client(
    config: &std::path::Path,
    socket: &std::path::Path,
    dry_run: bool,
) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if !socket.is_absolute() {
        return Err(format!(
            "--sealed-socket {}: expected an absolute path",
            socket.display()
        ));
    }
    let socket_text = socket
        .to_str()
        .ok_or("--sealed-socket: the path is not UTF-8")?;
    let dir = config
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .join(crate::config::layers::CONF_DIR);
    let file = dir.join(SEALED_DROP_IN);
    let text = format!(
        "# Written by `auditship install-hooks --sealed-socket`: sealed mode. `record`\n\
         # forwards every hook call to the daemon's sealer at this socket; the sealer\n\
         # writes the trail the user cannot change. Remove this file for local mode.\n\
         [record]\nsocket = {}\n",
        toml::Value::from(socket_text)
    );
    let mut out = std::io::stdout().lock();
    if std::fs::read_to_string(&file).is_ok_and(|old| old == text) {
        let _ = writeln!(
            out,
            "{}: unchanged (sealed mode, socket {})",
            file.display(),
            socket.display()
        );
        return Ok(());
    }
    if dry_run {
        let _ = write!(out, "would write {}:\n{text}", file.display());
        return Ok(());
    }
    let at = |e: std::io::Error| format!("{}: {e}", file.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(at)?;
    let temp = dir.join(format!(".{SEALED_DROP_IN}.tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temp)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, &file))
        .and_then(|()| std::fs::File::open(&dir)?.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(at(e));
    }
    let _ = writeln!(
        out,
        "{}: written (sealed mode, socket {})",
        file.display(),
        socket.display()
    );
    Ok(())
}

/// The receiver's endpoint: the one given, else the configuration's
/// `[telemetry] listen`, else the default (with a warning saying why).
fn telemetry_endpoint(
    given: &str,
    config: Option<&std::path::Path>,
    out: &mut dyn Write,
) -> Result<String, String> {
    if !given.is_empty() {
        let ok = given.starts_with("http://") || given.starts_with("https://");
        if !ok {
            return Err(format!(
                "--telemetry {given:?}: expected an http:// URL such as {}",
                hooks::DEFAULT_TELEMETRY_ENDPOINT
            ));
        }
        return Ok(given.to_string());
    }
    let why = match crate::config::load_daemon(config) {
        Ok((_, d)) => match d.telemetry {
            Some(t) if t.listen.port() == 0 => {
                // The system chose the port: the running daemon wrote it down.
                let file = d.agent.state_dir.join(crate::daemon::TELEMETRY_ADDR_FILE);
                let bound = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|a| a.trim().parse::<std::net::SocketAddr>().ok());
                return match bound {
                    Some(a) => Ok(hooks::telemetry_endpoint(a)),
                    None => Err(format!(
                        "[telemetry] listen = \"{}\" has no fixed port and {} names none (is the daemon running?): give the endpoint (--telemetry http://127.0.0.1:PORT/v1/logs)",
                        t.listen,
                        file.display()
                    )),
                };
            }
            Some(t) => return Ok(hooks::telemetry_endpoint(t.listen)),
            None => "the configuration has no [telemetry] listen: the receiver is off".to_string(),
        },
        Err(e) => format!("the configuration does not load ({})", e.0.join("; ")),
    };
    let _ = writeln!(
        out,
        "warning: {why}; Claude Code's logs go to {}",
        hooks::DEFAULT_TELEMETRY_ENDPOINT
    );
    Ok(hooks::DEFAULT_TELEMETRY_ENDPOINT.to_string())
}
