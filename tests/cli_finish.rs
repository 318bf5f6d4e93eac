//! The command line's finish: shell completions, manual pages, and examples in every
//! subcommand's `--help`. The list of subcommands comes from the clap definition
//! itself, so a new subcommand is checked without touching this file.

use crate::util::*;
use clap::CommandFactory;
use std::process::Output;

/// Every subcommand path, nested ones included (`["dead-letter", "list"]`), hidden ones
/// included when `hidden`; clap's own `help` left out.
fn subcommand_paths(hidden: bool) -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], hidden: bool, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" || (sub.is_hide_set() && !hidden) {
                continue;
            }
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_owned());
            out.push(path.clone());
            walk(sub, &path, hidden, out);
        }
    }
    let mut out = Vec::new();
    walk(&auditship::cli::Cli::command(), &[], hidden, &mut out);
    out
}

fn run(args: &[&str]) -> Output {
    let t = tempdir();
    cmd(t.path()).args(args).output().unwrap()
}

fn stdout_ok(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "auditship {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_subcommand_list_is_complete() {
    let names: Vec<String> = subcommand_paths(true)
        .into_iter()
        .map(|p| p.join(" "))
        .collect();
    for expected in [
        "run",
        "check-config",
        "record",
        "verify",
        "install-hooks",
        "dead-letter",
        "dead-letter list",
        "dead-letter replay",
        "dead-letter purge",
        "archive",
        "completions",
        "man",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
}

#[test]
fn every_subcommand_help_has_examples() {
    let mut paths = subcommand_paths(true);
    paths.push(Vec::new()); // the top level: its examples are headed "Typical use:"
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout_ok(&args);
        let heading = if path.is_empty() {
            "Typical use:"
        } else {
            "Examples:"
        };
        let after: Vec<&str> = help
            .lines()
            .skip_while(|l| *l != heading)
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        let prefix = format!("auditship {}", path.join(" "));
        assert!(
            !after.is_empty() && after.iter().any(|l| l.contains(prefix.trim_end())),
            "auditship {}: no {heading} section with an example that runs it:\n{help}",
            path.join(" ")
        );
    }
}

#[test]
fn bash_completion_offers_every_visible_subcommand() {
    let script = stdout_ok(&["completions", "bash"]);
    let visible = subcommand_paths(false);
    for path in &visible {
        assert!(
            script.contains(path.last().unwrap().as_str()),
            "{path:?} missing from the bash script"
        );
    }
    // Run the script in a real bash: the completion of a partial word is the command.
    let t = tempdir();
    let file = t.path().join("auditship.bash");
    std::fs::write(&file, &script).unwrap();
    let complete = |words: &str| -> Vec<String> {
        let prog = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _auditship auditship \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = std::process::Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &prog])
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(complete("auditship ver"), ["verify"]);
    assert_eq!(complete("auditship dead-letter l"), ["list"]);
    let shells = complete("auditship completions ''");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        assert!(shells.iter().any(|s| s == shell), "{shell}: {shells:?}");
    }
    let top = complete("auditship ''");
    for path in visible.iter().filter(|p| p.len() == 1) {
        assert!(top.contains(&path[0]), "{path:?}: {top:?}");
    }
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for (shell, marker) in [
        ("zsh", "#compdef auditship"),
        ("fish", "complete -c auditship"),
        ("elvish", "edit:completion:arg-completer[auditship]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = stdout_ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for name in ["run", "check-config", "verify", "dead-letter", "archive"] {
            assert!(script.contains(name), "{shell}: {name} missing");
        }
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}

#[test]
fn the_man_page_is_roff_and_lists_every_subcommand() {
    let page = stdout_ok(&["man"]);
    let mut lines = page
        .lines()
        .filter(|l| !l.starts_with(".ie") && !l.starts_with(".el"));
    assert!(
        lines.next().unwrap().starts_with(".TH auditship 1 "),
        "{page}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
        assert!(page.lines().any(|l| l == section), "{section}: {page}");
    }
    for path in subcommand_paths(false).iter().filter(|p| p.len() == 1) {
        let reference = format!("auditship\\-{}(1)", path[0].replace('-', "\\-"));
        assert!(page.contains(&reference), "{reference} missing:\n{page}");
    }
    assert!(
        !page.contains("auditship\\-man(1)"),
        "hidden command listed"
    );
    assert!(!page.contains("auditship\\-help(1)"), "clap's help listed");
    // The examples travel into the page.
    assert!(page.contains("auditship install\\-hooks"), "{page}");
}

#[test]
fn man_dir_writes_a_page_per_subcommand() {
    let t = tempdir();
    let dir = t.path().join("man");
    let listed = stdout_ok(&["man", "--dir", dir.to_str().unwrap()]);
    let mut expected: Vec<String> = subcommand_paths(false)
        .iter()
        .map(|p| format!("auditship-{}.1", p.join("-")))
        .collect();
    expected.push("auditship.1".into());
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, expected);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");
    let list = std::fs::read_to_string(dir.join("auditship-dead-letter-list.1")).unwrap();
    assert!(
        list.contains(&format!(
            ".TH auditship-dead-letter-list 1  \"auditship {}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{list}"
    );
    assert!(list.contains("\\-\\-records"), "{list}");
    assert!(list.contains("Examples:"), "{list}");
}
