//! The systemd notification protocol (`sd_notify(3)`): readiness, status text,
//! stopping, reloading and watchdog keep-alives, sent as one datagram each to the
//! unix socket named by `$NOTIFY_SOCKET`.
//!
//! Every public function is a no-op when `$NOTIFY_SOCKET` is unset (not started by
//! systemd, or by a unit that is not `Type=notify`), so the daemon calls them
//! unconditionally. A path socket must be absolute; a name starting with `@` is a
//! Linux abstract socket. A failure to send is logged and otherwise ignored: the
//! daemon's work never depends on its supervisor hearing about it (systemd notices a
//! missing `READY=1` or keep-alive on its own and acts on its timeouts).
//!
//! The environment is read on every call and never modified, so nothing here needs
//! `unsafe`; the daemon starts no child processes that could inherit the variable.
//! The protocol itself lives in small functions that take the socket name and the
//! environment values as arguments, which is what the tests drive.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Tells systemd the daemon has started: the queue is open and every stage runs.
pub fn ready() {
    notify_env("READY=1");
}

/// A one-line status shown by `systemctl status` (newlines become spaces).
pub fn status(text: &str) {
    notify_env(&status_message(text));
}

/// Tells systemd the daemon is shutting down (draining sinks may take a while).
pub fn stopping() {
    notify_env("STOPPING=1");
}

/// Tells systemd a configuration reload started; send [`ready`] when it is done.
pub fn reloading() {
    notify_env(&reloading_message(monotonic_usec()));
}

/// The watchdog keep-alive: send it at least every [`watchdog_interval`].
pub fn watchdog() {
    notify_env("WATCHDOG=1");
}

/// How often to call [`watchdog`]: half of `$WATCHDOG_USEC`, when systemd enabled the
/// watchdog for this process (`$WATCHDOG_PID`, if set, is our pid); else `None`.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var_os("WATCHDOG_USEC");
    let pid = std::env::var_os("WATCHDOG_PID");
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn notify_env(state: &str) {
    let socket: Option<OsString> = std::env::var_os("NOTIFY_SOCKET");
    if let Err(e) = send(socket.as_deref(), state) {
        let kind = state.split('=').next().unwrap_or(state);
        tracing::warn!(error = %e, message = kind, "cannot notify systemd");
    }
}

/// Sends `state` to `socket` (a `$NOTIFY_SOCKET` value). `Ok(false)`: no socket, so
/// nothing to do; `Ok(true)`: sent.
fn send(socket: Option<&OsStr>, state: &str) -> io::Result<bool> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets exist only on Linux",
            ));
        }
    } else if bytes.starts_with(b"/") {
        sock.send_to(state.as_bytes(), socket)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@...)",
        ));
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write of a notification datagram",
        ));
    }
    Ok(true)
}

fn status_message(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("STATUS={line}")
}

/// `RELOADING=1` with the `CLOCK_MONOTONIC` timestamp `Type=notify-reload` expects.
fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the local struct only.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1_000)
}

/// Half the watchdog timeout in `usec`, if it is meant for `my_pid`. Malformed or zero
/// values mean no watchdog, as in `sd_watchdog_enabled(3)`.
fn watchdog_interval_from(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    my_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.trim().parse().ok()?;
        if pid != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    /// A bound datagram socket in a fresh temp dir, as systemd would create it.
    fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (dir, path, sock)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn each_message_is_one_datagram_on_a_path_socket() {
        let (_dir, path, sock) = listener();
        let name = path.as_os_str();
        for (state, expected) in [
            ("READY=1".to_string(), "READY=1"),
            ("STOPPING=1".to_string(), "STOPPING=1"),
            ("WATCHDOG=1".to_string(), "WATCHDOG=1"),
            (
                status_message("shipping\n3 sinks"),
                "STATUS=shipping 3 sinks",
            ),
            (reloading_message(42), "RELOADING=1\nMONOTONIC_USEC=42"),
        ] {
            assert!(send(Some(name), &state).unwrap());
            assert_eq!(recv(&sock), expected);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_names_start_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("auditship-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let env = OsString::from(format!("@{name}"));
        assert!(send(Some(&env), "READY=1").unwrap());
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        assert!(!send(None, "READY=1").unwrap());
        assert!(!send(Some(OsStr::new("")), "READY=1").unwrap());
    }

    #[test]
    fn a_relative_path_or_a_missing_socket_is_an_error() {
        let e = send(Some(OsStr::new("run/notify")), "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("nobody-listens");
        assert!(send(Some(gone.as_os_str()), "READY=1").is_err());
    }

    #[test]
    fn non_utf8_socket_paths_work() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = dir.path().as_os_str().as_bytes().to_vec();
        bytes.extend_from_slice(b"/n\xfftify");
        let path = std::path::PathBuf::from(OsString::from_vec(bytes));
        let sock = UnixDatagram::bind(&path).unwrap();
        assert!(send(Some(path.as_os_str()), "WATCHDOG=1").unwrap());
        assert_eq!(recv(&sock), "WATCHDOG=1");
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_this_pid() {
        let s = |v: &'static str| Some(OsStr::new(v));
        let cases: [(Option<&OsStr>, Option<&OsStr>, Option<Duration>); 9] = [
            (s("60000000"), None, Some(Duration::from_secs(30))),
            (s("60000000"), s("77"), Some(Duration::from_secs(30))),
            (s("60000000"), s("78"), None),
            (s("60000000"), s("x"), None),
            (s("1"), None, Some(Duration::ZERO)),
            (s("0"), None, None),
            (s("-5"), None, None),
            (s("soon"), None, None),
            (None, s("77"), None),
        ];
        for (usec, pid, expected) in cases {
            assert_eq!(
                watchdog_interval_from(usec, pid, 77),
                expected,
                "WATCHDOG_USEC={usec:?} WATCHDOG_PID={pid:?}"
            );
        }
    }

    #[test]
    fn monotonic_clock_is_read() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
