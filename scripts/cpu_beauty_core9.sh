#!/usr/bin/env bash
# Issue #13, tenth session (docs/results.md, "Tenth session"): the adopted (tied) core's paper claims and the
# cross-machine stage check, every row on one machine's stage caches, on a 2-core CPU with one torch thread
# per lane, into results/cpu_rerun4 (Beauty's FlexCode section: tied head, K 20, τ 3, for every row).
#   lane 1: FlexCode-semantic_only seeds 2020, 2022; then FlexCode and FlexCode-fix, seed 2020, then
#           FlexCode-fix and FlexCode, seed 2022
#   lane 2: scripts/stage_fingerprints.py at seed 2020 (every stage from an empty cache folder, to compare
#           with results/cpu_rerun3's FlexCode-seed2020.json, built on an AMD machine), then
#           FlexCode-semantic_only seed 2021 once lane 1 has cached the text embeddings, then
#           FlexCode-cf_only and FlexCode-no_align, seed 2020, then FlexCode, FlexCode-fix and
#           FlexCode-cf_only, seed 2021
# ~2 h 40 min on a Xeon 2-core machine. Usage: bash scripts/cpu_beauty_core9.sh [DATA_PATH] [OUT]
# (OUT default results/cpu_rerun4)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun4}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
(
  row FlexCode-semantic_only 2020
  row FlexCode-semantic_only 2022
  row FlexCode 2020
  row FlexCode-fix 2020
  row FlexCode-fix 2022
  row FlexCode 2022
) &
(
  python scripts/stage_fingerprints.py --dataset=Amazon_Beauty "--data_path=$data" --seed=2020 \
    > "$out/Amazon_Beauty/analysis/stage_fingerprints-seed2020.json" 2> "$logs/stage_fingerprints-seed2020.log"
  until grep -q "collaborative" "$logs/FlexCode-semantic_only-seed2020.log" 2>/dev/null; do sleep 30; done
  row FlexCode-semantic_only 2021
  row FlexCode-cf_only 2020
  row FlexCode-no_align 2020
  row FlexCode 2021
  row FlexCode-fix 2021
  row FlexCode-cf_only 2021
) &
wait
