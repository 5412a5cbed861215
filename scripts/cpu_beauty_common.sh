# Sourced by scripts/cpu_beauty_core*.sh with their arguments, [DATA_PATH] [OUT] (defaults:
# ../shared/datasets results/cpu_fast): the Beauty CPU pilot's paths and its helpers; makes the log and
# analysis folders.
set -u
data=${1:-../shared/datasets}
out=${2:-results/cpu_fast}
logs=$out/Amazon_Beauty/logs
mkdir -p "$logs" "$out/Amazon_Beauty/analysis"
# one benchmark row on full Amazon_Beauty, one torch thread (two lanes share the 2-core CPU)
bench() { python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty "--data_path=$data" "--out=$out" \
            --show_progress=False --threads=1 "$@"; }
# the checkpoint a finished row's run JSON names
checkpoint() { python -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" "$out/Amazon_Beauty/runs/$1.json"; }
# ROW: the finished row's checkpoint evaluated with the item head's 20 proposed candidates on valid and
# test (the row trained at 0; validation then chooses between the two, benchmark.selected); JSON and log
# named candidates20-ROW
sweep20() {
  local name=candidates20-$1
  python -m recbole_flexcode.diagnose "$(checkpoint "$1")" --trust --candidates_sweep=20 \
    "--out=$out/Amazon_Beauty/analysis/$name.json" > "$logs/$name.log" 2>&1
}
# ROW TAUS: the finished row's checkpoint at the head's 20 proposed candidates under every item_head_shrink τ
# in TAUS (comma-separated) on validation; the best is tested (JSON and log named shrink-ROW)
shrink() {
  python -m recbole_flexcode.diagnose "$(checkpoint "$1")" --trust --threads=1 --candidates_sweep=20 \
    "--shrink_sweep=$2" "--out=$out/Amazon_Beauty/analysis/shrink-$1.json" > "$logs/shrink-$1.log" 2>&1
}
# ROW SEED: one row and seed trained at 0 candidates, then the sweep (JSON and log named shrink-ROW-seedSEED)
lane() {
  bench --item_head_candidates=0 --seeds=$2 --models=$1 > "$logs/$1-seed$2.log" 2>&1
  shrink $1-seed$2 0,3,10
}
# ROWS (comma-separated): benchmark.md / .csv of those rows, then selected.md (each FlexCode run at the
# head setting its validation chose)
tables() {
  python -m recbole_flexcode.benchmark --dataset=Amazon_Beauty "--out=$out" --tables-only "--models=$1"
  python -m recbole_flexcode.benchmark.selected --dataset=Amazon_Beauty "--out=$out" "--models=$1"
}
# ROW-SEED [TAUS]: the finished run's tail-floor sweep (diagnose --tail_floor) at SASRec seed 2020's validation
# tail, 0.0245, over the head's 20 candidates and every τ in TAUS (default 3,5,10); JSON and log named floor-ROW-SEED
floor() {
  python -m recbole_flexcode.diagnose "$(checkpoint $1)" --trust --threads=1 --candidates_sweep=20 \
    "--shrink_sweep=${2:-3,5,10}" --tail_floor=0.0245 "--out=$out/Amazon_Beauty/analysis/floor-$1.json" \
    > "$logs/floor-$1.log" 2>&1
}
# ROW SEED: the finished run's evaluation rows beside SASRec's on the same test rows (diagnose --by_target, then
# analysis.paired against analysis/rows-SASRec-seedSEED.npz); files by_target-, rows- and paired-SASRec-ROW-seedSEED
beside_sasrec() {
  local a=$out/Amazon_Beauty/analysis run=$1-seed$2
  python -m recbole_flexcode.diagnose "$(checkpoint $run)" --trust --threads=1 --by_target \
    "--rows_out=$a/rows-$run.npz" "--out=$a/by_target-$run.json" > "$logs/by_target-$run.log" 2>&1
  python -m recbole_flexcode.analysis.paired "$a/rows-SASRec-seed$2.npz" "$a/rows-$run.npz" \
    --names=SASRec,${1#FlexCode-} "--out=$a/paired-SASRec-$run.md" > /dev/null
}
