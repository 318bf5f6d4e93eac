//! Checking an event too long to hold whole: one streaming pass over its bytes that
//! computes its hash and keeps only what the schema and the chain read.
//!
//! An event whose text is already its RFC 8785 form (keys strictly ascending in
//! UTF-16 order at every level, only the escapes JCS writes, numbers as JCS writes
//! them), which is how every auditship producer writes, hashes as its own bytes
//! without its `hash` and `hmac` members and without any white space between tokens. So its hash is computed
//! while the bytes stream past, in bounded memory. The pass keeps the values the
//! schema checks (`v`, `seq`, `timestamp`, `action`, `outcome`, `prev_hash`, `hash`,
//! `hmac`, `kid`) and the JSON type of the members whose type it checks, nothing
//! else; [`super::Verifier::check_scanned`] then applies the very rules a whole line
//! gets.
//!
//! Any doubt makes the scan *undecided*: text that is not canonical, not UTF-8 or not
//! JSON, nesting deeper than [`json::MAX_DEPTH`], a key or a checked value over its
//! bound. The caller then checks the whole line if it can hold it
//! ([`MAX_WHOLE_LINE`]), and reports it as unchecked if it cannot. A scan therefore
//! never decides differently from the whole-line check; it only decides less often.

use super::canon;
use super::json::{self, MAX_SAFE_INTEGER};
use sha2::{Digest as _, Sha256};
use std::cmp::Ordering;

/// Lines up to this length are checked whole when a scan cannot decide; longer ones
/// are reported unchecked, so memory stays bounded.
pub const MAX_WHOLE_LINE: usize = 64 << 20;

/// Longest key (decoded) the scan compares; a longer one leaves it undecided.
const KEY_CAP: usize = 16 << 10;
/// Longest value of a checked member (`seq`, `hash`, `kid`, …) the scan keeps.
const VALUE_CAP: usize = 4 << 10;
/// Longest number literal the scan reads.
const NUMBER_CAP: usize = 64;
/// Bytes gathered before they are handed to the hasher.
const STAGE: usize = 64 << 10;
const NOT_CANONICAL: &str = "it is not in canonical form";

/// What a scan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The line's length in bytes.
    pub len: u64,
    /// The canonical hash and a small object standing for the event, or why the scan
    /// could not decide.
    pub outcome: Result<Decided, &'static str>,
}

/// A scan that decided: the event's text was canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// SHA-256 of the text without its top-level `hash` and `hmac` members.
    pub digest: [u8; 32],
    /// A JSON object with the event's checked members as written, and for the members
    /// whose type only is checked a placeholder of the same type. The schema reaches
    /// the same verdict on it as on the event.
    pub skeleton: String,
}

/// The streaming pass. Feed it the line's pieces in order (without the `\n`), then
/// [`LongLine::finish`].
pub struct LongLine {
    hasher: Sha256,
    staged: Vec<u8>,
    len: u64,
    state: State,
    stack: Vec<Frame>,
    undecided: Option<&'static str>,
    utf8: Utf8Carry,
    /// The key being read, decoded (for the order check).
    key: Vec<u8>,
    /// The text of the top-level key being read, quotes included.
    key_raw: Vec<u8>,
    reading_top_key: bool,
    number: Vec<u8>,
    member: Member,
    /// The current top-level member is part of the hashed form.
    hashing: bool,
    /// Top-level members already hashed (a comma goes before the next).
    hashed_any: bool,
    /// `hash` and `hmac` seen (bit 0, bit 1).
    excluded_seen: u8,
    skeleton: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the line's first byte.
    Start,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `,` in an object.
    Key,
    /// After a key.
    Colon,
    /// After `:` or `,` in an array.
    Value,
    /// Inside a string.
    Str {
        key: bool,
    },
    /// After a backslash in a string.
    Escape {
        key: bool,
    },
    /// Inside `\uXXXX`: `n` digits read so far.
    Unicode {
        key: bool,
        n: u8,
        value: u32,
    },
    Number,
    Literal {
        word: &'static [u8],
        at: u8,
    },
    /// After a value: `,` or the container's end.
    AfterValue,
    /// After the top-level object.
    End,
}

enum Frame {
    /// The last key seen (the order check's reference).
    Object {
        last: Option<String>,
    },
    Array,
}

/// What the scan does with the top-level member being read.
#[derive(Default)]
struct Member {
    /// Left out of the hashed form (`hash`, `hmac`).
    excluded: bool,
    /// Its value is kept for the schema.
    keep: bool,
    /// Its type is checked by the schema: a placeholder stands for it.
    typed: bool,
    /// First byte of its value (its JSON type).
    kind: u8,
    /// For an array: every item is a string.
    all_strings: bool,
    value: Vec<u8>,
    too_long: bool,
}

/// Members whose values the schema checks.
const KEPT: [&str; 9] = [
    "v",
    "seq",
    "timestamp",
    "action",
    "outcome",
    "prev_hash",
    "hash",
    "hmac",
    "kid",
];
/// Members whose JSON type only the schema checks.
const TYPED: [&str; 9] = [
    "id",
    "user_id",
    "session_id",
    "host",
    "resource",
    "metadata",
    "identity",
    "decision",
    "compliance_tags",
];
/// Members left out of the hashed form, in bit order of `excluded_seen`.
const EXCLUDED: [&str; 2] = ["hash", "hmac"];

impl Default for LongLine {
    fn default() -> Self {
        Self::new()
    }
}

impl LongLine {
    pub fn new() -> Self {
        LongLine {
            hasher: Sha256::new(),
            staged: Vec::with_capacity(STAGE),
            len: 0,
            state: State::Start,
            stack: Vec::new(),
            undecided: None,
            utf8: Utf8Carry::default(),
            key: Vec::new(),
            key_raw: Vec::new(),
            reading_top_key: false,
            number: Vec::new(),
            member: Member::default(),
            hashing: false,
            hashed_any: false,
            excluded_seen: 0,
            skeleton: Vec::new(),
        }
    }

    /// The next piece of the line.
    pub fn feed(&mut self, piece: &[u8]) {
        self.len += piece.len() as u64;
        if self.undecided.is_some() {
            return;
        }
        let mut i = 0;
        while i < piece.len() {
            if let State::Str { key } = self.state {
                let run = piece[i..]
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .map_or(piece.len(), |n| i + n);
                if run > i {
                    let at_end = run == piece.len();
                    if let Err(why) = self.text(&piece[i..run], key, at_end) {
                        self.undecided = Some(why);
                        return;
                    }
                    i = run;
                    continue;
                }
            }
            let b = piece[i];
            i += 1;
            if let Err(why) = self.byte(b) {
                self.undecided = Some(why);
                return;
            }
        }
    }

    /// The result, once every piece was fed.
    pub fn finish(mut self) -> Scanned {
        let outcome = match (self.undecided, self.state) {
            (Some(why), _) => Err(why),
            (None, State::End) => {
                let staged = std::mem::take(&mut self.staged);
                self.hasher.update(&staged);
                let mut skeleton = b"{".to_vec();
                skeleton.extend_from_slice(&self.skeleton);
                skeleton.push(b'}');
                // Built from validated UTF-8 and ASCII placeholders.
                match String::from_utf8(skeleton) {
                    Ok(skeleton) => Ok(Decided {
                        digest: self.hasher.finalize().into(),
                        skeleton,
                    }),
                    Err(_) => Err("it is not valid UTF-8"),
                }
            }
            (None, _) => Err("it ends before its JSON value does"),
        };
        Scanned {
            len: self.len,
            outcome,
        }
    }

    /// A run of string content: no quote, backslash or control character.
    fn text(&mut self, run: &[u8], key: bool, at_end: bool) -> Result<(), &'static str> {
        if !self.utf8.check(run, at_end) {
            return Err("it is not valid UTF-8");
        }
        if key {
            self.key_bytes(run)?;
        }
        self.emit(run);
        Ok(())
    }

    fn key_bytes(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        if self.key.len() + bytes.len() > KEY_CAP {
            return Err("a key is too long to compare");
        }
        self.key.extend_from_slice(bytes);
        Ok(())
    }

    fn depth(&self) -> usize {
        self.stack.len()
    }

    /// One byte outside a run of string content.
    fn byte(&mut self, b: u8) -> Result<(), &'static str> {
        let in_token = matches!(
            self.state,
            State::Str { .. }
                | State::Escape { .. }
                | State::Unicode { .. }
                | State::Literal { .. }
        );
        if !in_token && matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return self.white_space();
        }
        match self.state {
            State::Start => match b {
                b'{' => {
                    self.stack.push(Frame::Object { last: None });
                    self.stage(b"{");
                    self.state = State::ObjectFirst;
                }
                _ => return Err("it is not a canonical JSON object"),
            },
            State::ObjectFirst | State::Key => match b {
                b'"' => self.start_key(),
                b'}' if self.state == State::ObjectFirst => self.close(b)?,
                _ => return Err(NOT_CANONICAL),
            },
            State::Colon => match b {
                b':' => self.colon(),
                _ => return Err(NOT_CANONICAL),
            },
            State::ArrayFirst if b == b']' => self.close(b)?,
            State::ArrayFirst | State::Value => self.value(b)?,
            State::Str { key } => self.string_stop(b, key)?,
            State::Escape { key } => self.escape(b, key)?,
            State::Unicode { key, n, value } => self.unicode(b, key, n, value)?,
            State::Number => self.number(b)?,
            State::Literal { word, at } => {
                if word.get(usize::from(at)) != Some(&b) {
                    return Err("it is not JSON");
                }
                self.emit(&[b]);
                self.state = if usize::from(at) + 1 == word.len() {
                    State::AfterValue
                } else {
                    State::Literal { word, at: at + 1 }
                };
            }
            State::AfterValue => self.after_value(b)?,
            State::End => return Err("it has more after its JSON value"),
        }
        Ok(())
    }

    /// White space between tokens is not part of the canonical form: JCS drops it, so
    /// the scan does too (inside strings it is content). It ends a number.
    fn white_space(&mut self) -> Result<(), &'static str> {
        if self.state == State::Number {
            if !canonical_number(&self.number) {
                return Err(NOT_CANONICAL);
            }
            self.state = State::AfterValue;
        }
        Ok(())
    }

    /// A quote, backslash or control byte in a string.
    fn string_stop(&mut self, b: u8, key: bool) -> Result<(), &'static str> {
        if !self.utf8.is_empty() {
            return Err("it is not valid UTF-8");
        }
        match b {
            b'"' => {
                self.emit(b"\"");
                if key {
                    self.end_key()?;
                } else {
                    self.state = State::AfterValue;
                }
            }
            b'\\' => {
                self.emit(b"\\");
                self.state = State::Escape { key };
            }
            _ => return Err("a string holds a control character"),
        }
        Ok(())
    }

    /// The byte after a backslash.
    fn escape(&mut self, b: u8, key: bool) -> Result<(), &'static str> {
        let decoded = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.emit(b"u");
                self.state = State::Unicode {
                    key,
                    n: 0,
                    value: 0,
                };
                return Ok(());
            }
            _ => return Err(NOT_CANONICAL),
        };
        self.emit(&[b]);
        if key {
            self.key_bytes(&[decoded])?;
        }
        self.state = State::Str { key };
        Ok(())
    }

    /// A digit of `\uXXXX`, `n` read before it.
    fn unicode(&mut self, b: u8, key: bool, n: u8, value: u32) -> Result<(), &'static str> {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return Err(NOT_CANONICAL),
        };
        self.emit(&[b]);
        let value = value * 16 + u32::from(digit);
        if n < 3 {
            self.state = State::Unicode {
                key,
                n: n + 1,
                value,
            };
            return Ok(());
        }
        // JCS escapes only the control characters without a short form.
        if value >= 0x20 || matches!(value, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
            return Err(NOT_CANONICAL);
        }
        if key {
            self.key_bytes(&[value as u8])?;
        }
        self.state = State::Str { key };
        Ok(())
    }

    /// A byte while reading a number: part of it, or what follows it.
    fn number(&mut self, b: u8) -> Result<(), &'static str> {
        match b {
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' => {
                if self.number.len() >= NUMBER_CAP {
                    return Err(NOT_CANONICAL);
                }
                self.number.push(b);
                self.emit(&[b]);
                Ok(())
            }
            _ => {
                if !canonical_number(&self.number) {
                    return Err(NOT_CANONICAL);
                }
                self.state = State::AfterValue;
                self.after_value(b)
            }
        }
    }

    /// After a value: `,` or the end of its container.
    fn after_value(&mut self, b: u8) -> Result<(), &'static str> {
        match (b, self.stack.last()) {
            (b',', Some(Frame::Object { .. })) => {
                if self.depth() == 1 {
                    self.end_member()?;
                } else {
                    self.emit(b",");
                }
                self.state = State::Key;
            }
            (b',', Some(Frame::Array)) => {
                self.emit(b",");
                self.state = State::Value;
            }
            (b'}', Some(Frame::Object { .. })) | (b']', Some(Frame::Array)) => self.close(b)?,
            _ => return Err(NOT_CANONICAL),
        }
        Ok(())
    }

    /// The first byte of a value.
    fn value(&mut self, b: u8) -> Result<(), &'static str> {
        if self.depth() == 1 {
            self.member.kind = b;
            self.member.all_strings = true;
        } else if self.depth() == 2 && matches!(self.stack[1], Frame::Array) && b != b'"' {
            self.member.all_strings = false;
        }
        match b {
            b'"' => {
                self.emit(b"\"");
                self.state = State::Str { key: false };
            }
            b'{' | b'[' => {
                if self.depth() >= json::MAX_DEPTH {
                    return Err("it nests too deep");
                }
                self.emit(&[b]);
                if b == b'{' {
                    self.stack.push(Frame::Object { last: None });
                    self.state = State::ObjectFirst;
                } else {
                    self.stack.push(Frame::Array);
                    self.state = State::ArrayFirst;
                }
            }
            b't' | b'f' | b'n' => {
                let word: &'static [u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.emit(&[b]);
                self.state = State::Literal { word, at: 1 };
            }
            b'-' | b'0'..=b'9' => {
                self.number.clear();
                self.number.push(b);
                self.emit(&[b]);
                self.state = State::Number;
            }
            _ => return Err("it is not canonical JSON"),
        }
        Ok(())
    }

    /// `}` or `]`.
    fn close(&mut self, b: u8) -> Result<(), &'static str> {
        if self.depth() == 1 {
            if self.state == State::AfterValue {
                self.end_member()?;
            }
            self.stage(b"}");
            self.stack.pop();
            self.state = State::End;
            return Ok(());
        }
        self.emit(&[b]);
        self.stack.pop();
        self.state = State::AfterValue;
        Ok(())
    }

    fn start_key(&mut self) {
        self.key.clear();
        if self.depth() == 1 {
            self.key_raw.clear();
            self.reading_top_key = true;
        }
        self.emit(b"\"");
        self.state = State::Str { key: true };
    }

    /// The closing quote of a key was read: the order check, and for a top-level key
    /// what becomes of its member.
    fn end_key(&mut self) -> Result<(), &'static str> {
        let key = String::from_utf8(std::mem::take(&mut self.key))
            .map_err(|_| "it is not valid UTF-8")?;
        let top = self.depth() == 1;
        self.reading_top_key = false;
        self.state = State::Colon;
        if top && let Some(bit) = EXCLUDED.iter().position(|k| *k == key) {
            // Left out of the hashed form, so left out of the order; once only.
            if self.excluded_seen & (1 << bit) != 0 {
                return Err("it has a duplicate key");
            }
            self.excluded_seen |= 1 << bit;
        } else if let Some(Frame::Object { last }) = self.stack.last_mut() {
            if last
                .as_deref()
                .is_some_and(|l| json::cmp_utf16(l, &key) != Ordering::Less)
            {
                return Err("its keys are not in canonical order");
            }
            *last = Some(key.clone());
        }
        if top {
            self.member = Member {
                excluded: EXCLUDED.contains(&key.as_str()),
                keep: KEPT.contains(&key.as_str()),
                typed: TYPED.contains(&key.as_str()),
                ..Member::default()
            };
        }
        self.key = key.into_bytes();
        Ok(())
    }

    fn colon(&mut self) {
        if self.depth() == 1 {
            if !self.member.excluded {
                let key = std::mem::take(&mut self.key_raw);
                if self.hashed_any {
                    self.stage(b",");
                }
                self.stage(&key);
                self.stage(b":");
                self.key_raw = key;
                self.hashed_any = true;
                self.hashing = true;
            }
        } else {
            self.emit(b":");
        }
        self.state = State::Value;
    }

    /// The end of a top-level member's value: what the skeleton keeps of it.
    fn end_member(&mut self) -> Result<(), &'static str> {
        self.hashing = false;
        let m = std::mem::take(&mut self.member);
        if !m.keep && !m.typed {
            return Ok(());
        }
        if !self.skeleton.is_empty() {
            self.skeleton.push(b',');
        }
        self.skeleton.extend_from_slice(&self.key_raw);
        self.skeleton.push(b':');
        if m.keep {
            if m.too_long {
                return Err("a member the schema checks is too long");
            }
            self.skeleton.extend_from_slice(&m.value);
        } else {
            let placeholder: &[u8] = match m.kind {
                b'"' => b"\"\"",
                b'{' => b"{}",
                b'[' if m.all_strings => b"[]",
                b'[' => b"[null]",
                b't' | b'f' => b"false",
                b'n' => b"null",
                _ => b"0",
            };
            self.skeleton.extend_from_slice(placeholder);
        }
        Ok(())
    }

    /// Bytes of the text in order: into the hash when the member is hashed, into the
    /// kept value when it is kept, into the top-level key being read.
    fn emit(&mut self, bytes: &[u8]) {
        if self.reading_top_key {
            if self.key_raw.len() < KEY_CAP * 6 + 2 {
                self.key_raw.extend_from_slice(bytes);
            }
            return;
        }
        if self.hashing {
            self.stage(bytes);
        }
        if self.member.keep && !self.member.too_long {
            if self.member.value.len() + bytes.len() > VALUE_CAP {
                self.member.too_long = true;
                self.member.value = Vec::new();
            } else {
                self.member.value.extend_from_slice(bytes);
            }
        }
    }

    /// Bytes for the hash.
    fn stage(&mut self, bytes: &[u8]) {
        if self.staged.len() + bytes.len() > STAGE {
            self.hasher.update(&self.staged);
            self.staged.clear();
            if bytes.len() > STAGE {
                self.hasher.update(bytes);
                return;
            }
        }
        self.staged.extend_from_slice(bytes);
    }
}

/// True when a number literal is exactly what JCS writes for its value: an integer
/// within ±2^53 written plainly, or a fraction or exponent in ECMAScript's shortest
/// form. Such a literal is also valid JSON (ECMAScript never writes otherwise).
fn canonical_number(literal: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(literal) else {
        return false;
    };
    if !text.contains(['.', 'e', 'E']) {
        return text
            .parse::<i64>()
            .is_ok_and(|n| n.unsigned_abs() <= MAX_SAFE_INTEGER && n.to_string() == text);
    }
    let Ok(f) = text.parse::<f64>() else {
        return false;
    };
    let mut written = Vec::with_capacity(32);
    canon::write_f64(f, &mut written).is_ok() && written == literal
}

/// UTF-8 validation across piece boundaries: the start of a character cut by the end
/// of a piece waits for the next one.
#[derive(Default)]
struct Utf8Carry {
    bytes: [u8; 4],
    n: usize,
}

impl Utf8Carry {
    fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Validates `run`, which ends the current piece when `at_end`.
    fn check(&mut self, mut run: &[u8], at_end: bool) -> bool {
        if self.n > 0 {
            let need = match self.bytes[0] {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return false,
            };
            while self.n < need && !run.is_empty() {
                self.bytes[self.n] = run[0];
                self.n += 1;
                run = &run[1..];
            }
            if self.n < need {
                return at_end;
            }
            if std::str::from_utf8(&self.bytes[..need]).is_err() {
                return false;
            }
            self.n = 0;
        }
        match std::str::from_utf8(run) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() && at_end => {
                let rest = &run[e.valid_up_to()..];
                self.bytes[..rest.len()].copy_from_slice(rest);
                self.n = rest.len();
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `line` fed in pieces of `size` bytes.
    fn scan(line: &[u8], size: usize) -> Scanned {
        let mut l = LongLine::new();
        for piece in line.chunks(size.max(1)) {
            l.feed(piece);
        }
        l.finish()
    }

    fn decided(line: &str) -> Decided {
        let s = scan(line.as_bytes(), 7);
        assert_eq!(s.len, line.len() as u64);
        s.outcome
            .unwrap_or_else(|why| panic!("undecided ({why}): {line}"))
    }

    fn undecided(line: &[u8]) -> &'static str {
        for size in [1, 3, line.len()] {
            if let Ok(d) = scan(line, size).outcome {
                panic!("decided {d:?}: {}", String::from_utf8_lossy(line));
            }
        }
        scan(line, line.len()).outcome.unwrap_err()
    }

    #[test]
    fn the_digest_leaves_out_hash_and_hmac_wherever_they_stand() {
        let d = decided(r#"{"a":1,"hash":"x","b":[true,null,{"c":"d"}],"hmac":"y"}"#);
        assert_eq!(
            d.digest,
            crate::audit::sha256(br#"{"a":1,"b":[true,null,{"c":"d"}]}"#)
        );
        assert_eq!(d.skeleton, r#"{"hash":"x","hmac":"y"}"#);
        let d = decided(r#"{"hash":"x"}"#);
        assert_eq!(d.digest, crate::audit::sha256(b"{}"));
    }

    #[test]
    fn white_space_between_tokens_is_dropped_as_jcs_drops_it() {
        let d = decided(" { \"a\" : [ 1 , \"x y\" , { } ] ,\t\"hash\" : \"h\" , \"b\":true\r} ");
        assert_eq!(
            d.digest,
            crate::audit::sha256(br#"{"a":[1,"x y",{}],"b":true}"#)
        );
        assert_eq!(d.skeleton, r#"{"hash":"h"}"#);
    }

    #[test]
    fn the_skeleton_keeps_checked_values_and_the_types_of_the_others() {
        let d = decided(
            r#"{"action":"file_read","compliance_tags":["SOC2",1],"host":"h","metadata":{"k":[1]},"resource":"\n","seq":7,"x":"dropped"}"#,
        );
        assert_eq!(
            d.skeleton,
            r#"{"action":"file_read","compliance_tags":[null],"host":"","metadata":{},"resource":"","seq":7}"#
        );
        let d = decided(r#"{"compliance_tags":["a","b"],"id":5,"identity":[]}"#);
        assert_eq!(d.skeleton, r#"{"compliance_tags":[],"id":0,"identity":[]}"#);
    }

    #[test]
    fn text_that_is_not_canonical_leaves_it_undecided() {
        for line in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"hash":"x","hash":"x"}"#,
            r#"{"a":1}x"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e2}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":9007199254740993}"#,
            r#"{"a":1e400}"#,
            r#"{"a":tru}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1"#,
            r#"[1]"#,
            "{\"a\":\"\t\"}",
        ] {
            undecided(line.as_bytes());
        }
        assert_eq!(undecided(b"{\"a\":\"\xff\"}"), "it is not valid UTF-8");
        assert_eq!(undecided(b"{\"a\":\"\xe2\x82\"}"), "it is not valid UTF-8");
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(json::MAX_DEPTH),
            "]".repeat(json::MAX_DEPTH)
        );
        assert_eq!(undecided(deep.as_bytes()), "it nests too deep");
    }

    #[test]
    fn canonical_numbers_escapes_and_utf8_across_pieces_are_decided() {
        let line = "{\"a\":[0,-5,9007199254740992,0.1,1e+21,1.5e-7,-1.25],\"b\":\"\\u001f\\n\\\"é😀\",\"€\":1,\"😀\":2,\"ﬁ\":3}";
        let text = line.as_bytes();
        for size in 1..12 {
            let s = scan(text, size);
            let d = s.outcome.unwrap_or_else(|w| panic!("{size}: {w}"));
            assert_eq!(d.digest, crate::audit::sha256(text), "{size}");
        }
        assert!(canonical_number(b"100"));
        assert!(!canonical_number(b"1E5"));
    }

    use crate::audit::{Checked, Head, Keys, Problem, Verifier};

    /// What a check found, comparable across the two ways of checking.
    fn outcome(
        c: &Checked<'_>,
        problems: &[Problem],
    ) -> (Vec<Problem>, &'static str, Option<Head>) {
        let (kind, head) = match c {
            Checked::Blank => ("blank", None),
            Checked::Rejected { .. } => ("rejected", None),
            Checked::Member { head, hash_ok, .. } => (
                if *hash_ok {
                    "member"
                } else {
                    "member, bad hash"
                },
                Some(*head),
            ),
        };
        (problems.to_vec(), kind, head)
    }

    /// Checks `line` after `head` both ways: whole, and scanned in pieces of `size`
    /// (whole again when the scan cannot decide, as callers do). Returns whether the
    /// scan decided.
    fn agree(keys: &Keys, head: Option<Head>, line: &[u8], size: usize) -> bool {
        let (mut whole, mut streamed) = (
            Verifier::resume(keys.clone(), head),
            Verifier::resume(keys.clone(), head),
        );
        let mut p1 = Vec::new();
        let c1 = whole.check_line(line, &mut p1);
        let scanned = scan(line, size);
        let mut p2 = Vec::new();
        let c2 = if scanned.outcome.is_ok() {
            streamed.check_scanned(&scanned, &mut p2)
        } else {
            streamed.check_line(line, &mut p2)
        };
        assert_eq!(
            outcome(&c1, &p1),
            outcome(&c2, &p2),
            "{}",
            String::from_utf8_lossy(line)
        );
        assert_eq!(whole.head(), streamed.head());
        scanned.outcome.is_ok()
    }

    fn sealed_lines(keys: &Keys) -> Vec<Vec<u8>> {
        let bodies = [
            r#""resource":"/r","metadata":{"tool_name":"Bash","n":[1,2.5,-0.001,1e+30],"q":"a\"b\u0001\n"}"#,
            r#""resource":"é😀€ﬁ","compliance_tags":["SOC2","GDPR"],"identity":{"roles":["a"]}"#,
            r#""resource":"x","decision":{"confidence":0.9},"zzz":null,"aaa":true"#,
        ];
        let mut prev = crate::audit::ZERO_HASH.to_string();
        let mut out = Vec::new();
        for (seq, body) in bodies.iter().enumerate() {
            let e = format!(
                r#"{{"v":1,"id":"i{seq}","seq":{seq},"timestamp":"2026-11-26T07:06:42.5Z","user_id":"u","session_id":"s","host":"h","action":"file_read","outcome":"success","prev_hash":"{prev}",{body}}}"#
            );
            let signer = (seq == 1).then_some(("k1", keys));
            let s = crate::audit::seal(&e, signer).unwrap();
            prev = s.hash;
            let mut line = s.line;
            line.pop();
            out.push(line);
        }
        out
    }

    #[test]
    fn a_scan_decides_as_the_whole_line_check_does() {
        let mut keys = Keys::new();
        keys.insert("k1", b"secret");
        let lines = sealed_lines(&keys);
        let mut v = Verifier::new(Keys::new());
        for line in &lines {
            let head = v.head();
            for k in [Keys::new(), keys.clone()] {
                assert!(agree(&k, head, line, 5), "a sealed line is canonical");
            }
            v.check_line(line, &mut Vec::new());
        }
        // Every one-byte change, at every position, to bytes that matter to the
        // grammar, the canonical form or the checked values.
        let mut decided = 0;
        for line in &lines {
            for at in 0..line.len() {
                for b in *b"0a1\"\\ }],.eE\xff-u" {
                    let mut edited = line.clone();
                    edited[at] = b;
                    if agree(&keys, None, &edited, 1 + at % 13) {
                        decided += 1;
                    }
                }
                let mut cut = line.clone();
                cut.remove(at);
                agree(&keys, None, &cut, 64);
                for b in *b" ,\"1" {
                    let mut grown = line.clone();
                    grown.insert(at, b);
                    agree(&keys, None, &grown, 1 + at % 7);
                }
            }
        }
        assert!(decided > 1000, "edits the scan still decides: {decided}");
    }

    #[test]
    fn the_vectors_check_the_same_scanned() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flat_map(|d| {
                let p = d.unwrap().path();
                if p.is_dir() {
                    std::fs::read_dir(p)
                        .unwrap()
                        .map(|f| f.unwrap().path())
                        .collect()
                } else {
                    vec![p]
                }
            })
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        assert!(files.len() > 10);
        let keys = Keys::new();
        for f in files {
            let text = std::fs::read(&f).unwrap();
            let mut v = Verifier::new(keys.clone());
            for line in text.split(|&b| b == b'\n') {
                agree(&keys, v.head(), line, 3);
                v.check_line(line, &mut Vec::new());
            }
        }
    }
}
