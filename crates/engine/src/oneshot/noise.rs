//! `carve noise`: the OS-noise meter (a calibrated TSC-gap probe per core), untuned, dedicated
//! or both in one run; the dedicated run sets a partition up around the probe threads and
//! restores the host after it.

use super::SetupFailed;
use carve_core::CpuSet;
use carve_dedicated::noise::{self, ProbeOptions, Tracer};
pub use carve_dedicated::noise::{Attribution, GapSource, Ratio, RunStats};
use carve_dedicated::supervise::TermSignals;
use carve_dedicated::{DedicatedSpec, SchedPolicy};
use carve_journal::Journal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What `carve noise` asks for, as given on the command line.
#[derive(Debug, Clone)]
pub struct NoiseRequest {
    /// The cores to probe (a CPU list).
    pub cpus: String,
    /// Seconds per run.
    pub seconds: f64,
    /// Measure untuned, then dedicated.
    pub compare: bool,
    /// Measure only dedicated.
    pub dedicated: bool,
    /// SCHED_FIFO priority of the probe in the dedicated run.
    pub fifo: u8,
    /// The probe's policy in the untuned run.
    pub untuned_sched: String,
    /// Gaps longer than this count as interruptions (µs).
    pub threshold_us: f64,
    /// Skip tracepoint attribution.
    pub no_trace: bool,
    /// Whether a [`Load`] runs during the measurement.
    pub load: bool,
}

/// Which run a [`Load`] is started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The untuned run: the load may use every core.
    Untuned,
    /// The dedicated run: the load stays on the housekeeping cores.
    Dedicated,
}

/// Why a [`Load`] failed: the caller's own error, kept whole.
pub type LoadError = Box<dyn std::error::Error + Send + Sync>;

/// Work that loads the machine while a run measures (`carve noise --load`).
pub trait Load {
    /// Starts the load for `phase` on the probed cores `cores`.
    fn start(&mut self, phase: Phase, cores: &[usize]) -> Result<(), LoadError>;
    /// Stops what [`Load::start`] started.
    fn stop(&mut self) -> Result<(), LoadError>;
}

/// Arguments that cannot be measured; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    /// --cpus names offline or no CPUs.
    #[error("--cpus {cpus} must be online CPUs (online: {online})")]
    Cpus {
        /// The probed cores.
        cpus: CpuSet,
        /// The online ones.
        online: CpuSet,
    },
    /// --seconds or --fifo out of range.
    #[error("--seconds must be in (0, 3600] and --fifo in 1..=99")]
    Range,
    /// --load alone.
    #[error("--load needs --compare or --dedicated")]
    LoadAlone,
    /// Dedicating every online CPU.
    #[error("dedicating CPUs {cpus} would leave no housekeeping core (online: {online})")]
    NoHousekeeping {
        /// The probed cores.
        cpus: CpuSet,
        /// The online ones.
        online: CpuSet,
    },
    /// --untuned-sched is not a policy.
    #[error("--untuned-sched: {0}")]
    UntunedSched(#[source] carve_dedicated::ParseError),
}

/// Why `carve noise` failed.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// --cpus is not a CPU list.
    #[error(transparent)]
    Cpus(#[from] carve_core::cpuset::CpuSetError),
    /// /sys did not say which CPUs are online.
    #[error("cannot read the online CPUs")]
    Online,
    /// The arguments cannot be measured; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The dedicated partition was refused before anything changed.
    #[error(transparent)]
    Refused(carve_dedicated::Error),
    /// The dedicated partition's setup failed (and was rolled back).
    #[error(transparent)]
    Setup(carve_dedicated::Error),
    /// The tracer's journal.
    #[error(transparent)]
    Journal(#[from] carve_journal::Error),
    /// The probe or the tracer.
    #[error(transparent)]
    Probe(#[from] noise::NoiseError),
    /// The load.
    #[error(transparent)]
    Load(LoadError),
    /// Restoring the host after the dedicated run.
    #[error("restoring the host after the dedicated run")]
    Restore(#[source] carve_dedicated::Error),
    /// Undoing the tracer's changes.
    #[error("removing the tracefs instance")]
    Untrace(#[source] carve_journal::Error),
}

/// Something worth telling while measuring.
#[derive(Debug)]
pub enum Notice<'a> {
    /// The tracer could not be opened: no attribution.
    NoAttribution(&'a noise::NoiseError),
    /// A warning from restoring the host after the dedicated run.
    Warning(&'a str),
}

/// One probed core.
#[derive(Serialize, Default, Debug)]
pub struct CoreReport {
    /// The core.
    pub cpu: usize,
    /// The untuned run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untuned: Option<RunStats>,
    /// The dedicated run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedicated: Option<RunStats>,
    /// Dedicated / untuned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

/// What `carve noise` measured (its JSON output).
#[derive(Serialize, Debug)]
pub struct Report {
    /// The probed cores.
    pub cpus: String,
    /// Seconds per run.
    pub seconds: f64,
    /// The interruption threshold (µs).
    pub threshold_us: f64,
    /// Whether the TSC is invariant.
    pub tsc_invariant: bool,
    /// Each probed core.
    pub cores: Vec<CoreReport>,
    /// What the dedicated run's setup did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedicated_setup: Option<carve_dedicated::SetupReport>,
}

impl Report {
    /// The runs as an SVG plot.
    pub fn svg(&self) -> String {
        let mut runs: Vec<(String, &RunStats)> = Vec::new();
        for c in &self.cores {
            if let Some(u) = &c.untuned {
                runs.push((format!("core {} untuned ({})", c.cpu, u.sched), u));
            }
            if let Some(d) = &c.dedicated {
                runs.push((format!("core {} dedicated ({})", c.cpu, d.sched), d));
            }
        }
        let labelled: Vec<(&str, &RunStats)> = runs.iter().map(|(l, s)| (l.as_str(), *s)).collect();
        let title = format!(
            "carve noise: TSC-gap probe, {} s per run, gaps > {} µs",
            self.seconds, self.threshold_us
        );
        noise::svg::render(&title, &labelled)
    }
}

/// A finished measurement; the termination signals stay blocked and recorded until it is
/// dropped, so a SIGINT while printing still ends carve with 128+signal.
pub struct Measured {
    /// What was measured.
    pub report: Report,
    signals: TermSignals,
}

impl Measured {
    /// The termination signal received (the measurement stopped early), if any.
    pub fn interrupted(&self) -> Option<i32> {
        self.signals.received()
    }
}

/// Checks the request before anything runs.
fn check(r: &NoiseRequest, cpus: &CpuSet, online: &CpuSet) -> Result<SchedPolicy, InvalidRequest> {
    if cpus.is_empty() || !cpus.is_subset(online) {
        return Err(InvalidRequest::Cpus {
            cpus: cpus.clone(),
            online: online.clone(),
        });
    }
    if !(r.seconds > 0.0 && r.seconds <= 3600.0 && (1..=99).contains(&r.fifo)) {
        return Err(InvalidRequest::Range);
    }
    if r.load && !(r.dedicated || r.compare) {
        return Err(InvalidRequest::LoadAlone);
    }
    if (r.dedicated || r.compare) && online.difference(cpus).is_empty() {
        return Err(InvalidRequest::NoHousekeeping {
            cpus: cpus.clone(),
            online: online.clone(),
        });
    }
    r.untuned_sched
        .parse()
        .map_err(InvalidRequest::UntunedSched)
}

/// Runs `carve noise`: blocks the termination signals (call this before any other thread
/// starts), checks the request, opens the tracer, measures untuned and/or dedicated (with
/// `load` running, if given), restores the host and undoes the tracer.
pub fn measure(
    req: &NoiseRequest,
    load: Option<&mut dyn Load>,
    on: &mut dyn FnMut(Notice<'_>),
) -> Result<Measured, MeterError> {
    // Before any thread: SIGINT/SIGTERM then wait for the current run to end and the host to be
    // restored instead of killing carve half way.
    let signals = TermSignals::block(Duration::from_secs(5));
    let cpus = CpuSet::parse_list(&req.cpus)?;
    let online = super::online_cpus().ok_or(MeterError::Online)?;
    let sched = check(req, &cpus, &online)?;
    let base = ProbeOptions {
        duration: Duration::from_secs_f64(req.seconds),
        threshold: Duration::from_secs_f64(req.threshold_us / 1e6),
        sched,
    };
    let paths = carve_dedicated::HostPaths::default();
    // The tracer's own changes (a tracefs mount if none, its instance) have their own journal.
    let mut tj = None;
    let mut tracer = None;
    if !req.no_trace {
        let owner = format!("noise-{}", std::process::id());
        let mut j = Journal::create(paths.journal_root(), &owner)?;
        match Tracer::open(&mut j, &paths.run, &paths.proc, &cpus) {
            Ok(t) => tracer = Some(t),
            Err(e) => on(Notice::NoAttribution(&e)),
        }
        tj = Some(j);
    }
    let result = Runs {
        req,
        cpus: &cpus,
        tracer: tracer.as_ref(),
        load,
    }
    .both(&online, &base, &signals, on);
    drop(tracer);
    if let Some(j) = tj {
        j.undo().map_err(MeterError::Untrace)?;
    }
    let (cores, setup) = result?;
    let report = Report {
        cpus: cpus.to_string(),
        seconds: req.seconds,
        threshold_us: req.threshold_us,
        tsc_invariant: noise::tsc_is_invariant(&paths.proc),
        cores,
        dedicated_setup: setup,
    };
    Ok(Measured { report, signals })
}

/// What every run shares.
struct Runs<'a, 'l> {
    req: &'a NoiseRequest,
    cpus: &'a CpuSet,
    tracer: Option<&'a Tracer>,
    load: Option<&'a mut (dyn Load + 'l)>,
}

type Probed = (Vec<CoreReport>, Option<carve_dedicated::SetupReport>);

impl Runs<'_, '_> {
    /// The untuned and/or dedicated runs the request asks for, per core.
    fn both(
        &mut self,
        online: &CpuSet,
        base: &ProbeOptions,
        signals: &TermSignals,
        on: &mut dyn FnMut(Notice<'_>),
    ) -> Result<Probed, MeterError> {
        let mut cores: BTreeMap<usize, CoreReport> = self
            .cpus
            .iter()
            .map(|cpu| {
                let c = CoreReport {
                    cpu,
                    ..Default::default()
                };
                (cpu, c)
            })
            .collect();
        let mut setup = None;
        if !self.req.dedicated {
            for s in self.untuned(base)? {
                let cpu = s.cpu;
                cores.get_mut(&cpu).expect("probed core").untuned = Some(s);
            }
        }
        if (self.req.dedicated || self.req.compare) && signals.received().is_none() {
            let (measured, report) = self.dedicated(online, base, on)?;
            setup = Some(report);
            for s in measured {
                let cpu = s.cpu;
                cores.get_mut(&cpu).expect("probed core").dedicated = Some(s);
            }
        }
        for c in cores.values_mut() {
            if let (Some(u), Some(d)) = (&c.untuned, &c.dedicated) {
                c.ratio = Some(Ratio::of(u, d));
            }
        }
        Ok((cores.into_values().collect(), setup))
    }

    fn start_load(&mut self, phase: Phase) -> Result<(), MeterError> {
        let cores: Vec<usize> = self.cpus.iter().collect();
        match self.load.as_deref_mut() {
            Some(l) => l.start(phase, &cores).map_err(MeterError::Load),
            None => Ok(()),
        }
    }

    fn stop_load(&mut self) -> Result<(), MeterError> {
        match self.load.as_deref_mut() {
            Some(l) => l.stop().map_err(MeterError::Load),
            None => Ok(()),
        }
    }

    /// The untuned run: the probe pinned to each core, nothing else changed (the load, if
    /// asked, on every core).
    fn untuned(&mut self, opts: &ProbeOptions) -> Result<Vec<RunStats>, MeterError> {
        let pin = |tid: i32, cpu: usize| -> Result<(), noise::JoinError> {
            Ok(carve_dedicated::sys::set_affinity(
                tid,
                &[cpu].into_iter().collect(),
            )?)
        };
        self.start_load(Phase::Untuned)?;
        let measured = probe(self.cpus, opts, self.tracer, &pin);
        self.stop_load()?;
        measured
    }

    /// The dedicated run: a partition on the probed cores (FIFO, RT throttling off,
    /// IRQs/workqueues/tasks moved; the load, if asked, on the housekeeping cores), the probe
    /// joined to it, then the host restored. Returns the stats and what setup did.
    fn dedicated(
        &mut self,
        online: &CpuSet,
        base: &ProbeOptions,
        on: &mut dyn FnMut(Notice<'_>),
    ) -> Result<(Vec<RunStats>, carve_dedicated::SetupReport), MeterError> {
        let name = format!("noise-{}", std::process::id());
        let mut spec = DedicatedSpec::new(&name, self.cpus.clone(), online);
        spec.sched = SchedPolicy::Fifo(self.req.fifo);
        spec.mlock = false;
        spec.thp_disable = false;
        self.start_load(Phase::Dedicated)?;
        let active = match super::setup(spec) {
            Ok(a) => a,
            Err(e) => {
                // The setup's error is the one worth reporting; the load only has to go.
                let _ = self.stop_load();
                return Err(match e {
                    SetupFailed::Refused(e) => MeterError::Refused(e),
                    SetupFailed::Other(e) => MeterError::Setup(e),
                });
            }
        };
        let opts = ProbeOptions {
            sched: SchedPolicy::Fifo(self.req.fifo),
            ..base.clone()
        };
        let join = |tid: i32, cpu: usize| -> Result<(), noise::JoinError> {
            Ok(active.join_thread(tid, cpu)?)
        };
        let measured = probe(self.cpus, &opts, self.tracer, &join);
        let setup = active.report().clone();
        let torn = active.teardown();
        self.stop_load()?;
        let measured = measured?;
        for w in torn.map_err(MeterError::Restore)?.warnings {
            on(Notice::Warning(&w));
        }
        Ok((measured, setup))
    }
}

/// One probe run on `cpus`, with tracepoint attribution when `tracer` is given.
fn probe(
    cpus: &CpuSet,
    opts: &ProbeOptions,
    tracer: Option<&Tracer>,
    join: &(dyn Fn(i32, usize) -> Result<(), noise::JoinError> + Sync),
) -> Result<Vec<RunStats>, MeterError> {
    let started = std::cell::Cell::new(None);
    let raw = noise::probe(cpus, opts, join, &|| {
        if let Some(t) = tracer {
            started.set(Some(t.start()));
        }
    })?;
    if let Some(Err(e)) = started.take() {
        return Err(e.into());
    }
    let mut out: Vec<RunStats> = raw.iter().map(|r| noise::stats(r, &opts.sched)).collect();
    if let Some(t) = tracer {
        let tids: Vec<i32> = raw.iter().map(|r| r.tid).collect();
        let captures = t.stop(&tids)?;
        for (s, r) in out.iter_mut().zip(&raw) {
            s.attribution = captures.get(&s.cpu).map(|c| c.attribution(r));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> NoiseRequest {
        NoiseRequest {
            cpus: "1".into(),
            seconds: 1.0,
            compare: true,
            dedicated: false,
            fifo: 99,
            untuned_sched: "other".into(),
            threshold_us: 1.0,
            no_trace: true,
            load: false,
        }
    }

    fn check_of(r: &NoiseRequest, cpus: &str, online: &str) -> Result<SchedPolicy, InvalidRequest> {
        let cpus = CpuSet::parse_list(cpus).unwrap();
        check(r, &cpus, &CpuSet::parse_list(online).unwrap())
    }

    #[test]
    fn each_bad_request_is_refused_with_its_reason() {
        assert_eq!(check_of(&req(), "1", "0-1").unwrap(), SchedPolicy::Other);
        let e = check_of(&req(), "2", "0-1").unwrap_err();
        assert_eq!(e.to_string(), "--cpus 2 must be online CPUs (online: 0-1)");
        let mut r = req();
        r.fifo = 0;
        assert!(matches!(
            check_of(&r, "1", "0-1"),
            Err(InvalidRequest::Range)
        ));
        let mut r = req();
        r.seconds = 0.0;
        assert!(matches!(
            check_of(&r, "1", "0-1"),
            Err(InvalidRequest::Range)
        ));
        let mut r = req();
        r.compare = false;
        r.load = true;
        assert!(matches!(
            check_of(&r, "1", "0-1"),
            Err(InvalidRequest::LoadAlone)
        ));
        let e = check_of(&req(), "0-1", "0-1").unwrap_err();
        assert!(
            e.to_string().contains("would leave no housekeeping core"),
            "{e}"
        );
        // Untuned only may probe every core: nothing is dedicated.
        let mut r = req();
        r.compare = false;
        assert!(check_of(&r, "0-1", "0-1").is_ok());
        let mut r = req();
        r.untuned_sched = "fast".into();
        let e = check_of(&r, "1", "0-1").unwrap_err();
        assert!(e.to_string().starts_with("--untuned-sched: "), "{e}");
    }
}
