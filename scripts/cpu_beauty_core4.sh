#!/usr/bin/env bash
# Issue #13, the CPU pilot's fifth part (docs/results.md, "The strengthened core, fifth session"): the
# width-128 point of the SASRec grid run to its end (the tuned SASRec row), the PATA router on seeds 2021
# and 2022 (router vs fixed split on three seeds: the Beauty default's variant), a token budget of 4 with
# the fixed split (L = 3 -> 4 on the strengthened core) and CF-only on seeds 2021 and 2022. Full Amazon_Beauty,
# 2-core CPU, one torch thread per run, two lanes side by side, ~1 h 50 min. Each command here ran in that
# session, in this order (stage caches: scripts/cpu_beauty_pilot.sh; the L = 4 tokenizers are fitted by
# their row's first run). FlexCode rows train at 0 proposed candidates; sweep20 then evaluates the item
# head's 20 candidates on valid and test, and validation chooses between 0 and 20.
# Usage: bash scripts/cpu_beauty_core4.sh [DATA_PATH] [OUT]   (defaults: ../shared/datasets results/cpu_fast)
. "$(dirname "$0")/cpu_beauty_common.sh"
(  # lane 1
  bench --seeds=2020 --epochs=30 --models=SASRec-h128 > "$logs/sasrec_h128_2020.log" 2>&1
  bench --item_head_candidates=0 --seeds=2022 --models=FlexCode-cf_only_user_last > "$logs/cf_only_user_last_2022.log" 2>&1
  sweep20 FlexCode-cf_only_user_last-seed2022
) &
(  # lane 2
  for seed in 2021 2022; do
    bench --item_head_candidates=0 --seeds=$seed --models=FlexCode-full_user_last > "$logs/full_user_last_$seed.log" 2>&1
    sweep20 FlexCode-full_user_last-seed$seed
  done
  bench --item_head_candidates=0 --seeds=2020 --models=FlexCode-fix_user_last-L4 > "$logs/fix_user_last_L4_2020.log" 2>&1
  sweep20 FlexCode-fix_user_last-L4-seed2020
  bench --item_head_candidates=0 --seeds=2021 --models=FlexCode-cf_only_user_last > "$logs/cf_only_user_last_2021.log" 2>&1
  sweep20 FlexCode-cf_only_user_last-seed2021
) &
wait
rows=SASRec,SASRec-dropout02,SASRec-lr0003,SASRec-h128,FlexCode,FlexCode-item_head,FlexCode-full_user_last,FlexCode-fix,FlexCode-fix_user_last,FlexCode-cf_only_user_last,FlexCode-fix_no_align_user_last,FlexCode-semantic_only_user_last,FlexCode-semantic_only,FlexCode-cf_only,FlexCode-no_align,FlexCode-layers_2x2,FlexCode-fix_cf1,FlexCode-semantic_only_head,FlexCode-fix_user_last-L4
tables "$rows"
