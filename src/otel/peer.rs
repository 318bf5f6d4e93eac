//! Which local user sent a connection: the uid owning the peer's socket, read from
//! the kernel's socket table (`/proc/net/tcp`, `/proc/net/tcp6`), as identd does.
//!
//! A loopback connection has two sockets in the table: ours (local = our address,
//! remote = the peer's) and the peer's (local = the peer's address, remote = ours).
//! The peer's row is the one whose local and remote addresses are the connection's
//! remote and local addresses, and its `uid` column is the user who created it. The
//! peer cannot forge that row, and the row exists as long as the connection is open
//! (we look it up right after `accept`).
//!
//! [`find_uid`] is pure (table text in, uid out); [`uid_of`] reads the tables.
//! The addresses in the table are the kernel's raw words printed in hex: an IPv4
//! address is one 32-bit word in host byte order, an IPv6 address four such words;
//! ports are plain hex numbers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid of the socket whose local address is `peer` and remote address is `ours`
/// in one table's text, if there is one.
pub fn find_uid(table: &str, peer: SocketAddr, ours: SocketAddr) -> Option<u32> {
    let want_local = address(peer);
    let want_remote = address(ours);
    table.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let _slot = cols.next()?;
        let local = cols.next()?;
        let remote = cols.next()?;
        if !local.eq_ignore_ascii_case(&want_local) || !remote.eq_ignore_ascii_case(&want_remote) {
            return None;
        }
        // st, tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid.
        cols.nth(4)?.parse().ok()
    })
}

/// An address as the table prints it: `0100007F:1F90` for 127.0.0.1:8080.
pub fn address(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) => format!("{}:{:04X}", word_hex(ip.octets()), a.port()),
        IpAddr::V6(ip) => {
            let o = ip.octets();
            let words: String = o
                .chunks_exact(4)
                .map(|c| word_hex([c[0], c[1], c[2], c[3]]))
                .collect();
            format!("{words}:{:04X}", a.port())
        }
    }
}

/// Four bytes in network order, read as the kernel's native 32-bit word and printed
/// as `%08X`.
fn word_hex(bytes: [u8; 4]) -> String {
    format!("{:08X}", u32::from_ne_bytes(bytes))
}

/// Which table holds a connection between these addresses. An IPv4 peer of an IPv6
/// listener appears in `tcp6` as `::ffff:a.b.c.d`.
fn tables(peer: SocketAddr) -> [&'static str; 2] {
    match peer.ip() {
        IpAddr::V4(_) => ["/proc/net/tcp", "/proc/net/tcp6"],
        IpAddr::V6(_) => ["/proc/net/tcp6", "/proc/net/tcp"],
    }
}

/// Both addresses as the other family would print them (IPv4 as IPv4-mapped IPv6,
/// IPv4-mapped IPv6 as IPv4), when there is such a form.
fn other_family(a: SocketAddr) -> Option<SocketAddr> {
    match a.ip() {
        IpAddr::V4(ip) => Some(SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port())),
        IpAddr::V6(ip) => ip
            .to_ipv4_mapped()
            .map(|v4: Ipv4Addr| SocketAddr::new(IpAddr::V4(v4), a.port())),
    }
}

/// The uid owning the peer's end of the connection `peer` → `ours`, from the
/// kernel's tables. `None` when no row matches (the peer is gone, or not local).
/// Blocking: reads files.
pub fn uid_of(peer: SocketAddr, ours: SocketAddr) -> Option<u32> {
    for path in tables(peer) {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        if let Some(uid) = find_uid(&text, peer, ours) {
            return Some(uid);
        }
        if let (Some(p), Some(o)) = (other_family(peer), other_family(ours))
            && let Some(uid) = find_uid(&text, p, o)
        {
            return Some(uid);
        }
    }
    None
}

/// A local user: uid and the name the stream directory takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    /// The account's name, when it has one that is safe as a directory name.
    pub name: Option<String>,
}

impl User {
    /// The user of `uid`, named from the password database.
    pub fn of(uid: u32) -> User {
        User {
            uid,
            name: user_name(uid).filter(|n| safe_name(n)),
        }
    }

    /// The stream directory's name: the user name, else `uid-<uid>`.
    pub fn dir_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("uid-{}", self.uid))
    }
}

/// A name usable as one path component: letters, digits, `.`, `_`, `-`, `@`, `$`,
/// not starting with `.` or `-`, at most 64 bytes.
pub fn safe_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with(['.', '-'])
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@$".contains(&b))
}

/// The account name of `uid` (`getpwuid_r`).
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers we pass and returns a pointer into
    // them; nothing outlives this function.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pw.pw_name.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(pw.pw_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Loopback only: both IPv4 127/8 and `::1` (and IPv4-mapped loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:10E1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41237 1 0000000000000000 100 0 0 10 0
   1: 0100007F:10E1 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 41300 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C350 0100007F:10E1 01 00000000:00000000 00:00000000 00000000  1001        0 41299 1 0000000000000000 20 4 30 10 -1
";

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_peers_row_names_its_owner() {
        // We listen on 127.0.0.1:4321 (0x10E1); the peer connected from port 50000.
        let (peer, ours) = (a("127.0.0.1:50000"), a("127.0.0.1:4321"));
        assert_eq!(find_uid(TCP, peer, ours), Some(1001));
        // Our own row (local = ours) is not the peer's.
        assert_eq!(find_uid(TCP, ours, peer), Some(0));
        assert_eq!(find_uid(TCP, a("127.0.0.1:50001"), ours), None);
        assert_eq!(find_uid("", peer, ours), None);
    }

    #[test]
    fn addresses_print_as_the_kernel_does() {
        if cfg!(target_endian = "little") {
            assert_eq!(address(a("127.0.0.1:4321")), "0100007F:10E1");
            assert_eq!(
                address(a("[::1]:80")),
                "00000000000000000000000001000000:0050"
            );
            assert_eq!(
                address(a("[::ffff:127.0.0.1]:80")),
                "0000000000000000FFFF00000100007F:0050"
            );
        }
    }

    #[test]
    fn a_real_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let ours = server.local_addr().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(uid_of(peer, ours), Some(me));
    }

    #[test]
    fn names() {
        assert!(safe_name("alice") && safe_name("a.b-c_d") && safe_name("svc$"));
        assert!(!safe_name("") && !safe_name("..") && !safe_name(".x") && !safe_name("a/b"));
        assert!(!safe_name("-x") && !safe_name(&"a".repeat(65)));
        assert_eq!(User { uid: 7, name: None }.dir_name(), "uid-7");
        assert_eq!(User::of(0).name.as_deref(), Some("root"));
        assert!(is_loopback("127.0.0.2".parse().unwrap()) && is_loopback("::1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }
}
