#!/usr/bin/env bash
# Runs carve-oci's systemd cgroup driver for real: boots a QEMU TCG guest whose PID 1 is systemd
# (a debootstrap Debian bookworm with systemd, dbus and podman on an ext4 disk image, cached under
# cache/systemd-guest and rebuilt only when its recipe changes) and drives a static carve-oci
# with `--systemd-cgroup`, through podman (`--cgroup-manager systemd --runtime carve-oci`) and
# directly: the transient scope exists (systemctl), its properties and the cgroup files hold the
# limits, the limits are enforced, `update` reaches the unit, `delete` leaves no unit and no
# cgroup.
# Usage: scripts/systemd-guest.sh [--build-only]
# The image build (first time: debootstrap through apt's mirror, a few minutes, ~350 MB) and the
# static carve-oci build happen before the boot; --build-only stops there (scripts/test.sh calls
# it before the timed suite). The guest prints "CARVE-SYSTEMD: ok NAME" or "CARVE-SYSTEMD: FAIL
# NAME: why" per check and a last line "CARVE-SYSTEMD: PASS" or "CARVE-SYSTEMD: FAIL (...)";
# exits 0 only on PASS.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
cache=$top/cache
CARGO=${CARGO:-cargo}
# shellcheck source=scripts/lib-guest.sh
. "$top/scripts/lib-guest.sh"

sd=$cache/systemd-guest
image=$sd/rootfs.img
# What the image holds; any change here rebuilds it (the stamp is this text's hash). podman
# needs a container-network-stack (netavark, which runs iptables) though the test runs with
# --network host.
packages="systemd,systemd-sysv,dbus,podman,netavark,iptables,procps,kmod"
recipe="1 bookworm minbase $packages 2G vfs-storage carve-test.service rootfs-bb"

# The disk image: debootstrap into a directory, configure, mke2fs -d (no loop mount needed).
# Idempotent (recipe stamp) and safe to run in parallel (flock).
build_image() {
  mkdir -p "$sd"
  exec 9>"$sd/.lock"
  flock 9
  local stamp
  stamp=$(sha256sum <<<"$recipe" | cut -c1-16)
  if [ -f "$image" ] && [ "$(cat "$sd/stamp" 2>/dev/null)" = "$stamp" ]; then
    exec 9>&-
    return 0
  fi
  rm -f "$image" "$sd/stamp"
  local dir=$sd/rootfs.tmp
  rm -rf "$dir"
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  echo "systemd-guest: debootstrap bookworm ($packages) from $mirror into $dir" >&2
  if ! debootstrap --variant=minbase --include="$packages" bookworm "$dir" "$mirror" >"$sd/debootstrap.log" 2>&1; then
    tail -n 30 "$sd/debootstrap.log" >&2
    echo "CARVE-SYSTEMD: FAIL (debootstrap failed: $sd/debootstrap.log)"
    exit 2
  fi
  # Podman without an image store on overlay (no module needed) and without networking.
  mkdir -p "$dir/etc/containers"
  printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
    >"$dir/etc/containers/storage.conf"
  printf '[engine]\nevents_logger = "file"\ncgroup_manager = "systemd"\n' >"$dir/etc/containers/containers.conf"
  # A busybox rootfs for `podman run --rootfs` and for carve-oci's own bundle.
  mkdir -p "$dir/srv/bb"/{bin,proc,sys,dev,tmp,etc,root}
  cp /bin/busybox "$dir/srv/bb/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$dir/srv/bb/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$dir/srv/bb/etc/passwd"
  printf 'root:x:0:\n' >"$dir/srv/bb/etc/group"
  # The test runs as a unit once the system is up; its script comes with each boot's initramfs.
  cat >"$dir/etc/systemd/system/carve-test.service" <<'EOF'
[Unit]
Description=carve systemd cgroup driver test
After=dbus.service
Wants=dbus.service

[Service]
Type=oneshot
ExecStart=/usr/local/bin/carve-systemd-test
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/carve-test.service "$dir/etc/systemd/system/multi-user.target.wants/carve-test.service"
  # Nothing else on the console, nothing slow at boot.
  ln -sf /dev/null "$dir/etc/systemd/system/serial-getty@ttyS0.service"
  ln -sf /dev/null "$dir/etc/systemd/system/getty@tty1.service"
  ln -sf /dev/null "$dir/etc/systemd/system/systemd-timesyncd.service"
  ln -sf /dev/null "$dir/etc/systemd/system/apt-daily.timer"
  ln -sf /dev/null "$dir/etc/systemd/system/apt-daily-upgrade.timer"
  ln -sf /dev/null "$dir/etc/systemd/system/e2scrub_all.timer"
  ln -sf /dev/null "$dir/etc/systemd/system/fstrim.timer"
  ln -sf /dev/null "$dir/etc/systemd/system/podman-auto-update.timer"
  ln -sf /dev/null "$dir/etc/systemd/system/podman-clean-transient.service"
  printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$dir/etc/fstab"
  echo carve-sd >"$dir/etc/hostname"
  rm -rf "$dir/var/cache/apt/archives"/*.deb "$dir/var/lib/apt/lists"/*
  mkdir -p "$dir/usr/local/bin"
  if ! mke2fs -q -t ext4 -d "$dir" -L carve-sd "$image.tmp" 2G >"$sd/mke2fs.log" 2>&1; then
    cat "$sd/mke2fs.log" >&2
    echo "CARVE-SYSTEMD: FAIL (mke2fs -d failed)"
    exit 2
  fi
  mv "$image.tmp" "$image"
  rm -rf "$dir"
  echo "$stamp" >"$sd/stamp"
  exec 9>&-
}

build_image
guest_kernel_and_brd
guest_static_build CARVE-SYSTEMD "the static carve-oci" carve-oci build -q -p carve-oci --bin carve-oci
[ "${1:-}" = "--build-only" ] && { echo "systemd-guest: image $image, carve-oci $bin"; exit 0; }

# --- initramfs: loads virtio_blk, mounts the image, brings in this build, switches to systemd ---
work=$(mktemp -d /tmp/carve-sdguest.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,newroot,m}
cp /bin/busybox "$root/bin/busybox"
mods="virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci virtio_blk"
for m in $mods; do
  guest_put_module "$m" "$root/m" || { [ "$m" = virtio_pci_legacy_dev ] || [ "$m" = virtio_pci_modern_dev ]; } ||
    { echo "CARVE-SYSTEMD: FAIL (no $m module for $kver)"; exit 2; }
done
cp "$bin" "$root/carve-oci"
cp "$top/scripts/systemd-guest-checks.sh" "$root/checks.sh"
mkdir -p "$root/bundle"
"$bin" spec --bundle "$work"
jq '.process.terminal = false | .process.args = ["sleep", "1000"]
  | .root = {"path": "/srv/bb", "readonly": true}
  | .linux.cgroupsPath = "carve-test.slice:carve:direct1"
  | .linux.resources.memory = {"limit": 67108864}
  | .linux.resources.cpu = {"quota": 50000, "period": 100000, "cpus": "0"}
  | .linux.resources.pids = {"limit": 16}' "$work/config.json" >"$root/bundle/config.json"
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $mods; do [ -f /m/\$m.ko ] && insmod /m/\$m.ko; done
for i in \$(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /newroot || { echo "CARVE-SYSTEMD: FAIL (cannot mount /dev/vda)"; poweroff -f; }
cp /carve-oci /newroot/usr/local/bin/carve-oci
cp /checks.sh /newroot/usr/local/bin/carve-systemd-test
mkdir -p /newroot/usr/local/share/carve-bundle
cp /bundle/config.json /newroot/usr/local/share/carve-bundle/
chmod 755 /newroot/usr/local/bin/carve-oci /newroot/usr/local/bin/carve-systemd-test
umount /proc /sys
exec switch_root /newroot /lib/systemd/systemd
EOF
chmod +x "$root/init"
guest_pack "$root" "$work/initrd.img"

# --- boot: the disk in snapshot mode (the cached image is never written) ----------------------
log=$work/console.log
# ~150 s on this 2-core host at load 14 (~35 s boot, ~75 s podman, ~20 s direct); the bound stays
# under nextest's 300 s kill so a hung guest still shows its console.
timeout "${CARVE_SYSTEMD_GUEST_TIMEOUT:-270}" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1536 \
  -kernel "$kernel" -initrd "$work/initrd.img" \
  -drive "file=$image,format=raw,if=virtio,snapshot=on" \
  -append "console=ttyS0 no_timer_check panic=-1 quiet loglevel=1 systemd.show_status=0 rw" \
  -nographic -no-reboot </dev/null >"$log" 2>&1 || true
# -o: a line the kernel or systemd started on the same console still counts.
result=$(tr -d '\r' <"$log" | grep -ao 'CARVE-SYSTEMD: .*' || true)
[ -z "$result" ] || echo "$result"
grep -qx 'CARVE-SYSTEMD: PASS' <<<"$result" && exit 0
grep -q '^CARVE-SYSTEMD: FAIL' <<<"$result" || {
  tail -n 40 <(tr -d '\r' <"$log")
  echo "CARVE-SYSTEMD: FAIL (no result from the guest)"
}
exit 1
