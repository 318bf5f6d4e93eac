//! The telemetry receiver (`[telemetry]`): Claude Code's OTLP logs sealed into a chain
//! per local user and shipped beside the hook records.
//!
//! With the real Claude Code CLI (hooks and the exporter's `env` from
//! `install-hooks --telemetry`), a tool call the permission settings reject ends in a
//! `denied` record carrying its `tool_use_id`, joined to the hook records by session,
//! prompt and tool call; Claude Code's report of a failed run of one of our hook
//! points is counted. Without the CLI, the captured bodies (`fixtures/otel/`) drive the
//! protocol: protobuf, JSON, gzip, keep-alive, 400, 404, 413, 415, 503,
//! `partialSuccess`, and the sender's uid from the kernel (a post made as another
//! user, through `setpriv`, lands in that user's stream).

use crate::claude_code::Lab;
use crate::http1::{ClientResponse, read_response};
use crate::messages_api::{Block, MessagesApi};
use crate::ops::{get, parse_prometheus, wait_until};
use crate::util::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the daemon may take to ship what it was sent.
const SHIP_LIMIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/otel")
            .join(name),
    )
    .unwrap()
}

/// The daemon's sections: hooks' stream `audit` as a source, a file sink, the
/// receiver on `port`, and `extra` TOML.
fn daemon_sections(root: &Path, audit: &Path, port: u16, extra: &str) -> String {
    format!(
        "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n\
         [[source]]\nname = \"claude\"\npaths = [\"{audit}\"]\n\n\
         [[sink]]\nname = \"local\"\ntype = \"file\"\npath = \"{shipped}\"\nbatch = {{ max_wait = \"50ms\" }}\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n",
        state = root.join("state").display(),
        audit = audit.display(),
        shipped = root.join("shipped.jsonl").display(),
    )
}

/// Every record the file sink wrote so far.
fn shipped(root: &Path) -> Vec<Value> {
    written_records(&root.join("shipped.jsonl"))
}

fn is_telemetry(r: &Value) -> bool {
    r["_auditship"]["source"] == "telemetry"
}

fn waits_for_listener(port: u16) {
    wait_until(Duration::from_secs(15), "the receiver listens", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A daemon with the receiver on its own, in a temp dir.
struct Receiver {
    root: tempfile::TempDir,
    port: u16,
    daemon: Option<Daemon>,
}

impl Receiver {
    fn start(extra: &str) -> Receiver {
        let root = tempdir();
        let port = free_port();
        let config = write_config(
            root.path(),
            &daemon_sections(root.path(), &root.path().join("audit"), port, extra),
        );
        let daemon = Daemon::start(root.path(), &config);
        waits_for_listener(port);
        Receiver {
            root,
            port,
            daemon: Some(daemon),
        }
    }

    fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn telemetry_dir(&self) -> PathBuf {
        self.state().join("telemetry")
    }

    fn status(&self) -> Value {
        let (code, body) = get(&self.state(), "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until the file sink holds `n` telemetry records, and returns them.
    fn shipped_telemetry(&self, n: usize) -> Vec<Value> {
        let mut records = Vec::new();
        wait_until(
            SHIP_LIMIT,
            &format!("{n} telemetry records shipped"),
            || {
                records = shipped(self.root.path())
                    .into_iter()
                    .filter(is_telemetry)
                    .collect();
                records.len() >= n
            },
        );
        assert_eq!(records.len(), n, "no more than were accepted");
        records
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take() {
            let (code, stderr) = d.stop(Duration::from_secs(20));
            if !std::thread::panicking() {
                assert_eq!(code, Some(0), "{stderr}");
            }
        }
    }
}

/// One request on `conn`: `headers` are extra header lines.
fn exchange(
    conn: &mut BufReader<TcpStream>,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> ClientResponse {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let s = conn.get_mut();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_response(conn).unwrap()
}

fn connect(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    BufReader::new(s)
}

/// One request on a connection of its own.
fn post(port: u16, headers: &[&str], body: &[u8]) -> ClientResponse {
    exchange(&mut connect(port), "/v1/logs", headers, body)
}

const PROTOBUF: &str = "Content-Type: application/x-protobuf";
const JSON: &str = "Content-Type: application/json";

fn header<'a>(r: &'a ClientResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

/// The number of log records in a body.
fn records_in(body: &[u8], json_body: bool) -> usize {
    let export = if json_body {
        auditship::otel::json::decode(body).unwrap()
    } else {
        auditship::otel::proto::decode(body).unwrap()
    };
    export.records()
}

/// `auditship verify` on one stream directory: intact, and how many events.
fn assert_stream_verifies(dir: &Path, events: usize) {
    let (code, doc) = verify_json(&[dir.as_os_str()]);
    assert_eq!(code, 0, "auditship verify: {doc}");
    assert_eq!(doc["events"], events, "{doc}");
    let doc = independent_verify(dir, &[]);
    assert_eq!(doc["events"], events, "{doc}");
}

/// Every answer OTLP/HTTP gives, on one keep-alive connection where the request
/// leaves it usable; what was acknowledged is sealed, verifies and ships intact.
#[test]
fn the_receiver_answers_as_otlp_has_it() {
    let r = Receiver::start("max_body_bytes = 100000\n");
    let pb = fixture("denied.pb");
    let js = fixture("denied.json");
    let gz = fixture("denied.pb.gz");
    let mut conn = connect(r.port);

    let a = exchange(&mut conn, "/v1/logs", &[PROTOBUF], &pb);
    assert_eq!(a.status, 200);
    assert_eq!(header(&a, "content-type"), Some("application/x-protobuf"));
    assert!(
        a.body.is_empty(),
        "an empty ExportLogsServiceResponse: {:?}",
        a.body
    );
    let a = exchange(&mut conn, "/v1/logs", &[JSON], &js);
    assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
    let a = exchange(
        &mut conn,
        "/v1/logs",
        &[PROTOBUF, "Content-Encoding: gzip"],
        &gz,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let mut accepted =
        records_in(&pb, false) + records_in(&js, true) + records_in(&gunzip(&gz), false);

    // Records that are not Claude Code's are refused, counted in partialSuccess.
    let mixed = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "claude_code.user_prompt"}, "attributes": [
            {"key": "session.id", "value": {"stringValue": "s-mixed"}},
            {"key": "prompt.id", "value": {"stringValue": "p-mixed"}}]},
        {"body": {"stringValue": "another program's log line"}},
        {"eventName": "other.event"}]}]}]});
    let a = exchange(&mut conn, "/v1/logs", &[JSON], mixed.to_string().as_bytes());
    assert_eq!(a.status, 200);
    let reply: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        reply["partialSuccess"]["rejectedLogRecords"], "2",
        "{reply}"
    );
    assert!(
        reply["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("claude_code")
    );
    accepted += 1;

    // A body that does not decode: 400 with a google.rpc.Status; the connection stays.
    let a = exchange(&mut conn, "/v1/logs", &[JSON], b"{\"resourceLogs\": 7}");
    assert_eq!(a.status, 400);
    let status: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(status["code"], 3, "{status}");
    let a = exchange(&mut conn, "/v1/logs", &[PROTOBUF], &pb[..pb.len() / 2]);
    assert_eq!(a.status, 400);
    assert_eq!(header(&a, "content-type"), Some("application/x-protobuf"));
    assert_eq!(a.body[0], 0x08, "a protobuf Status, code first");
    let a = exchange(
        &mut conn,
        "/v1/logs",
        &[PROTOBUF, "Content-Encoding: gzip"],
        b"not gzip",
    );
    assert_eq!(a.status, 400);
    let a = exchange(&mut conn, "/v1/logs", &[PROTOBUF], &pb);
    assert_eq!(a.status, 200, "still served after the refusals");
    accepted += records_in(&pb, false);

    // Past max_body_bytes: on the wire, or once decompressed.
    let big = vec![0u8; 100_001];
    assert_eq!(post(r.port, &[PROTOBUF], &big).status, 413);
    let bomb = gzip(&vec![b' '; 1 << 20]);
    assert!(bomb.len() < 100_000);
    let a = post(r.port, &[JSON, "Content-Encoding: gzip"], &bomb);
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    // Other paths, methods, media types and encodings.
    assert_eq!(
        exchange(&mut connect(r.port), "/v1/metrics", &[PROTOBUF], b"").status,
        404
    );
    assert_eq!(
        post(r.port, &["Content-Type: text/plain"], b"x").status,
        415
    );
    assert_eq!(
        post(r.port, &[PROTOBUF, "Content-Encoding: br"], b"x").status,
        415
    );
    let mut c = connect(r.port);
    c.get_mut()
        .write_all(b"GET /v1/logs HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c).unwrap().status, 405);
    // Chunked, with Expect: 100-continue answered first.
    let mut c = connect(r.port);
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\n{PROTOBUF}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
    );
    c.get_mut().write_all(head.as_bytes()).unwrap();
    let go = read_response(&mut c).unwrap();
    assert_eq!(go.status, 100);
    let (first, second) = pb.split_at(1000);
    for part in [first, second] {
        write!(c.get_mut(), "{:x}\r\n", part.len()).unwrap();
        c.get_mut().write_all(part).unwrap();
        c.get_mut().write_all(b"\r\n").unwrap();
    }
    c.get_mut().write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c).unwrap().status, 200);
    accepted += records_in(&pb, false);

    let records = r.shipped_telemetry(accepted);
    for rec in &records {
        assert_eq!(rec["_auditship"]["integrity"]["ok"], true, "{rec}");
        assert!(
            rec["metadata"]["source_event"]
                .as_str()
                .unwrap()
                .starts_with("otel:")
        );
        assert_eq!(rec["user_id"], "root");
        assert_eq!(rec["metadata"]["uid"], 0);
    }
    assert_stream_verifies(&r.telemetry_dir().join("root"), accepted);
    let t = &r.status()["telemetry"];
    assert_eq!(t["records_accepted"], accepted, "{t}");
    assert_eq!(t["records_refused"], 2, "{t}");
    assert_eq!(t["answers"]["413"], 2, "{t}");
    assert_eq!(t["answers"]["400"], 3, "{t}");
}

/// A stream that cannot be written gets 503 and Retry-After, so the exporter sends
/// the body again; nothing of it is sealed. Once the stream can be written, the same
/// body is stored.
#[test]
fn an_unwritable_stream_answers_503_and_the_body_is_sent_again() {
    let r = Receiver::start("");
    let pb = fixture("denied.pb");
    std::fs::create_dir_all(r.telemetry_dir()).unwrap();
    // A file where the user's stream directory must go.
    std::fs::write(r.telemetry_dir().join("root"), "in the way").unwrap();
    let a = post(r.port, &[PROTOBUF], &pb);
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(header(&a, "retry-after"), Some("1"));
    std::fs::remove_file(r.telemetry_dir().join("root")).unwrap();
    assert_eq!(post(r.port, &[PROTOBUF], &pb).status, 200);
    let n = records_in(&pb, false);
    r.shipped_telemetry(n);
    assert_stream_verifies(&r.telemetry_dir().join("root"), n);
    assert_eq!(r.status()["telemetry"]["write_failures"], 1);
}

/// The kernel, not the body, says who sent it: a post made as `nobody` (uid 65534,
/// through `setpriv`) is sealed into nobody's stream with `metadata.uid` 65534 and
/// the identity `[telemetry.users]` maps it to; root's own post stays root's.
#[test]
fn a_post_from_another_user_is_attributed_to_that_user() {
    let r = Receiver::start("[telemetry.users]\nnobody = \"nobody@example.com\"\n");
    let pb = fixture("denied.pb");
    let url = format!("http://127.0.0.1:{}/v1/logs", r.port);
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-sS",
        ])
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-H", PROTOBUF])
        .args(["--data-binary", "@-", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv and curl run");
    child.stdin.take().unwrap().write_all(&pb).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(post(r.port, &[PROTOBUF], &pb).status, 200);

    let n = records_in(&pb, false);
    let records = r.shipped_telemetry(2 * n);
    let stream_of = |rec: &Value| rec["_auditship"]["stream"].as_str().unwrap().to_string();
    let nobody: Vec<&Value> = records
        .iter()
        .filter(|rec| stream_of(rec).ends_with("/nobody"))
        .collect();
    let root: Vec<&Value> = records
        .iter()
        .filter(|rec| stream_of(rec).ends_with("/root"))
        .collect();
    assert_eq!((nobody.len(), root.len()), (n, n));
    for rec in nobody {
        assert_eq!(rec["metadata"]["uid"], 65534, "{rec}");
        assert_eq!(rec["user_id"], "nobody@example.com", "{rec}");
    }
    for rec in root {
        assert_eq!(rec["metadata"]["uid"], 0, "{rec}");
        assert_eq!(rec["user_id"], "root", "{rec}");
    }
    assert_stream_verifies(&r.telemetry_dir().join("nobody"), n);
}

// ---------------------------------------------------------------------------------
// The real Claude Code CLI.

impl Lab {
    /// The daemon's configuration (the hooks' `record` reads the same file) and
    /// `install-hooks --telemetry`: the exporter's endpoint comes from the
    /// `[telemetry] listen` of the configuration the hook command names.
    fn with_receiver(&self, port: u16) -> Daemon {
        let record = format!(
            "[record]\ndir = \"{}\"\nfallback_file = \"{}\"\nfsync = false\n\n",
            self.audit_dir().display(),
            self.fallback_file().display()
        );
        let config = self.path("auditship.toml");
        let text = record + &daemon_sections(&self.path(""), &self.audit_dir(), port, "");
        std::fs::write(&config, text).unwrap();
        self.install_hooks_with(&["--telemetry"]);
        let env = &self.settings()["env"];
        assert_eq!(
            env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"],
            format!("http://127.0.0.1:{port}/v1/logs")
        );
        assert_eq!(env["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"], "http/protobuf");
        let daemon = Daemon::start(&self.home(), &config);
        waits_for_listener(port);
        daemon
    }
}

/// The records shipped from the lab's daemon, once `done` holds of them.
fn shipped_when(
    lab: &Lab,
    api: &MessagesApi,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = std::time::Instant::now();
    loop {
        let records = shipped(&lab.path(""));
        if done(&records) {
            return records;
        }
        assert!(
            start.elapsed() < SHIP_LIMIT,
            "timed out waiting for {what}: {} records shipped\n{}",
            records.len(),
            lab.diagnostics(api)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(daemon: Daemon) {
    let (code, stderr) = daemon.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{stderr}");
}

/// A Write and an `rm -rf` that the permission settings refuse: each ends, in what
/// the daemon ships, in a `denied` record with its `tool_use_id`, beside the
/// `attempted` hook records of the same call. Every telemetry record shares its
/// session (and prompt, where it has one) with the hook records, is intact, and names
/// the user the kernel says sent it.
#[test]
fn rejected_tool_calls_end_in_denied_records_joined_to_the_hooks() {
    let lab = Lab::new();
    let port = free_port();
    let daemon = lab.with_receiver(port);
    let notes = lab.project().join("notes.txt");
    std::fs::write(&notes, "notes\n").unwrap();
    let build = lab.project().join("build");
    std::fs::create_dir(&build).unwrap();
    let out = lab.project().join("out.txt");
    let api = MessagesApi::start(vec![
        vec![
            Block::tool("toolu_read", "Read", json!({ "file_path": notes })),
            Block::tool(
                "toolu_write",
                "Write",
                json!({ "file_path": out, "content": "never\n" }),
            ),
        ],
        vec![Block::tool(
            "toolu_rm",
            "Bash",
            json!({ "command": format!("rm -rf {}", build.display()), "description": "Clean" }),
        )],
    ]);
    let result = lab.run(&api, "Tidy up", "Read,Bash(echo:*)");
    assert!(
        !out.exists() && build.exists(),
        "the refused calls did not run"
    );
    let session = result["session_id"].as_str().unwrap().to_string();
    let refused: BTreeSet<String> = result["permission_denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tool_use_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        refused,
        BTreeSet::from(["toolu_write".into(), "toolu_rm".into()]),
        "{result}"
    );

    let denied_for = |records: &[Value], id: &str| {
        records.iter().any(|r| {
            is_telemetry(r) && r["outcome"] == "denied" && r["metadata"]["tool_use_id"] == id
        })
    };
    let records = shipped_when(&lab, &api, "a denied record per refused call", |rs| {
        refused.iter().all(|id| denied_for(rs, id))
            && rs.iter().any(|r| r["metadata"]["source_event"] == "Stop")
    });
    let (telemetry, hooks): (Vec<&Value>, Vec<&Value>) = records
        .iter()
        .filter(|r| r["_auditship"]["source"] != "auditship")
        .partition(|r| is_telemetry(r));
    for id in &refused {
        let denied: Vec<&&Value> = telemetry
            .iter()
            .filter(|r| r["outcome"] == "denied" && r["metadata"]["tool_use_id"] == id.as_str())
            .collect();
        assert_eq!(denied.len(), 1, "{id}: {denied:?}");
        let d = denied[0];
        assert_eq!(d["metadata"]["source_event"], "otel:tool_decision");
        assert_eq!(d["metadata"]["decision"], "reject");
        assert_eq!(d["metadata"]["source"], "config");
        let attempted = hooks.iter().find(|h| {
            h["metadata"]["source_event"] == "PreToolUse"
                && h["metadata"]["tool_use_id"] == id.as_str()
        });
        let attempted = attempted.unwrap_or_else(|| panic!("no PreToolUse record of {id}"));
        assert_eq!(attempted["outcome"], "attempted");
        assert_eq!(
            attempted["action"], d["action"],
            "{id}: one action for the call"
        );
        assert_eq!(
            attempted["metadata"]["prompt_id"],
            d["metadata"]["prompt_id"]
        );
    }
    assert!(
        !telemetry
            .iter()
            .any(|r| r["outcome"] == "denied" && r["metadata"]["tool_use_id"] == "toolu_read"),
        "the allowed Read is not denied"
    );

    // As JSON text: a record without a prompt (SessionStart) gives `null`.
    let hook_sessions: BTreeSet<String> =
        hooks.iter().map(|h| h["session_id"].to_string()).collect();
    let hook_prompts: BTreeSet<String> = hooks
        .iter()
        .map(|h| h["metadata"]["prompt_id"].to_string())
        .collect();
    assert_eq!(hook_sessions, BTreeSet::from([json!(session).to_string()]));
    let mut with_prompt = 0;
    for t in &telemetry {
        assert_eq!(t["session_id"], session.as_str(), "{t}");
        let prompt = &t["metadata"]["prompt_id"];
        assert!(
            hook_prompts.contains(&prompt.to_string()),
            "a prompt no hook record has: {t}"
        );
        with_prompt += usize::from(!prompt.is_null());
        assert_eq!(t["_auditship"]["integrity"]["ok"], true, "{t}");
        assert_eq!(t["user_id"], "root");
        assert_eq!(t["metadata"]["uid"], 0);
    }
    assert!(with_prompt > 0, "telemetry records carry the prompt");
    let stream = lab.path("state/telemetry/root");
    assert_stream_verifies(&stream, telemetry.len());
    let status: Value = serde_json::from_str(&get(&lab.path("state"), "/status").1).unwrap();
    assert_eq!(status["telemetry"]["records_accepted"], telemetry.len());
    stop(daemon);
}

/// Claude Code reports a hook point of ours whose run failed (here another hook of
/// the same point exits 1: Claude Code counts them together): the daemon counts it in
/// `/metrics` and `/status`, and the report stays in the trail as a failure.
#[test]
fn a_failed_run_of_our_hook_point_is_counted_and_kept() {
    let lab = Lab::new();
    let port = free_port();
    let daemon = lab.with_receiver(port);
    lab.add_cli_hook("PreToolUse", "exit 1");
    let api = MessagesApi::start(vec![vec![Block::tool(
        "toolu_echo",
        "Bash",
        json!({ "command": "echo hi", "description": "Say hi" }),
    )]]);
    let result = lab.run(&api, "Say hi", "Bash(echo:*)");
    assert_eq!(result["is_error"], false, "{result}");

    let failed = |r: &Value| {
        is_telemetry(r)
            && r["metadata"]["source_event"] == "otel:hook_execution_complete"
            && r["metadata"]["hook_event"] == "PreToolUse"
    };
    let records = shipped_when(&lab, &api, "the PreToolUse hook report", |rs| {
        rs.iter().any(failed)
    });
    let report = records.iter().find(|r| failed(r)).unwrap();
    assert_eq!(report["outcome"], "failure", "{report}");
    assert_eq!(report["metadata"]["num_non_blocking_error"], 1, "{report}");
    assert_eq!(
        report["metadata"]["auditship_hook_problem"],
        json!({"failed": 1})
    );

    let state = lab.path("state");
    let (code, text) = get(&state, "/metrics");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&text);
    let key = "auditship_hook_problems_total{hook_event=\"PreToolUse\",kind=\"failed\"}";
    assert_eq!(samples.get(key), Some(&1.0), "{text}");
    let status: Value = serde_json::from_str(&get(&state, "/status").1).unwrap();
    assert_eq!(status["telemetry"]["hook_problems"], 1, "{status}");
    assert_eq!(
        status["telemetry"]["last_hook_problem"]["hook_event"],
        "PreToolUse"
    );
    stop(daemon);
}

/// With `listen = "127.0.0.1:0"` the daemon writes the port the system chose to
/// `<state_dir>/telemetry.addr` (gone at stop), and `install-hooks --telemetry`
/// points Claude Code's exporter there.
#[test]
fn a_port_the_system_chose_is_found_by_install_hooks() {
    let root = tempdir();
    let text = daemon_sections(root.path(), &root.path().join("audit"), 0, "");
    let config = write_config(root.path(), &text);
    let daemon = Daemon::start(root.path(), &config);
    let addr_file = root.path().join("state/telemetry.addr");
    wait_until(Duration::from_secs(15), "telemetry.addr", || {
        addr_file.exists()
    });
    let addr = std::fs::read_to_string(&addr_file).unwrap();
    let port: u16 = addr.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0);
    assert_eq!(post(port, &[PROTOBUF], &fixture("denied.pb")).status, 200);

    let mut c = cmd(root.path());
    c.args([
        "install-hooks",
        "--claude-version",
        "2.1.328",
        "--telemetry",
        "--config",
    ])
    .arg(&config);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: Value = serde_json::from_str(
        &std::fs::read_to_string(root.path().join(".claude/settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        settings["env"]["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"],
        format!("http://{}/v1/logs", addr.trim())
    );
    stop(daemon);
    assert!(!addr_file.exists(), "withdrawn at stop");
}
