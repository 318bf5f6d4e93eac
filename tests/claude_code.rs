//! The real Claude Code CLI, with hooks installed by `auditship install-hooks`, running
//! scripted sessions against the Messages API stand-in (`messages_api`).
//!
//! The CLI is the npm package `@anthropic-ai/claude-code` at [`PINNED_VERSION`], which
//! `tests/run.sh` installs into `target/claude-code` and names in
//! `AUDITSHIP_TEST_CLAUDE`; its native binary needs no network once installed. Without
//! it these tests fail, saying how to install it; they never skip.
//!
//! Which hooks ran is known from a witness: next to the settings `install-hooks`
//! wrote, the CLI gets (through `--settings`) a second hook for every event and matcher
//! of ours, a shell `cat` that keeps each payload in a file of its own. Claude Code runs
//! every matching hook of every settings source, so the witness sees exactly the calls
//! our recorder got, and its files are the real payloads. Each assertion compares the
//! trail with what the witness saw, so a hook call that left no event fails the test.

use crate::messages_api::{Block, MessagesApi};
use crate::util::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Claude Code release `tests/run.sh` installs (keep the two in step).
const PINNED_VERSION: &str = "2.1.328";

/// How long one CLI run may take before it is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(45);

/// The Claude Code executable: `$AUDITSHIP_TEST_CLAUDE`, else where `tests/run.sh`
/// installs it. Panics, saying how to install it, when there is none.
fn claude() -> PathBuf {
    let path = match std::env::var_os("AUDITSHIP_TEST_CLAUDE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/claude-code/node_modules/.bin/claude"),
    };
    assert!(
        path.is_file(),
        "the Claude Code CLI is not installed at {}: run `bash tests/run.sh`, which installs \
         @anthropic-ai/claude-code@{PINNED_VERSION} with npm into target/claude-code (or set \
         AUDITSHIP_TEST_CLAUDE to a `claude` executable)",
        path.display()
    );
    path
}

/// `claude --version`, e.g. `2.1.328`.
fn claude_version(program: &Path) -> String {
    let out = Command::new(program)
        .arg("--version")
        .env("DISABLE_AUTOUPDATER", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", program.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "claude --version: {text}");
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `a.b.c` as numbers, for comparing versions.
fn version_parts(v: &str) -> Vec<u32> {
    v.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// Text no test run shares with another: the clock's nanoseconds and our pid.
pub(crate) fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:08x}{:06x}", nanos, std::process::id())
}

/// One user's machine in a temp dir: a home with hooks installed by `install-hooks`,
/// a project directory the CLI runs in, auditship's config and audit directory, and
/// the witness.
pub(crate) struct Lab {
    root: tempfile::TempDir,
    claude: PathBuf,
    version: String,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let claude = claude();
        let version = claude_version(&claude);
        let lab = Lab {
            root: tempdir(),
            claude,
            version,
        };
        for dir in ["home", "project", "tmp", "witness"] {
            std::fs::create_dir(lab.path(dir)).unwrap();
        }
        lab.write_record_config("");
        lab.install_hooks();
        lab.write_witness_settings();
        lab
    }

    /// Writes auditship's configuration: the lab's audit directory and fallback file,
    /// and `extra` (TOML lines) in the `[record]` table.
    pub(crate) fn write_record_config(&self, extra: &str) {
        write_config(
            self.root.path(),
            &format!(
                "[record]\ndir = \"{}\"\nfallback_file = \"{}\"\nfsync = false\n{extra}",
                self.audit_dir().display(),
                self.fallback_file().display()
            ),
        );
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.path("home")
    }

    pub(crate) fn project(&self) -> PathBuf {
        self.path("project")
    }

    pub(crate) fn audit_dir(&self) -> PathBuf {
        self.path("audit")
    }

    pub(crate) fn fallback_file(&self) -> PathBuf {
        self.path("record-errors.log")
    }

    pub(crate) fn settings(&self) -> Value {
        let text = std::fs::read_to_string(self.home().join(".claude/settings.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The hook command: the binary under test, told where its config is with
    /// `--config` (the test's HOME has no `~/.config/auditship`).
    pub(crate) fn record_command(&self) -> String {
        let command = format!(
            "{} record --config {}",
            bin().display(),
            self.path("auditship.toml").display()
        );
        assert!(
            !command.contains(['\'', '"', '\\', '$', '`']),
            "paths that need no quoting: {command}"
        );
        command
    }

    /// `auditship install-hooks --scope user`, with the CLI first on PATH so the
    /// installer asks it for its version, as on a developer's machine.
    fn install_hooks(&self) {
        self.install_hooks_with(&[]);
    }

    /// [`Lab::install_hooks`] with more arguments (`--telemetry`, `--config …`).
    pub(crate) fn install_hooks_with(&self, extra: &[&str]) {
        let path = std::env::join_paths(
            std::iter::once(self.claude.parent().unwrap().to_path_buf())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        let mut c = cmd(&self.home());
        c.env("PATH", path).args([
            "install-hooks",
            "--scope",
            "user",
            "--command",
            &self.record_command(),
        ]);
        c.args(extra);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "install-hooks: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// For every group of ours in the installed settings, a group with the same event
    /// and matcher whose hook keeps the payload in `witness/`.
    fn write_witness_settings(&self) {
        let witness = format!(
            "cat > \"$(mktemp '{}/hook.XXXXXXXX')\"",
            self.path("witness").display()
        );
        let ours = self.record_command();
        let mut hooks = serde_json::Map::new();
        for (event, groups) in self.settings()["hooks"].as_object().unwrap() {
            let mut mine = Vec::new();
            for group in groups.as_array().unwrap() {
                if !group["hooks"].to_string().contains(&ours) {
                    continue;
                }
                let mut g =
                    json!({ "hooks": [{ "type": "command", "command": witness, "timeout": 5 }] });
                if let Some(m) = group.get("matcher") {
                    g["matcher"] = m.clone();
                }
                mine.push(g);
            }
            assert_eq!(mine.len(), 1, "one group of ours under {event}");
            hooks.insert(event.clone(), Value::Array(mine));
        }
        let text = json!({ "hooks": hooks }).to_string();
        std::fs::write(self.path("witness.json"), text).unwrap();
    }

    /// Runs `claude -p PROMPT --allowedTools ALLOWED --output-format json` in the
    /// project against `api`, and returns its JSON result. Killed (and the test
    /// failed) after [`RUN_LIMIT`].
    pub(crate) fn run(&self, api: &MessagesApi, prompt: &str, allowed: &str) -> Value {
        let (status, out) = self.launch(api, prompt, allowed);
        assert!(
            status.success(),
            "claude: {status}\n{}",
            self.diagnostics(api)
        );
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("claude printed no JSON ({e})\n{}", self.diagnostics(api)))
    }

    /// Runs the CLI as [`Lab::run`] does, and returns its exit status and stdout,
    /// whatever they are.
    pub(crate) fn launch(
        &self,
        api: &MessagesApi,
        prompt: &str,
        allowed: &str,
    ) -> (std::process::ExitStatus, String) {
        let stdout = self.path("claude.stdout");
        let stderr = self.path("claude.stderr");
        let mut c = Command::new(&self.claude);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TMPDIR", self.path("tmp"))
            .env("ANTHROPIC_BASE_URL", &api.url)
            .env("ANTHROPIC_API_KEY", "sk-ant-test-standin")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            // SessionEnd hooks get 1.5 s in all by default; this machine may be busy.
            .env("CLAUDE_CODE_SESSIONEND_HOOKS_TIMEOUT_MS", "10000")
            .current_dir(self.project())
            .args(["-p", prompt, "--allowedTools", allowed])
            .args(["--output-format", "json", "--settings"])
            .arg(self.path("witness.json"))
            .arg("--debug-file")
            .arg(self.path("claude-debug.log"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .process_group(0);
        let mut child = c.spawn().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > RUN_LIMIT {
                // SAFETY: signalling the process group of our own child.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                panic!(
                    "claude ran longer than {RUN_LIMIT:?}\n{}",
                    self.diagnostics(api)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, std::fs::read_to_string(&stdout).unwrap())
    }

    /// The CLI's output and debug log, and what the stand-in was asked.
    pub(crate) fn diagnostics(&self, api: &MessagesApi) -> String {
        let read = |name: &str| std::fs::read_to_string(self.path(name)).unwrap_or_default();
        let debug = read("claude-debug.log");
        let hooks: Vec<&str> = debug.lines().filter(|l| l.contains("Hook")).collect();
        format!(
            "claude {}\nstdout: {}\nstderr: {}\nhook lines of the debug log:\n{}\nrequests:\n{}",
            self.version,
            read("claude.stdout"),
            read("claude.stderr"),
            hooks.join("\n"),
            api.summary()
        )
    }

    /// Every payload the witness kept, as sent.
    pub(crate) fn witnessed_text(&self) -> Vec<String> {
        std::fs::read_dir(self.path("witness"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    }

    /// Every payload the witness kept, parsed (a lone surrogate read as U+FFFD).
    pub(crate) fn witnessed(&self) -> Vec<Value> {
        self.witnessed_text()
            .iter()
            .map(|text| {
                serde_json::from_str(&without_lone_surrogates(text))
                    .unwrap_or_else(|e| panic!("{e}: {text}"))
            })
            .collect()
    }

    pub(crate) fn trail(&self) -> Vec<Value> {
        assert!(
            self.audit_dir().is_dir(),
            "no audit directory: record wrote nothing; fallback file: {}",
            std::fs::read_to_string(self.fallback_file()).unwrap_or_default()
        );
        read_stream(&self.audit_dir())
    }
}

/// `text` with each lone surrogate escape (`\ud800` not part of a pair) replaced by
/// `\ufffd`, so that serde_json reads what Claude Code, a JavaScript program, wrote.
fn without_lone_surrogates(text: &str) -> String {
    let escape_at = |i: usize| -> Option<u16> {
        let hex = text.get(i..i + 6)?.strip_prefix("\\u")?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.char_indices().peekable();
    while let Some((i, c)) = rest.next() {
        let take = match (c, escape_at(i)) {
            ('\\', Some(0xD800..=0xDBFF)) if matches!(escape_at(i + 6), Some(0xDC00..=0xDFFF)) => {
                out.push_str(&text[i..i + 12]);
                11
            }
            ('\\', Some(0xD800..=0xDFFF)) => {
                out.push_str("\\ufffd");
                5
            }
            ('\\', _) => {
                // Any other escape: keep it whole, so `\\u` is not read as `\u`.
                out.push(c);
                if let Some((_, next)) = rest.next() {
                    out.push(next);
                }
                0
            }
            _ => {
                out.push(c);
                0
            }
        };
        for _ in 0..take {
            rest.next();
        }
    }
    out
}

/// What identifies one hook call: event, session and tool call (when it has one).
type HookKey = (String, String, Option<String>);

fn payload_key(p: &Value) -> HookKey {
    (
        p["hook_event_name"].as_str().unwrap_or("?").to_string(),
        p["session_id"].as_str().unwrap_or("?").to_string(),
        p["tool_use_id"].as_str().map(str::to_string),
    )
}

fn event_key(e: &Value) -> HookKey {
    (
        e["metadata"]["source_event"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        e["session_id"].as_str().unwrap_or("?").to_string(),
        e["metadata"]["tool_use_id"].as_str().map(str::to_string),
    )
}

fn counts(keys: impl Iterator<Item = HookKey>) -> BTreeMap<HookKey, usize> {
    let mut m = BTreeMap::new();
    for k in keys {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

/// Each hook call the witness saw left exactly one event in the trail with the same
/// event name, session and tool call, and the trail holds nothing else.
pub(crate) fn assert_every_hook_recorded(witnessed: &[Value], trail: &[Value]) {
    let seen = counts(witnessed.iter().map(payload_key));
    let recorded = counts(trail.iter().map(event_key));
    let missing: Vec<_> = seen
        .iter()
        .filter(|(k, n)| recorded.get(*k).copied().unwrap_or(0) < **n)
        .collect();
    assert!(
        missing.is_empty(),
        "hook calls without their event in the trail: {missing:?}\nrecorded: {recorded:?}"
    );
    assert_eq!(recorded, seen, "the trail holds exactly the hook calls");
}

/// Asserts the witness saw each of `required` (event, tool call) at least once.
pub(crate) fn assert_fired(witnessed: &[Value], required: &[(&str, Option<&str>)]) {
    let seen: Vec<(String, Option<String>)> = witnessed
        .iter()
        .map(|p| {
            let (event, _, tool) = payload_key(p);
            (event, tool)
        })
        .collect();
    for (event, tool) in required {
        assert!(
            seen.iter()
                .any(|(e, t)| e == event && t.as_deref() == *tool),
            "Claude Code did not run the {event} hook for {tool:?}; it ran {seen:?}"
        );
    }
}

/// `auditship verify` and the independent verifier both find the stream intact.
pub(crate) fn assert_trail_verifies(dir: &Path, events: usize) {
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!(code, 0, "auditship verify: {doc}");
    assert!(triples(&doc).is_empty(), "{doc}");

    let doc = independent_verify(dir, &[]);
    assert_eq!(doc["events"], events, "{doc}");
}

/// Where each sentinel occurs in the files under `paths` (recursively): file, line,
/// hook event, and the JSON path of the value holding it.
fn leaks(paths: &[PathBuf], sentinels: &[(&str, String)]) -> Vec<String> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files);
    }
    let mut found = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            for (what, sentinel) in sentinels {
                if !line.contains(sentinel.as_str()) {
                    continue;
                }
                let (event, fields) = match serde_json::from_str::<Value>(line) {
                    Ok(v) => {
                        let mut at = Vec::new();
                        json_paths_holding(&v, sentinel, "", &mut at);
                        (v["metadata"]["source_event"].clone(), at.join(", "))
                    }
                    Err(_) => (Value::Null, "(not JSON)".into()),
                };
                found.push(format!(
                    "{what} in {} line {} ({event}) at {fields}",
                    file.display(),
                    n + 1
                ));
            }
        }
    }
    found
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            collect_files(&e.unwrap().path(), out);
        }
    } else if p.is_file() {
        out.push(p.to_path_buf());
    }
}

fn json_paths_holding(v: &Value, needle: &str, at: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains(needle) => out.push(at.to_string()),
        Value::Object(m) => {
            for (k, x) in m {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                json_paths_holding(x, needle, &path, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                json_paths_holding(x, needle, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// A session that reads a file, runs a command, writes a file, runs a command that
/// fails, and answers: every hook call is in the trail, the trail verifies, and the
/// content the session handled (file text, command output, written text, the error,
/// the prompt, the final answer) is nowhere in the audit directory or fallback file.
#[test]
fn a_scripted_session_is_recorded_whole_and_keeps_content_out_of_the_trail() {
    let lab = Lab::new();
    let n = nonce();
    let file_text = format!("file-content-sentinel-{n}");
    let seed: u32 = u32::from_str_radix(&n[..6], 16).unwrap();
    let bash_out = format!("bash-out-{}", seed + 1);
    let fail_out = format!("fail-out-{}", seed + 2);
    let written = format!("written-content-sentinel-{n}");
    let prompt_text = format!("prompt-sentinel-{n}");
    let answer = format!("final-answer-sentinel-{n}");
    let notes = lab.project().join("notes.txt");
    std::fs::write(&notes, format!("{file_text}\n")).unwrap();
    let out = lab.project().join("out.txt");

    let api = MessagesApi::start(vec![
        vec![
            Block::text("Reading the notes."),
            Block::tool("toolu_read", "Read", json!({ "file_path": notes })),
            Block::tool(
                "toolu_bash",
                "Bash",
                json!({ "command": format!("echo bash-out-$(({seed}+1))"), "description": "Print a value" }),
            ),
            Block::tool(
                "toolu_write",
                "Write",
                json!({ "file_path": out, "content": format!("{written}\n") }),
            ),
        ],
        vec![Block::tool(
            "toolu_fail",
            "Bash",
            json!({ "command": format!("echo fail-out-$(({seed}+2)); exit 3"), "description": "Fail" }),
        )],
        vec![Block::text(&answer)],
    ]);
    let result = lab.run(
        &api,
        &format!("Summarise notes.txt ({prompt_text})"),
        "Read,Bash,Write",
    );

    // The session ran as scripted: the tools really ran and the answer came back.
    assert_eq!(result["is_error"], false, "{result}");
    assert_eq!(result["result"], answer.as_str(), "{result}");
    let session = result["session_id"].as_str().unwrap().to_string();
    let results = api.tool_results();
    let text_of = |id: &str| {
        results
            .iter()
            .find(|r| r.tool_use_id == id)
            .unwrap_or_else(|| panic!("no tool result for {id}: {results:?}"))
    };
    assert!(text_of("toolu_read").text.contains(&file_text));
    assert!(text_of("toolu_bash").text.contains(&bash_out));
    assert!(text_of("toolu_fail").text.contains(&fail_out) && text_of("toolu_fail").is_error);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{written}\n")
    );

    let witnessed = lab.witnessed();
    let mut required = vec![
        ("SessionStart", None),
        ("UserPromptSubmit", None),
        ("Stop", None),
        ("SessionEnd", None),
        ("PostToolUseFailure", Some("toolu_fail")),
    ];
    for id in ["toolu_read", "toolu_bash", "toolu_write", "toolu_fail"] {
        required.push(("PreToolUse", Some(id)));
    }
    for id in ["toolu_read", "toolu_bash", "toolu_write"] {
        required.push(("PostToolUse", Some(id)));
    }
    if version_parts(&lab.version) >= version_parts(PINNED_VERSION) {
        required.push(("PostToolBatch", None));
    }
    assert_fired(&witnessed, &required);
    assert!(
        witnessed
            .iter()
            .all(|p| p["session_id"] == session.as_str()),
        "one session"
    );

    let trail = lab.trail();
    assert_every_hook_recorded(&witnessed, &trail);
    assert_trail_verifies(&lab.audit_dir(), trail.len());

    let sentinels = [
        ("the text of the file Read", file_text),
        ("the output of a Bash command", bash_out),
        ("the content Write wrote", written),
        ("the output of a failed Bash command", fail_out),
        ("the prompt", prompt_text),
        ("the final answer", answer),
    ];
    let found = leaks(&[lab.audit_dir(), lab.fallback_file()], &sentinels);
    assert!(
        found.is_empty(),
        "content kept in clear although the defaults digest it:\n{}",
        found.join("\n")
    );
}

/// A tool call the permissions do not allow (Write, with only Read allowed) never runs,
/// and the trail holds its PreToolUse and PermissionRequest, and no PostToolUse.
#[test]
fn a_denied_tool_call_leaves_its_attempt_and_permission_request() {
    let lab = Lab::new();
    let target = lab.project().join("denied.txt");
    let api = MessagesApi::start(vec![vec![Block::tool(
        "toolu_denied",
        "Write",
        json!({ "file_path": target, "content": "never written\n" }),
    )]]);
    let result = lab.run(&api, "Write denied.txt", "Read");

    assert!(!target.exists(), "the denied Write did not run");
    let denials = result["permission_denials"].to_string();
    assert!(denials.contains("toolu_denied"), "{result}");
    let results = api.tool_results();
    assert!(
        results
            .iter()
            .any(|r| r.tool_use_id == "toolu_denied" && r.is_error),
        "{results:?}"
    );

    let witnessed = lab.witnessed();
    assert_fired(
        &witnessed,
        &[
            ("PreToolUse", Some("toolu_denied")),
            ("PermissionRequest", None),
        ],
    );
    let trail = lab.trail();
    assert_every_hook_recorded(&witnessed, &trail);
    assert_trail_verifies(&lab.audit_dir(), trail.len());

    let of = |event: &str| -> Vec<&Value> {
        trail
            .iter()
            .filter(|e| e["metadata"]["source_event"] == event)
            .collect()
    };
    let pre = of("PreToolUse");
    assert!(
        pre.iter()
            .any(|e| e["metadata"]["tool_use_id"] == "toolu_denied"
                && e["action"] == "file_write"
                && e["outcome"] == "attempted"
                && e["resource"] == target.to_str().unwrap()),
        "{pre:?}"
    );
    let asked = of("PermissionRequest");
    assert!(
        asked
            .iter()
            .any(|e| e["metadata"]["tool_name"] == "Write" && e["action"] == "permission_change"),
        "{asked:?}"
    );
    assert!(
        of("PostToolUse")
            .iter()
            .all(|e| e["metadata"]["tool_use_id"] != "toolu_denied"),
        "a denied call has no PostToolUse"
    );
}

/// Claude Code passes on a string cut inside a UTF-16 pair as a lone surrogate escape
/// (`"\ud800"`, what `JSON.stringify` writes for it): the hook calls that carry one
/// are in the trail like every other, and the trail verifies.
#[test]
fn hook_calls_carrying_a_lone_surrogate_are_recorded_too() {
    let lab = Lab::new();
    let api = MessagesApi::start(vec![vec![Block::tool_json(
        "toolu_cut",
        "Bash",
        r#"{"command":"true","description":"cut \ud800 here"}"#,
    )]]);
    let result = lab.run(&api, "Run true", "Bash");
    assert_eq!(result["is_error"], false, "{result}");

    let sent = lab.witnessed_text();
    let carrying = sent.iter().filter(|t| t.contains(r"\ud800")).count();
    assert!(
        carrying >= 2,
        "Claude Code sent the escape to PreToolUse and PostToolUse: {sent:?}"
    );
    let witnessed = lab.witnessed();
    assert_fired(
        &witnessed,
        &[
            ("PreToolUse", Some("toolu_cut")),
            ("PostToolUse", Some("toolu_cut")),
        ],
    );
    let trail = lab.trail();
    assert_every_hook_recorded(&witnessed, &trail);
    assert_trail_verifies(&lab.audit_dir(), trail.len());
}

#[test]
fn lone_surrogate_escapes_become_replacement_characters() {
    for (text, want) in [
        (r#""a\ud800b""#, r#""a\ufffdb""#),
        (r#""\udc00""#, r#""\ufffd""#),
        (r#""\ud83d\ude00""#, r#""\ud83d\ude00""#),
        (r#""\\ud800""#, r#""\\ud800""#),
        (r#""\ud800\u0041é""#, r#""\ufffd\u0041é""#),
    ] {
        assert_eq!(without_lone_surrogates(text), want, "{text}");
    }
}

// ---------------------------------------------------------------------------------
// Failing closed (`on_error = "block"`) with the real CLI: each event blocks by the
// mechanism it honours (src/record/fail_closed.rs, docs/FORMAT.md section 10).

/// The text of auditship's deny decision for a `PermissionRequest` it could not record.
const DENY_MESSAGE: &str = "auditship could not record this permission request";

impl Lab {
    /// A signing key for `hmac_key_file`, and the `[record]` lines that sign with it
    /// and fail closed (`on_error`). Removing the key file breaks the configuration
    /// for every later `record` run, as a key rotated away under a running session.
    fn signing_config(&self, on_error: &str) -> String {
        let key = key_file(&self.root.path().join("tmp"), "k1", &"ab".repeat(32));
        format!(
            "on_error = \"{on_error}\"\nhmac_kid = \"k1\"\nhmac_key_file = \"{}\"\n",
            key.display()
        )
    }

    fn key_path(&self) -> PathBuf {
        self.path("tmp").join("k1.key")
    }

    /// Adds a hook group running `command` under `event` to the settings the CLI is
    /// given with `--settings`.
    pub(crate) fn add_cli_hook(&self, event: &str, command: &str) {
        let path = self.path("witness.json");
        let mut settings: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let groups = settings["hooks"][event].as_array_mut().unwrap();
        groups.push(json!({ "hooks": [{ "type": "command", "command": command, "timeout": 5 }] }));
        std::fs::write(&path, settings.to_string()).unwrap();
    }

    /// `auditship check-config` on the lab's configuration succeeds: what breaks later
    /// breaks only when `record` runs.
    fn assert_config_checks(&self) {
        let mut c = cmd(&self.home());
        c.arg("check-config")
            .arg("--config")
            .arg(self.path("auditship.toml"));
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "check-config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The records of the configured fallback file and of the default one (where
    /// `record` reports when the configuration does not load), parsed.
    fn fallback(&self) -> Vec<Value> {
        let default = self.home().join(".claude/audit-errors/record-errors.jsonl");
        [self.fallback_file(), default]
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                text.lines()
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    /// The session transcript's entry (`~/.claude/projects/…/<session>.jsonl`) that
    /// carries the result of tool call `id`.
    fn transcript_result(&self, id: &str) -> Value {
        let mut files = Vec::new();
        collect_files(&self.home().join(".claude/projects"), &mut files);
        let entries: Vec<Value> = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        entries
            .into_iter()
            .find(|e| {
                e["message"]["content"].as_array().is_some_and(|blocks| {
                    blocks
                        .iter()
                        .any(|b| b["type"] == "tool_result" && b["tool_use_id"] == id)
                })
            })
            .unwrap_or_else(|| panic!("no result for {id} in the transcript"))
    }
}

/// The text of the `tool_result` block of a transcript entry.
fn result_text(entry: &Value) -> String {
    let block = &entry["message"]["content"][0];
    match &block["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The hook lines of the CLI's debug log that mention `what`.
fn debug_lines(lab: &Lab, what: &str) -> Vec<String> {
    std::fs::read_to_string(lab.path("claude-debug.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .map(str::to_string)
        .collect()
}

/// One assistant turn: a Bash call `first` (which breaks recording), then a Bash call
/// that creates `marker`. Claude Code runs the two one after the other, each through
/// its own PreToolUse, so the second one's PreToolUse finds recording broken.
fn break_then_touch(first: &str, marker: &Path) -> MessagesApi {
    MessagesApi::start(vec![vec![
        Block::tool(
            "toolu_break",
            "Bash",
            json!({ "command": first, "description": "Prepare" }),
        ),
        Block::tool(
            "toolu_touch",
            "Bash",
            json!({ "command": format!("touch {}", marker.display()), "description": "Create the marker" }),
        ),
    ]])
}

/// The fallback file holds the event of `event` for tool call `id`, with an error
/// naming `error`.
fn assert_in_fallback(lab: &Lab, event: &str, id: &str, error: &str) {
    let fallback = lab.fallback();
    assert!(
        fallback
            .iter()
            .any(|f| f["event"]["metadata"]["source_event"] == event
                && f["event"]["metadata"]["tool_use_id"] == id
                && f["error"].as_str().is_some_and(|e| e.contains(error))),
        "the fallback file has no {event} of {id} failing with {error:?}: {fallback:?}"
    );
}

/// The CLI reported `id` as blocked by our PreToolUse hook: denied in its JSON result,
/// and in the transcript a rejection from the hook whose text is `record`'s error.
fn assert_blocked_by_pre_tool_use(lab: &Lab, result: &Value, id: &str, error: &str) {
    assert!(
        result["permission_denials"].to_string().contains(id),
        "{result}"
    );
    let entry = lab.transcript_result(id);
    let text = result_text(&entry);
    assert_eq!(entry["message"]["content"][0]["is_error"], true, "{entry}");
    assert_eq!(
        entry["permissionDecision"]["reasonCode"], "hook:PreToolUse",
        "{entry}"
    );
    assert!(
        text.starts_with("PreToolUse:Bash hook error: [")
            && text.contains("auditship record: ")
            && text.contains(error),
        "{text}"
    );
}

/// A lab signing with a key file, failing closed or not; one turn moves the key away
/// (breaking the configuration for every later `record` run, as a key rotated away
/// under a running session), then creates a marker. Returns the lab, the stand-in,
/// the CLI's JSON result and the marker's path.
fn key_removed_mid_session(on_error: &str) -> (Lab, MessagesApi, Value, PathBuf) {
    let lab = Lab::new();
    lab.write_record_config(&lab.signing_config(on_error));
    lab.assert_config_checks();
    let marker = lab.path("tmp").join("MARKER");
    let key = lab.key_path();
    let api = break_then_touch(
        &format!("mv {} {}.gone", key.display(), key.display()),
        &marker,
    );
    let result = lab.run(&api, "Create the marker", "Bash");
    assert!(
        !key.exists(),
        "the first call ran\n{}",
        lab.diagnostics(&api)
    );
    (lab, api, result, marker)
}

/// With `on_error = "block"`, a Bash call whose PreToolUse `record` cannot record (the
/// signing key went away after `check-config` passed) is blocked: `record` exits 2,
/// Claude Code denies the call and tells the model the hook's error, and the marker
/// is never created. The call is not lost: the fallback file holds its event.
#[test]
fn pre_tool_use_blocks_a_call_record_cannot_record() {
    let (lab, api, result, marker) = key_removed_mid_session("block");
    assert!(
        !marker.exists(),
        "PreToolUse did not block the call\n{}",
        lab.diagnostics(&api)
    );
    let error = "record.hmac_key_file/hmac_key_env";
    assert_blocked_by_pre_tool_use(&lab, &result, "toolu_touch", error);
    assert!(
        debug_lines(&lab, "Hooks: PreToolUse:Bash [")
            .iter()
            .any(|l| l.contains(" record --config ") && l.contains("finished with status 2")),
        "{}",
        lab.diagnostics(&api)
    );
    assert_in_fallback(&lab, "PreToolUse", "toolu_touch", error);

    // What was recorded before the key went is in the trail; the blocked call is not.
    let trail = lab.trail();
    let pre = |id: &str| {
        trail.iter().any(|e| {
            e["metadata"]["source_event"] == "PreToolUse" && e["metadata"]["tool_use_id"] == id
        })
    };
    assert!(pre("toolu_break") && !pre("toolu_touch"), "{trail:?}");
}

/// The control: the same session with `on_error = "allow"` runs the call (and the
/// failure still reaches the fallback file).
#[test]
fn pre_tool_use_lets_the_call_through_when_the_policy_allows() {
    let (lab, api, result, marker) = key_removed_mid_session("allow");
    assert!(
        marker.exists(),
        "the call ran although record failed\n{}",
        lab.diagnostics(&api)
    );
    assert_eq!(result["permission_denials"], json!([]), "{result}");
    assert_in_fallback(
        &lab,
        "PreToolUse",
        "toolu_touch",
        "record.hmac_key_file/hmac_key_env",
    );
}

/// A `PermissionRequest` that `record` cannot record, under `on_error = "block"`, is
/// denied by the JSON decision `record` prints (Claude Code ignores exit statuses
/// there). The failing recorder is the only hook of its kind that fails: it runs for
/// `PermissionRequest` alone (through `--settings`, with a configuration whose key
/// variable is unset), next to the installed hooks, which record normally, so
/// PreToolUse lets the call reach the permission check. In `-p` mode a call the
/// permissions do not allow is refused anyway; what shows that Claude Code honours
/// our decision is its message, which reaches the model as the reason for the denial.
#[test]
fn permission_request_is_denied_by_the_json_decision() {
    let lab = Lab::new();
    let broken = lab.path("broken.toml");
    std::fs::write(
        &broken,
        format!(
            "[record]\ndir = \"{}\"\nfsync = false\non_error = \"block\"\nhmac_kid = \"k1\"\n\
             hmac_key_env = \"AUDITSHIP_TEST_UNSET_KEY\"\n",
            lab.audit_dir().display()
        ),
    )
    .unwrap();
    let command = format!("{} record --config {}", bin().display(), broken.display());
    lab.add_cli_hook("PermissionRequest", &command);
    let target = lab.project().join("written.txt");
    let api = MessagesApi::start(vec![vec![Block::tool(
        "toolu_write",
        "Write",
        json!({ "file_path": target, "content": "never written\n" }),
    )]]);
    let result = lab.run(&api, "Write written.txt", "Read");

    assert!(!target.exists(), "the denied Write did not run");
    assert!(
        result["permission_denials"]
            .to_string()
            .contains("toolu_write"),
        "{result}"
    );
    let denial = api
        .tool_results()
        .into_iter()
        .find(|r| r.tool_use_id == "toolu_write")
        .unwrap_or_else(|| panic!("no result for the Write\n{}", lab.diagnostics(&api)));
    assert!(denial.is_error, "{denial:?}");
    assert!(
        denial.text.contains(DENY_MESSAGE),
        "Claude Code did not take auditship's deny decision: {denial:?}\n{}",
        lab.diagnostics(&api)
    );
    let deny = format!("Hook PermissionRequest ({command}) returned permissionDecision: deny");
    assert!(
        !debug_lines(&lab, &deny).is_empty(),
        "{}",
        lab.diagnostics(&api)
    );
    // Recorded by the installed hooks: the attempt and the request itself.
    let trail = lab.trail();
    let has = |event: &str| trail.iter().any(|e| e["metadata"]["source_event"] == event);
    assert!(has("PreToolUse") && has("PermissionRequest"), "{trail:?}");
}

/// `record` waiting for a stream lock that another process holds gives up after
/// `lock_timeout_ms`, well inside the hook timeout `install-hooks` wrote, and the
/// PreToolUse fails closed: Claude Code sees exit 2 (not a killed hook), and the call
/// does not run. The test takes the lock (`flock` on `<audit dir>/.lock`) while the
/// session's first Bash call waits for it, so everything before was recorded.
#[test]
fn a_stream_lock_held_too_long_blocks_the_call_before_the_hook_timeout() {
    let lab = Lab::new();
    lab.write_record_config("on_error = \"block\"\nlock_timeout_ms = 400\n");
    lab.assert_config_checks();
    let marker = lab.path("tmp").join("MARKER");
    let go = lab.path("tmp").join("GO");
    let locked = lab.path("tmp").join("LOCKED");
    let wait = format!(
        "touch {}; for i in $(seq 400); do [ -e {} ] && exit 0; sleep 0.05; done; exit 1",
        go.display(),
        locked.display()
    );
    let api = break_then_touch(&wait, &marker);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let lock_path = lab.audit_dir().join(".lock");
    let result = std::thread::scope(|s| {
        s.spawn(|| hold_lock_on_signal(&go, &lock_path, &locked, rx));
        let result = lab.run(&api, "Create the marker", "Bash");
        tx.send(()).unwrap();
        result
    });
    assert!(locked.exists(), "the test never took the lock");
    assert!(
        !marker.exists(),
        "PreToolUse did not block the call\n{}",
        lab.diagnostics(&api)
    );
    assert_blocked_by_pre_tool_use(&lab, &result, "toolu_touch", "waiting for the lock");

    // The recorder gave up on its own, with exit 2, before the hook timeout.
    let timeout = lab.settings()["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"]
        .as_f64()
        .unwrap();
    let finished: Vec<f64> = debug_lines(&lab, "Hooks: PreToolUse:Bash [")
        .iter()
        .filter(|l| l.contains(" record --config ") && l.contains("finished with status 2"))
        .filter_map(|l| {
            let ms = l.rsplit('(').next()?.strip_suffix("ms)")?;
            ms.parse::<f64>().ok()
        })
        .collect();
    assert_eq!(finished.len(), 1, "{}", lab.diagnostics(&api));
    assert!(
        finished[0] >= 400.0 && finished[0] < timeout * 1000.0,
        "record took {}ms against a {timeout} s hook timeout",
        finished[0]
    );
    assert_in_fallback(&lab, "PreToolUse", "toolu_touch", "waiting for the lock");
}

/// Waits for `go` to exist, then holds an exclusive `flock` on `lock` (creating
/// `locked` once it has it) until `release` says so or closes.
fn hold_lock_on_signal(
    go: &Path,
    lock: &Path,
    locked: &Path,
    release: std::sync::mpsc::Receiver<()>,
) {
    use std::os::fd::AsRawFd;
    use std::sync::mpsc::RecvTimeoutError;
    while !go.exists() {
        match release.recv_timeout(Duration::from_millis(10)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lock)
        .unwrap();
    // SAFETY: flock on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock {}", lock.display());
    std::fs::write(locked, "").unwrap();
    let _ = release.recv();
    drop(file);
}

/// Sealed mode end to end: the hooks `install-hooks` wrote run `record`, which hands
/// every call to the daemon's sealer. The sealed stream holds exactly the hook calls
/// Claude Code made, each with the kernel's identity of the process that ran the hook,
/// and verifies with the sealer's key; the local audit directory is never made.
#[test]
fn in_sealed_mode_every_hook_lands_in_the_sealed_stream() {
    let lab = Lab::new();
    let socket = lab.path("record.sock");
    let sealed = lab.path("sealed");
    let key = lab.path("sealer.key");
    let daemon_cfg = lab.path("daemon.toml");
    std::fs::write(
        &daemon_cfg,
        format!(
            "[agent]\nstate_dir = \"{}\"\nheartbeat_interval = \"0s\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[[sink]]\nname = \"local\"\ntype = \"file\"\npath = \"{}\"\n[sealer]\nlisten = \"{}\"\ndir = \"{}\"\nhmac_kid = \"lab\"\nhmac_key_file = \"{}\"\n",
            lab.path("state").display(),
            lab.path("shipped.jsonl").display(),
            socket.display(),
            sealed.display(),
            key.display()
        ),
    )
    .unwrap();
    lab.write_record_config(&format!(
        "socket = \"{}\"\non_error = \"block\"\n",
        socket.display()
    ));
    let daemon = Daemon::start(&lab.home(), &daemon_cfg);
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let api = MessagesApi::start(vec![
        vec![Block::tool(
            "toolu_sealed",
            "Bash",
            json!({ "command": "echo sealed-$((6*7))", "description": "Print a value" }),
        )],
        vec![Block::text("done")],
    ]);
    let result = lab.run(&api, "Print a value", "Bash");
    assert_eq!(result["is_error"], false, "{result}");
    let witnessed = lab.witnessed();
    assert_fired(
        &witnessed,
        &[
            ("SessionStart", None),
            ("PreToolUse", Some("toolu_sealed")),
            ("PostToolUse", Some("toolu_sealed")),
            ("SessionEnd", None),
        ],
    );

    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let user = auditship::users::name_of(uid).unwrap();
    let trail = read_stream(&sealed.join(&user));
    assert_every_hook_recorded(&witnessed, &trail);
    for e in &trail {
        assert_eq!(e["metadata"]["sealed"], true, "{e}");
        assert_eq!(e["metadata"]["uid"], uid, "{e}");
        assert_eq!(e["kid"], "lab", "{e}");
    }
    assert!(!lab.audit_dir().exists(), "nothing recorded locally");
    let hex = std::fs::read_to_string(&key).unwrap();
    let doc = independent_verify(&sealed.join(&user), &[("lab", hex.trim())]);
    assert_eq!(doc["events"], trail.len(), "{doc}");
    let (code, log) = daemon.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
}
