//! `auditship report`: what an auditor asks of a period, from the trail itself.
//! Which people used the agent and what it did, what was refused or failed, which
//! regulated resources it touched, whether each stream is complete and unaltered,
//! and where each host's record has gaps (docs/REPORT.md).
//!
//! One walk: every stream is verified by [`crate::verify`] (the same checks as
//! `auditship verify`, on the whole of each stream whatever the period), which hands
//! each event it reads to this module's observer; the counts are
//! [`model::Tally`]'s, taken in bounded memory. Exports of shipped records come
//! first (they are held whole by [`verify::export`] anyway): an event found both
//! there and on disk (the same `hash`) is counted once. Writers turn the result
//! into HTML ([`html`], charts by [`svg`]), JSON ([`json`]) or CSV ([`csv`], which
//! writes every event as it is read instead).
//!
//! Nothing is re-identified: the report prints what the trail holds (resources and
//! decisions as redacted by `record`, digests never), and no more.

pub mod completeness;
pub mod csv;
pub mod facts;
pub mod html;
pub mod inputs;
pub mod json;
pub mod model;
pub mod period;
pub mod silence;
pub mod svg;
pub mod topk;

use crate::audit::Keys;
use crate::verify::checkpoints::{self, Anchors, Tracker};
use crate::verify::{self, FileDigest, Located, Observer, Seen, Summary, export};
use completeness::Place;
use facts::Facts;
use inputs::{Plan, Planned};
use model::{Finished, Tally};
use period::Period;
use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::Path;
use std::time::Duration;

/// Problems kept per stream for the report; the rest are counted.
pub const MAX_PROBLEMS: usize = 1000;
/// Users and hosts named per stream.
const NAMES_PER_STREAM: usize = 8;

/// How to read and judge.
pub struct Options {
    pub period: Period,
    /// The daemon's heartbeat interval: a host silent for more than twice this is
    /// reported.
    pub heartbeat: Duration,
    pub keys: Keys,
    pub anchors: Option<Anchors>,
    /// The `--key`, `--pubkey` and `--checkpoints` arguments as given, for the
    /// `auditship verify` commands that repeat the integrity check.
    pub verify_args: Vec<String>,
    /// The public key files given: inputs too.
    pub pubkey_files: Vec<std::path::PathBuf>,
}

/// One problem, as the report lists it.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The file's name as `auditship verify` reports it: within its directory for a
    /// directory stream, the path otherwise.
    pub file: String,
    /// The file's path (for a directory stream, the directory joined with `file`).
    pub path: String,
    pub line: u64,
    pub code: String,
    pub detail: String,
}

/// What the report says of one stream (or export, manifest, checkpoint file).
#[derive(Debug)]
pub struct StreamReport {
    pub path: String,
    /// `directory`, `files`, `shipped` (a stream's records in an export), `export`
    /// (the export's own lines), `manifest`, `checkpoints`.
    pub kind: &'static str,
    pub summary: Summary,
    pub problems: Vec<Problem>,
    pub problems_omitted: u64,
    pub users: BTreeSet<String>,
    pub hosts: BTreeSet<String>,
    /// For a stream of shipped records: (host, source).
    pub origin: Option<(String, String)>,
    /// For a manifest: archives checked.
    pub archives_checked: Option<u64>,
    /// For an export: (lines, re-sends dropped, daemon records).
    pub export: Option<(u64, u64, u64)>,
    /// The command that checks this stream again.
    pub command: String,
    /// The files' names are relative to `path` (a directory stream).
    dir: bool,
    /// The directories joined into this stream (an archive's copy and the live
    /// directory), when more than one.
    pub joined: Vec<String>,
}

impl StreamReport {
    fn new(path: &str, kind: &'static str, command: String) -> StreamReport {
        StreamReport {
            path: path.to_owned(),
            kind,
            summary: Summary::default(),
            problems: Vec::new(),
            problems_omitted: 0,
            users: BTreeSet::new(),
            hosts: BTreeSet::new(),
            origin: None,
            archives_checked: None,
            export: None,
            command,
            dir: kind == "directory",
            joined: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.summary.problems == 0
    }

    fn problem(&mut self, file: &str, line: u64, code: &str, detail: &str) {
        if self.problems.len() < MAX_PROBLEMS {
            let path = if self.dir && line > 0 {
                Path::new(&self.path).join(file).display().to_string()
            } else {
                file.to_owned()
            };
            self.problems.push(Problem {
                path,
                file: file.to_owned(),
                line,
                code: code.to_owned(),
                detail: detail.to_owned(),
            });
        } else {
            self.problems_omitted += 1;
        }
    }

    /// Problems counted outside a walk (manifests, checkpoint files).
    fn counted(&mut self, file: &str, line: u64, code: &'static str, detail: &str) {
        self.summary.problems += 1;
        *self.summary.by_code.entry(code.to_owned()).or_default() += 1;
        self.problem(file, line, code, detail);
    }
}

/// A file read, with its digest.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The report, ready to write.
#[derive(Debug)]
pub struct Report {
    pub finished: Finished,
    pub streams: Vec<StreamReport>,
    /// Every file read, by path.
    pub inputs: Vec<InputFile>,
    /// SHA-256 of the lines `<sha256>  <path>\n` of [`Report::inputs`], in that
    /// order: what `sha256sum` prints for them.
    pub inputs_sha256: String,
    pub heartbeat: Duration,
    /// Events found both in an export and on disk, counted once.
    pub duplicates: u64,
    /// The daemon's own records read from exports.
    pub daemon_records: u64,
    /// The commands that repeat every integrity check.
    pub commands: Vec<String>,
}

impl Report {
    /// True when every stream, export, manifest and checkpoint file is intact.
    pub fn ok(&self) -> bool {
        self.streams.iter().all(StreamReport::ok)
    }

    pub fn problem_count(&self) -> u64 {
        self.streams.iter().map(|s| s.summary.problems).sum()
    }
}

/// One event as the CSV lists it.
pub struct Row<'a> {
    pub facts: &'a Facts<'a>,
    pub stream: &'a str,
    pub file: &'a str,
    pub line: u64,
    pub codes: &'a [&'a str],
}

/// Where each event of the period goes as it is read (the CSV writer); the other
/// formats take none.
pub trait Rows {
    fn row(&mut self, row: &Row<'_>) -> io::Result<()>;
}

/// Takes no rows.
pub struct NoRows;

impl Rows for NoRows {
    fn row(&mut self, _: &Row<'_>) -> io::Result<()> {
        Ok(())
    }
}

/// Reads everything planned, verifying and counting, and returns the report.
pub fn build(plan: &Plan, opts: &Options, rows: &mut dyn Rows) -> io::Result<Report> {
    let threshold = i64::try_from(opts.heartbeat.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
    let mut b = Builder {
        tally: Tally::new(opts.period, threshold),
        streams: Vec::new(),
        inputs: Vec::new(),
        hashes: HashSet::new(),
        duplicates: 0,
        daemon_records: 0,
        rows,
    };
    if let Some(anchors) = &opts.anchors {
        b.checkpoint_files(anchors, opts)?;
    }
    if !plan.exports.is_empty() {
        b.exports(&plan.exports, opts)?;
    }
    for planned in &plan.streams {
        b.stream(planned, opts)?;
    }
    for manifest in &plan.manifests {
        b.manifest(manifest)?;
    }
    b.finish(opts)
}

struct Builder<'r> {
    tally: Tally,
    streams: Vec<StreamReport>,
    inputs: Vec<InputFile>,
    /// The `hash` of every event read from an export.
    hashes: HashSet<[u8; 64]>,
    duplicates: u64,
    daemon_records: u64,
    rows: &'r mut dyn Rows,
}

impl Builder<'_> {
    fn checkpoint_files(&mut self, anchors: &Anchors, opts: &Options) -> io::Result<()> {
        for (file, _read, _other) in &anchors.files {
            self.digest_file(Path::new(file))?;
            let mut entry = StreamReport::new(file, "checkpoints", verify_command(opts, &[]));
            entry.summary.files = vec![file.clone()];
            for (_, line, detail) in anchors.bad.iter().filter(|(f, _, _)| f == file) {
                entry.counted(file, *line, checkpoints::BAD_SIGNATURE, detail);
            }
            self.streams.push(entry);
        }
        Ok(())
    }

    fn exports(&mut self, files: &[verify::StreamFile], opts: &Options) -> io::Result<()> {
        let export = export::read_digested(files)?;
        for (path, digest) in &export.digests {
            self.input(path, digest);
        }
        let paths: Vec<String> = export.files.clone();
        let command = verify_command(opts, &paths);
        let label = paths.join(" ");
        let mut entry = StreamReport::new(&label, "export", command.clone());
        entry.export = Some((export.lines, export.resent, export.daemon_records));
        let mut kept = Vec::new();
        let summary = export.verify_lines(&label, |p| {
            kept.push((
                p.file.to_owned(),
                p.line,
                p.code.to_owned(),
                p.detail.to_owned(),
            ));
        });
        for (file, line, code, detail) in &kept {
            entry.problem(file, *line, code, detail);
        }
        entry.summary = summary;
        self.streams.push(entry);
        self.daemon_records += export.daemon_records;
        for d in &export.daemon {
            self.tally
                .daemon_record(&d.host, period::timestamp_ms(&d.timestamp), &d.source_event);
        }
        for group in &export.groups {
            let mut entry = StreamReport::new(&group.stream, "shipped", command.clone());
            entry.origin = Some((group.host.clone(), group.source.clone()));
            let tracker = opts.anchors.as_ref().map(|a| {
                let name = Path::new(&group.stream)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Tracker::new(a, name)
            });
            let index = self.streams.len() as u32;
            let mut walk = self.walk(&mut entry, index, true);
            let summary = export.verify_group_observed(group, &opts.keys, tracker, &mut walk);
            walk.done()?;
            entry.summary = summary;
            self.streams.push(entry);
        }
        Ok(())
    }

    fn stream(&mut self, planned: &Planned, opts: &Options) -> io::Result<()> {
        let stream = &planned.stream;
        let joined = planned.parts.len() > 1;
        let kind = if stream.dir || joined {
            "directory"
        } else {
            "files"
        };
        let command = if planned.parts.len() > 1 {
            let mut args = vec!["--stream".to_string()];
            args.extend(planned.parts.iter().cloned());
            verify_command(opts, &args)
        } else if stream.dir {
            verify_command(opts, std::slice::from_ref(&stream.label))
        } else {
            let files: Vec<String> = stream
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect();
            verify_command(opts, &files)
        };
        let mut entry = StreamReport::new(&stream.label, kind, command);
        entry.dir = stream.dir;
        if joined {
            entry.joined = planned.parts.clone();
        }
        let tracker = opts.anchors.as_ref().map(|a| {
            let dir = stream.dir.then(|| Path::new(&stream.label));
            let first = stream.files.first().map(|f| f.path.as_path());
            Tracker::new(a, checkpoints::fallback_name(dir, first))
        });
        let index = self.streams.len() as u32;
        let mut walk = self.walk(&mut entry, index, false);
        let summary = verify::verify_stream_observed(stream, &opts.keys, tracker, &mut walk);
        walk.done()?;
        entry.summary = summary?;
        self.streams.push(entry);
        Ok(())
    }

    fn manifest(&mut self, path: &Path) -> io::Result<()> {
        self.digest_file(path)?;
        let label = path.display().to_string();
        let command = format!("auditship verify --manifest {}", shell_quote(&label));
        let mut entry = StreamReport::new(&label, "manifest", command);
        let (found, checked) = crate::archive::verify_manifest(path)?;
        entry.summary.files = vec![label.clone()];
        for p in &found {
            entry.counted(&p.file, p.line, p.code, &p.detail);
        }
        entry.archives_checked = Some(checked);
        self.streams.push(entry);
        Ok(())
    }

    fn walk<'w>(
        &'w mut self,
        entry: &'w mut StreamReport,
        index: u32,
        from_export: bool,
    ) -> Walk<'w> {
        Walk {
            tally: &mut self.tally,
            entry,
            stream: index,
            rows: &mut *self.rows,
            hashes: &mut self.hashes,
            from_export,
            duplicates: &mut self.duplicates,
            inputs: &mut self.inputs,
            error: None,
        }
    }

    fn input(&mut self, path: &Path, digest: &FileDigest) {
        self.inputs.push(input_file(path, digest));
    }

    /// A file read outside the walk (manifest, checkpoint file, public key): digested
    /// on its own.
    fn digest_file(&mut self, path: &Path) -> io::Result<()> {
        let (reader, digesting) = verify::open_digested(path)?;
        drop(reader);
        let digest = digesting.finish()?;
        self.input(path, &digest);
        Ok(())
    }

    fn finish(mut self, opts: &Options) -> io::Result<Report> {
        for key in &opts.pubkey_files {
            self.digest_file(key)?;
        }
        self.inputs.sort_by(|a, b| a.path.cmp(&b.path));
        self.inputs.dedup_by(|a, b| a.path == b.path);
        let mut listing = String::new();
        for f in &self.inputs {
            listing.push_str(&format!("{}  {}\n", f.sha256, f.path));
        }
        let inputs_sha256 = crate::audit::sha256_hex(listing.as_bytes());
        let mut seen = HashSet::new();
        let commands: Vec<String> = self
            .streams
            .iter()
            .filter(|s| seen.insert(s.command.as_str()))
            .map(|s| s.command.clone())
            .collect();
        Ok(Report {
            finished: self.tally.finish(),
            streams: self.streams,
            inputs: self.inputs,
            inputs_sha256,
            heartbeat: opts.heartbeat,
            duplicates: self.duplicates,
            daemon_records: self.daemon_records,
            commands,
        })
    }
}

fn input_file(path: &Path, digest: &FileDigest) -> InputFile {
    InputFile {
        path: path.display().to_string(),
        bytes: digest.bytes,
        sha256: String::from_utf8_lossy(&crate::audit::hex_lower(&digest.sha256)).into_owned(),
    }
}

/// The observer of one stream's walk.
struct Walk<'w> {
    tally: &'w mut Tally,
    entry: &'w mut StreamReport,
    stream: u32,
    rows: &'w mut dyn Rows,
    hashes: &'w mut HashSet<[u8; 64]>,
    /// True while reading an export: hashes are remembered; else events whose hash
    /// was remembered are not counted again.
    from_export: bool,
    duplicates: &'w mut u64,
    inputs: &'w mut Vec<InputFile>,
    /// The first error writing a row.
    error: Option<io::Error>,
}

impl Walk<'_> {
    fn done(self) -> io::Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// True when the event was counted already (from an export).
    fn seen_before(&mut self, hash: Option<&str>) -> bool {
        let Some(key) = hash.and_then(|h| <[u8; 64]>::try_from(h.as_bytes()).ok()) else {
            return false;
        };
        if self.from_export {
            self.hashes.insert(key);
            false
        } else if self.hashes.contains(&key) {
            *self.duplicates += 1;
            true
        } else {
            false
        }
    }
}

impl Observer for Walk<'_> {
    fn problem(&mut self, p: Located<'_>) {
        self.entry.problem(p.file, p.line, p.code, p.detail);
    }

    fn event(&mut self, seen: &Seen<'_, '_>) {
        let facts = Facts::of(seen.event);
        if self.seen_before(facts.hash) {
            return;
        }
        if facts.is_checkpoint() {
            // The sealer's, in the chain: its host was up, nobody acted.
            self.tally
                .daemon_record(facts.host.unwrap_or_default(), facts.ms, "checkpoint");
            return;
        }
        for (set, name) in [
            (&mut self.entry.users, facts.user),
            (&mut self.entry.hosts, facts.host),
        ] {
            if let Some(n) = name
                && set.len() < NAMES_PER_STREAM
                && !set.contains(n)
            {
                set.insert(n.to_owned());
            }
        }
        let at = Place {
            stream: self.stream,
            file: seen.file,
            line: seen.line,
        };
        if self.tally.event(&facts, at) && self.error.is_none() {
            let row = Row {
                facts: &facts,
                stream: &self.entry.path,
                file: seen.file,
                line: seen.line,
                codes: seen.codes,
            };
            if let Err(e) = self.rows.row(&row) {
                self.error = Some(e);
            }
        }
    }

    fn digests(&self) -> bool {
        true
    }

    fn file_read(&mut self, path: &Path, digest: &FileDigest) {
        self.inputs.push(input_file(path, digest));
    }
}

/// `auditship verify` with the report's keys and checkpoints, then `paths`.
fn verify_command(opts: &Options, paths: &[String]) -> String {
    let mut cmd = String::from("auditship verify");
    for a in opts.verify_args.iter().chain(paths) {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    cmd
}

/// A word as a POSIX shell reads it back: as is when it holds only safe
/// characters, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_the_shell_would_change_them() {
        assert_eq!(shell_quote("/var/lib/a-b/x.jsonl"), "/var/lib/a-b/x.jsonl");
        assert_eq!(shell_quote("--key=k=/x"), "--key=k=/x");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
