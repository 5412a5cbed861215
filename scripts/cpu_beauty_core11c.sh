#!/usr/bin/env bash
# Issue #13, twelfth session: what replaced scripts/cpu_beauty_core11b.sh's sweeps of the dropout runs.
# Dropout 0.1 lifted seed 2021's validation N@10 from 0.0599 to 0.0635 by its eighth epoch, so the lane
# that would have swept it trains dropout 0.2 on the same seed and stages instead, to see which side of
# 0.1 the best rate lies; the dropout-0.1 runs are reported at their trained head setting (K 20, τ 3).
# Usage: bash scripts/cpu_beauty_core11c.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
until [ -f "$out/Amazon_Beauty/runs/FlexCode-fix_cf1_dropout01-seed2021.json" ]; do sleep 20; done
bench --seeds=2021 --models=FlexCode-fix_cf1_dropout02 > "$logs/FlexCode-fix_cf1_dropout02-seed2021.log" 2>&1
