#!/usr/bin/env bash
# Issue #13, thirteenth session: the runs that decide whether Amazon_Beauty's FlexCode section takes
# dropout 0.1 (results/cpu_rerun5, this machine's stages). Dropout 0.1 lifted the 1 + 2 fixed split on
# seeds 2020 and 2021; what was missing: its third seed, and the same change on the `FlexCode` row (the
# router, Beauty's settings), each beside its dropout-0 twin on the same seed and stages.
#   lane 1: seed 2022's stages (CF SASRec, tokenizer), then FlexCode-fix_cf1_dropout01 and FlexCode-fix_cf1
#           on seed 2022, then FlexCode on seed 2021
#   lane 2: FlexCode-dropout01 and FlexCode on seed 2020, then FlexCode-dropout01 on seed 2021
# Each row is reported at its trained head setting (no sweep). ~1 h 50 min on a 2-core machine.
# Usage: bash scripts/cpu_beauty_core12.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
(
  bench --stage=tokenize --seeds=2022 --models=FlexCode-fix_cf1 > "$logs/stage-tokenize-seed2022.log" 2>&1
  row FlexCode-fix_cf1_dropout01 2022
  row FlexCode-fix_cf1 2022
  row FlexCode 2021
) &
(
  row FlexCode-dropout01 2020
  row FlexCode 2020
  row FlexCode-dropout01 2021
) &
wait
