#!/usr/bin/env bash
# Issue #13, the CPU pilot's eighth part (docs/results.md, "Eighth session"): the tail. The router row
# (FlexCode-full_user_last, results/cpu_rerun) with one change, then one more: + the history's per-item
# embedding (FlexCode-full_user_last_item_emb), + the item head scoring items by that embedding
# (FlexCode-full_user_last_tied, item_head_tied: as SASRec ties its input and output item embeddings).
# The tied row on seeds 2020 and 2021, the untied middle row on seed 2020, three lanes side by side; the
# third starts once the first has cached seed 2020's stages, so the two seed-2020 rows share them. Then the
# router row itself again on both seeds, on these stage caches: rebuilt on another machine, the stages
# come out different (the tokenizer's cache key covers the embeddings and changed), so the ablation
# compares rows on one machine's caches. Each checkpoint is swept over the head's 20 proposed candidates x
# item_head_shrink τ in {0, 3, 10}, chosen on validation. Full Amazon_Beauty from empty stage caches,
# 2-core CPU, one torch thread per run, ~2 h 20 min. (This session ran it into /tmp/rerun and copied the
# folder to results/cpu_rerun2: results/cpu_rerun holds the other machine's router row.)
# Usage: bash scripts/cpu_beauty_core7.sh [DATA_PATH] [OUT]   (OUT default results/cpu_rerun2)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun2}"
. "$(dirname "$0")/cpu_beauty_common.sh"
lane FlexCode-full_user_last_tied 2020 &
lane FlexCode-full_user_last_tied 2021 &
(
  until grep -q "tokenizer: saved" "$logs/FlexCode-full_user_last_tied-seed2020.log" 2>/dev/null; do sleep 30; done
  lane FlexCode-full_user_last_item_emb 2020
) &
wait
lane FlexCode-full_user_last 2020 &
lane FlexCode-full_user_last 2021 &
wait
