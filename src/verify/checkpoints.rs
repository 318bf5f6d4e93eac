//! Signed checkpoints checked against the chains `verify` walks: the ones a stream
//! carries itself, and the ones given in files (`--checkpoints`: exports of shipped
//! records from the SIEM, or any JSON lines holding checkpoint events).
//!
//! Three problem codes of its own:
//! - [`BAD_SIGNATURE`]: a checkpoint whose signature does not verify, or that is
//!   signed by a key not given (in a stream) or is unreadable;
//! - [`MISMATCH`]: the chain's event at the checkpoint's seq has another hash
//!   (rewritten history), or a checkpoint in a stream names another stream;
//! - [`UNMATCHED`]: the chain ends before a checkpoint's seq or lacks that seq (cut
//!   history), or no given checkpoint is for the stream at all.
//!
//! A stream is known by the name its own checkpoints carry, else by the name of its
//! directory (the sealer's streams are `<dir>/<user>`). Checkpoints in the files signed
//! by keys not given belong to other hosts: they are counted, not checked.
//!
//! Memory stays bounded by the number of checkpoints: only the hashes at their seqs
//! are kept while a stream is read.

use super::{Located, Summary, open, read_line};
use crate::audit::checkpoint::{BadSignature, Checkpoint, PublicKey};
use crate::audit::json::{self, Value};
use crate::audit::{Head, LongLine};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::path::Path;

pub const BAD_SIGNATURE: &str = "checkpoint_bad_signature";
pub const MISMATCH: &str = "checkpoint_mismatch";
pub const UNMATCHED: &str = "checkpoint_unmatched";

/// How many chain heads before a checkpoint event it may cover (the sealer covers
/// the event just before it).
const RECENT: usize = 4096;

/// A checkpoint read from a file, with where it was read.
#[derive(Debug, Clone)]
pub struct Given {
    pub checkpoint: Checkpoint,
    pub file: String,
    pub line: u64,
}

/// The public keys and the checkpoints of the `--checkpoints` files.
#[derive(Debug, Default)]
pub struct Anchors {
    pub keys: Vec<PublicKey>,
    /// Checkpoints signed by a given key, signature verified, by stream name.
    pub by_stream: BTreeMap<String, Vec<Given>>,
    /// The files read, each with (checkpoints read, signed by other keys).
    pub files: Vec<(String, u64, u64)>,
    /// Checkpoints in the files whose signature does not verify under the given key
    /// of their kid: (file, line, detail).
    pub bad: Vec<(String, u64, String)>,
    /// True when checkpoint files were given.
    pub external: bool,
}

impl Anchors {
    /// Reads every checkpoint event in `files` (JSON lines; shipped records with their
    /// `_auditship` member are events too). Lines that are not checkpoint events are
    /// passed over.
    pub fn read(keys: Vec<PublicKey>, files: &[&Path]) -> io::Result<Anchors> {
        let mut anchors = Anchors {
            keys,
            external: !files.is_empty(),
            ..Anchors::default()
        };
        for path in files {
            anchors.read_file(path)?;
        }
        Ok(anchors)
    }

    fn read_file(&mut self, path: &Path) -> io::Result<()> {
        let name = path.display().to_string();
        let mut reader = open(path)?;
        let (mut buf, mut long) = (Vec::new(), None::<LongLine>);
        let (mut line_no, mut read, mut other) = (0u64, 0u64, 0u64);
        loop {
            buf.clear();
            let (n, complete) = read_line(&mut reader, &mut buf, &mut long)?;
            if n == 0 && !complete {
                break;
            }
            line_no += 1;
            // A checkpoint event is short; a line too long to hold is not one.
            if long.is_some() || memchr::memmem::find(&buf, b"\"checkpoint\"").is_none() {
                continue;
            }
            let Ok(Value::Object(event)) = std::str::from_utf8(&buf)
                .map_err(|_| ())
                .and_then(|t| json::parse(t).map_err(|_| ()))
            else {
                continue;
            };
            let found = match Checkpoint::of_event(&event) {
                None => continue,
                Some(Err(why)) => {
                    self.bad.push((name.clone(), line_no, why));
                    continue;
                }
                Some(Ok(c)) => c,
            };
            read += 1;
            match found.verify(&self.keys) {
                Ok(()) => self
                    .by_stream
                    .entry(found.stream.clone())
                    .or_default()
                    .push(Given {
                        checkpoint: found,
                        file: name.clone(),
                        line: line_no,
                    }),
                Err(BadSignature::UnknownKey) => other += 1,
                Err(BadSignature::Invalid) => self.bad.push((
                    name.clone(),
                    line_no,
                    format!(
                        "checkpoint of stream {:?} at seq {} does not verify under key {}",
                        found.stream, found.seq, found.kid
                    ),
                )),
            }
        }
        self.files.push((name, read, other));
        Ok(())
    }

    /// Every seq some given checkpoint names, whatever its stream.
    fn wanted(&self) -> HashSet<u64> {
        self.by_stream
            .values()
            .flatten()
            .map(|g| g.checkpoint.seq)
            .collect()
    }
}

/// What the checkpoints of one stream showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// The name the stream was matched by.
    pub stream: String,
    /// Checkpoints checked against the chain and found to hold.
    pub held: u64,
    /// The highest seq a holding checkpoint covers.
    pub covered_to: Option<u64>,
    /// Given checkpoints for seqs before the stream's first event (not in the files
    /// given): not checked.
    pub before_files: u64,
}

/// Follows one stream as it is verified: fed every chain member in order, then
/// finished.
pub struct Tracker<'a> {
    anchors: &'a Anchors,
    /// The name to match by when the stream carries no checkpoint of its own.
    fallback_name: String,
    wanted: HashSet<u64>,
    seen: HashMap<u64, [u8; 64]>,
    recent: VecDeque<Head>,
    own_name: Option<String>,
    summary: CheckpointSummary,
}

impl<'a> Tracker<'a> {
    pub fn new(anchors: &'a Anchors, fallback_name: impl Into<String>) -> Self {
        Tracker {
            anchors,
            fallback_name: fallback_name.into(),
            wanted: anchors.wanted(),
            seen: HashMap::new(),
            recent: VecDeque::with_capacity(64),
            own_name: None,
            summary: CheckpointSummary::default(),
        }
    }

    /// One chain member, `event` its JSON; problems of a checkpoint it carries go to
    /// `report` (its file and line are the member's).
    pub fn member(
        &mut self,
        event: &Value<'_>,
        head: Head,
        mut report: impl FnMut(&'static str, &str),
    ) {
        if let Some(found) = event.as_object().and_then(Checkpoint::of_event) {
            match found {
                Ok(c) => self.own_checkpoint(&c, &mut report),
                Err(why) => report(BAD_SIGNATURE, &why),
            }
        }
        if self.wanted.contains(&head.seq) {
            self.seen.insert(head.seq, head.hash);
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(head);
    }

    /// A checkpoint the stream carries: signed by a given key, for this stream, and
    /// matching the chain member it covers.
    fn own_checkpoint(&mut self, c: &Checkpoint, report: &mut impl FnMut(&'static str, &str)) {
        match c.verify(&self.anchors.keys) {
            Ok(()) => {}
            Err(BadSignature::UnknownKey) => {
                let kids: Vec<&str> = self.anchors.keys.iter().map(|k| k.kid()).collect();
                return report(
                    BAD_SIGNATURE,
                    &format!(
                        "signed by key {}, not by a key given ({})",
                        c.kid,
                        kids.join(", ")
                    ),
                );
            }
            Err(BadSignature::Invalid) => {
                return report(
                    BAD_SIGNATURE,
                    &format!("signature does not verify under key {}", c.kid),
                );
            }
        }
        match &self.own_name {
            Some(name) if *name != c.stream => {
                return report(
                    MISMATCH,
                    &format!(
                        "names stream {:?}; this stream's earlier checkpoints name {name:?}",
                        c.stream
                    ),
                );
            }
            Some(_) => {}
            None => self.own_name = Some(c.stream.clone()),
        }
        match self.recent.iter().rev().find(|h| h.seq == c.seq) {
            Some(h) if h.hash_str() == c.hash => self.held(c.seq),
            Some(h) => report(
                MISMATCH,
                &format!(
                    "signed seq {} with hash {}; the chain has {} there",
                    c.seq,
                    c.hash,
                    h.hash_str()
                ),
            ),
            None => report(
                UNMATCHED,
                &format!(
                    "covers seq {}, which is not among the {RECENT} events before it",
                    c.seq
                ),
            ),
        }
    }

    fn held(&mut self, seq: u64) {
        self.summary.held += 1;
        self.summary.covered_to = self.summary.covered_to.max(Some(seq));
    }

    /// Checks the given checkpoints of this stream against what was read (`first` and
    /// `last` the chain's first and last members) and records the result in `summary`.
    pub fn finish(
        mut self,
        first: Option<Head>,
        last: Option<Head>,
        summary: &mut Summary,
        on_problem: &mut impl FnMut(Located<'_>),
    ) {
        let name = self
            .own_name
            .clone()
            .unwrap_or_else(|| self.fallback_name.clone());
        let anchors = self.anchors;
        let given = anchors.by_stream.get(&name).map(Vec::as_slice);
        for g in given.unwrap_or_default() {
            if let Some((code, detail)) = self.given(&g.checkpoint, first, last) {
                let detail = format!("stream {name:?}: {detail}");
                summary.report(
                    Located {
                        file: &g.file,
                        line: g.line,
                        code,
                        detail: &detail,
                        shipped_at: None,
                    },
                    on_problem,
                );
            }
        }
        if anchors.external && given.is_none() {
            let detail = format!(
                "no checkpoint in the files given is for stream {name:?} (signed by a key given)"
            );
            summary.report(
                Located {
                    file: &name,
                    line: 0,
                    code: UNMATCHED,
                    detail: &detail,
                    shipped_at: None,
                },
                on_problem,
            );
        }
        self.summary.stream = name;
        summary.checkpoints = Some(self.summary);
    }

    /// A given checkpoint against the chain read: `None` when it holds or lies before
    /// the files.
    fn given(
        &mut self,
        c: &Checkpoint,
        first: Option<Head>,
        last: Option<Head>,
    ) -> Option<(&'static str, String)> {
        if let Some(hash) = self.seen.get(&c.seq) {
            let hash = std::str::from_utf8(hash).unwrap_or_default();
            if hash == c.hash {
                self.held(c.seq);
                return None;
            }
            return Some((
                MISMATCH,
                format!(
                    "signed seq {} with hash {}; the chain has {hash} there",
                    c.seq, c.hash
                ),
            ));
        }
        match (first, last) {
            (Some(f), _) if c.seq < f.seq => {
                self.summary.before_files += 1;
                None
            }
            (_, Some(l)) if c.seq > l.seq => Some((
                UNMATCHED,
                format!(
                    "signed seq {} (hash {}); the chain ends at seq {}: cut short",
                    c.seq, c.hash, l.seq
                ),
            )),
            (_, None) => Some((
                UNMATCHED,
                format!("signed seq {}; the stream holds no event", c.seq),
            )),
            _ => Some((
                UNMATCHED,
                format!("signed seq {}; the chain has no event at that seq", c.seq),
            )),
        }
    }
}

/// The name a stream is matched by when it carries no checkpoint: its directory's
/// name (for files given together, the directory of the first).
pub fn fallback_name(label_dir: Option<&Path>, first_file: Option<&Path>) -> String {
    let dir = label_dir.or_else(|| first_file.and_then(Path::parent));
    dir.and_then(|d| {
        let d = if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        };
        std::fs::canonicalize(d)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    })
    .unwrap_or_default()
}
