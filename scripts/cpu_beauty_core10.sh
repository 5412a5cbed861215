#!/usr/bin/env bash
# Issue #13, eleventh session (docs/results.md, "Eleventh session"): does a router that does not collapse
# beat the fixed split on the adopted (tied) core, and the ablation's missing seeds, on the stage caches of
# results/cpu_rerun4 (same Xeon stages), two lanes with one torch thread each on a 2-core CPU.
#   lane 1: FlexCode-decoupled (the full variant with router_mode=decoupled: 5 warm-up epochs in which
#           the generator trains every split and the router fits their losses, then frozen) seeds 2020-2022
#   lane 2: FlexCode-no_align seeds 2021, 2022, then FlexCode-cf_only seed 2022
# ~1 h 30 min on a Xeon 2-core machine. Usage: bash scripts/cpu_beauty_core10.sh [DATA_PATH] [OUT]
# (OUT default results/cpu_rerun4)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun4}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
(
  row FlexCode-decoupled 2020
  row FlexCode-decoupled 2021
  row FlexCode-decoupled 2022
) &
(
  row FlexCode-no_align 2021
  row FlexCode-no_align 2022
  row FlexCode-cf_only 2022
) &
wait
