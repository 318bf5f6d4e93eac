//! `file`: appends shipped records as JSON Lines to a local file, synced before the
//! batch counts as delivered, rotated by size: the full file becomes `path.N` with N
//! one above the highest existing number (oldest = lowest). `max_files = 0` (the
//! default) keeps every rotated file; otherwise only the newest `max_files` are kept.

use super::super::Verdict;
use crate::config::daemon::{SinkConfig, SinkKind};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct FileSink {
    path: PathBuf,
    max_file_bytes: u64,
    max_files: u32,
}

impl FileSink {
    pub fn new(cfg: &SinkConfig) -> FileSink {
        let SinkKind::File {
            path,
            max_file_bytes,
            max_files,
        } = &cfg.kind
        else {
            unreachable!("FileSink::new is called for file sinks only");
        };
        FileSink {
            path: path.clone(),
            max_file_bytes: *max_file_bytes,
            max_files: *max_files,
        }
    }

    pub async fn send(&mut self, records: &bytes::Bytes) -> Verdict {
        let (path, max, keep) = (self.path.clone(), self.max_file_bytes, self.max_files);
        let records = records.clone();
        match tokio::task::spawn_blocking(move || append(&path, &records, max, keep)).await {
            Ok(Ok(())) => Verdict::Success,
            Ok(Err(e)) => Verdict::Retry {
                reason: format!("{}: {e}", self.path.display()),
                after: None,
            },
            Err(e) => Verdict::Retry {
                reason: format!("file sink task: {e}"),
                after: None,
            },
        }
    }
}

fn append(path: &Path, records: &[u8], max: u64, keep: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > 0 && size + records.len() as u64 > max {
        rotate(path, keep)?;
    }
    let existed = path.exists();
    let mut f = crate::files::open_private(path, true)?;
    let before = f.metadata()?.len();
    if let Err(e) = f.write_all(records).and_then(|()| f.sync_data()) {
        // Leave no partial record behind for the retry to append after.
        let _ = f.set_len(before);
        return Err(e);
    }
    if !existed && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{base}.");
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let next = numbers.last().copied().unwrap_or(0) + 1;
    std::fs::rename(path, dir.join(format!("{prefix}{next}")))?;
    numbers.push(next);
    if keep > 0 && numbers.len() > keep as usize {
        for n in &numbers[..numbers.len() - keep as usize] {
            std::fs::remove_file(dir.join(format!("{prefix}{n}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_rotates_by_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.jsonl");
        for i in 0..10 {
            append(&p, format!("{{\"i\":{i}}}\n").as_bytes(), 20, 3).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["out.jsonl", "out.jsonl.2", "out.jsonl.3", "out.jsonl.4"],
            "the newest max_files are kept"
        );
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .ends_with("{\"i\":9}\n")
        );
        let unbounded = d.path().join("all.jsonl");
        for i in 0..10 {
            append(&unbounded, format!("{{\"i\":{i}}}\n").as_bytes(), 20, 0).unwrap();
        }
        let mut total = std::fs::read_to_string(&unbounded).unwrap().lines().count();
        for n in 1..=9 {
            total += std::fs::read_to_string(format!("{}.{n}", unbounded.display()))
                .map(|t| t.lines().count())
                .unwrap_or(0);
        }
        assert_eq!(total, 10, "max_files = 0 keeps everything");
    }
}
