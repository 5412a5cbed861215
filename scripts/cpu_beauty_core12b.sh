#!/usr/bin/env bash
# Issue #13, thirteenth session: FlexCode against SASRec on the same test rows, by training count x days
# since the target's latest training interaction (diagnose --by_target --rows_out, analysis.paired). The
# SASRec checkpoints of results/cpu_rerun3 were lost with their machine; RecBole's SASRec reproduces
# exactly across CPU vendors (docs/results.md, "Tenth session"), so seed 2020 is retrained to /tmp (its run
# JSON stays out of the tables) once scripts/cpu_beauty_core12.sh's second lane has finished, and paired
# with the FlexCode rows of seed 2020 in results/cpu_rerun5 that have checkpoints.
# ~45 min on one core. Usage: bash scripts/cpu_beauty_core12b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
analysis=$out/Amazon_Beauty/analysis
until [ -f "$out/Amazon_Beauty/runs/FlexCode-seed2020.json" ]; do sleep 30; done
python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty "--data_path=$data" --out=/tmp/sas20 --show_progress=False \
  --threads=1 --epochs=30 --seeds=2020 --models=SASRec > "$logs/SASRec-seed2020-retrain.log" 2>&1
cp /tmp/sas20/Amazon_Beauty/runs/SASRec-seed2020.json "$analysis/SASRec-seed2020-retrain.json"
# ROW CHECKPOINT: the checkpoint's rows and strata at its trained settings (rows-ROW.npz, by_target-ROW.json)
rows() {
  python -m recbole_flexcode.diagnose "$2" --trust --threads=1 --by_target "--rows_out=$analysis/rows-$1.npz" \
    "--out=$analysis/by_target-$1.json" > "$logs/by_target-$1.log" 2>&1
}
rows SASRec-seed2020 "$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" "$analysis/SASRec-seed2020-retrain.json")"
for row in FlexCode-fix_cf1_dropout01-seed2020 FlexCode-fix_cf1-seed2020 FlexCode-dropout01-seed2020 FlexCode-seed2020; do
  [ -f "$analysis/rows-$row.npz" ] || rows $row "$(checkpoint $row)"
  python -m recbole_flexcode.analysis.paired "$analysis/rows-SASRec-seed2020.npz" "$analysis/rows-$row.npz" \
    --names=SASRec,${row%-seed2020} "--out=$analysis/paired-SASRec-$row.md" > /dev/null
done
