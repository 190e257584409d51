//! carve's VM tier: QEMU partitions driven over QMP, the way libvirt does it, in Rust.
//!
//! # Tour
//! - [`spec::VmSpec`] says what to run (vCPUs, cores, memory, kernel or disk, NIC, VFIO
//!   devices); [`spec::VmBuilder`] has checked setters and [`spec::VmSpec::validate`] rejects bad
//!   values before anything starts.
//! - [`cmdline::qemu_argv`] turns a spec into QEMU's command line (pure, unit-tested).
//! - [`vm::Vm::launch`] starts QEMU paused in its own cgroup, with a tap on a bridge, pins each
//!   vCPU thread ([`pin`]) and lets the guest run; every host change goes through the journal,
//!   so [`vm::stop`] or `carve restore` clean up even after carve was killed. [`vm::Vm::wait`]
//!   supervises and [`vm::Vm::wait_timeout`] waits with a deadline (QEMU's exit is detected and
//!   reported in `exit.json`; so is a guest that stopped for good while QEMU runs, [`halt`]).
//! - [`vm`] also has the operations by name: [`vm::status`], [`vm::pause`], [`vm::resume`],
//!   [`vm::snapshot`], [`vm::restore`], [`vm::migrate`], [`vm::stop`].
//! - [`supervisor`] is the detached-supervisor protocol: a front end that returns early starts
//!   a supervising process ([`supervisor::start`]), which launches and reports one ready line
//!   ([`supervisor::serve`]).
//! - [`qmp::Qmp`] is the typed QMP command set over one `execute`; [`qmp::QmpClient`] speaks it
//!   on a unix socket (events queued, fds passed with SCM_RIGHTS).
//! - [`assets::prepare_guest`] builds a guest from Debian packages: the cloud kernel, a busybox
//!   initramfs with its virtio modules and an init that prints [`assets::READY_MARKER`], and a
//!   qcow2 disk.
//! - [`console`] waits for text on the serial console log; [`vfio`] checks pass-through devices;
//!   [`host`] picks KVM or TCG (with a warning) from carve-core's host model.
//!
//! ```no_run
//! use carve_vm::{assets, spec::VmSpec, vm::{Boot, Context, Vm}};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let g = assets::prepare_guest("cache/guest".as_ref())?;
//! let spec = VmSpec::builder("demo")?
//!     .kernel(&g.kernel)?
//!     .initrd(&g.initrd)?
//!     .memory("256MiB")?
//!     .cpus("1".parse()?)
//!     .build(&"0-1".parse()?)?;
//! let mut vm = Vm::launch(&Context::default(), spec, Boot::Fresh)?;
//! vm.wait_for_console(assets::READY_MARKER, 0, std::time::Duration::from_secs(30))?;
//! vm.stop(false, std::time::Duration::from_secs(10));
//! # Ok(()) }
//! ```

pub mod assets;
pub mod cgroup;
pub mod cmdline;
pub mod console;
pub mod halt;
pub mod host;
pub mod pin;
pub mod qmp;
pub mod spec;
pub mod state;
pub mod supervisor;
pub mod vfio;
pub mod vm;

pub use cmdline::Accel;
pub use spec::VmSpec;
pub use vm::{Boot, Context, Vm, VmError};
