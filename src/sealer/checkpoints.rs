//! Signed checkpoints of the sealed streams (docs/FORMAT.md, "Signed checkpoints"):
//! every `checkpoint_interval`, and once more at a clean stop, each stream whose head
//! is not yet signed gets a checkpoint event, committed through the stream's own
//! writer so that it signs exactly the event before it.
//!
//! A stream's head counts as signed once a checkpoint event of this sealer is its last
//! event; after a start nothing is known signed, so each stream with events is signed
//! once at the first round, then only when it gains events. An idle sealer signs
//! nothing more.

use super::streams::Streams;
use crate::audit::checkpoint::{RESOURCE, SigningKey};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `session_id` of checkpoint events: they belong to no Claude Code session.
const SESSION: &str = "auditship-sealer";

/// The key and what it signed so far.
pub struct Checkpointer {
    key: Arc<SigningKey>,
    /// Stream name → seq of its last checkpoint event.
    signed: HashMap<String, u64>,
}

impl Checkpointer {
    pub fn new(key: SigningKey) -> Self {
        Checkpointer {
            key: Arc::new(key),
            signed: HashMap::new(),
        }
    }

    /// Signs the head of every stream that gained events since its last checkpoint.
    /// `user_id` gives the `user_id` of a stream's events. Returns how many were
    /// signed; a stream whose checkpoint cannot be committed is logged and tried
    /// again next round.
    pub async fn round(
        &mut self,
        streams: &Streams,
        host: &str,
        user_id: impl Fn(&str) -> String,
    ) -> usize {
        let mut signed = 0;
        for head in streams.heads() {
            let Some(seq) = head.seq else { continue };
            if self.signed.get(&head.name) == Some(&seq) {
                continue;
            }
            let event = checkpoint_event(&user_id(&head.name), host);
            match streams
                .append_checkpoint(&head.name, event, self.key.clone())
                .await
            {
                Ok(appended) => {
                    self.signed.insert(head.name.clone(), appended.seq);
                    signed += 1;
                }
                Err(e) => {
                    tracing::error!(stream = %head.name, error = %e, "sealer: a checkpoint could not be written; tried again next round");
                }
            }
        }
        if signed > 0 {
            tracing::debug!(streams = signed, kid = %self.key.public().kid(), "sealer: checkpoints signed");
        }
        signed
    }
}

/// A checkpoint event without its `metadata.checkpoint`, which the stream's writer
/// adds when it knows the head the event follows.
fn checkpoint_event(user_id: &str, host: &str) -> Map<String, Value> {
    let (timestamp, _) = crate::clock::utc_now();
    let event = json!({
        "v": 1,
        "id": uuid::Uuid::new_v4().to_string(),
        "timestamp": timestamp,
        "user_id": user_id,
        "session_id": SESSION,
        "host": host,
        "action": "agent_event",
        "resource": RESOURCE,
        "outcome": "success",
        "metadata": {"source_event": RESOURCE},
    });
    match event {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Runs rounds every `interval` until `stop`.
pub async fn every(
    checkpointer: Arc<tokio::sync::Mutex<Checkpointer>>,
    streams: Arc<Streams>,
    interval: Duration,
    host: String,
    user_id: impl Fn(&str) -> String,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        checkpointer
            .lock()
            .await
            .round(&streams, &host, &user_id)
            .await;
    }
}
