//! The system's user database, as the C library reads it (`/etc/passwd`, or NSS):
//! the name of a uid, and the name of its stream directory. Shared by `record` (its
//! own user), the sealer and the telemetry receiver (their peers).

/// The login name of `uid`, `None` when the database has no entry for it (or the
/// lookup fails).
pub fn name_of(uid: u32) -> Option<String> {
    let mut size = 4096;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes into
        // it and into `buf`, and `result` points at `pw` or is null. The strings it
        // points to live in `buf`, which outlives their use below.
        unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result);
            if rc == libc::ERANGE && size < (1 << 20) {
                size *= 4;
                continue;
            }
            if rc != 0 || result.is_null() || pw.pw_name.is_null() {
                return None;
            }
            return Some(
                std::ffi::CStr::from_ptr(pw.pw_name)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// The name of a uid's stream (and directory): its login name when that is a
/// plain file name, else `uid-<n>`.
pub fn stream_name(uid: u32, name: Option<String>) -> String {
    match name {
        Some(n) if is_plain_name(&n) => n,
        _ => format!("uid-{uid}"),
    }
}

/// A name that is one path component of its own: not empty, no `/`, no NUL, no
/// control character, not starting with `.`, at most 255 bytes.
fn is_plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && !n.starts_with('.')
        && !n.chars().any(|c| c == '/' || c.is_control())
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_uid_0_and_unknown_uids_have_no_name() {
        assert_eq!(super::name_of(0).as_deref(), Some("root"));
        assert_eq!(super::name_of(4_000_000_123), None);
    }
}
