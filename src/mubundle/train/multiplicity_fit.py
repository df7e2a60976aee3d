"""The multiplicity model on held-out events: validation likelihood and early stopping.

The generator is conditioned on each event's true N (train/step.py), so the multiplicity
model P(N | conditions) is trained independently of the WGAN: by maximum likelihood with
its own Adam. Given enough steps it over-fits a training set of ~10^5 events (validation
PIT KS distance 0.86 -> 3.7 x its floor between steps 12 000 and 20 000 of the shipped
model's run, docs/pretrained.md). Two tools here:

- :class:`MultiplicityEarlyStopping`: keeps the multiplicity weights with the lowest
  validation NLL; after ``patience`` evaluations without improvement it freezes the model at
  those weights. Used by ``mubundle train --validation`` (train/loop.py) and by
  :func:`fit_multiplicity`.
- :func:`fit_multiplicity` (``mubundle refit-multiplicity``): fit a model's multiplicity part
  alone on training events with early stopping on validation events, leaving its generator
  untouched (in-memory: a multiplicity fit needs only conditions and N, 5 numbers per event).
  :func:`fit_multiplicity_restarts` repeats it from several seeds and keeps the fit with the
  lowest validation NLL: the fit is not convex, and single fits stop at different points
  (docs/training.md).
- Distillation (``refit-multiplicity --distill``): the same fit with a teacher's distribution
  as the target instead of the events' N (:func:`teacher_divergence`), so a smaller network
  can take over a trained one's rates, including the rare muons just above the kinematic
  zero that the likelihood of the events hardly sees.

NLL values are mean negative log-likelihoods in nats per event.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import Tensor

from mubundle.data.batch import RaggedBatch
from mubundle.data.lock import directory_lock
from mubundle.data.sources import read_events
from mubundle.data.validate import write_quarantine
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.domain import ExtrapolationError, ExtrapolationWarning, check_files_site, check_primaries
from mubundle.model.multiplicity import (
    MultiplicityModel,
    log_one_minus_exp,
    mixture_log_p_zero,
    mixture_log_prob,
    sample_positive,
)

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger("mubundle.train")

# events per forward pass of a validation NLL (bounded memory for any validation set)
_VALIDATION_EVENTS_PER_PASS = 65_536


@dataclass
class CountSample:
    """Conditions (B, 4) [GeV, rad, A, km] and multiplicities (B,) int64 on one device."""

    conditions: Tensor
    counts: Tensor

    @classmethod
    def from_batch(cls, batch: RaggedBatch, device: torch.device | str) -> "CountSample":
        """The conditions and N of ``batch`` (its muons are not needed)."""
        conditions = torch.as_tensor(np.ascontiguousarray(batch.conditions, dtype=np.float32), device=device)
        counts = torch.as_tensor(np.asarray(batch.counts, dtype=np.int64), device=device)
        return cls(conditions, counts)

    def take(self, index: Tensor) -> "CountSample":
        """The events at ``index`` ((K,) int64)."""
        return CountSample(self.conditions.index_select(0, index), self.counts.index_select(0, index))

    def __len__(self) -> int:
        return int(self.counts.shape[0])


def load_valid_events(
    paths: Sequence[str | os.PathLike], role: str, quarantine: Path | None = None
) -> tuple[RaggedBatch, dict[str, Any]]:
    """Every valid event in ``paths`` (any layout), for ``role`` ("training", "validation").

    Rejected rows are counted by reason, logged and (with ``quarantine``) written to that
    Parquet file; unreadable files are logged by name. Raises ``ValueError`` naming the paths
    when no valid event is left. Returns the events and ``{"events", "rejected_rows",
    "failed_files", "quarantine"}``.
    """
    loaded = read_events(paths)
    for failed in loaded.failed_files:
        logger.warning("%s data: skipped unreadable file %s: %s", role, failed["path"], failed["error"])
    quarantined = None
    if loaded.rejected:
        logger.warning("%s data: rejected rows by reason %s", role, loaded.rejected)
        if quarantine is not None:
            quarantined = write_quarantine(loaded.rejected_rows, quarantine)
            logger.warning("%s data: rejected rows quarantined in %s", role, quarantined)
    if len(loaded.batch) == 0:
        raise ValueError(f"no valid {role} events in {', '.join(map(str, paths))} (see the warnings above)")
    report = {
        "events": len(loaded.batch), "rejected_rows": dict(loaded.rejected), "failed_files": list(loaded.failed_files),
        "quarantine": None if quarantined is None else str(quarantined),
    }
    return loaded.batch, report


def load_count_sample(
    paths: Sequence[str | os.PathLike], role: str, device: torch.device | str, quarantine: Path | None = None
) -> tuple[CountSample, dict[str, Any]]:
    """Conditions and N of every valid event in ``paths`` (:func:`load_valid_events`) on ``device``."""
    batch, report = load_valid_events(paths, role, quarantine)
    return CountSample.from_batch(batch, device), report


def check_data_site(model: MuonBundleModel, paths: Sequence[str | os.PathLike], role: str) -> None:
    """``ValueError`` when the ``role`` data ("training", "validation", "calibration") of ``paths``
    belong to another observation site than ``model``'s, or mix sites
    (:func:`~mubundle.model.domain.check_files_site`): a fit on them would not be this model's any
    more, whatever its domain says."""
    check_files_site(model.domain, model.name, paths, f"{role} data")


def check_data_domain(model: MuonBundleModel, conditions: dict[str, np.ndarray], allow_extrapolation: bool) -> dict[str, int]:
    """The events of each role outside ``model``'s domain (:func:`mubundle.model.domain.check_primaries`):
    ``conditions`` maps a role ("training", "validation", ...) to its (B, 4) conditions [GeV, rad, A, km].

    Outside events are refused with one line (the role, value, bound, model, how many:
    :class:`~mubundle.model.domain.ExtrapolationError`) unless ``allow_extrapolation``; then one
    :class:`~mubundle.model.domain.ExtrapolationWarning` counts them over all roles. A fit on them
    makes the model follow data where its domain says it was not trained, while the domain it
    keeps says nothing of it. Returns {role: events outside}.
    """
    outside: dict[str, int] = {}
    example = None
    for role, values in conditions.items():
        try:
            check = check_primaries(model.domain, values, model.name, allow_extrapolation, warn=False)
        except ExtrapolationError as error:
            raise ExtrapolationError(f"{role} data: {error}") from None
        outside[role] = check.n_outside
        if check.violations and example is None:
            example = check.violations[0].describe(model.name)
    if any(outside.values()):
        counts = " and ".join(f"{outside[role]} of {len(values)} {role}" for role, values in conditions.items())
        warnings.warn(f"extrapolating: {counts} events lie outside the domain of model '{model.name}' (e.g. {example}); "
                      "they are fitted (--allow-extrapolation) and the model keeps its recorded domain",
                      ExtrapolationWarning, stacklevel=2)
    return outside


@torch.no_grad()
def multiplicity_nll(model: MuonBundleModel, sample: CountSample) -> float:
    """Mean -log P(N | conditions) of ``sample`` under ``model`` [nats / event] (NaN if it is not finite).

    Evaluated in passes of at most 65 536 events; the model's train/eval mode is restored.
    """
    if len(sample) == 0:
        raise ValueError("multiplicity_nll: the sample has no events")
    was_training = model.multiplicity.training
    model.multiplicity.eval()
    try:
        total = torch.zeros((), dtype=torch.float64, device=sample.counts.device)
        for start in range(0, len(sample), _VALIDATION_EVENTS_PER_PASS):
            stop = start + _VALIDATION_EVENTS_PER_PASS
            total -= model.count_log_prob(sample.conditions[start:stop], sample.counts[start:stop]).double().sum()
    finally:
        model.multiplicity.train(was_training)
    return float(total) / len(sample)


#: draws of N > 0 from the teacher per event in :func:`teacher_divergence`
DISTILL_SAMPLES = 4
#: the per-event divergence is divided by max(P_teacher(N > 0), this): equal weight to the
#: relative error of rare rates down to this probability
DISTILL_RATE_FLOOR = 1e-4
#: what reports and logs call the fit's objective, without and with a teacher
OBJECTIVE_NAMES = {False: "NLL", True: "divergence from the teacher"}
#: the report's keys of the best validation figure, the final training figure and a history entry's
#: validation figure, without and with a teacher (with one they are a KL divergence, not an NLL)
REPORT_KEYS = {False: ("best_validation_nll", "final_train_nll", "val_m_nll"),
               True: ("best_validation_divergence", "final_train_divergence", "val_divergence")}
#: seed of the teacher draws of every validation pass (the same draws each time)
_DISTILL_VALIDATION_SEED = 0x5EED


def teacher_divergence(
    teacher: MultiplicityModel, student: MultiplicityModel, cond_features: Tensor, generator: torch.Generator,
    samples: int = DISTILL_SAMPLES,
) -> Tensor:
    """Per-event KL(teacher || student) of P(N | conditions), scaled to rare rates: (B, C) -> (B,) float64.

    Split at N = 0: KL = KL of the Bernoulli (N = 0, N > 0) + P_t(N > 0) KL of the distributions
    given N > 0. The first term is exact, the second estimated from ``samples`` teacher draws
    given N > 0 (:func:`sample_positive`): an event with P_t(N > 0) ~ 1e-3 contributes its rare
    counts directly instead of one in a thousand draws. Divided by max(P_t(N > 0), 1e-4), a
    small relative error of a rare rate weighs as much as one of a large mean (~(log ratio)^2 / 2).
    The teacher takes no gradient.
    """
    def split_at_zero(network: MultiplicityModel) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        """float64 mixture parameters, (B,) log P(N = 0) and log P(N > 0) of ``network``."""
        parameters = tuple(t.double() for t in network.mixture_parameters(cond_features))
        log_p0 = mixture_log_p_zero(parameters)
        return parameters, log_p0, log_one_minus_exp(log_p0)

    with torch.no_grad():
        teacher_parameters, teacher_log_p0, teacher_log_positive = split_at_zero(teacher)
        counts = sample_positive(teacher_parameters, samples, generator)
        teacher_log_p = mixture_log_prob(teacher_parameters, counts).mean(1) - teacher_log_positive
    student_parameters, student_log_p0, student_log_positive = split_at_zero(student)
    student_log_p = mixture_log_prob(student_parameters, counts).mean(1) - student_log_positive
    positive = teacher_log_positive.exp()
    binary = (1.0 - positive) * (teacher_log_p0 - student_log_p0) + positive * (teacher_log_positive - student_log_positive)
    given_positive = teacher_log_p - student_log_p
    return (binary + positive * given_positive) / torch.maximum(positive, positive.new_tensor(DISTILL_RATE_FLOOR))


@torch.no_grad()
def distillation_loss(model: MuonBundleModel, teacher: MultiplicityModel, sample: CountSample) -> float:
    """Mean :func:`teacher_divergence` over ``sample``'s conditions, with the same teacher draws on
    every call (a fixed seed), in passes of at most 65 536 events; NaN if not finite."""
    generator = torch.Generator(device=sample.counts.device).manual_seed(_DISTILL_VALIDATION_SEED)
    was_training = model.multiplicity.training
    model.multiplicity.eval()
    try:
        total = torch.zeros((), dtype=torch.float64, device=sample.counts.device)
        for start in range(0, len(sample), _VALIDATION_EVENTS_PER_PASS):
            features = model.transform.condition_features(sample.conditions[start : start + _VALIDATION_EVENTS_PER_PASS])
            total += teacher_divergence(teacher, model.multiplicity, features, generator).sum()
    finally:
        model.multiplicity.train(was_training)
    return float(total) / len(sample)


@dataclass
class MultiplicityEarlyStopping:
    """Best validation NLL so far, its weights, and when to stop updating the model.

    ``observe`` after each evaluation: an NLL below ``best_nll - min_improvement`` is a new
    best (its weights are copied); ``patience`` evaluations in a row without one freeze the
    model, and ``frozen`` tells the caller to restore ``best_state`` and stop its updates.
    A non-finite NLL never becomes the best and counts as no improvement.
    """

    patience: int
    min_improvement: float = 1e-4
    best_nll: float | None = None
    best_step: int | None = None
    best_state: dict[str, Tensor] | None = None
    evaluations_since_best: int = 0
    frozen: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def observe(self, step: int, nll: float, multiplicity: torch.nn.Module) -> bool:
        """Record the validation ``nll`` of ``multiplicity`` after ``step``; True when it is a new best."""
        improved = math.isfinite(nll) and (self.best_nll is None or nll < self.best_nll - self.min_improvement)
        if improved:
            self.best_nll, self.best_step, self.evaluations_since_best = float(nll), int(step), 0
            self.best_state = {name: t.detach().clone() for name, t in multiplicity.state_dict().items()}
        else:
            self.evaluations_since_best += 1
            if not math.isfinite(nll):
                logger.warning("step %d: validation multiplicity NLL is not finite (%s); not a best", step, nll)
        if self.patience > 0 and self.evaluations_since_best >= self.patience and self.best_state is not None:
            self.frozen = True
        self.history.append({"step": int(step), "val_m_nll": float(nll), "best": bool(improved)})
        return improved

    def restore_best(self, multiplicity: torch.nn.Module) -> None:
        """Load the best weights into ``multiplicity`` (no-op before the first evaluation)."""
        if self.best_state is not None:
            multiplicity.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_nll": self.best_nll, "best_step": self.best_step, "best_state": self.best_state,
            "evaluations_since_best": self.evaluations_since_best, "frozen": self.frozen,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_nll, self.best_step = state["best_nll"], state["best_step"]
        self.best_state = state["best_state"]
        self.evaluations_since_best, self.frozen = int(state["evaluations_since_best"]), bool(state["frozen"])
        self.history = list(state["history"])


@dataclass
class MultiplicityFitConfig:
    """Settings of :func:`fit_multiplicity` (Adam on mini-batches, early stopping on validation)."""

    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 8192  # events per Adam step
    max_epochs: int = 2000
    validate_every_epochs: int = 1
    patience: int = 50  # evaluations without a new best before stopping
    # the learning rate is multiplied by lr_factor after lr_patience evaluations without a
    # better validation NLL (torch's ReduceLROnPlateau): the noise of Adam at a fixed lr
    # otherwise hides the last ~0.005 nats/event
    lr_patience: int = 10
    lr_factor: float = 0.5
    reinitialise: bool = True  # start from fresh weights (seeded) rather than the model's
    # fits from seeds seed, seed + 1, ...; the one with the lowest validation NLL is kept
    restarts: int = 1


def fit_multiplicity(
    model: MuonBundleModel, train: CountSample, validation: CountSample, config: MultiplicityFitConfig,
    teacher: MultiplicityModel | None = None,
) -> dict[str, Any]:
    """Fit ``model.multiplicity`` in place by maximum likelihood with early stopping.

    With a ``teacher`` (same condition features) the objective is :func:`teacher_divergence`
    on the events' conditions instead of -log P(N) of their counts, for training steps and for
    the validation figure that early stopping and the learning rate follow (the report's keys
    then say "divergence" where they say "nll" without one, :data:`REPORT_KEYS`; the logs name it).

    Each epoch visits the training events once in a seeded random order in batches of
    ``config.batch_size``; every ``validate_every_epochs`` epochs the validation NLL is
    computed, the learning rate is reduced on plateaus (``lr_patience``, ``lr_factor``), and
    training stops ``patience`` evaluations after the best one (or at ``max_epochs``). The model ends with the best weights. A step with a non-finite loss or
    gradient is skipped and reported. Returns a report: best epoch and NLLs (nats / event),
    epochs run, skipped steps, the validation history. Deterministic for a seed on CPU.
    """
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"fit_multiplicity needs events: {len(train)} training, {len(validation)} validation")
    all_train_events = len(train)
    train = above_kinematic_zero(model, train, "training")
    if len(train) == 0:
        raise ValueError(f"fit_multiplicity: all {all_train_events} training events lie below the kinematic zero "
                         "(N = 0 there exactly); nothing to fit")
    validation = above_kinematic_zero(model, validation, "validation")  # NLLs per event that can have muons
    generator = torch.Generator().manual_seed(int(config.seed))
    multiplicity = model.multiplicity
    if config.reinitialise:
        with torch.random.fork_rng(devices=[]):  # the constructor's initialisation, seeded, global RNG untouched
            torch.manual_seed(int(config.seed))
            fresh = MultiplicityModel(model.config)
        multiplicity.load_state_dict(fresh.state_dict())
    optimizer = torch.optim.Adam(multiplicity.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience, threshold=0.0
    )
    stopping = MultiplicityEarlyStopping(patience=config.patience)
    device = train.counts.device

    figure = OBJECTIVE_NAMES[teacher is not None]

    def validation_figure() -> float:
        return multiplicity_nll(model, validation) if teacher is None else distillation_loss(model, teacher, validation)

    def batch_loss(index: Tensor) -> Tensor:
        features = model.transform.condition_features(train.conditions[index])
        if teacher is None:
            return multiplicity.nll(features, train.counts[index])
        return teacher_divergence(teacher, multiplicity, features, generator).mean()

    stopping.observe(0, validation_figure(), multiplicity)
    skipped, epoch = 0, 0
    multiplicity.train()
    for epoch in range(1, config.max_epochs + 1):
        order = torch.randperm(len(train), generator=generator).to(device)
        train_nll_sum = 0.0
        for start in range(0, len(train), config.batch_size):
            index = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(index)
            loss.backward()
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in multiplicity.parameters() if p.grad is not None])
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                skipped += 1
                logger.warning("multiplicity fit: epoch %d batch at %d: non-finite loss or gradient; step skipped", epoch, start)
                continue
            optimizer.step()
            train_nll_sum += loss.item() * int(index.shape[0])
        if epoch % config.validate_every_epochs == 0 or epoch == config.max_epochs:
            nll = validation_figure()
            if math.isfinite(nll):
                scheduler.step(nll)
            if stopping.observe(epoch, nll, multiplicity):
                logger.info("multiplicity fit: epoch %d train %s %.5f validation %s %.5f (best), lr %.3g", epoch, figure,
                            train_nll_sum / len(train), figure, nll, optimizer.param_groups[0]["lr"])
            if stopping.frozen:
                break
    stopping.restore_best(multiplicity)
    multiplicity.eval()
    best_key, train_key, history_key = REPORT_KEYS[teacher is not None]
    return {
        "best_epoch": stopping.best_step,
        best_key: stopping.best_nll,
        train_key: multiplicity_nll(model, train) if teacher is None else distillation_loss(model, teacher, train),
        "epochs_run": epoch,
        "stopped_early": stopping.frozen,
        "skipped_steps": skipped,
        "train_events": all_train_events,
        "train_events_fitted": len(train),  # the others lie below the kinematic zero (N = 0 exactly)
        "validation_events": len(validation),
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "history": [{"step": entry["step"], history_key: entry["val_m_nll"], "best": entry["best"]}
                    for entry in stopping.history],
    }


def above_kinematic_zero(model: MuonBundleModel, sample: CountSample, role: str) -> CountSample:
    """The events of ``sample`` above the model's kinematic zero (:mod:`mubundle.model.threshold`;
    all of them for a model without one). Below it the model gives N = 0 without its network,
    so those events teach the network nothing. ``ValueError`` (naming ``role``, the count and
    one such event) if an event below it has muons: the data then does not come from the
    simulator settings the model records."""
    possible = model.possible_rows(sample.conditions)
    if possible.numel() == len(sample):
        return sample
    below = torch.ones(len(sample), dtype=torch.bool, device=sample.counts.device)
    below[possible.to(below.device)] = False
    contradicting = torch.nonzero(below & (sample.counts > 0), as_tuple=True)[0]
    if contradicting.numel():
        first = contradicting[0]
        energy, _, mass, depth = (float(v) for v in sample.conditions[first])
        raise ValueError(
            f"{role} data: {contradicting.numel()} events below the kinematic zero of the model's simulator settings "
            f"({model.muon_threshold.to_dict()}) have muons, e.g. E0 {energy:.4g} GeV, A {mass:g}, slant depth "
            f"{depth:.4g} km with N = {int(sample.counts[first])}: the data was not simulated with those settings"
        )
    logger.info("%s data: %d of %d events lie below the kinematic zero (N = 0 exactly) and are not fitted",
                role, int(below.sum()), len(sample))
    return sample.take(possible)


def fit_multiplicity_restarts(
    model: MuonBundleModel, train: CountSample, validation: CountSample, config: MultiplicityFitConfig,
    teacher: MultiplicityModel | None = None,
) -> dict[str, Any]:
    """:func:`fit_multiplicity` from seeds ``config.seed .. config.seed + config.restarts - 1``,
    each from the same start (fresh weights of its seed, or the model's with
    ``reinitialise=False``); ``model.multiplicity`` ends with the fit of the lowest best
    validation NLL (the first on a tie). Each fit is the one a single run with its seed gives.

    Returns that fit's report with ``chosen_seed`` and ``restarts``: per seed the best
    validation NLL, best epoch, epochs run, final training NLL and skipped steps (with a
    ``teacher``: the divergences, :data:`REPORT_KEYS`).
    """
    if config.restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {config.restarts}")
    best_key, train_key, _ = REPORT_KEYS[teacher is not None]
    start = {name: t.detach().clone() for name, t in model.multiplicity.state_dict().items()}
    best_report: dict[str, Any] | None = None
    best_state: dict[str, Tensor] | None = None
    summaries = []
    for seed in range(config.seed, config.seed + config.restarts):
        model.multiplicity.load_state_dict(start)
        report = fit_multiplicity(model, train, validation, dataclasses.replace(config, seed=seed), teacher)
        summaries.append({"seed": seed} | {key: report[key] for key in (
            best_key, "best_epoch", "epochs_run", train_key, "skipped_steps")})
        logger.info("multiplicity fit seed %d: best validation %s %s at epoch %s",
                    seed, OBJECTIVE_NAMES[teacher is not None], _figure(report[best_key]), report["best_epoch"])
        if best_report is None or _finite_or_inf(report[best_key]) < _finite_or_inf(best_report[best_key]):
            best_report = report | {"chosen_seed": seed}
            best_state = {name: t.detach().clone() for name, t in model.multiplicity.state_dict().items()}
    model.multiplicity.load_state_dict(best_state)
    return best_report | {"restarts": summaries}


def _finite_or_inf(figure: float | None) -> float:
    """A fit's best validation figure; +inf when it never had a finite one."""
    return math.inf if figure is None else float(figure)


REPORT_NAME = "multiplicity_fit.json"


#: ModelConfig fields of the multiplicity network that ``refit-multiplicity`` can change
MULTIPLICITY_SIZE_FIELDS = ("multiplicity_hidden", "multiplicity_layers", "multiplicity_components")


def with_multiplicity_sizes(model: MuonBundleModel, sizes: dict[str, int]) -> MuonBundleModel:
    """``model`` itself when ``sizes`` changes nothing, else a new model with those
    multiplicity sizes (untrained multiplicity network) and ``model``'s transform and generator."""
    unknown = set(sizes) - set(MULTIPLICITY_SIZE_FIELDS)
    if unknown:
        raise ValueError(f"not multiplicity size fields: {sorted(unknown)}")
    config = dataclasses.replace(model.config, **sizes)
    if config == model.config:
        return model
    resized = MuonBundleModel(config, copy.deepcopy(model.transform))
    resized.generator.load_state_dict(model.generator.state_dict())
    resized.domain = model.domain  # same generator, same training domain and tail maps
    resized.calibration = model.calibration
    return resized.to(model.device)


def refit_multiplicity(
    model_dir: str | os.PathLike | None,
    train_paths: Sequence[str | os.PathLike],
    validation_paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: MultiplicityFitConfig,
    sizes: dict[str, int] | None = None,
    distill: bool = False,
    allow_extrapolation: bool = False,
) -> dict[str, Any]:
    """``mubundle refit-multiplicity``: the model in ``model_dir`` (None: the shipped one) with
    its multiplicity part refitted (:func:`fit_multiplicity`), saved to ``out_dir`` with the
    report ``multiplicity_fit.json``; the generator and the feature transform are unchanged.
    ``sizes``: new values of the ``ModelConfig`` fields in :data:`MULTIPLICITY_SIZE_FIELDS`
    (a multiplicity network of another size, fitted from fresh weights). ``distill``: the
    target is the model's own multiplicity network (the teacher, :func:`teacher_divergence`)
    on the events' conditions, not their N; the report adds both networks' NLL of the events and
    calls its figures divergences (:data:`REPORT_KEYS`). ``distill`` with ``reinitialise=False``
    is refused: the student would start at the teacher's weights, where the divergence is 0.

    Both data sets are checked against the model before the fit: files of another observation
    site than the model's are refused (:func:`check_data_site`), and so are events outside its
    domain unless ``allow_extrapolation`` (:func:`check_data_domain`; their numbers are the
    report's ``extrapolated_events``). Rejected rows go to
    ``out_dir/quarantine/{training,validation}.parquet``. CPU.
    """
    import json

    from mubundle.data.atomic import atomic_write_bytes
    from mubundle.errors import InvalidValueError, OutputRefusedError
    from mubundle.model.shipped import resolve_model_path

    out_dir = Path(out_dir)
    source_dir = resolve_model_path(None if model_dir is None else str(model_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputRefusedError(f"--out {out_dir} is a file; the refitted model is written as a directory")
    if out_dir.resolve() == source_dir.resolve():  # the input model must survive a failed or worse refit
        raise OutputRefusedError(f"--out {out_dir} is the input model {source_dir}; write the refitted model to "
                                 "another directory")
    if distill and not config.reinitialise:
        raise InvalidValueError("--distill fits a new multiplicity network to the model's own (the teacher); "
                                "--keep-weights would start it at the teacher's weights, where the divergence is "
                                "already 0 and nothing is fitted: drop --keep-weights")
    source = MuonBundleModel.load(source_dir, device="cpu").eval()
    model = with_multiplicity_sizes(source, sizes or {})  # ``source`` itself when the sizes stay
    if model is not source and not config.reinitialise:
        raise ValueError("a multiplicity network of another size starts from fresh weights: drop --keep-weights")
    check_data_site(source, train_paths, "training")
    check_data_site(source, validation_paths, "validation")
    with directory_lock(out_dir, "mubundle refit-multiplicity"):  # one live refit per output directory
        train, train_report = load_count_sample(train_paths, "training", "cpu", out_dir / "quarantine" / "training.parquet")
        validation, validation_report = load_count_sample(
            validation_paths, "validation", "cpu", out_dir / "quarantine" / "validation.parquet"
        )
        extrapolated = check_data_domain(
            source, {"training": train.conditions.numpy(), "validation": validation.conditions.numpy()},
            allow_extrapolation)
        # NLLs over the events that can have muons (the fit's own; below the kinematic zero log P = 0)
        train, validation = above_kinematic_zero(source, train, "training"), above_kinematic_zero(source, validation, "validation")
        before = {"train_nll": multiplicity_nll(source, train), "validation_nll": multiplicity_nll(source, validation)}
        teacher = copy.deepcopy(source.multiplicity).eval() if distill else None
        report = fit_multiplicity_restarts(model, train, validation, config, teacher)
        if distill:
            report["objective"] = "distillation: KL(teacher || student), teacher_divergence"
            report["after"] = {"train_nll": multiplicity_nll(model, train), "validation_nll": multiplicity_nll(model, validation)}
        report.update(
            source_model=str(model_dir) if model_dir is not None else "shipped default",
            multiplicity_sizes={name: getattr(model.config, name) for name in MULTIPLICITY_SIZE_FIELDS},
            before=before, training_data=train_report, validation_data=validation_report,
            extrapolated_events=extrapolated,
        )
        if model.domain is not None:  # the model card says how its multiplicity part was made
            model.domain = dataclasses.replace(model.domain, notes=model.domain.notes + (refit_note(report, config, distill),))
        model.save(out_dir)
        atomic_write_bytes(out_dir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
    return report


def refit_note(report: dict[str, Any], config: MultiplicityFitConfig, distill: bool) -> str:
    """One line for ``model.json``'s domain notes: how :func:`refit_multiplicity` made the
    multiplicity part (options, events, best validation figure and the source's, events fitted
    outside the domain)."""
    objective = OBJECTIVE_NAMES[distill]
    start = "fresh weights" if config.reinitialise else "the source's weights"
    sizes = ", ".join(f"{name} {value}" for name, value in report["multiplicity_sizes"].items())
    outside = report.get("extrapolated_events") or {}
    extrapolated = ("; " + " and ".join(f"{n} {role}" for role, n in outside.items())
                    + " events outside this domain (--allow-extrapolation)") if any(outside.values()) else ""
    return (f"multiplicity part {'distilled' if distill else 'refitted'} by mubundle refit-multiplicity from "
            f"{report['source_model']} ({start}; seed {report['chosen_seed']}, lr {config.lr:g}, batch {config.batch_size}, "
            f"patience {config.patience}; {sizes}) on {report['training_data']['events']} training and "
            f"{report['validation_data']['events']} validation events: best validation {objective} "
            f"{_figure(report[REPORT_KEYS[distill][0]])} at epoch {report['best_epoch']} (source's validation NLL "
            f"{_figure(report['before']['validation_nll'])}){extrapolated}")


def _figure(value: float | None) -> str:
    """A report figure for a note: 6 significant digits, or "none" where no finite one exists."""
    return "none" if value is None or not math.isfinite(value) else f"{value:.6g}"


def refit_from_args(args: "argparse.Namespace") -> int:
    """Run ``mubundle refit-multiplicity``; prints a JSON summary and returns the exit code."""
    import json

    given = {name: getattr(args, name) for name in ("seed", "lr", "batch_size", "max_epochs", "patience", "restarts")}
    config = MultiplicityFitConfig(
        **{name: value for name, value in given.items() if value is not None}, reinitialise=not args.keep_weights
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sizes = {name: getattr(args, name) for name in MULTIPLICITY_SIZE_FIELDS if getattr(args, name, None) is not None}
    report = refit_multiplicity(args.model, args.data, args.validation, args.out, config, sizes, args.distill,
                                args.allow_extrapolation)
    best_key, train_key, _ = REPORT_KEYS[args.distill]
    keys = ("chosen_seed", "best_epoch", best_key, train_key, "epochs_run", "stopped_early",
            "skipped_steps", "before", "after", "extrapolated_events")
    print(json.dumps({key: report[key] for key in keys if key in report} | {"out": str(args.out)}))
    return 0
