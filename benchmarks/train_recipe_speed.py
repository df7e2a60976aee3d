"""Speed of a training recipe's own command on a device; prints ONE JSON object.

Runs ``mubundle train ARGS...`` (the recipe's command, e.g. docs/training.md "Recipe for the
icecube model", with ``--device cuda`` or ``cpu`` and ``--max-steps`` to stop it early) in a
child process, watches the run directory's ``metrics.jsonl`` (one record every ``log_every``
steps) and reports:

- ``setup_s``: from the start of the command to its first record (imports, the feature
  transform fit on ``transform_fit_events``, the data stream, the device's start-up);
- ``steps_per_s``, ``events_per_s``, ``muons_per_s``: sustained rates between the first and the
  last record seen, by the wall clock of this process (validations and checkpoints included);
- ``steady_*``: the medians of the records' own rates (the loop's ``events_per_s`` /
  ``muons_per_s`` since the previous record, so without most validation pauses); steps/s is
  ``events_per_s / batch_size`` (every step trains ``batch_size`` real events);
- ``exit_code`` (and ``stopped_at_time_limit`` with ``--time-limit S``), ``wall_s``, the first and last step timed, the last record's losses, and the
  device's name (``torch.cuda.get_device_name`` for CUDA, the processor for CPU).

A run directory that already holds a run is resumed (that is how the recipes' second stages
run): the timing starts at the first record after the resume point.

Usage (from the repository root)::

    python benchmarks/train_recipe_speed.py [--time-limit S] -- --data $TRAIN --validation $VAL --run runs/speed \\
        --config examples/train_icecube.yaml --device cuda --max-steps 600
"""

from __future__ import annotations

import argparse
import json
import tempfile
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mubundle.benchmark_cli import make_parser, positive_float, print_json, run
from mubundle.errors import InvalidValueError

POLL_SECONDS = 0.1


def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a metrics.jsonl (a torn last line is left for the next poll)."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def short_command(train_args: list[str]) -> str:
    """The command with each list of data files written as its count, first and last file."""
    words: list[str] = []
    files: list[str] = []
    for arg in [*train_args, "--"]:
        if arg.startswith("--") or not (arg.endswith(".parquet") or arg.endswith(".h5")):
            if len(files) > 2:
                words.append(f"[{len(files)} files: {files[0]} ... {files[-1]}]")
            else:
                words.extend(files)
            files = []
            words.append(arg)
        else:
            files.append(arg)
    return "mubundle train " + " ".join(words[:-1])


def run_dir_of(train_args: list[str]) -> Path:
    """The ``--run`` / ``--run-dir`` value of a ``mubundle train`` argument list."""
    for flag in ("--run", "--run-dir"):
        if flag in train_args:
            return Path(train_args[train_args.index(flag) + 1])
    raise InvalidValueError("the train arguments need --run DIR")


def device_name(train_args: list[str]) -> str:
    """The device the command asked for, by name."""
    device = train_args[train_args.index("--device") + 1] if "--device" in train_args else "config"
    if device.startswith("cuda"):
        import torch

        return f"{device}: {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{device}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def batch_size(run_dir: Path) -> int:
    """B of the run (its config.yaml, written at the run's start)."""
    return int(yaml.safe_load((run_dir / "config.yaml").read_text())["batch_size"])


def measure(train_args: list[str], time_limit: float | None = None) -> dict[str, Any]:
    """Run the command and time its metrics records (see the module docstring).

    ``time_limit`` [s]: stop the command (SIGTERM; the run stays resumable) after that long and
    report the rates of the records seen until then.
    """
    run_dir = run_dir_of(train_args)
    metrics = run_dir / "metrics.jsonl"
    before = read_records(metrics)  # a resumed run: time from the first record after its last one
    start_step = before[-1]["step"] if before else 0
    seen: dict[int, float] = {}
    records: list[dict[str, Any]] = []
    start = time.perf_counter()
    # the child's stdout is kept apart (its tail goes into the JSON): this script's stdout is its JSON alone
    child_stdout = tempfile.TemporaryFile(mode="w+")
    child = subprocess.Popen([sys.executable, "-m", "mubundle", "train", *train_args], stdout=child_stdout)
    stopped = False
    while True:
        done = child.poll() is not None
        if not done and not stopped and time_limit is not None and time.perf_counter() - start > time_limit:
            child.terminate()
            stopped = True
        for record in read_records(metrics):
            if record["step"] > start_step and record["step"] not in seen:
                seen[record["step"]] = time.perf_counter() - start
                records.append(record)
        if done:
            break
        time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - start
    child_stdout.seek(0)
    stdout_tail = child_stdout.read().strip().splitlines()[-3:]
    child_stdout.close()
    result: dict[str, Any] = {
        "command": short_command(train_args),
        "device": device_name(train_args),
        "exit_code": child.returncode,
        "stopped_at_time_limit": stopped,
        "wall_s": round(wall, 2),
        "resumed_from_step": start_step,
        "records": len(records),
        "child_stdout_tail": stdout_tail,
    }
    if len(records) < 2:
        result["error"] = "fewer than two metrics records: no rate"
        return result
    first, last = records[0], records[-1]
    span = seen[last["step"]] - seen[first["step"]]
    steps = last["step"] - first["step"]
    size = batch_size(run_dir)
    steady_events = statistics.median(r["events_per_s"] for r in records[1:])
    result.update(
        setup_s=round(seen[first["step"]], 2),
        first_step=first["step"],
        last_step=last["step"],
        batch_size=size,
        steps_per_s=round(steps / span, 3),
        events_per_s=round((last["events_seen"] - first["events_seen"]) / span, 1),
        muons_per_s=round((last["muons_seen"] - first["muons_seen"]) / span, 1),
        muons_per_step=round((last["muons_seen"] - first["muons_seen"]) / steps, 1),
        steady_steps_per_s=round(steady_events / size, 3),
        steady_events_per_s=round(steady_events, 1),
        steady_muons_per_s=round(statistics.median(r["muons_per_s"] for r in records[1:]), 1),
        last_losses={k: last.get(k) for k in ("c_loss", "g_loss", "g_ed", "m_loss", "w_distance")},
        skipped_steps=last["skipped_steps"],
    )
    return result


def main() -> int:
    parser = make_parser(__doc__)
    parser.usage = "%(prog)s [--time-limit S] -- TRAIN_ARGS... (the arguments of `mubundle train`)"
    parser.add_argument("--time-limit", type=positive_float, metavar="S",
                        help="stop the command after S seconds [s] and report the rates until then (default: no limit)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if not train_args:
        parser.error("give the arguments of `mubundle train` after --")
    result = measure(train_args, args.time_limit)
    print_json(result, indent=None)
    if "error" in result:
        print(f"train_recipe_speed: error: {result['error']} (mubundle train exit {result['exit_code']})", file=sys.stderr)
        return 1
    if not (result["exit_code"] == 0 or result["stopped_at_time_limit"]):
        print(f"train_recipe_speed: error: mubundle train failed with exit {result['exit_code']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run(main)
