//! The OTLP/JSON encoding of `ExportLogsServiceRequest` (OTLP specification, "JSON
//! Protobuf Encoding"): the protobuf messages of [`super::proto`] as JSON objects
//! with lowerCamelCase keys (the proto field names in snake_case are accepted too, as
//! protobuf's JSON mapping requires), 64-bit integers as strings or numbers, bytes as
//! base64, `doubleValue` also as `"NaN"` or `"Infinity"`. Unknown members are skipped.
//!
//! Pure: bytes in, the same [`Export`] model as the protobuf reader, or a
//! [`DecodeError`]. Nesting is bounded by [`MAX_VALUE_DEPTH`] (and serde_json's own
//! recursion limit below that).

use super::{
    AnyValue, DecodeError, Export, KeyValue, LogRecord, MAX_VALUE_DEPTH, ResourceLogs, ScopeLogs,
};
use serde_json::{Map, Value};

/// Decodes a request body.
pub fn decode(bytes: &[u8]) -> Result<Export, DecodeError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("malformed JSON: {e}")))?;
    let root = object(&value, "the request")?;
    let mut export = Export::default();
    for r in list(root, "resourceLogs", "resource_logs")? {
        export.resources.push(resource_logs(r)?);
    }
    Ok(export)
}

fn bad(what: String) -> DecodeError {
    DecodeError(format!("malformed OTLP/JSON: {what}"))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, DecodeError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} is not an object")))
}

/// A member under its JSON name or its proto name.
fn member<'a>(m: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    m.get(camel)
        .or_else(|| m.get(snake))
        .filter(|v| !v.is_null())
}

/// A repeated member: absent or `null` is empty.
fn list<'a>(
    m: &'a Map<String, Value>,
    camel: &str,
    snake: &str,
) -> Result<&'a [Value], DecodeError> {
    match member(m, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(bad(format!("{camel} is not an array"))),
    }
}

fn string(m: &Map<String, Value>, camel: &str, snake: &str) -> Result<String, DecodeError> {
    match member(m, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(format!("{camel} is not a string"))),
    }
}

/// An unsigned 64-bit integer, as a string or a number.
fn uint64(m: &Map<String, Value>, camel: &str, snake: &str) -> Result<u64, DecodeError> {
    let v = match member(m, camel, snake) {
        None => return Ok(0),
        Some(v) => v,
    };
    let n = match v {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    n.ok_or_else(|| bad(format!("{camel} is not an unsigned 64-bit integer")))
}

/// A signed 64-bit integer, as a string or a number.
fn int64(v: &Value, what: &str) -> Result<i64, DecodeError> {
    let n = match v {
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Number(n) => n.as_i64().or_else(|| {
            // An integral double such as 3.0 names the same integer.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        _ => None,
    };
    n.ok_or_else(|| bad(format!("{what} is not a 64-bit integer")))
}

fn resource_logs(v: &Value) -> Result<ResourceLogs, DecodeError> {
    let m = object(v, "a resourceLogs element")?;
    let mut r = ResourceLogs::default();
    if let Some(res) = member(m, "resource", "resource") {
        r.attributes = attributes(object(res, "resource")?, 0)?;
    }
    for s in list(m, "scopeLogs", "scope_logs")? {
        r.scopes.push(scope_logs(s)?);
    }
    Ok(r)
}

fn scope_logs(v: &Value) -> Result<ScopeLogs, DecodeError> {
    let m = object(v, "a scopeLogs element")?;
    let mut s = ScopeLogs::default();
    if let Some(scope) = member(m, "scope", "scope") {
        let scope = object(scope, "scope")?;
        s.name = string(scope, "name", "name")?;
        s.version = string(scope, "version", "version")?;
    }
    for r in list(m, "logRecords", "log_records")? {
        s.records.push(log_record(r)?);
    }
    Ok(s)
}

fn log_record(v: &Value) -> Result<LogRecord, DecodeError> {
    let m = object(v, "a logRecords element")?;
    let severity_number = match member(m, "severityNumber", "severity_number") {
        None => 0,
        // An enum: its number, or its name (`SEVERITY_NUMBER_INFO`).
        Some(Value::String(s)) if !s.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            severity_by_name(s).ok_or_else(|| bad(format!("unknown severityNumber {s:?}")))?
        }
        Some(v) => i32::try_from(int64(v, "severityNumber")?)
            .map_err(|_| bad("severityNumber out of range".into()))?,
    };
    Ok(LogRecord {
        time_unix_nano: uint64(m, "timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: uint64(m, "observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number,
        severity_text: string(m, "severityText", "severity_text")?,
        body: member(m, "body", "body")
            .map(|b| any_value(b, 0))
            .transpose()?,
        attributes: attributes(m, 0)?,
        event_name: string(m, "eventName", "event_name")?,
    })
}

fn severity_by_name(name: &str) -> Option<i32> {
    const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    let level = LEVELS.iter().position(|l| rest.starts_with(l))?;
    let step = match &rest[LEVELS[level].len()..] {
        "" => 1,
        "2" => 2,
        "3" => 3,
        "4" => 4,
        _ => return None,
    };
    Some(level as i32 * 4 + step)
}

fn attributes(m: &Map<String, Value>, depth: usize) -> Result<Vec<KeyValue>, DecodeError> {
    list(m, "attributes", "attributes")?
        .iter()
        .map(|kv| key_value(kv, depth))
        .collect()
}

fn key_value(v: &Value, depth: usize) -> Result<KeyValue, DecodeError> {
    let m = object(v, "an attribute")?;
    Ok(KeyValue {
        key: string(m, "key", "key")?,
        value: match member(m, "value", "value") {
            None => AnyValue::Empty,
            Some(v) => any_value(v, depth)?,
        },
    })
}

fn any_value(v: &Value, depth: usize) -> Result<AnyValue, DecodeError> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(DecodeError(format!(
            "values nested deeper than {MAX_VALUE_DEPTH} levels"
        )));
    }
    let m = object(v, "a value")?;
    let Some((name, inner)) = m.iter().find(|(_, v)| !v.is_null()) else {
        return Ok(AnyValue::Empty);
    };
    Ok(match name.as_str() {
        "stringValue" | "string_value" => match inner {
            Value::String(s) => AnyValue::String(s.clone()),
            _ => return Err(bad("stringValue is not a string".into())),
        },
        "boolValue" | "bool_value" => match inner {
            Value::Bool(b) => AnyValue::Bool(*b),
            _ => return Err(bad("boolValue is not a boolean".into())),
        },
        "intValue" | "int_value" => AnyValue::Int(int64(inner, "intValue")?),
        "doubleValue" | "double_value" => AnyValue::Double(double(inner)?),
        "arrayValue" | "array_value" => {
            let a = object(inner, "arrayValue")?;
            let items = list(a, "values", "values")?
                .iter()
                .map(|x| any_value(x, depth + 1))
                .collect::<Result<_, _>>()?;
            AnyValue::Array(items)
        }
        "kvlistValue" | "kvlist_value" => {
            let a = object(inner, "kvlistValue")?;
            let items = list(a, "values", "values")?
                .iter()
                .map(|x| key_value(x, depth + 1))
                .collect::<Result<_, _>>()?;
            AnyValue::KvList(items)
        }
        "bytesValue" | "bytes_value" => match inner {
            Value::String(s) => {
                AnyValue::Bytes(base64(s).ok_or_else(|| bad("bytesValue is not base64".into()))?)
            }
            _ => return Err(bad("bytesValue is not a string".into())),
        },
        other => return Err(bad(format!("unknown value kind {other:?}"))),
    })
}

fn double(v: &Value) -> Result<f64, DecodeError> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.parse().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| bad("doubleValue is not a number".into()))
}

/// Standard or URL-safe base64, padded or not.
fn base64(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | digit(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

/// `ExportLogsServiceResponse` in JSON: `{}`, or with `partialSuccess`.
pub fn response(rejected: u64, message: &str) -> Vec<u8> {
    if rejected == 0 && message.is_empty() {
        return b"{}".to_vec();
    }
    serde_json::json!({
        "partialSuccess": { "rejectedLogRecords": rejected.to_string(), "errorMessage": message }
    })
    .to_string()
    .into_bytes()
}

/// `google.rpc.Status` in JSON, the body of an error answer.
pub fn status(code: i32, message: &str) -> Vec<u8> {
    serde_json::json!({ "code": code, "message": message })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/otel")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn reads_claude_codes_export_like_the_protobuf_reader() {
        let json = decode(&fixture("denied.json")).unwrap();
        let pb = super::super::proto::decode(&fixture("denied.pb")).unwrap();
        // Two runs of one session: the same events with other ids and times (hooks
        // of one batch run concurrently, so neighbours may swap).
        assert_eq!(json.records(), pb.records());
        let names = |e: &Export| -> Vec<String> {
            let mut names: Vec<String> = e.resources[0].scopes[0]
                .records
                .iter()
                .map(|r| format!("{:?}", r.body))
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&json), names(&pb));
        let first = &json.resources[0].scopes[0].records[0];
        assert!(first.time_unix_nano > 1_700_000_000_000_000_000);
        let seq = first
            .attributes
            .iter()
            .find(|kv| kv.key == "event.sequence")
            .unwrap();
        assert_eq!(
            seq.value,
            AnyValue::Int(0),
            "an intValue written as a number"
        );
    }

    #[test]
    fn every_value_kind_and_both_spellings() {
        let body = br#"{"resource_logs":[{"scopeLogs":[{"scope":{"name":"s"},"logRecords":[{
            "timeUnixNano":"5","severityNumber":"SEVERITY_NUMBER_WARN2","body":{"stringValue":"claude_code.x"},
            "attributes":[
              {"key":"s","value":{"stringValue":"v"}},{"key":"b","value":{"boolValue":true}},
              {"key":"i","value":{"intValue":"-7"}},{"key":"d","value":{"doubleValue":"NaN"}},
              {"key":"a","value":{"arrayValue":{"values":[{"intValue":1},{"bytesValue":"AP8="}]}}},
              {"key":"k","value":{"kvlist_value":{"values":[{"key":"x","value":{}}]}}},
              {"key":"e"}],
            "eventName":"claude_code.x","futureField":1}]}]}]}"#;
        let e = decode(body).unwrap();
        let r = &e.resources[0].scopes[0].records[0];
        assert_eq!(r.time_unix_nano, 5);
        assert_eq!(r.severity_number, 14);
        assert_eq!(r.event_name, "claude_code.x");
        let v: Vec<&AnyValue> = r.attributes.iter().map(|kv| &kv.value).collect();
        assert_eq!(v[0], &AnyValue::String("v".into()));
        assert_eq!(v[1], &AnyValue::Bool(true));
        assert_eq!(v[2], &AnyValue::Int(-7));
        assert!(matches!(v[3], AnyValue::Double(d) if d.is_nan()));
        assert_eq!(
            v[4],
            &AnyValue::Array(vec![AnyValue::Int(1), AnyValue::Bytes(vec![0, 255])])
        );
        assert_eq!(
            v[5],
            &AnyValue::KvList(vec![KeyValue {
                key: "x".into(),
                value: AnyValue::Empty
            }])
        );
        assert_eq!(v[6], &AnyValue::Empty);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{\"resourceLogs\":{}}",
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"timeUnixNano\":\"-1\"}]}]}]}",
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":{\"intValue\":\"x\"}}]}]}]}",
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":{\"oddValue\":1}}]}]}]}",
            b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":{\"bytesValue\":\"**\"}}]}]}]}",
        ] {
            assert!(decode(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let mut deep =
            String::from("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":");
        for _ in 0..40 {
            deep.push_str("{\"arrayValue\":{\"values\":[");
        }
        deep.push_str("{\"intValue\":1}");
        for _ in 0..40 {
            deep.push_str("]}}");
        }
        deep.push_str("}]}]}]}");
        assert!(decode(deep.as_bytes()).is_err());
        assert_eq!(decode(b"{}").unwrap(), Export::default());
    }

    #[test]
    fn answers() {
        assert_eq!(response(0, ""), b"{}");
        let v: Value = serde_json::from_slice(&response(2, "not claude_code")).unwrap();
        assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "2");
        let v: Value = serde_json::from_slice(&status(3, "bad")).unwrap();
        assert_eq!(v, serde_json::json!({"code": 3, "message": "bad"}));
    }

    #[test]
    fn base64_forms() {
        assert_eq!(base64("AP8="), Some(vec![0, 255]));
        assert_eq!(base64("AP8"), Some(vec![0, 255]));
        assert_eq!(base64("-_8"), Some(vec![251, 255]));
        assert_eq!(base64("A"), None);
        assert_eq!(base64(""), Some(vec![]));
    }
}
