#!/usr/bin/env bash
# The prepared GPU command for issue #13 (not yet run: no GPU was lent when it was written).
#
# What it runs, in one call of at most 10 minutes on one H200/H100 under CUDA MPS (through
# scripts/offline_gpu_session.sh, whose header says what to carry: wheels, the Beauty data, and the
# stage caches): Amazon_Beauty, seeds 2020-2022. FlexCode's Beauty settings are
# properties/dataset/Amazon_Beauty.yaml's FlexCode section (the short schedule and the item head,
# chosen by the full-data CPU pilot, scripts/cpu_beauty_pilot.sh and core2-8); each row takes one change back or adds one:
#   SASRec                    RecBole's baseline, same protocol
#   FlexCode-model_defaults   the first H100 runs' configuration (2 + 2 layers, dropout 0.2, constant lr 0.001)
#   FlexCode-no_item_head     the short schedule alone
#   FlexCode-full_user_last   + the item head reading the latest history state beside the mean,
#                             proposing 20 candidates (the untied core)
#   FlexCode-dropout0         + the head tied to a per-item history embedding, path scores shrunk by τ 3
#                             (adopted on 3 CPU seeds, docs/results.md): Beauty's settings before dropout
#   FlexCode-mean_last        + dropout 0.1 (adopted on 2 CPU seeds x 2 rows, docs/results.md, thirteenth
#                             session): Beauty's settings before the last-state head
#   FlexCode-expected_loss    + the head reading the latest history state alone (item_head_user: last;
#                             adopted on 3 CPU seeds x 2 rows, fifteenth session), τ 5 (sixteenth session):
#                             Beauty's settings before the decoupled router
#   FlexCode                  the Beauty settings: + the decoupled router (router_mode: decoupled; above the
#                             expected-loss router on validation on 3 CPU seeds, seventeenth session)
#   FlexCode-fix_cf1_dropout01_last  the same with the fixed split 1 CF + 2 semantic tokens instead of the
#                             router: the best row on validation on every CPU seed (eleventh to fifteenth
#                             sessions)
#   FlexCode-semantic_only    the Beauty settings on semantic IDs only
#   FlexCode-tiger            T5 4+4 at the public recipes' size over token histories, semantic IDs only,
#                             no item head (the TIGER-style row; target 0.0384)
#   SASRec-h128, -dropout02, -len50, -lr0003 (seed 2020 only): the grid the tuned SASRec row is chosen
#                             from on validation; its other two seeds need a second call
# No --epochs: the short schedule's cosine ends with its tenth epoch; SASRec keeps overall.yaml's 50
# with early stopping; the session's train_time_budget ends whatever is still running.
# Build the stage caches on a CPU box first, so GPU time goes to training (CF SASRec ~13 min per
# seed on one core of the 2-core box; seeds 2020-2022 are in cache/Amazon_Beauty/ of the machine
# that ran the pilot):
#   python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty --data_path=../shared/datasets \
#     --models=FlexCode,FlexCode-semantic_only --seeds=2020,2021,2022 --stage=tokenize
# (the aligned tokenizer of a seed serves the router and fixed-split rows, the unaligned one the
# semantic-only rows; each is ~3 min on the CPU once the CF embeddings exist), then
#   MPS=1 SKIP_SMOKE=1 OVERHEAD=70 bash scripts/gpu_issue13.sh CARRYDIR
set -u
carry=$1; shift
jobs=""
for row in SASRec FlexCode-model_defaults FlexCode-no_item_head FlexCode-full_user_last FlexCode-dropout0 FlexCode-mean_last FlexCode-expected_loss FlexCode FlexCode-fix_cf1_dropout01_last FlexCode-semantic_only FlexCode-tiger; do
  for seed in 2020 2021 2022; do jobs="$jobs $row:$seed"; done
done
for row in SASRec-h128 SASRec-dropout02 SASRec-len50 SASRec-lr0003; do jobs="$jobs $row:2020"; done
exec bash "$(dirname "$0")/offline_gpu_session.sh" "$carry" "$jobs" "$@"
