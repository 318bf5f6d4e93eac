//! The fast lane's screen: whether a line read into a [`Tape`] needs no redaction at
//! all. When it says so, the general path ([`Redactor::redact_value`] after the scan
//! of the whole text, as `check` runs it) would change nothing either; when it cannot
//! tell cheaply (a key, a name/value pair or an argument vector that could give a
//! value context, a key or an array item with escapes), it says no and leaves the
//! line to the general path.
//!
//! Escaped strings are judged decoded, as the general path does, but most without a
//! second search: every hit of a detector starts at an occurrence of a literal its
//! search looks for (see [`Redactor::find_noting`]), and a decoded string holds an
//! occurrence only (a) inside a stretch it copies from the line, where the line's own
//! search reported a match over that stretch (an occurrence a leftmost-first search
//! does not report starts inside one it does), or (b) over a byte an escape put there
//! (a quote, a backslash, a control byte), which [`Around`] lists the literals for.
//! A string that neither could hold is clean without being searched again; every
//! other one is searched decoded. Configured patterns are regexes, beyond this
//! reasoning: with any, every escaped string is searched.

use super::keys::key_context;
use super::tree::{argv_plan, is_name_key};
use super::{Around, Ctx, Redactor, TRIGGERS, render};
use crate::audit::tape::{self, Kind, Tape};
use std::borrow::Cow;

/// Buffers of [`Redactor::lane_clean`], kept by the caller between lines.
#[derive(Debug, Default)]
pub struct LaneScratch {
    /// The text of the escaped string being judged.
    decoded: String,
    /// Spans of the line where its literal searches reported a match.
    seen: Vec<(usize, usize)>,
}

impl LaneScratch {
    pub const fn new() -> LaneScratch {
        LaneScratch {
            decoded: String::new(),
            seen: Vec::new(),
        }
    }
}

impl Redactor {
    /// True when neither the text detectors nor the structure find anything to
    /// redact in `line`, read into `tape`.
    pub fn lane_clean(&self, line: &str, tape: &Tape, scratch: &mut LaneScratch) -> bool {
        let LaneScratch { decoded, seen } = scratch;
        seen.clear();
        let mut hits = Vec::new();
        self.find_noting(line, &mut hits, Some(seen));
        if matches!(render(line, hits), Cow::Owned(_)) {
            return false;
        }
        let nodes = tape.nodes();
        let text = |i: usize| {
            let n = nodes[i];
            line.get(n.start as usize + 1..n.end as usize - 1)
                .unwrap_or_default()
        };
        for (i, n) in nodes.iter().enumerate() {
            let clean = match n.kind {
                // Keys never hold escapes in the lane: the scan of the line read them.
                Kind::Key => key_context(text(i)) == Ctx::None,
                Kind::EscStr => {
                    let raw = text(i);
                    tape::decode(raw, decoded);
                    let from = n.start as usize + 1;
                    self.decoded_clean(raw, (from, from + raw.len()), decoded, seen)
                }
                Kind::Object => tape.members(i).all(|(k, v)| {
                    !is_name_key(text(k))
                        || match nodes[v].kind {
                            Kind::Str => key_context(text(v)) == Ctx::None,
                            Kind::EscStr => false,
                            _ => true,
                        }
                }),
                Kind::Array { .. } => {
                    let escaped = tape.items(i).any(|t| nodes[t].kind == Kind::EscStr);
                    !escaped
                        && argv_plan(
                            tape.items(i)
                                .map(|t| (nodes[t].kind == Kind::Str).then(|| text(t))),
                        )
                        .is_empty()
                }
                _ => true,
            };
            if !clean {
                return false;
            }
        }
        true
    }

    /// Whether `decoded`, the text of the string written `raw` at `span` of a line
    /// whose searches reported matches at `seen`, has nothing to redact: without a
    /// search when no literal can occur in it (see the module's doc), by one otherwise.
    fn decoded_clean(
        &self,
        raw: &str,
        span: (usize, usize),
        decoded: &str,
        seen: &[(usize, usize)],
    ) -> bool {
        let copied_clean = !seen.iter().any(|&(a, e)| a < span.1 && e > span.0);
        let sure = self.extra.is_empty() && copied_clean && escapes_start_nothing(raw, decoded);
        sure || matches!(self.redact_str(decoded), Cow::Borrowed(_))
    }
}

/// True when no literal searched for occurs in `decoded` (the decoding of `raw`,
/// the text between a JSON string's quotes) over a byte one of `raw`'s escapes put
/// there. False as well for an escape whose byte the check does not follow: `\/`,
/// and `\u` for anything but a control byte (any byte at all could come of those).
pub(super) fn escapes_start_nothing(raw: &str, decoded: &str) -> bool {
    let (r, d) = (raw.as_bytes(), decoded.as_bytes());
    let around: &[Around] = &TRIGGERS.around;
    let (mut i, mut removed) = (0, 0);
    while let Some(k) = memchr::memchr(b'\\', &r[i..]) {
        let at = i + k;
        let (byte, len) = match r.get(at + 1) {
            Some(b'"') => (b'"', 2),
            Some(b'\\') => (b'\\', 2),
            Some(b'b') => (0x08, 2),
            Some(b'f') => (0x0c, 2),
            Some(b'n') => (b'\n', 2),
            Some(b'r') => (b'\r', 2),
            Some(b't') => (b'\t', 2),
            Some(b'u') => match raw
                .get(at + 2..at + 6)
                .and_then(|h| u32::from_str_radix(h, 16).ok())
            {
                Some(code) if code < 0x20 => (code as u8, 6),
                _ => return false,
            },
            _ => return false,
        };
        let p = at - removed;
        if d.get(p) != Some(&byte) {
            return false;
        }
        if around.iter().any(|a| a.byte == byte && a.occurs(d, p)) {
            return false;
        }
        removed += len - 1;
        i = at + len;
    }
    true
}
