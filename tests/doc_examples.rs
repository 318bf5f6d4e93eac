//! Every `auditship …` command shown in the docs (README.md, docs/*.md, systemd/ and
//! packaging/ READMEs: the `sh` blocks) and in `auditship --help` parses with the
//! binary's own argument parser, so no example names a flag or subcommand that does
//! not exist. The ones that can run in a test (no root, no daemon, no network) then
//! run for real against a scratch home, from the README's text, and do what the README
//! says they do.

use crate::util::{cmd, tempdir};
use auditship::cli::Cli;
use clap::{CommandFactory, Parser};
use std::path::Path;

/// The doc files whose shell examples are checked.
const DOCS: [&str; 9] = [
    "README.md",
    "docs/FORMAT.md",
    "docs/REPORT.md",
    "docs/SINKS.md",
    "docs/ARCHIVE.md",
    "docs/SHAPES.md",
    "docs/SEALER.md",
    "systemd/README.md",
    "packaging/README.md",
];

/// The command lines of a text's ```sh blocks, continuations joined.
fn sh_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            in_block = !in_block && (t == "```sh" || t == "```bash" || t == "```console");
            continue;
        }
        if !in_block {
            continue;
        }
        let t = t.strip_prefix("$ ").unwrap_or(t);
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// Shell words of one line: quotes removed, a `#` at the start of a word ends it.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') if !in_word => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The `auditship` argument vector of a shell line, past `sudo [-u user]` and
/// environment assignments; `None` for a line that runs something else.
fn auditship_argv(line: &str) -> Option<Vec<String>> {
    let w = words(line);
    let mut i = 0;
    if w.get(i).map(String::as_str) == Some("sudo") {
        i += 1;
        if w.get(i).map(String::as_str) == Some("-u") {
            i += 2;
        }
    }
    while w
        .get(i)
        .is_some_and(|x| x.contains('=') && !x.starts_with('-'))
    {
        i += 1;
    }
    let program = w.get(i)?;
    (program == "auditship" || program.ends_with("/auditship")).then(|| w[i..].to_vec())
}

fn doc_examples() -> Vec<(String, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for doc in DOCS {
        let Ok(text) = std::fs::read_to_string(root.join(doc)) else {
            continue;
        };
        for line in sh_lines(&text) {
            if let Some(argv) = auditship_argv(&line) {
                out.push((format!("{doc}: {line}"), argv));
            }
        }
    }
    out
}

#[test]
fn the_line_reader_finds_commands_behind_sudo_quotes_and_comments() {
    let text = "```sh\nsudo -u auditship auditship archive --now   # as the service\nX=1 auditship verify 'a b'\ncargo build\nauditship record --decision x \\\n    --factor \"ops cost\"\n```\nauditship not-in-a-block\n";
    let found: Vec<Vec<String>> = sh_lines(text)
        .iter()
        .filter_map(|l| auditship_argv(l))
        .collect();
    assert_eq!(
        found,
        [
            vec!["auditship", "archive", "--now"],
            vec!["auditship", "verify", "a b"],
            vec![
                "auditship",
                "record",
                "--decision",
                "x",
                "--factor",
                "ops cost"
            ],
        ]
    );
}

#[test]
fn every_documented_command_parses() {
    let examples = doc_examples();
    // The README alone shows more than a dozen: finding none means the reader broke.
    assert!(examples.len() >= 12, "{examples:#?}");
    let mut bad = Vec::new();
    for (at, argv) in &examples {
        if let Err(e) = Cli::try_parse_from(argv) {
            bad.push(format!(
                "{at}\n  {}",
                e.to_string().lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "examples the binary refuses:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_command_in_the_help_text_parses() {
    let help = Cli::command().render_long_help().to_string();
    let lines: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("auditship "))
        .collect();
    assert!(lines.len() >= 5, "{help}");
    for line in lines {
        // The help aligns a description after two or more spaces.
        let command = line.split("  ").next().unwrap_or(line);
        let argv = words(command);
        assert!(
            Cli::try_parse_from(&argv).is_ok(),
            "`auditship --help` shows {command:?}, which does not parse"
        );
    }
}

/// The README example whose argument vector starts with `prefix`.
fn readme_example(prefix: &[&str]) -> Vec<String> {
    doc_examples()
        .into_iter()
        .filter(|(at, _)| at.starts_with("README.md"))
        .map(|(_, argv)| argv)
        .find(|argv| argv.iter().zip(prefix).all(|(a, p)| a == p) && argv.len() >= prefix.len())
        .unwrap_or_else(|| panic!("README shows no `{}`", prefix.join(" ")))
}

#[test]
fn the_readme_examples_for_one_user_do_what_the_readme_says() {
    let t = tempdir();
    let home = t.path();
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    let run = |argv: &[String]| {
        cmd(home)
            .args(&argv[1..])
            .env("HOME", home)
            .env_remove("AUDITSHIP_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap()
    };

    // install-hooks --dry-run writes nothing.
    let out = run(&readme_example(&[
        "auditship",
        "install-hooks",
        "--dry-run",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!home.join(".claude/settings.json").exists());
    // install-hooks writes this user's settings.
    let out = run(&readme_example(&["auditship", "install-hooks"])[..2]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(home.join(".claude/settings.json").exists());

    // record --decision appends a decision event to ~/.claude/audit.
    let out = run(&readme_example(&["auditship", "record", "--decision"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = home.join(".claude/audit");
    let files: Vec<_> = std::fs::read_dir(&audit).unwrap().flatten().collect();
    let text = files
        .iter()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|f| std::fs::read_to_string(f.path()).unwrap())
        .collect::<String>();
    assert!(
        text.contains("\"action\":\"ai_decision\"") && text.contains("use PostgreSQL"),
        "{text}"
    );

    // verify ~/.claude/audit: intact, exit 0 (the README's `~` is this home).
    let mut verify = readme_example(&["auditship", "verify"]);
    assert_eq!(verify[2], "~/.claude/audit", "{verify:?}");
    verify[2] = audit.display().to_string();
    let out = run(&verify);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // report --out FILE ~/.claude/audit: the page, with the decision, intact.
    let mut report = readme_example(&["auditship", "report"]);
    assert_eq!(
        report[2..],
        ["--out", "audit-report.html", "~/.claude/audit"],
        "{report:?}"
    );
    let page = home.join("audit-report.html");
    report[3] = page.display().to_string();
    report[4] = audit.display().to_string();
    let out = run(&report);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("Integrity: INTACT") && html.contains("use PostgreSQL"),
        "{html}"
    );
}
