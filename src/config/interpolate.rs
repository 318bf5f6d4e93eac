//! `${VAR}` and `${VAR:-default}` in configuration strings. Pure: the caller passes
//! the lookup, so tests need no process environment.
//!
//! Applied to string values after the TOML is parsed, never to the text: a variable
//! can change a value, not the structure of the file. `$${` writes a literal `${`;
//! any other `$` is literal. `${VAR:-default}` takes the default when VAR is unset
//! or empty, as the shell does; the default is literal text up to the first `}`.
//! A variable that is unset and has no default is an error.

use std::borrow::Cow;

/// Why a string could not be expanded, and at which byte of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset of the `${` in the string.
    pub at: usize,
    /// The reference as written, from `${` (used to find it in the source text).
    pub reference: String,
    pub message: String,
}

/// Expands every reference in `s`.
pub fn expand<'s>(
    s: &'s str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Cow<'s, str>, Problem> {
    if !s.contains('$') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let at = s.len() - rest.len() + i;
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let name_len = body
                .char_indices()
                .find(|&(j, c)| {
                    !(c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit()))
                })
                .map_or(body.len(), |(j, _)| j);
            let name = &body[..name_len];
            let problem = |message: String| Problem {
                at,
                reference: format!("${{{name}"),
                message,
            };
            if name.is_empty() {
                return Err(problem(
                    "expected a variable name after \"${\" (letters, digits, '_'; write \"$${\" for a literal \"${\")".into(),
                ));
            }
            let after_name = &body[name_len..];
            let (default, after) = if let Some(d) = after_name.strip_prefix(":-") {
                match d.find('}') {
                    Some(end) => (Some(&d[..end]), &d[end + 1..]),
                    None => {
                        return Err(problem(format!("expected \"}}\" to close \"${{{name}:-\"")));
                    }
                }
            } else if let Some(a) = after_name.strip_prefix('}') {
                (None, a)
            } else {
                return Err(problem(format!(
                    "expected \"}}\" or \":-default}}\" after \"${{{name}\""
                )));
            };
            match (
                lookup(name).filter(|v| !(default.is_some() && v.is_empty())),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(problem(format!(
                        "environment variable {name} is not set (write \"${{{name}:-default}}\" to give a default)"
                    )));
                }
            }
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// True when `s` refers to a variable (`${NAME...`), as opposed to having no `$`
/// or only literal ones (`$$${` escapes included): whether its value may come from
/// the environment.
pub fn has_reference(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            rest = after;
        } else if tail.starts_with("${") {
            return true;
        } else {
            rest = &tail[1..];
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("devbox".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${HOST}".into()),
            _ => None,
        }
    }

    fn check(input: &str, want: Result<&str, &str>) {
        let got = expand(input, &env);
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, w, "{input:?}"),
            (Err(p), Err(w)) => assert!(p.message.contains(w), "{input:?}: {p:?}"),
            (g, w) => panic!("{input:?}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn expansion() {
        for (input, want) in [
            ("plain", Ok("plain")),
            ("${HOST}", Ok("devbox")),
            ("a-${HOST}-b", Ok("a-devbox-b")),
            ("${HOST}${HOST}", Ok("devboxdevbox")),
            ("${UNSET:-fallback}", Ok("fallback")),
            ("${UNSET:-}", Ok("")),
            ("${EMPTY}", Ok("")),
            ("${EMPTY:-d}", Ok("d")),
            ("${HOST:-d}", Ok("devbox")),
            ("${UNSET:-a:b/c}", Ok("a:b/c")),
            // A value is not expanded again.
            ("${DOLLAR}", Ok("${HOST}")),
            ("$${HOST}", Ok("${HOST}")),
            // Leftmost first: "$" then "$${" (a literal "${").
            ("$$${HOST}", Ok("$${HOST}")),
            ("cost $5", Ok("cost $5")),
            ("$", Ok("$")),
            ("$HOST", Ok("$HOST")),
            ("${UNSET}", Err("environment variable UNSET is not set")),
            ("${}", Err("expected a variable name")),
            ("${9X}", Err("expected a variable name")),
            ("${HOST", Err("expected \"}\" or \":-default}\"")),
            ("${HOST-x}", Err("expected \"}\" or \":-default}\"")),
            ("${UNSET:-x", Err("expected \"}\" to close")),
        ] {
            check(input, want);
        }
    }

    #[test]
    fn references_are_told_from_literal_dollars() {
        for (input, want) in [
            ("plain", false),
            ("cost $5", false),
            ("$${HOST}", false),
            ("${HOST}", true),
            ("Bearer ${TOKEN}", true),
            ("$${A}${B}", true),
            ("$$${HOST}", false),
            ("${UNSET:-x}", true),
        ] {
            assert_eq!(has_reference(input), want, "{input:?}");
        }
    }

    #[test]
    fn problems_say_where_the_reference_is() {
        let p = expand("https://${SIEM_HOST}:8088", &env).unwrap_err();
        assert_eq!(p.at, 8);
        assert_eq!(p.reference, "${SIEM_HOST");
    }
}
