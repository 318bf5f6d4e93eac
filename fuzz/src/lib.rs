//! What the fuzz targets share: the "no detected secret survives" check.

use auditship::redact::Redactor;
use std::borrow::Cow;

/// The text a redactor would change, or `None` when `s` is clean.
pub fn detected<'a>(redactor: &Redactor, s: &'a str) -> Option<Cow<'a, str>> {
    match redactor.redact_str(s) {
        Cow::Borrowed(_) => None,
        changed => Some(changed),
    }
}
