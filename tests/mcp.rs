//! `auditship mcp` with the real binary over a pipe: the protocol as a client sees
//! it, decisions in the chain (local and sealed), `install-hooks --mcp`, and the real
//! Claude Code CLI calling the tool from a scripted session.

use crate::claude_code::{Lab, assert_every_hook_recorded, assert_fired, assert_trail_verifies};
use crate::messages_api::{Block, MessagesApi};
use crate::sealer::{KID, NOBODY, Setup};
use crate::util::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long an answer may take before the test fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// `auditship mcp` as a child, spoken to line by line.
struct Mcp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Mcp {
    /// Starts `c` (an `auditship mcp` command) with piped stdio.
    fn spawn(mut c: Command) -> Mcp {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn auditship mcp");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Mcp {
            child,
            stdin,
            lines,
        }
    }

    /// `auditship mcp --config CONFIG` with a clean environment plus `env`.
    fn start(home: &Path, config: &Path, env: &[(&str, &str)]) -> Mcp {
        let mut c = cmd(home);
        c.arg("mcp")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied());
        Mcp::spawn(c)
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, message: &Value) {
        self.send_raw(format!("{message}\n").as_bytes());
    }

    /// The next line on stdout, which must be one JSON-RPC message.
    fn recv(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(ANSWER_LIMIT)
            .expect("an answer on stdout");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout holds only protocol messages ({e}): {line}"));
        assert_eq!(v["jsonrpc"], "2.0", "{v}");
        v
    }

    /// Sends a request and returns its answer.
    fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let answer = self.recv();
        assert_eq!(answer["id"], id, "the answer to this request: {answer}");
        answer
    }

    fn call(&mut self, id: u64, arguments: Value, meta: Option<Value>) -> Value {
        let mut params = json!({ "name": "record_decision", "arguments": arguments });
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        self.request(json!(id), "tools/call", params)
    }

    /// Closes stdin and waits for the exit; nothing more may be on stdout.
    fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < ANSWER_LIMIT, "mcp did not exit at EOF");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(rest.is_empty(), "unasked output on stdout: {rest:?}");
        (status, stderr)
    }
}

fn initialize(m: &mut Mcp, version: &str) -> Value {
    let answer = m.request(
        json!(0),
        "initialize",
        json!({ "protocolVersion": version, "capabilities": {},
            "clientInfo": { "name": "test", "version": "1" } }),
    );
    m.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    answer
}

fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {answer}"))
        .to_string()
}

/// A local setup: a config whose audit directory is `<t>/audit`.
fn local_config(t: &Path) -> std::path::PathBuf {
    write_config(
        t,
        &format!(
            "[record]\ndir = \"{}\"\nfallback_file = \"{}\"\nfsync = false\n",
            t.join("audit").display(),
            t.join("errors.log").display()
        ),
    )
}

/// The protocol over a pipe: versions, notifications, the tool's schema, a call
/// that records, calls that do not fit, JSON-RPC errors, an oversize line that is
/// skipped while the server goes on, and exit 0 at EOF; every stdout line a message.
#[test]
fn the_protocol_over_a_pipe() {
    let t = tempdir();
    let config = local_config(t.path());
    let mut m = Mcp::start(
        t.path(),
        &config,
        &[("CLAUDE_CODE_SESSION_ID", "sess-mcp-1")],
    );

    let init = initialize(&mut m, "2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "auditship");
    let newer = m.request(
        json!("again"),
        "initialize",
        json!({ "protocolVersion": "2099-01-01", "capabilities": {} }),
    );
    assert_eq!(newer["result"]["protocolVersion"], "2025-11-25", "{newer}");
    assert_eq!(m.request(json!(1), "ping", json!({}))["result"], json!({}));

    let tools = m.request(json!(2), "tools/list", json!({}));
    let list = tools["result"]["tools"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{tools}");
    let schema = &list[0]["inputSchema"];
    assert_eq!(list[0]["name"], "record_decision");
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["decision"]));
    assert_eq!(schema["properties"]["decision"]["type"], "string");
    assert_eq!(schema["properties"]["confidence"]["type"], "number");
    assert_eq!(schema["properties"]["confidence"]["minimum"], 0);
    assert_eq!(schema["properties"]["confidence"]["maximum"], 1);
    for list_arg in ["factors", "alternatives", "resources"] {
        assert_eq!(
            schema["properties"][list_arg],
            json!({ "type": "array", "items": { "type": "string" },
                "description": schema["properties"][list_arg]["description"] }),
            "{list_arg}"
        );
    }

    let ok = m.call(
        3,
        json!({ "decision": "use PostgreSQL; password=hunter2-secret", "factors": ["latency", "cost"],
            "confidence": 0.8, "alternatives": ["SQLite"], "resources": ["db/schema.sql", "db/seed.sql"] }),
        Some(json!({ "claudecode/toolUseId": "toolu_mcp_1" })),
    );
    assert_eq!(ok["result"]["isError"], false, "{ok}");
    assert!(text_of(&ok).contains("seq 0 hash "), "{ok}");

    for (id, args, why) in [
        (
            4,
            json!({ "decision": "x", "confidence": 1.5 }),
            "confidence",
        ),
        (5, json!({ "factors": ["x"] }), "decision is required"),
        (6, json!({ "decision": "x", "factors": "cost" }), "factors"),
        (
            7,
            json!({ "decision": "x", "session_id": "forged" }),
            "unknown argument",
        ),
    ] {
        let a = m.call(id, args.clone(), None);
        assert_eq!(a["result"]["isError"], true, "{args}: {a}");
        assert!(text_of(&a).contains(why), "{args}: {a}");
    }
    let unknown_tool = m.request(
        json!(8),
        "tools/call",
        json!({ "name": "rm", "arguments": {} }),
    );
    assert_eq!(unknown_tool["error"]["code"], -32602, "{unknown_tool}");
    let no_params = m.request(json!(9), "tools/call", json!(null));
    assert_eq!(no_params["error"]["code"], -32602, "{no_params}");
    let unknown = m.request(json!("u"), "resources/list", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");

    m.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 10, \"method\"\n");
    let parse = m.recv();
    assert_eq!(
        (parse["id"].clone(), parse["error"]["code"].clone()),
        (Value::Null, json!(-32700)),
        "{parse}"
    );
    let mut huge = vec![b'x'; 3 * 1024 * 1024];
    huge.push(b'\n');
    m.send_raw(&huge);
    let oversize = m.recv();
    assert_eq!(oversize["error"]["code"], -32600, "{oversize}");
    assert_eq!(m.request(json!(11), "ping", json!({}))["result"], json!({}));

    let (status, stderr) = m.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");

    // The one decision that fit is in the chain, mapped like `record --decision`.
    let trail = read_stream(&t.path().join("audit"));
    assert_eq!(trail.len(), 1, "{trail:?}");
    let e = &trail[0];
    assert_eq!(e["action"], "ai_decision");
    assert_eq!(e["session_id"], "sess-mcp-1");
    assert_eq!(e["resource"], "db/schema.sql");
    assert_eq!(e["metadata"]["tool_use_id"], "toolu_mcp_1");
    assert_eq!(e["metadata"]["source_event"], "ai_decision");
    assert_eq!(
        e["decision"]["factors_considered"],
        json!(["latency", "cost"])
    );
    assert_eq!(e["decision"]["alternative_options"], json!(["SQLite"]));
    assert_eq!(e["decision"]["confidence"], 0.8);
    assert_eq!(
        e["decision"]["resources"],
        json!(["db/schema.sql", "db/seed.sql"])
    );
    let text = e["decision"]["decision"].as_str().unwrap();
    assert!(
        text.starts_with("use PostgreSQL") && !text.contains("hunter2-secret"),
        "redacted: {e}"
    );
    assert!(text_of(&ok).contains(e["hash"].as_str().unwrap()), "{ok}");
    assert_trail_verifies(&t.path().join("audit"), 1);
}

/// A recording failure reaches the model as a tool error saying why, and the server
/// stays up; the event is in the fallback file, as for `record --decision`.
#[test]
fn a_failure_is_a_tool_error_and_the_server_goes_on() {
    let t = tempdir();
    // The audit directory's place is taken by a file: nothing can be appended.
    std::fs::write(t.path().join("audit"), "not a directory").unwrap();
    let config = local_config(t.path());
    let mut m = Mcp::start(t.path(), &config, &[]);
    initialize(&mut m, "2025-03-26");
    let failed = m.call(1, json!({ "decision": "keep going" }), None);
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    assert!(text_of(&failed).starts_with("not recorded: "), "{failed}");
    assert_eq!(m.request(json!(2), "ping", json!({}))["result"], json!({}));
    let (status, stderr) = m.finish();
    assert_eq!(status.code(), Some(0));
    assert!(stderr.contains("auditship record:"), "{stderr}");
    let fallback = std::fs::read_to_string(t.path().join("errors.log")).unwrap();
    assert!(fallback.contains("keep going"), "{fallback}");
}

/// Sealed mode: the server runs as `nobody` with a client configuration naming the
/// sealer; the decision lands in nobody's sealed stream with the kernel's identity,
/// and the stream verifies with the sealer's key.
#[test]
fn in_sealed_mode_the_decision_lands_in_the_sealed_stream() {
    let s = Setup::new("", "on_error = \"block\"\n");
    let daemon = s.start();
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
    ])
    .arg(bin())
    .arg("mcp")
    .arg("--config")
    .arg(&s.client_cfg)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", &s.home)
    .env("CLAUDE_CODE_SESSION_ID", "sess-sealed");
    let mut m = Mcp::spawn(c);
    initialize(&mut m, "2024-11-05");
    let ok = m.call(
        1,
        json!({ "decision": "rotate the key", "confidence": 1 }),
        Some(json!({ "claudecode/toolUseId": "toolu_sealed" })),
    );
    assert_eq!(ok["result"]["isError"], false, "{ok}");
    assert!(text_of(&ok).contains("in the sealed stream nobody"), "{ok}");
    let (status, stderr) = m.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");

    let events = s.events("nobody");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["action"], "ai_decision");
    assert_eq!(e["session_id"], "sess-sealed");
    assert_eq!(
        e["user_id"], "nobody",
        "the kernel's caller, not the client's claim"
    );
    assert_eq!(e["metadata"]["uid"], NOBODY);
    assert_eq!(e["metadata"]["sealed"], true);
    assert_eq!(e["metadata"]["tool_use_id"], "toolu_sealed");
    assert_eq!(e["kid"], KID);
    assert!(text_of(&ok).contains(e["hash"].as_str().unwrap()));
    assert!(
        std::fs::read_dir(&s.home).unwrap().next().is_none(),
        "nothing written in nobody's home"
    );
    let (code, report) = s.verify("nobody");
    assert_eq!(code, Some(0), "{report}");
    daemon.stop(Duration::from_secs(20));
}

/// `install-hooks --mcp` registers the server where each scope's Claude Code reads
/// it, with the hooks' `--config`, keeping other servers and keys, and a second run
/// changes nothing.
#[test]
fn install_hooks_mcp_registers_the_server_idempotently() {
    let t = tempdir();
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let user_file = home.join(".claude.json");
    std::fs::write(
        &user_file,
        r#"{"userID":"u1","mcpServers":{"github":{"type":"http","url":"https://mcp.example"}}}"#,
    )
    .unwrap();
    let config = t.path().join("auditship.toml");
    let install = |extra: &[&str]| {
        let out = cmd(&home)
            .args(["install-hooks", "--claude-version", "2.1.328", "--mcp"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = install(&["--config", config.to_str().unwrap()]);
    assert!(first.contains("MCP server auditship added"), "{first}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&user_file).unwrap()).unwrap();
    assert_eq!(file["userID"], "u1");
    assert_eq!(file["mcpServers"]["github"]["url"], "https://mcp.example");
    assert_eq!(
        file["mcpServers"]["auditship"],
        json!({ "type": "stdio", "command": bin().to_str().unwrap(),
            "args": ["mcp", "--config", config.to_str().unwrap()], "env": {} })
    );
    let second = install(&["--config", config.to_str().unwrap()]);
    assert!(
        second.contains("already up to date: MCP server auditship unchanged"),
        "{second}"
    );

    // Managed scope, at a path of the test's choosing: the default --config, and the
    // warning that a new managed-mcp.json takes control of users' servers.
    let managed = t.path().join("etc/managed-mcp.json");
    let settings = t.path().join("etc/managed-settings.json");
    let out = install(&[
        "--scope",
        "managed",
        "--path",
        settings.to_str().unwrap(),
        "--mcp-path",
        managed.to_str().unwrap(),
    ]);
    assert!(out.contains("users' own servers stop loading"), "{out}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&managed).unwrap()).unwrap();
    assert_eq!(
        file["mcpServers"]["auditship"]["args"],
        json!(["mcp", "--config", "/etc/auditship/auditship.toml"])
    );

    // The hook command's program and configuration carry over to the server.
    let project = t.path().join("project/.mcp.json");
    let out = install(&[
        "--command",
        "/opt/auditship/bin/auditship record --config /opt/auditship/a.toml",
        "--mcp-path",
        project.to_str().unwrap(),
    ]);
    assert!(out.contains("approves it"), "{out}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&project).unwrap()).unwrap();
    assert_eq!(
        file["mcpServers"]["auditship"],
        json!({ "type": "stdio", "command": "/opt/auditship/bin/auditship",
            "args": ["mcp", "--config", "/opt/auditship/a.toml"], "env": {} })
    );
}

/// The real Claude Code CLI: after `install-hooks --mcp`, the scripted model calls
/// `mcp__auditship__record_decision`; the CLI starts `auditship mcp`, the decision
/// is in the trail between the PreToolUse and PostToolUse records of that very call,
/// in the same session, and the trail verifies.
#[test]
fn claude_code_calls_the_tool_and_the_decision_joins_its_hook_records() {
    let lab = Lab::new();
    lab.install_hooks_with(&["--mcp"]);
    let registered: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.home().join(".claude.json")).unwrap())
            .unwrap();
    assert_eq!(
        registered["mcpServers"]["auditship"]["args"],
        json!([
            "mcp",
            "--config",
            lab.path("auditship.toml").to_str().unwrap()
        ])
    );

    let tool = "mcp__auditship__record_decision";
    let api = MessagesApi::start(vec![
        vec![
            Block::text("Recording the choice."),
            Block::tool(
                "toolu_decide",
                tool,
                json!({ "decision": "use SQLite for the cache", "factors": ["single host"],
                    "confidence": 0.9, "alternatives": ["Redis"], "resources": ["cache/db.rs"] }),
            ),
        ],
        vec![Block::text("Decision recorded.")],
    ]);
    let result = lab.run(&api, "Pick a cache store", tool);
    assert_eq!(result["is_error"], false, "{result}");
    let session = result["session_id"].as_str().unwrap().to_string();
    let results = api.tool_results();
    let answer = results
        .iter()
        .find(|r| r.tool_use_id == "toolu_decide")
        .unwrap_or_else(|| panic!("no result for the call: {results:?}"));
    assert!(!answer.is_error, "{answer:?}");
    assert!(
        answer.text.contains("recorded: ai_decision seq"),
        "{answer:?}"
    );

    let witnessed = lab.witnessed();
    assert_fired(
        &witnessed,
        &[
            ("PreToolUse", Some("toolu_decide")),
            ("PostToolUse", Some("toolu_decide")),
        ],
    );
    let trail = lab.trail();
    assert_trail_verifies(&lab.audit_dir(), trail.len());
    let (decisions, hooks): (Vec<Value>, Vec<Value>) = trail
        .into_iter()
        .partition(|e| e["action"] == "ai_decision");
    assert_every_hook_recorded(&witnessed, &hooks);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let d = &decisions[0];
    assert_eq!(d["session_id"], session.as_str(), "joined by session: {d}");
    assert_eq!(d["metadata"]["tool_use_id"], "toolu_decide", "{d}");
    assert_eq!(d["decision"]["decision"], "use SQLite for the cache");
    assert_eq!(d["decision"]["alternative_options"], json!(["Redis"]));
    assert_eq!(d["resource"], "cache/db.rs");
    assert_eq!(
        d["metadata"]["project_dir"],
        lab.project().to_str().unwrap()
    );
    assert!(
        answer.text.contains(d["hash"].as_str().unwrap()),
        "{answer:?}"
    );
    let seq_of = |event: &str| {
        hooks
            .iter()
            .find(|e| {
                e["metadata"]["source_event"] == event
                    && e["metadata"]["tool_use_id"] == "toolu_decide"
            })
            .map(|e| {
                assert_eq!(e["metadata"]["tool_name"], tool, "{e}");
                assert_eq!(e["session_id"], session.as_str(), "{e}");
                e["seq"].as_u64().unwrap()
            })
            .unwrap_or_else(|| panic!("no {event} record of the call"))
    };
    let seq = d["seq"].as_u64().unwrap();
    assert!(
        seq_of("PreToolUse") < seq && seq < seq_of("PostToolUse"),
        "the decision sits between the hook records of its call"
    );
}
