#!/usr/bin/env bash
# Issue #13, fifteenth session, lane 2: pilot on seed 2020 of the 1 + 2 split with dropout 0.1 whose item head
# reads the latest history state alone (item_head_user: last, as SASRec scores), then its rows beside SASRec's
# (by_target, paired: does the stale rare cell move?) and its tail-floor sweep. ~1 h 30 min on one core,
# beside scripts/cpu_beauty_core14.sh.
# Usage: bash scripts/cpu_beauty_core14b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row=FlexCode-fix_cf1_dropout01_last
bench --seeds=2020 --models=$row > "$logs/$row-seed2020.log" 2>&1
beside_sasrec $row 2020
floor $row-seed2020
