#!/usr/bin/env bash
# The demo: what this host can give each partition kind, and every example plan checked against it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --quiet --bin carve
carve=./target/release/carve

echo "== carve host =="
$carve host
for plan in examples/*.toml; do
  echo
  echo "== carve plan check $plan =="
  $carve plan check "$plan"
done
