#!/usr/bin/env bash
# Issue #13, sixteenth session: the paper's single-codebook rows on the last-state core (Beauty's section since
# the fifteenth session: dropout 0.1, item_head_user: last) and the tail-floor sweep of Beauty's FlexCode row
# (the router), which still misses SASRec's tail at its section τ.
#   lane 1: FlexCode-semantic_only (the TIGER-style row of item 4's target) seeds 2020, 2021, 2022
#   lane 2: the router's floor sweeps (τ 3, 5, 10, 30) on seeds 2020-2022, then FlexCode-cf_only and
#           FlexCode-no_align on seed 2020 (item 5: dual > single, alignment helps), as far as the session goes
# ~2.5 h on a 2-core machine.
# Usage: bash scripts/cpu_beauty_core15.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
(
  for s in 2020 2021 2022; do row FlexCode-semantic_only $s; done
) &
(
  for s in 2020 2021 2022; do floor FlexCode-seed$s 3,5,10,30; done
  row FlexCode-cf_only 2020
  row FlexCode-no_align 2020
) &
wait
