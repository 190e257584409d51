//! Pinning, memory locking, prefaulting and huge pages for a process on dedicated cores.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

/// Errors of pinning, locking and huge-page allocation.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// sched_setaffinity refused the CPU list.
    #[error("could not pin to CPUs {cpus:?}: {source}")]
    Pin {
        /// The CPUs asked for.
        cpus: Vec<usize>,
        /// The cause.
        source: std::io::Error,
    },
    /// sched_setscheduler refused SCHED_FIFO.
    #[error("could not set SCHED_FIFO priority {priority}: {source}")]
    Sched {
        /// The priority asked for.
        priority: i32,
        /// The cause.
        source: std::io::Error,
    },
    /// mlockall failed.
    #[error("could not lock memory (mlockall): {0} (is RLIMIT_MEMLOCK high enough?)")]
    Lock(#[source] std::io::Error),
    /// No free huge pages of the size asked for.
    #[error(
        "no free {size_kib} kB huge pages ({free} free, {needed} needed): reserve them first, \
         e.g. echo N > /sys/kernel/mm/hugepages/hugepages-{size_kib}kB/nr_hugepages \
         (carve run --hugepages does this)"
    )]
    NoHugePages {
        /// Huge page size in KiB.
        size_kib: u64,
        /// Pages free now.
        free: u64,
        /// Pages the allocation needs.
        needed: u64,
    },
    /// A huge page size this kernel does not offer.
    #[error("this kernel offers no {0} kB huge pages (/sys/kernel/mm/hugepages)")]
    NoSuchSize(u64),
    /// mmap or a file operation failed.
    #[error("could not {action} {what}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The region or file.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Pins the calling thread to `cpus` (sched_setaffinity of thread id 0 = this thread).
pub fn pin_current_thread(cpus: &[usize]) -> Result<(), MemoryError> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(MemoryError::Pin {
                cpus: cpus.to_vec(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        // SAFETY: c < CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } != 0 {
        return Err(MemoryError::Pin {
            cpus: cpus.to_vec(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Gives the calling thread SCHED_FIFO at `priority` (1-99): ordinary (CFS) tasks no longer
/// preempt it. Mind the kernel's RT throttling (kernel.sched_rt_runtime_us, 950 ms per second
/// by default): a spinning FIFO thread still loses the remaining 50 ms every second.
pub fn set_fifo_current_thread(priority: i32) -> Result<(), MemoryError> {
    let p = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: p is a valid sched_param; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
        return Err(MemoryError::Sched {
            priority,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The CPUs the calling thread may run on.
pub fn current_affinity() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid out-pointer of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// The CPU the calling thread runs on right now.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    (c >= 0).then_some(c as usize)
}

/// Locks all current and future pages in RAM (mlockall(MCL_CURRENT | MCL_FUTURE)), so the fast
/// path never takes a major fault.
pub fn lock_all_memory() -> Result<(), MemoryError> {
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(MemoryError::Lock(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Touches every page of `buf` (a read and a write of the same byte) so it is faulted in now,
/// not on the fast path.
pub fn prefault(buf: &mut [u8]) {
    let page = page_size();
    let mut i = 0;
    while i < buf.len() {
        // Volatile so the compiler keeps the touch.
        // SAFETY: i < buf.len(); the pointer is valid for reads and writes.
        unsafe {
            let p = buf.as_mut_ptr().add(i);
            std::ptr::write_volatile(p, std::ptr::read_volatile(p));
        }
        i += page;
    }
}

/// A read/write shared mapping of `len` bytes of `fd` from `offset` (`extra`: flags beside
/// `MAP_SHARED`, such as `MAP_POPULATE`); the kernel picks the address. The ring, the UIO and
/// VFIO devices and hugetlbfs files are all mapped this way.
pub(crate) fn map_shared(
    fd: BorrowedFd<'_>,
    len: usize,
    offset: u64,
    extra: libc::c_int,
) -> std::io::Result<*mut u8> {
    // SAFETY: a fresh mapping of an fd the caller holds open; the kernel picks the address, so
    // no existing memory is replaced.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | extra,
            fd.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// The base page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Free and total huge pages of one size (KiB), from a sysfs root (normally /sys).
pub fn huge_pages(sys_root: &Path, size_kib: u64) -> Result<(u64, u64), MemoryError> {
    let dir = sys_root.join(format!("kernel/mm/hugepages/hugepages-{size_kib}kB"));
    if !dir.is_dir() {
        return Err(MemoryError::NoSuchSize(size_kib));
    }
    let read = |f: &str| -> u64 {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((read("free_hugepages"), read("nr_hugepages")))
}

/// A region of huge pages, unmapped on drop.
#[derive(Debug)]
pub struct HugeRegion {
    ptr: *mut u8,
    len: usize,
    page_kib: u64,
}

// SAFETY: the region is plain memory owned by this value.
unsafe impl Send for HugeRegion {}
// SAFETY: shared access is only through &[u8].
unsafe impl Sync for HugeRegion {}

impl HugeRegion {
    /// Maps `len` bytes (rounded up to whole huge pages) of anonymous huge-page memory of
    /// `page_kib` KiB pages (2048 or 1048576), prefaulted (MAP_POPULATE). When none are free
    /// this says so plainly instead of failing later with SIGBUS.
    pub fn anonymous(len: usize, page_kib: u64) -> Result<Self, MemoryError> {
        let page = page_kib as usize * 1024;
        let len = len.max(1).div_ceil(page) * page;
        let needed = (len / page) as u64;
        let (free, _) = huge_pages(Path::new("/sys"), page_kib)?;
        if free < needed {
            return Err(MemoryError::NoHugePages {
                size_kib: page_kib,
                free,
                needed,
            });
        }
        let shift = page.trailing_zeros() as libc::c_int;
        // SAFETY: an anonymous private mapping; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | libc::MAP_HUGETLB
                    | libc::MAP_POPULATE
                    | (shift << libc::MAP_HUGE_SHIFT),
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOMEM) {
                // Someone took them between the check and the map.
                return Err(MemoryError::NoHugePages {
                    size_kib: page_kib,
                    free: huge_pages(Path::new("/sys"), page_kib)?.0,
                    needed,
                });
            }
            return Err(MemoryError::Io {
                action: "map",
                what: format!("{len} bytes of {page_kib} kB huge pages"),
                source: e,
            });
        }
        Ok(HugeRegion {
            ptr: p.cast(),
            len,
            page_kib,
        })
    }

    /// Maps a file on a hugetlbfs mount (created if missing, sized to `len` rounded up to the
    /// mount's page size), shared, prefaulted. Other processes can map the same file.
    pub fn from_hugetlbfs_file(path: &Path, len: usize) -> Result<Self, MemoryError> {
        let what = path.display().to_string();
        let io = |action| {
            let what = what.clone();
            move |source| MemoryError::Io {
                action,
                what,
                source,
            }
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        // SAFETY: statfs is plain data; zeroed is valid to be overwritten.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: f is open; st is a valid out-pointer.
        if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 {
            return Err(io("statfs")(std::io::Error::last_os_error()));
        }
        if st.f_type != libc::HUGETLBFS_MAGIC as _ {
            return Err(io("use (not on a hugetlbfs mount)")(
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let page = st.f_bsize as usize;
        let len = len.max(1).div_ceil(page) * page;
        if f.metadata().map_err(io("stat"))?.len() < len as u64 {
            f.set_len(len as u64).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOMEM) || e.raw_os_error() == Some(libc::ENOSPC)
                {
                    MemoryError::NoHugePages {
                        size_kib: (page / 1024) as u64,
                        free: huge_pages(Path::new("/sys"), (page / 1024) as u64)
                            .map(|x| x.0)
                            .unwrap_or(0),
                        needed: (len / page) as u64,
                    }
                } else {
                    io("size")(e)
                }
            })?;
        }
        // The file is at least len bytes (sized above).
        let p = map_shared(f.as_fd(), len, 0, libc::MAP_POPULATE).map_err(io("map"))?;
        Ok(HugeRegion {
            ptr: p,
            len,
            page_kib: (page / 1024) as u64,
        })
    }

    /// Length in bytes (whole huge pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a region has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Huge page size in KiB.
    pub fn page_kib(&self) -> u64 {
        self.page_kib
    }

    /// The memory.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len is our live mapping.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The memory, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr/len is our live mapping, borrowed mutably through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for HugeRegion {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made by the constructor, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_moves_the_thread_and_is_undone() {
        let before = current_affinity();
        assert!(!before.is_empty());
        let target = *before.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(&[target]).unwrap();
            assert_eq!(current_affinity(), vec![target]);
            assert_eq!(current_cpu(), Some(target));
        })
        .join()
        .unwrap();
        // Only that thread was pinned.
        assert_eq!(current_affinity(), before);
        assert!(matches!(
            pin_current_thread(&[100_000]),
            Err(MemoryError::Pin { .. })
        ));
    }

    #[test]
    fn fifo_is_per_thread() {
        std::thread::spawn(|| {
            set_fifo_current_thread(1).unwrap();
            // SAFETY: querying the calling thread's policy has no preconditions.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_FIFO);
            assert!(matches!(
                set_fifo_current_thread(1000),
                Err(MemoryError::Sched { priority: 1000, .. })
            ));
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    #[test]
    fn prefault_touches_without_changing() {
        let mut v = vec![5u8; 3 * page_size() + 7];
        prefault(&mut v);
        assert!(v.iter().all(|&b| b == 5));
    }

    #[test]
    fn huge_page_counts_come_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("kernel/mm/hugepages/hugepages-2048kB");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("free_hugepages"), "3\n").unwrap();
        std::fs::write(d.join("nr_hugepages"), "4\n").unwrap();
        assert_eq!(huge_pages(dir.path(), 2048).unwrap(), (3, 4));
        assert!(matches!(
            huge_pages(dir.path(), 1024),
            Err(MemoryError::NoSuchSize(1024))
        ));
    }

    #[test]
    fn no_free_huge_pages_message_says_how_to_reserve() {
        // The real refusal is tested under the host lock (tests/hugepages_host_tuning.rs): a
        // unit test must not take huge pages another test reserved.
        let msg = MemoryError::NoHugePages {
            size_kib: 2048,
            free: 0,
            needed: 1,
        }
        .to_string();
        assert!(
            msg.starts_with("no free 2048 kB huge pages (0 free, 1 needed)"),
            "{msg}"
        );
        assert!(msg.contains("hugepages-2048kB/nr_hugepages"), "{msg}");
        assert!(matches!(
            HugeRegion::anonymous(1, 3),
            Err(MemoryError::NoSuchSize(3))
        ));
    }
}
