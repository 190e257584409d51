#!/usr/bin/env bash
# Installs what `carve bench runtime` compares carve-oci against, beyond scripts/setup.sh:
# youki (a Rust OCI runtime) from crates.io, and builds the carve-oci that is shipped and measured
# (static, size-optimized, non-PIE: target/x86_64-unknown-linux-gnu/release/carve-oci; see
# docs/performance.md). Idempotent: a second run only checks.
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

# youki has no default features: v1 is needed on this hybrid host (v1 controllers, cgroup2 with
# only hugetlb), v2 for pure-v2 hosts, seccomp like Debian's runc. cargo install is a quick no-op
# when this version with these features is installed (it records features in .crates2.json).
# Building it takes about 10 minutes on 2 busy cores.
echo "bench-setup: cargo install youki --locked --features v1,v2,seccomp"
nice cargo install youki --locked --features v1,v2,seccomp
v="$(youki --version)"; echo "bench-setup: ${v%%$'\n'*}"
# The shipped carve-oci: a static glibc build needs no dynamic loader and no start-up relocations,
# which is most of the dynamic build's peak RSS (docs/performance.md).
echo "bench-setup: building the static carve-oci"
cd "$(dirname "$0")/.."
CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  nice cargo build --quiet --release -p carve-oci --target x86_64-unknown-linux-gnu
echo "bench-setup: ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/carve-oci"
echo "bench-setup: ready"
