//! carve: OCI runtime library behind carve-oci
