# Sourced by scripts/cpu_beauty_core*.sh: the Beauty CPU pilot's paths and its helpers.
# Expects data and out to be set; makes the log and analysis folders.
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
