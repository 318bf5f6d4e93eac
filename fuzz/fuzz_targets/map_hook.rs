//! The hook-payload mapper (`record::map::map_hook`, pure) on arbitrary payloads.
//!
//! Input: one settings byte (bit 0 keep prompts, 1 keep tool input, 2 keep tool
//! response, 3–4 the kept-bytes cap, 5 a project directory), then the payload, read
//! as JSON by serde_json as `record` reads stdin.
//!
//! - Mapping never panics.
//! - Every mapped event seals as `record` seals it (it has a canonical form: no hook
//!   call is lost to an odd payload), and the sealed line verifies as a chain member
//!   with a correct hash and no schema problem.
//! - No secret the redactor detects survives in any string or key of the event:
//!   kept copies (cut or not), `metadata.redacted` paths, the session id and the
//!   event name included.
#![no_main]

use auditship::audit::{self, Checked, Keys, Verifier, ZERO_HASH};
use auditship::compliance::ComplianceRules;
use auditship::record::map::{Context, map_hook};
use auditship::redact::Redactor;
use auditship_fuzz::detected;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use std::sync::LazyLock;

static REDACTOR: LazyLock<Redactor> = LazyLock::new(Redactor::builtin);
static COMPLIANCE: LazyLock<ComplianceRules> = LazyLock::new(ComplianceRules::default_rules);
static IDENTITY: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    let mut m = Map::new();
    m.insert("department".into(), Value::String("eng".into()));
    m
});

fuzz_target!(|data: &[u8]| {
    let Some((&settings, payload)) = data.split_first() else {
        return;
    };
    let Ok(payload) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    let cx = Context {
        id: "0b6c3c55-3e8f-4a59-9d6c-2d6f0f1f4c3e".into(),
        timestamp: "2026-11-26T07:06:42.123Z".into(),
        user_id: "dev".into(),
        host: "host".into(),
        project_dir: (settings & 32 != 0).then(|| "/home/dev/project".into()),
        identity: &IDENTITY,
        redactor: &REDACTOR,
        compliance: &COMPLIANCE,
        keep_prompts: settings & 1 != 0,
        keep_tool_input: settings & 2 != 0,
        keep_tool_response: settings & 4 != 0,
        keep_messages: settings & 64 != 0,
        max_kept_bytes: [16, 256, 4096, 1 << 20][usize::from(settings >> 3 & 3)],
    };
    let mut event = map_hook(payload, &cx);
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
});

/// Every string value of the event is already clean: redacting it changes nothing.
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
