//! Byte classes and the small scanning helpers every detector shares.
//!
//! Everything here works on bytes and returns byte offsets. A run of ASCII bytes of one
//! class starts and ends at an ASCII byte or at the end of the text, so offsets found
//! by these helpers are always character boundaries when the run starts at one.

pub(super) fn is_upper_alnum(c: &u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

pub(super) fn is_word(c: &u8) -> bool {
    c.is_ascii_alphanumeric() || *c == b'_'
}

/// The base64url alphabet (`A-Z a-z 0-9 - _`): JWT segments and most token bodies.
pub(super) fn is_b64url(c: &u8) -> bool {
    is_word(c) || *c == b'-'
}

pub(super) fn is_hex(c: &u8) -> bool {
    c.is_ascii_hexdigit()
}

/// Characters of a key (`DB_PASSWORD`, `x-api-key`, `spring.datasource.password`),
/// and of a detector name, so of a marker.
pub(super) fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

pub(super) fn is_blank(c: &u8) -> bool {
    *c == b' ' || *c == b'\t'
}

/// Where an unquoted value stops: blanks, quotes, and shell, URL-query and JSON delimiters.
pub(super) fn ends_value(c: u8) -> bool {
    c.is_ascii_whitespace() || b"\"'`\\&;,|<>)]}".contains(&c)
}

/// The end of the run of bytes from `from` that satisfy `f`.
pub(super) fn run(b: &[u8], from: usize, f: impl Fn(&u8) -> bool) -> usize {
    from + b[from..].iter().take_while(|c| f(c)).count()
}

/// The start of the run of bytes before `end` that satisfy `f`.
pub(super) fn run_back(b: &[u8], end: usize, f: impl Fn(&u8) -> bool) -> usize {
    end - b[..end].iter().rev().take_while(|c| f(c)).count()
}

pub(super) fn skip_blanks(b: &[u8], from: usize) -> usize {
    run(b, from, is_blank)
}

/// `end` moved back over trailing dots, not before `from`: a sentence's full stop is
/// not part of a token.
pub(super) fn trim_dots(b: &[u8], from: usize, mut end: usize) -> usize {
    while end > from && b[end - 1] == b'.' {
        end -= 1;
    }
    end
}

pub(super) fn ends_with_ignore_case(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The next unescaped `q` at or after `from` (a `"` after an odd number of
/// backslashes is escaped; shell single quotes have no escapes). Linear overall: every
/// opening quote closes the value before it, so searches of one kind do not overlap.
pub(super) fn closing_quote(b: &[u8], from: usize, q: u8) -> Option<usize> {
    let mut i = from;
    while let Some(off) = memchr::memchr(q, &b[i..]) {
        let j = i + off;
        let backslashes = b[..j].iter().rev().take_while(|&&c| c == b'\\').count();
        if q == b'\'' || backslashes % 2 == 0 {
            return Some(j);
        }
        i = j + 1;
    }
    None
}

/// Ends of maximal runs of one byte class. The last run is remembered: a start inside
/// it ends at the same place, so many triggers inside one long rejected run
/// (`password=$-password=$-…`, `AKIAAKIAAKIA…`) do not rescan it.
pub(super) struct Runs {
    class: fn(&u8) -> bool,
    from: usize,
    end: usize,
}

impl Runs {
    pub(super) fn new(class: fn(&u8) -> bool) -> Self {
        Runs {
            class,
            from: 0,
            end: 0,
        }
    }

    pub(super) fn end(&mut self, b: &[u8], from: usize) -> usize {
        if !(self.from..self.end).contains(&from) {
            self.from = from;
            self.end = run(b, from, self.class);
        }
        self.end
    }
}

/// Whether `needle` (not empty) occurs in `hay`: for the short windows and words the
/// detectors look for around a finding, where building a substring searcher costs
/// more than the search.
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    memchr::memchr_iter(first, hay).any(|i| hay[i..].starts_with(needle))
}

/// Searchers for what every line is searched for, built once.
pub(super) static BACKSLASH_U: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u"));
pub(super) static SCHEME_END: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"://"));

/// An unquoted value: anything up to [`ends_value`].
pub(super) fn in_value(c: &u8) -> bool {
    !ends_value(*c)
}

/// Whether `b[at..]` is inside a `[REDACTED:<name>]` marker that starts before `at`
/// and is not closed before it. Detectors that split a value at `:` use this so a
/// marker's own colon is never taken for a separator.
pub(super) fn marker_at(b: &[u8], at: usize) -> Option<(usize, usize)> {
    const OPEN: &[u8] = b"[REDACTED:";
    let from = at.saturating_sub(OPEN.len() + 64);
    let start = memchr::memmem::rfind(&b[from..(at + 1).min(b.len())], OPEN)? + from;
    let names = start + OPEN.len();
    let end = run(b, names, |&c| is_key_char(c));
    (end > names && b.get(end) == Some(&b']') && at <= end).then_some((start, end + 1))
}

/// The first `sep` in `b[from..to]` that is not inside a marker.
pub(super) fn find_outside_markers(b: &[u8], from: usize, to: usize, sep: u8) -> Option<usize> {
    let mut i = from;
    while i < to {
        let j = i + memchr::memchr(sep, &b[i..to])?;
        match marker_at(b, j) {
            Some((_, end)) => i = end,
            None => return Some(j),
        }
    }
    None
}
