//! Symlinks the reader did not follow ([`crate::watch::Refused`]).
//!
//! Each refused path is logged and counted (`auditship_symlinks_refused_total`, by
//! kind) once while it stays refused, not on every rescan; a path that stops being
//! refused is forgotten, so if it comes back it is reported again. A refused
//! directory (a stream that is not shipped: `~/.claude` leading to someone else's
//! directory) also becomes an `agent_event` record in the trail
//! (`metadata.source_event = "symlink_refused"`, `resource` = the link's path), added
//! to the reader's batch like any record, so the SIEM sees the gap. A refused file
//! entry (a symlink in a stream directory leading out of it) is logged and counted
//! only: the stream itself still ships.

use crate::check::Encoder;
use crate::watch::{Refused, RefusedKind};
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Refused symlinks, counted by kind (shared with telemetry).
#[derive(Debug, Default)]
pub struct RefusedCounts {
    pub directories: AtomicU64,
    pub files: AtomicU64,
}

/// What has been reported, and how records name the daemon.
pub struct Refusals {
    seen: HashSet<PathBuf>,
    /// `host` of the records (the configured `agent.host`).
    pub host: String,
    /// `session_id` of the records: this run of the daemon, as in lifecycle records.
    pub run_id: String,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            seen: HashSet::new(),
            host: crate::host::host_name(),
            run_id: super::heartbeat::run_id().to_string(),
        }
    }
}

impl Refusals {
    /// Reports what a whole rescan refused, each `(source name, refusal)`: new paths
    /// are logged and counted, refused directories appended to `out` as records.
    /// Returns the number of records appended.
    pub fn report(
        &mut self,
        found: &[(String, Refused)],
        encoder: &Encoder,
        counts: &RefusedCounts,
        out: &mut Vec<u8>,
    ) -> u32 {
        let mut records = 0;
        let now: HashSet<&PathBuf> = found.iter().map(|(_, r)| &r.path).collect();
        self.seen.retain(|p| now.contains(p));
        for (source, r) in found {
            if !self.seen.insert(r.path.clone()) {
                continue;
            }
            tracing::warn!(
                source = %source,
                path = %r.path.display(),
                target = %r.target.display(),
                kind = r.kind.as_str(),
                reason = %r.reason,
                "symlink refused"
            );
            match r.kind {
                RefusedKind::File => {
                    counts.files.fetch_add(1, Ordering::Relaxed);
                }
                RefusedKind::Directory => {
                    counts.directories.fetch_add(1, Ordering::Relaxed);
                    let line = self.event(source, r);
                    super::heartbeat::encode_agent_record(encoder, &line, out);
                    records += 1;
                }
            }
        }
        records
    }

    /// The `agent_event` line for a refused directory.
    fn event(&self, source: &str, r: &Refused) -> String {
        let (now, _) = crate::clock::utc_now();
        let path = r.path.display().to_string();
        json!({
            "v": 1,
            "id": uuid::Uuid::new_v4().to_string(),
            "timestamp": now,
            "user_id": "auditship",
            "session_id": self.run_id,
            "host": self.host,
            "action": "agent_event",
            "resource": path,
            "outcome": "denied",
            "metadata": {
                "source_event": "symlink_refused",
                "source": source,
                "path": path,
                "kind": r.kind.as_str(),
                "target": r.target.display().to_string(),
                "reason": r.reason,
                "dir_uid": r.dir_uid,
                "link_uid": r.link_uid,
                "target_uid": r.target_uid,
            },
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str, kind: RefusedKind) -> (String, Refused) {
        (
            "claude".into(),
            Refused {
                path: PathBuf::from(path),
                kind,
                target: PathBuf::from("/etc"),
                reason: "not following".into(),
                dir_uid: Some(1001),
                link_uid: Some(1001),
                target_uid: Some(0),
            },
        )
    }

    #[test]
    fn each_path_is_reported_once_while_it_stays_refused() {
        let enc = Encoder::new(
            "h",
            &serde_json::Map::new(),
            crate::redact::Redactor::builtin(),
        );
        let counts = RefusedCounts::default();
        let mut r = Refusals::default();
        let mut out = Vec::new();
        let dir = refused("/home/a/.claude", RefusedKind::Directory);
        let file = refused("/home/b/.claude/audit/x.jsonl", RefusedKind::File);
        let both = [dir.clone(), file.clone()];
        assert_eq!(r.report(&both, &enc, &counts, &mut out), 1);
        assert_eq!(
            r.report(&both, &enc, &counts, &mut out),
            0,
            "not every rescan"
        );
        let rec: serde_json::Value =
            serde_json::from_slice(out.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(rec["action"], "agent_event");
        assert_eq!(rec["outcome"], "denied");
        assert_eq!(rec["resource"], "/home/a/.claude");
        assert_eq!(rec["metadata"]["source_event"], "symlink_refused");
        assert_eq!(rec["metadata"]["target_uid"], 0);
        assert_eq!(rec["_auditship"]["source"], "auditship");
        // Fixed, then broken again: reported again.
        assert_eq!(r.report(&[], &enc, &counts, &mut out), 0);
        assert_eq!(r.report(&both, &enc, &counts, &mut out), 1);
        assert_eq!(counts.directories.load(Ordering::Relaxed), 2);
        assert_eq!(counts.files.load(Ordering::Relaxed), 2);
    }
}
