//! Key files in PEM: the sealer's Ed25519 signing key (PKCS#8, `PRIVATE KEY`, created
//! 0600 on first use) and its public key (SubjectPublicKeyInfo, `PUBLIC KEY`, written
//! next to it as `<file>.pub`), which is what auditors are given.
//!
//! Both are the formats OpenSSL reads and writes (`openssl genpkey -algorithm ed25519`,
//! `openssl pkey -pubout`), so a key may also be made or inspected with it.
//!
//! And HMAC key files ([`read_key_file`]): hex of at least 32 bytes, for `record`,
//! the sealer, the daemon's sources and `verify`.

use crate::audit::checkpoint::{PublicKey, SigningKey};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const PRIVATE: &str = "PRIVATE KEY";
const PUBLIC: &str = "PUBLIC KEY";

/// Where the public key of a signing key file is written: `<file>.pub`.
pub fn public_key_path(signing_key_file: &Path) -> PathBuf {
    let mut p = signing_key_file.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Loads the signing key at `path`, creating it (0600, never replacing a file that
/// appears meanwhile) when it does not exist; (re)writes `<path>.pub` when it does not
/// hold the matching public key. Returns the key and whether it was created.
pub fn load_or_create_signing_key(path: &Path) -> io::Result<(SigningKey, bool)> {
    let created = match read_private(path) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(path)?,
        Err(e) => return Err(e),
    };
    let key = load_signing_key(path)?;
    let pub_path = public_key_path(path);
    if read_public_key(&pub_path).ok().as_ref() != Some(key.public()) {
        write_public_key(&pub_path, key.public())?;
    }
    Ok((key, created))
}

/// Loads a signing key file: PEM PKCS#8 Ed25519, not a symlink, not readable by
/// group or others.
pub fn load_signing_key(path: &Path) -> io::Result<SigningKey> {
    let text = read_private(path)?;
    let der = pem_decode(&text, PRIVATE).ok_or_else(|| invalid(path, "not a PEM PRIVATE KEY"))?;
    SigningKey::from_pkcs8(&der).ok_or_else(|| invalid(path, "not an Ed25519 PKCS#8 key"))
}

/// Reads a public key file: PEM SubjectPublicKeyInfo holding an Ed25519 key.
pub fn read_public_key(path: &Path) -> io::Result<PublicKey> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| at(path, e))?;
    let der = pem_decode(&text, PUBLIC).ok_or_else(|| invalid(path, "not a PEM PUBLIC KEY"))?;
    PublicKey::from_spki_der(&der).ok_or_else(|| invalid(path, "not an Ed25519 public key"))
}

/// The public key as PEM text.
pub fn public_key_pem(key: &PublicKey) -> String {
    pem_encode(PUBLIC, &key.to_spki_der())
}

fn read_private(path: &Path) -> io::Result<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| at(path, e))?;
    let mode = file.metadata().map_err(|e| at(path, e))?.mode();
    if mode & 0o077 != 0 {
        return Err(invalid(
            path,
            &format!(
                "mode {:o} lets others read the signing key; chmod 600 it",
                mode & 0o777
            ),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| at(path, e))?;
    Ok(text)
}

/// Writes a new key to a private temporary file, then links it into place, so the
/// key file is never seen half written and an existing one is never replaced.
fn create_private(path: &Path) -> io::Result<bool> {
    let der = SigningKey::generate_pkcs8()
        .ok_or_else(|| io::Error::other("the system random source failed"))?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(pem_encode(PRIVATE, &der).as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match result {
        Ok(()) => {
            sync_parent(path);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(at(path, e)),
    }
}

fn write_public_key(path: &Path, key: &PublicKey) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(public_key_pem(key).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| at(path, e))?;
    sync_parent(path);
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(p)
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// PEM text of `der` under `label`, 64 base64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER bytes of the first PEM block labelled `label` in `text`.
pub fn pem_decode(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64_decode(&body)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    if !text.len().is_multiple_of(4) || text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Reads a key file: hex of at least 32 bytes, surrounding white space ignored.
pub fn read_key_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let hex = text.trim();
    match crate::audit::decode_hex(hex) {
        Some(key) if key.len() >= 32 => Ok(key),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: a key file holds at least 64 hex digits",
                path.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..40u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let text = base64_encode(&data);
            assert_eq!(text.len() % 4, 0);
            assert_eq!(base64_decode(&text), Some(data));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), None);
        assert_eq!(base64_decode("Zm*="), None);
    }

    #[test]
    fn a_key_is_created_private_once_and_its_public_key_written_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealer.ed25519");
        let (key, created) = load_or_create_signing_key(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let public = read_public_key(&public_key_path(&path)).unwrap();
        assert_eq!(&public, key.public());
        let (again, created) = load_or_create_signing_key(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public());
        // A lost .pub is written again; a key others can read is refused.
        std::fs::remove_file(public_key_path(&path)).unwrap();
        load_or_create_signing_key(&path).unwrap();
        assert_eq!(read_public_key(&public_key_path(&path)).unwrap(), public);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_signing_key(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_symlinked_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        load_or_create_signing_key(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(load_signing_key(&link).is_err());
    }

    #[test]
    fn openssl_formats_are_read() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) with the RFC 8032 test
        // key 1, and its `openssl pkey -pubout`.
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";
        let key = SigningKey::from_pkcs8(&pem_decode(private, PRIVATE).unwrap()).unwrap();
        let pk = PublicKey::from_spki_der(&pem_decode(public, PUBLIC).unwrap()).unwrap();
        assert_eq!(key.public(), &pk);
        assert_eq!(public_key_pem(&pk), public);
    }
}
