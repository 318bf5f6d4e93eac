//! Archival end to end: which files are archived and which wait, a kill at every step
//! of the archive sequence, the daemon archiving on its own, and `verify` across
//! archives and live files with the manifest.

use crate::sink::{Reply, TestSink};
use crate::util::*;
use auditship::audit::ZERO_HASH;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);

fn age(path: &Path, days: u64) {
    let t = SystemTime::now() - DAY * days as u32 - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// A stream of three files (40, 29 and 40 days old; the last is the newest by name)
/// chained across them, shipped by a daemon run to `sink`, which is then stopped.
struct Setup {
    t: tempfile::TempDir,
    dir: PathBuf,
    cfg: PathBuf,
    files: [PathBuf; 3],
    ids: Vec<String>,
}

fn setup(sink: &TestSink, extra: &str) -> Setup {
    let t = tempdir();
    let dir = t.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        dir.join("audit-2026-10-01.jsonl"),
        dir.join("audit-2026-10-28.jsonl"),
        dir.join("audit-2026-11-26.jsonl"),
    ];
    let mut prev = ZERO_HASH.to_string();
    let mut ids = Vec::new();
    for (i, f) in files.iter().enumerate() {
        prev = write_chain(f, 1, i as u64 * 10, 10, &prev);
        ids.extend(sealed_ids(f));
    }
    age(&files[0], 40);
    age(&files[1], 29);
    age(&files[2], 40);
    let cfg = daemon_config(t.path(), &source_toml(&dir), &sink.addr, extra);
    Setup {
        t,
        dir,
        cfg,
        files,
        ids,
    }
}

/// Runs the daemon until `sink` accepted `n` records, then stops it.
fn ship(s: &Setup, sink: &TestSink, n: u64) {
    let d = Daemon::start(s.t.path(), &s.cfg);
    sink.wait_for(n, Duration::from_secs(30));
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
}

fn archive_now(s: &Setup, env: Option<(&str, &str)>) -> std::process::Output {
    let mut c = cmd(s.t.path());
    c.args(["archive", "--now", "--json", "--config"])
        .arg(&s.cfg);
    if let Some((k, v)) = env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn report(out: &std::process::Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn archive_dir(s: &Setup) -> PathBuf {
    s.t.path().join("state/archive")
}

fn archived_path(s: &Setup, original: &Path) -> PathBuf {
    archive_dir(s).join(format!(
        "{}.gz",
        original.display().to_string().trim_start_matches('/')
    ))
}

fn manifest_lines(s: &Setup) -> Vec<Value> {
    std::fs::read_to_string(archive_dir(s).join("manifest.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `verify --json` with the archive's copy of the stream and the live stream as one,
/// and the manifest: (exit code, problems as (file, code)).
fn verify_all(s: &Setup) -> (i32, Vec<(String, String)>, u64) {
    let archived_stream = archive_dir(s).join(s.dir.display().to_string().trim_start_matches('/'));
    let mut args: Vec<std::ffi::OsString> = vec!["--stream".into()];
    if archived_stream.exists() {
        args.push(archived_stream.into());
    }
    args.push(s.dir.clone().into());
    args.push("--manifest".into());
    args.push(archive_dir(s).join("manifest.jsonl").into());
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, doc) = verify_json(&refs);
    let problems = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["file"].as_str().unwrap().to_string(),
                p["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (code, problems, doc["events"].as_u64().unwrap())
}

#[test]
fn old_shipped_files_are_archived_and_the_rest_waits_with_a_reason() {
    let sink = TestSink::start();
    let s = setup(&sink, "");
    ship(&s, &sink, 30);
    // A fourth file, old but never read by the daemon.
    let unread = s.dir.join("audit-2026-10-15.jsonl");
    write_chain(&unread, 9, 0, 3, ZERO_HASH);
    age(&unread, 40);

    let r = report(&archive_now(&s, None));
    let archived: Vec<&str> = r["archived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["original"].as_str().unwrap())
        .collect();
    assert_eq!(archived, [s.files[0].display().to_string()], "{r}");
    let reason = |f: &Path| -> String {
        r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["file"] == f.display().to_string())
            .map(|x| x["reason"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{} not reported: {r}", f.display()))
    };
    assert!(reason(&s.files[1]).contains("modified 29 days ago"));
    assert!(reason(&s.files[2]).contains("newest"));
    assert!(reason(&unread).contains("not read"));

    assert!(!s.files[0].exists(), "the original is removed");
    assert!(s.files[1].exists() && s.files[2].exists() && unread.exists());
    let gz = archived_path(&s, &s.files[0]);
    assert!(gz.exists());
    let m = manifest_lines(&s);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["op"], "archived");
    assert_eq!(m[0]["events"], 10);
    assert_eq!(m[0]["first"]["seq"], 0);
    assert_eq!(m[0]["last"]["seq"], 9);
    assert_eq!(m[0]["last"]["hash"].as_str(), Some(s.ids[9].as_str()));

    // The unread file does not belong to the stream's chain: take it away, then the
    // archive and the live files verify as one intact chain.
    std::fs::remove_file(&unread).unwrap();
    let (code, problems, events) = verify_all(&s);
    assert_eq!((code, problems.len(), events), (0, 0, 30), "{problems:?}");

    // A second pass has nothing more to do.
    let r = report(&archive_now(&s, None));
    assert!(r["archived"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(manifest_lines(&s).len(), 1);
}

#[test]
fn nothing_is_archived_before_every_sink_acknowledged_it() {
    let sink = TestSink::with(|_, _| Reply::Status(503, None));
    let s = setup(&sink, "");
    let d = Daemon::start(s.t.path(), &s.cfg);
    // Read and queued (the sink was asked), never acknowledged.
    let start = std::time::Instant::now();
    while sink.requests() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sink never asked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    let r = report(&archive_now(&s, None));
    assert!(r["archived"].as_array().unwrap().is_empty(), "{r}");
    let waits = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["file"] == s.files[0].display().to_string())
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(waits.contains("acknowledge"), "{waits}");
    assert!(s.files[0].exists());
}

#[test]
fn a_kill_at_any_step_loses_nothing_and_the_next_pass_completes() {
    for step in ["compressed", "verified", "renamed", "manifested", "removed"] {
        let sink = TestSink::start();
        let s = setup(&sink, "");
        ship(&s, &sink, 30);
        let out = archive_now(&s, Some(("AUDITSHIP_ARCHIVE_CRASH", step)));
        assert_eq!(out.status.code(), None, "{step}: killed by the failpoint");
        // Never neither: the original, or a complete archive.
        let gz = archived_path(&s, &s.files[0]);
        assert!(
            s.files[0].exists() || gz.exists(),
            "{step}: original or archive"
        );
        let r = report(&archive_now(&s, None));
        let archived = r["archived"].as_array().unwrap();
        assert_eq!(archived.len(), 1, "{step}: {r}");
        assert!(!s.files[0].exists(), "{step}: original removed");
        assert!(gz.exists(), "{step}: archive in place");
        let m = manifest_lines(&s);
        assert_eq!(m.len(), 1, "{step}: one manifest line, no duplicate: {m:?}");
        let leftovers: Vec<_> = std::fs::read_dir(gz.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            leftovers,
            [gz.file_name().unwrap().to_string_lossy().into_owned()],
            "{step}: no temporary file left"
        );
        let (code, problems, events) = verify_all(&s);
        assert_eq!((code, events), (0, 30), "{step}: {problems:?}");
    }
}

#[test]
fn verify_reports_an_altered_a_missing_archive_and_an_edited_manifest() {
    let sink = TestSink::start();
    let s = setup(&sink, "");
    // Both older files old enough.
    age(&s.files[1], 35);
    ship(&s, &sink, 30);
    let r = report(&archive_now(&s, None));
    assert_eq!(r["archived"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(verify_all(&s).0, 0);

    // One byte inside an archive.
    let gz = archived_path(&s, &s.files[0]);
    let mut bytes = std::fs::read(&gz).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&gz, &bytes).unwrap();
    let manifest: Vec<std::ffi::OsString> = vec![
        "--manifest".into(),
        archive_dir(&s).join("manifest.jsonl").into(),
    ];
    let refs: Vec<&std::ffi::OsStr> = manifest.iter().map(|a| a.as_os_str()).collect();
    let (code, doc) = verify_json(&refs);
    assert_eq!(code, 1);
    assert_eq!(doc["problems"][0]["code"], "archive_altered", "{doc}");
    assert_eq!(doc["problems"][0]["line"], 1);
    bytes[mid] ^= 0x01;
    std::fs::write(&gz, &bytes).unwrap();
    assert_eq!(verify_json(&refs).0, 0);

    // An archive deleted.
    let gz2 = archived_path(&s, &s.files[1]);
    let saved = std::fs::read(&gz2).unwrap();
    std::fs::remove_file(&gz2).unwrap();
    let (code, doc) = verify_json(&refs);
    assert_eq!(code, 1);
    assert_eq!(doc["problems"][0]["code"], "archive_missing", "{doc}");
    assert_eq!(doc["problems"][0]["line"], 2);
    std::fs::write(&gz2, saved).unwrap();

    // A manifest line edited: the line after it no longer follows.
    let mpath = archive_dir(&s).join("manifest.jsonl");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(&mpath, text.replacen("\"events\":10", "\"events\":9", 1)).unwrap();
    let (code, doc) = verify_json(&refs);
    assert_eq!(code, 1);
    let codes: Vec<&str> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"manifest_altered"), "{doc}");
    assert!(codes.contains(&"manifest_mismatch"), "{doc}");
    // And archiving refuses to go on over an altered manifest.
    age(&s.files[2], 40);
    let out = archive_now(&s, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("manifest_altered"));
}

#[test]
fn the_daemon_archives_on_its_own_and_keeps_shipping() {
    let sink = TestSink::start();
    let s = setup(&sink, "[archive]\ninterval = \"1s\"\n");
    let d = Daemon::start(s.t.path(), &s.cfg);
    sink.wait_for(30, Duration::from_secs(30));
    let gz = archived_path(&s, &s.files[0]);
    let start = std::time::Instant::now();
    while !gz.exists() || s.files[0].exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not archived: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The stream goes on in its newest file.
    write_chain(&s.files[2], 1, 30, 5, &s.ids[29]);
    sink.wait_for(35, Duration::from_secs(30));
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    let shipped = sink.records();
    assert!(
        shipped
            .iter()
            .all(|r| r["_auditship"]["integrity"]["ok"] == true),
        "archiving caused no problems downstream"
    );
    assert_eq!(shipped.len(), 35, "nothing shipped twice");
    let (code, problems, events) = verify_all(&s);
    assert_eq!((code, events), (0, 35), "{problems:?}");
}

#[test]
fn retention_deletes_only_old_verified_recorded_archives() {
    let sink = TestSink::start();
    let s = setup(&sink, "[archive]\nretention_days = 365\n");
    age(&s.files[0], 400);
    age(&s.files[1], 40);
    ship(&s, &sink, 30);
    let r = report(&archive_now(&s, None));
    assert_eq!(r["archived"].as_array().unwrap().len(), 2, "{r}");
    let rel0 = archived_path(&s, &s.files[0]);
    let rel0 = rel0
        .strip_prefix(archive_dir(&s))
        .unwrap()
        .display()
        .to_string();
    assert_eq!(r["expired"], serde_json::json!([rel0]), "{r}");
    assert!(
        !archived_path(&s, &s.files[0]).exists(),
        "past retention: deleted"
    );
    assert!(
        archived_path(&s, &s.files[1]).exists(),
        "within retention: kept"
    );
    let ops: Vec<String> = manifest_lines(&s)
        .iter()
        .map(|l| l["op"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, ["archived", "archived", "expired"]);
    // The manifest accounts for the deleted archive: nothing reported missing.
    let args: Vec<std::ffi::OsString> = vec![
        "--manifest".into(),
        archive_dir(&s).join("manifest.jsonl").into(),
    ];
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (code, doc) = verify_json(&refs);
    assert_eq!(code, 0, "{doc}");
}

#[test]
fn with_s3_the_original_goes_only_after_its_archive_is_uploaded_and_locked() {
    use auditship::archive::s3::{LockMode, S3Client, S3Config};
    let sink = TestSink::start();
    let moto_dir = tempdir();
    let moto = crate::moto::Moto::start(moto_dir.path());
    let creds = tempdir();
    let id_file = creds.path().join("s3.id");
    let secret_file = creds.path().join("s3.secret");
    std::fs::write(&id_file, "testing\n").unwrap();
    std::fs::write(&secret_file, "testing\n").unwrap();
    let s = setup(
        &sink,
        &format!(
            "[archive.s3]\nendpoint = \"{}\"\nbucket = \"audit-archive\"\nregion = \"us-east-1\"\nprefix = \"fleet/\"\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\nobject_lock_mode = \"COMPLIANCE\"\nretain_days = 2555\n",
            moto.url,
            id_file.display(),
            secret_file.display()
        ),
    );
    ship(&s, &sink, 30);
    let gz = archived_path(&s, &s.files[0]);

    // The bucket does not exist yet: the upload fails, the original stays.
    let out = archive_now(&s, None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NoSuchBucket"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(s.files[0].exists(), "not removed before the upload");
    assert!(gz.exists(), "the verified local archive is kept");
    let ops: Vec<String> = manifest_lines(&s)
        .iter()
        .map(|l| l["op"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, ["archived"]);

    // With the bucket (Object Lock on), the next pass uploads, verifies, removes.
    let cfg = S3Config {
        endpoint: moto.url.clone(),
        bucket: "audit-archive".into(),
        prefix: "fleet/".into(),
        region: "us-east-1".into(),
        access_key_id: auditship::config::daemon::Secret::new("testing"),
        secret_access_key: auditship::config::daemon::Secret::new("testing"),
        session_token: None,
        object_lock_mode: Some(LockMode::Compliance),
        retain_days: 2555,
        net: auditship::config::daemon::NetConfig {
            endpoint: moto.url.clone(),
            tls: Default::default(),
            proxy: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        },
    };
    auditship::daemon::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async { S3Client::new(&cfg).unwrap() });
    rt.block_on(client.request(
        reqwest::Method::PUT,
        None,
        &[],
        &[("x-amz-bucket-object-lock-enabled", "true")],
        bytes::Bytes::new(),
    ))
    .expect("create the bucket");
    // Killed right after the upload was recorded: the original is still there.
    let out = archive_now(&s, Some(("AUDITSHIP_ARCHIVE_CRASH", "uploaded")));
    assert_eq!(out.status.code(), None, "killed by the failpoint");
    assert!(s.files[0].exists());
    let r = report(&archive_now(&s, None));
    assert_eq!(r["archived"].as_array().unwrap().len(), 1, "{r}");
    assert!(!s.files[0].exists(), "removed once uploaded");
    let m = manifest_lines(&s);
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(m[1]["op"], "uploaded");
    let rel = gz
        .strip_prefix(archive_dir(&s))
        .unwrap()
        .display()
        .to_string();
    let key = format!("fleet/{rel}");
    assert_eq!(m[1]["key"].as_str(), Some(key.as_str()));
    let head = rt
        .block_on(client.request(
            reqwest::Method::HEAD,
            Some(&key),
            &[],
            &[("x-amz-checksum-mode", "ENABLED")],
            bytes::Bytes::new(),
        ))
        .expect("the archive is in the bucket");
    assert_eq!(head.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
    let until = head
        .header("x-amz-object-lock-retain-until-date")
        .expect("retention set")
        .to_string();
    let until_s = auditship::clock::rfc3339_nanos(&until).expect("a date") / 1_000_000_000;
    let now_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i128;
    let days = (until_s - now_s) / 86_400;
    assert!(
        (2554..=2555).contains(&days),
        "retained until {until}: {days} days"
    );
    let local = std::fs::read(&gz).unwrap();
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, local.len(), "the bucket holds the archive's bytes");
    assert_eq!(verify_all(&s).0, 0);
}
