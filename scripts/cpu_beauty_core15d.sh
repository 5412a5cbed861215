#!/usr/bin/env bash
# Issue #13, sixteenth session, after core15/15b/15c: the rows trained at τ 3 read at τ 3 and 5 on validation
# (the best tested; with the tail floor too), so that selected.md compares them with the router and the split at
# the τ their own validation picks, now that Beauty's section reads τ 5. ~20 min on a 2-core machine.
# Usage: bash scripts/cpu_beauty_core15d.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
(
  for run in FlexCode-semantic_only-seed2020 FlexCode-semantic_only-seed2022 FlexCode-cf_only-seed2021; do floor $run 3,5; done
) &
(
  for run in FlexCode-semantic_only-seed2021 FlexCode-cf_only-seed2020 FlexCode-no_align-seed2020 FlexCode-decoupled-seed2020; do
    floor $run 3,5
  done
) &
wait
