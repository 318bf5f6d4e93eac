//! A directory held open by descriptor, and the file operations done relative to it.
//!
//! Paths are checked once and then used many times; between the check and the use a
//! component can be swapped for a symlink. Holding the directory's descriptor from
//! the moment it was listed, and naming entries only relative to it, closes that
//! window: `openat`, `fstatat`, `renameat`, `unlinkat` and `mkdirat` act on the
//! directory that was checked, whatever its path has become since.
//!
//! Invariants: every name passed here is one path component (no `/`); no operation
//! follows a symlink at that name, except [`Dir::follow_dir`] and [`Dir::stat_follow`],
//! whose callers check what they reach. A file opened for reading is a regular file,
//! and when the caller knows its device and inode from a listing, that same file.
//! Nothing here decides policy (which symlinks may be followed): `watch` does.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// An open directory.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// What `fstat`/`fstatat` tell of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub mode: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Stat {
    fn from(st: &libc::stat) -> Stat {
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            mode: st.st_mode,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }

    fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    pub fn is_file(&self) -> bool {
        self.kind() == libc::S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }

    /// The same file as a listing saw: device and inode.
    pub fn is(&self, dev: u64, ino: u64) -> bool {
        self.dev == dev && self.ino == ino
    }

    pub fn modified(&self) -> SystemTime {
        let nanos = Duration::from_nanos(self.mtime_nsec.clamp(0, 999_999_999) as u64);
        if self.mtime >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(self.mtime as u64) + nanos
        } else {
            SystemTime::UNIX_EPOCH - Duration::from_secs(self.mtime.unsigned_abs()) + nanos
        }
    }
}

/// One path component as a C string; anything that would walk further is refused.
fn component(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single path component"),
        ));
    }
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The result of a libc call returning -1 on error.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Retries a call interrupted by a signal.
fn retry(mut f: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match check(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;

impl Dir {
    /// Opens a directory by path, following symlinks: for paths the operator wrote.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: open reads the NUL-terminated path; the descriptor is owned below.
        let fd = retry(|| unsafe { libc::open(c.as_ptr(), DIR_FLAGS) })?;
        // SAFETY: fd was just returned by open and is not owned elsewhere.
        Ok(Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn openat(&self, name: &OsStr, flags: libc::c_int, mode: libc::c_uint) -> io::Result<OwnedFd> {
        let c = component(name)?;
        // SAFETY: openat reads the NUL-terminated name relative to our descriptor.
        let fd = retry(|| unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode) })?;
        // SAFETY: fd was just returned by openat and is not owned elsewhere.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// The directory itself.
    pub fn stat(&self) -> io::Result<Stat> {
        fstat(self.fd.as_raw_fd())
    }

    /// The entry `name`, not following a symlink.
    pub fn stat_at(&self, name: &OsStr) -> io::Result<Stat> {
        self.fstatat(name, libc::AT_SYMLINK_NOFOLLOW)
    }

    /// What `name` leads to, following symlinks (the caller checks where it landed).
    pub fn stat_follow(&self, name: &OsStr) -> io::Result<Stat> {
        self.fstatat(name, 0)
    }

    fn fstatat(&self, name: &OsStr, flags: libc::c_int) -> io::Result<Stat> {
        let c = component(name)?;
        // SAFETY: a zeroed stat is a valid buffer for fstatat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat reads the name and writes only to `st`.
        retry(|| unsafe { libc::fstatat(self.fd.as_raw_fd(), c.as_ptr(), &mut st, flags) })?;
        Ok(Stat::from(&st))
    }

    /// The directory entry `name`, which must be a directory and not a symlink.
    pub fn sub_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = self.openat(name, DIR_FLAGS | libc::O_NOFOLLOW, 0)?;
        Ok(Dir { fd })
    }

    /// The directory `name` leads to, following symlinks. The caller decides, from the
    /// descriptor's own `stat`, whether it may be used.
    pub fn follow_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = self.openat(name, DIR_FLAGS, 0)?;
        Ok(Dir { fd })
    }

    /// The text of the symlink `name`.
    pub fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
        let c = component(name)?;
        let mut buf = vec![0u8; 512];
        loop {
            // SAFETY: readlinkat writes at most buf.len() bytes into buf.
            let n = unsafe {
                libc::readlinkat(
                    self.fd.as_raw_fd(),
                    c.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            if n < buf.len() {
                buf.truncate(n);
                return Ok(PathBuf::from(OsString::from_vec(buf)));
            }
            buf.resize(buf.len() * 2, 0);
        }
    }

    /// The names in the directory (without `.` and `..`), in no particular order.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // A fresh open of "." has its own position: listing twice lists twice.
        let fd = self.openat(OsStr::new("."), DIR_FLAGS, 0)?;
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        // SAFETY: fdopendir takes ownership of raw on success.
        let dirp = unsafe { libc::fdopendir(raw) };
        if dirp.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: on failure raw is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        let mut out = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; readdir distinguishes end from error by it.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: dirp is a valid stream until closedir below.
            let ent = unsafe { libc::readdir(dirp) };
            if ent.is_null() {
                let e = io::Error::last_os_error();
                break match e.raw_os_error() {
                    Some(0) | None => Ok(()),
                    Some(_) => Err(e),
                };
            }
            // SAFETY: d_name is NUL-terminated inside the entry readdir returned.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes != b"." && bytes != b".." {
                out.push(OsString::from_vec(bytes.to_vec()));
            }
        };
        // SAFETY: dirp came from fdopendir and is closed once.
        unsafe { libc::closedir(dirp) };
        result.map(|()| out)
    }

    /// Opens the regular file `name` for reading, not through a symlink. With
    /// `expect` (device, inode from a listing), it must be that very file: a name
    /// swapped since the listing is refused, not read.
    pub fn open_file(&self, name: &OsStr, expect: Option<(u64, u64)>) -> io::Result<File> {
        // O_NONBLOCK: a FIFO swapped in cannot block the caller; cleared below.
        let flags =
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let fd = self.openat(name, flags, 0)?;
        let st = fstat(fd.as_raw_fd())?;
        if !st.is_file() {
            return Err(io::Error::other(format!(
                "{}: not a regular file",
                Path::new(name).display()
            )));
        }
        if let Some((dev, ino)) = expect
            && !st.is(dev, ino)
        {
            return Err(io::Error::other(format!(
                "{}: not the file that was listed (replaced since)",
                Path::new(name).display()
            )));
        }
        clear_nonblock(&fd)?;
        Ok(File::from(fd))
    }

    /// Creates (or truncates) the regular file `name` for writing with `mode`, not
    /// through a symlink.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = libc::O_WRONLY
            | libc::O_CREAT
            | libc::O_TRUNC
            | libc::O_NOFOLLOW
            | libc::O_NONBLOCK
            | libc::O_NOCTTY
            | libc::O_CLOEXEC;
        let fd = self.openat(name, flags, mode)?;
        if !fstat(fd.as_raw_fd())?.is_file() {
            return Err(io::Error::other(format!(
                "{}: not a regular file",
                Path::new(name).display()
            )));
        }
        clear_nonblock(&fd)?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (a, b) = (component(from)?, component(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: renameat reads the two NUL-terminated names.
        retry(|| unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) }).map(drop)
    }

    /// Removes the entry `name` (a symlink itself, never what it points to).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = component(name)?;
        // SAFETY: unlinkat reads the NUL-terminated name.
        retry(|| unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// Makes the directory's entries durable.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on our own descriptor.
        retry(|| unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }

    /// Whether this process may create and remove entries here.
    pub fn writable(&self) -> bool {
        // SAFETY: faccessat reads the constant name ".".
        unsafe {
            libc::faccessat(
                self.fd.as_raw_fd(),
                c".".as_ptr(),
                libc::W_OK | libc::X_OK,
                0,
            ) == 0
        }
    }

    /// The directory `rel` below this one (normal components only), each created with
    /// `mode` when missing and entered without following a symlink.
    pub fn create_dirs(&self, rel: &Path, mode: u32) -> io::Result<Dir> {
        let mut cur: Option<Dir> = None;
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: only plain names below a directory", rel.display()),
                ));
            };
            let base = cur.as_ref().unwrap_or(self);
            let c = component(name)?;
            // SAFETY: mkdirat reads the NUL-terminated name.
            match retry(|| unsafe { libc::mkdirat(base.fd.as_raw_fd(), c.as_ptr(), mode) }) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            cur = Some(base.sub_dir(name)?);
        }
        match cur {
            Some(d) => Ok(d),
            None => self.sub_dir(OsStr::new(".")),
        }
    }

    /// The directory `rel` below this one, entered component by component without
    /// following a symlink.
    pub fn open_dirs(&self, rel: &Path) -> io::Result<Dir> {
        let mut cur = self.sub_dir(OsStr::new("."))?;
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: only plain names below a directory", rel.display()),
                ));
            };
            cur = cur.sub_dir(name)?;
        }
        Ok(cur)
    }
}

fn fstat(fd: libc::c_int) -> io::Result<Stat> {
    // SAFETY: a zeroed stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes only to `st`.
    retry(|| unsafe { libc::fstat(fd, &mut st) })?;
    Ok(Stat::from(&st))
}

fn clear_nonblock(fd: &OwnedFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on our own descriptor with integer arguments.
    let flags = check(unsafe { libc::fcntl(raw, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(raw, libc::F_SETFL, flags & !libc::O_NONBLOCK) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    fn read(f: &mut File) -> String {
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn a_name_swapped_after_the_listing_is_never_read() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("audit");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.jsonl"), "mine\n").unwrap();
        let secret = t.path().join("secret");
        std::fs::write(&secret, "SECRET\n").unwrap();
        let d = Dir::open(&dir).unwrap();
        let listed = d.stat_at(OsStr::new("a.jsonl")).unwrap();
        let id = Some((listed.dev, listed.ino));

        // Between listing and open, the file becomes a symlink to the secret.
        std::fs::remove_file(dir.join("a.jsonl")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("a.jsonl")).unwrap();
        let e = d.open_file(OsStr::new("a.jsonl"), id).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        // Without an expected identity it is still never followed.
        assert!(d.open_file(OsStr::new("a.jsonl"), None).is_err());

        // Or a hard link to the secret (another inode) takes the name.
        std::fs::remove_file(dir.join("a.jsonl")).unwrap();
        std::fs::hard_link(&secret, dir.join("a.jsonl")).unwrap();
        let e = d.open_file(OsStr::new("a.jsonl"), id).unwrap_err();
        assert!(
            e.to_string().contains("not the file that was listed"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_entered() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("audit");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("a.jsonl"), "mine\n").unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("a.jsonl"), "SECRET\n").unwrap();
        let d = Dir::open(&dir).unwrap();
        let listed = d.stat_at(OsStr::new("a.jsonl")).unwrap();

        // The directory's path now leads elsewhere; the descriptor still holds the
        // directory that was listed.
        std::fs::rename(&dir, t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        let mut f = d
            .open_file(OsStr::new("a.jsonl"), Some((listed.dev, listed.ino)))
            .unwrap();
        assert_eq!(read(&mut f), "mine\n");

        // Entering a component that became a symlink fails.
        let parent = Dir::open(t.path()).unwrap();
        assert!(parent.sub_dir(OsStr::new("audit")).is_err());
        assert!(parent.follow_dir(OsStr::new("audit")).is_ok());
    }

    #[test]
    fn names_renames_unlinks_and_writes_stay_in_the_directory() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open(t.path()).unwrap();
        assert!(
            d.open_file(OsStr::new("../x"), None).is_err(),
            "one component"
        );
        let mut w = d.create_file(OsStr::new(".a.tmp"), 0o600).unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
        d.rename(OsStr::new(".a.tmp"), OsStr::new("a")).unwrap();
        d.sync().unwrap();
        let meta = std::fs::metadata(t.path().join("a")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(d.names().unwrap(), [OsString::from("a")]);
        assert_eq!(d.names().unwrap().len(), 1, "listing twice lists twice");
        // A symlink planted where an archive is written is not written through.
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("b")).unwrap();
        assert!(d.create_file(OsStr::new("b"), 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        d.unlink(OsStr::new("b")).unwrap();
        assert!(victim.exists(), "unlink removes the link, not its target");
        // Directories made below are entered without following symlinks.
        std::os::unix::fs::symlink(t.path(), t.path().join("loop")).unwrap();
        assert!(d.create_dirs(Path::new("loop/x"), 0o700).is_err());
        let sub = d.create_dirs(Path::new("p/q"), 0o700).unwrap();
        assert!(sub.stat().unwrap().is_dir());
        assert!(d.open_dirs(Path::new("p/q")).is_ok());
        assert!(d.writable());
    }
}
