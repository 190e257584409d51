//! OCI `LinuxResources` as systemd unit properties, the mapping runc uses
//! (opencontainers/cgroups systemd/v1.go, v2.go, devices/systemd.go): what systemd knows as a
//! property goes to the unit, and everything (again) to the delegated cgroup files afterwards.

use super::dbus::Value;
use crate::v2::{cpu::shares_to_weight, io::blkio_to_io_weight, memory::swap_to_v2};
use crate::Error;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};

/// One unit property: name and D-Bus value.
pub type Prop = (&'static str, Value);

/// systemd's "infinity" (USEC_INFINITY / CGROUP_LIMIT_MAX).
const INFINITY: u64 = u64::MAX;
/// The kernel's default CFS period, used when only a quota is given.
const DEFAULT_PERIOD: u64 = 100_000;

/// A cpu list ("0-3,8") as systemd's AllowedCPUs/AllowedMemoryNodes byte mask: bit N of byte
/// N/8, little endian, as runc's RangeToBits.
pub fn range_to_bits(list: &str, field: &'static str) -> Result<Vec<u8>, Error> {
    let bad = || Error::Invalid {
        field,
        value: list.to_string(),
        expected: "a cpu/node list like 0-3,8",
    };
    let mut bits: Vec<u8> = Vec::new();
    for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b || b > 65_535 {
            return Err(bad());
        }
        for i in a..=b {
            if bits.len() <= i / 8 {
                bits.resize(i / 8 + 1, 0);
            }
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    if bits.is_empty() {
        return Err(bad());
    }
    Ok(bits)
}

/// CPUQuotaPerSecUSec (and CPUQuotaPeriodUSec) from an OCI quota/period. systemd keeps the quota
/// as a whole percentage, so it is rounded up to 10 ms per second (runc's addCpuQuota); the
/// returned quota is what the cgroup file must get to agree with the unit.
pub fn cpu_quota(quota: Option<i64>, period: Option<u64>, props: &mut Vec<Prop>) -> Option<i64> {
    let q = quota.unwrap_or(0);
    let p = period.unwrap_or(0);
    if p != 0 {
        props.push(("CPUQuotaPeriodUSec", Value::from(p)));
    }
    if q == 0 && p == 0 {
        return None;
    }
    if q <= 0 {
        props.push(("CPUQuotaPerSecUSec", Value::from(INFINITY)));
        return None;
    }
    let p = if p == 0 { DEFAULT_PERIOD } else { p };
    let mut per_sec = (q as u64).saturating_mul(1_000_000) / p;
    let mut q = q;
    if per_sec % 10_000 != 0 {
        per_sec = (per_sec / 10_000 + 1) * 10_000;
        q = (per_sec * p / 1_000_000) as i64;
    }
    props.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
    Some(q)
}

fn tasks_max(limit: i64) -> u64 {
    match limit {
        l if l < 0 => INFINITY,
        // systemd refuses TasksMax=0.
        0 => 1,
        l => l as u64,
    }
}

fn bytes(v: i64) -> u64 {
    if v < 0 {
        INFINITY
    } else {
        v as u64
    }
}

/// DevicePolicy=strict plus a DeviceAllow entry per allow rule (runc's mapping: `char-*` for a
/// wildcard major, `char-MAJOR` for a wildcard minor, `/dev/char/MAJ:MIN` otherwise). A rule list
/// that allows everything by default becomes `char-*`/`block-*` rwm. systemd cannot express deny
/// rules after allows; they are left to carve's own device program on the cgroup, which runs
/// beside systemd's (both must allow), so systemd's list is only ever wider, never narrower.
pub fn devices(rules: &[LinuxDeviceCgroup]) -> Vec<Prop> {
    let mut allow_all = true;
    let mut entries: Vec<(String, String)> = Vec::new();
    for r in rules {
        let ty = r.typ().unwrap_or(LinuxDeviceType::A);
        let access = r.access().clone().unwrap_or_else(|| "rwm".into());
        let all = ty == LinuxDeviceType::A && r.major().is_none() && r.minor().is_none();
        if all {
            allow_all = r.allow();
            entries.clear();
            continue;
        }
        if !r.allow() || allow_all {
            continue;
        }
        let kinds: &[&str] = match ty {
            LinuxDeviceType::C | LinuxDeviceType::U => &["char"],
            LinuxDeviceType::B => &["block"],
            LinuxDeviceType::A => &["char", "block"],
            LinuxDeviceType::P => continue,
        };
        for k in kinds {
            let path = match (r.major(), r.minor()) {
                (None, _) | (Some(-1), _) => format!("{k}-*"),
                (Some(maj), None) | (Some(maj), Some(-1)) => format!("{k}-{maj}"),
                (Some(maj), Some(min)) => format!("/dev/{k}/{maj}:{min}"),
            };
            entries.push((path, access.clone()));
        }
    }
    if allow_all {
        entries = vec![
            ("char-*".into(), "rwm".into()),
            ("block-*".into(), "rwm".into()),
        ];
    }
    vec![
        ("DevicePolicy", Value::from("strict")),
        ("DeviceAllow", Value::from(entries)),
    ]
}

/// The unit properties for `res`. `v2`: the unified hierarchy's names (MemoryMax, CPUWeight,
/// IOWeight ...), else the legacy ones (MemoryLimit, CPUShares, BlockIOWeight). `version` is
/// systemd's, for the properties older ones lack (CPUQuotaPeriodUSec 242, AllowedCPUs 244).
pub fn properties(res: &LinuxResources, v2: bool, version: u32) -> Result<Vec<Prop>, Error> {
    let mut p: Vec<Prop> = Vec::new();
    if let Some(d) = res.devices() {
        p.extend(devices(d));
    }
    if let Some(m) = res.memory() {
        memory(m, v2, &mut p)?;
    }
    if let Some(c) = res.cpu() {
        cpu(c, v2, version, &mut p)?;
    }
    if let Some(pids) = res.pids() {
        p.push(("TasksMax", Value::from(tasks_max(pids.limit()))));
    }
    if let Some(b) = res.block_io() {
        block_io(b, v2, &mut p);
    }
    if v2 {
        if let Some(u) = res.unified() {
            unified(u, &mut p)?;
        }
    }
    Ok(p)
}

fn memory(m: &LinuxMemory, v2: bool, p: &mut Vec<Prop>) -> Result<(), Error> {
    if let Some(l) = m.limit().filter(|l| *l != 0) {
        p.push((
            if v2 { "MemoryMax" } else { "MemoryLimit" },
            Value::from(bytes(l)),
        ));
    }
    if v2 {
        if let Some(r) = m.reservation().filter(|r| *r != 0) {
            p.push(("MemoryLow", Value::from(bytes(r))));
        }
        if let Some(s) = m.swap() {
            let s = swap_to_v2(s, m.limit())?;
            if s != 0 {
                p.push(("MemorySwapMax", Value::from(bytes(s))));
            }
        }
    }
    Ok(())
}

fn cpu(c: &LinuxCpu, v2: bool, version: u32, p: &mut Vec<Prop>) -> Result<(), Error> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        if v2 {
            p.push(("CPUWeight", Value::from(shares_to_weight(s))));
        } else {
            p.push(("CPUShares", Value::from(s)));
        }
    }
    let mut quota = Vec::new();
    cpu_quota(c.quota(), c.period(), &mut quota);
    if version < 242 {
        quota.retain(|(n, _)| *n != "CPUQuotaPeriodUSec");
    }
    p.extend(quota);
    if version >= 244 {
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            let bits = range_to_bits(cpus, "linux.resources.cpu.cpus")?;
            p.push(("AllowedCPUs", Value::from(bits)));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            let bits = range_to_bits(mems, "linux.resources.cpu.mems")?;
            p.push(("AllowedMemoryNodes", Value::from(bits)));
        }
    }
    Ok(())
}

fn block_io(b: &LinuxBlockIo, v2: bool, p: &mut Vec<Prop>) {
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if v2 {
            p.push(("IOWeight", Value::from(blkio_to_io_weight(w))));
        } else {
            p.push(("BlockIOWeight", Value::from(w as u64)));
        }
    }
    if !v2 {
        return;
    }
    let lists = [
        ("IOReadBandwidthMax", b.throttle_read_bps_device()),
        ("IOWriteBandwidthMax", b.throttle_write_bps_device()),
        ("IOReadIOPSMax", b.throttle_read_iops_device()),
        ("IOWriteIOPSMax", b.throttle_write_iops_device()),
    ];
    for (name, list) in lists {
        let Some(list) = list else { continue };
        let v: Vec<(String, u64)> = list
            .iter()
            .map(|t| (format!("/dev/block/{}:{}", t.major(), t.minor()), t.rate()))
            .collect();
        if !v.is_empty() {
            p.push((name, Value::from(v)));
        }
    }
}

/// runc's unifiedResToSystemdProps: cgroup2 file names systemd has a property for.
fn unified(u: &std::collections::HashMap<String, String>, p: &mut Vec<Prop>) -> Result<(), Error> {
    let num = |k: &str, v: &str| -> Result<u64, Error> {
        if v == "max" {
            return Ok(INFINITY);
        }
        v.parse().map_err(|_| Error::Invalid {
            field: "linux.resources.unified",
            value: format!("{k}={v}"),
            expected: "a number or max",
        })
    };
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    for k in keys {
        let v = u[k].trim();
        let name = match k.as_str() {
            "memory.high" => "MemoryHigh",
            "memory.low" => "MemoryLow",
            "memory.min" => "MemoryMin",
            "memory.max" => "MemoryMax",
            "memory.swap.max" => "MemorySwapMax",
            "pids.max" => {
                p.push(("TasksMax", Value::from(num(k, v)?.max(1))));
                continue;
            }
            "cpu.weight" => "CPUWeight",
            "cpu.max" => {
                let mut f = v.split_whitespace();
                let q = f
                    .next()
                    .filter(|q| *q != "max")
                    .map(|q| num(k, q))
                    .transpose()?;
                let per = f.next().map(|x| num(k, x)).transpose()?;
                cpu_quota(
                    q.map(|q| q as i64).or(Some(0)),
                    per.or(Some(DEFAULT_PERIOD)),
                    p,
                );
                continue;
            }
            _ => continue,
        };
        p.push((name, Value::from(num(k, v)?)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(j: &str) -> LinuxResources {
        serde_json::from_str(j).unwrap()
    }

    fn names(p: &[Prop]) -> Vec<&str> {
        p.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn cpu_lists_become_byte_masks() {
        assert_eq!(range_to_bits("0", "f").unwrap(), vec![1]);
        assert_eq!(range_to_bits("0-3,8", "f").unwrap(), vec![0x0f, 0x01]);
        assert_eq!(range_to_bits("1,9-10", "f").unwrap(), vec![0x02, 0x06]);
        assert!(range_to_bits("3-1", "f").is_err());
        assert!(range_to_bits("", "f").is_err());
    }

    #[test]
    fn quota_rounds_up_to_whole_percent_as_runc() {
        let mut p = Vec::new();
        assert_eq!(cpu_quota(Some(50_000), Some(100_000), &mut p), Some(50_000));
        assert_eq!(names(&p), ["CPUQuotaPeriodUSec", "CPUQuotaPerSecUSec"]);
        assert_eq!(p[1].1, Value::from(500_000u64));
        let mut p = Vec::new();
        // 12345 us per 100 ms = 123450 us/s, rounded up to 130000: the file gets 13000.
        assert_eq!(cpu_quota(Some(12_345), None, &mut p), Some(13_000));
        assert_eq!(p[0].1, Value::from(130_000u64));
        let mut p = Vec::new();
        assert_eq!(cpu_quota(Some(-1), None, &mut p), None);
        assert_eq!(p[0].1, Value::from(u64::MAX));
    }

    #[test]
    fn v2_properties_as_runc() {
        let r = res(
            r#"{"memory":{"limit":67108864,"reservation":33554432,"swap":134217728},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0-1","mems":"0"},
            "pids":{"limit":32},"blockIO":{"weight":500},
            "unified":{"memory.high":"50331648","io.max":"x"}}"#,
        );
        let p = properties(&r, true, 252).unwrap();
        assert_eq!(
            names(&p),
            [
                "MemoryMax",
                "MemoryLow",
                "MemorySwapMax",
                "CPUWeight",
                "CPUQuotaPeriodUSec",
                "CPUQuotaPerSecUSec",
                "AllowedCPUs",
                "AllowedMemoryNodes",
                "TasksMax",
                "IOWeight",
                "MemoryHigh"
            ]
        );
        assert_eq!(p[2].1, Value::from(67108864u64), "swap minus memory");
        assert_eq!(p[3].1, Value::from(shares_to_weight(512)));
        assert_eq!(p[8].1, Value::from(32u64));
        let old = properties(&r, true, 241).unwrap();
        assert!(!names(&old).contains(&"AllowedCPUs"));
        assert!(!names(&old).contains(&"CPUQuotaPeriodUSec"));
    }

    #[test]
    fn v1_properties_use_legacy_names() {
        let r = res(
            r#"{"memory":{"limit":1000},"cpu":{"shares":512},"blockIO":{"weight":300},
            "pids":{"limit":0}}"#,
        );
        let p = properties(&r, false, 252).unwrap();
        assert_eq!(
            names(&p),
            ["MemoryLimit", "CPUShares", "TasksMax", "BlockIOWeight"]
        );
        assert_eq!(
            p[2].1,
            Value::from(1u64),
            "TasksMax 0 is refused by systemd"
        );
    }

    #[test]
    fn device_rules_become_device_allow() {
        let r = res(r#"{"devices":[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
            {"allow":true,"type":"c","major":136,"access":"rw"},
            {"allow":true,"type":"b","access":"m"},
            {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]}"#);
        let p = properties(&r, true, 252).unwrap();
        assert_eq!(p[0], ("DevicePolicy", Value::from("strict")));
        let want: Vec<(String, String)> = vec![
            ("/dev/char/1:3".into(), "rwm".into()),
            ("char-136".into(), "rw".into()),
            ("block-*".into(), "m".into()),
        ];
        assert_eq!(p[1].1, Value::from(want));
        let open = devices(&[]);
        let all: Vec<(String, String)> = vec![
            ("char-*".into(), "rwm".into()),
            ("block-*".into(), "rwm".into()),
        ];
        assert_eq!(open[1].1, Value::from(all));
    }
}
