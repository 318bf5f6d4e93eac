//! The daemon's state directory as the operators' commands (`dead-letter`, `archive`)
//! use it: it must exist, be readable, and belong to the user running the command.
//!
//! Those commands open the queue and write into the state directory. Run by another
//! user they would either see nothing (a user who cannot read the 0700 directory
//! would be told "0 dead letters") or leave files that user owns, which the service
//! then cannot open (root's files in `auditship`'s queue). So they refuse, and say
//! whom to run as; root is no exception.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Checks that the running user may work on the state directory `dir`: `Err` is the
/// message to print (the command exits 2).
pub fn check_owner(dir: &Path) -> Result<(), String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "there is no state directory at {}: the daemon has not run with this \
                 configuration (is --config the daemon's?)",
                dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot read the state directory {}: {e}; run as the user the daemon runs as",
                dir.display()
            ));
        }
    };
    if !meta.is_dir() {
        return Err(format!(
            "the state directory {} is not a directory",
            dir.display()
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owner = meta.uid();
    if owner != me {
        let name = user_name(owner).unwrap_or_else(|| owner.to_string());
        return Err(format!(
            "the state directory {} belongs to {name}, not to the user running this command \
             ({}): files written now would be yours, and the daemon could not use them. \
             Run as {name}: sudo -u {name} {}",
            dir.display(),
            user_name(me).unwrap_or_else(|| me.to_string()),
            this_command()
        ));
    }
    Ok(())
}

/// The command line that was run, to repeat as the right user.
fn this_command() -> String {
    let mut args = std::env::args();
    // The program by its name: a path may lead into a build tree.
    let program = args
        .next()
        .and_then(|p| Some(Path::new(&p).file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "auditship".into());
    std::iter::once(program)
        .chain(args.map(|a| quote(&a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` as a shell word.
fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// The name of user `uid`, if the system knows it.
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers we pass and returns a pointer into
    // them; nothing outlives this function.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) == 0
            && !result.is_null()
            && !pw.pw_name.is_null()
        {
            return Some(
                std::ffi::CStr::from_ptr(pw.pw_name)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(quote("--config"), "--config");
        assert_eq!(quote("/etc/auditship/a.toml"), "/etc/auditship/a.toml");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn the_owner_may_work_on_it_and_a_missing_one_is_said() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(check_owner(t.path()), Ok(()));
        let missing = check_owner(&t.path().join("nope")).unwrap_err();
        assert!(missing.contains("no state directory"), "{missing}");
    }
}
