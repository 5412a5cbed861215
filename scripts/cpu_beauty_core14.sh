#!/usr/bin/env bash
# Issue #13, fifteenth session, lane 1: the third seed (2022) of the dropout-0 twins of the adopted settings,
# FlexCode-fix_cf1 (the 1 + 2 split) and FlexCode-dropout0 (the router), so that each dropout row of the
# ablation has the same three seeds as its dropout-0.1 twin (the runs core13c cut). Trained at Beauty's head
# setting (K 20, τ 3), no sweeps. ~2 h 10 min on one core, beside scripts/cpu_beauty_core14b.sh.
# As run, FlexCode-dropout0 was cut at its start for scripts/cpu_beauty_core14c.sh, when the pilot of
# core14b led its parent on validation (seeds 2021/2022 of that row took the lane).
# Usage: bash scripts/cpu_beauty_core14.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
for row in FlexCode-fix_cf1 FlexCode-dropout0; do
  bench --seeds=2022 --models=$row > "$logs/$row-seed2022.log" 2>&1
done
