"""``mubundle calibrate``: fit a model's tail maps (:mod:`mubundle.model.calibration`).

The generator draws muons for every event with muons of the given (training) events, for the
event's own conditions and TRUE multiplicity, so only the generator is calibrated, not the
multiplicity part. Each tail's knots are the generator's and the data's quantiles at ``KNOTS``
tail probabilities spaced logarithmically from ``TAIL_PROBABILITY`` (5 % of the muons) to the
level with ``MIN_MUONS_BEYOND`` data muons beyond it; the innermost knot maps onto itself, so
each map is continuous and the identity between the tails. log10 E gets its upper tail mapped,
log10 r both tails. The result is a new model directory: the same networks, the maps in
``model.json`` and a line in its domain notes; the report ``calibration.json`` gives, on the fit
events, the muons beyond energy and radius thresholds for the data, the generator and the
calibrated generator (in-sample: check on held-out events with ``mubundle evaluate``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from mubundle.data.atomic import atomic_write_bytes
from mubundle.data.batch import RaggedBatch
from mubundle.data.lock import directory_lock
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.calibration import MuonCalibration, TailMap
from mubundle.train.multiplicity_fit import load_valid_events

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger("mubundle.train")

#: the share of the muons in each mapped tail
TAIL_PROBABILITY = 0.05
#: data muons beyond the outermost knot (its quantile's statistical anchor)
MIN_MUONS_BEYOND = 20
#: knots per tail
KNOTS = 16
#: thresholds of the report: log10(E / GeV) above, radius [m] below and above
ENERGY_THRESHOLDS = (3.0, 3.5, 4.0, 4.25, 4.5, 4.75, 5.0)
RADIUS_BELOW_M = (0.1, 0.3, 1.0)
RADIUS_ABOVE_M = (30.0, 75.0, 150.0)
REPORT_NAME = "calibration.json"


def generator_muons(model: MuonBundleModel, batch: RaggedBatch, seed: int) -> np.ndarray:
    """(M, 3) float64 [GeV, m, m] muons of the generator (no calibration) for the conditions and
    multiplicities of ``batch``'s events with muons, in their order; ``seed`` draws the noise."""
    with_muons = batch.counts > 0
    kept, model.calibration = model.calibration, None
    try:
        muons = model.sample_muons(
            torch.as_tensor(np.ascontiguousarray(batch.conditions[with_muons], dtype=np.float32)),
            torch.as_tensor(np.asarray(batch.counts[with_muons], dtype=np.int64)),
            torch.Generator().manual_seed(seed),
        )
    finally:
        model.calibration = kept
    return muons.to(torch.float64).cpu().numpy()


def _tail_probabilities(n_data: int, what: str) -> np.ndarray:
    lowest = MIN_MUONS_BEYOND / max(n_data, 1)
    if lowest > TAIL_PROBABILITY / 2:
        raise ValueError(f"{n_data} data muons with a {what} are too few for a calibration (at least "
                         f"{int(2 * MIN_MUONS_BEYOND / TAIL_PROBABILITY)} needed)")
    return np.geomspace(TAIL_PROBABILITY, lowest, KNOTS)


def _tail_knots(generated: np.ndarray, data: np.ndarray, what: str, upper: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Increasing knots (generator quantiles, data quantiles) of the upper or the lower tail, the
    innermost one mapping onto itself (continuity with the identity between the tails).

    Raises ``ValueError`` when the data are too few (fewer than ``2 MIN_MUONS_BEYOND /
    TAIL_PROBABILITY`` = 800) or a set of knots is not strictly increasing (ties, or a generator so
    far from the data that the map would fold back)."""
    probabilities = _tail_probabilities(len(data), what)
    levels = np.sort(1.0 - probabilities if upper else probabilities)
    x, y = np.quantile(generated, levels), np.quantile(data, levels)
    continuous = y.copy()
    inner = 0 if upper else -1
    continuous[inner] = x[inner]
    for name, knots in (("generator", x), ("data", y), ("data", continuous)):
        if np.any(np.diff(knots) <= 0):
            raise ValueError(f"the {name} knots of the {what} calibration are not strictly increasing: "
                             f"{np.round(knots, 4).tolist()} at quantile levels {np.round(levels, 6).tolist()}")
    return tuple(map(float, x)), tuple(map(float, continuous))


def fit_upper_tail(generated: np.ndarray, data: np.ndarray, what: str = "log10 E") -> TailMap:
    """Upper-tail map of one variable from the generator's (M,) and the data's (M',) values
    (:func:`_tail_knots` says when it raises ``ValueError``)."""
    x, y = _tail_knots(generated, data, what, upper=True)
    return TailMap(upper_x=x, upper_y=y)


def fit_both_tails(generated: np.ndarray, data: np.ndarray, what: str = "log10 r") -> TailMap:
    """Lower- and upper-tail map of one variable (as :func:`fit_upper_tail`, mirrored below)."""
    upper_x, upper_y = _tail_knots(generated, data, what, upper=True)
    lower_x, lower_y = _tail_knots(generated, data, what, upper=False)
    return TailMap(lower_x=lower_x, lower_y=lower_y, upper_x=upper_x, upper_y=upper_y)


#: the maps ``mubundle calibrate --maps`` can fit
MAPS = ("energy", "radius")


def fit_calibration(
    generated: np.ndarray, data: np.ndarray, fitted_on: str = "", maps: Sequence[str] = MAPS
) -> MuonCalibration:
    """Maps of log10 E (upper tail; ``"energy"`` in ``maps``) and log10 r (both tails; ``"radius"``)
    from the generator's (M, 3) and the data's (M', 3) muons [GeV, m, m]; muons on the axis
    (r = 0) do not enter the radius map."""
    unknown = set(maps) - set(MAPS)
    if unknown or not maps:
        raise ValueError(f"maps must be one or more of {', '.join(MAPS)}, got {list(maps)}")
    energy = radius = None
    if "energy" in maps:
        energy = fit_upper_tail(np.log10(generated[:, 0]), np.log10(data[:, 0].astype(np.float64)), "log10 E")
    if "radius" in maps:
        radius_generated = np.hypot(generated[:, 1], generated[:, 2])
        radius_data = np.hypot(data[:, 1].astype(np.float64), data[:, 2].astype(np.float64))
        radius = fit_both_tails(np.log10(radius_generated[radius_generated > 0]),
                                np.log10(radius_data[radius_data > 0]), "log10 r")
    return MuonCalibration(energy, radius, fitted_on)


def tail_counts(muons: np.ndarray) -> dict[str, int]:
    """Muons above each energy threshold and below / above each radius threshold."""
    log10_energy = np.log10(muons[:, 0])
    radius = np.hypot(muons[:, 1], muons[:, 2])
    counts = {f"log10_energy > {t:g}": int(np.sum(log10_energy > t)) for t in ENERGY_THRESHOLDS}
    counts.update({f"radius < {t:g} m": int(np.sum(radius < t)) for t in RADIUS_BELOW_M})
    counts.update({f"radius > {t:g} m": int(np.sum(radius > t)) for t in RADIUS_ABOVE_M})
    return counts


def calibrate(
    model_dir: str | os.PathLike | None, data_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
    seed: int = 0, maps: Sequence[str] = MAPS,
) -> dict[str, Any]:
    """``mubundle calibrate``: the model in ``model_dir`` (None: the shipped default) with its
    calibration (the ``maps`` of :data:`MAPS`) fitted on the events of ``data_paths``, saved to
    ``out_dir`` with the report :data:`REPORT_NAME`. A model that has a calibration gets a new one fitted on its raw generator.
    Rejected rows go to ``out_dir/quarantine/calibration.parquet``. CPU.
    """
    from mubundle.errors import OutputRefusedError
    from mubundle.generate.api import load_model, resolve_model_path

    out_dir = Path(out_dir)
    source_dir = resolve_model_path(None if model_dir is None else str(model_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputRefusedError(f"--out {out_dir} is a file; the calibrated model is written as a directory")
    if out_dir.resolve() == source_dir.resolve():
        raise OutputRefusedError(f"--out {out_dir} is the input model {source_dir}; write the calibrated model to "
                                 "another directory")
    model = load_model(None if model_dir is None else str(model_dir), device="cpu")
    with directory_lock(out_dir, "mubundle calibrate"):
        batch, data_report = load_valid_events(data_paths, "calibration", out_dir / "quarantine" / "calibration.parquet")
        data = batch.flat_muons.astype(np.float64)
        generated = generator_muons(model, batch, seed)
        source = str(model_dir) if model_dir is not None else "shipped default"
        fitted_on = (f"generator muons for the true conditions and N of {data_report['events']} events "
                     f"({len(data)} muons) of {len(data_paths)} path(s), seed {seed}")
        model.calibration = fit_calibration(generated, data, fitted_on, maps)
        calibrated = model.calibration.apply(torch.from_numpy(generated.copy())).numpy()
        report = {
            "source_model": source, "seed": seed, "maps": list(maps), "data": data_report, "muons": len(data),
            "calibration": model.calibration.to_dict(),
            "tail_counts": {"data": tail_counts(data), "generator": tail_counts(generated),
                            "calibrated": tail_counts(calibrated)},
        }
        if model.domain is not None:
            mapped = {"energy": f"the top {TAIL_PROBABILITY:.0%} of the muon energies",
                      "radius": f"the bottom and top {TAIL_PROBABILITY:.0%} of the radii"}
            note = (f"calibration by mubundle calibrate from {source}: {fitted_on}; "
                    f"{' and '.join(mapped[name] for name in MAPS if name in maps)} mapped onto the data's quantiles")
            model.domain = dataclasses.replace(model.domain, notes=model.domain.notes + (note,))
        model.save(out_dir)
        atomic_write_bytes(out_dir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
    return report


def calibrate_from_args(args: "argparse.Namespace") -> int:
    """Run ``mubundle calibrate``; prints a JSON summary and returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = calibrate(args.model, args.data, args.out, args.seed, args.maps)
    print(json.dumps({"out": str(args.out), "muons": report["muons"], "tail_counts": report["tail_counts"]}))
    return 0
