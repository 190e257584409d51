//! carve: dedicated-core tier and OS-noise meter
