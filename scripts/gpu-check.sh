#!/usr/bin/env bash
# The GPU verification, in order, each step under its own time limit, every output in $OUT:
#   1. the device tests (tests/test_device.py, the CUDA-graph tests, augmentation on the GPU)
#   2. the speedrun on the GPU: speedrun_gpu (CUDA-graph step) against the Keras CNN, 5 seeds
#   3. the GPU bench: mnistlab (graph path) vs bare vs textbook, peak CUDA memory
#   4. the whole test suite
# Usage (about 12 minutes in all on one H200, leaving room to rerun a step):
#   OUT=outputs/gpu-check MNISTLAB_DATA_DIR=/path/to/data bash scripts/gpu-check.sh
# The tables go into docs/performance.md (speedrun_gpu and bench_gpu sections), written by the tools.
set -u
OUT=${OUT:-outputs/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
step() {  # step NAME SECONDS COMMAND...: run, keep stdout+stderr, record exit code and seconds
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name rc=$? seconds=$((SECONDS - start))" | tee -a "$OUT/steps.txt"
}
{ nvidia-smi; "$PY" -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda',
  torch.version.cuda, 'lightning', pl.__version__, torch.cuda.get_device_name(0))"; } > "$OUT/machine.txt" 2>&1
step device-tests 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_cuda_graph.py \
    tests/test_augment.py -k "gpu or cuda or device or graph or resumes"
step speedrun 240 "$PY" -m mnistlab.speedrun recipe=speedrun_gpu "seeds=[0,1,2,3,4]" readme=true \
    readme_section=speedrun_gpu "runs_dir=$OUT/speedrun"
step bench 180 "$PY" -m mnistlab.bench --device gpu --rounds 3 --readme docs/performance.md \
    --readme-section bench_gpu --json
workers=$("$PY" -c "import xdist; print('-n 4')" 2>/dev/null)  # the image's packages: xdist may be absent
step suite 420 "$PY" -m pytest -q -p no:cacheprovider $workers
cp docs/performance.md "$OUT/performance.md"
cat "$OUT/steps.txt"
