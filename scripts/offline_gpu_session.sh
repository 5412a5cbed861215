#!/usr/bin/env bash
# How the committed Amazon_Beauty GPU numbers were produced (results/Amazon_Beauty/): one offline
# H100 machine (16 cores, no internet), reached through this workplace's device tool, with the
# repository and these carried beside it:
#   .whl/*.whl      recbole 1.2.1 and the dependencies the machine's image lacks (pandas 2.3.3,
#                   pytz, tzdata, colorlog, texttable, thop), installed with --no-deps into /tmp/site
#   .whl/beauty.tgz ../shared/datasets/Amazon_Beauty (unpacked to /tmp/data)
#   CARRYDIR/cache  FlexCode's cached stages (text embeddings, CF SASRec, tokenizers) made on a
#                   CPU box without training (what --stage=tokenize does;
#                   this session used an equivalent ad-hoc script), so GPU time goes to training only
# Then: an optional CUDA MPS daemon (MPS=1: lets the parallel jobs' small kernels share the GPU;
# without it 12 jobs time-sliced the GPU and each got a quarter of the epochs), the optional
# cost benchmark (COST=1), and scripts/parallel_benchmark.sh with a train_time_budget that ends
# every job inside the machine's 10-minute command limit. Results come back as $OUT/res.tgz.
#
#   MPS=1 SKIP_SMOKE=1 OVERHEAD=70 bash scripts/offline_gpu_session.sh CARRYDIR "ROW:SEED ..." --epochs=200
set -u
T0=$SECONDS
carry=$1 jobs=$2; shift 2
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p /tmp/data && tar xzf .whl/beauty.tgz -C /tmp/data && mkdir -p cache && cp -r "$carry"/cache/* cache/ || exit 4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
python3 -c "import torch,pandas,numpy,recbole,recbole_flexcode;print('torch',torch.__version__,'pandas',pandas.__version__,'numpy',numpy.__version__,'cuda',torch.cuda.is_available())" || exit 5
mkdir -p $OUT
if [ -n "${MPS:-}" ] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mpslog
  mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
  nvidia-cuda-mps-control -d && echo "MPS daemon started"
  if timeout 60 python3 -c "import torch; print('cuda under MPS ok', torch.ones(2, device='cuda').sum().item())"; then
    echo "MPS in use"
  else
    echo "MPS client failed: stopping MPS"; echo quit | nvidia-cuda-mps-control; sleep 2
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  fi
elif [ -n "${MPS:-}" ]; then
  echo "no nvidia-cuda-mps-control: plain time-slicing"
fi
if [ -n "${COST:-}" ]; then
  timeout 240 python3 -m recbole_flexcode.benchmark.cost --device=cuda --sizes=10000,100000,1000000,10000000 --out=/tmp/cost > $OUT/cost.log 2>&1; echo "cost rc=$? at $((SECONDS - T0)) s"; tail -n 5 $OUT/cost.log
  tar czf $OUT/cost.tgz -C /tmp cost
fi
if [ -z "${SKIP_SMOKE:-}" ]; then
  timeout 150 python3 -m recbole_flexcode.benchmark --dataset=ml-100k --models=FlexCode-decoupled --seeds=2020 --epochs=2 \
    --router_warmup_epochs=1 --out=/tmp/smoke --show_progress=False > $OUT/smoke.log 2>&1 || { tail -n 80 $OUT/smoke.log; exit 6; }
  python3 -c "import json,glob;[print('smoke',p,json.load(open(p))['test_result'],json.load(open(p))['benchmark']['device']) for p in glob.glob('/tmp/smoke/ml-100k/runs/*.json')]"
fi
left=$((585 - (SECONDS - T0)))
budget=$((left - ${OVERHEAD:-120}))
echo "smoke done at $((SECONDS - T0)) s; jobs get $left s, train_time_budget $budget s"
( while sleep 60; do echo "t=$((SECONDS - T0))s: $(grep -l 'Traceback' /tmp/res/logs/*.log 2>/dev/null | wc -l) tracebacks; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"; done ) &
mon=$!
JOB_TIMEOUT=$left scripts/parallel_benchmark.sh Amazon_Beauty /tmp/res /tmp/res/logs "$jobs" \
  --data_path=/tmp/data --show_progress=False --train_time_budget=$budget "$@"
kill $mon 2>/dev/null
tar czf $OUT/res.tgz -C /tmp res
for f in /tmp/res/logs/*.log; do echo "== $f"; grep -E "done in|FAILED|Error|error:" $f | tail -n 3; done
echo "total $((SECONDS - T0)) s"
