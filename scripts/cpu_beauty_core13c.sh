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
(
  until [ -f "$out/Amazon_Beauty/runs/FlexCode-fix_cf1_dropout01-seed2022.json" ]; do sleep 30; done
  floor FlexCode-fix_cf1_dropout01-seed2022
) &
(
  row=FlexCode-fix_cf1_dropout01_codes
  bench --seeds=2020 --models=$row > "$logs/$row-seed2020.log" 2>&1
  beside_sasrec $row 2020
  floor $row-seed2020
) &
wait
