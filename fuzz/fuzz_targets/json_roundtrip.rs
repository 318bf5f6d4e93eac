//! The JSON reader and the RFC 8785 writer of `audit` on arbitrary text.
//!
//! - Reading never panics, whatever the bytes.
//! - Round trip: parse → write → parse → write is a fixed point, for the line form a
//!   producer writes (`write_line_value`), and reading that line back gives the same
//!   canonical form (so the same hash). Without doubles beyond ±2^53 the line form
//!   is the canonical form. Written text parses strictly (no lone surrogate).
//! - A text the reader calls canonical is its own canonical form, and leaving out
//!   `hash`/`hmac` by cutting their spans out of it (the verifier's fast path) gives
//!   the same bytes as writing the object without them (the slow path).
//! - Object members come out sorted by UTF-16 code units.
//! - Whatever serde_json accepts, this reader accepts too.
#![no_main]

use auditship::audit::canon;
use auditship::audit::json::{self, Value};
use libfuzzer_sys::fuzz_target;
use std::cmp::Ordering;

const UNHASHED: [&str; 2] = ["hash", "hmac"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = json::parse_lossy(text);
    if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        assert!(parsed.is_ok(), "serde_json accepts what the reader refuses");
    }
    let Ok(parsed) = parsed else {
        assert!(json::parse(text).is_err());
        assert!(json::parse_with_spans(text, &UNHASHED).is_err());
        return;
    };
    assert_eq!(json::parse(text).is_ok(), !parsed.lone_surrogates);
    check_sorted(&parsed.value);
    check_fast_path(text, &parsed.value);

    let mut first = Vec::new();
    if canon::write_value(&parsed.value, &mut first).is_err() {
        assert!(!parsed.canonical, "a canonical text has no canonical form");
        return;
    }
    if parsed.canonical {
        assert_eq!(
            first, data,
            "a canonical text differs from its canonical form"
        );
    }

    // What a producer writes: the canonical form, except for doubles beyond ±2^53,
    // which keep an exponent (their canonical text is an integer literal a reader
    // must refuse). Reading the line back gives the same canonical form, and the
    // line form is a fixed point; without such doubles the line is the canonical
    // form, so parse → canonical write → parse → write is a fixed point.
    let mut line = Vec::new();
    let differs = canon::write_line_value(&parsed.value, &mut line).expect("written once");
    assert_eq!(differs, line != first, "write_line_value misreports");
    let line_text = std::str::from_utf8(&line).expect("the writer writes UTF-8");
    let again = json::parse(line_text).expect("a written line parses strictly");
    let mut second = Vec::new();
    canon::write_value(&again, &mut second).expect("a written line canonicalizes");
    assert_eq!(first, second, "a written line changes the canonical form");
    let mut line_again = Vec::new();
    canon::write_line_value(&again, &mut line_again).expect("written once");
    assert_eq!(line, line_again, "writing a line is not a fixed point");
});

/// The verifier's fast path: when the text is canonical apart from where its `hash`
/// and `hmac` stand, cutting their spans out gives what writing the object without
/// them gives.
fn check_fast_path(text: &str, value: &Value<'_>) {
    let parsed = json::parse_with_spans(text, &UNHASHED).expect("parsed once already");
    assert_eq!(&parsed.value, value);
    let (true, Value::Object(obj)) = (parsed.canonical, &parsed.value) else {
        return;
    };
    let mut slow = Vec::new();
    canon::write_object(obj, &UNHASHED, &mut slow).expect("a canonical text writes");
    let mut fast = Vec::new();
    canon::without_members(text.as_bytes(), parsed.spans.as_slice(), |p| {
        fast.extend_from_slice(p)
    });
    assert_eq!(fast, slow, "fast and slow hashed forms differ");
}

/// Members of every object are in UTF-16 code unit order, and `cmp_utf16` agrees with
/// comparing the UTF-16 encodings.
fn check_sorted(v: &Value<'_>) {
    match v {
        Value::Array(items) => items.iter().for_each(check_sorted),
        Value::Object(members) => {
            for pair in members.windows(2) {
                let (a, b) = (&pair[0].0, &pair[1].0);
                let by_units = a.encode_utf16().cmp(b.encode_utf16());
                assert_eq!(json::cmp_utf16(a, b), by_units, "{a:?} vs {b:?}");
                assert_ne!(by_units, Ordering::Greater, "{a:?} before {b:?}");
            }
            members.iter().for_each(|(_, v)| check_sorted(v));
        }
        _ => {}
    }
}
