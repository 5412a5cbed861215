#!/usr/bin/env bash
# Issue #13, nineteenth session: seed 2022 of FlexCode-L6 (Beauty's section at token budget L = 6), the seed
# core17.sh left out, so the L = 3 -> 6 claim (item 5) is paired on all three seeds. Fits its 6-level tokenizer
# first (cached per seed, ~4 min). One lane of one thread.
# Usage: bash scripts/cpu_beauty_core18.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
bench --seeds=2022 --models=FlexCode-L6 > "$logs/FlexCode-L6-seed2022.log" 2>&1
