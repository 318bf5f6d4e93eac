//! Secret redaction: finds credentials in text and in JSON values and replaces each
//! with `[REDACTED:<detector>]` before anything leaves the machine.
//!
//! Owns the built-in detectors, the user-configured regex patterns, and the walk that
//! applies them to every string of a JSON value while recording which fields changed.
//! The detectors, by what gives a secret away:
//! - its own shape (`tokens`): provider tokens with a fixed prefix (AWS, GitHub,
//!   GitLab, Slack, Stripe, OpenAI, Anthropic, Google, npm, PyPI, …), JWTs anywhere,
//!   PEM private keys;
//! - the key before it (`keys`): `password=`, `"token":`, `--api-key`, capitalised
//!   environment names ending `_KEY`, `_PASS`, `_AUTH`, `_CREDENTIALS`…, URL query
//!   parameters (`X-Amz-Signature`, `sig`, `token`, `key`), `Authorization`, `Bearer`,
//!   `Cookie`/`Set-Cookie` headers, the password of a URL;
//! - the program it is given to (`argv`): `curl -u user:pass`, `mysql -pX`,
//!   `sshpass -p X`, `docker login -p X`, `aws configure set aws_secret_access_key X`;
//! - where it stands in JSON (`tree`): under a secret-named key at any depth, in a
//!   name/value pair, after a credential flag in an argument vector; numbers included.
//!
//! Invariants:
//! - Pure: no IO, no mutable global state (the built-in trigger automata are built
//!   once, on first use). `redact_str` returns `Cow::Borrowed` exactly when nothing
//!   was found, so clean text costs no allocation of the result.
//! - Only the secret goes: keys, auth schemes, cookie names, user names and hosts
//!   stay, so the record still says what happened (`password=[REDACTED:…]`).
//! - Idempotent: text already inside a `[REDACTED:…]` marker is never matched again,
//!   so the daemon may redact what `record` already redacted without new changes.
//! - Never panics on any input; hits that would not fall on character boundaries are
//!   dropped.
//! - Overlapping findings become one marker, named after the most specific detector
//!   (private keys, token formats, configured patterns, then context detectors).
//! - Cost: one pass of a few literal-set searchers (SIMD) finds every place a
//!   detector could start; building a `Redactor` compiles nothing unless patterns are
//!   configured; every scan is linear in the input (long rejected runs are measured
//!   once, commands read at most 64 arguments).
//!
//! Not done here: choosing which fields to redact or truncate (the caller), guessing
//! unknown secrets by entropy, and rewriting the local chained file (never done).

mod argv;
mod keys;
mod lane;
mod scan;
mod tokens;
mod tree;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem;
use regex::Regex;
use serde::Deserialize;

pub use lane::LaneScratch;
pub use tree::Scope;

/// A configured detector: a regex whose match, or only its group named `secret` when
/// it has one, is replaced by `[REDACTED:<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    pub name: String,
    pub regex: String,
}

/// The names the built-in detectors write into their markers (besides the token
/// formats, listed by [`builtin_detectors`]).
pub const BUILTIN_DETECTORS: [&str; 12] = [
    "private_key",
    "jwt",
    "aws_secret_access_key",
    "bearer",
    "basic_auth",
    "authorization",
    "cookie",
    "url_password",
    "signature",
    "cli_credential",
    "secret_assignment",
    "slack_webhook",
];

/// Every name a built-in detector may write into a marker.
pub fn builtin_detectors() -> Vec<&'static str> {
    let mut names: Vec<&str> = BUILTIN_DETECTORS.to_vec();
    for n in tokens::names() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The built-in detectors (code and literal sets, nothing to compile) plus the
/// configured patterns.
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

    /// Where text redacted by this module may be cut: `at`, or the start of the
    /// `[REDACTED:<name>]` marker that `at` falls inside, so a cut copy never ends in
    /// half a marker.
    pub fn cut_point(s: &str, at: usize) -> usize {
        match scan::marker_at(s.as_bytes(), at) {
            Some((start, end)) if start < at && at < end => start,
            _ => at,
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
        match render(s, hits) {
            Cow::Borrowed(s) => Cow::Borrowed(s),
            Cow::Owned(once) => Cow::Owned(self.settle(once, Ctx::None)),
        }
    }

    /// Passes over a text that changed until nothing more changes, so redaction is
    /// idempotent by construction. A marker can reveal what its secret hid (a command
    /// that no longer ends at a `&` inside a redacted value, a flag no longer glued to
    /// a token); each pass only shrinks what is not yet a marker, and texts settle in
    /// one or two passes. The bound keeps hostile text linear.
    fn settle(&self, mut text: String, ctx: Ctx) -> String {
        for _ in 0..MAX_PASSES {
            match self.pass(&text, ctx, &[]) {
                Some(next) => text = next,
                None => return text,
            }
        }
        // Still changing: each pass took one more piece of a value whose end the
        // detectors cannot tell (an argument whose quote never closes, in text that
        // is not a command line). Everything from the first byte the next pass would
        // change goes under one marker, which leaves nothing to take.
        for _ in 0..4 {
            let Some(next) = self.pass(&text, ctx, &[]) else {
                return text;
            };
            let same = text.bytes().zip(next.bytes()).take_while(|(a, b)| a == b);
            let at = Self::cut_point(&text, floor_boundary(&text, same.count()));
            text.truncate(at);
            text.push_str(UNSETTLED);
        }
        if self.pass(&text, ctx, &[]).is_some() {
            text = UNSETTLED.to_owned();
        }
        text
    }

    /// Redacts every string value and object key inside `v` in place, and pushes the
    /// dotted path of each changed value or key (`metadata.extra.url`,
    /// `tool_input.args[2]`) to `redacted`, starting from `path`, the path of `v`
    /// (may be empty). Keys are joined verbatim, without escaping, as redacted; a key
    /// whose redacted text another key has already gets a ` (2)` suffix.
    ///
    /// Beyond `redact_str`, the structure gives context (see `tree`): values at any
    /// depth under a key that names a secret (`password`, `GITHUB_TOKEN`,
    /// `clientSecret`, ...) are replaced whole, numbers included; one under
    /// `Authorization` keeps only its scheme, one under `Cookie` its cookie names; the
    /// value of a name/value pair naming a secret goes; and in an argument vector the
    /// item after a flag like `--password` goes, as do a known program's credentials.
    pub fn redact_json(&self, v: &mut serde_json::Value, path: &str, redacted: &mut Vec<String>) {
        self.walk(v, path, Scope::All, redacted);
    }

    /// [`Redactor::redact_json`] for a value of the format's own reader, as `check`
    /// holds it; with [`Scope::Context`], only the values the structure marks.
    pub fn redact_value(
        &self,
        v: &mut crate::audit::json::Value<'_>,
        path: &str,
        scope: Scope,
        redacted: &mut Vec<String>,
    ) {
        self.walk(v, path, scope, redacted);
    }

    fn walk<N: tree::Node>(&self, v: &mut N, path: &str, scope: Scope, out: &mut Vec<String>) {
        let mut w = tree::Walk {
            redactor: self,
            scope,
            path: path.to_owned(),
            out,
        };
        w.value(v, Ctx::None, &[]);
    }

    /// Every finding of every detector in `s`, unmerged.
    fn find<'r>(&'r self, s: &str, hits: &mut Vec<Hit<'r>>) {
        self.find_noting(s, hits, None);
    }

    /// [`Redactor::find`], pushing to `seen` (when given) the span of every match the
    /// literal searches report: the sightings [`lane`] reasons from.
    fn find_noting<'r>(
        &'r self,
        s: &str,
        hits: &mut Vec<Hit<'r>>,
        mut seen: Option<&mut Vec<(usize, usize)>>,
    ) {
        let t = &*TRIGGERS;
        let b = s.as_bytes();
        let mut tok = tokens::TokenState::new();
        let mut on_token = |trigger: Trigger, at: usize, hits: &mut Vec<Hit<'r>>| match trigger {
            Trigger::Token(ti) => tokens::token_at(b, at, ti as usize, &mut tok, hits),
            Trigger::Jwt => tokens::jwt_at(b, at, &mut tok, hits),
            _ => {}
        };
        for set in [&t.exact, &t.short] {
            set.each(b, |trigger, at, end| {
                note(&mut seen, at, end);
                on_token(trigger, at, hits)
            });
        }
        for (finder, trigger) in &t.tiny {
            for at in finder.find_iter(b) {
                note(&mut seen, at, at + finder.needle().len());
                on_token(*trigger, at, hits);
            }
        }
        for (i, x) in self.extra.iter().enumerate() {
            x.find(s, RANK_EXTRA + i, hits);
        }
        keys::url_passwords(s, hits, seen.as_deref_mut());
        if scan::BACKSLASH_U.find(b).is_some() {
            keys::escaped_json_keys(b, hits);
        }
        // Key words and program names match case-insensitively in an ASCII-lowercased
        // copy: same offsets. The copy's buffer is the thread's, kept between calls.
        LOWER.with(|cell| {
            let mut lower = cell.take();
            lower.clear();
            lower.extend(b.iter().map(u8::to_ascii_lowercase));
            self.find_words(s, &lower, &mut tok, hits, seen);
            cell.replace(lower);
        });
    }

    /// The key-word and program detectors, over `lb`, the text lower-cased.
    fn find_words<'r>(
        &'r self,
        s: &str,
        lb: &[u8],
        tok: &mut tokens::TokenState,
        hits: &mut Vec<Hit<'r>>,
        mut seen: Option<&mut Vec<(usize, usize)>>,
    ) {
        let t = &*TRIGGERS;
        let b = s.as_bytes();
        let mut ks = keys::KeyState::new();
        t.words.each(lb, |trigger, at, end| {
            note(&mut seen, at, end);
            match trigger {
                Trigger::Stem(si) => {
                    keys::assignment_at(b, lb, at, &t.stems[si as usize], &mut ks, hits)
                }
                Trigger::Auth(_) if lb[at..].starts_with(b"authorization") => {
                    keys::authorization_at(b, at, &mut ks, hits)
                }
                Trigger::Auth(si) => {
                    keys::assignment_at(b, lb, at, &t.stems[si as usize], &mut ks, hits)
                }
                Trigger::Bearer => keys::bearer_at(b, at, &mut ks, hits),
                Trigger::Cookie => keys::cookie_at(b, at, &mut ks, hits),
                Trigger::Pem => tokens::private_key_at(s, at, tok, hits),
                _ => {}
            }
        });
        // Every program name is read on its own (at most 64 arguments each), also one
        // inside another command's arguments: what one finds never depends on another.
        let mut quotes = argv::Quotes::new();
        t.programs.each(lb, |_, at, end| {
            note(&mut seen, at, end);
            argv::command_at(b, at, &mut quotes, hits)
        });
    }
}

/// Pushes the span `at..end` to `seen`, when sightings are kept.
fn note(seen: &mut Option<&mut Vec<(usize, usize)>>, at: usize, end: usize) {
    if let Some(v) = seen {
        v.push((at, end));
    }
}

impl Extra {
    fn compile(p: &PatternConfig) -> Result<Extra, String> {
        let name = &p.name;
        if name.is_empty() || name.len() > 64 || !name.bytes().all(scan::is_key_char) {
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

/// What the position of a JSON value says about it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ctx {
    None,
    /// Under a key naming a secret, or the value of a name/value pair naming one.
    Secret(&'static keys::Keyword),
    /// The argument after a `--password`-like flag.
    Flag,
    /// Under `Authorization`: the scheme stays.
    Authorization,
    /// Under `Cookie` (every value goes) or `Set-Cookie` (the first value goes).
    Cookie {
        set: bool,
    },
}

impl Ctx {
    fn strength(self) -> u8 {
        match self {
            Ctx::None => 0,
            Ctx::Authorization | Ctx::Cookie { .. } => 1,
            Ctx::Secret(_) | Ctx::Flag => 2,
        }
    }

    /// The stronger of two contexts (the outer one on a tie).
    fn or(self, other: Ctx) -> Ctx {
        if other.strength() > self.strength() {
            other
        } else {
            self
        }
    }

    /// The marker name for a whole value replaced in this context.
    fn name(self) -> Option<&'static str> {
        match self {
            Ctx::None => None,
            Ctx::Secret(k) => Some(k.name),
            Ctx::Flag => Some("secret_assignment"),
            Ctx::Authorization => Some("authorization"),
            Ctx::Cookie { .. } => Some("cookie"),
        }
    }
}

// ---- Triggers: where a detector may start ----

/// What a literal found in the text starts.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A token format (index into `tokens::TOKENS`).
    Token(u16),
    Jwt,
    Pem,
    /// A key word stem (index into `Triggers::stems`).
    Stem(u16),
    /// `auth`: `Authorization`, or the key word stem at this index.
    Auth(u16),
    Bearer,
    Cookie,
}

/// Literal sets searched in every text, built once.
struct Triggers {
    /// Token prefixes of four bytes or more, in the original text.
    exact: LiteralSet<Trigger>,
    /// Three-byte token stems (`sk-`, `eyJ`, …): a set of their own, as a short
    /// literal in a set makes the SIMD search of the whole set slow.
    short: LiteralSet<Trigger>,
    /// Stems shorter still (`SK`), each searched on its own.
    tiny: Vec<(memmem::Finder<'static>, Trigger)>,
    /// Key words and header names, in the lower-cased text.
    words: LiteralSet<Trigger>,
    /// Program names, in the lower-cased text: separate, so `sshpass` does not hide
    /// the `pass` of `SSHPASS=…`.
    programs: LiteralSet<()>,
    /// Per key word stem: (keyword index, offset of the stem in the word).
    stems: Vec<Vec<(usize, usize)>>,
    /// Every literal searched for that holds a byte only an escape can put into a
    /// decoded JSON string (see [`Around`]).
    around: Vec<Around>,
}

/// A literal searched for (`://` and `\u` included) that holds `byte`, a quote, a
/// backslash or a control byte, at `at`: such a byte is in a decoded JSON string only
/// where an escape put it, so the literal can occur in a decoded string without
/// occurring in the text it was decoded from (`pwd\"` decodes to `pwd"`).
#[derive(Debug, Clone, Copy)]
struct Around {
    byte: u8,
    at: usize,
    literal: &'static [u8],
    /// Searched in the lower-cased text.
    fold: bool,
}

impl Around {
    /// Bytes only an escape puts into a decoded JSON string.
    fn escaped_only(b: u8) -> bool {
        b == b'"' || b == b'\\' || b < 0x20
    }

    /// Whether the literal occurs in `d` with its `byte` at `p`.
    fn occurs(&self, d: &[u8], p: usize) -> bool {
        let Some(from) = p.checked_sub(self.at) else {
            return false;
        };
        match d.get(from..from + self.literal.len()) {
            Some(w) if self.fold => w.eq_ignore_ascii_case(self.literal),
            Some(w) => w == self.literal,
            None => false,
        }
    }
}

/// Key word triggers (lower case) and the stem each stands for. At one position the
/// first listed wins, so a longer word comes before a word it starts with.
const WORD_TRIGGERS: [(&str, &str); 21] = [
    ("secretkey", "secretkey"),
    ("secret", "secret"),
    ("pass", "pass"),
    ("pwd=", "pwd"),
    ("pwd:", "pwd"),
    ("pwd ", "pwd"),
    ("pwd\"", "pwd"),
    ("pwd'", "pwd"),
    ("token", "token"),
    ("apikey", "apikey"),
    ("privatekey", "privatekey"),
    ("accountkey", "accountkey"),
    ("accesskey", "accesskey"),
    ("authkey", "authkey"),
    ("_key", "_key"),
    ("-key", "-key"),
    ("key=", "key"),
    ("credential", "credential"),
    ("signature", "signature"),
    ("sig=", "sig"),
    ("auth", "auth"),
];

/// Program names (lower case, four bytes or more) that start a command line worth
/// reading (the whole word is looked up in `argv::COMMANDS`); a trailing blank or
/// subcommand keeps short or common words from firing everywhere. No name starts
/// another, so their order decides nothing but speed: it is a search order (see
/// [`search_order`]).
const PROGRAM_TRIGGERS: [&str; 43] = [
    "curl",
    "helm",
    "rpcclient",
    "sshpass",
    "crane ",
    "podman",
    "nerdctl",
    "smbclient",
    "skopeo",
    "oras ",
    "mariadb",
    "docker",
    "http ",
    "mysql",
    "sqlcmd",
    "buildah",
    "htpasswd",
    "mongo",
    "mosquitto_",
    "lftp",
    "bcp ",
    "redis-cli",
    "openssl",
    "az login",
    "keytool",
    "jarsigner",
    "zip ",
    "flyctl",
    "cf login",
    "git ",
    "sqlldr",
    "https ",
    "yarn ",
    "ldap",
    "gh secret",
    "vault login",
    "aws ",
    "pnpm ",
    "npm ",
    "ipmitool",
    "ssh-keygen",
    "fly ",
    "sqlplus",
];

// Search orders: the order in which the literals of a set are given to its searcher,
// which decides nothing but speed. Teddy, the SIMD searcher of aho-corasick 1.1, puts
// the literals into 8 buckets (16 above 32 literals), the `i`-th into bucket
// `7 - i % 8` (`15 - i % 16`) unless one with the same low nybbles in its first four
// bytes is there already, and verifies every position whose next four bytes pass the
// merged nybble masks of a bucket. Literals that share a bucket widen its masks, so
// these orders (and that of `PROGRAM_TRIGGERS`) put together literals whose bytes are
// alike or rare in JSON audit lines: on clean lines each set has far fewer positions
// to verify and is searched in a sixth to a third less time. Which literal matches at
// a position depends only on the order of the literals that start one another, so
// `search_order` keeps their order; every order lists each literal of its set once
// (a test checks both). Should the searcher assign buckets otherwise, only speed
// changes.

/// The token prefixes of four bytes or more, in search order.
const EXACT_ORDER: [&str; 63] = [
    "glpat-",
    "ASIA",
    "LTAI",
    "sk_test_",
    "ghp_",
    "rk_test_",
    "ghs_",
    "AKIA",
    "ghr_",
    "dapi",
    "gldt-",
    "pypi-",
    "glrt-",
    "GOCSPX-",
    "glptt-",
    "ghu_",
    "hooks.slack.com/",
    "sk-ant-",
    "sk_live_",
    "dor_v1_",
    "gho_",
    "ya29.",
    "xapp-",
    "doo_v1_",
    "github_pat_",
    "xai-",
    "gloas-",
    "AGE-SECRET-KEY-1",
    "glcbt-",
    "PMAK-",
    "gsk_",
    "shpat_",
    "AIza",
    "shppa_",
    "rk_live_",
    "dckr_pat_",
    "hvs.",
    "sq0atp-",
    "whsec_",
    "glc_",
    "hvb.",
    "dp.st.",
    "npm_",
    "dp.sa.",
    "dop_v1_",
    "dp.pt.",
    "xkeysib-",
    "ATATT3",
    "shpca_",
    "sq0csp-",
    "sbp_",
    "xsmtpsib-",
    "lin_api_",
    "pplx-",
    "shpss_",
    "NRAK-",
    "glsa_",
    "dp.ct.",
    "figd_",
    "hvr.",
    "sntry",
    "pscale_",
    "key-",
];

/// The key words and header names, in search order.
const WORD_ORDER: [&str; 24] = [
    "secretkey",
    "apikey",
    "pass",
    "pwd=",
    "pwd'",
    "authkey",
    "pwd:",
    "accountkey",
    "pwd\"",
    "accesskey",
    "privatekey",
    "sig=",
    "token",
    "auth",
    "pwd ",
    "key=",
    "-key",
    "_key",
    "bearer",
    "-----begin ",
    "cookie",
    "secret",
    "credential",
    "signature",
];

static TRIGGERS: LazyLock<Triggers> = LazyLock::new(Triggers::build);

thread_local! {
    /// The lower-cased copy of the text being searched ([`Redactor::find`]).
    static LOWER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Literals and what each found one starts.
type Literals = Vec<(&'static str, Trigger)>;

impl Triggers {
    fn build() -> Triggers {
        let (exact, short, tiny) = Self::token_literals();
        let (words, stems) = Self::word_literals();
        let mut around = Vec::new();
        let exact_case = exact
            .iter()
            .chain(&short)
            .chain(&tiny)
            .map(|&(l, _)| (l, false));
        let folded = words.iter().map(|&(l, _)| (l, true));
        let programs = PROGRAM_TRIGGERS.iter().map(|&l| (l, true));
        let others = [("://", false), ("\\u", false)];
        for (l, fold) in exact_case.chain(folded).chain(programs).chain(others) {
            for (at, &byte) in l.as_bytes().iter().enumerate() {
                if Around::escaped_only(byte) {
                    let literal = l.as_bytes();
                    around.push(Around {
                        byte,
                        at,
                        literal,
                        fold,
                    });
                }
            }
        }
        Triggers {
            exact: LiteralSet::new(&search_order(exact, &EXACT_ORDER)),
            short: LiteralSet::new(&short),
            tiny: tiny
                .into_iter()
                .map(|(l, trigger)| (memmem::Finder::new(l).into_owned(), trigger))
                .collect(),
            words: LiteralSet::new(&search_order(words, &WORD_ORDER)),
            programs: LiteralSet::new(&PROGRAM_TRIGGERS.map(|p| (p, ()))),
            stems,
            around,
        }
    }

    /// The token stems and prefixes, by length: four bytes or more, three, fewer.
    fn token_literals() -> (Literals, Literals, Literals) {
        let mut exact = Vec::new();
        let mut short = vec![("eyJ", Trigger::Jwt)];
        let mut tiny = Vec::new();
        for (ti, t) in tokens::TOKENS.iter().enumerate() {
            let trigger = Trigger::Token(ti as u16);
            let literals: Vec<&str> = t.stem.map_or_else(|| t.prefixes.to_vec(), |s| vec![s]);
            for l in literals {
                match l.len() {
                    4.. => exact.push((l, trigger)),
                    3 => short.push((l, trigger)),
                    _ => tiny.push((l, trigger)),
                }
            }
        }
        (exact, short, tiny)
    }

    /// The key word and header literals, and per key word stem its candidates.
    fn word_literals() -> (Literals, Vec<Vec<(usize, usize)>>) {
        let mut stems: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut words = Vec::new();
        for (pattern, stem) in WORD_TRIGGERS {
            let candidates = keys::KEYWORDS
                .iter()
                .enumerate()
                .filter_map(|(ki, k)| k.word.find(stem).map(|at| (ki, at)))
                .collect();
            let si = stems.len() as u16;
            stems.push(candidates);
            let trigger = if stem == "auth" {
                Trigger::Auth(si)
            } else {
                Trigger::Stem(si)
            };
            words.push((pattern, trigger));
        }
        words.push(("bearer", Trigger::Bearer));
        words.push(("cookie", Trigger::Cookie));
        words.push(("-----begin ", Trigger::Pem));
        (words, stems)
    }
}

/// `literals` in the order of `order` (those it lacks last, in their order). At one
/// position the first listed of the literals that start one another matches, so
/// when the order would put one of them before one listed earlier, the literals
/// stay as listed: the set finds the same in either order.
fn search_order<T: Copy>(
    literals: Vec<(&'static str, T)>,
    order: &[&str],
) -> Vec<(&'static str, T)> {
    let rank = |l: &str| order.iter().position(|o| *o == l).unwrap_or(order.len());
    let mut sorted: Vec<(usize, &str)> = literals.iter().map(|&(l, _)| l).enumerate().collect();
    sorted.sort_by_key(|&(_, l)| rank(l));
    let keeps_order = sorted.iter().enumerate().all(|(i, &(ia, a))| {
        sorted[i + 1..]
            .iter()
            .all(|&(ib, b)| ia < ib || !(a.starts_with(b) || b.starts_with(a)))
    });
    if keeps_order {
        sorted.iter().map(|&(i, _)| literals[i]).collect()
    } else {
        literals
    }
}

/// A set of literals searched leftmost-first, each standing for a `T`. SIMD (Teddy)
/// where the CPU has it, an automaton otherwise; sets stay at 64 literals or fewer,
/// where Teddy is fast.
struct LiteralSet<T> {
    searcher: Searcher,
    kinds: Vec<T>,
}

enum Searcher {
    Packed(aho_corasick::packed::Searcher),
    Automaton(AhoCorasick),
}

impl<T: Copy> LiteralSet<T> {
    fn new(literals: &[(&str, T)]) -> Self {
        let patterns = literals.iter().map(|(l, _)| l);
        let packed = aho_corasick::packed::Config::new()
            .builder()
            .extend(patterns.clone())
            .build();
        let searcher = match packed {
            Some(p) => Searcher::Packed(p),
            None => Searcher::Automaton(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(patterns)
                    .expect("the built-in literal sets are valid"),
            ),
        };
        LiteralSet {
            searcher,
            kinds: literals.iter().map(|(_, t)| *t).collect(),
        }
    }

    /// Calls `f` with what each literal found in `hay` stands for, where it starts
    /// and where it ends. The matches reported are leftmost-first and do not overlap:
    /// an occurrence of a literal that is not reported starts inside one that is.
    fn each(&self, hay: &[u8], mut f: impl FnMut(T, usize, usize)) {
        let mut on =
            |m: aho_corasick::Match| f(self.kinds[m.pattern().as_usize()], m.start(), m.end());
        match &self.searcher {
            Searcher::Packed(p) => p.find_iter(hay).for_each(&mut on),
            Searcher::Automaton(a) => a.find_iter(hay).for_each(&mut on),
        }
    }
}

// ---- Findings and their replacement ----

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
const RANK_TOKEN: usize = 1;
const RANK_TOKEN_JWT: usize = 90;
const RANK_EXTRA: usize = 100;
const RANK_AUTHORIZATION: usize = 1_000_000;
const RANK_BEARER: usize = RANK_AUTHORIZATION + 1;
const RANK_URL: usize = RANK_AUTHORIZATION + 2;
const RANK_ARGUMENT: usize = RANK_AUTHORIZATION + 3;
const RANK_COOKIE: usize = RANK_AUTHORIZATION + 4;
const RANK_ASSIGNMENT: usize = RANK_AUTHORIZATION + 5;

const MARKER_OPEN: &str = "[REDACTED:";

/// Passes after the first over a changed text (see [`Redactor::settle`]).
const MAX_PASSES: usize = 16;

/// What replaces the rest of a text whose redaction does not settle.
const UNSETTLED: &str = "[REDACTED:unsettled]";

/// The largest character boundary of `s` at or before `at`.
fn floor_boundary(s: &str, mut at: usize) -> usize {
    at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Replaces the hits in `s`, merging overlaps. Existing markers are never matched
/// again: a hit inside one is dropped, and one that reaches into a marker is cut
/// back to its edge (what remains of it is checked again).
fn render<'a>(s: &'a str, mut hits: Vec<Hit<'_>>) -> Cow<'a, str> {
    hits.retain(|h| h.start < h.end && s.is_char_boundary(h.start) && s.is_char_boundary(h.end));
    if hits.is_empty() {
        return Cow::Borrowed(s);
    }
    if s.contains(MARKER_OPEN) {
        let markers = markers(s);
        hits = hits
            .into_iter()
            .filter_map(|h| outside_markers(s, h, &markers))
            .collect();
        if hits.is_empty() {
            return Cow::Borrowed(s);
        }
    }
    hits.sort_unstable_by_key(|h| (h.start, h.rank));
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
        out.push_str(&s[last..cur.start]);
        out.push_str(MARKER_OPEN);
        out.push_str(cur.name);
        out.push(']');
        last = cur.end;
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

/// A hit with the markers at its ends cut off, or `None` when nothing but markers
/// and separators remains. Markers are disjoint and sorted.
fn outside_markers<'n>(s: &str, mut h: Hit<'n>, markers: &[(usize, usize)]) -> Option<Hit<'n>> {
    // The marker that contains or follows the start, then the one before the end.
    let i = markers.partition_point(|&(_, me)| me <= h.start);
    if let Some(&(ms, me)) = markers.get(i)
        && ms <= h.start
    {
        h.start = me;
    }
    let j = markers.partition_point(|&(ms, _)| ms < h.end);
    if j > 0 {
        let (ms, me) = markers[j - 1];
        if ms < h.end && h.end < me {
            h.end = ms;
        }
    }
    let rest = s.get(h.start..h.end)?;
    let mut inner = markers
        .iter()
        .filter(|&&(ms, me)| h.start <= ms && me <= h.end)
        .peekable();
    // Only separators between (and around) the markers left: nothing new to redact.
    let mut i = h.start;
    let mut substantial = false;
    while i < h.end {
        if let Some(&&(ms, me)) = inner.peek()
            && ms == i
        {
            i = me;
            inner.next();
            continue;
        }
        if !b" \t:;,=@%/\"'".contains(&s.as_bytes()[i]) {
            substantial = true;
            break;
        }
        i += 1;
    }
    (!rest.is_empty() && substantial).then_some(h)
}

/// Spans of the `[REDACTED:<name>]` markers already in `s`, in order.
fn markers(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    for (at, _) in s.match_indices(MARKER_OPEN) {
        let from = at + MARKER_OPEN.len();
        let end = scan::run(b, from, |&c| scan::is_key_char(c));
        if end > from && b.get(end) == Some(&b']') {
            spans.push((at, end + 1));
        }
    }
    spans
}
