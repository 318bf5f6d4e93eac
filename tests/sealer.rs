//! Sealed mode with the real binary: the daemon (as root, like the service's own
//! user) runs the sealer on a Unix socket under a temporary directory; `record` runs
//! as another user (`nobody`, through `setpriv`) with a client configuration that
//! claims someone else. What is checked: the kernel's identity in the sealed event,
//! files the user can neither read nor change, nothing in the user's home, one clean
//! chain under concurrency, hostile clients that stall nobody and exhaust nothing,
//! failing closed when the daemon is down, and the unsealed local fallback.

use crate::util::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const NOBODY: u32 = 65534;
pub(crate) const KID: &str = "host-2026";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A sealed set-up under one temporary directory every user can enter.
pub(crate) struct Setup {
    t: tempfile::TempDir,
    socket: PathBuf,
    pub(crate) sealed: PathBuf,
    key: PathBuf,
    daemon_cfg: PathBuf,
    /// The client's configuration: the socket, and a `user_id` it has no right to.
    pub(crate) client_cfg: PathBuf,
    /// `nobody`'s home for these tests: theirs, 0700, empty.
    pub(crate) home: PathBuf,
}

impl Setup {
    /// `sealer` is added to the `[sealer]` table; `record` to the client's `[record]`.
    pub(crate) fn new(sealer: &str, record: &str) -> Setup {
        let t = tempdir();
        chmod(t.path(), 0o755);
        let root = t.path();
        let run = root.join("run");
        std::fs::create_dir(&run).unwrap();
        chmod(&run, 0o755);
        let socket = run.join("record.sock");
        let sealed = root.join("sealed");
        let key = root.join("sealer-hmac.key");
        let daemon_cfg = root.join("daemon.toml");
        std::fs::write(
            &daemon_cfg,
            format!(
                "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[[sink]]\nname = \"local\"\ntype = \"file\"\npath = \"{shipped}\"\n\n[sealer]\nlisten = \"{socket}\"\ndir = \"{sealed}\"\nhmac_kid = \"{KID}\"\nhmac_key_file = \"{key}\"\nsigning_key_file = \"{signing}\"\n{sealer}\n",
                signing = root.join("sealer.ed25519").display(),
                state = root.join("state").display(),
                shipped = root.join("shipped.jsonl").display(),
                socket = socket.display(),
                sealed = sealed.display(),
                key = key.display(),
            ),
        )
        .unwrap();
        let client_cfg = root.join("client.toml");
        std::fs::write(
            &client_cfg,
            format!(
                "[record]\nsocket = \"{}\"\nuser_id = \"mallory@example.com\"\n{record}\n[record.identity]\nemail = \"mallory@example.com\"\n",
                socket.display()
            ),
        )
        .unwrap();
        chmod(&client_cfg, 0o644);
        let home = root.join("home-nobody");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
        chmod(&home, 0o700);
        Setup {
            t,
            socket,
            sealed,
            key,
            daemon_cfg,
            client_cfg,
            home,
        }
    }

    fn root(&self) -> &Path {
        self.t.path()
    }

    /// Starts the daemon and waits until the sealer answers connections.
    pub(crate) fn start(&self) -> Daemon {
        let d = Daemon::start(self.root(), &self.daemon_cfg);
        wait_until(Duration::from_secs(20), "the sealer's socket", || {
            UnixStream::connect(&self.socket).is_ok()
        });
        d
    }

    /// `record` as `nobody`, with `payload` on stdin and `args` after `record`;
    /// returns its output and pid.
    fn record_as_nobody(
        &self,
        payload: &[u8],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Output, u32) {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(bin())
        .arg("record")
        .args(args)
        .arg("--config")
        .arg(&self.client_cfg)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &self.home)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("setpriv runs record");
        let pid = child.id();
        let _ = child.stdin.take().unwrap().write_all(payload);
        (child.wait_with_output().unwrap(), pid)
    }

    /// `auditship verify --key` on one sealed stream: exit status and stdout.
    pub(crate) fn verify(&self, user: &str) -> (Option<i32>, String) {
        let out = Command::new(bin())
            .arg("verify")
            .arg("--key")
            .arg(format!("{KID}={}", self.key.display()))
            .arg(self.sealed.join(user))
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout) + &text(&out.stderr))
    }

    pub(crate) fn events(&self, user: &str) -> Vec<Value> {
        read_stream(&self.sealed.join(user))
    }
}

fn pre_tool_use(session: &str, command: &str) -> Value {
    json!({
        "session_id": session,
        "hook_event_name": "PreToolUse",
        "cwd": "/srv/app",
        "tool_name": "Bash",
        "tool_input": {"command": command},
        "tool_use_id": "toolu_1",
    })
}

/// A request as a hostile client writes it, straight to the socket.
fn raw_header(extra: &str) -> String {
    format!("{{\"proto\":1,\"kind\":\"hook\"{extra}}}\n")
}

fn read_answer(conn: &mut UnixStream, limit: Duration) -> Value {
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    serde_json::from_slice(&answer).unwrap_or_else(|e| panic!("{e}: answer {:?}", text(&answer)))
}

#[test]
fn the_kernel_names_the_caller_whatever_the_payload_and_the_client_claim() {
    let s = Setup::new(
        "[sealer.identity]\nnobody = \"nobody@corp.example\"\n",
        "on_error = \"block\"\n",
    );
    let daemon = s.start();
    let mut payload = pre_tool_use("sess-1", "make deploy");
    payload["user_id"] = json!("root");
    payload["metadata"] = json!({"uid": 0, "pid": 1, "os_user": "root"});
    let (out, pid) = s.record_as_nobody(payload.to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    let events = s.events("nobody");
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["user_id"], "nobody@corp.example");
    assert_eq!(e["metadata"]["os_user"], "nobody");
    assert_eq!(e["metadata"]["uid"], NOBODY);
    assert_eq!(e["metadata"]["gid"], NOBODY);
    assert_eq!(
        e["metadata"]["pid"], pid,
        "setpriv execs record in its own process"
    );
    assert_eq!(e["metadata"]["sealed"], true);
    assert_eq!(e["kid"], KID);
    assert_eq!(e["action"], "tool_execution");
    assert_eq!(e["resource"], "make deploy");
    assert!(
        !e.to_string().contains("mallory"),
        "the client's configuration names nobody: {e}"
    );
    // What the payload claimed is kept as what it is: payload fields.
    assert_eq!(e["metadata"]["extra"]["user_id"], "root");

    // A hostile client's header claims are ignored as well.
    let request = s.root().join("request.bin");
    let claims = raw_header(",\"user_id\":\"root\",\"uid\":0,\"pid\":1");
    std::fs::write(&request, claims + &pre_tool_use("sess-2", "id").to_string()).unwrap();
    chmod(&request, 0o644);
    let send = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(open(sys.argv[2], 'rb').read())\ns.shutdown(socket.SHUT_WR)\nsys.stdout.write(s.makefile().read())\n";
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            send,
        ])
        .arg(&s.socket)
        .arg(&request)
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["stream"], "nobody");
    assert_eq!(answer["seq"], 1);
    let events = s.events("nobody");
    assert_eq!(events[1]["session_id"], "sess-2");
    assert_eq!(events[1]["metadata"]["uid"], NOBODY);
    assert_eq!(answer["hash"], events[1]["hash"]);

    // The trail verifies with the sealer's key; the user cannot touch it.
    let (code, report) = s.verify("nobody");
    assert_eq!(code, Some(0), "{report}");
    let user_dir = s.sealed.join("nobody");
    let file = std::fs::read_dir(&user_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    for (path, mode) in [(&s.sealed, 0o700), (&user_dir, 0o700), (&file, 0o600)] {
        let m = std::fs::metadata(path).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (0, mode), "{}", path.display());
    }
    for attempt in [
        format!("cat {}", file.display()),
        format!("echo '{{}}' >> {}", file.display()),
        format!("ls {}", user_dir.display()),
        format!("touch {}/x", s.sealed.display()),
    ] {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                &attempt,
            ])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{attempt} succeeded as nobody");
        assert!(
            text(&out.stderr).contains("Permission denied"),
            "{attempt}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(s.verify("nobody").0, Some(0), "still intact");
    assert_eq!(
        std::fs::read_dir(&s.home).unwrap().count(),
        0,
        "nothing is written to the user's home while the daemon is up"
    );
    let key_mode = std::fs::metadata(&s.key).unwrap().mode() & 0o777;
    assert_eq!(
        key_mode, 0o600,
        "the key the sealer created is the service's alone"
    );

    // The sealed stream is shipped, checked with the sealer's key, with no
    // [[source]] configured for it.
    let shipped = s.root().join("shipped.jsonl");
    wait_until(Duration::from_secs(20), "the sealed events shipped", || {
        written_records(&shipped).len() >= 2
    });
    for r in written_records(&shipped) {
        assert_eq!(r["_auditship"]["source"], "sealed", "{r}");
        assert_eq!(r["_auditship"]["integrity"]["ok"], true, "{r}");
    }
    let (code, log) = daemon.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    assert!(!s.socket.exists(), "the socket goes with the daemon");
}

#[test]
fn concurrent_records_make_one_clean_chain() {
    let s = Setup::new("", "on_error = \"block\"\n");
    let daemon = s.start();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..100 {
                    let p = pre_tool_use(&format!("sess-{t}"), &format!("step {i}"));
                    let (out, _) = s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
                    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
                }
            });
        }
    });
    let events = s.events("nobody");
    assert_eq!(events.len(), 400);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64);
    }
    for t in 0..4 {
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["session_id"] == format!("sess-{t}"))
            .collect();
        assert_eq!(mine.len(), 100, "every call of thread {t} is there once");
    }
    let (code, report) = s.verify("nobody");
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("400 events"), "{report}");
    independent_verify(
        &s.sealed.join("nobody"),
        &[(KID, std::fs::read_to_string(&s.key).unwrap().trim())],
    );
    let status = cmd(s.root())
        .arg("status")
        .arg("--config")
        .arg(&s.daemon_cfg)
        .output()
        .unwrap();
    let status = text(&status.stdout);
    assert!(
        status.contains(&format!(
            // The one refused: the test's probe for the socket, which sent nothing.
            "sealer: {} on 1 stream: 400 events sealed, 0 digests, 1 refused, 0 turned away",
            s.socket.display()
        )),
        "{status}"
    );
    daemon.stop(Duration::from_secs(20));
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn hostile_clients_stall_no_one_and_exhaust_nothing() {
    let s = Setup::new("read_timeout = \"10s\"\n", "on_error = \"block\"\n");
    let daemon = s.start();
    let daemon_pid = daemon.child.id();

    // A thousand connections that say nothing.
    let idle: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(&s.socket).unwrap())
        .collect();
    // A payload cut off halfway and held open.
    let mut half = UnixStream::connect(&s.socket).unwrap();
    half.write_all(raw_header("").as_bytes()).unwrap();
    half.write_all(
        br#"{"hook_event_name":"PreToolUse","session_id":"half","tool_input":{"command":"#,
    )
    .unwrap();
    // A payload of 1 GiB, streamed as fast as the sealer takes it.
    const GIB: u64 = 1 << 30;
    let socket = s.socket.clone();
    let big = std::thread::spawn(move || {
        use sha2::Digest as _;
        let mut conn = UnixStream::connect(&socket).unwrap();
        conn.write_all(raw_header("").as_bytes()).unwrap();
        let mut hasher = sha2::Sha256::new();
        let head = br#"{"hook_event_name":"PostToolUse","session_id":"big","tool_response":""#;
        conn.write_all(head).unwrap();
        hasher.update(head);
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = head.len() as u64;
        while sent < GIB {
            let n = chunk.len().min((GIB - sent) as usize);
            conn.write_all(&chunk[..n]).unwrap();
            hasher.update(&chunk[..n]);
            sent += n as u64;
        }
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let answer = read_answer(&mut conn, Duration::from_secs(60));
        let digest: [u8; 32] = hasher.finalize().into();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        (answer, hex)
    });

    // Meanwhile a well-behaved client's records complete, each well within bounds.
    for i in 0..20 {
        let start = Instant::now();
        let p = pre_tool_use("good", &format!("cargo test {i}"));
        let (out, _) = s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "record {i} took {:?} beside hostile clients",
            start.elapsed()
        );
    }
    assert_eq!(s.events("nobody").len(), 20);

    let (answer, sha256) = big.join().unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(
        answer["note"]
            .as_str()
            .unwrap()
            .contains("max_payload_bytes"),
        "{answer}"
    );
    let mut half_answer = read_answer(&mut half, Duration::from_secs(30));
    assert_eq!(half_answer["ok"], true, "{half_answer}");
    let note = half_answer["note"].take();
    assert!(
        note.as_str().unwrap().contains("did not arrive whole"),
        "{note}"
    );
    drop(idle);

    let root_events = s.events("root");
    let digest = root_events
        .iter()
        .find(|e| e["session_id"] == "big")
        .expect("the 1 GiB payload is an event");
    let m = &digest["metadata"];
    assert_eq!(digest["action"], "agent_event");
    assert_eq!(
        m["source_event"], "PostToolUse",
        "read from its first bytes"
    );
    assert_eq!(m["payload_bytes"], GIB);
    assert_eq!(m["payload_sha256"], sha256.as_str());
    assert_eq!(m["payload_complete"], true);
    assert_eq!(m["uid"], 0);
    let cut = root_events
        .iter()
        .find(|e| e["session_id"] == "half")
        .expect("the half-sent payload is an event");
    assert_eq!(cut["metadata"]["payload_complete"], false);
    assert_eq!(cut["metadata"]["source_event"], "PreToolUse");
    for user in ["root", "nobody"] {
        let (code, report) = s.verify(user);
        assert_eq!(code, Some(0), "{user}: {report}");
    }
    let peak_mib = peak_rss_kib(daemon_pid) / 1024;
    assert!(
        peak_mib < 256,
        "the daemon peaked at {peak_mib} MiB while a client sent 1 GiB"
    );
    daemon.stop(Duration::from_secs(30));
}

#[test]
fn connections_beyond_the_limit_are_answered_at_once() {
    // Blocking: a call turned away while the held connections are still being let go
    // fails, instead of landing unsealed in the caller's own stream.
    let s = Setup::new("max_connections = 2\n", "on_error = \"block\"\n");
    let daemon = s.start();
    // The start-up probe's connection is let go first.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<UnixStream> = (0..2)
        .map(|_| UnixStream::connect(&s.socket).unwrap())
        .collect();
    // The sealer has taken both, and answered neither, before the next one arrives.
    std::thread::sleep(Duration::from_millis(300));
    for mut h in &held {
        h.set_nonblocking(true).unwrap();
        let e = h.read(&mut [0u8; 64]).unwrap_err();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::WouldBlock,
            "a held connection is waited on"
        );
    }
    let mut third = UnixStream::connect(&s.socket).unwrap();
    let answer = read_answer(&mut third, Duration::from_secs(2));
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("max_connections"),
        "{answer}"
    );
    drop(held);
    let p = pre_tool_use("after", "ls");
    wait_until(Duration::from_secs(10), "a slot again", || {
        s.record_as_nobody(p.to_string().as_bytes(), &[], &[])
            .0
            .status
            .success()
    });
    assert_eq!(s.events("nobody").len(), 1);
    daemon.stop(Duration::from_secs(20));
}

#[test]
fn decisions_are_forwarded_with_the_clients_session_and_project() {
    let s = Setup::new("", "on_error = \"block\"\n");
    let daemon = s.start();
    let (out, _) = s.record_as_nobody(
        b"",
        &[
            "--decision",
            "use PostgreSQL",
            "--factor",
            "latency",
            "--confidence",
            "0.7",
            "--alternative",
            "SQLite",
            "--resource",
            "db/schema.sql",
        ],
        &[
            ("CLAUDE_CODE_SESSION_ID", "sess-42"),
            ("CLAUDE_PROJECT_DIR", "/srv/app"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events = s.events("nobody");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["action"], "ai_decision");
    assert_eq!(e["session_id"], "sess-42");
    assert_eq!(e["resource"], "db/schema.sql");
    assert_eq!(e["decision"]["decision"], "use PostgreSQL");
    assert_eq!(e["decision"]["factors_considered"], json!(["latency"]));
    assert_eq!(e["decision"]["confidence"], 0.7);
    assert_eq!(e["metadata"]["project_dir"], "/srv/app");
    assert_eq!(e["user_id"], "nobody");
    assert_eq!(e["metadata"]["uid"], NOBODY);
    daemon.stop(Duration::from_secs(20));
}

#[test]
fn with_the_daemon_down_block_fails_closed_and_allow_records_unsealed() {
    let s = Setup::new("", "on_error = \"block\"\n");
    let daemon = s.start();
    let p = pre_tool_use("s", "ls");
    let (out, _) = s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, log) = daemon.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");

    let (out, _) = s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "PreToolUse is blocked");
    assert!(
        text(&out.stderr).contains("sealed mode"),
        "{}",
        text(&out.stderr)
    );
    let permission = json!({"session_id": "s", "hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": {"command": "rm -rf /"}});
    let (out, _) = s.record_as_nobody(permission.to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(0));
    let decision: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        decision["hookSpecificOutput"]["decision"]["behavior"],
        "deny"
    );
    // The one record and the checkpoint the stop signed; nothing more.
    let events = s.events("nobody");
    assert_eq!(events.len(), 2, "nothing more was sealed");
    assert_eq!(checkpoints_of(&events).len(), 1);

    // allow: the user's own stream, marked unsealed, with why.
    std::fs::write(
        &s.client_cfg,
        format!(
            "[record]\nsocket = \"{}\"\non_error = \"allow\"\n",
            s.socket.display()
        ),
    )
    .unwrap();
    let (out, _) = s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let local = read_stream(&s.home.join(".claude/audit"));
    assert_eq!(local.len(), 1);
    let e = &local[0];
    assert_eq!(e["metadata"]["sealed"], false);
    assert!(
        e["metadata"]["sealer_error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{e}"
    );
    assert_eq!(e["user_id"], "nobody");
    assert!(
        e["metadata"].get("pid").is_none(),
        "no kernel identity is vouched for: {e}"
    );
    let out = Command::new(bin())
        .arg("verify")
        .arg(s.home.join(".claude/audit"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn a_reload_changes_identities_without_closing_the_socket() {
    let s = Setup::new("[sealer.identity]\nnobody = \"first@corp.example\"\n", "");
    let daemon = s.start();
    let p = pre_tool_use("s", "ls");
    assert!(
        s.record_as_nobody(p.to_string().as_bytes(), &[], &[])
            .0
            .status
            .success()
    );
    let text = std::fs::read_to_string(&s.daemon_cfg)
        .unwrap()
        .replace("first@corp.example", "second@corp.example");
    std::fs::write(&s.daemon_cfg, text).unwrap();
    daemon.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(20), "the reloaded identity", || {
        assert!(s.socket.exists(), "the socket stays through the reload");
        s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
        s.events("nobody").last().unwrap()["user_id"] == "second@corp.example"
    });
    assert_eq!(s.events("nobody")[0]["user_id"], "first@corp.example");
    assert_eq!(s.verify("nobody").0, Some(0));
    daemon.stop(Duration::from_secs(20));
}

#[test]
fn the_daemon_refuses_a_socket_directory_others_may_change_and_replaces_a_stale_socket() {
    let s = Setup::new("", "");
    let run = s.socket.parent().unwrap();
    chmod(run, 0o777);
    let out = cmd(s.root())
        .arg("run")
        .arg("--config")
        .arg(&s.daemon_cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("writable by others"),
        "{}",
        text(&out.stderr)
    );
    chmod(run, 0o755);

    // A socket left by a daemon killed outright is taken over by the next one.
    let daemon = s.start();
    daemon.kill();
    assert!(s.socket.exists());
    let daemon = s.start();
    let p = pre_tool_use("s", "ls");
    assert!(
        s.record_as_nobody(p.to_string().as_bytes(), &[], &[])
            .0
            .status
            .success()
    );
    daemon.stop(Duration::from_secs(20));

    // A file that is not a socket is never removed.
    std::fs::write(&s.socket, "mine").unwrap();
    let out = cmd(s.root())
        .arg("run")
        .arg("--config")
        .arg(&s.daemon_cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a socket"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&s.socket).unwrap(), "mine");
}

#[test]
fn install_hooks_writes_the_sealed_client_drop_in_next_to_the_hooks_configuration() {
    let s = Setup::new("", "");
    // The hooks' configuration: local mode until the drop-in says otherwise.
    let main = s.root().join("etc/auditship.toml");
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    chmod(main.parent().unwrap(), 0o755);
    std::fs::write(&main, "[record]\non_error = \"block\"\n").unwrap();
    chmod(&main, 0o644);
    let settings = s.root().join("managed-settings.json");
    let install = |extra: &[&str]| {
        let mut c = cmd(s.root());
        c.args([
            "install-hooks",
            "--scope",
            "managed",
            "--claude-version",
            "2.1.120",
        ])
        .arg("--path")
        .arg(&settings)
        .arg("--config")
        .arg(&main)
        .arg("--sealed-socket")
        .arg(&s.socket)
        .args(extra);
        c.output().unwrap()
    };
    let dry = install(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert!(
        text(&dry.stdout).contains("would write"),
        "{}",
        text(&dry.stdout)
    );
    let drop_in = s.root().join("etc/conf.d/50-auditship-sealed.toml");
    assert!(!drop_in.exists(), "a dry run writes nothing");

    let out = install(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let meta = std::fs::metadata(&drop_in).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o644, "every user's record reads it");
    let again = install(&[]);
    assert!(
        text(&again.stdout).contains("unchanged"),
        "{}",
        text(&again.stdout)
    );
    let hooks = std::fs::read_to_string(&settings).unwrap();
    assert!(
        hooks.contains(&format!("--config {}", main.display())),
        "{hooks}"
    );

    // The hooks' `record` now goes to the sealer.
    let daemon = s.start();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .args(["record", "--config"])
        .arg(&main)
        .env_clear()
        .env("HOME", &s.home);
    let out = run_with_stdin(c, pre_tool_use("s", "ls").to_string().as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(s.events("nobody").len(), 1);
    assert_eq!(std::fs::read_dir(&s.home).unwrap().count(), 0);
    let out = cmd(s.root())
        .arg("check-config")
        .arg("--config")
        .arg(&main)
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains(&format!("socket = \"{}\"", s.socket.display())),
        "{}",
        text(&out.stdout)
    );
    daemon.stop(Duration::from_secs(20));
}

/// The checkpoint events of a stream's events.
fn checkpoints_of(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["metadata"]["source_event"] == "checkpoint")
        .collect()
}

#[test]
fn signed_checkpoints_cover_the_streams_and_prove_what_was_shipped() {
    let s = Setup::new("checkpoint_interval = \"1s\"\n", "");
    let daemon = s.start();
    let record = |i: usize| {
        let p = pre_tool_use("sess-cp", &format!("step {i}"));
        let (out, _) = s.record_as_nobody(p.to_string().as_bytes(), &[], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    for i in 0..5 {
        record(i);
    }
    // A round within the interval signs the head: the event just before it. Under
    // load a round may come between two records; the last one signs the last record.
    wait_until(
        Duration::from_secs(10),
        "a checkpoint after the records",
        || {
            s.events("nobody")
                .last()
                .is_some_and(|e| e["metadata"]["source_event"] == "checkpoint")
        },
    );
    let events = s.events("nobody");
    for cp in checkpoints_of(&events) {
        let c = &cp["metadata"]["checkpoint"];
        let seq = cp["seq"].as_u64().unwrap();
        assert_eq!(c["stream"], "nobody", "{cp}");
        assert_eq!(c["seq"], seq - 1, "{cp}");
        assert_eq!(c["hash"], events[seq as usize - 1]["hash"], "{cp}");
        assert_eq!(cp["action"], "agent_event");
        assert_eq!(cp["resource"], "checkpoint");
    }
    assert_eq!(events.len() - checkpoints_of(&events).len(), 5);
    // An idle sealer signs nothing more.
    let signed = checkpoints_of(&events).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(checkpoints_of(&s.events("nobody")).len(), signed);
    for i in 5..8 {
        record(i);
    }
    let (code, stderr) = daemon.stop(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{stderr}");

    // A clean stop signs the last head; the key and its public half are in place.
    let events = s.events("nobody");
    let last = events.last().unwrap();
    assert_eq!(last["metadata"]["source_event"], "checkpoint", "{last}");
    assert_eq!(
        last["metadata"]["checkpoint"]["hash"],
        events[events.len() - 2]["hash"]
    );
    let signing = s.root().join("sealer.ed25519");
    let pubkey = s.root().join("sealer.ed25519.pub");
    assert_eq!(
        std::fs::metadata(&signing).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_arg = format!("{KID}={}", s.key.display());
    let shipped = s.root().join("shipped.jsonl");
    let shipped_text = std::fs::read_to_string(&shipped).unwrap();
    // The checkpoints signed while running were shipped; the one signed at the stop
    // may be written after the daemon's last read and ships at its next start.
    let cps = checkpoints_of(&events);
    for cp in &cps[..cps.len() - 1] {
        let sig = cp["metadata"]["checkpoint"]["sig"].as_str().unwrap();
        assert!(shipped_text.contains(sig), "checkpoint {cp} was shipped");
    }
    let verify = |args: &[&std::ffi::OsStr]| {
        let mut full: Vec<&std::ffi::OsStr> = vec![
            "--key".as_ref(),
            key_arg.as_ref(),
            "--pubkey".as_ref(),
            pubkey.as_os_str(),
        ];
        full.extend_from_slice(args);
        verify_json(&full)
    };
    let stream = s.sealed.join("nobody");
    let (code, doc) = verify(&[
        "--checkpoints".as_ref(),
        shipped.as_os_str(),
        stream.as_os_str(),
    ]);
    assert_eq!(code, 0, "{doc}");
    let entry = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "directory")
        .unwrap();
    assert_eq!(entry["checkpoints"]["stream"], "nobody", "{doc}");
    assert_eq!(
        entry["checkpoints"]["covered_to_seq"],
        events.len() as u64 - 2,
        "{doc}"
    );
    // The shipped copy proves itself too.
    let (code, doc) = verify(&[shipped.as_os_str()]);
    assert_eq!(code, 0, "{doc}");
    independent_checkpoints(&pubkey, &stream);

    // The stream cut short on the host no longer holds what the SIEM's checkpoints
    // signed.
    let file = std::fs::read_dir(&stream)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    std::fs::write(&file, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
    let (code, doc) = verify(&[
        "--checkpoints".as_ref(),
        shipped.as_os_str(),
        stream.as_os_str(),
    ]);
    assert_eq!(code, 1, "{doc}");
    assert!(
        doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["code"] == "checkpoint_unmatched"),
        "{doc}"
    );
}

/// The independent checkpoint check (tests/support) on every checkpoint of `stream`.
fn independent_checkpoints(pubkey: &Path, stream: &Path) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/independent_checkpoint.py");
    let files: Vec<PathBuf> = std::fs::read_dir(stream)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    let out = Command::new(crate::moto::python())
        .arg(script)
        .arg(pubkey)
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn a_client_configuration_that_does_not_load_still_reaches_the_sealer() {
    let s = Setup::new("", "");
    std::fs::write(
        &s.client_cfg,
        format!(
            "[record]\nsocket = \"{}\"\non_error = \"block\"\nhmac_kid = \"k\"\nhmac_key_file = \"/nonexistent/key\"\n",
            s.socket.display()
        ),
    )
    .unwrap();
    let daemon = s.start();
    let (out, _) = s.record_as_nobody(pre_tool_use("s", "ls").to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(s.events("nobody").len(), 1);
    daemon.stop(Duration::from_secs(20));
    // Down, the same configuration fails closed.
    let (out, _) = s.record_as_nobody(pre_tool_use("s", "ls").to_string().as_bytes(), &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn check_config_shows_the_sealer_and_bounds_the_clients_wait() {
    let s = Setup::new("max_connections = 64\n", "");
    let check = |cfg: &Path| {
        let out = cmd(s.root())
            .arg("check-config")
            .arg("--config")
            .arg(cfg)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, out, err) = check(&s.daemon_cfg);
    assert_eq!(code, Some(0), "{err}");
    for expected in [
        "[sealer]".to_string(),
        format!("listen = \"{}\"", s.socket.display()),
        "hmac_key = \"(created when the sealer starts)\"".into(),
        "max_connections = 64".into(),
        "checkpoint_interval = \"300s\"".into(),
        "name = \"sealed\"".into(),
        format!("paths = [\"{}/*\"]", s.sealed.display()),
    ] {
        assert!(out.contains(&expected), "{expected} missing:\n{out}");
    }
    let daemon = s.start();
    daemon.stop(Duration::from_secs(20));
    let key = std::fs::read_to_string(&s.key).unwrap();
    let (code, out, _) = check(&s.daemon_cfg);
    assert_eq!(code, Some(0));
    assert!(out.contains("hmac_key = \"***\""), "{out}");
    assert!(!out.contains(key.trim()), "the key is never shown");

    // The client's wait for the sealer, then for its own lock under `allow`, must
    // end before Claude Code kills the hook (5 s).
    std::fs::write(
        &s.client_cfg,
        format!(
            "[record]\nsocket = \"{}\"\nsocket_timeout_ms = 3000\non_error = \"allow\"\n",
            s.socket.display()
        ),
    )
    .unwrap();
    let (code, _, err) = check(&s.client_cfg);
    assert_eq!(code, Some(1));
    assert!(err.contains("record.socket_timeout_ms: 3000 ms"), "{err}");
    std::fs::write(
        &s.client_cfg,
        format!(
            "[record]\nsocket = \"{}\"\nsocket_timeout_ms = 3000\non_error = \"block\"\n",
            s.socket.display()
        ),
    )
    .unwrap();
    assert_eq!(check(&s.client_cfg).0, Some(0));
}
