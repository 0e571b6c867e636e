#!/usr/bin/env bash
# Quality benchmark of the anomaly detector (docs/anomalies.md): generated
# sites from 50 to 500,000 page views a day, warmed from four weeks of
# 15-minute history, then twelve weeks fed live with known anomalies in
# every other week. Prints one Markdown table per seed: recall, detection
# delay and false alerts per week, per kind and per site size.
#
#   bench/anomalies.sh [beacon-anomaly-bench flags...]
#
# Environment: SEEDS (default "1 2": a second seed checks that nothing is
# tuned to the first). Flags: --sites N (per size, default 4), --weeks,
# --views-per-visit (1 gives Poisson page views), --sensitivity,
# --quiet-minutes (the detector's quiet_after), --verbose (lists every
# false alert, missed anomaly and late dark period on stderr).
# CPU-light (two seeds took about 20 s here); no server, no database.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p beacon-anomaly-bench
for seed in ${SEEDS:-1 2}; do
    target/release/beacon-anomaly-bench --seed "$seed" "$@"
    echo
done
