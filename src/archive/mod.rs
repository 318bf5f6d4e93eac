//! Archival: audit files older than `after_days` become gzip archives under the
//! archive directory (each stream's path kept below it), recorded in a chained
//! manifest; then the original is removed.
//!
//! A file is archived only when it is not its stream's newest file (the producer may
//! still write there), its modification time is old enough, the daemon's checkpoint
//! shows it read to its end, and every batch stored so far was acknowledged by every
//! sink. Anything else waits, with its reason in the pass's report and the log.
//!
//! The steps, each durable before the next, so a crash at any point leaves the
//! original or a verified archive, never neither:
//! 1. compress to `.<name>.gz.tmp`, fsync;
//! 2. read it back: the SHA-256 of the decompressed bytes must equal the original's;
//! 3. rename into place, fsync the directory;
//! 4. append the manifest line (fdatasync);
//! 5. with object storage configured, upload and verify (then a manifest line);
//! 6. remove the original, fsync its directory, drop its checkpoint.
//!
//! Files are reached through the directory descriptors the listing holds
//! ([`crate::watch::Dir`]): the original is read, checked and removed relative to its
//! stream directory (and only while it is the file listed, by device and inode), and
//! archives are written, renamed and read back relative to their directory below the
//! archive directory, never through a symlink.
//!
//! A later pass finishes what a crash interrupted: a leftover temporary file is
//! deleted; an archive in place without a manifest line is checked against the
//! original and reused or redone; an original whose manifest line exists is removed
//! once its archive still matches. `AUDITSHIP_ARCHIVE_CRASH=<step>` (compressed,
//! verified, renamed, manifested, uploaded, removed) aborts the process right after
//! that step, for the tests that prove this.

pub mod manifest;
pub mod s3;

pub use crate::config::archive::ArchiveConfig;

use crate::config::daemon::{DaemonConfig, SourceFormat};
use crate::queue::Queue;
use crate::watch::Dir;
use crate::words::count;
use manifest::{Link, Manifest, Op};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What one pass did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub archived: Vec<Archived>,
    pub skipped: Vec<Skipped>,
    pub expired: Vec<String>,
    pub errors: Vec<String>,
}

impl Report {
    /// Notes an error of the pass: what it concerns (a file, a directory, a setting)
    /// and why, in the report and in the log, so a daemon's operator sees the cause
    /// of every error its passes count.
    fn error(&mut self, what: impl std::fmt::Display, cause: impl std::fmt::Display) {
        tracing::error!(file = %what, error = %cause, "archive pass: error; the file stays for the next pass");
        self.errors.push(format!("{what}: {cause}"));
    }
}

#[derive(Debug, Serialize)]
pub struct Archived {
    pub original: String,
    pub archive: String,
    pub events: u64,
    pub size: u64,
    pub archive_size: u64,
    /// Finished work a crash had interrupted.
    pub resumed: bool,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// Aborts the process after `step` when the test-only failpoint names it.
fn step(name: &str) {
    if std::env::var("AUDITSHIP_ARCHIVE_CRASH").as_deref() == Ok(name) {
        eprintln!("auditship: AUDITSHIP_ARCHIVE_CRASH={name}: aborting");
        std::process::abort();
    }
}

/// Runs one archive pass over every stream of every source.
pub fn pass(cfg: &DaemonConfig, queue: &Queue, now: SystemTime) -> Report {
    let mut report = Report::default();
    let a = &cfg.archive;
    if let Err(e) = create_private_dir(&a.dir) {
        report.error(a.dir.display(), e);
        return report;
    }
    let mut manifest = match Manifest::open(&a.dir.join(manifest::FILE_NAME)) {
        Ok(m) => m,
        Err(e) => {
            // The manifest's message names its path.
            tracing::error!(error = %e, "archive pass: cannot open the manifest; nothing archived");
            report.errors.push(e);
            return report;
        }
    };
    remove_temporaries(&a.dir, &mut report);
    let root = match Dir::open(&a.dir) {
        Ok(d) => d,
        Err(e) => {
            report.error(a.dir.display(), e);
            return report;
        }
    };
    let uploader = match a.s3.as_ref().map(Uploader::new).transpose() {
        Ok(u) => u,
        Err(e) => {
            // Originals go only after their upload: without a client, nothing goes.
            report.error("archive.s3", e);
            return report;
        }
    };
    let checkpoints = match queue.checkpoints() {
        Ok(c) => c,
        Err(e) => {
            report.error("the queue's checkpoints", e);
            return report;
        }
    };
    for source in &cfg.sources {
        let Ok(files_glob) = globset::Glob::new(&source.files) else {
            continue;
        };
        let files_glob = files_glob.compile_matcher();
        for pattern in &source.paths {
            // Refused symlinks are the reader's to report; here they are only skipped.
            for sd in crate::watch::expand_dirs(pattern, &mut Vec::new()) {
                let dir = &sd.path;
                let listed = match crate::watch::list_files(&sd, &files_glob, &mut Vec::new()) {
                    Ok(l) => l,
                    Err(e) => {
                        report.error(dir.display(), e);
                        continue;
                    }
                };
                let Some((newest, older)) = listed.split_last() else {
                    continue;
                };
                report.skipped.push(Skipped {
                    file: dir.join(&newest.name).display().to_string(),
                    reason: "the newest file of its stream".into(),
                });
                let stream_key = crate::queue::keys::stream_key(&source.name, dir);
                forget_removed(
                    &sd,
                    &stream_key,
                    &checkpoints,
                    &manifest,
                    queue,
                    &mut report,
                );
                for f in older {
                    let file = dir.join(&f.name);
                    let ctx = Candidate {
                        dir: &sd.dir,
                        file: &file,
                        listed: f,
                        checkpoint: checkpoints
                            .get(&crate::queue::keys::file_key(&stream_key, f.dev, f.ino))
                            .map(Vec::as_slice),
                        key: crate::queue::keys::file_key(&stream_key, f.dev, f.ino),
                        chained: source.format == SourceFormat::AuditshipV1,
                    };
                    let archive = Archive {
                        cfg: a,
                        root: &root,
                        uploader: uploader.as_ref(),
                    };
                    match consider(&ctx, &archive, queue, &mut manifest, now) {
                        Ok(Outcome::Archived(done)) => {
                            tracing::info!(original = %done.original, archive = %done.archive, events = done.events, "archived");
                            report.archived.push(done);
                        }
                        Ok(Outcome::Waits(reason)) => {
                            tracing::debug!(file = %file.display(), reason = %reason, "not archived yet");
                            report.skipped.push(Skipped {
                                file: file.display().to_string(),
                                reason,
                            });
                        }
                        Err(e) => report.error(file.display(), e),
                    }
                }
            }
        }
    }
    if let Some(days) = a.retention_days {
        expire(
            &root,
            days,
            &mut manifest,
            uploader.is_some(),
            now,
            &mut report,
        );
    }
    report
}

/// Drops the checkpoints of originals a crash left removed but still checkpointed
/// (the last step of an archive), reporting them as finished.
fn forget_removed(
    sd: &crate::watch::StreamDir,
    stream_key: &[u8],
    checkpoints: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    manifest: &Manifest,
    queue: &Queue,
    report: &mut Report,
) {
    let prefix = crate::queue::keys::file_key(stream_key, 0, 0);
    let prefix = &prefix[..prefix.len() - "0:0".len()];
    for (k, v) in checkpoints.range(prefix.to_vec()..) {
        if !k.starts_with(prefix) {
            break;
        }
        let Ok(cp) = serde_json::from_slice::<crate::tail::Checkpoint>(v) else {
            continue;
        };
        let original = sd.path.join(&cp.name);
        match sd.dir.stat_at(OsStr::new(&cp.name)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            _ => continue,
        }
        let Some(Op::Archived {
            archive,
            events,
            size,
            archive_size,
            ..
        }) = manifest.archived(&original.display().to_string()).cloned()
        else {
            continue;
        };
        match queue.remove_checkpoints(std::slice::from_ref(k)) {
            Ok(()) => report.archived.push(Archived {
                original: original.display().to_string(),
                archive,
                events,
                size,
                archive_size,
                resumed: true,
            }),
            Err(e) => report.error(original.display(), e),
        }
    }
}

struct Candidate<'a> {
    /// The stream directory, held since the listing.
    dir: &'a Dir,
    /// The original's path (its name in the manifest and below the archive directory).
    file: &'a Path,
    listed: &'a crate::watch::Listed,
    checkpoint: Option<&'a [u8]>,
    key: Vec<u8>,
    chained: bool,
}

impl Candidate<'_> {
    fn name(&self) -> &OsStr {
        OsStr::new(&self.listed.name)
    }

    /// The original as it is now, if it is still the file that was listed.
    fn stat(&self) -> io::Result<crate::watch::Stat> {
        let st = self.dir.stat_at(self.name())?;
        if !st.is(self.listed.dev, self.listed.ino) {
            return Err(io::Error::other(
                "replaced since it was listed; the next pass looks again",
            ));
        }
        Ok(st)
    }

    /// Opens the original for reading: the file listed, never through a symlink.
    fn open(&self) -> io::Result<std::fs::File> {
        self.dir
            .open_file(self.name(), Some((self.listed.dev, self.listed.ino)))
    }
}

/// Where archives go: the settings, the archive directory held open, and object
/// storage if configured.
struct Archive<'a> {
    cfg: &'a ArchiveConfig,
    root: &'a Dir,
    uploader: Option<&'a Uploader>,
}

enum Outcome {
    Archived(Archived),
    Waits(String),
}

/// Decides whether a file may go, and archives it if so.
fn consider(
    c: &Candidate<'_>,
    dest: &Archive<'_>,
    queue: &Queue,
    manifest: &mut Manifest,
    now: SystemTime,
) -> io::Result<Outcome> {
    let (a, uploader) = (dest.cfg, dest.uploader);
    if c.listed.target.is_some() {
        return Ok(Outcome::Waits(
            "a symlink: only regular files are archived".into(),
        ));
    }
    if !c.dir.writable() {
        // Archiving ends by removing the original: without that right (a read-only
        // /home under the hardened system unit, or another user's directory) it
        // would only pile up copies.
        return Ok(Outcome::Waits(
            "its directory is not writable by the daemon, so the original could not be removed"
                .into(),
        ));
    }
    let meta = c.dir.stat_at(c.name())?;
    if !meta.is(c.listed.dev, c.listed.ino) {
        return Ok(Outcome::Waits(
            "replaced since it was listed; the next pass looks again".into(),
        ));
    }
    let mtime = meta.modified();
    let age = now.duration_since(mtime).unwrap_or_default();
    let min_age = Duration::from_secs(u64::from(a.after_days) * 86_400);
    if age < min_age {
        return Ok(Outcome::Waits(format!(
            "modified {} days ago (archived after {})",
            age.as_secs() / 86_400,
            a.after_days
        )));
    }
    let offset = c
        .checkpoint
        .and_then(|v| serde_json::from_slice::<crate::tail::Checkpoint>(v).ok())
        .map(|cp| cp.offset);
    match offset {
        Some(o) if o >= meta.size => {}
        Some(o) => {
            return Ok(Outcome::Waits(format!(
                "not read to its end yet ({o} of {} bytes)",
                meta.size
            )));
        }
        None => return Ok(Outcome::Waits("not read by the daemon yet".into())),
    }
    if !queue.all_acknowledged().map_err(io::Error::other)? {
        return Ok(Outcome::Waits(
            "waiting for every sink to acknowledge what was read".into(),
        ));
    }
    let original = c.file.display().to_string();
    let rel = relative_archive_path(c.file);
    let mtime_s = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);

    // A crash after the manifest line: finish the removal.
    if let Some(Op::Archived {
        archive,
        archive_sha256,
        events,
        size,
        archive_size,
        sha256,
        ..
    }) = manifest.archived(&original).cloned()
        && sha256 == hex(&digest(c.open()?)?.0)
    {
        let (got, _) = digest(open_archive(dest.root, &archive)?)?;
        if hex(&got) != archive_sha256 {
            return Err(io::Error::other(format!(
                "archive {archive} no longer matches its manifest line; the original is kept"
            )));
        }
        if let Some(u) = uploader {
            u.upload(a, &archive, &got, manifest)?;
        }
        remove_original(c, queue)?;
        return Ok(Outcome::Archived(Archived {
            original,
            archive,
            events,
            size,
            archive_size,
            resumed: true,
        }));
    }

    let facts = match reuse_or_compress(c, dest.root, &rel, a.level)? {
        Some(f) => f,
        None => return Ok(Outcome::Waits("changed while being archived".into())),
    };
    let resumed = facts.reused;
    manifest.append(Op::Archived {
        original: original.clone(),
        size: facts.size,
        sha256: hex(&facts.sha256),
        mtime: mtime_s,
        archive: rel.clone(),
        archive_size: facts.archive_size,
        archive_sha256: hex(&facts.archive_sha256),
        events: facts.events,
        first: facts.first,
        last: facts.last,
    })?;
    step("manifested");
    if let Some(u) = uploader {
        u.upload(a, &rel, &facts.archive_sha256, manifest)?;
    }
    remove_original(c, queue)?;
    Ok(Outcome::Archived(Archived {
        original,
        archive: rel,
        events: facts.events,
        size: facts.size,
        archive_size: facts.archive_size,
        resumed,
    }))
}

/// Object storage for archives: a client and a small runtime to drive it from the
/// archive thread.
struct Uploader {
    client: s3::S3Client,
    bucket: String,
    rt: tokio::runtime::Runtime,
}

impl Uploader {
    fn new(cfg: &s3::S3Config) -> Result<Uploader, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // reqwest's client registers with the runtime it is built in.
        let client = rt.block_on(async { s3::S3Client::new(cfg) })?;
        Ok(Uploader {
            client,
            bucket: cfg.bucket.clone(),
            rt,
        })
    }

    /// Uploads `archive` unless the manifest says it was; records the verified
    /// upload. An error keeps the original.
    fn upload(
        &self,
        a: &ArchiveConfig,
        archive: &str,
        sha256: &[u8; 32],
        manifest: &mut Manifest,
    ) -> io::Result<()> {
        if manifest.uploaded(archive) {
            return Ok(());
        }
        let key = self.client.key_for(archive);
        let path = a.dir.join(archive);
        let up = self
            .rt
            .block_on(self.client.upload_verified(&key, &path, sha256))
            .map_err(|e| io::Error::other(format!("upload to s3://{}/{key}: {e}", self.bucket)))?;
        tracing::info!(bucket = %self.bucket, key = %up.key, already_there = up.already_there, retain_until = up.retain_until.as_deref().unwrap_or("none"), "archive uploaded and verified");
        manifest.append(Op::Uploaded {
            archive: archive.to_string(),
            bucket: self.bucket.clone(),
            key: up.key,
            retain_until: up.retain_until,
        })?;
        step("uploaded");
        Ok(())
    }
}

/// Removes the original from its stream directory, if it is still the file listed.
fn remove_original(c: &Candidate<'_>, queue: &Queue) -> io::Result<()> {
    c.stat()?;
    c.dir.unlink(c.name())?;
    c.dir.sync()?;
    step("removed");
    queue
        .remove_checkpoints(std::slice::from_ref(&c.key))
        .map_err(io::Error::other)
}

/// The archive's path below the archive directory: the original's absolute path
/// without its leading `/`, plus `.gz`.
pub fn relative_archive_path(original: &Path) -> String {
    let s = original.display().to_string();
    format!("{}.gz", s.trim_start_matches('/'))
}

/// What archiving learned of a file.
struct Facts {
    size: u64,
    sha256: [u8; 32],
    archive_size: u64,
    archive_sha256: [u8; 32],
    events: u64,
    first: Option<Link>,
    last: Option<Link>,
    reused: bool,
}

/// Compresses the original to `rel` below the archive directory through a temporary
/// file, verified; or, when the archive exists from an interrupted pass and matches,
/// reuses it. `None` if the original changed meanwhile. Every step acts relative to
/// the archive's own directory, entered from `root` without following symlinks.
fn reuse_or_compress(
    c: &Candidate<'_>,
    root: &Dir,
    rel: &str,
    level: u32,
) -> io::Result<Option<Facts>> {
    let (dir, name) = archive_dir(root, rel, true)?;
    let name = name.as_os_str();
    if dir.stat_at(name).is_ok() {
        // Renamed into place before a crash, without its manifest line.
        let (sha, stats) = scan(c.open()?, c.chained)?;
        let (dsha, _) = gz_digest_of(dir.open_file(name, None)?)?;
        if dsha == sha {
            let (asha, asize) = digest(dir.open_file(name, None)?)?;
            return Ok(Some(Facts {
                size: stats.size,
                sha256: sha,
                archive_size: asize,
                archive_sha256: asha,
                events: stats.events,
                first: stats.first,
                last: stats.last,
                reused: true,
            }));
        }
        dir.unlink(name)?;
    }
    let tmp = std::ffi::OsString::from(format!(".{}.tmp", name.to_string_lossy()));
    let tmp = tmp.as_os_str();
    let (sha, stats) = {
        let out = dir.create_file(tmp, 0o600)?;
        let mut enc =
            flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::new(level));
        let scanned = scan(
            Tee {
                src: c.open()?,
                copy: &mut enc,
            },
            c.chained,
        )?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        scanned
    };
    step("compressed");
    let (dsha, _) = gz_digest_of(dir.open_file(tmp, None)?)?;
    if dsha != sha {
        dir.unlink(tmp)?;
        return Err(io::Error::other(
            "the archive read back differs from the original",
        ));
    }
    // The original must still be what was compressed.
    if c.stat().map(|st| st.size).ok() != Some(stats.size) {
        dir.unlink(tmp)?;
        return Ok(None);
    }
    step("verified");
    dir.rename(tmp, name)?;
    dir.sync()?;
    step("renamed");
    let (asha, asize) = digest(dir.open_file(name, None)?)?;
    Ok(Some(Facts {
        size: stats.size,
        sha256: sha,
        archive_size: asize,
        archive_sha256: asha,
        events: stats.events,
        first: stats.first,
        last: stats.last,
        reused: false,
    }))
}

/// The directory of the archive `rel` below `root` (created when `create`), entered
/// without following symlinks, and the archive's file name.
fn archive_dir(root: &Dir, rel: &str, create: bool) -> io::Result<(Dir, PathBuf)> {
    let rel = Path::new(rel);
    let name = rel
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{}: no file name", rel.display())))?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    let dir = if create {
        root.create_dirs(parent, 0o700)?
    } else {
        root.open_dirs(parent)?
    };
    Ok((dir, PathBuf::from(name)))
}

/// Opens the archive `rel` below `root` for reading, never through a symlink.
fn open_archive(root: &Dir, rel: &str) -> io::Result<std::fs::File> {
    let (dir, name) = archive_dir(root, rel, false)?;
    dir.open_file(name.as_os_str(), None)
}

/// Counts lines and keeps the first and last ones' chain links.
struct LineStats {
    chained: bool,
    size: u64,
    events: u64,
    first: Option<Link>,
    last_line: Vec<u8>,
    current: Vec<u8>,
}

#[derive(Debug)]
struct Scanned {
    size: u64,
    events: u64,
    first: Option<Link>,
    last: Option<Link>,
}

impl LineStats {
    fn new(chained: bool) -> LineStats {
        LineStats {
            chained,
            size: 0,
            events: 0,
            first: None,
            last_line: Vec::new(),
            current: Vec::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        self.size += data.len() as u64;
        while let Some(i) = memchr::memchr(b'\n', data) {
            self.current.extend_from_slice(&data[..i]);
            if !self.current.iter().all(u8::is_ascii_whitespace) {
                self.events += 1;
                if self.first.is_none() && self.chained {
                    self.first = Some(link(&self.current));
                }
                std::mem::swap(&mut self.last_line, &mut self.current);
            }
            self.current.clear();
            data = &data[i + 1..];
        }
        // Keep only what a line needs; a huge line costs its own size once.
        self.current.extend_from_slice(data);
    }

    fn finish(self) -> Scanned {
        let last = (self.chained && self.events > 0).then(|| link(&self.last_line));
        Scanned {
            size: self.size,
            events: self.events,
            first: self.first,
            last,
        }
    }
}

fn link(line: &[u8]) -> Link {
    #[derive(serde::Deserialize)]
    struct L {
        seq: Option<u64>,
        hash: Option<String>,
    }
    match serde_json::from_slice::<L>(line) {
        Ok(l) => Link {
            seq: l.seq,
            hash: l.hash,
        },
        Err(_) => Link {
            seq: None,
            hash: None,
        },
    }
}

/// A reader that also writes everything it reads to `copy`: one pass over the
/// original both compresses it and takes its digest and line facts.
struct Tee<R, W> {
    src: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// SHA-256, size, line count and first and last links of what `src` reads.
fn scan(src: impl Read, chained: bool) -> io::Result<([u8; 32], Scanned)> {
    let mut src = io::BufReader::new(src);
    let mut hasher = Sha256::new();
    let mut stats = LineStats::new(chained);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        stats.feed(&buf[..n]);
    }
    Ok((hasher.finalize().into(), stats.finish()))
}

/// SHA-256 and size of a file's bytes.
pub fn file_digest(path: &Path) -> io::Result<([u8; 32], u64)> {
    digest(std::fs::File::open(path)?)
}

/// SHA-256 and size of what `src` reads.
fn digest(src: impl Read) -> io::Result<([u8; 32], u64)> {
    let mut f = io::BufReader::new(src);
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    loop {
        let buf = f.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        hasher.update(buf);
        n += buf.len() as u64;
        let len = buf.len();
        f.consume(len);
    }
    Ok((hasher.finalize().into(), n))
}

/// SHA-256 and size of a gzip file's decompressed bytes.
pub fn gz_digest(path: &Path) -> io::Result<([u8; 32], u64)> {
    scan_gz(path, false).map(|(d, s)| (d, s.size))
}

/// As [`gz_digest`], of an open file.
fn gz_digest_of(f: std::fs::File) -> io::Result<([u8; 32], u64)> {
    scan(
        flate2::read::MultiGzDecoder::new(io::BufReader::new(f)),
        false,
    )
    .map(|(d, s)| (d, s.size))
}

pub fn hex(d: &[u8; 32]) -> String {
    String::from_utf8_lossy(&crate::audit::hex_lower(d)).into_owned()
}

/// Deletes `.*.gz.tmp` files a crash left behind: never referenced by anything.
fn remove_temporaries(dir: &Path, report: &mut Report) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            remove_temporaries(&p, report);
        } else if ft.is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".gz.tmp") {
                match std::fs::remove_file(&p) {
                    Ok(()) => tracing::info!(file = %p.display(), "removed an unfinished archive"),
                    Err(err) => report.error(p.display(), err),
                }
            }
        }
    }
}

/// Retention: deletes local archives whose originals are older than `days`, once
/// each was verified against its manifest line (and, with object storage, uploaded).
fn expire(
    root: &Dir,
    days: u32,
    manifest: &mut Manifest,
    needs_upload: bool,
    now: SystemTime,
    report: &mut Report,
) {
    let cutoff = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        - i64::from(days) * 86_400;
    let due: Vec<(String, String)> = manifest
        .lines
        .iter()
        .filter_map(|l| match &l.op {
            Op::Archived {
                archive,
                archive_sha256,
                mtime,
                ..
            } if *mtime < cutoff => Some((archive.clone(), archive_sha256.clone())),
            _ => None,
        })
        .filter(|(archive, _)| !manifest.expired(archive))
        .filter(|(archive, _)| !needs_upload || manifest.uploaded(archive))
        .collect();
    for (archive, want) in due {
        match open_archive(root, &archive).and_then(digest) {
            Ok((got, _)) if hex(&got) == want => {}
            Ok(_) => {
                report.error(&archive, "does not match its manifest line; kept");
                continue;
            }
            Err(e) => {
                report.error(&archive, format_args!("{e}; kept"));
                continue;
            }
        }
        let r = archive_dir(root, &archive, false)
            .and_then(|(dir, name)| dir.unlink(name.as_os_str()))
            .and_then(|()| {
                manifest.append(Op::Expired {
                    archive: archive.clone(),
                })
            });
        match r {
            Ok(()) => {
                tracing::info!(archive = %archive, "archive past retention deleted");
                report.expired.push(archive);
            }
            Err(e) => report.error(&archive, e),
        }
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A problem found checking archives against their manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    pub file: String,
    pub line: u64,
    pub code: &'static str,
    pub detail: String,
}

/// Checks a manifest for an auditor: its own chain, then every archive it records
/// (present, the same bytes, decompressing to the original's SHA-256, size, event
/// count and first and last chain links), and any `.gz` in its directory that it does
/// not record. Codes: `manifest_malformed`, `manifest_altered`, `archive_missing`,
/// `archive_altered`, `manifest_mismatch`, `archive_unlisted`, and `no_events` for a
/// manifest that records nothing (its directory is then not searched). A manifest
/// that does not exist, or is not a file, is an error. Returns the problems and the
/// number of archives checked.
pub fn verify_manifest(path: &Path) -> io::Result<(Vec<ManifestProblem>, u64)> {
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a manifest file", path.display()),
        ));
    }
    let manifest::Contents {
        lines, findings, ..
    } = manifest::read(path)?;
    let name = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut problems: Vec<ManifestProblem> = findings
        .into_iter()
        .map(|(line, code, detail)| ManifestProblem {
            file: name.clone(),
            line,
            code,
            detail,
        })
        .collect();
    let expired: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|(_, l)| match &l.op {
            Op::Expired { archive } => Some(archive.as_str()),
            _ => None,
        })
        .collect();
    if lines.is_empty() {
        // Not known to be an archive directory: its tree is not searched.
        if problems.is_empty() {
            problems.push(ManifestProblem {
                file: name,
                line: 0,
                code: crate::verify::NO_EVENTS,
                detail: "the manifest records no archive: nothing was checked".into(),
            });
        }
        return Ok((problems, 0));
    }
    let mut listed = std::collections::HashSet::new();
    let mut checked = 0u64;
    for (n, l) in &lines {
        let Op::Archived {
            size,
            sha256,
            archive,
            archive_size,
            archive_sha256,
            events,
            first,
            last,
            ..
        } = &l.op
        else {
            continue;
        };
        listed.insert(dir.join(archive));
        if expired.contains(archive.as_str()) {
            continue;
        }
        checked += 1;
        let mut problem = |code: &'static str, detail: String| {
            problems.push(ManifestProblem {
                file: name.clone(),
                line: *n,
                code,
                detail,
            })
        };
        let p = dir.join(archive);
        let (got, got_size) = match file_digest(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                problem("archive_missing", format!("{archive} is not there"));
                continue;
            }
            Err(e) => {
                problem("archive_missing", format!("{archive}: {e}"));
                continue;
            }
        };
        if hex(&got) != *archive_sha256 || got_size != *archive_size {
            problem(
                "archive_altered",
                format!(
                    "{archive}: SHA-256 {} ({got_size} bytes), the manifest says {archive_sha256} ({archive_size} bytes)",
                    hex(&got)
                ),
            );
            continue;
        }
        match scan_gz(&p, first.is_some()) {
            Ok((dsha, stats)) => {
                if hex(&dsha) != *sha256 || stats.size != *size {
                    problem(
                        "archive_altered",
                        format!(
                            "{archive}: decompresses to SHA-256 {}, the original's was {sha256}",
                            hex(&dsha)
                        ),
                    );
                } else if stats.events != *events || stats.first != *first || stats.last != *last {
                    problem(
                        "manifest_mismatch",
                        format!(
                            "{archive}: {}, first {}, last {}; the manifest says {}, first {}, last {}",
                            count(stats.events, "event", "events"),
                            Link::describe(&stats.first),
                            Link::describe(&stats.last),
                            count(*events, "event", "events"),
                            Link::describe(first),
                            Link::describe(last),
                        ),
                    );
                }
            }
            Err(e) => problem(
                "archive_altered",
                format!("{archive}: not a readable gzip file: {e}"),
            ),
        }
    }
    let mut found = Vec::new();
    collect_archives(dir, &mut found);
    for p in found {
        if !listed.contains(&p) {
            problems.push(ManifestProblem {
                file: p.display().to_string(),
                line: 0,
                code: "archive_unlisted",
                detail: "an archive the manifest does not record".into(),
            });
        }
    }
    Ok((problems, checked))
}

fn scan_gz(path: &Path, chained: bool) -> io::Result<([u8; 32], Scanned)> {
    scan(
        flate2::read::MultiGzDecoder::new(io::BufReader::new(std::fs::File::open(path)?)),
        chained,
    )
}

fn collect_archives(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            collect_archives(&p, out);
        } else if ft.is_file() && p.extension().is_some_and(|x| x == "gz") {
            out.push(p);
        }
    }
    out.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_writable_only_if_entries_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Dir::open(dir.path()).unwrap().writable());
        assert_eq!(
            relative_archive_path(Path::new("/home/dev/.claude/audit/a.jsonl")),
            "home/dev/.claude/audit/a.jsonl.gz"
        );
    }
}
