#!/usr/bin/env bash
# Issue #13, fourteenth session: what replaced the second runs of scripts/cpu_beauty_core13.sh's lanes
# (FlexCode-fix_cf1 and FlexCode-dropout0 on seed 2022, the dropout-0 twins of adopted settings; cut when the
# head-alone reading showed where the stale rare cell is lost, so that a pilot of a fix fits the session).
#   lane 1: once FlexCode-fix_cf1_dropout01 seed 2022 has finished, its tail-floor sweep (as core13 had it)
#   lane 2: pilot, seed 2020 (the 1 + 2 split with dropout 0.1, now with item_head_features: codes), then its
#           rows beside SASRec's (by_target, paired) and its tail-floor sweep
# ~1 h on a 2-core machine beside scripts/cpu_beauty_core13b.sh.
# Usage: bash scripts/cpu_beauty_core13c.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
analysis=$out/Amazon_Beauty/analysis
floor() {
  python -m recbole_flexcode.diagnose "$(checkpoint $1)" --trust --threads=1 --candidates_sweep=20 \
    --shrink_sweep=3,5,10 --tail_floor=0.0245 "--out=$analysis/floor-$1.json" > "$logs/floor-$1.log" 2>&1
}
(
  until [ -f "$out/Amazon_Beauty/runs/FlexCode-fix_cf1_dropout01-seed2022.json" ]; do sleep 30; done
  floor FlexCode-fix_cf1_dropout01-seed2022
) &
(
  row=FlexCode-fix_cf1_dropout01_codes
  bench --seeds=2020 --models=$row > "$logs/$row-seed2020.log" 2>&1
  python -m recbole_flexcode.diagnose "$(checkpoint $row-seed2020)" --trust --threads=1 --by_target \
    "--rows_out=$analysis/rows-$row-seed2020.npz" "--out=$analysis/by_target-$row-seed2020.json" \
    > "$logs/by_target-$row-seed2020.log" 2>&1
  python -m recbole_flexcode.analysis.paired "$analysis/rows-SASRec-seed2020.npz" "$analysis/rows-$row-seed2020.npz" \
    --names=SASRec,${row#FlexCode-} "--out=$analysis/paired-SASRec-$row-seed2020.md" > /dev/null
  floor $row-seed2020
) &
wait
