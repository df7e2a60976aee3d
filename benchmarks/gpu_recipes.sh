#!/bin/bash
# The training recipes of docs/training.md on a device, each the recipe's own `mubundle train`
# command with `--device $DEVICE` (cuda or cpu) and `--max-steps` to stop it early, timed by
# benchmarks/train_recipe_speed.py (one JSON object each). Writes into ${OUT:-recipe_results}:
#   env.txt              the device, torch, and an import check of the package
#   recipe_arca.json     km3net-arca stage 1 (data/sim_arca shards 0-199 / 200-224, as the recipe), $ARCA_STEPS steps
#   recipe_icecube.json  icecube stage 1, $ICECUBE_STEPS steps; training data: data/sim_domain_80 and
#                        data/sim_domain_88 (the recipe's simulate command with seeds 80 and 88, 300 000
#                        events; the recipe's own 840 000 training events are ~90 MB), validation: the
#                        recipe's VAL shards of data/sim_domain
#   recipe_icecube_stage2.json  the same run resumed with the recipe's stage-2 edits of its config.yaml
#                        (the per-muon energy-distance term), $STAGE2_STEPS more steps
#   generate.jsonl       (cuda only) benchmarks/generate_throughput.py, flux-weighted H3a, 1 M primaries,
#                        `icecube` and `km3net-arca`
#   cuda_tests.log       (cuda only) pytest tests/test_cuda.py
#   train_logs.txt       the last lines of each training command's log
# A training command still running after its *_LIMIT seconds is stopped and its rates until then
# reported (stopped_at_time_limit: true).
# Usage (repository root; PYTHONPATH=src if the package is not installed):
#   OUT=dir DEVICE=cuda bash benchmarks/gpu_recipes.sh
#   OUT=dir DEVICE=cpu ARCA_STEPS=1000 ICECUBE_STEPS=600 STAGE2_STEPS=200 bash benchmarks/gpu_recipes.sh
set -u
OUT=${OUT:-recipe_results}
DEVICE=${DEVICE:-cuda}
ARCA_STEPS=${ARCA_STEPS:-1000}
ICECUBE_STEPS=${ICECUBE_STEPS:-1000}
STAGE2_STEPS=${STAGE2_STEPS:-300}
ARCA_LIMIT=${ARCA_LIMIT:-600}; ICECUBE_LIMIT=${ICECUBE_LIMIT:-600}; STAGE2_LIMIT=${STAGE2_LIMIT:-600}  # s: stop and report
CAP=${CAP:-600}   # seconds, each other command at most
RUNS=${RUNS:-/tmp/mubundle_recipe_runs}
mkdir -p "$OUT"
rm -rf "$RUNS"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-src}
PY=${PYTHON:-python3}

{ date -u; nproc; [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, mubundle.cli, mubundle.train.entry, mubundle.generate.api; print('torch', torch.__version__, 'mubundle', mubundle.__version__)"
} > "$OUT/env.txt" 2>&1 || { cat "$OUT/env.txt"; exit 3; }
cat "$OUT/env.txt"

D=data/sim_arca/0000000-0000999
$PY benchmarks/train_recipe_speed.py --time-limit "$ARCA_LIMIT" -- --data $(echo $D/part-00{000..199}.parquet) \
    --validation $(echo $D/part-00{200..224}.parquet) --run "$RUNS/arca" --config examples/train_km3net_arca.yaml \
    --device "$DEVICE" --max-steps "$ARCA_STEPS" > "$OUT/recipe_arca.json" 2> "$RUNS.arca.log"
tail -n 2 "$RUNS.arca.log"; cat "$OUT/recipe_arca.json"

D=data/sim_domain/0000000-0000999
TRAIN=$(ls data/sim_domain_80/*/part-*.parquet data/sim_domain_88/*/part-*.parquet)
VAL=$(echo $D/part-00{240..269}.parquet)
$PY benchmarks/train_recipe_speed.py --time-limit "$ICECUBE_LIMIT" -- --data $TRAIN --validation $VAL --run "$RUNS/icecube" \
    --config examples/train_icecube.yaml --device "$DEVICE" --max-steps "$ICECUBE_STEPS" \
    > "$OUT/recipe_icecube.json" 2> "$RUNS.icecube.log"
tail -n 2 "$RUNS.icecube.log"; cat "$OUT/recipe_icecube.json"
# stage 2: the recipe's edits of the run's config.yaml (lr 2e-5 constant, energy-distance term on)
sed -i -e 's/^lr: 0.0001$/lr: 2.0e-05/' -e 's/^lr_decay_steps: 6000$/lr_decay_steps: 0/' \
    -e 's/^muon_energy_distance_weight: 0.0$/muon_energy_distance_weight: 200.0/' "$RUNS/icecube/config.yaml"
$PY benchmarks/train_recipe_speed.py --time-limit "$STAGE2_LIMIT" -- --data $TRAIN --validation $VAL --run "$RUNS/icecube" \
    --config examples/train_icecube.yaml --device "$DEVICE" --max-steps $((ICECUBE_STEPS + STAGE2_STEPS)) \
    > "$OUT/recipe_icecube_stage2.json" 2> "$RUNS.icecube2.log"
tail -n 2 "$RUNS.icecube2.log"; cat "$OUT/recipe_icecube_stage2.json"

if [ "$DEVICE" = cuda ]; then
  timeout "$CAP" $PY benchmarks/generate_throughput.py --device cuda --flux H3a --events 1000000 --repeats 3 \
      --sim-events 0 --model icecube > "$OUT/generate.jsonl"
  timeout "$CAP" $PY benchmarks/generate_throughput.py --device cuda --flux H3a --events 1000000 --repeats 3 \
      --sim-events 0 --model km3net-arca --site km3net-arca --depths 2.9,3.15,3.4 >> "$OUT/generate.jsonl"
  timeout "$CAP" $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py > "$OUT/cuda_tests.log" 2>&1
  tail -n 3 "$OUT/cuda_tests.log"
fi
for f in "$RUNS".*.log; do echo "== $f"; tail -n 15 "$f"; done > "$OUT/train_logs.txt"
