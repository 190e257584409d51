//! carve: helpers for applications that run on dedicated cores.
//!
//! # Tour
//! - [`memory`]: [`memory::pin_current_thread`], [`memory::lock_all_memory`] (mlockall),
//!   [`memory::prefault`], and [`memory::HugeRegion`] (anonymous MAP_HUGETLB or a hugetlbfs file,
//!   with a plain error when no huge pages are reserved).
//! - [`ring`]: a lock-free single-producer/single-consumer ring of fixed-size packet slots in
//!   shared memory (memfd or a tmpfs/hugetlbfs file), cache-line padded, batch enqueue and
//!   dequeue, zero-copy in both directions, usable across processes. Its layout is documented
//!   in the module.
//! - [`uio`] and [`vfio`]: user-mode device access against the kernel's documented ABI (map the
//!   device's regions, wait for interrupts through read() or eventfds), reporting plainly when
//!   the kernel has no UIO or VFIO.
//! - [`pktcrypt`]: the example fast path (AES-128-GCM over 1 KiB packets from the ring, sealed
//!   in place) behind the `carve-pktcrypt` program and `carve bench fastpath`.
//!
//! ```
//! use carve_fastpath::ring::RingMap;
//! let (mut tx, mut rx) = RingMap::create_memfd("demo", 2048, 256).unwrap().split();
//! assert!(tx.push(b"packet"));
//! let mut buf = [0u8; 2048];
//! assert_eq!(rx.pop(&mut buf), Some(6));
//! ```

pub mod memory;
pub mod pktcrypt;
pub mod ring;
pub mod uio;
pub mod vfio;
