"""The training loop: data stream -> WGAN step -> guard -> logs and checkpoints.

``train(data_paths, run_dir, config)`` trains a fresh run or resumes the run in
``run_dir`` from its newest checkpoint; both are the same code path (a fresh run is a
run resumed from its step-0 checkpoint). Under torchrun the same loop runs on every rank
with the few collective calls of :mod:`mubundle.train.distributed`.

Step numbering: ``step`` counts generator steps attempted (a step the guard skipped still
consumed its batch); the checkpoint ``step-k`` holds the state after k steps and the
``metrics.jsonl`` record with ``"step": k`` describes the k-th step.

Nothing in the run directory is written before every check that can refuse the run has
passed (:func:`train`): a refused resume leaves a run as it was, and a refused first start
leaves no run behind.

Testing hook: ``MUBUNDLE_FAIL_AT_STEP=k`` makes the loop raise right before step k, but
only in the first attempt of a supervised run (``MUBUNDLE_ATTEMPT`` unset or 1); the
supervisor tests use it to simulate a crash.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.handlers
import math
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from mubundle.configio import to_dict
from mubundle.data.atomic import remove_stale_temporaries
from mubundle.data.batch import RaggedBatch
from mubundle.data.lock import acquire as acquire_lock
from mubundle.data.path_ranges import brace_paths
from mubundle.data.reader import EventStream
from mubundle.data.remote import redact_paths
from mubundle.data.sources import Piece, read_events
from mubundle.errors import InvalidValueError
from mubundle.model.bundle import WEIGHTS_FILE, MuonBundleModel
from mubundle.model.config import METADATA_FILE, differing_model_fields
from mubundle.model.critic import BundleCritic
from mubundle.model.domain import ModelDomain, domain_of_events, generation_ranges, read_domain
from mubundle.model.transforms import FeatureTransform
from mubundle.train import distributed
from mubundle.train.checkpoint import (
    capture_rng_states,
    export_model,
    load_latest_intact_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from mubundle.train.config import TrainConfig
from mubundle.train.device import autocast_context, compile_modules, configure_backends, resolve_device
from mubundle.train.guard import DivergenceGuard, GuardAction
from mubundle.train.multiplicity_fit import (
    CountSample,
    MultiplicityEarlyStopping,
    above_kinematic_zero,
    load_count_sample,
    multiplicity_nll,
)
from mubundle.train.monitor import (
    METRICS_NAME,
    MetricsLog,
    RateMeter,
    TensorBoardLog,
    bundle_features,
    generated_histogram_features,
    progress_bar,
)
from mubundle.train.step import WganStep, adversarial_lr_factor

logger = logging.getLogger("mubundle.train")

CHECKPOINT_FORMAT = 1
#: keys a training checkpoint must hold to be resumed from (others are set aside as corrupt)
_CHECKPOINT_KEYS = ("step", "model", "critic", "optimizers", "transform", "progress", "guard")
FAIL_AT_STEP_ENV = "MUBUNDLE_FAIL_AT_STEP"
QUARANTINE_DIR = "quarantine"
SUMMARY_NAME = "summary.json"
TRAIN_LOG = "logs/train.log"
MODEL_DIR = "model"
#: settings a resumed run must share with its checkpoint (the order of the data, the networks);
#: the others (max_steps, lr, batch_size, ...) may change on resume (docs/training.md)
RESUME_FIXED_SETTINGS = ("seed", "shuffle_buffer_events", "model")
#: loggers whose records rank 0 shows on stderr and keeps in RUN/logs/train.log
_RUN_LOGGERS = ("mubundle.train", "mubundle.data")


@dataclass
class Progress:
    """Counters that advance with the steps (saved in every checkpoint)."""

    step: int = 0
    events_seen: int = 0
    muons_seen: int = 0
    score_ema: float | None = None  # EMA of m_loss + |c_loss| (the best-checkpoint criterion)
    best_score: float | None = None
    best_step: int | None = None
    last_losses: dict[str, float] = field(default_factory=dict)


@dataclass
class Components:
    """Everything the loop drives (built once per process)."""

    config: TrainConfig
    device: torch.device
    context: distributed.DistContext
    model: MuonBundleModel
    critic: BundleCritic
    step_fn: WganStep
    stream: EventStream
    rng: torch.Generator
    guard: DivergenceGuard
    multiplicity_stopping: MultiplicityEarlyStopping


# ---------------------------------------------------------------------------- setup
def _seed_everything(seed: int) -> None:
    """Global RNGs (network init, any library randomness); the step has its own generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def fit_transform(data_paths: Sequence[str | os.PathLike], n_events: int) -> FeatureTransform:
    """Fit the feature transform on the first ``n_events`` accepted events (file order: deterministic)."""
    return fit_transform_and_domain(data_paths, n_events)[0]


def training_provenance(data_paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """What the training files' metadata says about the domain, read before any event:
    ``file_config`` (the first native file's ``config``, its ``site`` the one site of all files)
    and ``generated`` (:func:`mubundle.model.domain.generation_ranges` of all files, None unless
    every file is a sampled ``mubundle simulate`` shard) and ``file_configs`` (every file's
    ``config``, empty unless every file is native). Data of more than one site is refused
    here with one line naming the sites (:func:`mubundle.data.sites.require_one_site`). Each file's
    layout and metadata are read once (:func:`mubundle.data.sites.inspect_files`)."""
    from mubundle.data.sites import inspect_files, require_one_site
    from mubundle.data.sources import DataFileError, expand_paths

    skipped: list[DataFileError] = []
    files = inspect_files(expand_paths(data_paths), skipped=skipped)
    for error in skipped:  # unreadable files are reported by the readers
        logger.info("model domain: layout of %s unknown (%s)", error.path, error)
    native = [file for file in files if file.layout == "native"]
    for file in native:
        if file.unreadable is not None:  # the ranges of the events still hold
            logger.info("model domain: no metadata in %s (%s)", file.path, file.unreadable)
    metadata = [file.metadata for file in native]
    site = require_one_site(files)
    file_config: dict[str, Any] = dict((metadata[0].get("config") or {}) if metadata else {})
    if metadata and (metadata[0].get("site") or file_config.get("site")):
        file_config["site"] = site
    every_file = bool(files) and len(metadata) == len(files)
    generated = generation_ranges(metadata) if every_file else None
    file_configs = [entry.get("config") or {} for entry in metadata] if every_file else []
    return {"file_config": file_config, "generated": generated, "file_configs": file_configs}


def training_domain(loaded_conditions: np.ndarray, data_paths: Sequence[str | os.PathLike],
                    provenance: dict[str, Any] | None = None) -> ModelDomain:
    """The domain an export records (:func:`mubundle.model.domain.domain_of_events`): the
    min/max of the conditions (B, 4) of the events read to fit the transform (the first
    ``transform_fit_events`` of the data) joined with the ranges every file was simulated over
    (native metadata of ``mubundle simulate``: energy, zenith, vertical depths), the site and
    medium from the metadata (``provenance``: :func:`training_provenance`, read if None)."""
    provenance = training_provenance(data_paths) if provenance is None else provenance
    sources = brace_paths(data_paths)  # consecutive shards folded into DIR/part-{00000..00239}.parquet
    return domain_of_events(loaded_conditions, training_data=sources, command=f"mubundle train --data {sources}",
                            file_config=provenance["file_config"], generated=provenance["generated"],
                            file_configs=provenance.get("file_configs"))


def fit_transform_and_domain(data_paths: Sequence[str | os.PathLike], n_events: int) -> tuple[FeatureTransform, ModelDomain]:
    """:func:`fit_transform` and the :func:`training_domain` of the same events; a training set
    mixing sites is refused before any event is read."""
    provenance = training_provenance(data_paths)
    loaded = read_events(data_paths, max_events=n_events)
    for failed in loaded.failed_files:
        logger.warning("transform fit: skipped unreadable file %s: %s", failed["path"], failed["error"])
    if loaded.rejected:
        logger.warning("transform fit: rejected rows by reason %s", loaded.rejected)
    if len(loaded.batch) == 0:
        raise ValueError(f"no valid events found in {', '.join(redact_paths(data_paths))} to fit the feature transform")
    logger.info("fitted feature transform on %d events, %d muons", len(loaded.batch), loaded.batch.n_muons)
    return FeatureTransform.fit(loaded.batch), training_domain(loaded.batch.conditions, data_paths, provenance)


def load_initial_model(config: TrainConfig) -> MuonBundleModel:
    """The model directory ``config.init_from`` a fine-tuning run starts from.

    Raises ``ValueError`` when its multiplicity/generator sizes differ from ``config.model``
    (``mubundle train --init-from`` takes them from the model; API callers use
    :func:`mubundle.train.config.with_init_model_config`).
    """
    initial = MuonBundleModel.load(config.init_from)
    differing = differing_model_fields(config.model, initial.config)
    if differing:
        listed = ", ".join(f"{name} {ours!r} (model: {theirs!r})" for name, (ours, theirs) in differing.items())
        raise ValueError(f"init_from {config.init_from}: the model config differs in {listed}")
    return initial


def _build(
    data_paths: Sequence[str | os.PathLike],
    run_dir: Path,
    config: TrainConfig,
    transform: FeatureTransform,
    device: torch.device,
    context: distributed.DistContext,
) -> Components:
    _seed_everything(config.seed)
    model = MuonBundleModel(config.model, transform).to(device)
    critic = BundleCritic(config.model).to(device)
    distributed.broadcast_parameters([model, critic], context)
    step_fn = WganStep(model, critic, config, device)
    # the critic stays eager: the gradient penalty differentiates through its backward
    # (create_graph=True), which compiled (AOTAutograd) backward graphs do not support
    compile_modules([model.multiplicity, model.generator], config)
    stream = EventStream(
        [str(p) for p in data_paths],
        config.batch_size,
        seed=config.seed,
        shuffle=True,
        shuffle_buffer_events=config.shuffle_buffer_events,
        rank=context.rank,
        world_size=context.world_size,
        quarantine_dir=run_dir / QUARANTINE_DIR,
    )
    # each rank draws its own noise; rank 0 of a single-process run uses exactly config.seed
    rng = torch.Generator(device=device).manual_seed(config.seed + 1_000_003 * context.rank)
    guard = DivergenceGuard(
        config.max_consecutive_bad_steps, config.rollback_lr_factor, config.saturation_warn_fraction, config.max_rollbacks
    )
    stopping = MultiplicityEarlyStopping(patience=config.multiplicity_patience)
    return Components(config, device, context, model, critic, step_fn, stream, rng, guard, stopping)


# ---------------------------------------------------------------------------- checkpoints
def _checkpoint_payload(parts: Components, progress: Progress) -> dict[str, Any] | None:
    """The checkpoint dict on rank 0 (None on other ranks, which only contribute their state)."""
    per_rank = distributed.gather_to_main(
        {"rng": capture_rng_states(parts.rng), "data": parts.stream.state_dict()}, parts.context
    )
    if not parts.context.is_main:
        return None
    return {
        "format": CHECKPOINT_FORMAT,
        "step": progress.step,
        "epoch": int(parts.stream.epoch),
        "world_size": parts.context.world_size,
        "transform": parts.model.transform.to_dict(),
        "domain": None if parts.model.domain is None else parts.model.domain.to_dict(),
        "model": parts.model.state_dict(),
        "critic": parts.critic.state_dict(),
        "optimizers": parts.step_fn.state_dict(),
        "per_rank": per_rank,
        "data_files": data_files(parts.stream.pieces),
        "guard": parts.guard.state_dict(),
        "multiplicity_validation": parts.multiplicity_stopping.state_dict(),
        "progress": {
            "events_seen": progress.events_seen,
            "muons_seen": progress.muons_seen,
            "score_ema": progress.score_ema,
            "best_score": progress.best_score,
            "best_step": progress.best_step,
        },
        "config": to_dict(parts.config),
    }


def _write_checkpoint(parts: Components, progress: Progress, run_dir: Path, is_best: bool) -> None:
    payload = _checkpoint_payload(parts, progress)
    if payload is not None:
        path = save_checkpoint(run_dir, progress.step, payload, parts.config.keep_checkpoints, is_best)
        export_model(_averaged_model(parts), run_dir, MODEL_DIR)
        logger.info("step %d: checkpoint %s%s", progress.step, path.name, " (best)" if is_best else "")
    distributed.barrier(parts.context)  # other ranks may read it (rollback) only once it exists


def _averaged_model(parts: Components) -> MuonBundleModel:
    """A copy of the model with what a run exports: the moving-average generator weights and,
    with validation data, the multiplicity weights of the best validation NLL so far."""
    exported = copy.deepcopy(parts.model)
    exported.generator.load_state_dict(parts.step_fn.generator_ema.averaged_state_dict())
    parts.multiplicity_stopping.restore_best(exported.multiplicity)
    return exported


def data_files(pieces: Sequence[Piece]) -> list[list[Any]]:
    """``[[path, pieces, rows], ...]`` of the files of a data stream in its order (paths
    redacted): what a checkpoint records to name the file that changed when a resume is refused."""
    listing: dict[str, list[int]] = {}
    for piece in pieces:
        counts = listing.setdefault(redact_paths(piece.path)[0], [0, 0])
        counts[0] += 1
        counts[1] += int(piece.n_rows)
    return [[path, n_pieces, n_rows] for path, (n_pieces, n_rows) in listing.items()]


def describe_data_change(saved: list[list[Any]] | None, pieces: Sequence[Piece]) -> str:
    """What differs between a checkpoint's :func:`data_files` and the files of ``pieces``: the
    first file added, removed or changed (pieces, rows) and how many of each."""
    if saved is None:  # checkpoints of older versions hold only a hash of the listing
        return "the files, or their row groups, are not those of the checkpoint (which predates the per-file record)"
    return _describe_listing_change(saved, data_files(pieces))


def _describe_listing_change(saved: list[list[Any]], listing: list[list[Any]]) -> str:
    """The first file added, removed or changed from :func:`data_files` ``saved`` to ``listing``, and how many."""
    before = {path: (n_pieces, n_rows) for path, n_pieces, n_rows in saved}
    now = {path: (n_pieces, n_rows) for path, n_pieces, n_rows in listing}
    added = [path for path in now if path not in before]
    removed = [path for path in before if path not in now]
    changed = [path for path in now if path in before and now[path] != before[path]]
    if changed:
        (p0, r0), (p1, r1) = before[changed[0]], now[changed[0]]
        first = f"{changed[0]} changed ({p0} row group(s), {r0} rows then; {p1}, {r1} now)"
    elif added:
        first = f"{added[0]} was added"
    elif removed:
        first = f"{removed[0]} is missing"
    else:
        return "the same files are listed in another order"
    return f"{first}; {len(added)} file(s) added, {len(removed)} missing, {len(changed)} changed"


def _check_resume_settings(checkpoint: dict[str, Any], path: Path, config: TrainConfig) -> None:
    """Refuse to resume with a :data:`RESUME_FIXED_SETTINGS` setting other than the checkpoint's,
    naming the setting and both values (before anything is built or written)."""
    saved = checkpoint.get("config")
    if not isinstance(saved, dict):  # not in checkpoints of older versions: the data stream's checks remain
        return
    current = to_dict(config)
    differing = []
    for name in RESUME_FIXED_SETTINGS:
        if name not in saved:
            continue
        if isinstance(saved[name], dict):
            differing += [(f"{name}.{key}", value, current[name][key]) for key, value in saved[name].items()
                          if key in current[name] and current[name][key] != value]
        elif saved[name] != current[name]:
            differing.append((name, saved[name], current[name]))
    if differing:
        listed = "; ".join(f"{name} is {new!r} but the run was trained with {old!r}" for name, old, new in differing)
        raise InvalidValueError(
            f"cannot resume {path.parent.parent} from {path.name}: {listed} (a resumed run keeps its seed, "
            f"shuffle_buffer_events and model sizes; train another --run directory to change them)"
        )


def _check_resume_world_size(checkpoint: dict[str, Any], path: Path, context: distributed.DistContext) -> None:
    """Refuse to resume with another number of processes than the checkpoint's (its per-rank
    data cursors and RNG states are those of its ranks), naming the number to use."""
    saved = int(checkpoint["world_size"])
    if saved == context.world_size:
        return
    how = "torchrun --nproc_per_node 1, or no torchrun" if saved == 1 else f"torchrun --nproc_per_node {saved}"
    raise InvalidValueError(
        f"cannot resume {path.parent.parent} from {path.name}: it was written by {saved} process(es) but this run "
        f"has {context.world_size} (an exact resume needs the same number: {how}; or train another --run directory)"
    )


def _check_same_data_on_every_rank(parts: Components) -> None:
    """Refuse, on every rank alike, a distributed run whose ranks list different data files
    (a shard missing on one node of a dataset without manifest), naming the ranks and the first
    file that differs, before any step (two all-gathers; the listings only when they differ)."""
    context = parts.context
    fingerprints = distributed.all_gather(parts.stream.fingerprint, context)
    if len(set(fingerprints)) <= 1:
        return
    listings = distributed.all_gather(data_files(parts.stream.pieces), context)
    differing = [rank for rank, fingerprint in enumerate(fingerprints) if fingerprint != fingerprints[0]]
    first = differing[0]
    ranks = ", ".join(str(rank) for rank in differing)
    # every rank refuses alike; all leave the last collective before any tears the group down
    # (a rank still finishing the gather when a peer closed its sockets aborted in gloo under load)
    distributed.barrier(parts.context)
    raise InvalidValueError(
        f"the processes see different --data files: rank{'s' if len(differing) > 1 else ''} {ranks} "
        f"{'differ' if len(differing) > 1 else 'differs'} from rank 0; on rank {first}: "
        f"{_describe_listing_change(listings[0], listings[first])} (every process must read the same files: "
        f"a shared file system or identical copies on every node)"
    )


def _check_resume_data(parts: Components, checkpoint: dict[str, Any], path: Path) -> None:
    """Refuse to resume on other data files than the checkpoint's, naming the first that differs."""
    if checkpoint["per_rank"][parts.context.rank]["data"].get("fingerprint") != parts.stream.fingerprint:
        raise InvalidValueError(
            f"cannot resume {path.parent.parent} from {path.name}: the --data files differ from the run's: "
            f"{describe_data_change(checkpoint.get('data_files'), parts.stream.pieces)} (resume with the same "
            f"--data, or train another --run directory)"
        )


def _restore(parts: Components, checkpoint: dict[str, Any], progress: Progress, restore_guard: bool) -> None:
    """Load a checkpoint into the components; ``restore_guard`` is False for rollbacks."""
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {checkpoint.get('format')!r} is not {CHECKPOINT_FORMAT}")
    if checkpoint["world_size"] != parts.context.world_size:
        raise ValueError(
            f"checkpoint was written by {checkpoint['world_size']} process(es) but this run has "
            f"{parts.context.world_size}: exact resume needs the same world size"
        )
    mine = checkpoint["per_rank"][parts.context.rank]
    parts.model.load_state_dict(checkpoint["model"])
    parts.critic.load_state_dict(checkpoint["critic"])
    parts.step_fn.load_state_dict(checkpoint["optimizers"])
    if "multiplicity_validation" in checkpoint:  # absent in checkpoints of older versions: fresh start
        parts.multiplicity_stopping.load_state_dict(checkpoint["multiplicity_validation"])
    parts.step_fn.multiplicity_frozen = parts.multiplicity_stopping.frozen
    restore_rng_states(mine["rng"], parts.rng)
    parts.stream.load_state_dict(mine["data"])
    if restore_guard:
        parts.guard.load_state_dict(checkpoint["guard"])
    # (a rollback keeps the guard's own state: its lr_scale already holds the new factor; the
    # learning rates themselves are set from config, guard and schedule before every step)
    saved = checkpoint["progress"]
    progress.step = int(checkpoint["step"])
    progress.events_seen = int(saved["events_seen"])
    progress.muons_seen = int(saved["muons_seen"])
    progress.score_ema = saved["score_ema"]
    progress.best_score = saved["best_score"]
    progress.best_step = saved["best_step"]


# ---------------------------------------------------------------------------- per-step helpers
def _maybe_simulate_crash(step: int) -> None:
    fail_at = os.environ.get(FAIL_AT_STEP_ENV)
    if fail_at is not None and int(fail_at) == step and os.environ.get("MUBUNDLE_ATTEMPT", "1") == "1":
        raise RuntimeError(f"{FAIL_AT_STEP_ENV}={fail_at}: simulated crash before step {step} (testing hook)")


def _batches(stream: EventStream) -> Iterator[RaggedBatch]:
    """Endless batches; each exhausted pass over the data is one epoch."""
    while True:
        produced = False
        for batch in stream:
            produced = True
            yield batch
        if not produced:
            raise ValueError("the training data yielded no valid events in a whole epoch (see the quarantine and logs)")


def _update_best(progress: Progress, losses: dict[str, float], smoothing: float) -> None:
    """EMA of ``m_loss + |c_loss|`` (both approach their optimum as the model improves)."""
    score = float(losses["m_loss"]) + abs(float(losses["c_loss"]))
    if not math.isfinite(score):
        return
    progress.score_ema = score if progress.score_ema is None else smoothing * progress.score_ema + (1 - smoothing) * score


def _current_lr(step_fn: WganStep) -> float:
    return float(step_fn.optimizers["generator"].param_groups[0]["lr"])


def _failed_files(stream: EventStream) -> list[dict[str, str]]:
    report = stream.report
    failed = report.get("failed_files", []) if isinstance(report, dict) else getattr(report, "failed_files", [])
    return list(failed)


def _rejected_rows(stream: EventStream) -> dict[str, int]:
    report = stream.report
    rejected = report.get("rejected", {}) if isinstance(report, dict) else getattr(report, "rejected", {})
    return dict(rejected)


def _metrics_record(
    parts: Components,
    progress: Progress,
    losses: dict[str, float],
    saturated_fraction: float,
    applied: bool,
    meter: RateMeter,
) -> dict[str, Any]:
    """One ``metrics.jsonl`` record for the step just taken (fields: docs/training.md)."""
    events_per_s, muons_per_s = meter.rates()
    return {
        "step": progress.step,
        "epoch": int(parts.stream.epoch),
        **losses,
        "events_per_s": events_per_s,
        "muons_per_s": muons_per_s,
        "lr": _current_lr(parts.step_fn),
        "lr_scale": parts.guard.state.lr_scale,
        "applied": bool(applied),
        "skipped_steps": parts.guard.state.skipped_steps,
        "rollbacks": parts.guard.state.rollbacks,
        "saturated_fraction": float(saturated_fraction),
        "events_seen": progress.events_seen,
        "muons_seen": progress.muons_seen,
        "failed_files": len(_failed_files(parts.stream)),
        "rejected_rows": int(sum(_rejected_rows(parts.stream).values())),
    }


def _warn_new_failed_files(stream: EventStream, already_reported: int) -> int:
    """Log the files that became unreadable since the last call; returns the new total."""
    failed = _failed_files(stream)
    for entry in failed[already_reported:]:
        logger.warning("skipped unreadable file %s: %s", entry.get("path"), entry.get("error"))
    return len(failed)


class _RunLog:
    """Rank 0's log of the training (the ``mubundle.train`` and ``mubundle.data`` records): on
    stderr (the supervisor's attempt log) at once, in ``RUN/logs/train.log`` from the moment the
    run is accepted (:meth:`open_file`) with the records logged before it, so that a refused
    start writes no log into the run directory."""

    def __init__(self, run_dir: Path, is_main: bool) -> None:
        self.path = run_dir / TRAIN_LOG
        self.formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
        self.handlers: list[logging.Handler] = []
        # no target yet: every record is kept until open_file gives it one
        self.pending: logging.handlers.MemoryHandler | None = None
        if is_main:
            stderr = logging.StreamHandler()
            stderr.setFormatter(self.formatter)
            self.pending = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)
            self._attach(stderr)
            self._attach(self.pending)

    def _attach(self, handler: logging.Handler) -> None:
        self.handlers.append(handler)
        for name in _RUN_LOGGERS:
            logging.getLogger(name).addHandler(handler)

    def _detach(self, handler: logging.Handler) -> None:
        self.handlers.remove(handler)
        for name in _RUN_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()

    def open_file(self) -> None:
        """Start ``RUN/logs/train.log`` (appending) with the records kept so far."""
        if self.pending is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(self.path)
        file_handler.setFormatter(self.formatter)
        self.pending.setTarget(file_handler)
        self.pending.flush()
        self._detach(self.pending)
        self.pending = None
        self._attach(file_handler)

    def close(self) -> None:
        for handler in list(self.handlers):
            self._detach(handler)


def _export_problem(run_dir: Path, checkpoint_path: Path) -> str | None:
    """Why ``RUN/model`` is not the export of ``checkpoint_path`` (missing, incomplete, older), or None."""
    model_dir = run_dir / MODEL_DIR
    files = [model_dir / WEIGHTS_FILE, model_dir / METADATA_FILE]
    if not model_dir.is_dir():
        return f"{model_dir} is missing"
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        return f"{model_dir} lacks {', '.join(missing)}"
    if min(path.stat().st_mtime_ns for path in files) < checkpoint_path.stat().st_mtime_ns:
        return f"{model_dir} is older than {checkpoint_path.name}"
    return None


# ---------------------------------------------------------------------------- the loop
def train(
    data_paths: Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    config: TrainConfig,
    validation_paths: Sequence[str | os.PathLike] | None = None,
    before_writing: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir`` up to ``config.max_steps`` generator steps.

    ``data_paths``: files, globs or directories in any supported layout;
    ``validation_paths``: optional held-out events for the multiplicity model's validation NLL
    and early stopping (every ``config.validate_every`` steps). Returns the run
    summary (also written to ``RUN/summary.json`` by rank 0): steps, epochs, events and
    muons seen, skipped steps, rollbacks, rejected rows by reason, unreadable files, best
    checkpoint, last losses.

    Every check that can refuse the run comes first: the device, the training and validation
    data, the ``init_from`` model and, when resuming, the checkpoint's settings
    (:data:`RESUME_FIXED_SETTINGS`), data files and world size. Only then does rank 0 write into
    ``run_dir`` (``before_writing`` is called first: ``mubundle train`` writes ``RUN/config.yaml``
    there), so a refused resume leaves the run directory as it was; the exceptions are a
    damaged checkpoint, which is set aside (:func:`~mubundle.train.checkpoint.load_latest_intact_checkpoint`),
    and the rejected rows of the validation data, quarantined as they are read.
    """
    run_dir = Path(run_dir)
    context = distributed.context_from_env()
    device = resolve_device(config.device, context.local_rank)
    run_dir.mkdir(parents=True, exist_ok=True)
    # one live training per run directory (re-entrant: `mubundle train` already holds it)
    run_lock = acquire_lock(run_dir, "mubundle train") if context.is_main else None
    try:
        return _train_locked(data_paths, run_dir, config, context, device, validation_paths, before_writing)
    finally:
        if run_lock is not None:
            run_lock.release()


def _train_locked(
    data_paths: Sequence[str | os.PathLike],
    run_dir: Path,
    config: TrainConfig,
    context: distributed.DistContext,
    device: torch.device,
    validation_paths: Sequence[str | os.PathLike] | None,
    before_writing: Callable[[], None] | None,
) -> dict[str, Any]:
    """:func:`train` with the run directory locked: logging, distributed set-up, the loop."""
    run_log = _RunLog(run_dir, context.is_main)
    previous_level = logger.level
    if context.is_main and (previous_level == logging.NOTSET or previous_level > logging.INFO):
        logger.setLevel(logging.INFO)

    def accept() -> None:
        """Every check passed: from here on rank 0 writes into the run directory."""
        if context.is_main:
            run_log.open_file()
            remove_stale_temporaries(run_dir)  # checkpoints half-written by a killed run
            if before_writing is not None:
                before_writing()

    distributed.init_distributed(context, device)
    try:
        with distributed.backend_failures_reported(context):
            return _train(data_paths, run_dir, config, context, device, validation_paths, accept)
    finally:
        distributed.shutdown_distributed(context)
        run_log.close()
        logger.setLevel(previous_level)


def _train(
    data_paths: Sequence[str | os.PathLike],
    run_dir: Path,
    config: TrainConfig,
    context: distributed.DistContext,
    device: torch.device,
    validation_paths: Sequence[str | os.PathLike] | None,
    accept: Callable[[], None],
) -> dict[str, Any]:
    """The checks (nothing written), then ``accept()``, then the loop."""
    configure_backends(device, config)
    if validation_paths:
        from mubundle.data.sites import site_of_paths

        # validation events of another site would pick the checkpoint by another medium's physics
        site_of_paths([*data_paths, *validation_paths], what="the training and validation data mix")
    resume_path, checkpoint = load_latest_intact_checkpoint(run_dir, _CHECKPOINT_KEYS) or (None, None)
    initial: MuonBundleModel | None = None
    if checkpoint is not None:
        _check_resume_settings(checkpoint, resume_path, config)
        _check_resume_world_size(checkpoint, resume_path, context)
        transform = FeatureTransform.from_dict(checkpoint["transform"])
        domain = read_domain(checkpoint, resume_path)  # None in checkpoints of older versions
    elif config.init_from:
        initial = load_initial_model(config)
        transform = copy.deepcopy(initial.transform)
        domain = fit_transform_and_domain(data_paths, config.transform_fit_events)[1]  # the fine-tuning data's
    else:
        transform, domain = fit_transform_and_domain(data_paths, config.transform_fit_events)
    parts = _build(data_paths, run_dir, config, transform, device, context)
    parts.model.domain = domain  # exported with the model (model.json "domain")
    progress = Progress()
    _check_same_data_on_every_rank(parts)
    if checkpoint is not None:
        _check_resume_data(parts, checkpoint, resume_path)
        _restore(parts, checkpoint, progress, restore_guard=True)
        del checkpoint
    elif initial is not None:
        parts.model.load_state_dict(initial.state_dict())
        parts.step_fn.generator_ema.restart()  # the average starts at the loaded generator
        del initial
    validation: CountSample | None = None
    validation_report: dict[str, Any] | None = None
    if validation_paths:
        # every rank loads the same events; only rank 0 writes the quarantine file
        quarantine = run_dir / QUARANTINE_DIR / "validation.parquet" if context.is_main else None
        validation, validation_report = load_count_sample(validation_paths, "validation", device, quarantine)
        logger.info("validation: %d events for the multiplicity model's NLL", len(validation))
        # the NLL per event that can have muons (below the kinematic zero log P = 0)
        validation = above_kinematic_zero(parts.model, validation, "validation")

    accept()
    if resume_path is not None:
        logger.info("resumed from %s at step %d (epoch %d)", resume_path, progress.step, parts.stream.epoch)
        problem = _export_problem(run_dir, resume_path) if context.is_main else None
        if problem is not None:  # deleted, or a kill between the checkpoint and its export
            export_model(_averaged_model(parts), run_dir, MODEL_DIR)
            logger.warning("%s: exported the model of %s again", problem, resume_path.name)
    else:
        if config.init_from:
            logger.info("fine-tuning %s: transform, multiplicity model and generator loaded, fresh critic", config.init_from)
        _write_checkpoint(parts, progress, run_dir, is_best=False)  # the rollback target of the first steps
    resumed_from = progress.step
    last_checkpoint_step = progress.step  # the step a rerun would resume from

    metrics = MetricsLog(run_dir / METRICS_NAME) if context.is_main else None
    board = TensorBoardLog(run_dir, progress.step) if context.is_main else None
    if metrics is not None:
        dropped = metrics.truncate_after(progress.step)
        if dropped:
            logger.info("metrics.jsonl: dropped %d record(s) after step %d (recomputed now)", dropped, progress.step)
    bar = progress_bar(config.max_steps, progress.step, context.is_main and config.progress_bar)
    meter = RateMeter()
    known_failed_files = 0
    checkpoint_due = False
    batches = _batches(parts.stream)
    try:
        while progress.step < config.max_steps:
            batch = next(batches)
            step = progress.step + 1
            _maybe_simulate_crash(step)
            parts.step_fn.set_learning_rates(parts.guard.state.lr_scale, adversarial_lr_factor(step, config))
            parts.step_fn.update_generator = step > config.critic_warmup_steps
            with autocast_context(device, config):
                result = parts.step_fn(batch, parts.rng)
            progress.step = step
            applied = distributed.all_ranks_true(result.applied, context, device)
            counts = distributed.sum_over_ranks({"events": result.n_events, "muons": result.n_muons}, context, device)
            progress.events_seen += counts["events"]
            progress.muons_seen += counts["muons"]
            meter.add(counts["events"], counts["muons"])
            bar.update(1)
            action = parts.guard.observe(step, applied, result.bad, result.saturated_fraction)
            if action is GuardAction.ROLLBACK:
                _rollback(parts, progress, run_dir, metrics, board)
                last_checkpoint_step = progress.step
                board = TensorBoardLog(run_dir, progress.step) if context.is_main else None
                bar.n = progress.step
                bar.refresh()
                batches = _batches(parts.stream)
                checkpoint_due = False
                continue
            losses = distributed.mean_over_ranks(result.losses, context, device)
            if applied:
                _update_best(progress, losses, config.best_smoothing)
                progress.last_losses = losses
            validation_record = {}
            if validation is not None and not parts.multiplicity_stopping.frozen and (
                step % config.validate_every == 0 or step == config.max_steps
            ):
                validation_record = _validate_multiplicity(parts, validation, step)
            if step % config.log_every == 0 or step == config.max_steps or validation_record:
                known_failed_files = _warn_new_failed_files(parts.stream, known_failed_files)
                record = _metrics_record(parts, progress, losses, result.saturated_fraction, applied, meter)
                record.update(validation_record)
                if metrics is not None and board is not None:
                    metrics.append(record)
                    board.scalars(record)
                bar.set_postfix(
                    ev_s=f"{record['events_per_s']:.0f}", mu_s=f"{record['muons_per_s']:.0f}",
                    c=f"{losses.get('c_loss', float('nan')):.3g}", m=f"{losses.get('m_loss', float('nan')):.3g}",
                )
            if board is not None and step % config.histogram_every == 0:
                _log_histograms(parts, board, batch, step)
            checkpoint_due = checkpoint_due or step % config.checkpoint_every == 0 or step == config.max_steps
            if checkpoint_due and parts.guard.healthy:
                is_best = progress.score_ema is not None and (
                    progress.best_score is None or progress.score_ema < progress.best_score
                )
                if is_best:
                    progress.best_score, progress.best_step = progress.score_ema, step
                _write_checkpoint(parts, progress, run_dir, is_best)
                last_checkpoint_step = progress.step
                checkpoint_due = False
    except KeyboardInterrupt as stop:  # SIGTERM (mubundle.signals.Terminated) or Ctrl-C: say so in train.log
        name = signal.Signals(int(getattr(stop, "signum", signal.SIGINT))).name
        logger.warning("stopped by %s at step %d (last checkpoint step %d)", name, progress.step, last_checkpoint_step)
        raise
    finally:
        bar.close()
        if board is not None:
            board.close()

    summary = {
        "run_dir": str(run_dir),
        "steps": progress.step,
        "resumed_from_step": resumed_from,
        "epoch": int(parts.stream.epoch),
        "events_seen": progress.events_seen,
        "muons_seen": progress.muons_seen,
        "skipped_steps": parts.guard.state.skipped_steps,
        "rollbacks": parts.guard.state.rollbacks,
        "lr_scale": parts.guard.state.lr_scale,
        "saturation_warnings": parts.guard.state.saturated_warnings,
        "rejected_rows": _rejected_rows(parts.stream),
        "failed_files": _failed_files(parts.stream),
        "best_step": progress.best_step,
        "best_score": progress.best_score,
        "multiplicity_validation": {
            "data": validation_report,
            "best_step": parts.multiplicity_stopping.best_step,
            "best_nll": parts.multiplicity_stopping.best_nll,
            "frozen": parts.multiplicity_stopping.frozen,
        },
        "last_losses": progress.last_losses,
        "world_size": context.world_size,
        "device": str(device),
    }
    if context.is_main:
        (run_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _rollback(
    parts: Components, progress: Progress, run_dir: Path, metrics: MetricsLog | None, board: TensorBoardLog | None
) -> None:
    """Restore the newest checkpoint (always a good one), lower the lr, persist the new state."""
    distributed.barrier(parts.context)
    latest = load_latest_intact_checkpoint(run_dir, _CHECKPOINT_KEYS)
    if latest is None:  # cannot happen: step 0 is always checkpointed; fail loudly if it did
        raise RuntimeError(f"rollback needed at step {progress.step} but {run_dir} has no checkpoint")
    checkpoint = latest[1]
    parts.guard.begin_rollback(progress.step, int(checkpoint["step"]))
    _restore(parts, checkpoint, progress, restore_guard=False)
    if board is not None:
        board.close()
    if metrics is not None:
        metrics.truncate_after(progress.step)
    # rewrite the checkpoint so a crash-and-resume keeps the lowered lr and the rollback count
    _write_checkpoint(parts, progress, run_dir, is_best=False)


def _validate_multiplicity(parts: Components, validation: CountSample, step: int) -> dict[str, Any]:
    """Validation NLL of the multiplicity model; keep its best weights; freeze it after the patience.

    Returns the fields for this step's metrics record (val_m_nll, val_m_nll_best, multiplicity_frozen).
    """
    nll = multiplicity_nll(parts.model, validation)
    # identical on every rank (same data, same weights); averaged so the decisions agree bitwise
    nll = distributed.mean_over_ranks({"val_m_nll": nll}, parts.context, parts.device)["val_m_nll"]
    stopping = parts.multiplicity_stopping
    improved = stopping.observe(step, nll, parts.model.multiplicity)
    logger.info(
        "step %d: validation multiplicity NLL %.5f nats/event%s (best %.5f at step %s)",
        step, nll, " (best)" if improved else "", stopping.best_nll or float("nan"), stopping.best_step,
    )
    if stopping.frozen:
        stopping.restore_best(parts.model.multiplicity)
        parts.step_fn.multiplicity_frozen = True
        logger.info(
            "step %d: no better validation NLL in %d evaluations: multiplicity model frozen at its step-%d weights",
            step, stopping.patience, stopping.best_step,
        )
    return {"val_m_nll": nll, "val_m_nll_best": stopping.best_nll, "multiplicity_frozen": stopping.frozen}


def _log_histograms(parts: Components, board: TensorBoardLog, batch: RaggedBatch, step: int) -> None:
    """Real vs generated log10 E, radius and N for the conditions of the current batch."""
    conditions = torch.from_numpy(batch.conditions).to(parts.device)
    generated = generated_histogram_features(parts.model, conditions, seed=parts.config.seed + step)
    board.feature_histograms(step, bundle_features(batch.counts, batch.flat_muons), generated)
