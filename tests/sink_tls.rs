//! Transport security of the network sinks, end to end with the real binary: trust
//! (system roots vs `tls.ca_file`), client certificates, `tls.server_name`, proxies
//! by configuration and by environment; and the `syslog` sink against a real rsyslogd
//! over TLS, across a restart of rsyslogd.

use crate::pki::Pki;
use crate::rsyslog::{ClientAuth, Rsyslog};
use crate::siem_sinks::{batch, dead_letters, setup, siem_config, sources, stop_ok, wait_for};
use crate::tls_server::{ConnectProxy, TlsHttpServer};
use crate::util::*;
use auditship::audit::ZERO_HASH;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const RETRY: &str = "retry = { initial = \"50ms\", max_delay = \"300ms\" }";

/// An `http` sink table with `tls`/`proxy` lines in `extra`.
fn http_sink(name: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\ntype = \"http\"\nendpoint = \"{endpoint}\"\n{}\n{RETRY}\n{extra}\n",
        batch(500)
    )
}

/// `_auditship.id` of every NDJSON record in `bodies`, with its count.
fn ids_in(bodies: &[Vec<u8>]) -> HashMap<String, u32> {
    let mut ids = HashMap::new();
    for body in bodies {
        for line in String::from_utf8_lossy(body)
            .lines()
            .filter(|l| !l.is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["_auditship"]["id"].as_str().unwrap().to_string();
            *ids.entry(id).or_insert(0) += 1;
        }
    }
    ids
}

fn all_once(got: &HashMap<String, u32>, want: &[String]) -> bool {
    got.len() == want.len() && want.iter().all(|id| got.get(id) == Some(&1))
}

fn tls_table(pki: &Pki, client_cert: bool, server_name: Option<&str>) -> String {
    let mut t = format!("tls = {{ ca_file = \"{}\"", pki.ca_file.display());
    if client_cert {
        t += &format!(
            ", client_cert_file = \"{}\", client_key_file = \"{}\"",
            pki.client_cert.display(),
            pki.client_key.display()
        );
    }
    if let Some(n) = server_name {
        t += &format!(", server_name = \"{n}\"");
    }
    t + " }"
}

/// Lets a sink that must fail show that it keeps failing: three seconds of retries.
fn keeps_refusing(d: &mut Daemon) {
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            d.child.try_wait().unwrap().is_none(),
            "the daemon exited: {}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn https_is_refused_without_the_ca_and_accepted_with_it() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let want = sealed_ids(&file);
    let pki = Pki::generate(t.path());
    let untrusted = TlsHttpServer::start(&pki, false);
    let trusted = TlsHttpServer::start(&pki, false);
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &format!(
            "{}\n{}",
            http_sink("system-roots", &untrusted.url, ""),
            http_sink("pinned", &trusted.url, &tls_table(&pki, false, None))
        ),
    );
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(&mut d, WAIT, "the sink with ca_file delivered", || {
        all_once(&ids_in(&trusted.bodies()), &want)
    });
    keeps_refusing(&mut d);
    assert_eq!(
        untrusted.requests(),
        0,
        "no request without trusting the CA"
    );
    assert!(untrusted.handshake_failures() >= 2, "it kept trying");
    let log = d.stderr();
    stop_ok(d);
    assert!(
        log.contains("UnknownIssuer") || log.contains("unknown issuer"),
        "the reason is logged: {log}"
    );
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "a TLS failure is retried, never dead-lettered"
    );
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let want = sealed_ids(&file);
    let pki = Pki::generate(t.path());
    let without = TlsHttpServer::start(&pki, true);
    let with = TlsHttpServer::start(&pki, true);
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &format!(
            "{}\n{}",
            http_sink("no-cert", &without.url, &tls_table(&pki, false, None)),
            http_sink("cert", &with.url, &tls_table(&pki, true, None))
        ),
    );
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "the sink with a client certificate delivered",
        || all_once(&ids_in(&with.bodies()), &want),
    );
    keeps_refusing(&mut d);
    stop_ok(d);
    assert!(with.received().iter().all(|r| r.client_cert));
    assert_eq!(
        without.requests(),
        0,
        "refused without a client certificate"
    );
    assert!(without.handshake_failures() >= 1);
}

#[test]
fn server_name_sets_the_name_the_certificate_must_carry() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let want = sealed_ids(&file);
    let pki = Pki::generate(t.path());
    let right = TlsHttpServer::start(&pki, false);
    let wrong = TlsHttpServer::start(&pki, false);
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &format!(
            "{}\n{}",
            http_sink(
                "right",
                &right.url,
                &tls_table(&pki, false, Some("audit.test"))
            ),
            http_sink(
                "wrong",
                &wrong.url,
                &tls_table(&pki, false, Some("wrong.test"))
            )
        ),
    );
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "the sink checking audit.test delivered",
        || all_once(&ids_in(&right.bodies()), &want),
    );
    keeps_refusing(&mut d);
    stop_ok(d);
    assert_eq!(
        wrong.requests(),
        0,
        "a certificate without wrong.test is refused"
    );
    assert!(wrong.handshake_failures() >= 1);
}

#[test]
fn proxies_by_configuration_and_by_environment() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let want = sealed_ids(&file);
    let pki = Pki::generate(t.path());
    let server_a = TlsHttpServer::start(&pki, false);
    let server_b = TlsHttpServer::start(&pki, false);
    let configured = ConnectProxy::start();
    let from_env = ConnectProxy::start();
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &format!(
            "{}\n{}",
            http_sink(
                "configured",
                &server_a.url,
                &format!(
                    "{}\nproxy = \"{}\"",
                    tls_table(&pki, false, None),
                    configured.url
                )
            ),
            http_sink("env", &server_b.url, &tls_table(&pki, false, None))
        ),
    );
    let mut c = cmd(t.path());
    c.arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env("HTTPS_PROXY", &from_env.url);
    let mut d = Daemon::spawn(c);
    wait_for(
        &mut d,
        WAIT,
        "both sinks delivered through their proxies",
        || {
            all_once(&ids_in(&server_a.bodies()), &want)
                && all_once(&ids_in(&server_b.bodies()), &want)
        },
    );
    stop_ok(d);
    assert!(configured.tunnels() >= 1, "the configured proxy tunnelled");
    assert!(
        from_env.tunnels() >= 1,
        "HTTPS_PROXY tunnelled the other sink"
    );
    assert!(
        from_env.seen().iter().all(|r| r.target == server_b.addr),
        "the configured proxy wins over HTTPS_PROXY: {:?}",
        from_env
            .seen()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>()
    );

    // NO_PROXY takes a host out of HTTPS_PROXY.
    let (t, file) = setup();
    write_chain(&file, 1, 0, 20, ZERO_HASH);
    let want = sealed_ids(&file);
    let server = TlsHttpServer::start(&pki, false);
    let unused = ConnectProxy::start();
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &http_sink("direct", &server.url, &tls_table(&pki, false, None)),
    );
    let mut c = cmd(t.path());
    c.arg("run")
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .env("HTTPS_PROXY", &unused.url)
        .env("NO_PROXY", "127.0.0.1");
    let mut d = Daemon::spawn(c);
    wait_for(&mut d, WAIT, "the sink delivered directly", || {
        all_once(&ids_in(&server.bodies()), &want)
    });
    stop_ok(d);
    assert_eq!(
        unused.tunnels() + unused.forwarded(),
        0,
        "NO_PROXY bypassed the proxy"
    );
}

/// `_auditship.id` of every record rsyslog wrote, with its count; every message must
/// parse as RFC 5424 with our structured data, and its MSG as the shipped record.
fn syslog_ids(rs: &Rsyslog) -> HashMap<String, u32> {
    let mut ids = HashMap::new();
    for m in rs.parsed() {
        assert_eq!(m["version"], "1", "parsed as RFC 5424: {m}");
        let rec: serde_json::Value = serde_json::from_str(m["msg"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("MSG is the shipped record ({e}): {m}"));
        let id = rec["_auditship"]["id"].as_str().unwrap().to_string();
        assert_eq!(rec["hash"].as_str(), Some(id.as_str()), "record intact");
        let sd = m["structured_data"].as_str().unwrap();
        assert!(
            sd.starts_with(&format!("[auditship@32473 id=\"{id}\"")),
            "structured data carries the id: {sd}"
        );
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

fn syslog_sink(name: &str, rs: &Rsyslog, tls: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\ntype = \"syslog\"\nendpoint = \"tls://{}\"\n{}\n{RETRY}\n{tls}\n",
        rs.addr(),
        batch(200)
    )
}

#[test]
fn syslog_delivers_every_record_to_rsyslog_over_tls_across_its_restart() {
    let (t, file) = setup();
    let pki = Pki::generate(t.path());
    let mut rs = Rsyslog::start(t.path(), &pki);
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &syslog_sink("syslog", &rs, &tls_table(&pki, false, None)),
    );
    let mut d = Daemon::start(t.path(), &cfg);
    // 10,000 events written over about two seconds, rsyslogd restarted halfway, so
    // records are in flight when it goes away.
    let mut prev = ZERO_HASH.to_string();
    for step in 0..100u64 {
        prev = write_chain(&file, 1, step * 100, 100, &prev);
        if step == 50 {
            rs.restart();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let want = sealed_ids(&file);
    assert_eq!(want.len(), 10_000);
    wait_for(
        &mut d,
        Duration::from_secs(60),
        "every record reached rsyslog",
        || {
            let got = syslog_ids(&rs);
            want.iter().all(|id| got.contains_key(id))
        },
    );
    stop_ok(d);
    let got = syslog_ids(&rs);
    assert_eq!(got.len(), want.len(), "only records that were written");
    let repeated: u32 = got.values().map(|n| n - 1).sum();
    // At least once: a restart may repeat what was sent but not confirmed (about a
    // second's worth at most), never lose it.
    eprintln!(
        "syslog across a restart: {} records, {repeated} repeated",
        got.len()
    );
    assert!(
        (repeated as usize) < want.len(),
        "only what was not confirmed is sent again: repeated {repeated}"
    );
}

#[test]
fn syslog_trusts_the_configured_ca_and_presents_its_client_certificate() {
    let (t, file) = setup();
    write_chain(&file, 1, 0, 50, ZERO_HASH);
    let want = sealed_ids(&file);
    let pki = Pki::generate(t.path());
    let rs = Rsyslog::start_with(t.path(), &pki, ClientAuth::CertValid);
    let cfg = siem_config(
        t.path(),
        &sources(&t),
        &format!(
            "{}\n{}\n{}",
            syslog_sink("no-ca", &rs, ""),
            syslog_sink("no-cert", &rs, &tls_table(&pki, false, None)),
            syslog_sink("cert", &rs, &tls_table(&pki, true, None)),
        ),
    );
    let mut d = Daemon::start(t.path(), &cfg);
    wait_for(
        &mut d,
        WAIT,
        "the sink with CA and client certificate delivered",
        || {
            let got = syslog_ids(&rs);
            want.iter().all(|id| got.contains_key(id))
        },
    );
    keeps_refusing(&mut d);
    let log = d.stderr();
    stop_ok(d);
    let got = syslog_ids(&rs);
    assert!(
        all_once(&got, &want),
        "only the sink with the certificate got through, once each: {} ids",
        got.len()
    );
    assert!(
        log.contains("UnknownIssuer"),
        "no CA: refused, logged: {log}"
    );
    // rsyslog drops a connection without a client certificate after the handshake:
    // the writes never count as delivered, they are sent again, never confirmed.
    assert!(
        log.lines().any(|l| l.contains("sink=no-cert")
            && (l.contains("sending those batches again") || l.contains("retrying batch"))),
        "{log}"
    );
}
