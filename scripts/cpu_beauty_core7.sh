#!/usr/bin/env bash
# Issue #13, the CPU pilot's eighth part (docs/results.md, "Eighth session"): the tail. The router row
# (FlexCode-full_user_last, results/cpu_rerun) with one change, then one more: + the history's per-item
# embedding (FlexCode-full_user_last_item_emb), + the item head scoring items by that embedding
# (FlexCode-full_user_last_tied, item_head_tied: as SASRec ties its input and output item embeddings).
# Seed 2020, both rows side by side; each checkpoint then swept over the head's 20 proposed candidates x
# item_head_shrink τ in {0, 3, 10}, chosen on validation. Full Amazon_Beauty, 2-core CPU, one torch
# thread per run, two lanes, ~1 h 10 min with the stage caches of core6.sh in cache/ (their seed).
# Usage: bash scripts/cpu_beauty_core7.sh [DATA_PATH] [OUT]   (OUT default results/cpu_rerun)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun}"
. "$(dirname "$0")/cpu_beauty_common.sh"
seed=2020
for row in FlexCode-full_user_last_tied FlexCode-full_user_last_item_emb; do
  (
    bench --item_head_candidates=0 --seeds=$seed --models=$row > "$logs/$row-seed$seed.log" 2>&1
    python -m recbole_flexcode.diagnose "$(checkpoint $row-seed$seed)" --trust --threads=1 --candidates_sweep=20 \
      --shrink_sweep=0,3,10 "--out=$out/Amazon_Beauty/analysis/shrink-$row-seed$seed.json" > "$logs/shrink-$row-seed$seed.log" 2>&1
  ) &
done
wait
