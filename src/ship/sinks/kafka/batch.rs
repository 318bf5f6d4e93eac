//! Record batches (message format v2, magic 2), the unit a Produce request carries
//! per partition: header, CRC-32C over everything after the CRC, records as zig-zag
//! varint fields, compressed as a whole by the batch's codec. Also the default
//! partitioner's murmur2, so a key lands where the Java producer would put it. Pure.

use super::wire::Writer;
use crate::config::kafka::Codec;
use std::io::Write;

impl Codec {
    fn attribute(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    fn compress(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::None => Ok(data.to_vec()),
            Codec::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 4),
                    flate2::Compression::fast(),
                );
                enc.write_all(data)?;
                enc.finish()
            }
            Codec::Lz4 => {
                // Independent blocks, as Kafka's own LZ4 streams are written.
                let mut enc =
                    lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
                enc.write_all(data)?;
                enc.finish().map_err(std::io::Error::other)
            }
            Codec::Zstd => zstd::bulk::compress(data, 3),
        }
    }
}

/// One record to put in a batch.
pub struct Record<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub timestamp_ms: i64,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Who writes the batch: an idempotent producer's id, epoch and the sequence of the
/// batch's first record; `None` for a producer without idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// Bytes a record adds to a batch beyond its key, value and headers, at most.
pub const RECORD_OVERHEAD: usize = 1 + 5 + 10 + 5 + 5 + 5 + 5;
/// Bytes of a batch's header.
pub const BATCH_OVERHEAD: usize = 61;

/// Encodes `records` as one batch.
pub fn encode(
    records: &[Record<'_>],
    codec: Codec,
    producer: Option<Producer>,
) -> std::io::Result<Vec<u8>> {
    let base_ts = records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    let mut body = Writer::default();
    for (i, r) in records.iter().enumerate() {
        write_record(&mut body, r, i as i32, r.timestamp_ms - base_ts);
    }
    let payload = codec.compress(&body.buf)?;
    let mut w = Writer {
        buf: Vec::with_capacity(payload.len() + BATCH_OVERHEAD),
    };
    w.i64(0); // base offset: the broker assigns
    w.i32(0); // batch length, below
    w.i32(-1); // partition leader epoch
    w.i8(2); // magic
    w.i32(0); // CRC, below
    let crc_from = w.buf.len();
    w.i16(codec.attribute());
    w.i32(records.len() as i32 - 1);
    w.i64(base_ts);
    w.i64(max_ts);
    let p = producer.unwrap_or(Producer {
        id: -1,
        epoch: -1,
        base_sequence: -1,
    });
    w.i64(p.id);
    w.i16(p.epoch);
    w.i32(p.base_sequence);
    w.i32(records.len() as i32);
    w.buf.extend_from_slice(&payload);
    let length = (w.buf.len() - 12) as i32;
    w.buf[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c(&w.buf[crc_from..]);
    w.buf[crc_from - 4..crc_from].copy_from_slice(&crc.to_be_bytes());
    Ok(w.buf)
}

fn write_record(out: &mut Writer, r: &Record<'_>, offset_delta: i32, ts_delta: i64) {
    let mut w = Writer::default();
    w.i8(0); // attributes
    w.varlong(ts_delta);
    w.varint(offset_delta);
    match r.key {
        Some(k) => {
            w.varint(k.len() as i32);
            w.buf.extend_from_slice(k);
        }
        None => w.varint(-1),
    }
    w.varint(r.value.len() as i32);
    w.buf.extend_from_slice(r.value);
    w.varint(r.headers.len() as i32);
    for (k, v) in r.headers {
        w.varint(k.len() as i32);
        w.buf.extend_from_slice(k.as_bytes());
        w.varint(v.len() as i32);
        w.buf.extend_from_slice(v);
    }
    out.varint(w.buf.len() as i32);
    out.buf.extend_from_slice(&w.buf);
}

/// CRC-32C (Castagnoli), as record batches carry it.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for (i, slot) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xff) as usize];
            }
        }
        t
    });
    let mut crc = !0u32;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xff) as usize];
    }
    !crc
}

/// Kafka's murmur2 (seed 0x9747b28c), as its default partitioner hashes keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a key among `n`, as the Java producer's default partitioner
/// chooses it.
pub fn partition_of(key: &[u8], n: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values from Apache Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn a_batch_carries_its_length_crc_and_producer() {
        let headers: [(&str, &[u8]); 1] = [("auditship.id", b"abc")];
        let recs = [
            Record {
                key: Some(b"alice"),
                value: b"{\"a\":1}",
                timestamp_ms: 1000,
                headers: &headers,
            },
            Record {
                key: None,
                value: b"{}",
                timestamp_ms: 1005,
                headers: &[],
            },
        ];
        let p = Producer {
            id: 7,
            epoch: 1,
            base_sequence: 40,
        };
        for codec in [Codec::None, Codec::Gzip, Codec::Lz4, Codec::Zstd] {
            let b = encode(&recs, codec, Some(p)).unwrap();
            let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
            assert_eq!(len + 12, b.len());
            assert_eq!(b[16], 2);
            let crc = u32::from_be_bytes(b[17..21].try_into().unwrap());
            assert_eq!(crc, crc32c(&b[21..]));
            assert_eq!(i16::from_be_bytes([b[21], b[22]]), codec.attribute());
            assert_eq!(i64::from_be_bytes(b[43..51].try_into().unwrap()), 7);
            assert_eq!(i32::from_be_bytes(b[53..57].try_into().unwrap()), 40);
            assert_eq!(i32::from_be_bytes(b[57..61].try_into().unwrap()), 2);
        }
        let plain = encode(&recs, Codec::None, None).unwrap();
        // First record: length, attributes 0, ts delta 0, offset delta 0, key "alice".
        assert_eq!(&plain[61..67], &[plain[61], 0, 0, 0, 10, b'a']);
    }
}
