//! A small JSON reader made for verifying events, not a general JSON library.
//!
//! It borrows strings from the line whenever they hold no escapes, keeps the literal
//! form of numbers (an integer literal beyond ±2^53 must be reported, not rounded),
//! keeps object members in a plain vector sorted by UTF-16 code units (the order RFC
//! 8785 writes them in) and refuses nesting deeper than [`MAX_DEPTH`], so a hostile
//! line can neither overflow the stack nor make it allocate much beyond its own size.
//!
//! It does no IO and knows nothing of the event schema.

use std::borrow::Cow;
use std::cmp::Ordering;

/// Deepest nesting of arrays and objects accepted; deeper input is reported as invalid.
pub const MAX_DEPTH: usize = 256;

/// 2^53: the largest magnitude at which every integer is exactly an IEEE-754 double.
pub const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// A parsed JSON value borrowing from the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(Number<'a>),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Object<'a>),
}

/// Object members, sorted by key in UTF-16 code unit order. Duplicate keys are kept
/// (adjacent after sorting) so the canonical writer can refuse them.
pub type Object<'a> = Vec<(Cow<'a, str>, Value<'a>)>;

/// A JSON number as its literal was written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number<'a> {
    /// An integer literal (no fraction, no exponent) within ±2^53.
    Int(i64),
    /// An integer literal beyond ±2^53: JCS cannot represent it. Carries the literal
    /// as written, so a producer can still keep the value exactly.
    BigInt(&'a str),
    /// Any literal with a fraction or an exponent, as the nearest double.
    Float(f64),
    /// A literal with a fraction or an exponent beyond a double's range (`1e400`,
    /// which would read as infinity): JCS cannot represent it. Carries the literal as
    /// written, so a producer can still keep the value exactly.
    OutOfRange(&'a str),
}

impl Value<'_> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'_>> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Short name of the JSON type, for problem details.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// Looks a key up in a sorted object. Returns the last of duplicate members.
pub fn get<'o, 'a>(obj: &'o Object<'a>, key: &str) -> Option<&'o Value<'a>> {
    // Objects are small (an event has about twenty members): a scan beats a search.
    obj.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The first eight bytes of a key as one number whose order is the keys' order
/// wherever two of them differ: ASCII bytes as they are, a key's end as 0x00 and a
/// non-ASCII byte, with all that follows, as 0xFF (every UTF-16 code unit of a
/// non-ASCII character is above every ASCII one). Equal numbers say nothing; the
/// keys are then compared in full.
pub(crate) fn order_prefix(key: &[u8]) -> u64 {
    // Built in a register: bytes stored one by one and read back as a word make the
    // processor wait for each store.
    if let Some(first) = key.first_chunk::<8>() {
        let word = u64::from_be_bytes(*first);
        if word & 0x8080_8080_8080_8080 == 0 {
            return word;
        }
    }
    let mut prefix = 0u64;
    for i in 0..8 {
        match key.get(i) {
            Some(&c) if c >= 0x80 => {
                // This byte and all after it as 0xFF.
                let ones = u64::MAX >> (8 * i);
                return if i == 0 {
                    ones
                } else {
                    (prefix << (8 * (8 - i))) | ones
                };
            }
            Some(&c) => prefix = (prefix << 8) | u64::from(c),
            None => prefix <<= 8,
        }
    }
    prefix
}

/// Where the run of string bytes from `from` ends: at the first quote, backslash or
/// control byte, else at the end. Searched for the two delimiters at once, then
/// checked for a control byte before it, both a block of bytes at a time.
fn plain_run(b: &[u8], from: usize) -> usize {
    let end = memchr::memchr2(b'"', b'\\', &b[from..]).map_or(b.len(), |i| from + i);
    match b[from..end].iter().position(|&c| c < 0x20) {
        Some(i) => from + i,
        None => end,
    }
}

/// Orders two strings by their UTF-16 code units, as RFC 8785 sorts object keys.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let common = ab.iter().zip(bb).take_while(|(x, y)| x == y).count();
    if common == ab.len() || common == bb.len() {
        return ab.len().cmp(&bb.len());
    }
    // UTF-8 byte order is code point order, which is UTF-16 order except between
    // U+E000..U+FFFF (lead byte 0xEE or 0xEF) and supplementary characters (0xF0..).
    let (x, y) = (ab[common], bb[common]);
    if x < 0xEE || y < 0xEE {
        return x.cmp(&y);
    }
    // Back up to the start of the character holding the first difference.
    let mut start = common;
    while start > 0 && !a.is_char_boundary(start) {
        start -= 1;
    }
    let ca = a[start..].chars().next().unwrap_or_default();
    let cb = b[start..].chars().next().unwrap_or_default();
    utf16_key(ca).cmp(&utf16_key(cb))
}

/// The first UTF-16 code unit of a character, then the character itself: code point
/// order except that supplementary characters (surrogates 0xD800..) sort before
/// U+E000..U+FFFF.
fn utf16_key(c: char) -> (u32, u32) {
    let cp = c as u32;
    if cp >= 0x1_0000 {
        (0xD800 + ((cp - 0x1_0000) >> 10), cp)
    } else {
        (cp, cp)
    }
}

/// Why a line is not JSON, with the byte offset where reading stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Parses one JSON text (surrounding white space allowed). A string holding a lone
/// surrogate escape (`"\\ud800"`) is an error here; see [`parse_lossy`].
pub fn parse(text: &str) -> Result<Value<'_>, ParseError> {
    let parsed = parse_lossy(text)?;
    if parsed.lone_surrogates {
        return Err(ParseError {
            offset: 0,
            reason: "lone surrogate in string",
        });
    }
    Ok(parsed.value)
}

/// A parsed text and whether any string held a lone surrogate escape. Such escapes are
/// valid JSON syntax but name no Unicode character, so they have no UTF-8 (and no
/// canonical) form: they are read as U+FFFD and flagged.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub value: Value<'a>,
    /// The text parsed.
    pub text: &'a str,
    pub lone_surrogates: bool,
    /// True when the text is already exactly its RFC 8785 form: no white space, keys
    /// strictly ascending in UTF-16 order, only the escapes JCS writes, and only
    /// integers within ±2^53 written plainly. Then the canonical form of the value
    /// without some top-level members is the text without them (see
    /// [`super::canon::without_members`]), and nothing needs to be written out.
    pub canonical: bool,
    /// True when the text is its RFC 8785 form but for the order of object members:
    /// then the canonical form is the text's own pieces put in order (see
    /// [`super::tape::Tape::canonical`]), with nothing to escape or format.
    pub reorderable: bool,
    /// Where the top-level members named in [`parse_with_spans`]'s `wanted` are in the
    /// text: from the key's opening quote to the end of the value, in text order.
    pub spans: Spans,
}

/// Byte ranges of a few top-level members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spans {
    len: usize,
    at: [(usize, usize); 2],
    /// Which of the wanted keys were seen (bit i for `wanted[i]`).
    seen: u8,
}

impl Spans {
    pub fn as_slice(&self) -> &[(usize, usize)] {
        &self.at[..self.len]
    }

    /// Adds a span; false when full.
    fn push(&mut self, span: (usize, usize)) -> bool {
        match self.at.get_mut(self.len) {
            Some(slot) => {
                *slot = span;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// Parses one JSON text, reading lone surrogate escapes as U+FFFD and flagging them.
pub fn parse_lossy(text: &str) -> Result<Parsed<'_>, ParseError> {
    parse_with_spans(text, &[])
}

/// [`parse_lossy`], also noting where the top-level members named in `wanted` (at most
/// two names) are. They may stand anywhere: the rest of the object decides whether the
/// text is canonical. A name seen twice makes it not canonical.
pub fn parse_with_spans<'a>(text: &'a str, wanted: &[&str]) -> Result<Parsed<'a>, ParseError> {
    let mut p = Parser {
        src: text,
        bytes: text.as_bytes(),
        pos: 0,
        lone_surrogates: false,
        plain: true,
        ordered: true,
        wanted,
        spans: Spans::default(),
    };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.err("trailing characters after the value"));
    }
    Ok(Parsed {
        value: v,
        text,
        lone_surrogates: p.lone_surrogates,
        canonical: p.plain && p.ordered && !p.lone_surrogates,
        reorderable: p.plain && !p.lone_surrogates,
        spans: p.spans,
    })
}

struct Parser<'a, 'w> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    lone_surrogates: bool,
    /// Strings, numbers and spacing are as JCS writes them.
    plain: bool,
    /// Object keys strictly ascending (the wanted top-level ones left aside).
    ordered: bool,
    wanted: &'w [&'w str],
    spans: Spans,
}

impl<'a> Parser<'a, '_> {
    fn err(&self, reason: &'static str) -> ParseError {
        ParseError {
            offset: self.pos,
            reason,
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        if let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.plain = false;
            self.pos += 1;
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
        }
    }

    /// Notes the span of a top-level member if its key is wanted; a wanted key seen
    /// twice makes the text not canonical (JCS refuses duplicate keys).
    fn note_span(&mut self, key: &str, key_at: usize) -> bool {
        let Some(i) = self.wanted.iter().position(|w| *w == key) else {
            return false;
        };
        if self.spans.seen & (1 << i) != 0 || !self.spans.push((key_at, self.pos)) {
            self.ordered = false;
        }
        self.spans.seen |= 1 << i;
        true
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::String),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("unexpected end of line")),
        }
    }

    fn literal(&mut self, word: &[u8], v: Value<'a>) -> Result<Value<'a>, ParseError> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Vec::new()));
        }
        // An event has about fifteen members: room for them at once, not by doubling.
        let mut members: Object<'a> = Vec::with_capacity(if depth == 1 { 16 } else { 4 });
        let mut sorted = true;
        let mut ordered_last: Option<usize> = None;
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key_at = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            let wanted = depth == 1 && self.note_span(&key, key_at);
            let to_last = members.last().map(|(prev, _)| cmp_utf16(prev, &key));
            if to_last == Some(Ordering::Greater) {
                sorted = false;
            }
            // The canonical order is checked without the wanted members: they are
            // left out of the canonical form wherever they stand.
            if !wanted {
                let to_ordered = match ordered_last {
                    Some(i) if i + 1 == members.len() => to_last,
                    Some(i) => Some(cmp_utf16(&members[i].0, &key)),
                    None => None,
                };
                if to_ordered.is_some_and(|o| o != Ordering::Less) {
                    self.ordered = false;
                }
                ordered_last = Some(members.len());
            }
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
        if !sorted {
            // Stable, so that of duplicate keys the last written stays last.
            members.sort_by(|a, b| cmp_utf16(&a.0, &b.0));
        }
        Ok(Value::Object(members))
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Number<'a>, ParseError> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = b.get(i) {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return Err(self.err("invalid number"));
            }
        }
        let int_digits = i - int_start;
        let mut is_int = true;
        if b.get(i) == Some(&b'.') {
            is_int = false;
            i += 1;
            let s = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == s {
                self.pos = i;
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            is_int = false;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let s = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == s {
                self.pos = i;
                return Err(self.err("invalid number"));
            }
        }
        self.pos = i;
        let text = &self.src[start..i];
        if is_int {
            // 2^53 has 16 digits: anything longer is beyond it.
            if int_digits > 16 {
                self.plain = false;
                return Ok(Number::BigInt(text));
            }
            let n: i64 = text.parse().map_err(|_| self.err("invalid number"))?;
            if n.unsigned_abs() > MAX_SAFE_INTEGER {
                self.plain = false;
                return Ok(Number::BigInt(text));
            }
            if text == "-0" {
                self.plain = false; // JCS writes 0
            }
            Ok(Number::Int(n))
        } else {
            // Canonical fractions and exponents exist, but telling them apart from
            // the others costs more than writing them: leave them to the writer.
            self.plain = false;
            let f: f64 = text.parse().map_err(|_| self.err("invalid number"))?;
            Ok(if !f.is_finite() {
                Number::OutOfRange(text)
            } else {
                Number::Float(f)
            })
        }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let b = self.bytes;
        // Fast path: no escape before the closing quote, borrow the slice.
        let mut i = plain_run(b, start);
        match b.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                return Ok(Cow::Borrowed(&self.src[start..i]));
            }
            Some(b'\\') => {}
            Some(_) => {
                self.pos = i;
                return Err(self.err("control character in string"));
            }
            None => {
                self.pos = i;
                return Err(self.err("unterminated string"));
            }
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&self.src[start..i]);
        loop {
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    i += 1;
                    let esc = b.get(i).copied();
                    i += 1;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => {
                            self.plain = false;
                            out.push('/');
                        }
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            self.pos = i;
                            let hi = self.hex4()?;
                            // JCS escapes only the control characters without a short
                            // form, as \u00xx in lowercase.
                            let short = matches!(hi, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
                            if hi >= 0x20 || short || b[i..i + 4].iter().any(u8::is_ascii_uppercase)
                            {
                                self.plain = false;
                            }
                            i = self.pos;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && b.get(i) == Some(&b'\\')
                                && b.get(i + 1) == Some(&b'u')
                            {
                                self.pos = i + 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    i = self.pos;
                                    0x1_0000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    // A high surrogate followed by a non-low escape: the
                                    // high one is lone; read the next escape on its own.
                                    self.lone_surrogates = true;
                                    0xFFFD
                                }
                            } else if (0xD800..0xE000).contains(&hi) {
                                self.lone_surrogates = true;
                                0xFFFD
                            } else {
                                hi
                            };
                            // Surrogates were replaced above, so this is a valid char.
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.pos = i - 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                }
                Some(0..=0x1f) => {
                    self.pos = i;
                    return Err(self.err("control character in string"));
                }
                Some(_) => {
                    // Copy the run up to the next quote, backslash or control byte.
                    let run = i;
                    i = plain_run(b, i);
                    out.push_str(&self.src[run..i]);
                }
                None => {
                    self.pos = i;
                    return Err(self.err("unterminated string"));
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.err("invalid \\u escape")),
            };
            v = v * 16 + u32::from(n);
        }
        self.pos += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {

    /// The definition of the order prefix, byte by byte.
    fn prefix_by_definition(key: &[u8]) -> u64 {
        let mut bytes = [0u8; 8];
        for (i, &c) in key.iter().take(8).enumerate() {
            if c >= 0x80 {
                bytes[i..].fill(0xFF);
                break;
            }
            bytes[i] = c;
        }
        u64::from_be_bytes(bytes)
    }

    #[test]
    fn order_prefix_is_its_definition() {
        for len in 0..12 {
            let ascii: Vec<u8> = (0..len).map(|i| b'a' + i as u8).collect();
            assert_eq!(order_prefix(&ascii), prefix_by_definition(&ascii), "{len}");
            for at in 0..len {
                for high in [0x80, 0xC3, 0xFF] {
                    let mut key = ascii.clone();
                    key[at] = high;
                    assert_eq!(order_prefix(&key), prefix_by_definition(&key), "{key:?}");
                }
                let mut key = ascii.clone();
                key[at] = 0;
                assert_eq!(order_prefix(&key), prefix_by_definition(&key), "{key:?}");
            }
        }
    }
    use super::*;

    fn ok(s: &str) -> Value<'_> {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn bad(s: &str) -> &'static str {
        parse(s).expect_err(s).reason
    }

    #[test]
    fn numbers_keep_their_literal_kind() {
        assert_eq!(ok("0"), Value::Number(Number::Int(0)));
        assert_eq!(ok("-0"), Value::Number(Number::Int(0)));
        assert_eq!(ok("1.0"), Value::Number(Number::Float(1.0)));
        assert_eq!(ok("9007199254740992"), Value::Number(Number::Int(1 << 53)));
        assert_eq!(
            ok("9007199254740993"),
            Value::Number(Number::BigInt("9007199254740993"))
        );
        assert_eq!(
            ok("-9007199254740995"),
            Value::Number(Number::BigInt("-9007199254740995"))
        );
        assert_eq!(
            ok("123456789012345678901234"),
            Value::Number(Number::BigInt("123456789012345678901234"))
        );
        assert_eq!(ok("1e400"), Value::Number(Number::OutOfRange("1e400")));
        assert_eq!(
            ok("-1.5E+400"),
            Value::Number(Number::OutOfRange("-1.5E+400"))
        );
        // Underflow reads as zero, as it does for every JSON reader of the trail.
        assert_eq!(ok("1e-400"), Value::Number(Number::Float(0.0)));
        for s in ["01", "1.", ".5", "-", "1e", "+1", "0x10", "NaN"] {
            assert!(parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            ok(r#""plain""#),
            Value::String(Cow::Borrowed("plain"))
        ));
        assert_eq!(ok(r#""a\"b\\c\/d\n""#).as_str(), Some("a\"b\\c/d\n"));
        assert_eq!(ok(r#""\u00e9\ud83d\ude00""#).as_str(), Some("é😀"));
        assert_eq!(bad(r#""\ud83d""#), "lone surrogate in string");
        assert_eq!(bad(r#""\ude00x""#), "lone surrogate in string");
        let p = parse_lossy(r#"["\ud83dx", "\ud83d\u0041", "ok"]"#).unwrap();
        assert!(p.lone_surrogates);
        assert_eq!(
            p.value,
            Value::Array(vec![
                Value::String("\u{FFFD}x".into()),
                Value::String("\u{FFFD}A".into()),
                Value::String("ok".into())
            ])
        );
        assert!(!parse_lossy(r#""\ud83d\ude00""#).unwrap().lone_surrogates);
        assert_eq!(bad("\"a\u{1}b\""), "control character in string");
        assert_eq!(bad(r#""\x""#), "invalid escape");
        assert_eq!(bad(r#""abc"#), "unterminated string");
    }

    #[test]
    fn objects_sort_by_utf16_and_keep_duplicates() {
        let v = ok(r#"{"😀":2,"ﬁ":3,"a":4,"€":1,"\r":5}"#);
        let keys: Vec<&str> = v.as_object().unwrap().iter().map(|(k, _)| &**k).collect();
        assert_eq!(keys, ["\r", "a", "€", "😀", "ﬁ"]);
        let v = ok(r#"{"k":1,"k":2}"#);
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(
            get(v.as_object().unwrap(), "k"),
            Some(&Value::Number(Number::Int(2)))
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(bad("{\"a\":1"), "expected ',' or '}'");
        assert_eq!(bad("[1 2]"), "expected ',' or ']'");
        assert_eq!(bad("{} x"), "trailing characters after the value");
        assert_eq!(bad(""), "unexpected end of line");
        assert_eq!(bad("tru"), "invalid literal");
        let deep = "[".repeat(100_000);
        assert_eq!(bad(&deep), "nesting too deep");
        let ok_deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        ok(&ok_deep);
    }

    #[test]
    fn utf16_order() {
        assert_eq!(cmp_utf16("a", "b"), Ordering::Less);
        assert_eq!(cmp_utf16("ab", "a"), Ordering::Greater);
        assert_eq!(cmp_utf16("\u{FB01}", "\u{1F600}"), Ordering::Greater);
        assert_eq!(cmp_utf16("\u{20AC}", "\u{1F600}"), Ordering::Less);
        assert_eq!(cmp_utf16("x\u{1F600}", "x\u{1F601}"), Ordering::Less);
    }
}
