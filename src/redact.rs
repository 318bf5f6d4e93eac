//! Secret redaction: finds credentials in text and replaces each with
//! `[REDACTED:<detector>]` before anything leaves the machine.
//!
//! Owns the built-in detectors (cloud and forge tokens, HTTP `Authorization`
//! credentials, PEM private keys, passwords in URLs, `password=`-style assignments),
//! the user-configured regex patterns, and the walk that applies them to every string
//! of a JSON value while recording which fields changed.
//!
//! Invariants:
//! - Pure: no IO, no global state. `redact_str` returns `Cow::Borrowed` exactly when
//!   nothing was found, so clean text costs no allocation of the result.
//! - Only the secret goes: keys, auth schemes, user names and hosts stay, so the record
//!   still says what happened (`password=[REDACTED:secret_assignment]`).
//! - Idempotent: text already inside a `[REDACTED:…]` marker is never matched again,
//!   so the daemon may redact what `record` already redacted without new changes.
//! - Overlapping findings become one marker, named after the most specific detector
//!   (token formats, then configured patterns, then context detectors).
//! - Cost: the built-ins are byte scanners gated by `str::contains` (SIMD), so building
//!   a `Redactor` compiles nothing unless patterns are configured, clean text costs a
//!   few substring checks, and every scan is linear in the input.
//!
//! Not done here: choosing which fields to redact or truncate (the caller), guessing
//! unknown secrets by entropy, and rewriting the local chained file (never done).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::RangeInclusive;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

/// A configured detector: a regex whose match, or only its group named `secret` when
/// it has one, is replaced by `[REDACTED:<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub regex: String,
}

/// The names the built-in detectors write into their markers.
pub const BUILTIN_DETECTORS: [&str; 13] = [
    "private_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "anthropic_api_key",
    "bearer",
    "basic_auth",
    "authorization",
    "url_password",
    "secret_assignment",
];

/// The built-in detectors (code, nothing to compile) plus the configured patterns.
#[derive(Debug, Clone)]
pub struct Redactor {
    extra: Vec<Extra>,
}

#[derive(Debug, Clone)]
struct Extra {
    name: String,
    regex: Regex,
    /// Index of the group named `secret`, if the pattern has one.
    secret: Option<usize>,
}

impl Redactor {
    /// Built-in detectors plus the configured ones. The error names every bad pattern.
    pub fn new(extra: &[PatternConfig]) -> Result<Redactor, String> {
        let mut compiled = Vec::with_capacity(extra.len());
        let mut errors = Vec::new();
        for p in extra {
            match Extra::compile(p) {
                Ok(x) => compiled.push(x),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(Redactor { extra: compiled })
        } else {
            Err(errors.join("; "))
        }
    }

    /// Built-ins only.
    pub fn builtin() -> Redactor {
        Redactor { extra: Vec::new() }
    }

    /// Returns the text with every secret replaced; `Cow::Owned` exactly when
    /// something changed.
    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut hits = Vec::new();
        self.find(s, &mut hits);
        render(s, hits)
    }

    /// Redacts every string value (not object keys) inside `v` in place, and pushes
    /// the dotted path of each changed value (`metadata.extra.url`,
    /// `tool_input.args[2]`) to `redacted`, starting from `path`, the path of `v`
    /// (may be empty). Keys are joined verbatim, without escaping.
    ///
    /// Beyond `redact_str`, the structure gives context: a value under a key that
    /// names a secret (`password`, `GITHUB_TOKEN`, `clientSecret`, ...) is replaced
    /// whole, one under `Authorization` keeps only its scheme, and in an array the
    /// item after a flag like `--password` is replaced whole.
    pub fn redact_json(&self, v: &mut Value, path: &str, redacted: &mut Vec<String>) {
        let mut path = path.to_owned();
        self.walk(v, None, &mut path, redacted);
    }

    fn walk(&self, v: &mut Value, key: Option<&str>, path: &mut String, out: &mut Vec<String>) {
        match v {
            Value::String(s) => {
                if let Some(new) = self.redact_field(key, s) {
                    *s = new;
                    out.push(path.clone());
                }
            }
            Value::Array(items) => {
                let mut flag: Option<&Keyword> = None;
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    // `["--password", "-v"]`: the next item is another flag, not the value.
                    let is_option = item.as_str().is_some_and(|s| s.starts_with('-'));
                    let key = flag.filter(|_| !is_option).map(|k| k.word);
                    self.walk(item, key, path, out);
                    flag = item.as_str().and_then(secret_flag);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    let len = path.len();
                    if len > 0 {
                        path.push('.');
                    }
                    path.push_str(k);
                    self.walk(item, Some(k), path, out);
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// The redacted value of a string found under `key`, or `None` if unchanged.
    fn redact_field(&self, key: Option<&str>, s: &str) -> Option<String> {
        let mut hits = Vec::new();
        self.find(s, &mut hits);
        if let Some(key) = key {
            let b = s.as_bytes();
            match key_keyword(key) {
                Some(kw) if plausible(kw, b) => {
                    hits.push(Hit::new(0, s.len(), RANK_ASSIGNMENT, kw.name));
                }
                Some(_) => {}
                None if ends_with_ignore_case(key, "authorization") => {
                    let found = credential(b, 0, &mut ValueEnds::new());
                    hits.extend(
                        found.map(|(start, end, name)| {
                            Hit::new(start, end, RANK_AUTHORIZATION, name)
                        }),
                    );
                }
                None => {}
            }
        }
        match render(s, hits) {
            Cow::Owned(new) => Some(new),
            Cow::Borrowed(_) => None,
        }
    }

    /// Every finding of every detector in `s`, unmerged.
    fn find<'r>(&'r self, s: &str, hits: &mut Vec<Hit<'r>>) {
        find_private_keys(s, hits);
        for (i, p) in PREFIXED.iter().enumerate() {
            find_prefixed(s, p, RANK_PREFIXED + i, hits);
        }
        for (i, x) in self.extra.iter().enumerate() {
            x.find(s, RANK_EXTRA + i, hits);
        }
        find_url_passwords(s, hits);
        // Key words match case-insensitively in an ASCII-lowercased copy: same offsets.
        let lower = s.to_ascii_lowercase();
        let b = s.as_bytes();
        find_authorization(b, &lower, hits);
        find_bearer(b, &lower, hits);
        find_assignments(b, &lower, hits);
    }
}

impl Extra {
    fn compile(p: &PatternConfig) -> Result<Extra, String> {
        let name = &p.name;
        if name.is_empty() || name.len() > 64 || !name.bytes().all(is_key_char) {
            return Err(format!(
                "redact pattern {name:?}: the name must be 1 to 64 of A-Z a-z 0-9 _ . -"
            ));
        }
        let regex = Regex::new(&p.regex).map_err(|e| format!("redact pattern {name:?}: {e}"))?;
        if regex.is_match("") {
            return Err(format!(
                "redact pattern {name:?}: the regex matches the empty string"
            ));
        }
        let secret = regex.capture_names().position(|n| n == Some("secret"));
        Ok(Extra {
            name: name.clone(),
            regex,
            secret,
        })
    }

    fn find<'r>(&'r self, s: &str, rank: usize, hits: &mut Vec<Hit<'r>>) {
        let hit = |m: regex::Match<'_>| Hit::new(m.start(), m.end(), rank, &self.name);
        match self.secret {
            None => hits.extend(self.regex.find_iter(s).map(hit)),
            Some(g) => hits.extend(
                self.regex
                    .captures_iter(s)
                    .filter_map(|c| c.get(g))
                    .map(hit),
            ),
        }
    }
}

/// Bytes `start..end` of the input are a secret found by the detector `name`.
/// Lower `rank` means more specific: it names the marker when findings overlap.
#[derive(Debug, Clone, Copy)]
struct Hit<'n> {
    start: usize,
    end: usize,
    rank: usize,
    name: &'n str,
}

impl<'n> Hit<'n> {
    fn new(start: usize, end: usize, rank: usize, name: &'n str) -> Self {
        Hit {
            start,
            end,
            rank,
            name,
        }
    }
}

const RANK_PRIVATE_KEY: usize = 0;
const RANK_PREFIXED: usize = 1;
const RANK_EXTRA: usize = 100;
const RANK_AUTHORIZATION: usize = 1_000_000;
const RANK_BEARER: usize = RANK_AUTHORIZATION + 1;
const RANK_URL: usize = RANK_AUTHORIZATION + 2;
const RANK_ASSIGNMENT: usize = RANK_AUTHORIZATION + 3;

const MARKER_OPEN: &str = "[REDACTED:";

/// Replaces the hits in `s`, merging overlaps and skipping those inside existing markers.
fn render<'a>(s: &'a str, mut hits: Vec<Hit<'_>>) -> Cow<'a, str> {
    hits.retain(|h| h.start < h.end);
    if hits.is_empty() {
        return Cow::Borrowed(s);
    }
    hits.sort_unstable_by_key(|h| (h.start, h.rank));
    if s.contains(MARKER_OPEN) {
        let markers = markers(s);
        // Both sorted by start and markers are disjoint: one pass finds, for each
        // hit, the last marker starting at or before it.
        let mut m = 0;
        hits.retain(|h| {
            while m + 1 < markers.len() && markers[m + 1].0 <= h.start {
                m += 1;
            }
            !markers
                .get(m)
                .is_some_and(|&(ms, me)| ms <= h.start && h.end <= me)
        });
        if hits.is_empty() {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    let mut hits = hits.into_iter().peekable();
    while let Some(mut cur) = hits.next() {
        while let Some(next) = hits.next_if(|n| n.start < cur.end) {
            cur.end = cur.end.max(next.end);
            if next.rank < cur.rank {
                cur.rank = next.rank;
                cur.name = next.name;
            }
        }
        debug_assert!(s.is_char_boundary(cur.start) && s.is_char_boundary(cur.end));
        out.push_str(&s[last..cur.start]);
        out.push_str(MARKER_OPEN);
        out.push_str(cur.name);
        out.push(']');
        last = cur.end;
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

/// Spans of the `[REDACTED:<name>]` markers already in `s`, in order.
fn markers(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    for (at, _) in s.match_indices(MARKER_OPEN) {
        let from = at + MARKER_OPEN.len();
        let end = run(b, from, |&c| is_key_char(c));
        if end > from && b.get(end) == Some(&b']') {
            spans.push((at, end + 1));
        }
    }
    spans
}

// ---- Token formats: a literal prefix and the shape of what follows ----

struct Prefixed {
    name: &'static str,
    /// Searched for first; every prefix starts with it.
    stem: &'static str,
    prefixes: &'static [&'static str],
    body: fn(&u8) -> bool,
    /// Allowed body length, after trailing dots are trimmed.
    len: RangeInclusive<usize>,
    /// Keep the prefix visible and replace only the body (webhook URLs).
    keep_prefix: bool,
}

const PREFIXED: [Prefixed; 8] = [
    Prefixed {
        name: "aws_access_key_id",
        stem: "AKIA",
        prefixes: &["AKIA"],
        body: is_upper_alnum,
        len: 16..=16,
        keep_prefix: false,
    },
    Prefixed {
        name: "aws_access_key_id",
        stem: "ASIA",
        prefixes: &["ASIA"],
        body: is_upper_alnum,
        len: 16..=16,
        keep_prefix: false,
    },
    Prefixed {
        name: "github_token",
        stem: "gh",
        prefixes: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        body: u8::is_ascii_alphanumeric,
        len: 36..=usize::MAX,
        keep_prefix: false,
    },
    Prefixed {
        name: "github_token",
        stem: "github_pat_",
        prefixes: &["github_pat_"],
        body: is_word,
        len: 22..=usize::MAX,
        keep_prefix: false,
    },
    Prefixed {
        name: "gitlab_token",
        stem: "glpat-",
        prefixes: &["glpat-"],
        body: |&c| is_word(&c) || c == b'-' || c == b'.',
        len: 20..=usize::MAX,
        keep_prefix: false,
    },
    Prefixed {
        name: "slack_token",
        stem: "xox",
        prefixes: &["xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-"],
        body: |&c| c.is_ascii_alphanumeric() || c == b'-',
        len: 10..=usize::MAX,
        keep_prefix: false,
    },
    Prefixed {
        name: "slack_webhook",
        stem: "hooks.slack.com/",
        prefixes: &[
            "hooks.slack.com/services/",
            "hooks.slack.com/workflows/",
            "hooks.slack.com/triggers/",
        ],
        body: |&c| is_word(&c) || c == b'-' || c == b'/',
        len: 8..=usize::MAX,
        keep_prefix: true,
    },
    Prefixed {
        name: "anthropic_api_key",
        stem: "sk-ant-",
        prefixes: &["sk-ant-"],
        body: |&c| is_word(&c) || c == b'-',
        len: 20..=usize::MAX,
        keep_prefix: false,
    },
];

fn find_prefixed(s: &str, p: &Prefixed, rank: usize, hits: &mut Vec<Hit<'_>>) {
    if !s.contains(p.stem) {
        return;
    }
    let b = s.as_bytes();
    let mut covered = 0;
    for (at, _) in s.match_indices(p.stem) {
        if at < covered || (at > 0 && b[at - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let Some(prefix) = p
            .prefixes
            .iter()
            .find(|x| b[at..].starts_with(x.as_bytes()))
        else {
            continue;
        };
        let from = at + prefix.len();
        let end = trim_dots(b, from, run(b, from, p.body));
        if !p.len.contains(&(end - from)) || b.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        let start = if p.keep_prefix { from } else { at };
        hits.push(Hit::new(start, end, rank, p.name));
        covered = end;
    }
}

// ---- PEM private keys ----

/// `-----BEGIN <label>PRIVATE KEY-----` through the next `-----END …-----`, or to the
/// end of the text when the END line is missing (a truncated key is still a key).
fn find_private_keys(s: &str, hits: &mut Vec<Hit<'_>>) {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    const DASHES: &str = "-----";
    if !s.contains(BEGIN) {
        return;
    }
    let mut covered = 0;
    for (at, _) in s.match_indices(BEGIN) {
        if at < covered {
            continue;
        }
        let label_start = at + BEGIN.len();
        let Some(label_len) = s[label_start..].find(DASHES) else {
            continue;
        };
        let label = &s[label_start..label_start + label_len];
        let is_label = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' ';
        if label.len() > 64
            || !label.bytes().all(is_label)
            || !(label.ends_with("PRIVATE KEY") || label.ends_with("PRIVATE KEY BLOCK"))
        {
            continue;
        }
        let body = label_start + label_len + DASHES.len();
        let end = match s[body..].find(END) {
            Some(e) => {
                let after = body + e + END.len();
                s[after..]
                    .find(DASHES)
                    .map_or(s.len(), |d| after + d + DASHES.len())
            }
            None => s.len(),
        };
        hits.push(Hit::new(at, end, RANK_PRIVATE_KEY, "private_key"));
        covered = end;
    }
}

// ---- Passwords in URLs ----

/// `scheme://user:password@host`: only the password goes. The password runs from the
/// first `:` of the user info to the last `@` of the authority, so an unencoded `@`
/// in the password is covered too.
fn find_url_passwords(s: &str, hits: &mut Vec<Hit<'_>>) {
    if !s.contains("://") || !s.contains('@') {
        return;
    }
    let b = s.as_bytes();
    let ends_authority = |c: &u8| c.is_ascii_whitespace() || b"/?#\\\"'`<>".contains(c);
    for (at, _) in s.match_indices("://") {
        let from = at + 3;
        let authority = &b[from..run(b, from, |c| !ends_authority(c))];
        let Some(at_sign) = authority.iter().rposition(|&c| c == b'@') else {
            continue;
        };
        let Some(colon) = authority[..at_sign].iter().position(|&c| c == b':') else {
            continue;
        };
        let (start, end) = (from + colon + 1, from + at_sign);
        if start < end && b[start] != b'$' {
            hits.push(Hit::new(start, end, RANK_URL, "url_password"));
        }
    }
}

// ---- HTTP authorization ----

/// `Authorization: <scheme> <credential>` (also `=`, quoted JSON keys, and
/// `Proxy-Authorization`): the credential goes, the scheme stays.
fn find_authorization(b: &[u8], lower: &str, hits: &mut Vec<Hit<'_>>) {
    const KEY: &str = "authorization";
    if !lower.contains(KEY) {
        return;
    }
    let mut covered = 0;
    let mut ends = ValueEnds::new();
    for (at, _) in lower.match_indices(KEY) {
        if at < covered || (at > 0 && b[at - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let Some(mut v) = after_separator(b, at + KEY.len()) else {
            continue;
        };
        if b.get(v) == Some(&b'\\') && matches!(b.get(v + 1), Some(b'"' | b'\'')) {
            v += 1;
        }
        if matches!(b.get(v), Some(b'"' | b'\'')) {
            v += 1;
        }
        if let Some((start, end, name)) = credential(b, v, &mut ends) {
            hits.push(Hit::new(start, end, RANK_AUTHORIZATION, name));
            covered = end;
        }
    }
}

/// The credential of an authorization value starting at `i`: `Bearer <token>`,
/// `Basic <b64>`, `<other scheme> <credential>` or a bare credential.
fn credential(b: &[u8], i: usize, ends: &mut ValueEnds) -> Option<(usize, usize, &'static str)> {
    let word_end = run(b, i, |&c| is_word(&c) || c == b'-');
    let word = &b[i..word_end];
    let known = |w: &[u8]| w.eq_ignore_ascii_case(b"bearer") || w.eq_ignore_ascii_case(b"basic");
    let (name, from) = if word_end > i && b.get(word_end).is_some_and(is_blank) {
        let name = if word.eq_ignore_ascii_case(b"bearer") {
            "bearer"
        } else if word.eq_ignore_ascii_case(b"basic") {
            "basic_auth"
        } else {
            "authorization"
        };
        (name, skip_blanks(b, word_end))
    } else if known(word) {
        return None; // `Authorization: Bearer` with nothing after it
    } else {
        ("authorization", i)
    };
    let end = ends.end(b, from);
    (end > from && b[from] != b'$').then_some((from, end, name))
}

/// A bare `Bearer <token>`, as in prose, logs or code. Unlike after `Authorization:`
/// the token must look like one (a digit or symbol, `=` padding, or 20+ letters), so
/// "use a Bearer token." stays as it is.
fn find_bearer(b: &[u8], lower: &str, hits: &mut Vec<Hit<'_>>) {
    const WORD: &str = "bearer";
    if !lower.contains(WORD) {
        return;
    }
    let mut covered = 0;
    for (at, _) in lower.match_indices(WORD) {
        let after = at + WORD.len();
        if at < covered
            || (at > 0 && b[at - 1].is_ascii_alphanumeric())
            || !b.get(after).is_some_and(is_blank)
        {
            continue;
        }
        let from = skip_blanks(b, after);
        let body = run(b, from, |&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
        let trimmed = trim_dots(b, from, body);
        let padded = run(b, body, |&c| c == b'=');
        // `=` is padding only at the end of the token, not in `access=Bearer`.
        let end = if trimmed < body || b.get(padded).is_some_and(u8::is_ascii_alphanumeric) {
            trimmed
        } else {
            padded
        };
        let token = &b[from..end];
        let looks_like_token =
            end > body || token.len() >= 20 || token.iter().any(|c| !c.is_ascii_alphabetic());
        if !token.is_empty() && looks_like_token {
            hits.push(Hit::new(from, end, RANK_BEARER, "bearer"));
            covered = end;
        }
    }
}

// ---- Assignments: `password=…`, `"token": "…"`, `--api-key …` ----

/// A key word that makes the value after it a secret. It matches case-insensitively
/// at the end of a key, so `DB_PASSWORD`, `clientSecret` and `x-api-key` count while
/// `token_count` and `max_tokens` do not.
struct Keyword {
    word: &'static str,
    /// What the scan searches for: a prefix or a suffix of `word`.
    stem: &'static str,
    /// Where `stem` starts in `word`.
    stem_at: usize,
    name: &'static str,
}

const STEMS: [&str; 5] = ["pass", "pwd", "secret", "token", "key"];

const KEYWORDS: [Keyword; 14] = [
    kw("password", "pass", "secret_assignment"),
    kw("passwd", "pass", "secret_assignment"),
    kw("passphrase", "pass", "secret_assignment"),
    kw("pwd", "pwd", "secret_assignment"),
    kw("secret", "secret", "secret_assignment"),
    kw("token", "token", "secret_assignment"),
    kw("apikey", "key", "secret_assignment"),
    kw("api_key", "key", "secret_assignment"),
    kw("api-key", "key", "secret_assignment"),
    kw("secretkey", "key", "secret_assignment"),
    kw("secret_key", "key", "secret_assignment"),
    kw("secret-key", "key", "secret_assignment"),
    kw("secret_access_key", "key", "aws_secret_access_key"),
    kw("secretaccesskey", "key", "aws_secret_access_key"),
];

const fn kw(word: &'static str, stem: &'static str, name: &'static str) -> Keyword {
    let (w, s) = (word.as_bytes(), stem.as_bytes());
    let mut i = 0;
    let mut is_prefix = true;
    while i < s.len() {
        is_prefix &= w[i] == s[i];
        i += 1;
    }
    let stem_at = if is_prefix { 0 } else { w.len() - s.len() };
    Keyword {
        word,
        stem,
        stem_at,
        name,
    }
}

/// The key word a key (or a `--flag`) ends with, if any.
fn key_keyword(key: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| ends_with_ignore_case(key, k.word))
}

/// A long option naming a secret, whose value is the next argument: `--password`.
fn secret_flag(arg: &str) -> Option<&'static Keyword> {
    let is_flag = arg.starts_with("--") && arg.bytes().all(is_key_char);
    if is_flag { key_keyword(arg) } else { None }
}

fn find_assignments(b: &[u8], lower: &str, hits: &mut Vec<Hit<'_>>) {
    let mut ends = ValueEnds::new();
    for stem in STEMS {
        if !lower.contains(stem) {
            continue;
        }
        let mut covered = 0;
        for (at, _) in lower.match_indices(stem) {
            if at < covered {
                continue;
            }
            for k in KEYWORDS.iter().filter(|k| k.stem == stem) {
                let Some(key_start) = at.checked_sub(k.stem_at) else {
                    continue;
                };
                let key_end = key_start + k.word.len();
                // Cheapest test first: most hits (`tokens`, `tokenize`) continue the key.
                if b.get(key_end).is_some_and(|&c| is_key_char(c))
                    || lower.as_bytes().get(key_start..key_end) != Some(k.word.as_bytes())
                {
                    continue;
                }
                if let Some((start, end)) = assigned_value(b, key_start, key_end, k, &mut ends) {
                    hits.push(Hit::new(start, end, RANK_ASSIGNMENT, k.name));
                    covered = end;
                    break;
                }
            }
        }
    }
}

/// The value assigned to the key word at `ks..ke`, which ends a key (the caller
/// checked): after a separator (`=`, `:`, `:=`, `=>`), or after blanks when the key
/// is a `--flag`.
fn assigned_value(
    b: &[u8],
    ks: usize,
    ke: usize,
    k: &Keyword,
    ends: &mut ValueEnds,
) -> Option<(usize, usize)> {
    let (v, flag) = match after_separator(b, ke) {
        Some(v) => (v, false),
        None => {
            let key_len = b[..ks]
                .iter()
                .rev()
                .take_while(|&&c| is_key_char(c))
                .count();
            if !b[ks - key_len..].starts_with(b"--") || !b.get(ke).is_some_and(is_blank) {
                return None;
            }
            (skip_blanks(b, ke), true)
        }
    };
    let (start, end) = value_span(b, v, ends)?;
    let value = &b[start..end];
    if (flag && value[0] == b'-') || !plausible(k, value) {
        return None;
    }
    Some((start, end))
}

/// After a key ending at `i`: an optional closing quote (maybe backslash-escaped),
/// blanks, `=` or `:` (or `:=`, `==`, `=>`), blanks. Returns where the value starts.
/// `::` is a path (`token::Kind`), not a separator.
fn after_separator(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'\\') && matches!(b.get(i + 1), Some(b'"' | b'\'')) {
        i += 1;
    }
    if matches!(b.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    i = skip_blanks(b, i);
    let sep = *b.get(i)?;
    if sep != b'=' && sep != b':' {
        return None;
    }
    i += 1;
    match (sep, b.get(i)) {
        (b':', Some(b':')) => return None,
        (_, Some(b'=' | b'>')) => i += 1,
        _ => {}
    }
    Some(skip_blanks(b, i))
}

/// The span of a value starting at `v`: inside matching quotes, else up to the first
/// blank, quote or shell/JSON delimiter. `None` when empty.
fn value_span(b: &[u8], v: usize, ends: &mut ValueEnds) -> Option<(usize, usize)> {
    let bare = match b.get(v) {
        Some(&q @ (b'"' | b'\'')) => match closing_quote(b, v + 1, q) {
            Some(end) => return (end > v + 1).then_some((v + 1, end)),
            None => v + 1,
        },
        Some(b'\\') if matches!(b.get(v + 1), Some(b'"' | b'\'')) => v + 2,
        _ => v,
    };
    let end = ends.end(b, bare);
    (end > bare).then_some((bare, end))
}

/// Whether an assigned value can be a secret: not empty, not a variable reference
/// (`$TOKEN`, `${{ secrets.X }}`), not a literal of code, not the shell's `PWD`.
fn plausible(k: &Keyword, v: &[u8]) -> bool {
    const NOT_SECRETS: [&str; 6] = ["true", "false", "null", "none", "nil", "undefined"];
    match v.first() {
        None | Some(b'$') => false,
        Some(b'/' | b'~') if k.word == "pwd" => false,
        Some(_) => !NOT_SECRETS
            .iter()
            .any(|w| v.eq_ignore_ascii_case(w.as_bytes())),
    }
}

/// The next unescaped `q` at or after `from` (a `"` after an odd number of
/// backslashes is escaped; shell single quotes have no escapes). Linear overall: every
/// opening quote closes the value before it, so searches of one kind do not overlap.
fn closing_quote(b: &[u8], from: usize, q: u8) -> Option<usize> {
    let mut i = from;
    while let Some(off) = b[i..].iter().position(|&c| c == q) {
        let j = i + off;
        let backslashes = b[..j].iter().rev().take_while(|&&c| c == b'\\').count();
        if q == b'\'' || backslashes % 2 == 0 {
            return Some(j);
        }
        i = j + 1;
    }
    None
}

/// Ends of unquoted values (maximal runs up to `ends_value`). The last run is
/// remembered: a start inside it ends at the same place, so many key words inside one
/// long rejected value (`password=$-password=$-…`) do not rescan it.
struct ValueEnds {
    from: usize,
    end: usize,
}

impl ValueEnds {
    fn new() -> Self {
        ValueEnds { from: 0, end: 0 }
    }

    fn end(&mut self, b: &[u8], from: usize) -> usize {
        if !(self.from..self.end).contains(&from) {
            self.from = from;
            self.end = run(b, from, |&c| !ends_value(c));
        }
        self.end
    }
}

// ---- Byte classes and scanning helpers ----

fn is_upper_alnum(c: &u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

fn is_word(c: &u8) -> bool {
    c.is_ascii_alphanumeric() || *c == b'_'
}

/// Characters of a key (`DB_PASSWORD`, `x-api-key`, `spring.datasource.password`),
/// and of a detector name, so of a marker.
fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

fn is_blank(c: &u8) -> bool {
    *c == b' ' || *c == b'\t'
}

/// Where an unquoted value stops: blanks, quotes, and shell, URL-query and JSON delimiters.
fn ends_value(c: u8) -> bool {
    c.is_ascii_whitespace() || b"\"'`\\&;,|<>)]}".contains(&c)
}

/// The end of the run of bytes from `from` that satisfy `f`.
fn run(b: &[u8], from: usize, f: impl Fn(&u8) -> bool) -> usize {
    from + b[from..].iter().take_while(|c| f(c)).count()
}

fn skip_blanks(b: &[u8], from: usize) -> usize {
    run(b, from, is_blank)
}

/// `end` moved back over trailing dots, not before `from`: a sentence's full stop is
/// not part of a token.
fn trim_dots(b: &[u8], from: usize, mut end: usize) -> usize {
    while end > from && b[end - 1] == b'.' {
        end -= 1;
    }
    end
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const GHP: &str = "ghp_R2d2C3poL7kWq9ZxY4vB8nM1tGh6JfDs0aPe";
    const GITHUB_PAT: &str = "github_pat_11AQZ7QYA0x7tGh3kLmNoP_q9RsTuVwXyZaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLmNoPqRsTuV";
    const GLPAT: &str = "glpat-Zx8vQ2mN4kT7bW1cR9yL";
    const XOXB: &str = "xoxb-2417384950-5829173640285-Kq3zT8vW1xY6bN0mP4rS7uJd";
    const SK_ANT: &str = "sk-ant-api03-Qw3rTy7UiOp9AsDfGhJkL1ZxCvBnM2QwErTy-5UiOpAA";
    const JWT: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    /// Each input redacts to the expected output; the changed flag, idempotence and
    /// "no markers without a change" are checked for every row.
    fn check(cases: &[(&str, &str)]) {
        let r = Redactor::builtin();
        for &(input, want) in cases {
            let got = r.redact_str(input);
            assert_eq!(got, want, "input: {input:?}");
            assert_eq!(
                matches!(got, Cow::Owned(_)),
                input != want,
                "changed flag: {input:?}"
            );
            assert!(
                matches!(r.redact_str(&got), Cow::Borrowed(_)),
                "second pass changed {got:?}"
            );
        }
    }

    fn owned(cases: &[(String, String)]) -> Vec<(&str, &str)> {
        cases
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect()
    }

    #[test]
    fn token_formats() {
        check(&owned(&[
            (
                format!("export AWS_ACCESS_KEY_ID={AWS_ID}"),
                "export AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id]".into(),
            ),
            (
                "aws sts get-session-token # ASIAY34FZKBOKMUTVV7A expires".into(),
                "aws sts get-session-token # [REDACTED:aws_access_key_id] expires".into(),
            ),
            (
                format!("git push https://{GHP}@github.com/acme/api.git"),
                "git push https://[REDACTED:github_token]@github.com/acme/api.git".into(),
            ),
            (
                format!("GH_TOKEN={GITHUB_PAT} gh pr list"),
                "GH_TOKEN=[REDACTED:github_token] gh pr list".into(),
            ),
            (
                format!("git clone https://oauth2:{GLPAT}@gitlab.com/acme/infra.git"),
                "git clone https://oauth2:[REDACTED:gitlab_token]@gitlab.com/acme/infra.git"
                    .into(),
            ),
            (
                format!("glab auth login --stdin <<< {GLPAT}."),
                "glab auth login --stdin <<< [REDACTED:gitlab_token].".into(),
            ),
            (
                format!(r#"{{"token":"{XOXB}","channel":"C024BE91L"}}"#),
                r#"{"token":"[REDACTED:slack_token]","channel":"C024BE91L"}"#.into(),
            ),
            (
                "curl -X POST -d '{\"text\":\"hi\"}' https://hooks.slack.com/services/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".into(),
                "curl -X POST -d '{\"text\":\"hi\"}' https://hooks.slack.com/services/[REDACTED:slack_webhook]".into(),
            ),
            (
                "POST https://hooks.slack.com/triggers/E0AB12CD3/5923817/9f8e7d6c5b4a3f2e1d0c".into(),
                "POST https://hooks.slack.com/triggers/[REDACTED:slack_webhook]".into(),
            ),
            (
                format!("ANTHROPIC_API_KEY={SK_ANT} claude -p hi"),
                "ANTHROPIC_API_KEY=[REDACTED:anthropic_api_key] claude -p hi".into(),
            ),
        ]));
    }

    #[test]
    fn authorization_headers() {
        check(&owned(&[
            (
                "curl -H \"Authorization: Bearer abc.def\" https://u:p@host/x".into(),
                "curl -H \"Authorization: Bearer [REDACTED:bearer]\" https://u:[REDACTED:url_password]@host/x".into(),
            ),
            (
                format!("curl -H 'authorization:bearer  {JWT}' api.local"),
                "curl -H 'authorization:bearer  [REDACTED:bearer]' api.local".into(),
            ),
            (
                "wget --header='Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l' http://x".into(),
                "wget --header='Authorization: Basic [REDACTED:basic_auth]' http://x".into(),
            ),
            (
                format!("Authorization: token {GHP}"),
                "Authorization: token [REDACTED:github_token]".into(),
            ),
            (
                "Proxy-Authorization: Negotiate YIIFdwYGKwYBBQUCoIIFazCCBWeg".into(),
                "Proxy-Authorization: Negotiate [REDACTED:authorization]".into(),
            ),
            (
                r#"{"headers":{"Authorization":"Bearer sk_live_51Hx"}}"#.into(),
                r#"{"headers":{"Authorization":"Bearer [REDACTED:bearer]"}}"#.into(),
            ),
            (
                format!("2026-01-02 DEBUG sending Bearer {JWT}."),
                "2026-01-02 DEBUG sending Bearer [REDACTED:bearer].".into(),
            ),
            (
                "token_type=bearer access=Bearer Zm9vYmFy==".into(),
                "token_type=bearer access=Bearer [REDACTED:bearer]".into(),
            ),
        ]));
    }

    #[test]
    fn private_keys() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onL\n-----END RSA PRIVATE KEY-----";
        let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n";
        check(&owned(&[
            (format!("cat > id_rsa <<EOF\n{key}\nEOF"), "cat > id_rsa <<EOF\n[REDACTED:private_key]\nEOF".into()),
            (openssh.into(), "[REDACTED:private_key]\n".into()),
            (
                // As a JSON service-account file shows it in a command line.
                format!(r#"{{"private_key": "{}", "client_email": "x@y"}}"#, key.replace('\n', "\\n")),
                r#"{"private_key": "[REDACTED:private_key]", "client_email": "x@y"}"#.into(),
            ),
            (
                "head -3 key.pem\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG".into(),
                "head -3 key.pem\n[REDACTED:private_key]".into(),
            ),
            (
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----".into(),
                "[REDACTED:private_key]".into(),
            ),
        ]));
    }

    #[test]
    fn url_passwords() {
        check(&[
            (
                "psql postgres://app:s3cr3t@db.internal:5432/prod",
                "psql postgres://app:[REDACTED:url_password]@db.internal:5432/prod",
            ),
            (
                "redis-cli -u redis://:hunter2@cache:6379/0",
                "redis-cli -u redis://:[REDACTED:url_password]@cache:6379/0",
            ),
            (
                "pip install -i https://bob:p@ss:w0rd@pypi.corp/simple pkg",
                "pip install -i https://bob:[REDACTED:url_password]@pypi.corp/simple pkg",
            ),
            (
                "see https://u:p@host/a?next=x@y.z",
                "see https://u:[REDACTED:url_password]@host/a?next=x@y.z",
            ),
            (
                "[remote] url = https://ci:Zq9@git.corp/r.git\n",
                "[remote] url = https://ci:[REDACTED:url_password]@git.corp/r.git\n",
            ),
        ]);
    }

    #[test]
    fn assignments() {
        check(&owned(&[
            ("mysql --password=hunter2 -h db".into(), "mysql --password=[REDACTED:secret_assignment] -h db".into()),
            ("mysql --password hunter2 -h db".into(), "mysql --password [REDACTED:secret_assignment] -h db".into()),
            ("vault login --token=hvs.CAESIJ2 -method=token".into(), "vault login --token=[REDACTED:secret_assignment] -method=token".into()),
            ("export DB_PASSWORD='correct horse' && ./run".into(), "export DB_PASSWORD='[REDACTED:secret_assignment]' && ./run".into()),
            ("MYSQL_PWD=hunter2 mysql".into(), "MYSQL_PWD=[REDACTED:secret_assignment] mysql".into()),
            (
                "curl -d '{\"username\":\"bob\",\"password\":\"hunter2\"}' https://api/x".into(),
                "curl -d '{\"username\":\"bob\",\"password\":\"[REDACTED:secret_assignment]\"}' https://api/x".into(),
            ),
            (
                "curl -d \"{\\\"password\\\": \\\"hunter2\\\"}\" x".into(),
                "curl -d \"{\\\"password\\\": \\\"[REDACTED:secret_assignment]\\\"}\" x".into(),
            ),
            ("\"client_secret\": \"a\\\"b c\"".into(), "\"client_secret\": \"[REDACTED:secret_assignment]\"".into()),
            ("GET /cb?code=x&access_token=ya29.a0Af&state=1".into(), "GET /cb?code=x&access_token=[REDACTED:secret_assignment]&state=1".into()),
            ("curl -H 'X-API-Key: 5f4dcc3b5aa765d6' url".into(), "curl -H 'X-API-Key: [REDACTED:secret_assignment]' url".into()),
            ("apiKey: 'k_live_123'".into(), "apiKey: '[REDACTED:secret_assignment]'".into()),
            ("Password: hunter2".into(), "Password: [REDACTED:secret_assignment]".into()),
            ("SECRET_KEY = \"django-insecure-x\"".into(), "SECRET_KEY = \"[REDACTED:secret_assignment]\"".into()),
            ("password := \"x\"; pwd => 'y'".into(), "password := \"[REDACTED:secret_assignment]\"; pwd => '[REDACTED:secret_assignment]'".into()),
            ("Server=db;Uid=sa;Pwd=Pa55;".into(), "Server=db;Uid=sa;Pwd=[REDACTED:secret_assignment];".into()),
            (
                format!("aws_secret_access_key = {AWS_SECRET}\n"),
                "aws_secret_access_key = [REDACTED:aws_secret_access_key]\n".into(),
            ),
            (
                format!("new S3({{ secretAccessKey: \"{AWS_SECRET}\" }})"),
                "new S3({ secretAccessKey: \"[REDACTED:aws_secret_access_key]\" })".into(),
            ),
            (
                format!("export GITHUB_TOKEN={GHP}"),
                "export GITHUB_TOKEN=[REDACTED:github_token]".into(),
            ),
            (
                "kubectl create secret generic db --from-literal=password=hunter2".into(),
                "kubectl create secret generic db --from-literal=password=[REDACTED:secret_assignment]".into(),
            ),
            ("token=5".into(), "token=[REDACTED:secret_assignment]".into()),
        ]));
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let unchanged = [
            "cargo test -j1 --manifest-path /home/alice/src/auth/Cargo.toml",
            "vim src/auth/token.rs src/password_reset.rs",
            "cargo test -p lexer -- token::tests::eof",
            "git checkout -b fix/password-reset",
            "git show 3f2a9c1e0b7d4a6e8f9c0d1b2a3e4f5a6b7c8d9e",
            "id=550e8400-e29b-41d4-a716-446655440000",
            "the password is stored hashed; reset the password",
            "Enter your password: ",
            "token_count=5 max_tokens: 1024 --max-tokens 5 tokens=3",
            r#"{"usage":{"input_tokens":12,"output_tokens":34}}"#,
            "git clone git@github.com:acme/api.git && git clone https://github.com/acme/web",
            "ssh://git@host:22/repo.git",
            "echo $PASSWORD; export PASSWORD=$(pass show db); mysql -p\"$DB_PWD\"",
            "curl -H \"Authorization: Bearer $TOKEN\" -H 'Authorization: Bearer ${API_TOKEN}'",
            "Authorization: Bearer",
            "fetch(url, { headers: { Authorization: `Bearer ${token}` } })",
            "Use a Bearer token. The bearer of this letter",
            "kubectl get secret db-creds -o yaml",
            "PWD=/home/alice/project OLDPWD=~/src; cd /tmp && pwd",
            "if (password == null) return; secret: false, token: undefined",
            "grep -rn \"password\" src/ --include=*.rs",
            "gh pr create --title x; ghp_short; sk-learn; ASIA PACIFIC",
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
            "<img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk\">",
            "password=\"\" token='' --token --verbose",
            "${{ secrets.NPM_TOKEN }} token: ${{ secrets.NPM_TOKEN }}",
            "",
        ];
        check(&unchanged.map(|s| (s, s)));
    }

    #[test]
    fn overlaps_merge_under_the_most_specific_name() {
        check(&owned(&[
            (
                format!("Authorization: Bearer {GHP}"),
                "Authorization: Bearer [REDACTED:github_token]".into(),
            ),
            (
                format!("password={AWS_ID}"),
                "password=[REDACTED:aws_access_key_id]".into(),
            ),
            (
                // The URL password overlaps the assignment after `token:`; one marker.
                "token: https://u:pw@h".into(),
                "token: [REDACTED:url_password]".into(),
            ),
        ]));
    }

    #[test]
    fn existing_markers_are_kept() {
        check(&[
            (
                "password=[REDACTED:secret_assignment] ok",
                "password=[REDACTED:secret_assignment] ok",
            ),
            (
                "https://u:[REDACTED:url_password]@h",
                "https://u:[REDACTED:url_password]@h",
            ),
            (
                "[REDACTED:x] password=hunter2",
                "[REDACTED:x] password=[REDACTED:secret_assignment]",
            ),
        ]);
    }

    #[test]
    fn every_builtin_detector_is_exercised() {
        // Guards the table above against a detector that silently never fires.
        let r = Redactor::builtin();
        let samples = format!(
            "{AWS_ID} aws_secret_access_key={AWS_SECRET} {GHP} {GLPAT} {XOXB} \
             hooks.slack.com/services/T0/B0/XXXXXXXX {SK_ANT} Bearer {JWT} \
             Authorization: Basic YWxhZGRpbg== Authorization: Digest x https://u:p@h \
             password=x\n-----BEGIN PRIVATE KEY-----\nMII"
        );
        let out = r.redact_str(&samples);
        for name in BUILTIN_DETECTORS {
            assert!(
                out.contains(&format!("[REDACTED:{name}]")),
                "{name} missing in {out}"
            );
        }
    }

    #[test]
    fn keyword_stems_are_where_the_table_says() {
        for k in &KEYWORDS {
            assert_eq!(
                &k.word[k.stem_at..k.stem_at + k.stem.len()],
                k.stem,
                "{}",
                k.word
            );
            assert!(STEMS.contains(&k.stem), "{}", k.word);
        }
    }

    #[test]
    fn configured_patterns() {
        let cfg = |name: &str, regex: &str| PatternConfig {
            name: name.into(),
            regex: regex.into(),
        };
        let r = Redactor::new(&[
            cfg("employee_id", r"\bEMP-\d{6}\b"),
            cfg("internal_token", r"itk_(?P<secret>[a-z0-9]{12})"),
        ])
        .unwrap();
        let cases = [
            (
                "assign EMP-123456 to x",
                "assign [REDACTED:employee_id] to x",
            ),
            (
                "use itk_0123456789ab now",
                "use itk_[REDACTED:internal_token] now",
            ),
            // A configured pattern outranks the generic assignment detector.
            ("token=EMP-123456", "token=[REDACTED:employee_id]"),
            ("EMP-12", "EMP-12"),
        ];
        for (input, want) in cases {
            assert_eq!(r.redact_str(input), want);
        }

        let err = Redactor::new(&[
            cfg("ok", "x"),
            cfg("broken", "(unclosed"),
            cfg("bad name", "y"),
            cfg("empty", "a*"),
        ])
        .unwrap_err();
        for part in [
            "\"broken\"",
            "\"bad name\"",
            "\"empty\": the regex matches the empty string",
        ] {
            assert!(err.contains(part), "{part} not in {err}");
        }
        assert!(!err.contains("\"ok\""), "{err}");
    }

    #[test]
    fn pattern_config_rejects_unknown_fields() {
        let ok: PatternConfig = serde_json::from_str(r#"{"name":"a","regex":"b"}"#).unwrap();
        assert_eq!((ok.name.as_str(), ok.regex.as_str()), ("a", "b"));
        assert!(
            serde_json::from_str::<PatternConfig>(r#"{"name":"a","regex":"b","x":1}"#).is_err()
        );
    }

    #[test]
    fn json_values_paths_and_key_context() {
        let r = Redactor::builtin();
        let mut v = json!({
            "tool_input": {
                "command": "curl -H 'Authorization: Bearer abc.def' https://u:p@host/x",
                "args": ["--user", "bob", "--password", "hunter2", "--token", "--verbose"],
                "env": {"GITHUB_TOKEN": GHP, "DB_PASSWORD": "hunter2", "HOME": "/home/bob", "PWD": "/tmp"},
                "headers": {"authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
            },
            "metadata": {"extra": {"url": "https://ci:Zq9@git.corp/r.git", "tokens": 12, "secret": true}},
            "resource": "/home/bob/token.rs",
        });
        let mut paths = Vec::new();
        r.redact_json(&mut v, "", &mut paths);
        assert_eq!(
            v,
            json!({
                "tool_input": {
                    "command": "curl -H 'Authorization: Bearer [REDACTED:bearer]' https://u:[REDACTED:url_password]@host/x",
                    "args": ["--user", "bob", "--password", "[REDACTED:secret_assignment]", "--token", "--verbose"],
                    "env": {
                        "GITHUB_TOKEN": "[REDACTED:github_token]",
                        "DB_PASSWORD": "[REDACTED:secret_assignment]",
                        "HOME": "/home/bob",
                        "PWD": "/tmp",
                    },
                    "headers": {"authorization": "Basic [REDACTED:basic_auth]"},
                },
                "metadata": {"extra": {"url": "https://ci:[REDACTED:url_password]@git.corp/r.git", "tokens": 12, "secret": true}},
                "resource": "/home/bob/token.rs",
            })
        );
        paths.sort();
        assert_eq!(
            paths,
            [
                "metadata.extra.url",
                "tool_input.args[3]",
                "tool_input.command",
                "tool_input.env.DB_PASSWORD",
                "tool_input.env.GITHUB_TOKEN",
                "tool_input.headers.authorization",
            ]
        );

        // A second pass finds nothing new; a caller-given path prefixes the paths.
        let mut again = Vec::new();
        r.redact_json(&mut v, "", &mut again);
        assert!(again.is_empty(), "{again:?}");
        let mut top = json!(["x", "password=hunter2"]);
        let mut paths = Vec::new();
        r.redact_json(&mut top, "tool_input.args", &mut paths);
        assert_eq!(paths, ["tool_input.args[1]"]);
        let mut s = json!("Bearer abc.def");
        let mut paths = Vec::new();
        r.redact_json(&mut s, "", &mut paths);
        assert_eq!(
            (s, paths),
            (json!("Bearer [REDACTED:bearer]"), vec![String::new()])
        );
    }

    #[test]
    fn scans_stay_linear_on_hostile_input() {
        // Key words inside one long rejected value, and stacked key words: quadratic
        // code takes minutes on these. Outputs are checked so the test is not vacuous.
        let r = Redactor::builtin();
        for unit in [
            "password=$-",
            "Authorization:$-",
            "token",
            "github_pat_",
            "://a",
        ] {
            let hostile = unit.repeat(100_000);
            let out = r.redact_str(&hostile);
            match unit {
                "github_pat_" => assert_eq!(out, "[REDACTED:github_token]"),
                _ => assert_eq!(out, hostile),
            }
        }
        let nested = "password=".repeat(100_000);
        assert_eq!(
            r.redact_str(&nested),
            "password=[REDACTED:secret_assignment]"
        );
    }

    #[test]
    fn non_ascii_text_is_safe() {
        check(&[
            (
                "mot de passe: «secret» password=ünïcødé€ fin",
                "mot de passe: «secret» password=[REDACTED:secret_assignment] fin",
            ),
            (
                "Пароль: password: пароль123",
                "Пароль: password: [REDACTED:secret_assignment]",
            ),
        ]);
    }
}
