#!/usr/bin/env bash
# Issue #13, thirteenth session: the runs that decide whether Amazon_Beauty's FlexCode section takes
# dropout 0.1 (results/cpu_rerun5, this machine's stages). Dropout 0.1 lifted the 1 + 2 fixed split on
# seeds 2020 and 2021; what was missing is the same change on the `FlexCode` row, the router that Beauty's
# section runs, each run beside its dropout-0 twin on the same seed and stages.
#   lane 1: FlexCode and FlexCode-dropout01 on seed 2021
#   lane 2: FlexCode-dropout01 and FlexCode on seed 2020
# Each row is reported at its trained head setting (no sweep). ~1 h on a 2-core machine.
# As first written, lane 1 built seed 2022's stages for the fixed split's third seed; after eight minutes it
# was replanned to this (the two lanes plus scripts/cpu_beauty_core12b.sh did not fit the session), so the
# fixed split's dropout comparison stays at two seeds.
# Usage: bash scripts/cpu_beauty_core12.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
(
  row FlexCode 2021
  row FlexCode-dropout01 2021
) &
(
  row FlexCode-dropout01 2020
  row FlexCode 2020
) &
wait
