# Sourced by a guest's /init (scripts/lib-guest.sh's guest_put_init_lib puts it at /carve-init.sh)
# with TAG set: moves the root onto a tmpfs, mounts proc, sys, dev, tmp and run, and defines
# check(), which prints "$TAG: ok NAME" or "$TAG: FAIL NAME: why" and counts in $oks / $fails.
# pivot_root (carve-oci) cannot move the initramfs root: copy it onto a tmpfs and switch_root to
# it first, as a real host's root would be; /init then runs again from there.
if [ ! -e /switched ]; then
  /bin/busybox mkdir /newroot
  /bin/busybox mount -t tmpfs -o size=200m tmpfs /newroot
  for f in /*; do [ "$f" = /newroot ] || /bin/busybox cp -a "$f" /newroot/; done
  /bin/busybox touch /newroot/switched
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
fails=0
oks=0
check() { # NAME COMMAND...: one check, passed if COMMAND succeeds
  local n=$1
  shift
  if "$@"; then
    echo "$TAG: ok $n"
    oks=$((oks + 1))
  else
    echo "$TAG: FAIL $n: $* is false"
    fails=$((fails + 1))
  fi
}
