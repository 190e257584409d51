//! One module per subcommand: argument structs and a `run` that calls the libraries.

pub mod bench;
pub mod bench_cri;
pub mod bench_fastpath;
pub mod bench_interference;
pub mod bench_overhead;
pub mod bench_packet;
pub mod bench_report;
pub mod bench_runtime;
pub mod bench_seeds;
pub mod console;
pub mod cri;
pub mod down;
pub mod exec;
pub mod host;
pub mod image_busybox;
pub mod image_debian;
pub mod image_guest;
pub mod logs;
pub mod noise;
pub mod plan;
pub mod ps;
pub mod restore;
pub mod run;
pub mod start;
pub mod stop;
pub mod supervise;
pub mod top;
pub mod up;
pub mod vm;

/// The running plan that holds partition `name`: its folder, its state, and the partition's.
pub fn running_partition(
    name: &str,
) -> anyhow::Result<(
    carve_engine::state::PlanDir,
    carve_engine::state::PlanState,
    carve_engine::state::PartitionState,
)> {
    let root = std::path::Path::new(carve_engine::state::DEFAULT_ROOT);
    let (dir, st) = carve_engine::state::find_partition(root, name)?;
    let part = st
        .partitions
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .expect("found above");
    Ok((dir, st, part))
}

/// Exit code for an error that was not classified.
pub const EXIT_ERROR: u8 = 1;
/// Exit code for invalid input (plan, arguments): nothing was changed.
pub const EXIT_INVALID: u8 = 2;

/// Ends the program with this exit code; the command has already printed why.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// An error and its causes on one line, each cause only when the text so far does not already
/// hold it: the libraries' messages embed their source's text (thiserror `{source}`) and also
/// keep it as `source()`, so `{:#}` would print it twice.
pub fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_prints_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let inner = carve_engine::tier::TierError::Io {
            path: "/x".into(),
            source: io,
        };
        let e = anyhow::Error::new(inner).context("container web failed");
        assert_eq!(super::report(&e), "container web failed: /x: disk on fire");
        // A cause the message does not hold is still printed.
        let e = anyhow::anyhow!("outer").context("top");
        assert_eq!(super::report(&e), "top: outer");
    }
}
