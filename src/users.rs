//! The system's user database, as the C library reads it (`/etc/passwd`, or NSS):
//! the name of a uid. Shared by `record` (its own user) and the sealer (its peers).

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

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_uid_0_and_unknown_uids_have_no_name() {
        assert_eq!(super::name_of(0).as_deref(), Some("root"));
        assert_eq!(super::name_of(4_000_000_123), None);
    }
}
