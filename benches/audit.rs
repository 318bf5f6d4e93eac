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

/// The daemon's per-line work: verify, redaction scan, shipped record. On generated
/// events, or on the first 10,000 lines of `AUDIT_BENCH_LINES=<file.jsonl>` (e.g. a
/// stream of the side-by-side dataset, whose producer does not write canonical text).
fn check(c: &mut Criterion) {
    use auditship::check::{Encoder, Origin};
    let lines = match std::env::var_os("AUDIT_BENCH_LINES") {
        Some(file) => std::fs::read(file)
            .expect("AUDIT_BENCH_LINES names a readable file")
            .split_inclusive(|&b| b == b'\n')
            .take(10_000)
            .map(<[u8]>::to_vec)
            .collect(),
        None => common::chain(1, 10_000, None),
    };
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
    if let Some(stage) = std::env::var_os("AUDIT_BENCH_STAGE") {
        once(stage.to_str().unwrap_or_default(), &lines, &enc, &at);
    }
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
    g.bench_function("verify_10k_events", |b| {
        b.iter(|| {
            let mut v = Verifier::new(Keys::new());
            let mut problems = Vec::new();
            for line in &lines {
                v.check_line(&line[..line.len() - 1], &mut problems);
            }
            black_box(v.head())
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

/// One stage over the lines, ten times (`AUDIT_BENCH_REPS`), then exit: for `perf stat`, whose counts do
/// not depend on the load of the machine.
fn once(
    stage: &str,
    lines: &[Vec<u8>],
    enc: &auditship::check::Encoder,
    at: &auditship::check::Origin<'_>,
) -> ! {
    let redactor = auditship::redact::Redactor::builtin();
    let reps: u32 = std::env::var("AUDIT_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    for _ in 0..reps {
        out.clear();
        let mut v = Verifier::new(Keys::new());
        let mut problems = Vec::new();
        for line in lines {
            let line = &line[..line.len() - 1];
            match stage {
                "verify" => drop(v.check_line(line, &mut problems)),
                "scan" => out.push(
                    redactor
                        .redact_str(std::str::from_utf8(line).unwrap())
                        .len() as u8,
                ),
                "parse" => drop(auditship::audit::json::parse(
                    std::str::from_utf8(line).unwrap(),
                )),
                _ => drop(enc.encode_line(Some(&mut v), line, None, at, &mut out)),
            }
        }
    }
    let per_line = started.elapsed().as_nanos() / (u128::from(reps) * lines.len() as u128);
    eprintln!("{stage}: {per_line} ns a line, {} bytes out", out.len());
    std::process::exit(0)
}

/// Each sink's encoding of one 2,000-record request (the envelope work a sink adds
/// to the shared pipeline; `http` native is a pass-through).
fn sinks(c: &mut Criterion) {
    use auditship::check::{Encoder, Origin};
    use auditship::ship::sinks::Sink;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let lines = common::chain(1, 2_000, None);
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
    let mut records = Vec::new();
    let mut v = Verifier::new(Keys::new());
    for line in &lines {
        enc.encode_line(
            Some(&mut v),
            &line[..line.len() - 1],
            None,
            &at,
            &mut records,
        );
    }
    let records = bytes::Bytes::from(records);
    let tables = [
        (
            "http_ndjson",
            "type = \"http\"\nendpoint = \"http://127.0.0.1:9\"",
        ),
        (
            "http_ecs",
            "type = \"http\"\nendpoint = \"http://127.0.0.1:9\"\nformat = \"ecs\"",
        ),
        (
            "http_ocsf",
            "type = \"http\"\nendpoint = \"http://127.0.0.1:9\"\nformat = \"ocsf\"",
        ),
        (
            "splunk_hec",
            "type = \"splunk_hec\"\nendpoint = \"http://127.0.0.1:9\"\ntoken_env = \"PATH\"\nindex = \"audit\"",
        ),
        (
            "elasticsearch",
            "type = \"elasticsearch\"\nendpoint = \"http://127.0.0.1:9\"",
        ),
        ("otlp", "type = \"otlp\"\nendpoint = \"http://127.0.0.1:9\""),
        (
            "syslog",
            "type = \"syslog\"\nendpoint = \"tls://127.0.0.1:9\"",
        ),
    ];
    let mut g = c.benchmark_group("sink_encode");
    g.throughput(Throughput::Bytes(records.len() as u64));
    for (name, table) in tables {
        let text = format!("[[sink]]\nname = \"{name}\"\n{table}\n");
        let raw: auditship::config::RawConfig = toml::from_str(&text).unwrap();
        let mut errors = Vec::new();
        let cfg = auditship::config::daemon::DaemonConfig::from_raw(&raw, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let sink = Sink::new(&cfg.sinks[0]).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                let n = match &sink {
                    Sink::Http(s) => s.encode(&records).len(),
                    Sink::SplunkHec(s) => s.encode(&records).len(),
                    Sink::Elasticsearch(s) => s.encode(&records).len(),
                    Sink::Otlp(s) => s.encode(&records).len(),
                    Sink::Syslog(s) => s.encode(&records).len(),
                    Sink::File(_) | Sink::Kafka(_) => 0,
                };
                black_box(n)
            })
        });
    }
    g.finish();
}

/// The redactor alone on what `record` feeds it: command lines as Claude Code runs
/// them (mostly clean), and the catalogue of secrets the tests use.
fn redact(c: &mut Criterion) {
    const COMMANDS: [&str; 12] = [
        "cargo test --workspace -- --nocapture",
        "git status && git diff --stat HEAD~1",
        "rg -n \"fn main\" src/ --type rust",
        "npm run build 2>&1 | tail -20",
        "ls -la /home/dev/src/app/target/debug",
        "python3 -m pytest tests/test_api.py -k login -x -q",
        "docker compose up -d db && sleep 2 && docker compose logs db",
        "curl -s https://api.example.com/v1/health | jq .status",
        "kubectl get pods -n staging -o wide",
        "find . -name '*.rs' -newer Cargo.toml | xargs wc -l",
        "git log --oneline -n 20 --author=dev@example.com",
        "make -j2 test TEST_FILTER=auth::token",
    ];
    let clean: Vec<String> = COMMANDS
        .iter()
        .cycle()
        .take(1200)
        .map(|s| s.to_string())
        .collect();
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../tests/redact/catalogue.json")).unwrap();
    let secrets: Vec<String> = doc["text"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["in"].as_str().unwrap().to_owned())
        .collect();
    let redactor = auditship::redact::Redactor::builtin();
    let mut g = c.benchmark_group("redact");
    for (name, corpus) in [("commands_clean", &clean), ("catalogue_secrets", &secrets)] {
        let bytes: usize = corpus.iter().map(String::len).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                for s in corpus.iter() {
                    n += redactor.redact_str(s).len();
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, verify, check, sinks, redact);
criterion_main!(benches);
