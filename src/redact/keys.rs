//! Secrets named by what stands before them: `password=…`, `"token": "…"`,
//! `--api-key …`, `export X_KEY=…`, `?X-Amz-Signature=…`, HTTP `Authorization`,
//! `Bearer`, `Cookie` and `Set-Cookie`, and passwords in URLs.
//!
//! The key words live in one table ([`KEYWORDS`]) used two ways: in text, a key word
//! found by the shared automaton is checked where it stands (it must end a key, then a
//! separator and a value follow); in JSON, [`key_context`] classifies a whole object
//! key. Only the value goes: keys, schemes, cookie names, user names and hosts stay.

use super::scan::{
    Runs, closing_quote, ends_value, ends_with_ignore_case, find_outside_markers, in_value,
    is_blank, is_key_char, is_word, run, run_back, skip_blanks, trim_dots,
};
use super::{Ctx, Hit, RANK_ASSIGNMENT, RANK_AUTHORIZATION, RANK_BEARER, RANK_COOKIE, RANK_URL};

/// When a key word counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// At the end of any key: `DB_PASSWORD`, `clientSecret`, `x-auth-token`.
    Any,
    /// As a whole key or after `_`, `-` or `.`: `pass`, `DB_PASS`, `--auth`, not `bypass`.
    Part,
    /// The `_KEY` of an environment name written in capitals: `OPENAI_KEY`, not `sort_key`.
    EnvName,
    /// A URL query parameter: after `?`, `&` or `;`, directly followed by `=`.
    Query,
    /// As [`Rule::Query`], and the value looks like a token (16+ characters, a digit,
    /// no `/`): `?key=AIza…`, not `?key=docs/index.html`.
    QueryToken,
}

/// A key word that makes the value after it a secret.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Keyword {
    pub word: &'static str,
    pub name: &'static str,
    pub rule: Rule,
    /// Whether `--<word> <value>` (a blank instead of `=`) counts.
    pub flag: bool,
    /// A file path is not the secret itself (`GOOGLE_APPLICATION_CREDENTIALS=/x.json`,
    /// the shell's `PWD=/home/x`).
    pub path_ok: bool,
}

const fn kw(word: &'static str, rule: Rule) -> Keyword {
    Keyword {
        word,
        name: "secret_assignment",
        rule,
        flag: true,
        path_ok: false,
    }
}

const fn named(name: &'static str, k: Keyword) -> Keyword {
    Keyword { name, ..k }
}

const fn no_flag(k: Keyword) -> Keyword {
    Keyword { flag: false, ..k }
}

const fn paths_ok(k: Keyword) -> Keyword {
    Keyword { path_ok: true, ..k }
}

/// Every key word, in lower case. Longer words first where one ends another, so a
/// key is named after its most specific word.
pub(super) const KEYWORDS: &[Keyword] = &[
    kw("password", Rule::Any),
    kw("passwd", Rule::Any),
    kw("passphrase", Rule::Any),
    kw("pass", Rule::Part),
    paths_ok(kw("pwd", Rule::Any)),
    named("aws_secret_access_key", kw("secret_access_key", Rule::Any)),
    named("aws_secret_access_key", kw("secretaccesskey", Rule::Any)),
    kw("secret", Rule::Any),
    kw("token", Rule::Any),
    kw("apikey", Rule::Any),
    kw("api_key", Rule::Any),
    kw("api-key", Rule::Any),
    kw("secretkey", Rule::Any),
    kw("secret_key", Rule::Any),
    kw("secret-key", Rule::Any),
    kw("privatekey", Rule::Any),
    kw("private_key", Rule::Any),
    kw("private-key", Rule::Any),
    kw("accountkey", Rule::Any),
    kw("sharedaccesskey", Rule::Any),
    kw("authkey", Rule::Any),
    kw("auth_key", Rule::Any),
    kw("auth-key", Rule::Any),
    kw("subscription-key", Rule::Any),
    kw("subscription_key", Rule::Any),
    kw("encryption_key", Rule::Any),
    kw("signing_key", Rule::Any),
    kw("master_key", Rule::Any),
    kw("_key", Rule::EnvName),
    kw("auth", Rule::Part),
    paths_ok(kw("credentials", Rule::Part)),
    paths_ok(kw("credential", Rule::Part)),
    no_flag(named("signature", kw("signature", Rule::Part))),
    no_flag(named("signature", kw("sig", Rule::Query))),
    no_flag(kw("key", Rule::QueryToken)),
];

/// What a JSON key (or a name in a name/value pair) says about the values under it.
pub(super) fn key_context(key: &str) -> Ctx {
    let b = key.as_bytes();
    let n = b.len();
    if n < 3 {
        return Ctx::None;
    }
    // Most keys end in none of the key words' last three letters: one match decides.
    let tail = [
        b[n - 3].to_ascii_lowercase(),
        b[n - 2].to_ascii_lowercase(),
        b[n - 1].to_ascii_lowercase(),
    ];
    match &tail {
        b"ord" | b"swd" | b"ase" | b"pwd" | b"ret" | b"ken" | b"key" | b"ass" | b"uth" | b"als"
        | b"ial" | b"ure" => {}
        b"ion" if ends_with_ignore_case(b, b"authorization") => return Ctx::Authorization,
        b"kie" if n >= 6 && is_part(b, n - 6, b"cookie") => {
            let set = n >= 10 && b[n - 10..n - 6].eq_ignore_ascii_case(b"set-");
            return Ctx::Cookie { set };
        }
        _ => return Ctx::None,
    }
    KEYWORDS
        .iter()
        .find(|k| ends_with_ignore_case(b, k.word.as_bytes()) && key_counts(b, n - k.word.len(), k))
        .map_or(Ctx::None, Ctx::Secret)
}

/// Whether a key word ending the key `b` at `ks..` counts under its rule, for a whole
/// key (JSON, a config name).
fn key_counts(b: &[u8], ks: usize, k: &Keyword) -> bool {
    match k.rule {
        Rule::Any => true,
        Rule::Part => is_part(b, ks, k.word.as_bytes()),
        Rule::EnvName => env_name(b, ks, ks + k.word.len()),
        Rule::Query | Rule::QueryToken => false,
    }
}

/// `word` at `ks` of `b` starts a key or a part of one (after `_`, `-`, `.` or a
/// character that is not part of a key).
fn is_part(b: &[u8], ks: usize, word: &[u8]) -> bool {
    b.get(ks..ks + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
        && (ks == 0 || matches!(b[ks - 1], b'_' | b'-' | b'.') || !is_key_char(b[ks - 1]))
}

/// `b[ks..ke]` is `_KEY` at the end of a capitalised name (`[A-Z0-9_]+`).
fn env_name(b: &[u8], ks: usize, ke: usize) -> bool {
    let is_env = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_';
    let start = run_back(b, ks, is_env);
    &b[ks..ke] == b"_KEY"
        && start < ks
        && b[start].is_ascii_uppercase()
        && (start == 0 || !b[start - 1].is_ascii_alphanumeric())
}

/// Per-call state of the text detectors: where each last finished (so hostile text
/// with many key words is scanned once) and the last unquoted value's end.
pub(super) struct KeyState {
    pub(super) ends: Runs,
    /// Ends of values in a URL query, which also stop at `#`.
    query: Runs,
    /// End of the last `?key=` value that did not look like a token: later `key=`
    /// inside it are judged the same, without another look.
    not_token: usize,
    assignment: usize,
    authorization: usize,
    bearer: usize,
    cookie: usize,
}

impl KeyState {
    pub(super) fn new() -> Self {
        KeyState {
            ends: Runs::new(in_value),
            query: Runs::new(in_query_value),
            not_token: usize::MAX,
            assignment: 0,
            authorization: 0,
            bearer: 0,
            cookie: 0,
        }
    }
}

/// A key word in text: the keyword `k` whose stem was found at `at`, starting
/// `stem_at` bytes before it. `lower` is the text in ASCII lower case (same offsets).
pub(super) fn assignment_at(
    b: &[u8],
    lower: &[u8],
    at: usize,
    candidates: &[(usize, usize)],
    st: &mut KeyState,
    hits: &mut Vec<Hit<'_>>,
) {
    if at < st.assignment {
        return;
    }
    for &(ki, stem_at) in candidates {
        let k = &KEYWORDS[ki];
        let Some(ks) = at.checked_sub(stem_at) else {
            continue;
        };
        let ke = ks + k.word.len();
        // Cheapest test first: most finds (`tokens`, `tokenize`) continue the key.
        if b.get(ke).is_some_and(|&c| is_key_char(c))
            || lower.get(ks..ke) != Some(k.word.as_bytes())
            || !text_key_counts(b, ks, ke, k)
        {
            continue;
        }
        if let Some((start, end)) = assigned_value(b, ks, ke, k, st) {
            hits.push(Hit::new(start, end, RANK_ASSIGNMENT, k.name));
            st.assignment = end;
            return;
        }
    }
}

/// Whether the key word at `ks..ke` of a text counts under its rule.
fn text_key_counts(b: &[u8], ks: usize, ke: usize, k: &Keyword) -> bool {
    match k.rule {
        Rule::Any => true,
        Rule::Part => is_part(b, ks, k.word.as_bytes()),
        Rule::EnvName => env_name(b, ks, ke),
        Rule::Query | Rule::QueryToken => {
            ks > 0 && matches!(b[ks - 1], b'?' | b'&' | b';') && b.get(ke) == Some(&b'=')
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
    st: &mut KeyState,
) -> Option<(usize, usize)> {
    let key_start = run_back(b, ks, |&c| is_key_char(c));
    // A URL query parameter (`?token=…&`): its value ends at `&` or `#`.
    let query = key_start > 0 && matches!(b[key_start - 1], b'?' | b'&');
    let (v, flag) = match after_separator(b, ke) {
        Some(_) if query => (ke + 1, false),
        Some(v) => (v, false),
        None => {
            // A flag is a word of its own: `--password X`, not `abc--password X`.
            let own_word = key_start == 0
                || matches!(
                    b[key_start - 1],
                    b' ' | b'\t' | b'\n' | b'"' | b'\'' | b'(' | b'`'
                );
            let is_flag = own_word && b[key_start..].starts_with(b"--");
            if !k.flag || !(is_flag || netrc(b, key_start, ke)) || !b.get(ke).is_some_and(is_blank)
            {
                return None;
            }
            (skip_blanks(b, ke), true)
        }
    };
    let (start, end) = if query {
        if b.get(ke) != Some(&b'=') {
            return None;
        }
        let end = st.query.end(b, v);
        (end > v).then_some((v, end))?
    } else {
        value_span(b, v, &mut st.ends)?
    };
    let value = &b[start..end];
    if (flag && value[0] == b'-') || !plausible(k, value) {
        return None;
    }
    if k.rule == Rule::QueryToken
        && (end == st.not_token
            || value.len() < 16
            || !value.iter().any(u8::is_ascii_digit)
            || value.contains(&b'/'))
    {
        st.not_token = end;
        return None;
    }
    Some((start, end))
}

/// `machine host login user password secret`, a `.netrc` line: the word `password`
/// after `login` on the same line (and after `machine`).
fn netrc(b: &[u8], ks: usize, ke: usize) -> bool {
    const LOOK_BACK: usize = 256;
    if !b[ks..ke].eq_ignore_ascii_case(b"password") || (ks > 0 && !is_blank(&b[ks - 1])) {
        return false;
    }
    let line_start = memchr::memrchr(b'\n', &b[ks.saturating_sub(LOOK_BACK)..ks])
        .map_or(ks.saturating_sub(LOOK_BACK), |i| {
            ks.saturating_sub(LOOK_BACK) + i + 1
        });
    let line = &b[line_start..ks];
    let has = |w: &[u8]| super::scan::contains(line, w);
    (has(b"machine ") || has(b"default ")) && has(b" login ")
}

fn in_query_value(c: &u8) -> bool {
    !ends_value(*c) && *c != b'#'
}

/// After a key ending at `i`: an optional closing quote (maybe backslash-escaped),
/// blanks, `=` or `:` (or `:=`, `==`, `=>`), blanks. Returns where the value starts.
/// `::` is a path (`token::Kind`), not a separator.
pub(super) fn after_separator(b: &[u8], mut i: usize) -> Option<usize> {
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
/// blank, quote or shell/JSON delimiter. `None` when empty, and for a nested JSON
/// object or array (their members are judged by their own keys).
fn value_span(b: &[u8], v: usize, ends: &mut Runs) -> Option<(usize, usize)> {
    let bare = match b.get(v) {
        Some(&q @ (b'"' | b'\'')) => match closing_quote(b, v + 1, q) {
            Some(end) => return (end > v + 1).then_some((v + 1, end)),
            None => v + 1,
        },
        Some(b'\\') if matches!(b.get(v + 1), Some(b'"' | b'\'')) => v + 2,
        Some(b'{' | b'[') => return None,
        _ => v,
    };
    let end = ends.end(b, bare);
    (end > bare).then_some((bare, end))
}

/// Whether an assigned value can be a secret: not empty, not a variable reference
/// (`$TOKEN`, `${{ secrets.X }}`), not a literal of code, not a file path where the
/// key names a file (`PWD`, `*_CREDENTIALS`), not a `fetch` credentials mode.
pub(super) fn plausible(k: &Keyword, v: &[u8]) -> bool {
    const NOT_SECRETS: [&str; 6] = ["true", "false", "null", "none", "nil", "undefined"];
    const FETCH_MODES: [&str; 3] = ["include", "omit", "same-origin"];
    let is = |words: &[&str]| words.iter().any(|w| v.eq_ignore_ascii_case(w.as_bytes()));
    match v.first() {
        None | Some(b'$') => false,
        Some(b'/' | b'~') if k.path_ok => false,
        Some(b'.') if k.path_ok && v.get(1) == Some(&b'/') => false,
        Some(_) => !(is(&NOT_SECRETS) || k.path_ok && is(&FETCH_MODES)),
    }
}

// ---- HTTP authorization ----

/// `Authorization: <scheme> <credential>` (also `=`, quoted JSON keys, and
/// `Proxy-Authorization`): the credential goes, a known scheme stays.
pub(super) fn authorization_at(b: &[u8], at: usize, st: &mut KeyState, hits: &mut Vec<Hit<'_>>) {
    const KEY: usize = "authorization".len();
    if at < st.authorization || (at > 0 && b[at - 1].is_ascii_alphanumeric()) {
        return;
    }
    let Some(mut v) = after_separator(b, at + KEY) else {
        return;
    };
    if b.get(v) == Some(&b'\\') && matches!(b.get(v + 1), Some(b'"' | b'\'')) {
        v += 1;
    }
    if matches!(b.get(v), Some(b'"' | b'\'')) {
        v += 1;
    }
    if let Some((start, end, name)) = credential(b, v, &mut st.ends) {
        hits.push(Hit::new(start, end, RANK_AUTHORIZATION, name));
        st.authorization = end;
    }
}

/// Authentication schemes that stand before a credential, in lower case.
const SCHEMES: [&str; 30] = [
    "bearer",
    "basic",
    "digest",
    "negotiate",
    "ntlm",
    "kerberos",
    "token",
    "jwt",
    "dpop",
    "hoba",
    "mutual",
    "vapid",
    "scram-sha-1",
    "scram-sha-256",
    "aws4-hmac-sha256",
    "aws",
    "oauth",
    "apikey",
    "api-key",
    "key",
    "sso-key",
    "ssws",
    "sharedkey",
    "sharedkeylite",
    "sharedaccesssignature",
    "splunk",
    "hawk",
    "mac",
    "bot",
    "client-id",
];

/// The credential of an authorization value starting at `i`: `Bearer <token>`,
/// `Basic <b64>`, `<scheme> <credential>` or a bare credential. A first word that is
/// no known scheme is the credential when it looks like one (a digit or symbol, or 20+
/// characters); otherwise it may be an unknown scheme, and both words go.
pub(super) fn credential(
    b: &[u8],
    i: usize,
    ends: &mut Runs,
) -> Option<(usize, usize, &'static str)> {
    let word_end = run(b, i, |&c| is_word(&c) || c == b'-');
    let word = &b[i..word_end];
    let is_scheme = SCHEMES
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s.as_bytes()));
    let followed = word_end > i && b.get(word_end).is_some_and(is_blank);
    if !followed {
        if is_scheme && b.get(word_end).is_none_or(|&c| ends_value(c)) {
            return None; // `Authorization: Bearer` with nothing after it
        }
        let end = ends.end(b, i);
        return (end > i && b[i] != b'$').then_some((i, end, "authorization"));
    }
    let from = skip_blanks(b, word_end);
    let end = ends.end(b, from);
    if is_scheme {
        let name = if word.eq_ignore_ascii_case(b"bearer") {
            "bearer"
        } else if word.eq_ignore_ascii_case(b"basic") {
            "basic_auth"
        } else {
            "authorization"
        };
        return (end > from && b[from] != b'$').then_some((from, end, name));
    }
    if b[i] == b'$' {
        return None;
    }
    let looks_like_credential =
        word.len() >= 20 || word.iter().any(|c| !c.is_ascii_alphabetic()) || end == from;
    if looks_like_credential {
        Some((i, word_end, "authorization"))
    } else {
        Some((i, end, "authorization"))
    }
}

/// A bare `Bearer <token>`, as in prose, logs or code. Unlike after `Authorization:`
/// the token must look like one (a digit or symbol, `=` padding, or 20+ letters), so
/// "use a Bearer token." stays as it is.
pub(super) fn bearer_at(b: &[u8], at: usize, st: &mut KeyState, hits: &mut Vec<Hit<'_>>) {
    const WORD: usize = "bearer".len();
    let after = at + WORD;
    if at < st.bearer
        || (at > 0 && b[at - 1].is_ascii_alphanumeric())
        || !b.get(after).is_some_and(is_blank)
    {
        return;
    }
    let from = skip_blanks(b, after);
    let body = run(b, from, |&c| {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
    });
    let trimmed = trim_dots(b, from, body);
    let padded = run(b, body, |&c| c == b'=');
    // `=` is padding only at the end of the token, not in `access=Bearer` or `X=…`.
    let end = if trimmed < body || b.get(padded).is_some_and(|&c| !ends_value(c)) {
        trimmed
    } else {
        padded
    };
    let token = &b[from..end];
    let looks_like_token =
        end > body || token.len() >= 20 || token.iter().any(|c| !c.is_ascii_alphabetic());
    if !token.is_empty() && looks_like_token {
        hits.push(Hit::new(from, end, RANK_BEARER, "bearer"));
        st.bearer = end;
    }
}

// ---- Cookies ----

/// `Cookie: a=1; b=2` (every value goes, names stay) and `Set-Cookie: sid=1; Path=/`
/// (the first pair's value goes, attributes stay), as headers, `-H` arguments or
/// JSON members. The header runs to the end of the line or the closing quote.
pub(super) fn cookie_at(b: &[u8], at: usize, st: &mut KeyState, hits: &mut Vec<Hit<'_>>) {
    const WORD: usize = "cookie".len();
    let ke = at + WORD;
    if at < st.cookie
        || (at > 0 && b[at - 1].is_ascii_alphanumeric())
        || b.get(ke).is_some_and(|&c| is_key_char(c))
    {
        return;
    }
    let set = at >= 4
        && b[at - 4..at].eq_ignore_ascii_case(b"set-")
        && (at == 4 || !b[at - 5].is_ascii_alphanumeric());
    let Some(v) = after_separator(b, ke) else {
        return;
    };
    let (from, to) = match b.get(v) {
        Some(&q @ (b'"' | b'\'')) => (v + 1, closing_quote(b, v + 1, q).unwrap_or(b.len())),
        _ => (v, run(b, v, |&c| !b"\r\n\"'`\\".contains(&c))),
    };
    cookie_values(b, from, to, set, false, hits);
    st.cookie = to;
}

/// The values of the cookie pairs in `b[from..to]`. A pair without `=` is a bare
/// credential, unless `file_ok` (curl's `-b file`, where a bare word names a file).
pub(super) fn cookie_values(
    b: &[u8],
    from: usize,
    to: usize,
    first_only: bool,
    file_ok: bool,
    hits: &mut Vec<Hit<'_>>,
) {
    if file_ok && !b[from..to].contains(&b'=') {
        return;
    }
    let mut i = from;
    while i < to {
        let end = find_outside_markers(b, i, to, b';').unwrap_or(to);
        let start = skip_blanks(b, i);
        let value_from = find_outside_markers(b, start, end, b'=').map_or(start, |e| e + 1);
        let value_from = skip_blanks(b, value_from);
        let value_to = value_from.max(run_back(b, end, is_blank));
        let value = &b[value_from..value_to];
        let code = value.eq_ignore_ascii_case(b"true") || value.eq_ignore_ascii_case(b"false");
        // A pair holding a marker was redacted already (perhaps of its `=`).
        let marked = memchr::memmem::find(&b[start..end], super::MARKER_OPEN.as_bytes()).is_some();
        if !value.is_empty() && value[0] != b'$' && !code && !marked {
            hits.push(Hit::new(value_from, value_to, RANK_COOKIE, "cookie"));
        }
        if first_only {
            return;
        }
        i = end + 1;
    }
}

// ---- Passwords in URLs ----

/// `scheme://user:password@host`: only the password goes. The password runs from the
/// first `:` of the user info to the last `@` of the authority, so an unencoded `@`
/// in the password is covered too.
///
/// With `seen`, the span of every `://` read is pushed to it.
pub(super) fn url_passwords(
    s: &str,
    hits: &mut Vec<Hit<'_>>,
    mut seen: Option<&mut Vec<(usize, usize)>>,
) {
    let b = s.as_bytes();
    if memchr::memchr(b'@', b).is_none() {
        return;
    }
    let ends_authority = |c: &u8| c.is_ascii_whitespace() || b"/?#\\\"'`<>".contains(c);
    for at in super::scan::SCHEME_END.find_iter(b) {
        if let Some(v) = seen.as_deref_mut() {
            v.push((at, at + 3));
        }
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

// ---- JSON inside text, keys behind escapes ----

/// JSON written inside text (a `curl -d` body, a heredoc) whose key hides a key word
/// behind escapes, `"pass\u0077ord": "…"`: the key is decoded and judged as a JSON key
/// is, and a secret-named key's string or bare value goes. Keys without `\u` are read
/// by the key-word detectors already.
pub(super) fn escaped_json_keys<'n>(b: &[u8], hits: &mut Vec<Hit<'n>>) {
    let mut done = 0;
    for at in super::scan::BACKSLASH_U.find_iter(b) {
        if at < done {
            continue;
        }
        let Some(open) = memchr::memrchr(b'"', &b[done..at]).map(|i| i + done) else {
            // No quote before this escape: none before the next one either, up to here.
            done = at;
            continue;
        };
        let Some(close) = string_end(b, open + 1) else {
            return;
        };
        done = close + 1;
        let Some(key) = unescape(&b[open + 1..close]) else {
            continue;
        };
        let Ctx::Secret(k) = key_context(&key) else {
            continue;
        };
        let mut v = close + 1;
        while b.get(v).is_some_and(|c| c.is_ascii_whitespace()) {
            v += 1;
        }
        if b.get(v) != Some(&b':') {
            continue;
        }
        v += 1;
        while b.get(v).is_some_and(|c| c.is_ascii_whitespace()) {
            v += 1;
        }
        let (start, end) = match b.get(v) {
            Some(b'"') => match string_end(b, v + 1) {
                Some(e) => (v + 1, e),
                None => (v + 1, b.len()),
            },
            Some(_) => {
                let e = v + b[v..]
                    .iter()
                    .position(|&c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                    .unwrap_or(b.len() - v);
                (v, e)
            }
            None => continue,
        };
        if start < end && plausible(k, &b[start..end]) {
            hits.push(Hit::new(start, end, RANK_ASSIGNMENT, k.name));
            done = done.max(end);
        }
    }
}

/// The index of the `"` closing a JSON string whose text starts at `from`.
fn string_end(b: &[u8], mut from: usize) -> Option<usize> {
    while from < b.len() {
        match b[from] {
            b'\\' => from += 2,
            b'"' => return Some(from),
            _ => from += 1,
        }
    }
    None
}

/// A JSON string's text decoded (`\uXXXX`, surrogate pairs, the one-letter escapes);
/// `None` when it is not valid JSON string text or is long for a key.
fn unescape(raw: &[u8]) -> Option<String> {
    if raw.len() > 256 {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    let hex = |chars: &mut std::str::Chars<'_>| {
        let h: String = chars.by_ref().take(4).collect();
        (h.len() == 4)
            .then(|| u32::from_str_radix(&h, 16).ok())
            .flatten()
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'u' => {
                let hi = hex(&mut chars)?;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let lo = hex(&mut chars)?;
                    0x10000 + ((hi - 0xD800) << 10) + lo.checked_sub(0xDC00)?
                } else {
                    hi
                };
                out.push(char::from_u32(cp)?);
            }
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            c @ ('"' | '\\' | '/') => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}
