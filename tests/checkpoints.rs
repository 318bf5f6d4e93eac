//! Signed checkpoints through the real `verify`: the ones a stream carries and the
//! ones exported from the SIEM, against intact, cut, rewritten and re-signed streams;
//! and the independent Python check of the format's test vector and of real
//! checkpoints.

use crate::util::*;
use auditship::audit::checkpoint::{Checkpoint, SigningKey};
use auditship::keyfile;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Appends a checkpoint event at `seq` covering `seq - 1` (hash `covered`) to `file`;
/// returns the checkpoint and the event's hash.
fn append_checkpoint(
    file: &Path,
    key: &SigningKey,
    stream: &str,
    seq: u64,
    covered: &str,
) -> (Checkpoint, String) {
    use std::io::Write;
    let c = key.sign(stream, seq - 1, covered);
    let event = json!({
        "v": 1, "id": format!("cp-{seq}"), "seq": seq, "prev_hash": covered,
        "timestamp": "2026-11-26T07:06:42.000Z", "user_id": stream, "session_id": "sealer",
        "host": "devbox", "action": "agent_event", "resource": "checkpoint",
        "outcome": "success",
        "metadata": {"source_event": "checkpoint", "checkpoint": c.to_json()},
    });
    let sealed = auditship::audit::seal(&event.to_string(), None).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(file).unwrap();
    f.write_all(&sealed.line).unwrap();
    (c, sealed.hash)
}

/// A sealed stream `<root>/alice/audit-2026-11-26.jsonl`: events 0–9, a checkpoint
/// (seq 10) over 9, events 11–15, a checkpoint (seq 16) over 15, events 17–19.
struct Fixture {
    root: PathBuf,
    stream_dir: PathBuf,
    file: PathBuf,
    pubkey: PathBuf,
    key: SigningKey,
    checkpoints: Vec<Checkpoint>,
}

fn fixture(t: &Path) -> Fixture {
    let root = t.join("sealed");
    let stream_dir = root.join("alice");
    std::fs::create_dir_all(&stream_dir).unwrap();
    let file = stream_dir.join("audit-2026-11-26.jsonl");
    let key = SigningKey::from_seed(&[42; 32]);
    let pubkey = t.join("sealer.ed25519.pub");
    std::fs::write(&pubkey, keyfile::public_key_pem(key.public())).unwrap();
    let head = write_chain(&file, 1, 0, 10, auditship::audit::ZERO_HASH);
    let (c1, head) = append_checkpoint(&file, &key, "alice", 10, &head);
    let head = write_chain(&file, 1, 11, 5, &head);
    let (c2, head) = append_checkpoint(&file, &key, "alice", 16, &head);
    write_chain(&file, 1, 17, 3, &head);
    Fixture {
        root,
        stream_dir,
        file,
        pubkey,
        key,
        checkpoints: vec![c1, c2],
    }
}

/// The checkpoint events of `file`, as the file sink ships them (`_auditship` added).
fn export_checkpoints(file: &Path, to: &Path) -> PathBuf {
    let mut out = String::new();
    for line in std::fs::read_to_string(file).unwrap().lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["resource"] != "checkpoint" {
            continue;
        }
        v["_auditship"] = json!({"v": 1, "id": v["hash"], "host": "devbox",
            "integrity": {"ok": true, "problems": []}});
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(to, out).unwrap();
    to.to_path_buf()
}

fn verify(args: &[&std::ffi::OsStr]) -> (i32, Value) {
    verify_json(args)
}

fn codes(doc: &Value) -> Vec<String> {
    doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn os<P: AsRef<std::ffi::OsStr> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref()
}

#[test]
fn an_intact_stream_proves_its_own_and_the_exported_checkpoints() {
    let t = tempdir();
    let f = fixture(t.path());
    let (code, doc) = verify(&[os("--pubkey"), os(&f.pubkey), os(&f.stream_dir)]);
    assert_eq!(code, 0, "{doc}");
    let s = &doc["streams"][0];
    assert_eq!(s["checkpoints"]["held"], 2, "{doc}");
    assert_eq!(s["checkpoints"]["covered_to_seq"], 15, "{doc}");
    assert_eq!(s["checkpoints"]["stream"], "alice", "{doc}");

    let export = export_checkpoints(&f.file, &t.path().join("siem.jsonl"));
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&export),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["streams"][0]["checkpoints_read"], 2, "{doc}");
    assert_eq!(doc["streams"][1]["checkpoints"]["held"], 4, "{doc}");

    // The sealer's directory of users: each user directory is a stream.
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&export),
        os(&f.root),
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(
        doc["streams"][1]["path"],
        f.stream_dir.display().to_string()
    );

    // Text output says what the checkpoints covered.
    let out = Command::new(bin())
        .args([
            os("verify"),
            os("--pubkey"),
            os(&f.pubkey),
            os(&f.stream_dir),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("checkpoints (stream \"alice\"): 2 held, covering up to seq 15"),
        "{text}"
    );
}

#[test]
fn a_stream_cut_short_leaves_exported_checkpoints_unmatched() {
    let t = tempdir();
    let f = fixture(t.path());
    let export = export_checkpoints(&f.file, &t.path().join("siem.jsonl"));
    // Keep events 0–12: the second checkpoint (over 15) and its event are gone.
    let text = std::fs::read_to_string(&f.file).unwrap();
    let kept: String = text.lines().take(13).map(|l| format!("{l}\n")).collect();
    std::fs::write(&f.file, kept).unwrap();
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&export),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(codes(&doc), ["checkpoint_unmatched"], "{doc}");
    let p = &doc["problems"][0];
    assert_eq!(p["file"], export.display().to_string());
    assert_eq!(p["line"], 2);
    assert!(
        p["detail"].as_str().unwrap().contains("ends at seq 12"),
        "{p}"
    );
    // Without the export, the cut is not visible to checkpoints: the chain itself is
    // intact up to where it stops.
    let (code, _) = verify(&[os("--pubkey"), os(&f.pubkey), os(&f.stream_dir)]);
    assert_eq!(code, 0);
}

#[test]
fn history_rewritten_and_rehashed_does_not_match_the_checkpoints() {
    let t = tempdir();
    let f = fixture(t.path());
    let export = export_checkpoints(&f.file, &t.path().join("siem.jsonl"));
    // Rewrite event 3 and re-seal everything after it, checkpoint events included,
    // without the signing key: the chain verifies, the signatures do not cover it.
    let text = std::fs::read_to_string(&f.file).unwrap();
    let mut prev = String::new();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if i == 3 {
            v["resource"] = json!("/home/dev/src/innocent.rs");
        }
        if i > 0 {
            v["prev_hash"] = json!(prev);
        }
        let o = v.as_object_mut().unwrap();
        o.remove("hash");
        let sealed = auditship::audit::seal(&Value::Object(o.clone()).to_string(), None).unwrap();
        out.push_str(std::str::from_utf8(&sealed.line).unwrap());
        prev = sealed.hash;
    }
    std::fs::write(&f.file, out).unwrap();
    let (code, doc) = verify(&[os("--pubkey"), os(&f.pubkey), os(&f.stream_dir)]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(
        codes(&doc),
        ["checkpoint_mismatch", "checkpoint_mismatch"],
        "{doc}"
    );
    assert_eq!(doc["problems"][0]["line"], 11, "{doc}");
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&export),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 1);
    assert_eq!(codes(&doc).len(), 4, "{doc}");
    assert!(codes(&doc).iter().all(|c| c == "checkpoint_mismatch"));
}

#[test]
fn forged_or_foreign_signatures_are_never_taken() {
    let t = tempdir();
    let f = fixture(t.path());
    // A checkpoint in the export whose signature was altered.
    let export = export_checkpoints(&f.file, &t.path().join("siem.jsonl"));
    let text = std::fs::read_to_string(&export).unwrap();
    let sig = &f.checkpoints[0].sig;
    let forged = text.replacen(sig, &format!("{}{}", &sig[..120], "00000000"), 1);
    std::fs::write(&export, forged).unwrap();
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&export),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(codes(&doc), ["checkpoint_bad_signature"], "{doc}");

    // The stream's checkpoints checked with another host's key: not taken.
    let other = SigningKey::from_seed(&[7; 32]);
    let other_pub = t.path().join("other.pub");
    std::fs::write(&other_pub, keyfile::public_key_pem(other.public())).unwrap();
    let (code, doc) = verify(&[os("--pubkey"), os(&other_pub), os(&f.stream_dir)]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(
        codes(&doc),
        ["checkpoint_bad_signature", "checkpoint_bad_signature"],
        "{doc}"
    );
    // Both keys given (a key rotation): all held.
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&other_pub),
        os("--pubkey"),
        os(&f.pubkey),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 0, "{doc}");

    // Checkpoints in the export for other hosts (other keys) are counted, not
    // checked; with none for this stream, the stream is not proven.
    let foreign = t.path().join("foreign.jsonl");
    let c = other.sign("alice", 1, &"0".repeat(64));
    let line = json!({"resource": "checkpoint",
        "metadata": {"source_event": "checkpoint", "checkpoint": c.to_json()}});
    std::fs::write(&foreign, format!("{line}\n")).unwrap();
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&foreign),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["streams"][0]["checkpoints_other_keys"], 1, "{doc}");
    assert_eq!(codes(&doc), ["checkpoint_unmatched"], "{doc}");
}

#[test]
fn checkpoints_need_a_public_key_and_key_files_must_be_public_keys() {
    let t = tempdir();
    let f = fixture(t.path());
    let out = Command::new(bin())
        .args([
            os("verify"),
            os("--checkpoints"),
            os(&f.file),
            os(&f.stream_dir),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin())
        .args([os("verify"), os("--pubkey"), os(&f.file), os(&f.stream_dir)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a PEM PUBLIC KEY"),
        "{out:?}"
    );
    // The signing key's own check: what the fixture signed verifies with the
    // library too.
    assert!(f.checkpoints[0].verify(&[f.key.public().clone()]).is_ok());
}

#[test]
fn an_independent_implementation_checks_the_vector_and_real_checkpoints() {
    let t = tempdir();
    let f = fixture(t.path());
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/independent_checkpoint.py");
    let vector = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/checkpoint_vector.json");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(crate::moto::python())
            .arg(&script)
            .args(args)
            .output()
            .expect("python3 runs the independent checkpoint check");
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), doc)
    };
    let (code, doc) = run(&[os("--vector"), os(&vector)]);
    assert_eq!(code, Some(0), "{doc}");
    let (code, doc) = run(&[os(&f.pubkey), os(&f.file)]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["checked"], 2);
    assert_eq!(doc["kid"], f.key.public().kid());
    // It is not a rubber stamp: a changed seq fails there too.
    let text = std::fs::read_to_string(&f.file)
        .unwrap()
        .replace("\"seq\":9,\"sig\"", "\"seq\":8,\"sig\"");
    let bad = t.path().join("bad.jsonl");
    std::fs::write(&bad, text).unwrap();
    let (code, doc) = run(&[os(&f.pubkey), os(&bad)]);
    assert_eq!(code, Some(1), "{doc}");
    // FORMAT.md publishes the vector's values.
    let format =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/FORMAT.md"))
            .unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(&vector).unwrap()).unwrap();
    for field in [
        v["seed"].as_str().unwrap(),
        v["public_key"].as_str().unwrap(),
        v["checkpoint"]["sig"].as_str().unwrap(),
        v["checkpoint"]["kid"].as_str().unwrap(),
    ] {
        assert!(format.contains(field), "docs/FORMAT.md lacks {field}");
    }
}

#[test]
fn checkpoints_shipped_by_the_daemon_prove_the_stream_and_the_export() {
    let t = tempdir();
    let f = fixture(t.path());
    let shipped = t.path().join("shipped.jsonl");
    let cfg = write_config(
        t.path(),
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"devbox\"\nrescan_interval = \"200ms\"\nheartbeat_interval = \"0s\"\n\n[[source]]\nname = \"sealed\"\npaths = [\"{root}/*\"]\n\n[[sink]]\nname = \"out\"\ntype = \"file\"\npath = \"{out}\"\nbatch = {{ max_events = 500, max_wait = \"50ms\" }}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            state = t.path().join("state").display(),
            root = f.root.display(),
            out = shipped.display(),
        ),
    );
    let daemon = Daemon::start(t.path(), &cfg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&shipped)
        .unwrap_or_default()
        .lines()
        .count()
        < 20
    {
        assert!(std::time::Instant::now() < deadline, "{}", daemon.stderr());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, stderr) = daemon.stop(std::time::Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    // The shipped checkpoints are the ones written, untouched by redaction.
    let text = std::fs::read_to_string(&shipped).unwrap();
    for c in &f.checkpoints {
        assert!(text.contains(&c.sig), "{text}");
    }
    let (code, doc) = verify(&[
        os("--pubkey"),
        os(&f.pubkey),
        os("--checkpoints"),
        os(&shipped),
        os(&f.stream_dir),
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["streams"][1]["checkpoints"]["held"], 4, "{doc}");
    // The export itself, checked with the key: its chain holds its checkpoints.
    let (code, doc) = verify(&[os("--pubkey"), os(&f.pubkey), os(&shipped)]);
    assert_eq!(code, 0, "{doc}");
    let group = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "shipped")
        .cloned()
        .unwrap();
    assert_eq!(group["checkpoints"]["held"], 2, "{doc}");
    assert_eq!(group["checkpoints"]["stream"], "alice", "{doc}");
}
