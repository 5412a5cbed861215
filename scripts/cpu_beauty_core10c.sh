#!/usr/bin/env bash
# Issue #13, eleventh session, after scripts/cpu_beauty_core10b.sh's second lane (waits for it): the
# budget claim (L = 3 -> 6) on the router that does not collapse, FlexCode-decoupled-L6 at seed 2020, to
# set beside FlexCode-decoupled seed 2020 (L = 3) on the same stage caches.
# Usage: bash scripts/cpu_beauty_core10c.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun4)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun4}"
. "$(dirname "$0")/cpu_beauty_common.sh"
until [ -f "$out/Amazon_Beauty/runs/FlexCode-fix_cf1-seed2021.json" ]; do sleep 30; done
bench --seeds=2020 --models=FlexCode-decoupled-L6 > "$logs/FlexCode-decoupled-L6-seed2020.log" 2>&1
