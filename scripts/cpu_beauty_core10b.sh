#!/usr/bin/env bash
# Issue #13, eleventh session, after scripts/cpu_beauty_core10.sh (started beside it; each lane waits for
# that script's lane to finish): the control for the decoupled router, which gives most items 1 CF + 2
# semantic tokens — the fixed split the other way round (FlexCode-fix_cf1: 1 CF + 2 semantic tokens for
# every item) on the same seeds, so "router > fix" is not just "1 CF + 2 semantic > 2 CF + 1 semantic".
#   lane 1: FlexCode-fix_cf1 seeds 2020, 2022      lane 2: FlexCode-fix_cf1 seed 2021
# Usage: bash scripts/cpu_beauty_core10b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun4)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun4}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
after() { until [ -f "$out/Amazon_Beauty/runs/$1.json" ]; do sleep 30; done; }
(
  after FlexCode-decoupled-seed2022
  row FlexCode-fix_cf1 2020
  row FlexCode-fix_cf1 2022
) &
(
  after FlexCode-cf_only-seed2022
  row FlexCode-fix_cf1 2021
) &
wait
