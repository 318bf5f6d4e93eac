//! Who is on the other end of a connection, as the kernel says: `SO_PEERCRED` gives
//! the uid, gid and pid of the process that connected, which no payload, header or
//! configuration of the client can change; the uid's name comes from the system's
//! user database.

use std::os::unix::io::AsRawFd;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
    /// The uid's login name; `uid-<n>` when the user database has none (or one
    /// that cannot name a directory).
    pub user: String,
}

/// What the kernel says of the process that connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

impl Credentials {
    /// The peer, named from the user database. Blocking: the database may be a
    /// network service (NSS).
    pub fn named(self) -> Peer {
        Peer {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            user: stream_name(self.uid, crate::users::name_of(self.uid)),
        }
    }
}

/// The credentials of the process that connected `socket` (`SO_PEERCRED`).
pub fn credentials(socket: &impl AsRawFd) -> std::io::Result<Credentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a local of the
    // size given; the descriptor is borrowed for the call only.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Credentials {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid,
    })
}

pub use crate::users::stream_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = credentials(&a).unwrap().named();
        // SAFETY: getuid, getgid and getpid cannot fail.
        let (uid, gid, pid) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
        assert_eq!((p.uid, p.gid, p.pid), (uid, gid, pid));
        assert_eq!(
            p.user,
            stream_name(uid, crate::users::name_of(uid)),
            "{p:?}"
        );
    }

    #[test]
    fn names_that_cannot_name_a_directory_become_the_uid() {
        assert_eq!(stream_name(1000, Some("alice".into())), "alice");
        assert_eq!(stream_name(1000, Some("al.ice-2".into())), "al.ice-2");
        for bad in ["", ".", "..", ".hidden", "a/b", "a\nb", "a\0b"] {
            assert_eq!(stream_name(7, Some(bad.into())), "uid-7", "{bad:?}");
        }
        assert_eq!(stream_name(7, Some("x".repeat(256))), "uid-7");
        assert_eq!(stream_name(42, None), "uid-42");
    }
}
