//! `install-hooks --mcp`: registers `auditship mcp` as the MCP server `auditship`
//! where Claude Code reads MCP servers, as `claude mcp add` would.
//!
//! Which file (checked against Claude Code 2.1.328): user scope, the `mcpServers`
//! of `~/.claude.json` (`$CLAUDE_CONFIG_DIR/.claude.json` when that is set), which
//! Claude Code loads without asking; managed scope,
//! `/etc/claude-code/managed-mcp.json`, which, while it exists, is the only source
//! of MCP servers Claude Code loads (users' own servers stop loading); a project's
//! `.mcp.json` (given as the path), whose servers each user approves once.
//!
//! Only `mcpServers.auditship` is ours: every other server and every other key
//! (`~/.claude.json` holds much of Claude Code's own state) is kept as parsed. The
//! file is written as `install-hooks` writes settings (temp file, fsync, rename,
//! backup of the old content, mode and owner kept), and not at all when our entry
//! is already there as it should be.

use super::{Scope, parse_settings, pretty, read_if_exists, resolve_target, write_atomically};
use serde_json::{Map, Value, json};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The server's name, which makes the model's tool `mcp__auditship__record_decision`.
pub const SERVER_NAME: &str = "auditship";

/// Claude Code's managed MCP servers on Linux.
pub const MANAGED_MCP_PATH: &str = "/etc/claude-code/managed-mcp.json";

/// The file holding a user's own MCP servers: `<claude_config_dir>/.claude.json`
/// when given (the value of `CLAUDE_CONFIG_DIR`), else `<home>/.claude.json`.
pub fn user_mcp_path(home: &Path, claude_config_dir: Option<&Path>) -> PathBuf {
    match claude_config_dir {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(".claude.json"),
        _ => home.join(".claude.json"),
    }
}

/// The file `--mcp` edits for `scope` by default.
pub fn mcp_path(scope: Scope, home: &Path, claude_config_dir: Option<&Path>) -> PathBuf {
    match scope {
        Scope::User => user_mcp_path(home, claude_config_dir),
        Scope::Managed => PathBuf::from(MANAGED_MCP_PATH),
    }
}

/// Our server entry: `program mcp [--config PATH]` over stdio.
pub fn server_entry(program: &str, config: Option<&Path>) -> Value {
    let mut args = vec![Value::from("mcp")];
    if let Some(c) = config {
        args.push(Value::from("--config"));
        args.push(Value::from(c.to_string_lossy()));
    }
    json!({ "type": "stdio", "command": program, "args": args, "env": {} })
}

/// What a merge did to our entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    Added,
    Updated,
    Unchanged,
}

/// Makes `mcpServers.auditship` of `file` equal to `entry`, creating `mcpServers`
/// when absent. Pure; on `Err` (a file that is not an object, an `mcpServers` that
/// is not one) the value is untouched.
pub fn merge_server(file: &mut Value, entry: &Value) -> Result<Merged, String> {
    let root = file
        .as_object_mut()
        .ok_or("the file is not a JSON object")?;
    let servers = root
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else {
        return Err("`mcpServers` is not a JSON object; nothing written".into());
    };
    Ok(match servers.get(SERVER_NAME) {
        Some(old) if old == entry => Merged::Unchanged,
        Some(_) => {
            servers.insert(SERVER_NAME.into(), entry.clone());
            Merged::Updated
        }
        None => {
            servers.insert(SERVER_NAME.into(), entry.clone());
            Merged::Added
        }
    })
}

/// The result of [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub merged: Merged,
    /// The file edited: the given path, or where its symlink points.
    pub path: PathBuf,
    pub written: bool,
    pub backup: Option<PathBuf>,
    /// Whether the file existed before.
    pub existed: bool,
    /// The file's text after the run (or as it would be, for a dry run).
    pub text: String,
}

/// Merges `entry` into the MCP file at `path` and, unless `dry_run` or nothing
/// changed, writes it with a backup of the old content. A missing file is created
/// with `new_file_mode`.
pub fn install(
    path: &Path,
    entry: &Value,
    dry_run: bool,
    new_file_mode: u32,
) -> Result<Installed, String> {
    let target = resolve_target(path)?;
    let original = read_if_exists(&target)?;
    let mut file = match &original {
        Some((bytes, _)) => parse_settings(&target, bytes)?,
        None => Value::Object(Map::new()),
    };
    let merged =
        merge_server(&mut file, entry).map_err(|e| format!("{}: {e}", target.display()))?;
    let text = match (&original, merged) {
        (Some((bytes, _)), Merged::Unchanged) => String::from_utf8_lossy(bytes).into_owned(),
        _ => pretty(&file)?,
    };
    let mut installed = Installed {
        merged,
        path: target.clone(),
        written: false,
        backup: None,
        existed: original.is_some(),
        text,
    };
    if dry_run || merged == Merged::Unchanged {
        return Ok(installed);
    }
    // An existing file keeps its mode and owner: ~/.claude.json is its owner's alone.
    installed.backup =
        write_atomically(&target, original.as_ref(), &installed.text, new_file_mode)?;
    installed.written = true;
    Ok(installed)
}

/// Installs for `scope` at `path` and writes to `out` one line saying what was
/// done, then warnings (a managed file created: users' own servers stop loading;
/// a project file: each user approves the server once).
pub fn run(
    scope: Scope,
    path: &Path,
    entry: &Value,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Installed, String> {
    let installed = install(path, entry, dry_run, scope.new_file_mode())?;
    let mut print = || -> io::Result<()> {
        if dry_run && installed.merged != Merged::Unchanged {
            out.write_all(installed.text.as_bytes())?;
            if !installed.text.ends_with('\n') {
                writeln!(out)?;
            }
        }
        let verb = match (dry_run, installed.written) {
            (_, false) if installed.merged == Merged::Unchanged => "already up to date",
            (true, _) => "dry run, nothing written",
            (false, _) => "written",
        };
        let what = match installed.merged {
            Merged::Added => "added",
            Merged::Updated => "updated",
            Merged::Unchanged => "unchanged",
        };
        write!(
            out,
            "{}: {verb}: MCP server {SERVER_NAME} {what}",
            installed.path.display()
        )?;
        if let Some(backup) = &installed.backup {
            write!(out, "; backup {}", backup.display())?;
        }
        writeln!(out)?;
        for warning in warnings(scope, path, &installed) {
            writeln!(out, "warning: {warning}")?;
        }
        Ok(())
    };
    print().map_err(|e| format!("writing output: {e}"))?;
    Ok(installed)
}

fn warnings(scope: Scope, path: &Path, installed: &Installed) -> Vec<String> {
    let mut w = Vec::new();
    let managed = path.file_name().is_some_and(|n| n == "managed-mcp.json");
    if (scope == Scope::Managed || managed) && !installed.existed {
        w.push(format!(
            "{} did not exist: while it does, Claude Code loads only the MCP servers it \
             names, and users' own servers stop loading",
            installed.path.display()
        ));
    }
    if path.file_name().is_some_and(|n| n == ".mcp.json") {
        w.push(
            "a project's .mcp.json server runs once each user approves it in Claude Code"
                .to_string(),
        );
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        server_entry(
            "/usr/bin/auditship",
            Some(Path::new("/etc/auditship/auditship.toml")),
        )
    }

    #[test]
    fn the_entry_is_what_claude_mcp_add_writes() {
        assert_eq!(
            entry(),
            json!({ "type": "stdio", "command": "/usr/bin/auditship",
                "args": ["mcp", "--config", "/etc/auditship/auditship.toml"], "env": {} })
        );
        assert_eq!(server_entry("auditship", None)["args"], json!(["mcp"]));
    }

    #[test]
    fn merging_keeps_other_servers_and_keys_and_is_idempotent() {
        let mut file = json!({
            "numStartups": 3,
            "projects": { "/src/app": { "mcpServers": { "local": {} } } },
            "mcpServers": { "github": { "type": "http", "url": "https://x" } },
        });
        let before = file.clone();
        assert_eq!(merge_server(&mut file, &entry()), Ok(Merged::Added));
        assert_eq!(file["mcpServers"]["github"], before["mcpServers"]["github"]);
        assert_eq!(file["projects"], before["projects"]);
        assert_eq!(file["numStartups"], 3);
        assert_eq!(file["mcpServers"][SERVER_NAME], entry());
        assert_eq!(merge_server(&mut file, &entry()), Ok(Merged::Unchanged));
        let other = server_entry("/opt/auditship", None);
        assert_eq!(merge_server(&mut file, &other), Ok(Merged::Updated));
        assert_eq!(file["mcpServers"][SERVER_NAME], other);

        let mut empty = json!({});
        assert_eq!(merge_server(&mut empty, &entry()), Ok(Merged::Added));
        for bad in [json!([]), json!({ "mcpServers": [] })] {
            let mut v = bad.clone();
            assert!(merge_server(&mut v, &entry()).is_err());
            assert_eq!(v, bad, "untouched");
        }
    }

    #[test]
    fn install_writes_once_and_keeps_the_mode() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".claude.json");
        std::fs::write(
            &path,
            r#"{"userID":"u","mcpServers":{"x":{"command":"y"}}}"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let first = install(&path, &entry(), false, 0o644).unwrap();
        assert_eq!((first.merged, first.written), (Merged::Added, true));
        assert!(first.backup.is_some());
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["userID"], "u");
        assert_eq!(v["mcpServers"]["x"], json!({ "command": "y" }));
        let again = install(&path, &entry(), false, 0o644).unwrap();
        assert_eq!((again.merged, again.written), (Merged::Unchanged, false));
        assert_eq!(again.backup, None);

        let fresh = dir.path().join("etc/managed-mcp.json");
        let made = install(&fresh, &entry(), false, 0o644).unwrap();
        assert!(!made.existed && made.written);
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o644);
        let mut out = Vec::new();
        std::fs::remove_file(&fresh).unwrap();
        run(Scope::Managed, &fresh, &entry(), true, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("dry run, nothing written"), "{out}");
        assert!(out.contains("users' own servers stop loading"), "{out}");
        assert!(!fresh.exists());
    }

    #[test]
    fn paths_by_scope() {
        let home = Path::new("/home/a");
        assert_eq!(
            mcp_path(Scope::User, home, None),
            Path::new("/home/a/.claude.json")
        );
        assert_eq!(
            mcp_path(Scope::User, home, Some(Path::new("/cfg"))),
            Path::new("/cfg/.claude.json")
        );
        assert_eq!(
            mcp_path(Scope::Managed, home, None),
            Path::new(MANAGED_MCP_PATH)
        );
    }
}
