"""``mubundle calibrate-energy``: fit a model's energy calibration (:mod:`mubundle.model.calibration`).

The generator draws muons for every training event with muons, for the event's own conditions
and TRUE multiplicity (so only the generator is calibrated, not the multiplicity part). Knots
are the generator's and the data's log10 E quantiles at ``KNOTS`` upper-tail probabilities
spaced logarithmically from ``TAIL_PROBABILITY`` (the top 5 % of the muons) down to the level
with ``MIN_MUONS_ABOVE`` data muons above it; the first knot maps onto itself, so the map is
continuous and the identity below the top 5 %. The result is a new model directory: the same
networks, the map in ``model.json`` and a line in its domain notes; the report
``energy_calibration.json`` gives the muon counts above energy thresholds for data, generator
and calibrated generator on the fit events (in-sample: check on held-out events with
``mubundle evaluate`` or ``benchmarks/muon_energy_tail.py``).
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
from mubundle.model.calibration import EnergyCalibration
from mubundle.train.multiplicity_fit import load_valid_events

if TYPE_CHECKING:
    import argparse

logger = logging.getLogger("mubundle.train")

#: the share of the muons (largest energies) the map acts on
TAIL_PROBABILITY = 0.05
#: data muons above the last knot (its quantile's statistical anchor)
MIN_MUONS_ABOVE = 20
#: knots of the map
KNOTS = 16
#: thresholds of the report, log10(E / GeV)
REPORT_THRESHOLDS = (3.0, 3.5, 4.0, 4.25, 4.5, 4.75, 5.0)
REPORT_NAME = "energy_calibration.json"


def generator_log10_energies(model: MuonBundleModel, batch: RaggedBatch, seed: int) -> np.ndarray:
    """(M,) float64 log10(E / GeV) of the generator's muons (no calibration) for the conditions and
    multiplicities of ``batch``'s events with muons, in their order; ``seed`` draws the noise."""
    with_muons = batch.counts > 0
    kept, model.energy_calibration = model.energy_calibration, None
    try:
        muons = model.sample_muons(
            torch.as_tensor(np.ascontiguousarray(batch.conditions[with_muons], dtype=np.float32)),
            torch.as_tensor(np.asarray(batch.counts[with_muons], dtype=np.int64)),
            torch.Generator().manual_seed(seed),
        )
    finally:
        model.energy_calibration = kept
    return np.log10(muons[:, 0].to(torch.float64).cpu().numpy())


def fit_energy_calibration(generated_log10_e: np.ndarray, data_log10_e: np.ndarray, fitted_on: str = "") -> EnergyCalibration:
    """Knots from the generator's (M,) and the data's (M,) log10(E / GeV) (module docstring).

    Raises ``ValueError`` when the data have too few muons for the knots (fewer than
    ``MIN_MUONS_ABOVE / TAIL_PROBABILITY`` = 400) or the knots are not strictly increasing
    (a generator far above the data at the top 5 %, or ties).
    """
    n_muons = len(data_log10_e)
    lowest = MIN_MUONS_ABOVE / max(n_muons, 1)
    if lowest > TAIL_PROBABILITY / 2 or len(generated_log10_e) == 0:
        raise ValueError(f"{n_muons} data muons are too few for an energy calibration (at least "
                         f"{int(2 * MIN_MUONS_ABOVE / TAIL_PROBABILITY)} needed)")
    levels = 1.0 - np.geomspace(TAIL_PROBABILITY, lowest, KNOTS)
    generator_knots = np.quantile(generated_log10_e, levels)
    calibrated_knots = np.quantile(data_log10_e, levels)
    calibrated_knots[0] = generator_knots[0]
    for name, knots in (("generator", generator_knots), ("calibrated", calibrated_knots)):
        if np.any(np.diff(knots) <= 0):
            raise ValueError(f"the {name} knots of the energy calibration are not strictly increasing: "
                             f"{np.round(knots, 4).tolist()} (log10 GeV at upper-tail probabilities "
                             f"{np.round(1 - levels, 6).tolist()})")
    return EnergyCalibration(tuple(map(float, generator_knots)), tuple(map(float, calibrated_knots)), fitted_on)


def counts_above(log10_e: np.ndarray, thresholds: Sequence[float] = REPORT_THRESHOLDS) -> dict[str, int]:
    """Muons above each threshold (log10 GeV, as a string key)."""
    return {f"{t:g}": int(np.sum(log10_e > t)) for t in thresholds}


def calibrate_energy(
    model_dir: str | os.PathLike | None, data_paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike, seed: int = 0
) -> dict[str, Any]:
    """``mubundle calibrate-energy``: the model in ``model_dir`` (None: the shipped default) with an
    energy calibration fitted on the events of ``data_paths``, saved to ``out_dir`` with the report
    :data:`REPORT_NAME`. A model that has a calibration gets a new one fitted on its raw generator.
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
    with directory_lock(out_dir, "mubundle calibrate-energy"):
        batch, data_report = load_valid_events(data_paths, "calibration", out_dir / "quarantine" / "calibration.parquet")
        data_log10_e = np.log10(batch.flat_muons[:, 0].astype(np.float64))
        generated = generator_log10_energies(model, batch, seed)
        source = str(model_dir) if model_dir is not None else "shipped default"
        fitted_on = (f"generator muons for the true conditions and N of {data_report['events']} events "
                     f"({len(data_log10_e)} muons) of {len(data_paths)} path(s), seed {seed}")
        calibration = fit_energy_calibration(generated, data_log10_e, fitted_on)
        model.energy_calibration = calibration
        calibrated = calibration.apply(torch.from_numpy(generated)).numpy()
        report = {
            "source_model": source, "seed": seed, "data": data_report, "muons": len(data_log10_e),
            "knots": calibration.to_dict(),
            "muons_above_log10_gev": {"data": counts_above(data_log10_e), "generator": counts_above(generated),
                                      "calibrated": counts_above(calibrated)},
        }
        if model.domain is not None:
            note = (f"energy calibration by mubundle calibrate-energy from {source}: {fitted_on}; "
                    f"top {TAIL_PROBABILITY:.0%} of the muon energies mapped onto the data's quantiles")
            model.domain = dataclasses.replace(model.domain, notes=model.domain.notes + (note,))
        model.save(out_dir)
        atomic_write_bytes(out_dir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
    return report


def calibrate_from_args(args: "argparse.Namespace") -> int:
    """Run ``mubundle calibrate-energy``; prints a JSON summary and returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = calibrate_energy(args.model, args.data, args.out, args.seed)
    print(json.dumps({"out": str(args.out), "muons": report["muons"], "muons_above_log10_gev": report["muons_above_log10_gev"]}))
    return 0
