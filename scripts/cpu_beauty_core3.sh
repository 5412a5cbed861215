#!/usr/bin/env bash
# Issue #13, the CPU pilot's fourth part (docs/results.md, "The strengthened core, fourth session"): the
# paper's claims rechecked on the strengthened core (the item head with the mean_last user vector, rows
# trained at 0 proposed candidates, 20 candidates then evaluated per checkpoint with diagnose: selection
# between 0 and 20 on validation), semantic IDs only on three seeds toward the TIGER paper's 0.0384, and
# two more points of the SASRec grid the tuned SASRec row is chosen from. Full Amazon_Beauty, 2-core CPU,
# one torch thread per run, two lanes side by side, ~2 h 10 min. Each command here ran in that session, in
# this order (stage caches: scripts/cpu_beauty_pilot.sh; the unaligned tokenizers of seeds 2021 and 2022,
# which semantic-only needs, are fitted by the first run of their seed, ~3 min).
# Usage: bash scripts/cpu_beauty_core3.sh [DATA_PATH] [OUT]   (defaults: ../shared/datasets results/cpu_fast)
. "$(dirname "$0")/cpu_beauty_common.sh"
flex() { bench --item_head_candidates=0 "$@"; }
(  # lane 1
  for seed in 2020 2021 2022; do
    flex --seeds=$seed --models=FlexCode-semantic_only_user_last > "$logs/semantic_only_user_last_$seed.log" 2>&1
    sweep20 FlexCode-semantic_only_user_last-seed$seed
  done
  # stopped by hand after 20 of its 30 epochs at the session's end (best valid N@10 0.0516 so far; no run file)
  bench --seeds=2020 --epochs=30 --models=SASRec-h128 > "$logs/sasrec_h128_2020.log" 2>&1
) &
(  # lane 2
  for row in full_user_last cf_only_user_last fix_no_align_user_last; do
    flex --seeds=2020 --models=FlexCode-$row > "$logs/${row}_2020.log" 2>&1
    sweep20 FlexCode-$row-seed2020
  done
  bench --seeds=2020 --epochs=30 --models=SASRec-lr0003 > "$logs/sasrec_lr0003_2020.log" 2>&1
) &
wait
python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty "--out=$out" --tables-only \
  --models=SASRec,SASRec-dropout02,SASRec-lr0003,FlexCode,FlexCode-item_head,FlexCode-cf_only,FlexCode-fix,FlexCode-fix_user_last,FlexCode-full_user_last,FlexCode-cf_only_user_last,FlexCode-fix_no_align_user_last,FlexCode-semantic_only_user_last,FlexCode-no_align,FlexCode-layers_2x2,FlexCode-fix_cf1,FlexCode-semantic_only,FlexCode-semantic_only_head
