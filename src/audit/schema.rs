//! The v1 event schema: required members, their types, the closed sets of `action`
//! and `outcome`, and the fields the chain needs from a valid event.

use super::json::{Number, Object, Value};

pub const ACTIONS: [&str; 11] = [
    "file_read",
    "file_write",
    "tool_execution",
    "api_call",
    "user_prompt",
    "session_start",
    "session_end",
    "ai_decision",
    "permission_change",
    "config_change",
    "agent_event",
];

pub const OUTCOMES: [&str; 4] = ["success", "failure", "denied", "attempted"];

/// 64 zeros: the `prev_hash` of a chain's first event.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the chain and the HMAC check read from a schema-valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFields<'v> {
    pub seq: u64,
    pub prev_hash: &'v str,
    pub hash: &'v str,
    pub kid: Option<&'v str>,
    pub hmac: Option<&'v str>,
}

/// The required members; `seen` has one bit per member, in this order.
const REQUIRED: [&str; 12] = [
    "v",
    "id",
    "seq",
    "timestamp",
    "user_id",
    "session_id",
    "host",
    "action",
    "resource",
    "outcome",
    "prev_hash",
    "hash",
];

/// A top-level member's value as the schema sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'v> {
    Int(i64),
    Str(&'v str),
    /// A string whose text holds escapes the reader did not decode (the fast lane's
    /// [`super::tape`]): a string for the type checks; a member whose text the schema
    /// reads fails, and the caller checks the line on the general path.
    EscapedStr,
    Object,
    /// An array, and whether every item is a string.
    Array {
        strings: bool,
    },
    /// Anything else, by its type's name.
    Other(&'static str),
}

impl<'v> Field<'v> {
    pub fn of(value: &'v Value<'_>) -> Field<'v> {
        match value {
            Value::Number(Number::Int(n)) => Field::Int(*n),
            Value::String(s) => Field::Str(s),
            Value::Object(_) => Field::Object,
            Value::Array(items) => Field::Array {
                strings: items.iter().all(|t| t.as_str().is_some()),
            },
            other => Field::Other(other.type_name()),
        }
    }

    fn as_str(self) -> Option<&'v str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    fn is_str(self) -> bool {
        matches!(self, Field::Str(_) | Field::EscapedStr)
    }

    fn type_name(self) -> &'static str {
        match self {
            Field::Int(_) => "number",
            Field::Str(_) | Field::EscapedStr => "string",
            Field::Object => "object",
            Field::Array { .. } => "array",
            Field::Other(name) => name,
        }
    }
}

/// Checks an event object against the v1 schema. The error names the first offence.
pub fn check<'v>(obj: &'v Object<'_>) -> Result<ChainFields<'v>, String> {
    check_fields(obj.iter().map(|(k, v)| (&**k, Field::of(v))))
}

/// [`check`] on an event's top-level members, each key with its value's [`Field`],
/// in the order of the object's keys (the error names the first offence in that order).
pub fn check_fields<'v>(
    members: impl Iterator<Item = (&'v str, Field<'v>)>,
) -> Result<ChainFields<'v>, String> {
    let mut seen = 0u16;
    let mut f = ChainFields {
        seq: 0,
        prev_hash: "",
        hash: "",
        kid: None,
        hmac: None,
    };
    for (key, value) in members {
        let text = |name: &str| match value {
            Field::EscapedStr => Err(format!("{name:?} holds escapes not decoded")),
            _ => Ok(value.as_str()),
        };
        match key {
            "v" => match value {
                Field::Int(1) => {}
                _ => return Err("\"v\" must be the integer 1".into()),
            },
            "seq" => match value {
                Field::Int(n) if n >= 0 => f.seq = n as u64,
                _ => return Err("\"seq\" must be a non-negative integer".into()),
            },
            "id" | "user_id" | "session_id" | "host" | "resource" if !value.is_str() => {
                return Err(format!(
                    "{key:?} must be a string, found {}",
                    value.type_name()
                ));
            }
            "timestamp" => match text(key)? {
                Some(t) if is_timestamp(t) => {}
                Some(t) => {
                    return Err(format!(
                        "\"timestamp\" {t:?} is not RFC 3339 UTC ending in Z"
                    ));
                }
                None => return Err("\"timestamp\" must be a string".into()),
            },
            "action" => match text(key)? {
                Some(a) if ACTIONS.contains(&a) => {}
                Some(a) => return Err(format!("unknown action {a:?}")),
                None => return Err("\"action\" must be a string".into()),
            },
            "outcome" => match text(key)? {
                Some(o) if OUTCOMES.contains(&o) => {}
                Some(o) => return Err(format!("unknown outcome {o:?}")),
                None => return Err("\"outcome\" must be a string".into()),
            },
            "prev_hash" => f.prev_hash = hex64(key, text(key)?)?,
            "hash" => f.hash = hex64(key, text(key)?)?,
            "hmac" => f.hmac = Some(hex64(key, text(key)?)?),
            "kid" => match text(key)? {
                Some(k) => f.kid = Some(k),
                None => return Err("\"kid\" must be a string".into()),
            },
            "metadata" | "identity" | "decision" if value != Field::Object => {
                return Err(format!(
                    "{key:?} must be an object, found {}",
                    value.type_name()
                ));
            }
            "compliance_tags" => match value {
                Field::Array { strings: true } => {}
                _ => return Err("\"compliance_tags\" must be an array of strings".into()),
            },
            _ => {}
        }
        seen |= required_bit(key);
    }
    if seen != (1 << REQUIRED.len()) - 1 {
        let missing: Vec<&str> = REQUIRED
            .iter()
            .enumerate()
            .filter(|(i, _)| seen & (1 << i) == 0)
            .map(|(_, r)| *r)
            .collect();
        return Err(format!("missing required field(s): {}", missing.join(", ")));
    }
    match (f.kid, f.hmac) {
        (Some(_), None) => return Err("\"kid\" without \"hmac\"".into()),
        (None, Some(_)) => return Err("\"hmac\" without \"kid\"".into()),
        _ => {}
    }
    Ok(f)
}

/// The bit of a required member in `seen` (its place in `REQUIRED`), 0 for others.
fn required_bit(key: &str) -> u16 {
    let place = match key {
        "v" => 0,
        "id" => 1,
        "seq" => 2,
        "timestamp" => 3,
        "user_id" => 4,
        "session_id" => 5,
        "host" => 6,
        "action" => 7,
        "resource" => 8,
        "outcome" => 9,
        "prev_hash" => 10,
        "hash" => 11,
        _ => return 0,
    };
    1 << place
}

fn hex64<'v>(key: &str, value: Option<&'v str>) -> Result<&'v str, String> {
    match value {
        Some(s) if is_hex64(s) => Ok(s),
        _ => Err(format!("{key:?} must be 64 lowercase hex digits")),
    }
}

pub fn is_hex64(s: &str) -> bool {
    // Without a branch per byte, so the compiler can check many bytes at once.
    let bad = s.bytes().fold(0u8, |bad, b| {
        let digit = b.wrapping_sub(b'0') < 10;
        let lower = b.wrapping_sub(b'a') < 6;
        bad | u8::from(!(digit | lower))
    });
    s.len() == 64 && bad == 0
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with plausible ranges.
pub fn is_timestamp(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return false;
    }
    let shape = b"dddd-dd-ddTdd:dd:dd";
    for (i, &s) in shape.iter().enumerate() {
        let ok = if s == b'd' {
            b[i].is_ascii_digit()
        } else {
            b[i] == s
        };
        if !ok {
            return false;
        }
    }
    let rest = &b[19..b.len() - 1];
    if !rest.is_empty()
        && (rest[0] != b'.' || rest.len() < 2 || !rest[1..].iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'));
    let (month, day, hour, min, sec) =
        (num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    let year = num(0..4);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day) && hour < 24 && min < 60 && sec <= 60
}

#[cfg(test)]
mod tests {
    use super::super::json::parse;
    use super::*;

    const GOOD: &str = r#"{"v":1,"id":"x","seq":3,"timestamp":"2026-11-26T07:06:42.123Z","user_id":"u","session_id":"s","host":"h","action":"file_read","resource":"/r","outcome":"success","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"ab00000000000000000000000000000000000000000000000000000000000000"}"#;

    fn check_with(edit: &str) -> Result<u64, String> {
        // `edit` is spliced in as extra members; later duplicates win in lookups, but
        // the schema pass sees both, so edits replace by appearing after the original.
        let text = GOOD.replacen('{', &format!("{{{edit}"), 1);
        let v = parse(&text).unwrap();
        check(v.as_object().unwrap()).map(|f| f.seq)
    }

    #[test]
    fn accepts_a_minimal_event_and_extras() {
        assert_eq!(check_with(""), Ok(3));
        assert_eq!(
            check_with(r#""extra":{"a":[1]},"metadata":{},"compliance_tags":["SOC2"],"#),
            Ok(3)
        );
    }

    #[test]
    fn rejects_schema_violations() {
        for edit in [
            r#""v":2,"#,
            r#""v":1.0,"#,
            r#""seq":-1,"#,
            r#""seq":"1","#,
            r#""action":"delete_everything","#,
            r#""outcome":"ok","#,
            r#""timestamp":"2026-11-26 07:06:42Z","#,
            r#""timestamp":"2026-11-26T07:06:42+00:00","#,
            r#""timestamp":"2026-13-26T07:06:42Z","#,
            r#""timestamp":"2026-11-26T07:06:42.Z","#,
            r#""hash":"AB00000000000000000000000000000000000000000000000000000000000000","#,
            r#""hmac":"ab00000000000000000000000000000000000000000000000000000000000000","#,
            r#""kid":"k","#,
            r#""metadata":[],"#,
            r#""compliance_tags":[1],"#,
            r#""host":null,"#,
        ] {
            assert!(check_with(edit).is_err(), "accepted {edit}");
        }
        let v = parse(r#"{"v":1}"#).unwrap();
        let e = check(v.as_object().unwrap()).unwrap_err();
        assert!(e.starts_with("missing required field(s): id, seq"), "{e}");
    }

    #[test]
    fn hex64_is_64_lowercase_hex_digits() {
        let ok = "0123456789abcdef".repeat(4);
        assert!(is_hex64(&ok));
        for at in 0..64 {
            for c in ['g', 'A', 'F', '/', ':', '`', ' ', '\0', 'é'] {
                let mut bad: Vec<char> = ok.chars().collect();
                bad[at] = c;
                let bad: String = bad.into_iter().collect();
                assert!(!is_hex64(&bad), "{bad}");
            }
        }
        assert!(!is_hex64(&ok[..63]));
        assert!(!is_hex64(&format!("{ok}0")));
    }

    #[test]
    fn each_required_member_has_its_own_bit() {
        for (i, r) in REQUIRED.iter().enumerate() {
            assert_eq!(required_bit(r), 1 << i, "{r}");
        }
        assert_eq!(required_bit("metadata"), 0);
    }

    #[test]
    fn timestamps() {
        assert!(is_timestamp("2026-11-26T07:06:42Z"));
        assert!(is_timestamp("2026-11-26T07:06:42.123456789Z"));
        assert!(!is_timestamp("2026-11-26T24:06:42Z"));
        assert!(!is_timestamp("2026-11-26T07:06:42z"));
        assert!(is_timestamp("2028-02-29T00:00:00Z"));
        assert!(!is_timestamp("2026-02-29T00:00:00Z"));
        assert!(!is_timestamp("2026-04-31T00:00:00Z"));
        assert!(is_timestamp("2026-12-31T23:59:60Z"));
    }
}
