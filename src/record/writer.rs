//! Appending one event to a stream directory, safely among concurrent writers.
//!
//! Under an exclusive `flock` on `<dir>/.lock`:
//! 1. the last file (by name) gets a `\n` if a killed writer left a partial line, so
//!    that line becomes one complete (flagged) line and never swallows the next event;
//! 2. the chain head is found by reading the stream's files backwards from their end
//!    until the last chain member (only the tail is read, never the whole file);
//! 3. the event goes to `audit-YYYY-MM-DD.jsonl` (UTC), or to the last file if its
//!    name sorts later (a clock set back must not put events before their chain);
//! 4. one `write` of the whole line (or of every line of a group, [`append_all`]) with
//!    `O_APPEND`, then `fdatasync` when configured;
//!    a write that fails or comes back short (disk full, file size limit), or a sync
//!    that fails, is undone with `ftruncate` to the length before it, so `record`
//!    never leaves a torn line of its own.
//!
//! No head state is kept between calls: the files are the only truth, so there is no
//! cache that could be missing or stale.

use crate::audit::{self, Checked, Head, Keys, Verifier};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where an event was appended.
#[derive(Debug, Clone)]
pub struct Appended {
    pub file: PathBuf,
    pub seq: u64,
    pub hash: String,
}

/// Settings of one append.
pub struct AppendOptions<'a> {
    pub signer: Option<(&'a str, &'a Keys)>,
    pub fsync: bool,
    pub lock_timeout: Duration,
    /// `YYYY-MM-DD` of the event, naming the file.
    pub date: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("timed out after {0:?} waiting for the lock on {1}")]
    LockTimeout(Duration, PathBuf),
    #[error(transparent)]
    Seal(#[from] audit::SealError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> AppendError + '_ {
    move |source| AppendError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends the event built by `build(seq, prev_hash)` (JSON object text without hash
/// members) to the stream in `dir`.
pub fn append(
    dir: &Path,
    opts: &AppendOptions<'_>,
    build: impl FnOnce(u64, &str) -> String,
) -> Result<Appended, AppendError> {
    let mut build = Some(build);
    let mut all = append_all(dir, opts, 1, |_, seq, prev| {
        build.take().map(|b| b(seq, prev)).unwrap_or_default()
    })?;
    Ok(all.pop().expect("one event appended"))
}

/// Appends `n` events to the stream in `dir` under one lock, as one `write` and one
/// sync: event `i` is built by `build(i, seq, prev_hash)` and chained to the one
/// before it. All or nothing: when the write or sync fails, none of them stays.
pub fn append_all(
    dir: &Path,
    opts: &AppendOptions<'_>,
    n: usize,
    mut build: impl FnMut(usize, u64, &str) -> String,
) -> Result<Vec<Appended>, AppendError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    let lock_path = dir.join(".lock");
    let lock = open_private(&lock_path, false).map_err(io_at(&lock_path))?;
    lock_exclusive(&lock, opts.lock_timeout).map_err(|e| match e {
        None => AppendError::LockTimeout(opts.lock_timeout, lock_path.clone()),
        Some(e) => AppendError::Io {
            path: lock_path.clone(),
            source: e,
        },
    })?;

    let files = stream_files(dir).map_err(io_at(dir))?;
    if let Some(last) = files.last() {
        terminate_partial_line(last).map_err(io_at(last))?;
    }
    let mut head = None;
    for f in files.iter().rev() {
        head = last_member(f).map_err(io_at(f))?;
        if head.is_some() {
            break;
        }
    }
    let (mut seq, mut prev) = match head {
        Some(h) => (h.seq + 1, h.hash_str().to_owned()),
        None => (0, audit::ZERO_HASH.to_owned()),
    };
    let today = dir.join(format!("audit-{}.jsonl", opts.date));
    let target = match files.last() {
        Some(last) if last.file_name() > today.file_name() => last.clone(),
        _ => today,
    };
    let mut lines = Vec::new();
    let mut appended = Vec::with_capacity(n);
    for i in 0..n {
        let sealed = audit::seal(&build(i, seq, &prev), opts.signer)?;
        lines.extend_from_slice(&sealed.line);
        appended.push(Appended {
            file: target.clone(),
            seq,
            hash: sealed.hash.clone(),
        });
        seq += 1;
        prev = sealed.hash;
    }
    let is_new = !target.exists();
    let mut file = open_private(&target, true).map_err(io_at(&target))?;
    append_whole(&mut file, &lines, opts.fsync).map_err(io_at(&target))?;
    if opts.fsync && is_new {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
    }
    drop(lock);
    Ok(appended)
}

/// Appends `line` to `file` (opened for appending, under the lock) in one `write`,
/// then `fdatasync` when asked. If the write fails or comes back short, or the sync
/// fails, the file is cut back to its length before the write, so no torn or
/// undurable line of ours stays behind; the error is returned after that.
pub fn append_whole(file: &mut File, line: &[u8], sync: bool) -> io::Result<()> {
    let before = file.metadata()?.len();
    let written = file
        .write_all(line)
        .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
    if let Err(e) = written {
        return Err(match file.set_len(before) {
            Ok(()) => e,
            Err(t) => io::Error::new(
                e.kind(),
                format!("{e}; cutting the partial line back to {before} bytes failed too: {t}"),
            ),
        });
    }
    Ok(())
}

pub use crate::files::open_private;

/// `Err(None)` on timeout.
pub(crate) fn lock_exclusive(file: &File, timeout: Duration) -> Result<(), Option<io::Error>> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) && err.kind() != io::ErrorKind::Interrupted
        {
            return Err(Some(err));
        }
        if start.elapsed() >= timeout {
            return Err(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The stream's live files (`*.jsonl`, not archives) in name order.
pub fn stream_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let is_jsonl = name
            .to_str()
            .is_some_and(|n| n.ends_with(".jsonl") && !n.starts_with('.'));
        if is_jsonl && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// Appends `\n` when the file does not end with one (a writer died mid-line).
pub fn terminate_partial_line(path: &Path) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] != b'\n' {
        f.write_all(b"\n")?;
    }
    Ok(())
}

/// The last chain member of a file, reading backwards from its end in blocks.
pub fn last_member(path: &Path) -> io::Result<Option<Head>> {
    const BLOCK: u64 = 16 * 1024;
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    // `buf` holds file[start..) up to the end of the lines not yet examined; lines
    // are taken off its back.
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // Drop an unterminated tail: it is not a line yet.
    let mut skip_tail = true;
    let mut verifier = Verifier::new(Keys::new());
    let mut scratch = Vec::new();
    loop {
        // Find the last '\n' in buf that starts the last unexamined line.
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) if skip_tail => {
                buf.truncate(i);
                skip_tail = false;
                continue;
            }
            Some(i) => {
                let line = &buf[i + 1..];
                if let Some(head) = member_head(&mut verifier, line, &mut scratch) {
                    return Ok(Some(head));
                }
                buf.truncate(i);
                continue;
            }
            None if start == 0 => {
                // The first line of the file.
                if skip_tail {
                    return Ok(None);
                }
                return Ok(member_head(&mut verifier, &buf, &mut scratch));
            }
            None => {
                // Read the block before `start` and put it in front.
                let from = start.saturating_sub(BLOCK.max(buf.len() as u64));
                let mut block = vec![0u8; (start - from) as usize];
                f.seek(SeekFrom::Start(from))?;
                f.read_exact(&mut block)?;
                block.extend_from_slice(&buf);
                buf = block;
                start = from;
            }
        }
    }
}

fn member_head(
    verifier: &mut Verifier,
    line: &[u8],
    scratch: &mut Vec<audit::Problem>,
) -> Option<Head> {
    scratch.clear();
    match verifier.check_line(line, scratch) {
        Checked::Member { head, .. } => Some(head),
        _ => None,
    }
}
