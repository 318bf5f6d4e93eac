//! What a report reads: the paths given, sorted by [`verify::inputs_from_args`] into
//! streams on disk, exports of shipped records and archive manifests; then the
//! streams of an archive directory joined with the live directory they were archived
//! from, so that archives and live files are read as one chain, and any file reached
//! twice (a tree and a stream inside it both given) read once.
//!
//! An archive holds the file `/home/a/.claude/audit/x.jsonl` as
//! `<archive dir>/home/a/.claude/audit/x.jsonl.gz` (docs/ARCHIVE.md): the
//! directory's place below the archive directory names the stream it belongs to. It
//! is joined with a live directory given on the command line when that directory's
//! real path is the one named; otherwise it is a stream of its own.

use crate::verify::{self, Stream, StreamFile};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

/// One stream to read and the paths that make it, as `auditship verify` takes them.
#[derive(Debug, Clone)]
pub struct Planned {
    pub stream: Stream,
    /// Directories (or files given together) that were joined: one unless an
    /// archive's copy and the live directory were.
    pub parts: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub streams: Vec<Planned>,
    pub exports: Vec<StreamFile>,
    pub manifests: Vec<PathBuf>,
}

pub fn plan(paths: &[PathBuf]) -> io::Result<Plan> {
    let inputs = verify::inputs_from_args(paths)?;
    let archive_roots: Vec<PathBuf> = inputs
        .manifests
        .iter()
        .filter_map(|m| m.parent().and_then(|d| std::fs::canonicalize(d).ok()))
        .collect();
    let mut streams: Vec<Planned> = Vec::new();
    let mut by_origin: HashMap<PathBuf, usize> = HashMap::new();
    let mut seen_files = HashSet::new();
    for mut stream in inputs.streams {
        let had_files = !stream.files.is_empty();
        stream
            .files
            .retain(|f| seen_files.insert(real(&f.path).unwrap_or_else(|| f.path.clone())));
        if had_files && stream.files.is_empty() {
            // Every file is read already, under another path given.
            continue;
        }
        let origin = stream
            .dir
            .then(|| origin(Path::new(&stream.label), &archive_roots))
            .flatten();
        match origin.as_ref().and_then(|o| by_origin.get(o)) {
            Some(&i) if !stream.files.is_empty() => {
                let joined = &mut streams[i];
                joined.parts.push(stream.label.clone());
                let both = vec![std::mem::replace(&mut joined.stream, empty()), stream];
                joined.stream = verify::one_stream(both);
            }
            _ => {
                if let Some(o) = origin {
                    by_origin.insert(o, streams.len());
                }
                streams.push(Planned {
                    parts: vec![stream.label.clone()],
                    stream,
                });
            }
        }
    }
    let mut exports = inputs.exports;
    exports.retain(|f| seen_files.insert(real(&f.path).unwrap_or_else(|| f.path.clone())));
    Ok(Plan {
        streams,
        exports,
        manifests: inputs.manifests,
    })
}

fn empty() -> Stream {
    Stream {
        label: String::new(),
        dir: false,
        files: Vec::new(),
    }
}

fn real(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

/// The directory a stream directory stands for: for one inside an archive
/// directory, the original it was archived from (its path below the archive
/// directory, from `/`); otherwise its own real path.
fn origin(dir: &Path, archive_roots: &[PathBuf]) -> Option<PathBuf> {
    let dir = real(dir)?;
    for root in archive_roots {
        if let Ok(rel) = dir.strip_prefix(root)
            && rel.components().next().is_some()
        {
            return Some(Path::new("/").join(rel));
        }
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"{}\n").unwrap();
    }

    #[test]
    fn an_archive_joins_its_live_directory_and_files_are_read_once() {
        let t = tempfile::tempdir().unwrap();
        let live = t.path().join("home/a/audit");
        touch(&live.join("audit-2026-11-02.jsonl"));
        let archive = t.path().join("archive");
        touch(&archive.join("manifest.jsonl"));
        let live_real = std::fs::canonicalize(&live).unwrap();
        let copy = archive.join(live_real.strip_prefix("/").unwrap());
        touch(&copy.join("audit-2026-11-01.jsonl.gz"));
        let other = t.path().join("home/b/audit");
        touch(&other.join("audit-2026-11-01.jsonl"));

        let plan = plan(&[
            archive.clone(),
            live.clone(),
            t.path().join("home"),
            live.clone(),
        ])
        .unwrap();
        assert_eq!(plan.manifests, [archive.join("manifest.jsonl")]);
        let names: Vec<Vec<String>> = plan
            .streams
            .iter()
            .map(|p| {
                p.stream
                    .files
                    .iter()
                    .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [
                vec![
                    "audit-2026-11-01.jsonl.gz".to_string(),
                    "audit-2026-11-02.jsonl".into()
                ],
                vec!["audit-2026-11-01.jsonl".into()],
            ]
        );
        assert_eq!(plan.streams[0].parts.len(), 2);
    }
}
