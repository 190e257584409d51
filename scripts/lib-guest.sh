# Shared steps of the pure cgroup v2 guest tests (scripts/v2-guest-test.sh and
# scripts/oci-v2-guest-test.sh), sourced by both after `cd` to the repository top and with `top`,
# `cache` and `CARGO` set: the guest kernel (cache/guest/vmlinuz from scripts/assets.sh, else
# Debian's cloud kernel fetched once into cache/kernel/) and its brd RAM disk module, a static
# build, the initramfs and the TCG boot with the verdict read from the console.
# Each guest prints lines prefixed "$tag: " and a last line "$tag: PASS" or "$tag: FAIL ...".

kdir=$cache/kernel

guest_fetch_kernel() { # [package]: downloads and unpacks a Debian kernel package into cache/kernel/x
  local pkg=${1:-}
  mkdir -p "$kdir"
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
    [ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}'); }
  fi
  (cd "$kdir" && apt-get download -q "$pkg" >/dev/null 2>&1)
  rm -rf "$kdir/x"
  dpkg-deb -x "$(ls -t "$kdir"/"$pkg"_*.deb | head -n1)" "$kdir/x"
}

# Sets `kernel` (fetching one if there is none) and `brd` (the RAM disk module of the same
# version, fetched with its kernel package if missing; empty if the version is unknown).
guest_kernel_and_brd() {
  if [ -f "$cache/guest/vmlinuz" ]; then
    kernel=$cache/guest/vmlinuz # scripts/assets.sh made it
  else
    kernel=$(ls "$kdir"/x/boot/vmlinuz-* 2>/dev/null | head -n1 || true)
    if [ -z "$kernel" ]; then
      guest_fetch_kernel
      kernel=$(ls "$kdir"/x/boot/vmlinuz-* | head -n1)
    fi
  fi
  # The version string sits uncompressed in the bzImage header.
  kver=$(grep -a -o -m1 '[0-9]\+\.[0-9]\+\.[0-9]\+-[0-9]\+-cloud-amd64' "$kernel" | head -n1 || true)
  brd=$(find "$cache/" -path "*/lib/modules/$kver/*" -name 'brd.ko*' 2>/dev/null | head -n1 || true)
  if [ -z "$brd" ] && [ -n "$kver" ]; then
    guest_fetch_kernel "linux-image-$kver"
    brd=$(find "$kdir/x/lib/modules/$kver" -name 'brd.ko*' | head -n1)
  fi
}

# guest_static_build TAG WHAT TARGET-NAME CARGO-ARGS...: a static (+crt-static) build of one
# artifact; sets `bin` to its path, or prints the build log and "TAG: FAIL (building WHAT
# failed)" and exits 2.
guest_static_build() {
  local tag=$1 what=$2 name=$3
  shift 3
  local buildlog
  buildlog=$(mktemp /tmp/carve-guestbuild.XXXXXX)
  bin=$(RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
    "$CARGO" "$@" --target x86_64-unknown-linux-gnu --message-format=json 2>"$buildlog" |
    jq -r --arg n "$name" 'select(.reason == "compiler-artifact" and .target.name == $n and .executable != null) | .executable' |
    tail -n1 || true)
  if [ ! -x "$bin" ]; then
    cat "$buildlog" >&2
    rm -f "$buildlog"
    echo "$tag: FAIL (building $what failed)"
    exit 2
  fi
  rm -f "$buildlog"
}

# guest_put_brd DIR: the brd module, uncompressed, as DIR/brd.ko (nothing if there is none).
guest_put_brd() {
  case "$brd" in
    "") ;;
    *.ko.xz) xz -dc "$brd" >"$1/brd.ko" ;;
    *.ko.zst) zstd -qdc "$brd" >"$1/brd.ko" ;;
    *.ko) cp "$brd" "$1/brd.ko" ;;
  esac
}

# guest_put_init_lib ROOT: scripts/guest-init.sh as ROOT/carve-init.sh, for the guest's /init to
# source (root on a tmpfs, the usual mounts, check()).
guest_put_init_lib() {
  cp "$top/scripts/guest-init.sh" "$1/carve-init.sh"
}

# guest_pack ROOT OUT: ROOT (with an executable ROOT/init) as a gzip'd newc initramfs.
guest_pack() {
  (cd "$1" && find . | cpio -o -H newc --quiet | gzip -1) >"$2"
}

# guest_put_module NAME DIR: the kernel's module NAME (of version $kver, from the cache),
# uncompressed, as DIR/NAME.ko; returns 1 if there is none.
guest_put_module() {
  local m
  m=$(find "$cache/" -path "*/lib/modules/$kver/*" -name "$1.ko*" 2>/dev/null | head -n1 || true)
  case "$m" in
    "") return 1 ;;
    *.ko.xz) xz -dc "$m" >"$2/$1.ko" ;;
    *.ko.zst) zstd -qdc "$m" >"$2/$1.ko" ;;
    *.ko) cp "$m" "$2/$1.ko" ;;
  esac
}

# guest_boot TAG TIMEOUT SMP MEM INITRD LOG [APPEND...]: boots the kernel under TCG with only
# cgroup2 (cgroup_no_v1=all; set guest_cgroup_append to replace that, e.g. to "" for a guest
# that mounts v1 hierarchies), prints the console, and returns 0 only if it said "TAG: PASS".
guest_boot() {
  local tag=$1 secs=$2 smp=$3 mem=$4 initrd=$5 log=$6
  shift 6
  local cg=${guest_cgroup_append-cgroup_no_v1=all}
  # no_timer_check: a descheduled TCG guest fails Linux's timer-IRQ check and can hang in boot
  # (crates/vm/src/cmdline.rs, kernel_append).
  timeout "$secs" qemu-system-x86_64 -accel tcg -cpu max -smp "$smp" -m "$mem" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 no_timer_check${cg:+ $cg} panic=-1 quiet loglevel=1${*:+ $*}" \
    -nographic -no-reboot </dev/null >"$log" 2>&1 || true
  tr -d '\r' <"$log"
  if grep -q "^$tag: PASS" <(tr -d '\r' <"$log"); then
    return 0
  fi
  grep -q "^$tag: FAIL" <(tr -d '\r' <"$log") || echo "$tag: FAIL (no result from the guest)"
  return 1
}
