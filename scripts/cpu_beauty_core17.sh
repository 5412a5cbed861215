#!/usr/bin/env bash
# Issue #13, eighteenth session: the L = 3 -> 6 claim (item 5) on Beauty's section (decoupled router), FlexCode-L6
# on seeds 2020-2022 beside the FlexCode runs (L = 3), trained and tested at the section's τ 5; and the missing seed
# 2022 of FlexCode-no_align (the section's router without the alignment term). Each L = 6 run first fits its
# 6-level tokenizer (cached per seed, ~4 min). An L = 6 epoch took ~11 min here (beam validation over six levels
# ~6 min of it) against ~3 min at L = 3, so the session stopped the second lane after seed 2021 (seed 2022 of
# FlexCode-L6 not run) and ran core17b.sh in its place. Two lanes of one thread each.
# Usage: bash scripts/cpu_beauty_core17.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
(
  bench --seeds=2020 --models=FlexCode-L6 > "$logs/FlexCode-L6-seed2020.log" 2>&1
  bench --seeds=2022 --models=FlexCode-no_align > "$logs/FlexCode-no_align-seed2022.log" 2>&1
) &
(
  for s in 2021 2022; do bench --seeds=$s --models=FlexCode-L6 > "$logs/FlexCode-L6-seed$s.log" 2>&1; done
) &
wait
