#!/usr/bin/env bash
# Run benchmark jobs as parallel processes on one machine, one process per (row, seed).
#
# Small sequential models leave a modern GPU mostly idle, so one process per job keeps it busy;
# each process is the ordinary resumable runner (python -m recbole_flexcode.benchmark) writing its
# own runs/<row>-seed<seed>.json, and the tables are rewritten from all run files at the end.
#
#   scripts/parallel_benchmark.sh DATASET OUT LOGDIR "ROW:SEED ROW:SEED ..." [--key=value ...]
#
# JOB_TIMEOUT (seconds, optional): SIGINT a job still running after that long (the runner keeps
# finished runs and exits 130); pair it with --train_time_budget so runs end on their own first.
# OMP_NUM_THREADS defaults to 1 per job. Exit status: 0 when every job succeeded, else 1.
set -u
if [ $# -lt 4 ]; then
  sed -n 2,13p "$0" >&2
  exit 2
fi
dataset=$1 out=$2 logs=$3 jobs=$4
shift 4
mkdir -p "$logs"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1
guard=()
if [ -n "${JOB_TIMEOUT:-}" ]; then guard=(timeout -s INT -k 30 "$JOB_TIMEOUT"); fi
pids=()
names=()
for job in $jobs; do
  row=${job%%:*} seed=${job##*:}
  "${guard[@]}" python3 -m recbole_flexcode.benchmark --dataset="$dataset" --out="$out" \
    --models="$row" --seeds="$seed" "$@" >"$logs/$row-seed$seed.log" 2>&1 &
  pids+=($!)
  names+=("$row:$seed")
  sleep 1  # staggered starts: RecBole's log files are named to the second
done
status=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    echo "ok     ${names[$i]}"
  else
    echo "FAILED ${names[$i]} (exit $?; see $logs/${names[$i]%%:*}-seed${names[$i]##*:}.log)"
    status=1
  fi
done
python3 -m recbole_flexcode.benchmark --dataset="$dataset" --out="$out" --tables-only >/dev/null
exit $status
