//! What the sealer makes sure of before it serves: a private sealed directory, a
//! socket every local user can reach in a directory nobody else can change, and
//! its HMAC key.
//!
//! - The sealed directory and each stream directory are real directories (not
//!   symlinks) owned by the service's user, mode 0700 (tightened when looser); one
//!   that others may write is refused, since anything could have been put there.
//! - The socket's directory must not be a symlink or writable by others (the
//!   system unit's `RuntimeDirectory=` makes it 0755). A file left at the socket's
//!   path is removed only when it is a socket nobody listens on. The socket is
//!   0666: every local user may connect; who they are comes from the kernel.
//! - The HMAC key file is read when it exists, else created (0600, 32 random
//!   bytes as hex, synced with its directory): the key never leaves the service.

use crate::audit::Keys;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

fn refuse(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: {why}", path.display()),
    )
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Makes `dir` a private directory of this process's user: created 0700 when
/// missing (its parents too, 0755); an existing one must be a real directory owned
/// by this user and not writable by others, and is tightened to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refuse(dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(refuse(
            dir,
            "is a symlink; the sealer writes only in a real directory",
        ));
    }
    if !meta.is_dir() {
        return Err(refuse(dir, "is not a directory"));
    }
    if meta.uid() != euid() {
        return Err(refuse(
            dir,
            format!(
                "belongs to uid {}, not to the service's uid {}",
                meta.uid(),
                euid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(refuse(
            dir,
            format!("is writable by others (mode {mode:o})"),
        ));
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))?;
        tracing::info!(dir = %dir.display(), from = %format!("{mode:o}"), "sealed directory made private (0700)");
    }
    Ok(())
}

/// Binds the sealer's socket at `path`, mode 0666, after checking its directory
/// (created 0755 when missing) and removing a stale socket.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| refuse(path, "names no directory"))?;
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(refuse(dir, "the socket's directory is a symlink"));
    }
    if !meta.is_dir() {
        return Err(refuse(dir, "the socket's directory is not a directory"));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(refuse(
            dir,
            format!("the socket's directory is writable by others (mode {mode:o})"),
        ));
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|e| refuse(path, e))?;
    std::fs::set_permissions(path, Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Removes what is at `path` if it is a socket nobody listens on; refuses a live
/// one and anything that is not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.file_type().is_socket() {
        return Err(refuse(path, "exists and is not a socket; not removed"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(refuse(path, "another process listens on this socket")),
        Err(_) => {
            std::fs::remove_file(path)?;
            tracing::info!(path = %path.display(), "stale sealer socket removed");
            Ok(())
        }
    }
}

/// The sealer's key as `kid`: read from `file`, or, when there is no such file,
/// created there (0600, synced; its directory, when missing, 0755 like /etc's) and
/// logged.
pub fn hmac_key(kid: &str, file: &Path) -> io::Result<Keys> {
    let key = match crate::keyfile::read_key_file(file) {
        Ok(k) => k,
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_key(file)?,
        Err(e) => return Err(e),
    };
    let mut keys = Keys::new();
    keys.insert(kid, &key);
    Ok(keys)
}

/// The sealer's Ed25519 signing key for checkpoints: read from `file`, or created
/// there (0600; its directory 0700 when missing) with its public key beside it
/// (`<file>.pub`), and logged with its key id.
pub fn signing_key(file: &Path) -> io::Result<crate::audit::checkpoint::SigningKey> {
    if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let (key, created) = crate::keyfile::load_or_create_signing_key(file)?;
    let public = crate::keyfile::public_key_path(file);
    if created {
        tracing::info!(file = %file.display(), public_key = %public.display(), kid = %key.public().kid(), "created the sealer's signing key");
    } else {
        tracing::info!(public_key = %public.display(), kid = %key.public().kid(), "sealer signs checkpoints");
    }
    Ok(key)
}

fn create_key(file: &Path) -> io::Result<Vec<u8>> {
    if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    let mut key = [0u8; 32];
    fill_random(&mut key)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(file)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{}: cannot create the sealer's HMAC key: {e}",
                    file.display()
                ),
            )
        })?;
    f.write_all(format!("{hex}\n").as_bytes())?;
    f.sync_all()?;
    if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    tracing::info!(file = %file.display(), "created the sealer's HMAC key");
    Ok(key.to_vec())
}

/// Fills `buf` from the kernel's random source.
fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: getrandom writes at most `len` bytes at the pointer given, which
        // points into `buf` with that many bytes left.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("auditship-setup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn private_dirs_are_made_private_and_symlinks_refused() {
        let t = temp("dirs");
        let d = t.join("a/b/sealed");
        private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, Permissions::from_mode(0o777)).unwrap();
        assert!(
            private_dir(&d)
                .unwrap_err()
                .to_string()
                .contains("writable by others")
        );
        let link = t.join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(
            private_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("symlink")
        );
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn the_socket_replaces_only_a_stale_socket() {
        let t = temp("sock");
        std::fs::set_permissions(&t, Permissions::from_mode(0o755)).unwrap();
        let path = t.join("record.sock");
        let live = bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o666);
        assert!(bind(&path).unwrap_err().to_string().contains("listens"));
        drop(live);
        let again = bind(&path).unwrap();
        drop(again);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "x").unwrap();
        assert!(
            bind(&path)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::set_permissions(&t, Permissions::from_mode(0o777)).unwrap();
        assert!(
            bind(&path)
                .unwrap_err()
                .to_string()
                .contains("writable by others")
        );
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_missing_key_is_created_once_and_read_after() {
        let t = temp("key");
        let f = t.join("state/sealer.key");
        let a = hmac_key("k", &f).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        let b = hmac_key("k", &f).unwrap();
        assert_eq!(a.mac("k", b"x"), b.mac("k", b"x"));
        std::fs::remove_dir_all(&t).unwrap();
    }
}
