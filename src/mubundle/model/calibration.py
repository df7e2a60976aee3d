"""A monotone map of the generator's muon energies in their upper tail (``model.json``
``energy_calibration``).

Why: every path from the generator's noise to its features passes a LayerNorm, so the
features are bounded and the power-law tail of the muon spectrum (an exponential tail in
log10 E) is pressed against a bound: too many muons just below the generator's reach, too few
beyond it (docs/model.md, "The tail of the muon spectrum"). The map moves the generator's
upper tail onto the training data's, quantile by quantile: log10 E' = f(log10 E), the identity
below the first knot, piecewise linear between knots, and linear with the last segment's slope
above the last knot. It is strictly increasing, so it keeps the order of the muons' energies
within a bundle and across bundles (what the generator learned about which muons are the
energetic ones, and with which radius, stays), and it leaves the bulk of the spectrum alone.

It is fitted by ``mubundle calibrate-energy`` (:mod:`mubundle.train.energy_calibration`) on the
generator's muons for the training events' own conditions and multiplicities, so the
multiplicity part does not enter. A model without the key has no map (the identity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mubundle.errors import InvalidValueError


@dataclass(frozen=True)
class EnergyCalibration:
    """Knots (generator log10 E -> calibrated log10 E), both in log10(E / GeV), K >= 2 each,
    strictly increasing; ``fitted_on``: what the knots were fitted on (events, muons, command)."""

    generator_log10_gev: tuple[float, ...]
    calibrated_log10_gev: tuple[float, ...]
    fitted_on: str = ""

    def __post_init__(self) -> None:
        for name in ("generator_log10_gev", "calibrated_log10_gev"):
            values = getattr(self, name)
            if len(values) < 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise InvalidValueError(f"energy_calibration.{name} must hold at least 2 finite numbers, got {values!r}")
            if any(b <= a for a, b in zip(values, values[1:])):
                raise InvalidValueError(f"energy_calibration.{name} must be strictly increasing, got {values!r}")
        if len(self.generator_log10_gev) != len(self.calibrated_log10_gev):
            raise InvalidValueError("energy_calibration: generator_log10_gev and calibrated_log10_gev differ in length "
                                    f"({len(self.generator_log10_gev)} vs {len(self.calibrated_log10_gev)})")

    def apply(self, log10_energy: Tensor) -> Tensor:
        """(M,) generator log10(E / GeV) -> (M,) calibrated log10(E / GeV), same dtype and device."""
        x = torch.tensor(self.generator_log10_gev, dtype=torch.float64, device=log10_energy.device)
        y = torch.tensor(self.calibrated_log10_gev, dtype=torch.float64, device=log10_energy.device)
        values = log10_energy.to(torch.float64)
        # segment k covers [x_k, x_k+1] (k = 0 .. K-2): the number of interior knots <= the value;
        # below x_1 it is segment 0, above the last knot the last segment continues
        segment = torch.searchsorted(x[1:-1].contiguous(), values, right=True)
        x0, y0 = x.index_select(0, segment), y.index_select(0, segment)
        slope = (y.index_select(0, segment + 1) - y0) / (x.index_select(0, segment + 1) - x0)
        mapped = y0 + slope * (values - x0)
        return torch.where(values < x[0], values, mapped).to(log10_energy.dtype)

    def to_dict(self) -> dict[str, object]:
        """The JSON form stored in ``model.json``."""
        return {
            "generator_log10_gev": list(self.generator_log10_gev),
            "calibrated_log10_gev": list(self.calibrated_log10_gev),
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, data: object) -> "EnergyCalibration":
        """Inverse of :meth:`to_dict`; ``InvalidValueError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise InvalidValueError(f"energy_calibration must be a mapping, got {type(data).__name__}")
        try:
            return cls(
                tuple(float(v) for v in data["generator_log10_gev"]),
                tuple(float(v) for v in data["calibrated_log10_gev"]),
                str(data.get("fitted_on", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, InvalidValueError):
                raise
            raise InvalidValueError(f"energy_calibration needs lists of numbers generator_log10_gev and "
                                    f"calibrated_log10_gev: {error!r}") from None


__all__ = ["EnergyCalibration"]
