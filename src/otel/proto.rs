//! The protobuf encoding of `ExportLogsServiceRequest` (opentelemetry-proto, logs v1),
//! read by hand: only the messages and fields auditship uses, every other field
//! skipped by its wire type, as protobuf readers must.
//!
//! ```text
//! ExportLogsServiceRequest { 1: repeated ResourceLogs }
//! ResourceLogs  { 1: Resource { 1: repeated KeyValue }, 2: repeated ScopeLogs }
//! ScopeLogs     { 1: InstrumentationScope { 1: name, 2: version }, 2: repeated LogRecord }
//! LogRecord     { 1: fixed64 time_unix_nano, 11: fixed64 observed_time_unix_nano,
//!                 2: severity_number, 3: severity_text, 5: AnyValue body,
//!                 6: repeated KeyValue attributes, 12: event_name }
//! KeyValue      { 1: key, 2: AnyValue value }
//! AnyValue      { oneof: 1 string, 2 bool, 3 int64, 4 double, 5 ArrayValue { 1: repeated AnyValue },
//!                 6 KeyValueList { 1: repeated KeyValue }, 7 bytes }
//! ```
//!
//! Pure and total: any bytes give a value or a [`DecodeError`], never a panic; value
//! nesting is bounded by [`MAX_VALUE_DEPTH`]; lengths are checked against what is
//! left before anything is allocated. Strings that are not UTF-8 are kept with
//! U+FFFD in place of the bad bytes (evidence is not refused for its spelling).
//! The answer, `ExportLogsServiceResponse`, and the `google.rpc.Status` of an error
//! are written here too.

use super::{
    AnyValue, DecodeError, Export, KeyValue, LogRecord, MAX_VALUE_DEPTH, ResourceLogs, ScopeLogs,
};

/// Decodes a request body.
pub fn decode(bytes: &[u8]) -> Result<Export, DecodeError> {
    let mut export = Export::default();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        if number == 1 {
            export.resources.push(resource_logs(value.bytes()?)?);
        }
    }
    Ok(export)
}

/// A field's payload by wire type.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    /// A 32-bit field: no field auditship reads has this type; it is skipped.
    Fixed32,
}

impl<'a> Wire<'a> {
    fn bytes(self) -> Result<&'a [u8], DecodeError> {
        match self {
            Wire::Len(b) => Ok(b),
            _ => Err(bad("a length-delimited field has another wire type")),
        }
    }

    fn varint(self) -> Result<u64, DecodeError> {
        match self {
            Wire::Varint(v) => Ok(v),
            _ => Err(bad("a varint field has another wire type")),
        }
    }

    fn fixed64(self) -> Result<u64, DecodeError> {
        match self {
            Wire::Fixed64(v) => Ok(v),
            _ => Err(bad("a fixed64 field has another wire type")),
        }
    }

    fn text(self) -> Result<String, DecodeError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

fn bad(what: &str) -> DecodeError {
    DecodeError(format!("malformed protobuf: {what}"))
}

/// The fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&b, rest)) = self.rest.split_first() else {
                return Err(bad("a varint is cut short"));
            };
            self.rest = rest;
            if i == 9 && b > 1 {
                return Err(bad("a varint is longer than 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(bad("a varint is longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(bad("a field runs past the end of its message"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u32, Wire<'a>), DecodeError> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(bad("a field number out of range"));
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("a length too large"))?;
                Wire::Len(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            3 | 4 => return Err(bad("groups are not part of OTLP")),
            _ => return Err(bad("an unknown wire type")),
        };
        Ok((number as u32, wire))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

fn resource_logs(bytes: &[u8]) -> Result<ResourceLogs, DecodeError> {
    let mut r = ResourceLogs::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => {
                for f in Fields::new(v.bytes()?) {
                    if let (1, kv) = f? {
                        r.attributes.push(key_value(kv.bytes()?, 0)?);
                    }
                }
            }
            (2, v) => r.scopes.push(scope_logs(v.bytes()?)?),
            _ => {}
        }
    }
    Ok(r)
}

fn scope_logs(bytes: &[u8]) -> Result<ScopeLogs, DecodeError> {
    let mut s = ScopeLogs::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => {
                for f in Fields::new(v.bytes()?) {
                    match f? {
                        (1, name) => s.name = name.text()?,
                        (2, version) => s.version = version.text()?,
                        _ => {}
                    }
                }
            }
            (2, v) => s.records.push(log_record(v.bytes()?)?),
            _ => {}
        }
    }
    Ok(s)
}

fn log_record(bytes: &[u8]) -> Result<LogRecord, DecodeError> {
    let mut r = LogRecord::default();
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => r.time_unix_nano = v.fixed64()?,
            (11, v) => r.observed_time_unix_nano = v.fixed64()?,
            // An enum: a varint holding an int32 (negative ones sign-extended to 64 bits).
            (2, v) => r.severity_number = v.varint()? as i64 as i32,
            (3, v) => r.severity_text = v.text()?,
            (5, v) => r.body = Some(any_value(v.bytes()?, 0)?),
            (6, v) => r.attributes.push(key_value(v.bytes()?, 0)?),
            (12, v) => r.event_name = v.text()?,
            _ => {}
        }
    }
    Ok(r)
}

fn key_value(bytes: &[u8], depth: usize) -> Result<KeyValue, DecodeError> {
    let mut kv = KeyValue {
        key: String::new(),
        value: AnyValue::Empty,
    };
    for field in Fields::new(bytes) {
        match field? {
            (1, v) => kv.key = v.text()?,
            (2, v) => kv.value = any_value(v.bytes()?, depth)?,
            _ => {}
        }
    }
    Ok(kv)
}

fn any_value(bytes: &[u8], depth: usize) -> Result<AnyValue, DecodeError> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(DecodeError(format!(
            "values nested deeper than {MAX_VALUE_DEPTH} levels"
        )));
    }
    let mut value = AnyValue::Empty;
    // A oneof: the last member on the wire wins.
    for field in Fields::new(bytes) {
        value = match field? {
            (1, v) => AnyValue::String(v.text()?),
            (2, v) => AnyValue::Bool(v.varint()? != 0),
            (3, v) => AnyValue::Int(v.varint()? as i64),
            (4, v) => AnyValue::Double(f64::from_bits(v.fixed64()?)),
            (5, v) => {
                let mut items = Vec::new();
                for f in Fields::new(v.bytes()?) {
                    if let (1, item) = f? {
                        items.push(any_value(item.bytes()?, depth + 1)?);
                    }
                }
                AnyValue::Array(items)
            }
            (6, v) => {
                let mut items = Vec::new();
                for f in Fields::new(v.bytes()?) {
                    if let (1, kv) = f? {
                        items.push(key_value(kv.bytes()?, depth + 1)?);
                    }
                }
                AnyValue::KvList(items)
            }
            (7, v) => AnyValue::Bytes(v.bytes()?.to_vec()),
            _ => continue,
        };
    }
    Ok(value)
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_varint(u64::from(number) << 3 | 2, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `ExportLogsServiceResponse`: empty when every record was accepted, else
/// `partial_success { rejected_log_records, error_message }`.
pub fn response(rejected: u64, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if rejected == 0 && message.is_empty() {
        return out;
    }
    let mut partial = Vec::new();
    if rejected > 0 {
        put_varint(1 << 3, &mut partial);
        put_varint(rejected, &mut partial);
    }
    if !message.is_empty() {
        put_len(2, message.as_bytes(), &mut partial);
    }
    put_len(1, &partial, &mut out);
    out
}

/// `google.rpc.Status { code, message }`, the body of an error answer.
pub fn status(code: i32, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(1 << 3, &mut out);
    put_varint(code as i64 as u64, &mut out);
    put_len(2, message.as_bytes(), &mut out);
    out
}

/// Encodes a request (for tests and benches: the receiver only reads them).
pub fn encode(export: &Export) -> Vec<u8> {
    fn fixed64(number: u32, v: u64, out: &mut Vec<u8>) {
        put_varint(u64::from(number) << 3 | 1, out);
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn any(v: &AnyValue) -> Vec<u8> {
        let mut out = Vec::new();
        match v {
            AnyValue::String(s) => put_len(1, s.as_bytes(), &mut out),
            AnyValue::Bool(b) => {
                put_varint(2 << 3, &mut out);
                put_varint(u64::from(*b), &mut out);
            }
            AnyValue::Int(i) => {
                put_varint(3 << 3, &mut out);
                put_varint(*i as u64, &mut out);
            }
            AnyValue::Double(d) => fixed64(4, d.to_bits(), &mut out),
            AnyValue::Array(items) => {
                let mut inner = Vec::new();
                for i in items {
                    put_len(1, &any(i), &mut inner);
                }
                put_len(5, &inner, &mut out);
            }
            AnyValue::KvList(items) => {
                let mut inner = Vec::new();
                for kv in items {
                    put_len(1, &key_value(kv), &mut inner);
                }
                put_len(6, &inner, &mut out);
            }
            AnyValue::Bytes(b) => put_len(7, b, &mut out),
            AnyValue::Empty => {}
        }
        out
    }
    fn key_value(kv: &KeyValue) -> Vec<u8> {
        let mut out = Vec::new();
        put_len(1, kv.key.as_bytes(), &mut out);
        put_len(2, &any(&kv.value), &mut out);
        out
    }
    let mut out = Vec::new();
    for r in &export.resources {
        let mut rl = Vec::new();
        let mut resource = Vec::new();
        for kv in &r.attributes {
            put_len(1, &key_value(kv), &mut resource);
        }
        put_len(1, &resource, &mut rl);
        for s in &r.scopes {
            let mut sl = Vec::new();
            let mut scope = Vec::new();
            put_len(1, s.name.as_bytes(), &mut scope);
            put_len(2, s.version.as_bytes(), &mut scope);
            put_len(1, &scope, &mut sl);
            for rec in &s.records {
                let mut lr = Vec::new();
                fixed64(1, rec.time_unix_nano, &mut lr);
                fixed64(11, rec.observed_time_unix_nano, &mut lr);
                if rec.severity_number != 0 {
                    put_varint(2 << 3, &mut lr);
                    put_varint(rec.severity_number as i64 as u64, &mut lr);
                }
                if !rec.severity_text.is_empty() {
                    put_len(3, rec.severity_text.as_bytes(), &mut lr);
                }
                if let Some(body) = &rec.body {
                    put_len(5, &any(body), &mut lr);
                }
                for kv in &rec.attributes {
                    put_len(6, &key_value(kv), &mut lr);
                }
                if !rec.event_name.is_empty() {
                    put_len(12, rec.event_name.as_bytes(), &mut lr);
                }
                put_len(2, &lr, &mut sl);
            }
            put_len(2, &sl, &mut rl);
        }
        put_len(1, &rl, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/otel")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a AnyValue> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    fn text(s: &str) -> AnyValue {
        AnyValue::String(s.into())
    }

    #[test]
    fn reads_claude_codes_export() {
        let export = decode(&fixture("denied.pb")).unwrap();
        assert_eq!(export.resources.len(), 1);
        let r = &export.resources[0];
        assert!(r.attributes.contains(&KeyValue {
            key: "service.name".into(),
            value: text("claude-code")
        }));
        assert_eq!(r.scopes.len(), 1);
        assert_eq!(r.scopes[0].name, "com.anthropic.claude_code.events");
        assert_eq!(r.scopes[0].version, "2.1.328");
        let records = &r.scopes[0].records;
        assert_eq!(records.len(), export.records());
        let first = &records[0];
        assert_eq!(
            first.body,
            Some(text("claude_code.managed_settings_resolved"))
        );
        assert_eq!(first.time_unix_nano, 1_796_279_954_045_000_000);
        assert_eq!(attr(first, "event.sequence"), Some(&AnyValue::Int(0)));
        assert_eq!(
            attr(first, "anthropic.custom_base_url"),
            Some(&AnyValue::Bool(true))
        );
        assert_eq!(
            attr(first, "managed_settings.sources"),
            Some(&AnyValue::Array(vec![]))
        );
        let rejected: Vec<&LogRecord> = records
            .iter()
            .filter(|r| attr(r, "decision") == Some(&text("reject")))
            .collect();
        let ids: Vec<_> = rejected.iter().map(|r| attr(r, "tool_use_id")).collect();
        assert_eq!(ids, [Some(&text("toolu_write")), Some(&text("toolu_rm"))]);
        let cost = records.iter().find_map(|r| attr(r, "cost_usd")).unwrap();
        assert_eq!(cost, &AnyValue::Double(0.00044));
    }

    #[test]
    fn encode_and_decode_agree() {
        let export = decode(&fixture("content-2.pb")).unwrap();
        assert!(export.records() > 10);
        assert_eq!(decode(&encode(&export)).unwrap(), export);
        let odd = Export {
            resources: vec![ResourceLogs {
                attributes: vec![],
                scopes: vec![ScopeLogs {
                    name: "s".into(),
                    version: String::new(),
                    records: vec![LogRecord {
                        severity_number: -3,
                        body: Some(AnyValue::KvList(vec![KeyValue {
                            key: "k".into(),
                            value: AnyValue::Array(vec![
                                AnyValue::Int(-1),
                                AnyValue::Bytes(vec![0, 255]),
                                AnyValue::Double(f64::INFINITY),
                                AnyValue::Empty,
                            ]),
                        }])),
                        event_name: "claude_code.x".into(),
                        ..Default::default()
                    }],
                }],
            }],
        };
        assert_eq!(decode(&encode(&odd)).unwrap(), odd);
    }

    #[test]
    fn unknown_fields_are_skipped_and_damage_is_an_error() {
        let good = fixture("denied.pb");
        // An unknown field of each wire type before the real content.
        let mut extra = vec![0x78, 0x05, 0x79];
        extra.extend_from_slice(&[1; 8]);
        extra.extend_from_slice(&[0x7a, 0x02, 0xaa, 0xbb, 0x7d, 1, 2, 3, 4]);
        extra.extend_from_slice(&good);
        assert_eq!(decode(&extra).unwrap(), decode(&good).unwrap());

        for cut in [1, 7, good.len() / 2, good.len() - 1] {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[0x0b]).is_err(), "a group");
        assert!(decode(&[0x0f]).is_err(), "wire type 7");
        assert!(decode(&[0x08, 0x01]).is_err(), "field 1 as a varint");
        assert!(
            decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err(),
            "a huge length"
        );
        assert!(
            decode(&[
                0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01
            ])
            .is_err()
        );
        assert_eq!(decode(&[]).unwrap(), Export::default());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut v = AnyValue::Int(1);
        for _ in 0..MAX_VALUE_DEPTH + 2 {
            v = AnyValue::Array(vec![v]);
        }
        let deep = Export {
            resources: vec![ResourceLogs {
                attributes: vec![],
                scopes: vec![ScopeLogs {
                    records: vec![LogRecord {
                        body: Some(v),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }],
        };
        let e = decode(&encode(&deep)).unwrap_err();
        assert!(e.0.contains("nested"), "{e}");
    }

    #[test]
    fn answers() {
        assert!(response(0, "").is_empty());
        assert_eq!(response(3, ""), [0x0a, 0x02, 0x08, 0x03]);
        assert_eq!(response(1, "x"), [0x0a, 0x05, 0x08, 0x01, 0x12, 0x01, b'x']);
        assert_eq!(status(3, "no"), [0x08, 0x03, 0x12, 0x02, b'n', b'o']);
    }
}
