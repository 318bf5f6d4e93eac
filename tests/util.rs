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
