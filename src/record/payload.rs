//! From the bytes a hook writes on stdin to a payload value the mapping can use, for
//! anything Claude Code (a JavaScript program) can send.
//!
//! The project's own reader ([`crate::audit::json`]) reads the text, so what
//! `JSON.stringify` emits is accepted: a lone surrogate escape (`"\ud800"`, a string
//! cut inside a UTF-16 pair) and bytes that are not UTF-8 become U+FFFD and are noted;
//! integers beyond 2^53 stay exact within 64 bits, and a number literal that no
//! 64-bit integer or double holds (70 digits, `1e400`) is kept as written, as a
//! string. Nesting deeper
//! than the reader takes is cut: every container that opens deeper than [`CUT_DEPTH`]
//! is replaced by the SHA-256 and length of its text, and counted.
//!
//! What is not JSON at all is not an error here either: [`read`] says why, and
//! [`member`] still finds the top-level strings (the hook event name, the session)
//! in text that no parser accepts, so the caller can record the call and decide how
//! to fail closed without a full parse.
//!
//! Pure: no IO.

use crate::audit::{json, sha256_hex};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Containers that open at a depth beyond this are cut before parsing. One below the
/// reader's limit, so the placeholder object that replaces them still fits.
pub const CUT_DEPTH: usize = json::MAX_DEPTH - 1;

/// A payload as read.
#[derive(Debug)]
pub enum Read {
    Json(Payload),
    /// Not JSON: why, with the SHA-256 and length of the bytes received.
    NotJson {
        error: String,
        sha256: String,
        bytes: usize,
    },
}

/// A parsed payload and what had to change for it to be stored.
#[derive(Debug)]
pub struct Payload {
    pub value: Value,
    /// A lone surrogate escape or bytes that are not UTF-8 were read as U+FFFD.
    pub replaced_invalid_unicode: bool,
    /// Containers nested beyond [`CUT_DEPTH`], replaced by their digest.
    pub nesting_cut: usize,
}

/// Reads a hook payload.
pub fn read(bytes: &[u8]) -> Read {
    let (text, mut replaced) = match std::str::from_utf8(bytes) {
        Ok(t) => (Cow::Borrowed(t), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    };
    let not_json = |e: json::ParseError| Read::NotJson {
        error: e.to_string(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len(),
    };
    let (parsed, nesting_cut) = match json::parse_lossy(&text) {
        Ok(p) => (p, 0),
        Err(e) if e.reason == "nesting too deep" => {
            let (cut, n) = cut_deep(&text, CUT_DEPTH);
            match json::parse_lossy(&cut) {
                Ok(p) => {
                    replaced |= p.lone_surrogates;
                    return Read::Json(Payload {
                        value: to_serde(p.value),
                        replaced_invalid_unicode: replaced,
                        nesting_cut: n,
                    });
                }
                Err(e) => return not_json(e),
            }
        }
        Err(e) => return not_json(e),
    };
    Read::Json(Payload {
        value: to_serde(parsed.value),
        replaced_invalid_unicode: replaced || parsed.lone_surrogates,
        nesting_cut,
    })
}

/// The reader's value as a serde value. Numbers the reader keeps as doubles stay
/// numbers; a literal that no double or 64-bit integer holds (an integer of 70
/// digits, `1e400`) becomes a string holding the literal as written, so its value is
/// kept exactly and the event can still be sealed. Of duplicate keys the last one is
/// kept, as the reader's own lookups do.
pub fn to_serde(v: json::Value<'_>) -> Value {
    match v {
        json::Value::Null => Value::Null,
        json::Value::Bool(b) => Value::Bool(b),
        json::Value::Number(json::Number::Int(i)) => Value::from(i),
        json::Value::Number(json::Number::BigInt(literal)) => {
            // Exact where a 64-bit integer holds it (the event stores it as decimal
            // text, beyond 2^53), else the literal itself.
            match (literal.parse::<u64>(), literal.parse::<i64>()) {
                (Ok(u), _) => Value::from(u),
                (_, Ok(i)) => Value::from(i),
                _ => Value::String(literal.to_string()),
            }
        }
        json::Value::Number(json::Number::Float(f)) => float(f),
        json::Value::Number(json::Number::OutOfRange(literal)) => {
            Value::String(literal.to_string())
        }
        json::Value::String(s) => Value::String(s.into_owned()),
        json::Value::Array(items) => Value::Array(items.into_iter().map(to_serde).collect()),
        json::Value::Object(members) => {
            let mut m = Map::new();
            for (k, v) in members {
                m.insert(k.into_owned(), to_serde(v));
            }
            Value::Object(m)
        }
    }
}

/// A double the reader gave (always finite: the others are `OutOfRange`).
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

/// Replaces every array or object that opens at a depth beyond `max` (the outermost
/// value is at depth 1) by `{"nested_text_bytes":N,"nested_text_sha256":"…"}`, the
/// length and SHA-256 of its text as received. Returns the new text and the number
/// of containers replaced. Strings are skipped whole; text that is not JSON comes
/// back with its cuts made as far as its brackets go (the parse that follows says
/// what is wrong with it).
pub fn cut_deep(text: &str, max: usize) -> (String, usize) {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len().min(1 << 20));
    let mut copied = 0;
    let mut depth = 0usize;
    let mut cuts = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_string(b, i),
            b'{' | b'[' if depth >= max => {
                let end = matching_end(b, i);
                let subtree = &text[i..end];
                out.push_str(&text[copied..i]);
                out.push_str(&format!(
                    "{{\"nested_text_bytes\":{},\"nested_text_sha256\":\"{}\"}}",
                    subtree.len(),
                    sha256_hex(subtree.as_bytes())
                ));
                copied = end;
                cuts += 1;
                i = end;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    (out, cuts)
}

/// The index just past the string that starts at `b[start] == '"'` (or the end).
fn skip_string(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The index just past the bracket that closes the container opening at `start`
/// (or the end of the text when it never closes).
fn matching_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = skip_string(b, i);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The string value of the top-level member `key` of a payload, read without a full
/// parse and tolerant of garbage: the object's own members are walked first (the
/// last one named `key` wins, as in a parse); when the text is too broken to walk
/// that far, the first `"key": "value"` anywhere in it is taken.
pub fn member(bytes: &[u8], key: &str) -> Option<String> {
    member_found(bytes, key).map(|(v, _)| v)
}

/// [`member`], and whether the value was found among the object's own members
/// (`false`: only as text somewhere in a payload too broken to walk, which may be
/// inside a nested value).
pub fn member_found(bytes: &[u8], key: &str) -> Option<(String, bool)> {
    let (found, walked) = walk_members(bytes, key);
    if found.is_some() || walked {
        return found.map(|v| (v, true));
    }
    anywhere(bytes, key).map(|v| (v, false))
}

/// Walks the members of the top-level object. Returns the last string value of
/// `key`, and whether the walk reached the object's end.
fn walk_members(b: &[u8], key: &str) -> (Option<String>, bool) {
    let mut found = None;
    let mut i = skip_ws(b, 0);
    if b.get(..3) == Some(b"\xef\xbb\xbf".as_slice()) {
        i = skip_ws(b, 3);
    }
    if b.get(i) != Some(&b'{') {
        return (None, false);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (None, true);
    }
    loop {
        let Some((k, after)) = string_at(b, i) else {
            return (found, false);
        };
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return (found, false);
        }
        i = skip_ws(b, i + 1);
        if k == key
            && let Some((v, _)) = string_at(b, i)
        {
            found = Some(v);
        }
        let Some(after) = skip_value(b, i) else {
            return (found, false);
        };
        i = skip_ws(b, after);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (found, true),
            _ => return (found, false),
        }
    }
}

/// The first `"key"`, then `:` and a string, anywhere in the bytes.
fn anywhere(b: &[u8], key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(at) = find(&b[from..], needle.as_bytes()) {
        let mut i = skip_ws(b, from + at + needle.len());
        if b.get(i) == Some(&b':') {
            i = skip_ws(b, i + 1);
            if let Some((v, _)) = string_at(b, i) {
                return Some(v);
            }
        }
        from += at + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The decoded string starting at `b[i]` (escapes resolved by the project's reader,
/// invalid UTF-8 and lone surrogates as U+FFFD) and the index past it.
fn string_at(b: &[u8], i: usize) -> Option<(String, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = skip_string(b, i);
    if end > b.len() || b.get(end - 1) != Some(&b'"') || end == i + 1 {
        return None;
    }
    let text = String::from_utf8_lossy(&b[i..end]);
    match json::parse_lossy(&text).ok()?.value {
        json::Value::String(s) => Some((s.into_owned(), end)),
        _ => None,
    }
}

/// The index past the value starting at `b[i]`, without reading it.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => {
            let end = skip_string(b, i);
            (b.get(end - 1) == Some(&b'"') && end > i + 1).then_some(end)
        }
        b'{' | b'[' => {
            let end = matching_end(b, i);
            matches!(b.get(end - 1), Some(b'}' | b']')).then_some(end)
        }
        _ => {
            let end = (i..b.len())
                .find(|&j| matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(b.len());
            (end > i).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(bytes: &[u8]) -> Payload {
        match read(bytes) {
            Read::Json(p) => p,
            Read::NotJson { error, .. } => panic!("{}: {error}", String::from_utf8_lossy(bytes)),
        }
    }

    fn depth(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn lone_surrogates_and_bad_utf8_become_replacement_characters() {
        let p = json_of(br#"{"prompt":"cut \ud83d","ok":"\ud83d\ude00"}"#);
        assert!(p.replaced_invalid_unicode);
        assert_eq!(p.value["prompt"], "cut \u{FFFD}");
        assert_eq!(p.value["ok"], "😀");
        let p = json_of(b"{\"a\":\"x\xffy\"}");
        assert!(p.replaced_invalid_unicode);
        assert_eq!(p.value["a"], "x\u{FFFD}y");
        assert!(!json_of(br#"{"a":"plain"}"#).replaced_invalid_unicode);
    }

    #[test]
    fn numbers_are_kept_exactly() {
        let p = json_of(
            br#"{"big":18446744073709551615,"huge":-123456789012345678901234,"f":1.5,"i":-3,"inf":1e400,"ninf":-2.5E+999,"tiny":1e-400}"#,
        );
        assert_eq!(p.value["big"].as_u64(), Some(u64::MAX));
        assert_eq!(p.value["huge"], "-123456789012345678901234");
        assert_eq!(p.value["f"].as_f64(), Some(1.5));
        assert_eq!(p.value["i"].as_i64(), Some(-3));
        assert_eq!(p.value["inf"], "1e400");
        assert_eq!(p.value["ninf"], "-2.5E+999");
        assert_eq!(p.value["tiny"].as_f64(), Some(0.0));
    }

    #[test]
    fn nesting_beyond_the_reader_is_cut_and_counted() {
        let within = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let p = json_of(within.as_bytes());
        assert_eq!(p.nesting_cut, 0);
        assert_eq!(depth(&p.value), 201);

        let inner = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep = format!("{{\"hook_event_name\":\"PreToolUse\",\"x\":{inner}}}");
        let p = json_of(deep.as_bytes());
        assert_eq!(p.nesting_cut, 1);
        assert!(depth(&p.value) <= json::MAX_DEPTH);
        assert_eq!(p.value["hook_event_name"], "PreToolUse");
        // The cut subtree's digest is of its own text, found at the cut depth.
        let mut v = &p.value["x"];
        while let Value::Array(a) = v {
            v = &a[0];
        }
        let cut = &inner[CUT_DEPTH - 1..inner.len() - (CUT_DEPTH - 1)];
        assert_eq!(v["nested_text_bytes"], cut.len());
        assert_eq!(v["nested_text_sha256"], sha256_hex(cut.as_bytes()));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let (text, n) = cut_deep(r#"[["[[[", {"a": "]]]"}]]"#, 1);
        assert_eq!(n, 1);
        assert!(text.starts_with("[{\"nested_text_bytes\":"), "{text}");
    }

    #[test]
    fn what_is_not_json_is_described() {
        match read(b"{\"hook_event_name\": \"PreToolUse\", oops") {
            Read::NotJson {
                error,
                sha256,
                bytes,
            } => {
                assert!(error.contains("byte"), "{error}");
                assert_eq!(bytes, 38);
                assert_eq!(sha256.len(), 64);
            }
            Read::Json(_) => panic!("not JSON"),
        }
    }

    #[test]
    fn members_are_found_without_a_full_parse() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"a":{"hook_event_name":"Nested"},"hook_event_name":"PreToolUse"}"#, Some("PreToolUse")),
            (br#"  {"hook_event_name" : "Permission\u0052equest", "x": [1, {"y": "}"}]}"#, Some("PermissionRequest")),
            (br#"{"hook_event_name":"Stop","hook_event_name":"PreToolUse"}"#, Some("PreToolUse")),
            (br#"{"tool_input":{"hook_event_name":"Nested"}}"#, None),
            (b"garbage {\"session_id\":\"s\",\"hook_event_name\":\"UserPromptSubmit\", \xff oops", Some("UserPromptSubmit")),
            (br#"{"hook_event_name":"PreToolUse","tool_input":{"command":"echo \"}"  TRUNCATED"#, Some("PreToolUse")),
            (br#"{"hook_event_name":42}"#, None),
            (b"", None),
            (b"not json", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                member(bytes, "hook_event_name").as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let deep = format!(
            "{{\"x\":{}{},\"hook_event_name\":\"PreToolUse\"}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(
            member(deep.as_bytes(), "hook_event_name").as_deref(),
            Some("PreToolUse")
        );
    }
}
