#!/usr/bin/env bash
# Issue #13, the CPU pilot's seventh part (docs/results.md, "The strengthened core, seventh session"): the
# router row (FlexCode-full_user_last, Beauty's FlexCode section) trained again from empty stage caches on a
# fresh machine, seeds 2020 and 2021 side by side (the earlier checkpoints were not kept), then each
# checkpoint swept over item_head_shrink (τ: a rare item's path score shrunk towards the item head's) with
# the head's 20 proposed candidates, chosen on validation. Full Amazon_Beauty, 2-core CPU, one torch
# thread per run, two lanes side by side, ~1 h 45 min. The rows write to a folder of their own (OUT, default
# results/cpu_rerun): they were made from empty stage caches on another machine, so they sit beside
# results/cpu_fast's records of the same rows rather than among them. (This session ran them into
# /tmp/rerun and copied the folder.)
# Usage: bash scripts/cpu_beauty_core6.sh [DATA_PATH] [OUT]
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun}"
. "$(dirname "$0")/cpu_beauty_common.sh"
for seed in 2020 2021; do
  (
    bench --item_head_candidates=0 --seeds=$seed --models=FlexCode-full_user_last > "$logs/FlexCode-full_user_last-seed$seed.log" 2>&1
    shrink FlexCode-full_user_last-seed$seed 0,3,10,30,100
  ) &
  sleep 30  # the first lane writes the text-embedding cache a little ahead
done
wait
