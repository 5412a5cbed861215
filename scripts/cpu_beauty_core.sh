#!/usr/bin/env bash
# Issue #13, the CPU pilot's second part: the paper's claims and the item head's candidates on the
# strengthened core (docs/results.md, "The strengthened core, continued"). Full Amazon_Beauty, 2-core
# CPU, one torch thread per run, two lanes side by side, ~2.5 h. Every FlexCode row trains Beauty's
# FlexCode section (properties/dataset/Amazon_Beauty.yaml: the short schedule and the item head) at 0
# proposed candidates; the candidates are then chosen per checkpoint on validation with diagnose, which
# re-evaluates a trained model without retraining. Each command here ran on its own in that session;
# this file puts them in one place, in the order they ran (stage caches: scripts/cpu_beauty_pilot.sh).
# The rows cf_only, fix (both seeds) and no_align ran before the section gained item_head_candidates,
# without --item_head_candidates=0, which then changed nothing; each run JSON holds its exact command.
# Usage: bash scripts/cpu_beauty_core.sh [DATA_PATH] [OUT]   (defaults: ../shared/datasets results/cpu_fast)
. "$(dirname "$0")/cpu_beauty_common.sh"
flex() { bench --item_head_candidates=0 --item_head_user=mean "$@"; }  # the section's later settings taken back
sweep() {  # ROW [diagnose flags]: choose the head's candidates (and weight) on validation, test them
  local row=$1; shift
  python -m recbole_flexcode.diagnose "$(checkpoint "$row")" --trust --candidates_sweep=0,20 "$@" \
    "--out=$out/Amazon_Beauty/analysis/candidates_sweep-$row.json" > "$logs/candidates_sweep-$row.log" 2>&1
}
(  # lane 1
  flex --seeds=2020 --models=FlexCode-cf_only > "$logs/cf_only_head.log" 2>&1
  flex --seeds=2020 --models=FlexCode-fix > "$logs/fix_head.log" 2>&1
  flex --seeds=2020 --models=FlexCode-no_align > "$logs/no_align_head.log" 2>&1
  flex --seeds=2020 --models=FlexCode-layers_2x2 > "$logs/layers_2x2_head.log" 2>&1
  sweep FlexCode-fix-seed2021
  flex --seeds=2020 --models=FlexCode-fix_cf1 > "$logs/fix_cf1_head.log" 2>&1
) &
(  # lane 2 (seed 2021's FlexCode-item_head checkpoint comes from scripts/cpu_beauty_pilot.sh)
  sweep FlexCode-item_head-seed2020 --rescore_sweep=1,2 --candidates_sweep=0,20,50,100
  sweep FlexCode-item_head-seed2021
  flex --seeds=2021 --models=FlexCode-fix > "$logs/fix_head_2021.log" 2>&1
  sweep FlexCode-fix-seed2020
  bench --seeds=2020 --epochs=30 --models=SASRec-dropout02 > "$logs/sasrec_dropout02.log" 2>&1
) &
wait
python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty "--out=$out" --tables-only \
  --models=FlexCode,FlexCode-item_head,FlexCode-cf_only,FlexCode-fix,FlexCode-no_align,FlexCode-layers_2x2,FlexCode-fix_cf1,SASRec-dropout02
