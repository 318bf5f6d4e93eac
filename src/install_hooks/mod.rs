//! `auditship install-hooks`: writes the hook entries that make Claude Code run
//! `auditship record` into a Claude Code settings file, idempotently.
//!
//! What it owns: the `hooks` entries whose command is our recorder (the program named
//! like ours, followed by the word `record`), in one settings file: the user's
//! (`~/.claude/settings.json`) or the machine's managed policy
//! (`/etc/claude-code/managed-settings.json`). With `--telemetry`, also the five
//! variables of its `env` block that turn on Claude Code's OTLP log export to the
//! receiver ([`telemetry_env`]). Nothing else in that file is ours.
//!
//! Invariants:
//! - **Every other byte of meaning is kept.** Other settings, unknown keys, other
//!   people's hook entries and matcher groups, even event names we do not know, come
//!   back as they were parsed. (Key order follows serde_json's map, which sorts keys,
//!   and the text is re-indented; JSON numbers keep their IEEE-754 value, which is all
//!   Claude Code, a JavaScript program, ever reads of them.)
//! - **Idempotent.** A second run finds its own entries, reports them unchanged and
//!   writes nothing: no temp file, no backup. An entry of ours with another path or
//!   other arguments (`/opt/x/auditship record --old`) is updated in place, and
//!   duplicates of ours are removed, so an event is never recorded twice.
//! - **All or nothing.** A file that is not UTF-8, not JSON, or not an object, or whose
//!   `hooks` is not an object of arrays, is an error and nothing is written. A write is
//!   a temp file in the same directory, fsynced, then renamed over the old file, and
//!   the directory fsynced; the previous content is first copied, byte for byte, to
//!   `<file>.auditship-backup-<YYYYMMDDTHHMMSSZ>` with the old file's mode and owner.
//!   If the file changed while we worked, we stop without replacing it.
//! - **Mode and owner are kept** for an existing file (settings may hold secrets in
//!   `env`; a backup never widens access). New files get the caller's mode (0600 for
//!   user scope, 0644 for managed scope, so every user's Claude Code can read it),
//!   set explicitly so the umask cannot narrow it; directories we create get the
//!   matching directory mode. Run as root, new files and directories take the owner
//!   of the directory they are created in, so installing into a user's home leaves
//!   files that user's Claude Code can read.
//! - A symlinked settings file (dotfile managers) is edited where it points, and the
//!   link is kept, but only when link and target have the same owner: root is never
//!   led by a user's link into a file the user does not own.
//!
//! Which events: [`EVENTS`] lists every hook event the Claude Code documentation and
//! changelog confirm, with the version that introduced it, except three whose hooks
//! change behaviour rather than observe it (see [`EXCLUDED_EVENTS`]). Claude Code
//! before 2.1.101 rejects a whole settings file that names an event it does not
//! know ("Files with errors are skipped entirely"), which would silence every hook,
//! ours included, and every other setting in the file. So the caller passes the
//! installed Claude Code version when it knows it ([`events_for`],
//! [`detect_claude_version`]); our entries under events outside the chosen set are
//! removed, which also repairs a file an earlier, wider install broke.
//!
//! With `--mcp`, [`mcp`] registers `auditship mcp` as an MCP server in the file
//! Claude Code reads its servers from for the scope (`~/.claude.json`,
//! `/etc/claude-code/managed-mcp.json`, or a project's `.mcp.json`), with the same
//! guarantees: only the `auditship` server is ours, idempotent, all or nothing.
//!
//! What it deliberately does not do: parse arguments, decide the scope, or print
//! anything except through [`run`]'s writer; it never edits project settings
//! (`.claude/settings.json` in a repository), and it never touches hook entries that
//! are not ours, even broken ones (it warns about those, since Claude Code skips a
//! file that holds them).

use serde_json::{Map, Value, json};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod mcp;

/// Seconds Claude Code waits for one recorder run before it kills it and carries on.
/// Claude Code's own default is 600 s for tool hooks; a recorder that appends one line
/// under a lock needs well under a second, so a stuck one costs the developer 5 s.
pub const DEFAULT_TIMEOUT_SECS: u64 = 5;

/// What Claude Code waits for a command hook that names no `timeout`.
pub const CLAUDE_DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Mode of a user settings file we create: it may come to hold tokens in `env`.
pub const USER_FILE_MODE: u32 = 0o600;

/// Mode of a managed settings file we create: every user's Claude Code must read it.
pub const MANAGED_FILE_MODE: u32 = 0o644;

/// Managed (policy) settings on Linux and WSL, per the Claude Code settings docs.
/// Claude Code 2.1.83 and later also read `/etc/claude-code/managed-settings.d/*.json`;
/// we write the main file because every version that has managed settings reads it.
pub const MANAGED_SETTINGS_PATH: &str = "/etc/claude-code/managed-settings.json";

/// The word after the program in our hook command.
const RECORD: &str = "record";

/// Which settings file `install-hooks` edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `$HOME/.claude/settings.json`: this user, every project.
    User,
    /// `/etc/claude-code/managed-settings.json`: every user of the machine; a user's
    /// own `disableAllHooks` cannot switch managed hooks off (Claude Code 2.1.49+).
    Managed,
}

impl Scope {
    /// The mode a settings file of this scope gets when we create it.
    pub fn new_file_mode(self) -> u32 {
        match self {
            Scope::User => USER_FILE_MODE,
            Scope::Managed => MANAGED_FILE_MODE,
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        match s {
            "user" => Ok(Scope::User),
            "managed" => Ok(Scope::Managed),
            other => Err(format!(
                "unknown scope `{other}`: expected `user` or `managed`"
            )),
        }
    }
}

/// The settings file of `scope`. `home` is the user's home directory (unused for
/// [`Scope::Managed`]). Claude Code reads user settings from `$CLAUDE_CONFIG_DIR`
/// instead of `~/.claude` when that variable is set: see [`user_settings_path`].
pub fn settings_path(scope: Scope, home: &Path) -> PathBuf {
    match scope {
        Scope::User => user_settings_path(home, None),
        Scope::Managed => PathBuf::from(MANAGED_SETTINGS_PATH),
    }
}

/// `<claude_config_dir>/settings.json` when given (the value of `CLAUDE_CONFIG_DIR`),
/// else `<home>/.claude/settings.json`.
pub fn user_settings_path(home: &Path, claude_config_dir: Option<&Path>) -> PathBuf {
    match claude_config_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("settings.json"),
        _ => home.join(".claude").join("settings.json"),
    }
}

pub use crate::hooks::{
    EVENTS, EXCLUDED_EVENTS, HOOK_EVENTS, HookEvent, UNKNOWN_EVENTS_TOLERATED_SINCE, Version,
    events_for,
};

/// The version in `claude --version` output, e.g. `2.1.114 (Claude Code)`.
pub fn parse_claude_version(output: &str) -> Option<Version> {
    output.split_whitespace().find_map(|word| {
        let word = word.trim_start_matches('v');
        word.starts_with(|c: char| c.is_ascii_digit())
            .then(|| word.parse().ok())
            .flatten()
    })
}

/// Runs `claude --version` (found on `PATH`) and parses its answer; `None` when there
/// is no `claude`, it fails, or it takes longer than 5 s.
pub fn detect_claude_version() -> Option<Version> {
    detect_version_of(Path::new("claude"), Duration::from_secs(5))
}

/// [`detect_claude_version`] for a given program and time limit.
pub fn detect_version_of(program: &Path, limit: Duration) -> Option<Version> {
    let mut child = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    parse_claude_version(&out)
}

/// What a merge did, by event name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    /// Events that had no entry of ours.
    pub added: Vec<String>,
    /// Events whose entry of ours was changed, moved to a match-all group, or had
    /// duplicates removed.
    pub updated: Vec<String>,
    /// Events whose entry of ours was already exactly right.
    pub unchanged: Vec<String>,
    /// Events outside the chosen set from which entries of ours were removed.
    pub removed: Vec<String>,
    /// Things that will stop our hooks from running, which we do not fix ourselves.
    pub warnings: Vec<String>,
    /// Variables of the `env` block that were missing or held another value.
    pub env_set: Vec<String>,
    /// Variables of the `env` block that already held our value.
    pub env_unchanged: Vec<String>,
}

impl MergeReport {
    /// Whether the settings differ from what was read.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.env_set.is_empty())
    }

    /// One line: `added 3 (A, B, C); updated 1 (D); removed 0; unchanged 26`.
    pub fn summary(&self) -> String {
        fn part(label: &str, names: &[String]) -> String {
            if names.is_empty() {
                format!("{label} 0")
            } else {
                format!("{label} {} ({})", names.len(), names.join(", "))
            }
        }
        let mut line = format!(
            "{}; {}; {}; unchanged {}",
            part("added", &self.added),
            part("updated", &self.updated),
            part("removed", &self.removed),
            self.unchanged.len()
        );
        if !self.env_set.is_empty() || !self.env_unchanged.is_empty() {
            line.push_str(&format!(
                "; {}; env unchanged {}",
                part("env set", &self.env_set),
                self.env_unchanged.len()
            ));
        }
        line
    }
}

/// Where Claude Code's log exporter sends by default with `--telemetry`: the
/// receiver's default `[telemetry] listen`.
pub const DEFAULT_TELEMETRY_ENDPOINT: &str = "http://127.0.0.1:4318/v1/logs";

/// The `env` variables `install-hooks --telemetry` writes: Claude Code's telemetry
/// on, its events exported as OTLP/HTTP protobuf logs to `endpoint`, with tool
/// details. Metrics and traces are not named: their settings stay as they are.
pub fn telemetry_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CLAUDE_CODE_ENABLE_TELEMETRY", "1".into()),
        ("OTEL_LOGS_EXPORTER", "otlp".into()),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf".into()),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", endpoint.into()),
        ("OTEL_LOG_TOOL_DETAILS", "1".into()),
    ]
}

/// The endpoint for a receiver listening on `listen` (`127.0.0.1:4318`).
pub fn telemetry_endpoint(listen: std::net::SocketAddr) -> String {
    format!("http://{listen}/v1/logs")
}

/// Sets each of `vars` in the settings' `env` object (created when absent), leaving
/// every other variable as it is. Pure; on `Err` (an `env` that is not an object of
/// strings where we write) the value is untouched.
pub fn merge_env(
    settings: &mut Value,
    vars: &[(&str, String)],
    report: &mut MergeReport,
) -> Result<(), String> {
    if vars.is_empty() {
        return Ok(());
    }
    let root = settings
        .as_object_mut()
        .ok_or("the settings are not a JSON object")?;
    let env = root
        .entry("env")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(env) = env else {
        return Err("`env` is not a JSON object; nothing written".into());
    };
    for (name, value) in vars {
        if env.get(*name).and_then(Value::as_str) == Some(value.as_str()) {
            report.env_unchanged.push((*name).into());
        } else {
            env.insert((*name).into(), Value::String(value.clone()));
            report.env_set.push((*name).into());
        }
    }
    Ok(())
}

/// Merges our entries for every event in [`EVENTS`] into `settings`. Pure: no IO.
pub fn merge(
    settings: &mut Value,
    command: &str,
    timeout_secs: u64,
) -> Result<MergeReport, String> {
    merge_events(settings, command, timeout_secs, &events_for(None))
}

/// Merges our entries for `events` into `settings` and removes ours from every other
/// event. `command` must be `<path to auditship> record [args…]`. On `Err` the value
/// is untouched.
pub fn merge_events(
    settings: &mut Value,
    command: &str,
    timeout_secs: u64,
    events: &[&HookEvent],
) -> Result<MergeReport, String> {
    let program = recorder_program(command).ok_or_else(|| {
        format!("hook command `{command}` must be `<path to auditship> {RECORD} [args]`")
    })?;
    if timeout_secs == 0 {
        return Err("hook timeout must be at least 1 second".to_string());
    }
    let root = settings
        .as_object_mut()
        .ok_or("the settings are not a JSON object")?;
    check_hooks_shape(root)?;

    let mut report = MergeReport::default();
    if root.get("disableAllHooks") == Some(&Value::Bool(true)) {
        report.warnings.push(
            "`disableAllHooks` is true in this file: Claude Code runs no hook from it".into(),
        );
    }
    let ours = Recorder {
        program,
        entry: json!({ "type": "command", "command": command, "timeout": timeout_secs }),
    };

    let mut created = Map::new();
    let hooks = match root.get_mut("hooks") {
        Some(Value::Object(hooks)) => hooks,
        _ => &mut created,
    };
    for event in events {
        let list = hooks
            .entry(event.name)
            .or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = list else {
            unreachable!("check_hooks_shape accepts only arrays");
        };
        let name = event.name.to_string();
        match ours.place(list, event.matcher) {
            Placed::Added => report.added.push(name),
            Placed::Updated => report.updated.push(name),
            Placed::Unchanged => report.unchanged.push(name),
        }
    }
    let chosen = |key: &str| events.iter().any(|e| e.name == key);
    let mut emptied = Vec::new();
    for (key, list) in hooks.iter_mut() {
        let Value::Array(list) = list else { continue };
        if chosen(key) || !ours.remove_all(list) {
            continue;
        }
        report.removed.push(key.clone());
        if list.is_empty() {
            // An empty array under a name this version may not know is still an
            // unknown name: drop the key we emptied.
            emptied.push(key.clone());
        }
    }
    for key in &emptied {
        hooks.remove(key);
    }
    for (key, list) in hooks.iter() {
        if let Value::Array(list) = list {
            for (i, group) in list.iter().enumerate() {
                if group.get("hooks").and_then(Value::as_array).is_none() {
                    report.warnings.push(format!(
                        "hooks.{key}[{i}] has no `hooks` array: Claude Code skips this whole file \
                         until it is fixed"
                    ));
                }
            }
        }
    }
    if !created.is_empty() {
        root.insert("hooks".to_string(), Value::Object(created));
    }
    Ok(report)
}

/// `hooks` must be absent or an object whose values are arrays; anything else would
/// make us discard data, so it is refused before anything changes.
fn check_hooks_shape(root: &Map<String, Value>) -> Result<(), String> {
    match root.get("hooks") {
        None => Ok(()),
        Some(Value::Object(hooks)) => {
            for (key, list) in hooks {
                if !list.is_array() {
                    return Err(format!("`hooks.{key}` is not an array"));
                }
            }
            Ok(())
        }
        Some(_) => Err("`hooks` is not a JSON object".to_string()),
    }
}

enum Placed {
    Added,
    Updated,
    Unchanged,
}

/// Our hook entry and how to recognise entries of ours written by any install.
struct Recorder {
    /// File name of our program (`auditship`).
    program: String,
    /// The exact entry we install.
    entry: Value,
}

impl Recorder {
    fn is_ours(&self, entry: &Value) -> bool {
        entry.get("type").and_then(Value::as_str) == Some("command")
            && entry
                .get("command")
                .and_then(Value::as_str)
                .and_then(recorder_program)
                .is_some_and(|program| program == self.program)
    }

    /// Positions `(group, entry)` of our entries in one event's list.
    fn find(&self, list: &[Value]) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (g, group) in list.iter().enumerate() {
            if let Some(entries) = group.get("hooks").and_then(Value::as_array) {
                for (h, entry) in entries.iter().enumerate() {
                    if self.is_ours(entry) {
                        found.push((g, h));
                    }
                }
            }
        }
        found
    }

    /// Makes `list` hold exactly one entry of ours, equal to `self.entry`, in a group
    /// that matches everything.
    fn place(&self, list: &mut Vec<Value>, tool_matcher: bool) -> Placed {
        let found = self.find(list);
        let keeper = found.iter().position(|&(g, _)| matches_all(&list[g]));
        let Some(keeper) = keeper else {
            let existed = !found.is_empty();
            remove_entries(list, &found);
            let mut group = Map::new();
            if tool_matcher {
                group.insert("matcher".into(), Value::String("*".into()));
            }
            group.insert("hooks".into(), Value::Array(vec![self.entry.clone()]));
            list.push(Value::Object(group));
            return if existed {
                Placed::Updated
            } else {
                Placed::Added
            };
        };
        let (g, h) = found[keeper];
        let slot = &mut list[g]["hooks"][h];
        let mut changed = *slot != self.entry;
        if changed {
            *slot = self.entry.clone();
        }
        let mut others = found;
        others.remove(keeper);
        changed |= !others.is_empty();
        remove_entries(list, &others);
        if changed {
            Placed::Updated
        } else {
            Placed::Unchanged
        }
    }

    /// Removes every entry of ours from `list`; whether there was one.
    fn remove_all(&self, list: &mut Vec<Value>) -> bool {
        let found = self.find(list);
        remove_entries(list, &found);
        !found.is_empty()
    }
}

/// A matcher group with no matcher, `""` or `"*"` runs for every occurrence.
fn matches_all(group: &Value) -> bool {
    match group.get("matcher") {
        None => true,
        Some(Value::String(m)) => m.is_empty() || m == "*",
        Some(_) => false,
    }
}

/// Removes the entries at `positions` (as returned by `find`, ascending), then the
/// groups those removals left without entries. Other groups stay, even empty ones.
fn remove_entries(list: &mut Vec<Value>, positions: &[(usize, usize)]) {
    for &(g, h) in positions.iter().rev() {
        if let Some(entries) = list[g].get_mut("hooks").and_then(Value::as_array_mut) {
            entries.remove(h);
        }
    }
    let mut groups: Vec<usize> = positions.iter().map(|&(g, _)| g).collect();
    groups.dedup();
    for &g in groups.iter().rev() {
        let empty = list[g]
            .get("hooks")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if empty {
            list.remove(g);
        }
    }
}

/// The file name of the program in `command` when its next word is `record`
/// (leading `NAME=value` assignments skipped), e.g. `auditship` for
/// `AUDITSHIP_X=1 "/opt/my tools/auditship" record --quiet`.
fn recorder_program(command: &str) -> Option<String> {
    let program = recorder_path(command)?;
    let name = Path::new(&program).file_name()?.to_str()?;
    Some(name.to_string())
}

/// The program in `command` as written (`/opt/my tools/auditship`) when its next
/// word is `record` (leading `NAME=value` assignments skipped).
pub fn recorder_path(command: &str) -> Option<String> {
    let words = shell_words(command);
    let mut words = words.into_iter().skip_while(|w| is_assignment(w));
    let program = words.next()?;
    if words.next()? != RECORD {
        return None;
    }
    Some(program)
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// `s` as one shell word: unchanged when it holds nothing a shell would read
/// specially, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `command` with `--config <path>` after `record`, unless it already names a
/// configuration (`--config`, `--config=…` or `-c`). Managed hooks name the file
/// explicitly, so `AUDITSHIP_CONFIG` in a user's environment cannot redirect them.
pub fn with_config(command: &str, config: &Path) -> String {
    let named = shell_words(command)
        .iter()
        .any(|w| w == "--config" || w == "-c" || w.starts_with("--config="));
    if named {
        command.to_string()
    } else {
        format!(
            "{command} --config {}",
            shell_quote(&config.to_string_lossy())
        )
    }
}

/// The configuration a hook command passes to `record` (`--config PATH`,
/// `--config=PATH` or `-c PATH`), if it names one.
pub fn config_of_command(command: &str) -> Option<PathBuf> {
    let words = shell_words(command);
    let mut rest = words.iter();
    while let Some(w) = rest.next() {
        if let Some(p) = w.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
        if w == "--config" || w == "-c" {
            return rest.next().map(PathBuf::from);
        }
    }
    None
}

/// The `timeout` (seconds) of every hook entry of `program` (a file name such as
/// `auditship`) that runs `record`, in any event of `settings`. An entry without one
/// gets Claude Code's default, [`CLAUDE_DEFAULT_TIMEOUT_SECS`].
pub fn recorder_timeouts(settings: &Value, program: &str) -> Vec<f64> {
    let mut found = Vec::new();
    let Some(hooks) = settings.get("hooks").and_then(Value::as_object) else {
        return found;
    };
    for groups in hooks.values().filter_map(Value::as_array) {
        for entry in groups
            .iter()
            .filter_map(|g| g.get("hooks").and_then(Value::as_array))
            .flatten()
        {
            let ours = entry.get("type").and_then(Value::as_str) == Some("command")
                && entry
                    .get("command")
                    .and_then(Value::as_str)
                    .and_then(recorder_program)
                    .is_some_and(|p| p == program);
            if ours {
                found.push(
                    entry
                        .get("timeout")
                        .and_then(Value::as_f64)
                        .unwrap_or(CLAUDE_DEFAULT_TIMEOUT_SECS as f64),
                );
            }
        }
    }
    found
}

/// The shortest timeout of our hooks in the settings files that exist and parse
/// (seconds, and the file), or `None` when none of them has a hook of ours.
pub fn installed_timeout(paths: &[PathBuf], program: &str) -> Option<(f64, PathBuf)> {
    let mut best: Option<(f64, PathBuf)> = None;
    for path in paths {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let Ok(settings) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for t in recorder_timeouts(&settings, program) {
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, path.clone()));
            }
        }
    }
    best
}

/// Splits a command line into words the way a POSIX shell does for plain words,
/// single and double quotes and backslashes. Operators (`;`, `|`, `&&`) stay glued
/// to words, which is all recognising `<program> record` needs.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&e @ ('"' | '\\' | '$' | '`')) => {
                                word.push(e);
                                chars.next();
                            }
                            Some('\n') => {
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(e) => word.push(e),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The result of [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub report: MergeReport,
    /// The settings as they are after the run (or would be, for a dry run): the new
    /// JSON when something changed, else the file's content as it is.
    pub text: String,
    /// Where the previous content was copied, when a file was replaced.
    pub backup: Option<PathBuf>,
    /// Whether the settings file was written.
    pub written: bool,
    /// The file edited: the given path, or where its symlink points.
    pub path: PathBuf,
}

/// Reads `path`, merges our entries for every event in [`EVENTS`], and unless
/// `dry_run` writes the result with a backup of the old content. A missing file is
/// created with `new_file_mode`. See [`install_events`].
pub fn install(
    path: &Path,
    command: &str,
    timeout_secs: u64,
    dry_run: bool,
    new_file_mode: u32,
) -> Result<Outcome, String> {
    install_events(
        path,
        command,
        timeout_secs,
        &events_for(None),
        &[],
        dry_run,
        new_file_mode,
    )
}

/// [`install`] for a chosen set of events (see [`events_for`]), also setting the
/// `env` variables `env` ([`telemetry_env`]; none: `env` is left alone).
pub fn install_events(
    path: &Path,
    command: &str,
    timeout_secs: u64,
    events: &[&HookEvent],
    env: &[(&str, String)],
    dry_run: bool,
    new_file_mode: u32,
) -> Result<Outcome, String> {
    let target = resolve_target(path)?;
    let original = read_if_exists(&target)?;
    let mut settings = match &original {
        Some((bytes, _)) => parse_settings(&target, bytes)?,
        None => Value::Object(Map::new()),
    };
    let mut report = merge_events(&mut settings, command, timeout_secs, events)?;
    merge_env(&mut settings, env, &mut report).map_err(|e| format!("{}: {e}", target.display()))?;
    if let Some((_, meta)) = &original {
        let mode = meta.mode() & 0o777;
        if new_file_mode & 0o444 & !mode != 0 {
            report.warnings.push(format!(
                "{} has mode {mode:04o}, narrower than {new_file_mode:04o}: not everyone who \
                 runs Claude Code may be able to read it",
                target.display()
            ));
        }
    }
    let text = match (&original, report.changed()) {
        (Some((bytes, _)), false) => String::from_utf8_lossy(bytes).into_owned(),
        _ => pretty(&settings)?,
    };
    let mut outcome = Outcome {
        report,
        text,
        backup: None,
        written: false,
        path: target.clone(),
    };
    if dry_run || !outcome.report.changed() {
        return Ok(outcome);
    }
    outcome.backup = write_atomically(&target, original.as_ref(), &outcome.text, new_file_mode)?;
    outcome.written = true;
    Ok(outcome)
}

/// Installs for `scope` at `path`, writing to `out` what the command prints: for a dry
/// run the resulting JSON and then the summary line, otherwise the summary line (with
/// the file and its backup), then one line per warning. `claude_version` chooses the
/// events ([`events_for`]); pass [`detect_claude_version`]'s answer when the user
/// named none. An `Err` from writing to `out` comes after the install itself, which
/// stands.
#[allow(clippy::too_many_arguments)]
pub fn run(
    scope: Scope,
    path: &Path,
    command: &str,
    timeout_secs: u64,
    claude_version: Option<Version>,
    env: &[(&str, String)],
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Outcome, String> {
    let events = events_for(claude_version);
    let outcome = install_events(
        path,
        command,
        timeout_secs,
        &events,
        env,
        dry_run,
        scope.new_file_mode(),
    )?;
    let mut report = outcome.report.clone();
    if claude_version.is_none() {
        report.warnings.push(format!(
            "Claude Code's version is unknown: installed every event; a release before \
             {UNKNOWN_EVENTS_TOLERATED_SINCE} rejects the file for names it does not know \
             (pass the version to install only what it knows)"
        ));
    }
    let mut print = || -> io::Result<()> {
        if dry_run {
            out.write_all(outcome.text.as_bytes())?;
            if !outcome.text.ends_with('\n') {
                writeln!(out)?;
            }
        }
        let verb = match (dry_run, outcome.written) {
            (true, _) => "dry run, nothing written",
            (false, true) => "written",
            (false, false) => "already up to date",
        };
        write!(
            out,
            "{}: {verb}: {}",
            outcome.path.display(),
            report.summary()
        )?;
        if let Some(backup) = &outcome.backup {
            write!(out, "; backup {}", backup.display())?;
        }
        writeln!(out)?;
        for warning in &report.warnings {
            writeln!(out, "warning: {warning}")?;
        }
        Ok(())
    };
    print().map_err(|e| format!("writing output: {e}"))?;
    Ok(outcome)
}

fn pretty(settings: &Value) -> Result<String, String> {
    let mut text =
        serde_json::to_string_pretty(settings).map_err(|e| format!("serialising settings: {e}"))?;
    text.push('\n');
    Ok(text)
}

fn parse_settings(path: &Path, bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("{}: not UTF-8 ({e}); nothing written", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("{}: not valid JSON ({e}); nothing written", path.display()))?;
    if !value.is_object() {
        return Err(format!(
            "{}: the settings are not a JSON object; nothing written",
            path.display()
        ));
    }
    Ok(value)
}

/// The file to edit: `path` itself, or the file its symlink points to when link and
/// target have one owner.
fn resolve_target(path: &Path) -> Result<PathBuf, String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.file_type().is_symlink() {
        let target = fs::canonicalize(path).map_err(|e| {
            format!(
                "{}: symlink to nowhere ({e}); nothing written",
                path.display()
            )
        })?;
        let target_meta =
            fs::metadata(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        if target_meta.uid() != meta.uid() {
            return Err(format!(
                "{} is a symlink owned by uid {} to {}, owned by uid {}: refusing to follow it",
                path.display(),
                meta.uid(),
                target.display(),
                target_meta.uid()
            ));
        }
        if !target_meta.is_file() {
            return Err(format!("{} is not a regular file", target.display()));
        }
        return Ok(target);
    }
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    Ok(path.to_path_buf())
}

fn read_if_exists(path: &Path) -> Result<Option<(Vec<u8>, fs::Metadata)>, String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(Some((bytes, meta)))
}

/// Removes a temp file unless the rename consumed it.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// Writes `text` to `target` through a temp file and a rename, after copying the old
/// content to a backup. Returns the backup's path.
fn write_atomically(
    target: &Path,
    original: Option<&(Vec<u8>, fs::Metadata)>,
    text: &str,
    new_file_mode: u32,
) -> Result<Option<PathBuf>, String> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no usable file name", target.display()))?;
    if original.is_none() {
        create_dirs(&dir, dir_mode(new_file_mode))?;
    }
    let err = |what: &str, path: &Path, e: io::Error| format!("{what} {}: {e}", path.display());

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let temp_path = dir.join(format!(
        ".{name}.auditship-{}-{nanos}.tmp",
        std::process::id()
    ));
    let mut temp = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp_path)
        .map_err(|e| err("creating", &temp_path, e))?;
    let mut guard = TempGuard(Some(temp_path.clone()));
    temp.write_all(text.as_bytes())
        .map_err(|e| err("writing", &temp_path, e))?;
    let (mode, owner) = match original {
        Some((_, meta)) => (meta.mode() & 0o7777, Some((meta.uid(), meta.gid()))),
        None => (new_file_mode, owner_for_new(&temp, &dir)?),
    };
    set_owner_and_mode(&temp, &temp_path, owner, mode)?;
    temp.sync_all().map_err(|e| err("syncing", &temp_path, e))?;
    drop(temp);

    // Nothing has been replaced yet: if someone changed the file meanwhile, stop.
    let now = read_if_exists(target)?.map(|(bytes, _)| bytes);
    if now.as_deref() != original.map(|(bytes, _)| bytes.as_slice()) {
        return Err(format!(
            "{} changed while auditship was editing it; nothing written, run again",
            target.display()
        ));
    }

    let backup = match original {
        Some((bytes, meta)) => Some(write_backup(&dir, name, bytes, meta)?),
        None => None,
    };
    sync_dir(&dir)?;
    fs::rename(&temp_path, target).map_err(|e| err("replacing", target, e))?;
    guard.0 = None;
    sync_dir(&dir)?;
    Ok(backup)
}

/// Copies the old content, byte for byte, to `<name>.auditship-backup-<UTC time>` with
/// the old file's mode and owner, durably.
fn write_backup(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    meta: &fs::Metadata,
) -> Result<PathBuf, String> {
    let stamp = utc_stamp(SystemTime::now());
    let mut n = 0;
    let (path, mut file) = loop {
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("-{n}")
        };
        let path = dir.join(format!("{name}.auditship-backup-{stamp}{suffix}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => break (path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(format!("creating backup {}: {e}", path.display())),
        }
    };
    let result = (|| {
        file.write_all(bytes)
            .map_err(|e| format!("writing backup {}: {e}", path.display()))?;
        set_owner_and_mode(
            &file,
            &path,
            Some((meta.uid(), meta.gid())),
            meta.mode() & 0o7777,
        )?;
        file.sync_all()
            .map_err(|e| format!("syncing backup {}: {e}", path.display()))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Owner for a file we create in `dir`: when we run as root, the directory's owner;
/// otherwise ours (`None`: leave it).
fn owner_for_new(file: &File, dir: &Path) -> Result<Option<(u32, u32)>, String> {
    let mine = file
        .metadata()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if mine.uid() != 0 {
        return Ok(None);
    }
    let parent = fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(Some((parent.uid(), parent.gid())))
}

fn set_owner_and_mode(
    file: &File,
    path: &Path,
    owner: Option<(u32, u32)>,
    mode: u32,
) -> Result<(), String> {
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some((uid, gid)) = owner
        && (meta.uid(), meta.gid()) != (uid, gid)
    {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid)).map_err(|e| {
            format!(
                "giving {} to uid {uid} gid {gid}, the owner of the file it replaces: {e}",
                path.display()
            )
        })?;
    }
    // After chown, which clears set-id bits.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting mode {mode:04o} on {}: {e}", path.display()))
}

/// The directory mode that goes with a file mode: search permission wherever read is
/// granted (0600 -> 0700, 0644 -> 0755).
fn dir_mode(file_mode: u32) -> u32 {
    (file_mode | ((file_mode & 0o444) >> 2)) & 0o777
}

/// Creates `dir` and its missing ancestors with `mode` exactly (whatever the umask);
/// run as root, each new directory takes the owner of the one it is created in.
fn create_dirs(dir: &Path, mode: u32) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match fs::symlink_metadata(cur) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur.to_path_buf());
                match cur.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => cur = parent,
                    _ => break,
                }
            }
            Err(e) => return Err(format!("{}: {e}", cur.display())),
        }
    }
    for path in missing.iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("creating {}: {e}", path.display())),
        }
        let err = |e: io::Error| format!("creating {}: {e}", path.display());
        let meta = fs::metadata(path).map_err(err)?;
        if meta.uid() == 0 {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let up = fs::metadata(parent).map_err(err)?;
            if (up.uid(), up.gid()) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::chown(path, Some(up.uid()), Some(up.gid())).map_err(err)?;
            }
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("syncing directory {}: {e}", dir.display()))
}

/// `YYYYMMDDTHHMMSSZ` in UTC. Times before 1970 print as the epoch.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::clock::civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const CMD: &str = "/usr/bin/auditship record";

    /// Merges `before` with every event and returns the result and the report.
    fn merged(before: Value) -> (Value, MergeReport) {
        let mut settings = before;
        let report = merge(&mut settings, CMD, 5).expect("merge");
        (settings, report)
    }

    fn ours() -> Value {
        json!({ "type": "command", "command": CMD, "timeout": 5 })
    }

    fn names(events: &[&HookEvent]) -> Vec<String> {
        events.iter().map(|e| e.name.to_string()).collect()
    }

    fn all_names() -> Vec<String> {
        names(&events_for(None))
    }

    /// Every entry of ours under `event`, wherever it sits.
    fn our_entries(settings: &Value, event: &str) -> Vec<Value> {
        let recorder = Recorder {
            program: "auditship".into(),
            entry: ours(),
        };
        settings["hooks"][event]
            .as_array()
            .map(|list| {
                recorder
                    .find(list)
                    .into_iter()
                    .map(|(g, h)| list[g]["hooks"][h].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn event_tables_agree_and_names_are_unique() {
        assert_eq!(HOOK_EVENTS.len(), EVENTS.len());
        for (pair, event) in HOOK_EVENTS.iter().zip(EVENTS) {
            assert_eq!(*pair, (event.name, event.matcher));
        }
        let unique: BTreeSet<_> = EVENTS.iter().map(|e| e.name).collect();
        assert_eq!(unique.len(), EVENTS.len());
        for (name, _) in EXCLUDED_EVENTS {
            assert!(
                !unique.contains(name),
                "{name} is both installed and excluded"
            );
        }
        // The events FORMAT.md maps to actions must all be installed.
        for name in [
            "SessionStart",
            "Setup",
            "SessionEnd",
            "UserPromptSubmit",
            "UserPromptExpansion",
            "PreToolUse",
            "PostToolUse",
            "PostToolUseFailure",
            "PermissionDenied",
            "PermissionRequest",
            "ConfigChange",
        ] {
            assert!(unique.contains(name), "{name} missing");
        }
        let tool: Vec<_> = EVENTS
            .iter()
            .filter(|e| e.matcher)
            .map(|e| e.name)
            .collect();
        assert_eq!(
            tool,
            [
                "PreToolUse",
                "PermissionRequest",
                "PermissionDenied",
                "PostToolUse",
                "PostToolUseFailure"
            ]
        );
    }

    #[test]
    fn merge_into_empty_settings_adds_every_event() {
        let (after, report) = merged(json!({}));
        assert_eq!(report.added, all_names());
        assert!(report.updated.is_empty() && report.unchanged.is_empty());
        assert!(report.removed.is_empty() && report.warnings.is_empty());
        assert!(report.changed());
        let hooks = after["hooks"].as_object().unwrap();
        assert_eq!(hooks.len(), EVENTS.len());
        for event in EVENTS {
            let group = if event.matcher {
                json!({ "matcher": "*", "hooks": [ours()] })
            } else {
                json!({ "hooks": [ours()] })
            };
            assert_eq!(hooks[event.name], json!([group]), "{}", event.name);
        }
        assert_eq!(after.as_object().unwrap().len(), 1);
    }

    #[test]
    fn merge_keeps_other_settings_and_other_hooks() {
        let other_pre = json!({ "matcher": "Bash", "hooks": [
            { "type": "command", "command": "/opt/guard.sh", "timeout": 30, "x-custom": [1, 2.5] }
        ]});
        let other_star = json!({ "matcher": "*", "hooks": [
            { "type": "http", "url": "http://127.0.0.1:9/auditship/record" },
            { "type": "command", "command": "/usr/bin/auditship verify /tmp" },
            { "type": "command", "command": "/usr/bin/auditship-wrapper record" }
        ]});
        let before = json!({
            "model": "opus",
            "env": { "TOKEN": "s3cret", "N": "1" },
            "permissions": { "allow": ["Bash(ls:*)"], "deny": [] },
            "unknownKey": { "nested": [null, true, 1e300, -0.5, "x"] },
            "hooks": {
                "PreToolUse": [other_pre.clone(), other_star.clone()],
                "Stop": [{ "hooks": [{ "type": "command", "command": "notify-send done" }] }],
                "SomeFutureEvent": [{ "hooks": [{ "type": "command", "command": "x" }] }],
                "Notification": []
            }
        });
        let (after, report) = merged(before.clone());
        assert_eq!(report.added, all_names());
        for key in ["model", "env", "permissions", "unknownKey"] {
            assert_eq!(after[key], before[key], "{key}");
        }
        let hooks = &after["hooks"];
        // Other groups stay as they were, even match-all ones: ours is a group of its own.
        assert_eq!(
            hooks["PreToolUse"],
            json!([other_pre, other_star, { "matcher": "*", "hooks": [ours()] }])
        );
        assert_eq!(
            hooks["Stop"],
            json!([
                { "hooks": [{ "type": "command", "command": "notify-send done" }] },
                { "hooks": [ours()] }
            ])
        );
        assert_eq!(hooks["SomeFutureEvent"], before["hooks"]["SomeFutureEvent"]);
        assert_eq!(hooks["Notification"], json!([{ "hooks": [ours()] }]));
    }

    #[test]
    fn second_merge_changes_nothing() {
        let (once, _) = merged(json!({ "model": "x", "hooks": { "Stop": [] } }));
        let (twice, report) = merged(once.clone());
        assert_eq!(twice, once);
        assert!(!report.changed());
        assert_eq!(report.unchanged, all_names());
        assert!(report.added.is_empty() && report.updated.is_empty());
    }

    #[test]
    fn entry_with_another_path_is_updated_in_place() {
        let neighbour = json!({ "type": "command", "command": "/opt/lint.sh" });
        let before = json!({ "hooks": { "PreToolUse": [
            { "matcher": "*", "hooks": [
                neighbour.clone(),
                { "type": "command", "command": "AUDITSHIP_DEBUG=1 '/opt/old dir/auditship' record --legacy", "timeout": 60, "async": true }
            ]}
        ]}});
        let (after, report) = merged(before);
        assert_eq!(report.updated, ["PreToolUse"]);
        assert!(!report.added.contains(&"PreToolUse".to_string()));
        assert_eq!(
            after["hooks"]["PreToolUse"],
            json!([{ "matcher": "*", "hooks": [neighbour, ours()] }])
        );
    }

    #[test]
    fn entry_under_a_narrow_matcher_moves_to_a_match_all_group() {
        let guard = json!({ "type": "command", "command": "/opt/guard.sh" });
        let before = json!({ "hooks": {
            "PostToolUse": [
                { "matcher": "Bash", "hooks": [guard.clone(), { "type": "command", "command": CMD, "timeout": 5 }] },
                { "matcher": "Edit|Write", "hooks": [{ "type": "command", "command": "auditship record" }] }
            ],
            // A no-matcher group covers everything: kept where it is.
            "PreToolUse": [{ "hooks": [ours()] }],
            "Stop": [{ "matcher": "", "hooks": [ours()] }]
        }});
        let (after, report) = merged(before);
        assert_eq!(report.updated, ["PostToolUse"]);
        assert!(report.unchanged.contains(&"PreToolUse".to_string()));
        assert!(report.unchanged.contains(&"Stop".to_string()));
        assert_eq!(
            after["hooks"]["PostToolUse"],
            json!([
                { "matcher": "Bash", "hooks": [guard] },
                { "matcher": "*", "hooks": [ours()] }
            ])
        );
        assert_eq!(after["hooks"]["PreToolUse"], json!([{ "hooks": [ours()] }]));
    }

    #[test]
    fn duplicates_of_ours_are_removed() {
        let before = json!({ "hooks": { "Stop": [
            { "hooks": [ours()] },
            { "hooks": [{ "type": "command", "command": "/usr/local/bin/auditship record" }] },
            { "hooks": [{ "type": "command", "command": "echo hi" }, ours()] }
        ]}});
        let (after, report) = merged(before);
        assert_eq!(report.updated, ["Stop"]);
        assert_eq!(
            after["hooks"]["Stop"],
            json!([
                { "hooks": [ours()] },
                { "hooks": [{ "type": "command", "command": "echo hi" }] }
            ])
        );
        assert_eq!(our_entries(&after, "Stop").len(), 1);
    }

    #[test]
    fn older_claude_code_gets_only_events_it_knows_and_loses_the_others() {
        let old = Version::new(2, 1, 50);
        let chosen = events_for(Some(old));
        assert!(chosen.iter().all(|e| e.since <= old));
        let chosen_names = names(&chosen);
        for name in [
            "PreToolUse",
            "SessionEnd",
            "ConfigChange",
            "WorktreeRemove",
            "Setup",
        ] {
            assert!(chosen_names.contains(&name.to_string()), "{name}");
        }
        for name in [
            "PermissionDenied",
            "PostCompact",
            "StopFailure",
            "UserPromptExpansion",
        ] {
            assert!(!chosen_names.contains(&name.to_string()), "{name}");
        }
        assert_eq!(
            events_for(Some(Version::new(2, 1, 101))).len(),
            EVENTS.len()
        );
        assert_eq!(events_for(Some(Version::new(3, 0, 0))).len(), EVENTS.len());
        assert_eq!(events_for(Some(Version::new(1, 0, 37))).len(), 0);

        // A file written for every event, then re-installed for the old version.
        let (wide, _) = merged(json!({ "hooks": { "StopFailure": [
            { "hooks": [{ "type": "command", "command": "/opt/alert" }] }
        ]}}));
        let mut narrow = wide.clone();
        let report = merge_events(&mut narrow, CMD, 5, &chosen).unwrap();
        assert!(report.added.is_empty() && report.updated.is_empty());
        assert_eq!(report.unchanged, chosen_names);
        let dropped: Vec<String> = all_names()
            .into_iter()
            .filter(|n| !chosen_names.contains(n))
            .collect();
        let mut removed = report.removed.clone();
        removed.sort();
        let mut expected = dropped.clone();
        expected.sort();
        assert_eq!(removed, expected);
        let hooks = narrow["hooks"].as_object().unwrap();
        for name in &dropped {
            if name == "StopFailure" {
                // Someone else's entry keeps the key alive.
                assert_eq!(
                    hooks[name],
                    json!([{ "hooks": [{ "type": "command", "command": "/opt/alert" }] }])
                );
            } else {
                assert!(!hooks.contains_key(name), "{name} still present");
            }
        }
        // And that is idempotent too.
        let mut again = narrow.clone();
        let report = merge_events(&mut again, CMD, 5, &chosen).unwrap();
        assert!(!report.changed());
        assert_eq!(again, narrow);
    }

    #[test]
    fn nothing_selected_and_nothing_ours_adds_no_hooks_key() {
        let mut settings = json!({ "model": "x" });
        let report = merge_events(&mut settings, CMD, 5, &[]).unwrap();
        assert!(!report.changed());
        assert_eq!(settings, json!({ "model": "x" }));
    }

    #[test]
    fn malformed_input_is_refused_untouched() {
        for (before, message) in [
            (json!([]), "not a JSON object"),
            (json!("x"), "not a JSON object"),
            (json!({ "hooks": [] }), "`hooks` is not a JSON object"),
            (
                json!({ "hooks": { "Stop": {} } }),
                "`hooks.Stop` is not an array",
            ),
            (
                json!({ "hooks": { "Other": 3 } }),
                "`hooks.Other` is not an array",
            ),
        ] {
            let mut settings = before.clone();
            let err = merge(&mut settings, CMD, 5).unwrap_err();
            assert!(err.contains(message), "{err}");
            assert_eq!(settings, before);
        }
        let mut settings = json!({});
        for bad in [
            "/usr/bin/auditship",
            "/usr/bin/auditship verify",
            "",
            "record",
        ] {
            assert!(merge(&mut settings, bad, 5).is_err(), "{bad}");
        }
        assert!(merge(&mut settings, CMD, 0).is_err());
        assert_eq!(settings, json!({}));
    }

    #[test]
    fn warnings_for_what_silences_hooks() {
        let (_, report) = merged(json!({
            "disableAllHooks": true,
            "hooks": { "Stop": [{ "matcher": "" }] }
        }));
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(report.warnings[0].contains("disableAllHooks"));
        assert!(report.warnings[1].contains("hooks.Stop[0]"));
    }

    #[test]
    fn recognising_our_command() {
        for (command, program) in [
            ("/usr/bin/auditship record", Some("auditship")),
            ("auditship record --config /etc/a.toml", Some("auditship")),
            ("'/opt/my tools/auditship' record", Some("auditship")),
            ("\"/opt/my tools/auditship\" record", Some("auditship")),
            ("/opt/my\\ tools/auditship   record", Some("auditship")),
            ("A=1 B_2='x y' /bin/auditship record", Some("auditship")),
            ("/bin/auditship 'record'", Some("auditship")),
            ("/bin/auditship record --quiet && true", Some("auditship")),
            ("/bin/auditship record; rm -rf /", None),
            ("/bin/auditship recorder", None),
            ("/bin/auditship record;", None),
            ("sh -c 'auditship record'", None),
            ("/bin/auditship", None),
            ("", None),
            ("=1 /bin/auditship record", None),
        ] {
            assert_eq!(recorder_program(command).as_deref(), program, "{command}");
        }
        assert_eq!(
            shell_words(r#"a 'b c' "d \"e\" \$f \g" h\ i"#),
            ["a", "b c", "d \"e\" $f \\g", "h i"]
        );
    }

    #[test]
    fn the_config_is_named_once_and_quoted() {
        let cfg = Path::new("/etc/auditship/auditship.toml");
        assert_eq!(
            with_config("/usr/bin/auditship record", cfg),
            "/usr/bin/auditship record --config /etc/auditship/auditship.toml"
        );
        for named in [
            "/usr/bin/auditship record --config /x.toml",
            "/usr/bin/auditship record --config=/x.toml",
            "/usr/bin/auditship record -c /x.toml",
        ] {
            assert_eq!(with_config(named, cfg), named);
        }
        assert_eq!(
            with_config("auditship record", Path::new("/a b/it's.toml")),
            r"auditship record --config '/a b/it'\''s.toml'"
        );
        let command = with_config("'/opt/my tools/auditship' record", cfg);
        assert_eq!(
            shell_words(&command),
            [
                "/opt/my tools/auditship",
                "record",
                "--config",
                "/etc/auditship/auditship.toml"
            ]
        );
        assert_eq!(shell_quote("/usr/bin/auditship"), "/usr/bin/auditship");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn installed_timeouts_are_read_from_our_entries() {
        let settings = json!({"hooks": {
            "PreToolUse": [{"matcher": "*", "hooks": [
                {"type": "command", "command": "/usr/bin/auditship record", "timeout": 5},
                {"type": "command", "command": "/opt/guard.sh", "timeout": 1}
            ]}],
            "Stop": [{"hooks": [{"type": "command", "command": "auditship record --config /x"}]}]
        }});
        let mut found = recorder_timeouts(&settings, "auditship");
        found.sort_by(f64::total_cmp);
        assert_eq!(found, [5.0, CLAUDE_DEFAULT_TIMEOUT_SECS as f64]);
        assert!(recorder_timeouts(&json!({"hooks": "x"}), "auditship").is_empty());
    }

    #[test]
    fn versions_and_time_stamps() {
        assert_eq!(
            parse_claude_version("2.1.114 (Claude Code)\n"),
            Some(Version::new(2, 1, 114))
        );
        assert_eq!(
            parse_claude_version("v1.0.38"),
            Some(Version::new(1, 0, 38))
        );
        assert_eq!(
            parse_claude_version("2.1.5-beta.1"),
            Some(Version::new(2, 1, 5))
        );
        assert_eq!(parse_claude_version("Claude Code"), None);
        assert_eq!(parse_claude_version("2.1"), None);
        assert!(Version::new(2, 1, 9) < Version::new(2, 1, 10));
        assert_eq!("user".parse::<Scope>(), Ok(Scope::User));
        assert_eq!("managed".parse::<Scope>(), Ok(Scope::Managed));
        assert!("system".parse::<Scope>().is_err());
        for (secs, stamp) in [
            (0, "19700101T000000Z"),
            (951_782_400, "20000229T000000Z"),
            (1_795_676_802, "20261126T070642Z"),
            (4_107_542_399, "21000228T235959Z"),
        ] {
            assert_eq!(
                utc_stamp(UNIX_EPOCH + Duration::from_secs(secs)),
                stamp,
                "{secs}"
            );
        }
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o644), 0o755);
    }

    #[test]
    fn settings_paths() {
        let home = Path::new("/home/dev");
        assert_eq!(
            settings_path(Scope::User, home),
            Path::new("/home/dev/.claude/settings.json")
        );
        assert_eq!(
            settings_path(Scope::Managed, home),
            Path::new("/etc/claude-code/managed-settings.json")
        );
        assert_eq!(
            user_settings_path(home, Some(Path::new("/cfg"))),
            Path::new("/cfg/settings.json")
        );
        assert_eq!(Scope::User.new_file_mode(), 0o600);
        assert_eq!(Scope::Managed.new_file_mode(), 0o644);
    }

    // ---- IO ----

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn dir_listing(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    fn write_file(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn install_creates_missing_file_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("home/.claude/settings.json");
        let outcome = install(&path, CMD, 5, false, 0o640).unwrap();
        assert!(outcome.written);
        assert_eq!(outcome.backup, None);
        assert_eq!(outcome.path, path);
        assert_eq!(outcome.report.added, all_names());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, outcome.text);
        assert!(text.ends_with("}\n"));
        let (expected, _) = merged(json!({}));
        assert_eq!(parse(&text), expected);
        // Created 0600 and set explicitly afterwards, so the umask cannot narrow it.
        assert_eq!(mode_of(&path), 0o640);
        assert_eq!(mode_of(&tmp.path().join("home/.claude")), 0o750);
        assert_eq!(mode_of(&tmp.path().join("home")), 0o750);
        assert_eq!(
            dir_listing(path.parent().unwrap()),
            ["settings.json".to_string()].into()
        );
    }

    #[test]
    fn second_install_writes_nothing_and_makes_no_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("settings.json");
        write_file(&path, "{\"model\": \"opus\"}", 0o600);
        let first = install(&path, CMD, 5, false, 0o600).unwrap();
        assert!(first.written && first.backup.is_some());
        let bytes = fs::read(&path).unwrap();
        let listing = dir_listing(tmp.path());
        assert_eq!(listing.len(), 2);

        let second = install(&path, CMD, 5, false, 0o600).unwrap();
        assert!(!second.written);
        assert_eq!(second.backup, None);
        assert!(!second.report.changed());
        assert_eq!(second.report.unchanged, all_names());
        assert_eq!(second.text.as_bytes(), bytes.as_slice());
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert_eq!(dir_listing(tmp.path()), listing);
    }

    #[test]
    fn invalid_settings_are_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("settings.json");
        for (content, message) in [
            ("{\"model\": ", "not valid JSON"),
            ("{\"a\": 1} trailing", "not valid JSON"),
            ("// comment\n{}", "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            ("null", "not a JSON object"),
            ("{\"hooks\": {\"Stop\": 7}}", "`hooks.Stop` is not an array"),
        ] {
            write_file(&path, content, 0o600);
            let err = install(&path, CMD, 5, false, 0o600).unwrap_err();
            assert!(err.contains(message), "{content}: {err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), content);
            assert_eq!(
                dir_listing(tmp.path()),
                ["settings.json".to_string()].into()
            );
        }
        fs::write(&path, b"{\"a\": \"\xff\"}").unwrap();
        let err = install(&path, CMD, 5, false, 0o600).unwrap_err();
        assert!(err.contains("not UTF-8"), "{err}");
        assert_eq!(
            dir_listing(tmp.path()),
            ["settings.json".to_string()].into()
        );
    }

    #[test]
    fn backup_holds_the_old_bytes_and_mode_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("managed-settings.json");
        let old =
            "\u{feff}{\n    \"permissions\": {\"deny\": [\"Read(./.env)\"]},\n    \"n\": 1.50\n}";
        write_file(&path, old, 0o640);
        let outcome = install(&path, CMD, 5, false, 0o644).unwrap();
        assert!(outcome.written);
        let backup = outcome.backup.clone().unwrap();
        assert_eq!(backup.parent(), Some(tmp.path()));
        let backup_name = backup.file_name().unwrap().to_str().unwrap();
        let stamp = backup_name
            .strip_prefix("managed-settings.json.auditship-backup-")
            .unwrap();
        assert_eq!(stamp.len(), 16, "{stamp}");
        assert!(stamp.chars().enumerate().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        }));
        assert_eq!(fs::read_to_string(&backup).unwrap(), old);
        assert_eq!(mode_of(&backup), 0o640);
        assert_eq!(mode_of(&path), 0o640);
        // Narrower than a managed file should be: said so.
        assert!(
            outcome.report.warnings.iter().any(|w| w.contains("0640")),
            "{:?}",
            outcome.report.warnings
        );
        let after = parse(&fs::read_to_string(&path).unwrap());
        assert_eq!(after["permissions"], json!({ "deny": ["Read(./.env)"] }));
        assert_eq!(after["n"], json!(1.5));
        assert_eq!(our_entries(&after, "SessionStart"), [ours()]);
        assert_eq!(dir_listing(tmp.path()).len(), 2);

        // Another change within the same second gets its own backup.
        let outcome = install(&path, "/usr/sbin/auditship record", 5, false, 0o644).unwrap();
        let second = outcome.backup.unwrap();
        assert_ne!(second, backup);
        assert_eq!(fs::read_to_string(&backup).unwrap(), old);
        assert_eq!(dir_listing(tmp.path()).len(), 3);
    }

    #[test]
    fn empty_file_counts_as_empty_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("settings.json");
        write_file(&path, " \n", 0o600);
        let outcome = install(&path, CMD, 5, false, 0o600).unwrap();
        assert!(outcome.written);
        assert_eq!(fs::read_to_string(outcome.backup.unwrap()).unwrap(), " \n");
        assert_eq!(
            parse(&fs::read_to_string(&path).unwrap()),
            merged(json!({})).0
        );
    }

    #[test]
    fn dry_run_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("new/.claude/settings.json");
        let outcome = install(&missing, CMD, 5, true, 0o600).unwrap();
        assert!(!outcome.written && outcome.backup.is_none());
        assert_eq!(outcome.report.added, all_names());
        assert_eq!(parse(&outcome.text), merged(json!({})).0);
        assert!(!tmp.path().join("new").exists());

        let path = tmp.path().join("settings.json");
        write_file(&path, "{\"model\":\"x\"}", 0o600);
        let outcome = install(&path, CMD, 5, true, 0o600).unwrap();
        assert!(!outcome.written && outcome.backup.is_none());
        assert_eq!(parse(&outcome.text)["model"], "x");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"model\":\"x\"}");
        assert_eq!(
            dir_listing(tmp.path()),
            ["settings.json".to_string()].into()
        );
    }

    #[test]
    fn run_prints_json_then_summary_for_a_dry_run() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("settings.json");
        let mut out = Vec::new();
        let version = Some(Version::new(2, 1, 90));
        run(Scope::User, &path, CMD, 5, version, &[], true, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let (json_text, last) = out.trim_end().rsplit_once('\n').unwrap();
        assert_eq!(
            parse(json_text)["hooks"]["PermissionDenied"][0]["matcher"],
            "*"
        );
        assert!(parse(json_text)["hooks"].get("PreModelSwitch").is_none());
        assert!(last.contains("dry run, nothing written"), "{last}");
        assert!(last.contains("added 25 (Setup, SessionStart"), "{last}");
        assert!(!path.exists());

        let mut out = Vec::new();
        let outcome = run(Scope::User, &path, CMD, 5, None, &[], false, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains(": written: added 30"), "{}", lines[0]);
        assert!(lines[1].starts_with("warning: Claude Code's version is unknown"));
        assert_eq!(mode_of(&path), 0o600);
        assert!(outcome.written);
    }

    #[test]
    fn symlinked_settings_are_edited_where_they_point() {
        let tmp = tempfile::tempdir().unwrap();
        let dotfiles = tmp.path().join("dotfiles");
        let claude = tmp.path().join(".claude");
        fs::create_dir_all(&dotfiles).unwrap();
        fs::create_dir_all(&claude).unwrap();
        let real = dotfiles.join("claude-settings.json");
        write_file(&real, "{\"theme\":\"dark\"}", 0o644);
        let link = claude.join("settings.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let outcome = install(&link, CMD, 5, false, 0o600).unwrap();
        assert_eq!(outcome.path, fs::canonicalize(&real).unwrap());
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(parse(&fs::read_to_string(&link).unwrap())["theme"], "dark");
        assert_eq!(
            outcome.backup.unwrap().parent(),
            Some(fs::canonicalize(&dotfiles).unwrap().as_path())
        );
        assert_eq!(mode_of(&real), 0o644);

        let dangling = claude.join("dangling.json");
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), &dangling).unwrap();
        assert!(install(&dangling, CMD, 5, false, 0o600).is_err());
    }

    #[test]
    fn owner_is_kept_when_run_as_root() {
        let tmp = tempfile::tempdir().unwrap();
        let probe = tmp.path().join("probe");
        fs::write(&probe, "").unwrap();
        if fs::metadata(&probe).unwrap().uid() != 0 {
            eprintln!("not root: ownership is exercised only when the suite runs as root");
            return;
        }
        let (uid, gid) = (4242, 4343);
        let path = tmp.path().join("settings.json");
        write_file(&path, "{}", 0o600);
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        let outcome = install(&path, CMD, 5, false, 0o600).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        let backup = fs::metadata(outcome.backup.unwrap()).unwrap();
        assert_eq!((backup.uid(), backup.gid()), (uid, gid));

        // New file and directories in a user's home take that user's ownership.
        let home = tmp.path().join("home");
        fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        let path = home.join(".claude/settings.json");
        install(&path, CMD, 5, false, 0o600).unwrap();
        for p in [home.join(".claude"), path] {
            let meta = fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{}", p.display());
        }

        // A user's link to a file the user does not own is not followed.
        let foreign = tmp.path().join("root-owned.json");
        write_file(&foreign, "{}", 0o644);
        let link = tmp.path().join("link.json");
        std::os::unix::fs::symlink(&foreign, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(uid), Some(gid)).unwrap();
        let err = install(&link, CMD, 5, false, 0o600).unwrap_err();
        assert!(err.contains("refusing to follow"), "{err}");
        assert_eq!(fs::read_to_string(&foreign).unwrap(), "{}");
    }

    #[test]
    fn detecting_the_installed_version() {
        let tmp = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let path = tmp.path().join(name);
            write_file(&path, &format!("#!/bin/sh\n{body}\n"), 0o755);
            path
        };
        let good = script("claude-good", "echo '2.1.88 (Claude Code)'");
        let slow = script("claude-slow", "sleep 5; echo 2.1.88");
        let failing = script("claude-fail", "echo 2.1.88; exit 3");
        let limit = Duration::from_secs(2);
        assert_eq!(
            detect_version_of(&good, limit),
            Some(Version::new(2, 1, 88))
        );
        let started = Instant::now();
        assert_eq!(detect_version_of(&slow, Duration::from_millis(200)), None);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(detect_version_of(&failing, limit), None);
        assert_eq!(detect_version_of(&tmp.path().join("absent"), limit), None);
    }

    #[test]
    fn telemetry_env_is_merged_beside_other_variables() {
        let vars = telemetry_env("http://127.0.0.1:4318/v1/logs");
        let mut settings = json!({"env": {"OTEL_METRICS_EXPORTER": "prometheus", "OTEL_LOGS_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}});
        let mut report = MergeReport::default();
        merge_env(&mut settings, &vars, &mut report).unwrap();
        assert_eq!(report.env_set.len(), 5, "{report:?}");
        assert!(report.changed());
        let env = &settings["env"];
        assert_eq!(env["OTEL_METRICS_EXPORTER"], "prometheus");
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://collector:4318");
        assert_eq!(env["OTEL_LOGS_EXPORTER"], "otlp");
        assert_eq!(env["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"], "http/protobuf");
        assert_eq!(env["OTEL_LOG_TOOL_DETAILS"], "1");
        assert_eq!(env["CLAUDE_CODE_ENABLE_TELEMETRY"], "1");
        let mut again = MergeReport::default();
        merge_env(&mut settings, &vars, &mut again).unwrap();
        assert!(again.env_set.is_empty() && !again.changed(), "{again:?}");
        assert!(
            again.summary().ends_with("env set 0; env unchanged 5"),
            "{}",
            again.summary()
        );

        let mut bad = json!({"env": ["x"]});
        assert!(merge_env(&mut bad, &vars, &mut MergeReport::default()).is_err());
        assert_eq!(bad, json!({"env": ["x"]}));
        let mut none = json!({});
        merge_env(&mut none, &[], &mut MergeReport::default()).unwrap();
        assert_eq!(none, json!({}), "no env block without --telemetry");
    }

    #[test]
    fn the_configuration_a_command_names() {
        let cases = [
            (
                "/bin/auditship record --config /etc/a.toml",
                Some("/etc/a.toml"),
            ),
            (
                "auditship record --config='/my dir/a.toml'",
                Some("/my dir/a.toml"),
            ),
            ("auditship record -c x.toml", Some("x.toml")),
            ("auditship record", None),
        ];
        for (command, want) in cases {
            assert_eq!(
                config_of_command(command),
                want.map(PathBuf::from),
                "{command}"
            );
        }
    }
}
