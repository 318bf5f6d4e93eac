//! The daemon's fast lane (`audit::tape`, `Verifier::check_tape`, `Redactor::lane_clean`)
//! against the general path, on a stream of arbitrary lines (HMAC key `k1` known when
//! the first byte is odd).
//!
//! - A line the tape reads is a JSON object the general reader reads, and reorderable.
//! - The tape's canonical form (without `hash` and `hmac`) is the canonical writer's,
//!   and the tape gives none exactly when the writer refuses the object.
//! - `check_tape`, when it decides, reaches the verdict `check_line` reaches on a
//!   verifier in the same state: the same head, `hash_ok` and problem codes; when it
//!   does not decide, it changed nothing.
//! - A line the lane calls clean has no secret by its text, none in the decoded text of
//!   any escaped string (most of which the lane judges without searching them), and
//!   no value the structure marks (the walk with `Scope::Context` changes nothing).
#![no_main]

use auditship::audit::tape::{self, Kind, Tape};
use auditship::audit::{Checked, Keys, Verifier, canon, json};
use auditship::redact::{LaneScratch, Redactor, Scope};
use libfuzzer_sys::fuzz_target;

const UNHASHED: [&str; 2] = ["hash", "hmac"];

fuzz_target!(|data: &[u8]| {
    let mut keys = Keys::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        keys.insert("k1", b"0123456789abcdef0123456789abcdef");
    }
    let redactor = Redactor::builtin();
    let (mut lane, mut general) = (Verifier::new(keys.clone()), Verifier::new(keys));
    let mut tape = Tape::new();
    let mut scratch = LaneScratch::new();
    let mut decoded = String::new();
    for line in data.split(|&b| b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            lane.check_line(line, &mut Vec::new());
            general.check_line(line, &mut Vec::new());
            continue;
        };
        if !tape.read(text) {
            lane.check_line(line, &mut Vec::new());
            general.check_line(line, &mut Vec::new());
            continue;
        }
        let parsed = json::parse_with_spans(text, &UNHASHED).expect("the tape read JSON");
        assert!(parsed.reorderable, "{text}");
        let obj = parsed.value.as_object().expect("the tape read an object");
        same_canonical_form(&mut tape, text, obj);
        same_verdict(&mut tape, text, &mut lane, &mut general);
        if redactor.lane_clean(text, &tape, &mut scratch) {
            assert_eq!(redactor.redact_str(text), text, "clean text: {text}");
            for n in tape.nodes().iter().filter(|n| n.kind == Kind::EscStr) {
                tape::decode(&text[n.start as usize + 1..n.end as usize - 1], &mut decoded);
                assert_eq!(redactor.redact_str(&decoded), decoded, "clean string in {text}");
            }
            let mut value = parsed.value.clone();
            let mut paths = Vec::new();
            redactor.redact_value(&mut value, "", Scope::Context, &mut paths);
            assert!(paths.is_empty(), "{paths:?} in a clean line: {text}");
        }
    }
    assert_eq!(lane.head(), general.head());
    assert_eq!(lane.members(), general.members());
});

fn same_canonical_form(tape: &mut Tape, text: &str, obj: &json::Object<'_>) {
    let mut by_tape = Vec::new();
    let from_tape = tape
        .canonical(text, &UNHASHED, &mut by_tape)
        .map(|()| by_tape);
    let mut written = Vec::new();
    let from_writer = canon::write_object(obj, &UNHASHED, &mut written)
        .ok()
        .map(|()| written);
    assert_eq!(from_tape, from_writer, "{text}");
}

fn same_verdict(tape: &mut Tape, text: &str, lane: &mut Verifier, general: &mut Verifier) {
    let before = (lane.head(), lane.members());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let checked = general.check_line(text.as_bytes(), &mut b);
    match lane.check_tape(text, tape, &mut a) {
        Some((head, hash_ok)) => {
            let Checked::Member {
                head: h,
                hash_ok: ok,
                ..
            } = checked
            else {
                panic!("the lane took a line the general path rejects: {text}");
            };
            assert_eq!((head, hash_ok), (h, ok), "{text}");
            let codes =
                |p: &[auditship::audit::Problem]| p.iter().map(|p| p.code).collect::<Vec<_>>();
            assert_eq!(codes(&a), codes(&b), "{text}");
        }
        None => {
            assert!(
                a.is_empty(),
                "problems reported on leaving the lane: {text}"
            );
            assert_eq!(
                (lane.head(), lane.members()),
                before,
                "state changed: {text}"
            );
            lane.check_line(text.as_bytes(), &mut Vec::new());
        }
    }
}
