//! v2 io: io.bfq.weight (BFQ takes blkio's 10..1000 directly) or io.weight (converted), io.max.

use crate::fs;
use crate::stats::{BlkioEntry, Stats};
use crate::Error;
use oci_spec::runtime::LinuxResources;
use std::path::Path;

/// blkio.weight [10, 1000] to io.weight [1, 10000] (runc's linear mapping).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

fn weight(dir: &Path, dev: Option<(i64, i64)>, w: u16) -> Result<(), Error> {
    let (bfq, conv) = match dev {
        Some((ma, mi)) => (
            format!("{ma}:{mi} {w}"),
            format!("{ma}:{mi} {}", blkio_to_io_weight(w)),
        ),
        None => (
            format!("default {w}"),
            format!("default {}", blkio_to_io_weight(w)),
        ),
    };
    match fs::write(dir, "io.bfq.weight", &bfq) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(fs::write(dir, "io.weight", &conv)?),
        r => Ok(r?),
    }
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), Error> {
    let Some(b) = res.block_io() else {
        return Ok(());
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        weight(dir, None, w)?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            weight(dir, Some((d.major(), d.minor())), w)?;
        }
    }
    for (key, devs) in [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ] {
        for d in devs.iter().flatten() {
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            fs::write(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", d.major(), d.minor()),
            )?;
        }
    }
    Ok(())
}

/// io.stat lines ("254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0") as blkio entries.
pub fn parse_io_stat(s: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in s.lines() {
        let mut it = l.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (bytes, ios)
}

pub(super) fn stats(dir: &Path, st: &mut Stats) -> Result<(), Error> {
    if let Some(s) = fs::read_opt(dir, "io.stat")? {
        let (b, i) = parse_io_stat(&s);
        st.blkio.io_service_bytes_recursive = b;
        st.blkio.io_serviced_recursive = i;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(blkio_to_io_weight(500), 1 + 490 * 9999 / 990);
    }

    #[test]
    fn io_stat_parse() {
        let (b, i) = parse_io_stat("254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(b.len(), 3);
        assert_eq!(b[1].value, 8192);
        assert_eq!(i[0].op, "Read");
    }
}
