#!/usr/bin/env bash
# Issue #13, fourteenth session: the third seed (2022) of what the thirteenth session measured on seeds
# 2020/2021 (results/cpu_rerun5, this machine's stages), so the dropout and tail-floor claims rest on three
# seeds. SASRec seed 2022 is not retrained: results/cpu_fast's run (same AMD machine type, same command)
# is copied, as seed 2021's was, since RecBole's SASRec reproduces to 4 decimals here.
#   lane 1: seed 2022's stages (both threads), then FlexCode-fix_cf1_dropout01, its tail-floor sweep at
#           SASRec seed 2020's validation tail (the floor the other two seeds used), then FlexCode-fix_cf1
#   lane 2: once the stages exist, FlexCode (the router, dropout 0.1) and FlexCode-dropout0
# ~1 h 40 min on a 2-core machine.
# As run, each lane stopped after its first row: FlexCode-fix_cf1 and FlexCode-dropout0 on seed 2022 (the
# dropout-0 twins of settings already adopted) were cut after 30 min for scripts/cpu_beauty_core13c.sh, which
# also runs lane 1's tail-floor sweep.
# Usage: bash scripts/cpu_beauty_core13.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
row() { bench --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1; }
cp results/cpu_fast/Amazon_Beauty/runs/SASRec-seed2022.json "$out/Amazon_Beauty/runs/"
staged=$logs/stages-seed2022.done
rm -f "$staged"
(
  bench --threads=2 --stage=tokenize --seeds=2022 --models=FlexCode > "$logs/stages-seed2022.log" 2>&1 && touch "$staged"
  row FlexCode-fix_cf1_dropout01 2022
  python -m recbole_flexcode.diagnose "$(checkpoint FlexCode-fix_cf1_dropout01-seed2022)" --trust --threads=1 \
    --candidates_sweep=20 --shrink_sweep=3,5,10 --tail_floor=0.0245 \
    "--out=$out/Amazon_Beauty/analysis/floor-FlexCode-fix_cf1_dropout01-seed2022.json" \
    > "$logs/floor-FlexCode-fix_cf1_dropout01-seed2022.log" 2>&1
  row FlexCode-fix_cf1 2022
) &
(
  until [ -f "$staged" ]; do sleep 30; done
  row FlexCode 2022
  row FlexCode-dropout0 2022
) &
wait
