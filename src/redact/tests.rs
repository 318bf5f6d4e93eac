//! The redactor's catalogue and properties: each class of secret with what must
//! vanish and what must stay, idempotence, ordinary text left alone, linear time.

use super::*;
use serde_json::json;

const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const GHP: &str = "ghp_R2d2C3poL7kWq9ZxY4vB8nM1tGh6JfDs0aPe";
const GITHUB_PAT: &str =
    "github_pat_11AQZ7QYA0x7tGh3kLmNoP_q9RsTuVwXyZaBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgHiJkLmNoPqRsTuV";
const GLPAT: &str = "glpat-Zx8vQ2mN4kT7bW1cR9yL";
const XOXB: &str = "xoxb-2417384950-5829173640285-Kq3zT8vW1xY6bN0mP4rS7uJd";
const SK_ANT: &str = "sk-ant-api03-Qw3rTy7UiOp9AsDfGhJkL1ZxCvBnM2QwErTy-5UiOpAA";
const JWT: &str =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

/// Each input redacts to the expected output; the changed flag, idempotence and
/// "no markers without a change" are checked for every row.
fn check(cases: &[(&str, &str)]) {
    let r = Redactor::builtin();
    for &(input, want) in cases {
        let got = r.redact_str(input);
        assert_eq!(got, want, "input: {input:?}");
        assert_eq!(
            matches!(got, Cow::Owned(_)),
            input != want,
            "changed flag: {input:?}"
        );
        assert!(
            matches!(r.redact_str(&got), Cow::Borrowed(_)),
            "second pass changed {got:?}"
        );
    }
}

fn owned(cases: &[(String, String)]) -> Vec<(&str, &str)> {
    cases
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

#[test]
fn token_formats() {
    check(&owned(&[
        (
            format!("export AWS_ACCESS_KEY_ID={AWS_ID}"),
            "export AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key_id]".into(),
        ),
        (
            "aws sts get-session-token # ASIAY34FZKBOKMUTVV7A expires".into(),
            "aws sts get-session-token # [REDACTED:aws_access_key_id] expires".into(),
        ),
        (
            format!("git push https://{GHP}@github.com/acme/api.git"),
            "git push https://[REDACTED:github_token]@github.com/acme/api.git".into(),
        ),
        (
            format!("GH_TOKEN={GITHUB_PAT} gh pr list"),
            "GH_TOKEN=[REDACTED:github_token] gh pr list".into(),
        ),
        (
            format!("git clone https://oauth2:{GLPAT}@gitlab.com/acme/infra.git"),
            "git clone https://oauth2:[REDACTED:gitlab_token]@gitlab.com/acme/infra.git"
                .into(),
        ),
        (
            format!("glab auth login --stdin <<< {GLPAT}."),
            "glab auth login --stdin <<< [REDACTED:gitlab_token].".into(),
        ),
        (
            format!(r#"{{"token":"{XOXB}","channel":"C024BE91L"}}"#),
            r#"{"token":"[REDACTED:slack_token]","channel":"C024BE91L"}"#.into(),
        ),
        (
            "curl -X POST -d '{\"text\":\"hi\"}' https://hooks.slack.com/services/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".into(),
            "curl -X POST -d '{\"text\":\"hi\"}' https://hooks.slack.com/services/[REDACTED:slack_webhook]".into(),
        ),
        (
            "POST https://hooks.slack.com/triggers/E0AB12CD3/5923817/9f8e7d6c5b4a3f2e1d0c".into(),
            "POST https://hooks.slack.com/triggers/[REDACTED:slack_webhook]".into(),
        ),
        (
            format!("ANTHROPIC_API_KEY={SK_ANT} claude -p hi"),
            "ANTHROPIC_API_KEY=[REDACTED:anthropic_api_key] claude -p hi".into(),
        ),
    ]));
}

#[test]
fn authorization_headers() {
    check(&owned(&[
        (
            "curl -H \"Authorization: Bearer abc.def\" https://u:p@host/x".into(),
            "curl -H \"Authorization: Bearer [REDACTED:bearer]\" https://u:[REDACTED:url_password]@host/x".into(),
        ),
        (
            format!("curl -H 'authorization:bearer  {JWT}' api.local"),
            "curl -H 'authorization:bearer  [REDACTED:jwt]' api.local".into(),
        ),
        (
            "wget --header='Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l' http://x".into(),
            "wget --header='Authorization: Basic [REDACTED:basic_auth]' http://x".into(),
        ),
        (
            format!("Authorization: token {GHP}"),
            "Authorization: token [REDACTED:github_token]".into(),
        ),
        (
            "Proxy-Authorization: Negotiate YIIFdwYGKwYBBQUCoIIFazCCBWeg".into(),
            "Proxy-Authorization: Negotiate [REDACTED:authorization]".into(),
        ),
        (
            r#"{"headers":{"Authorization":"Bearer sk_live_51Hx"}}"#.into(),
            r#"{"headers":{"Authorization":"Bearer [REDACTED:bearer]"}}"#.into(),
        ),
        (
            format!("2026-01-02 DEBUG sending Bearer {JWT}."),
            "2026-01-02 DEBUG sending Bearer [REDACTED:jwt].".into(),
        ),
        (
            "token_type=bearer access=Bearer Zm9vYmFy==".into(),
            "token_type=bearer access=Bearer [REDACTED:bearer]".into(),
        ),
    ]));
}

#[test]
fn private_keys() {
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onL\n-----END RSA PRIVATE KEY-----";
    let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n";
    check(&owned(&[
        (format!("cat > id_rsa <<EOF\n{key}\nEOF"), "cat > id_rsa <<EOF\n[REDACTED:private_key]\nEOF".into()),
        (openssh.into(), "[REDACTED:private_key]\n".into()),
        (
            // As a JSON service-account file shows it in a command line.
            format!(r#"{{"private_key": "{}", "client_email": "x@y"}}"#, key.replace('\n', "\\n")),
            r#"{"private_key": "[REDACTED:private_key]", "client_email": "x@y"}"#.into(),
        ),
        (
            "head -3 key.pem\n-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG".into(),
            "head -3 key.pem\n[REDACTED:private_key]".into(),
        ),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----".into(),
            "[REDACTED:private_key]".into(),
        ),
    ]));
}

#[test]
fn url_passwords() {
    check(&[
        (
            "psql postgres://app:s3cr3t@db.internal:5432/prod",
            "psql postgres://app:[REDACTED:url_password]@db.internal:5432/prod",
        ),
        (
            "redis-cli -u redis://:hunter2@cache:6379/0",
            "redis-cli -u redis://:[REDACTED:url_password]@cache:6379/0",
        ),
        (
            "pip install -i https://bob:p@ss:w0rd@pypi.corp/simple pkg",
            "pip install -i https://bob:[REDACTED:url_password]@pypi.corp/simple pkg",
        ),
        (
            "see https://u:p@host/a?next=x@y.z",
            "see https://u:[REDACTED:url_password]@host/a?next=x@y.z",
        ),
        (
            "[remote] url = https://ci:Zq9@git.corp/r.git\n",
            "[remote] url = https://ci:[REDACTED:url_password]@git.corp/r.git\n",
        ),
    ]);
}

#[test]
fn assignments() {
    check(&owned(&[
        ("mysql --password=hunter2 -h db".into(), "mysql --password=[REDACTED:secret_assignment] -h db".into()),
        ("mysql --password hunter2 -h db".into(), "mysql --password [REDACTED:secret_assignment] -h db".into()),
        ("vault login --token=hvs.CAESIJ2 -method=token".into(), "vault login --token=[REDACTED:secret_assignment] -method=token".into()),
        ("export DB_PASSWORD='correct horse' && ./run".into(), "export DB_PASSWORD='[REDACTED:secret_assignment]' && ./run".into()),
        ("MYSQL_PWD=hunter2 mysql".into(), "MYSQL_PWD=[REDACTED:secret_assignment] mysql".into()),
        (
            "curl -d '{\"username\":\"bob\",\"password\":\"hunter2\"}' https://api/x".into(),
            "curl -d '{\"username\":\"bob\",\"password\":\"[REDACTED:secret_assignment]\"}' https://api/x".into(),
        ),
        (
            "curl -d \"{\\\"password\\\": \\\"hunter2\\\"}\" x".into(),
            "curl -d \"{\\\"password\\\": \\\"[REDACTED:secret_assignment]\\\"}\" x".into(),
        ),
        ("\"client_secret\": \"a\\\"b c\"".into(), "\"client_secret\": \"[REDACTED:secret_assignment]\"".into()),
        ("GET /cb?code=x&access_token=ya29.a0Af&state=1".into(), "GET /cb?code=x&access_token=[REDACTED:secret_assignment]&state=1".into()),
        ("curl -H 'X-API-Key: 5f4dcc3b5aa765d6' url".into(), "curl -H 'X-API-Key: [REDACTED:secret_assignment]' url".into()),
        ("apiKey: 'k_live_123'".into(), "apiKey: '[REDACTED:secret_assignment]'".into()),
        ("Password: hunter2".into(), "Password: [REDACTED:secret_assignment]".into()),
        ("SECRET_KEY = \"django-insecure-x\"".into(), "SECRET_KEY = \"[REDACTED:secret_assignment]\"".into()),
        ("password := \"x\"; pwd => 'y'".into(), "password := \"[REDACTED:secret_assignment]\"; pwd => '[REDACTED:secret_assignment]'".into()),
        ("Server=db;Uid=sa;Pwd=Pa55;".into(), "Server=db;Uid=sa;Pwd=[REDACTED:secret_assignment];".into()),
        (
            format!("aws_secret_access_key = {AWS_SECRET}\n"),
            "aws_secret_access_key = [REDACTED:aws_secret_access_key]\n".into(),
        ),
        (
            format!("new S3({{ secretAccessKey: \"{AWS_SECRET}\" }})"),
            "new S3({ secretAccessKey: \"[REDACTED:aws_secret_access_key]\" })".into(),
        ),
        (
            format!("export GITHUB_TOKEN={GHP}"),
            "export GITHUB_TOKEN=[REDACTED:github_token]".into(),
        ),
        (
            "kubectl create secret generic db --from-literal=password=hunter2".into(),
            "kubectl create secret generic db --from-literal=password=[REDACTED:secret_assignment]".into(),
        ),
        ("token=5".into(), "token=[REDACTED:secret_assignment]".into()),
    ]));
}

#[test]
fn ordinary_text_is_left_alone() {
    let unchanged = [
        "cargo test -j1 --manifest-path /home/alice/src/auth/Cargo.toml",
        "vim src/auth/token.rs src/password_reset.rs",
        "cargo test -p lexer -- token::tests::eof",
        "git checkout -b fix/password-reset",
        "git show 3f2a9c1e0b7d4a6e8f9c0d1b2a3e4f5a6b7c8d9e",
        "id=550e8400-e29b-41d4-a716-446655440000",
        "the password is stored hashed; reset the password",
        "Enter your password: ",
        "token_count=5 max_tokens: 1024 --max-tokens 5 tokens=3",
        r#"{"usage":{"input_tokens":12,"output_tokens":34}}"#,
        "git clone git@github.com:acme/api.git && git clone https://github.com/acme/web",
        "ssh://git@host:22/repo.git",
        "echo $PASSWORD; export PASSWORD=$(pass show db); mysql -p\"$DB_PWD\"",
        "curl -H \"Authorization: Bearer $TOKEN\" -H 'Authorization: Bearer ${API_TOKEN}'",
        "Authorization: Bearer",
        "fetch(url, { headers: { Authorization: `Bearer ${token}` } })",
        "Use a Bearer token. The bearer of this letter",
        "kubectl get secret db-creds -o yaml",
        "PWD=/home/alice/project OLDPWD=~/src; cd /tmp && pwd",
        "if (password == null) return; secret: false, token: undefined",
        "grep -rn \"password\" src/ --include=*.rs",
        "gh pr create --title x; ghp_short; sk-learn; ASIA PACIFIC",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "<img src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk\">",
        "password=\"\" token='' --token --verbose",
        "${{ secrets.NPM_TOKEN }} token: ${{ secrets.NPM_TOKEN }}",
        "",
    ];
    check(&unchanged.map(|s| (s, s)));
}

#[test]
fn overlaps_merge_under_the_most_specific_name() {
    check(&owned(&[
        (
            format!("Authorization: Bearer {GHP}"),
            "Authorization: Bearer [REDACTED:github_token]".into(),
        ),
        (
            format!("password={AWS_ID}"),
            "password=[REDACTED:aws_access_key_id]".into(),
        ),
        (
            // The URL password overlaps the assignment after `token:`; one marker.
            "token: https://u:pw@h".into(),
            "token: [REDACTED:url_password]".into(),
        ),
    ]));
}

#[test]
fn existing_markers_are_kept() {
    check(&[
        (
            "password=[REDACTED:secret_assignment] ok",
            "password=[REDACTED:secret_assignment] ok",
        ),
        (
            "https://u:[REDACTED:url_password]@h",
            "https://u:[REDACTED:url_password]@h",
        ),
        (
            "[REDACTED:x] password=hunter2",
            "[REDACTED:x] password=[REDACTED:secret_assignment]",
        ),
    ]);
}

#[test]
fn configured_patterns() {
    let cfg = |name: &str, regex: &str| PatternConfig {
        name: name.into(),
        regex: regex.into(),
    };
    let r = Redactor::new(&[
        cfg("employee_id", r"\bEMP-\d{6}\b"),
        cfg("internal_token", r"itk_(?P<secret>[a-z0-9]{12})"),
    ])
    .unwrap();
    let cases = [
        (
            "assign EMP-123456 to x",
            "assign [REDACTED:employee_id] to x",
        ),
        (
            "use itk_0123456789ab now",
            "use itk_[REDACTED:internal_token] now",
        ),
        // A configured pattern outranks the generic assignment detector.
        ("token=EMP-123456", "token=[REDACTED:employee_id]"),
        ("EMP-12", "EMP-12"),
    ];
    for (input, want) in cases {
        assert_eq!(r.redact_str(input), want);
    }

    let err = Redactor::new(&[
        cfg("ok", "x"),
        cfg("broken", "(unclosed"),
        cfg("bad name", "y"),
        cfg("empty", "a*"),
    ])
    .unwrap_err();
    for part in [
        "\"broken\"",
        "\"bad name\"",
        "\"empty\": the regex matches the empty string",
    ] {
        assert!(err.contains(part), "{part} not in {err}");
    }
    assert!(!err.contains("\"ok\""), "{err}");
}

#[test]
fn pattern_config_rejects_unknown_fields() {
    let ok: PatternConfig = serde_json::from_str(r#"{"name":"a","regex":"b"}"#).unwrap();
    assert_eq!((ok.name.as_str(), ok.regex.as_str()), ("a", "b"));
    assert!(serde_json::from_str::<PatternConfig>(r#"{"name":"a","regex":"b","x":1}"#).is_err());
}

#[test]
fn json_values_paths_and_key_context() {
    let r = Redactor::builtin();
    let mut v = json!({
        "tool_input": {
            "command": "curl -H 'Authorization: Bearer abc.def' https://u:p@host/x",
            "args": ["--user", "bob", "--password", "hunter2", "--token", "--verbose"],
            "env": {"GITHUB_TOKEN": GHP, "DB_PASSWORD": "hunter2", "HOME": "/home/bob", "PWD": "/tmp"},
            "headers": {"authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
        },
        "metadata": {"extra": {"url": "https://ci:Zq9@git.corp/r.git", "tokens": 12, "secret": true}},
        "resource": "/home/bob/token.rs",
    });
    let mut paths = Vec::new();
    r.redact_json(&mut v, "", &mut paths);
    assert_eq!(
        v,
        json!({
            "tool_input": {
                "command": "curl -H 'Authorization: Bearer [REDACTED:bearer]' https://u:[REDACTED:url_password]@host/x",
                "args": ["--user", "bob", "--password", "[REDACTED:secret_assignment]", "--token", "--verbose"],
                "env": {
                    "GITHUB_TOKEN": "[REDACTED:github_token]",
                    "DB_PASSWORD": "[REDACTED:secret_assignment]",
                    "HOME": "/home/bob",
                    "PWD": "/tmp",
                },
                "headers": {"authorization": "Basic [REDACTED:basic_auth]"},
            },
            "metadata": {"extra": {"url": "https://ci:[REDACTED:url_password]@git.corp/r.git", "tokens": 12, "secret": true}},
            "resource": "/home/bob/token.rs",
        })
    );
    paths.sort();
    assert_eq!(
        paths,
        [
            "metadata.extra.url",
            "tool_input.args[3]",
            "tool_input.command",
            "tool_input.env.DB_PASSWORD",
            "tool_input.env.GITHUB_TOKEN",
            "tool_input.headers.authorization",
        ]
    );

    // A second pass finds nothing new; a caller-given path prefixes the paths.
    let mut again = Vec::new();
    r.redact_json(&mut v, "", &mut again);
    assert!(again.is_empty(), "{again:?}");
    let mut top = json!(["x", "password=hunter2"]);
    let mut paths = Vec::new();
    r.redact_json(&mut top, "tool_input.args", &mut paths);
    assert_eq!(paths, ["tool_input.args[1]"]);
    let mut s = json!("Bearer abc.def");
    let mut paths = Vec::new();
    r.redact_json(&mut s, "", &mut paths);
    assert_eq!(
        (s, paths),
        (json!("Bearer [REDACTED:bearer]"), vec![String::new()])
    );
}

#[test]
fn json_in_text_with_escaped_keys() {
    check(&owned(&[
        (
            r#"curl -d '{"user":"bob","pass\u0077ord":"hunter2"}' https://api/x"#.into(),
            r#"curl -d '{"user":"bob","pass\u0077ord":"[REDACTED:secret_assignment]"}' https://api/x"#.into(),
        ),
        (
            r#"{"\u0074oken": 123456, "n": 1}"#.into(),
            r#"{"\u0074oken": [REDACTED:secret_assignment], "n": 1}"#.into(),
        ),
        (
            r#"{"api\u005fkey" : "k-1\"x", "z":"\u0041"}"#.into(),
            r#"{"api\u005fkey" : "[REDACTED:secret_assignment]", "z":"\u0041"}"#.into(),
        ),
        // A key that decodes to nothing secret, and escapes in values, stay.
        (r#"{"na\u006de":"hunter2","x":"pass\u0077ord"}"#.into(), r#"{"na\u006de":"hunter2","x":"pass\u0077ord"}"#.into()),
        (r#"{"pass\u0077ord":null,"b":"\ud83d\ude00"}"#.into(), r#"{"pass\u0077ord":null,"b":"\ud83d\ude00"}"#.into()),
    ]));
    // Hostile: many escapes, unterminated strings.
    let r = Redactor::builtin();
    // Quadratic code takes minutes on these; outputs are checked so the test is not
    // vacuous.
    for hostile in [r#""\u0041"#.repeat(50_000), r#"\u0041"#.repeat(100_000)] {
        assert_eq!(r.redact_str(&hostile), hostile);
    }
    let unterminated = format!(r#"{{"pass\u0077ord":"{}"#, r#"\u0041"#.repeat(100_000));
    assert_eq!(
        r.redact_str(&unterminated),
        r#"{"pass\u0077ord":"[REDACTED:secret_assignment]"#
    );
}

#[test]
fn scans_stay_linear_on_hostile_input() {
    // Key words inside one long rejected value, and stacked key words: quadratic
    // code takes minutes on these. Outputs are checked so the test is not vacuous.
    let r = Redactor::builtin();
    for unit in [
        "password=$-",
        "Authorization:$-",
        "token",
        "github_pat_",
        "://a",
    ] {
        let hostile = unit.repeat(100_000);
        let out = r.redact_str(&hostile);
        match unit {
            "github_pat_" => assert_eq!(out, "[REDACTED:github_token]"),
            _ => assert_eq!(out, hostile),
        }
    }
    let nested = "password=".repeat(100_000);
    assert_eq!(
        r.redact_str(&nested),
        "password=[REDACTED:secret_assignment]"
    );
}

#[test]
fn non_ascii_text_is_safe() {
    check(&[
        (
            "mot de passe: «secret» password=ünïcødé€ fin",
            "mot de passe: «secret» password=[REDACTED:secret_assignment] fin",
        ),
        (
            "Пароль: password: пароль123",
            "Пароль: password: [REDACTED:secret_assignment]",
        ),
    ]);
}

// ---- The shared catalogue (tests/redact/catalogue.json) ----

#[derive(serde::Deserialize)]
struct Catalogue {
    text: Vec<CatalogueCase>,
    json: Vec<CatalogueCase>,
    clean: Vec<String>,
}

#[derive(serde::Deserialize)]
struct CatalogueCase {
    #[serde(rename = "in")]
    input: String,
    gone: Vec<String>,
    kept: Vec<String>,
}

fn catalogue() -> Catalogue {
    serde_json::from_str(include_str!("../../tests/redact/catalogue.json")).unwrap()
}

/// `out` has none of `gone` and all of `kept`.
fn judge(what: &str, out: &str, case: &CatalogueCase) {
    for g in &case.gone {
        assert!(!out.contains(g.as_str()), "{what}: {g:?} survived in {out}");
    }
    for k in &case.kept {
        assert!(out.contains(k.as_str()), "{what}: {k:?} was lost in {out}");
    }
}

#[test]
fn catalogue_text() {
    let r = Redactor::builtin();
    for case in catalogue().text {
        let out = r.redact_str(&case.input);
        assert!(
            out.contains(MARKER_OPEN),
            "nothing found in {:?}",
            case.input
        );
        judge(&case.input, &out, &case);
        assert!(
            matches!(r.redact_str(&out), Cow::Borrowed(_)),
            "second pass changed {out:?}"
        );
        // The same text as one string of a JSON value, and as an argument vector.
        let mut v = serde_json::json!({ "command": case.input });
        let mut paths = Vec::new();
        r.redact_json(&mut v, "tool_input", &mut paths);
        assert_eq!(paths, ["tool_input.command"]);
        judge(&case.input, v["command"].as_str().unwrap(), &case);
    }
}

#[test]
fn catalogue_json_in_both_trees_and_both_scopes() {
    let r = Redactor::builtin();
    for case in catalogue().json {
        let mut v: serde_json::Value = serde_json::from_str(&case.input).unwrap();
        let mut paths = Vec::new();
        r.redact_json(&mut v, "", &mut paths);
        assert_eq!(paths.is_empty(), case.gone.is_empty(), "{}", case.input);
        judge(&case.input, &v.to_string(), &case);
        let mut again = Vec::new();
        r.redact_json(&mut v, "", &mut again);
        assert!(again.is_empty(), "second pass changed {again:?} in {v}");

        // The format's own reader, as the daemon holds a line: a line whose text scan
        // is clean gets only the structural pass, and that must suffice.
        let mut jv = crate::audit::json::parse(&case.input).unwrap();
        let scope = match r.redact_str(&case.input) {
            Cow::Borrowed(_) => Scope::Context,
            Cow::Owned(_) => Scope::All,
        };
        let mut jpaths = Vec::new();
        r.redact_value(&mut jv, "", scope, &mut jpaths);
        let mut out = Vec::new();
        crate::audit::canon::write_value(&jv, &mut out).unwrap();
        judge(&case.input, std::str::from_utf8(&out).unwrap(), &case);
        paths.sort();
        jpaths.sort();
        assert_eq!(paths, jpaths, "{}", case.input);
    }
}

#[test]
fn catalogue_clean_text_stays() {
    let r = Redactor::builtin();
    for text in catalogue().clean {
        assert_eq!(r.redact_str(&text), text.as_str());
        // As an argument vector too, where splitting at blanks gives the real arguments.
        let args: Vec<&str> = if text.contains(['\'', '"']) {
            Vec::new()
        } else {
            text.split(' ').collect()
        };
        let mut v = serde_json::json!({ "command": text, "args": args });
        let mut paths = Vec::new();
        r.redact_json(&mut v, "", &mut paths);
        assert!(paths.is_empty(), "{paths:?} changed in {v}");
    }
}

/// A sample body for a token format: its alphabet, its shortest length, its shape.
fn sample_body(t: &tokens::Token) -> String {
    use tokens::Class;
    let alphabet: &str = match t.body {
        Class::UpperAlnum => "Q7ZK3M9X2B",
        Class::Hex => "0a1b2c3d4e5f6789",
        _ => "aB3dE6hJ9kLmN0pQ",
    };
    let mut body: String = alphabet.chars().cycle().take(*t.len.start()).collect();
    if t.shape == tokens::Shape::Dotted {
        body.replace_range(body.len() / 2..body.len() / 2 + 1, ".");
    }
    body
}

#[test]
fn every_builtin_detector_is_exercised() {
    // Guards the tables against a detector that silently never fires.
    let r = Redactor::builtin();
    let mut samples = vec![
        format!(
            "Bearer Zm9vYmFyYmF6 Authorization: Basic YWxhZGRpbg== Authorization: Digest x {JWT}"
        ),
        format!("aws_secret_access_key={AWS_SECRET} password=x https://u:p@h Cookie: a=b"),
        "https://x/?X-Amz-Signature=abc curl -u a:b https://x".into(),
        "hooks.slack.com/services/T0/B0/XXXXXXXX\n-----BEGIN PRIVATE KEY-----\nMII".into(),
    ];
    for t in tokens::TOKENS {
        for p in t.prefixes {
            samples.push(format!("{p}{}", sample_body(t)));
        }
    }
    let out = samples
        .iter()
        .map(|s| r.redact_str(s).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for name in builtin_detectors() {
        assert!(
            out.contains(&format!("[REDACTED:{name}]")),
            "{name} missing in {out}"
        );
    }
    for (s, o) in samples.iter().zip(out.split('\n')) {
        assert!(o.contains(MARKER_OPEN), "{s} not found: {o}");
    }
}

#[test]
fn every_key_word_has_a_trigger() {
    let triggers = &*TRIGGERS;
    for (ki, k) in keys::KEYWORDS.iter().enumerate() {
        assert!(
            triggers.stems.iter().flatten().any(|&(i, _)| i == ki),
            "{} is never searched for",
            k.word
        );
    }
    let t = &*TRIGGERS;
    for set in [&t.exact, &t.short, &t.words] {
        assert!(set.kinds.len() <= 64);
    }
    assert!(t.programs.kinds.len() <= 64);
    for p in PROGRAM_TRIGGERS {
        assert!(p.len() >= 4, "{p}: too short for the program set");
        let name = p.split(' ').next().unwrap();
        assert!(
            argv::COMMANDS
                .iter()
                .any(|c| c.names.iter().any(|n| n.starts_with(name))),
            "{p} names no command"
        );
    }
}

#[test]
fn record_fields_and_chain_members_are_never_touched() {
    let digest = crate::audit::sha256_hex(b"x");
    let event = format!(
        r#"{{"v":1,"id":"550e8400-e29b-41d4-a716-446655440000","seq":3,"timestamp":"2026-11-26T07:06:42Z","user_id":"dev@example.com","session_id":"5f0c1e2a-8d3b-4c4e-9a7f-000000000001","host":"devbox","action":"tool_execution","resource":"git show 3f2a9c1e0b7d4a6e8f9c0d1b2a3e4f5a6b7c8d9e","outcome":"success","metadata":{{"source_event":"PostToolUse","tool_name":"Bash","tool_use_id":"toolu_01ABCdef0123456789","input_sha256":"{digest}","input_bytes":12,"response_sha256":"{digest}","response_bytes":3,"redacted":["metadata.extra.password","metadata.extra.env.API_KEY"],"extra":{{"token_usage":{{"input_tokens":5}}}}}},"prev_hash":"{digest}","kid":"fleet-2026"}}"#
    );
    let mut keys = crate::audit::Keys::new();
    keys.insert("fleet-2026", &[7u8; 32]);
    let sealed = crate::audit::seal(&event, Some(("fleet-2026", &keys))).unwrap();
    let line = std::str::from_utf8(&sealed.line).unwrap().trim_end();
    let r = Redactor::builtin();
    assert!(
        matches!(r.redact_str(line), Cow::Borrowed(_)),
        "{}",
        r.redact_str(line)
    );
    let mut v = crate::audit::json::parse(line).unwrap();
    let mut paths = Vec::new();
    r.redact_value(&mut v, "", Scope::All, &mut paths);
    assert!(paths.is_empty(), "{paths:?}");
}

#[test]
fn names_values_argv_and_numbers_with_paths() {
    let r = Redactor::builtin();
    let mut v = json!({
        "spec": {"containers": [{"env": [
            {"name": "DB_PASSWORD", "value": "p1"},
            {"name": "DB_HOST", "value": "db"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        ]}]},
        "password": {"value": "p2", "length": 2, "hint": null, "rotated": true},
        "argv": ["sshpass", "-p", "p3", "ssh", "host"],
        "pin_hash": 7,
        "token": 42,
    });
    let mut paths = Vec::new();
    r.redact_json(&mut v, "metadata.extra", &mut paths);
    paths.sort();
    assert_eq!(
        paths,
        [
            "metadata.extra.argv[2]",
            "metadata.extra.password.length",
            "metadata.extra.password.value",
            "metadata.extra.spec.containers[0].env[0].value",
            "metadata.extra.token",
        ]
    );
    assert_eq!(v["spec"]["containers"][0]["env"][1]["value"], "db");
    assert_eq!(
        v["spec"]["containers"][0]["env"][2]["valueFrom"]["secretKeyRef"]["key"],
        "token"
    );
    assert_eq!(v["password"]["rotated"], true);
    assert_eq!(v["token"], "[REDACTED:secret_assignment]");
    assert_eq!(v["argv"][2], "[REDACTED:cli_credential]");
    assert_eq!(v["pin_hash"], 7);
}

/// A small deterministic generator (no test dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() % items.len()]
    }
}

#[test]
fn redaction_is_idempotent_and_total_on_mixed_text() {
    let r = Redactor::builtin();
    let cat = catalogue();
    let mut pieces: Vec<String> = cat.text.iter().map(|c| c.input.clone()).collect();
    pieces.extend(cat.json.iter().map(|c| c.input.clone()));
    pieces.extend(cat.clean.iter().cloned());
    pieces.extend(
        [
            "[REDACTED:x]",
            "[REDACTED:",
            "]",
            ":",
            "=",
            "\"",
            "'",
            "\\",
            "\\\"",
            "@",
            "%",
            ";",
            "&",
            "?",
            "-p",
            "-u",
            "--password",
            "Cookie:",
            "Authorization:",
            "Bearer",
            "eyJ",
            "é",
            "😀",
            "\u{0}",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "://",
            "curl",
            "mysql",
            "sk-",
            "AKIA",
            "token",
            "_KEY",
            "key=",
            "sig=",
        ]
        .map(String::from),
    );
    let seps = [" ", "\n", "", "\t", "\"", "'", "=", ":", "&", "; "];
    let mut rng = Lcg(0x5eed);
    for _ in 0..20_000 {
        let mut s = String::new();
        for _ in 0..1 + rng.next() % 5 {
            s.push_str(rng.pick(&pieces).as_str());
            let sep: &&str = rng.pick(&seps);
            s.push_str(sep);
        }
        let once = r.redact_str(&s).into_owned();
        let twice = r.redact_str(&once);
        assert_eq!(twice, once.as_str(), "not idempotent on {s:?}");
    }
    // Lines of the catalogue joined together: each secret still goes.
    for _ in 0..300 {
        let cases: Vec<&CatalogueCase> = (0..3).map(|_| rng.pick(&cat.text)).collect();
        let text = cases
            .iter()
            .map(|c| c.input.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let out = r.redact_str(&text);
        for c in &cases {
            for g in &c.gone {
                assert!(!out.contains(g.as_str()), "{g:?} survived in {out}");
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let r = Redactor::builtin();
    let alphabet: Vec<char> = "aA0_-.:=;&?@/\\\"' \t\n[]{}%$eyJSKskhf-pu€ü😀"
        .chars()
        .collect();
    let mut rng = Lcg(7);
    for _ in 0..20_000 {
        let len = rng.next() % 60;
        let s: String = (0..len).map(|_| *rng.pick(&alphabet)).collect();
        let once = r.redact_str(&s).into_owned();
        assert_eq!(
            r.redact_str(&once),
            once.as_str(),
            "not idempotent on {s:?}"
        );
    }
}

#[test]
fn hostile_repetitions_stay_linear() {
    let r = Redactor::builtin();
    for unit in [
        "?token=",
        "curl -u a:b ",
        "mysql ",
        "AKIA",
        "AKIA ",
        "eyJhbGciOiJIUzI1NiJ9.",
        "Cookie: ",
        "Set-Cookie: a=",
        "-----BEGIN ",
        "sk-",
        "?key=",
        "docker login -p ",
        "Authorization: x ",
        "\"pwd\":",
        "X_KEY=",
    ] {
        // Ten times the text takes about ten times as long when the work is linear,
        // a hundred times when quadratic. The fastest of three runs of each size is
        // compared, so a busy machine does not decide.
        let time = |n: usize| {
            let hostile = unit.repeat(n);
            (0..3)
                .map(|_| {
                    let start = std::time::Instant::now();
                    let once = r.redact_str(&hostile).into_owned();
                    assert_eq!(r.redact_str(&once), once.as_str(), "{unit}");
                    start.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let (small, large) = (time(5_000), time(50_000));
        assert!(
            large < small.max(std::time::Duration::from_millis(1)) * 35,
            "{unit:?}: {small:?} for 5,000 repetitions, {large:?} for 50,000"
        );
    }
}

#[test]
fn text_that_does_not_settle_ends_in_one_marker() {
    // Found by fuzzing: `curl -u'` whose quote never closes, in text that is not a
    // command line; each pass took one more word.
    let data = "\u{fffd}\t#uCcu \"#u-H \"zad\":  curl -u']CCC\"}, \"cmd\": \"cu \"#ur -uC C]\"C\u{fffd}]CCC\"}, \"cmd\": \"cu \"#ur -uC C]\"C\u{fffd}Ccu \"#u-\u{fffd}r u]CCC3Cc\u{1c}def\" ht\" cmd\": \"cu \"#uCcu \"#u-\u{fffd}r u]CC\u{fffd}\u{fffd}Cc\u{1c}def\" ht \"cmd\":0\"cu \"cu \"#u-\u{fffd}r u]CCC3Cc\u{1c}def\" ht\" cmd\": \"cu#ur Atps:Cc.def\" \u{fffd}http]-Shpa";
    let r = Redactor::builtin();
    let once = r.redact_str(data);
    assert!(
        once.starts_with("\u{fffd}\t#uCcu \"#u-H \"zad\":  curl -u'"),
        "{once}"
    );
    assert!(once.contains("[REDACTED:unsettled]"), "{once}");
    assert_eq!(r.redact_str(&once), once, "idempotent");
}

#[test]
fn search_orders_list_every_literal_and_change_no_finding() {
    let (exact, _, _) = Triggers::token_literals();
    let (words, _) = Triggers::word_literals();
    for (literals, order) in [(exact, &EXACT_ORDER[..]), (words, &WORD_ORDER[..])] {
        let mut listed: Vec<&str> = literals.iter().map(|&(l, _)| l).collect();
        let ordered: Vec<&str> = search_order(literals, order)
            .iter()
            .map(|&(l, _)| l)
            .collect();
        // Not the fallback to the listed order: literals that start one another
        // keep their order.
        assert_eq!(ordered, order);
        listed.sort_unstable();
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        assert_eq!(listed, sorted, "the search order lists each literal once");
    }
    for (i, a) in PROGRAM_TRIGGERS.iter().enumerate() {
        for b in &PROGRAM_TRIGGERS[i + 1..] {
            assert!(!a.starts_with(b) && !b.starts_with(a), "{a} and {b}");
        }
    }
    // A literal that starts another keeps its place behind it.
    let swapped = search_order(
        vec![("secretkey", 0), ("secret", 1)],
        &["secret", "secretkey"],
    );
    assert_eq!(swapped, [("secretkey", 0), ("secret", 1)]);
    let free = search_order(vec![("token", 0), ("secret", 1)], &["secret", "token"]);
    assert_eq!(free, [("secret", 1), ("token", 0)]);
}

// ---- The lane's judgement of escaped strings ----

#[test]
fn every_literal_holding_a_byte_only_an_escape_writes_is_around() {
    let t = &*TRIGGERS;
    let (exact, short, tiny) = Triggers::token_literals();
    let (words, _) = Triggers::word_literals();
    let sets = [exact, short, tiny, words];
    let literals = sets.iter().flatten().map(|&(l, _)| l);
    let literals = literals.chain(PROGRAM_TRIGGERS).chain(["://", "\\u"]);
    let mut expected = 0;
    for l in literals {
        for (at, &byte) in l.as_bytes().iter().enumerate() {
            if Around::escaped_only(byte) {
                expected += 1;
                assert!(
                    t.around
                        .iter()
                        .any(|a| a.literal == l.as_bytes() && a.at == at && a.byte == byte),
                    "{l:?} at {at}"
                );
            }
        }
    }
    // `pwd"` and `\u` at least.
    assert!(expected >= 2);
    assert!(t.around.len() >= expected);
}

#[test]
fn escapes_that_complete_a_literal_send_the_string_to_a_search() {
    let decoded = |raw: &str| {
        let mut d = String::new();
        crate::audit::tape::decode(raw, &mut d);
        d
    };
    let sure = |raw: &str| lane::escapes_start_nothing(raw, &decoded(raw));
    // Escapes that write nothing a literal holds.
    assert!(sure(r#"{\"command\": \"cargo test\"}"#));
    assert!(sure(r#"a\tb\nc\u001fd\\e"#));
    assert!(sure("no escapes at all"));
    // A key word ending in an escaped quote, in any case; a backslash before `u`.
    assert!(!sure(r#"say pwd\": hunter2"#));
    assert!(!sure(r#"say PwD\": hunter2"#));
    assert!(!sure(r#"C:\\users"#));
    // Escapes whose byte could be anything, or that JCS never writes.
    assert!(!sure(r#"\u0070wd"#));
    assert!(!sure(r#"a\/b"#));
    // What a search of the decoded text finds, the rule never calls sure.
    let r = Redactor::builtin();
    for raw in [
        r#"say pwd\": hunter2hunter2"#,
        r#"{\"p\\u0061ssword\": \"hunter2hunter2\"}"#,
    ] {
        assert_ne!(r.redact_str(&decoded(raw)), decoded(raw), "{raw}");
        assert!(!sure(raw), "{raw}");
    }
}
