#!/usr/bin/env bash
# Issue #13, eighteenth session: seed 2022 of FlexCode-dropout0 (Beauty's section before dropout 0.1: the
# expected-loss router, the mean + last head, τ 3 as its seeds 2020 / 2021 ran), so that the ablation chain on one
# machine's stages (dropout0 -> mean_last -> expected_loss -> FlexCode, benchmark.ablation) has three seeds in
# every step. One lane, ~35 min; run beside the second lane of core17.sh.
# Usage: bash scripts/cpu_beauty_core17b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
bench --seeds=2022 --models=FlexCode-dropout0 --item_head_shrink=3 > "$logs/FlexCode-dropout0-seed2022.log" 2>&1
