//! Every cgroup resource through real carve-oci containers on a v1/hybrid host (v1 controllers
//! under /sys/fs/cgroup/<ctrl>, cgroup2 at /sys/fs/cgroup/unified holding hugetlb): set from
//! config.json's `linux.resources`, read back where the kernel shows it, and enforced (cpuset
//! affinity, blkio throttle, device EPERM, hugetlb fault refusal, OOM kill, fork refusal, realtime
//! scheduling, freezing). Membership on every mounted hierarchy, and delete leaving no directory on
//! any. On a pure-v2 host (the QEMU guest, which has its own checks) these tests say so and return.
//!
//! Host state: the blkio and devices tests attach a loop device over a file in their temp dir
//! (detached on drop); `hugetlb_…_host_tuning` raises nr_hugepages (restored on drop, also on
//! panic) holding the host lock exclusively, so it runs in the serial host_tuning pass.

mod common;
#[path = "common/probe.rs"]
mod probe;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Root, and a v1/hybrid host (the pure-v2 guest runs its own cgroup tests).
fn hybrid() -> bool {
    if !require_hybrid("these tests are for") {
        return false;
    }
    assert!(
        Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
        "neither pure v2 nor v1 memory: unexpected cgroup layout"
    );
    true
}

/// The container's directory on the v1 hierarchy `h` ("cpuset", "blkio"…) or "unified".
fn cg(e: &Env, h: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup").join(h).join(&e.id)
}

/// Waits for the file `rel` in the rootfs and returns its contents.
fn wait_file(e: &Env, rel: &str) -> String {
    let p = e.rootfs().join(rel);
    wait_for(rel, || p.exists());
    // written with `>` then renamed by the scripts below: complete once it exists
    read(p)
}

/// Deletes with --force and asserts no directory of the container is left on any hierarchy.
fn delete_and_check(e: &Env) {
    e.ok(&["delete", "--force", &e.id]);
    e.assert_gone();
    for d in e.cgroup_dirs_everywhere() {
        assert!(!d.exists(), "cgroup left behind: {}", d.display());
    }
}

/// A scratch loop device over a 4 MiB file in the test's temp dir, detached on drop. (This
/// host refuses every open of its disk, vda, even to root outside any container: a loop device
/// is the block device the blkio and devices tests can read, and harm nothing by writing.)
struct Loop {
    dev: String,
    major: i64,
    minor: i64,
}

impl Loop {
    fn new(dir: &Path, head: &[u8]) -> Loop {
        let f = dir.join("loop.img");
        let mut img = vec![0u8; 4 << 20];
        img[..head.len()].copy_from_slice(head);
        std::fs::write(&f, img).unwrap();
        let o = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&f)
            .output()
            .expect("losetup (util-linux)");
        assert!(o.status.success(), "losetup: {o:?}");
        let dev = String::from_utf8(o.stdout).unwrap().trim().to_string();
        let name = dev.trim_start_matches("/dev/");
        // the guard first: detached even if what follows panics
        let mut l = Loop {
            dev: dev.clone(),
            major: 0,
            minor: 0,
        };
        let mm = read(format!("/sys/block/{name}/dev"));
        let (a, b) = mm.split_once(':').unwrap();
        (l.major, l.minor) = (a.parse().unwrap(), b.parse().unwrap());
        l
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.dev])
            .status();
    }
}

#[test]
fn membership_on_every_mounted_hierarchy_and_delete_removes_every_cgroup() {
    if !hybrid() {
        return;
    }
    let e = Env::new("cgh-memb", &["sleep", "1000"]);
    let hs = cgroup_hierarchies();
    // this host: 9 v1 hierarchies (8 controllers + name=systemd) and cgroup2 at unified
    assert!(
        hs.iter().any(|(_, c)| c == "name=systemd")
            || !Path::new("/sys/fs/cgroup/systemd").exists()
    );
    assert!(hs
        .iter()
        .any(|(p, c)| c.is_empty() && p.ends_with("unified")));
    assert!(hs.iter().any(|(_, c)| c.split(',').any(|c| c == "cpuset")));
    assert!(hs.len() >= 6, "{hs:?}");
    let _g = e.create();
    let init = e.init_pid();
    // created: init already sits everywhere
    for (mp, ctl) in &hs {
        let procs = read(mp.join(&e.id).join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == init.to_string()),
            "{ctl} ({}): init {init} not in {procs:?}",
            mp.display()
        );
    }
    e.ok(&["start", &e.id]);
    // /proc/PID/cgroup agrees: one line per hierarchy, each at /ID
    let own = read(format!("/proc/{init}/cgroup"));
    assert_eq!(own.lines().count(), hs.len(), "{own}");
    for l in own.lines() {
        assert!(l.ends_with(&format!(":/{}", e.id)), "{l}");
    }
    // an exec'd process joins every hierarchy too
    let epid = e.exec_detached(&[], "exec");
    for (mp, ctl) in &hs {
        let procs = read(mp.join(&e.id).join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == init.to_string()) && procs.lines().any(|l| l == epid),
            "{ctl}: {procs:?} lacks {init} or {epid}"
        );
    }
    // inside, the cgroup namespace shows each hierarchy at its root
    let inside = e.ok(&["exec", &e.id, "cat", "/proc/self/cgroup"]);
    assert_eq!(inside.lines().count(), hs.len(), "{inside}");
    assert!(inside.lines().all(|l| l.ends_with(":/")), "{inside}");
    delete_and_check(&e);
}

#[test]
fn cpuset_cpus_and_mems_are_set_and_confine_the_container() {
    if !hybrid() {
        return;
    }
    // the last allowed cpu and the first memory node of the root cpuset
    let cpus = read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus");
    let cpu: u32 = cpus
        .split(',')
        .next_back()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mem: u32 = read("/sys/fs/cgroup/cpuset/cpuset.effective_mems")
        .split([',', '-'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut e = Env::new("cgh-cpuset", &["sleep", "1000"]);
    e.config["linux"]["resources"]["cpu"] =
        json!({"cpus": cpu.to_string(), "mems": mem.to_string()});
    e.write_config();
    let _g = e.create_started();
    let d = cg(&e, "cpuset");
    assert_eq!(read(d.join("cpuset.cpus")), cpu.to_string());
    assert_eq!(read(d.join("cpuset.mems")), mem.to_string());
    assert_eq!(read(d.join("cpuset.effective_cpus")), cpu.to_string());
    // the kernel confines the processes: init, and what runs inside
    let init = e.init_pid();
    let st = read(format!("/proc/{init}/status"));
    assert!(
        st.lines()
            .any(|l| l == format!("Cpus_allowed_list:\t{cpu}")),
        "{st}"
    );
    let out = e.ok(&["exec", &e.id, "grep", "_allowed_list", "/proc/self/status"]);
    assert!(
        out.contains(&format!("Cpus_allowed_list:\t{cpu}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Mems_allowed_list:\t{mem}\n")),
        "{out}"
    );
    let out = e.ok(&["exec", &e.id, "taskset", "-p", "1"]);
    let mask = format!("{:x}", 1u64 << cpu);
    assert!(out.trim().ends_with(&format!(": {mask}")), "{out}");
    // a wider affinity cannot be taken from inside: the cpuset wins
    let o = e.oci(&[
        "exec",
        &e.id,
        "sh",
        "-c",
        "taskset -p ffff $$ >/dev/null 2>&1; taskset -p $$",
    ]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .ends_with(&format!(": {mask}")),
        "{o:?}"
    );
    delete_and_check(&e);
}

#[test]
fn blkio_read_bps_throttle_is_read_back_and_enforced() {
    if !hybrid() {
        return;
    }
    let rate = 1u64 << 20;
    // the loop device bound in and allowed only "r" by the device cgroup
    let mut e = Env::new("cgh-blkio", &["sleep", "1000"]);
    let lo = Loop::new(e.dir.path(), b"");
    let (maj, min) = (lo.major, lo.minor);
    e.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/dev/blk0", "type": "bind", "source": lo.dev, "options": ["bind", "ro"]}));
    e.config["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "b", "major": maj, "minor": min, "access": "r"}));
    e.config["linux"]["resources"]["blockIO"] =
        json!({"throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": rate}]});
    e.write_config();
    let _g = e.create_started();
    let d = cg(&e, "blkio");
    assert_eq!(
        read(d.join("blkio.throttle.read_bps_device")),
        format!("{maj}:{min} {rate}")
    );
    assert_eq!(read(d.join("blkio.throttle.write_bps_device")), "");
    // 2 MiB of direct (uncached) reads at 1 MiB/s: about 2 s; unthrottled, milliseconds
    let t = Instant::now();
    let out = e.ok(&[
        "exec",
        &e.id,
        "sh",
        "-c",
        "dd if=/dev/blk0 of=/dev/null bs=256k count=8 iflag=direct 2>&1",
    ]);
    let took = t.elapsed();
    assert!(out.contains("8+0 records out"), "{out}");
    assert!(
        took >= Duration::from_millis(1500),
        "2 MiB read in {took:?}"
    );
    assert!(took < Duration::from_secs(15), "2 MiB read in {took:?}");
    let served = read(d.join("blkio.throttle.io_service_bytes"));
    let read_bytes: u64 = served
        .lines()
        .find(|l| l.starts_with(&format!("{maj}:{min} Read ")))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("{served}"))
        .parse()
        .unwrap();
    assert!(read_bytes >= 2 << 20, "{served}");
    let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
    let recs = ev["data"]["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .unwrap_or_else(|| panic!("{ev}"));
    assert!(
        recs.iter().any(|r| r["major"] == maj
            && r["minor"] == min
            && r["op"] == "Read"
            && r["value"].as_u64().unwrap() >= 2 << 20),
        "{recs:?}"
    );
    delete_and_check(&e);
}

#[test]
fn devices_rules_are_listed_a_denied_device_is_eperm_an_allowed_one_works() {
    if !hybrid() {
        return;
    }
    let mut e = Env::new("cgh-dev", &["sleep", "1000"]);
    let lo = Loop::new(e.dir.path(), b"carve-devices");
    let (maj, min) = (lo.major, lo.minor);
    // the loop device is allowed "r" only; /dev/loop-control (c 10:237) has no rule at all
    let mounts = e.config["mounts"].as_array_mut().unwrap();
    mounts.push(
        json!({"destination": "/dev/blk0", "type": "bind", "source": lo.dev, "options": ["bind"]}),
    );
    mounts.push(json!({"destination": "/dev/ctl0", "type": "bind", "source": "/dev/loop-control", "options": ["bind"]}));
    e.config["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "b", "major": maj, "minor": min, "access": "r"}));
    e.write_config();
    let _g = e.create_started();
    let list = read(cg(&e, "devices").join("devices.list"));
    let rules: Vec<&str> = list.lines().collect();
    assert!(
        rules.contains(&format!("b {maj}:{min} r").as_str()),
        "{list}"
    );
    for r in ["c 1:3 rwm", "c 1:5 rwm", "c 136:* rwm"] {
        assert!(rules.contains(&r), "{r} not in {list}");
    }
    assert!(!rules.iter().any(|r| r.starts_with("a ")), "{list}");
    assert!(!rules.iter().any(|r| r.starts_with("c 10:")), "{list}");
    // the host (root, no device cgroup) may open both
    std::fs::File::open("/dev/loop-control").unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&lo.dev)
        .unwrap();
    // allowed: reading the loop device shows the file's first bytes
    let out = e.ok(&["exec", &e.id, "head", "-c", "13", "/dev/blk0"]);
    assert_eq!(out, "carve-devices");
    // denied by the cgroup: writing it (only "r" allowed), opening loop-control (no rule)
    for cmd in [
        "echo x | dd of=/dev/blk0 conv=notrunc",
        "head -c 1 /dev/ctl0",
    ] {
        let o = e.oci(&["exec", &e.id, "sh", "-c", cmd]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{cmd}: {o:?}");
        assert!(err.contains("Operation not permitted"), "{cmd}: {err}");
    }
    assert_eq!(
        &std::fs::read(e.dir.path().join("loop.img")).unwrap()[..13],
        b"carve-devices"
    );
    // the default devices work
    let out = e.ok(&[
        "exec",
        &e.id,
        "sh",
        "-c",
        "echo x > /dev/null && head -c 3 /dev/zero | wc -c",
    ]);
    assert_eq!(out.trim(), "3");
    delete_and_check(&e);
}

#[test]
fn hugetlb_limit_and_unified_keys_go_to_cgroup2_on_hybrid() {
    if !hybrid() {
        return;
    }
    let mut e = Env::new("cgh-huge", &["sleep", "1000"]);
    e.config["linux"]["resources"]["hugepageLimits"] =
        json!([{"pageSize": "2MB", "limit": 2 << 20}]);
    e.config["linux"]["resources"]["unified"] =
        json!({"cgroup.max.descendants": "3", "hugetlb.2MB.rsvd.max": "4194304"});
    e.write_config();
    let _g = e.create_started();
    let u = cg(&e, "unified");
    assert_eq!(read(u.join("hugetlb.2MB.max")), (2u64 << 20).to_string());
    assert_eq!(read(u.join("hugetlb.2MB.rsvd.max")), "4194304");
    assert_eq!(read(u.join("cgroup.max.descendants")), "3");
    assert_eq!(read(u.join("hugetlb.2MB.current")), "0");
    // nothing of it on v1: no hugetlb hierarchy there, and the keys were not written elsewhere
    assert!(!Path::new("/sys/fs/cgroup/hugetlb").exists());
    // inside, the unified hierarchy shows the same limit
    let out = e.ok(&[
        "exec",
        &e.id,
        "cat",
        "/sys/fs/cgroup/unified/hugetlb.2MB.max",
    ]);
    assert_eq!(out.trim(), (2u64 << 20).to_string());
    // events --stats reads hugetlb from cgroup2 (usage 0 is left out, as runc's omitempty does)
    let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
    assert_eq!(ev["data"]["hugetlb"]["2MB"], json!({"failcnt": 0}), "{ev}");
    delete_and_check(&e);

    // a unified key for a controller cgroup2 does not hold here (memory is on v1) is refused,
    // naming the file, and leaves nothing behind
    let mut e = Env::new("cgh-huge", &["sleep", "1000"]);
    e.config["linux"]["resources"]["unified"] = json!({"memory.high": "1000000"});
    e.write_config();
    e.fails_with(
        &["create", "--bundle", e.bundle.to_str().unwrap(), &e.id],
        &["memory.high"],
    );
    e.assert_gone();
    for d in e.cgroup_dirs_everywhere() {
        assert!(!d.exists(), "cgroup left behind: {}", d.display());
    }
}

const NR_HUGEPAGES: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
const FREE_HUGEPAGES: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

/// Puts nr_hugepages back when dropped (also on panic).
struct RestoreHugepages(String);
impl Drop for RestoreHugepages {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, &self.0);
    }
}

#[test]
fn hugetlb_one_page_maps_the_second_is_refused_host_tuning() {
    if !hybrid() {
        return;
    }
    hold_host_exclusively();
    let old = read(NR_HUGEPAGES);
    let _restore = RestoreHugepages(old.clone());
    let total: u64 = old.parse().unwrap();
    let free: u64 = read(FREE_HUGEPAGES).parse().unwrap();
    std::fs::write(NR_HUGEPAGES, (total + 3 - free.min(3)).to_string()).unwrap();
    let free: u64 = read(FREE_HUGEPAGES).parse().unwrap();
    assert!(free >= 3, "could not reserve 3 huge pages ({free} free)");

    // The probe maps 2 MiB huge pages at fixed addresses and makes the kernel write into each
    // (getrandom into the page faults it in; a refused fault is EFAULT there, not SIGBUS).
    const A: u64 = 0x4000_0000;
    const B: u64 = 0x4020_0000;
    const C: u64 = 0x4040_0000;
    // PROT_READ|PROT_WRITE; MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS|MAP_HUGETLB
    let (prot, flags, nofd) = (3, 0x02 | 0x10 | 0x20 | 0x4_0000, u64::MAX);
    let mmap = |a| probe::sys(9, &[a, 2 << 20, prot, flags, nofd, 0]);
    let touch = |a| probe::sys(318, &[a, 8, 0]);
    let calls = [mmap(A), touch(A), mmap(B), touch(B), mmap(C), touch(C)];
    let run = |limit: Option<u64>| -> (Vec<i64>, String) {
        let mut e = Env::new(
            "cgh-hugetlb",
            &[
                "sh",
                "-c",
                "/probe > /tmp/r; mv /tmp/r /tmp/done; exec sleep 1000",
            ],
        );
        probe::install(&e.rootfs().join("probe"), &calls);
        if let Some(l) = limit {
            e.config["linux"]["resources"]["hugepageLimits"] =
                json!([{"pageSize": "2MB", "limit": l}]);
        }
        e.write_config();
        let _g = e.create_started();
        let p = e.rootfs().join("tmp/done");
        wait_for("the probe", || p.exists());
        let got = probe::results(&std::fs::read(&p).unwrap());
        let events = read(cg(&e, "unified").join("hugetlb.2MB.events"));
        // events --stats counts the refusals from cgroup2's hugetlb.2MB.events
        let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
        let failcnt = ev["data"]["hugetlb"]["2MB"]["failcnt"].as_u64().unwrap();
        assert_eq!(events, format!("max {failcnt}"), "{ev}");
        delete_and_check(&e);
        (got, events)
    };
    // Unlimited: three pages map and fault in (the pool has them).
    let (got, events) = run(None);
    assert_eq!(got, [A as i64, 8, B as i64, 8, C as i64, 8], "{events}");
    assert_eq!(events, "max 0");
    // Limited to one page: the first is faulted in, the second and third are refused.
    let (got, events) = run(Some(2 << 20));
    let efault = -(libc::EFAULT as i64);
    assert_eq!(
        got,
        [A as i64, 8, B as i64, efault, C as i64, efault],
        "{events}"
    );
    assert_eq!(events, "max 2");
    drop(_restore);
    assert_eq!(read(NR_HUGEPAGES), old);
}

#[test]
fn memory_limit_oom_kills_a_hog_and_counts_it() {
    if !hybrid() {
        return;
    }
    let limit = 32u64 << 20;
    let mut e = Env::new(
        "cgh-oom",
        &[
            "sh",
            "-c",
            // dd's 64 MiB buffer is touched as it reads into it; the shell stays (the kill picks dd)
            "dd if=/dev/zero of=/dev/null bs=64M count=2 2>/dev/null; echo $? > /tmp/r; mv /tmp/r /tmp/done; exec sleep 1000",
        ],
    );
    e.config["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    e.write_config();
    let _g = e.create();
    let m = cg(&e, "memory");
    assert_eq!(read(m.join("memory.limit_in_bytes")), limit.to_string());
    assert_eq!(
        read(m.join("memory.memsw.limit_in_bytes")),
        limit.to_string()
    );
    e.ok(&["start", &e.id]);
    assert_eq!(wait_file(&e, "tmp/done"), "137", "dd was not SIGKILLed");
    let oom = read(m.join("memory.oom_control"));
    assert!(oom.lines().any(|l| l == "oom_kill 1"), "{oom}");
    assert!(oom.lines().any(|l| l == "under_oom 0"), "{oom}");
    assert_eq!(read(m.join("memory.max_usage_in_bytes")), limit.to_string());
    let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
    let mem = &ev["data"]["memory"];
    assert_eq!(mem["usage"]["limit"], limit, "{mem}");
    assert_eq!(mem["usage"]["max"], limit, "{mem}");
    assert!(mem["usage"]["usage"].as_u64().unwrap() < limit, "{mem}");
    // the container lives on: the shell survived the kill of its child
    assert_eq!(e.status(), "running");
    delete_and_check(&e);
}

#[test]
fn pids_limit_stops_forks_beyond_it() {
    if !hybrid() {
        return;
    }
    let mut e = Env::new(
        "cgh-pids",
        &[
            "sh",
            "-c",
            // a subshell starting 12 sleeps under a limit of 8: the shell, the subshell and 6
            // sleeps fit; the 7th fork fails and the subshell gives up ("can't fork")
            "(for i in 1 2 3 4 5 6 7 8 9 10 11 12; do (exec sleep 1000) & done) 2>/tmp/err; \
             echo > /tmp/done; exec sleep 1000",
        ],
    );
    e.config["linux"]["resources"]["pids"] = json!({"limit": 8});
    e.write_config();
    let _g = e.create();
    let p = cg(&e, "pids");
    assert_eq!(read(p.join("pids.max")), "8");
    e.ok(&["start", &e.id]);
    wait_file(&e, "tmp/done");
    let err = read(e.rootfs().join("tmp/err"));
    assert!(err.contains("can't fork"), "{err}");
    wait_for("the subshell to exit", || {
        read(p.join("cgroup.procs")).lines().count() == 7
    });
    assert_eq!(read(p.join("pids.current")), "7");
    let events = read(p.join("pids.events"));
    let refused: u64 = events.strip_prefix("max ").unwrap().parse().unwrap();
    assert!(refused >= 1, "{events}");
    // an exec'd shell joins (moving a task in is not limited), but cannot fork past the limit
    let o = e.oci(&["exec", &e.id, "sh", "-c", "(true) && (true) && echo forked"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !out.contains("forked") && err.contains("can't fork"),
        "{o:?}"
    );
    let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
    assert_eq!(ev["data"]["pids"]["current"], 7, "{ev}");
    assert_eq!(ev["data"]["pids"]["limit"], 8, "{ev}");
    delete_and_check(&e);
}

#[test]
fn cpu_realtime_runtime_and_period_are_set_and_let_a_task_be_realtime() {
    if !hybrid() {
        return;
    }
    // sched_setscheduler(0, SCHED_FIFO, param): the probe's own ELF header holds a u32 1 at
    // offset 20 (e_version), a valid sched_param at 0x400014.
    let calls = [probe::sys(144, &[0, 1, 0x40_0014])];
    let run = |rt: bool| -> Vec<i64> {
        let mut e = Env::new(
            "cgh-rt",
            &[
                "sh",
                "-c",
                "/probe > /tmp/r; mv /tmp/r /tmp/done; exec sleep 1000",
            ],
        );
        probe::install(&e.rootfs().join("probe"), &calls);
        for set in ["bounding", "effective", "permitted"] {
            e.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_NICE"));
        }
        if rt {
            e.config["linux"]["resources"]["cpu"] =
                json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000});
        }
        e.write_config();
        let _g = e.create();
        let c = cg(&e, "cpu");
        let want = if rt { "10000" } else { "0" };
        assert_eq!(read(c.join("cpu.rt_runtime_us")), want);
        assert_eq!(read(c.join("cpu.rt_period_us")), "1000000");
        e.ok(&["start", &e.id]);
        let p = e.rootfs().join("tmp/done");
        wait_for("the probe", || p.exists());
        let got = probe::results(&std::fs::read(&p).unwrap());
        delete_and_check(&e);
        got
    };
    assert_eq!(run(true), [0], "with a realtime budget");
    assert_eq!(
        run(false),
        [-(libc::EPERM as i64)],
        "without a realtime budget"
    );
}

#[test]
fn freezer_pause_freezes_and_resume_thaws() {
    if !hybrid() {
        return;
    }
    let e = Env::new(
        "cgh-frz",
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/c; usleep 20000; done",
        ],
    );
    let _g = e.create_started();
    let f = cg(&e, "freezer").join("freezer.state");
    let c = e.rootfs().join("tmp/c");
    wait_for("the counter", || c.exists());
    assert_eq!(read(&f), "THAWED");
    e.ok(&["pause", &e.id]);
    assert_eq!(read(&f), "FROZEN");
    assert_eq!(e.status(), "paused");
    let n = std::fs::read_to_string(&c).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&c).unwrap(),
        n,
        "a frozen container counted"
    );
    e.ok(&["resume", &e.id]);
    assert_eq!(read(&f), "THAWED");
    assert_eq!(e.status(), "running");
    wait_for("the counter to move again", || {
        std::fs::read_to_string(&c).unwrap_or_default() != n
    });
    delete_and_check(&e);
}

#[test]
fn events_stats_are_plausible_on_hybrid() {
    if !hybrid() {
        return;
    }
    let mut e = Env::new(
        "cgh-stats",
        &[
            "sh",
            "-c",
            // some CPU and 16 MiB in a tmpfs file (page cache charged to the memory cgroup)
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; \
             dd if=/dev/zero of=/dev/shm/f bs=1M count=16 2>/dev/null; \
             echo > /tmp/r; mv /tmp/r /tmp/done; exec sleep 1000",
        ],
    );
    let cpu = read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus");
    e.config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    e.config["linux"]["resources"]["pids"] = json!({"limit": 20});
    e.config["linux"]["resources"]["cpu"] = json!({"shares": 512, "cpus": cpu});
    e.config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 0}]);
    e.write_config();
    let _g = e.create_started();
    wait_file(&e, "tmp/done");
    let ev: Value = serde_json::from_str(e.ok(&["events", "--stats", &e.id]).trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], json!(e.id));
    let d = &ev["data"];
    // cpu: the loop ran, per-cpu figures sum to the total, from cpuacct
    let total = d["cpu"]["usage"]["total"].as_u64().unwrap();
    assert!(total > 1_000_000, "{d}");
    let acct: u64 = read(cg(&e, "cpuacct").join("cpuacct.usage"))
        .parse()
        .unwrap();
    assert!(total <= acct, "{total} > {acct}");
    if let Some(per) = d["cpu"]["usage"]["percpu"].as_array() {
        let sum: u64 = per.iter().map(|v| v.as_u64().unwrap()).sum();
        assert!(
            sum.abs_diff(total) <= total / 100 + 1_000_000,
            "{per:?} vs {total}"
        );
    }
    // memory: the 16 MiB file is charged, under the limit
    let mem = &d["memory"];
    assert_eq!(mem["usage"]["limit"], 64u64 << 20, "{mem}");
    let usage = mem["usage"]["usage"].as_u64().unwrap();
    assert!((16 << 20..64 << 20).contains(&usage), "{mem}");
    let v1: u64 = read(cg(&e, "memory").join("memory.usage_in_bytes"))
        .parse()
        .unwrap();
    assert!(v1.abs_diff(usage) < 8 << 20, "{v1} vs {usage}");
    // pids: shell + sleep (exec'd in place: 1), under the limit
    assert_eq!(d["pids"]["limit"], 20, "{d}");
    let cur = d["pids"]["current"].as_u64().unwrap();
    assert!((1..=2).contains(&cur), "{d}");
    // hugetlb from cgroup2 (unified): nothing used (usage 0 left out, as runc's omitempty)
    assert_eq!(d["hugetlb"]["2MB"], json!({"failcnt": 0}), "{d}");
    // cpuset: the configured cpus
    let want: Vec<u64> = cpu
        .split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap()
        })
        .collect();
    assert_eq!(d["cpuset"]["cpus"], json!(want), "{d}");
    let possible = read("/sys/fs/cgroup/cpuacct/cpuacct.usage_percpu");
    assert_eq!(
        d["cpu"]["usage"]["percpu"].as_array().map(Vec::len),
        Some(possible.split_whitespace().count()),
        "{d}"
    );
    delete_and_check(&e);
}
