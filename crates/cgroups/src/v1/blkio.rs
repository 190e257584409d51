//! v1 blkio: weights (CFQ's blkio.weight or BFQ's blkio.bfq.weight) and throttles.

use crate::fs;
use crate::stats::{BlkioEntry, Stats};
use crate::Error;
use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};
use std::path::Path;

/// Writes to the CFQ file, or to the BFQ one when the kernel has only BFQ (as here).
fn write_weight(dir: &Path, cfq: &str, bfq: &str, v: &str) -> Result<(), Error> {
    match fs::write(dir, cfq, v) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(fs::write(dir, bfq, v)?),
        r => Ok(r?),
    }
}

fn throttle(dir: &Path, file: &str, devs: &Option<Vec<LinuxThrottleDevice>>) -> Result<(), Error> {
    for d in devs.iter().flatten() {
        fs::write(
            dir,
            file,
            &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
        )?;
    }
    Ok(())
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(b) = res.block_io() else {
        return Ok(());
    };
    if let Some(w) = b.weight() {
        if w != 0 {
            write_weight(dir, "blkio.weight", "blkio.bfq.weight", &w.to_string())?;
        }
    }
    if let Some(w) = b.leaf_weight() {
        if w != 0 {
            fs::write(dir, "blkio.leaf_weight", &w.to_string())?;
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight() {
            let v = format!("{}:{} {}", d.major(), d.minor(), w);
            write_weight(dir, "blkio.weight_device", "blkio.bfq.weight_device", &v)?;
        }
        if let Some(w) = d.leaf_weight() {
            let v = format!("{}:{} {}", d.major(), d.minor(), w);
            fs::write(dir, "blkio.leaf_weight_device", &v)?;
        }
    }
    throttle(
        dir,
        "blkio.throttle.read_bps_device",
        b.throttle_read_bps_device(),
    )?;
    throttle(
        dir,
        "blkio.throttle.write_bps_device",
        b.throttle_write_bps_device(),
    )?;
    throttle(
        dir,
        "blkio.throttle.read_iops_device",
        b.throttle_read_iops_device(),
    )?;
    throttle(
        dir,
        "blkio.throttle.write_iops_device",
        b.throttle_write_iops_device(),
    )?;
    Ok(())
}

/// Parses "MAJ:MIN Op value" lines (the trailing "Total N" line is skipped).
pub(crate) fn parse_entries(s: &str) -> Vec<BlkioEntry> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let op = it.next()?;
            let value = it.next()?.parse().ok()?;
            let (maj, min) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: op.to_string(),
                value,
            })
        })
        .collect()
}

fn first_nonempty(dir: &Path, files: &[&str]) -> Result<Vec<BlkioEntry>, Error> {
    for f in files {
        if let Some(s) = fs::read_opt(dir, f)? {
            let e = parse_entries(&s);
            if !e.is_empty() {
                return Ok(e);
            }
        }
    }
    Ok(Vec::new())
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    st.blkio.io_service_bytes_recursive = first_nonempty(
        dir,
        &[
            "blkio.io_service_bytes_recursive",
            "blkio.bfq.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes_recursive",
        ],
    )?;
    st.blkio.io_serviced_recursive = first_nonempty(
        dir,
        &[
            "blkio.io_serviced_recursive",
            "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_serviced_recursive",
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_skip_total() {
        let e = super::parse_entries("254:0 Read 4096\n254:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].major, e[0].minor, e[0].op.as_str(), e[0].value),
            (254, 0, "Read", 4096)
        );
    }
}
