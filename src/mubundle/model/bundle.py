"""MuonBundleModel: what users load — transform + multiplicity model + generator.

The critic is a training-only network and lives in training checkpoints.
On disk a model is a directory with ``model.safetensors`` (all weights and transform
buffers) and ``model.json`` (format version, :class:`ModelConfig`, fitted transform, training
domain and, where fitted, the calibration of :mod:`mubundle.model.calibration`).
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import mubundle
from mubundle import configio
from mubundle.data.atomic import atomic_write_bytes
from mubundle.data.batch import RaggedBatch
from mubundle.errors import InvalidTypeError, InvalidValueError, check_integer
from mubundle.model.calibration import MuonCalibration
from mubundle.model.chunking import muon_budget_chunks
from mubundle.model.config import METADATA_FILE, ModelConfig
from mubundle.model.domain import ModelDomain, check_primaries, model_name_of, read_domain
from mubundle.model.generator import BundleGenerator, GeneratorNoise
from mubundle.model.layers import event_index_of
from mubundle.model.multiplicity import MultiplicityModel
from mubundle.model.threshold import MuonThreshold
from mubundle.model.transforms import FeatureTransform
from mubundle.model.workers import SamplingWorkers, default_worker_count

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
# muons per generator call while sampling: bounds memory for events with N ~ 1e5. On CPU 16k
# muons keep one call's (M, 64) activations in cache (2^12 / 2^13 / 2^14 / 2^15 muons: 0.36 /
# 0.30 / 0.31 / 0.38 s per 20 000 events; docs/model.md, Generation); on a GPU fewer, larger
# calls amortise the ~100 kernel launches of one call (2^20 muons x 64 x 4 B = 256 MiB per activation).
# Whole events; one above the budget gets a call alone.
_MUONS_PER_GENERATOR_CALL_CPU = 1 << 14
_MUONS_PER_GENERATOR_CALL_ACCELERATOR = 1 << 20


class MuonBundleModel(nn.Module):
    """Conditional muon-bundle simulator: physical primaries in, physical muons out."""

    def __init__(self, config: ModelConfig, transform: FeatureTransform) -> None:
        super().__init__()
        self.config = config
        self.transform = transform
        self.multiplicity = MultiplicityModel(config)
        self.generator = BundleGenerator(config)
        #: training domain (model.json ``domain``; None: not recorded, primaries unchecked) and
        #: the name refusals use (docs/pretrained.md)
        self.domain: ModelDomain | None = None
        self.name = "unsaved model"
        #: monotone maps of the generator's muon energies and radii in their tails (model.json
        #: ``calibration``, :mod:`mubundle.model.calibration`); None: the identity
        self.calibration: MuonCalibration | None = None

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        energy: "np.ndarray | float",
        zenith: "np.ndarray | float",
        mass: "np.ndarray | float",
        depth: "np.ndarray | float",
        seed: int | None = None,
        events_per_chunk: int = 16384,
        workers: int | None = None,
        allow_extrapolation: bool = False,
    ) -> RaggedBatch:
        """Sample one bundle per primary, in the given order.

        energy (B,) GeV, zenith (B,) rad, mass (B,) mass number A, depth (B,) slant depth km;
        scalars broadcast. ``seed`` makes the result reproducible (None: fresh entropy).
        Works in chunks of ``events_per_chunk`` primaries above the kinematic zero (those below
        it get N = 0 at once) and about 2^14 muons per generator call, so memory stays bounded
        for any number of primaries. The same seed and the same ``events_per_chunk`` give the
        same result; adding or removing primaries below the kinematic zero or events drawn without
        muons changes no other primary's bundle. ``workers``: threads running generator
        calls concurrently (default: :func:`~mubundle.model.workers.default_worker_count`,
        ``torch.get_num_threads()`` up to 4 on CPU, 1 on accelerators; with more than one, a
        producer thread draws the multiplicities and noise); the result does not depend on it.

        Arguments are checked before anything is sampled (:func:`validated_conditions`): real
        numbers, scalars or 1-D arrays of one common length, finite, energy > 0, zenith in
        [0, pi/2], mass >= 1, depth >= 0; ``seed`` an integer in [0, 2^64) (1.7 is refused, not
        truncated). A violation is a ``ValueError``/``TypeError`` naming the argument and the
        valid range. Primaries outside the model's recorded domain (:mod:`mubundle.model.domain`)
        then raise an ``ExtrapolationError`` (a ``ValueError``) unless ``allow_extrapolation``,
        which warns once.
        """
        conditions = validated_conditions(energy=energy, zenith=zenith, mass=mass, depth=depth)
        if seed is not None:
            seed = check_integer("seed", seed, 0, 2**64 - 1)
        events_per_chunk = check_integer("events_per_chunk", events_per_chunk, 1)
        if workers is not None:
            workers = check_integer("workers", workers, 1)
        if not isinstance(allow_extrapolation, (bool, np.bool_)):  # "False" is a true string: refused, not obeyed
            raise InvalidTypeError(f"allow_extrapolation must be True or False, got {type(allow_extrapolation).__name__} "
                                   f"{allow_extrapolation!r}")
        # the float32 conditions once more as float64 columns (a (B, 4) view of a (4, B) array): the
        # domain check and the kinematic zero read whole columns, each contiguous, without a copy
        columns = conditions.T.astype(np.float64).T
        check_primaries(self.domain, columns, self.name, allow_extrapolation)
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        with SamplingWorkers(self._worker_count(workers)) as pool:
            counts, muons = pool.produce(self._sample_chunks, conditions, columns, events_per_chunk, generator, pool)
        return RaggedBatch(conditions, counts, muons)

    def _sample_chunks(
        self, conditions: np.ndarray, columns: np.ndarray, events_per_chunk: int, generator: torch.Generator,
        pool: SamplingWorkers,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The producer of :meth:`sample`: conditions (B, 4) float32 physical (and the same values as
        float64 ``columns`` (B, 4), column-major) -> counts (B,) int64 and muons (M, 3) [GeV, m, m]
        in event order.

        Rows below the kinematic zero get N = 0 without the networks and draw no random numbers:
        only the rows above it are cut into chunks of ``events_per_chunk``, so a primary's bundle
        does not depend on how many impossible primaries surround it (95 % of a flux sample's).
        Each chunk's multiplicities are drawn while the workers run the previous chunk's
        generator calls; at most two chunks are in flight, so memory stays bounded by the chunk size.
        """
        counts = np.zeros(conditions.shape[0], dtype=np.int64)
        muons: list[np.ndarray] = []
        in_flight: list[tuple[np.ndarray, Tensor, list[Future]]] = []

        def finish(rows: np.ndarray, chunk_counts: Tensor, calls: list[Future]) -> None:
            counts[rows] = chunk_counts.cpu().numpy()
            muons.append(self._collect(calls).cpu().numpy())

        possible = self.possible_rows(torch.from_numpy(columns)).cpu().numpy()
        for start in range(0, possible.shape[0], events_per_chunk):
            if pool.closing:  # the caller has left (error, Ctrl-C): nobody waits for the rest
                break
            rows = possible[start : start + events_per_chunk]
            chunk = torch.from_numpy(conditions[rows]).to(self.device)
            features = self.transform.condition_features(chunk)
            if in_flight:
                parameters = self.multiplicity.mixture_parameters(features)
            else:  # the workers are idle: they run the multiplicity network, one block of rows each
                parameters = pool.split_rows(self.multiplicity.mixture_parameters, features)
            chunk_counts = self.multiplicity.sample_from_parameters(parameters, generator)
            in_flight.append((rows, chunk_counts, self._submit_generator_calls(chunk, chunk_counts, generator, pool)))
            while len(in_flight) > 1:
                finish(*in_flight.pop(0))
        for pending in in_flight:
            finish(*pending)
        flat = np.concatenate(muons) if muons else np.zeros((0, 3), dtype=np.float32)
        return counts, flat

    @torch.no_grad()
    def sample_muons(
        self, conditions: Tensor, counts: Tensor, generator: torch.Generator, workers: int | None = None
    ) -> Tensor:
        """Muons for given multiplicities: conditions (B, 4) physical, counts (B,) -> (M, 3) [GeV, m, m].

        ``workers`` as in :meth:`sample` (the result does not depend on it).
        """
        with SamplingWorkers(self._worker_count(workers)) as pool:
            return self._collect(self._submit_generator_calls(conditions, counts, generator, pool))

    def _worker_count(self, workers: int | None) -> int:
        return default_worker_count(self.device) if workers is None else int(workers)

    def _submit_generator_calls(
        self, conditions: Tensor, counts: Tensor, generator: torch.Generator, pool: SamplingWorkers
    ) -> list[Future]:
        """Split events into generator calls of about 2^14 muons (CPU), draw each call's noise
        here in call order, and submit the calls to ``pool``; futures of (M_call, 3) muons.

        Events without muons (~40 % at the ``mubundle simulate`` defaults) take no part: a
        call's noise is drawn for its events with muons only, so the muons do not depend on
        how many muon-less events lie between them (no muon depends on another event).
        """
        conditions = conditions.to(self.device, torch.float32)
        counts = counts.to(self.device, torch.int64)
        counts_host = counts.cpu().numpy()
        offsets = np.concatenate(([0], np.cumsum(counts_host)))
        calls: list[Future] = []
        cpu = self.device.type == "cpu"
        budget = _MUONS_PER_GENERATOR_CALL_CPU if cpu else _MUONS_PER_GENERATOR_CALL_ACCELERATOR
        for event_start, event_stop in muon_budget_chunks(counts_host, budget):
            n_muons = int(offsets[event_stop] - offsets[event_start])
            if n_muons == 0:
                continue
            with_muons = torch.from_numpy(np.flatnonzero(counts_host[event_start:event_stop])).to(self.device)
            noise = self.generator.draw_noise(with_muons.shape[0], n_muons, generator, self.device)
            calls.append(
                pool.submit(
                    self._generator_call, conditions[event_start:event_stop], counts[event_start:event_stop],
                    with_muons, noise,
                )
            )
        return calls

    def _generator_call(self, conditions: Tensor, counts: Tensor, with_muons: Tensor, noise: GeneratorNoise) -> Tensor:
        """One generator call on the events ``with_muons`` of conditions (B, 4) / counts (B,) -> (M, 3) physical."""
        part_counts = counts.index_select(0, with_muons)
        event_index = event_index_of(part_counts, noise.muon_noise.shape[0])
        part_conditions = conditions.index_select(0, with_muons)
        features = self.generator(self.transform.condition_features(part_conditions), part_counts, event_index, noise=noise)
        muons = self.transform.muons_from_features(features)
        if self.calibration is None:
            return muons
        log10_e0 = torch.log10(part_conditions[:, 0]).index_select(0, event_index) if self.calibration.needs_primary_energy else None
        multiplicity = part_counts.index_select(0, event_index) if self.calibration.needs_multiplicity else None
        return self.calibration.apply(muons, log10_e0, multiplicity)

    def _collect(self, calls: list[Future]) -> Tensor:
        """Concatenate the muons of submitted generator calls, in order: (M, 3)."""
        if not calls:
            return torch.zeros(0, 3, device=self.device)
        return torch.cat([call.result() for call in calls])

    # ------------------------------------------------------------------ multiplicity in physical units
    @property
    def muon_threshold(self) -> "MuonThreshold | None":
        """The kinematic zero of the training data's simulator (:mod:`mubundle.model.threshold`),
        None when the model records none."""
        return None if self.domain is None else self.domain.muon_threshold

    def possible_rows(self, conditions: Tensor) -> Tensor:
        """(K,) int64 indices of the rows of conditions (B, 4) physical that can have muons: those
        above the kinematic zero (all rows for a model without one)."""
        threshold = self.muon_threshold
        if threshold is None:
            return torch.arange(conditions.shape[0], device=conditions.device)
        return torch.nonzero(~threshold.impossible(conditions), as_tuple=True)[0].to(conditions.device)

    def _count_function(self, conditions: Tensor, counts: "Tensor | None", compute, below) -> "tuple[Tensor, ...]":
        """``compute(features, counts)`` (a tuple of (B',) tensors) on the rows above the kinematic
        zero; the rows below get ``below(counts)`` (a tuple of the same length)."""
        conditions = conditions.to(self.device, torch.float32)
        possible = self.possible_rows(conditions)
        sub_counts = None if counts is None else counts.index_select(0, possible.to(counts.device))
        above = compute(self.transform.condition_features(conditions.index_select(0, possible)), sub_counts)
        if possible.numel() == conditions.shape[0]:
            return above
        results = []
        for value_above, value_below in zip(above, below(counts)):
            full = value_below.to(value_above.device, value_above.dtype).clone()
            full[possible.to(full.device)] = value_above
            results.append(full)
        return tuple(results)

    @torch.no_grad()
    def count_cdf(self, conditions: Tensor, counts: Tensor) -> Tensor:
        """P(N <= counts | conditions): conditions (B, 4) physical, counts (B,) -> (B,) float64
        (1 for counts >= 0 below the kinematic zero, where N = 0)."""
        counts = counts.to(self.device)
        return self._count_function(
            conditions, counts, lambda f, n: (self.multiplicity.cdf(f, n),),
            lambda n: ((n >= 0).to(torch.float64),),
        )[0]

    @torch.no_grad()
    def count_log_prob(self, conditions: Tensor, counts: Tensor) -> Tensor:
        """log P(N = counts | conditions): conditions (B, 4) physical, counts (B,) -> (B,) (below the
        kinematic zero 0 for N = 0 and -inf otherwise)."""
        counts = counts.to(self.device, torch.int64)
        return self._count_function(
            conditions, counts, lambda f, n: (self.multiplicity.log_prob(f, n),),
            lambda n: (torch.where(n == 0, 0.0, -math.inf),),
        )[0]

    @torch.no_grad()
    def count_mean_variance(self, conditions: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of N: conditions (B, 4) physical -> (B,), (B,) (0 below the kinematic zero)."""
        zeros = torch.zeros(conditions.shape[0], device=self.device)
        return self._count_function(
            conditions, None, lambda f, n: self.multiplicity.mean_variance(f), lambda n: (zeros, zeros),
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: "str | Path") -> None:
        """Write ``model.safetensors`` and ``model.json`` into ``directory`` (created if needed).

        Files and a directory created here follow the process umask like every other mubundle
        output (0644 / 0755 under umask 022), so a model in a shared group area is readable by
        the group. ``model.json`` records the release that wrote it (``mubundle_version``).
        """
        from safetensors.torch import save as serialize

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        # serialized in memory (the same bytes as save_file) and written by Python: safetensors'
        # save_file creates its file 0600 whatever the umask
        atomic_write_bytes(directory / WEIGHTS_FILE, serialize(state))
        metadata = {
            "format_version": FORMAT_VERSION,
            "mubundle_version": mubundle.__version__,
            "config": configio.to_dict(self.config),
            "transform": self.transform.to_dict(),
        }
        if self.domain is not None:
            metadata["domain"] = self.domain.to_dict()
        if self.calibration is not None:
            metadata["calibration"] = self.calibration.to_dict()
        atomic_write_bytes(directory / METADATA_FILE, json.dumps(metadata, indent=2).encode("utf-8"))

    @classmethod
    def load(cls, directory: "str | Path", device: "str | torch.device" = "cpu") -> "MuonBundleModel":
        """Load a model saved by :meth:`save`; raises ``ValueError`` naming the file on problems."""
        from safetensors.torch import load_file

        directory = Path(directory)
        metadata_path = directory / METADATA_FILE
        try:
            metadata = json.loads(metadata_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read model metadata {metadata_path}: {error}") from error
        if not isinstance(metadata, dict):
            raise InvalidValueError(f"{metadata_path} must hold a JSON object with format_version, config and "
                                    f"transform, got {type(metadata).__name__}")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{metadata_path}: unsupported model format_version {version!r} (expected {FORMAT_VERSION})")
        missing = [key for key in ("config", "transform") if key not in metadata]
        if missing:
            raise InvalidValueError(f"{metadata_path} lacks {' and '.join(map(repr, missing))} (a model directory "
                                    "written by MuonBundleModel.save / `mubundle train` has both)")
        try:
            config = configio.from_dict(ModelConfig, metadata["config"], where="config.")
        except ValueError as error:
            raise InvalidValueError(f"{metadata_path}: {error}") from None
        try:
            transform = FeatureTransform.from_dict(metadata["transform"])
        except (TypeError, ValueError, RuntimeError) as error:
            raise InvalidValueError(f"{metadata_path}: invalid 'transform' (a mapping of the fitted feature "
                                    f"statistics, lists of numbers): {error}") from None
        try:
            model = cls(config, transform)
        except (TypeError, ValueError, RuntimeError) as error:  # e.g. a width of 0 in the config
            raise InvalidValueError(f"{metadata_path}: 'config' does not describe a valid model: {error}") from None
        model.domain, model.name = read_domain(metadata, metadata_path), model_name_of(directory)
        if "calibration" in metadata:
            try:
                model.calibration = MuonCalibration.from_dict(metadata["calibration"])
            except InvalidValueError as error:
                raise InvalidValueError(f"{metadata_path}: {error}") from None
        weights_path = directory / WEIGHTS_FILE
        try:
            state = load_file(str(weights_path))
        except (OSError, safetensors_error()) as error:
            raise ValueError(f"cannot read model weights {weights_path}: {error}") from error
        try:
            model.load_state_dict(state)
        except RuntimeError as error:  # missing/unexpected keys or shape mismatch
            raise ValueError(f"{weights_path} does not match the config in {metadata_path}: {error}") from error
        return model.to(device).eval()


#: physical validity of the four conditions: (name, lower bound, upper bound, lower inclusive);
#: zenith up to horizontal (a downgoing primary); the mass number of a nucleus is >= 1 (proton)
_ZENITH_MAX_RAD = float(np.float32(np.pi / 2))  # pi/2 as float32 rounds up: allow it
_CONDITION_BOUNDS = (
    ("energy", 0.0, None, False, "GeV"),
    ("zenith", 0.0, _ZENITH_MAX_RAD, True, "rad"),
    ("mass", 1.0, None, True, "(mass number A)"),
    ("depth", 0.0, None, True, "km"),
)


def validated_conditions(**columns: "np.ndarray | float") -> np.ndarray:
    """Conditions (B, 4) float32 [energy GeV, zenith rad, mass A, depth km] from the keyword
    arguments ``energy``, ``zenith``, ``mass``, ``depth`` after checking them.

    Each is a real number or a 1-D array of real numbers; the 1-D ones share one length B and
    scalars broadcast to it (arrays of shape (2, 1) and (3,) are refused, not broadcast to 6).
    Raises :class:`~mubundle.errors.InvalidTypeError` for non-numeric input and
    :class:`~mubundle.errors.InvalidValueError` naming the argument, the first offending value
    with its index, and the valid range.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, *_ in _CONDITION_BOUNDS:
        value = columns[name]
        if np.ma.isMaskedArray(value) and np.ma.getmaskarray(value).any():
            first = int(np.flatnonzero(np.ma.getmaskarray(value))[0])
            raise InvalidValueError(f"{name}[{first}] is masked: a masked array is sampled only without masked values "
                                    "(fill them or drop their rows)")
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:  # ragged nested lists
            raise InvalidTypeError(f"{name} must be a number or a 1-D array of numbers: {error}") from None
        if array.dtype == np.bool_ or array.dtype.kind not in "iuf":
            raise InvalidTypeError(f"{name} must be a real number or a 1-D array of real numbers, "
                                   f"got {type(value).__name__} of dtype {array.dtype}")
        if array.ndim > 1:
            raise InvalidValueError(f"{name} must be a scalar or a 1-D array, got shape {array.shape}")
        arrays[name] = array
    lengths = {name: array.shape[0] for name, array in arrays.items() if array.ndim == 1}
    if len(set(lengths.values())) > 1:
        shapes = ", ".join(f"{name} ({n},)" for name, n in lengths.items())
        raise InvalidValueError(f"energy, zenith, mass and depth must be scalars or 1-D arrays of one common length, "
                                f"got {shapes}")
    size = next(iter(lengths.values()), 1)
    # the usual case (all valid) in two reductions per argument, no temporaries: NaN propagates
    # through min and max and fails the comparison, +-inf fails one of them
    if size and not all(_within(arrays[name], column) for column, (name, *_) in enumerate(_CONDITION_BOUNDS)):
        checked = np.empty((4, size), dtype=np.float64)
        for column, (name, *_) in enumerate(_CONDITION_BOUNDS):
            checked[column] = arrays[name]
        inside = checked >= _CONDITION_LOWS
        inside &= checked <= _CONDITION_HIGHS
        _raise_first_invalid(arrays, checked, inside)
    conditions = np.empty((size, 4), dtype=np.float32)
    for column, (name, *_) in enumerate(_CONDITION_BOUNDS):
        conditions[:, column] = arrays[name]  # one strided write per column (a transposed copy is ~3x slower)
    return conditions


def _within(values: np.ndarray, column: int) -> bool:
    """Whether every value of one argument lies within the bounds of condition ``column``."""
    return bool(values.min() >= _CONDITION_LOWS[column, 0]) and bool(values.max() <= _CONDITION_HIGHS[column, 0])


# the bounds as (4, 1) columns for the vectorised check: the strict lower bound 0 of the energy
# as the least positive float64 (x > 0 exactly when x >= it); no upper bound as the largest
# finite float64 (which also refuses +inf)
_CONDITION_LOWS = np.array([[low if inclusive else np.nextafter(low, np.inf)]
                            for _, low, _, inclusive, _ in _CONDITION_BOUNDS])
_CONDITION_HIGHS = np.array([[np.finfo(np.float64).max if high is None else high]
                             for _, _, high, _, _ in _CONDITION_BOUNDS])


def _raise_first_invalid(arrays: dict[str, np.ndarray], columns: np.ndarray, inside: np.ndarray) -> None:
    """The error of :func:`validated_conditions` for the first argument (energy, zenith, mass,
    depth) with an invalid value: its first index, the value, the valid range and the count."""
    for column, (name, low, high, low_inclusive, unit) in enumerate(_CONDITION_BOUNDS):
        bad = ~inside[column]
        if not bad.any():
            continue
        index = int(np.flatnonzero(bad)[0])
        where = f"{name}[{index}]" if arrays[name].ndim else name
        bound = f"in [{low:g}, {high:.7g}]" if high is not None else f"{'>=' if low_inclusive else '>'} {low:g}"
        invalid = int(bad.sum()) if arrays[name].ndim else 1
        raise InvalidValueError(f"{where} must be finite and {bound} {unit}, got {float(columns[column, index])!r}"
                                + (f" ({invalid} invalid values)" if invalid > 1 else ""))


def safetensors_error() -> type[Exception]:
    """The exception safetensors raises for a corrupt file (its Rust-side error type)."""
    from safetensors import SafetensorError

    return SafetensorError
