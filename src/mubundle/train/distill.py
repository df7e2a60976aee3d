"""Distillation: a smaller, faster model (the student) trained to reproduce a trained one (the teacher).

The student keeps the teacher's feature transform and noise dimensions; its networks are
smaller (:class:`DistillConfig`). Each step, for a fresh batch of B primaries:

    conditions (B, 4)   the primaries of the `mubundle simulate` defaults, or rows of given files
    N ~ teacher         m_loss = mean -log P_student(N | conditions)
                        (minus the teacher's own mean -log P(N): an estimate of KL(teacher || student))
    noise ~ N(0, 1)     g_loss = mean over muons of |G_student(c, N, noise) - G_teacher(c, N, noise)|^2
                        (standardised muon features, (M, 3))

Given its noise, the teacher's generator is a deterministic function, so the student's
generator learns it by plain regression: no critic, no gradient penalty, fresh samples every
step (nothing to overfit). With the same noise
the student's bundles follow the teacher's distribution up to the regression error, and its
muons stay correlated as the teacher's are (set layers pool over the bundle).

Random numbers of step k come from ``SeedSequence([seed, k])`` alone, so a run killed at any
moment resumes from its last checkpoint exactly as if never interrupted (bitwise on CPU).
A step whose loss or gradients are not finite is reported, counted and not applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mubundle import configio
from mubundle.data.atomic import remove_stale_temporaries
from mubundle.data.lock import directory_lock
from mubundle.model.bundle import WEIGHTS_FILE, MuonBundleModel
from mubundle.model.generator import BundleGenerator
from mubundle.model.layers import event_index_of
from mubundle.train.checkpoint import export_model, list_checkpoints, load_latest_intact_checkpoint, save_checkpoint
from mubundle.train.device import resolve_device
from mubundle.train.monitor import MetricsLog, TensorBoardLog, progress_bar

log = logging.getLogger(__name__)

CONFIG_FILE = "distill_config.yaml"
#: seed offset of the fixed held-out batch (never a training step's seed)
_HELDOUT_STREAM = 0x48E1D


@dataclass
class DistillConfig:
    """Student sizes (the rest of its ModelConfig is the teacher's) and optimisation settings."""

    multiplicity_hidden: int = 64
    multiplicity_layers: int = 3
    generator_context_dim: int = 64
    generator_hidden: int = 48
    generator_set_layers: int = 1
    layer_norm: bool = False
    # a model directory (e.g. an earlier student) whose weights start the student; its sizes must
    # be the ones above (continue a student with other settings, e.g. a sliced_weight)
    init_from: str | None = None
    steps: int = 20_000
    batch_size: int = 4096  # primaries (events) per step
    learning_rate: float = 1e-3
    # weight of a sliced Wasserstein term between the student's and the teacher's muon features
    # of the batch (their distributions, on top of the pairwise regression); 0 = off
    sliced_weight: float = 0.0
    final_learning_rate: float = 1e-5  # cosine decay from learning_rate over `steps`
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500  # also exports RUN/model
    log_every: int = 100
    heldout_events: int = 8192  # fixed batch for the held-out losses logged at each checkpoint
    keep_checkpoints: int = 2
    max_consecutive_skips: int = 20  # then the run stops with an error

    def __post_init__(self) -> None:
        # the student's sizes here, not when its ModelConfig is built: a config file's error then
        # names the file (configio.from_yaml), and nothing is written before it
        for name in ("multiplicity_hidden", "generator_context_dim", "generator_hidden", "steps", "batch_size",
                     "checkpoint_every", "log_every", "heldout_events", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"distill {name} must be >= 1, got {getattr(self, name)}")
        for name in ("multiplicity_layers", "generator_set_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"distill {name} must be >= 0, got {getattr(self, name)}")
        if self.sliced_weight < 0:
            raise ValueError(f"distill sliced_weight must be >= 0, got {self.sliced_weight}")
        if not 0 < self.final_learning_rate <= self.learning_rate:
            raise ValueError("distill needs 0 < final_learning_rate <= learning_rate")

    def student_fields(self) -> dict[str, Any]:
        """The ModelConfig fields the student overrides."""
        names = ("multiplicity_hidden", "multiplicity_layers", "generator_context_dim", "generator_hidden",
                 "generator_set_layers", "layer_norm")
        return {name: getattr(self, name) for name in names}


class PrimarySampler:
    """Training primaries (n, 4) [GeV, rad, A, slant km], float32.

    Without ``primaries``: the distribution of the `mubundle simulate` defaults (the standard
    dataset the shipped model was trained on): E flat in log between the energy range, zenith
    uniform in cos, masses of the mix, one of the vertical depths converted to slant depth
    through the site's spherical overburden (as ``mubundle simulate``). With
    ``primaries`` (m, 4): rows drawn uniformly with replacement.
    """

    def __init__(self, primaries: np.ndarray | None = None) -> None:
        from mubundle.sim.config import SimConfig

        self.primaries = None if primaries is None else np.asarray(primaries, dtype=np.float32)
        if self.primaries is not None and (self.primaries.ndim != 2 or self.primaries.shape[1] != 4 or not len(self.primaries)):
            raise ValueError(f"distill primaries must be a non-empty (n, 4) array, got shape {self.primaries.shape}")
        self.sim = SimConfig()

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.primaries is not None:
            return self.primaries[rng.integers(0, len(self.primaries), size=n)]
        from mubundle.sim.primaries import sample_primaries_at_one_depth

        return np.stack(sample_primaries_at_one_depth(self.sim, n, rng), axis=1).astype(np.float32)


def build_student(teacher: MuonBundleModel, config: DistillConfig) -> MuonBundleModel:
    """A freshly initialised student: the teacher's ModelConfig with ``config``'s sizes, same transform.

    The student records the teacher's domain: it learns the teacher's muons, which are
    trustworthy only where the teacher was trained (:func:`warn_outside_teacher_domain`). It
    regresses the teacher's generator before its tail maps, so it carries the teacher's maps.
    """
    student_config = dataclasses.replace(teacher.config, **config.student_fields())
    student = MuonBundleModel(student_config, teacher.transform)
    student.domain = teacher.domain
    student.calibration = teacher.calibration
    return student


def warn_outside_teacher_domain(teacher: MuonBundleModel, primaries: np.ndarray | None,
                                what: str = "training primaries") -> int:
    """Count (and log once, with the first bound crossed) the training primaries (n, 4) outside the
    teacher's domain: the given rows, or a draw of the default distribution (``what`` names them in
    the line; :func:`_distill` checks its held-out batch); None: nothing to check, 0.

    They are used: the student learns the teacher's extrapolation there, and its recorded
    domain stays the teacher's, so sampling the student there is refused like the teacher.
    The default primaries (the ``mubundle simulate`` defaults) are the domain of the shipped
    ``full`` teacher, not that of a teacher of another site or depth range.
    """
    if primaries is None or teacher.domain is None:
        return 0
    check = teacher.domain.check_conditions(np.asarray(primaries))
    if check.n_outside:
        log.warning("distill: %d of %d %s lie outside the domain of the teacher %s (e.g. %s); the student learns "
                    "its extrapolation there and records the teacher's domain", check.n_outside, len(primaries), what,
                    teacher.name, check.violations[0].describe(teacher.name))
    return check.n_outside


def step_seeds(seed: int, step: int) -> tuple[np.random.Generator, int]:
    """(numpy Generator for the primaries, torch seed for N and noise) of step ``step``."""
    primary_seed, torch_seed = np.random.SeedSequence([seed, step]).spawn(2)
    return np.random.default_rng(primary_seed), int(torch_seed.generate_state(1, np.uint64)[0] >> 1)


def distill_losses(
    teacher: MuonBundleModel, student: MuonBundleModel, conditions: Tensor, generator: torch.Generator,
    with_sliced: bool = False,
) -> dict[str, Tensor]:
    """Losses of one batch: conditions (B, 4) physical on the models' device.

    Returns ``g_loss`` (mean squared error of the standardised muon features), ``sliced``
    (:func:`sliced_wasserstein` of the student's and the teacher's muon features; computed only
    ``with_sliced``, else 0), ``m_loss`` (student's mean -log P(N)), ``teacher_m_nll`` (the
    teacher's, no gradient) and ``muons`` (M, the number of muons the losses are over).
    """
    features = teacher.transform.condition_features(conditions)
    with torch.no_grad():
        counts = teacher.multiplicity.sample(features, generator)
        teacher_nll = teacher.multiplicity.nll(features, counts)
    m_loss = student.multiplicity.nll(features, counts)
    with_muons = torch.nonzero(counts).squeeze(1)
    part_counts = counts.index_select(0, with_muons)
    n_muons = int(part_counts.sum())
    event_index = event_index_of(part_counts, n_muons)
    part_features = features.index_select(0, with_muons)
    teacher_generator: BundleGenerator = teacher.generator
    noise = teacher_generator.draw_noise(part_counts.shape[0], n_muons, generator, conditions.device)
    if n_muons:
        with torch.no_grad():
            target = teacher_generator(part_features, part_counts, event_index, noise=noise)
        predicted = student.generator(part_features, part_counts, event_index, noise=noise)
        g_loss = (predicted - target).square().mean()
        # its random directions are the step's last draw: without it the rest is unchanged
        sliced = sliced_wasserstein(predicted, target, generator) if with_sliced else g_loss.new_zeros(())
    else:
        g_loss = sliced = m_loss.new_zeros(())
    return {"g_loss": g_loss, "sliced": sliced, "m_loss": m_loss, "teacher_m_nll": teacher_nll, "muons": torch.tensor(n_muons)}


def sliced_wasserstein(predicted: Tensor, target: Tensor, generator: torch.Generator, directions: int = 16) -> Tensor:
    """Squared sliced 2-Wasserstein distance between two (M, F) samples: the feature axes plus
    ``directions`` random unit directions; on each, the mean squared difference of the sorted
    projections."""
    features = predicted.shape[1]
    random = torch.randn(features, directions, generator=generator, device=generator.device).to(predicted.device)
    axes = torch.cat((torch.eye(features, device=predicted.device), random / random.norm(dim=0, keepdim=True)), dim=1)
    a = torch.sort(predicted @ axes, dim=0).values
    b = torch.sort(target @ axes, dim=0).values
    return (a - b).square().mean()


def learning_rate(config: DistillConfig, step: int) -> float:
    """Cosine decay from ``learning_rate`` (step 0) to ``final_learning_rate`` (last step)."""
    progress = min(step / max(config.steps - 1, 1), 1.0)
    low, high = config.final_learning_rate, config.learning_rate
    return low + 0.5 * (high - low) * (1.0 + math.cos(math.pi * progress))


def teacher_fingerprint(teacher_dir: Path) -> str:
    """SHA-256 of the teacher's weights file (a resumed run must distil the same teacher)."""
    return hashlib.sha256((Path(teacher_dir) / WEIGHTS_FILE).read_bytes()).hexdigest()


def distill(
    teacher_dir: "str | Path", run_dir: "str | Path", config: DistillConfig, primaries: np.ndarray | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train a student of the model in ``teacher_dir`` into ``run_dir`` (resumed if it holds a run).

    ``run_dir`` is locked for the run (:mod:`mubundle.data.lock`): a second distillation into
    it is refused while this one lives. Details: :func:`_distill`.
    """
    if config.init_from is not None and not list_checkpoints(Path(run_dir)):  # before anything is written
        _initial_model_dir(config.init_from)
    with directory_lock(run_dir, "mubundle distill"):
        remove_stale_temporaries(run_dir)  # checkpoints half-written by a killed run
        return _distill(teacher_dir, run_dir, config, primaries, show_progress)


def _distill(
    teacher_dir: "str | Path", run_dir: "str | Path", config: DistillConfig, primaries: np.ndarray | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train a student of the model in ``teacher_dir`` into ``run_dir`` (resumed if it holds a run).

    Writes ``run_dir/model`` (the student, a normal model directory, exported at every
    checkpoint and at the end), ``checkpoints/``, ``metrics.jsonl``, TensorBoard logs and
    ``distill_config.yaml``. ``primaries`` (n, 4) physical replaces the default training
    distribution (:class:`PrimarySampler`). Returns a summary (steps, skipped steps, held-out
    losses, seconds).
    """
    teacher_dir, run_dir = Path(teacher_dir), Path(run_dir)
    device = resolve_device(config.device)
    teacher = MuonBundleModel.load(teacher_dir, device=device)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"teacher": str(teacher_dir), "teacher_sha256": teacher_fingerprint(teacher_dir),
              "config": configio.to_dict(config)}
    _check_or_write_run_record(run_dir, record)

    torch.manual_seed(config.seed)  # the student's initial weights
    student = build_student(teacher, config).to(device).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    sampler = PrimarySampler(primaries)
    heldout = _heldout_batch(sampler, config, device)
    checked = primaries if primaries is not None else heldout.cpu().numpy()
    outside = warn_outside_teacher_domain(
        teacher, checked, "training primaries" if primaries is not None else
        "default training primaries (`mubundle simulate` defaults, drawn for the held-out batch; --primaries gives others)")
    start_step, skipped = 0, 0
    latest = load_latest_intact_checkpoint(run_dir, ("student", "optimizer", "step", "skipped_steps"))
    if latest is not None:
        state = latest[1]
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, skipped = int(state["step"]), int(state["skipped_steps"])
        log.info("distill: resuming %s from step %d", run_dir, start_step)
    elif config.init_from is not None:  # a resumed run has its weights from the checkpoint
        _load_initial_weights(student, _initial_model_dir(config.init_from))
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metrics.truncate_after(start_step)
    board = TensorBoardLog(run_dir, start_step)

    last_heldout: dict[str, float] = {}

    def save(step: int) -> None:
        losses = heldout_losses(teacher, student, heldout, config.seed)
        last_heldout.update(losses)
        entry = {"step": step, **{f"heldout_{k}": v for k, v in losses.items()}, "skipped_steps": skipped}
        metrics.append(entry)
        board.scalars(entry)
        payload = {"step": step, "skipped_steps": skipped, "student": student.state_dict(),
                   "optimizer": optimizer.state_dict()}
        save_checkpoint(run_dir, step, payload, keep=config.keep_checkpoints, is_best=False)
        export_model(student, run_dir, "model")

    started = time.perf_counter()
    consecutive = 0
    sums = {"steps": 0, "g_loss": 0.0, "m_kl": 0.0, "events": 0, "muons": 0}
    window = time.perf_counter()
    bar = progress_bar(config.steps, start_step, show_progress)
    try:
        for step in range(start_step + 1, config.steps + 1):
            rng, torch_seed = step_seeds(config.seed, step)
            generator = torch.Generator(device=device).manual_seed(torch_seed)
            conditions = torch.from_numpy(sampler.draw(config.batch_size, rng)).to(device)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step - 1)
            losses = distill_losses(teacher, student, conditions, generator, with_sliced=config.sliced_weight > 0)
            loss = losses["g_loss"] + config.sliced_weight * losses["sliced"] + losses["m_loss"]
            optimizer.zero_grad(set_to_none=True)
            applied = bool(torch.isfinite(loss))
            if applied:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), float("inf"))
                applied = bool(torch.isfinite(grad_norm))
            if applied:
                optimizer.step()
                consecutive = 0
            else:
                skipped += 1
                consecutive += 1
                log.warning("distill step %d: non-finite loss or gradient (g_loss %s, m_loss %s); step not applied",
                            step, float(losses["g_loss"].detach()), float(losses["m_loss"].detach()))
                if consecutive >= config.max_consecutive_skips:
                    raise RuntimeError(f"distill: {consecutive} consecutive non-finite steps up to step {step}; stopping")
            if applied:  # the logged losses average the applied steps; skipped ones are counted
                sums["steps"] += 1
                sums["g_loss"] += float(losses["g_loss"].detach())
                sums["m_kl"] += float(losses["m_loss"].detach() - losses["teacher_m_nll"])
            sums["events"] += config.batch_size
            sums["muons"] += int(losses["muons"])
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                applied_steps = max(sums["steps"], 1)
                elapsed = max(time.perf_counter() - window, 1e-9)
                entry = {"step": step, "g_loss": sums["g_loss"] / applied_steps, "m_kl": sums["m_kl"] / applied_steps,
                         "lr": learning_rate(config, step - 1), "events_per_s": sums["events"] / elapsed,
                         "muons_per_s": sums["muons"] / elapsed, "skipped_steps": skipped}
                metrics.append(entry)
                board.scalars(entry)
                bar.set_postfix(g=f"{entry['g_loss']:.3g}", m_kl=f"{entry['m_kl']:.3g}")
                sums = {"steps": 0, "g_loss": 0.0, "m_kl": 0.0, "events": 0, "muons": 0}
                window = time.perf_counter()
            if step % config.checkpoint_every == 0 or step == config.steps:
                save(step)
    finally:
        bar.close()
        board.close()
    if start_step >= config.steps:  # nothing left to train: make sure the export exists
        export_model(student, run_dir, "model")
        last_heldout.update(heldout_losses(teacher, student, heldout, config.seed))
    # else the last step was a checkpoint (save() runs at step == steps): its held-out losses
    return {"steps": config.steps, "resumed_from_step": start_step, "skipped_steps": skipped,
            **{f"heldout_{k}": v for k, v in last_heldout.items()}, "seconds": time.perf_counter() - started,
            "student_parameters": sum(p.numel() for p in student.parameters()), "model": str(run_dir / "model"),
            "primaries_outside_teacher_domain": {"outside": outside, "checked": len(checked),
                                                 "primaries": "given" if primaries is not None else "default"}}


def _initial_model_dir(init_from: str) -> Path:
    """The model directory of ``init_from`` (a path or a shipped model's name); ``ValueError`` in one
    line naming it when it is not one."""
    from mubundle.model.shipped import resolve_model_path

    try:
        return resolve_model_path(init_from)
    except FileNotFoundError as error:
        raise ValueError(f"distill init_from: {error}") from None


def _load_initial_weights(student: MuonBundleModel, model_dir: Path) -> None:
    """Start ``student`` from the weights in ``model_dir``; a ``ValueError`` names differing sizes."""
    from mubundle.model.config import differing_model_fields

    initial = MuonBundleModel.load(model_dir)
    differences = differing_model_fields(student.config, initial.config)
    if differences:
        raise ValueError(f"init_from {model_dir}: its sizes differ from the student's: {differences}")
    student.load_state_dict(initial.state_dict())


def _heldout_batch(sampler: PrimarySampler, config: DistillConfig, device: torch.device) -> Tensor:
    rng = np.random.default_rng([config.seed, _HELDOUT_STREAM])
    return torch.from_numpy(sampler.draw(config.heldout_events, rng)).to(device)


def heldout_losses(teacher: MuonBundleModel, student: MuonBundleModel, conditions: Tensor, seed: int) -> dict[str, float]:
    """``g_loss`` and ``m_kl`` on a fixed batch with fixed random numbers (comparable across checkpoints)."""
    generator = torch.Generator(device=conditions.device).manual_seed(seed + _HELDOUT_STREAM)
    with torch.no_grad():
        losses = distill_losses(teacher, student, conditions, generator)
    return {"g_loss": float(losses["g_loss"]), "m_kl": float(losses["m_loss"] - losses["teacher_m_nll"])}


def _check_or_write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``distill_config.yaml``; a resumed run must have the same teacher and settings
    (``steps`` may grow). Raises ``ValueError`` naming what differs."""
    import yaml

    path = run_dir / CONFIG_FILE
    if path.exists():
        previous = yaml.safe_load(path.read_text())
        differences = [
            key for key in ("teacher_sha256",) if previous.get(key) != record[key]
        ] + [
            key for key in record["config"] if key != "steps" and previous.get("config", {}).get(key) != record["config"][key]
        ]
        if differences:
            raise ValueError(f"{path}: this run was started with different {', '.join(differences)}; use a new --out")
    path.write_text(yaml.safe_dump(record, sort_keys=False))


def distill_from_args(args: Any) -> int:
    """``mubundle distill``: config from ``--config`` YAML, then the command-line overrides;
    prints the summary as one JSON line."""
    import json
    import sys

    from mubundle.model.shipped import DEFAULT_TEACHER, resolve_model_path

    config = configio.from_yaml(DistillConfig, args.config) if args.config else DistillConfig()
    overrides = {name: getattr(args, name) for name in ("steps", "batch_size", "device", "seed") if getattr(args, name) is not None}
    config = dataclasses.replace(config, **overrides)
    primaries = None
    if args.primaries:
        from mubundle.data.sources import read_events

        loaded = read_events(args.primaries)
        for failure in loaded.failed_files:
            print(f"mubundle distill: {failure['path']}: {failure['error']}", file=sys.stderr)
        if loaded.rejected:
            rejected = ", ".join(f"{count} {reason}" for reason, count in loaded.rejected.items())
            print(f"mubundle distill: rejected primaries (not used): {rejected}", file=sys.stderr)
        if not len(loaded.batch):
            raise ValueError(f"no usable primaries in {', '.join(map(str, args.primaries))}")
        primaries = loaded.batch.conditions
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = distill(resolve_model_path(args.teacher or DEFAULT_TEACHER), args.out, config, primaries)
    print(json.dumps(summary))
    return 0
