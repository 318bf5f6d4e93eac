//! Where the configuration comes from: the main file and the drop-ins of `conf.d`,
//! parsed with their positions, merged, `${VAR}`-expanded and deserialized into
//! [`RawConfig`], with every problem placed at a file, line and column.
//!
//! The steps, in order:
//! 1. Files: the main file (`--config`, `$AUDITSHIP_CONFIG`, else the user's
//!    `$XDG_CONFIG_HOME/auditship/auditship.toml` (`~/.config/…`) when present, else
//!    `/etc/auditship/auditship.toml` when present), then every `*.toml` in the
//!    `conf.d` directory next to it, by file name (bytewise); names starting with `.`
//!    are skipped. A missing `conf.d` is not an error.
//! 2. Each file is parsed to a spanned table; spans are moved into one offset space
//!    (file *i* starts after file *i-1* ends), so a span alone names its file.
//! 3. Merge, later files winning: tables merge key by key, recursively; an array of
//!    tables that all have a string `name` (`[[source]]`, `[[sink]]`,
//!    `redact.patterns`) merges by name: a known name is deep-merged into its entry,
//!    a new name is appended. Any other value, including other arrays, is replaced
//!    (`[]` clears a list). In a named array, `enabled = false` removes the entry and
//!    `enabled = true` keeps it; `enabled` is valid only there.
//! 4. `${VAR}` / `${VAR:-default}` in string values ([`super::interpolate`]).
//! 5. Deserialize into [`RawConfig`]. serde stops at the first error, so each error
//!    is recorded, the offending key or table removed, and deserialization repeated:
//!    unknown keys and wrong types all come out in one pass.
//! 6. Validation (the caller's), whose messages start with a logical path such as
//!    `sink[0] ("a").index`; that path is looked up in the merged tree to find
//!    where the key was written.
//!
//! Problems that merely follow from one already reported (a value left unexpanded,
//! a key removed for its wrong type) are not reported again.

use super::interpolate;
use super::{ConfigError, DEFAULT_PATH, RawConfig};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// The drop-in directory's name, next to the main file.
pub const CONF_DIR: &str = "conf.d";

/// Which sections get `${VAR}` expansion: `record` expands only the sections it
/// uses, so a variable set for the daemon alone does not break Claude Code's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Record,
    All,
}

const RECORD_SECTIONS: [&str; 3] = ["record", "redact", "compliance"];

/// A validated value and where it came from.
#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    /// The main file; `None` when no file was named and the default is absent.
    pub main: Option<PathBuf>,
    /// Every file read, in the order applied.
    pub files: Vec<PathBuf>,
    /// The settings whose value refers to an environment variable.
    pub from_env: Vec<FromEnv>,
}

/// A setting whose value came (at least in part) from the environment: `${VAR}`.
/// Its value may be a secret, so output shows it as written, never expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEnv {
    /// Where it is in the merged tree: table keys, and array indices in decimal
    /// (`["sink", "0", "headers", "Authorization"]`).
    pub path: Vec<String>,
    /// The value as written, references unexpanded (`"Bearer ${TOKEN}"`).
    pub written: String,
}

/// The main file and the drop-in directory for a `--config` flag (or none): the
/// flag, else `$AUDITSHIP_CONFIG`, else the user's file ([`user_path`]) when it
/// exists, else [`DEFAULT_PATH`] when it exists. The drop-ins are the `conf.d` next
/// to the main file (next to [`DEFAULT_PATH`] when there is none).
pub fn locate(flag: Option<&Path>) -> (Option<PathBuf>, PathBuf) {
    let named = flag.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("AUDITSHIP_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let main = match named {
        Some(p) => Some(p),
        None => user_path()
            .into_iter()
            .chain([PathBuf::from(DEFAULT_PATH)])
            .find(|p| p.exists()),
    };
    let beside = main.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let dir = match beside.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(CONF_DIR),
        _ => PathBuf::from(CONF_DIR),
    };
    (main, dir)
}

/// The user's own file, the one the per-user unit (`systemd/auditship-user.service`)
/// runs on: `$XDG_CONFIG_HOME/auditship/auditship.toml`, else
/// `~/.config/auditship/auditship.toml`. `None` without a home directory.
pub fn user_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        // The XDG specification ignores a relative value.
        Some(x) if Path::new(&x).is_absolute() => PathBuf::from(x),
        _ => {
            let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
            PathBuf::from(home).join(".config")
        }
    };
    Some(base.join("auditship").join("auditship.toml"))
}

/// The `*.toml` files of a drop-in directory, in the order they apply.
pub fn drop_ins(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    use std::os::unix::ffi::OsStrExt as _;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if !bytes.ends_with(b".toml") || bytes.starts_with(b".") {
            continue;
        }
        let path = entry.path();
        let file = match entry.file_type()? {
            t if t.is_file() => true,
            t if t.is_symlink() => std::fs::metadata(&path).is_ok_and(|m| m.is_file()),
            _ => false,
        };
        if file {
            found.push((name, path));
        }
    }
    found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The texts read, and where each starts in the shared offset space.
struct Files {
    paths: Vec<PathBuf>,
    texts: Vec<String>,
    bases: Vec<usize>,
}

/// One problem: a message and, when known, the offset it is about.
struct Problem {
    file: Option<usize>,
    offset: Option<usize>,
    message: String,
}

impl Files {
    fn file_of(&self, offset: usize) -> Option<usize> {
        (0..self.texts.len())
            .rev()
            .find(|&i| self.bases[i] <= offset && offset <= self.bases[i] + self.texts[i].len())
    }

    /// 1-based line and column (in characters) of a global offset.
    fn line_col(&self, offset: usize) -> Option<(usize, usize, usize)> {
        let i = self.file_of(offset)?;
        let text = &self.texts[i];
        let mut local = offset - self.bases[i];
        while !text.is_char_boundary(local) {
            local -= 1;
        }
        let before = &text[..local];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        Some((i, line, text[line_start..local].chars().count() + 1))
    }

    fn at(&self, offset: usize, message: String) -> Problem {
        Problem {
            file: self.file_of(offset),
            offset: Some(offset),
            message,
        }
    }

    fn render(&self, mut problems: Vec<Problem>) -> ConfigError {
        problems.sort_by_key(|p| (p.file.unwrap_or(usize::MAX), p.offset.unwrap_or(0)));
        ConfigError(
            problems
                .into_iter()
                .map(
                    |p| match (p.offset.and_then(|o| self.line_col(o)), p.file) {
                        (Some((i, line, col)), _) => format!(
                            "{}: line {line}, column {col}: {}",
                            self.paths[i].display(),
                            p.message
                        ),
                        (None, Some(i)) => format!("{}: {}", self.paths[i].display(), p.message),
                        (None, None) => p.message,
                    },
                )
                .collect(),
        )
    }
}

/// Reads, merges and validates the configuration. `validate` receives the merged
/// [`RawConfig`] and pushes its problems, each starting with the logical path of the
/// key it is about (`record.on_error: ...`). All problems, of every file and kind,
/// come back together.
pub fn load<T>(
    flag: Option<&Path>,
    scope: Scope,
    validate: impl FnOnce(&RawConfig, &mut Vec<String>) -> T,
) -> Result<Loaded<T>, ConfigError> {
    let (main, dir) = locate(flag);
    let mut paths: Vec<PathBuf> = main.iter().cloned().collect();
    let mut problems = Vec::new();
    match drop_ins(&dir) {
        Ok(d) => paths.extend(d),
        Err(e) => problems.push(Problem {
            file: None,
            offset: None,
            message: format!("{}: cannot list the drop-in directory: {e}", dir.display()),
        }),
    }
    let mut files = Files {
        paths: Vec::new(),
        texts: Vec::new(),
        bases: Vec::new(),
    };
    let mut base = 0;
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                files.bases.push(base);
                base += text.len() + 1;
                files.texts.push(text);
                files.paths.push(path);
            }
            Err(e) => problems.push(Problem {
                file: None,
                offset: None,
                message: format!("{}: cannot read: {e}", path.display()),
            }),
        }
    }

    let mut trees = Vec::new();
    for (i, text) in files.texts.iter().enumerate() {
        let (doc, errors) = DeTable::parse_recoverable(text);
        if errors.is_empty() {
            let doc = doc.into_inner();
            trees.push(match files.bases[i] {
                0 => doc,
                base => rebase_table(doc, base),
            });
        }
        // A broken line can confuse the parser about what follows: the first error
        // of a file is the one worth reading.
        if let Some(e) = errors.first() {
            let offset = files.bases[i] + e.span().map_or(0, |s| s.start);
            problems.push(Problem {
                file: Some(i),
                offset: Some(offset),
                message: format!(
                    "TOML syntax: {}",
                    e.message()
                        .trim()
                        .trim_end_matches(", expected nothing")
                        .replace('\n', "; ")
                ),
            });
        }
    }
    if !problems.is_empty() {
        return Err(files.render(problems));
    }

    let mut tree = DeTable::new();
    for t in trees {
        merge_table(&mut tree, t, "", &files, &mut problems);
    }
    apply_enabled(&mut tree, "", &files, &mut problems);

    let mut poisoned = HashSet::new();
    let lookup = |name: &str| std::env::var(name).ok();
    let mut expansion = Expansion {
        lookup: &lookup,
        files: &files,
        problems: &mut problems,
        poisoned: &mut poisoned,
        from_env: Vec::new(),
    };
    for (k, v) in tree.iter_mut() {
        let section: &str = k.get_ref();
        if scope == Scope::All || RECORD_SECTIONS.contains(&section) {
            let at = k.span().start;
            expansion.value(v, section, &mut vec![section.to_string()], at);
        }
    }
    let from_env = expansion.from_env;

    let root_span = usize::MAX - 1..usize::MAX;
    let mut pruned: HashSet<(Range<usize>, String)> = HashSet::new();
    let raw = loop {
        let whole = Spanned::new(root_span.clone(), DeValue::Table(tree.clone()));
        let err = match RawConfig::deserialize(toml::de::ValueDeserializer::from(whole)) {
            Ok(raw) => break Some(raw),
            Err(e) => e,
        };
        let span = err.span().unwrap_or(root_span.clone());
        let message = toml_words(err.message());
        let after_prune =
            missing_field(&message).is_some_and(|f| pruned.contains(&(span.clone(), f)));
        match prune(&mut tree, &root_span, &span, "", &mut pruned) {
            Some(path) => {
                if !after_prune {
                    problems.push(files.at(span.start, label(&path, &message)));
                }
            }
            None => {
                problems.push(Problem {
                    file: files.file_of(span.start),
                    offset: (span != root_span).then_some(span.start),
                    message,
                });
                break None;
            }
        }
    };
    let Some(raw) = raw else {
        return Err(files.render(problems));
    };

    let mut semantic = Vec::new();
    let value = validate(&raw, &mut semantic);
    for message in semantic {
        let found = place(&tree, &root_span, logical_path(&message));
        if found.exact.is_some_and(|k| poisoned.contains(&k))
            || found.missing.as_ref().is_some_and(|m| pruned.contains(m))
        {
            continue;
        }
        match found.offset {
            Some(o) => problems.push(files.at(o, message)),
            None => problems.push(Problem {
                file: (!files.paths.is_empty()).then_some(0),
                offset: None,
                message,
            }),
        }
    }
    if !problems.is_empty() {
        return Err(files.render(problems));
    }
    Ok(Loaded {
        value,
        main,
        files: files.paths,
        from_env,
    })
}

fn label(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// serde's words for types, in TOML's.
fn toml_words(message: &str) -> String {
    let mut m = message.to_string();
    for (rust, toml) in [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u8", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected a table"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: map", "invalid type: table"),
    ] {
        m = m.replace(rust, toml);
    }
    m
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

fn shift(span: Range<usize>, base: usize) -> Range<usize> {
    span.start + base..span.end + base
}

fn rebase_table(table: DeTable<'_>, base: usize) -> DeTable<'_> {
    let mut out = DeTable::new();
    for (k, v) in table {
        let span = shift(k.span(), base);
        out.insert(Spanned::new(span, k.into_inner()), rebase(v, base));
    }
    out
}

fn rebase(v: Spanned<DeValue<'_>>, base: usize) -> Spanned<DeValue<'_>> {
    let span = shift(v.span(), base);
    let inner = match v.into_inner() {
        DeValue::Table(t) => DeValue::Table(rebase_table(t, base)),
        DeValue::Array(a) => {
            let mut out = DeArray::new();
            for item in a {
                out.push(rebase(item, base));
            }
            DeValue::Array(out)
        }
        other => other,
    };
    Spanned::new(span, inner)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn name_of<'v>(v: &'v DeValue<'_>) -> Option<&'v str> {
    v.as_table()?.get("name")?.get_ref().as_str()
}

/// An array of tables that each have a string `name`: merged by name.
fn named(a: &DeArray<'_>) -> bool {
    !a.is_empty() && a.iter().all(|e| name_of(e.get_ref()).is_some())
}

/// `sink[1] ("b")`, as validation names an entry.
fn element_label(path: &str, i: usize, e: &DeValue<'_>) -> String {
    match name_of(e) {
        Some(n) => format!("{path}[{i}] ({n:?})"),
        None => format!("{path}[{i}]"),
    }
}

fn merge_table<'a>(
    into: &mut DeTable<'a>,
    from: DeTable<'a>,
    path: &str,
    files: &Files,
    problems: &mut Vec<Problem>,
) {
    for (k, v) in from {
        let key_path = join(path, k.get_ref());
        let span = v.span();
        let existing = into.remove_entry(k.get_ref().as_ref());
        let (key, value) = match existing {
            Some((old_key, old)) => {
                let old_span = old.span();
                match (old.into_inner(), v.into_inner()) {
                    (DeValue::Table(mut t), DeValue::Table(n)) => {
                        merge_table(&mut t, n, &key_path, files, problems);
                        (old_key, Spanned::new(old_span, DeValue::Table(t)))
                    }
                    (DeValue::Array(a), DeValue::Array(b)) if named(&a) && named(&b) => {
                        let merged = merge_named(a, b, &key_path, files, problems);
                        (old_key, Spanned::new(old_span, DeValue::Array(merged)))
                    }
                    (_, new) => (k, fresh(new, span, &key_path, files, problems)),
                }
            }
            None => (k, fresh(v.into_inner(), span, &key_path, files, problems)),
        };
        into.insert(key, value);
    }
}

/// A value new to the tree, through the same merge so that nested tables and names
/// get the same checks.
fn fresh<'a>(
    v: DeValue<'a>,
    span: Range<usize>,
    path: &str,
    files: &Files,
    problems: &mut Vec<Problem>,
) -> Spanned<DeValue<'a>> {
    let v = match v {
        DeValue::Table(n) => {
            let mut t = DeTable::new();
            merge_table(&mut t, n, path, files, problems);
            DeValue::Table(t)
        }
        DeValue::Array(b) if named(&b) => {
            DeValue::Array(merge_named(DeArray::new(), b, path, files, problems))
        }
        other => other,
    };
    Spanned::new(span, v)
}

fn merge_named<'a>(
    base: DeArray<'a>,
    from: DeArray<'a>,
    path: &str,
    files: &Files,
    problems: &mut Vec<Problem>,
) -> DeArray<'a> {
    let mut items: Vec<Spanned<DeValue<'a>>> = base.into_iter().collect();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for e in from {
        let span = e.span();
        let DeValue::Table(t) = e.into_inner() else {
            continue;
        };
        let Some(name) = t
            .get("name")
            .and_then(|n| n.get_ref().as_str())
            .map(str::to_string)
        else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            let line = files.line_col(*first).map_or(0, |(_, l, _)| l);
            problems.push(files.at(
                span.start,
                format!(
                    "{path}: name {name:?} is used twice in this file (first at line {line}); a later file overrides an entry by its name"
                ),
            ));
        }
        seen.push((name.clone(), span.start));
        let i = items
            .iter()
            .position(|i| name_of(i.get_ref()) == Some(&name));
        let label = format!("{path}[{}] ({name:?})", i.unwrap_or(items.len()));
        match i.map(|i| items[i].get_mut()) {
            Some(DeValue::Table(existing)) => merge_table(existing, t, &label, files, problems),
            _ => {
                let mut fresh = DeTable::new();
                merge_table(&mut fresh, t, &label, files, problems);
                items.push(Spanned::new(span, DeValue::Table(fresh)));
            }
        }
    }
    let mut out = DeArray::new();
    for i in items {
        out.push(i);
    }
    out
}

/// Drops the entries of named arrays that say `enabled = false`, and the `enabled`
/// keys of the others.
fn apply_enabled(table: &mut DeTable<'_>, path: &str, files: &Files, problems: &mut Vec<Problem>) {
    for (k, v) in table.iter_mut() {
        let key_path = join(path, k.get_ref());
        match v.get_mut() {
            DeValue::Table(t) => apply_enabled(t, &key_path, files, problems),
            DeValue::Array(a) if named(a) => {
                let items = std::mem::replace(a, DeArray::new());
                for (i, mut e) in items.into_iter().enumerate() {
                    let at = element_label(&key_path, i, e.get_ref());
                    let DeValue::Table(t) = e.get_mut() else {
                        continue;
                    };
                    let keep = match t.remove("enabled") {
                        None => true,
                        Some(flag) => match flag.get_ref().as_bool() {
                            Some(b) => b,
                            None => {
                                problems.push(files.at(
                                    flag.span().start,
                                    format!("{at}.enabled: expected true or false"),
                                ));
                                true
                            }
                        },
                    };
                    if keep {
                        apply_enabled(t, &at, files, problems);
                        a.push(e);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The merged settings as written (after layering and `enabled`, before `${VAR}`
/// expansion) as one line of text: keys sorted, integers in decimal, floats in their
/// shortest form, no comments or layout. The tests of the merge compare it; the
/// configuration hash is taken over the effective settings instead
/// ([`super::effective::hash`]).
#[cfg(test)]
pub fn canonical(table: &DeTable<'_>) -> String {
    let mut out = String::from("auditship-config-v1\n");
    write_table(table, &mut out);
    out
}

#[cfg(test)]
fn write_table(table: &DeTable<'_>, out: &mut String) {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(k.get_ref().as_ref()).to_string());
        out.push(':');
        write_value(v.get_ref(), out);
    }
    out.push('}');
}

#[cfg(test)]
fn write_value(v: &DeValue<'_>, out: &mut String) {
    use std::fmt::Write as _;
    match v {
        DeValue::String(s) => out.push_str(&serde_json::Value::from(s.as_ref()).to_string()),
        DeValue::Integer(n) => {
            let digits = n.as_str().replace('_', "");
            match i128::from_str_radix(&digits, n.radix()) {
                Ok(x) => write!(out, "{x}").unwrap_or(()),
                Err(_) => out.push_str(&digits),
            }
        }
        DeValue::Float(f) => {
            let text = f.as_str().replace('_', "");
            match text.parse::<f64>() {
                Ok(x) => write!(out, "{x:?}").unwrap_or(()),
                Err(_) => out.push_str(&text),
            }
        }
        DeValue::Boolean(b) => write!(out, "{b}").unwrap_or(()),
        DeValue::Datetime(d) => write!(out, "datetime({d})").unwrap_or(()),
        DeValue::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item.get_ref(), out);
            }
            out.push(']');
        }
        DeValue::Table(t) => write_table(t, out),
    }
}

/// What `${VAR}` expansion needs, and what it found.
struct Expansion<'x> {
    lookup: &'x dyn Fn(&str) -> Option<String>,
    files: &'x Files,
    problems: &'x mut Vec<Problem>,
    /// Keys whose value could not be expanded (their later errors are not reported).
    poisoned: &'x mut HashSet<usize>,
    from_env: Vec<FromEnv>,
}

impl Expansion<'_> {
    /// Expands `${VAR}` in every string below `v`. `path` is its logical path (for
    /// messages), `at` the same as tree keys and indices (for [`FromEnv`]), `key_at`
    /// the offset of the nearest key, which is what a later validation error about
    /// it points to.
    fn value(
        &mut self,
        v: &mut Spanned<DeValue<'_>>,
        path: &str,
        at: &mut Vec<String>,
        key_at: usize,
    ) {
        let span = v.span();
        match v.get_mut() {
            DeValue::String(s) => {
                if interpolate::has_reference(s) {
                    self.from_env.push(FromEnv {
                        path: at.clone(),
                        written: s.to_string(),
                    });
                }
                match interpolate::expand(s, self.lookup) {
                    Ok(Cow::Borrowed(_)) => {}
                    Ok(Cow::Owned(x)) => *s = Cow::Owned(x),
                    Err(p) => {
                        // The reference as written in the source, else the value's start.
                        let files = self.files;
                        let offset = files
                            .file_of(span.start)
                            .and_then(|i| {
                                let local = span.start - files.bases[i]..span.end - files.bases[i];
                                let found =
                                    files.texts[i].get(local.clone())?.find(&p.reference)?;
                                Some(span.start + found)
                            })
                            .unwrap_or(span.start);
                        self.problems
                            .push(files.at(offset, format!("{path}: {}", p.message)));
                        self.poisoned.insert(key_at);
                    }
                }
            }
            DeValue::Array(a) => {
                for (i, item) in a.iter_mut().enumerate() {
                    let label = element_label(path, i, item.get_ref());
                    at.push(i.to_string());
                    self.value(item, &label, at, key_at);
                    at.pop();
                }
            }
            DeValue::Table(t) => {
                for (k, item) in t.iter_mut() {
                    let label = join(path, k.get_ref());
                    at.push(k.get_ref().to_string());
                    self.value(item, &label, at, k.span().start);
                    at.pop();
                }
            }
            _ => {}
        }
    }
}

/// Removes the key, value or array entry whose span is `span` (the innermost one),
/// returning its logical path. Removed keys are remembered with their table's span.
fn prune(
    table: &mut DeTable<'_>,
    table_span: &Range<usize>,
    span: &Range<usize>,
    path: &str,
    pruned: &mut HashSet<(Range<usize>, String)>,
) -> Option<String> {
    let mut hit = None;
    for (k, v) in table.iter_mut() {
        let key_path = join(path, k.get_ref());
        let v_span = v.span();
        match v.get_mut() {
            DeValue::Table(t) => {
                if let Some(p) = prune(t, &v_span, span, &key_path, pruned) {
                    return Some(p);
                }
            }
            DeValue::Array(a) => {
                let mut remove = None;
                for (i, e) in a.iter_mut().enumerate() {
                    let at = element_label(&key_path, i, e.get_ref());
                    let e_span = e.span();
                    if let DeValue::Table(t) = e.get_mut()
                        && let Some(p) = prune(t, &e_span, span, &at, pruned)
                    {
                        return Some(p);
                    }
                    if e_span == *span {
                        remove = Some((i, at));
                        break;
                    }
                }
                if let Some((i, at)) = remove {
                    let items = std::mem::replace(a, DeArray::new());
                    for (j, e) in items.into_iter().enumerate() {
                        if j != i {
                            a.push(e);
                        }
                    }
                    return Some(at);
                }
            }
            _ => {}
        }
        if k.span() == *span || v_span == *span {
            hit = Some((k.get_ref().to_string(), key_path));
            break;
        }
    }
    let (key, key_path) = hit?;
    table.remove(key.as_str());
    pruned.insert((table_span.clone(), key));
    Some(key_path)
}

/// The logical path a validation message starts with: what comes before the first
/// `": "` that is not inside an entry's quoted name.
fn logical_path(message: &str) -> &str {
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if message[i..].starts_with(" (\"") {
            // Skip a quoted name, escapes included.
            let mut j = i + 3;
            while j < bytes.len() {
                match bytes[j] {
                    b'\\' => j += 2,
                    b'"' => break,
                    _ => j += 1,
                }
            }
            i = j + 1;
            continue;
        }
        if message[i..].starts_with(": ") {
            return &message[..i];
        }
        i += 1;
    }
    message
}

/// Where a validation message's key was written.
struct Place {
    /// The key (or entry header) itself, or the nearest written ancestor.
    offset: Option<usize>,
    /// The key's offset when it was found.
    exact: Option<usize>,
    /// When the key is absent: the span of the table it would be in, and its name.
    missing: Option<(Range<usize>, String)>,
}

/// Finds a logical path (`sink[0] ("a").tls`, `record.hmac_key_file/hmac_key_env`)
/// in the merged tree. `a/b` tries the key `a`, then its sibling `b`.
fn place(root: &DeTable<'_>, root_span: &Range<usize>, path: &str) -> Place {
    if let Some((head, alt)) = path.split_once('/') {
        let first = place(root, root_span, head);
        if first.missing.is_none() {
            return first;
        }
        let sibling = match head.rfind('.') {
            Some(dot) => format!("{}.{alt}", &head[..dot]),
            None => alt.to_string(),
        };
        let second = place(root, root_span, &sibling);
        return if second.missing.is_none() {
            second
        } else {
            first
        };
    }
    let mut table = root;
    let mut table_span = root_span.clone();
    let mut best = None;
    let mut rest = path;
    loop {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            return Place {
                offset: best,
                exact: best,
                missing: None,
            };
        }
        let found = table
            .iter()
            .filter(|(k, _)| {
                let k: &str = k.get_ref();
                rest.starts_with(k)
                    && matches!(rest[k.len()..].chars().next(), None | Some('.' | '[' | ' '))
            })
            .max_by_key(|(k, _)| k.get_ref().len());
        let Some((k, v)) = found else {
            let missing = rest.split(['.', '[', ' ']).next().unwrap_or(rest);
            return Place {
                offset: best,
                exact: None,
                missing: Some((table_span, missing.to_string())),
            };
        };
        best = Some(k.span().start);
        rest = &rest[k.get_ref().len()..];
        match v.get_ref() {
            DeValue::Table(t) => {
                table = t;
                table_span = v.span();
            }
            DeValue::Array(a) if rest.starts_with('[') => {
                let Some(end) = rest.find(']') else {
                    return Place {
                        offset: best,
                        exact: best,
                        missing: None,
                    };
                };
                let element = rest[1..end].parse::<usize>().ok().and_then(|i| a.get(i));
                rest = &rest[end + 1..];
                if rest.starts_with(" (\"") {
                    let label_end = logical_path_label_end(rest);
                    rest = &rest[label_end..];
                }
                match element {
                    Some(e) => {
                        best = Some(e.span().start);
                        match e.get_ref() {
                            DeValue::Table(t) => {
                                table = t;
                                table_span = e.span();
                            }
                            _ => {
                                return Place {
                                    offset: best,
                                    exact: best,
                                    missing: None,
                                };
                            }
                        }
                    }
                    None => {
                        return Place {
                            offset: best,
                            exact: None,
                            missing: None,
                        };
                    }
                }
            }
            _ => {
                return Place {
                    offset: best,
                    exact: best,
                    missing: None,
                };
            }
        }
    }
}

/// The length of a leading ` ("name")`.
fn logical_path_label_end(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut j = 3;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => break,
            _ => j += 1,
        }
    }
    // The closing quote and parenthesis.
    (j + 2).min(s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(texts: &[&str]) -> Files {
        let mut f = Files {
            paths: Vec::new(),
            texts: Vec::new(),
            bases: Vec::new(),
        };
        let mut base = 0;
        for (i, t) in texts.iter().enumerate() {
            f.paths.push(PathBuf::from(format!("f{i}.toml")));
            f.bases.push(base);
            base += t.len() + 1;
            f.texts.push(t.to_string());
        }
        f
    }

    /// Merges the texts in order; returns the canonical form and the problems.
    fn merged(texts: &[&str]) -> (String, Vec<String>) {
        let f = files(texts);
        let mut tree = DeTable::new();
        let mut problems = Vec::new();
        for (i, t) in f.texts.iter().enumerate() {
            let doc = DeTable::parse(t).unwrap().into_inner();
            merge_table(
                &mut tree,
                rebase_table(doc, f.bases[i]),
                "",
                &f,
                &mut problems,
            );
        }
        apply_enabled(&mut tree, "", &f, &mut problems);
        let text = canonical(&tree);
        let text = text
            .strip_prefix("auditship-config-v1\n")
            .unwrap()
            .to_string();
        (text, f.render(problems).0)
    }

    #[test]
    fn tables_merge_and_later_values_win() {
        let (m, p) = merged(&[
            "[agent]\nhost = \"a\"\nstate_dir = \"/s\"\n[agent.fields]\nx = 1\n",
            "[agent]\nhost = \"b\"\nfields = { y = 2 }\n",
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            m,
            r#"{"agent":{"fields":{"x":1,"y":2},"host":"b","state_dir":"/s"}}"#
        );
    }

    #[test]
    fn named_arrays_merge_by_name() {
        let (m, p) = merged(&[
            "[[sink]]\nname = \"a\"\nendpoint = \"x\"\nbatch = { max_events = 5, max_wait = \"1s\" }\n[[sink]]\nname = \"b\"\n",
            "[[sink]]\nname = \"c\"\n[[sink]]\nname = \"a\"\nendpoint = \"y\"\nbatch = { max_events = 6 }\n",
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            m,
            r#"{"sink":[{"batch":{"max_events":6,"max_wait":"1s"},"endpoint":"y","name":"a"},{"name":"b"},{"name":"c"}]}"#
        );
    }

    #[test]
    fn other_arrays_are_replaced_and_an_empty_one_clears() {
        let (m, _) = merged(&[
            "[[source]]\nname = \"a\"\npaths = [\"/x\", \"/y\"]\n[compliance]\nalways = [\"SOC2\"]\n[redact]\npatterns = [{ name = \"p\", regex = \"q\" }]\n",
            "[[source]]\nname = \"a\"\npaths = [\"/z\"]\n[compliance]\nalways = [\"HIPAA\"]\n[redact]\npatterns = []\n",
        ]);
        assert_eq!(
            m,
            r#"{"compliance":{"always":["HIPAA"]},"redact":{"patterns":[]},"source":[{"name":"a","paths":["/z"]}]}"#
        );
    }

    #[test]
    fn enabled_false_removes_an_entry_and_true_brings_it_back() {
        let base = "[[sink]]\nname = \"a\"\ntype = \"file\"\n[[sink]]\nname = \"b\"\n";
        let (m, p) = merged(&[base, "[[sink]]\nname = \"a\"\nenabled = false\n"]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(m, r#"{"sink":[{"name":"b"}]}"#);
        let (m, _) = merged(&[
            base,
            "[[sink]]\nname = \"a\"\nenabled = false\n",
            "[[sink]]\nname = \"a\"\nenabled = true\n",
        ]);
        assert_eq!(m, r#"{"sink":[{"name":"a","type":"file"},{"name":"b"}]}"#);
        let (_, p) = merged(&[base, "[[sink]]\nname = \"a\"\nenabled = \"no\"\n"]);
        assert_eq!(
            p,
            ["f1.toml: line 3, column 11: sink[0] (\"a\").enabled: expected true or false"]
        );
    }

    #[test]
    fn a_name_twice_in_one_file_is_an_error() {
        let (_, p) = merged(&["[[sink]]\nname = \"a\"\n[[sink]]\nname = \"a\"\n"]);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("f0.toml: line 3, column 1: sink: name \"a\" is used twice in this file (first at line 1)"),
            "{p:?}"
        );
    }

    #[test]
    fn the_hash_ignores_layout_and_file_split() {
        let (a, _) = merged(&["[agent]\nhost = \"h\" # comment\n[queue]\nmax_bytes = 0x100\n"]);
        let (b, _) = merged(&["queue.max_bytes = 256\n", "agent = { host = \"h\" }\n"]);
        assert_eq!(a, b);
        let (c, _) = merged(&["queue.max_bytes = 257\nagent = { host = \"h\" }\n"]);
        assert_ne!(a, c);
    }

    #[test]
    fn logical_paths_are_found_in_the_tree() {
        let text = "[record]\nhmac_kid = \"k\"\nhmac_key_env = \"E\"\n\n[[sink]]\nname = \"a: b\"\nindex = \"x\"\n[sink.tls]\nca_file = \"/c\"\n";
        let f = files(&[text]);
        let tree = rebase_table(DeTable::parse(text).unwrap().into_inner(), 0);
        let root = usize::MAX - 1..usize::MAX;
        let line = |msg: &str| {
            let p = place(&tree, &root, logical_path(msg));
            p.offset.and_then(|o| f.line_col(o)).map(|(_, l, c)| (l, c))
        };
        assert_eq!(
            line("sink[0] (\"a: b\").index: not a setting"),
            Some((7, 1))
        );
        assert_eq!(
            line("sink[0] (\"a: b\").tls: /c: no such file"),
            Some((8, 7))
        );
        assert_eq!(line("sink[0] (\"a: b\"): needs a token"), Some((5, 1)));
        // Absent key: its table.
        assert_eq!(line("sink[0] (\"a: b\").endpoint: expected"), Some((5, 1)));
        assert_eq!(line("record.hmac_key_file/hmac_key_env: bad"), Some((3, 1)));
        assert_eq!(line("record: signing needs"), Some((1, 2)));
        assert_eq!(line("nothing like this"), None);
    }
}
