#!/usr/bin/env bash
# Guest assets for the VM tier (and the pure-v2 cgroup guest tests): Debian's cloud kernel, a busybox
# initramfs with the kernel's virtio modules, a qcow2 disk — into cache/guest (git-ignored).
# Idempotent: `carve image guest` keeps assets whose recipe is current.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --quiet -p carve -- image guest "${CARVE_GUEST_DIR:-cache/guest}"
