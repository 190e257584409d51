#!/usr/bin/env bash
# The whole test suite: system packages, guest assets, every crate's tests (unit and privileged
# integration, real kernel and QEMU), and a suite-level check that the host was left unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --workspace --all-targets --quiet
[ -f scripts/assets.sh ] && bash scripts/assets.sh
# The pure-v2 cgroup tests run in a QEMU guest from a static test binary: build it before the
# timed test run. So do the net_cls/net_prio tests (a v1 guest).
bash scripts/v2-guest-test.sh --build-only
bash scripts/oci-v2-guest-test.sh --build-only
# The systemd guest (debootstrap image, cached) for carve-oci's systemd cgroup driver test.
bash scripts/systemd-guest.sh --build-only
bash scripts/v1-guest-test.sh --build-only

snap=$(mktemp /tmp/carve-leak.XXXXXX)
# Every test that cannot run records why here (carve_testkit::skip); the summary below counts them.
export CARVE_SKIP_LOG
CARVE_SKIP_LOG=$(mktemp /tmp/carve-skips.XXXXXX)
trap 'rm -f "$snap" "$CARVE_SKIP_LOG"' EXIT
"${CARGO_TARGET_DIR:-target}"/debug/carve-leakcheck reap-stale  # what a killed earlier run left
"${CARGO_TARGET_DIR:-target}"/debug/carve-leakcheck snapshot "$snap"
status=0
# Tests that retune the host (exclusive cpusets, IRQ affinity, sysctls) would disturb tests that
# merely use those cores, so they run alone, after everything else has run in parallel.
cargo nextest run --workspace --no-fail-fast -E 'not test(/host_tuning/)' || status=$?
cargo nextest run --workspace --no-fail-fast -E 'test(/host_tuning/)' --test-threads 1 || status=$?
cargo test --workspace --doc --quiet || status=$?
"${CARGO_TARGET_DIR:-target}"/debug/carve-leakcheck compare "$snap" || status=$?
bash scripts/skip-summary.sh "$CARVE_SKIP_LOG" || status=1
exit $status
