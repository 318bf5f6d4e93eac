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
//! - No secret the redactor detects survives in any string of the event (apart from
//!   the known findings below, `NOT_YET_REDACTED`, `rendered_copy` and `CUT`, and
//!   those of `auditship_fuzz`).
#![no_main]

use auditship::audit::{self, Checked, Keys, Verifier, ZERO_HASH};
use auditship::record::compliance::ComplianceRules;
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

/// Known finding (map.rs): strings copied from the payload without redaction, the
/// hook event name (`metadata.source_event`) and the session id. A payload such as
/// `{"session_id":"password=hunter2"}` keeps the secret. Remove the entries once the
/// mapper redacts them.
const NOT_YET_REDACTED: [&str; 2] = ["metadata.source_event", "session_id"];

/// Known finding (map.rs): a kept copy of an object or array (`keep_tool_input`, …)
/// is redacted value by value, then written out as JSON text. Object keys are never
/// redacted (`{"Bearer abc.def": 1}` keeps the token), and a key and its value can
/// read as an assignment only in the written text (`{"x password": "hunter2"}`).
/// Such copies are not checked until the mapper redacts them as text too.
/// For the same reason `metadata.redacted`, whose paths are made of keys, is not
/// checked either.
fn rendered_copy(path: &str, s: &str) -> bool {
    path == "metadata.redacted"
        || matches!(
            path,
            "metadata.input" | "metadata.prompt" | "metadata.response"
        ) && (s.starts_with('{') || s.starts_with('['))
}

/// Known finding (map.rs): a kept copy is redacted first and cut to `max_kept_bytes`
/// after, ending in this suffix. What the detectors see changes with the cut: it can
/// fall inside a marker (`password=[…[truncated]`), after a key word whose value it
/// removed (`using password:…[truncated]`), or between an `Authorization:` scheme and
/// its credential, so the scheme now reads as a bare credential (`Authorization:
/// 0222…[truncated]`; in the full text the word after it was taken for the credential,
/// the class issue 11 lists). A second redaction then changes the copy. Cut copies
/// are not checked: the redact target covers the text before the cut.
const CUT: &str = "…[truncated]";

/// Every string value of the event is already clean: redacting it changes nothing.
fn no_secret_left(v: &Value, path: &mut String) {
    match v {
        Value::String(s)
            if !NOT_YET_REDACTED.contains(&path.as_str())
                && !rendered_copy(path, s)
                && !s.ends_with(CUT) =>
        {
            if let Some(again) = detected(&REDACTOR, s) {
                panic!("a secret survives mapping at {path}: {s:?} -> {again:?}");
            }
        }
        Value::Array(items) => items.iter().for_each(|i| no_secret_left(i, path)),
        Value::Object(m) => {
            for (k, i) in m {
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
