#!/usr/bin/env bash
# One GPU session's measurements on a lent H100/H200, run by the device tool from the repo root
# with .whl carried (open_clip, ftfy and wcwidth wheels: the device image lacks them):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       open_clip_torch==3.3.0 ftfy wcwidth -d .whl
# In order of what a short session should get first: CUDA graphs against the plain engine,
# worker batching, the engine benchmark (bf16, batch 1/16/64), then the decoder's paths.
# Results land in $OUT: one JSON file per script and run.log (the device tool returns only a
# few files, so there is one log for all).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import torch, open_clip; print(torch.__version__, torch.cuda.get_device_name(0))"
CKPT=/tmp/d16-random
python3 -c "
from generation.engine.config import VarClipConfig
from generation.engine.pipeline import TextToImagePipeline
TextToImagePipeline.from_config(VarClipConfig.from_preset('d16'), seed=0).save_pretrained('$CKPT')
" || exit 1
timeout 90 python3 benchmarks/cuda_graphs.py --device cuda --dtype bf16 \
    --batch-sizes 1,4,16,64 --repeats 5 --ckpt $CKPT --json "$OUT/cuda_graphs.json"
timeout 60 python3 benchmarks/worker_bench.py --engine-only --device cuda --dtype bf16 \
    --preset d16 --jobs 128 --batch-sizes 1,8,16,32,64 --json "$OUT/worker_gpu.json"
timeout 100 python3 benchmarks/engine_bench.py --device cuda --dtype bf16 --samplers ours \
    --batch-sizes 1,16,64 --repeats 3 --timeout 60 --ckpt $CKPT --json "$OUT/engine_gpu.json"
timeout 60 python3 benchmarks/decode_batching.py --device cuda --dtype bf16 \
    --batch-sizes 1,8,64 --ckpt $CKPT --json "$OUT/decode_batching_bf16.json"
