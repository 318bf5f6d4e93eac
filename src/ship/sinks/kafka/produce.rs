//! One round of Produce requests: the producer sequence of each batch, the batches
//! encoded (off the async workers: compression is CPU work), one request per leader,
//! and what each partition's answer means.

use super::super::super::record;
use super::batch::{self, Producer, Record};
use super::conn::Failure;
use super::{Chunk, KafkaSink, Outcome, Pending, digest, key_of, outcome, timestamp_ms, wire};
use std::collections::HashMap;

impl KafkaSink {
    /// Sends the chunks `todo` (at most one per partition) and says what became of
    /// each.
    pub(super) async fn produce_round(
        &mut self,
        records: &bytes::Bytes,
        lines: &[&[u8]],
        chunks: &[Chunk],
        todo: &[usize],
    ) -> Vec<(usize, Outcome)> {
        let mut out = Vec::with_capacity(todo.len());
        let Some(bases) = self.sequences(lines, chunks, todo).await else {
            let why = "could not take a new producer id".to_string();
            return todo
                .iter()
                .map(|&c| (c, Outcome::Retry(why.clone())))
                .collect();
        };
        // Chunks by leader.
        let mut by_leader: HashMap<i32, Vec<usize>> = HashMap::new();
        for &c in todo {
            let p = chunks[c].partition as usize;
            match self.meta.as_ref().and_then(|m| m.leaders.get(p)).copied() {
                Some(l) if l >= 0 => by_leader.entry(l).or_default().push(c),
                _ => {
                    self.meta = None;
                    out.push((c, Outcome::Retry(format!("partition {p} has no leader"))));
                }
            }
        }
        for (leader, cs) in by_leader {
            let results = self.produce_to(leader, records, chunks, &cs, &bases).await;
            for (c, o) in results {
                self.settle(lines, &chunks[c], bases.get(&c).copied(), &o);
                out.push((c, o));
            }
        }
        out
    }

    /// The base sequence of each chunk to send (empty without idempotence): a batch
    /// sent again as it was keeps its sequence; a partition whose unanswered batch is
    /// not sent again as it was takes a new producer id first (the broker may or may
    /// not have it). `None` when no producer id could be had.
    async fn sequences(
        &mut self,
        lines: &[&[u8]],
        chunks: &[Chunk],
        todo: &[usize],
    ) -> Option<HashMap<usize, i32>> {
        let mut bases = HashMap::new();
        if !self.cfg.idempotence {
            return Some(bases);
        }
        let differs = todo.iter().any(|&c| {
            let chunk = &chunks[c];
            self.pending.get(&chunk.partition).is_some_and(|p| {
                p.digest != digest(lines, chunk) || p.count != chunk.lines.len() as i32
            })
        });
        if differs || self.producer.is_none() {
            if differs {
                tracing::info!(sink = %self.name, "a batch whose outcome is unknown is not sent again as it was; taking a new producer id");
            }
            self.producer = None;
            match self.init_producer().await {
                Ok(p) => self.producer = Some(p),
                Err(_) => return None,
            }
            self.next_seq.clear();
            self.pending.clear();
        }
        for &c in todo {
            let p = chunks[c].partition;
            let base = match self.pending.get(&p) {
                Some(pending) => pending.base,
                None => self.next_seq.get(&p).copied().unwrap_or(0),
            };
            bases.insert(c, base);
        }
        Some(bases)
    }

    /// After an answer (or none) for a chunk: its partition's next sequence and
    /// whether its batch is still of unknown outcome.
    fn settle(&mut self, lines: &[&[u8]], chunk: &Chunk, base: Option<i32>, o: &Outcome) {
        let Some(base) = base else { return };
        let p = chunk.partition;
        let n = chunk.lines.len() as i32;
        match o {
            Outcome::Delivered => {
                self.next_seq.insert(p, base.wrapping_add(n) & i32::MAX);
                self.pending.remove(&p);
            }
            // Refused before it was written.
            Outcome::TooLarge(_) | Outcome::Rejected(_) | Outcome::Config(_) => {
                self.pending.remove(&p);
            }
            Outcome::Retry(_) => {
                self.pending.insert(
                    p,
                    Pending {
                        digest: digest(lines, chunk),
                        count: n,
                        base,
                    },
                );
            }
        }
    }

    /// One Produce request to `leader` with the batches of chunks `cs`.
    async fn produce_to(
        &mut self,
        leader: i32,
        records: &bytes::Bytes,
        chunks: &[Chunk],
        cs: &[usize],
        bases: &HashMap<usize, i32>,
    ) -> Vec<(usize, Outcome)> {
        let all = |o: &dyn Fn() -> Outcome| cs.iter().map(|&c| (c, o())).collect::<Vec<_>>();
        if let Err(f) = self.connect_to(leader).await {
            self.meta = None;
            return match f {
                Failure::Network(m) => all(&|| Outcome::Retry(m.clone())),
                Failure::Auth(m) => {
                    tracing::error!(sink = %self.name, reason = %m, "the broker refuses our credentials; fix the sink's sasl settings, records wait in the queue");
                    all(&|| Outcome::Config(m.clone()))
                }
            };
        }
        let jobs: Vec<(i32, Vec<usize>, Option<Producer>)> = cs
            .iter()
            .map(|&c| {
                let producer = self
                    .producer
                    .filter(|_| self.cfg.idempotence)
                    .map(|p| Producer {
                        id: p.id,
                        epoch: p.epoch,
                        base_sequence: bases.get(&c).copied().unwrap_or(0),
                    });
                (chunks[c].partition, chunks[c].lines.clone(), producer)
            })
            .collect();
        let (recs, key, codec) = (records.clone(), self.cfg.key, self.cfg.codec);
        let encoded =
            tokio::task::spawn_blocking(move || encode_batches(&recs, key, codec, &jobs)).await;
        let batches = match encoded {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return all(&|| Outcome::Retry(format!("encoding the batch: {e}"))),
            Err(e) => return all(&|| Outcome::Retry(format!("encoding task: {e}"))),
        };
        let parts: Vec<(i32, &[u8])> = batches.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        let timeout_ms = self.cfg.request_timeout.as_millis().min(i32::MAX as u128) as i32;
        let body = wire::produce_request(self.cfg.acks, timeout_ms, &self.cfg.topic, &parts);
        let answer = self.call(leader, wire::PRODUCE, &body).await;
        let (version, answer) = match answer {
            Ok(a) => a,
            Err(Failure::Network(m)) => {
                self.meta = None;
                return all(&|| Outcome::Retry(m.clone()));
            }
            Err(Failure::Auth(m)) => return all(&|| Outcome::Config(m.clone())),
        };
        let answers = match wire::produce(version, &answer) {
            Ok(a) => a,
            Err(e) => return all(&|| Outcome::Retry(format!("Produce: {e}"))),
        };
        let mut out = Vec::with_capacity(cs.len());
        for &c in cs {
            let p = chunks[c].partition;
            let o = match answers.iter().find(|a| a.index == p) {
                None => Outcome::Retry(format!("no answer for partition {p}")),
                Some(a) => {
                    if matches!(a.error, 3 | 5 | 6 | 74 | 75) {
                        self.meta = None;
                    }
                    if matches!(a.error, 45 | 47 | 59) {
                        // The broker lost or refuses our producer state: start anew.
                        self.producer = None;
                    }
                    outcome(a.error, a.message.as_deref())
                }
            };
            if let Outcome::Config(m) = &o {
                tracing::error!(sink = %self.name, partition = p, reason = %m, "the broker refuses to take records from us; fix the topic's ACLs or the sink's settings, records wait in the queue");
            }
            out.push((c, o));
        }
        out
    }

    /// A connection to broker `node`, opened when there is none.
    async fn connect_to(&mut self, node: i32) -> Result<(), Failure> {
        if self.conns.contains_key(&node) {
            return Ok(());
        }
        let Some((host, port)) = self
            .meta
            .as_ref()
            .and_then(|m| m.brokers.get(&node))
            .cloned()
        else {
            return Err(Failure::Network(format!(
                "broker {node} is not in the metadata"
            )));
        };
        let c = self.dialer.connect(&host, port).await?;
        self.conns.insert(node, c);
        Ok(())
    }
}

/// Encodes one record batch per job: `(partition, line indexes, producer)`.
fn encode_batches(
    records: &bytes::Bytes,
    key: crate::config::daemon::KafkaKey,
    codec: crate::config::kafka::Codec,
    jobs: &[(i32, Vec<usize>, Option<Producer>)],
) -> std::io::Result<Vec<(i32, Vec<u8>)>> {
    let lines: Vec<&[u8]> = record::lines(records).collect();
    let mut out = Vec::with_capacity(jobs.len());
    for (partition, idx, producer) in jobs {
        let keys: Vec<Option<std::borrow::Cow<'_, str>>> =
            idx.iter().map(|&i| key_of(key, lines[i])).collect();
        let ids: Vec<&[u8]> = idx
            .iter()
            .map(|&i| record::id(lines[i]).unwrap_or("").as_bytes())
            .collect();
        let headers: Vec<[(&str, &[u8]); 1]> =
            ids.iter().map(|id| [(super::ID_HEADER, *id)]).collect();
        let recs: Vec<Record<'_>> = idx
            .iter()
            .enumerate()
            .map(|(j, &i)| Record {
                key: keys[j].as_deref().map(str::as_bytes),
                value: lines[i],
                timestamp_ms: timestamp_ms(lines[i]),
                headers: &headers[j],
            })
            .collect();
        out.push((*partition, batch::encode(&recs, codec, *producer)?));
    }
    Ok(out)
}
