//! Transport and operations, with the real binary: plain `http://` only to loopback
//! unless `allow_plaintext`, a proxy's 407 retried (never dead-lettered) for every
//! HTTP sink, `check-config` keeping secrets from the environment and proxy URLs to
//! itself, and `dead-letter replay` / `purge`.

use crate::pki::Pki;
use crate::siem::{EsServer, HecServer, OtlpServer};
use crate::siem_sinks::{batch, dead_letters, setup, siem_config, sources, stop_ok, wait_for};
use crate::sink::{Reply, TestSink};
use crate::tls_server::{ConnectProxy, TlsHttpServer};
use crate::util::*;
use auditship::audit::ZERO_HASH;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RETRY: &str = "retry = { initial = \"50ms\", max_delay = \"300ms\" }";

fn sink(name: &str, kind: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\ntype = \"{kind}\"\nendpoint = \"{endpoint}\"\n{}\n{RETRY}\n{extra}\n",
        batch(500)
    )
}

fn check_config(home: &Path, cfg: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = cmd(home);
    c.args(["check-config", "--config"]).arg(cfg);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `auditship dead-letter ARGS --config CFG`: exit code and stdout, stderr.
fn dead_letter(home: &Path, cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = cmd(home)
        .arg("dead-letter")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn once_each(got: &HashMap<String, u32>, want: &[String]) -> bool {
    got.len() == want.len() && want.iter().all(|id| got.get(id) == Some(&1))
}

#[test]
fn plain_http_is_refused_to_remote_hosts_unless_allowed_with_a_warning() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 10, ZERO_HASH);
    let want = sealed_ids(&file);

    // Every HTTP-based sink type: refused, with file, line and the way out.
    let token = t.path().join("hec.token");
    std::fs::write(&token, "hec-token\n").unwrap();
    let remote = [
        sink("plain", "http", "http://10.1.2.3:8080/ingest", ""),
        sink(
            "hec",
            "splunk_hec",
            "http://splunk.example.com:8088",
            &format!("token_file = \"{}\"", token.display()),
        ),
        sink("es", "elasticsearch", "http://10.1.2.3:9200", ""),
        sink("otel", "otlp", "http://otel.example.com:4318", ""),
    ]
    .join("\n");
    let cfg = siem_config(t.path(), &sources(&t), &remote);
    let (code, _, err) = check_config(t.path(), &cfg, &[]);
    assert_eq!(code, 1, "{err}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    for (name, host) in [
        ("plain", "10.1.2.3"),
        ("hec", "splunk.example.com"),
        ("es", "10.1.2.3"),
        ("otel", "otel.example.com"),
    ] {
        let i = ["plain", "hec", "es", "otel"]
            .iter()
            .position(|n| *n == name)
            .unwrap();
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("endpoint = "))
            .nth(i)
            .unwrap()
            .0
            + 1;
        let want = format!(
            "{}: line {line}, column 1: sink[{i}] (\"{name}\").endpoint: plain http:// to {host}",
            cfg.display()
        );
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("allow_plaintext = true"), "{err}");
    let out = cmd(t.path())
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the daemon does not start either"
    );

    // Loopback: accepted, and delivered directly: a proxy from the environment does
    // not carry plain text off the machine.
    let local = TestSink::start();
    let env_proxy = ConnectProxy::start();
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &sink("local", "http", &local.addr, ""),
    );
    let (code, _, err) = check_config(t.path(), &cfg, &[]);
    assert_eq!(code, 0, "{err}");
    let mut c = cmd(t.path());
    c.args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env("HTTP_PROXY", &env_proxy.url)
        .env("http_proxy", &env_proxy.url)
        .env("ALL_PROXY", &env_proxy.url);
    let mut d = Daemon::spawn(c);
    wait_for(&mut d, Duration::from_secs(30), "loopback delivery", || {
        once_each(&local.ids(), &want)
    });
    stop_ok(d);
    assert_eq!(
        env_proxy.forwarded() + env_proxy.tunnels(),
        0,
        "plain http:// never goes through a proxy from the environment"
    );

    // allow_plaintext: accepted, shown by check-config, and a warning at every start.
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &sink(
            "far",
            "http",
            "http://10.1.2.3:8080/ingest",
            "allow_plaintext = true\nconnect_timeout = \"200ms\"",
        ),
    );
    let (code, out, err) = check_config(t.path(), &cfg, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("# warning: sink \"far\": endpoint: plain http:// to 10.1.2.3")
            && out.contains("allow_plaintext = true"),
        "{out}"
    );
    assert!(err.contains("warning: sink \"far\""), "{err}");
    for start in 0..2 {
        let d = Daemon::start(t.path(), &cfg);
        std::thread::sleep(Duration::from_millis(1500));
        let (code, log) = d.stop(Duration::from_secs(10));
        assert_eq!(code, Some(0), "{log}");
        assert!(
            log.contains("WARN")
                && log.contains("allow_plaintext = true: this sink sends data unencrypted")
                && log.contains("sink=far")
                && log.contains("10.1.2.3"),
            "start {start}: {log}"
        );
    }
}

#[test]
fn a_proxy_answering_407_is_retried_for_every_sink_and_nothing_is_dead_lettered() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let want = sealed_ids(&file);
    let pki = Pki::generate(t.path());
    // Plain HTTP through a loopback proxy: the proxy answers the request itself.
    let plain = TestSink::start();
    let hec = HecServer::start("hec-token");
    let es = EsServer::start();
    let otlp = OtlpServer::start();
    // HTTPS: the proxy refuses the CONNECT.
    let tls = TlsHttpServer::start(&pki, false);
    let proxies: Vec<ConnectProxy> = (0..5).map(|_| ConnectProxy::refusing(1)).collect();
    let token = t.path().join("hec.token");
    std::fs::write(&token, "hec-token\n").unwrap();
    let via = |i: usize| format!("proxy = \"{}\"", proxies[i].url);
    let sinks = [
        sink("plain", "http", &plain.addr, &via(0)),
        sink(
            "hec",
            "splunk_hec",
            &hec.url,
            &format!("token_file = \"{}\"\n{}", token.display(), via(1)),
        ),
        sink("es", "elasticsearch", &es.url, &via(2)),
        sink("otel", "otlp", &otlp.url, &via(3)),
        sink(
            "tunnel",
            "http",
            &tls.url,
            &format!(
                "tls = {{ ca_file = \"{}\" }}\n{}",
                pki.ca_file.display(),
                via(4)
            ),
        ),
    ]
    .join("\n");
    let cfg = siem_config(t.path(), &sources(&t), &sinks);
    let mut d = Daemon::start(t.path(), &cfg);
    let tunnelled = || -> HashMap<String, u32> {
        let mut ids = HashMap::new();
        for body in tls.bodies() {
            for l in String::from_utf8_lossy(&body)
                .lines()
                .filter(|l| !l.is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                *ids.entry(v["_auditship"]["id"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
        }
        ids
    };
    let es_ids =
        || -> HashMap<String, u32> { es.docs().keys().map(|(_, id)| (id.clone(), 1)).collect() };
    // A refused CONNECT waits as a refused token does: 30 s.
    wait_for(
        &mut d,
        Duration::from_secs(90),
        "every sink delivered everything",
        || {
            once_each(&plain.ids(), &want)
                && once_each(&hec.ids(), &want)
                && once_each(&es_ids(), &want)
                && once_each(&otlp.ids(), &want)
                && once_each(&tunnelled(), &want)
        },
    );
    let log = d.stderr();
    stop_ok(d);
    for (i, p) in proxies.iter().enumerate() {
        assert_eq!(p.refused(), 1, "proxy {i} answered 407 once");
    }
    for name in ["plain", "hec", "es", "otel", "tunnel"] {
        assert!(
            log.lines().any(|l| l.contains("ERROR")
                && l.contains(&format!("sink={name}"))
                && l.contains("the proxy refuses our credentials")),
            "{name}: the 407 is logged as an error:\n{log}"
        );
    }
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "a 407 is never dead-lettered"
    );
}

#[test]
fn check_config_keeps_secrets_from_the_environment_and_proxy_urls_to_itself() {
    let (t, file) = setup();
    let secret = "tok-3f9a1c77e2b54d08";
    let other = "other-9d2e5a41c6";
    let proxy_pass = "pr0xy-pa55-81c3";
    let proxy_user = "svc-proxy-user";
    let sinks = [
        sink(
            "siem",
            "http",
            "https://siem.example.com/ingest",
            &format!(
                "headers = {{ \"Authorization\" = \"Bearer ${{TOKEN}}\", \"X-Tenant-Tag\" = \"${{OTHER}}\", \"X-Source\" = \"auditship\" }}\nproxy = \"https://{proxy_user}:{proxy_pass}@proxy.example.com:3128\""
            ),
        ),
        sink(
            "otel",
            "otlp",
            "https://otel.example.com:4318",
            &format!(
                "headers = {{ \"X-Scope\" = \"${{OTHER}}\" }}\nproxy = \"http://{proxy_user}:{proxy_pass}@127.0.0.1:3128\""
            ),
        ),
    ]
    .join("\n");
    let cfg = siem_config(t.path(), &sources(&t), &sinks);
    let env = [("TOKEN", secret), ("OTHER", other)];
    let (code, out, err) = check_config(t.path(), &cfg, &env);
    assert_eq!(code, 0, "{err}");
    for s in [secret, other, proxy_pass, proxy_user] {
        assert!(
            !out.contains(s) && !err.contains(s),
            "{s} printed:\n{out}\n{err}"
        );
    }
    assert!(out.contains("Authorization = \"Bearer ${TOKEN}\""), "{out}");
    assert!(out.contains("X-Tenant-Tag = \"${OTHER}\""), "{out}");
    assert!(out.contains("X-Source = \"auditship\""), "{out}");
    assert!(
        out.contains("proxy = \"https://***:***@proxy.example.com:3128/\""),
        "{out}"
    );

    // Nor in errors: a header value from the environment that cannot be sent.
    let bad = siem_config(
        t.path(),
        &sources(&t),
        &sink(
            "siem",
            "http",
            "https://siem.example.com/ingest",
            "headers = { \"X-Key\" = \"${TOKEN}\" }",
        ),
    );
    let multiline = format!("{secret}\nInjected: yes");
    let (code, out, err) = check_config(t.path(), &bad, &[("TOKEN", &multiline)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("sink[0] (\"siem\").headers.X-Key: the value is not a valid"),
        "{err}"
    );
    assert!(!err.contains(secret) && !out.contains(secret), "{err}");

    // Nor in the daemon's log while it tries to reach the proxy.
    let mut c = cmd(t.path());
    c.args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("TOKEN", secret)
        .env("OTHER", other);
    let d = Daemon::spawn(c);
    write_chain(&file, 1, 0, 3, ZERO_HASH);
    std::thread::sleep(Duration::from_secs(2));
    let (code, log) = d.stop(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    for s in [secret, other, proxy_pass, proxy_user] {
        assert!(!log.contains(s), "{s} logged:\n{log}");
    }
}

/// A sink that answers 400 until `fixed` is set.
fn picky(fixed: &Arc<AtomicBool>) -> TestSink {
    let fixed = fixed.clone();
    TestSink::with(move |_, _| {
        if fixed.load(Ordering::SeqCst) {
            Reply::Ok
        } else {
            Reply::Status(400, None)
        }
    })
}

/// Ten events rejected for good by `picky` and delivered to `other`; the daemon
/// stopped. Returns the config and the ids.
fn dead_lettered(
    t: &tempfile::TempDir,
    file: &Path,
    picky: &TestSink,
    other: &TestSink,
) -> (std::path::PathBuf, Vec<String>) {
    write_chain(file, 1, 0, 10, ZERO_HASH);
    let want = sealed_ids(file);
    let sinks = [
        sink("picky", "http", &picky.addr, ""),
        sink("other", "http", &other.addr, ""),
    ]
    .join("\n");
    let cfg = siem_config(t.path(), &sources(t), &sinks);
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        Duration::from_secs(30),
        "other delivered, picky refused",
        || once_each(&other.ids(), &want) && picky.requests() >= 1,
    );
    // The dead letter is stored before the cursor moves; a clean stop keeps it.
    std::thread::sleep(Duration::from_millis(300));
    stop_ok(d);
    (cfg, want)
}

#[test]
fn dead_letters_are_replayed_to_the_sink_that_rejected_them_with_their_ids() {
    let (t, file) = setup();
    let fixed = Arc::new(AtomicBool::new(false));
    let picky = picky(&fixed);
    let other = TestSink::start();
    let (cfg, want) = dead_lettered(&t, &file, &picky, &other);
    let letters = dead_letters(t.path(), &cfg);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0]["sink"].as_str(), letters[0]["events"].as_u64()),
        (Some("picky"), Some(10))
    );
    assert!(
        letters[0]["stored_at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{letters:?}"
    );
    let batch = letters[0]["batch"].as_u64().unwrap();
    let other_before = other.requests();

    // Still refused: kept, said so, exit 1.
    let (code, out, err) = dead_letter(t.path(), &cfg, &["replay"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("picky batch {batch} part 0: 0 of 10 events delivered; 10 kept: rejected again: HTTP 400")),
        "{out}"
    );
    assert_eq!(
        dead_letters(t.path(), &cfg).len(),
        1,
        "a failed replay keeps the letter"
    );

    // Another sink's filter selects nothing, sends nothing.
    let (code, out, _) = dead_letter(t.path(), &cfg, &["replay", "--sink", "other"]);
    assert_eq!((code, out.trim()), (0, "no dead letters to replay"));

    // While the daemon runs, the queue is locked: exit 2, nothing sent.
    let d = Daemon::start(t.path(), &cfg);
    std::thread::sleep(Duration::from_millis(1500));
    let picky_requests = picky.requests();
    let (code, _, err) = dead_letter(t.path(), &cfg, &["replay"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the daemon running?"), "{err}");
    assert_eq!(picky.requests(), picky_requests);
    stop_ok(d);

    // Fixed: delivered to picky alone, with the original ids, and removed.
    fixed.store(true, Ordering::SeqCst);
    let (code, out, err) = dead_letter(
        t.path(),
        &cfg,
        &["replay", "--sink", "picky", "--batch", &batch.to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "picky batch {batch} part 0: 10 events delivered to \"picky\"; removed"
        )),
        "{out}"
    );
    assert!(once_each(&picky.ids(), &want), "{:?}", picky.ids());
    for r in picky.records() {
        assert_eq!(r["_auditship"]["id"], r["hash"], "the original id: {r}");
    }
    assert_eq!(
        other.requests(),
        other_before,
        "nothing went to the other sink"
    );
    assert!(once_each(&other.ids(), &want));
    assert!(dead_letters(t.path(), &cfg).is_empty());
    let (code, out, _) = dead_letter(t.path(), &cfg, &["list"]);
    assert_eq!((code, out.as_str()), (0, "0 dead letters, 0 events\n"));
}

#[test]
fn purge_removes_dead_letters_stored_before_a_date() {
    let (t, file) = setup();
    let never = Arc::new(AtomicBool::new(false));
    let picky = picky(&never);
    let other = TestSink::start();
    let (cfg, _) = dead_lettered(&t, &file, &picky, &other);
    assert_eq!(dead_letters(t.path(), &cfg).len(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let tomorrow = auditship::clock::format_utc(now + 86_400, 0).1;

    let (code, out, err) = dead_letter(t.path(), &cfg, &["purge", "--before", "2000-01-01"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("removed 0 dead letters (0 events) stored before 2000-01-01T00:00:00.000Z"),
        "{out}"
    );
    assert_eq!(dead_letters(t.path(), &cfg).len(), 1);

    let (code, out, _) = dead_letter(
        t.path(),
        &cfg,
        &["purge", "--before", &tomorrow, "--dry-run"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("would remove picky batch") && out.contains("10 events"),
        "{out}"
    );
    assert_eq!(
        dead_letters(t.path(), &cfg).len(),
        1,
        "a dry run removes nothing"
    );

    let (code, out, _) = dead_letter(
        t.path(),
        &cfg,
        &["purge", "--before", &tomorrow, "--sink", "other"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("removed 0 dead letters"), "{out}");

    let (code, out, _) = dead_letter(t.path(), &cfg, &["purge", "--before", &tomorrow]);
    assert_eq!(code, 0);
    assert!(
        out.contains("removed picky batch")
            && out.contains(": 10 events, stored ")
            && out.contains("HTTP 400"),
        "{out}"
    );
    assert!(out.contains("removed 1 dead letters (10 events)"), "{out}");
    assert!(dead_letters(t.path(), &cfg).is_empty());

    let (code, _, err) = dead_letter(t.path(), &cfg, &["purge", "--before", "last week"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected a UTC day"), "{err}");
}
