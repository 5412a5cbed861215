#!/usr/bin/env bash
# Issue #13, the CPU pilot's eighth part, third seed (docs/results.md, "Ninth session"): the router row
# (FlexCode-full_user_last) and the tied row (FlexCode-full_user_last_tied) on seed 2022, into the same
# folder as scripts/cpu_beauty_core7.sh's seeds 2020 and 2021, so that all rows of the tail ablation stand
# on one machine's stage caches (the text embeddings are shared; seed 2022's CF SASRec and tokenizer are
# built by the first lane, the second starts once they are cached). Each checkpoint is swept over the
# head's 20 proposed candidates x item_head_shrink τ in {0, 3, 10}, chosen on validation. 2-core CPU, one
# torch thread per run, ~1 h 15 min with the text embeddings cached.
# Usage: bash scripts/cpu_beauty_core8.sh [DATA_PATH] [OUT]   (OUT default results/cpu_rerun2)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun2}"
. "$(dirname "$0")/cpu_beauty_common.sh"
lane FlexCode-full_user_last_tied 2022 &
(
  until grep -q "tokenizer: saved" "$logs/FlexCode-full_user_last_tied-seed2022.log" 2>/dev/null; do sleep 30; done
  lane FlexCode-full_user_last 2022
) &
wait
