#!/usr/bin/env bash
# Installs every system tool carve's demo, tests and benchmarks need, from Debian.
#
# It decides by the commands and files the project runs, not by package status: an image may
# carry a tool from another suite (qemu-utils 10 from bookworm-backports) whose package still
# "is installed" but that apt would remove to satisfy another package's constraints. So:
#   1. list the tools that are missing and the packages that bring them;
#   2. simulate the whole set in one apt transaction; if apt would remove anything, pin each
#      removed package to the version the archives offer beside the rest (a downgrade keeps the
#      command) and simulate again; if something would still go, stop and say what;
#   3. install in that one transaction, then verify every tool exists and name the package of
#      any that does not.
# The machine never ends with fewer tools than it had. Idempotent: on a prepared machine it only
# checks. SETUP_DRY_RUN=1 prints the transaction instead of running it.
set -euo pipefail

# tool  package  what for  (a tool is a command on PATH, or an absolute path that must exist)
TOOLS=(
  "qemu-system-x86_64 qemu-system-x86  VM tier: TCG/KVM guests"
  "qemu-img           qemu-utils       guest disks"
  "/usr/share/seabios/bios-256k.bin seabios  the guests' firmware"
  "busybox-static     busybox-static   container rootfs and guest initramfs (a static busybox)"
  "cpio               cpio             packing the guest initramfs"
  "dbus-daemon        dbus-daemon      carve-cgroups' D-Bus client test talks to a private bus"
  "runc               runc             peer runtime: benchmarks, podman/containerd tests"
  "podman             podman           a real OCI client"
  "containerd         containerd       a real OCI client (and its CRI plugin)"
  "ctr                containerd       containerd's client"
  "hyperfine          hyperfine        side-by-side timing in benchmarks"
  "debootstrap        debootstrap      Debian userland for system containers"
  "cyclictest         rt-tests         a peer for the noise meter"
  "ip                 iproute2         leak checks list links and netns"
  "pgrep              procps           process checks in tests"
  "modinfo            kmod             module facts when present"
  "jq                 jq               scripts read --json output"
  "/usr/share/containers/seccomp.json golang-github-containers-common  podman's default seccomp profile (a test fixture)"
  "/usr/include/x86_64-linux-gnu/asm/unistd_64.h linux-libc-dev  syscall tables checked against the kernel headers"
  "gcc                gcc              carve-oci's world tests build a static glibc program that creates a thread"
  "/usr/lib/x86_64-linux-gnu/libc.a libc6-dev  static glibc for that program (gcc -static)"
  "tmux               tmux             terminal UIs driven as a person would"
  "chromium           chromium         headless screenshots of HTML reports and pages"
  "protoc             protobuf-compiler  builds the CRI v1 gRPC client (k8s-cri's build script)"
  "/usr/lib/cni/bridge containernetworking-plugins  pod network of the CRI tests (bridge, host-local, loopback)"
)

have_tool() {
  case "$1" in
    busybox-static)
      # Debian's busybox-static installs /bin/busybox; the dynamic `busybox` package has the same
      # path, and a dynamic busybox cannot run in an empty rootfs or initramfs.
      # (ldd exits 1 on a static binary: read its words, not its status.)
      [ -x /bin/busybox ] && [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic"* ]] ;;
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing_pkgs() {
  local line tool pkg
  for line in "${TOOLS[@]}"; do
    read -r tool pkg _ <<<"$line"
    have_tool "$tool" || echo "$pkg"
  done | sort -u
}

mapfile -t want < <(missing_pkgs)
if [ ${#want[@]} -eq 0 ]; then
  echo "setup: every tool is present"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup: missing tools come from: ${want[*]}"
apt-get update -qq

# Packages apt would remove if the set were installed as asked.
removals() { apt-get install -s --no-install-recommends --allow-downgrades "$@" 2>&1 | awk '/^Remv /{print $2}'; }
# The newest version of $1 in the configured archives that is not the installed one.
archive_version() {
  local installed
  installed=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true)
  apt-cache madison "$1" | awk -F'|' -v inst="$installed" '{gsub(/ /,"",$2)} $2!=inst{print $2; exit}'
}

args=("${want[@]}")
for round in 1 2 3; do
  mapfile -t gone < <(removals "${args[@]}")
  [ ${#gone[@]} -eq 0 ] && break
  if [ "$round" = 3 ]; then
    echo "setup: installing ${want[*]} would remove ${gone[*]}; not doing it (the machine would lose tools)." >&2
    echo "setup: install the packages above by hand at versions that agree, then run this again." >&2
    exit 1
  fi
  for p in "${gone[@]}"; do
    v=$(archive_version "$p")
    if [ -z "$v" ]; then
      echo "setup: installing ${want[*]} would remove $p and the archives offer no other version of it" >&2
      exit 1
    fi
    echo "setup: apt would remove $p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null); pinning it to $v from the archives so its tools stay"
    args+=("$p=$v")
  done
done

if [ "${SETUP_DRY_RUN:-0}" = 1 ]; then
  echo "setup: would run: apt-get install -y --no-install-recommends --allow-downgrades ${args[*]}"
  exit 0
fi
apt-get install -y -qq --no-install-recommends --allow-downgrades "${args[@]}" >/dev/null

status=0
for line in "${TOOLS[@]}"; do
  read -r tool pkg why <<<"$line"
  if ! have_tool "$tool"; then
    echo "setup: $tool is still missing after installing; Debian package $pkg ($why)" >&2
    status=1
  fi
done
[ $status = 0 ] && echo "setup: every tool is present"
exit $status
