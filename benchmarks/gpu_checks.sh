#!/bin/bash
# CUDA checks and GPU benchmarks in one go, for a machine with an NVIDIA GPU and PyTorch
# (the package's heavy simulation dependencies are not needed). Writes into ${OUT:-gpu_results}:
#   cuda_tests.log            pytest tests/test_cuda.py (sampling, training loop + resume, bf16, generate)
#   generate_cuda.jsonl       benchmarks/generate_throughput.py on the GPU, one JSON line each: 20k and 1M
#                             primaries (the default model, `fast`), 1M primaries (the shipped `full` model)
#   train_step_cuda_*.json    benchmarks/train_step.py on the GPU (B = 8192, 65536; fp32 and bf16)
#   ddp_nccl.log              torchrun (1 process, NCCL) training 40 steps on synthetic data, then
#                             `mubundle distill` 200 steps on the GPU (its summary line)
# (8 files at most: what the development workplace's GPU tool brings back)
# Usage: OUT=dir bash benchmarks/gpu_checks.sh   (from the repository root; PYTHONPATH=src if not installed)
set -u
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/cuda_tests.log" | tail -3
$PY benchmarks/generate_throughput.py --device cuda --events 20000 --sim-events 0 > "$OUT/generate_cuda.jsonl"
$PY benchmarks/generate_throughput.py --device cuda --events 1000000 --repeats 3 --sim-events 0 >> "$OUT/generate_cuda.jsonl"
$PY benchmarks/generate_throughput.py --device cuda --events 1000000 --repeats 3 --sim-events 0 \
    --model src/mubundle/pretrained/full >> "$OUT/generate_cuda.jsonl"
$PY benchmarks/train_step.py --device cuda --events 8192 --steps 10 > "$OUT/train_step_cuda_8k.json"
$PY benchmarks/train_step.py --device cuda --events 65536 --steps 5 > "$OUT/train_step_cuda_64k.json"
$PY benchmarks/train_step.py --device cuda --events 65536 --steps 5 --bf16 > "$OUT/train_step_cuda_64k_bf16.json"
$PY - <<'PY'
import sys
sys.path.insert(0, "tests")
from pathlib import Path
from test_train_loop import write_dataset
write_dataset(Path("/tmp/mubundle_ddp_data"), events_per_folder=2000)
PY
$PY -m torch.distributed.run --nproc_per_node 1 -m mubundle train --data /tmp/mubundle_ddp_data \
    --run-dir /tmp/mubundle_ddp_run --max-steps 40 --batch-size 512 --device cuda > "$OUT/ddp_nccl.log" 2>&1
echo "ddp exit $?" >> "$OUT/ddp_nccl.log"
tail -n 3 /tmp/mubundle_ddp_run/metrics.jsonl >> "$OUT/ddp_nccl.log" 2>/dev/null
$PY -m mubundle distill --out /tmp/mubundle_distill_cuda --steps 200 --batch-size 16384 --device cuda \
    2>/dev/null | tail -n 1 >> "$OUT/ddp_nccl.log"
echo "distill exit ${PIPESTATUS[0]}" >> "$OUT/ddp_nccl.log"
