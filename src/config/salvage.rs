//! What commands can still learn from a configuration that does not load: whether
//! it asks `record` to fail closed (`[record] on_error`), and where the daemon keeps
//! its state (`[agent] state_dir`, for `status`, which needs nothing else), and where
//! `record` reports a failure (`[record] fallback_file`).
//!
//! A configuration error must not turn `on_error = "block"` into "allow": an unset
//! `${VAR}`, an unreadable key file or a typo elsewhere in the file would otherwise
//! let every hook call through unrecorded. So, only when loading failed, the same
//! files are read again (the main file, then the drop-ins, later files winning) and
//! `on_error` is taken from each one that says it: from the parsed TOML where the
//! file parses, else from its lines (`on_error = "block"` under `[record]`, or
//! `record.on_error = …` before any table). A value with `${VAR:-default}` is
//! expanded like any other. Nothing is validated here: a file that names no
//! readable `on_error` leaves the default, allow. `state_dir` is read the same way.

use super::{OnError, interpolate, layers};
use std::path::Path;

/// The `on_error` the configuration files ask for, read without loading them.
pub fn on_error(flag: Option<&Path>) -> Option<OnError> {
    last_in_files(flag, on_error_in)
}

/// The `[agent] state_dir` the configuration files name (`~` expanded), read without
/// loading them.
pub fn state_dir(flag: Option<&Path>) -> Option<std::path::PathBuf> {
    last_in_files(flag, state_dir_in)
}

/// The `[record] fallback_file` the configuration files name (`~` expanded), read
/// without loading them: a failure to load is reported where the daemon looks.
pub fn fallback_file(flag: Option<&Path>) -> Option<std::path::PathBuf> {
    last_in_files(flag, |text| {
        let file = string_in(text, "record", "fallback_file")?;
        (!file.trim().is_empty()).then(|| super::expand_home(file.trim()))
    })
}

/// The `[record] socket` the configuration files name (`~` expanded), read without
/// loading them: sealed mode needs nothing else from the files.
pub fn socket(flag: Option<&Path>) -> Option<std::path::PathBuf> {
    last_in_files(flag, |text| {
        let socket = string_in(text, "record", "socket")?;
        let path = super::expand_home(socket.trim());
        path.is_absolute().then_some(path)
    })
}

/// What `read` finds in the configuration files, the last file that says it winning.
fn last_in_files<T>(flag: Option<&Path>, read: impl Fn(&str) -> Option<T>) -> Option<T> {
    let (main, dir) = layers::locate(flag);
    let mut files: Vec<_> = main.into_iter().collect();
    files.extend(layers::drop_ins(&dir).unwrap_or_default());
    let mut found = None;
    for file in files {
        if let Some(v) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| read(&text))
        {
            found = Some(v);
        }
    }
    found
}

/// `[record] on_error` of one file's text.
pub fn on_error_in(text: &str) -> Option<OnError> {
    match string_in(text, "record", "on_error")?.trim() {
        "block" => Some(OnError::Block),
        "allow" => Some(OnError::Allow),
        _ => None,
    }
}

/// `[agent] state_dir` of one file's text.
pub fn state_dir_in(text: &str) -> Option<std::path::PathBuf> {
    let dir = string_in(text, "agent", "state_dir")?;
    (!dir.trim().is_empty()).then(|| super::expand_home(dir.trim()))
}

/// The string `key` of `table`, `${VAR}` expanded: from the parsed TOML where the
/// text parses, else from its lines.
fn string_in(text: &str, table: &str, key: &str) -> Option<String> {
    let value = match toml::from_str::<toml::Table>(text) {
        Ok(t) => t.get(table)?.get(key)?.as_str().map(str::to_owned)?,
        Err(_) => line_value(text, table, key)?,
    };
    let lookup = |name: &str| std::env::var(name).ok();
    interpolate::expand(&value, &lookup)
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The last `key = "…"` of `[wanted]` (or `wanted.key = "…"` before any table),
/// read line by line.
fn line_value(text: &str, wanted: &str, wanted_key: &str) -> Option<String> {
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
        let ours = (table == wanted && key == wanted_key)
            || (table.is_empty() && key == format!("{wanted}.{wanted_key}"));
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

    #[test]
    fn the_socket_is_found_in_broken_files_and_must_be_absolute() {
        let socket = |text: &str| string_in(text, "record", "socket");
        assert_eq!(
            socket("[record]\nsocket = \"/run/a.sock\"\nhmac_kid = \n").as_deref(),
            Some("/run/a.sock")
        );
        assert_eq!(socket("[sealer]\nsocket = \"/x\"\n"), None);
        let dir = std::env::temp_dir().join(format!("auditship-salvage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");
        std::fs::write(&file, "[record]\nsocket = \"relative.sock\"\n[broken\n").unwrap();
        assert_eq!(super::socket(Some(&file)), None);
        std::fs::write(&file, "[record]\nsocket = \"/run/x.sock\"\n[broken\n").unwrap();
        assert_eq!(
            super::socket(Some(&file)),
            Some(std::path::PathBuf::from("/run/x.sock"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn state_dir_is_found_in_broken_files() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "[agent]
state_dir = \"/var/lib/x\"
[agent
",
                Some("/var/lib/x"),
            ),
            (
                "[agent]
state_dir = \"/s\"
bogus = 1
",
                Some("/s"),
            ),
            (
                "agent.state_dir = '/t'
[[sink]
",
                Some("/t"),
            ),
            (
                "[record]
state_dir = \"/no\"
[agent
",
                None,
            ),
            (
                "[agent]
host = \"h\"
",
                None,
            ),
            ("not toml at all", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                state_dir_in(text),
                want.map(std::path::PathBuf::from),
                "{text}"
            );
        }
    }
}
