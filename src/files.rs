//! Files created private: mode 0600, never through a symlink at the last component.
//! For the producer's streams and lock, the queue's segments and the file sink.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens (creating with mode 0600) without following a symlink at the last component.
pub fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if append {
        o.append(true);
    } else {
        o.read(true).write(true);
    }
    o.open(path)
}
