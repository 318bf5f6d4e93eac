//! Throughput of the pure verifier on realistic ~700-byte events: parse, canonicalize,
//! hash, HMAC, link. `cargo bench --bench audit`.

mod common;

use auditship::audit::{Keys, Verifier};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn verify(c: &mut Criterion) {
    let lines = common::chain(1, 10_000, None);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut keys = Keys::new();
    keys.insert("fleet", &[7u8; 32]);
    let signed = common::chain(1, 10_000, Some(("fleet", &keys)));
    let signed_bytes: usize = signed.iter().map(Vec::len).sum();
    eprintln!("average event: {} bytes", bytes / lines.len());

    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("chain_10k_events", |b| {
        b.iter(|| {
            let mut v = Verifier::new(Keys::new());
            let mut problems = Vec::new();
            for line in &lines {
                v.check_line(&line[..line.len() - 1], &mut problems);
            }
            assert!(problems.is_empty());
            black_box(v.head())
        })
    });
    g.throughput(Throughput::Bytes(signed_bytes as u64));
    g.bench_function("chain_10k_events_hmac", |b| {
        b.iter(|| {
            let mut v = Verifier::new(keys.clone());
            let mut problems = Vec::new();
            for line in &signed {
                v.check_line(&line[..line.len() - 1], &mut problems);
            }
            assert!(problems.is_empty());
            black_box(v.head())
        })
    });
    g.finish();
}

/// The daemon's per-line work: verify, redaction scan, shipped record.
fn check(c: &mut Criterion) {
    use auditship::check::{Encoder, Origin};
    let lines = common::chain(1, 10_000, None);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let enc = Encoder::new(
        "bench-host",
        &serde_json::Map::new(),
        auditship::redact::Redactor::builtin(),
    );
    let at = Origin {
        source: "claude",
        stream: "/home/dev/.claude/audit",
        file: "audit-2026-11-26.jsonl",
        line: 1,
        offset: 0,
        received_at: "2026-11-26T10:00:00.000Z",
    };
    let mut g = c.benchmark_group("check");
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut out = Vec::with_capacity(bytes * 2);
    g.bench_function("encode_10k_events", |b| {
        b.iter(|| {
            out.clear();
            let mut v = Verifier::new(Keys::new());
            for line in &lines {
                enc.encode_line(Some(&mut v), &line[..line.len() - 1], None, &at, &mut out);
            }
            black_box(out.len())
        })
    });
    let redactor = auditship::redact::Redactor::builtin();
    g.bench_function("redaction_scan_10k_events", |b| {
        b.iter(|| {
            let mut n = 0;
            for line in &lines {
                n += redactor
                    .redact_str(std::str::from_utf8(line).unwrap())
                    .len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, verify, check);
criterion_main!(benches);
