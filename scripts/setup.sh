#!/usr/bin/env bash
# Installs every system package carve's demo, tests and benchmarks need, from Debian.
# Idempotent: a second run on a prepared machine only checks.
set -euo pipefail

PKGS=(
  qemu-system-x86      # VM tier: TCG/KVM guests
  qemu-utils           # qemu-img for guest disks
  busybox-static       # container rootfs and guest initramfs
  cpio                 # packing the guest initramfs
  runc                 # peer runtime for benchmarks and podman/containerd tests
  podman               # real OCI client (container tier part 2)
  containerd           # real OCI client (container tier part 2)
  hyperfine            # side-by-side timing in benchmarks
  debootstrap          # Debian userland for system containers
  rt-tests             # cyclictest, a peer for the noise meter
  iproute2             # leak checks list links and netns
  procps               # pgrep/ps in tests
  kmod                 # modinfo when present
  jq                   # scripts read --json output
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: system packages ready"
