//! Where a host's record falls silent: spans longer than a threshold (twice the
//! daemon's heartbeat interval) with no event of that host, heartbeats included.
//!
//! Each host's events are folded, as they come (stream after stream, each roughly in
//! time order), into *runs*: spans in which no two consecutive events are further
//! apart than the threshold. At the end the runs of all the host's streams are put
//! in order and joined where they overlap or lie within the threshold of each other;
//! what is left between them is silence. This is exact, and memory grows only with
//! the number of silences, not of events; past [`MAX_RUNS`] runs across all hosts a
//! new run joins the one before it (a silence may then go unlisted, none is
//! invented) and the report says the list is incomplete.
//!
//! Pure: no IO, no clock.

/// Most runs kept, across all hosts.
pub const MAX_RUNS: usize = 500_000;

/// The runs of one host.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    runs: Vec<(i64, i64)>,
    current: Option<(i64, i64)>,
}

/// A silent span: from the last event before it to the first after it (or the
/// period's bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    pub from: i64,
    pub to: i64,
    pub kind: SilenceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceKind {
    /// Between two events.
    Gap,
    /// From the start of the period to the host's first event.
    BeforeFirst,
    /// From the host's last event to the end of the period.
    AfterLast,
    /// No event of the host in the whole period.
    Whole,
}

impl SilenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceKind::Gap => "gap",
            SilenceKind::BeforeFirst => "before_first",
            SilenceKind::AfterLast => "after_last",
            SilenceKind::Whole => "whole_period",
        }
    }
}

impl Runs {
    /// One event at `t`. `budget` is the number of runs still allowed across all
    /// hosts; it is spent here. Returns false when a run had to be dropped.
    pub fn add(&mut self, t: i64, threshold: i64, budget: &mut usize) -> bool {
        match &mut self.current {
            Some((start, end)) if t >= *start - threshold && t <= *end + threshold => {
                *start = (*start).min(t);
                *end = (*end).max(t);
                true
            }
            Some(run) => {
                let done = *run;
                *run = (t, t);
                if *budget == 0 {
                    // No room: the run joins the one before it, so a silence may go
                    // unlisted, but none is ever invented.
                    match self.runs.last_mut() {
                        Some(last) => *last = (last.0.min(done.0), last.1.max(done.1)),
                        None => self.runs.push(done),
                    }
                    return false;
                }
                *budget -= 1;
                self.runs.push(done);
                true
            }
            None => {
                self.current = Some((t, t));
                true
            }
        }
    }

    /// Joins the runs that touch, in place.
    fn compact(&mut self, threshold: i64) {
        self.runs.sort_unstable();
        let mut joined: Vec<(i64, i64)> = Vec::with_capacity(self.runs.len());
        for &(s, e) in &self.runs {
            match joined.last_mut() {
                Some(last) if s <= last.1.saturating_add(threshold) => last.1 = last.1.max(e),
                _ => joined.push((s, e)),
            }
        }
        self.runs = joined;
    }

    /// The silences longer than `threshold` within `[from, to)` (each bound, when
    /// given, also against the first and last event).
    pub fn silences(mut self, threshold: i64, from: Option<i64>, to: Option<i64>) -> Vec<Silence> {
        if let Some(c) = self.current.take() {
            self.runs.push(c);
        }
        self.compact(threshold);
        let mut out = Vec::new();
        let (Some(first), Some(last)) = (self.runs.first(), self.runs.last()) else {
            if let (Some(from), Some(to)) = (from, to) {
                out.push(Silence {
                    from,
                    to,
                    kind: SilenceKind::Whole,
                });
            }
            return out;
        };
        if let Some(from) = from
            && first.0 - from > threshold
        {
            out.push(Silence {
                from,
                to: first.0,
                kind: SilenceKind::BeforeFirst,
            });
        }
        let last_end = last.1;
        for pair in self.runs.windows(2) {
            // Joined runs lie more than `threshold` apart.
            out.push(Silence {
                from: pair[0].1,
                to: pair[1].0,
                kind: SilenceKind::Gap,
            });
        }
        if let Some(to) = to
            && to - last_end > threshold
        {
            out.push(Silence {
                from: last_end,
                to,
                kind: SilenceKind::AfterLast,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silences(streams: &[&[i64]], from: Option<i64>, to: Option<i64>) -> Vec<(i64, i64)> {
        let mut runs = Runs::default();
        let mut budget = MAX_RUNS;
        for s in streams {
            for &t in *s {
                assert!(runs.add(t, 10, &mut budget));
            }
        }
        runs.silences(10, from, to)
            .iter()
            .map(|s| (s.from, s.to))
            .collect()
    }

    #[test]
    fn gaps_over_the_threshold_are_silences_and_other_streams_fill_them() {
        assert_eq!(silences(&[&[0, 5, 15, 40, 50]], None, None), [(15, 40)]);
        // Exactly the threshold apart is not silent.
        assert_eq!(silences(&[&[0, 10, 20]], None, None), []);
        // A second stream of the host covers part of the gap.
        assert_eq!(
            silences(&[&[0, 5, 15, 60], &[26, 30]], None, None),
            [(15, 26), (30, 60)]
        );
        assert_eq!(
            silences(&[&[0, 60], &[8, 18, 28, 38, 48, 58]], None, None),
            []
        );
        // Out of order within a stream.
        assert_eq!(silences(&[&[50, 0, 45, 5]], None, None), [(5, 45)]);
    }

    #[test]
    fn the_period_bounds_count_and_an_empty_host_is_silent_throughout() {
        assert_eq!(
            silences(&[&[30, 35]], Some(0), Some(100)),
            [(0, 30), (35, 100)]
        );
        assert_eq!(silences(&[&[5, 95]], Some(0), Some(100)), [(5, 95)]);
        assert_eq!(silences(&[], Some(0), Some(100)), [(0, 100)]);
        assert_eq!(silences(&[], None, Some(100)), []);
    }

    #[test]
    fn past_the_run_budget_silences_go_unlisted_but_none_is_invented() {
        let mut runs = Runs::default();
        let mut budget = 2;
        let kept: Vec<bool> = [0, 100, 200, 300]
            .iter()
            .map(|&t| runs.add(t, 10, &mut budget))
            .collect();
        assert_eq!(kept, [true, true, true, false]);
        let got: Vec<_> = runs
            .silences(10, None, None)
            .iter()
            .map(|s| (s.from, s.to))
            .collect();
        assert_eq!(got, [(0, 100), (200, 300)]);
    }
}
