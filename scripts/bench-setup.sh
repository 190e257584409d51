#!/usr/bin/env bash
# Installs what `carve bench runtime` compares carve-oci against, beyond scripts/setup.sh:
# youki (a Rust OCI runtime) from crates.io. Idempotent: a second run only checks.
# Usage: scripts/bench-setup.sh            (youki goes to ~/.cargo/bin, found on PATH by the bench)
set -euo pipefail

PKGS=(
  libseccomp-dev   # youki's libseccomp crate links libseccomp (found through pkg-config)
  pkg-config       # how libseccomp-sys finds libseccomp
  build-essential  # cc/ld for youki's C-linked dependencies
  runc             # the other peer (also in setup.sh)
  busybox-static   # the benchmark's bundle rootfs (also in setup.sh)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench-setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if command -v youki >/dev/null 2>&1; then
  echo "bench-setup: youki present: $(youki --version | head -1)"
else
  # youki's default features (v1+v2 cgroups, systemd over its own D-Bus client, libseccomp)
  # need nothing else from Debian. Building it takes several minutes on 2 cores.
  echo "bench-setup: building youki from crates.io (cargo install youki --locked)"
  nice cargo install youki --locked
fi
echo "bench-setup: ready"
