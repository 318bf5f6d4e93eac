//! Offline verification of streams on disk: which files form a stream, reading them
//! (plain or gzip) line by line in bounded memory, and feeding an [`audit::Verifier`].
//!
//! Owns only the file side; every rule about events lives in [`crate::audit`]. Output
//! formatting is the caller's: problems are handed to a callback as they are found, so
//! a log of any size verifies without holding its problems in memory.

use crate::audit::{Checked, Code, Head, Keys, LongLine, Problem, Verifier};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Lines longer than this are not held whole: they are checked while they stream
/// past ([`crate::audit::LongLine`]), so memory stays bounded.
pub const MAX_LINE_BYTES: usize = crate::audit::MAX_WHOLE_LINE;

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
    pub files: Vec<StreamFile>,
}

/// True for the file names a stream directory contributes: `*.jsonl` and `*.jsonl.gz`.
pub fn is_stream_file(name: &str) -> bool {
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}

/// Groups command-line paths into streams: each directory is a stream of its own
/// `*.jsonl` and `*.jsonl.gz` files in name order; all plain files given form one
/// stream in the order given.
pub fn streams_from_args(paths: &[PathBuf]) -> io::Result<Vec<Stream>> {
    let mut streams = Vec::new();
    let mut loose = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| with_path(e, p))?;
        if meta.is_dir() {
            streams.push(Stream {
                label: p.display().to_string(),
                files: dir_files(p)?,
            });
        } else {
            loose.push(StreamFile {
                path: p.clone(),
                name: p.display().to_string(),
            });
        }
    }
    if !loose.is_empty() {
        let label = loose
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        streams.insert(
            0,
            Stream {
                label,
                files: loose,
            },
        );
    }
    Ok(streams)
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
    Stream { label, files }
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

/// A problem with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<'s> {
    pub file: &'s str,
    pub line: u64,
    pub problem: Problem,
}

/// What a stream's verification found besides its problems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Non-blank lines examined.
    pub events: u64,
    /// Lines that are chain members.
    pub members: u64,
    pub first: Option<Head>,
    pub last: Option<Head>,
    pub problems: u64,
    /// Problem counts in [`Code::ALL`] order.
    pub by_code: [u64; Code::ALL.len()],
    /// An unterminated last line of the stream's last file: not yet complete, so not
    /// verified (a producer may still be writing it). `(file, line, bytes)`.
    pub pending: Option<(String, u64, u64)>,
}

/// Verifies one stream, calling `on_problem` for each problem in order.
pub fn verify_stream<'s>(
    stream: &'s Stream,
    keys: &Keys,
    mut on_problem: impl FnMut(Located<'s>),
) -> io::Result<Summary> {
    let mut verifier = Verifier::new(keys.clone());
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut problems = Vec::new();
    let last_index = stream.files.len().saturating_sub(1);
    let mut long = None;
    for (index, file) in stream.files.iter().enumerate() {
        let mut reader = open(&file.path)?;
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let (read, complete) = read_line(&mut reader, &mut buf, &mut long)
                .map_err(|e| with_path(e, &file.path))?;
            if read == 0 && !complete {
                break;
            }
            line_no += 1;
            if !complete && index == last_index {
                summary.pending = Some((file.name.clone(), line_no, read as u64));
                break;
            }
            problems.clear();
            let checked = match long.take().map(LongLine::finish) {
                Some(scanned) => !matches!(
                    verifier.check_scanned(&scanned, &mut problems),
                    Checked::Blank
                ),
                None => !matches!(verifier.check_line(&buf, &mut problems), Checked::Blank),
            };
            if checked {
                summary.events += 1;
            }
            for p in problems.drain(..) {
                count(&mut summary, &p);
                on_problem(Located {
                    file: &file.name,
                    line: line_no,
                    problem: p,
                });
            }
        }
    }
    summary.members = verifier.members();
    summary.first = verifier.first();
    summary.last = verifier.head();
    Ok(summary)
}

fn count(summary: &mut Summary, p: &Problem) {
    summary.problems += 1;
    if let Some(i) = Code::ALL.iter().position(|c| *c == p.code) {
        summary.by_code[i] += 1;
    }
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
