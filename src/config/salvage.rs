//! What `record` can still learn from a configuration that does not load: whether
//! it asks to fail closed (`[record] on_error`).
//!
//! A configuration error must not turn `on_error = "block"` into "allow": an unset
//! `${VAR}`, an unreadable key file or a typo elsewhere in the file would otherwise
//! let every hook call through unrecorded. So, only when loading failed, the same
//! files are read again (the main file, then the drop-ins, later files winning) and
//! `on_error` is taken from each one that says it: from the parsed TOML where the
//! file parses, else from its lines (`on_error = "block"` under `[record]`, or
//! `record.on_error = …` before any table). A value with `${VAR:-default}` is
//! expanded like any other. Nothing is validated here: a file that names no
//! readable `on_error` leaves the default, allow.

use super::{OnError, interpolate, layers};
use std::path::Path;

/// The `on_error` the configuration files ask for, read without loading them.
pub fn on_error(flag: Option<&Path>) -> Option<OnError> {
    let (main, dir) = layers::locate(flag);
    let mut files: Vec<_> = main.into_iter().collect();
    files.extend(layers::drop_ins(&dir).unwrap_or_default());
    let mut found = None;
    for file in files {
        if let Some(v) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| on_error_in(&text))
        {
            found = Some(v);
        }
    }
    found
}

/// `[record] on_error` of one file's text.
pub fn on_error_in(text: &str) -> Option<OnError> {
    let value = match toml::from_str::<toml::Table>(text) {
        Ok(table) => table
            .get("record")?
            .get("on_error")?
            .as_str()
            .map(str::to_owned)?,
        Err(_) => on_error_line(text)?,
    };
    let lookup = |name: &str| std::env::var(name).ok();
    match interpolate::expand(&value, &lookup).ok()?.trim() {
        "block" => Some(OnError::Block),
        "allow" => Some(OnError::Allow),
        _ => None,
    }
}

/// The last `on_error = "…"` of the `[record]` table, read line by line.
fn on_error_line(text: &str) -> Option<String> {
    let mut table = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
        let ours = (table == "record" && key == "on_error")
            || (table.is_empty() && key == "record.on_error");
        if ours && let Some(v) = quoted(value.trim()) {
            found = Some(v);
        }
    }
    found
}

/// The text of a TOML basic or literal string at the start of `s`.
fn quoted(s: &str) -> Option<String> {
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &s[1..];
    Some(rest[..rest.find(quote)?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_error_is_found_in_broken_files() {
        let cases: &[(&str, Option<OnError>)] = &[
            (
                "[record]\non_error = \"block\"\nbogus = 1\n",
                Some(OnError::Block),
            ),
            (
                "[record]\non_error = 'block'\ndir = \"unterminated\n",
                Some(OnError::Block),
            ),
            ("record.on_error=\"block\"\n[agent\n", Some(OnError::Block)),
            ("[agent]\non_error = \"block\"\n[record\n", None),
            (
                "[record]\ndir = \"x\"\n[[sink]]\non_error = \"block\" oops\n",
                None,
            ),
            (
                "[record]\non_error = \"${AUDITSHIP_SALVAGE_UNSET:-block}\"\n",
                Some(OnError::Block),
            ),
            ("[record]\non_error = \"allow\"\n", Some(OnError::Allow)),
            ("[record]\non_error = \"maybe\"\n", None),
            ("not toml at all", None),
        ];
        for (text, want) in cases {
            assert_eq!(on_error_in(text), *want, "{text}");
        }
    }
}
