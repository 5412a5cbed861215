#!/usr/bin/env bash
# Issue #13, seventeenth session, after Beauty's section took the decoupled router: the alignment claim (item 5)
# against the section's router, FlexCode-no_align (now the decoupled router without the alignment term) on
# seeds 2020 and 2021 beside the FlexCode runs, trained and tested at the section's τ 5. Two lanes, ~40 min.
# Usage: bash scripts/cpu_beauty_core16c.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
for s in 2020 2021; do
  bench --seeds=$s --models=FlexCode-no_align > "$logs/FlexCode-no_align-seed$s.log" 2>&1 &
done
wait
