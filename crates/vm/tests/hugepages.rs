//! Guest memory from a hugetlbfs mount (2 MiB pages, preallocated). Reserves huge pages and
//! mounts hugetlbfs for its duration: a host-tuning test, run alone.

mod common;

use carve_testkit::{unique_name, HostLock};
use carve_vm::assets::READY_MARKER;
use carve_vm::vm::{Boot, Vm};
use common::*;
use std::ffi::CString;
use std::path::PathBuf;

const NR: &str = "/proc/sys/vm/nr_hugepages";
const FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

fn read_u64(p: &str) -> u64 {
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

/// Reserved pages and a hugetlbfs mount, both undone on drop.
struct Huge {
    old_nr: u64,
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Huge {
    fn new(pages: u64) -> Self {
        let old_nr = read_u64(NR);
        std::fs::write(NR, (old_nr + pages).to_string()).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("carve-t-huge")
            .tempdir()
            .unwrap();
        let mnt = dir.path().to_path_buf();
        let c = |s: &str| CString::new(s).unwrap();
        let target = c(mnt.to_str().unwrap());
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let r = unsafe {
            libc::mount(
                c("carve-t-huge").as_ptr(),
                target.as_ptr(),
                c("hugetlbfs").as_ptr(),
                0,
                c("pagesize=2M").as_ptr().cast(),
            )
        };
        let h = Huge {
            old_nr,
            mnt,
            _dir: dir,
        };
        assert_eq!(r, 0, "mount hugetlbfs: {}", std::io::Error::last_os_error());
        h
    }
}

impl Drop for Huge {
    fn drop(&mut self) {
        let t = CString::new(self.mnt.to_str().unwrap()).unwrap();
        // SAFETY: a valid path string; detaching our own mount.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::write(NR, self.old_nr.to_string());
    }
}

#[test]
fn host_tuning_guest_memory_comes_from_huge_pages() {
    // The context holds this exclusive lock for the test's life (no shared hold on top: a
    // second flock would wait for the first).
    let t = context_locked(HostLock::exclusive());
    let huge = Huge::new(130);
    let free_before = read_u64(FREE);
    assert!(
        free_before >= 128,
        "only {free_before} huge pages could be reserved"
    );

    let name = unique_name("vm-huge");
    let mut s = spec(&name, "quiet");
    s.hugepages = true;
    let mut vm = Vm::launch(&t.ctx, s, Boot::Fresh).unwrap();
    // The backend is a file on a hugetlbfs mount (ours is the only one here, or the first).
    let argv = vm.runtime().argv.join(" ");
    assert!(argv.contains("memory-backend-file"), "{argv}");
    assert!(argv.contains("prealloc=on"));
    vm.wait_for_console(READY_MARKER, 0, BOOT).unwrap();
    let used = free_before - read_u64(FREE);
    assert!(used >= 128, "the guest took {used} huge pages, not 128");
    vm.kill();
    drop(vm);
    assert_eq!(read_u64(FREE), free_before);
    drop(huge);
}
