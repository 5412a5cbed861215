#!/usr/bin/env bash
# Issue #13, the CPU pilot's sixth part (docs/results.md, "The strengthened core, sixth session"): the tuned
# SASRec (width 128, the grid's best on seed 2020's validation) on seeds 2021 and 2022, the item head's
# vectors from the items' CF and text embeddings (item_head_features: both) on the router row, and a token
# budget of 5 with the fixed split (L = 3 -> 4 -> 5 on the strengthened core). Full Amazon_Beauty, 2-core CPU,
# one torch thread per run, two lanes side by side, ~2 h 10 min. Each command here ran in that session, in
# this order, except that the seed-2022 SASRec first started beside the seed-2021 one and was stopped to make
# room for the features row (stage caches: scripts/cpu_beauty_pilot.sh; the L = 5 tokenizers are fitted by
# their row's first run). FlexCode rows train at 0 proposed candidates; sweep20 then evaluates the item
# head's 20 candidates on valid and test, and validation chooses between 0 and 20.
# Usage: bash scripts/cpu_beauty_core5.sh [DATA_PATH] [OUT]   (defaults: ../shared/datasets results/cpu_fast)
. "$(dirname "$0")/cpu_beauty_common.sh"
# ROW: a finished row's item head alone (its term at weight 1000 orders the beam and the head's own top 20):
# what the generator's path scores add and take away, per popularity group (JSON and log named headalone-ROW)
headalone() {
  python -m recbole_flexcode.diagnose "$(checkpoint "$1")" --trust --threads=1 --rescore_sweep=1000 \
    --candidates_sweep=20 "--out=$out/Amazon_Beauty/analysis/headalone-$1.json" > "$logs/headalone-$1.log" 2>&1
}
(  # lane 1
  bench --seeds=2021 --epochs=30 --models=SASRec-h128 > "$logs/sasrec_h128_2021.log" 2>&1
  bench --item_head_candidates=0 --seeds=2020 --models=FlexCode-fix_user_last-L5 > "$logs/fix_user_last_L5_2020.log" 2>&1
  sweep20 FlexCode-fix_user_last-L5-seed2020
) &
(  # lane 2
  bench --item_head_candidates=0 --seeds=2020 --models=FlexCode-full_user_last_features > "$logs/full_user_last_features_2020.log" 2>&1
  sweep20 FlexCode-full_user_last_features-seed2020
  # beside the two lanes (a third process): seed 2020's head alone, with and without features
  ( headalone FlexCode-full_user_last_features-seed2020; headalone FlexCode-full_user_last-seed2020 ) &
  bench --seeds=2022 --epochs=30 --models=SASRec-h128 > "$logs/sasrec_h128_2022.log" 2>&1
  headalone FlexCode-full_user_last-seed2021
  headalone FlexCode-full_user_last-seed2022
  wait
) &
wait
rows=SASRec,SASRec-dropout02,SASRec-lr0003,SASRec-h128,FlexCode,FlexCode-item_head,FlexCode-full_user_last,FlexCode-full_user_last_features,FlexCode-fix,FlexCode-fix_user_last,FlexCode-cf_only_user_last,FlexCode-fix_no_align_user_last,FlexCode-semantic_only_user_last,FlexCode-semantic_only,FlexCode-cf_only,FlexCode-no_align,FlexCode-layers_2x2,FlexCode-fix_cf1,FlexCode-semantic_only_head,FlexCode-fix_user_last-L4,FlexCode-fix_user_last-L5
tables "$rows"
