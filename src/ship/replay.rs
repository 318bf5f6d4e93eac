//! Sending a dead letter again (`auditship dead-letter replay`): to the sink that
//! rejected it, as it was stored (the same records, so the same `_auditship.id`s), in
//! requests within the sink's batch limits, each read by the sink's own
//! classification.
//!
//! Nothing is retried or waited for here: an operator runs the replay and reads its
//! outcome. What the sink did not take (refused again, a retryable failure, or the
//! requests after one) stays a dead letter; what it took is reported, so the caller
//! keeps only the rest. For a sink without acknowledgements (syslog), delivery counts
//! only once the sink confirms what was sent.

use super::{Verdict, halves, record, sinks};
use crate::config::daemon::SinkConfig;
use std::time::{Duration, Instant};

/// What became of one dead letter's records.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Records the sink acknowledged.
    pub delivered: u32,
    /// Records it did not, in their order, each ending in `\n`: the dead letter to keep.
    pub left: Vec<u8>,
    pub left_events: u32,
    /// Why records are left (empty when none are).
    pub reason: String,
}

/// How long a sink without acknowledgements may take to confirm a send.
const CONFIRM_LIMIT: Duration = Duration::from_secs(30);

/// Sends `records` (a dead letter's, JSON lines) to `sink` once.
pub async fn send_again(cfg: &SinkConfig, sink: &mut sinks::Sink, records: &[u8]) -> Outcome {
    let mut work = requests(records, cfg.max_events, cfg.max_bytes);
    work.reverse(); // popped from the end: the first request first
    let mut out = Outcome::default();
    let mut marks = Vec::new();
    while let Some((body, events)) = work.pop() {
        let verdict = sink.send(&body, events).await;
        let lines: Vec<&[u8]> = record::lines(&body).collect();
        let (why, kept): (String, Vec<&[u8]>) = match verdict {
            Verdict::Success => {
                out.delivered += events;
                marks.extend(sink.mark());
                continue;
            }
            Verdict::TooLarge(_) if events > 1 => {
                let (a, b) = halves(&body);
                work.push(b);
                work.push(a);
                continue;
            }
            Verdict::Retry { reason, .. } => {
                (format!("not delivered, try again later: {reason}"), lines)
            }
            Verdict::Permanent(reason) | Verdict::TooLarge(reason) => {
                (format!("rejected again: {reason}"), lines)
            }
            Verdict::Partial {
                retry, rejected, ..
            } => {
                let mut left: Vec<usize> = retry.clone();
                left.extend(rejected.iter().map(|(i, _)| *i));
                left.sort_unstable();
                left.dedup();
                out.delivered += events.saturating_sub(left.len() as u32);
                marks.extend(sink.mark());
                let why = match rejected.first() {
                    Some((_, why)) => {
                        format!(
                            "{} of {events} records rejected again: {why}",
                            rejected.len()
                        )
                    }
                    None => format!(
                        "{} of {events} records not taken, try again later",
                        retry.len()
                    ),
                };
                (
                    why,
                    left.iter().filter_map(|i| lines.get(*i).copied()).collect(),
                )
            }
        };
        // Nothing more is sent after a refusal: the rest is kept as it was.
        out.reason = why;
        for line in kept {
            push_line(&mut out, line);
        }
        for (rest, _) in work.iter().rev() {
            for line in record::lines(rest) {
                push_line(&mut out, line);
            }
        }
        break;
    }
    if !marks.is_empty() && !confirmed(sink, &marks).await {
        // Without a confirmation nothing counts as delivered.
        return Outcome {
            delivered: 0,
            left: records.to_vec(),
            left_events: record::lines(records).count() as u32,
            reason: "the connection was lost before the receiver confirmed delivery".into(),
        };
    }
    out
}

fn push_line(out: &mut Outcome, line: &[u8]) {
    out.left.extend_from_slice(line);
    out.left.push(b'\n');
    out.left_events += 1;
}

/// Waits until every mark is confirmed (true), or one is lost or the limit passes.
async fn confirmed(sink: &mut sinks::Sink, marks: &[sinks::syslog::Mark]) -> bool {
    let deadline = Instant::now() + CONFIRM_LIMIT;
    for mark in marks {
        loop {
            match sink.confirm(mark) {
                sinks::syslog::Confirm::Yes => break,
                sinks::syslog::Confirm::Lost => return false,
                sinks::syslog::Confirm::NotYet if Instant::now() >= deadline => return false,
                sinks::syslog::Confirm::NotYet => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    true
}

/// The records cut at line boundaries into requests of at most `max_events` records
/// and `max_bytes` bytes (a single longer record is a request of its own).
fn requests(records: &[u8], max_events: usize, max_bytes: usize) -> Vec<(bytes::Bytes, u32)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut events = 0u32;
    for line in record::lines(records) {
        if events > 0
            && (events as usize >= max_events || current.len() + line.len() + 1 > max_bytes)
        {
            out.push((bytes::Bytes::from(std::mem::take(&mut current)), events));
            events = 0;
        }
        current.extend_from_slice(line);
        current.push(b'\n');
        events += 1;
    }
    if events > 0 {
        out.push((bytes::Bytes::from(current), events));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_the_sinks_limits_and_every_line() {
        let records: Vec<u8> = (0..7)
            .flat_map(|i| format!("{{\"i\":{i}}}\n").into_bytes())
            .collect();
        let r = requests(&records, 3, 1 << 20);
        let sizes: Vec<u32> = r.iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let joined: Vec<u8> = r.iter().flat_map(|(b, _)| b.to_vec()).collect();
        assert_eq!(joined, records);
        let r = requests(&records, 100, 20);
        assert!(r.iter().all(|(b, n)| b.len() <= 20 || *n == 1), "{r:?}");
        assert_eq!(r.iter().map(|(_, n)| n).sum::<u32>(), 7);
        assert!(requests(b"", 10, 10).is_empty());
    }
}
