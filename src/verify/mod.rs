//! Offline verification of streams on disk: which files form a stream, reading them
//! (plain or gzip) line by line in bounded memory, and feeding an [`audit::Verifier`].
//!
//! Owns only the file side; every rule about events lives in [`crate::audit`]. Output
//! formatting is the caller's: problems are handed to a callback as they are found, so
//! a log of any size verifies without holding its problems in memory.
//!
//! Besides the line codes of FORMAT.md it reports two of its own: [`GZIP_DAMAGED`] (a
//! `.gz` file that stops decompressing: what was read before is checked, the rest is
//! not) and [`NO_EVENTS`] (a stream in which nothing was checked), so that nothing
//! unread is ever reported intact. Exports of shipped records are [`export`]'s.
//!
//! [`audit::Verifier`]: crate::audit::Verifier

pub mod checkpoints;
pub mod export;

use crate::audit::{Checked, Head, Keys, LongLine, Problem, Verifier, json};
use flate2::read::MultiGzDecoder;
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Lines longer than this are not held whole: they are checked while they stream
/// past ([`crate::audit::LongLine`]), so memory stays bounded.
pub const MAX_LINE_BYTES: usize = crate::audit::MAX_WHOLE_LINE;

/// A `.gz` file that does not decompress to its end (corrupt or cut short). The lines
/// before the damage are checked; the chain goes on with the next file.
pub const GZIP_DAMAGED: &str = "gzip_damaged";
/// A stream in which no event was checked: no stream file at all (a directory that
/// is not a stream directory), or only empty files.
pub const NO_EVENTS: &str = "no_events";

/// One file of a stream and the name it is reported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFile {
    pub path: PathBuf,
    pub name: String,
}

/// Files verified together as one chain, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// What the user named: the directory, or the files given together.
    pub label: String,
    /// True when `label` is a directory and the files' names are relative to it.
    pub dir: bool,
    pub files: Vec<StreamFile>,
}

/// What the command line names: streams on disk, and files of shipped records.
#[derive(Debug, Default)]
pub struct Inputs {
    pub streams: Vec<Stream>,
    /// Files whose first line is a shipped record (it has `_auditship`): verified
    /// together as one export ([`export`]).
    pub exports: Vec<StreamFile>,
    /// Archive manifests found: a directory holding [`MANIFEST`] is an archive
    /// directory, whose manifest is listed here and whose tree holds the streams of
    /// its archives.
    pub manifests: Vec<PathBuf>,
}

/// The file that makes a directory an archive directory (docs/ARCHIVE.md).
pub const MANIFEST: &str = "manifest.jsonl";

/// How deep below a path given the walk looks for stream directories (the archive
/// directory's `home/<user>/.claude/audit` is four levels down).
const MAX_WALK_DEPTH: usize = 6;

/// True for the file names a stream directory contributes: `*.jsonl` and `*.jsonl.gz`.
pub fn is_stream_file(name: &str) -> bool {
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}

/// Groups command-line paths into streams: each directory with `*.jsonl` or
/// `*.jsonl.gz` files is a stream of its own files in name order; a directory
/// without such files is a tree, walked (without following symbolic links, at most
/// [`MAX_WALK_DEPTH`] levels down) for the stream directories below it, as the
/// sealer's directory of users or an archive directory holds them; all plain files
/// given form one stream in the order given. A file (or a directory whose first file)
/// holding shipped records goes to the export instead, and a directory holding an
/// archive manifest gives its manifest. A path that does not exist is an error; a
/// directory in which nothing is found is a stream without files (`no_events`).
pub fn inputs_from_args(paths: &[PathBuf]) -> io::Result<Inputs> {
    let mut inputs = Inputs::default();
    let mut loose = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| with_path(e, p))?;
        if meta.is_dir() {
            if !classify_dir(p, 0, &mut inputs)? {
                inputs.streams.push(Stream {
                    label: p.display().to_string(),
                    dir: true,
                    files: Vec::new(),
                });
            }
        } else {
            let file = StreamFile {
                path: p.clone(),
                name: p.display().to_string(),
            };
            if export::is_export(p)? {
                inputs.exports.push(file);
            } else {
                loose.push(file);
            }
        }
    }
    if !loose.is_empty() {
        let label = loose
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        inputs.streams.insert(
            0,
            Stream {
                label,
                dir: false,
                files: loose,
            },
        );
    }
    Ok(inputs)
}

/// Sorts one directory into `inputs`: an archive directory (its manifest, then its
/// tree), a stream (its files), an export (its files, then its tree), or a tree to
/// walk. Returns whether anything was found.
fn classify_dir(dir: &Path, depth: usize, inputs: &mut Inputs) -> io::Result<bool> {
    let manifest = dir.join(MANIFEST);
    if std::fs::symlink_metadata(&manifest).is_ok_and(|m| m.is_file()) {
        inputs.manifests.push(manifest);
        walk_subdirs(dir, depth, inputs)?;
        return Ok(true);
    }
    let files = dir_files(dir)?;
    match files.first() {
        None => walk_subdirs(dir, depth, inputs),
        Some(first) if export::is_export(&first.path)? => {
            inputs.exports.extend(files.into_iter().map(|f| StreamFile {
                name: f.path.display().to_string(),
                path: f.path,
            }));
            // Exports are kept beside other things: look below too.
            walk_subdirs(dir, depth, inputs)?;
            Ok(true)
        }
        Some(_) => {
            inputs.streams.push(Stream {
                label: dir.display().to_string(),
                dir: true,
                files,
            });
            Ok(true)
        }
    }
}

/// Classifies the subdirectories of `dir` in name order, symbolic links left alone.
fn walk_subdirs(dir: &Path, depth: usize, inputs: &mut Inputs) -> io::Result<bool> {
    if depth >= MAX_WALK_DEPTH {
        return Ok(false);
    }
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let entry = entry.map_err(|e| with_path(e, dir))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            subdirs.push(entry.path());
        }
    }
    subdirs.sort();
    let mut found = false;
    for sub in subdirs {
        found |= classify_dir(&sub, depth + 1, inputs)?;
    }
    Ok(found)
}

/// Joins streams into one: every file in name order (a `.gz` sorts as its plain
/// name), reported by path. For a stream's archives and its live files together.
pub fn one_stream(streams: Vec<Stream>) -> Stream {
    let label = streams
        .iter()
        .map(|s| s.label.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut files: Vec<StreamFile> = streams
        .into_iter()
        .flat_map(|s| s.files)
        .map(|f| StreamFile {
            name: f.path.display().to_string(),
            path: f.path,
        })
        .collect();
    let base = |f: &StreamFile| {
        f.path
            .file_name()
            .map(|n| sort_key(&n.to_string_lossy()).to_string())
            .unwrap_or_default()
    };
    files.sort_by_cached_key(|f| (base(f), f.name.clone()));
    Stream {
        label,
        dir: false,
        files,
    }
}

/// A directory's stream files in name order (a `.gz` sorts as its uncompressed name).
pub fn dir_files(dir: &Path) -> io::Result<Vec<StreamFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let entry = entry.map_err(|e| with_path(e, dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_stream_file(&name)
            && name != MANIFEST
            && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
        {
            files.push(StreamFile {
                path: entry.path(),
                name,
            });
        }
    }
    files.sort_by(|a, b| {
        sort_key(&a.name)
            .cmp(sort_key(&b.name))
            .then(a.name.cmp(&b.name))
    });
    Ok(files)
}

fn sort_key(name: &str) -> &str {
    name.strip_suffix(".gz").unwrap_or(name)
}

fn with_path(e: io::Error, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

/// A problem with its place. `code` is one of FORMAT.md's line codes, one of this
/// module's, or (in an export) a code the daemon shipped with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located<'s> {
    pub file: &'s str,
    pub line: u64,
    pub code: &'s str,
    pub detail: &'s str,
    /// In an export: the export file and line the record was read from.
    pub shipped_at: Option<(&'s str, u64)>,
}

impl<'s> Located<'s> {
    fn of(file: &'s str, line: u64, p: &'s Problem) -> Self {
        Located {
            file,
            line,
            code: p.code.as_str(),
            detail: &p.detail,
            shipped_at: None,
        }
    }
}

/// What a stream's verification found besides its problems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files read (in an export: the original files its records came from).
    pub files: Vec<String>,
    /// Non-blank lines examined.
    pub events: u64,
    /// Lines that are chain members.
    pub members: u64,
    pub first: Option<Head>,
    pub last: Option<Head>,
    pub problems: u64,
    /// Problem counts by code.
    pub by_code: BTreeMap<String, u64>,
    /// An unterminated last line of the stream's last file: not yet complete, so not
    /// verified (a producer may still be writing it). `(file, line, bytes)`.
    pub pending: Option<(String, u64, u64)>,
    /// What its signed checkpoints showed, when public keys were given.
    pub checkpoints: Option<checkpoints::CheckpointSummary>,
}

impl Summary {
    /// Counts a problem and hands it on.
    fn report(&mut self, p: Located<'_>, on_problem: &mut impl FnMut(Located<'_>)) {
        self.problems += 1;
        *self.by_code.entry(p.code.to_owned()).or_default() += 1;
        on_problem(p);
    }

    /// Reports [`NO_EVENTS`] when nothing was checked.
    pub(crate) fn require_events(&mut self, label: &str, on_problem: &mut impl FnMut(Located<'_>)) {
        if self.events > 0 {
            return;
        }
        let detail = if self.files.is_empty() {
            "no *.jsonl or *.jsonl.gz file: nothing was checked (is this the stream directory?)"
        } else {
            "its files hold no complete event: nothing was checked"
        };
        self.report(
            Located {
                file: label,
                line: 0,
                code: NO_EVENTS,
                detail,
                shipped_at: None,
            },
            on_problem,
        );
    }
}

/// True for the read errors that mean a `.gz` file is damaged, not unreadable.
fn is_gzip_damage(file: &Path, e: &io::Error) -> bool {
    file.extension().is_some_and(|x| x == "gz")
        && matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        )
}

/// Verifies one stream, calling `on_problem` for each problem in order. An I/O error
/// (a file that cannot be opened or read) is an `Err`; a damaged `.gz` is a
/// [`GZIP_DAMAGED`] problem, and a stream without events a [`NO_EVENTS`] problem.
pub fn verify_stream(
    stream: &Stream,
    keys: &Keys,
    on_problem: impl FnMut(Located<'_>),
) -> io::Result<Summary> {
    verify_stream_with(stream, keys, None, on_problem)
}

/// [`verify_stream`], checking signed checkpoints too when `tracker` is given.
pub fn verify_stream_with(
    stream: &Stream,
    keys: &Keys,
    tracker: Option<checkpoints::Tracker<'_>>,
    on_problem: impl FnMut(Located<'_>),
) -> io::Result<Summary> {
    verify_stream_observed(stream, keys, tracker, &mut OnProblem(on_problem))
}

/// What a walk over a stream tells as it goes, besides its [`Summary`]: every
/// problem in order, and, for readers that want them, every event read and every
/// file's digest. One walk serves both the integrity check and whatever else is
/// computed from the events (`auditship report`), so no file is read twice.
pub trait Observer {
    /// A problem, in the order found.
    fn problem(&mut self, p: Located<'_>);
    /// A line that is a JSON object: a chain member, or a line the schema (or
    /// canonical form) rejected. Called after the line's problems.
    fn event(&mut self, _seen: &Seen<'_, '_>) {}
    /// True to have each file's bytes on disk digested as they are read.
    fn digests(&self) -> bool {
        false
    }
    /// A file read to its end, with the digest of its bytes on disk (only when
    /// [`Observer::digests`] is true).
    fn file_read(&mut self, _path: &Path, _digest: &FileDigest) {}
}

/// An [`Observer`] of problems only.
pub struct OnProblem<F>(pub F);

impl<F: FnMut(Located<'_>)> Observer for OnProblem<F> {
    fn problem(&mut self, p: Located<'_>) {
        (self.0)(p)
    }
}

/// One event as the walk read it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a, 'v> {
    /// The file's name as problems are reported (in an export: the original file).
    pub file: &'a str,
    pub line: u64,
    pub event: &'a json::Object<'v>,
    /// True when the line joined the chain.
    pub member: bool,
    /// The codes of the problems found on this line, in report order.
    pub codes: &'a [&'a str],
}

/// The SHA-256 and length of a file's bytes as they are on disk (a `.gz` file's
/// compressed bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// [`verify_stream_with`], telling `observer` what it reads.
pub fn verify_stream_observed(
    stream: &Stream,
    keys: &Keys,
    mut tracker: Option<checkpoints::Tracker<'_>>,
    observer: &mut impl Observer,
) -> io::Result<Summary> {
    let mut verifier = Verifier::new(keys.clone());
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut problems = Vec::new();
    // Problems of the checkpoint a line carries: (code, detail).
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let mut codes: Vec<&'static str> = Vec::new();
    let last_index = stream.files.len().saturating_sub(1);
    let mut long = None;
    for (index, file) in stream.files.iter().enumerate() {
        summary.files.push(file.name.clone());
        let (mut reader, digesting) = if observer.digests() {
            let (r, d) = open_digested(&file.path)?;
            (r, Some(d))
        } else {
            (open(&file.path)?, None)
        };
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let (read, complete) = match read_line(&mut reader, &mut buf, &mut long) {
                Ok(r) => r,
                Err(e) if is_gzip_damage(&file.path, &e) => {
                    let detail = format!(
                        "does not decompress after line {line_no}: {e}; the rest of the file is not checked"
                    );
                    summary.report(
                        Located {
                            file: &file.name,
                            line: line_no + 1,
                            code: GZIP_DAMAGED,
                            detail: &detail,
                            shipped_at: None,
                        },
                        &mut |p| observer.problem(p),
                    );
                    break;
                }
                Err(e) => return Err(with_path(e, &file.path)),
            };
            if read == 0 && !complete {
                break;
            }
            line_no += 1;
            if !complete && index == last_index {
                summary.pending = Some((file.name.clone(), line_no, read as u64));
                break;
            }
            problems.clear();
            extra.clear();
            let scanned = long.take().map(LongLine::finish);
            let checked = match &scanned {
                Some(scanned) => verifier.check_scanned(scanned, &mut problems),
                None => verifier.check_line(&buf, &mut problems),
            };
            if let (Checked::Member { value, head, .. }, Some(t)) = (&checked, tracker.as_mut()) {
                // A line too long to hold is never a checkpoint event.
                let value = if scanned.is_some() {
                    &json::Value::Null
                } else {
                    value
                };
                t.member(value, *head, |code, detail| {
                    extra.push((code, detail.to_owned()));
                });
            }
            if !matches!(checked, Checked::Blank) {
                summary.events += 1;
            }
            for p in &problems {
                summary.report(Located::of(&file.name, line_no, p), &mut |p| {
                    observer.problem(p)
                });
            }
            for (code, detail) in &extra {
                let at = Located {
                    file: &file.name,
                    line: line_no,
                    code,
                    detail,
                    shipped_at: None,
                };
                summary.report(at, &mut |p| observer.problem(p));
            }
            let (value, member) = match &checked {
                Checked::Member { value, .. } => (Some(value), true),
                Checked::Rejected { value } => (value.as_ref(), false),
                Checked::Blank => (None, false),
            };
            if let Some(json::Value::Object(event)) = value {
                codes.clear();
                codes.extend(problems.iter().map(|p| p.code.as_str()));
                codes.extend(extra.iter().map(|(c, _)| *c));
                observer.event(&Seen {
                    file: &file.name,
                    line: line_no,
                    event,
                    member,
                    codes: &codes,
                });
            }
        }
        drop(reader);
        if let Some(d) = digesting {
            let digest = d.finish().map_err(|e| with_path(e, &file.path))?;
            observer.file_read(&file.path, &digest);
        }
    }
    summary.members = verifier.members();
    summary.first = verifier.first();
    summary.last = verifier.head();
    if let Some(t) = tracker {
        t.finish(summary.first, summary.last, &mut summary, &mut |p| {
            observer.problem(p)
        });
    }
    summary.require_events(&stream.label, &mut |p| observer.problem(p));
    Ok(summary)
}

/// Opens a stream file, decompressing `.gz` transparently.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| with_path(e, path))?;
    Ok(reader(path, file))
}

/// [`open`], digesting the file's bytes on disk as they are read: [`Digesting::finish`]
/// reads what is left unread and gives the digest of the whole file.
pub fn open_digested(path: &Path) -> io::Result<(Box<dyn BufRead>, Digesting)> {
    let file = File::open(path).map_err(|e| with_path(e, path))?;
    let state = Rc::new(RefCell::new(TeeState {
        file,
        hasher: Sha256::new(),
        bytes: 0,
    }));
    Ok((reader(path, Tee(Rc::clone(&state))), Digesting(state)))
}

fn reader(path: &Path, raw: impl Read + 'static) -> Box<dyn BufRead> {
    if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, raw)),
        ))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, raw))
    }
}

struct TeeState {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl TeeState {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A file's bytes on their way to the reader, digested.
struct Tee(Rc<RefCell<TeeState>>);

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// The digest of a file opened with [`open_digested`].
pub struct Digesting(Rc<RefCell<TeeState>>);

impl Digesting {
    /// Reads the rest of the file (a reader may stop early: a damaged `.gz`, an
    /// unfinished last line) and returns the digest of all its bytes.
    pub fn finish(self) -> io::Result<FileDigest> {
        let mut state = self.0.borrow_mut();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match state.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let hasher = std::mem::take(&mut state.hasher);
        Ok(FileDigest {
            bytes: state.bytes,
            sha256: hasher.finalize().into(),
        })
    }
}

/// Reads one line into `buf` without its `\n`. A line longer than `MAX_LINE_BYTES`
/// is not held: from the piece that takes it over the limit, all of it so far and
/// the rest go to a [`LongLine`] scan left in `long` (`buf` keeps a prefix). Returns
/// the full length read (without `\n`) and whether a `\n` ended it.
pub fn read_line(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    long: &mut Option<LongLine>,
) -> io::Result<(usize, bool)> {
    *long = None;
    let mut total = 0usize;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((total, false));
        }
        let (take, done) = match memchr_nl(chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let piece = &chunk[..take];
        if let Some(scan) = long.as_mut() {
            scan.feed(piece);
        } else if buf.len() + take > MAX_LINE_BYTES {
            let mut scan = LongLine::new();
            scan.feed(buf);
            scan.feed(piece);
            *long = Some(scan);
        } else {
            buf.extend_from_slice(piece);
        }
        total += take;
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok((total, true));
        }
    }
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_splits_and_reports_the_unterminated_tail() {
        let mut r: &[u8] = b"a\n\nbc\ndef";
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            buf.clear();
            let (n, complete) = read_line(&mut r, &mut buf, &mut None).unwrap();
            if n == 0 && !complete {
                break;
            }
            got.push((String::from_utf8(buf.clone()).unwrap(), n, complete));
        }
        assert_eq!(
            got,
            [
                ("a".into(), 1, true),
                ("".into(), 0, true),
                ("bc".into(), 2, true),
                ("def".into(), 3, false)
            ]
        );
    }

    #[test]
    fn gz_names_sort_with_their_plain_names() {
        let mut names = ["b.jsonl", "a.jsonl.gz", "c.jsonl.gz", "a2.jsonl"];
        names.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));
        assert_eq!(names, ["a.jsonl.gz", "a2.jsonl", "b.jsonl", "c.jsonl.gz"]);
        assert!(
            is_stream_file("x.jsonl.gz") && !is_stream_file("x.json") && !is_stream_file(".lock")
        );
    }
}
