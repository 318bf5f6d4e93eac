//! `kafka`: a producer of the Kafka protocol, written for this one job.
//!
//! Each shipped record becomes one Kafka record: the value is the record (JSON), the
//! key its stream (by default: one user's chain lands in one partition, in order),
//! the timestamp the event's time, and the header `auditship.id` its idempotency id.
//! The partition of a key is the Java producer's (murmur2), so other producers of the
//! same keys agree.
//!
//! A send looks up the topic's partitions and their leaders (Metadata), takes a
//! producer id (InitProducerId) when idempotent, groups the records per partition in
//! request order, cuts each partition's run into record batches of at most
//! `message_max_bytes`, and sends them to the leaders with `acks = all` (Produce),
//! one round of batches after another so a partition's batches stay in order. The
//! answer is read per partition:
//! - no error (or a duplicate sequence: the broker already has it): delivered;
//! - leader moved, not enough replicas, timeouts, the network: those records are
//!   sent again after backoff, with the same producer sequence, so the broker writes
//!   them once even when the first try was written but its answer lost;
//! - message too large: split (by `ship`), a single record too large becomes a dead
//!   letter; a record over `message_max_bytes` is never sent, it is dead-lettered with
//!   its size;
//! - authorisation and authentication failures: logged as errors and retried every
//!   30 s, never dead-lettered;
//! - an invalid record: a dead letter.
//!
//! One request is out at a time, so the order of a partition is the order of its
//! stream. A sequence the broker no longer accepts (its producer state lost, or a
//! retry that differs from what was sent before) takes a new producer id.

mod batch;
mod conn;
mod scram;
mod wire;

pub use crate::config::kafka::{Codec, plaintext_brokers};

use super::super::Verdict;
use super::super::record;
use crate::config::daemon::{KafkaConfig, KafkaKey, SinkConfig, SinkKind};
use conn::{Conn, Dialer, Failure};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long an authorisation or authentication failure waits before the next try.
const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(30);

/// The header that carries a record's `_auditship.id`.
pub const ID_HEADER: &str = "auditship.id";

pub struct KafkaSink {
    name: String,
    cfg: Arc<KafkaConfig>,
    dialer: Dialer,
    /// Connections by broker node id.
    conns: HashMap<i32, Conn>,
    meta: Option<Meta>,
    producer: Option<ProducerId>,
    /// Per partition: the sequence of the next new record.
    next_seq: HashMap<i32, i32>,
    /// Per partition: the batch sent last whose outcome is not known. Sent again
    /// as it was, it keeps its sequence; anything else first takes a new producer id.
    pending: HashMap<i32, Pending>,
    /// Round-robin partition for records without a key.
    keyless: usize,
}

#[derive(Debug, Clone, Copy)]
struct ProducerId {
    id: i64,
    epoch: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    digest: u64,
    count: i32,
    base: i32,
}

struct Meta {
    /// `node id → (host, port)`.
    brokers: HashMap<i32, (String, u16)>,
    /// Leader node of each partition, by partition index (partitions 0..n).
    leaders: Vec<i32>,
}

/// One record batch of one partition in this send.
struct Chunk {
    partition: i32,
    /// Line indexes of the request, in order.
    lines: Vec<usize>,
}

/// What became of a chunk.
enum Outcome {
    Delivered,
    Retry(String),
    /// The broker took none of it and will not: too large.
    TooLarge(String),
    Rejected(String),
    /// Credentials, authorisation: the operator must act.
    Config(String),
}

impl KafkaSink {
    pub fn new(cfg: &SinkConfig) -> Result<KafkaSink, String> {
        let SinkKind::Kafka(k) = &cfg.kind else {
            unreachable!("KafkaSink::new is called for kafka sinks only");
        };
        let tls = match &k.tls {
            None => None,
            Some(t) => {
                let config = t.client_config(true, &[])?;
                Some((
                    tokio_rustls::TlsConnector::from(Arc::new(config)),
                    t.server_name().cloned(),
                ))
            }
        };
        for host in plaintext_brokers(k) {
            tracing::warn!(sink = %cfg.name, broker = %host, "allow_plaintext: records and credentials go to this broker unencrypted");
        }
        Ok(KafkaSink {
            name: cfg.name.clone(),
            dialer: Dialer {
                tls,
                sasl: k.sasl.clone(),
                connect_timeout: k.connect_timeout,
                request_timeout: k.request_timeout,
                client_id: format!("auditship-{}", env!("CARGO_PKG_VERSION")),
            },
            cfg: Arc::new((**k).clone()),
            conns: HashMap::new(),
            meta: None,
            producer: None,
            next_seq: HashMap::new(),
            pending: HashMap::new(),
            keyless: 0,
        })
    }

    pub async fn send(&mut self, records: &bytes::Bytes) -> Verdict {
        let lines: Vec<&[u8]> = record::lines(records).collect();
        let keys: Vec<_> = lines.iter().map(|l| self.key(l)).collect();
        let mut rejected = Vec::new();
        let mut sendable = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let size = record_size(line, keys[i].as_deref());
            if size > self.cfg.message_max_bytes {
                rejected.push((
                    i,
                    format!(
                        "record of {size} bytes as a Kafka record exceeds message_max_bytes ({})",
                        self.cfg.message_max_bytes
                    ),
                ));
            } else {
                sendable.push(i);
            }
        }
        if sendable.is_empty() {
            return finish(lines.len(), Vec::new(), rejected, None);
        }
        if let Err(f) = self.prepare().await {
            return self.failed_before_sending(f);
        }
        let chunks = self.chunks(&lines, &keys, &sendable);
        let outcomes = self.produce_all(records, &lines, &chunks).await;
        let mut retry = Vec::new();
        let mut too_large = None;
        let mut reason = None;
        let mut config = false;
        for (chunk, outcome) in chunks.iter().zip(outcomes) {
            match outcome {
                Outcome::Delivered => {}
                Outcome::Retry(r) => {
                    retry.extend_from_slice(&chunk.lines);
                    reason.get_or_insert(r);
                }
                Outcome::Config(r) => {
                    retry.extend_from_slice(&chunk.lines);
                    reason.get_or_insert(r);
                    config = true;
                }
                Outcome::TooLarge(r) => {
                    if chunk.lines.len() == 1 {
                        rejected.push((chunk.lines[0], r));
                    } else {
                        retry.extend_from_slice(&chunk.lines);
                        too_large.get_or_insert(r);
                    }
                }
                Outcome::Rejected(r) => {
                    rejected.extend(chunk.lines.iter().map(|&i| (i, r.clone())))
                }
            }
        }
        retry.sort_unstable();
        if retry.len() == lines.len() {
            if reason.is_none()
                && let Some(r) = too_large
            {
                return Verdict::TooLarge(r);
            }
            let reason = reason.or(too_large).unwrap_or_default();
            return Verdict::Retry {
                after: config.then_some(CONFIG_ERROR_RETRY),
                reason,
            };
        }
        if let Some(r) = &reason {
            tracing::debug!(sink = %self.name, reason = %r, "some records wait for another try");
        }
        finish(
            lines.len(),
            retry,
            rejected,
            config.then_some(CONFIG_ERROR_RETRY),
        )
    }

    /// The record's key as configured.
    fn key<'l>(&self, line: &'l [u8]) -> Option<std::borrow::Cow<'l, str>> {
        key_of(self.cfg.key, line)
    }

    /// Metadata and, when idempotent, a producer id: what a send needs first.
    async fn prepare(&mut self) -> Result<(), Failure> {
        if self.meta.is_none() {
            self.meta = Some(self.metadata().await?);
        }
        if self.cfg.idempotence && self.producer.is_none() {
            self.producer = Some(self.init_producer().await?);
            self.next_seq.clear();
            self.pending.clear();
        }
        Ok(())
    }

    fn failed_before_sending(&mut self, f: Failure) -> Verdict {
        match f {
            Failure::Network(reason) => {
                self.forget_connections();
                Verdict::Retry {
                    reason,
                    after: None,
                }
            }
            Failure::Auth(reason) => {
                self.forget_connections();
                tracing::error!(sink = %self.name, reason = %reason, "the broker refuses our credentials or authorisation; fix the sink's settings or the broker's ACLs, records wait in the queue");
                Verdict::Retry {
                    reason,
                    after: Some(CONFIG_ERROR_RETRY),
                }
            }
        }
    }

    fn forget_connections(&mut self) {
        self.conns.clear();
        self.meta = None;
    }

    /// A connection to any broker: one already open, else the bootstrap list in
    /// order. Its node id is `-1 - index` for a bootstrap address.
    async fn any_conn(&mut self) -> Result<i32, Failure> {
        if let Some(id) = self.conns.keys().next() {
            return Ok(*id);
        }
        let mut last = Failure::Network("no broker configured".into());
        for (i, (host, port)) in self.cfg.brokers.iter().enumerate() {
            match self.dialer.connect(host, *port).await {
                Ok(c) => {
                    let id = -1 - i as i32;
                    self.conns.insert(id, c);
                    return Ok(id);
                }
                Err(f @ Failure::Auth(_)) => return Err(f),
                Err(f) => last = f,
            }
        }
        Err(last)
    }

    /// Sends a request on connection `node`; on failure the connection is dropped.
    async fn call(&mut self, node: i32, api: i16, body: &[u8]) -> Result<(i16, Vec<u8>), Failure> {
        let Some(conn) = self.conns.get_mut(&node) else {
            return Err(Failure::Network(format!("no connection to broker {node}")));
        };
        let Some(version) = conn.version(api) else {
            let msg = format!(
                "{}: the broker speaks no version of API {api} this client knows",
                conn.addr
            );
            return Err(Failure::Auth(msg));
        };
        let body = if api == wire::METADATA {
            wire::metadata_request(version, &self.cfg.topic)
        } else {
            body.to_vec()
        };
        match conn.request(api, version, &body).await {
            Ok(answer) => Ok((version, answer)),
            Err(f) => {
                self.conns.remove(&node);
                Err(f)
            }
        }
    }

    async fn metadata(&mut self) -> Result<Meta, Failure> {
        let node = self.any_conn().await?;
        let (version, body) = self.call(node, wire::METADATA, &[]).await?;
        let m = wire::metadata(version, &body, &self.cfg.topic)
            .map_err(|e| Failure::Network(format!("Metadata: {e}")))?;
        let topic = &self.cfg.topic;
        match m.topic_error {
            0 => {}
            29 => {
                return Err(Failure::Auth(format!(
                    "not authorised to describe topic {topic:?} (TOPIC_AUTHORIZATION_FAILED)"
                )));
            }
            3 => {
                tracing::warn!(sink = %self.name, topic = %topic, "the topic does not exist on the brokers; create it (records wait in the queue)");
                return Err(Failure::Network(format!(
                    "topic {topic:?} does not exist (UNKNOWN_TOPIC_OR_PARTITION)"
                )));
            }
            e => {
                return Err(Failure::Network(format!(
                    "topic {topic:?}: {}",
                    error_name(e)
                )));
            }
        }
        let n = m.partitions.len();
        if n == 0
            || m.partitions
                .iter()
                .enumerate()
                .any(|(i, p)| p.index != i as i32)
        {
            return Err(Failure::Network(format!(
                "topic {topic:?}: no usable partition list"
            )));
        }
        let leaders: Vec<i32> = m
            .partitions
            .iter()
            .map(|p| if p.error == 0 { p.leader } else { -1 })
            .collect();
        let brokers = m
            .brokers
            .into_iter()
            .filter_map(|b| Some((b.node_id, (b.host, u16::try_from(b.port).ok()?))))
            .collect();
        Ok(Meta { brokers, leaders })
    }

    async fn init_producer(&mut self) -> Result<ProducerId, Failure> {
        let node = self.any_conn().await?;
        let version = self
            .conns
            .get(&node)
            .and_then(|c| c.version(wire::INIT_PRODUCER_ID));
        let request = wire::init_producer_id_request(version.unwrap_or(0));
        let (_, body) = self.call(node, wire::INIT_PRODUCER_ID, &request).await?;
        let (error, id, epoch) = wire::init_producer_id(&body)
            .map_err(|e| Failure::Network(format!("InitProducerId: {e}")))?;
        match error {
            0 => Ok(ProducerId { id, epoch }),
            31 => Err(Failure::Auth(
                "not authorised to write idempotently (CLUSTER_AUTHORIZATION_FAILED): grant IdempotentWrite, or set idempotence = false".into(),
            )),
            e => Err(Failure::Network(format!("InitProducerId: {}", error_name(e)))),
        }
    }

    /// The request's records grouped per partition (request order kept), each run
    /// cut into batches within `message_max_bytes`.
    fn chunks(
        &mut self,
        lines: &[&[u8]],
        keys: &[Option<std::borrow::Cow<'_, str>>],
        sendable: &[usize],
    ) -> Vec<Chunk> {
        let n = self.meta.as_ref().map_or(1, |m| m.leaders.len());
        let keyless = self.keyless % n;
        self.keyless = self.keyless.wrapping_add(1);
        let mut per: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &i in sendable {
            let p = match &keys[i] {
                Some(k) => batch::partition_of(k.as_bytes(), n),
                None => keyless,
            };
            per[p].push(i);
        }
        let mut out = Vec::new();
        for (p, idx) in per.into_iter().enumerate() {
            let mut cur = Chunk {
                partition: p as i32,
                lines: Vec::new(),
            };
            let mut size = batch::BATCH_OVERHEAD;
            for i in idx {
                let s = record_size(lines[i], keys[i].as_deref());
                if !cur.lines.is_empty() && size + s > self.cfg.message_max_bytes {
                    out.push(std::mem::replace(
                        &mut cur,
                        Chunk {
                            partition: p as i32,
                            lines: Vec::new(),
                        },
                    ));
                    size = batch::BATCH_OVERHEAD;
                }
                size += s;
                cur.lines.push(i);
            }
            if !cur.lines.is_empty() {
                out.push(cur);
            }
        }
        out
    }

    /// Sends every chunk: in rounds (a partition's n-th batch in round n), each
    /// round one Produce request per leader. A partition whose batch fails sends
    /// nothing more in this request, so its order holds.
    async fn produce_all(
        &mut self,
        records: &bytes::Bytes,
        lines: &[&[u8]],
        chunks: &[Chunk],
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = chunks.iter().map(|_| None).collect();
        // The round of each chunk: its rank within its partition.
        let mut rank = vec![0usize; chunks.len()];
        let mut seen: HashMap<i32, usize> = HashMap::new();
        for (c, chunk) in chunks.iter().enumerate() {
            let r = seen.entry(chunk.partition).or_default();
            rank[c] = *r;
            *r += 1;
        }
        let rounds = rank.iter().max().map_or(0, |m| m + 1);
        for round in 0..rounds {
            let mut failed_partitions: Vec<i32> = chunks
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Some(o) if !matches!(o, Outcome::Delivered)))
                .map(|(c, _)| c.partition)
                .collect();
            failed_partitions.dedup();
            let todo: Vec<usize> = (0..chunks.len())
                .filter(|&c| rank[c] == round && !failed_partitions.contains(&chunks[c].partition))
                .collect();
            for (c, o) in self.produce_round(records, lines, chunks, &todo).await {
                outcomes[c] = Some(o);
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::Retry("an earlier batch of its partition failed".into())
                })
            })
            .collect()
    }
}

/// The verdict for a request of `n` records of which `retry` wait and `rejected`
/// were refused for good.
fn finish(
    n: usize,
    retry: Vec<usize>,
    rejected: Vec<(usize, String)>,
    after: Option<Duration>,
) -> Verdict {
    if retry.is_empty() && rejected.is_empty() {
        return Verdict::Success;
    }
    if rejected.len() == n {
        let mut reasons: Vec<&str> = rejected.iter().map(|(_, r)| r.as_str()).collect();
        reasons.dedup();
        if reasons.len() == 1 {
            return Verdict::Permanent(reasons[0].to_string());
        }
    }
    let mut rejected = rejected;
    rejected.sort_by_key(|(i, _)| *i);
    Verdict::Partial {
        retry,
        rejected,
        after,
    }
}

/// Bytes a record takes in a batch, at most (before compression).
fn record_size(line: &[u8], key: Option<&str>) -> usize {
    line.len()
        + key.map_or(0, str::len)
        + ID_HEADER.len()
        + 64
        + batch::RECORD_OVERHEAD
        + batch::BATCH_OVERHEAD
}

/// A record's key as configured.
fn key_of(key: KafkaKey, line: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    match key {
        KafkaKey::Stream => record::stream(line),
        KafkaKey::Id => record::id(line).map(std::borrow::Cow::Borrowed),
        KafkaKey::None => None,
    }
}

/// The event's time in milliseconds (the time it was read when it has none).
fn timestamp_ms(line: &[u8]) -> i64 {
    record::time_nanos(line)
        .map(|n| (n / 1_000_000) as i64)
        .unwrap_or_else(|| crate::clock::now_ms() as i64)
}

/// A digest of the ids in a chunk, to know a batch sent again.
fn digest(lines: &[&[u8]], chunk: &Chunk) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for &i in &chunk.lines {
        record::id(lines[i]).hash(&mut h);
        lines[i].len().hash(&mut h);
    }
    h.finish()
}

/// The name of a Kafka error code, for messages.
fn error_name(code: i16) -> String {
    let name = match code {
        -1 => "UNKNOWN_SERVER_ERROR",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        10 => "MESSAGE_TOO_LARGE",
        13 => "NETWORK_EXCEPTION",
        17 => "INVALID_TOPIC_EXCEPTION",
        18 => "RECORD_LIST_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        21 => "INVALID_REQUIRED_ACKS",
        29 => "TOPIC_AUTHORIZATION_FAILED",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        32 => "INVALID_TIMESTAMP",
        33 => "UNSUPPORTED_SASL_MECHANISM",
        34 => "ILLEGAL_SASL_STATE",
        35 => "UNSUPPORTED_VERSION",
        45 => "OUT_OF_ORDER_SEQUENCE_NUMBER",
        46 => "DUPLICATE_SEQUENCE_NUMBER",
        47 => "INVALID_PRODUCER_EPOCH",
        56 => "KAFKA_STORAGE_ERROR",
        58 => "SASL_AUTHENTICATION_FAILED",
        59 => "UNKNOWN_PRODUCER_ID",
        74 => "FENCED_LEADER_EPOCH",
        75 => "UNKNOWN_LEADER_EPOCH",
        76 => "UNSUPPORTED_COMPRESSION_TYPE",
        87 => "INVALID_RECORD",
        89 => "THROTTLING_QUOTA_EXCEEDED",
        _ => return format!("error {code}"),
    };
    format!("{name} ({code})")
}

/// What a partition's error code means for its records.
fn outcome(code: i16, message: Option<&str>) -> Outcome {
    let why = match message {
        Some(m) if !m.is_empty() => format!("{}: {m}", error_name(code)),
        _ => error_name(code),
    };
    match code {
        0 | 46 => Outcome::Delivered,
        10 | 18 => Outcome::TooLarge(why),
        32 | 87 => Outcome::Rejected(why),
        17 | 21 | 29 | 31 | 35 | 58 | 76 => Outcome::Config(why),
        _ => Outcome::Retry(why),
    }
}

mod produce;
