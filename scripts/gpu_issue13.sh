#!/usr/bin/env bash
# The prepared GPU command for issue #13 (not yet run: no GPU was lent when it was written).
#
# What it runs, in one call of at most 10 minutes on one H200/H100 under CUDA MPS (through
# scripts/offline_gpu_session.sh, whose header says what to carry: wheels, the Beauty data, and the
# stage caches): Amazon_Beauty, seeds 2020-2022, the rows that separate what each change does —
#   SASRec                    RecBole's baseline, same protocol
#   FlexCode                  today's default (64-d nn.Transformer, pooled history)
#   FlexCode-item_emb         + free history item embedding (input-side item capacity)
#   FlexCode-item_head        + item-level output head (output-side item capacity)
#   FlexCode-recipe           T5 4+4 at the public recipes' size, token-level history, AdamW + cosine, bf16
#   FlexCode-recipe_item_head the same + the item head
#   FlexCode-tiger            the recipe on semantic IDs only (the TIGER-style row; target 0.0384)
# Build the stage caches on a CPU box first, so GPU time goes to training (CF SASRec is ~30 min per
# seed on 2 CPU cores; the text embeddings and tokenizers are minutes):
#   python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty --data_path=../shared/datasets \
#     --models=FlexCode,FlexCode-tiger --seeds=2020,2021,2022 --stage=tokenize
# (every FlexCode row above shares the tokenizer of FlexCode or FlexCode-tiger for its seed), then
#   MPS=1 SKIP_SMOKE=1 OVERHEAD=70 bash scripts/gpu_issue13.sh CARRYDIR
# The CPU pilot that chose these rows: results/cpu/Amazon_Beauty_u10/.
set -u
carry=$1; shift
jobs=""
for row in SASRec FlexCode FlexCode-item_emb FlexCode-item_head FlexCode-recipe FlexCode-recipe_item_head FlexCode-tiger; do
  for seed in 2020 2021 2022; do jobs="$jobs $row:$seed"; done
done
exec bash "$(dirname "$0")/offline_gpu_session.sh" "$carry" "$jobs" --epochs=200 "$@"
