//! Whether the daemon reads what `record` writes: a `[record] dir` that no
//! `[[source]]` covers is recorded but never shipped, and nothing else would say so.
//!
//! A source's `paths` are matched the way the watcher expands them
//! ([`crate::watch::expand_dirs`]): component by component, a glob matching within
//! one component only; its `files` glob must take the names `record` writes.
//! `record` runs as each developer, so a directory in the home directory (`~/…`,
//! or written out under the daemon's own home) is covered by a pattern for any home:
//! `/home/*/.claude/audit` covers `~/.claude/audit`.

use super::Config;
use super::daemon::DaemonConfig;
use globset::Glob;
use std::path::{Component, Path};

/// A file name of the kind `record` writes (`audit-YYYY-MM-DD.jsonl`).
const RECORD_FILE: &str = "audit-2000-01-01.jsonl";

/// The warning for a `[record] dir` no source covers, or `None`.
pub fn record_dir_warning(cfg: &Config, daemon: &DaemonConfig) -> Option<String> {
    let dir = &cfg.record.dir;
    let home = std::env::var_os("HOME").filter(|h| h.len() > 1);
    let in_home = home
        .as_ref()
        .and_then(|h| dir.strip_prefix(h).ok())
        .filter(|rest| !rest.as_os_str().is_empty());
    let covered = daemon.sources.iter().any(|s| {
        s.paths
            .iter()
            .any(|p| covers(p, dir) || in_home.is_some_and(|rest| covers_in_a_home(p, rest)))
            && Glob::new(&s.files).is_ok_and(|g| g.compile_matcher().is_match(RECORD_FILE))
    });
    (!covered).then(|| {
        format!(
            "record.dir: {} is covered by no [[source]] (paths and files): events recorded there are never shipped; add it to a source's paths",
            dir.display()
        )
    })
}

/// Whether the directory glob `pattern` matches `dir`.
pub fn covers(pattern: &str, dir: &Path) -> bool {
    let pattern: Vec<Component<'_>> = Path::new(pattern).components().collect();
    let dir: Vec<Component<'_>> = dir.components().collect();
    pattern.len() == dir.len() && matches(&pattern, &dir)
}

/// Whether `pattern` matches `<a home>/<rest>` for some home: its last components
/// match `rest`, and at least one component comes before them.
pub fn covers_in_a_home(pattern: &str, rest: &Path) -> bool {
    let pattern: Vec<Component<'_>> = Path::new(pattern).components().collect();
    let rest: Vec<Component<'_>> = rest.components().collect();
    pattern.len() > rest.len() + 1 && matches(&pattern[pattern.len() - rest.len()..], &rest)
}

fn matches(pattern: &[Component<'_>], dir: &[Component<'_>]) -> bool {
    pattern.iter().zip(dir).all(|(p, d)| match (p, d) {
        (Component::Normal(p), Component::Normal(d)) => {
            let p = p.to_string_lossy();
            if p.contains(['*', '?', '[', '{']) {
                Glob::new(&p).is_ok_and(|g| g.compile_matcher().is_match(d))
            } else {
                *p == *d.to_string_lossy()
            }
        }
        (p, d) => p == d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_matches_within_one_component() {
        let dir = Path::new("/home/ann/.claude/audit");
        assert!(covers("/home/*/.claude/audit", dir));
        assert!(covers("/home/ann/.claude/audit", dir));
        assert!(covers("/home/ann/.claude/audit/", dir));
        assert!(!covers("/home/*/.claude", dir));
        assert!(!covers("/*/.claude/audit", dir));
        assert!(!covers("/home/bob/.claude/audit", dir));
        assert!(covers("/home/{ann,bob}/.claude/aud?t", dir));
    }

    #[test]
    fn a_home_directory_is_covered_by_a_pattern_for_every_home() {
        let rest = Path::new(".claude/audit");
        assert!(covers_in_a_home("/home/*/.claude/audit", rest));
        assert!(covers_in_a_home("/Users/*/.claude/audit", rest));
        assert!(!covers_in_a_home("/home/*/.claude/other", rest));
        assert!(!covers_in_a_home("/.claude/audit", rest));
    }
}
