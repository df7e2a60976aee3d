"""Feature transforms between physical units and the network's standardised features.

Users and data files speak physics (GeV, rad, A, km, m); the networks see O(1) numbers.
The transform is fitted once on training data, stored with the model (buffers in the
state dict and a JSON dict in ``model.json``) and applied inside the public API.

Condition features (C = 4), each standardised with the fitted mean/std:
    log10(E0 / GeV), cos(zenith), log10(A), and the slant depth D as ``depth_feature`` says:
    ``"asinh"``: asinh(D / 0.1 km), logarithmic above 0.1 km and linear below it, so that a
    depth of 0 (the surface) stays finite (what :meth:`FeatureTransform.fit` uses unless
    told otherwise); ``"linear"``: D / km (every model trained before the option: a stored
    transform without ``depth_feature`` is linear).

Why logarithmic in depth: with the curved overburden the slant depths of a 0-89 deg training
set span 1.4 km (vertical) to ~100 km (89 deg at 2.6 km vertical; median 3.9 km, 99th
percentile 61 km on the held-out part of the icecube standard dataset). Standardised
linearly, the vertical depths 1.4-2.6 km (zenith < 0.1 rad), where most muons are, span
0.11 standard deviations of the feature (1.2 % of its range); in asinh 0.74 (14.5 %)
(measured on that set; the same comparison is tests/test_model_transforms.py).
Muon features (F = 3):
    log10(E / GeV) standardised                  -> inverse 10**(...) is always > 0
    asinh(x / r0) / u, asinh(y / r0) / u          -> linear below the fitted core radius r0,
                                                     logarithmic above it: radii from 0.1 m to
                                                     several 100 m all get O(1) resolution;
                                                     sign (the azimuth) is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from mubundle.data.batch import RaggedBatch

CONDITION_DIM = 4
MUON_DIM = 3
# fitted std below this means the feature is constant in the data (e.g. one primary mass):
# it is then only centred, not scaled (dividing by ~0 would blow up unseen values).
_MIN_STD = 1e-6
# fallback core radius (m) when the fit data has no muons
_DEFAULT_CORE_RADIUS_M = 1.0
# core radius = this quantile of the muon radius distribution
_CORE_RADIUS_QUANTILE = 0.1

#: how the slant depth enters the condition features (see the module docstring)
DEPTH_FEATURES = ("asinh", "linear")
#: the choice of :meth:`FeatureTransform.fit` (new models)
DEFAULT_DEPTH_FEATURE = "asinh"
#: the depth (km) below which the "asinh" depth feature is linear, above which logarithmic:
#: well below any detector depth (>= 1 km), so detector depths are in the logarithmic part
DEPTH_SCALE_KM = 0.1
#: the choice of a stored transform without the key (models trained before the option)
LEGACY_DEPTH_FEATURE = "linear"

_BUFFER_NAMES = (
    "condition_mean",
    "condition_std",
    "log_energy_mean",
    "log_energy_std",
    "core_radius_m",
    "position_scale",
)


def _safe_std(values: np.ndarray) -> np.ndarray:
    std = np.asarray(values, dtype=np.float64)
    return np.where(std > _MIN_STD, std, 1.0)


class FeatureTransform(nn.Module):
    """Fitted, invertible maps physical units <-> network features (buffers only).

    Buffers (all float32): ``condition_mean``/``condition_std`` (4,), ``log_energy_mean``/``log_energy_std`` (), ``core_radius_m`` () [m],
    ``position_scale`` () [std of asinh(x / r0)]. ``depth_feature`` (not a buffer, stored in
    :meth:`to_dict`): ``"asinh"`` or ``"linear"`` map of the slant depth (module docstring).
    """

    condition_mean: Tensor
    condition_std: Tensor
    log_energy_mean: Tensor
    log_energy_std: Tensor
    core_radius_m: Tensor
    position_scale: Tensor

    def __init__(self, depth_feature: str = LEGACY_DEPTH_FEATURE, **values: "np.ndarray | float | list[float]") -> None:
        super().__init__()
        if depth_feature not in DEPTH_FEATURES:
            raise ValueError(f"depth_feature must be one of {', '.join(DEPTH_FEATURES)}, got {depth_feature!r}")
        self.depth_feature = depth_feature
        defaults: dict[str, object] = {
            "condition_mean": [0.0] * CONDITION_DIM,
            "condition_std": [1.0] * CONDITION_DIM,
            "log_energy_mean": 0.0,
            "log_energy_std": 1.0,
            "core_radius_m": _DEFAULT_CORE_RADIUS_M,
            "position_scale": 1.0,
        }
        unknown = set(values) - set(defaults)
        if unknown:
            raise ValueError(f"unknown FeatureTransform value(s): {sorted(unknown)}")
        defaults.update(values)
        for name in _BUFFER_NAMES:
            self.register_buffer(name, torch.as_tensor(np.asarray(defaults[name], dtype=np.float32)))
        if self.condition_mean.shape != (CONDITION_DIM,) or self.condition_std.shape != (CONDITION_DIM,):
            raise ValueError("condition_mean/condition_std must have 4 entries")

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, batch: RaggedBatch, depth_feature: str = DEFAULT_DEPTH_FEATURE) -> "FeatureTransform":
        """Fit means/stds/scales on a batch of training events (physical units).

        Zero-muon events count for the condition statistics. ``depth_feature``: ``"asinh"``
        (default) or ``"linear"`` map of the slant depth (module docstring).
        """
        if depth_feature not in DEPTH_FEATURES:
            raise ValueError(f"depth_feature must be one of {', '.join(DEPTH_FEATURES)}, got {depth_feature!r}")
        conditions = batch.conditions.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            condition_raw = _condition_raw_numpy(conditions, depth_feature)
        _require_finite(condition_raw, "condition", ("log10 energy", "cos zenith", "log10 mass", f"{depth_feature} depth"))
        if len(batch):
            condition_mean = condition_raw.mean(axis=0)
            condition_std = _safe_std(condition_raw.std(axis=0))
        else:
            condition_mean, condition_std = np.zeros(CONDITION_DIM), np.ones(CONDITION_DIM)
        values: dict[str, object] = dict(
            condition_mean=condition_mean,
            condition_std=condition_std,
        )
        muons = batch.flat_muons.astype(np.float64)
        if muons.shape[0]:
            with np.errstate(divide="ignore", invalid="ignore"):
                log_energy = np.log10(muons[:, 0])
            _require_finite(np.stack([log_energy, muons[:, 1], muons[:, 2]], axis=1), "muon", ("log10 energy", "x", "y"))
            radius = np.hypot(muons[:, 1], muons[:, 2])
            positive_radius = radius[radius > 0]
            core = float(np.quantile(positive_radius, _CORE_RADIUS_QUANTILE)) if positive_radius.size else 0.0
            core = core if core > 0 else _DEFAULT_CORE_RADIUS_M
            scaled = np.arcsinh(muons[:, 1:3] / core)
            values.update(
                log_energy_mean=float(log_energy.mean()),
                log_energy_std=float(_safe_std(log_energy.std())),
                core_radius_m=core,
                # RMS about 0 (not the mean): keeps x -> -x symmetry of the transform
                position_scale=float(_safe_std(np.sqrt(np.mean(scaled**2)))),
            )
        return cls(depth_feature=depth_feature, **values)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, object]:
        """JSON-able dict of all fitted values and ``depth_feature``."""
        values: dict[str, object] = {name: getattr(self, name).detach().cpu().tolist() for name in _BUFFER_NAMES}
        values["depth_feature"] = self.depth_feature
        return values

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> "FeatureTransform":
        """Inverse of :meth:`to_dict` (no ``depth_feature``: ``"linear"``, older models)."""
        return cls(**dict(values))

    # ------------------------------------------------------------------ maps
    def condition_features(self, conditions: Tensor) -> Tensor:
        """(B, 4) physical [E0 GeV, zenith rad, A, depth km] -> (B, 4) float32 features."""
        conditions = conditions.to(torch.float32)
        depth = torch.asinh(conditions[:, 3] / DEPTH_SCALE_KM) if self.depth_feature == "asinh" else conditions[:, 3]
        raw = torch.stack(
            (
                torch.log10(conditions[:, 0]),
                torch.cos(conditions[:, 1]),
                torch.log10(conditions[:, 2]),
                depth,
            ),
            dim=1,
        )
        return (raw - self.condition_mean) / self.condition_std

    def muon_features(self, flat_muons: Tensor) -> Tensor:
        """(M, 3) physical [E GeV, x m, y m] -> (M, 3) standardised features."""
        flat_muons = flat_muons.to(torch.float32)
        log_energy = (torch.log10(flat_muons[:, :1]) - self.log_energy_mean) / self.log_energy_std
        position = torch.asinh(flat_muons[:, 1:3] / self.core_radius_m) / self.position_scale
        return torch.cat((log_energy, position), dim=1)

    def muons_from_features(self, features: Tensor) -> Tensor:
        """Inverse of :meth:`muon_features`: (M, 3) features -> (M, 3) physical [GeV, m, m]."""
        features = features.to(torch.float32)
        energy = torch.pow(10.0, features[:, :1] * self.log_energy_std + self.log_energy_mean)
        position = torch.sinh(features[:, 1:3] * self.position_scale) * self.core_radius_m
        return torch.cat((energy, position), dim=1)


def _require_finite(raw: np.ndarray, what: str, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming each feature with non-finite values (validate data first)."""
    bad = ~np.isfinite(raw)
    if bad.any():
        counts = ", ".join(f"{name}: {int(n)}" for name, n in zip(names, bad.sum(axis=0)) if n)
        raise ValueError(
            f"FeatureTransform.fit: non-finite {what} features ({counts} rows); "
            "run the data through mubundle.data.validate first"
        )


def _condition_raw_numpy(conditions: np.ndarray, depth_feature: str) -> np.ndarray:
    """(B, 4) physical -> (B, 4) float64 un-standardised features (numpy twin of the torch map)."""
    if conditions.shape[0] == 0:
        return np.zeros((0, CONDITION_DIM))
    return np.stack(
        (
            np.log10(conditions[:, 0]),
            np.cos(conditions[:, 1]),
            np.log10(conditions[:, 2]),
            np.arcsinh(conditions[:, 3] / DEPTH_SCALE_KM) if depth_feature == "asinh" else conditions[:, 3],
        ),
        axis=1,
    )


__all__ = ["FeatureTransform", "CONDITION_DIM", "MUON_DIM", "DEPTH_FEATURES", "DEFAULT_DEPTH_FEATURE", "LEGACY_DEPTH_FEATURE",
           "DEPTH_SCALE_KM"]
