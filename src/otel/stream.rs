//! Telemetry streams on disk: `<dir>/<user>/audit-YYYY-MM-DD.jsonl`, one FORMAT v1
//! chain per local user, written by the daemon alone.
//!
//! One thread seals everything, so the work per event (canonical form, SHA-256,
//! HMAC) never runs on the async workers, and bodies that arrive together share a
//! write: it takes every body waiting, groups their events by user, and appends each
//! user's group through [`write_user_stream`] as one `write` and one `fdatasync`
//! under the stream's lock. Each body's answer waits for its group's sync. A failed
//! group leaves nothing behind (`record::writer` cuts a failed write back), and every
//! body in it is told so.
//!
//! [`write_user_stream`] is the one place a telemetry stream is written: swapping it
//! (for a shared per-user sealer) changes nothing else here.

use super::Stats;
use crate::audit::Keys;
use crate::record::writer::{self, AppendError, AppendOptions, Appended};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

/// Bodies taken into one group at most: bounds how long the first of them waits.
const MAX_GROUP_BODIES: usize = 256;

/// How long a group waits for the stream lock (only the daemon writes the stream;
/// a long wait means another process holds the lock).
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Seals `events` (JSON objects without `seq`, `prev_hash` and hashes) into the
/// stream of `user` under `dir`, in order, under its lock, durably (`fdatasync`, and
/// the directory when a file is new).
pub fn write_user_stream(
    dir: &Path,
    user: &str,
    events: &[&str],
    signer: Option<(&str, &Keys)>,
    date: &str,
) -> Result<Vec<Appended>, AppendError> {
    let opts = AppendOptions {
        signer,
        fsync: true,
        lock_timeout: LOCK_TIMEOUT,
        date,
    };
    writer::append_all(&dir.join(user), &opts, events.len(), |i, seq, prev| {
        let rest = events[i].strip_prefix('{').unwrap_or("}");
        let sep = if rest.starts_with('}') { "" } else { "," };
        format!("{{\"prev_hash\":\"{prev}\",\"seq\":{seq}{sep}{rest}")
    })
}

/// Where the streams go and how they are signed.
#[derive(Debug, Clone)]
pub struct Target {
    pub dir: PathBuf,
    pub signer: Option<(String, Keys)>,
}

/// The answer to one body: `Ok` once its events are durable.
pub type Done = tokio::sync::oneshot::Receiver<Result<(), String>>;

struct Job {
    user: String,
    events: Vec<String>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The sealing thread.
pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread; `wake` is called after a group created a user's stream.
    pub fn start(
        target: Target,
        stats: Arc<Stats>,
        wake: Option<crate::watch::Waker>,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("auditship-telemetry".into())
            .spawn(move || run(&target, &rx, &stats, wake.as_ref()))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands a body's events to the thread for `user`'s stream.
    pub fn submit(&self, user: String, events: Vec<String>) -> Done {
        let (done, rx) = tokio::sync::oneshot::channel();
        let job = Job { user, events, done };
        if let Some(tx) = &self.tx
            && let Err(mpsc::SendError(job)) = tx.send(job)
        {
            let _ = job.done.send(Err("the telemetry writer stopped".into()));
        }
        rx
    }

    /// Seals what was handed over, then ends the thread.
    pub fn stop(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    target: &Target,
    rx: &mpsc::Receiver<Job>,
    stats: &Stats,
    wake: Option<&crate::watch::Waker>,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP_BODIES {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut by_user: BTreeMap<String, Vec<Job>> = BTreeMap::new();
        for j in jobs {
            by_user.entry(j.user.clone()).or_default().push(j);
        }
        let date = crate::clock::utc_now().1;
        let signer = target
            .signer
            .as_ref()
            .map(|(kid, keys)| (kid.as_str(), keys));
        for (user, jobs) in by_user {
            let events: Vec<&str> = jobs
                .iter()
                .flat_map(|j| j.events.iter().map(String::as_str))
                .collect();
            let new_stream = !target.dir.join(&user).is_dir();
            let result = write_user_stream(&target.dir, &user, &events, signer, &date)
                .map(|_| ())
                .map_err(|e| e.to_string());
            match &result {
                Ok(()) => {
                    stats
                        .records_accepted
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    if new_stream && let Some(w) = wake {
                        w.wake();
                    }
                }
                Err(e) => {
                    stats.write_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(user = %user, events = events.len(), error = %e, "cannot write telemetry to its stream; the sender will retry");
                }
            }
            for j in jobs {
                let _ = j.done.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_continue_one_chain_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let e = r#"{"v":1,"id":"x","timestamp":"2026-01-01T00:00:00.000Z","user_id":"u","session_id":"s","host":"h","action":"agent_event","resource":"r","outcome":"success"}"#;
        let mut keys = Keys::new();
        keys.insert("k", &[7u8; 32]);
        let a = write_user_stream(
            dir.path(),
            "alice",
            &[e, e],
            Some(("k", &keys)),
            "2026-01-01",
        )
        .unwrap();
        let b =
            write_user_stream(dir.path(), "alice", &[e], Some(("k", &keys)), "2026-01-02").unwrap();
        let c = write_user_stream(dir.path(), "bob", &[e], None, "2026-01-01").unwrap();
        assert_eq!(a.iter().map(|x| x.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(b[0].seq, 2);
        assert!(b[0].file.ends_with("alice/audit-2026-01-02.jsonl"));
        assert_eq!(c[0].seq, 0);
        let mut verifier = crate::audit::Verifier::new(keys);
        let mut problems = Vec::new();
        for f in writer::stream_files(&dir.path().join("alice")).unwrap() {
            for line in std::fs::read(&f).unwrap().split_inclusive(|b| *b == b'\n') {
                verifier.check_line(line.strip_suffix(b"\n").unwrap(), &mut problems);
            }
        }
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(verifier.members(), 3);
    }
}
