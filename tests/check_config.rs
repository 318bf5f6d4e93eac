//! `auditship check-config`: every error at once, secrets never printed.

use crate::util::*;

#[test]
fn the_example_config_is_valid_and_secrets_are_masked() {
    let t = tempdir();
    let token = t.path().join("token");
    std::fs::write(&token, "s3cr3t-t0ken-value\n").unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"),
    )
    .unwrap();
    let cfg = write_config(
        t.path(),
        &format!(
            "{example}\n[[sink]]\nname = \"siem\"\ntype = \"http\"\nendpoint = \"https://siem.example.com/x\"\ntoken_file = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"hdr-secret-value\" }}\n",
            token.display()
        ),
    );
    let out = cmd(t.path())
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("endpoint = \"https://siem.example.com/x\""),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t-t0ken-value") && !text.contains("hdr-secret-value"),
        "{text}"
    );
    assert!(text.contains("token = \"***\""), "{text}");
}

#[test]
fn all_errors_are_reported_with_their_place() {
    let t = tempdir();
    let cfg = write_config(
        t.path(),
        "[agent]\nrescan_interval = \"often\"\n[[sink]]\nname = \"a\"\ntype = \"http\"\nendpoint = \"ftp://x\"\n[record]\non_error = \"maybe\"\n",
    );
    let out = cmd(t.path())
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 errors:"), "{err}");
    for (line, key) in [
        (2, "agent.rescan_interval"),
        (6, "sink[0] (\"a\").endpoint"),
        (8, "record.on_error"),
    ] {
        let want = format!("{}: line {line}, column 1: {key}: ", cfg.display());
        assert!(err.contains(&want), "{want} missing from: {err}");
    }
    let cfg = write_config(t.path(), "[agent]\nstate_dri = \"/x\"\n");
    let out = cmd(t.path())
        .arg("check-config")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: line 2, column 1: agent.state_dri: unknown field `state_dri`",
            cfg.display()
        )),
        "{err}"
    );
}

/// The commented `[[sink]]` examples of config.example.toml, uncommented, with their
/// files made real: every one is valid, and no secret is printed.
#[test]
fn the_example_sink_tables_are_valid() {
    let t = tempdir();
    let pki = crate::pki::Pki::generate(t.path());
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"),
    )
    .unwrap();
    let mut tables = String::new();
    let mut inside = false;
    for line in example.lines() {
        if line == "# [[sink]]" {
            inside = true;
        } else if !line.starts_with("# ") {
            inside = false;
        }
        if inside {
            tables.push_str(&line[2..]);
            tables.push('\n');
        }
    }
    let mut secrets = Vec::new();
    for name in [
        "siem.token",
        "hec.token",
        "es.apikey",
        "otlp.token",
        "kafka.pass",
    ] {
        let value = format!("secret-of-{name}");
        std::fs::write(t.path().join(name), &value).unwrap();
        secrets.push(value);
        tables = tables.replace(
            &format!("/etc/auditship/{name}"),
            &t.path().join(name).display().to_string(),
        );
    }
    for (file, real) in [
        ("ca.pem", &pki.ca_file),
        ("kafka-ca.pem", &pki.ca_file),
        ("client.pem", &pki.client_cert),
        ("client.key", &pki.client_key),
    ] {
        tables = tables.replace(
            &format!("/etc/auditship/{file}"),
            &real.display().to_string(),
        );
    }
    let types: Vec<&str> = tables
        .lines()
        .filter_map(|l| l.strip_prefix("type = \""))
        .map(|l| l.split('"').next().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "http",
            "splunk_hec",
            "elasticsearch",
            "otlp",
            "syslog",
            "kafka"
        ],
        "{tables}"
    );
    let cfg = write_config(t.path(), &tables);
    let out = cmd(t.path())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{tables}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "{s} printed: {text}");
    }
    for kind in types {
        assert!(text.contains(&format!("type = \"{kind}\"")), "{text}");
    }
}

#[test]
fn sink_settings_are_checked_per_type() {
    let t = tempdir();
    let cfg = write_config(
        t.path(),
        r#"
[[sink]]
name = "a"
type = "http"
endpoint = "https://siem.example.com"
index = "audit"

[[sink]]
name = "b"
type = "syslog"
endpoint = "https://logs.example.com:6514"
proxy = "http://proxy:3128"

[[sink]]
name = "c"
type = "elasticsearch"
endpoint = "https://es.example.com"
index = "Audit-%Y"

[[sink]]
name = "d"
type = "splunk_hec"
endpoint = "https://splunk.example.com:8088"

[[sink]]
name = "e"
type = "otlp"
endpoint = "https://otel.example.com"
tls = { ca_file = "/nonexistent/ca.pem" }
"#,
    );
    let out = cmd(t.path())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "sink[0] (\"a\").index: not a setting of a \"http\" sink",
        "sink[1] (\"b\").endpoint: expected a tls:// URL",
        "sink[1] (\"b\").proxy",
        "sink[2] (\"c\").index",
        "sink[3] (\"d\"): a splunk_hec sink needs token_file or token_env",
        "sink[4] (\"e\").tls: /nonexistent/ca.pem",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
