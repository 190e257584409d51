//! Fuzzes carve-oci's config.json entry points: `config::parse_json` (serde with the JSON path of
//! any error) into the runtime-spec `Spec`, then `config::validate` against a bundle whose rootfs
//! exists, and the same for a `process.json` (`exec --process`) through `validate_process`.
//! Any panic, abort or hang is a bug: bad input must come back as a `ConfigError`.
#![no_main]

use carve_container::config;
use carve_container::oci_spec::runtime::{Process, Spec};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A bundle directory with an empty `rootfs/`, made once per fuzzing process.
fn bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("carve-fuzz-bundle-{}", std::process::id()));
        std::fs::create_dir_all(b.join("rootfs")).expect("create fuzz bundle");
        b
    })
}

fuzz_target!(|data: &[u8]| {
    let b = bundle();
    let file = b.join("config.json");
    if let Ok(spec) = config::parse_json::<Spec>(&file, data) {
        if let Err(e) = config::validate(&file, b, &spec) {
            // Errors must render (their Display is what the user reads).
            let _ = e.to_string();
        }
        let _ = config::rootfs_of(b, &spec);
    }
    let pfile = Path::new("process.json");
    if let Ok(p) = config::parse_json::<Process>(pfile, data) {
        let _ = config::validate_process(pfile, "process", &p);
    }
});
