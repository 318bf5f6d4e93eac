//! Redaction of a JSON value, where the structure says what a value is.
//!
//! Beyond the text detectors run on every string, a value is a secret because of
//! where it stands: under a key that names one (`password`, `GITHUB_TOKEN`,
//! `client_secret`), at any depth below such a key (`{"password":{"value":…}}`,
//! `{"client_secret":[…]}`), as the value of a name/value pair whose name is one
//! (`[{"name":"DB_PASSWORD","value":…}]`), or as the argument after a credential flag
//! in an argument vector (`["--password", …]`, `["sshpass", "-p", …]`). Numbers in
//! those places are secrets too and become marker strings. Keys arrive unescaped from
//! the parser, so `"pass\u0077ord"` is the key `password`.
//!
//! One walk serves `serde_json` values (`record`) and the format's own reader's values
//! (`check`), through the small [`Node`] trait.

use super::argv::{self, Arg, Found};
use super::keys::{self, credential, plausible};
use super::scan::Runs;
use super::{Ctx, Hit, MARKER_OPEN, RANK_ASSIGNMENT, RANK_AUTHORIZATION, RANK_COOKIE, Redactor};
use std::fmt::Write as _;

/// Which strings a walk redacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every string: the text detectors everywhere, plus what the structure says.
    All,
    /// Only values the structure marks (under a secret-named key, in a name/value
    /// pair, after a credential flag), for a caller that scanned the text already.
    Context,
}

/// A JSON value the walk can read and change.
pub(super) trait Node: Sized {
    fn text(&self) -> Option<&str>;
    fn is_number(&self) -> bool;
    fn set_text(&mut self, s: String);
    fn items_mut(&mut self) -> Option<&mut [Self]>;
    /// Calls `f` with each member of an object (nothing for other values).
    fn members_mut(&mut self, f: &mut dyn FnMut(&str, &mut Self));
    /// The text of the first string member whose key `pick` accepts.
    fn member_text(&self, pick: fn(&str) -> bool) -> Option<&str>;
    /// Renames each member whose key `f` maps to a new one; a new key that is taken
    /// already gets a ` (2)`, ` (3)`, … suffix, so no member is lost. Returns the keys
    /// given.
    fn rename_keys(&mut self, f: &mut dyn FnMut(&str) -> Option<String>) -> Vec<String>;
}

/// `key`, or `key (n)` for the first `n` from 2 that `taken` does not hold.
fn free_key(key: String, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&key) {
        return key;
    }
    (2..)
        .map(|n| format!("{key} ({n})"))
        .find(|k| !taken(k))
        .unwrap_or(key)
}

impl Node for serde_json::Value {
    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn is_number(&self) -> bool {
        self.is_number()
    }

    fn set_text(&mut self, s: String) {
        *self = serde_json::Value::String(s);
    }

    fn items_mut(&mut self) -> Option<&mut [Self]> {
        self.as_array_mut().map(Vec::as_mut_slice)
    }

    fn members_mut(&mut self, f: &mut dyn FnMut(&str, &mut Self)) {
        if let Some(m) = self.as_object_mut() {
            for (k, v) in m.iter_mut() {
                f(k, v);
            }
        }
    }

    fn member_text(&self, pick: fn(&str) -> bool) -> Option<&str> {
        self.as_object()?
            .iter()
            .find(|(k, v)| v.is_string() && pick(k))
            .and_then(|(_, v)| v.as_str())
    }

    fn rename_keys(&mut self, f: &mut dyn FnMut(&str) -> Option<String>) -> Vec<String> {
        let Some(m) = self.as_object_mut() else {
            return Vec::new();
        };
        let renames: Vec<(String, String)> = m
            .keys()
            .filter_map(|k| f(k).map(|new| (k.clone(), new)))
            .collect();
        let mut given = Vec::with_capacity(renames.len());
        for (old, new) in renames {
            if let Some(v) = m.remove(&old) {
                let new = free_key(new, |k| m.contains_key(k));
                given.push(new.clone());
                m.insert(new, v);
            }
        }
        given
    }
}

impl Node for crate::audit::json::Value<'_> {
    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn is_number(&self) -> bool {
        matches!(self, Self::Number(_))
    }

    fn set_text(&mut self, s: String) {
        *self = Self::String(s.into());
    }

    fn items_mut(&mut self) -> Option<&mut [Self]> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }

    fn members_mut(&mut self, f: &mut dyn FnMut(&str, &mut Self)) {
        if let Self::Object(members) = self {
            for (k, v) in members.iter_mut() {
                f(k, v);
            }
        }
    }

    fn member_text(&self, pick: fn(&str) -> bool) -> Option<&str> {
        self.as_object()?
            .iter()
            .find(|(k, v)| v.as_str().is_some() && pick(k))
            .and_then(|(_, v)| v.as_str())
    }

    fn rename_keys(&mut self, f: &mut dyn FnMut(&str) -> Option<String>) -> Vec<String> {
        let Self::Object(members) = self else {
            return Vec::new();
        };
        let mut given = Vec::new();
        for i in 0..members.len() {
            if let Some(new) = f(&members[i].0) {
                let new = free_key(new, |k| members.iter().any(|(m, _)| m == k));
                given.push(new.clone());
                members[i].0 = new.into();
            }
        }
        if !given.is_empty() {
            members.sort_by(|a, b| crate::audit::json::cmp_utf16(&a.0, &b.0));
        }
        given
    }
}

/// Keys that name the other member of a name/value pair.
pub(super) fn is_name_key(k: &str) -> bool {
    const NAMES: [&str; 9] = [
        "name",
        "key",
        "parameterkey",
        "optionname",
        "variable",
        "var",
        "header",
        "field",
        "param",
    ];
    NAMES.iter().any(|n| k.eq_ignore_ascii_case(n))
}

/// Keys that hold the value of a name/value pair.
fn is_value_key(k: &str) -> bool {
    const VALUES: [&str; 5] = ["value", "parametervalue", "val", "default", "defaultvalue"];
    VALUES.iter().any(|n| k.eq_ignore_ascii_case(n))
}

/// The walk's mutable state: the current path and the changed paths.
pub(super) struct Walk<'r> {
    pub(super) redactor: &'r Redactor,
    pub(super) scope: Scope,
    pub(super) path: String,
    pub(super) out: &'r mut Vec<String>,
}

impl Walk<'_> {
    pub(super) fn value<N: Node>(&mut self, v: &mut N, ctx: Ctx, extra: &[Found]) {
        if let Some(s) = v.text() {
            if self.scope == Scope::Context && ctx == Ctx::None && extra.is_empty() {
                return;
            }
            if let Some(new) = self.redactor.redact_field(ctx, s, extra) {
                v.set_text(new);
                self.out.push(self.path.clone());
            }
        } else if v.is_number() {
            if let Some(name) = ctx.name() {
                v.set_text(format!("{MARKER_OPEN}{name}]"));
                self.out.push(self.path.clone());
            }
        } else if let Some(items) = v.items_mut() {
            self.array(items, ctx);
        } else {
            self.object(v, ctx);
        }
    }

    fn array<N: Node>(&mut self, items: &mut [N], ctx: Ctx) {
        let plan = argv_plan(items.iter().map(Node::text));
        for (i, item) in items.iter_mut().enumerate() {
            let len = self.path.len();
            let _ = write!(self.path, "[{i}]");
            let mine = plan.iter().filter(|f| f.arg == i);
            // An empty name marks the value of a `--password`-like flag: all of it.
            let item_ctx = if mine.clone().any(|f| f.name.is_empty()) {
                ctx.or(Ctx::Flag)
            } else {
                ctx
            };
            let found: Vec<Found> = mine.filter(|f| !f.name.is_empty()).copied().collect();
            self.value(item, item_ctx, &found);
            self.path.truncate(len);
        }
    }

    fn object<N: Node>(&mut self, v: &mut N, ctx: Ctx) {
        if self.scope == Scope::All {
            self.redact_keys(v);
        }
        let pair = if ctx == Ctx::None {
            v.member_text(is_name_key).map(keys::key_context)
        } else {
            None
        };
        v.members_mut(&mut |k, child| {
            let mut c = ctx.or(keys::key_context(k));
            if let Some(p) = pair.filter(|_| is_value_key(k)) {
                c = c.or(p);
            }
            let len = self.path.len();
            if len > 0 {
                self.path.push('.');
            }
            self.path.push_str(k);
            self.value(child, c, &[]);
            self.path.truncate(len);
        });
    }
}

impl Walk<'_> {
    /// Keys are text too: a key holding a secret (`{"Bearer eyJ…": 1}`) is renamed to
    /// its redacted text, and its path is reported with the new key.
    fn redact_keys<N: Node>(&mut self, v: &mut N) {
        let redactor = self.redactor;
        let given = v.rename_keys(&mut |k| match redactor.redact_str(k) {
            std::borrow::Cow::Owned(clean) => Some(clean),
            std::borrow::Cow::Borrowed(_) => None,
        });
        for k in given {
            let sep = if self.path.is_empty() { "" } else { "." };
            self.out.push(format!("{}{sep}{k}", self.path));
        }
    }
}

/// Secrets an array holds as an argument vector: the item after a `--password`-like
/// flag (`Found` with an empty name: the whole item, as under a secret key), and the
/// credentials of a known program's arguments (`["sshpass", "-p", …]`).
pub(super) fn argv_plan<'s>(items: impl Iterator<Item = Option<&'s str>> + Clone) -> Vec<Found> {
    let mut plan = Vec::new();
    let mut prev_flag = false;
    let mut program = None;
    for (i, text) in items.clone().enumerate() {
        let Some(s) = text else {
            prev_flag = false;
            continue;
        };
        let is_option = s.starts_with('-');
        if prev_flag && !is_option {
            plan.push(Found {
                arg: i,
                start: 0,
                end: s.len(),
                name: "",
            });
        }
        prev_flag = secret_flag(s);
        if program.is_none() && !s.contains([' ', '\t']) {
            program = argv::command(s.as_bytes()).map(|c| (i, c));
        }
    }
    if let Some((p, cmd)) = program {
        let args: Vec<Arg<'_>> = items
            .skip(p + 1)
            .map(|text| Arg {
                bytes: text.unwrap_or_default().as_bytes(),
                at: 0,
                literal: true,
            })
            .collect();
        let mut found = Vec::new();
        argv::apply(cmd, &args, &mut found);
        plan.extend(found.into_iter().map(|f| Found {
            arg: f.arg + p + 1,
            ..f
        }));
    }
    plan
}

/// A long option naming a secret, whose value is the next argument: `--password`.
fn secret_flag(arg: &str) -> bool {
    arg.starts_with("--")
        && arg.bytes().all(super::scan::is_key_char)
        && matches!(keys::key_context(arg), Ctx::Secret(k) if k.flag)
}

impl Redactor {
    /// The redacted value of a string in context `ctx` with `extra` findings of the
    /// argument-vector rules (offsets into `s`), or `None` if unchanged.
    pub(super) fn redact_field(&self, ctx: Ctx, s: &str, extra: &[Found]) -> Option<String> {
        self.pass(s, ctx, extra).map(|once| self.settle(once, ctx))
    }

    /// One pass of every detector over `s`, with the context's own findings.
    pub(super) fn pass(&self, s: &str, ctx: Ctx, extra: &[Found]) -> Option<String> {
        let mut hits = Vec::new();
        self.find(s, &mut hits);
        let b = s.as_bytes();
        hits.extend(
            extra
                .iter()
                .map(|f| Hit::new(f.start, f.end, super::RANK_ARGUMENT, f.name)),
        );
        match ctx {
            Ctx::None => {}
            Ctx::Secret(k) => {
                if plausible(k, b) {
                    hits.push(Hit::new(0, s.len(), RANK_ASSIGNMENT, k.name));
                }
            }
            Ctx::Flag => {
                if !s.is_empty() && !s.starts_with('$') {
                    hits.push(Hit::new(0, s.len(), RANK_ASSIGNMENT, "secret_assignment"));
                }
            }
            Ctx::Authorization => {
                let found = credential(b, 0, &mut Runs::new(super::scan::in_value));
                hits.extend(
                    found.map(|(start, end, name)| Hit::new(start, end, RANK_AUTHORIZATION, name)),
                );
            }
            Ctx::Cookie { set } => {
                let mut found = Vec::new();
                keys::cookie_values(b, 0, b.len(), set, false, &mut found);
                hits.extend(
                    found
                        .into_iter()
                        .map(|h| Hit::new(h.start, h.end, RANK_COOKIE, "cookie")),
                );
            }
        }
        match super::render(s, hits) {
            std::borrow::Cow::Owned(new) => Some(new),
            std::borrow::Cow::Borrowed(_) => None,
        }
    }
}
