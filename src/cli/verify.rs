//! `auditship verify`: prove streams on disk, archives and shipped exports intact,
//! offline. The report (text or one JSON object) is written here; what is checked is
//! [`crate::verify`]'s and [`crate::archive::verify_manifest`]'s.

use crate::audit::Keys;
use crate::verify::checkpoints::{self, Anchors, Tracker};
use crate::verify::{self, Located, Summary, export};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Verify audit logs: hash chain, canonical hashes, HMAC signatures, schema.
///
/// Files given together are one stream, checked in the order given. A directory is
/// one stream: its *.jsonl and *.jsonl.gz files in name order (.gz is read
/// transparently); a directory without such files is walked for the stream
/// directories below it (the sealer's directory of users, a tree of homes). An
/// archive directory (one holding manifest.jsonl) gives the streams of its archives
/// and its manifest, checked as with --manifest. With --stream, everything given is one stream in name order: a
/// stream's archive directory and its live directory, checked as one chain across
/// them. --manifest checks the archives an archive manifest records.
///
/// A file of shipped records (lines with `_auditship`, as the file sink writes them or
/// a SIEM exports them) is recognised by its first line: its records are grouped by
/// stream, re-sends dropped, put in seq order and checked as chains.
///
/// Nothing unread passes: a stream in which nothing was checked (a directory without
/// *.jsonl files, empty files) is the problem no_events, a damaged .gz gzip_damaged.
///
/// With --pubkey, every signed checkpoint a stream carries is checked, and with
/// --checkpoints every checkpoint found in those files too (matched to a stream by
/// name: the user name of a sealed stream, i.e. its directory's name):
/// checkpoint_bad_signature, checkpoint_mismatch (rewritten history),
/// checkpoint_unmatched (cut history, or no checkpoint for the stream at all).
///
/// Exit status: 0 intact, 1 problems found, 2 usage or I/O error (a path, manifest or
/// key file that does not exist or cannot be read).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship verify ~/.claude/audit
  auditship verify audit-2026-11-01.jsonl audit-2026-11-02.jsonl.gz
  auditship verify --key fleet-2026=/etc/auditship/hmac.key --json /srv/audit/alice
  auditship verify --stream /var/lib/auditship/archive/home/alice/.claude/audit /home/alice/.claude/audit
  auditship verify --manifest /var/lib/auditship/archive/manifest.jsonl
  auditship verify siem-export.jsonl        (records exported from the SIEM, any order)
  auditship verify --key host-2026=sealer-hmac.key --pubkey sealer.ed25519.pub \
      --checkpoints siem-export.jsonl /var/lib/auditship/sealed/alice")]
pub struct Args {
    /// Files or directories to verify
    #[arg(required_unless_present = "manifest", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Everything given is one stream, its files in name order (archives and live files)
    #[arg(long)]
    pub stream: bool,
    /// An archive manifest: check its chain and every archive it records
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// HMAC key: key id and a file holding the key as hex (64+ digits); repeatable
    #[arg(long = "key", value_name = "KID=KEYFILE")]
    pub keys: Vec<String>,
    /// Public key (PEM, the sealer's `<signing_key_file>.pub`): check every signed
    /// checkpoint against the chains; repeatable (one per host or key)
    #[arg(long = "pubkey", value_name = "FILE")]
    pub pubkeys: Vec<PathBuf>,
    /// JSON lines holding checkpoint events, e.g. the records exported from the SIEM:
    /// the streams must still hold every event these checkpoints signed; repeatable
    #[arg(long = "checkpoints", value_name = "FILE", requires = "pubkeys")]
    pub checkpoints: Vec<PathBuf>,
    /// Print one JSON object: {"ok", "events", "problems", "streams": [per stream:
    /// path, files, events, first/last seq and hash, ok, problems], "error"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> ExitCode {
    match verify_paths(&args, &mut io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            let _ = writeln!(io::stderr(), "auditship verify: {e}");
            ExitCode::from(2)
        }
    }
}

/// The HMAC keys of `--key KID=KEYFILE` arguments.
pub(crate) fn load_keys(specs: &[String]) -> io::Result<Keys> {
    let mut keys = Keys::new();
    for spec in specs {
        let Some((kid, file)) = spec
            .split_once('=')
            .filter(|(k, f)| !k.is_empty() && !f.is_empty())
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--key {spec:?}: expected KID=KEYFILE"),
            ));
        };
        keys.insert(
            kid,
            &crate::keyfile::read_key_file(std::path::Path::new(file))?,
        );
    }
    Ok(keys)
}

/// Verifies and writes the report. Returns whether everything was intact. Every path
/// is looked at before anything is printed, so a missing one prints no report; an
/// error found later still ends the JSON object (with `error`) before it is returned.
pub fn verify_paths(args: &Args, out: &mut dyn Write) -> io::Result<bool> {
    let keys = load_keys(&args.keys)?;
    let anchors = load_anchors(args)?;
    let mut inputs = verify::inputs_from_args(&args.paths)?;
    if args.stream && !inputs.exports.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--stream joins streams on disk; a file of shipped records is checked on its own",
        ));
    }
    if args.stream && inputs.streams.len() > 1 {
        inputs.streams = vec![verify::one_stream(std::mem::take(&mut inputs.streams))];
    }
    if let Some(m) = &args.manifest {
        std::fs::metadata(m)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", m.display())))?;
    }
    let mut report = Report::begin(out, args.json)?;
    let result = verify_all(&mut report, args, &inputs, &keys, anchors.as_ref());
    let error = result.as_ref().err().map(|e| e.to_string());
    let ok = report.finish(error.as_deref())?;
    result.map(|()| ok)
}

/// The public keys and the checkpoints of the files given, when `--pubkey` is.
fn load_anchors(args: &Args) -> io::Result<Option<Anchors>> {
    if args.pubkeys.is_empty() {
        return Ok(None);
    }
    let keys = args
        .pubkeys
        .iter()
        .map(|p| crate::keyfile::read_public_key(p))
        .collect::<io::Result<Vec<_>>>()?;
    let files: Vec<&std::path::Path> = args.checkpoints.iter().map(PathBuf::as_path).collect();
    Anchors::read(keys, &files).map(Some)
}

fn verify_all(
    report: &mut Report<'_>,
    args: &Args,
    inputs: &verify::Inputs,
    keys: &Keys,
    anchors: Option<&Anchors>,
) -> io::Result<()> {
    if let Some(a) = anchors {
        report_checkpoint_files(report, a)?;
    }
    for stream in &inputs.streams {
        let kind = if stream.dir { "directory" } else { "files" };
        let entry = Entry::new(&stream.label, kind, stream.dir);
        let tracker = anchors.map(|a| {
            let dir = stream.dir.then(|| std::path::Path::new(&stream.label));
            let first = stream.files.first().map(|f| f.path.as_path());
            Tracker::new(a, checkpoints::fallback_name(dir, first))
        });
        let mut r = report.stream(entry);
        let summary = verify::verify_stream_with(stream, keys, tracker, |p| r.problem(&p));
        r.done(&summary?)?;
    }
    if !inputs.exports.is_empty() {
        verify_export(report, &inputs.exports, keys, anchors)?;
    }
    let found = inputs
        .manifests
        .iter()
        .filter(|m| args.manifest.as_ref() != Some(*m));
    for m in args.manifest.iter().chain(found) {
        let (found, checked) = crate::archive::verify_manifest(m)?;
        let label = m.display().to_string();
        let mut r = report.stream(Entry::new(&label, "manifest", false));
        for p in &found {
            r.problem(&Located {
                file: &p.file,
                line: p.line,
                code: p.code,
                detail: &p.detail,
                shipped_at: None,
            });
        }
        r.entry.archives = Some(checked);
        let mut summary = Summary {
            files: vec![label.clone()],
            problems: found.len() as u64,
            ..Summary::default()
        };
        for p in &found {
            *summary.by_code.entry(p.code.to_owned()).or_default() += 1;
        }
        r.done(&summary)?;
    }
    Ok(())
}

/// One entry per checkpoint file: how many checkpoints it held, how many belong to
/// keys not given, and the ones whose signature does not verify (problems).
fn report_checkpoint_files(report: &mut Report<'_>, anchors: &Anchors) -> io::Result<()> {
    for (file, read, other) in &anchors.files {
        let mut entry = Entry::new(file, "checkpoints", false);
        entry.checkpoint_file = Some((*read, *other));
        let mut r = report.stream(entry);
        let mut summary = Summary {
            files: vec![file.clone()],
            ..Summary::default()
        };
        for (_, line, detail) in anchors.bad.iter().filter(|(f, _, _)| f == file) {
            summary.problems += 1;
            *summary
                .by_code
                .entry(checkpoints::BAD_SIGNATURE.to_owned())
                .or_default() += 1;
            r.problem(&Located {
                file,
                line: *line,
                code: checkpoints::BAD_SIGNATURE,
                detail,
                shipped_at: None,
            });
        }
        r.done(&summary)?;
    }
    Ok(())
}

fn verify_export(
    report: &mut Report<'_>,
    files: &[verify::StreamFile],
    keys: &Keys,
    anchors: Option<&Anchors>,
) -> io::Result<()> {
    let export = export::read(files)?;
    let label = export.files.join(" ");
    let mut entry = Entry::new(&label, "export", false);
    entry.export = Some((export.lines, export.resent, export.daemon_records));
    let mut r = report.stream(entry);
    let summary = export.verify_lines(&label, |p| r.problem(&p));
    r.done(&summary)?;
    for group in &export.groups {
        let mut entry = Entry::new(&group.stream, "shipped", true);
        entry.origin = Some((group.host.clone(), group.source.clone()));
        let mut r = report.stream(entry);
        let tracker = anchors.map(|a| {
            let name = std::path::Path::new(&group.stream)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Tracker::new(a, name)
        });
        let summary = export.verify_group_with(group, keys, tracker, |p| r.problem(&p));
        r.done(&summary)?;
    }
    Ok(())
}

/// Most problems kept in a stream's own `problems` list in `--json`; the rest are
/// counted (`problems_omitted`). The top-level `problems` list has every one.
const KEPT_PER_STREAM: usize = 100;

/// A stream being reported.
struct Entry {
    path: String,
    kind: &'static str,
    /// The files' names are relative to `path`.
    dir: bool,
    /// For a group of shipped records: (host, source).
    origin: Option<(String, String)>,
    /// For an export: (lines, re-sends dropped, daemon records).
    export: Option<(u64, u64, u64)>,
    /// For a manifest: archives checked.
    archives: Option<u64>,
    /// For a checkpoint file: (checkpoints read, signed by keys not given).
    checkpoint_file: Option<(u64, u64)>,
}

impl Entry {
    fn new(path: &str, kind: &'static str, dir: bool) -> Entry {
        Entry {
            path: path.to_owned(),
            kind,
            dir,
            origin: None,
            export: None,
            archives: None,
            checkpoint_file: None,
        }
    }
}

/// The report: text as it goes, or one JSON object whose `problems` list is written
/// as problems are found (so memory stays bounded) and whose `streams` follow.
struct Report<'o> {
    out: &'o mut dyn Write,
    json: bool,
    problems: u64,
    events: u64,
    streams: Vec<serde_json::Value>,
    stream_count: usize,
    /// The first write error, returned once the stream is done.
    write_err: Option<io::Error>,
}

impl<'o> Report<'o> {
    fn begin(out: &'o mut dyn Write, json: bool) -> io::Result<Report<'o>> {
        if json {
            out.write_all(b"{\"problems\":[")?;
        }
        Ok(Report {
            out,
            json,
            problems: 0,
            events: 0,
            streams: Vec::new(),
            stream_count: 0,
            write_err: None,
        })
    }

    fn stream(&mut self, entry: Entry) -> StreamReport<'_, 'o> {
        self.stream_count += 1;
        StreamReport {
            report: self,
            entry,
            kept: Vec::new(),
            omitted: 0,
        }
    }

    /// Ends the report; with `error`, it says the check stopped. Returns whether
    /// everything was intact.
    fn finish(self, error: Option<&str>) -> io::Result<bool> {
        let ok = self.problems == 0 && error.is_none();
        if self.json {
            let streams = serde_json::Value::Array(self.streams);
            write!(
                self.out,
                "],\"streams\":{streams},\"ok\":{ok},\"events\":{},\"problem_count\":{}",
                self.events, self.problems
            )?;
            if let Some(e) = error {
                write!(self.out, ",\"error\":{}", serde_json::json!(e))?;
            }
            writeln!(self.out, "}}")?;
        } else if self.stream_count > 1 || error.is_some() {
            let verdict = if ok { "intact" } else { "NOT INTACT" };
            writeln!(
                self.out,
                "overall: {verdict}, {}, {}",
                count(self.events, "event", "events"),
                count(self.problems, "problem", "problems")
            )?;
        }
        self.out.flush()?;
        Ok(ok)
    }
}

/// One stream's part of the report.
struct StreamReport<'r, 'o> {
    report: &'r mut Report<'o>,
    entry: Entry,
    kept: Vec<serde_json::Value>,
    omitted: u64,
}

impl StreamReport<'_, '_> {
    fn problem(&mut self, p: &Located<'_>) {
        let place = if self.report.json {
            String::new()
        } else {
            self.place(p)
        };
        let r = &mut *self.report;
        let written = if r.json {
            let mut item = serde_json::json!({
                "stream": self.entry.path, "file": p.file, "line": p.line,
                "code": p.code, "detail": p.detail,
            });
            if let Some((file, line)) = p.shipped_at {
                item["export_file"] = file.into();
                item["export_line"] = line.into();
            }
            let sep = if r.problems == 0 { "" } else { "," };
            let w = write!(r.out, "{sep}{item}");
            if self.kept.len() < KEPT_PER_STREAM {
                item.as_object_mut().map(|o| o.remove("stream"));
                self.kept.push(item);
            } else {
                self.omitted += 1;
            }
            w
        } else {
            let at = match p.line {
                0 => place,
                n => format!("{place}:{n}"),
            };
            match p.shipped_at {
                Some((file, line)) => {
                    writeln!(r.out, "{at} {} {} (export {file}:{line})", p.code, p.detail)
                }
                None => writeln!(r.out, "{at} {} {}", p.code, p.detail),
            }
        };
        r.problems += 1;
        if let Err(e) = written {
            r.write_err.get_or_insert(e);
        }
    }

    /// Where a problem is, for people: the file's path.
    fn place(&self, p: &Located<'_>) -> String {
        if self.entry.dir && p.line > 0 {
            std::path::Path::new(&self.entry.path)
                .join(p.file)
                .display()
                .to_string()
        } else {
            p.file.to_owned()
        }
    }

    fn done(self, s: &Summary) -> io::Result<()> {
        let StreamReport {
            report,
            entry,
            kept,
            omitted,
        } = self;
        if let Some(e) = report.write_err.take() {
            return Err(e);
        }
        report.events += s.events;
        if report.json {
            report.streams.push(stream_json(&entry, s, kept, omitted));
            Ok(())
        } else {
            print_summary(report.out, &entry, s)
        }
    }
}

fn stream_json(
    entry: &Entry,
    s: &Summary,
    kept: Vec<serde_json::Value>,
    omitted: u64,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": entry.path,
        "kind": entry.kind,
        "files": s.files,
        "events": s.events,
        "members": s.members,
        "first_seq": s.first.map(|h| h.seq),
        "first_hash": s.first.as_ref().map(|h| h.hash_str().to_owned()),
        "last_seq": s.last.map(|h| h.seq),
        "last_hash": s.last.as_ref().map(|h| h.hash_str().to_owned()),
        "ok": s.problems == 0,
        "problem_count": s.problems,
        "by_code": s.by_code,
        "problems": kept,
        "problems_omitted": omitted,
    });
    if let Some((file, line, bytes)) = &s.pending {
        v["pending"] = serde_json::json!({"file": file, "line": line, "bytes": bytes});
    }
    if let Some((host, source)) = &entry.origin {
        v["host"] = host.as_str().into();
        v["source"] = source.as_str().into();
    }
    if let Some((lines, resent, daemon)) = entry.export {
        v["records"] = lines.into();
        v["resent_dropped"] = resent.into();
        v["daemon_records"] = daemon.into();
    }
    if let Some(n) = entry.archives {
        v["archives_checked"] = n.into();
    }
    if let Some((read, other)) = entry.checkpoint_file {
        v["checkpoints_read"] = read.into();
        v["checkpoints_other_keys"] = other.into();
    }
    if let Some(c) = &s.checkpoints {
        v["checkpoints"] = serde_json::json!({
            "stream": c.stream,
            "held": c.held,
            "covered_to_seq": c.covered_to,
            "before_files": c.before_files,
        });
    }
    v
}

/// "1 event", "2 events".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_summary(out: &mut dyn Write, entry: &Entry, s: &Summary) -> io::Result<()> {
    let label = &entry.path;
    if let Some((read, other)) = entry.checkpoint_file {
        writeln!(
            out,
            "{label}: {} read, {} signed by other keys (not checked)",
            count(read, "checkpoint", "checkpoints"),
            other
        )?;
        return print_verdict(out, s);
    }
    match (entry.kind, entry.export, entry.archives, &entry.origin) {
        ("export", Some((lines, resent, daemon)), _, _) => writeln!(
            out,
            "{label}: {} read, {} dropped as re-sends, {} of the daemon's own (not chained)",
            count(lines, "line", "lines"),
            count(resent, "record", "records"),
            count(daemon, "record", "records"),
        )?,
        (_, _, Some(checked), _) => writeln!(
            out,
            "{label}: {} checked",
            count(checked, "archive", "archives")
        )?,
        (_, _, _, Some((host, source))) => writeln!(
            out,
            "{label} (shipped from host {host}, source {source}): {}, {} in the chain",
            count(s.events, "record", "records"),
            s.members
        )?,
        _ => writeln!(
            out,
            "{label}: {}, {}, {} in the chain",
            count(s.files.len() as u64, "file", "files"),
            count(s.events, "event", "events"),
            s.members
        )?,
    }
    if let (Some(first), Some(last)) = (s.first, s.last) {
        writeln!(out, "  first: seq {} hash {}", first.seq, first.hash_str())?;
        writeln!(out, "  last:  seq {} hash {}", last.seq, last.hash_str())?;
    }
    if let Some(c) = &s.checkpoints {
        let covered = match c.covered_to {
            Some(seq) => format!(", covering up to seq {seq}"),
            None => String::new(),
        };
        let before = match c.before_files {
            0 => String::new(),
            n => format!("; {n} for seqs before these files, not checked"),
        };
        writeln!(
            out,
            "  checkpoints (stream {:?}): {} held{covered}{before}",
            c.stream, c.held
        )?;
    }
    print_verdict(out, s)
}

/// The intact / NOT INTACT line and the pending note.
fn print_verdict(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
    if s.problems == 0 {
        writeln!(out, "  intact: no problems")?;
    } else {
        let counts: Vec<String> = s.by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
        writeln!(
            out,
            "  NOT INTACT: {} ({})",
            count(s.problems, "problem", "problems"),
            counts.join(", ")
        )?;
    }
    if let Some((file, line, bytes)) = &s.pending {
        writeln!(
            out,
            "  note: {file}:{line} is an unterminated last line ({}), not verified until complete",
            count(*bytes, "byte", "bytes")
        )?;
    }
    Ok(())
}
