//! Which streams and files exist. A periodic rescan is the truth; notify (inotify)
//! events are only hints that make the next rescan come sooner.
//!
//! Invariants: a source's `paths` are globs over directories, each matching directory
//! is one stream; files inside are matched by name and listed in name order. Every
//! stream directory is found and held by descriptor ([`Dir`]), and its files are
//! opened relative to that descriptor, checked against the device and inode the
//! listing saw: a path component swapped for a symlink after the listing is never
//! followed. Symlinks are followed only where [`expand_dirs`] and [`list_files`] say;
//! every other one is reported as [`Refused`] (the reader counts it and ships a
//! record). If the watcher cannot be created or a directory cannot be watched (e.g.
//! the inotify limit is exhausted), the daemon warns once and relies on the rescan
//! alone.

mod dir;

pub use dir::{Dir, Stat};

use globset::{Glob, GlobMatcher};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;

/// One file of a stream as seen by a rescan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Name inside the stream directory (as reported in `_auditship.file`).
    pub name: String,
    /// When the entry is a symlink to another file of the same directory: that
    /// file's name, which is what is opened.
    pub target: Option<String>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

impl Listed {
    /// The directory entry to open: the file itself, or the one its symlink names.
    pub fn entry(&self) -> &OsStr {
        OsStr::new(self.target.as_deref().unwrap_or(&self.name))
    }
}

/// A stream directory: its path as the pattern found it (the stream's name) and the
/// directory itself, held open.
#[derive(Debug)]
pub struct StreamDir {
    pub path: PathBuf,
    pub dir: Dir,
}

/// A stream directory and its files in name order.
#[derive(Debug)]
pub struct StreamListing {
    pub source: usize,
    pub dir: PathBuf,
    /// The directory the files were listed from: they are opened relative to it.
    pub handle: Dir,
    pub files: Vec<Listed>,
}

impl StreamListing {
    /// Whether the directory holds now a regular file matching `files` that the
    /// listing does not have (under that name, as that inode): files came since.
    /// Symlinks are not looked at (a refused one is never listed).
    pub fn outdated(&self, files: &GlobMatcher) -> std::io::Result<bool> {
        for name in self.handle.names()? {
            let Ok(name) = name.into_string() else {
                continue;
            };
            if !files.is_match(&name) {
                continue;
            }
            let Ok(st) = self.handle.stat_at(OsStr::new(&name)) else {
                continue;
            };
            if !st.is_file() {
                continue;
            }
            let listed = self.files.iter().find(|f| f.name == name);
            if listed.is_none_or(|f| (f.dev, f.ino) != (st.dev, st.ino)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// What a refused symlink was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    /// A component of a stream directory's path, below a directory glob.
    Directory,
    /// A file entry of a stream directory.
    File,
}

impl RefusedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedKind::Directory => "directory",
            RefusedKind::File => "file",
        }
    }
}

/// A symlink that was not followed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The link itself, as the pattern reached it.
    pub path: PathBuf,
    pub kind: RefusedKind,
    /// The link's text.
    pub target: PathBuf,
    pub reason: String,
    /// Owners: of the directory holding the link, of the link, of what it leads to.
    pub dir_uid: Option<u32>,
    pub link_uid: Option<u32>,
    pub target_uid: Option<u32>,
}

fn is_glob(part: &OsStr) -> bool {
    part.to_string_lossy().contains(['*', '?', '[', '{'])
}

/// Expands a directory glob (`/home/*/.claude/audit`) component by component, each
/// directory entered by descriptor relative to the one before.
///
/// Components before the first glob are the operator's: they are opened as a path,
/// symlinks and all. From the first glob on, paths belong to whoever owns the matched
/// directories (each user's home), and a component that is a symlink is followed
/// only when [`follow_rule`] allows it; any other symlink is added to `refused`.
pub fn expand_dirs(pattern: &str, refused: &mut Vec<Refused>) -> Vec<StreamDir> {
    let comps: Vec<Component<'_>> = Path::new(pattern).components().collect();
    let first_glob = comps
        .iter()
        .position(|c| matches!(c, Component::Normal(s) if is_glob(s)))
        .unwrap_or(comps.len());
    let (prefix, rest) = comps.split_at(first_glob);
    let mut root: PathBuf = prefix.iter().collect();
    if root.as_os_str().is_empty() {
        root = PathBuf::from(".");
    }
    let Ok(dir) = Dir::open(&root) else {
        return Vec::new();
    };
    let mut current = vec![StreamDir { path: root, dir }];
    for comp in rest {
        let mut next = Vec::new();
        match comp {
            Component::Normal(part) if is_glob(part) => {
                let Ok(glob) = Glob::new(&part.to_string_lossy()) else {
                    return Vec::new();
                };
                let m = glob.compile_matcher();
                for base in &current {
                    let Ok(mut names) = base.dir.names() else {
                        continue;
                    };
                    names.retain(|n| m.is_match(n));
                    names.sort();
                    next.extend(names.iter().filter_map(|n| enter(base, n, refused)));
                }
            }
            Component::Normal(part) => {
                next.extend(current.iter().filter_map(|b| enter(b, part, refused)));
            }
            Component::ParentDir => {
                for base in &current {
                    if let Ok(dir) = base.dir.sub_dir(OsStr::new("..")) {
                        next.push(StreamDir {
                            path: base.path.join(".."),
                            dir,
                        });
                    }
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {
                next = std::mem::take(&mut current);
            }
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current
}

/// The directory `name` in `base`: a directory entered without following anything,
/// or a symlink the rule allows. `None` when it is neither (absent, a file, refused).
fn enter(base: &StreamDir, name: &OsStr, refused: &mut Vec<Refused>) -> Option<StreamDir> {
    let path = base.path.join(name);
    let st = base.dir.stat_at(name).ok()?;
    if st.is_dir() {
        let dir = base.dir.sub_dir(name).ok()?;
        return Some(StreamDir { path, dir });
    }
    if !st.is_symlink() {
        return None;
    }
    let dir = match base.dir.follow_dir(name) {
        Ok(d) => d,
        // Leads to nothing, or to something that is not a directory: no stream there.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            return None;
        }
        Err(e) => {
            refused.push(Refused {
                target: base.dir.read_link(name).unwrap_or_default(),
                reason: format!("not following a symlink whose target cannot be opened: {e}"),
                dir_uid: base.dir.stat().ok().map(|s| s.uid),
                link_uid: Some(st.uid),
                target_uid: None,
                path,
                kind: RefusedKind::Directory,
            });
            return None;
        }
    };
    let owner = base.dir.stat().ok()?.uid;
    let target = dir.stat().ok()?;
    match follow_rule(owner, st.uid, target.uid) {
        Ok(()) => Some(StreamDir { path, dir }),
        Err(reason) => {
            refused.push(Refused {
                target: base.dir.read_link(name).unwrap_or_default(),
                reason,
                dir_uid: Some(owner),
                link_uid: Some(st.uid),
                target_uid: Some(target.uid),
                path,
                kind: RefusedKind::Directory,
            });
            None
        }
    }
}

/// Whether a symlinked component below a directory glob is followed.
///
/// The home's owner is the owner of the directory that holds the link (for
/// `/home/alice/.claude`, the owner of `/home/alice`; for `.claude/audit`, the owner
/// of the directory `.claude` led to). The link is followed when the directory it
/// finally leads to (after every further symlink, as opened) is owned by that user,
/// and the link itself was made by that user or by root. So a user may point their
/// own `.claude` at a directory of their own (a dotfile manager does), but never at
/// another user's directory or a system one, and nobody else's link in a shared
/// directory counts as theirs.
pub fn follow_rule(dir_uid: u32, link_uid: u32, target_uid: u32) -> Result<(), String> {
    if link_uid != dir_uid && link_uid != 0 {
        return Err(format!(
            "not following a symlink owned by uid {link_uid} in a directory owned by uid {dir_uid}"
        ));
    }
    if target_uid != dir_uid {
        return Err(format!(
            "not following a symlink to a directory owned by uid {target_uid}: only directories of uid {dir_uid}, who owns the directory holding the link, are followed"
        ));
    }
    Ok(())
}

/// Lists the files of a stream directory matching `files`, in name order, by
/// descriptor. A symlink is listed only when it leads to a regular file of the same
/// directory (then that file is what gets opened); any other is added to `refused`.
pub fn list_files(
    sd: &StreamDir,
    files: &GlobMatcher,
    refused: &mut Vec<Refused>,
) -> std::io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for name in sd.dir.names()? {
        let Ok(name) = name.into_string() else {
            continue;
        };
        if !files.is_match(&name) {
            continue;
        }
        let Ok(st) = sd.dir.stat_at(OsStr::new(&name)) else {
            continue;
        };
        let (target, st) = if st.is_file() {
            (None, st)
        } else if st.is_symlink() {
            match sibling(&sd.dir, &name) {
                Some((t, st)) => (Some(t), st),
                None => {
                    refused.push(Refused {
                        path: sd.path.join(&name),
                        kind: RefusedKind::File,
                        target: sd.dir.read_link(OsStr::new(&name)).unwrap_or_default(),
                        reason: "not following a symlink that leads outside its stream directory"
                            .into(),
                        dir_uid: sd.dir.stat().ok().map(|s| s.uid),
                        link_uid: Some(st.uid),
                        target_uid: sd.dir.stat_follow(OsStr::new(&name)).ok().map(|s| s.uid),
                    });
                    continue;
                }
            }
        } else {
            continue;
        };
        out.push(Listed {
            name,
            target,
            dev: st.dev,
            ino: st.ino,
            size: st.size,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The file of the same directory the symlink `name` leads to, if it does: the
/// link's last component names a regular file here, and following the link reaches
/// that very inode.
fn sibling(dir: &Dir, name: &str) -> Option<(String, Stat)> {
    let text = dir.read_link(OsStr::new(name)).ok()?;
    let last = text.file_name()?.to_str()?.to_owned();
    let here = dir.stat_at(OsStr::new(&last)).ok()?;
    let reached = dir.stat_follow(OsStr::new(name)).ok()?;
    (here.is_file() && reached.is(here.dev, here.ino)).then_some((last, here))
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
    use std::os::unix::fs::{chown, lchown, symlink};

    /// A refusal as (path, directory's owner, link's owner, target's owner).
    type Owners = (PathBuf, Option<u32>, Option<u32>, Option<u32>);

    fn paths(dirs: &[StreamDir]) -> Vec<PathBuf> {
        dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// Creates `path` and its missing parents below `base`, all owned by `uid`.
    fn mkdirs_owned(base: &Path, rel: &str, uid: u32) -> PathBuf {
        let mut p = base.to_path_buf();
        for c in Path::new(rel).components() {
            p.push(c);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap();
                chown(&p, Some(uid), Some(uid)).unwrap();
            }
        }
        p
    }

    #[test]
    fn a_listing_is_outdated_by_a_new_or_replaced_file_not_by_a_refused_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a.jsonl"), "x\n").unwrap();
        symlink("/etc/hostname", t.path().join("out.jsonl")).unwrap();
        let files = globset::Glob::new("*.jsonl").unwrap().compile_matcher();
        let list = || {
            let mut found = Vec::new();
            let sd = expand_dirs(&t.path().display().to_string(), &mut found)
                .pop()
                .unwrap();
            let files = list_files(&sd, &files, &mut found).unwrap();
            assert_eq!(found.len(), 1, "the symlink leading out is refused");
            StreamListing {
                source: 0,
                dir: sd.path,
                handle: sd.dir,
                files,
            }
        };
        let listing = list();
        assert!(!listing.outdated(&files).unwrap());
        std::fs::write(t.path().join("other.txt"), "").unwrap();
        assert!(!listing.outdated(&files).unwrap(), "not a stream file");
        std::fs::write(t.path().join("a.jsonl.1"), "").unwrap();
        std::fs::write(t.path().join("b.jsonl"), "x\n").unwrap();
        assert!(listing.outdated(&files).unwrap(), "a new file");
        let listing = list();
        std::fs::remove_file(t.path().join("b.jsonl")).unwrap();
        assert!(
            !listing.outdated(&files).unwrap(),
            "a file gone is no new file"
        );
        std::fs::write(t.path().join("c"), "y\n").unwrap();
        std::fs::rename(t.path().join("c"), t.path().join("a.jsonl")).unwrap();
        assert!(
            listing.outdated(&files).unwrap(),
            "another inode under a name"
        );
    }

    #[test]
    fn dir_globs_expand_per_component() {
        let t = tempfile::tempdir().unwrap();
        for u in ["alice", "bob"] {
            std::fs::create_dir_all(t.path().join(u).join(".claude/audit")).unwrap();
        }
        std::fs::create_dir_all(t.path().join("carol")).unwrap();
        std::fs::write(t.path().join("file"), "").unwrap();
        let mut refused = Vec::new();
        let got = expand_dirs(
            &format!("{}/*/.claude/audit", t.path().display()),
            &mut refused,
        );
        assert_eq!(got.len(), 2);
        assert!(got[0].path.ends_with("alice/.claude/audit"));
        assert!(got[0].dir.stat().unwrap().is_dir());
        assert!(expand_dirs(&format!("{}/nobody/x", t.path().display()), &mut refused).is_empty());
        assert!(refused.is_empty());
    }

    #[test]
    fn symlinks_below_a_glob_follow_the_home_owners_rule() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let home = mkdirs_owned(root, "home", 0);
        let secret = mkdirs_owned(root, "root-only", 0);
        // alice: .claude/audit leads to a root-owned directory.
        mkdirs_owned(root, "home/alice/.claude", 1001);
        symlink(&secret, home.join("alice/.claude/audit")).unwrap();
        lchown(home.join("alice/.claude/audit"), Some(1001), None).unwrap();
        // bob: a plain directory.
        mkdirs_owned(root, "home/bob/.claude/audit", 1002);
        // carol: a home that is a link to bob's.
        symlink(home.join("bob"), home.join("carol")).unwrap();
        // dave: .claude is his own link to his own dotfiles.
        mkdirs_owned(root, "dotfiles/dave/audit", 1003);
        mkdirs_owned(root, "home/dave", 1003);
        symlink(root.join("dotfiles/dave"), home.join("dave/.claude")).unwrap();
        lchown(home.join("dave/.claude"), Some(1003), None).unwrap();
        // erin: a link to her own directory, but made by another user.
        mkdirs_owned(root, "dotfiles/erin/audit", 1004);
        mkdirs_owned(root, "home/erin", 1004);
        symlink(root.join("dotfiles/erin"), home.join("erin/.claude")).unwrap();
        lchown(home.join("erin/.claude"), Some(1005), None).unwrap();
        // frank: root provisioned the link, to frank's directory.
        mkdirs_owned(root, "dotfiles/frank/audit", 1006);
        mkdirs_owned(root, "home/frank", 1006);
        symlink(root.join("dotfiles/frank"), home.join("frank/.claude")).unwrap();
        // gina: a link to bob's .claude, through a link of her own.
        mkdirs_owned(root, "home/gina", 1007);
        symlink(home.join("bob/.claude"), home.join("gina/hop")).unwrap();
        lchown(home.join("gina/hop"), Some(1007), None).unwrap();
        symlink("hop", home.join("gina/.claude")).unwrap();
        lchown(home.join("gina/.claude"), Some(1007), None).unwrap();
        // henry: a dangling link is no stream, and no refusal either.
        mkdirs_owned(root, "home/henry", 1008);
        symlink(root.join("nowhere"), home.join("henry/.claude")).unwrap();

        let mut refused = Vec::new();
        let got = expand_dirs(
            &format!("{}/home/*/.claude/audit", root.display()),
            &mut refused,
        );
        assert_eq!(
            paths(&got),
            [
                home.join("bob/.claude/audit"),
                home.join("dave/.claude/audit"),
                home.join("frank/.claude/audit"),
            ]
        );
        let mut r: Vec<Owners> = refused
            .iter()
            .map(|r| (r.path.clone(), r.dir_uid, r.link_uid, r.target_uid))
            .collect();
        r.sort();
        assert_eq!(
            r,
            [
                (
                    home.join("alice/.claude/audit"),
                    Some(1001),
                    Some(1001),
                    Some(0)
                ),
                (home.join("carol"), Some(0), Some(0), Some(1002)),
                (
                    home.join("erin/.claude"),
                    Some(1004),
                    Some(1005),
                    Some(1004)
                ),
                (
                    home.join("gina/.claude"),
                    Some(1007),
                    Some(1007),
                    Some(1002)
                ),
            ]
        );
        assert!(refused.iter().all(|r| r.kind == RefusedKind::Directory));
        let alice = refused
            .iter()
            .find(|r| r.path == home.join("alice/.claude/audit"))
            .unwrap();
        assert_eq!(alice.target, secret);
        // The followed directory is held: what it is, not what its path is now.
        let dave = got[1].dir.stat().unwrap();
        assert_eq!(dave.uid, 1003);
        // Before any glob, the operator's own symlinks are followed.
        symlink(home.join("bob/.claude"), root.join("bob-claude")).unwrap();
        assert_eq!(
            expand_dirs(
                &format!("{}/bob-claude/audit", root.display()),
                &mut refused
            )
            .len(),
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
        symlink(t.path().join("secret.jsonl"), dir.join("b.jsonl")).unwrap();
        symlink(dir.join("a.jsonl"), dir.join("c.jsonl")).unwrap();
        symlink("a.jsonl", dir.join("d.jsonl")).unwrap();
        std::fs::write(dir.join("notes.txt"), "z\n").unwrap();
        let m = Glob::new("*.jsonl").unwrap().compile_matcher();
        let mut refused = Vec::new();
        let sd = StreamDir {
            dir: Dir::open(&dir).unwrap(),
            path: dir.clone(),
        };
        let listed = list_files(&sd, &m, &mut refused).unwrap();
        let names: Vec<(&str, &OsStr)> = listed.iter().map(|l| (&*l.name, l.entry())).collect();
        assert_eq!(
            names,
            [
                ("a.jsonl", OsStr::new("a.jsonl")),
                ("c.jsonl", OsStr::new("a.jsonl")),
                ("d.jsonl", OsStr::new("a.jsonl")),
            ]
        );
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].path, dir.join("b.jsonl"));
        assert_eq!(refused[0].kind, RefusedKind::File);
    }
}
