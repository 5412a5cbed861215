#!/usr/bin/env bash
# Issue #13, fifteenth session: the last-state head (item_head_user: last) on Beauty's section itself, the router
# (row FlexCode-last), on three seeds, once core14b's pilot had scored above its parent on validation; and the
# split's seeds. This replaced scripts/cpu_beauty_core14c.sh once its seed-2021 run was training (that run was
# left to finish; the tail-floor sweeps come last here, so that the router's runs fit the session).
#   lane 1: after the split's seed 2021: FlexCode-last seeds 2020 and 2022, then the split's seed-2021 floor sweep
#   lane 2: after core14b: the split's seed 2022, FlexCode-last seed 2021, then the split's seed-2022 floor sweep
# ~2 h on a 2-core machine. As run, lane 1 stopped after FlexCode-last seed 2022 and the split's seed-2021 floor
# sweep (the same command) ran after lane 2's, beside the fresh-clone CI of the session's end.
# Usage: bash scripts/cpu_beauty_core14d.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
analysis=$out/Amazon_Beauty/analysis
split=FlexCode-fix_cf1_dropout01_last
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
(
  until [ -f "$out/Amazon_Beauty/runs/$split-seed2021.json" ]; do sleep 30; done
  row FlexCode-last 2020
  row FlexCode-last 2022
  floor $split-seed2021
) &
(
  until [ -f "$analysis/floor-$split-seed2020.json" ]; do sleep 30; done
  row $split 2022
  row FlexCode-last 2021
  floor $split-seed2022
) &
wait
