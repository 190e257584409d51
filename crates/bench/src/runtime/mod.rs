//! `carve bench runtime`: carve-oci side by side with runc and youki (when installed) on one
//! busybox bundle, interleaved run by run so load drift hits every runtime alike.
//!
//! Measured per runtime, `runs` times each ([`compare`]): create + start + delete --force of a
//! running `sleep` container; run `/bin/true` + delete; each phase alone (create, start, state,
//! kill, delete of the stopped container); the peak RSS of every CLI call (the runtime process's
//! `ru_maxrss`, in separate rounds through `busybox time`, see [`rss_wrapper`]). Medians with
//! p10/p90, ratios against runc and youki, and the targets of issue 4 ([`Comparison`]).
//! [`churn`] instead runs N create/start/delete cycles of carve-oci and checks that state dirs,
//! cgroups, mounts, processes, the container process's fds and free memory stay flat.

mod calls;
mod churn;

pub use calls::{on_path, rss_wrapper, METRICS};
pub use churn::{churn, Churn, Sample};

use crate::stats::median;
use crate::BenchError;
use calls::{wait_exit, write_config, Rt, Work};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// create+start+delete --force ≤ this × youki's.
pub const TARGET_CYCLE_VS_YOUKI: f64 = 0.35;
/// create+start+delete --force ≤ this × runc's.
pub const TARGET_CYCLE_VS_RUNC: f64 = 0.1;
/// run /bin/true + delete ≤ this × runc's.
pub const TARGET_RUN_VS_RUNC: f64 = 0.3;
/// Peak RSS of any carve-oci CLI call, KiB.
pub const TARGET_RSS_KIB: u64 = 3 * 1024;

/// Failed calls tolerated per runtime before the benchmark gives up (youki now and then fails
/// `create` with "failed to seal /proc/self/exe: EBUSY" under load).
const MAX_FAILURES: usize = 3;

/// What the benchmark tells its caller while it runs.
#[derive(Debug)]
pub enum Event<'a> {
    /// A remark for stderr (a missing peer, a wait for the host lock).
    Note(&'a str),
    /// A failed round, retried.
    Retry(&'a str),
    /// `n` recorded rounds of every runtime are done.
    Rounds(usize),
}

/// Sorted-copy percentile (nearest rank on `len - 1`); NaN for none.
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

/// `{median_ms, p10_ms, p90_ms, n}` of durations in seconds.
pub fn summary(v: &[f64]) -> Value {
    json!({"median_ms": median(v) * 1e3, "p10_ms": pct(v, 10.0) * 1e3, "p90_ms": pct(v, 90.0) * 1e3, "n": v.len()})
}

/// `given`, else carve-oci beside `exe`, else on PATH.
pub fn find_carve_oci(given: Option<PathBuf>, exe: &Path) -> Result<PathBuf, BenchError> {
    if let Some(p) = given {
        return Ok(p);
    }
    let beside = exe.with_file_name("carve-oci");
    if beside.is_file() {
        return Ok(beside);
    }
    on_path("carve-oci").ok_or_else(|| BenchError::Tool {
        what: "carve-oci".into(),
        detail: "not found next to carve nor on PATH: build it (cargo build --release -p \
                 carve-oci) or pass --carve-oci PATH"
            .into(),
    })
}

/// The runtimes to compare: carve-oci first, then runc and youki (given, or found on PATH;
/// a missing one is a note, not an error).
pub fn runtimes(
    carve_oci: PathBuf,
    runc: Option<PathBuf>,
    youki: Option<PathBuf>,
    on: &mut dyn FnMut(Event),
) -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![("carve-oci", carve_oci)];
    match runc.or_else(|| on_path("runc")) {
        Some(p) => v.push(("runc", p)),
        None => on(Event::Note("runc not found (scripts/setup.sh installs it)")),
    }
    match youki.or_else(|| on_path("youki")) {
        Some(p) => v.push(("youki", p)),
        None => on(Event::Note(
            "youki not found, compared with runc only (scripts/bench-setup.sh installs it)",
        )),
    }
    v
}

/// The figures of one runtime.
#[derive(Debug, Clone)]
pub struct Figures {
    /// carve-oci, runc or youki.
    pub name: &'static str,
    /// Its binary.
    pub bin: PathBuf,
    /// Wall times per metric ([`METRICS`] order), seconds.
    pub times: Vec<Vec<f64>>,
    /// Peak RSS per CLI call, KiB.
    pub rss: Vec<u64>,
    /// Failed rounds (retried), with the runtime's message.
    pub failures: Vec<String>,
}

/// One target of issue 4 and whether it was met.
#[derive(Debug, Clone)]
pub enum Check {
    /// carve-oci's median of `metric` against `vs`'s.
    Ratio {
        /// The metric.
        metric: &'static str,
        /// The peer runtime.
        vs: &'static str,
        /// carve-oci / peer.
        ratio: f64,
        /// The largest ratio allowed.
        target: f64,
    },
    /// The largest peak RSS of any carve-oci call against [`TARGET_RSS_KIB`].
    PeakRss {
        /// KiB.
        value: u64,
    },
}

impl Check {
    /// Whether the target is met.
    pub fn met(&self) -> bool {
        match *self {
            Check::Ratio { ratio, target, .. } => ratio <= target,
            Check::PeakRss { value } => value <= TARGET_RSS_KIB,
        }
    }
}

/// Every runtime's figures from one interleaved run.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// carve-oci first.
    pub runtimes: Vec<Figures>,
}

impl Comparison {
    fn median_of(&self, name: &str, metric: &str) -> Option<f64> {
        let i = METRICS.iter().position(|m| *m == metric)?;
        self.runtimes
            .iter()
            .find(|r| r.name == name)
            .map(|r| median(&r.times[i]))
    }

    /// carve-oci's median of `metric` over `peer`'s, when both were measured.
    pub fn ratio(&self, metric: &str, peer: &str) -> Option<f64> {
        Some(self.median_of("carve-oci", metric)? / self.median_of(peer, metric)?)
    }

    /// Whether `name` was measured.
    pub fn has(&self, name: &str) -> bool {
        self.runtimes.iter().any(|r| r.name == name)
    }

    /// The targets of issue 4, each with its figure.
    pub fn checks(&self) -> Vec<Check> {
        let targets = [
            ("cycle", "youki", TARGET_CYCLE_VS_YOUKI),
            ("cycle", "runc", TARGET_CYCLE_VS_RUNC),
            ("run_true", "runc", TARGET_RUN_VS_RUNC),
        ];
        let mut checks: Vec<Check> = targets
            .into_iter()
            .filter_map(|(metric, vs, target)| {
                let ratio = self.ratio(metric, vs)?;
                Some(Check::Ratio {
                    metric,
                    vs,
                    ratio,
                    target,
                })
            })
            .collect();
        let value = self
            .runtimes
            .iter()
            .find(|r| r.name == "carve-oci")
            .and_then(|r| r.rss.iter().max().copied())
            .unwrap_or(0);
        checks.push(Check::PeakRss { value });
        checks
    }

    /// The JSON document of `carve bench runtime --json` (also read by `carve bench report`).
    pub fn to_json(&self) -> Value {
        let mut runtimes = serde_json::Map::new();
        for r in &self.runtimes {
            let mut m = serde_json::Map::new();
            for (i, name) in METRICS.iter().enumerate() {
                m.insert(name.to_string(), summary(&r.times[i]));
            }
            let rss: Vec<f64> = r.rss.iter().map(|&k| k as f64).collect();
            m.insert(
                "peak_rss_kib".into(),
                json!({"median": median(&rss), "p90": pct(&rss, 90.0),
                       "max": r.rss.iter().max(), "calls": r.rss.len()}),
            );
            m.insert("binary".into(), json!(r.bin));
            m.insert("failed_rounds".into(), json!(r.failures));
            runtimes.insert(r.name.to_string(), Value::Object(m));
        }
        let mut ratios = serde_json::Map::new();
        for peer in ["runc", "youki"] {
            let m: serde_json::Map<String, Value> = METRICS
                .iter()
                .filter_map(|metric| Some((metric.to_string(), json!(self.ratio(metric, peer)?))))
                .collect();
            if !m.is_empty() {
                ratios.insert(format!("carve-oci/{peer}"), Value::Object(m));
            }
        }
        let checks: Vec<Value> = self.checks().iter().map(check_json).collect();
        json!({"runtimes": runtimes, "ratios": ratios, "targets": checks})
    }
}

fn check_json(c: &Check) -> Value {
    match *c {
        Check::Ratio {
            metric,
            vs,
            ratio,
            target,
        } => json!({
            "metric": metric, "vs": vs, "ratio": ratio, "target": target, "met": c.met(),
            "miss_factor": ratio / target,
        }),
        Check::PeakRss { value } => json!({
            "metric": "peak_rss_kib", "value": value, "target": TARGET_RSS_KIB, "met": c.met(),
        }),
    }
}

/// Measures `runtimes` (from [`runtimes`]) `runs` times each, interleaved, after one
/// unrecorded warm-up round; then up to 10 rounds of peak RSS through `busybox time`.
pub fn compare(
    runtimes: &[(&'static str, PathBuf)],
    runs: usize,
    on: &mut dyn FnMut(Event),
) -> Result<Comparison, BenchError> {
    if runs == 0 {
        return Err(BenchError::Invalid {
            field: "--runs",
            why: "must be at least 1".into(),
        });
    }
    let mut work = Work::new(&mut |m| on(Event::Note(m)))?;
    let dir = work.dir.clone();
    let mut rts: Vec<Rt> = runtimes
        .iter()
        .map(|(name, bin)| Rt::new(name, bin.clone(), &dir))
        .collect();
    work.bins = rts
        .iter()
        .map(|r| (r.bin.clone(), r.root.clone()))
        .collect();
    let b = work.bundle.to_string_lossy().into_owned();
    // One unrecorded round first: page cache, binaries, cgroup parents.
    for round in 0..=runs {
        for rt in rts.iter_mut() {
            let keep = round > 0;
            measured(rt, keep, |rt| {
                robust_round(rt, &dir, &b, &work.cgroup_parent, round, on)
            })?;
        }
        if round > 0 && round % 10 == 0 {
            on(Event::Rounds(round));
        }
    }
    // Peak RSS: separate rounds of the same calls through busybox time (timings discarded).
    let bb = rss_wrapper().ok_or_else(|| BenchError::Tool {
        what: "busybox".into(),
        detail: "busybox-static is needed to measure peak RSS".into(),
    })?;
    for round in 0..runs.min(10) {
        for rt in rts.iter_mut() {
            rt.rss_via = Some(bb.clone());
            let r = measured(rt, false, |rt| {
                robust_round(rt, &dir, &b, &work.cgroup_parent, runs + 1 + round, on)
            });
            rt.rss_via = None;
            r?;
        }
    }
    Ok(Comparison {
        runtimes: rts
            .into_iter()
            .map(|r| Figures {
                name: r.name,
                bin: r.bin,
                times: r.times,
                rss: r.rss,
                failures: r.failures,
            })
            .collect(),
    })
}

/// Runs `f` on `rt`, dropping the timings it recorded unless `keep`.
fn measured(
    rt: &mut Rt,
    keep: bool,
    f: impl FnOnce(&mut Rt) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let before: Vec<usize> = rt.times.iter().map(Vec::len).collect();
    f(rt)?;
    if !keep {
        for (t, n) in rt.times.iter_mut().zip(before) {
            t.truncate(n);
        }
    }
    Ok(())
}

/// `one_round`, retried after a failure: the round's containers are force-deleted, the failure is
/// reported and counted, and its partial timings are dropped.
fn robust_round(
    rt: &mut Rt,
    work: &Path,
    bundle: &str,
    parent: &str,
    round: usize,
    on: &mut dyn FnMut(Event),
) -> Result<(), BenchError> {
    loop {
        let before: Vec<usize> = rt.times.iter().map(Vec::len).collect();
        let rss_before = rt.rss.len();
        let attempt = round * 10 + rt.failures.len();
        let Err(e) = one_round(rt, work, bundle, parent, attempt) else {
            return Ok(());
        };
        for (t, n) in rt.times.iter_mut().zip(before) {
            t.truncate(n);
        }
        rt.rss.truncate(rss_before);
        let id = format!("carve-bench-{}-{attempt}", rt.name);
        for i in [id.clone(), format!("{id}-p"), format!("{id}-p-r")] {
            let _ = rt.try_run(work, &["delete", "--force", &i]);
        }
        // The first line says what failed; the rest is often a backtrace.
        let msg = e.to_string();
        let msg = msg.lines().next().unwrap_or("").to_string();
        on(Event::Retry(&msg));
        rt.failures.push(msg);
        if rt.failures.len() >= MAX_FAILURES {
            return Err(BenchError::Tool {
                what: rt.name.into(),
                detail: format!("failed {MAX_FAILURES} times: {:?}", rt.failures),
            });
        }
    }
}

/// One measurement of every kind for one runtime.
fn one_round(
    rt: &mut Rt,
    work: &Path,
    bundle: &str,
    parent: &str,
    round: usize,
) -> Result<(), BenchError> {
    let id = format!("carve-bench-{}-{round}", rt.name);
    let bpath = Path::new(bundle);
    // create + start + delete --force of a running sleep.
    write_config(bpath, &["sleep", "1000"], &format!("/{parent}/{id}"))?;
    let c = rt.run(work, &["create", "--bundle", bundle, &id])?;
    let s = rt.run(work, &["start", &id])?;
    let d = rt.run(work, &["delete", "--force", &id])?;
    rt.record("cycle", c + s + d);

    // Each phase alone: create, start, state, kill, (wait for the exit, untimed), delete.
    let id = format!("{id}-p");
    write_config(bpath, &["sleep", "1000"], &format!("/{parent}/{id}"))?;
    let t = rt.run(work, &["create", "--bundle", bundle, &id])?;
    rt.record("create", t);
    let t = rt.run(work, &["start", &id])?;
    rt.record("start", t);
    let t = rt.run(work, &["state", &id])?;
    rt.record("state", t);
    let pid = rt.state(work, &id)?["pid"].as_i64().unwrap_or(0) as i32;
    let t = rt.run(work, &["kill", &id, "KILL"])?;
    rt.record("kill", t);
    if pid > 0 {
        wait_exit(pid, Duration::from_secs(10))?;
    }
    let t = rt.run(work, &["delete", &id])?;
    rt.record("delete", t);

    // run /bin/true in the foreground, then delete (runc's and youki's `run` may already have
    // deleted it; then only `run` counts).
    let id = format!("{id}-r");
    write_config(bpath, &["/bin/true"], &format!("/{parent}/{id}"))?;
    let mut t = rt.run(work, &["run", "--bundle", bundle, &id])?;
    if rt.exists(work, &id) {
        t += rt.run(work, &["delete", "--force", &id])?;
    }
    rt.record("run_true", t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{pct, Check, Comparison, Figures, METRICS, TARGET_RSS_KIB};
    use crate::stats::median;

    fn figures(name: &'static str, cycle: f64, rss: u64) -> Figures {
        let mut times = vec![vec![0.01]; METRICS.len()];
        times[0] = vec![cycle, cycle];
        Figures {
            name,
            bin: name.into(),
            times,
            rss: vec![rss],
            failures: vec![],
        }
    }

    #[test]
    fn ratios_and_targets_compare_carve_oci_with_each_peer_present() {
        let c = Comparison {
            runtimes: vec![figures("carve-oci", 0.25, 2048), figures("runc", 4.0, 9000)],
        };
        assert_eq!(c.ratio("cycle", "runc"), Some(0.0625));
        assert_eq!(c.ratio("cycle", "youki"), None);
        let checks = c.checks();
        // cycle vs runc, run_true vs runc, peak RSS; no youki row without youki.
        assert_eq!(checks.len(), 3);
        assert!(matches!(
            checks[0],
            Check::Ratio {
                vs: "runc",
                metric: "cycle",
                ..
            }
        ));
        assert!(checks[0].met() && !checks[1].met());
        assert!(matches!(checks[2], Check::PeakRss { value: 2048 }) && checks[2].met());
        let j = c.to_json();
        assert_eq!(j["ratios"]["carve-oci/runc"]["cycle"], 0.0625);
        assert_eq!(j["runtimes"]["carve-oci"]["peak_rss_kib"]["max"], 2048);
        assert_eq!(j["targets"][2]["target"], TARGET_RSS_KIB);
        assert!(j["ratios"].get("carve-oci/youki").is_none());
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let v: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(pct(&v, 10.0), 2.0);
        assert_eq!(pct(&v, 90.0), 10.0);
        assert_eq!(pct(&v, 50.0), 6.0);
        assert!(pct(&[], 50.0).is_nan());
    }
}
