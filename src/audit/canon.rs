//! RFC 8785 (JSON Canonicalization Scheme) writer over [`json::Value`].
//!
//! Keys are already sorted by UTF-16 code units when the value was parsed; this module
//! writes no white space, escapes strings as ECMAScript `JSON.stringify` does, and
//! writes every number in the ECMAScript shortest form. It refuses what JCS cannot
//! represent: integer literals beyond ±2^53, infinities, and duplicate keys (RFC 8785
//! requires I-JSON, which forbids them).

use super::json::{MAX_SAFE_INTEGER, Number, Object, Value};
use std::io::Write as _;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanonError {
    IntegerOutOfRange,
    NonFinite,
    DuplicateKey(String),
}

impl std::fmt::Display for CanonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CanonError::IntegerOutOfRange => f.write_str("integer beyond ±2^53"),
            CanonError::NonFinite => f.write_str("number too large for a double"),
            CanonError::DuplicateKey(k) => write!(f, "duplicate key {k:?}"),
        }
    }
}

/// Appends the canonical form of `v` to `out`.
pub fn write_value(v: &Value<'_>, out: &mut Vec<u8>) -> Result<(), CanonError> {
    let mut w = Writer::new(Form::Canonical, out);
    w.value(v)
}

/// Appends the canonical form of an object, leaving out the members named in `skip`
/// (the event's own `hash` and `hmac`).
pub fn write_object(
    members: &Object<'_>,
    skip: &[&str],
    out: &mut Vec<u8>,
) -> Result<(), CanonError> {
    let mut w = Writer::new(Form::Canonical, out);
    w.object(members, skip)
}

/// Appends a value as a producer writes it into a line: its canonical form, except
/// that a double beyond ±2^53 which JCS writes as a long integer literal (`1e20` is
/// `100000000000000000000`) is written with an exponent instead (`1e20`). A reader
/// must take an integer literal beyond ±2^53 as not canonicalizable (FORMAT.md,
/// section 3), so the canonical text itself would not verify; the exponent form reads
/// back as the same double and so hashes to the same canonical bytes. Returns whether
/// any number was written so, i.e. whether the line differs from the canonical form.
pub fn write_line_value(v: &Value<'_>, out: &mut Vec<u8>) -> Result<bool, CanonError> {
    let mut w = Writer::new(Form::Line, out);
    w.value(v)?;
    Ok(w.differs)
}

/// What the writer writes: the canonical form (hashed), or the line holding it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Canonical,
    Line,
}

struct Writer<'o> {
    form: Form,
    out: &'o mut Vec<u8>,
    /// A number was written differently from its canonical form.
    differs: bool,
}

impl<'o> Writer<'o> {
    fn new(form: Form, out: &'o mut Vec<u8>) -> Self {
        Writer {
            form,
            out,
            differs: false,
        }
    }

    fn value(&mut self, v: &Value<'_>) -> Result<(), CanonError> {
        match v {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => self.number(*n)?,
            Value::String(s) => write_string(s, self.out),
            Value::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item)?;
                }
                self.out.push(b']');
            }
            Value::Object(members) => self.object(members, &[])?,
        }
        Ok(())
    }

    fn object(&mut self, members: &Object<'_>, skip: &[&str]) -> Result<(), CanonError> {
        self.out.push(b'{');
        let mut first = true;
        let mut prev: Option<&str> = None;
        for (k, v) in members {
            if prev == Some(&**k) {
                return Err(CanonError::DuplicateKey(k.to_string()));
            }
            prev = Some(k);
            if skip.contains(&&**k) {
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            write_string(k, self.out);
            self.out.push(b':');
            self.value(v)?;
        }
        self.out.push(b'}');
        Ok(())
    }

    fn number(&mut self, n: Number) -> Result<(), CanonError> {
        match n {
            Number::Float(f)
                if self.form == Form::Line
                    && f.is_finite()
                    && f.abs() > MAX_SAFE_INTEGER as f64
                    && f.abs() < 1e21 =>
            {
                // Rust's `{:e}`: the shortest round-tripping digits, with an exponent.
                let _ = write!(self.out, "{f:e}");
                self.differs = true;
                Ok(())
            }
            n => write_number(n, self.out),
        }
    }
}

/// Feeds `emit` the canonical form of an object without some of its members, when the
/// object's text is already canonical ([`super::json::Parsed::canonical`]): `spans` are
/// the members to leave out (key start to value end, ascending, as the parser found
/// them). The kept members are runs of the text between the spans, joined by commas.
pub fn without_members(text: &[u8], spans: &[(usize, usize)], mut emit: impl FnMut(&[u8])) {
    let inner_end = text.len().saturating_sub(1); // the closing brace
    let mut first = true;
    let mut run = |from: usize, to: usize, emit: &mut dyn FnMut(&[u8])| {
        if from < to {
            if !first {
                emit(b",");
            }
            emit(&text[from..to]);
            first = false;
        }
    };
    emit(b"{");
    let mut from = 1;
    for &(start, end) in spans {
        // Up to the comma before the member; nothing when the member comes first.
        run(from, start.saturating_sub(1).max(from), &mut emit);
        from = end + 1; // past the comma (or brace) after it
    }
    run(from, inner_end, &mut emit);
    emit(b"}");
}

/// Writes a string as ECMAScript `JSON.stringify` does (UTF-8 output, lowercase `\u`).
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    loop {
        let i = run + plain_prefix(&bytes[run..]);
        out.extend_from_slice(&bytes[run..i]);
        let Some(&b) = bytes.get(i) else { break };
        run = i + 1;
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]);
                continue;
            }
        };
        out.extend_from_slice(esc);
    }
    out.push(b'"');
}

/// Length of the leading run of `bytes` that a JSON string holds as it is (no quote,
/// no backslash, no control character). Eight bytes at a time: most strings have none.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is below `n` (n <= 0x80).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        if below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0 {
            break;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(bytes.len() - i)
}

fn write_number(n: Number<'_>, out: &mut Vec<u8>) -> Result<(), CanonError> {
    match n {
        Number::Int(i) => {
            let _ = write!(out, "{i}");
            Ok(())
        }
        Number::BigInt(_) => Err(CanonError::IntegerOutOfRange),
        Number::Float(f) => write_f64(f, out),
        Number::OutOfRange(_) => Err(CanonError::NonFinite),
    }
}

/// ECMAScript `Number.prototype.toString` for a finite double.
pub fn write_f64(f: f64, out: &mut Vec<u8>) -> Result<(), CanonError> {
    if !f.is_finite() {
        return Err(CanonError::NonFinite);
    }
    if f == 0.0 {
        out.push(b'0'); // also for -0
        return Ok(());
    }
    if f < 0.0 {
        out.push(b'-');
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as ECMAScript requires:
    // "d[.ddd]e[-]x", value = 0.DIGITS × 10^n with n = x + 1.
    let mut sci = [0u8; 40];
    let len = {
        let mut cur = std::io::Cursor::new(&mut sci[..]);
        let _ = write!(cur, "{:e}", f.abs());
        cur.position() as usize
    };
    let sci = &sci[..len];
    let e_at = sci.iter().position(|&c| c == b'e').unwrap_or(len);
    let mut digits = [0u8; 24];
    let mut k = 0;
    for &c in &sci[..e_at] {
        if c.is_ascii_digit() {
            digits[k] = c;
            k += 1;
        }
    }
    let digits = &digits[..k];
    let exp: i32 = std::str::from_utf8(&sci[e_at + 1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let n = exp + 1;
    let k = k as i32;
    if k <= n && n <= 21 {
        out.extend_from_slice(digits);
        out.resize(out.len() + (n - k) as usize, b'0');
    } else if 0 < n && n <= 21 {
        out.extend_from_slice(&digits[..n as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-n) as usize, b'0');
        out.extend_from_slice(digits);
    } else {
        out.push(digits[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{}",
            if n - 1 < 0 { '-' } else { '+' },
            (n - 1).abs()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::json::parse;
    use super::*;

    fn canon(s: &str) -> String {
        let v = parse(s).unwrap();
        let mut out = Vec::new();
        write_value(&v, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_in_ecmascript_form() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1.0", "1"),
            ("0.1", "0.1"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("1e-7", "1e-7"),
            ("1e-6", "0.000001"),
            ("123.456e-10", "1.23456e-8"),
            ("-1.5e300", "-1.5e+300"),
            ("9007199254740993.0", "9007199254740992"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("333333333.33333329", "333333333.3333333"),
            ("-9007199254740992", "-9007199254740992"),
            ("0.000001234", "0.000001234"),
            ("12.5", "12.5"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input), want, "{input}");
        }
    }

    /// Every byte that needs an escape, at every place around the eight-byte steps,
    /// against serde_json (which escapes as `JSON.stringify` does).
    #[test]
    fn escapes_found_wherever_they_stand() {
        for special in [
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "\u{1F600}",
        ] {
            for at in 0..20 {
                let s = format!("{}{special}{}", "a".repeat(at), "b".repeat(19 - at));
                let mut out = Vec::new();
                write_string(&s, &mut out);
                let want = serde_json::to_string(&s).unwrap();
                assert_eq!(String::from_utf8(out).unwrap(), want, "{s:?}");
            }
        }
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        assert_eq!(
            canon(r#""q\" b\\ \n\t\u0001\u007f\u2028\u001f/""#),
            "\"q\\\" b\\\\ \\n\\t\\u0001\u{7f}\u{2028}\\u001f/\""
        );
        assert_eq!(canon(r#""\b\f""#), r#""\b\f""#);
    }

    #[test]
    fn refuses_what_jcs_cannot_write() {
        let mut out = Vec::new();
        for (s, e) in [
            ("[9007199254740993]", CanonError::IntegerOutOfRange),
            ("{\"a\":1e999}", CanonError::NonFinite),
            ("{\"a\":1,\"a\":1}", CanonError::DuplicateKey("a".into())),
        ] {
            assert_eq!(write_value(&parse(s).unwrap(), &mut out), Err(e), "{s}");
        }
    }

    #[test]
    fn objects_without_white_space_and_skipped_members() {
        assert_eq!(
            canon(r#" { "b" : [ 1 , true , null ] , "a" : { } } "#),
            r#"{"a":{},"b":[1,true,null]}"#
        );
        let v = parse(r#"{"hash":"x","v":1,"hmac":"y"}"#).unwrap();
        let mut out = Vec::new();
        write_object(v.as_object().unwrap(), &["hash", "hmac"], &mut out).unwrap();
        assert_eq!(out, br#"{"v":1}"#);
    }

    /// The text as it stands with the members left out, when the parser calls it
    /// canonical; `None` otherwise.
    fn fast(text: &str) -> Option<String> {
        let p = super::super::json::parse_with_spans(text, &["hash", "hmac"]).unwrap();
        p.canonical.then(|| {
            let mut out = Vec::new();
            without_members(text.as_bytes(), p.spans.as_slice(), |b| {
                out.extend_from_slice(b)
            });
            String::from_utf8(out).unwrap()
        })
    }

    fn written(text: &str) -> String {
        let v = parse(text).unwrap();
        let mut out = Vec::new();
        write_object(v.as_object().unwrap(), &["hash", "hmac"], &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_text_is_hashed_as_it_stands() {
        for text in [
            r#"{}"#,
            r#"{"hash":"x"}"#,
            r#"{"hash":"x","hmac":"y"}"#,
            r#"{"a":1,"hash":"x"}"#,
            r#"{"hash":"x","z":1}"#,
            r#"{"hash":"x","hmac":"y","z":1}"#,
            r#"{"a":-5,"hash":"x","hello":[],"hmac":"y","z":{"hash":"inner"}}"#,
            r#"{"a":"tab\there \"q\" \\ \u001f é 😀","b":[{"x":null,"y":true}]}"#,
            r#"{"":0,"\u0000":false,"€":"","😀":1,"｡":2}"#,
            // As `record` writes: the hash members after the others.
            r#"{"a":1,"v":2,"hash":"x","hmac":"y"}"#,
            r#"{"hmac":"y","a":1,"hash":"x","v":2}"#,
        ] {
            assert_eq!(
                fast(text).as_deref(),
                Some(written(text).as_str()),
                "{text}"
            );
        }
    }

    #[test]
    fn anything_not_canonical_goes_to_the_writer() {
        for text in [
            r#"{ "a":1}"#,
            r#"{"a":1}  "#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":9007199254740993}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"x":{"b":1,"a":2}}"#,
            r#"{"hash":"x","hash":"y"}"#,
            r#"{"a":1,"hmac":"y","hash":"x","hmac":"z"}"#,
            r#"{"｡":2,"😀":1}"#,
        ] {
            assert_eq!(fast(text), None, "{text}");
        }
    }

    #[test]
    fn written_form_is_recognised_as_canonical() {
        // What `record` writes (the writer's output plus the hash members, in order)
        // must take the fast path, and agree with the writer; any text the parser calls
        // canonical must agree with the writer.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        const KEYS: [&str; 8] = ["a", "hash", "hmac", "h", "é", "😀", "｡", "z\n"];
        const STRS: [&str; 6] = ["", "x", "q\"\\", "\u{1}\u{8}\t", "ü😀\u{2028}", "/"];
        for _ in 0..2000 {
            let mut members = Vec::new();
            let mut has_float = false;
            for _ in 0..next(6) {
                let k = KEYS[next(KEYS.len() as u64) as usize];
                let v = match next(5) {
                    0 => format!("{}", next(1 << 20) as i64 - (1 << 19)),
                    1 => "[true,null,{\"k\":[]}]".to_string(),
                    2 => {
                        has_float = true;
                        format!("{:?}", next(1000) as f64 / 8.0)
                    }
                    _ => serde_json::to_string(STRS[next(STRS.len() as u64) as usize]).unwrap(),
                };
                members.push(format!("{}:{v}", serde_json::to_string(k).unwrap()));
            }
            let text = format!("{{{}}}", members.join(","));
            let Ok(v) = parse(&text) else { continue };
            let mut canonical = Vec::new();
            if write_value(&v, &mut canonical).is_err() {
                continue; // duplicate keys
            }
            let canonical = String::from_utf8(canonical).unwrap();
            match fast(&canonical) {
                Some(f) => assert_eq!(f, written(&canonical)),
                // Fractions are left to the writer, even when canonical.
                None => assert!(has_float, "{canonical}"),
            }
            if let Some(f) = fast(&text) {
                assert_eq!(f, written(&text), "{text}");
            }
        }
    }

    /// The reordered text when the parser calls it reorderable, as the verifier puts
    /// it in order (through the tape); `None` otherwise or when the tape leaves it to
    /// the writer.
    fn reordered(text: &str) -> Option<String> {
        let p = super::super::json::parse_with_spans(text, &["hash", "hmac"]).unwrap();
        if !p.reorderable {
            return None;
        }
        let mut tape = super::super::tape::Tape::new();
        if !tape.read(text) {
            return None;
        }
        let mut out = Vec::new();
        tape.canonical(text, &["hash", "hmac"], &mut out)?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn members_out_of_order_are_put_in_order_piece_by_piece() {
        for (text, want) in [
            (r#"{}"#, Some(r#"{}"#)),
            (r#"{"b":1,"a":2}"#, Some(r#"{"a":2,"b":1}"#)),
            (r#"{"z":1,"hash":"x","a":{}}"#, Some(r#"{"a":{},"z":1}"#)),
            (
                r#"{"m":{"y":[{"d":1,"c":[]},"s\"q"],"x":null},"hmac":"h","a":"}{"}"#,
                Some(r#"{"a":"}{","m":{"x":null,"y":[{"c":[],"d":1},"s\"q"]}}"#),
            ),
            // UTF-16 order: a supplementary character sorts before U+FF61.
            (r#"{"｡":1,"😀":2,"é":3}"#, Some(r#"{"é":3,"😀":2,"｡":1}"#)),
            // Escaped keys and duplicates are the writer's to decide.
            (r#"{"b":1,"\u0001":2}"#, None),
            (r#"{"b":1,"a":2,"a":3}"#, None),
            (r#"{"b":1,"hash":"x","hash":"y"}"#, None),
            // White space or a float: not reorderable.
            (r#"{"b":1, "a":2}"#, None),
            (r#"{"b":1.5,"a":2}"#, None),
        ] {
            assert_eq!(reordered(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn key_prefixes_order_keys_as_utf16_wherever_they_differ() {
        let keys = [
            "",
            "a",
            "ab",
            "a\u{0}",
            "a\u{7f}",
            "aé",
            "a😀",
            "a｡",
            "abcdefgh",
            "abcdefghé",
            "abcdefghi",
            "abcdefg\u{7f}",
            "abcdefgé",
            "é",
            "😀",
            "｡",
            "\u{80}",
            "zzzzzzzzzz",
        ];
        for a in keys {
            for b in keys {
                let (pa, pb) = (
                    super::super::json::order_prefix(a.as_bytes()),
                    super::super::json::order_prefix(b.as_bytes()),
                );
                if pa != pb {
                    assert_eq!(
                        pa.cmp(&pb),
                        super::super::json::cmp_utf16(a, b),
                        "{a:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn reordering_agrees_with_the_writer() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        const KEYS: [&str; 15] = [
            "a",
            "hash",
            "hmac",
            "h",
            "é",
            "😀",
            "｡",
            "b",
            "",
            "session_id",
            "session_idx",
            "session_i",
            "session_ié",
            "aé",
            "a\u{7f}",
        ];
        const VALUES: [&str; 9] = [
            "0",
            "-17",
            "\"q\\\"\\\\\\u001f\"",
            "[]",
            "{}",
            "[{\"y\":1,\"x\":[{\"q\":2,\"p\":3}]},\"]\"]",
            "{\"z\":{\"b\":true,\"a\":false},\"y\":\"}\"}",
            "null",
            "\"ü😀\u{2028}\"",
        ];
        let mut reordered_seen = 0;
        for _ in 0..3000 {
            let members: Vec<String> = (0..next(7))
                .map(|_| {
                    let k = KEYS[next(KEYS.len() as u64) as usize];
                    let v = VALUES[next(VALUES.len() as u64) as usize];
                    format!("{}:{v}", serde_json::to_string(k).unwrap())
                })
                .collect();
            let text = format!("{{{}}}", members.join(","));
            let v = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let mut want = Vec::new();
            let writer = write_object(v.as_object().unwrap(), &["hash", "hmac"], &mut want);
            match reordered(&text) {
                Some(got) => {
                    reordered_seen += 1;
                    assert_eq!(got.as_bytes(), want, "{text}");
                }
                None => assert!(
                    writer.is_err() || fast(&text).is_some(),
                    "only duplicates or texts already in order go elsewhere: {text}"
                ),
            }
        }
        assert!(reordered_seen > 1000, "{reordered_seen}");
    }
}
