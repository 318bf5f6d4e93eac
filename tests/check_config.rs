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
    assert!(err.contains("3 error(s)"), "{err}");
    for needle in ["rescan_interval", "endpoint", "on_error"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
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
    assert!(err.contains("line 2") && err.contains("state_dri"), "{err}");
}
