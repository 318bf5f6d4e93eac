//! `auditship verify` beyond the vectors: gzip, explicit file lists, incomplete last
//! lines, usage errors, human output.

use crate::util::*;
use std::ffi::OsStr;
use std::io::Write;
use std::process::Command;

fn gzip(src: &std::path::Path, dst: &std::path::Path) {
    let data = std::fs::read(src).unwrap();
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(dst).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
}

#[test]
fn gz_files_are_read_transparently_and_keep_name_order() {
    let t = tempdir();
    let case = vectors_dir().join("continued-across-files");
    gzip(
        &case.join("audit-2026-11-01.jsonl"),
        &t.path().join("audit-2026-11-01.jsonl.gz"),
    );
    std::fs::copy(
        case.join("audit-2026-11-02.jsonl"),
        t.path().join("audit-2026-11-02.jsonl"),
    )
    .unwrap();
    let (code, doc) = verify_json(&[t.path().as_os_str()]);
    assert_eq!((code, triples(&doc)), (0, vec![]));
    assert_eq!(doc["events"], 60);

    // Missing the first day: the second file alone is a continuation, still clean;
    // the two in the wrong order are not.
    let first = t.path().join("audit-2026-11-01.jsonl.gz");
    let second = t.path().join("audit-2026-11-02.jsonl");
    let (code, doc) = verify_json(&[second.as_os_str(), first.as_os_str()]);
    assert_eq!(code, 1);
    let got = triples(&doc);
    assert_eq!(
        got[0].0,
        first.display().to_string(),
        "files are named as given"
    );
    assert_eq!(
        got[0].2, "chain_restart",
        "day one restarts the chain after day two"
    );
}

#[test]
fn tampering_inside_a_gz_archive_is_found() {
    let t = tempdir();
    let src = std::fs::read_to_string(vectors_dir().join("valid/audit-0001.jsonl")).unwrap();
    let tampered = src.replacen("\"outcome\": \"success\"", "\"outcome\": \"failure\"", 1);
    assert_ne!(src, tampered);
    let plain = t.path().join("x.jsonl");
    std::fs::write(&plain, tampered).unwrap();
    gzip(&plain, &t.path().join("audit.jsonl.gz"));
    std::fs::remove_file(&plain).unwrap();
    let (code, doc) = verify_json(&[t.path().as_os_str()]);
    assert_eq!(code, 1);
    assert_eq!(
        triples(&doc),
        [("audit.jsonl.gz".to_string(), 1, "hash_mismatch".to_string())]
    );
}

#[test]
fn an_unterminated_last_line_is_pending_not_a_problem() {
    let t = tempdir();
    let mut text = std::fs::read_to_string(vectors_dir().join("valid/audit-0001.jsonl")).unwrap();
    text.push_str("{\"v\": 1, \"id\": \"half-writ");
    let f = t.path().join("audit.jsonl");
    std::fs::write(&f, &text).unwrap();
    let (code, doc) = verify_json(&[f.as_os_str()]);
    assert_eq!((code, triples(&doc).len()), (0, 0));
    let out = Command::new(bin()).arg("verify").arg(&f).output().unwrap();
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("unterminated last line"), "{human}");
    assert!(human.contains("intact"), "{human}");
}

#[test]
fn human_output_names_file_line_code_and_summarises() {
    let case = vectors_dir().join("tamper-line-deleted");
    let out = Command::new(bin())
        .arg("verify")
        .arg(&case)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("audit.jsonl:10 chain_break "), "{text}");
    assert!(text.contains("audit.jsonl:10 seq_gap "), "{text}");
    assert!(text.contains("39 events"), "{text}");
    assert!(text.contains("first: seq 0 hash 2f9212241725"), "{text}");
    assert!(
        text.contains("NOT INTACT: 2 problems (chain_break 1, seq_gap 1)"),
        "{text}"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let t = tempdir();
    let case = vectors_dir().join("valid");
    let short = key_file(t.path(), "short", "abcd");
    for args in [
        vec![OsStr::new("/nonexistent/audit")],
        vec![
            OsStr::new("--key"),
            OsStr::new("nokeyfile"),
            case.as_os_str(),
        ],
        vec![
            OsStr::new("--key"),
            OsStr::new("k=/nonexistent.key"),
            case.as_os_str(),
        ],
    ] {
        let out = Command::new(bin())
            .arg("verify")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let arg = format!("k={}", short.display());
    let out = Command::new(bin())
        .args(["verify", "--key", &arg])
        .arg(&case)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin()).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no path is a usage error");
}

#[test]
fn a_key_given_for_an_unsigned_stream_reports_hmac_missing() {
    let t = tempdir();
    let kf = key_file(t.path(), "k", &"11".repeat(32));
    let arg = format!("k={}", kf.display());
    let case = vectors_dir().join("valid");
    let (code, doc) = verify_json(&[OsStr::new("--key"), OsStr::new(&arg), case.as_os_str()]);
    assert_eq!(code, 1);
    let got = triples(&doc);
    assert_eq!(got.len(), 200);
    assert!(got.iter().all(|p| p.2 == "hmac_missing"));
}
