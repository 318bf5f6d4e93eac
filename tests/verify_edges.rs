//! `auditship verify` at its edges: missing paths and manifests, streams with nothing
//! to check, damaged `.gz` files in `--json`, several streams in one report, and
//! exports of shipped records (as the file sink writes them, shuffled, with re-sends).

use crate::util::*;
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn verify(args: &[&OsStr]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn codes(doc: &Value) -> Vec<String> {
    triples(doc).into_iter().map(|t| t.2).collect()
}

#[test]
fn a_missing_manifest_or_path_is_exit_2_at_once_and_never_intact() {
    for args in [
        vec!["--manifest", "/nonexist/dir/m.jsonl"],
        vec!["--manifest", "/nonexist.jsonl"],
        vec!["--json", "--manifest", "/nonexist.jsonl"],
        vec!["/nonexist/audit"],
        vec!["--json", "/nonexist/audit"],
    ] {
        let start = Instant::now();
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let (code, stdout, stderr) = verify(&args);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}: the parent tree was walked",
            start.elapsed()
        );
        assert_eq!(code, 2, "{args:?}: {stdout}");
        assert!(!stdout.contains("intact"), "{args:?}: {stdout}");
        assert!(stderr.contains("nonexist"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_directory_or_file_with_nothing_to_check_is_not_intact() {
    let t = tempdir();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    // Like ~/.claude instead of ~/.claude/audit: files, but no stream file.
    let parent = t.path().join("claude");
    std::fs::create_dir_all(parent.join("audit")).unwrap();
    std::fs::write(parent.join("settings.json"), "{}\n").unwrap();
    std::fs::write(parent.join(".lock"), "").unwrap();
    let blank = t.path().join("blank.jsonl");
    std::fs::write(&blank, "\n\n").unwrap();
    for p in [&empty, &parent, &blank] {
        let (code, doc) = verify_json(&[p.as_os_str()]);
        assert_eq!(code, 1, "{}: {doc}", p.display());
        assert_eq!(doc["ok"], false);
        assert_eq!(codes(&doc), ["no_events"], "{doc}");
        assert_eq!(doc["streams"][0]["ok"], false);
        assert_eq!(doc["streams"][0]["events"], 0);
        let (code, text, _) = verify(&[p.as_os_str()]);
        assert_eq!(code, 1);
        assert!(text.contains("no_events"), "{text}");
        assert!(!text.contains("intact: no problems"), "{text}");
    }
    // An empty stream beside a good one still fails the whole call.
    let good = vectors_dir().join("valid");
    let (code, doc) = verify_json(&[good.as_os_str(), empty.as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(doc["streams"][0]["ok"], true);
    assert_eq!(doc["streams"][1]["ok"], false);
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn a_damaged_gz_is_a_problem_inside_one_valid_json_object() {
    let t = tempdir();
    let data = std::fs::read(vectors_dir().join("valid/audit-0001.jsonl")).unwrap();
    let gz = gzip_bytes(&data);
    std::fs::write(t.path().join("a-1.jsonl.gz"), &gz[..gz.len() / 2]).unwrap();
    std::fs::write(t.path().join("a-2.jsonl.gz"), b"not gzip at all").unwrap();
    let out = Command::new(bin())
        .args(["verify", "--json"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let got = triples(&doc);
    assert_eq!(got.len(), 2, "{doc}");
    assert_eq!(
        (got[0].0.as_str(), got[0].2.as_str()),
        ("a-1.jsonl.gz", "gzip_damaged")
    );
    assert_eq!(
        (got[1].0.as_str(), got[1].2.as_str()),
        ("a-2.jsonl.gz", "gzip_damaged")
    );
    let s = &doc["streams"][0];
    assert_eq!(s["ok"], false);
    assert!(
        s["events"].as_u64().unwrap() > 0,
        "what was readable is checked"
    );
    assert_eq!(s["first_seq"], 0);
    assert_eq!(s["problems"].as_array().unwrap().len(), 2);
    assert_eq!(s["by_code"]["gzip_damaged"], 2);
}

#[test]
fn two_streams_in_one_json_report_are_told_apart() {
    let valid = vectors_dir().join("valid");
    let deleted = vectors_dir().join("tamper-line-deleted");
    let (code, doc) = verify_json(&[valid.as_os_str(), deleted.as_os_str()]);
    assert_eq!(code, 1);
    let streams = doc["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0]["path"], valid.display().to_string());
    assert_eq!(streams[1]["path"], deleted.display().to_string());
    assert_eq!(
        (
            &streams[0]["ok"],
            &streams[0]["events"],
            &streams[0]["first_seq"],
            &streams[0]["last_seq"]
        ),
        (
            &Value::Bool(true),
            &Value::from(200),
            &Value::from(0),
            &Value::from(199)
        )
    );
    assert_eq!(streams[0]["first_hash"].as_str().unwrap().len(), 64);
    assert_eq!(streams[1]["ok"], false);
    assert_eq!(streams[1]["last_seq"], 39);
    assert!(
        streams[1]["last_hash"]
            .as_str()
            .unwrap()
            .starts_with("5e000bc0")
    );
    let mine: Vec<&str> = streams[1]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(mine, ["chain_break", "seq_gap"]);
    for p in doc["problems"].as_array().unwrap() {
        assert_eq!(p["stream"], deleted.display().to_string(), "{p}");
    }
    assert_eq!(doc["events"], 239);
}

#[test]
fn a_stream_keeps_a_bounded_list_of_its_problems_and_counts_the_rest() {
    let t = tempdir();
    let kf = key_file(t.path(), "k", &"11".repeat(32));
    let arg = format!("k={}", kf.display());
    let case = vectors_dir().join("valid");
    let (code, doc) = verify_json(&[OsStr::new("--key"), OsStr::new(&arg), case.as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(
        doc["problems"].as_array().unwrap().len(),
        200,
        "all, at the top"
    );
    let s = &doc["streams"][0];
    assert_eq!(s["problem_count"], 200);
    assert_eq!(s["problems"].as_array().unwrap().len(), 100);
    assert_eq!(s["problems_omitted"], 100);
}

/// Runs the daemon with a file sink over two stream directories and returns the
/// shipped lines once every event (and the daemon's stop record) is there.
fn ship_two_streams(root: &Path) -> Vec<String> {
    let (s1, s2) = (root.join("s1"), root.join("s2"));
    std::fs::create_dir_all(&s1).unwrap();
    std::fs::create_dir_all(&s2).unwrap();
    let prev = write_chain(
        &s1.join("audit-1.jsonl"),
        1,
        0,
        15,
        auditship::audit::ZERO_HASH,
    );
    write_chain(&s1.join("audit-2.jsonl"), 1, 15, 15, &prev);
    write_chain(
        &s2.join("audit-1.jsonl"),
        2,
        0,
        20,
        auditship::audit::ZERO_HASH,
    );
    let shipped = root.join("out/shipped.jsonl");
    let cfg = write_config(
        root,
        &format!(
            "[agent]\nstate_dir = \"{state}\"\nhost = \"test-host\"\nrescan_interval = \"200ms\"\nshutdown_timeout = \"5s\"\n\n\
             [[source]]\nname = \"a\"\npaths = [\"{s1}\", \"{s2}\"]\n\n\
             [[sink]]\nname = \"file\"\ntype = \"file\"\npath = \"{shipped}\"\nbatch = {{ max_events = 7, max_wait = \"50ms\" }}\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            state = root.join("state").display(),
            s1 = s1.display(),
            s2 = s2.display(),
            shipped = shipped.display(),
        ),
    );
    let d = Daemon::start(root, &cfg);
    let events = |text: &str| {
        text.lines()
            .filter(|l| !l.contains("\"action\":\"agent_event\""))
            .count()
    };
    let start = Instant::now();
    while std::fs::read_to_string(&shipped)
        .map(|s| events(&s))
        .unwrap_or(0)
        < 50
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not shipped: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, stderr) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    let text = std::fs::read_to_string(&shipped).unwrap();
    assert_eq!(events(&text), 50);
    text.lines().map(str::to_owned).collect()
}

/// A deterministic shuffle with re-sends: every fourth record twice, every sixth once
/// more as a SIEM would write it out again (its own key order, a later received_at).
fn export_of(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = lines.to_vec();
    for (i, l) in lines.iter().enumerate() {
        if i % 4 == 0 {
            out.push(l.clone());
        }
        if i % 6 == 0 {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["_auditship"]["received_at"] = "2030-01-01T00:00:00.000Z".into();
            out.push(v.to_string());
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..out.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.swap(i, (state % (i as u64 + 1)) as usize);
    }
    out
}

fn write_export(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn is_event(l: &str, stream: &str, seq: u64) -> bool {
    let v: Value = serde_json::from_str(l).unwrap();
    v["_auditship"]["stream"]
        .as_str()
        .unwrap()
        .ends_with(stream)
        && v["seq"] == seq
}

#[test]
fn a_shipped_export_in_any_order_with_resends_verifies_and_shows_tampering() {
    let t = tempdir();
    let shipped = ship_two_streams(t.path());
    let export = export_of(&shipped);
    assert!(export.len() > shipped.len() + 10);
    let file = t.path().join("siem-export.jsonl");
    write_export(&file, &export);

    // As shipped: clean, two streams, every re-send dropped.
    let (code, doc) = verify_json(&[file.as_os_str()]);
    assert_eq!(code, 0, "{doc}");
    let streams = doc["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3, "the export itself and two streams: {doc}");
    assert_eq!(streams[0]["kind"], "export");
    assert_eq!(
        streams[0]["daemon_records"], 2,
        "agent_start and agent_stop"
    );
    assert_eq!(
        streams[0]["resent_dropped"].as_u64().unwrap() as usize,
        export.len() - shipped.len()
    );
    let by_path = |suffix: &str| {
        streams
            .iter()
            .find(|s| s["path"].as_str().unwrap().ends_with(suffix))
            .unwrap_or_else(|| panic!("no stream {suffix}: {doc}"))
            .clone()
    };
    let (s1, s2) = (by_path("/s1"), by_path("/s2"));
    assert_eq!(
        (s1["events"].as_u64(), s1["members"].as_u64()),
        (Some(30), Some(30))
    );
    assert_eq!(
        (s1["first_seq"].as_u64(), s1["last_seq"].as_u64()),
        (Some(0), Some(29))
    );
    assert_eq!(
        s1["files"],
        serde_json::json!(["audit-1.jsonl", "audit-2.jsonl"])
    );
    assert_eq!(
        (s2["events"].as_u64(), s2["last_seq"].as_u64()),
        (Some(20), Some(19))
    );
    assert_eq!(s2["host"], "test-host");
    // The last hash is the one `verify` gives for the directory on disk.
    let (_, disk) = verify_json(&[t.path().join("s1").as_os_str()]);
    assert_eq!(s1["last_hash"], disk["streams"][0]["last_hash"]);

    // One event deleted from the SIEM (every copy of it): a gap, reported as one.
    let cut: Vec<String> = export
        .iter()
        .filter(|l| !is_event(l, "/s1", 10))
        .cloned()
        .collect();
    write_export(&file, &cut);
    let (code, doc) = verify_json(&[file.as_os_str()]);
    assert_eq!(code, 1);
    let got = triples(&doc);
    assert_eq!(
        got,
        [
            ("audit-1.jsonl".to_string(), 12, "chain_break".to_string()),
            ("audit-1.jsonl".to_string(), 12, "seq_gap".to_string())
        ],
        "{doc}"
    );
    assert!(
        doc["problems"][0]["stream"]
            .as_str()
            .unwrap()
            .ends_with("/s1")
    );
    assert!(doc["problems"][0]["export_line"].as_u64().is_some());

    // One event's field altered in the SIEM (every copy): hash_mismatch there only.
    let altered: Vec<String> = export
        .iter()
        .map(|l| {
            if is_event(l, "/s2", 5) {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v["outcome"] = "failure".into();
                v.to_string()
            } else {
                l.clone()
            }
        })
        .collect();
    write_export(&file, &altered);
    let (code, doc) = verify_json(&[file.as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(
        triples(&doc),
        [("audit-1.jsonl".to_string(), 6, "hash_mismatch".to_string())],
        "{doc}"
    );
    assert!(
        doc["problems"][0]["stream"]
            .as_str()
            .unwrap()
            .ends_with("/s2")
    );

    // The text report names the stream, its first and last link and the export line.
    write_export(&file, &cut);
    let (code, text, _) = verify(&[file.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        text.contains("(shipped from host test-host, source a)"),
        "{text}"
    );
    assert!(text.contains("last:  seq 29 hash "), "{text}");
    assert!(text.contains("(export "), "{text}");
}

#[test]
fn an_export_reports_redacted_records_and_lines_that_are_no_records() {
    let t = tempdir();
    let dir = t.path().join("s");
    std::fs::create_dir_all(&dir).unwrap();
    let mut prev = auditship::audit::ZERO_HASH.to_string();
    let mut lines = Vec::new();
    for seq in 0..3u64 {
        let resource = if seq == 1 {
            "AKIAIOSFODNN7EXAMPLE".to_string()
        } else {
            format!("/r{seq}")
        };
        let e = format!(
            r#"{{"v":1,"id":"i{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42Z","user_id":"u","session_id":"s","host":"h","action":"file_read","resource":"{resource}","outcome":"success","prev_hash":"{prev}"}}"#
        );
        let sealed = auditship::audit::seal(&e, None).unwrap();
        prev = sealed.hash.clone();
        lines.push(sealed);
    }
    // Records built the way the daemon builds them.
    let enc = auditship::check::Encoder::new(
        "h1",
        &serde_json::Map::new(),
        auditship::redact::Redactor::builtin(),
    );
    let mut verifier = auditship::audit::Verifier::new(auditship::audit::Keys::new());
    let mut out = Vec::new();
    let stream = dir.display().to_string();
    for (i, s) in lines.iter().enumerate() {
        let at = auditship::check::Origin {
            source: "a",
            stream: &stream,
            file: "audit.jsonl",
            line: i as u64 + 1,
            offset: 0,
            received_at: "2026-11-26T07:06:43Z",
        };
        enc.encode_line(
            Some(&mut verifier),
            s.line.trim_ascii_end(),
            None,
            &at,
            &mut out,
        );
    }
    let mut text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"redacted\":[\"resource\"]"), "{text}");
    text.push_str("{\"not\":\"a record\"}\n");
    let file = t.path().join("export.jsonl");
    std::fs::write(&file, text).unwrap();
    let (code, doc) = verify_json(&[file.as_os_str()]);
    assert_eq!(code, 1);
    let got = triples(&doc);
    assert_eq!(
        got,
        [
            (file.display().to_string(), 4, "not_a_record".to_string()),
            ("audit.jsonl".to_string(), 2, "redacted".to_string())
        ],
        "{doc}"
    );
    assert!(!codes(&doc).contains(&"hash_mismatch".to_string()));
}

#[test]
fn a_tree_is_walked_for_its_streams_and_an_archive_directory_checks_its_manifest() {
    use auditship::archive::manifest::{Link, Manifest, Op};
    let t = tempdir();
    let root = t.path().join("hosts");
    for (i, host) in ["h1", "h2"].iter().enumerate() {
        let dir = root.join(host).join("home/dev/.claude/audit");
        std::fs::create_dir_all(&dir).unwrap();
        write_chain(
            &dir.join("audit-1.jsonl"),
            i as u32,
            0,
            5,
            auditship::audit::ZERO_HASH,
        );
    }
    // A symbolic link back up the tree is not followed.
    std::os::unix::fs::symlink(&root, root.join("h1/loop")).unwrap();
    let (code, doc) = verify_json(&[root.as_os_str()]);
    assert_eq!(code, 0, "{doc}");
    let paths: Vec<&str> = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    let want: Vec<String> = ["h1", "h2"]
        .iter()
        .map(|h| {
            root.join(h)
                .join("home/dev/.claude/audit")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(paths, want);
    assert_eq!(doc["events"], 10);

    // An archive directory: its archives' streams, and its manifest checked.
    let archive = t.path().join("archive");
    let dir = archive.join("home/dev/.claude/audit");
    std::fs::create_dir_all(&dir).unwrap();
    let plain = t.path().join("audit-0.jsonl");
    let last = write_chain(&plain, 7, 0, 4, auditship::audit::ZERO_HASH);
    let data = std::fs::read(&plain).unwrap();
    let gz = gzip_bytes(&data);
    std::fs::write(dir.join("audit-0.jsonl.gz"), &gz).unwrap();
    let first = sealed_ids(&plain)[0].clone();
    let mut m = Manifest::open(&archive.join("manifest.jsonl")).unwrap();
    m.append(Op::Archived {
        original: "/home/dev/.claude/audit/audit-0.jsonl".into(),
        size: data.len() as u64,
        sha256: auditship::audit::sha256_hex(&data),
        mtime: 0,
        archive: "home/dev/.claude/audit/audit-0.jsonl.gz".into(),
        archive_size: gz.len() as u64,
        archive_sha256: auditship::audit::sha256_hex(&gz),
        events: 4,
        first: Some(Link {
            seq: Some(0),
            hash: Some(first),
        }),
        last: Some(Link {
            seq: Some(3),
            hash: Some(last),
        }),
    })
    .unwrap();
    let (code, doc) = verify_json(&[archive.as_os_str()]);
    assert_eq!(code, 0, "{doc}");
    let kinds: Vec<&str> = doc["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["directory", "manifest"], "{doc}");
    assert_eq!(doc["streams"][1]["archives_checked"], 1);
    // An archive the manifest does not record is found.
    std::fs::write(dir.join("audit-9.jsonl.gz"), &gz).unwrap();
    let (code, doc) = verify_json(&[archive.as_os_str()]);
    assert_eq!(code, 1, "{doc}");
    assert!(
        codes(&doc).contains(&"archive_unlisted".to_string()),
        "{doc}"
    );
}
