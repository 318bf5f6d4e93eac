//! Lifecycle records: an `agent_event` when the daemon starts (`agent_start`), every
//! `agent.heartbeat_interval` (`heartbeat`), when a reload applied a new configuration
//! (`agent_reload`, naming the previous and the new config hash; a reload is neither a
//! stop nor a start, so a SIEM never counts it as an outage) and when it stops cleanly
//! (`agent_stop`), shipped like any record. Every record of one process carries the
//! same `session_id` ([`run_id`]), across reloads.
//!
//! Each names the host, the version, the config hash, the queue's depth and every
//! stream's chain head (`seq` and `hash` as last stored), so a SIEM rule can tell a
//! host that went silent, or a stream that stopped advancing, from one that is quiet.
//! They are not chained (the daemon is not a producer); their `_auditship.id` is the
//! SHA-256 of the record as built, like any plain JSON line.

use crate::check::{Encoder, Origin};
use crate::queue::{NewBatch, Queue};
use serde_json::json;

/// This process: the `session_id` of its lifecycle and refusal records, the same
/// before and after a reload.
pub fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
}

/// Builds and stores lifecycle records.
pub struct Heartbeat {
    pub encoder: Encoder,
    pub host: String,
    pub config_hash: String,
    /// The configuration this pipeline replaced, when a reload started it.
    pub previous_config_hash: Option<String>,
    pub started_ms: u64,
}

impl Heartbeat {
    /// The event line for `what` (`agent_start`, `agent_reload`, `heartbeat`,
    /// `agent_stop`).
    fn event(&self, what: &str, queue: &Queue) -> String {
        let (now, _) = crate::clock::utc_now();
        let mut streams = Vec::new();
        if let Ok(cps) = queue.checkpoints() {
            for (k, v) in cps.range(b"s\0".to_vec()..) {
                let Some(rest) = k.strip_prefix(b"s\0") else {
                    break;
                };
                let mut parts = rest.splitn(2, |&b| b == 0);
                let (Some(source), Some(dir)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let head = serde_json::from_slice::<serde_json::Value>(v)
                    .ok()
                    .map(|c| c["head"].clone())
                    .unwrap_or_default();
                streams.push(json!({
                    "source": String::from_utf8_lossy(source),
                    "stream": String::from_utf8_lossy(dir),
                    "seq": head.get(0).cloned().unwrap_or_default(),
                    "hash": head.get(1).cloned().unwrap_or_default(),
                }));
            }
        }
        let mut event = json!({
            "v": 1,
            "id": uuid::Uuid::new_v4().to_string(),
            "timestamp": now,
            "user_id": "auditship",
            "session_id": run_id(),
            "host": self.host,
            "action": "agent_event",
            "resource": "auditship",
            "outcome": "success",
            "metadata": {
                "source_event": what,
                "version": env!("CARGO_PKG_VERSION"),
                "config_hash": self.config_hash,
                "pid": std::process::id(),
                "uptime_seconds": crate::clock::now_ms().saturating_sub(self.started_ms) / 1000,
                "queue_batches": queue.batches(),
                "queue_bytes": queue.bytes(),
                "streams": streams,
            },
        });
        if what == "agent_reload"
            && let Some(previous) = &self.previous_config_hash
        {
            event["metadata"]["previous_config_hash"] = json!(previous);
        }
        event.to_string()
    }

    /// Stores one lifecycle record as a batch of its own. Returns the batch id.
    pub fn store(&self, what: &str, queue: &Queue) -> Result<u64, crate::queue::QueueError> {
        let line = self.event(what, queue);
        let mut records = Vec::with_capacity(line.len() + 512);
        encode_agent_record(&self.encoder, &line, &mut records);
        queue.commit(&NewBatch {
            records,
            events: 1,
            ..Default::default()
        })
    }
}

/// Appends the shipped record of one of the daemon's own `agent_event` lines (not
/// chained: source `auditship`, stream `agent`) to `out`.
pub(super) fn encode_agent_record(encoder: &Encoder, line: &str, out: &mut Vec<u8>) {
    let (received_at, _) = crate::clock::utc_now();
    let at = Origin {
        source: "auditship",
        stream: "agent",
        file: "",
        line: 0,
        offset: 0,
        received_at: &received_at,
    };
    encoder.encode_line(None, line.as_bytes(), None, &at, out);
}
