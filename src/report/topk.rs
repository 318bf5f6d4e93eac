//! A bounded counter of the most frequent keys (resources, tools): space-saving with
//! batched eviction.
//!
//! Up to `cap` keys are counted exactly. When a new key arrives at a full table, the
//! half with the lowest counts is dropped and `floor` becomes the highest count
//! dropped; a key that arrives afterwards starts at `floor + 1` with an error of
//! `floor`. So a reported count is never below the true one, and exceeds it by at
//! most its error: `error` 0 means exact. Memory is `cap` keys whatever the input.
//!
//! Keys are known by a 64-bit fingerprint ([`Fingerprints`]: SipHash with keys
//! random per run, so crafted input cannot make them collide at will), computed
//! once per event and shared by every table that counts the same text; the texts
//! live in one arena per table, rebuilt at each eviction, so counting allocates
//! nothing per event.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// Fingerprints of texts, for [`TopK::add`].
#[derive(Debug, Default)]
pub struct Fingerprints(RandomState);

impl Fingerprints {
    pub fn of<'a>(&self, text: &'a str) -> Keyed<'a> {
        Keyed {
            fingerprint: self.0.hash_one(text),
            text,
        }
    }
}

/// A text and its fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'a> {
    fingerprint: u64,
    text: &'a str,
}

/// Hashes a fingerprint by taking it as it is: it is a hash already.
#[derive(Default)]
struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    error: u64,
    at: u32,
    len: u32,
}

#[derive(Debug, Clone)]
pub struct TopK {
    cap: usize,
    entries: HashMap<u64, Entry, BuildHasherDefault<Fingerprint>>,
    arena: String,
    floor: u64,
}

/// One key as reported: its count (an upper bound) and the error on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked<'a> {
    pub key: &'a str,
    pub count: u64,
    pub error: u64,
}

impl TopK {
    pub fn new(cap: usize) -> TopK {
        TopK {
            cap: cap.max(2),
            entries: HashMap::default(),
            arena: String::new(),
            floor: 0,
        }
    }

    pub fn add(&mut self, key: Keyed<'_>) {
        if let Some(e) = self.entries.get_mut(&key.fingerprint) {
            e.count += 1;
            return;
        }
        if self.entries.len() >= self.cap {
            self.evict();
        }
        let entry = Entry {
            count: self.floor + 1,
            error: self.floor,
            at: self.arena.len() as u32,
            len: key.text.len() as u32,
        };
        self.arena.push_str(key.text);
        self.entries.insert(key.fingerprint, entry);
    }

    fn text(&self, e: &Entry) -> &str {
        &self.arena[e.at as usize..(e.at + e.len) as usize]
    }

    /// Drops the lower half of the table by count, and the texts of what it drops.
    fn evict(&mut self) {
        let mut counts: Vec<u64> = self.entries.values().map(|e| e.count).collect();
        let cut = counts.len() - self.cap / 2;
        let (_, threshold, _) = counts.select_nth_unstable(cut - 1);
        let threshold = *threshold;
        self.entries.retain(|_, e| e.count > threshold);
        self.floor = self.floor.max(threshold);
        let mut arena = String::with_capacity(self.arena.len() / 2);
        for e in self.entries.values_mut() {
            let at = arena.len() as u32;
            arena.push_str(&self.arena[e.at as usize..(e.at + e.len) as usize]);
            e.at = at;
        }
        self.arena = arena;
    }

    /// True when every count is exact (nothing was ever dropped).
    pub fn exact(&self) -> bool {
        self.floor == 0
    }

    /// The `n` highest counts, highest first, ties by key.
    pub fn top(&self, n: usize) -> Vec<Ranked<'_>> {
        let mut all: Vec<Ranked<'_>> = self
            .entries
            .values()
            .map(|e| Ranked {
                key: self.text(e),
                count: e.count,
                error: e.error,
            })
            .collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(b.key)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_until_the_table_fills_then_upper_bounds() {
        let f = Fingerprints::default();
        let mut t = TopK::new(4);
        for k in ["a", "b", "a", "c", "a", "b"] {
            t.add(f.of(k));
        }
        assert!(t.exact());
        let top: Vec<_> = t.top(2).iter().map(|r| (r.key, r.count)).collect();
        assert_eq!(top, [("a", 3), ("b", 2)]);

        // A heavy key among many rare ones stays on top, its count never below the truth.
        let mut t = TopK::new(16);
        let mut truth = 0;
        for i in 0..10_000u32 {
            if i % 3 == 0 {
                t.add(f.of("heavy"));
                truth += 1;
            } else {
                t.add(f.of(&format!("rare-{i}")));
            }
        }
        assert!(!t.exact());
        let top = t.top(3);
        assert_eq!(top[0].key, "heavy");
        assert!(top[0].count >= truth && top[0].count - top[0].error <= truth);
        assert!(top.iter().skip(1).all(|r| r.key.starts_with("rare-")));
        assert!(t.entries.len() <= 16);
        // The arena holds only the texts kept.
        let kept: usize = t.entries.values().map(|e| e.len as usize).sum();
        assert!(t.arena.len() <= kept + 16 * 10);
    }
}
