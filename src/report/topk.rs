//! A bounded counter of the most frequent keys (resources, tools): space-saving with
//! batched eviction.
//!
//! Up to `cap` keys are counted exactly. When a new key arrives at a full table, the
//! half with the lowest counts is dropped and `floor` becomes the highest count
//! dropped; a key that arrives afterwards starts at `floor + 1` with an error of
//! `floor`. So a reported count is never below the true one, and exceeds it by at
//! most its error: `error` 0 means exact. Memory is `cap` keys whatever the input.

use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct TopK {
    cap: usize,
    counts: HashMap<Box<str>, (u64, u64)>,
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
            counts: HashMap::new(),
            floor: 0,
        }
    }

    pub fn add(&mut self, key: &str) {
        if let Some(c) = self.counts.get_mut(key) {
            c.0 += 1;
            return;
        }
        if self.counts.len() >= self.cap {
            self.evict();
        }
        self.counts.insert(key.into(), (self.floor + 1, self.floor));
    }

    /// Drops the lower half of the table by count.
    fn evict(&mut self) {
        let mut counts: Vec<u64> = self.counts.values().map(|c| c.0).collect();
        let keep = self.cap / 2;
        let cut = counts.len() - keep;
        let (_, threshold, _) = counts.select_nth_unstable(cut - 1);
        let threshold = *threshold;
        self.counts.retain(|_, c| c.0 > threshold);
        self.floor = self.floor.max(threshold);
    }

    /// True when every count is exact (nothing was ever dropped).
    pub fn exact(&self) -> bool {
        self.floor == 0
    }

    /// The `n` highest counts, highest first, ties by key.
    pub fn top(&self, n: usize) -> Vec<Ranked<'_>> {
        let mut all: Vec<Ranked<'_>> = self
            .counts
            .iter()
            .map(|(k, &(count, error))| Ranked {
                key: k,
                count,
                error,
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
        let mut t = TopK::new(4);
        for k in ["a", "b", "a", "c", "a", "b"] {
            t.add(k);
        }
        assert!(t.exact());
        let top: Vec<_> = t.top(2).iter().map(|r| (r.key, r.count)).collect();
        assert_eq!(top, [("a", 3), ("b", 2)]);

        // A heavy key among many rare ones stays on top, its count never below the truth.
        let mut t = TopK::new(16);
        let mut truth = 0;
        for i in 0..10_000u32 {
            if i % 3 == 0 {
                t.add("heavy");
                truth += 1;
            } else {
                t.add(&format!("rare-{i}"));
            }
        }
        assert!(!t.exact());
        let top = t.top(1);
        assert_eq!(top[0].key, "heavy");
        assert!(top[0].count >= truth && top[0].count - top[0].error <= truth);
        assert!(t.counts.len() <= 16);
    }
}
