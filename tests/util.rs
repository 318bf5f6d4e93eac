//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_auditship"))
}

/// A command for the binary with a clean environment: no system config, HOME set to
/// `home`, so tests never touch the real user's files.
pub fn cmd(home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AUDITSHIP_CONFIG", "/dev/null");
    c
}

/// Runs a command with `stdin` and returns its output.
pub fn run_with_stdin(mut c: Command, stdin: &[u8]) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn auditship");
    {
        let mut pipe = child.stdin.take().unwrap();
        // The child may exit before reading everything (e.g. usage error): ignore EPIPE.
        let _ = pipe.write_all(stdin);
    }
    child.wait_with_output().expect("wait for auditship")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("auditship-test-")
        .tempdir()
        .unwrap()
}

/// Writes a config file into `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("auditship.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The project's copy of the shared vectors.
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Problems as reported by `auditship verify --json`: (file, line, code).
pub fn verify_json(args: &[&std::ffi::OsStr]) -> (i32, serde_json::Value) {
    let out = Command::new(bin())
        .arg("verify")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (code, doc)
}

pub fn triples(doc: &serde_json::Value) -> Vec<(String, u64, String)> {
    doc["problems"]
        .as_array()
        .expect("problems array")
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap().to_string(),
                p["line"].as_u64().unwrap(),
                p["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Writes `hex` to a key file in `dir`.
pub fn key_file(dir: &Path, kid: &str, hex: &str) -> PathBuf {
    let p = dir.join(format!("{kid}.key"));
    std::fs::write(&p, format!("{hex}\n")).unwrap();
    p
}

/// The lines of every `*.jsonl` file of a directory, in name order.
pub fn read_stream(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The records of a file another process may be appending to: only lines ended
/// by a newline, so a write caught half-way is left for the next look.
pub fn written_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A running `auditship run`. Its stderr is collected on a thread, so a chatty
/// daemon never blocks on a full pipe.
pub struct Daemon {
    pub child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts `auditship run --config <config>` with HOME set to `home`.
    pub fn start(home: &Path, config: &Path) -> Daemon {
        let mut c = cmd(home);
        c.arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn");
        Daemon::spawn(c)
    }

    /// Spawns a prepared command, collecting its stderr.
    pub fn spawn(mut c: Command) -> Daemon {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("start the daemon");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Daemon { child, stderr }
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A handle on the collected stderr that outlives the `Daemon`.
    pub fn stderr_handle(&self) -> std::sync::Arc<std::sync::Mutex<String>> {
        self.stderr.clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// True once the process catches SIGTERM (its handler is installed): a SIGTERM
    /// sent before, in the first moments after exec, takes the default action.
    fn catches_sigterm(&self) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
    }

    /// SIGTERM (once the daemon catches it), then waits up to `limit` for the exit
    /// status.
    pub fn stop(mut self, limit: std::time::Duration) -> (Option<i32>, String) {
        let start = std::time::Instant::now();
        while !self.catches_sigterm()
            && start.elapsed() < limit
            && self.child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.signal(libc::SIGTERM);
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Give the collecting thread a moment to read the last lines.
                std::thread::sleep(std::time::Duration::from_millis(50));
                return (status.code(), self.stderr());
            }
            if start.elapsed() > limit {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!("daemon did not stop within {limit:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A daemon config: `sources` is TOML for the [[source]] tables, the sink is the
/// HTTP test sink at `endpoint`; state under `dir/state`.
pub fn daemon_config(dir: &Path, sources: &str, endpoint: &str, extra: &str) -> PathBuf {
    write_config(
        dir,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\nheartbeat_interval = \"0s\"\n\n{sources}\n\n[[sink]]\nname = \"http\"\ntype = \"http\"\nendpoint = \"{endpoint}\"\nbatch = {{ max_events = 500, max_wait = \"50ms\" }}\nretry = {{ initial = \"50ms\", max_delay = \"500ms\" }}\n{extra}\n{metrics}",
            state = dir.join("state").display(),
            metrics = metrics_table(extra)
        ),
    )
}

/// Tests run many daemons at once: each listens for metrics on a port of its own,
/// unless the test configures `[metrics]` itself.
pub fn metrics_table(extra: &str) -> &'static str {
    if extra.contains("[metrics]") {
        ""
    } else {
        "\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    }
}

/// A `[[source]]` table named "a" watching one directory.
pub fn source_toml(dir: &Path) -> String {
    format!(
        "[[source]]\nname = \"a\"\npaths = [\"{}\"]\n",
        dir.display()
    )
}

/// Writes `n` sealed, chained events of stream `stream` to `file` (appending).
pub fn write_chain(file: &Path, stream: u32, first_seq: u64, n: u64, prev: &str) -> String {
    write_chain_at(file, stream, first_seq, n, prev, &|_| {
        "2026-11-26T07:06:42.000Z".to_string()
    })
}

/// As [`write_chain`], with the `timestamp` of event `seq` given by `timestamp`.
pub fn write_chain_at(
    file: &Path,
    stream: u32,
    first_seq: u64,
    n: u64,
    prev: &str,
    timestamp: &dyn Fn(u64) -> String,
) -> String {
    use std::io::Write;
    let mut prev = prev.to_string();
    let mut w = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .unwrap(),
    );
    for seq in first_seq..first_seq + n {
        let ts = timestamp(seq);
        let e = format!(
            r#"{{"v":1,"id":"e-{stream}-{seq}","seq":{seq},"timestamp":"{ts}","user_id":"dev{stream}@example.com","session_id":"s-{stream}","host":"devbox","action":"tool_execution","resource":"/home/dev/src/file_{seq}.rs","outcome":"success","metadata":{{"tool_name":"Bash","cwd":"/home/dev/src"}},"prev_hash":"{prev}"}}"#
        );
        let sealed = auditship::audit::seal(&e, None).unwrap();
        w.write_all(&sealed.line).unwrap();
        prev = sealed.hash;
    }
    w.flush().unwrap();
    prev
}

/// The `hash` member of every line of `file`: the `_auditship.id` its events ship
/// under, in line order.
pub fn sealed_ids(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["hash"].as_str().expect("a sealed event").to_string()
        })
        .collect()
}

/// The independent verifier (tests/support, written from the format spec alone) on
/// `dir`, with HMAC keys as `(kid, hex)`; asserts it finds the stream intact.
pub fn independent_verify(dir: &Path, keys: &[(&str, &str)]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/independent_verify.py");
    let mut c = Command::new("python3");
    c.arg(script);
    for (kid, hex) in keys {
        c.arg("--key").arg(format!("{kid}={hex}"));
    }
    let out = c
        .arg(dir)
        .output()
        .expect("python3 runs the independent verifier");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "independent verifier: {doc}");
    doc
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
