//! carve: helpers for applications on dedicated cores: SPSC ring, huge pages, UIO/VFIO
