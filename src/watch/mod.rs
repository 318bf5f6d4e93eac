//! Which streams and files exist. A periodic rescan is the truth; notify (inotify)
//! events are only hints that make the next rescan come sooner.
//!
//! Invariants: a source's `paths` are globs over directories, each matching directory
//! is one stream; files inside are matched by name and listed in name order. Nothing
//! is listed through a symlink that leads outside its stream directory. If the
//! watcher cannot be created or a directory cannot be watched (e.g. the inotify limit
//! is exhausted), the daemon warns once and relies on the rescan alone.

use globset::{Glob, GlobMatcher};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Warns about a refused path once per process, not on every rescan.
fn warn_once(path: &Path, msg: &'static str) {
    static SEEN: std::sync::Mutex<Option<HashSet<PathBuf>>> = std::sync::Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(path.to_path_buf())
    {
        tracing::warn!(path = %path.display(), reason = msg, "symlink refused");
    }
}

/// One file of a stream as seen by a rescan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Name inside the stream directory (as reported in `_auditship.file`).
    pub name: String,
    /// Where to open it: the entry itself, or a symlink's target inside the directory.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// A stream directory and its files in name order.
#[derive(Debug, Clone)]
pub struct StreamListing {
    pub source: usize,
    pub dir: PathBuf,
    pub files: Vec<Listed>,
}

/// Expands a directory glob (`/home/*/.claude/audit`) component by component.
///
/// Components before the first glob are the operator's and may be symlinks. From the
/// first glob on, paths belong to whoever owns the matched directories (each user's
/// home): there no component may be a symlink, or a user could point their "audit
/// directory" at files they cannot read and have the daemon ship them.
pub fn expand_dirs(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from(if pattern.starts_with('/') {
        "/"
    } else {
        "."
    })];
    let mut untrusted = false;
    for comp in Path::new(pattern).components() {
        use std::path::Component;
        let part = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir => {
                current.iter_mut().for_each(|p| p.push(".."));
                continue;
            }
            Component::Normal(s) => s.to_string_lossy().into_owned(),
            Component::Prefix(_) => continue,
        };
        let is_glob = part.contains(['*', '?', '[', '{']);
        untrusted |= is_glob;
        let mut next = Vec::new();
        if is_glob {
            let Ok(glob) = Glob::new(&part) else {
                return Vec::new();
            };
            let m = glob.compile_matcher();
            for base in &current {
                let Ok(rd) = std::fs::read_dir(base) else {
                    continue;
                };
                let mut found: Vec<PathBuf> = rd
                    .filter_map(Result::ok)
                    .filter(|e| m.is_match(e.file_name()))
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect();
                found.sort();
                next.extend(found);
            }
        } else {
            next = current.iter().map(|b| b.join(&part)).collect();
        }
        if untrusted {
            next.retain(|p| {
                let link = std::fs::symlink_metadata(p)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(true);
                if link {
                    warn_once(p, "not following a symlink below a directory glob");
                }
                !link
            });
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current.retain(|p| p.is_dir());
    current
}

/// Lists the files of a stream directory matching `files`, in name order.
/// Symlinks are followed only to regular files inside `dir` itself.
pub fn list_files(dir: &Path, files: &GlobMatcher) -> std::io::Result<Vec<Listed>> {
    let canon_dir = std::fs::canonicalize(dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !files.is_match(&name) {
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        let path = if ft.is_symlink() {
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if target.parent() == Some(canon_dir.as_path()) => target,
                _ => {
                    warn_once(
                        &entry.path(),
                        "not following a symlink that leads outside its stream directory",
                    );
                    continue;
                }
            }
        } else if ft.is_file() {
            entry.path()
        } else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Listed {
            name,
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Notify-based hints: a wake-up whenever something changes in a watched directory.
pub struct Hints {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    warned: bool,
    rx: mpsc::Receiver<()>,
    tx: mpsc::SyncSender<()>,
}

impl Hints {
    pub fn new() -> Hints {
        let (tx, rx) = mpsc::sync_channel::<()>(1);
        let hint = tx.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Opening and reading (our own rescans and reads among them) are not
            // changes: only creations, writes, renames and removals wake the reader.
            let changed = match &res {
                Ok(e) => !matches!(e.kind, notify::EventKind::Access(_)),
                Err(_) => true,
            };
            if changed {
                // Coalesce: one pending wake-up is enough.
                let _ = hint.try_send(());
            }
        });
        let mut warned = false;
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file notifications unavailable; relying on the periodic rescan");
                warned = true;
                None
            }
        };
        Hints {
            watcher,
            watched: HashSet::new(),
            warned,
            rx,
            tx,
        }
    }

    /// A handle that wakes the waiting reader (e.g. to stop it promptly).
    pub fn waker(&self) -> Waker {
        Waker(self.tx.clone())
    }

    /// Watches the given directories (non-recursively); stops watching others.
    pub fn watch(&mut self, dirs: &[PathBuf]) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let want: HashSet<PathBuf> = dirs.iter().cloned().collect();
        for gone in self.watched.difference(&want).cloned().collect::<Vec<_>>() {
            let _ = w.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for d in dirs {
            if self.watched.contains(d) {
                continue;
            }
            match w.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d.clone());
                }
                Err(e) if !self.warned => {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory (inotify limit?); relying on the periodic rescan");
                    self.warned = true;
                }
                Err(_) => {}
            }
        }
    }

    /// Waits for a hint or the timeout. Returns true if woken by a hint.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        self.rx.recv_timeout(timeout).is_ok()
    }
}

/// Wakes a [`Hints::wait`] from another thread.
#[derive(Clone)]
pub struct Waker(mpsc::SyncSender<()>);

impl Waker {
    pub fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

impl Default for Hints {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_globs_expand_per_component() {
        let t = tempfile::tempdir().unwrap();
        for u in ["alice", "bob"] {
            std::fs::create_dir_all(t.path().join(u).join(".claude/audit")).unwrap();
        }
        std::fs::create_dir_all(t.path().join("carol")).unwrap();
        let got = expand_dirs(&format!("{}/*/.claude/audit", t.path().display()));
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("alice/.claude/audit"));
        assert!(expand_dirs(&format!("{}/nobody/x", t.path().display())).is_empty());
    }

    #[test]
    fn symlinks_below_a_glob_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("root-only");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::create_dir_all(t.path().join("home/alice/.claude")).unwrap();
        std::os::unix::fs::symlink(&secret, t.path().join("home/alice/.claude/audit")).unwrap();
        std::fs::create_dir_all(t.path().join("home/bob/.claude/audit")).unwrap();
        std::os::unix::fs::symlink(t.path().join("home/bob"), t.path().join("home/carol")).unwrap();
        let got = expand_dirs(&format!("{}/home/*/.claude/audit", t.path().display()));
        assert_eq!(got, [t.path().join("home/bob/.claude/audit")]);
        // Before any glob, the operator's own symlinks are followed.
        std::os::unix::fs::symlink(
            t.path().join("home/bob/.claude"),
            t.path().join("bob-claude"),
        )
        .unwrap();
        assert_eq!(
            expand_dirs(&format!("{}/bob-claude/audit", t.path().display())).len(),
            1
        );
    }

    #[test]
    fn symlinks_outside_the_directory_are_not_listed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("audit");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.jsonl"), "x\n").unwrap();
        std::fs::write(t.path().join("secret.jsonl"), "y\n").unwrap();
        std::os::unix::fs::symlink(t.path().join("secret.jsonl"), dir.join("b.jsonl")).unwrap();
        std::os::unix::fs::symlink(dir.join("a.jsonl"), dir.join("c.jsonl")).unwrap();
        std::fs::write(dir.join("notes.txt"), "z\n").unwrap();
        let m = Glob::new("*.jsonl").unwrap().compile_matcher();
        let names: Vec<String> = list_files(&dir, &m)
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(names, ["a.jsonl", "c.jsonl"]);
    }
}
