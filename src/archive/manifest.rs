//! The archive manifest: `<archive dir>/manifest.jsonl`, one JSON object per line,
//! appended and fdatasync'd, never rewritten.
//!
//! Each line names the SHA-256 of the line before it (`prev`; 64 zeros for the
//! first), so a line edited, removed or inserted anywhere breaks the chain at that
//! point. Operations:
//! - `archived`: an original was compressed, read back and matched; what it was
//!   (path, size, SHA-256, events, first and last chain link, modification time) and
//!   where its archive is (path relative to the archive directory, size, SHA-256).
//! - `uploaded`: that archive is in object storage under `key`, verified, retained
//!   until `retain_until`.
//! - `expired`: retention deleted the local archive (it was verified first).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

/// The manifest's name in an archive directory: the name `verify` looks for.
pub const FILE_NAME: &str = crate::verify::MANIFEST;
const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A chain link: an event's `seq` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub seq: Option<u64>,
    pub hash: Option<String>,
}

impl Link {
    /// `seq 4 (hash 1f2e…)` for messages; `none` when there is no link.
    pub fn describe(link: &Option<Link>) -> String {
        match link {
            None => "none".into(),
            Some(l) => {
                let seq = l.seq.map_or("seq unknown".into(), |s| format!("seq {s}"));
                match &l.hash {
                    Some(h) => format!("{seq} (hash {h})"),
                    None => seq,
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Archived {
        original: String,
        size: u64,
        sha256: String,
        /// Modification time of the original, seconds since the epoch.
        mtime: i64,
        archive: String,
        archive_size: u64,
        archive_sha256: String,
        events: u64,
        first: Option<Link>,
        last: Option<Link>,
    },
    Uploaded {
        archive: String,
        bucket: String,
        key: String,
        retain_until: Option<String>,
    },
    Expired {
        archive: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
    pub at: String,
    pub prev: String,
}

/// The manifest of an archive directory, open for appending.
pub struct Manifest {
    path: PathBuf,
    pub lines: Vec<Line>,
    last: String,
}

/// A problem found reading a manifest: (line number, code, detail).
pub type Finding = (u64, &'static str, String);

/// A manifest as read: the lines that parsed (with their numbers), the problems,
/// and the SHA-256 of the last line (what the next line's `prev` must be).
pub struct Contents {
    pub lines: Vec<(u64, Line)>,
    pub findings: Vec<Finding>,
    pub last: String,
}

fn sha_hex(b: &[u8]) -> String {
    String::from_utf8_lossy(&crate::audit::hex_lower(&Sha256::digest(b).into())).into_owned()
}

/// Reads a manifest's lines, checking the chain; every line that does not parse or
/// does not follow its predecessor is a finding. Returns the lines that parsed and
/// the hash of the last line.
pub fn read(path: &Path) -> io::Result<Contents> {
    let mut lines = Vec::new();
    let mut findings = Vec::new();
    let mut prev = ZERO.to_string();
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Contents {
                lines,
                findings,
                last: prev,
            });
        }
        Err(e) => return Err(e),
    };
    let mut r = io::BufReader::new(f);
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let complete = buf.last() == Some(&b'\n');
        let text = if complete {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        if !complete {
            findings.push((n, "manifest_malformed", "unterminated last line".into()));
        }
        match serde_json::from_slice::<Line>(text) {
            Ok(l) => {
                if l.prev != prev {
                    findings.push((
                        n,
                        "manifest_altered",
                        format!("prev {} but the line before hashes to {prev}", l.prev),
                    ));
                }
                lines.push((n, l));
            }
            Err(e) => findings.push((n, "manifest_malformed", e.to_string())),
        }
        prev = sha_hex(text);
    }
    Ok(Contents {
        lines,
        findings,
        last: prev,
    })
}

impl Manifest {
    /// Opens the manifest for appending. A manifest whose chain is broken is an
    /// error: nothing is archived (or deleted) on top of a record that was altered.
    pub fn open(path: &Path) -> Result<Manifest, String> {
        let Contents {
            lines,
            findings,
            last,
        } = read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some((n, code, detail)) = findings.first() {
            return Err(format!(
                "{}:{n}: {code}: {detail}; archiving stops until this is resolved",
                path.display()
            ));
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            lines: lines.into_iter().map(|(_, l)| l).collect(),
            last,
        })
    }

    /// Appends `op` durably.
    pub fn append(&mut self, op: Op) -> io::Result<()> {
        let line = Line {
            v: 1,
            op,
            at: crate::clock::utc_now().0,
            prev: self.last.clone(),
        };
        let text = serde_json::to_vec(&line).map_err(io::Error::other)?;
        let existed = self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode_private()
            .open(&self.path)?;
        let mut out = text.clone();
        out.push(b'\n');
        f.write_all(&out)?;
        f.sync_data()?;
        if !existed && let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.last = sha_hex(&text);
        self.lines.push(line);
        Ok(())
    }

    /// The `archived` line of the original at `original`, if any, with no later
    /// `expired` line for its archive.
    pub fn archived(&self, original: &str) -> Option<&Op> {
        self.lines
            .iter()
            .rev()
            .map(|l| &l.op)
            .find(|op| matches!(op, Op::Archived { original: o, .. } if o == original))
    }

    /// Whether `archive` was uploaded.
    pub fn uploaded(&self, archive: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(&l.op, Op::Uploaded { archive: a, .. } if a == archive))
    }

    /// Whether `archive` was expired by retention.
    pub fn expired(&self, archive: &str) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(&l.op, Op::Expired { archive: a } if a == archive))
    }
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archived(name: &str) -> Op {
        Op::Archived {
            original: format!("/a/{name}"),
            size: 10,
            sha256: "aa".into(),
            mtime: 0,
            archive: format!("a/{name}.gz"),
            archive_size: 5,
            archive_sha256: "bb".into(),
            events: 1,
            first: None,
            last: None,
        }
    }

    #[test]
    fn lines_chain_and_an_edit_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let mut m = Manifest::open(&p).unwrap();
        m.append(archived("x.jsonl")).unwrap();
        m.append(archived("y.jsonl")).unwrap();
        m.append(Op::Expired {
            archive: "a/x.jsonl.gz".into(),
        })
        .unwrap();
        let m = Manifest::open(&p).unwrap();
        assert_eq!(m.lines.len(), 3);
        assert!(m.archived("/a/y.jsonl").is_some());
        assert!(m.expired("a/x.jsonl.gz"));
        let findings = read(&p).unwrap().findings;
        assert!(findings.is_empty(), "{findings:?}");

        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replacen("\"size\":10", "\"size\":11", 1)).unwrap();
        let findings = read(&p).unwrap().findings;
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!((findings[0].0, findings[0].1), (2, "manifest_altered"));
        assert!(
            Manifest::open(&p).is_err(),
            "no appending to an altered manifest"
        );

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&p, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        let findings = read(&p).unwrap().findings;
        assert_eq!((findings[0].0, findings[0].1), (2, "manifest_altered"));
        std::fs::write(&p, format!("{}\nnot json\n", lines[0])).unwrap();
        let findings = read(&p).unwrap().findings;
        assert_eq!((findings[0].0, findings[0].1), (2, "manifest_malformed"));
    }
}
