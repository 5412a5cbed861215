#!/usr/bin/env bash
# Issue #13, the CPU pilot's third part (docs/results.md, "The strengthened core, third session"):
# the fixed split's third seed, RecBole's SASRec at seeds 2021 and 2022 on the same CPU, the head's
# popularity prior and its mean_last user vector, and the semantic-only row with the item head. Full
# Amazon_Beauty, 2-core CPU, one torch thread per run, two lanes side by side, ~2 h 10 min. Each
# command here ran in that session; this file puts them in one place, in the order they ran (stage
# caches: scripts/cpu_beauty_pilot.sh). FlexCode rows are trained at 0 proposed candidates and the
# inference settings are then chosen per checkpoint on validation with diagnose. The section's
# item_head_user: mean_last entered Amazon_Beauty.yaml after the rows below had started; the rows
# that use it name it (FlexCode-fix_user_last), the others ran with the model default (mean).
# Usage: bash scripts/cpu_beauty_core2.sh [DATA_PATH] [OUT]   (defaults: ../shared/datasets results/cpu_fast)
. "$(dirname "$0")/cpu_beauty_common.sh"
flex() { bench --item_head_candidates=0 --item_head_user=mean "$@"; }
sweep() {  # ROW NAME [diagnose flags]: inference settings chosen on validation, tested; JSON and log named NAME
  local row=$1 name=$2; shift 2
  python -m recbole_flexcode.diagnose "$(checkpoint "$row")" --trust "$@" \
    "--out=$out/Amazon_Beauty/analysis/$name.json" > "$logs/$name.log" 2>&1
}
(  # lane 1
  flex --seeds=2022 --models=FlexCode-fix > "$logs/fix_head_2022.log" 2>&1
  sweep FlexCode-fix-seed2022 candidates_sweep-FlexCode-fix-seed2022 --candidates_sweep=0,20
  sweep FlexCode-fix-seed2022 candidates20-FlexCode-fix-seed2022 --candidates_sweep=20  # the section's K, tested
  for seed in 2020 2021 2022; do
    bench --item_head_candidates=0 --seeds=$seed --models=FlexCode-fix_user_last > "$logs/fix_user_last_$seed.log" 2>&1
    if [ $seed = 2020 ]; then extra="--prior_sweep=0,0.5"; else extra=""; fi
    sweep FlexCode-fix_user_last-seed$seed candidates_sweep-FlexCode-fix_user_last-seed$seed --candidates_sweep=0,20 $extra
  done
  sweep FlexCode-fix_user_last-seed2020 candidates50-FlexCode-fix_user_last-seed2020 --candidates_sweep=20,50
) &
(  # lane 2
  sweep FlexCode-fix-seed2020 prior_sweep-FlexCode-fix-seed2020 --candidates_sweep=20 --prior_sweep=0,0.5,1,2
  bench --seeds=2021 --epochs=30 --models=SASRec > "$logs/sasrec_2021.log" 2>&1
  flex --seeds=2020 --models=FlexCode-semantic_only_head > "$logs/semantic_only_head_2020.log" 2>&1
  sweep FlexCode-semantic_only_head-seed2020 candidates_sweep-FlexCode-semantic_only_head-seed2020 \
    --candidates_sweep=0,20 --prior_sweep=0,0.5
  bench --seeds=2022 --epochs=30 --models=SASRec > "$logs/sasrec_2022.log" 2>&1
) &
wait
python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty "--out=$out" --tables-only \
  --models=SASRec,FlexCode,FlexCode-item_head,FlexCode-cf_only,FlexCode-fix,FlexCode-fix_user_last,FlexCode-no_align,FlexCode-layers_2x2,FlexCode-fix_cf1,FlexCode-semantic_only,FlexCode-semantic_only_head,SASRec-dropout02
