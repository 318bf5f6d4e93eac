//! Secret redaction (`redact::Redactor`) on arbitrary text and JSON.
//!
//! Two redactors run: the built-in detectors alone, and with two configured patterns
//! (one replacing its whole match, one only its `secret` group).
//!
//! - Redaction never panics.
//! - `redact_str` borrows exactly when it changed nothing.
//! - No detected secret survives, which is also idempotence: redacting the output
//!   again finds nothing outside the markers already written, so it changes nothing.
//! - The same for `redact_json` when the input is JSON: a second pass changes no value
//!   and reports no path, and no string or key of the result holds a detected secret.
#![no_main]

use auditship::redact::{PatternConfig, Redactor};
use auditship_fuzz::detected;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::LazyLock;

static REDACTORS: LazyLock<[Redactor; 2]> = LazyLock::new(|| {
    let patterns = [
        // Delimited by punctuation, and without `\b`: a marker is punctuation too, so
        // it leaves the word boundaries around a match as they were. A pattern that
        // ends mid-word, or asserts `\b`, sees new context next to a marker, and a
        // second pass may find more (`TK-0124abcdTK-0124abcd9 ` with `TK-[0-9a-f]+\b`):
        // that is the pattern's doing, not the redactor's. Likewise a group that may
        // hold `[` and `]` may swallow a marker whole on the second pass.
        PatternConfig {
            name: "ticket_key".into(),
            regex: r"\{\{tk:[0-9a-f]{8,}\}\}".into(),
        },
        PatternConfig {
            name: "pin".into(),
            regex: r"(?i)pin\((?P<secret>[0-9a-z]+)\)".into(),
        },
    ];
    [
        Redactor::builtin(),
        Redactor::new(&patterns).expect("the patterns compile"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let json = serde_json::from_str::<Value>(&text).ok();
    for redactor in REDACTORS.iter() {
        let once = redactor.redact_str(&text);
        assert_eq!(matches!(once, Cow::Borrowed(_)), once == text);
        if let Some(twice) = detected(redactor, &once) {
            panic!("not idempotent: {text:?} -> {once:?} -> {twice:?}");
        }
        if let Some(json) = &json {
            check_json(redactor, json.clone());
        }
    }
});

fn check_json(redactor: &Redactor, mut v: Value) {
    let mut paths = Vec::new();
    redactor.redact_json(&mut v, "", &mut paths);
    let once = v.clone();
    no_secret_left(redactor, &v);
    let mut again = Vec::new();
    redactor.redact_json(&mut v, "", &mut again);
    assert!(again.is_empty(), "second pass redacted {again:?} in {once}");
    assert_eq!(v, once);
}

fn no_secret_left(redactor: &Redactor, v: &Value) {
    match v {
        Value::String(s) => {
            if let Some(again) = detected(redactor, s) {
                panic!("a secret survives in {s:?}: {again:?}");
            }
        }
        Value::Array(items) => items.iter().for_each(|i| no_secret_left(redactor, i)),
        Value::Object(m) => {
            for (k, i) in m {
                if let Some(again) = detected(redactor, k) {
                    panic!("a secret survives in the key {k:?}: {again:?}");
                }
                no_secret_left(redactor, i);
            }
        }
        _ => {}
    }
}
