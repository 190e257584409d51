//! carve: VM tier: QEMU over QMP
