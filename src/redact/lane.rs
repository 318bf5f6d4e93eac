//! The fast lane's screen: whether a line read into a [`Tape`] needs no redaction at
//! all. When it says so, the general path ([`Redactor::redact_value`] after the scan
//! of the whole text, as `check` runs it) would change nothing either; when it cannot
//! tell cheaply (a key, a name/value pair or an argument vector that could give a
//! value context, a key or an array item with escapes), it says no and leaves the
//! line to the general path.

use super::keys::key_context;
use super::tree::{argv_plan, is_name_key};
use super::{Ctx, Redactor};
use crate::audit::tape::{self, Kind, Tape};
use std::borrow::Cow;

impl Redactor {
    /// True when neither the text detectors nor the structure find anything to
    /// redact in `line`, read into `tape`. `decoded` is scratch space for the text of
    /// escaped strings.
    pub fn lane_clean(&self, line: &str, tape: &Tape, decoded: &mut String) -> bool {
        if matches!(self.redact_str(line), Cow::Owned(_)) {
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
                    tape::decode(text(i), decoded);
                    matches!(self.redact_str(decoded), Cow::Borrowed(_))
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
}
