//! A hand-written SVG plot of noise runs: gaps over time (log scale) and the gap histogram.

use super::RunStats;
use std::fmt::Write;

const COLORS: [&str; 4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders `runs` (label, stats) as one SVG document: on top, each interruption's gap against
/// time (the largest gap per pixel column); below, the power-of-two histogram of gaps.
pub fn render(title: &str, runs: &[(&str, &RunStats)]) -> String {
    let (w, h) = (900.0f64, 640.0f64);
    let (left, right) = (70.0, 20.0);
    let pw = w - left - right;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{left}" y="24" font-size="16">{}</text>"#,
        esc(title)
    );
    timeline(&mut o, runs, left, pw);
    histogram(&mut o, runs, left, pw);
    o.push_str("</svg>\n");
    o
}

/// The gap timeline: each run's largest gap per pixel column, log scale, with its summary line.
fn timeline(o: &mut String, runs: &[(&str, &RunStats)], left: f64, pw: f64) {
    let (t_top, t_h) = (50.0, 240.0);
    let max_gap = runs
        .iter()
        .map(|(_, s)| s.max_gap_us)
        .fold(1.0f64, f64::max);
    let min_gap = runs
        .iter()
        .map(|(_, s)| s.threshold_us)
        .fold(f64::MAX, f64::min)
        .clamp(0.01, 1.0);
    let (lmin, lmax) = (min_gap.log10(), max_gap.log10().max(min_gap.log10() + 1.0));
    let y_of = |g: f64| t_top + t_h - (g.max(min_gap).log10() - lmin) / (lmax - lmin) * t_h;
    let secs = runs.iter().map(|(_, s)| s.seconds).fold(0.001f64, f64::max);
    let _ = writeln!(
        o,
        r##"<rect x="{left}" y="{t_top}" width="{pw}" height="{t_h}" fill="none" stroke="#888"/>"##
    );
    let mut decade = lmin.floor() as i32;
    while (decade as f64) <= lmax {
        let g = 10f64.powi(decade);
        if g >= min_gap {
            let y = y_of(g);
            let _ = writeln!(
                o,
                r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{} µs</text>"##,
                left + pw,
                left - 4.0,
                y + 4.0,
                g
            );
        }
        decade += 1;
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">time (s, 0–{secs:.1}); gap per interruption, log scale</text>"#,
        left + pw / 2.0,
        t_top + t_h + 18.0
    );
    for (i, (label, s)) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let cols = pw as usize;
        let mut col_max = vec![0.0f64; cols + 1];
        for &(t, g) in &s.timeline {
            let c = ((t / secs) * cols as f64) as usize;
            let c = c.min(cols);
            col_max[c] = col_max[c].max(g);
        }
        let _ = write!(o, r#"<g fill="{color}" fill-opacity="0.7">"#);
        for (c, g) in col_max.iter().enumerate().filter(|(_, g)| **g > 0.0) {
            let _ = write!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="1.6"/>"#,
                left + c as f64,
                y_of(*g)
            );
        }
        let _ = writeln!(o, "</g>");
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" fill="{color}">{}: {:.3} % stolen, {:.0} interruptions/s, max gap {:.1} µs, p99 {:.1} µs</text>"#,
            left,
            t_top + t_h + 40.0 + 16.0 * i as f64,
            esc(label),
            s.stolen_percent,
            s.interruptions_per_sec,
            s.max_gap_us,
            s.percentiles.p99
        );
    }
}

/// The histogram: grouped bars per power-of-two bucket, log count scale.
fn histogram(o: &mut String, runs: &[(&str, &RunStats)], left: f64, pw: f64) {
    let (h_top, h_h) = (360.0, 220.0);
    let mut buckets: Vec<f64> = runs
        .iter()
        .flat_map(|(_, s)| s.histogram.iter().map(|b| b.lo_us))
        .collect();
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    let max_count = runs
        .iter()
        .flat_map(|(_, s)| s.histogram.iter().map(|b| b.count))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let _ = writeln!(
        o,
        r##"<rect x="{left}" y="{h_top}" width="{pw}" height="{h_h}" fill="none" stroke="#888"/>"##
    );
    let nb = buckets.len().max(1) as f64;
    let group = pw / nb;
    let bar = (group * 0.8) / runs.len().max(1) as f64;
    for (bi, lo) in buckets.iter().enumerate() {
        let gx = left + group * bi as f64;
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
            gx + group / 2.0,
            h_top + h_h + 14.0,
            if *lo >= 1000.0 {
                format!("{}ms", lo / 1000.0)
            } else {
                format!("{lo}µs")
            }
        );
        for (ri, (_, s)) in runs.iter().enumerate() {
            let Some(b) = s.histogram.iter().find(|b| b.lo_us == *lo) else {
                continue;
            };
            if b.count == 0 {
                continue;
            }
            let bh = ((b.count as f64).ln_1p() / max_count.ln_1p()) * h_h;
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {} gaps in [{}, {}) µs</title></rect>"#,
                gx + group * 0.1 + bar * ri as f64,
                h_top + h_h - bh,
                bar,
                bh,
                COLORS[ri % COLORS.len()],
                esc(runs[ri].0),
                b.count,
                b.lo_us,
                b.hi_us
            );
        }
    }
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">gap length (bucket lower bound); bar height: count, log scale (max {max_count})</text>"#,
        left + pw / 2.0,
        h_top + h_h + 32.0
    );
}

#[cfg(test)]
mod tests {
    use super::super::{Bucket, Percentiles, RunStats};

    fn stats(gap: f64) -> RunStats {
        RunStats {
            cpu: 1,
            sched: "other".into(),
            seconds: 2.0,
            tsc_hz: 2e9,
            threshold_us: 1.0,
            loop_ns: 20.0,
            interruptions: 2,
            interruptions_per_sec: 1.0,
            stolen_percent: 0.5,
            max_gap_us: gap,
            percentiles: Percentiles::default(),
            histogram: vec![Bucket {
                lo_us: 2.0,
                hi_us: 4.0,
                count: 2,
            }],
            attribution: None,
            timeline: vec![(0.5, gap / 2.0), (1.5, gap)],
        }
    }

    #[test]
    fn both_plots_are_drawn_with_escaped_labels() {
        let (a, b) = (stats(3.0), stats(300.0));
        let svg = super::render("noise <1>", &[("untuned & co", &a), ("dedicated", &b)]);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("noise &lt;1&gt;") && svg.contains("untuned &amp; co: "));
        // One dot per timeline point of each run, one histogram bar per run.
        assert_eq!(svg.matches("<circle ").count(), 4);
        assert_eq!(svg.matches("gaps in [2, 4) µs").count(), 2);
        assert!(svg.contains("max 2)"), "histogram scale: {svg}");
    }
}
