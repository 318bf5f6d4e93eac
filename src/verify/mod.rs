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

use crate::audit::{Checked, Head, Keys, LongLine, Problem, Verifier};
use flate2::read::MultiGzDecoder;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

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
}

/// True for the file names a stream directory contributes: `*.jsonl` and `*.jsonl.gz`.
pub fn is_stream_file(name: &str) -> bool {
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}

/// Groups command-line paths into streams: each directory is a stream of its own
/// `*.jsonl` and `*.jsonl.gz` files in name order (a directory without such files
/// whose subdirectories have them gives one stream per subdirectory, as the sealer's
/// directory of users does); all plain files given form one
/// stream in the order given. A file (or a directory whose first file) holding
/// shipped records goes to the export instead. A path that does not exist is an
/// error.
pub fn inputs_from_args(paths: &[PathBuf]) -> io::Result<Inputs> {
    let mut inputs = Inputs::default();
    let mut loose = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| with_path(e, p))?;
        if meta.is_dir() {
            let files = dir_files(p)?;
            if files.is_empty() {
                let nested = stream_subdirs(p)?;
                if !nested.is_empty() {
                    inputs.streams.extend(nested);
                    continue;
                }
            }
            match files.first() {
                Some(first) if export::is_export(&first.path)? => {
                    inputs.exports.extend(files.into_iter().map(|f| StreamFile {
                        name: f.path.display().to_string(),
                        path: f.path,
                    }));
                }
                _ => inputs.streams.push(Stream {
                    label: p.display().to_string(),
                    dir: true,
                    files,
                }),
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

/// The streams of a directory that holds stream directories rather than stream
/// files (the sealer's `<dir>/<user>/`): each subdirectory with stream files, in
/// name order. Symbolic links are not followed.
fn stream_subdirs(dir: &Path) -> io::Result<Vec<Stream>> {
    let mut streams = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let entry = entry.map_err(|e| with_path(e, dir))?;
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let path = entry.path();
        let files = dir_files(&path)?;
        if !files.is_empty() {
            streams.push(Stream {
                label: path.display().to_string(),
                dir: true,
                files,
            });
        }
    }
    streams.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(streams)
}

/// A directory's stream files in name order (a `.gz` sorts as its uncompressed name).
pub fn dir_files(dir: &Path) -> io::Result<Vec<StreamFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let entry = entry.map_err(|e| with_path(e, dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_stream_file(&name) && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
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
    fn require_events(&mut self, label: &str, on_problem: &mut impl FnMut(Located<'_>)) {
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
    mut tracker: Option<checkpoints::Tracker<'_>>,
    mut on_problem: impl FnMut(Located<'_>),
) -> io::Result<Summary> {
    let mut verifier = Verifier::new(keys.clone());
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut problems = Vec::new();
    // Problems of the checkpoint a line carries: (code, detail).
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    let last_index = stream.files.len().saturating_sub(1);
    let mut long = None;
    for (index, file) in stream.files.iter().enumerate() {
        summary.files.push(file.name.clone());
        let mut reader = open(&file.path)?;
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
                        &mut on_problem,
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
            let checked = match long.take().map(LongLine::finish) {
                Some(scanned) => {
                    let checked = verifier.check_scanned(&scanned, &mut problems);
                    // A line too long to hold is never a checkpoint event.
                    if let (Checked::Member { head, .. }, Some(t)) = (&checked, tracker.as_mut()) {
                        t.member(&crate::audit::json::Value::Null, *head, |_, _| {});
                    }
                    !matches!(checked, Checked::Blank)
                }
                None => {
                    let checked = verifier.check_line(&buf, &mut problems);
                    if let (Checked::Member { value, head, .. }, Some(t)) =
                        (&checked, tracker.as_mut())
                    {
                        t.member(value, *head, |code, detail| {
                            extra.push((code, detail.to_owned()));
                        });
                    }
                    !matches!(checked, Checked::Blank)
                }
            };
            if checked {
                summary.events += 1;
            }
            for p in &problems {
                summary.report(Located::of(&file.name, line_no, p), &mut on_problem);
            }
            for (code, detail) in &extra {
                let at = Located {
                    file: &file.name,
                    line: line_no,
                    code,
                    detail,
                    shipped_at: None,
                };
                summary.report(at, &mut on_problem);
            }
        }
    }
    summary.members = verifier.members();
    summary.first = verifier.first();
    summary.last = verifier.head();
    if let Some(t) = tracker {
        t.finish(summary.first, summary.last, &mut summary, &mut on_problem);
    }
    summary.require_events(&stream.label, &mut on_problem);
    Ok(summary)
}

/// Opens a stream file, decompressing `.gz` transparently.
pub fn open(path: &Path) -> io::Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| with_path(e, path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, file)),
        )))
    } else {
        Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
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

/// Reads a key file: hex of at least 32 bytes, surrounding white space ignored.
pub fn read_key_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| with_path(e, path))?;
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
