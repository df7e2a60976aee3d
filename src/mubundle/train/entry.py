"""``mubundle train``: resolve the run's configuration, then train or supervise.

Configuration precedence (lowest to highest): TrainConfig defaults, ``--config FILE``
(new runs only), ``RUN/config.yaml`` (a run to resume: its own config wins over
``--config``), command-line flags; a new run with ``--init-from MODEL`` then takes the
multiplicity/generator sizes of MODEL. A run directory is a run to resume when it holds a
checkpoint: one without (a first start that was refused or killed before its step-0
checkpoint) is started as a new run, its config.yaml replaced by ``--config`` when given.

The resolved config is written back to ``RUN/config.yaml``, and every change a command line
makes to a resumed run's config appended to ``RUN/config_history.jsonl`` and logged, only
once the training loop has accepted the run (:func:`mubundle.train.loop.train`,
``before_writing``): a refused resume changes nothing.

The run directory is locked (:mod:`mubundle.data.lock`) by the single process, by rank 0
of a torchrun job, or by the supervisor (which hands the lock to its attempts): a second
``mubundle train`` on a directory a live run is using is refused with the holder's PID.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from mubundle.configio import from_yaml, to_yaml
from mubundle.data.lock import directory_lock
from mubundle.errors import InvalidValueError
from mubundle.train.checkpoint import list_checkpoints
from mubundle.train.config import TrainConfig, with_init_model_config
from mubundle.train.dist_env import context_from_env
from mubundle.train.supervisor import EXIT_DIVERGED, supervise

logger = logging.getLogger("mubundle.train")

CONFIG_NAME = "config.yaml"
CONFIG_HISTORY_NAME = "config_history.jsonl"
#: command-line flag -> TrainConfig field
CLI_OVERRIDES = {
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "max_muons_per_step": "max_muons_per_step",
    "device": "device",
    "seed": "seed",
    "lr_decay_steps": "lr_decay_steps",
    "lr_decay_final": "lr_decay_final",
    "init_from": "init_from",
    "critic_warmup_steps": "critic_warmup_steps",
    "compile": "compile",
}


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields set explicitly on the command line."""
    return {field: getattr(args, flag) for flag, field in CLI_OVERRIDES.items() if getattr(args, flag, None) is not None}


def resolve_config(run_dir: Path, config_file: Path | None, overrides: dict[str, Any],
                   report: bool = True) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's TrainConfig and the changes ``overrides`` made to a resumed run's config.

    Returns ``(config, changes)`` with ``changes = {field: [old, new]}`` (empty for new runs).
    A run to resume (``RUN/config.yaml`` and a checkpoint) keeps its config.yaml over
    ``--config`` (a warning says so); in a directory without a checkpoint ``--config`` (or else
    the config.yaml a refused or killed first start left) is the base of a new run.
    ``report=False`` resolves the same config without those warnings and log lines (the ranks
    other than 0 of a torchrun job: one copy of each is enough).
    """
    run_config = Path(run_dir) / CONFIG_NAME
    resuming = run_config.exists() and bool(list_checkpoints(Path(run_dir)))
    if resuming:
        base = from_yaml(TrainConfig, run_config)
        if config_file is not None and report:
            warnings.warn(f"{run_config} exists: resuming the run with it; --config {config_file} is ignored",
                          stacklevel=2)
    elif config_file is not None:
        if not Path(config_file).exists():
            raise FileNotFoundError(f"config file {config_file} does not exist")
        base = from_yaml(TrainConfig, Path(config_file))
        if run_config.exists() and report:
            warnings.warn(f"{run_dir} has no checkpoint: starting it as a new run with --config {config_file} "
                          f"(its config.yaml is replaced)", stacklevel=2)
    elif run_config.exists():
        base = from_yaml(TrainConfig, run_config)
    else:
        base = TrainConfig()
    config = dataclasses.replace(base, **overrides)
    changes = {}
    if resuming:
        changes = {k: [getattr(base, k), v] for k, v in overrides.items() if getattr(base, k) != v}
    else:
        config, adopted = with_init_model_config(config)
        for name, (old, new) in adopted.items() if report else ():
            logger.info("--init-from %s: model.%s = %r (was %r)", config.init_from, name, new, old)
    return config, changes


def write_run_config(run_dir: Path, config: TrainConfig, changes: dict[str, Any]) -> None:
    """Write ``RUN/config.yaml`` atomically and record command-line changes of a resumed run."""
    from mubundle.data.atomic import atomic_write_bytes
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / CONFIG_NAME, to_yaml(config).encode())
    if changes:
        for name, (old, new) in changes.items():
            level = logging.INFO if name == "max_steps" else logging.WARNING
            logger.log(level, "resumed run: %s changed from %r to %r on the command line", name, old, new)
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "changes": changes}
        with (run_dir / CONFIG_HISTORY_NAME).open("a") as handle:
            handle.write(json.dumps(entry) + "\n")


def child_arguments(args: argparse.Namespace) -> list[str]:
    """The ``mubundle.cli`` arguments of one supervised attempt (everything but --max-restarts)."""
    child = ["train", "--data", *[str(p) for p in args.data], "--run", str(args.run_dir)]
    if getattr(args, "validation", None):
        child += ["--validation", *[str(p) for p in args.validation]]
    if args.config is not None:
        child += ["--config", str(args.config)]
    for flag in CLI_OVERRIDES:
        value = getattr(args, flag, None)
        if flag == "compile" and value is not None:
            child += ["--compile" if value else "--no-compile"]
        elif value is not None:
            child += [f"--{flag.replace('_', '-')}", str(value)]
    return child


def train_from_args(args: argparse.Namespace) -> int:
    """Run ``mubundle train`` (see ``mubundle train --help``); returns the exit code."""
    run_dir = Path(args.run_dir)
    context = context_from_env()  # torchrun's environment, read without torch: the parent stays light
    # the warnings about the config are rank 0's alone
    config, changes = resolve_config(run_dir, args.config, cli_overrides(args), report=context.is_main)
    if getattr(args, "max_restarts", 0) and args.max_restarts > 0:
        if context.enabled:
            # one supervisor per rank would fight over the run directory's lock and restart its
            # own rank alone, while a restart needs the whole process group (docs/training.md, DDP)
            raise InvalidValueError(
                f"--max-restarts supervises a single-process run; under torchrun (WORLD_SIZE {context.world_size}) "
                "drop it and run the same torchrun command again after a failure: it resumes from the last checkpoint"
            )
        # the supervisor holds the run directory's lock and hands it to each attempt
        with directory_lock(run_dir, "mubundle train --max-restarts") as lock:
            result = supervise(
                child_arguments(args), run_dir, args.max_restarts, config.restart_backoff_s,
                config.restart_backoff_max_s, lock=lock,
            )
        return result.exit_code
    # torch is imported only here, below the supervisor branch: the supervising parent stays light
    from mubundle.train.guard import TrainingDiverged
    from mubundle.train.loop import train

    is_main = context.is_main
    # rank 0 (or the single process) locks the run directory; the loop calls write_run_config
    # once every check that can refuse the run has passed, before it writes anything itself
    with directory_lock(run_dir, "mubundle train") if is_main else contextlib.nullcontext():
        try:
            summary = train(args.data, run_dir, config, validation_paths=getattr(args, "validation", None),
                            before_writing=lambda: write_run_config(run_dir, config, changes))
        except TrainingDiverged as error:
            print(f"mubundle train: {error}", file=sys.stderr)
            return EXIT_DIVERGED
    if is_main:
        print(json.dumps({k: summary[k] for k in ("steps", "epoch", "events_seen", "skipped_steps", "rollbacks")}))
    return 0
