//! `auditship verify`: prove streams on disk intact, offline.

use crate::audit::{Code, Keys};
use crate::verify::{self, Located, Summary};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Verify audit logs: hash chain, canonical hashes, HMAC signatures, schema.
///
/// Files given together are one stream, checked in the order given. A directory is
/// one stream: its *.jsonl and *.jsonl.gz files in name order (.gz is read
/// transparently). With --stream, everything given is one stream in name order: a
/// stream's archive directory and its live directory, checked as one chain across
/// them. --manifest checks the archives an archive manifest records.
/// Exit status: 0 intact, 1 problems found, 2 usage or I/O error.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  auditship verify ~/.claude/audit
  auditship verify audit-2026-11-01.jsonl audit-2026-11-02.jsonl.gz
  auditship verify --key fleet-2026=/etc/auditship/hmac.key --json /srv/audit/alice
  auditship verify --stream /var/lib/auditship/archive/home/alice/.claude/audit /home/alice/.claude/audit
  auditship verify --manifest /var/lib/auditship/archive/manifest.jsonl")]
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
    /// Print one JSON document: {"ok", "events", "problems": [{"file","line","code","detail"}]}
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

fn load_keys(specs: &[String]) -> io::Result<Keys> {
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
        keys.insert(kid, &verify::read_key_file(std::path::Path::new(file))?);
    }
    Ok(keys)
}

/// Verifies and writes the report. Returns whether everything was intact.
pub fn verify_paths(args: &Args, out: &mut dyn Write) -> io::Result<bool> {
    let keys = load_keys(&args.keys)?;
    let mut streams = verify::streams_from_args(&args.paths)?;
    if args.stream && streams.len() > 1 {
        streams = vec![verify::one_stream(streams)];
    }
    let mut events = 0u64;
    let mut problems = 0u64;
    if args.json {
        out.write_all(b"{\"problems\":[")?;
    }
    let mut write_err = None;
    for stream in &streams {
        let summary = verify::verify_stream(stream, &keys, |p: Located<'_>| {
            let r = if args.json {
                let sep = if problems == 0 { "" } else { "," };
                let item = serde_json::json!({
                    "file": p.file, "line": p.line, "code": p.problem.code.as_str(), "detail": p.problem.detail,
                });
                write!(out, "{sep}{item}")
            } else {
                writeln!(
                    out,
                    "{}:{} {} {}",
                    p.file, p.line, p.problem.code, p.problem.detail
                )
            };
            problems += 1;
            if let Err(e) = r {
                write_err.get_or_insert(e);
            }
        })?;
        if let Some(e) = write_err.take() {
            return Err(e);
        }
        events += summary.events;
        if !args.json {
            print_summary(out, &stream.label, &summary)?;
        }
    }
    if let Some(m) = &args.manifest {
        let (found, checked) = crate::archive::verify_manifest(m)?;
        for p in &found {
            if args.json {
                let sep = if problems == 0 { "" } else { "," };
                let item = serde_json::json!({
                    "file": p.file, "line": p.line, "code": p.code, "detail": p.detail,
                });
                write!(out, "{sep}{item}")?;
            } else {
                writeln!(out, "{}:{} {} {}", p.file, p.line, p.code, p.detail)?;
            }
            problems += 1;
        }
        if !args.json {
            writeln!(out, "{}: {checked} archives checked", m.display())?;
            if found.is_empty() {
                writeln!(out, "  intact: every archive matches its manifest line")?;
            } else {
                writeln!(out, "  NOT INTACT: {} problems", found.len())?;
            }
        }
    }
    let ok = problems == 0;
    if args.json {
        writeln!(out, "],\"ok\":{ok},\"events\":{events}}}")?;
    }
    out.flush()?;
    Ok(ok)
}

fn print_summary(out: &mut dyn Write, label: &str, s: &Summary) -> io::Result<()> {
    writeln!(
        out,
        "{label}: {} events, {} in the chain",
        s.events, s.members
    )?;
    if let (Some(first), Some(last)) = (s.first, s.last) {
        writeln!(out, "  first: seq {} hash {}", first.seq, first.hash_str())?;
        writeln!(out, "  last:  seq {} hash {}", last.seq, last.hash_str())?;
    }
    if s.problems == 0 {
        writeln!(out, "  intact: no problems")?;
    } else {
        let counts: Vec<String> = Code::ALL
            .iter()
            .zip(s.by_code)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        writeln!(
            out,
            "  NOT INTACT: {} problems ({})",
            s.problems,
            counts.join(", ")
        )?;
    }
    if let Some((file, line, bytes)) = &s.pending {
        writeln!(
            out,
            "  note: {file}:{line} is an unterminated last line ({bytes} bytes), not verified until complete"
        )?;
    }
    Ok(())
}
