//! `carve-oci`: a runc-compatible OCI runtime over the carve-container library.

fn main() {
    eprintln!("carve-oci: being built");
    std::process::exit(1);
}
