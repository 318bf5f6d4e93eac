//! The audit event format, version 1 (docs/FORMAT.md): a JSON reader, RFC 8785
//! canonical form, the v1 schema, SHA-256 hash chain, HMAC-SHA256 with key ids, and a
//! streaming verifier that reports FORMAT.md's stable problem codes.
//!
//! **Pure**: no IO, no async, no clocks. Callers hand in bytes and keys and get values
//! back; a problem in the data is a [`Problem`] value, never an `Err`.
//!
//! The producer side ([`seal`]) and the verifier share the same reader and canonical
//! writer, so whatever `record` writes is, by construction, what `verify` accepts.
//! A line too long to hold is checked from a streaming scan ([`long_line`]) that
//! decides as the whole-line check would, or not at all.

pub mod canon;
pub mod chain;
pub mod checkpoint;
pub mod json;
pub mod long_line;
pub mod problem;
pub mod schema;
pub mod tape;

pub use chain::{Checked, Head, Verifier};
pub use long_line::{LongLine, MAX_WHOLE_LINE, Scanned};
pub use problem::{Code, Problem};
pub use schema::ZERO_HASH;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lowercase hex of a 32-byte digest.
pub fn hex_lower(digest: &[u8; 32]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// Lowercase hex string of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let hex = hex_lower(&sha256(data));
    String::from_utf8_lossy(&hex).into_owned()
}

/// Decodes hex (either case); `None` on any other character or an odd length.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// HMAC keys by key id. Each key's HMAC state is prepared once and cloned per event.
#[derive(Clone, Default)]
pub struct Keys {
    by_kid: HashMap<String, HmacSha256>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        let mut kids: Vec<&String> = self.by_kid.keys().collect();
        kids.sort();
        f.debug_struct("Keys").field("kids", &kids).finish()
    }
}

impl Keys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, kid: impl Into<String>, key: &[u8]) {
        // HMAC accepts keys of any length, so this cannot fail.
        if let Ok(mac) = HmacSha256::new_from_slice(key) {
            self.by_kid.insert(kid.into(), mac);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// The key ids, sorted (never the keys).
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Adds every key of `other` (its key replacing ours for a kid both hold).
    pub fn merge(&mut self, other: &Keys) {
        for (kid, mac) in &other.by_kid {
            self.by_kid.insert(kid.clone(), mac.clone());
        }
    }

    /// Lowercase hex HMAC-SHA256 of `data` under key `kid`, if that key is known.
    pub fn mac(&self, kid: &str, data: &[u8]) -> Option<[u8; 64]> {
        let mut mac = self.by_kid.get(kid)?.clone();
        mac.update(data);
        Some(hex_lower(&mac.finalize().into_bytes().into()))
    }
}

/// An event made ready to append: its line (with `\n`) and its hash.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub line: Vec<u8>,
    pub hash: String,
}

/// Why an event could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("event is not a JSON object: {0}")]
    NotObject(String),
    #[error("event has no canonical form: {0}")]
    NotCanonical(canon::CanonError),
    #[error("no HMAC key with id {0:?}")]
    UnknownKid(String),
}

/// Seals an event given as JSON object text without `hash`, `hmac` or `kid`: adds
/// `kid` when signing, computes `hash` over the canonical form and `hmac` over the
/// hash, and returns the line to append (canonical members, then `hash`, `hmac`; a
/// double beyond ±2^53 keeps an exponent there, see [`canon::write_line_value`]).
pub fn seal(event_json: &str, signer: Option<(&str, &Keys)>) -> Result<Sealed, SealError> {
    let value = json::parse(event_json).map_err(|e| SealError::NotObject(e.to_string()))?;
    let json::Value::Object(mut obj) = value else {
        return Err(SealError::NotObject(value.type_name().into()));
    };
    obj.retain(|(k, _)| !matches!(&**k, "hash" | "hmac" | "kid"));
    if let Some((kid, _)) = signer {
        obj.push(("kid".into(), json::Value::String(kid.into())));
        obj.sort_by(|a, b| json::cmp_utf16(&a.0, &b.0));
    }
    let obj = json::Value::Object(obj);
    let mut line = Vec::with_capacity(event_json.len() + 200);
    let differs = canon::write_line_value(&obj, &mut line).map_err(SealError::NotCanonical)?;
    let hash = if differs {
        let mut canonical = Vec::with_capacity(line.len() + 16);
        canon::write_value(&obj, &mut canonical).map_err(SealError::NotCanonical)?;
        hex_lower(&sha256(&canonical))
    } else {
        hex_lower(&sha256(&line))
    };
    line.pop(); // the closing brace
    line.extend_from_slice(b",\"hash\":\"");
    line.extend_from_slice(&hash);
    line.push(b'"');
    if let Some((kid, keys)) = signer {
        let mac = keys
            .mac(kid, &hash)
            .ok_or_else(|| SealError::UnknownKid(kid.into()))?;
        line.extend_from_slice(b",\"hmac\":\"");
        line.extend_from_slice(&mac);
        line.push(b'"');
    }
    line.extend_from_slice(b"}\n");
    Ok(Sealed {
        line,
        hash: String::from_utf8_lossy(&hash).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify_lines(keys: Keys, lines: &[&[u8]]) -> Vec<(usize, Code)> {
        let mut v = Verifier::new(keys);
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let mut problems = Vec::new();
            v.check_line(line, &mut problems);
            out.extend(problems.into_iter().map(|p| (i + 1, p.code)));
        }
        out
    }

    fn event(seq: u64, prev: &str) -> String {
        format!(
            r#"{{"v":1,"id":"id-{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42Z","user_id":"u","session_id":"s","host":"h","action":"file_read","resource":"/r","outcome":"success","prev_hash":"{prev}"}}"#
        )
    }

    fn chain(n: u64, signer: Option<(&str, &Keys)>) -> Vec<Vec<u8>> {
        let mut prev = ZERO_HASH.to_string();
        (0..n)
            .map(|seq| {
                let s = seal(&event(seq, &prev), signer).unwrap();
                prev = s.hash;
                let mut line = s.line;
                line.pop();
                line
            })
            .collect()
    }

    #[test]
    fn sealed_lines_take_the_canonical_fast_path() {
        let mut keys = Keys::new();
        keys.insert("k1", b"secret");
        for signer in [None, Some(("k1", &keys))] {
            for line in chain(3, signer) {
                let text = std::str::from_utf8(&line).unwrap();
                let parsed = json::parse_with_spans(text, &["hash", "hmac"]).unwrap();
                assert!(parsed.canonical, "{text}");
                assert_eq!(
                    parsed.spans.as_slice().len(),
                    1 + usize::from(signer.is_some())
                );
            }
        }
    }

    #[test]
    fn sealed_events_verify_clean() {
        let lines = chain(5, None);
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        assert_eq!(verify_lines(Keys::new(), &refs), []);
    }

    #[test]
    fn hmac_rules() {
        let mut keys = Keys::new();
        keys.insert("k1", b"secret");
        let signed = chain(3, Some(("k1", &keys)));
        let refs: Vec<&[u8]> = signed.iter().map(Vec::as_slice).collect();
        assert_eq!(verify_lines(keys.clone(), &refs), []);
        // No keys given: signed events are not checked.
        assert_eq!(verify_lines(Keys::new(), &refs), []);
        let mut other = Keys::new();
        other.insert("k2", b"secret");
        assert_eq!(
            verify_lines(other, &refs),
            [
                (1, Code::UnknownKid),
                (2, Code::UnknownKid),
                (3, Code::UnknownKid)
            ]
        );
        let mut wrong = Keys::new();
        wrong.insert("k1", b"other");
        assert_eq!(verify_lines(wrong, &refs[..1]), [(1, Code::HmacMismatch)]);
        let unsigned = chain(2, None);
        let refs: Vec<&[u8]> = unsigned.iter().map(Vec::as_slice).collect();
        assert_eq!(
            verify_lines(keys, &refs),
            [(1, Code::HmacMissing), (2, Code::HmacMissing)]
        );
    }

    #[test]
    fn chain_rules() {
        let lines = chain(4, None);
        let l: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        // A continuation (first seq > 0) is fine; a gap is not.
        assert_eq!(verify_lines(Keys::new(), &[l[1], l[2]]), []);
        assert_eq!(
            verify_lines(Keys::new(), &[l[0], l[2]]),
            [(2, Code::ChainBreak), (2, Code::SeqGap)]
        );
        // Restart: a second genesis.
        assert_eq!(
            verify_lines(Keys::new(), &[l[0], l[1], l[0]]),
            [(3, Code::ChainRestart)]
        );
        // Structural problems skip the line; blank lines are ignored.
        assert_eq!(
            verify_lines(
                Keys::new(),
                &[l[0], b"", b"{", b"\xff", b"[1]", b"{}", l[1]]
            ),
            [
                (3, Code::InvalidJson),
                (4, Code::InvalidUtf8),
                (5, Code::NotObject),
                (6, Code::Schema)
            ]
        );
        // Bad genesis.
        let bad = seal(&event(0, &"1".repeat(64)), None).unwrap();
        assert_eq!(
            verify_lines(Keys::new(), &[bad.line.trim_ascii_end()]),
            [(1, Code::BadGenesis)]
        );
    }

    #[test]
    fn tampered_content_is_a_hash_mismatch_but_stays_in_the_chain() {
        let lines = chain(3, None);
        let tampered = String::from_utf8(lines[1].clone())
            .unwrap()
            .replace("/r", "/etc/shadow");
        assert_eq!(
            verify_lines(Keys::new(), &[&lines[0], tampered.as_bytes(), &lines[2]]),
            [(2, Code::HashMismatch)]
        );
    }

    #[test]
    fn big_integers_are_not_canonicalizable() {
        let e = event(0, ZERO_HASH).replace("\"v\":1,", "\"v\":1,\"n\":9007199254740993,");
        let mut line = e.trim_end_matches('}').to_string();
        line.push_str(&format!(",\"hash\":\"{}\"}}", "a".repeat(64)));
        assert_eq!(
            verify_lines(Keys::new(), &[line.as_bytes()]),
            [(1, Code::NotCanonicalizable)]
        );
        assert!(matches!(seal(&e, None), Err(SealError::NotCanonical(_))));
        // Schema and canonical problems are both reported.
        let both = line.replace("\"v\":1,", "\"v\":2,");
        assert_eq!(
            verify_lines(Keys::new(), &[both.as_bytes()]),
            [(1, Code::Schema), (1, Code::NotCanonicalizable)]
        );
        let lone = event(0, ZERO_HASH).replace("\"/r\"", "\"/r\\ud800\"");
        let lone = format!(
            "{},\"hash\":\"{}\"}}",
            lone.trim_end_matches('}'),
            "a".repeat(64)
        );
        assert_eq!(
            verify_lines(Keys::new(), &[lone.as_bytes()]),
            [(1, Code::NotCanonicalizable)]
        );
    }

    #[test]
    fn doubles_beyond_2_pow_53_seal_into_lines_that_verify() {
        // JCS writes 1e20 as 100000000000000000000, an integer literal a verifier must
        // refuse; the line keeps an exponent and still hashes the canonical text.
        let e = event(0, ZERO_HASH).replace(
            "\"v\":1,",
            "\"v\":1,\"n\":[1e20,-1.5e17,9007199254740994.0,9007199254740992.0,1e21],",
        );
        let sealed = seal(&e, None).unwrap();
        let line = std::str::from_utf8(&sealed.line).unwrap();
        assert!(
            line.contains(r#""n":[1e20,-1.5e17,9.007199254740994e15,9007199254740992,1e+21]"#),
            "{line}"
        );
        let mut canonical = Vec::new();
        let value = json::parse(&e).unwrap();
        canon::write_value(&value, &mut canonical).unwrap();
        assert!(
            std::str::from_utf8(&canonical)
                .unwrap()
                .contains("[100000000000000000000,-150000000000000000,9007199254740994,")
        );
        assert_eq!(sealed.hash, sha256_hex(&canonical));
        assert_eq!(
            verify_lines(Keys::new(), &[sealed.line.trim_ascii_end()]),
            []
        );
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(&hex_lower(&sha256(b"abc"))[..8], b"ba7816bf");
    }
}
