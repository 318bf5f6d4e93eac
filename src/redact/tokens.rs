//! Credentials recognisable by their own shape: provider tokens with a fixed prefix
//! (`ghp_…`, `sk_live_…`, `AIza…`), JSON Web Tokens, PEM private keys.
//!
//! A token is found wherever it stands (in a URL, after `=`, in prose), so these
//! detectors need no key word. Each is started by a trigger (its prefix, found by the
//! shared automaton) and checks the body that follows: alphabet, length, and for the
//! short, generic prefixes a shape that ordinary words do not have.

use super::scan::{Runs, is_b64url, is_hex, is_upper_alnum, is_word, trim_dots};
use super::{Hit, RANK_PRIVATE_KEY, RANK_TOKEN, RANK_TOKEN_JWT};
use std::ops::RangeInclusive;

/// The alphabet of a token body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    UpperAlnum,
    Alnum,
    Word,
    B64url,
    /// base64url plus `.` (tokens made of dotted parts).
    B64urlDot,
    /// base64url plus `=` padding.
    B64urlPad,
    /// Word characters plus `-` and `/` (webhook paths).
    Path,
    Hex,
}

impl Class {
    pub(super) fn test(self) -> fn(&u8) -> bool {
        match self {
            Class::UpperAlnum => is_upper_alnum,
            Class::Alnum => u8::is_ascii_alphanumeric,
            Class::Word => is_word,
            Class::B64url => is_b64url,
            Class::B64urlDot => |c| is_b64url(c) || *c == b'.',
            Class::B64urlPad => |c| is_b64url(c) || *c == b'=',
            Class::Path => |c| is_b64url(c) || *c == b'/',
            Class::Hex => is_hex,
        }
    }
}

/// What a body must look like beyond its alphabet and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Any,
    /// At least one digit and one letter: `sk-learn-contrib` is a package, not a key.
    DigitAndLetter,
    /// Upper and lower case letters (random tokens without digits).
    MixedCase,
    /// Holds a `.` (SendGrid: two dotted parts).
    Dotted,
}

impl Shape {
    fn holds(self, body: &[u8]) -> bool {
        match self {
            Shape::Any => true,
            Shape::DigitAndLetter => {
                body.iter().any(u8::is_ascii_digit) && body.iter().any(u8::is_ascii_alphabetic)
            }
            Shape::MixedCase => {
                body.iter().any(u8::is_ascii_uppercase) && body.iter().any(u8::is_ascii_lowercase)
            }
            Shape::Dotted => body.contains(&b'.'),
        }
    }
}

/// A token format: a literal prefix and the shape of what follows.
pub(super) struct Token {
    pub name: &'static str,
    /// Searched for; every prefix starts with it. `None`: each prefix is searched for
    /// itself. A stem shorter than four bytes is searched for on its own (it would
    /// slow the shared automaton down for every text).
    pub stem: Option<&'static str>,
    pub prefixes: &'static [&'static str],
    pub body: Class,
    /// Allowed body length, after trailing dots are trimmed.
    pub len: RangeInclusive<usize>,
    pub shape: Shape,
    /// Keep the prefix visible and replace only the body (webhook URLs).
    pub keep_prefix: bool,
}

const fn token(
    name: &'static str,
    prefixes: &'static [&'static str],
    body: Class,
    len: RangeInclusive<usize>,
) -> Token {
    Token {
        name,
        stem: None,
        prefixes,
        body,
        len,
        shape: Shape::Any,
        keep_prefix: false,
    }
}

const fn stemmed(mut t: Token, stem: &'static str, shape: Shape) -> Token {
    t.stem = Some(stem);
    t.shape = shape;
    t
}

/// The token formats, most specific first (the order names overlapping findings).
/// Lengths are loose where providers vary them; the prefixes carry the certainty.
pub(super) const TOKENS: &[Token] = &[
    token(
        "aws_access_key_id",
        &["AKIA", "ASIA"],
        Class::UpperAlnum,
        16..=16,
    ),
    token("alibaba_access_key_id", &["LTAI"], Class::Alnum, 12..=28),
    token(
        "github_token",
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        Class::Alnum,
        30..=usize::MAX,
    ),
    token(
        "github_token",
        &["github_pat_"],
        Class::Word,
        22..=usize::MAX,
    ),
    token(
        "gitlab_token",
        &["glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "gloas-"],
        Class::B64urlDot,
        20..=usize::MAX,
    ),
    stemmed(
        token(
            "slack_token",
            &[
                "xoxe.xoxp-",
                "xoxa-",
                "xoxb-",
                "xoxc-",
                "xoxd-",
                "xoxe-",
                "xoxp-",
                "xoxr-",
                "xoxs-",
            ],
            Class::B64url,
            10..=usize::MAX,
        ),
        "xox",
        Shape::Any,
    ),
    token("slack_token", &["xapp-"], Class::B64url, 10..=usize::MAX),
    Token {
        keep_prefix: true,
        stem: Some("hooks.slack.com/"),
        ..token(
            "slack_webhook",
            &[
                "hooks.slack.com/services/",
                "hooks.slack.com/workflows/",
                "hooks.slack.com/triggers/",
            ],
            Class::Path,
            8..=usize::MAX,
        )
    },
    token(
        "anthropic_api_key",
        &["sk-ant-"],
        Class::B64url,
        20..=usize::MAX,
    ),
    token(
        "stripe_key",
        &["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
        Class::Alnum,
        16..=usize::MAX,
    ),
    token("stripe_key", &["whsec_"], Class::Alnum, 24..=usize::MAX),
    stemmed(
        token(
            "openai_api_key",
            &["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-", "sk-"],
            Class::B64url,
            20..=usize::MAX,
        ),
        "sk-",
        Shape::DigitAndLetter,
    ),
    token("google_api_key", &["AIza"], Class::B64url, 30..=45),
    token(
        "google_oauth_token",
        &["ya29."],
        Class::B64urlDot,
        20..=usize::MAX,
    ),
    token(
        "google_client_secret",
        &["GOCSPX-"],
        Class::B64url,
        20..=usize::MAX,
    ),
    token("npm_token", &["npm_"], Class::Alnum, 30..=usize::MAX),
    Token {
        shape: Shape::DigitAndLetter,
        ..token("pypi_token", &["pypi-"], Class::B64url, 16..=usize::MAX)
    },
    stemmed(
        token(
            "sendgrid_api_key",
            &["SG."],
            Class::B64urlDot,
            40..=usize::MAX,
        ),
        "SG.",
        Shape::Dotted,
    ),
    stemmed(
        token("twilio_api_key", &["SK"], Class::Hex, 32..=32),
        "SK",
        Shape::DigitAndLetter,
    ),
    stemmed(
        token("huggingface_token", &["hf_"], Class::Alnum, 30..=usize::MAX),
        "hf_",
        Shape::MixedCase,
    ),
    token(
        "digitalocean_token",
        &["dop_v1_", "doo_v1_", "dor_v1_"],
        Class::Hex,
        64..=64,
    ),
    token(
        "shopify_token",
        &["shpat_", "shpca_", "shppa_", "shpss_"],
        Class::Hex,
        32..=32,
    ),
    token(
        "docker_hub_token",
        &["dckr_pat_"],
        Class::B64url,
        20..=usize::MAX,
    ),
    token(
        "vault_token",
        &["hvs.", "hvb.", "hvr."],
        Class::B64url,
        20..=usize::MAX,
    ),
    token(
        "grafana_token",
        &["glc_", "glsa_"],
        Class::B64urlPad,
        20..=usize::MAX,
    ),
    token("databricks_token", &["dapi"], Class::Hex, 32..=32),
    token("groq_api_key", &["gsk_"], Class::Alnum, 40..=usize::MAX),
    stemmed(
        token(
            "replicate_api_token",
            &["r8_"],
            Class::Alnum,
            30..=usize::MAX,
        ),
        "r8_",
        Shape::Any,
    ),
    token(
        "age_secret_key",
        &["AGE-SECRET-KEY-1"],
        Class::UpperAlnum,
        40..=usize::MAX,
    ),
    stemmed(
        token(
            "sentry_token",
            &["sntrys_", "sntryu_"],
            Class::B64urlPad,
            30..=usize::MAX,
        ),
        "sntry",
        Shape::Any,
    ),
    token(
        "postman_api_key",
        &["PMAK-"],
        Class::B64url,
        20..=usize::MAX,
    ),
    token("figma_token", &["figd_"], Class::B64url, 20..=usize::MAX),
    token(
        "atlassian_api_token",
        &["ATATT3"],
        Class::B64urlPad,
        50..=usize::MAX,
    ),
    token(
        "square_token",
        &["sq0atp-", "sq0csp-"],
        Class::B64url,
        20..=usize::MAX,
    ),
    token(
        "brevo_api_key",
        &["xkeysib-", "xsmtpsib-"],
        Class::B64url,
        40..=usize::MAX,
    ),
    token(
        "linear_api_key",
        &["lin_api_"],
        Class::Alnum,
        30..=usize::MAX,
    ),
    token(
        "perplexity_api_key",
        &["pplx-"],
        Class::Alnum,
        40..=usize::MAX,
    ),
    token("xai_api_key", &["xai-"], Class::Alnum, 60..=usize::MAX),
    token(
        "newrelic_api_key",
        &["NRAK-"],
        Class::UpperAlnum,
        27..=usize::MAX,
    ),
    token(
        "doppler_token",
        &["dp.pt.", "dp.st.", "dp.sa.", "dp.ct."],
        Class::Alnum,
        40..=usize::MAX,
    ),
    token("supabase_token", &["sbp_"], Class::Alnum, 40..=usize::MAX),
    stemmed(
        token(
            "planetscale_token",
            &["pscale_tkn_", "pscale_pw_", "pscale_oauth_"],
            Class::B64url,
            30..=usize::MAX,
        ),
        "pscale_",
        Shape::Any,
    ),
    token("mailgun_api_key", &["key-"], Class::Hex, 32..=32),
];

/// The names the token table writes, each once.
pub(super) fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = Vec::new();
    for t in TOKENS {
        if !names.contains(&t.name) {
            names.push(t.name);
        }
    }
    names
}

/// Tracks, per call, what the token detectors already covered and the last body run.
pub(super) struct TokenState {
    /// The last token found: triggers inside it are parts of it. (Triggers of
    /// different searchers arrive out of text order, so only this span is skipped.)
    covered: (usize, usize),
    /// The last body rejected for good (too short, bad shape, running on into more
    /// letters) by format index and end: a later trigger inside it has a part of that
    /// body, which fails the same way.
    rejected: Option<(usize, usize)>,
    runs: Option<(Class, Runs)>,
    jwt: Runs,
    jwt_covered: usize,
    pem_covered: usize,
}

impl TokenState {
    pub(super) fn new() -> Self {
        TokenState {
            covered: (0, 0),
            rejected: None,
            runs: None,
            jwt: Runs::new(is_b64url),
            jwt_covered: 0,
            pem_covered: 0,
        }
    }

    fn body_end(&mut self, b: &[u8], class: Class, from: usize) -> usize {
        match &mut self.runs {
            Some((c, runs)) if *c == class => runs.end(b, from),
            slot => {
                let mut runs = Runs::new(class.test());
                let end = runs.end(b, from);
                *slot = Some((class, runs));
                end
            }
        }
    }
}

/// A token of format `ti` starting at `at`, where its trigger was found.
pub(super) fn token_at(
    b: &[u8],
    at: usize,
    ti: usize,
    st: &mut TokenState,
    hits: &mut Vec<Hit<'_>>,
) {
    let t = &TOKENS[ti];
    if (st.covered.0..st.covered.1).contains(&at) || (at > 0 && b[at - 1].is_ascii_alphanumeric()) {
        return;
    }
    let Some(prefix) = t
        .prefixes
        .iter()
        .find(|p| b[at..].starts_with(p.as_bytes()))
    else {
        return;
    };
    let from = at + prefix.len();
    let end = trim_dots(b, from, st.body_end(b, t.body, from));
    if st.rejected == Some((ti, end)) {
        return;
    }
    let body = &b[from..end];
    if body.len() < *t.len.start()
        || b.get(end).is_some_and(u8::is_ascii_alphanumeric)
        || !t.shape.holds(body)
    {
        st.rejected = Some((ti, end));
        return;
    }
    if body.len() > *t.len.end() {
        return;
    }
    let start = if t.keep_prefix { from } else { at };
    hits.push(Hit::new(start, end, RANK_TOKEN + ti, t.name));
    st.covered = (at, end);
}

/// A JSON Web Token (`eyJ…` header, payload, signature; five parts when encrypted),
/// wherever it stands. Two base64url parts of ten or more characters are required, so
/// a lone base64 JSON blob is left alone.
pub(super) fn jwt_at(b: &[u8], at: usize, st: &mut TokenState, hits: &mut Vec<Hit<'_>>) {
    const MIN_PART: usize = 10;
    if at < st.jwt_covered || (at > 0 && (is_b64url(&b[at - 1]) || b[at - 1] == b'.')) {
        return;
    }
    let mut end = st.jwt.end(b, at);
    if end - at < MIN_PART {
        return;
    }
    let mut parts = 1;
    while parts < 5 && b.get(end) == Some(&b'.') {
        let next = st.jwt.end(b, end + 1);
        if next == end + 1 || (parts == 1 && next - (end + 1) < MIN_PART) {
            break;
        }
        end = next;
        parts += 1;
    }
    if parts >= 3 || (parts == 2 && b.get(end) == Some(&b'.')) {
        hits.push(Hit::new(at, end, RANK_TOKEN_JWT, "jwt"));
        st.jwt_covered = end;
    }
}

/// `-----BEGIN <label>PRIVATE KEY-----` through the next `-----END …-----`, or to the
/// end of the text when the END line is missing (a truncated key is still a key).
pub(super) fn private_key_at(s: &str, at: usize, st: &mut TokenState, hits: &mut Vec<Hit<'_>>) {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    const DASHES: &str = "-----";
    if at < st.pem_covered || !s[at..].starts_with(BEGIN) {
        return;
    }
    let label_start = at + BEGIN.len();
    // A label is short: look for its closing dashes nearby only, so many BEGINs
    // without a label do not each search the rest of the text.
    let window = &s.as_bytes()[label_start..s.len().min(label_start + 80)];
    let Some(label_len) = memchr::memmem::find(window, DASHES.as_bytes()) else {
        return;
    };
    let label = &window[..label_len];
    let is_label = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ';
    if !label.iter().all(is_label)
        || !(label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK"))
    {
        return;
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
    st.pem_covered = end;
}
