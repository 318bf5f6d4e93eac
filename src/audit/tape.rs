//! The fast lane's reader, and the verifier's way to put members in order: one pass
//! over a line that is already in canonical form but for the order of object members
//! (what most producers write), giving a flat list of [`Node`]s instead of a tree of
//! values. Nothing is allocated per line: the list and
//! the sorting buffer are kept between lines.
//!
//! The lane is narrow on purpose. A line is taken only when every string holds only
//! the escapes RFC 8785 writes, every key is free of escapes, every number is an
//! integer within ±2^53 written plainly, nesting is at most [`MAX_DEPTH`] deep and
//! there is no white space at all. Anything else (and every line that is not valid
//! JSON) is `None`: the caller checks it on the general path, which decides and
//! reports it. So the lane never judges a line, it only spares the general path the
//! lines whose judgement is easy; both must give the same result on every line it
//! takes (`check::lane_tests` compares them).

use super::json::{MAX_SAFE_INTEGER, cmp_utf16, order_prefix};
use std::cmp::Ordering;

/// Deepest nesting taken; deeper lines go to the general path.
pub const MAX_DEPTH: usize = 32;

/// One value, or one object key, of the line: its bytes are `line[start..end]`
/// (strings with their quotes). `next` is the index of the node after it and all it
/// holds. An object's nodes are its key and value nodes in turn, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub start: u32,
    pub end: u32,
    pub next: u32,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    /// An array, and whether it holds an object at any depth (then its canonical form
    /// may differ from its text).
    Array {
        objects: bool,
    },
    /// An object key (never escaped in the lane).
    Key,
    /// A string without escapes: its text is its value.
    Str,
    /// A string holding escapes (only those JCS writes).
    EscStr,
    Int(i64),
    Bool,
    Null,
}

/// A line read into nodes, and the buffers kept for the next one.
#[derive(Debug, Default)]
pub struct Tape {
    nodes: Vec<Node>,
    /// Members being put in order, innermost object last: (key prefix, key node).
    order: Vec<(u64, u32)>,
    /// The top-level keys last put in order: a producer writes the same keys in the
    /// same order line after line.
    known: Known,
}

/// Top-level keys in the order of a line's text, and their canonical order.
#[derive(Debug, Default)]
struct Known {
    /// The keys' bytes, one after the other.
    keys: Vec<u8>,
    /// Where each key ends in `keys`.
    ends: Vec<u32>,
    /// Positions in text order, in canonical order.
    order: Vec<u32>,
    /// Scratch: a line's members in text order.
    text: Vec<(u64, u32)>,
}

impl Known {
    /// Whether `members` (key nodes, in text order) have the keys known.
    fn matches(&self, line: &[u8], nodes: &[Node], members: &[(u64, u32)]) -> bool {
        if members.len() != self.ends.len() || members.is_empty() {
            return false;
        }
        let mut from = 0;
        members.iter().zip(&self.ends).all(|(&(_, k), &end)| {
            let n = nodes[k as usize];
            let key = &line[n.start as usize + 1..n.end as usize - 1];
            let same = key == &self.keys[from..end as usize];
            from = end as usize;
            same
        })
    }

    /// Learns the keys of `text` (key nodes in text order) and their order `sorted`.
    fn learn(&mut self, line: &[u8], nodes: &[Node], text: &[u32], sorted: &[(u64, u32)]) {
        self.keys.clear();
        self.ends.clear();
        self.order.clear();
        for &k in text {
            let n = nodes[k as usize];
            self.keys
                .extend_from_slice(&line[n.start as usize + 1..n.end as usize - 1]);
            self.ends.push(self.keys.len() as u32);
        }
        for &(_, k) in sorted {
            let at = text.iter().position(|&t| t == k).unwrap_or_default();
            self.order.push(at as u32);
        }
    }
}

impl Tape {
    pub const fn new() -> Tape {
        Tape {
            nodes: Vec::new(),
            order: Vec::new(),
            known: Known {
                keys: Vec::new(),
                ends: Vec::new(),
                order: Vec::new(),
                text: Vec::new(),
            },
        }
    }

    /// Reads `line` (a JSON object); `false` when it is not for the lane.
    pub fn read(&mut self, line: &str) -> bool {
        self.nodes.clear();
        let b = line.as_bytes();
        if b.first() != Some(&b'{') || u32::try_from(b.len()).is_err() {
            return false;
        }
        let mut r = Reader {
            b,
            pos: 0,
            nodes: &mut self.nodes,
            objects: 0,
        };
        r.value(0).is_some() && r.pos == b.len()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The top-level object's members as (key node, value node) indices, as written.
    pub fn members(&self, object: usize) -> Members<'_> {
        Members {
            nodes: &self.nodes,
            at: object + 1,
            end: self.nodes.get(object).map_or(0, |n| n.next as usize),
        }
    }

    /// The items of an array node, as node indices.
    pub fn items(&self, array: usize) -> Items<'_> {
        Items {
            nodes: &self.nodes,
            at: array + 1,
            end: self.nodes.get(array).map_or(0, |n| n.next as usize),
        }
    }

    /// Appends the canonical form of the line read last, leaving out the top-level
    /// members named in `skip`: the pieces of the text copied in canonical order.
    /// `None` when an object repeats a key (JCS refuses it; the general path reports it).
    pub fn canonical(&mut self, line: &str, skip: &[&str], out: &mut Vec<u8>) -> Option<()> {
        if self.nodes.is_empty() {
            return None;
        }
        let mut w = Writer {
            line,
            nodes: &self.nodes,
            order: &mut self.order,
            known: &mut self.known,
        };
        w.order.clear();
        w.value(0, skip, out)
    }
}

/// See [`Tape::members`].
#[derive(Clone)]
pub struct Members<'t> {
    nodes: &'t [Node],
    at: usize,
    end: usize,
}

impl Iterator for Members<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.at >= self.end {
            return None;
        }
        let key = self.at;
        self.at = self.nodes[key + 1].next as usize;
        Some((key, key + 1))
    }
}

/// See [`Tape::items`].
#[derive(Clone)]
pub struct Items<'t> {
    nodes: &'t [Node],
    at: usize,
    end: usize,
}

impl Iterator for Items<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.at >= self.end {
            return None;
        }
        let item = self.at;
        self.at = self.nodes[item].next as usize;
        Some(item)
    }
}

struct Reader<'l, 'n> {
    b: &'l [u8],
    pos: usize,
    nodes: &'n mut Vec<Node>,
    /// Objects read so far.
    objects: usize,
}

/// Lane positions fit in u32: `Tape::read` refuses longer lines.
fn at(i: usize) -> u32 {
    i as u32
}

impl Reader<'_, '_> {
    fn push(&mut self, start: usize, kind: Kind) {
        let next = at(self.nodes.len() + 1);
        self.nodes.push(Node {
            start: at(start),
            end: at(self.pos),
            next,
            kind,
        });
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        let start = self.pos;
        match *self.b.get(self.pos)? {
            b'"' => {
                let escaped = self.string()?;
                self.push(start, if escaped { Kind::EscStr } else { Kind::Str });
            }
            b'{' => self.object(depth + 1)?,
            b'[' => self.array(depth + 1)?,
            b't' => self.literal(b"true", Kind::Bool)?,
            b'f' => self.literal(b"false", Kind::Bool)?,
            b'n' => self.literal(b"null", Kind::Null)?,
            b'-' | b'0'..=b'9' => {
                let n = self.int()?;
                self.push(start, Kind::Int(n));
            }
            _ => return None,
        }
        Some(())
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Option<()> {
        let start = self.pos;
        if !self.b[self.pos..].starts_with(word) {
            return None;
        }
        self.pos += word.len();
        self.push(start, kind);
        Some(())
    }

    /// A container's node, pushed before what it holds; its end and `next` are set
    /// once it is read.
    fn open(&mut self, kind: Kind) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            start: at(self.pos),
            end: 0,
            next: 0,
            kind,
        });
        self.pos += 1;
        i
    }

    fn close(&mut self, i: usize) {
        self.pos += 1;
        let next = at(self.nodes.len());
        let node = &mut self.nodes[i];
        node.end = at(self.pos);
        node.next = next;
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.objects += 1;
        let i = self.open(Kind::Object);
        if self.b.get(self.pos) == Some(&b'}') {
            self.close(i);
            return Some(());
        }
        loop {
            let key_at = self.pos;
            if self.b.get(self.pos) != Some(&b'"') || self.string()? {
                return None; // not a key, or an escaped one
            }
            self.push(key_at, Kind::Key);
            if self.b.get(self.pos) != Some(&b':') {
                return None;
            }
            self.pos += 1;
            self.value(depth)?;
            match self.b.get(self.pos)? {
                b',' => self.pos += 1,
                b'}' => {
                    self.close(i);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let objects = self.objects;
        let i = self.open(Kind::Array { objects: false });
        if self.b.get(self.pos) == Some(&b']') {
            self.close(i);
            return Some(());
        }
        loop {
            self.value(depth)?;
            match self.b.get(self.pos)? {
                b',' => self.pos += 1,
                b']' => {
                    self.close(i);
                    self.nodes[i].kind = Kind::Array {
                        objects: self.objects > objects,
                    };
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An integer written as JCS writes it: no fraction, no exponent, no `-0`, no
    /// leading zero, within ±2^53.
    fn int(&mut self) -> Option<i64> {
        let b = self.b;
        let neg = b[self.pos] == b'-';
        let mut i = self.pos + usize::from(neg);
        let digits_at = i;
        let mut n: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = b.get(i) {
            if i - digits_at == 16 {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
            i += 1;
        }
        let digits = i - digits_at;
        let leading_zero = digits > 1 && b[digits_at] == b'0';
        if digits == 0 || leading_zero || matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        if n > MAX_SAFE_INTEGER || (neg && n == 0) {
            return None;
        }
        self.pos = i;
        let n = n as i64;
        Some(if neg { -n } else { n })
    }

    /// Reads a string from its opening quote to past its closing one; whether it held
    /// escapes. `None` for an escape JCS would not write, a control byte or no end.
    fn string(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            i = special(b, i);
            match *b.get(i)? {
                b'"' => {
                    self.pos = i + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    i += jcs_escape(&b[i..])?;
                }
                _ => return None, // a control byte
            }
        }
    }
}

/// The length of the escape at the start of `e` when it is one JCS writes: `\"`,
/// `\\`, the five short forms, or `\u00xx` in lowercase for the other control
/// characters.
fn jcs_escape(e: &[u8]) -> Option<usize> {
    match *e.get(1)? {
        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => {
            let hex = e.get(2..6)?;
            let lower = |c: u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
            let control = hex[0] == b'0' && hex[1] == b'0' && matches!(hex[2], b'0' | b'1');
            let short = matches!(&hex[2..], b"08" | b"09" | b"0a" | b"0c" | b"0d");
            (control && lower(hex[3]) && !short).then_some(6)
        }
        _ => None,
    }
}

/// Decodes the text of an [`Kind::EscStr`] (between its quotes) into `out`, replacing
/// what `out` held. The lane holds only JCS's escapes, so each one is one character.
pub fn decode(text: &str, out: &mut String) {
    out.clear();
    let mut rest = text;
    while let Some(at) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let e = rest.as_bytes();
        let (c, len) = match e.get(at + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            _ => {
                let hex = rest.get(at + 2..at + 6).unwrap_or_default();
                let code = u32::from_str_radix(hex, 16).unwrap_or(0xFFFD);
                (char::from_u32(code).unwrap_or('\u{FFFD}'), 6)
            }
        };
        out.push(c);
        rest = rest.get(at + len..).unwrap_or_default();
    }
    out.push_str(rest);
}

/// The first index from `i` holding a quote, a backslash or a control byte (or the
/// length): sixteen bytes at a time, then eight.
fn special(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = b.get(i..i + 16) {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86_64; the load reads the 16 bytes of `chunk`.
        let mask = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast());
            let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
            // Below 0x20 exactly when the unsigned maximum with 0x1f is 0x1f.
            let low = _mm_set1_epi8(0x1f);
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
        };
        if mask != 0 {
            return i + mask.trailing_zeros() as usize;
        }
        i += 16;
    }
    special_words(b, i)
}

/// [`special`] eight bytes at a time, in plain integer operations.
fn special_words(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let zero_at = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        // Each term's lowest set bit is exact (a false one only follows a true one in
        // the same term), so the lowest bit of their union is the first special byte.
        let found = zero_at(w ^ (ONES * u64::from(b'"')))
            | zero_at(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

struct Writer<'l, 'n> {
    line: &'l str,
    nodes: &'n [Node],
    order: &'n mut Vec<(u64, u32)>,
    known: &'n mut Known,
}

impl Writer<'_, '_> {
    fn text(&self, i: usize) -> &[u8] {
        let n = self.nodes[i];
        &self.line.as_bytes()[n.start as usize..n.end as usize]
    }

    /// A key node's text without its quotes.
    fn key(&self, i: usize) -> &[u8] {
        let n = self.nodes[i];
        &self.line.as_bytes()[n.start as usize + 1..n.end as usize - 1]
    }

    fn value(&mut self, i: usize, skip: &[&str], out: &mut Vec<u8>) -> Option<()> {
        let node = self.nodes[i];
        if node.kind == Kind::Object {
            return self.object(i, skip, out);
        }
        if node.kind != (Kind::Array { objects: true }) {
            // A scalar, or an array without objects: canonical as it stands.
            out.extend_from_slice(self.text(i));
            return Some(());
        }
        out.push(b'[');
        let (mut at, end) = (i + 1, node.next as usize);
        while at < end {
            if at > i + 1 {
                out.push(b',');
            }
            self.value(at, &[], out)?;
            at = self.nodes[at].next as usize;
        }
        out.push(b']');
        Some(())
    }

    fn object(&mut self, i: usize, skip: &[&str], out: &mut Vec<u8>) -> Option<()> {
        let base = self.order.len();
        let (mut at, end) = (i + 1, self.nodes[i].next as usize);
        while at < end {
            self.order.push((0, at as u32));
            at = self.nodes[at + 1].next as usize;
        }
        let line = self.line.as_bytes();
        let top = i == 0;
        if top && self.known.matches(line, self.nodes, &self.order[base..]) {
            let known = &mut *self.known;
            known.text.clear();
            known.text.extend_from_slice(&self.order[base..]);
            for (slot, &at) in self.order[base..].iter_mut().zip(&known.order) {
                *slot = known.text[at as usize];
            }
        } else {
            self.sort(base, top)?;
        }
        self.write_members(base, skip, out)
    }

    /// Puts the members at `base..` (key nodes in text order) in canonical order;
    /// `None` when a key repeats. The top-level object's order is learnt.
    fn sort(&mut self, base: usize, top: bool) -> Option<()> {
        let text: Vec<u32> = if top {
            self.order.iter().map(|&(_, k)| k).collect()
        } else {
            Vec::new()
        };
        let mut sorted = true;
        for j in base..self.order.len() {
            let k = self.order[j].1 as usize;
            let prefix = order_prefix(self.key(k));
            self.order[j].0 = prefix;
            if j > base {
                let (p, before) = self.order[j - 1];
                if self.cmp(p, before as usize, prefix, k) != Ordering::Less {
                    sorted = false;
                }
            }
        }
        if !sorted {
            let mut members = std::mem::take(self.order);
            members[base..].sort_unstable_by(|a, b| self.cmp(a.0, a.1 as usize, b.0, b.1 as usize));
            *self.order = members;
            let dup = self.order[base..]
                .windows(2)
                .any(|w| self.key(w[0].1 as usize) == self.key(w[1].1 as usize));
            if dup {
                return None;
            }
        }
        if top {
            let line = self.line.as_bytes();
            self.known
                .learn(line, self.nodes, &text, &self.order[base..]);
        }
        Some(())
    }

    fn write_members(&mut self, base: usize, skip: &[&str], out: &mut Vec<u8>) -> Option<()> {
        out.push(b'{');
        let mut first = true;
        for j in base..self.order.len() {
            let key = self.order[j].1 as usize;
            if !skip.is_empty() && skip.iter().any(|k| k.as_bytes() == self.key(key)) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            let value = self.nodes[key + 1];
            if matches!(value.kind, Kind::Object | Kind::Array { objects: true }) {
                out.extend_from_slice(self.text(key));
                out.push(b':');
                self.value(key + 1, &[], out)?;
            } else {
                // `"key":value`, one run of the text.
                let from = self.nodes[key].start as usize;
                out.extend_from_slice(&self.line.as_bytes()[from..value.end as usize]);
            }
        }
        out.push(b'}');
        self.order.truncate(base);
        Some(())
    }

    /// Orders two keys: by their prefixes, then in full where those agree.
    fn cmp(&self, pa: u64, a: usize, pb: u64, b: usize) -> Ordering {
        pa.cmp(&pb).then_with(|| {
            let (a, b) = (self.key(a), self.key(b));
            // Keys lie between quotes of a valid UTF-8 line: their own bytes are too.
            match (std::str::from_utf8(a), std::str::from_utf8(b)) {
                (Ok(a), Ok(b)) => cmp_utf16(a, b),
                _ => a.cmp(b),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(line: &str) -> Option<String> {
        let mut t = Tape::new();
        if !t.read(line) {
            return None;
        }
        let mut out = Vec::new();
        t.canonical(line, &["hash", "hmac"], &mut out)?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn lines_in_the_lane_come_out_in_canonical_order() {
        for (line, want) in [
            (r#"{}"#, Some(r#"{}"#)),
            (r#"{"b":1,"a":2}"#, Some(r#"{"a":2,"b":1}"#)),
            (r#"{"z":1,"hash":"x","a":{}}"#, Some(r#"{"a":{},"z":1}"#)),
            (
                r#"{"m":{"y":[{"d":1,"c":[]},"s\"q"],"x":null},"hmac":"h","a":"}{"}"#,
                Some(r#"{"a":"}{","m":{"x":null,"y":[{"c":[],"d":1},"s\"q"]}}"#),
            ),
            (r#"{"｡":1,"😀":2,"é":3}"#, Some(r#"{"é":3,"😀":2,"｡":1}"#)),
            (
                r#"{"a":"\u001f\n","b":-12,"c":[true,false,null]}"#,
                Some(r#"{"a":"\u001f\n","b":-12,"c":[true,false,null]}"#),
            ),
            (r#"{"b":[],"a":[[],{}]}"#, Some(r#"{"a":[[],{}],"b":[]}"#)),
            // Not for the lane: escaped keys, duplicates, white space, other numbers,
            // escapes JCS does not write, invalid JSON.
            (r#"{"b":1,"\u0001":2}"#, None),
            (r#"{"b":1,"a":2,"a":3}"#, None),
            (r#"{"a":{"x":1,"x":1}}"#, None),
            (r#"{"b":1, "a":2}"#, None),
            (r#"{"b":1}  "#, None),
            (r#"{"b":1.5}"#, None),
            (r#"{"b":1e3}"#, None),
            (r#"{"b":-0}"#, None),
            (r#"{"b":01}"#, None),
            (r#"{"b":9007199254740993}"#, None),
            (r#"{"b":"\/"}"#, None),
            (r#"{"b":"\u0041"}"#, None),
            (r#"{"b":"\u000a"}"#, None),
            (r#"{"b":"\u001F"}"#, None),
            (r#"{"b":"a	b"}"#, None),
            (r#"{"b":"x}"#, None),
            (r#"{"b":1,}"#, None),
            (r#"{"b":tru}"#, None),
            (r#"{"b":1}x"#, None),
            (r#"[1]"#, None),
        ] {
            assert_eq!(lane(line).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn lines_with_the_keys_of_the_line_before_are_ordered_alike() {
        let lines = [
            r#"{"b":1,"a":{"y":1,"x":2},"hash":"h","c":[{"q":1,"p":2}]}"#,
            r#"{"b":2,"a":{"x":3,"y":1},"hash":"i","c":[]}"#,
            r#"{"b":3,"a":{},"hash":"j","c":[{"p":1}]}"#,
            r#"{"a":4,"b":{},"hash":"k","c":5}"#,
            r#"{"b":1,"a":2,"hash":"l"}"#,
            r#"{"b":1,"a":2,"hash":"l","d":0}"#,
            r#"{"b":1,"aa":2,"hash":"l","d":0}"#,
            r#"{"b":1,"a":2,"hash":"l","a":0}"#,
            r#"{"b":1,"a":2,"hash":"l"}"#,
        ];
        let mut t = Tape::new();
        for line in lines {
            assert!(t.read(line));
            let mut out = Vec::new();
            let lane = t.canonical(line, &["hash"], &mut out).map(|()| out);
            // A tape that never saw a line before puts it in order from scratch.
            let mut fresh = Tape::new();
            assert!(fresh.read(line));
            let mut want = Vec::new();
            let alone = fresh.canonical(line, &["hash"], &mut want).map(|()| want);
            assert_eq!(lane, alone, "{line}");
        }
    }

    #[test]
    fn integers_at_the_edge_of_exactness() {
        assert_eq!(
            lane(r#"{"n":9007199254740992}"#).as_deref(),
            Some(r#"{"n":9007199254740992}"#)
        );
        assert_eq!(
            lane(r#"{"n":-9007199254740992}"#).as_deref(),
            Some(r#"{"n":-9007199254740992}"#)
        );
        assert_eq!(lane(r#"{"n":9007199254740993}"#), None);
        assert_eq!(lane(r#"{"n":12345678901234567}"#), None);
        assert_eq!(lane(r#"{"n":-}"#), None);
    }

    #[test]
    fn deep_nesting_leaves_the_lane() {
        let ok = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(lane(&ok).is_some());
        let deep = format!(
            "{{\"a\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(lane(&deep), None);
    }

    #[test]
    fn special_bytes_are_found_at_every_offset() {
        for len in 0..40 {
            for c in [b'"', b'\\', 0x01, 0x1f] {
                for at in 0..len {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    // Bytes above the special one, also 0x80.., must not hide it.
                    for x in b.iter_mut().skip(at + 1) {
                        *x = 0xC3;
                    }
                    assert_eq!(special(&b, 0), at, "{len} {c} {at}");
                    assert_eq!(special_words(&b, 0), at, "{len} {c} {at}");
                }
                assert_eq!(special(&vec![0xE2; len], 0), len);
                assert_eq!(special_words(&vec![0x7F; len], 0), len);
            }
        }
    }

    #[test]
    fn escaped_strings_decode_as_the_reader_decodes_them() {
        let mut out = String::new();
        for text in [
            r#""a\"b\\c\n\t\r\b\f\u0001\u001fé""#,
            r#""\"""#,
            r#""x\u0000""#,
        ] {
            let line = format!("{{\"k\":{text}}}");
            let mut t = Tape::new();
            assert!(t.read(&line), "{line}");
            let n = t.nodes()[2];
            assert_eq!(n.kind, Kind::EscStr);
            decode(&line[n.start as usize + 1..n.end as usize - 1], &mut out);
            let want = super::super::json::parse(text).unwrap();
            assert_eq!(Some(out.as_str()), want.as_str(), "{text}");
        }
    }

    #[test]
    fn members_and_items_walk_one_level() {
        let line = r#"{"a":[1,[2,3],{"x":4}],"b":"s","c":{"d":[]}}"#;
        let mut t = Tape::new();
        assert!(t.read(line));
        let keys: Vec<&str> = t
            .members(0)
            .map(|(k, _)| &line[t.nodes()[k].start as usize..t.nodes()[k].end as usize])
            .collect();
        assert_eq!(keys, [r#""a""#, r#""b""#, r#""c""#]);
        let items: Vec<Kind> = t.items(2).map(|i| t.nodes()[i].kind).collect();
        assert_eq!(
            items,
            [Kind::Int(1), Kind::Array { objects: false }, Kind::Object]
        );
        assert_eq!(t.nodes()[2].kind, Kind::Array { objects: true });
    }
}
