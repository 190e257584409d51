//! Huge pages for real: reserves two 2 MiB pages (restored afterwards), maps them anonymously
//! and through a hugetlbfs mount, and runs the ring on hugetlbfs. Holds the host lock.

use carve_fastpath::memory::{huge_pages, HugeRegion, MemoryError};
use carve_fastpath::ring::RingMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// Restores nr_hugepages on drop.
struct Reserve(String);
impl Drop for Reserve {
    fn drop(&mut self) {
        let _ = std::fs::write(NR, &self.0);
    }
}

/// Unmounts on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let c = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: c is a valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn mount_hugetlbfs(dir: &Path) -> Mount {
    let t = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let (src, fs, opts) = (c"carve-hugetlbfs", c"hugetlbfs", c"pagesize=2M");
    // SAFETY: all pointers are valid NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            t.as_ptr(),
            fs.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount hugetlbfs: {}", std::io::Error::last_os_error());
    Mount(dir.to_path_buf())
}

#[test]
fn huge_pages_host_tuning_anonymous_file_and_ring() {
    if !carve_testkit::require_root() {
        return;
    }
    let _lock = carve_testkit::HostLock::exclusive();
    let old = std::fs::read_to_string(NR).unwrap().trim().to_string();
    let _reserve = Reserve(old.clone());
    let (free0, total0) = huge_pages(Path::new("/sys"), 2048).unwrap();
    if free0 == 0 {
        // Nothing reserved (the default here): a plain refusal, not a SIGBUS later.
        match HugeRegion::anonymous(1, 2048) {
            Err(MemoryError::NoHugePages { free, needed, .. }) => {
                assert_eq!((free, needed), (0, 1))
            }
            other => panic!("{other:?}"),
        }
    }
    std::fs::write(NR, (total0 + 3 - free0.min(3)).to_string()).unwrap();
    let (free, _) = huge_pages(Path::new("/sys"), 2048).unwrap();
    assert!(free >= 3, "could not reserve 3 huge pages ({free} free)");

    // Anonymous: one page, usable, and more than is free is refused plainly.
    let mut r = HugeRegion::anonymous(100, 2048).unwrap();
    assert_eq!((r.len(), r.page_kib()), (2 << 20, 2048));
    r.as_mut_slice()[(1 << 20) + 5] = 9;
    assert_eq!(r.as_slice()[(1 << 20) + 5], 9);
    match HugeRegion::anonymous(1 << 40, 2048) {
        Err(MemoryError::NoHugePages { needed, .. }) => assert_eq!(needed, 1 << 19),
        other => panic!("{other:?}"),
    }
    drop(r);

    // A hugetlbfs file: the region, then a ring on the same mount.
    let dir = tempfile::Builder::new()
        .prefix("carve-t-huge")
        .tempdir()
        .unwrap();
    let _m = mount_hugetlbfs(dir.path());
    let mut f = HugeRegion::from_hugetlbfs_file(&dir.path().join("region"), 4096).unwrap();
    assert_eq!(f.len(), 2 << 20);
    f.as_mut_slice()[0] = 1;
    let path = dir.path().join("carve-ring");
    let ring = RingMap::create_file(&path, 2048, 512).unwrap();
    assert_eq!(ring.size_bytes(), 384 + 2048 * 512);
    let mut p = ring.into_producer();
    let mut c = RingMap::open_path(&path).unwrap().into_consumer();
    assert!(p.push(b"on huge pages"));
    let mut buf = [0u8; 64];
    assert_eq!(c.pop(&mut buf), Some(13));
    drop((p, c, f));
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(dir.path().join("region")).unwrap();
    // Not a hugetlbfs file: refused with a reason.
    let plain = tempfile::NamedTempFile::new().unwrap();
    assert!(HugeRegion::from_hugetlbfs_file(plain.path(), 10).is_err());
}
