//! What sink settings mean, where validation needs it: the shape records are written
//! in, the pieces of an Elasticsearch index pattern, syslog facility names. Read here
//! when the configuration is loaded, used by the sinks (`ship::sinks`).

/// How a sink writes each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Native,
    Ecs,
    Ocsf,
}

impl Shape {
    /// `native`, `ecs` or `ocsf`.
    pub fn parse(s: &str) -> Option<Shape> {
        match s {
            "native" => Some(Shape::Native),
            "ecs" => Some(Shape::Ecs),
            "ocsf" => Some(Shape::Ocsf),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shape::Native => "native",
            Shape::Ecs => "ecs",
            Shape::Ocsf => "ocsf",
        }
    }
}

/// A piece of the index pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexPart {
    Text(String),
    Year,
    Month,
    Day,
}

pub fn parse_index_pattern(p: &str) -> Result<Vec<IndexPart>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let part = match chars.next() {
            Some('Y') => IndexPart::Year,
            Some('m') => IndexPart::Month,
            Some('d') => IndexPart::Day,
            Some('%') => {
                text.push('%');
                continue;
            }
            other => {
                return Err(format!(
                    "unknown %-sequence {:?} (use %Y, %m, %d or %%)",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        };
        if !text.is_empty() {
            parts.push(IndexPart::Text(std::mem::take(&mut text)));
        }
        parts.push(part);
    }
    if !text.is_empty() {
        parts.push(IndexPart::Text(text));
    }
    Ok(parts)
}

/// Checks an index pattern against Elasticsearch's index name rules.
pub fn check_index_pattern(p: &str) -> Result<(), String> {
    parse_index_pattern(p)?;
    let sample = p
        .replace("%Y", "2026")
        .replace("%m", "11")
        .replace("%d", "26");
    if sample.is_empty()
        || sample.starts_with(['-', '_', '+'])
        || sample == "."
        || sample == ".."
        || sample.chars().any(|c| {
            c.is_ascii_uppercase()
                || matches!(
                    c,
                    '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
                )
        })
    {
        return Err(format!(
            "{p:?} is not a valid index name: lowercase, no \\ / * ? \" < > | , # : or spaces, not starting with - _ +"
        ));
    }
    Ok(())
}

/// = 16–23, ...), or of a number 0–23.
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    if let Ok(n) = name.parse::<u8>() {
        return (n < 24).then_some(n);
    }
    NAMES.iter().position(|n| *n == name).map(|p| p as u8)
}
