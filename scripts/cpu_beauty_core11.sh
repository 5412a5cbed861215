#!/usr/bin/env bash
# Issue #13, twelfth session (docs/results.md, "Twelfth session"): the fixed split 1 CF + 2 semantic tokens
# (FlexCode-fix_cf1, the best row on validation in results/cpu_rerun4) on this machine's stages, three
# seeds, each checkpoint then swept over the head's candidates (20, 50) and the shrinkage τ (0, 3, 5, 10)
# on validation, which gives the head/tail trade of every setting; and one training change for the tail:
# the same row with dropout 0.1 (FlexCode-fix_cf1_dropout01, seed 2021), since its validation peaked before
# the last epoch on two seeds of three in results/cpu_rerun4.
#   first: the text embeddings (seed-independent) on both cores, so the lanes do not both build them
#   lane 1: FlexCode-fix_cf1 seeds 2020, 2022 (each then swept)
#   lane 2: FlexCode-fix_cf1 seed 2021 (then swept), FlexCode-fix_cf1_dropout01 seed 2021 (then swept)
# ~2 h on a 2-core machine. Usage: bash scripts/cpu_beauty_core11.sh [DATA_PATH] [OUT]
# (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
# ROW SEED: the trained row, then its checkpoint under every candidates x τ pair on validation (shrink-ROW-seedSEED)
swept() {
  row $1 $2
  python -m recbole_flexcode.diagnose "$(checkpoint $1-seed$2)" --trust --threads=1 --candidates_sweep=20,50 \
    --shrink_sweep=0,3,5,10 "--out=$out/Amazon_Beauty/analysis/shrink-$1-seed$2.json" > "$logs/shrink-$1-seed$2.log" 2>&1
}
bench --threads=2 --stage=embed --seeds=2020 --models=FlexCode-fix_cf1 > "$logs/stage-embed.log" 2>&1
(
  swept FlexCode-fix_cf1 2020
  swept FlexCode-fix_cf1 2022
) &
(
  swept FlexCode-fix_cf1 2021
  swept FlexCode-fix_cf1_dropout01 2021
) &
wait
