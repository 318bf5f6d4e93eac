//! The telemetry receiver's pure half on arbitrary bodies: `otel::proto::decode` or
//! `otel::json::decode` (first byte, bit 0), then `otel::map::map_export` (bit 1:
//! every `keep_*` copy on).
//!
//! - Decoding and mapping never panic, whatever the bytes.
//! - A protobuf body that decodes encodes to bytes that decode to the same request
//!   and encode to the same bytes again.
//! - Every event mapped from it seals as the sealing thread seals it and verifies as
//!   a clean chain member; records that are not Claude Code's are the refused count.
//! - No secret the redactor detects survives in any string or key of an event.
#![no_main]

use auditship::audit::{self, Checked, Keys, Verifier, ZERO_HASH};
use auditship::otel::map::{Sender, Settings, event_name, map_export};
use auditship::otel::{json, proto};
use auditship::compliance::ComplianceRules;
use auditship::record::content::Keep;
use auditship::redact::Redactor;
use auditship_fuzz::detected;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::LazyLock;

static REDACTOR: LazyLock<Redactor> = LazyLock::new(Redactor::builtin);
static COMPLIANCE: LazyLock<ComplianceRules> = LazyLock::new(ComplianceRules::default_rules);

fuzz_target!(|data: &[u8]| {
    let Some((&settings, body)) = data.split_first() else {
        return;
    };
    let decoded = if settings & 1 == 0 {
        proto::decode(body)
    } else {
        json::decode(body)
    };
    let Ok(export) = decoded else {
        return;
    };
    if settings & 1 == 0 {
        let bytes = proto::encode(&export);
        let again = proto::decode(&bytes).expect("an encoded request decodes");
        assert_eq!(proto::encode(&again), bytes, "encoding is not stable");
    }
    let theirs = export
        .resources
        .iter()
        .flat_map(|r| &r.scopes)
        .flat_map(|s| &s.records)
        .filter(|r| event_name(r).is_some())
        .count();
    let total = export.records();
    let on = settings & 2 != 0;
    let mapped = map_export(
        export,
        &Settings {
            host: "host",
            redactor: &REDACTOR,
            compliance: &COMPLIANCE,
            keep: Keep {
                prompts: on,
                tool_input: on,
                tool_response: on,
                messages: on,
                max_bytes: 256,
            },
        },
        &Sender {
            uid: 1000,
            user_id: "dev".into(),
            identity: Map::new(),
        },
        "2026-11-26T07:06:42.123Z",
        || "0b6c3c55-3e8f-4a59-9d6c-2d6f0f1f4c3e".into(),
    );
    assert_eq!(mapped.events.len(), theirs);
    assert_eq!(mapped.refused as usize, total - theirs);
    for mut event in mapped.events {
        no_secret_left(&Value::Object(event.clone()), &mut String::new());
        event.insert("seq".into(), Value::from(0));
        event.insert("prev_hash".into(), Value::String(ZERO_HASH.into()));
        let text = Value::Object(event).to_string();
        let sealed = audit::seal(&text, None).unwrap_or_else(|e| panic!("not sealed: {e}"));
        let line = sealed.line.strip_suffix(b"\n").expect("a sealed line ends");
        let mut problems = Vec::new();
        let checked = Verifier::new(Keys::new()).check_line(line, &mut problems);
        assert!(
            matches!(checked, Checked::Member { hash_ok: true, .. }) && problems.is_empty(),
            "a mapped event does not verify: {problems:?}"
        );
    }
});

/// Every string and key of the event is already clean: redacting it changes nothing.
fn no_secret_left(v: &Value, path: &mut String) {
    match v {
        Value::String(s) => {
            if let Some(again) = detected(&REDACTOR, s) {
                panic!("a secret survives mapping at {path}: {s:?} -> {again:?}");
            }
        }
        Value::Array(items) => items.iter().for_each(|i| no_secret_left(i, path)),
        Value::Object(m) => {
            for (k, i) in m {
                if let Some(again) = detected(&REDACTOR, k) {
                    panic!("a secret survives mapping in a key at {path}: {k:?} -> {again:?}");
                }
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(k);
                no_secret_left(i, path);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
