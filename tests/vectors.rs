//! The shared chain-format vectors: the project's copy is exact, and every case gives
//! exactly its expected problems through the real `auditship verify --json`.

use crate::util::*;
use std::ffi::OsStr;
use std::path::Path;

fn cases() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    assert!(v.len() >= 11, "vector cases missing: {v:?}");
    v
}

fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn copy_equals_shared_vectors() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if !shared.is_dir() {
        // The project must stand alone: outside the workspace there is nothing to
        // compare with, and the copy itself is what the other tests use.
        eprintln!("note: {} not present; copy not compared", shared.display());
        return;
    }
    let ours = files_under(&vectors_dir());
    let theirs = files_under(&shared);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs), "file lists differ");
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        assert!(
            a == b,
            "tests/vectors/{name} differs from ../shared/vectors/{name}"
        );
    }
}

#[test]
fn every_case_gives_exactly_its_expected_problems() {
    let keydir = tempdir();
    for case in cases() {
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        for (kid, hex) in expected["keys"].as_object().unwrap() {
            let kf = key_file(keydir.path(), kid, hex.as_str().unwrap());
            args.push("--key".into());
            args.push(format!("{kid}={}", kf.display()).into());
        }
        args.push(case.clone().into());
        let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, doc) = verify_json(&refs);
        let want: Vec<(String, u64, String)> = expected["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["file"].as_str().unwrap().into(),
                    p["line"].as_u64().unwrap(),
                    p["code"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(triples(&doc), want, "case {}", case.display());
        assert_eq!(
            code,
            if want.is_empty() { 0 } else { 1 },
            "exit code, case {}",
            case.display()
        );
        assert_eq!(doc["ok"], want.is_empty(), "ok, case {}", case.display());
        for p in doc["problems"].as_array().unwrap() {
            assert!(
                !p["detail"].as_str().unwrap().is_empty(),
                "every problem has a detail"
            );
        }
    }
}

#[test]
fn canonical_form_matches_byte_for_byte() {
    use auditship::audit::{canon, json, sha256_hex};
    let input = std::fs::read_to_string(vectors_dir().join("canon.jsonl")).unwrap();
    let expected = std::fs::read_to_string(vectors_dir().join("canon.expected.jsonl")).unwrap();
    let mut n = 0;
    for (line, exp) in input.lines().zip(expected.lines()) {
        let exp: serde_json::Value = serde_json::from_str(exp).unwrap();
        let v = json::parse(line).unwrap();
        let mut out = Vec::new();
        canon::write_object(v.as_object().unwrap(), &["hash", "hmac"], &mut out).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            exp["canonical"].as_str().unwrap()
        );
        assert_eq!(sha256_hex(&out), exp["hash"].as_str().unwrap());
        n += 1;
    }
    assert_eq!(n, input.lines().count());
    assert!(n >= 6);
}
