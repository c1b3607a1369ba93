#!/usr/bin/env bash
# The one GPU session: engine benchmark (bf16, batch 1/16/64) and worker batching on a lent
# H100/H200. Run by the device tool from the repo root with .whl carried (open_clip, ftfy,
# wcwidth wheels); results land in $OUT.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch, open_clip; print(torch.__version__, torch.cuda.get_device_name(0))"
timeout 360 python3 benchmarks/engine_bench.py --device cuda --dtype bf16 \
    --batch-sizes 1,16,64 --repeats 3 --timeout 200 --json "$OUT/engine_gpu.json" \
    2>&1 | tee "$OUT/engine_gpu.log"
timeout 150 python3 benchmarks/worker_bench.py --engine-only --device cuda --dtype bf16 \
    --preset d16 --jobs 128 --batch-sizes 1,8,16,32,64 --json "$OUT/worker_gpu.json" \
    2>&1 | tee "$OUT/worker_gpu.log"
