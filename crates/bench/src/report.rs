//! `carve bench report`: one self-contained HTML page (inline SVG, no external assets) with
//! the plots of the benchmarks, and the JSON behind them.

use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

/// Everything a report shows; each part is optional (a part not measured is said so).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Data {
    /// When and where.
    pub meta: serde_json::Value,
    /// `carve bench overhead --json`.
    pub overhead: Option<crate::overhead::Table>,
    /// `carve bench interference --json`.
    pub interference: Option<crate::interference::Interference>,
    /// `carve bench packet --json`.
    pub packet: Option<crate::packet::Packet>,
    /// `carve bench runtime --json`.
    pub runtime: Option<serde_json::Value>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const W: f64 = 760.0;
const H: f64 = 300.0;
const L: f64 = 60.0;
const B: f64 = 70.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn legend(out: &mut String, names: &[String]) {
    for (i, n) in names.iter().enumerate() {
        let x = L + 10.0 + (i as f64) * 180.0;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="8" width="12" height="12" fill="{}"/><text x="{}" y="18" font-size="12">{}</text>"#,
            COLORS[i % COLORS.len()],
            x + 16.0,
            esc(n)
        );
    }
}

fn axes(out: &mut String, ylabel: &str, top: f64, log: bool) {
    let _ = write!(
        out,
        r##"<line x1="{L}" y1="30" x2="{L}" y2="{y0}" stroke="#333"/><line x1="{L}" y1="{y0}" x2="{W}" y2="{y0}" stroke="#333"/><text x="12" y="{mid}" font-size="12" transform="rotate(-90 12 {mid})">{}</text>"##,
        esc(ylabel),
        y0 = H - B,
        mid = (H - B) / 2.0 + 20.0
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let y = (H - B) - f * (H - B - 30.0);
        let v = if log { 10f64.powf(f * top) } else { f * top };
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text><line x1="{L}" y1="{y}" x2="{W}" y2="{y}" stroke="#ddd"/>"##,
            L - 4.0,
            y + 3.0,
            short(v)
        );
    }
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A grouped bar chart: `groups` along x, one bar per series in each; `log` plots log10.
pub fn bars(
    title: &str,
    ylabel: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    log: bool,
) -> String {
    let mut out = format!(
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" class="plot">"#,
        esc(title)
    );
    let f = |v: f64| {
        if log {
            v.max(1e-3).log10().max(0.0)
        } else {
            v.max(0.0)
        }
    };
    let top = series
        .iter()
        .flat_map(|s| s.1.iter().map(|&v| f(v)))
        .fold(0.0f64, f64::max)
        .max(if log { 0.5 } else { 1e-9 })
        * 1.1;
    axes(&mut out, ylabel, top, log);
    let gw = (W - L - 10.0) / groups.len().max(1) as f64;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (gi, g) in groups.iter().enumerate() {
        let gx = L + 5.0 + gi as f64 * gw;
        for (si, (_, vals)) in series.iter().enumerate() {
            let Some(&v) = vals.get(gi) else { continue };
            if !v.is_finite() || v <= 0.0 {
                continue;
            }
            let h = f(v) / top * (H - B - 30.0);
            let _ = write!(
                out,
                r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                gx + si as f64 * bw,
                H - B - h,
                bw.max(1.0),
                h.max(0.5),
                COLORS[si % COLORS.len()],
                esc(g),
                short(v)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" font-size="10" transform="rotate(30 {:.1} {})">{}</text>"#,
            gx + 2.0,
            H - B + 14.0,
            gx + 2.0,
            H - B + 14.0,
            esc(g)
        );
    }
    let names: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    legend(&mut out, &names);
    out.push_str("</svg></figure>\n");
    out
}

/// A line chart of series of y values over their index.
pub fn lines(title: &str, ylabel: &str, series: &[(String, Vec<f64>)]) -> String {
    let mut out = format!(
        r#"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" class="plot">"#,
        esc(title)
    );
    let top = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.05;
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(1).max(2);
    axes(&mut out, ylabel, top, false);
    for (si, (_, v)) in series.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                format!(
                    "{:.1},{:.1}",
                    L + i as f64 / (n - 1) as f64 * (W - L - 10.0),
                    (H - B) - y / top * (H - B - 30.0)
                )
            })
            .collect();
        let _ = write!(
            out,
            r#"<polyline class="series" fill="none" stroke="{}" stroke-width="1.2" points="{}"/>"#,
            COLORS[si % COLORS.len()],
            pts.join(" ")
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">period number</text>"#,
        (W + L) / 2.0,
        H - B + 30.0
    );
    let names: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    legend(&mut out, &names);
    out.push_str("</svg></figure>\n");
    out
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

fn overhead_section(out: &mut String, t: &crate::overhead::Table) {
    out.push_str("<h2>Overhead per tier (seed 004's lmbench table)</h2>");
    let tiers: Vec<&crate::overhead::TierInfo> = t
        .tiers
        .iter()
        .filter(|x| x.measured && x.tier != "native")
        .collect();
    let groups: Vec<String> = t.rows.iter().map(|r| r.name.clone()).collect();
    let mut series: Vec<(String, Vec<f64>)> = tiers
        .iter()
        .map(|x| {
            (
                x.label.clone(),
                t.rows
                    .iter()
                    .map(|r| r.cells.get(&x.tier).map_or(0.0, |c| c.ratio))
                    .collect(),
            )
        })
        .collect();
    series.push((
        "seed 004 Xeon virt".into(),
        t.rows
            .iter()
            .map(|r| r.seed.as_ref().map_or(0.0, |s| s.xeon_ratio))
            .collect(),
    ));
    out.push_str(&bars(
        "time ÷ native, per row (log scale; 1 = native)",
        "ratio (log10)",
        &groups,
        &series,
        true,
    ));
    let mut rows = Vec::new();
    for r in &t.rows {
        let mut v = vec![
            r.name.clone(),
            format!(
                "{} ({})",
                crate::overhead::fmt_num(r.cells.get("native").map_or(0.0, |c| c.median)),
                r.unit
            ),
        ];
        for x in &tiers {
            v.push(
                r.cells
                    .get(&x.tier)
                    .map_or("-".into(), |c| format!("{:.3}×", c.ratio)),
            );
        }
        v.push(r.seed.as_ref().map_or(String::new(), |s| {
            format!("{} {:.2}× / {:.2}×", s.column, s.xeon_ratio, s.bochs_ratio)
        }));
        rows.push(v);
    }
    let mut head = vec!["row", "native"];
    head.extend(tiers.iter().map(|x| x.label.as_str()));
    head.push("seed 004 (Xeon / Bochs)");
    table(out, &head, &rows);
    for x in &t.tiers {
        let _ = write!(out, "<p><b>{}</b>: {}</p>", esc(&x.label), esc(&x.note));
    }
}

fn interference_section(out: &mut String, r: &crate::interference::Interference) {
    out.push_str("<h2>Real-time interference under load (seed 004's experiment)</h2>");
    let mut periods: Vec<u64> = r.series.iter().map(|s| s.period_us).collect();
    periods.sort_unstable();
    periods.dedup();
    for p in periods {
        let best = (crate::interference::reference_rate(&r.series) * p as f64).max(1.0);
        let series: Vec<(String, Vec<f64>)> = r
            .series
            .iter()
            .filter(|s| s.period_us == p)
            .map(|s| {
                (
                    s.scenario.clone(),
                    s.counts
                        .iter()
                        .map(|&c| (best - f64::from(c)).abs() / best * 100.0)
                        .collect(),
                )
            })
            .collect();
        out.push_str(&lines(
            &format!(
                "deviation from the best uninterrupted rate, {} periods",
                crate::interference::fmt_period(p)
            ),
            "deviation %",
            &series,
        ));
    }
    let rows: Vec<Vec<String>> = r
        .summaries
        .iter()
        .map(|s| {
            vec![
                s.scenario.clone(),
                crate::interference::fmt_period(s.period_us),
                format!("{:.1} %", s.throughput * 100.0),
                format!("{:.1} %", s.avg_dev_pct),
                format!("{:.1} %", s.p99_dev_pct),
                format!("{:.1} %", s.max_dev_pct),
                format!("{:.2} %", s.steal_pct),
            ]
        })
        .collect();
    table(
        out,
        &[
            "scenario",
            "period",
            "throughput vs quiet",
            "avg dev",
            "p99 dev",
            "max dev",
            "steal",
        ],
        &rows,
    );
    if let Some(f) = &r.floor {
        let h = &f.histogram;
        let groups: Vec<String> = h.iter().map(|b| format!("{}-{} µs", b.0, b.1)).collect();
        out.push_str(&bars(
            "noise gaps on the dedicated core without load (noise meter): gaps per length (log scale)",
            "gaps (log10)",
            &groups,
            &[("gaps".into(), h.iter().map(|b| b.2 as f64).collect())],
            true,
        ));
    }
    let _ = write!(out, "<pre>{}</pre>", esc(&crate::interference::render(r)));
}

fn packet_section(out: &mut String, p: &crate::packet::Packet) {
    out.push_str("<h2>The packet arithmetic (seed 000)</h2>");
    let mut groups: Vec<String> = p.lines.iter().map(|l| l.core.clone()).collect();
    let mut pred: Vec<f64> = p.lines.iter().map(|l| l.predicted_pps).collect();
    let mut meas: Vec<f64> = p.lines.iter().map(|l| l.measured_pps).collect();
    groups.push("accelerator (model)".into());
    pred.push(p.accel.predicted_pps);
    meas.push(0.0);
    out.push_str(&bars(
        "packets/s: the model beside the measurement",
        "packets/s",
        &groups,
        &[("model".into(), pred), ("measured".into(), meas)],
        false,
    ));
    let _ = write!(out, "<pre>{}</pre>", esc(&crate::packet::render(p)));
}

fn runtime_section(out: &mut String, v: &serde_json::Value) {
    out.push_str("<h2>Container runtimes (carve bench runtime)</h2>");
    let Some(rts) = v["runtimes"].as_object() else {
        out.push_str("<p>no runtime data</p>");
        return;
    };
    let metrics: Vec<String> = rts
        .values()
        .next()
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter(|(_, x)| x["median"].is_number() && x.get("calls").is_none())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let series: Vec<(String, Vec<f64>)> = rts
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                metrics
                    .iter()
                    .map(|k| m[k]["median"].as_f64().unwrap_or(0.0))
                    .collect(),
            )
        })
        .collect();
    out.push_str(&bars(
        "median per phase (lower is better)",
        "value",
        &metrics,
        &series,
        false,
    ));
}

/// The HTML page.
pub fn html(d: &Data) -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>carve bench report</title><style>\
         body{font-family:sans-serif;margin:20px;max-width:1000px;background:#fff;color:#111}\
         table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #aaa;padding:2px 6px;font-size:12px}\
         figure{margin:10px 0}figcaption{font-weight:bold;font-size:13px}pre{font-size:11px;background:#f4f4f4;padding:6px;overflow-x:auto}\
         </style></head><body><h1>carve bench report</h1>",
    );
    let _ = write!(
        out,
        "<pre>{}</pre>",
        esc(&serde_json::to_string_pretty(&d.meta).unwrap_or_default())
    );
    match &d.overhead {
        Some(t) => overhead_section(&mut out, t),
        None => out.push_str("<h2>Overhead per tier</h2><p>not measured</p>"),
    }
    match &d.interference {
        Some(r) => interference_section(&mut out, r),
        None => out.push_str("<h2>Interference</h2><p>not measured</p>"),
    }
    match &d.packet {
        Some(p) => packet_section(&mut out, p),
        None => out.push_str("<h2>Packets</h2><p>not measured</p>"),
    }
    match &d.runtime {
        Some(v) => runtime_section(&mut out, v),
        None => out.push_str("<h2>Container runtimes</h2><p>not measured</p>"),
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes `index.html` and `report.json` into `dir`.
pub fn write(dir: &Path, d: &Data) -> Result<(), crate::BenchError> {
    std::fs::create_dir_all(dir).map_err(crate::BenchError::io("create", dir))?;
    let h = dir.join("index.html");
    std::fs::write(&h, html(d)).map_err(crate::BenchError::io("write", &h))?;
    let j = dir.join("report.json");
    std::fs::write(&j, serde_json::to_vec_pretty(d).expect("json"))
        .map_err(crate::BenchError::io("write", &j))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_hold_their_data() {
        let b = bars(
            "t",
            "y",
            &["a".into(), "b".into()],
            &[("s".into(), vec![1.0, 2.0])],
            false,
        );
        assert_eq!(b.matches("class=\"bar\"").count(), 2);
        let l = lines("t", "y", &[("q".into(), vec![1.0, 2.0, 3.0])]);
        assert_eq!(l.matches("<polyline").count(), 1);
        let h = html(&Data::default());
        assert!(h.contains("not measured") && !h.contains("http://") || h.contains("xmlns"));
        assert_eq!(esc("<a&\""), "&lt;a&amp;&quot;");
    }
}
