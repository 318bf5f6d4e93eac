//! The Kafka protocol's primitive types (big-endian integers, strings, bytes,
//! arrays, zig-zag varints) and the few requests and answers a producer needs, in
//! their non-flexible versions: ApiVersions v0, Metadata v1–v8, Produce v3–v8,
//! SaslHandshake v1 and SaslAuthenticate v0–v1; InitProducerId v0–v1, or v3–v4 (the
//! flexible encoding: some brokers want its producer id and epoch fields, -1, to hand
//! out a new id). Pure: bytes in, values out.

/// An API the broker speaks: key, lowest and highest version.
pub type ApiRange = (i16, i16, i16);

/// API keys used here.
pub const PRODUCE: i16 = 0;
pub const METADATA: i16 = 3;
pub const SASL_HANDSHAKE: i16 = 17;
pub const API_VERSIONS: i16 = 18;
pub const INIT_PRODUCER_ID: i16 = 22;
pub const SASL_AUTHENTICATE: i16 = 36;

/// The versions this client speaks of each API it uses (all non-flexible).
pub const SPOKEN: [(i16, i16, i16); 6] = [
    (PRODUCE, 3, 8),
    (METADATA, 1, 8),
    (SASL_HANDSHAKE, 1, 1),
    (API_VERSIONS, 0, 0),
    (INIT_PRODUCER_ID, 0, 4),
    (SASL_AUTHENTICATE, 0, 1),
];

/// An answer that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed answer: {}", self.0)
    }
}

/// Appends protocol values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn i8(&mut self, v: i8) {
        self.buf.push(v as u8);
    }
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn string(&mut self, s: &str) {
        self.i16(s.len() as i16);
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn nullable_string(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.string(s),
            None => self.i16(-1),
        }
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.i32(b.len() as i32);
        self.buf.extend_from_slice(b);
    }
    pub fn varint(&mut self, v: i32) {
        self.varlong(v as i64);
    }
    /// Zig-zag, then 7 bits at a time, low first.
    pub fn varlong(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }
}

/// Reads protocol values from an answer.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    pub fn i8(&mut self) -> Result<i8, Malformed> {
        Ok(self.take(1)?[0] as i8)
    }
    pub fn i16(&mut self) -> Result<i16, Malformed> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn nullable_string(&mut self) -> Result<Option<String>, Malformed> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        Ok(Some(String::from_utf8_lossy(b).into_owned()))
    }
    pub fn string(&mut self) -> Result<String, Malformed> {
        self.nullable_string()?.ok_or(Malformed("null string"))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(&[]);
        }
        self.take(n as usize)
    }
    /// An array's length; a null array is empty. Bounded by the bytes left, so a
    /// corrupt length cannot make a caller reserve gigabytes.
    pub fn len(&mut self) -> Result<usize, Malformed> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        if n as usize > self.buf.len() {
            return Err(Malformed("array longer than the answer"));
        }
        Ok(n as usize)
    }
}

/// Whether this version of `api_key` uses the flexible encoding (tagged fields in
/// headers and bodies), among the versions spoken here.
pub fn flexible(api_key: i16, version: i16) -> bool {
    api_key == INIT_PRODUCER_ID && version >= 2
}

/// A request: header v1 (api key, version, correlation id, client id; v2, for a
/// flexible version, adds an empty tagged-field list), then `body`, with the 4-byte
/// size in front.
pub fn frame(
    api_key: i16,
    version: i16,
    correlation: i32,
    client_id: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut w = Writer::default();
    w.i32(0);
    w.i16(api_key);
    w.i16(version);
    w.i32(correlation);
    w.string(client_id);
    if flexible(api_key, version) {
        w.buf.push(0);
    }
    w.buf.extend_from_slice(body);
    let size = (w.buf.len() - 4) as i32;
    w.buf[..4].copy_from_slice(&size.to_be_bytes());
    w.buf
}

/// The versions a broker supports, from its ApiVersions v0 answer.
pub fn api_versions(body: &[u8]) -> Result<(i16, Vec<ApiRange>), Malformed> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let n = r.len()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((r.i16()?, r.i16()?, r.i16()?));
    }
    Ok((error, out))
}

/// The highest version both sides speak of `api_key`, if any.
pub fn pick(broker: &[(i16, i16, i16)], api_key: i16) -> Option<i16> {
    let (_, lo, hi) = SPOKEN.iter().find(|(k, ..)| *k == api_key)?;
    let (_, blo, bhi) = broker.iter().find(|(k, ..)| *k == api_key)?;
    let top = (*hi).min(*bhi);
    (top >= (*lo).max(*blo)).then_some(top)
}

/// Metadata request for one topic (auto-creation allowed from v4, as other
/// producers do; brokers decide).
pub fn metadata_request(version: i16, topic: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.i32(1);
    w.string(topic);
    if version >= 4 {
        w.i8(1);
    }
    if version >= 8 {
        w.i8(0); // include_cluster_authorized_operations
        w.i8(0); // include_topic_authorized_operations
    }
    w.buf
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub error: i16,
    pub index: i32,
    pub leader: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub brokers: Vec<Broker>,
    /// The topic's error code (0, or e.g. 3 unknown topic).
    pub topic_error: i16,
    pub partitions: Vec<PartitionMeta>,
}

/// The answer to [`metadata_request`]: the brokers and the one topic asked for.
pub fn metadata(version: i16, body: &[u8], topic: &str) -> Result<Metadata, Malformed> {
    let mut r = Reader::new(body);
    if version >= 3 {
        r.i32()?; // throttle
    }
    let mut brokers = Vec::new();
    for _ in 0..r.len()? {
        let node_id = r.i32()?;
        let host = r.string()?;
        let port = r.i32()?;
        r.nullable_string()?; // rack
        brokers.push(Broker {
            node_id,
            host,
            port,
        });
    }
    if version >= 2 {
        r.nullable_string()?; // cluster id
    }
    r.i32()?; // controller
    let mut found = None;
    for _ in 0..r.len()? {
        let error = r.i16()?;
        let name = r.string()?;
        r.i8()?; // internal
        let mut partitions = Vec::new();
        for _ in 0..r.len()? {
            let error = r.i16()?;
            let index = r.i32()?;
            let leader = r.i32()?;
            if version >= 7 {
                r.i32()?; // leader epoch
            }
            let lists = if version >= 5 { 3 } else { 2 };
            for _ in 0..lists {
                for _ in 0..r.len()? {
                    r.i32()?;
                }
            }
            partitions.push(PartitionMeta {
                error,
                index,
                leader,
            });
        }
        if version >= 8 {
            r.i32()?; // topic authorized operations
        }
        if name == topic {
            partitions.sort_by_key(|p| p.index);
            found = Some((error, partitions));
        }
    }
    let (topic_error, partitions) = found.unwrap_or((3, Vec::new()));
    Ok(Metadata {
        brokers,
        topic_error,
        partitions,
    })
}

/// InitProducerId for an idempotent producer (no transactional id). From v3 it
/// also says it has no producer id yet (-1, -1).
pub fn init_producer_id_request(version: i16) -> Vec<u8> {
    let mut w = Writer::default();
    if flexible(INIT_PRODUCER_ID, version) {
        w.buf.push(0); // compact nullable string: null
    } else {
        w.nullable_string(None);
    }
    w.i32(-1);
    if version >= 3 {
        w.i64(-1);
        w.i16(-1);
    }
    if flexible(INIT_PRODUCER_ID, version) {
        w.buf.push(0); // no tagged fields
    }
    w.buf
}

/// `(error, producer id, epoch)`.
pub fn init_producer_id(body: &[u8]) -> Result<(i16, i64, i16), Malformed> {
    let mut r = Reader::new(body);
    r.i32()?; // throttle
    Ok((r.i16()?, r.i64()?, r.i16()?))
}

/// Skips the tagged fields of a flexible response header.
pub fn skip_tagged_fields(body: &[u8]) -> Result<&[u8], Malformed> {
    let mut at = 0;
    let uvarint = |at: &mut usize| -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = *body.get(*at).ok_or(Malformed("truncated tagged fields"))?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Malformed("varint too long"))
    };
    let n = uvarint(&mut at)?;
    for _ in 0..n {
        uvarint(&mut at)?;
        let size = uvarint(&mut at)? as usize;
        at = at
            .checked_add(size)
            .filter(|e| *e <= body.len())
            .ok_or(Malformed("truncated tagged field"))?;
    }
    Ok(&body[at..])
}

/// A Produce request for one topic: `(partition, record batch)` each.
pub fn produce_request(acks: i16, timeout_ms: i32, topic: &str, parts: &[(i32, &[u8])]) -> Vec<u8> {
    let size: usize = parts.iter().map(|(_, b)| b.len() + 8).sum();
    let mut w = Writer {
        buf: Vec::with_capacity(size + topic.len() + 32),
    };
    w.nullable_string(None); // transactional id
    w.i16(acks);
    w.i32(timeout_ms);
    w.i32(1);
    w.string(topic);
    w.i32(parts.len() as i32);
    for (p, batch) in parts {
        w.i32(*p);
        w.bytes(batch);
    }
    w.buf
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAnswer {
    pub index: i32,
    pub error: i16,
    pub base_offset: i64,
    /// v8: the broker's words, when it gave any.
    pub message: Option<String>,
}

/// The answer to [`produce_request`], per partition.
pub fn produce(version: i16, body: &[u8]) -> Result<Vec<PartitionAnswer>, Malformed> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    for _ in 0..r.len()? {
        r.string()?;
        for _ in 0..r.len()? {
            let index = r.i32()?;
            let error = r.i16()?;
            let base_offset = r.i64()?;
            r.i64()?; // log append time
            if version >= 5 {
                r.i64()?; // log start offset
            }
            let mut message = None;
            if version >= 8 {
                for _ in 0..r.len()? {
                    r.i32()?;
                    if let Some(m) = r.nullable_string()? {
                        message.get_or_insert(m);
                    }
                }
                if let Some(m) = r.nullable_string()? {
                    message = Some(m);
                }
            }
            out.push(PartitionAnswer {
                index,
                error,
                base_offset,
                message,
            });
        }
    }
    Ok(out)
}

pub fn sasl_handshake_request(mechanism: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.string(mechanism);
    w.buf
}

/// `(error, mechanisms the broker offers)`.
pub fn sasl_handshake(body: &[u8]) -> Result<(i16, Vec<String>), Malformed> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let mut mechanisms = Vec::new();
    for _ in 0..r.len()? {
        mechanisms.push(r.string()?);
    }
    Ok((error, mechanisms))
}

pub fn sasl_authenticate_request(token: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(token);
    w.buf
}

/// `(error, message, the server's token)`.
pub fn sasl_authenticate(body: &[u8]) -> Result<(i16, Option<String>, Vec<u8>), Malformed> {
    let mut r = Reader::new(body);
    let error = r.i16()?;
    let message = r.nullable_string()?;
    let token = r.bytes()?.to_vec();
    Ok((error, message, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_zigzag() {
        for (v, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (63, vec![0x7e]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
            (300, vec![0xd8, 0x04]),
        ] {
            let mut w = Writer::default();
            w.varlong(v);
            assert_eq!(w.buf, bytes, "{v}");
        }
    }

    #[test]
    fn frames_carry_their_size_and_header() {
        let f = frame(API_VERSIONS, 0, 7, "auditship", &[]);
        assert_eq!(&f[..4], &((f.len() - 4) as i32).to_be_bytes());
        assert_eq!(&f[4..12], &[0, 18, 0, 0, 0, 0, 0, 7]);
        assert_eq!(&f[12..14], &[0, 9]);
    }

    #[test]
    fn versions_are_the_highest_both_speak() {
        let broker = [(PRODUCE, 0, 11), (METADATA, 0, 5), (INIT_PRODUCER_ID, 2, 5)];
        assert_eq!(pick(&broker, PRODUCE), Some(8));
        assert_eq!(pick(&broker, METADATA), Some(5));
        assert_eq!(pick(&broker, INIT_PRODUCER_ID), Some(4));
        assert_eq!(pick(&[(INIT_PRODUCER_ID, 5, 6)], INIT_PRODUCER_ID), None);
        assert_eq!(pick(&broker, SASL_HANDSHAKE), None);
    }

    #[test]
    fn produce_answers_read_per_partition() {
        let mut w = Writer::default();
        w.i32(1);
        w.string("t");
        w.i32(2);
        for (p, e) in [(0, 0i16), (1, 10)] {
            w.i32(p);
            w.i16(e);
            w.i64(42);
            w.i64(-1);
            w.i64(0);
            w.i32(0);
            w.nullable_string(if e == 0 { None } else { Some("too large") });
        }
        w.i32(0);
        let a = produce(8, &w.buf).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!((a[1].index, a[1].error), (1, 10));
        assert_eq!(a[1].message.as_deref(), Some("too large"));
        assert!(produce(8, &w.buf[..10]).is_err());
    }
}
