#!/usr/bin/env bash
# Issue #13, sixteenth session, beside scripts/cpu_beauty_core15.sh and core15b.sh: FlexCode-cf_only seed 2021 on
# the last-state core, once core15's lane 2 (FlexCode-no_align seed 2020) is done, so that both single-codebook
# rows (item 5: dual > single) have more than one seed.
# Usage: bash scripts/cpu_beauty_core15c.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
until [ -f "$out/Amazon_Beauty/runs/FlexCode-no_align-seed2020.json" ]; do sleep 30; done
bench --seeds=2021 --models=FlexCode-cf_only > "$logs/FlexCode-cf_only-seed2021.log" 2>&1
