//! The streaming verifier (`audit::Verifier`) on arbitrary lines.
//!
//! The input is a stream: its lines, split at `\n`, go through one verifier in order
//! (with HMAC key `k1` known when the first byte is odd, so both the keyed and the
//! keyless rules run).
//!
//! - Checking never panics.
//! - Problems of one line come in the order of `Code`, each code once.
//! - Fast and slow paths agree: a second verifier given each parsed value through
//!   `check_value` (which always writes the canonical form out) reports the same codes
//!   and reaches the same head.
//! - A line that became a chain member, sealed again with `audit::seal` (signed and
//!   unsigned), verifies with a correct hash and HMAC, and no structural problem.
#![no_main]

use auditship::audit::{self, Checked, Code, Keys, Problem, Verifier, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut keys = Keys::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        keys.insert("k1", b"0123456789abcdef0123456789abcdef");
    }
    let mut streaming = Verifier::new(keys.clone());
    let mut by_value = Verifier::new(keys.clone());
    let mut members = 0;
    for line in data.split(|&b| b == b'\n') {
        let mut problems = Vec::new();
        let checked = streaming.check_line(line, &mut problems);
        check_order(&problems);
        if let Checked::Member { head, .. } = &checked {
            members += 1;
            assert_eq!(streaming.head(), Some(*head));
            reseal(line);
        }
        same_by_value(line, &checked, &problems, &mut by_value);
        assert_eq!(streaming.head(), by_value.head());
    }
    assert_eq!(streaming.members(), members);
});

fn codes(problems: &[Problem]) -> Vec<Code> {
    problems.iter().map(|p| p.code).collect()
}

fn check_order(problems: &[Problem]) {
    for pair in problems.windows(2) {
        assert!(pair[0].code < pair[1].code, "{problems:?}");
    }
}

/// `check_value` on the parsed line reaches the verdict `check_line` reached. Lines
/// that are not a JSON object, or that hold a lone surrogate (which `check_value`
/// cannot see), are skipped: `check_line` kept them out of the chain.
fn same_by_value(line: &[u8], checked: &Checked<'_>, problems: &[Problem], v: &mut Verifier) {
    let parsed = std::str::from_utf8(line)
        .ok()
        .and_then(|t| json::parse_lossy(t).ok());
    let Some(parsed) = parsed.filter(|p| p.value.as_object().is_some()) else {
        assert!(!matches!(checked, Checked::Member { .. }));
        return;
    };
    if parsed.lone_surrogates {
        assert!(!matches!(checked, Checked::Member { .. }));
        assert!(codes(problems).contains(&Code::NotCanonicalizable));
        return;
    }
    let mut again = Vec::new();
    let verdict = v.check_value(&parsed.value, &mut again);
    assert_eq!(codes(problems), codes(&again), "check_line vs check_value");
    match (checked, verdict) {
        (Checked::Member { head, hash_ok, .. }, Some((h, ok))) => {
            assert_eq!((head, hash_ok), (&h, &ok));
        }
        (Checked::Rejected { .. }, None) => {}
        (c, v) => panic!("check_line gave {c:?}, check_value {v:?}"),
    }
}

/// A chain member sealed anew (its `hash`, `hmac`, `kid` replaced) verifies clean
/// apart from its link to the chain, which the fresh verifier does not know.
fn reseal(line: &[u8]) {
    let text = std::str::from_utf8(line).expect("a member is UTF-8");
    let mut signer_keys = Keys::new();
    signer_keys.insert("k1", b"another key, for sealing only...");
    for (signer, verify_keys) in [
        (None, Keys::new()),
        (Some(("k1", &signer_keys)), signer_keys.clone()),
    ] {
        let sealed = audit::seal(text, signer).expect("a chain member seals");
        let mut v = Verifier::new(verify_keys);
        let mut problems = Vec::new();
        let sealed_line = sealed.line.strip_suffix(b"\n").expect("a sealed line ends");
        let Checked::Member { head, hash_ok, .. } = v.check_line(sealed_line, &mut problems) else {
            panic!("a sealed member is rejected: {problems:?}");
        };
        assert!(hash_ok, "{problems:?}");
        assert_eq!(head.hash_str(), sealed.hash);
        assert!(
            problems.iter().all(|p| p.code == Code::BadGenesis),
            "a sealed member has problems: {problems:?}"
        );
    }
}
