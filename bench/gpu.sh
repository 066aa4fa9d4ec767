#!/usr/bin/env bash
# The GPU figures issues #4 and #5 ask for, as one run of under 8 minutes on a lent device machine (one H200):
#   training - ViT-B/32, bf16, batch 256: the model wrapper against plain open_clip_train, samples/s, GPU use;
#   VLM      - judge and captioner images/s on a 2B Qwen2-VL architecture (HF backend; vLLM when it is there).
# The device image has PyTorch, transformers and pyarrow but not open_clip or webdataset: run `make gpu-wheels`
# here first, then through the device tool: command `bash bench/gpu.sh`, carry [".whl"], timeout_s 540.
# Each part writes its markdown table to $OUT (bench/out/gpu without the tool); copy the figures into
# docs/benchmarks.md by hand, with the date and the machine.
set -uo pipefail
out=${OUT:-bench/out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled NO_ALBUMENTATIONS_UPDATE=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
status=0
timeout 330 python3 -m bench.training --gpu >"$out/training.md" 2>"$out/training.log" || status=$?
tail -20 "$out/training.log"; cat "$out/training.md"
timeout 150 python3 -m bench.gpu_vlm --images 512 >"$out/vlm.md" 2>"$out/vlm.log" || status=$?
tail -20 "$out/vlm.log"; cat "$out/vlm.md"
exit "$status"
