//! The report's two charts as inline SVG (no script, no font or image fetched):
//! events per day stacked by outcome, and events per user stacked by outcome.
//! Every bar carries a `<title>` with its figures, and every figure is also in a
//! table beside the chart, so nothing depends on reading the picture.

use super::html::escape;
use super::model::Outcomes;
use super::period::{DAY_MS, day_label};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Outcomes in stacking order, with their colours (distinguishable in grey too:
/// lightness falls from success to other).
pub const SERIES: [(&str, &str); 5] = [
    ("success", "#4e9a5b"),
    ("failure", "#c0392b"),
    ("denied", "#e67e22"),
    ("attempted", "#2c6fbb"),
    ("other", "#555555"),
];

/// One bar: its label and its counts per outcome.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub values: Outcomes,
}

impl Bar {
    fn total(&self) -> u64 {
        self.values.iter().sum()
    }

    fn title(&self) -> String {
        let parts: Vec<String> = SERIES
            .iter()
            .zip(self.values)
            .filter(|(_, n)| *n > 0)
            .map(|((name, _), n)| format!("{n} {name}"))
            .collect();
        format!(
            "{}: {} events ({})",
            self.label,
            self.total(),
            parts.join(", ")
        )
    }
}

/// Days from `first` to `last` (both included) with their counts, empty days
/// included so that silence shows; grouped by week past 92 days and by month past
/// two years, to keep the chart readable.
pub fn day_bars(
    by_day: &BTreeMap<i64, Outcomes>,
    first: i64,
    last: i64,
) -> (Vec<Bar>, &'static str) {
    let span = last - first + 1;
    let unit = if span <= 92 {
        Unit::Day
    } else if span <= 731 {
        Unit::Week { first }
    } else {
        Unit::Month
    };
    let mut bars: BTreeMap<i64, Bar> = BTreeMap::new();
    for d in first..=last {
        let (k, label) = unit.bucket(d);
        let bar = bars.entry(k).or_insert_with(|| Bar {
            label,
            values: Outcomes::default(),
        });
        if let Some(v) = by_day.get(&d) {
            for (acc, n) in bar.values.iter_mut().zip(v) {
                *acc += n;
            }
        }
    }
    (bars.into_values().collect(), unit.name())
}

/// What one bar of the chart over time covers.
#[derive(Clone, Copy)]
enum Unit {
    Day,
    /// Seven days from `first`.
    Week {
        first: i64,
    },
    Month,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Day => "day",
            Unit::Week { .. } => "week",
            Unit::Month => "month",
        }
    }

    /// The bucket of day `d`: its key and label.
    fn bucket(self, d: i64) -> (i64, String) {
        match self {
            Unit::Day => (d, day_label(d)),
            Unit::Week { first } => {
                let start = first + (d - first) / 7 * 7;
                (start, format!("{} (week)", day_label(start)))
            }
            Unit::Month => {
                let (y, m, _) = crate::clock::civil_from_days(d);
                (y * 12 + i64::from(m), format!("{y:04}-{m:02}"))
            }
        }
    }
}

/// The day numbers of the first and last event.
pub fn day_range(first_ms: i64, last_ms: i64) -> (i64, i64) {
    (first_ms.div_euclid(DAY_MS), last_ms.div_euclid(DAY_MS))
}

/// A round upper bound for an axis, and its step (1, 2 or 5 times a power of ten).
fn axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = step * m;
            if max.div_ceil(s) <= 5 {
                return (max.div_ceil(s) * s, s);
            }
        }
        step *= 10;
    }
}

fn legend(svg: &mut String, x: f64, y: f64) {
    let mut x = x;
    for (name, colour) in SERIES {
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{y:.1}" class="l">{name}</text>"#,
            y - 9.0,
            x + 14.0
        );
        x += 24.0 + 7.0 * name.len() as f64;
    }
}

/// Vertical stacked bars, one per entry of `bars`.
pub fn columns(bars: &[Bar], label: &str) -> String {
    let (w, h) = (960.0, 300.0);
    let (left, right, top, bottom) = (64.0, 12.0, 30.0, 60.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = bars.iter().map(Bar::total).max().unwrap_or(0);
    let (ymax, step) = axis(max);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{}" class="chart">"#,
        escape(label)
    );
    let _ = write!(svg, "<title>{}</title>", escape(label));
    legend(&mut svg, left, 16.0);
    let mut tick = 0;
    while tick <= ymax {
        let y = top + plot_h - plot_h * tick as f64 / ymax as f64;
        let _ = write!(
            svg,
            r#"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="g"/><text x="{:.1}" y="{:.1}" class="a" text-anchor="end">{tick}</text>"#,
            w - right,
            left - 6.0,
            y + 4.0
        );
        tick += step;
    }
    let n = bars.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = (slot * 0.8).clamp(1.0, 48.0);
    let every = (bars.len() / 12).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = top + plot_h;
        let _ = write!(svg, "<g><title>{}</title>", escape(&bar.title()));
        for ((_, colour), n) in SERIES.iter().zip(bar.values) {
            if n == 0 {
                continue;
            }
            let bh = plot_h * n as f64 / ymax as f64;
            y -= bh;
            let _ = write!(
                svg,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{bar_w:.2}" height="{bh:.2}" fill="{colour}"/>"#
            );
        }
        svg.push_str("</g>");
        if i % every == 0 {
            let lx = x + bar_w / 2.0;
            let ly = top + plot_h + 14.0;
            let _ = write!(
                svg,
                r#"<text x="{lx:.1}" y="{ly:.1}" class="a" text-anchor="end" transform="rotate(-35 {lx:.1} {ly:.1})">{}</text>"#,
                escape(&bar.label)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" class="x"/></svg>"#,
        w - right,
        top + plot_h,
        top + plot_h
    );
    svg
}

/// Horizontal stacked bars, one row per entry of `bars` (users).
pub fn rows(bars: &[Bar], label: &str) -> String {
    let row_h = 22.0;
    let (left, right, top) = (220.0, 80.0, 30.0);
    let w = 960.0;
    let h = top + row_h * bars.len() as f64 + 10.0;
    let plot_w = w - left - right;
    let max = bars.iter().map(Bar::total).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" role="img" aria-label="{}" class="chart">"#,
        escape(label)
    );
    let _ = write!(svg, "<title>{}</title>", escape(label));
    legend(&mut svg, left, 16.0);
    for (i, bar) in bars.iter().enumerate() {
        let y = top + row_h * i as f64;
        let name: String = if bar.label.chars().count() > 30 {
            bar.label.chars().take(29).chain(['…']).collect()
        } else {
            bar.label.clone()
        };
        let _ = write!(
            svg,
            r#"<g><title>{}</title><text x="{:.1}" y="{:.1}" class="l" text-anchor="end">{}</text>"#,
            escape(&bar.title()),
            left - 8.0,
            y + 15.0,
            escape(&name)
        );
        let mut x = left;
        for ((_, colour), n) in SERIES.iter().zip(bar.values) {
            if n == 0 {
                continue;
            }
            let bw = plot_w * n as f64 / max as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x:.2}" y="{:.1}" width="{bw:.2}" height="{:.1}" fill="{colour}"/>"#,
                y + 3.0,
                row_h - 6.0
            );
            x += bw;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="l">{}</text></g>"#,
            x + 6.0,
            y + 15.0,
            bar.total()
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_days_without_events_still_have_a_bar() {
        assert_eq!(axis(0), (1, 1));
        assert_eq!(axis(7), (8, 2));
        assert_eq!(axis(11), (15, 5));
        assert_eq!(axis(1234), (1500, 500));
        let mut by_day = BTreeMap::new();
        by_day.insert(10, [3, 1, 0, 0, 0]);
        by_day.insert(12, [1, 0, 0, 0, 0]);
        let (bars, unit) = day_bars(&by_day, 10, 12);
        assert_eq!(unit, "day");
        let totals: Vec<u64> = bars.iter().map(Bar::total).collect();
        assert_eq!(totals, [4, 0, 1]);
        let (weeks, unit) = day_bars(&by_day, 0, 100);
        assert_eq!((unit, weeks.len()), ("week", 15));
        assert_eq!(weeks.iter().map(Bar::total).sum::<u64>(), 5);
    }

    #[test]
    fn labels_are_escaped_and_bars_carry_their_figures() {
        let bars = [Bar {
            label: "<script>alert(1)</script>".into(),
            values: [2, 0, 1, 0, 0],
        }];
        let svg = rows(&bars, "per user");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("3 events (2 success, 1 denied)"));
        let svg = columns(&bars, "per day");
        assert_eq!(svg.matches("<rect").count(), 5 + 2);
    }
}
