//! The `kafka` sink's SASL and TLS end to end. tansu cannot authenticate with its
//! memory storage, so a front (`support/kafka_front.py`) stands before it: TLS with
//! Python's `ssl`, SaslHandshake and SaslAuthenticate answered with a PLAIN check and
//! the `scramp` library's SCRAM server (RFC 5802/7677), then every frame passed to the
//! real broker. What was shipped is read back with kafka-python straight from tansu.
//!
//! PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 each authenticate; a wrong password (over
//! TLS) is refused, retried loudly and ships once fixed; a CA that does not match is
//! refused, never answered in plain text, and ships once the right CA is configured.

use crate::kafka::*;
use crate::ops::{get, parse_prometheus};
use crate::pki::Pki;
use crate::siem_sinks::{dead_letters, stop_ok, wait_for};
use crate::util::*;
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// The kafka-python venv's interpreter, which must also have scramp.
fn front_python() -> PathBuf {
    let python = kafka_python();
    let ok = Command::new(&python)
        .args(["-c", "import scramp"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Kafka SASL tests need scramp in {} (tests/run.sh installs it)",
        python.display()
    );
    python
}

/// `support/kafka_front.py` before a broker: its port, and what it printed.
struct Front {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Front {
    /// A front to `broker` asking the `(mechanism, name, password)` users given (no
    /// SASL when there are none), terminating TLS with `pki`'s server certificate.
    fn start(broker: &Broker, users: &[(&str, &str, &str)], tls: Option<&Pki>) -> Front {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kafka_front.py");
        let mut c = Command::new(front_python());
        c.arg(script).args(["--broker", &broker.bootstrap()]);
        for (mechanism, name, password) in users {
            c.arg("--user")
                .arg(format!("{mechanism}:{name}:{password}"));
        }
        if let Some(pki) = tls {
            c.arg("--cert").arg(&pki.server_cert);
            c.arg("--key").arg(&pki.server_key);
        }
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kafka_front.py");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("kafka_front.py did not start: {first:?}"));
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Front { child, port, log }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A password file (0600) holding `password`; written again in place to fix it.
fn password_file(dir: &Path, password: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("kafka.pass");
    std::fs::write(&p, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn sasl_table(mechanism: &str, user: &str, password_file: &Path) -> String {
    format!(
        "sasl = {{ mechanism = \"{mechanism}\", username = \"{user}\", password_file = \"{}\" }}",
        password_file.display()
    )
}

fn tls_table(ca_file: &Path) -> String {
    format!("tls = {{ ca_file = \"{}\" }}", ca_file.display())
}

/// The daemon's `/status` entry of the sink `kafka`.
fn sink_status(home: &Path) -> serde_json::Value {
    let status: serde_json::Value =
        serde_json::from_str(&get(&home.join("state"), "/status").1).unwrap();
    status["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "kafka")
        .cloned()
        .expect("the kafka sink in /status")
}

fn retries_counted(home: &Path) -> f64 {
    let m = parse_prometheus(&get(&home.join("state"), "/metrics").1);
    m.get("auditship_sink_retries_total{sink=\"kafka\",type=\"kafka\"}")
        .copied()
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------

#[test]
fn plain_scram_sha_256_and_scram_sha_512_each_authenticate_and_ship() {
    let broker = Broker::on(free_port(), &[]);
    let pki_dir = tempdir();
    let pki = Pki::generate(pki_dir.path());
    let users = [
        ("PLAIN", "plain-user", "plain-secret"),
        ("SCRAM-SHA-256", "scram256-user", "secret-256"),
        ("SCRAM-SHA-512", "scram512-user", "secret-512"),
    ];
    // PLAIN sends the password as it is: over TLS, as the documentation says.
    let tls_front = Front::start(&broker, &users, Some(&pki));
    let plain_front = Front::start(&broker, &users, None);
    for (mechanism, user, password) in users {
        let t = tempdir();
        let topic = format!("audit-{}", mechanism.to_lowercase());
        broker.create_topic(&topic, 2);
        let pass = password_file(t.path(), password);
        let (front, tls) = match mechanism {
            "PLAIN" => (&tls_front, tls_table(&pki.ca_file)),
            _ => (&plain_front, String::new()),
        };
        let cfg = kafka_config(
            t.path(),
            &front.addr(),
            &topic,
            &format!("{}\n{tls}", sasl_table(mechanism, user, &pass)),
        );
        let mut prev = new_chains(2);
        let want: HashSet<String> = write_streams(t.path(), &mut prev, 0, 150)
            .into_iter()
            .collect();
        let before = front.log().len();
        let d = Daemon::start(t.path(), &cfg);
        let got = broker.read_until(&topic, &want, WAIT);
        assert_all_present(&got, &want);
        assert_chain_order(&got, 2, 150);
        assert_eq!(duplicates(&got), 0, "{mechanism}: no duplicate");
        stop_ok(d);
        let log = front.log().split_off(before);
        assert!(
            log.contains(&format!("auth-ok {mechanism} {user}\n")) && log.contains("produce\n"),
            "{mechanism}: the front authenticated the daemon and passed its records on: {log}"
        );
    }
    for front in [&tls_front, &plain_front] {
        let log = front.log();
        assert!(
            !log.contains("auth-failed") && !log.contains("refused"),
            "no failed authentication, no request before it: {log}"
        );
    }
}

#[test]
fn a_wrong_sasl_password_over_tls_is_refused_retried_loudly_and_ships_once_fixed() {
    let t = tempdir();
    let broker = Broker::on(free_port(), &[]);
    broker.create_topic("audit", 2);
    let pki = Pki::generate(t.path());
    let front = Front::start(
        &broker,
        &[("SCRAM-SHA-512", "auditship", "the-right-one")],
        Some(&pki),
    );
    let pass = password_file(t.path(), "a-wrong-one");
    let cfg = kafka_config(
        t.path(),
        &front.addr(),
        "audit",
        &format!(
            "{}\n{}",
            sasl_table("SCRAM-SHA-512", "auditship", &pass),
            tls_table(&pki.ca_file)
        ),
    );
    let mut prev = new_chains(2);
    let want: HashSet<String> = write_streams(t.path(), &mut prev, 0, 200)
        .into_iter()
        .collect();
    let mut d = Daemon::start(t.path(), &cfg);
    let stderr = d.stderr_handle();
    wait_for(&mut d, WAIT, "the front refused the password", || {
        front.log().contains("auth-failed SCRAM-SHA-512 auditship")
    });
    wait_for(&mut d, WAIT, "the refusal logged and counted", || {
        let log = stderr.lock().unwrap();
        log.contains("the broker refuses our credentials")
            && log.contains("SASL_AUTHENTICATION_FAILED")
            && retries_counted(t.path()) >= 1.0
    });
    let status = sink_status(t.path());
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("SASL SCRAM-SHA-512")
            && last_error.contains("SASL_AUTHENTICATION_FAILED (58)"),
        "/status names the refusal: {status}"
    );
    assert_eq!(status["events"], 0, "{status}");
    assert!(
        broker.read("audit", 0).is_empty() && !front.log().contains("produce"),
        "nothing reached the broker unauthenticated"
    );
    // The operator puts the right password in the file and reloads.
    password_file(t.path(), "the-right-one");
    d.signal(libc::SIGHUP);
    let got = broker.read_until("audit", &want, WAIT);
    assert_all_present(&got, &want);
    assert_chain_order(&got, 2, 200);
    assert_eq!(duplicates(&got), 0);
    stop_ok(d);
    let log = front.log();
    assert!(
        log.contains("auth-ok SCRAM-SHA-512 auditship") && log.contains("produce"),
        "the records went through the front once it authenticated the daemon: {log}"
    );
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "credentials are fixed by configuration, never dead-lettered"
    );
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused_without_plaintext_and_ships_once_trusted() {
    let t = tempdir();
    let broker = Broker::on(free_port(), &[]);
    broker.create_topic("audit", 2);
    let pki = Pki::generate(t.path());
    let other = Pki::other_ca(t.path());
    let front = Front::start(&broker, &[], Some(&pki));
    // The sink trusts a CA that did not sign the front's certificate.
    let ca_file = t.path().join("kafka-ca.pem");
    std::fs::copy(&other.ca_file, &ca_file).unwrap();
    let cfg = kafka_config(t.path(), &front.addr(), "audit", &tls_table(&ca_file));
    let mut prev = new_chains(2);
    let want: HashSet<String> = write_streams(t.path(), &mut prev, 0, 200)
        .into_iter()
        .collect();
    let mut d = Daemon::start(t.path(), &cfg);
    let stderr = d.stderr_handle();
    wait_for(&mut d, WAIT, "two refused handshakes", || {
        front.log().matches("tls-failed").count() >= 2
    });
    wait_for(&mut d, WAIT, "the verification error logged", || {
        stderr.lock().unwrap().contains("UnknownIssuer")
    });
    assert!(retries_counted(t.path()) >= 1.0);
    assert!(
        broker.read("audit", 0).is_empty(),
        "nothing shipped to a broker that was not verified"
    );
    // The operator installs the CA that signed the broker's certificate.
    std::fs::copy(&pki.ca_file, &ca_file).unwrap();
    d.signal(libc::SIGHUP);
    let got = broker.read_until("audit", &want, WAIT);
    assert_all_present(&got, &want);
    assert_chain_order(&got, 2, 200);
    assert_eq!(duplicates(&got), 0);
    stop_ok(d);
    let log = front.log();
    assert!(
        !log.contains("plaintext-on-tls"),
        "the sink never fell back to plain text: {log}"
    );
    assert!(
        log.contains("produce"),
        "the records went through the front: {log}"
    );
    assert!(
        dead_letters(t.path(), &cfg).is_empty(),
        "a TLS failure is retried, never dead-lettered"
    );
}
