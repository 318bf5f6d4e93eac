//! The layout of checkpoint keys: which stream and which file a stored checkpoint
//! belongs to. The reader writes them, the archive pass reads them; both ask here.

/// The key of a stream's checkpoint (its chain head): `s\0<source>\0<directory>`.
pub fn stream_key(source: &str, dir: &std::path::Path) -> Vec<u8> {
    let mut k = b"s\0".to_vec();
    k.extend_from_slice(source.as_bytes());
    k.push(0);
    k.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    k
}

/// The key of a file's checkpoint in a stream: `f\0<source>\0<directory>\0<dev>:<ino>`;
/// all files of a stream share the prefix `file_key(stream, 0, 0)` less its last digits.
pub fn file_key(stream_key: &[u8], dev: u64, ino: u64) -> Vec<u8> {
    let mut k = b"f".to_vec();
    k.extend_from_slice(&stream_key[1..]);
    k.push(0);
    k.extend_from_slice(format!("{dev}:{ino}").as_bytes());
    k
}
