#!/usr/bin/env bash
# Issue #13, seventeenth session: the decoupled router (the router variant that validation placed between the
# expected-loss router and the 1 + 2 split on seed 2020) on seeds 2021 and 2022, and the single-codebook and
# no-align rows on their missing seeds, so that items 4 and 5 compare every row on 3 seeds. Runs trained now
# read Beauty's section at τ 5; the floor sweeps read each decoupled run at τ 3 / 5 / 10 with the tail floor.
# Two lanes of one thread each, ~2 h on a 2-core machine. Its runs were relabelled afterwards (FlexCode-decoupled ->
# FlexCode, FlexCode-no_align -> FlexCode-no_align_expected_loss, docs/results.md "Seventeenth session"): now that
# Beauty's section is the decoupled router, run with --models=FlexCode,FlexCode-no_align_expected_loss instead.
# Usage: bash scripts/cpu_beauty_core16.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
(
  for s in 2021 2022; do bench --seeds=$s --models=FlexCode-decoupled > "$logs/FlexCode-decoupled-seed$s.log" 2>&1; done
  for s in 2021 2022; do floor FlexCode-decoupled-seed$s 3,5,10; done
) &
(
  bench --seeds=2022 --models=FlexCode-cf_only > "$logs/FlexCode-cf_only-seed2022.log" 2>&1
  for s in 2021 2022; do bench --seeds=$s --models=FlexCode-no_align > "$logs/FlexCode-no_align-seed$s.log" 2>&1; done
) &
wait
