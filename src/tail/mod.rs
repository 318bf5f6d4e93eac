//! Complete lines from a file known by identity, from a checkpointed offset.
//!
//! A file is known by device + inode + a fingerprint (SHA-256 of its first complete
//! line), never by its path: a renamed file keeps its offset; a file shorter than its
//! offset was truncated (copytruncate) and is read again from 0; a new file reusing
//! an old inode has another first line and starts at 0.
//!
//! A copy of a file already read (logrotate `copytruncate`: the copy appears, then the
//! original is truncated) is recognised by its contents: a new file whose first line
//! and last lines read agree, at the same offsets, with the lines recently read of a
//! known file (tracked, or truncated or deleted since) continues after them instead of
//! being read again ([`Tail::continue_after`]). The tail of each file keeps the
//! [`Mark`]s of its last [`MARKS`] lines in memory and the last one in its checkpoint,
//! so that a copy is still recognised after a restart. A new file is [`Hold`]: not read
//! until it has a first line, nor while its bytes are those of a tracked file not yet
//! truncated ([`Tail::copies_so_far`]); the caller decides.
//!
//! A truncation is also seen by the read itself: after reading at an offset past 0 the
//! file's first line is looked at again; if it changed, what was read belongs to the
//! new contents and is dropped, and the file starts again from 0
//! ([`Tail::take_rewritten`]). A read from 0 may be told which first line to expect
//! ([`Tail::expect_start`]) and then takes nothing from another.
//!
//! Invariants: only complete lines (ended by `\n`) are returned, and the offset moves
//! past a line only when the line is returned. A file's descriptor stays open while
//! the file is tracked, so its inode cannot be reused under it and a deleted file can
//! still be read to its end; the descriptor is closed when the file is dropped.
//! A tail is given a file already open: the reader opens it relative to the stream
//! directory's descriptor, without following a symlink, and only if it is the file
//! the listing saw (`watch::Dir::open_file`), so the identity a tail starts from is
//! the identity that was checked.

use crate::audit;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Bytes of the first line hashed into the fingerprint.
const FINGERPRINT_BYTES: usize = 4096;

/// Lines of a file remembered (offset and digest) to recognise a copy of it.
pub const MARKS: usize = 256;

/// One line read: where it ends and what it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The offset right after the line's `\n`.
    pub end: u64,
    /// Its 1-based line number.
    pub line: u64,
    /// Its length without the `\n`.
    pub len: u64,
    /// XXH3-64 of the line without the `\n`: a copy is recognised by content, not
    /// trusted by it (a line that only hashes alike at the same offset and length
    /// is what it takes to be skipped), and every line read is hashed, so the hash
    /// is a fast one.
    pub xxh3: u64,
}

/// The digest a [`Mark`] keeps of a line.
fn line_digest(line: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(line)
}

/// What was read of a file that is gone or was truncated since: a new file that
/// agrees with it is a copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prior {
    pub fingerprint: String,
    pub marks: Vec<Mark>,
}

/// The checkpoint of one file, as stored in the queue (boundary format, versioned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub v: u32,
    pub dev: u64,
    pub ino: u64,
    /// Hex SHA-256 of the first line (up to 4 KiB), once the file has one.
    pub fingerprint: Option<String>,
    pub offset: u64,
    pub line: u64,
    pub name: String,
    /// The last line read, to recognise a copy of the file after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Mark>,
}

/// Why nothing of a new file is read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// It has no complete first line yet: whether it is a copy cannot be told.
    Undecided,
    /// Its bytes so far are those of the tracked file `dev`/`ino`, which is still
    /// being read: a copy whose original is not truncated yet (copytruncate
    /// between its two steps). `checked` bytes were found equal.
    CopyOf { dev: u64, ino: u64, checked: u64 },
}

/// A tracked file.
#[derive(Debug)]
pub struct Tail {
    pub dev: u64,
    pub ino: u64,
    pub name: String,
    pub fingerprint: Option<String>,
    pub offset: u64,
    pub line: u64,
    file: File,
    /// The last lines read, oldest first (at most [`MARKS`]).
    marks: std::collections::VecDeque<Mark>,
    /// Lines of the file this one is a copy of, read there already and beyond the
    /// point this one continues from: skipped while they agree.
    shadow: std::collections::VecDeque<Mark>,
    /// Where a copy started (offset, line, last mark): where it goes back to when
    /// nothing of it is durable yet.
    start: Option<(u64, u64, Option<Mark>)>,
    /// What was read before the last truncation, until taken.
    previous: Option<Prior>,
    /// Found truncated and rewritten while being read, until taken.
    rewritten: bool,
    /// The first line the next read from 0 must find (see [`Tail::expect_start`]).
    expected_start: Option<Option<String>>,
    /// A read from 0 found another first line than expected, until taken.
    start_moved: bool,
    /// Set while nothing of the file may be read yet (see [`Hold`]); a held file
    /// has no checkpoint.
    pub hold: Option<Hold>,
}

/// One complete line handed to the caller.
pub struct Line<'a> {
    /// The line without `\n`, cut to the limit when longer.
    pub bytes: &'a [u8],
    /// 1-based line number in the file.
    pub number: u64,
    /// Byte offset of the line's start.
    pub offset: u64,
    /// Set when the line was longer than the limit.
    pub truncated: Option<Overlong<'a>>,
}

/// What is known of the whole of a line longer than the limit.
pub struct Overlong<'a> {
    pub full_bytes: u64,
    /// SHA-256 (hex) of the whole line.
    pub sha256_hex: String,
    /// The whole line, when it was held: it fit the read buffer, or a scan could not
    /// decide and it was read again whole (up to [`audit::MAX_WHOLE_LINE`]).
    pub whole: Option<&'a [u8]>,
    /// The scan of the whole line made while it streamed past (when scanning was
    /// asked for and the line was not held).
    pub scanned: Option<audit::Scanned>,
}

/// How a file relates to its checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// Same file: continue at the checkpoint.
    Continue,
    /// Shorter than the checkpoint: truncated, read again from 0.
    Truncated,
    /// Another file with a reused inode: read from 0.
    Replaced,
}

/// Opens a file read-only without following a symlink at its last component (by
/// path: for tools and tests; the daemon opens by directory descriptor).
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// SHA-256 hex of the file's first complete line (up to 4 KiB), if it has one.
pub fn fingerprint(file: &File) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; FINGERPRINT_BYTES];
    let n = read_at_full(file, &mut buf, 0)?;
    Ok(fingerprint_of(&buf[..n]))
}

/// The fingerprint of a file whose leading bytes are `head` (all of them, or at
/// least [`FINGERPRINT_BYTES`]).
fn fingerprint_of(head: &[u8]) -> Option<String> {
    let head = &head[..head.len().min(FINGERPRINT_BYTES)];
    let end = match memchr::memchr(b'\n', head) {
        Some(i) => i,
        None if head.len() == FINGERPRINT_BYTES => head.len(),
        None => return None,
    };
    Some(crate::audit::sha256_hex(&head[..end]))
}

/// True when `a` and `b` hold the same bytes in `from..to` (both long enough).
fn same_bytes(a: &File, b: &File, from: u64, to: u64) -> io::Result<bool> {
    const PIECE: usize = 64 * 1024;
    let (mut x, mut y) = (vec![0u8; PIECE], vec![0u8; PIECE]);
    let mut at = from;
    while at < to {
        let want = PIECE.min((to - at) as usize);
        let n = read_at_full(a, &mut x[..want], at)?;
        let m = read_at_full(b, &mut y[..want], at)?;
        if n != want || m != want || x[..n] != y[..m] {
            return Ok(false);
        }
        at += want as u64;
    }
    Ok(true)
}

fn read_at_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl Tail {
    /// Starts tracking an open file from the beginning.
    pub fn new(file: File, name: &str) -> io::Result<Tail> {
        let meta = file.metadata()?;
        Ok(Tail {
            dev: meta.dev(),
            ino: meta.ino(),
            name: name.to_owned(),
            fingerprint: fingerprint(&file)?,
            offset: 0,
            line: 0,
            file,
            marks: Default::default(),
            shadow: Default::default(),
            start: None,
            previous: None,
            rewritten: false,
            expected_start: None,
            start_moved: false,
            hold: None,
        })
    }

    /// Resumes from a stored checkpoint, deciding whether the file is the same one.
    pub fn resume(file: File, name: &str, cp: &Checkpoint) -> io::Result<(Tail, Resume)> {
        let mut t = Tail::new(file, name)?;
        let size = t.file.metadata()?.len();
        let same = match (&cp.fingerprint, &t.fingerprint) {
            (Some(a), Some(b)) => a == b,
            // The checkpoint saw no complete line yet: nothing was read from it.
            (None, _) => cp.offset == 0,
            (Some(_), None) => false,
        };
        let how = if !same {
            if size < cp.offset {
                Resume::Truncated
            } else {
                Resume::Replaced
            }
        } else if size < cp.offset {
            Resume::Truncated
        } else {
            t.offset = cp.offset;
            t.line = cp.line;
            t.marks.extend(cp.last.clone());
            Resume::Continue
        };
        Ok((t, how))
    }

    /// What was read of this file so far, for recognising a copy of it once it is
    /// truncated or gone; `None` if nothing was.
    pub fn prior(&self) -> Option<Prior> {
        match (&self.fingerprint, self.marks.is_empty()) {
            (Some(f), false) => Some(Prior {
                fingerprint: f.clone(),
                marks: self.marks.iter().cloned().collect(),
            }),
            _ => None,
        }
    }

    /// If this file (new, nothing read of it yet) is a copy of the file whose
    /// recent lines are `of`: it starts with the same first line and holds the
    /// same lines at the same offsets, from the oldest remembered one up to the
    /// last one it holds whole (all of them agree; one that differs makes it
    /// another file). It then continues after that line, and skips the
    /// following lines of `of` (read there already) as long as it agrees with
    /// them. Returns whether it continues.
    pub fn continue_after(&mut self, of: &Prior) -> io::Result<bool> {
        if self.offset != 0 || self.fingerprint.as_ref() != Some(&of.fingerprint) {
            return Ok(false);
        }
        let size = self.size()?;
        let mut agreed = None;
        let mut line = Vec::new();
        for (i, m) in of.marks.iter().enumerate() {
            if m.end > size {
                break;
            }
            line.resize(m.len as usize + 1, 0);
            let n = read_at_full(&self.file, &mut line, m.end - m.len - 1)?;
            let same = n == line.len()
                && line[m.len as usize] == b'\n'
                && line_digest(&line[..m.len as usize]) == m.xxh3;
            if !same {
                // Every remembered line it holds must agree: a file that only
                // starts alike is another file, read in full.
                return Ok(false);
            }
            agreed = Some(i);
        }
        // It must hold the oldest remembered line at least.
        let Some(k) = agreed else {
            return Ok(false);
        };
        let m = &of.marks[k];
        self.offset = m.end;
        self.line = m.line;
        self.marks = of.marks[..=k].iter().cloned().collect();
        self.shadow = of.marks[k + 1..].iter().cloned().collect();
        self.start = Some((m.end, m.line, Some(m.clone())));
        Ok(true)
    }

    /// Remembers a line read (and forgets the oldest beyond [`MARKS`]).
    fn mark(&mut self, end: u64, len: u64, xxh3: u64) {
        if self.marks.len() == MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(Mark {
            end,
            line: self.line,
            len,
            xxh3,
        });
    }

    /// True when the line read (ending at `end`) is the next line of the file this
    /// one is a copy of, read there already: it is skipped. The first line that
    /// differs ends the skipping.
    fn shadowed(&mut self, end: u64, len: u64, xxh3: u64) -> bool {
        match self.shadow.front() {
            Some(m) if m.end == end && m.len == len && m.xxh3 == xxh3 => {
                self.shadow.pop_front();
                true
            }
            Some(_) => {
                self.shadow.clear();
                false
            }
            None => false,
        }
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            v: 1,
            dev: self.dev,
            ino: self.ino,
            fingerprint: self.fingerprint.clone(),
            offset: self.offset,
            line: self.line,
            name: self.name.clone(),
            last: self.marks.back().cloned(),
        }
    }

    /// True while the file still has a name somewhere (it was renamed, not deleted).
    pub fn still_linked(&self) -> bool {
        self.file.metadata().map(|m| m.nlink() > 0).unwrap_or(false)
    }

    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// True when the file is now shorter than the offset: it was truncated. The
    /// offset and line restart at 0.
    pub fn check_truncation(&mut self) -> io::Result<bool> {
        let size = self.size()?;
        if size < self.offset
            || (size > self.offset && self.offset > 0 && self.replaced_in_place()?)
        {
            self.previous = self.prior();
            self.restart();
            return Ok(true);
        }
        Ok(false)
    }

    /// True when the file's first line is no longer the one it had: the file was
    /// truncated and rewritten between two looks (size alone cannot tell).
    pub fn replaced_in_place(&self) -> io::Result<bool> {
        match &self.fingerprint {
            Some(known) => Ok(fingerprint(&self.file)?.as_ref() != Some(known)),
            None => Ok(false),
        }
    }

    /// True unless the file's first line changed (or went) since it was read: a
    /// read at an offset taken before then would land in other contents. A check
    /// made after a read tells whether that read saw the file it meant to.
    fn still_the_file(&self) -> io::Result<bool> {
        Ok(self.fingerprint.is_none() || !self.replaced_in_place()?)
    }

    /// The file was found truncated and written again while being read: what was
    /// read before is kept for [`Tail::take_previous`], and it starts again from 0.
    fn rewritten_under(&mut self) {
        self.previous = self.prior();
        self.restart();
        self.rewritten = true;
    }

    /// When the file was last written: seconds and nanoseconds since the epoch.
    pub fn modified(&self) -> io::Result<(i64, i64)> {
        let m = self.file.metadata()?;
        Ok((m.mtime(), m.mtime_nsec()))
    }

    /// The file's first line as it is now (without its `\n`), if it has a complete
    /// one within the bytes a fingerprint covers.
    pub fn first_line(&self) -> io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; FINGERPRINT_BYTES];
        let n = read_at_full(&self.file, &mut buf, 0)?;
        Ok(memchr::memchr(b'\n', &buf[..n]).map(|end| {
            buf.truncate(end);
            buf
        }))
    }

    /// The fingerprint of the file's first line as it is now (`None`: none complete yet).
    pub fn first_line_now(&self) -> io::Result<Option<String>> {
        fingerprint(&self.file)
    }

    /// The next read from 0 reads nothing unless the file's first line is then
    /// `first` ([`Tail::take_start_moved`] says so): what it would read may come
    /// after lines that were written, copied and truncated away in between.
    pub fn expect_start(&mut self, first: Option<String>) {
        self.expected_start = Some(first);
    }

    /// True once after a read from 0 found another first line than expected.
    pub fn take_start_moved(&mut self) -> bool {
        std::mem::take(&mut self.start_moved)
    }

    /// True once after a read found the file truncated and written again under the
    /// offset (it then started again from 0).
    pub fn take_rewritten(&mut self) -> bool {
        std::mem::take(&mut self.rewritten)
    }

    /// Looks for the first line again, while it has none (a file held as
    /// [`Hold::Undecided`]).
    pub fn refresh_fingerprint(&mut self) -> io::Result<Option<&String>> {
        if self.fingerprint.is_none() {
            self.fingerprint = fingerprint(&self.file)?;
        }
        Ok(self.fingerprint.as_ref())
    }

    /// Whether this file (held, nothing read) is a copy of `original`, a tracked
    /// file still being read, so far: both have the same first line, and it holds
    /// the bytes read of `original` (or the start of them, while it is being
    /// written). `checked` bytes were compared on earlier looks.
    pub fn copies_so_far(&self, original: &Tail, checked: u64) -> io::Result<Option<u64>> {
        if self.fingerprint.is_none() || self.fingerprint != original.fingerprint {
            return Ok(None);
        }
        let upto = self.size()?.min(original.offset);
        if upto <= checked {
            return Ok(Some(checked));
        }
        Ok(same_bytes(&self.file, &original.file, checked, upto)?.then_some(upto))
    }

    /// What was read of the file before it was last found truncated, once.
    pub fn take_previous(&mut self) -> Option<Prior> {
        self.previous.take()
    }

    /// Starts the file again from the beginning (after truncation).
    pub fn restart(&mut self) {
        self.offset = 0;
        self.line = 0;
        self.fingerprint = None;
        self.marks.clear();
        self.shadow.clear();
        self.start = None;
    }

    /// Puts the file back where a checkpoint says (after a failed commit).
    pub fn rewind(&mut self, cp: Option<&Checkpoint>) {
        match cp {
            Some(cp) => {
                self.offset = cp.offset;
                self.line = cp.line;
                self.fingerprint = cp.fingerprint.clone();
                self.marks = cp.last.iter().cloned().collect();
                self.shadow.clear();
            }
            None => match self.start.clone() {
                // A copy goes back to where it continued another file.
                Some((offset, line, last)) => {
                    self.offset = offset;
                    self.line = line;
                    self.marks = last.into_iter().collect();
                    self.shadow.clear();
                }
                None => self.restart(),
            },
        }
    }

    /// Reads complete lines from the offset, calling `each` for every line, until
    /// end of file or until `each` returns false (the caller's batch is full: the
    /// offset then stands right after that line). Lines longer than `max_line` are
    /// cut to it; their full length and digest are passed along, and with `scan`
    /// (lines of a hash-chained stream) what the chain needs of the whole line (see
    /// [`Overlong`]). Returns the bytes consumed and whether the end of the complete
    /// lines was reached.
    pub fn read_lines(
        &mut self,
        buf: &mut Vec<u8>,
        max_line: usize,
        scan: bool,
        mut each: impl FnMut(Line<'_>) -> bool,
    ) -> io::Result<(u64, bool)> {
        const CHUNK: usize = 256 * 1024;
        let start = self.offset;
        let mut pos = self.offset;
        let mut at_end = false;
        let mut more = true;
        while more {
            buf.resize(CHUNK, 0);
            let n = read_at_full(&self.file, buf, pos)?;
            if pos == 0 {
                // Read from the start: the file's first line is the one just read.
                let first = fingerprint_of(&buf[..n]);
                if let Some(expected) = self.expected_start.take()
                    && expected != first
                {
                    self.start_moved = true;
                    return Ok((0, true));
                }
                self.fingerprint = first;
            } else if n > 0 && !self.still_the_file()? {
                // Truncated and written again since the last look: what was just
                // read at the old offset belongs to the new contents. Dropped;
                // the file starts again from 0.
                self.rewritten_under();
                return Ok((pos - start, true));
            }
            if n == 0 {
                at_end = true;
                break;
            }
            let data = &buf[..n];
            let mut consumed = 0usize;
            while let Some(rel) = memchr::memchr(b'\n', &data[consumed..]) {
                let line = &data[consumed..consumed + rel];
                self.line += 1;
                let end = pos + (consumed + rel + 1) as u64;
                let digest = line_digest(line);
                let skip = self.shadowed(end, rel as u64, digest);
                self.mark(end, rel as u64, digest);
                if skip {
                    consumed += rel + 1;
                    continue;
                }
                let (bytes, truncated) = if line.len() > max_line {
                    let over = Overlong {
                        full_bytes: line.len() as u64,
                        sha256_hex: audit::sha256_hex(line),
                        whole: Some(line),
                        scanned: None,
                    };
                    (&line[..max_line], Some(over))
                } else {
                    (line, None)
                };
                more = each(Line {
                    bytes,
                    number: self.line,
                    offset: pos + consumed as u64,
                    truncated,
                });
                consumed += rel + 1;
                if !more {
                    break;
                }
            }
            if consumed == 0 {
                // No newline in a whole chunk: a line longer than the chunk.
                match self.long_line(pos, max_line, scan, &mut more, &mut each)? {
                    Some(len) => {
                        pos += len;
                        continue;
                    }
                    None if self.rewritten => return Ok((pos - start, true)),
                    None => {
                        at_end = true; // the last line is not complete yet
                        break;
                    }
                }
            }
            pos += consumed as u64;
            self.offset = pos;
            if more && n < CHUNK {
                at_end = true;
                break;
            }
        }
        self.offset = pos;
        Ok((pos - start, at_end))
    }

    /// Handles a line longer than the read chunk starting at `pos`: hashes it in
    /// pieces, keeps at most `max_line` bytes, and with `scan` feeds it to a
    /// [`audit::LongLine`] (reading it again whole if that cannot decide and the
    /// line is not too long to hold). Returns the bytes consumed (line and `\n`), or
    /// `None` if the line has no `\n` yet.
    fn long_line(
        &mut self,
        pos: u64,
        max_line: usize,
        scan: bool,
        more: &mut bool,
        each: &mut impl FnMut(Line<'_>) -> bool,
    ) -> io::Result<Option<u64>> {
        let mut hasher = Sha256::new();
        let mut xxh3 = twox_hash::XxHash3_64::new();
        let mut scanner = scan.then(audit::LongLine::new);
        let mut kept = Vec::new();
        let mut piece = vec![0u8; 1 << 20];
        let mut at = pos;
        loop {
            let n = read_at_full(&self.file, &mut piece, at)?;
            if n == 0 {
                return Ok(None);
            }
            let chunk = &piece[..n];
            let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], true),
                None => (chunk, false),
            };
            hasher.update(part);
            std::hash::Hasher::write(&mut xxh3, part);
            if let Some(s) = scanner.as_mut() {
                s.feed(part);
            }
            let room = max_line.saturating_sub(kept.len());
            kept.extend_from_slice(&part[..part.len().min(room)]);
            at += part.len() as u64;
            if done {
                if !self.still_the_file()? {
                    self.rewritten_under();
                    return Ok(None);
                }
                let full = at - pos;
                let digest: [u8; 32] = hasher.finalize().into();
                let sha256_hex = String::from_utf8_lossy(&audit::hex_lower(&digest)).into_owned();
                drop(piece);
                let scanned = scanner.map(audit::LongLine::finish);
                let whole = match &scanned {
                    Some(s) if s.outcome.is_err() => self.whole_line(pos, full, &digest)?,
                    _ => None,
                };
                self.line += 1;
                self.offset = at + 1;
                let line_xxh3 = std::hash::Hasher::finish(&xxh3);
                let skip = self.shadowed(at + 1, full, line_xxh3);
                self.mark(at + 1, full, line_xxh3);
                if skip {
                    return Ok(Some(full + 1));
                }
                let truncated = (full as usize > max_line).then(|| Overlong {
                    full_bytes: full,
                    sha256_hex,
                    whole: whole.as_deref(),
                    scanned: if whole.is_some() { None } else { scanned },
                });
                *more = each(Line {
                    bytes: &kept,
                    number: self.line,
                    offset: pos,
                    truncated,
                });
                self.offset = at + 1;
                return Ok(Some(full + 1));
            }
        }
    }

    /// Reads a line of `len` bytes at `pos` again whole, if it is not too long to
    /// hold and still has the digest it had when it streamed past.
    fn whole_line(&self, pos: u64, len: u64, digest: &[u8; 32]) -> io::Result<Option<Vec<u8>>> {
        if len > audit::MAX_WHOLE_LINE as u64 {
            return Ok(None);
        }
        let mut whole = vec![0u8; len as usize];
        let n = read_at_full(&self.file, &mut whole, pos)?;
        Ok((n == whole.len() && audit::sha256(&whole) == *digest).then_some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(t: &mut Tail, max: usize) -> Vec<(String, u64, u64, bool)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        t.read_lines(&mut buf, max, false, |l| {
            out.push((
                String::from_utf8_lossy(l.bytes).into_owned(),
                l.number,
                l.offset,
                l.truncated.is_some(),
            ));
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn only_complete_lines_and_offsets_resume() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        assert_eq!(
            lines(&mut t, 100),
            [("one".into(), 1, 0, false), ("two".into(), 2, 4, false)]
        );
        assert_eq!(t.offset, 8);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"ee\n")
            .unwrap();
        assert_eq!(lines(&mut t, 100), [("three".into(), 3, 8, false)]);
        // Resume from the checkpoint in a new process.
        let cp = t.checkpoint();
        let (mut t2, how) = Tail::resume(open_nofollow(&p).unwrap(), "a.jsonl", &cp).unwrap();
        assert_eq!(how, Resume::Continue);
        assert!(lines(&mut t2, 100).is_empty());
    }

    #[test]
    fn truncation_and_replacement_are_detected() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, "first line\nsecond\n").unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        lines(&mut t, 100);
        let cp = t.checkpoint();
        std::fs::write(&p, "x\n").unwrap(); // truncate + rewrite in place
        assert!(t.check_truncation().unwrap());
        assert_eq!(lines(&mut t, 100), [("x".into(), 1, 0, false)]);
        let (_, how) = Tail::resume(open_nofollow(&p).unwrap(), "a.jsonl", &cp).unwrap();
        assert_eq!(how, Resume::Truncated);
        std::fs::write(&p, "other first line\nsecond\nthird\n").unwrap();
        let (_, how) = Tail::resume(open_nofollow(&p).unwrap(), "a.jsonl", &cp).unwrap();
        assert_eq!(how, Resume::Replaced);
    }

    #[test]
    fn truncate_then_grow_between_two_looks_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, "first 1\nsecond\nthird\n").unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        lines(&mut t, 100);
        // Truncated and rewritten longer than before: size alone looks like growth.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(0).unwrap();
        std::fs::write(&p, "new first line\n".repeat(10)).unwrap();
        assert!(t.check_truncation().unwrap());
        assert_eq!(lines(&mut t, 100).len(), 10);
        // Plain growth is not truncation.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        assert!(!t.check_truncation().unwrap());
    }

    #[test]
    fn reading_stops_right_after_the_line_that_says_so() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, "1\n22\n333\n").unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        let mut buf = Vec::new();
        let mut n = 0;
        let (consumed, at_end) = t
            .read_lines(&mut buf, 100, false, |_| {
                n += 1;
                n < 2
            })
            .unwrap();
        assert_eq!((consumed, at_end, t.offset, t.line), (5, false, 5, 2));
        assert_eq!(lines(&mut t, 100), [("333".into(), 3, 5, false)]);
    }

    #[test]
    fn long_lines_are_cut_with_digest_even_beyond_the_chunk() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let big = "y".repeat(3 << 20);
        std::fs::write(&p, format!("short\n{big}\nafter\n{big}")).unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        t.read_lines(&mut buf, 1000, false, |l| {
            let t = l.truncated.map(|t| (t.full_bytes, t.sha256_hex));
            got.push((l.bytes.len(), l.number, t));
            true
        })
        .unwrap();
        assert_eq!(got.len(), 3, "the unterminated last line waits");
        assert_eq!(got[1].0, 1000);
        assert_eq!(
            got[1].2,
            Some(((3 << 20) as u64, crate::audit::sha256_hex(big.as_bytes())))
        );
        assert_eq!(got[2], (5, 3, None));
        assert_eq!(t.offset, (6 + (3 << 20) + 1 + 6) as u64);
        // A long line, hashed as it streams past, is marked as a short one would be.
        let marks: Vec<(u64, u64)> = t.marks.iter().map(|m| (m.len, m.xxh3)).collect();
        assert_eq!(
            marks,
            [b"short".as_slice(), big.as_bytes(), b"after"]
                .iter()
                .map(|l| (l.len() as u64, line_digest(l)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn long_lines_of_a_chain_are_scanned_or_held_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        let big = "y".repeat(300 << 10);
        let event = format!(
            r#"{{"v":1,"id":"i","seq":0,"timestamp":"2026-11-26T07:06:42Z","user_id":"u","session_id":"s","host":"h","action":"file_read","resource":"{big}","outcome":"success","prev_hash":"{}"}}"#,
            audit::ZERO_HASH
        );
        let sealed = audit::seal(&event, None).unwrap();
        let canonical = String::from_utf8(sealed.line.clone()).unwrap();
        // `\u0079` is "y" written with an escape JCS does not use: not canonical.
        let escaped = canonical.replacen('y', "\\u0079", 1);
        std::fs::write(&p, format!("{canonical}{escaped}")).unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        let mut got = Vec::new();
        t.read_lines(&mut Vec::new(), 1000, true, |l| {
            let o = l.truncated.unwrap();
            got.push((
                o.whole.map(<[u8]>::len),
                o.scanned.map(|s| s.outcome.is_ok()),
            ));
            true
        })
        .unwrap();
        assert_eq!(
            got,
            [(None, Some(true)), (Some(escaped.len() - 1), None)],
            "a canonical line is scanned; another is read again whole"
        );
    }

    fn texts(t: &mut Tail) -> Vec<String> {
        lines(t, 100).into_iter().map(|l| l.0).collect()
    }

    fn numbered(from: usize, to: usize) -> String {
        (from..to).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn a_copy_holding_more_than_was_read_continues_after_it() {
        let d = tempfile::tempdir().unwrap();
        let (p, c) = (d.path().join("a.jsonl"), d.path().join("a.jsonl.1"));
        std::fs::write(&p, numbered(0, 500)).unwrap();
        let mut a = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        assert_eq!(texts(&mut a).len(), 500);
        // The writer appends, the copy is made, the original is truncated.
        std::fs::write(&p, numbered(0, 510)).unwrap();
        std::fs::copy(&p, &c).unwrap();
        std::fs::write(&p, "after 0\n").unwrap();
        assert!(a.check_truncation().unwrap());
        let prior = a
            .take_previous()
            .expect("what was read before the truncation");
        let mut b = Tail::new(open_nofollow(&c).unwrap(), "a.jsonl.1").unwrap();
        assert!(b.continue_after(&prior).unwrap());
        assert_eq!(
            texts(&mut b),
            (500..510).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        assert_eq!(b.line, 510);
        assert_eq!(texts(&mut a), ["after 0"]);
    }

    #[test]
    fn a_copy_holding_less_than_was_read_reads_nothing_again() {
        let d = tempfile::tempdir().unwrap();
        let (p, c) = (d.path().join("a.jsonl"), d.path().join("a.jsonl.1"));
        std::fs::write(&p, numbered(0, 100)).unwrap();
        // The copy is seen while it is made: part of what was read, cut mid-line.
        let partial = numbered(0, 90);
        std::fs::write(&c, &partial[..partial.len() - 3]).unwrap();
        let mut a = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        assert_eq!(texts(&mut a).len(), 100);
        let prior = a.prior().unwrap();
        let mut b = Tail::new(open_nofollow(&c).unwrap(), "a.jsonl.1").unwrap();
        assert!(b.continue_after(&prior).unwrap());
        assert_eq!(b.line, 89);
        assert!(texts(&mut b).is_empty());
        // The copy completes, then the writer's later lines reach only the copy.
        std::fs::write(&c, numbered(0, 103)).unwrap();
        assert_eq!(texts(&mut b), ["line 100", "line 101", "line 102"]);
        assert_eq!(b.line, 103);
    }

    #[test]
    fn a_file_that_only_starts_alike_is_read_in_full() {
        let d = tempfile::tempdir().unwrap();
        let (p, c) = (d.path().join("a.jsonl"), d.path().join("b.jsonl"));
        std::fs::write(&p, numbered(0, 50)).unwrap();
        let mut a = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        texts(&mut a);
        let prior = a.prior().unwrap();
        // Same first line, same length, one line differs: another file.
        let other = numbered(0, 50).replace("line 7\n", "line X\n");
        std::fs::write(&c, &other).unwrap();
        let mut b = Tail::new(open_nofollow(&c).unwrap(), "b.jsonl").unwrap();
        assert!(!b.continue_after(&prior).unwrap());
        assert_eq!(texts(&mut b).len(), 50);
        // A new first line: another file whatever follows.
        std::fs::write(&c, numbered(1, 50)).unwrap();
        let mut b = Tail::new(open_nofollow(&c).unwrap(), "b.jsonl").unwrap();
        assert!(!b.continue_after(&prior).unwrap());
    }

    #[test]
    fn the_checkpoint_keeps_what_recognises_a_copy_after_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let (p, c) = (d.path().join("a.jsonl"), d.path().join("a.jsonl.1"));
        std::fs::write(&p, numbered(0, 20)).unwrap();
        let mut a = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        texts(&mut a);
        let cp = a.checkpoint();
        let text = serde_json::to_string(&cp).unwrap();
        let cp: Checkpoint = serde_json::from_str(&text).unwrap();
        // A checkpoint written before marks existed still reads.
        let old: Checkpoint = serde_json::from_str(
            r#"{"v":1,"dev":1,"ino":2,"fingerprint":null,"offset":0,"line":0,"name":"x"}"#,
        )
        .unwrap();
        assert_eq!(old.last, None);
        std::fs::write(&c, numbered(0, 22)).unwrap();
        let (a2, how) = Tail::resume(open_nofollow(&p).unwrap(), "a.jsonl", &cp).unwrap();
        assert_eq!(how, Resume::Continue);
        let mut b = Tail::new(open_nofollow(&c).unwrap(), "a.jsonl.1").unwrap();
        assert!(b.continue_after(&a2.prior().unwrap()).unwrap());
        assert_eq!(texts(&mut b), ["line 20", "line 21"]);
        // After a failed commit the copy goes back to where it continued, not to 0.
        b.rewind(None);
        assert_eq!(texts(&mut b), ["line 20", "line 21"]);
    }

    #[test]
    fn a_read_finding_the_file_rewritten_under_its_offset_takes_nothing_of_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.jsonl");
        std::fs::write(&p, numbered(0, 3)).unwrap();
        let mut t = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        assert_eq!(texts(&mut t).len(), 3);
        // Truncated and written again past the offset, with no look in between: a
        // read at the old offset would land inside the new lines.
        std::fs::write(&p, numbered(100, 110)).unwrap();
        assert!(texts(&mut t).is_empty());
        assert!(t.take_rewritten());
        assert!(!t.take_rewritten(), "said once");
        let previous = t.take_previous().expect("what was read before");
        assert_eq!(previous.marks.len(), 3);
        assert_eq!((t.offset, t.line), (0, 0));
        assert_eq!(
            texts(&mut t),
            (100..110).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        // Plain growth is read on.
        std::fs::write(&p, numbered(100, 112)).unwrap();
        assert_eq!(texts(&mut t), ["line 110", "line 111"]);
        assert!(!t.take_rewritten());
    }

    #[test]
    fn a_copy_of_a_file_still_read_is_told_from_one_that_only_starts_alike() {
        let d = tempfile::tempdir().unwrap();
        let (p, c) = (d.path().join("a.jsonl"), d.path().join("a.jsonl.1"));
        std::fs::write(&p, numbered(0, 300)).unwrap();
        let mut a = Tail::new(open_nofollow(&p).unwrap(), "a.jsonl").unwrap();
        assert_eq!(texts(&mut a).len(), 300);
        // Being written: the start of the original, cut inside a line.
        let all = numbered(0, 300);
        std::fs::write(&c, &all[..1001]).unwrap();
        let b = Tail::new(open_nofollow(&c).unwrap(), "a.jsonl.1").unwrap();
        assert_eq!(b.copies_so_far(&a, 0).unwrap(), Some(1001));
        std::fs::write(&c, &all).unwrap();
        assert_eq!(b.copies_so_far(&a, 1001).unwrap(), Some(a.offset));
        // Same first line, other bytes further on.
        std::fs::write(&c, all.replace("line 150\n", "line XYZ\n")).unwrap();
        assert_eq!(b.copies_so_far(&a, 0).unwrap(), None);
        // Another first line.
        std::fs::write(&c, numbered(1, 300)).unwrap();
        let b = Tail::new(open_nofollow(&c).unwrap(), "a.jsonl.1").unwrap();
        assert_eq!(b.copies_so_far(&a, 0).unwrap(), None);
    }

    #[test]
    fn symlinks_are_not_opened() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("real"), "x\n").unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("link")).unwrap();
        assert!(open_nofollow(&d.path().join("link")).is_err());
    }
}
