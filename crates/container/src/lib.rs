//! carve-container: the OCI runtime library behind `carve-oci`.
//!
//! # Tour
//! - [`Runtime`] holds the state root and offers the runc operations: [`Runtime::create`],
//!   [`Runtime::start`], [`Runtime::state`], [`Runtime::kill`], [`Runtime::delete`],
//!   [`Runtime::exec`], pause/resume/update/ps/stats (through `carve_cgroups::Manager`).
//! - [`config`] parses `config.json` naming the JSON path of any error, and validates it before
//!   anything touches the host ([`checks`] holds the spec's rules on the document's shape).
//! - [`state`] keeps one flock-protected directory per container under `--root`.
//! - [`channel`] is the typed handshake ([`channel::Msg`]) between the runtime and the processes it
//!   forks; [`init`] is what runs in the container before the user program's exec; [`rootfs`]
//!   builds the mount tree (openat2 RESOLVE_IN_ROOT for every path in the rootfs); [`process`]
//!   applies the process attributes ([`realtime`] checks a real-time policy against the cgroup);
//!   [`seccomp`] compiles OCI profiles to BPF (x86_64, i386 and x32); [`idmap`] makes idmapped
//!   bind mounts; [`hooks`] runs OCI hooks with timeouts; [`mempolicy`] sets `linux.memoryPolicy`;
//!   [`seal`] re-executes the runtime from a sealed memfd
//!   (CVE-2019-5736 class).
//!
//! Process model (docs/oci.md has the whole story): `create` forks init with `clone3`
//! (`CLONE_PIDFD` plus the new namespaces); init waits for `Go` (maps written, cgroups joined),
//! builds the rootfs, pivots, applies the process attributes and then waits on `init.sock` in the
//! state directory. `start` connects and sends `Start`; init execs, and `start` reads EOF on the
//! CLOEXEC socket the moment the exec succeeded. `delete --force` SIGKILLs through a pidfd and
//! waits for the pidfd to turn readable: no sleeps, no polling.
//!
//! ```no_run
//! use carve_container::{CreateOptions, Runtime};
//! let rt = Runtime::new("/run/carve-oci");
//! rt.create(&CreateOptions { id: "demo".into(), bundle: "/tmp/bundle".into(), ..Default::default() })
//!     .unwrap();
//! rt.start("demo").unwrap();
//! rt.delete("demo", true).unwrap();
//! ```

pub mod channel;
pub mod checks;
pub mod config;
pub mod container;
pub mod copyup;
pub mod fault;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod mempolicy;
pub mod process;
pub mod pty;
pub mod realtime;
pub mod rootfs;
pub mod sdcgroup;
pub mod seal;
pub mod seccomp;
pub mod state;
pub mod step;
pub mod sys;

pub use container::{
    check_preserved_fds, CreateOptions, Created, Error, ExecOptions, Runtime, Spawned,
};
pub use oci_spec;
pub use state::Status;
