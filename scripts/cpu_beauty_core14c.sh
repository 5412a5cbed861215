#!/usr/bin/env bash
# Issue #13, fifteenth session: seeds 2021 and 2022 of core14b's pilot (FlexCode-fix_cf1_dropout01_last, the
# item head reading the latest history state alone), each followed by its tail-floor sweep, once the pilot's
# validation led its parent's. Seed 2021 takes core14's lane at once, seed 2022 core14b's once it has finished.
# ~1 h 15 min on a 2-core machine.
# As run, only seed 2021's training ran from here: scripts/cpu_beauty_core14d.sh took over once the pilot had finished above its parent on validation,
# so that the router's twin (Beauty's section) gets its seeds first.
# Usage: bash scripts/cpu_beauty_core14c.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
analysis=$out/Amazon_Beauty/analysis
row=FlexCode-fix_cf1_dropout01_last
seed() {
  bench --seeds=$1 --models=$row > "$logs/$row-seed$1.log" 2>&1
  floor $row-seed$1
}
seed 2021 &
(
  until [ -f "$analysis/floor-$row-seed2020.json" ]; do sleep 30; done
  seed 2022
) &
wait
