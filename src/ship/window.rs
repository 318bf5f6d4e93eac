//! The requests a sink has out, in the order they were sent. Requests finish in any
//! order (a receiver may answer the second before the first); the sink's cursor
//! advances only over the contiguous prefix of finished ones, and only to the end of
//! a whole batch (a batch too big for one request goes out in parts).
//!
//! Pure bookkeeping: no IO, no clock. `ship` opens a slot per request it sends and
//! closes it when every record of the request was acknowledged or dead-lettered.

use std::collections::VecDeque;

/// The requests out, oldest first, at most `limit` of them.
#[derive(Debug)]
pub struct Window {
    slots: VecDeque<Slot>,
    next_seq: u64,
    limit: usize,
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    /// The last batch id the request covers.
    last_id: u64,
    /// The request ends its last batch (not a leading part of it).
    complete: bool,
    finished: bool,
}

impl Window {
    /// A window of at most `limit` requests (at least one).
    pub fn new(limit: usize) -> Window {
        Window {
            slots: VecDeque::new(),
            next_seq: 0,
            limit: limit.max(1),
        }
    }

    /// True while another request may be sent.
    pub fn has_room(&self) -> bool {
        self.slots.len() < self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records a request sent, covering batches up to `last_id` (`complete` when it
    /// ends that batch). Returns its number for [`Window::finish`].
    pub fn open(&mut self, last_id: u64, complete: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back(Slot {
            seq,
            last_id,
            complete,
            finished: false,
        });
        seq
    }

    /// Marks request `seq` finished. Returns the batch id the cursor may move to when
    /// that closed the gap before one or more finished requests ending a batch; `None`
    /// while an older request is still out.
    pub fn finish(&mut self, seq: u64) -> Option<u64> {
        if let Some(s) = self.slots.iter_mut().find(|s| s.seq == seq) {
            s.finished = true;
        }
        let mut upto = None;
        while self.slots.front().is_some_and(|s| s.finished) {
            if let Some(s) = self.slots.pop_front()
                && s.complete
            {
                upto = Some(s.last_id);
            }
        }
        upto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens requests for `(last_id, complete)`, finishes them in `order` (indexes
    /// into the opened ones), and returns what each finish let the cursor do.
    fn run(limit: usize, opened: &[(u64, bool)], order: &[usize]) -> Vec<Option<u64>> {
        let mut w = Window::new(limit);
        let seqs: Vec<u64> = opened.iter().map(|&(id, c)| w.open(id, c)).collect();
        let out = order.iter().map(|&i| w.finish(seqs[i])).collect();
        assert!(w.is_empty(), "every request finished");
        out
    }

    #[test]
    fn the_cursor_moves_over_the_contiguous_finished_prefix_only() {
        let batches = [(1, true), (2, true), (3, true)];
        assert_eq!(
            run(3, &batches, &[0, 1, 2]),
            [Some(1), Some(2), Some(3)],
            "in order"
        );
        assert_eq!(
            run(3, &batches, &[1, 2, 0]),
            [None, None, Some(3)],
            "the first answered last holds the others back"
        );
        assert_eq!(run(3, &batches, &[2, 0, 1]), [None, Some(1), Some(3)]);
    }

    #[test]
    fn parts_of_a_batch_move_the_cursor_only_with_the_last_part() {
        // Batch 7 in three parts, then batch 8 whole.
        let opened = [(7, false), (7, false), (7, true), (8, true)];
        assert_eq!(
            run(4, &opened, &[0, 1, 2, 3]),
            [None, None, Some(7), Some(8)]
        );
        assert_eq!(run(4, &opened, &[3, 2, 1, 0]), [None, None, None, Some(8)]);
        // A batch's leading parts finished and popped: nothing to store until its
        // last part is through.
        assert_eq!(run(4, &opened, &[0, 1, 3, 2]), [None, None, None, Some(8)]);
    }

    #[test]
    fn room_counts_finished_requests_still_behind_an_older_one() {
        let mut w = Window::new(2);
        let a = w.open(1, true);
        let b = w.open(2, true);
        assert!(!w.has_room());
        assert_eq!(w.finish(b), None);
        assert!(!w.has_room(), "b waits behind a: the window stays full");
        assert_eq!(w.finish(a), Some(2));
        assert!(w.has_room() && w.is_empty());
        assert!(Window::new(0).has_room(), "at least one request");
    }
}
