//! The streaming verifier: one [`Verifier`] per stream, fed its lines in order.
//!
//! It keeps only the chain head, scratch buffers and the HMAC keys, so a stream of
//! any length verifies in constant memory. The rules are FORMAT.md's, exactly:
//! structural problems (`invalid_utf8` … `not_canonicalizable`) take a line out of the
//! chain; every other event, even one with problems, becomes the new head.

use super::canon;
use super::json::{self, Value};
use super::long_line::{MAX_WHOLE_LINE, Scanned};
use super::problem::{Code, Problem};
use super::schema::{self, ChainFields, Field, ZERO_HASH};
use super::tape::{Kind, Node, Tape};
use super::{Keys, hex_lower, sha256};
use sha2::{Digest as _, Sha256};

/// The last chain member of a stream: what the next event is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    /// The member's `hash` field as written (64 lowercase hex digits).
    pub hash: [u8; 64],
}

impl Head {
    pub fn hash_str(&self) -> &str {
        // Built only from validated lowercase hex.
        std::str::from_utf8(&self.hash).unwrap_or_default()
    }
}

/// What one line turned out to be.
#[derive(Debug)]
pub enum Checked<'a> {
    /// Empty or white space only: ignored, not a problem.
    Blank,
    /// Not a chain member (its problems say why); `value` is the JSON if it parsed.
    Rejected { value: Option<Value<'a>> },
    /// A chain member, now the head. `hash_ok` is true when its `hash` field is its
    /// true hash, so the hash can serve as the event's identity.
    Member {
        value: Value<'a>,
        head: Head,
        hash_ok: bool,
        /// The line as text, when it was held whole (not for a scanned line).
        text: Option<&'a str>,
    },
}

/// Where the hash of an event comes from.
enum Digest<'t> {
    /// The line is already canonical: hashed as it stands, without these spans.
    Text(&'t [u8], &'t json::Spans),
    /// Computed while the line streamed past.
    Known([u8; 32]),
    /// Canonical but for the order of members: read into the tape, its pieces put in
    /// order, then hashed.
    Reorder(&'t str),
    /// Written out in canonical form, then hashed.
    Write,
}

/// Members left out of the hashed form.
const UNHASHED: [&str; 2] = ["hash", "hmac"];

/// The structural checks every reader of lines makes, chained or not: UTF-8, blank,
/// JSON, object. Returns the parsed object, or what the line is when it is not an
/// object (its problem pushed).
pub fn read_object<'a>(
    line: &'a [u8],
    problems: &mut Vec<Problem>,
) -> Result<json::Parsed<'a>, Checked<'a>> {
    let Ok(text) = std::str::from_utf8(line) else {
        problems.push(Problem::new(Code::InvalidUtf8, "line is not valid UTF-8"));
        return Err(Checked::Rejected { value: None });
    };
    if text.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
        return Err(Checked::Blank);
    }
    let parsed = match json::parse_with_spans(text, &UNHASHED) {
        Ok(p) => p,
        Err(e) => {
            problems.push(Problem::new(Code::InvalidJson, e.to_string()));
            return Err(Checked::Rejected { value: None });
        }
    };
    if !matches!(parsed.value, Value::Object(_)) {
        problems.push(Problem::new(
            Code::NotObject,
            format!("line is a JSON {}", parsed.value.type_name()),
        ));
        return Err(Checked::Rejected {
            value: Some(parsed.value),
        });
    }
    Ok(parsed)
}

/// Verifies one stream, line by line.
pub struct Verifier {
    keys: Keys,
    head: Option<Head>,
    first: Option<Head>,
    members: u64,
    scratch: Vec<u8>,
    /// The nodes of a line being put in canonical order.
    tape: Tape,
}

impl Verifier {
    pub fn new(keys: Keys) -> Self {
        Self::resume(keys, None)
    }

    /// Continues a stream whose last member was `head` (e.g. after a restart).
    pub fn resume(keys: Keys, head: Option<Head>) -> Self {
        Verifier {
            keys,
            head,
            first: None,
            members: 0,
            scratch: Vec::with_capacity(4096),
            tape: Tape::new(),
        }
    }

    pub fn head(&self) -> Option<Head> {
        self.head
    }

    /// The first chain member seen by this verifier.
    pub fn first(&self) -> Option<Head> {
        self.first
    }

    /// Chain members seen by this verifier.
    pub fn members(&self) -> u64 {
        self.members
    }

    /// Checks one line (without its `\n`), appending its problems in report order.
    pub fn check_line<'a>(&mut self, line: &'a [u8], problems: &mut Vec<Problem>) -> Checked<'a> {
        let parsed = match read_object(line, problems) {
            Ok(p) => p,
            Err(checked) => return checked,
        };
        let digest = if parsed.canonical {
            Digest::Text(line, &parsed.spans)
        } else if parsed.reorderable {
            Digest::Reorder(parsed.text)
        } else {
            Digest::Write
        };
        let (value, text) = (parsed.value, parsed.text);
        match self.check_parsed(&value, parsed.lone_surrogates, digest, problems) {
            Some((head, hash_ok)) => Checked::Member {
                value,
                head,
                hash_ok,
                text: Some(text),
            },
            None => Checked::Rejected { value: Some(value) },
        }
    }

    /// Checks a parsed JSON value as an event. Returns the new head and whether the
    /// hash field is correct, or `None` when the value is not a chain member.
    pub fn check_value(
        &mut self,
        value: &Value<'_>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Head, bool)> {
        self.check_parsed(value, false, Digest::Write, problems)
    }

    /// Checks a line that was scanned rather than held whole ([`LongLine`]): by the
    /// same rules as [`Verifier::check_line`], on the scan's digest and skeleton. A
    /// scan that could not decide is an `invalid_json` line, out of the chain; a
    /// caller that can hold the line whole checks it with `check_line` instead.
    ///
    /// [`LongLine`]: super::long_line::LongLine
    pub fn check_scanned<'s>(
        &mut self,
        scanned: &'s Scanned,
        problems: &mut Vec<Problem>,
    ) -> Checked<'s> {
        let decided = match &scanned.outcome {
            Ok(d) => d,
            Err(why) => {
                problems.push(Problem::new(
                    Code::InvalidJson,
                    format!(
                        "line of {} bytes is longer than the {} bytes read whole, and {why}; not checked",
                        scanned.len, MAX_WHOLE_LINE
                    ),
                ));
                return Checked::Rejected { value: None };
            }
        };
        let value = match json::parse(&decided.skeleton) {
            Ok(v) => v,
            Err(e) => {
                // The scan builds the skeleton from JSON it validated: not reached.
                problems.push(Problem::new(Code::InvalidJson, e.to_string()));
                return Checked::Rejected { value: None };
            }
        };
        match self.check_parsed(&value, false, Digest::Known(decided.digest), problems) {
            Some((head, hash_ok)) => Checked::Member {
                value,
                head,
                hash_ok,
                text: None,
            },
            None => Checked::Rejected { value: Some(value) },
        }
    }

    fn check_parsed(
        &mut self,
        value: &Value<'_>,
        lone_surrogates: bool,
        digest: Digest<'_>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Head, bool)> {
        let Value::Object(obj) = value else {
            problems.push(Problem::new(
                Code::NotObject,
                format!("line is a JSON {}", value.type_name()),
            ));
            return None;
        };
        // Both structural checks run, so a line gets every problem that applies.
        let fields =
            schema::check(obj).map_err(|detail| problems.push(Problem::new(Code::Schema, detail)));
        let digest = if let Digest::Known(d) = digest {
            Ok(d)
        } else if let Digest::Text(text, spans) = digest {
            let mut h = Sha256::new();
            canon::without_members(text, spans.as_slice(), |piece| h.update(piece));
            Ok(h.finalize().into())
        } else if let Digest::Reorder(text) = digest
            && {
                self.scratch.clear();
                // A line the tape does not take (nesting past its depth, an escaped or
                // repeated key) is written out from its value instead.
                self.tape.read(text)
                    && self
                        .tape
                        .canonical(text, &UNHASHED, &mut self.scratch)
                        .is_some()
            }
        {
            Ok(sha256(&self.scratch))
        } else if lone_surrogates {
            Err("a string holds a lone surrogate escape (no UTF-8 form)".to_string())
        } else {
            self.scratch.clear();
            canon::write_object(obj, &UNHASHED, &mut self.scratch)
                .map(|()| sha256(&self.scratch))
                .map_err(|e| e.to_string())
        }
        .map_err(|detail| problems.push(Problem::new(Code::NotCanonicalizable, detail)));
        let (Ok(fields), Ok(digest)) = (fields, digest) else {
            return None;
        };
        Some(self.accept(&fields, &digest, problems))
    }

    /// The fast lane: a line read into `tape` ([`Tape::read`]) is checked as
    /// [`Verifier::check_line`] would check it. `None`, with nothing changed and
    /// nothing reported, when the line is not a schema-valid event the lane can hash
    /// (a repeated key, a member whose text holds escapes): the caller then checks it
    /// with `check_line`, which decides and reports.
    pub fn check_tape(
        &mut self,
        line: &str,
        tape: &mut Tape,
        problems: &mut Vec<Problem>,
    ) -> Option<(Head, bool)> {
        let nodes = tape.nodes();
        let members = tape.members(0).map(|(k, v)| {
            let (key, value) = (nodes[k], nodes[v]);
            let key = line.get(key.start as usize + 1..key.end as usize - 1);
            (key.unwrap_or_default(), tape_field(line, tape, v, value))
        });
        let fields = schema::check_fields(members).ok()?;
        self.scratch.clear();
        tape.canonical(line, &UNHASHED, &mut self.scratch)?;
        let digest = sha256(&self.scratch);
        Some(self.accept(&fields, &digest, problems))
    }

    /// The hash, HMAC and link checks of a schema-valid event whose canonical form
    /// hashes to `digest`; it becomes the head.
    fn accept(
        &mut self,
        fields: &ChainFields<'_>,
        digest: &[u8; 32],
        problems: &mut Vec<Problem>,
    ) -> (Head, bool) {
        let computed = hex_lower(digest);
        let hash_ok = computed.as_slice() == fields.hash.as_bytes();
        if !hash_ok {
            problems.push(Problem::new(
                Code::HashMismatch,
                format!(
                    "hash {} but content hashes to {}",
                    fields.hash,
                    std::str::from_utf8(&computed).unwrap_or_default()
                ),
            ));
        }
        self.check_hmac(fields, problems);
        (self.link(fields, problems), hash_ok)
    }

    fn check_hmac(&self, f: &ChainFields<'_>, problems: &mut Vec<Problem>) {
        if self.keys.is_empty() {
            return;
        }
        let (Some(kid), Some(mac)) = (f.kid, f.hmac) else {
            problems.push(Problem::new(
                Code::HmacMissing,
                "keys were given but the event has no hmac",
            ));
            return;
        };
        match self.keys.mac(kid, f.hash.as_bytes()) {
            None => problems.push(Problem::new(
                Code::UnknownKid,
                format!("no key for kid {kid:?}"),
            )),
            Some(expected) if expected.as_slice() != mac.as_bytes() => problems.push(Problem::new(
                Code::HmacMismatch,
                format!("hmac does not verify with key {kid:?}"),
            )),
            Some(_) => {}
        }
    }

    fn link(&mut self, f: &ChainFields<'_>, problems: &mut Vec<Problem>) -> Head {
        let zero_prev = f.prev_hash == ZERO_HASH;
        match self.head {
            None => {
                if f.seq == 0 && !zero_prev {
                    problems.push(Problem::new(
                        Code::BadGenesis,
                        "first event has seq 0 but a non-zero prev_hash",
                    ));
                }
            }
            Some(head) => {
                if f.seq == 0 && zero_prev {
                    problems.push(Problem::new(
                        Code::ChainRestart,
                        format!("a new chain starts after seq {}", head.seq),
                    ));
                } else {
                    if f.prev_hash.as_bytes() != head.hash.as_slice() {
                        problems.push(Problem::new(
                            Code::ChainBreak,
                            format!(
                                "prev_hash {} but the previous event's hash is {}",
                                f.prev_hash,
                                head.hash_str()
                            ),
                        ));
                    }
                    if Some(f.seq) != head.seq.checked_add(1) {
                        problems.push(Problem::new(
                            Code::SeqGap,
                            format!("seq {} follows seq {}", f.seq, head.seq),
                        ));
                    }
                }
            }
        }
        let mut hash = [0u8; 64];
        hash.copy_from_slice(f.hash.as_bytes());
        let head = Head { seq: f.seq, hash };
        self.head = Some(head);
        self.first.get_or_insert(head);
        self.members += 1;
        head
    }
}

/// A tape node as the schema sees it.
fn tape_field<'l>(line: &'l str, tape: &Tape, i: usize, node: Node) -> Field<'l> {
    match node.kind {
        Kind::Int(n) => Field::Int(n),
        Kind::Str => Field::Str(
            line.get(node.start as usize + 1..node.end as usize - 1)
                .unwrap_or_default(),
        ),
        Kind::EscStr => Field::EscapedStr,
        Kind::Object => Field::Object,
        Kind::Array { .. } => Field::Array {
            strings: tape
                .items(i)
                .all(|t| matches!(tape.nodes()[t].kind, Kind::Str | Kind::EscStr)),
        },
        Kind::Bool => Field::Other("boolean"),
        Kind::Null => Field::Other("null"),
        Kind::Key => Field::Other("string"),
    }
}
