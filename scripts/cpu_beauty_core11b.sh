#!/usr/bin/env bash
# Issue #13, twelfth session: what replaced scripts/cpu_beauty_core11.sh after its first seed. That sweep
# (candidates 20 and 50 x τ 0, 3, 5, 10) took 40 min per checkpoint on this AMD machine, 50 candidates about
# three times 20's, so the rest sweeps 20 candidates only, seed 2022 is dropped, and the dropout probe runs on
# two seeds (2020, 2021) against the same row on the same stage caches.
#   lane 1: after core11's seed-2020 sweep ends: FlexCode-fix_cf1_dropout01 seed 2020 (then swept)
#   lane 2: the sweep of FlexCode-fix_cf1 seed 2021, then FlexCode-fix_cf1_dropout01 seed 2021 (then swept)
# Usage: bash scripts/cpu_beauty_core11b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
sweep() {
  python -m recbole_flexcode.diagnose "$(checkpoint $1-seed$2)" --trust --threads=1 --candidates_sweep=20 \
    --shrink_sweep=0,3,5,10 "--out=$out/Amazon_Beauty/analysis/shrink-$1-seed$2.json" > "$logs/shrink-$1-seed$2.log" 2>&1
}
(
  until [ -f "$out/Amazon_Beauty/analysis/shrink-FlexCode-fix_cf1-seed2020.json" ]; do sleep 30; done
  row FlexCode-fix_cf1_dropout01 2020 && sweep FlexCode-fix_cf1_dropout01 2020
) &
(
  sweep FlexCode-fix_cf1 2021
  row FlexCode-fix_cf1_dropout01 2021 && sweep FlexCode-fix_cf1_dropout01 2021
) &
wait
