//! A generator of realistic v1 events for the benchmarks (about 700 bytes each, shaped
//! like what `record` writes for tool calls), sealed into a valid chain.

#![allow(dead_code)]

use auditship::audit::{self, Keys};

const TOOLS: [(&str, &str); 6] = [
    ("Read", "file_read"),
    ("Edit", "file_write"),
    ("Bash", "tool_execution"),
    ("Grep", "file_read"),
    ("WebFetch", "api_call"),
    ("mcp__github__create_issue", "tool_execution"),
];

/// Event `seq` of a stream, as JSON text without hash members.
pub fn event_json(stream: u32, seq: u64, prev: &str) -> String {
    let (tool, action) = TOOLS[(seq % TOOLS.len() as u64) as usize];
    let ms = seq * 137;
    let ts = format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + (ms / 86_400_000) % 28,
        (ms / 3_600_000) % 24,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000
    );
    let digest = audit::sha256_hex(format!("{stream}:{seq}").as_bytes());
    format!(
        concat!(
            r#"{{"v":1,"id":"{uuid}","seq":{seq},"timestamp":"{ts}","user_id":"dev{stream}@example.com","#,
            r#""session_id":"5f0c1e2a-8d3b-4c4e-9a7f-{sess:012x}","host":"devbox-{stream:02}","action":"{action}","#,
            r#""resource":"/home/dev{stream}/src/app/module_{m}/handler_{h}.rs","outcome":"success","#,
            r#""metadata":{{"source_event":"PostToolUse","tool_name":"{tool}","tool_use_id":"toolu_01{tu}","#,
            r#""cwd":"/home/dev{stream}/src/app","permission_mode":"default","model":"claude-sonnet","#,
            r#""duration_ms":{dur},"input_bytes":{ib},"input_sha256":"{digest}"}},"#,
            r#""compliance_tags":["SOC2","ISO27001"],"prev_hash":"{prev}"}}"#
        ),
        uuid = uuid_like(stream, seq),
        seq = seq,
        ts = ts,
        stream = stream,
        sess = seq / 50,
        action = action,
        m = seq % 17,
        h = seq % 101,
        tool = tool,
        tu = &digest[..20],
        dur = 3 + seq % 900,
        ib = 200 + (seq * 7919) % 20_000,
        digest = digest,
        prev = prev,
    )
}

fn uuid_like(stream: u32, seq: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        stream,
        seq >> 48,
        (seq >> 36) & 0xfff,
        (seq >> 24) & 0xfff,
        seq & 0xffff_ffff_ffff
    )
}

/// `n` chained lines (each ending in `\n`) of stream `stream`.
pub fn chain(stream: u32, n: u64, signer: Option<(&str, &Keys)>) -> Vec<Vec<u8>> {
    let mut prev = audit::ZERO_HASH.to_string();
    (0..n)
        .map(|seq| {
            let sealed = audit::seal(&event_json(stream, seq, &prev), signer)
                .expect("generated events seal");
            prev = sealed.hash;
            sealed.line
        })
        .collect()
}
