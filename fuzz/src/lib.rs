//! What the fuzz targets share: the "no detected secret survives" check, and the
//! findings that are reported but not fixed yet, so a run can go on past them.
//!
//! Each known finding is one narrow predicate with the reason it is tolerated. Remove
//! it once the code it describes is fixed: the targets then assert the full property.

use auditship::redact::Redactor;
use std::borrow::Cow;

const MARKER_OPEN: &str = "[REDACTED:";

/// Spans of the `[REDACTED:<name>]` markers in `s`, as `redact.rs` recognises them.
pub fn markers(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    for (at, _) in s.match_indices(MARKER_OPEN) {
        let from = at + MARKER_OPEN.len();
        let end = from
            + b[from..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
                .count();
        if end > from && b.get(end) == Some(&b']') {
            spans.push((at, end + 1));
        }
    }
    spans
}

/// Known finding (redact.rs): `render` skips a finding only when it lies wholly inside
/// a marker of an earlier pass, so a finding that overlaps one, or swallows it, is
/// applied again. The marker's own `:` reads as the user/password separator of a URL
/// (`https://[REDACTED:github_token]-x@host` becomes
/// `https://[REDACTED:[REDACTED:url_password]@host`); a marker reads as the start of
/// an assignment's value (`"token":"[REDACTED:secret_assignment]'\0r]` loses `'\0r]`);
/// a marker that swallowed the `/` ending a URL's authority lets a second pass see a
/// user:password spanning it. Nothing secret is exposed, but a second pass is not
/// idempotent and markers lose their detector names. True when the bytes that differ
/// between `before` and `after` touch a marker of `before`.
pub fn rematch_inside_marker(before: &str, after: &str) -> bool {
    let (b, a) = (before.as_bytes(), after.as_bytes());
    let prefix = b.iter().zip(a).take_while(|(x, y)| x == y).count();
    let room = b.len().min(a.len()) - prefix;
    let suffix = b
        .iter()
        .rev()
        .zip(a.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    let changed = prefix..b.len() - suffix;
    markers(before)
        .iter()
        .any(|&(start, end)| changed.start <= end && start <= changed.end)
}

/// The text a redactor would change, or `None` when `s` is clean (apart from the known
/// findings above).
pub fn detected<'a>(redactor: &Redactor, s: &'a str) -> Option<Cow<'a, str>> {
    match redactor.redact_str(s) {
        Cow::Borrowed(_) => None,
        Cow::Owned(again) if rematch_inside_marker(s, &again) => None,
        changed => Some(changed),
    }
}
