"""The kinematic zero: primaries that cannot put a muon at their depth have N = 0 exactly.

In the reference simulator (``mubundle simulate``) a muon is kept at slant depth d only with
E > ``min_energy`` there, and between stochastic losses it loses energy continuously at
a + b_c E per metre (``sim.ice.propagate_in_ice``; a, b of the site's medium, b_c the part of b
below ``v_cut``). Stochastic losses and the air only add to that, so a muon needs at least

    E_s(d) = (E_min + a / b_c) exp(b_c d) - a / b_c

at the surface (``sim.run.muon_threshold_gev`` without its air term; the simulator does not
even follow particles below the bound with the air). A nucleus of energy E0 and mass number A
enters as A nucleons of E0 / A (superposition), a hadron's secondaries carry at most its energy
and a decay muon at most its parent's, so a primary with E0 / A < E_s(d) gives N = 0, whatever
its interactions: exactly, not approximately (none of the 9.5 M events below the bound among
10.4 M simulated for the ``icecube`` model has a muon, nor of 4.8 M for ``km3net-arca``).

A network cannot represent such a zero: the ``icecube`` multiplicity networks of 0.2.x and 0.3.0
put 17 % and 65 % of their flux-weighted muon rate on primaries below the bound (95 % of an H3a
flux's primaries over E0 3e2-1e9 GeV, zenith 0-89 deg, 1.4-2.6 km). :class:`MuonThreshold` is that bound for one
simulator configuration; a model whose training data came from ``mubundle simulate`` records it
(``model.json``, ``domain.muon_threshold``) and gives N = 0 below it without running its
multiplicity network (which also makes flux-weighted generation, mostly such primaries, cheap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor


def _medium(name: str):
    from mubundle.sim.site import ICE, SEA_WATER, STANDARD_ROCK

    media = {medium.name: medium for medium in (ICE, SEA_WATER, STANDARD_ROCK)}
    if name not in media:
        raise ValueError(f"muon threshold: unknown medium {name!r}; known: {', '.join(media)}")
    return media[name]


@dataclass(frozen=True)
class MuonThreshold:
    """The simulator settings that fix the kinematic zero: the ``medium`` above the detector (a
    name of :mod:`mubundle.sim.site`: "ice", "sea water", "standard rock"), ``min_energy_gev``
    (muons kept above it at depth, ``--min-energy``) and ``v_cut`` (``ice_v_cut``: the relative
    loss below which losses are continuous)."""

    medium: str
    min_energy_gev: float
    v_cut: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_energy_gev) and self.min_energy_gev > 0):
            raise ValueError(f"muon threshold: min_energy_gev must be finite and > 0, got {self.min_energy_gev!r}")
        if not 0 < self.v_cut < 1:
            raise ValueError(f"muon threshold: v_cut must be in (0, 1), got {self.v_cut!r}")
        _medium(self.medium)

    def coefficients(self) -> tuple[float, float]:
        """(a [GeV per m of depth unit], b_c [1 / m of depth unit]) of the continuous loss."""
        from mubundle.sim.ice import loss_model

        medium = _medium(self.medium)
        return medium.a_per_m, loss_model(self.v_cut, medium.b_per_m).b_continuous

    def surface_energy_gev(self, slant_depth_km: "np.ndarray | float") -> np.ndarray:
        """E_s(d) [GeV]: the least surface energy of a muon that reaches slant depth d [km of the
        medium's depth unit] with more than ``min_energy_gev`` (float64, shape of the input)."""
        depth_km = torch.from_numpy(np.array(slant_depth_km, dtype=np.float64))  # a C-ordered copy, 0-d kept
        return self._surface_energy(depth_km).numpy()

    def _surface_energy(self, slant_depth_km: Tensor) -> Tensor:
        """:meth:`surface_energy_gev` on a float64 tensor (torch's vectorised exp: ~2.5x numpy's on
        the development CPU, equal within 1 ulp; every sampled batch pays it)."""
        a, b_c = self.coefficients()
        return torch.exp(slant_depth_km * (b_c * 1000.0)).mul_(self.min_energy_gev + a / b_c).sub_(a / b_c)

    def impossible(self, conditions: Tensor) -> Tensor:
        """(B,) bool: E0 / A < E_s(depth) for conditions (B, 4) [GeV, rad, A, slant km] (float64
        arithmetic; N = 0 exactly for these primaries)."""
        return self._per_nucleon_over_bound(conditions) < 1.0

    def _per_nucleon_over_bound(self, conditions: Tensor) -> Tensor:
        conditions = conditions.to(torch.float64)
        return (conditions[:, 0] / conditions[:, 2]).div_(self._surface_energy(conditions[:, 3]))

    def to_dict(self) -> dict[str, Any]:
        return {"medium": self.medium, "min_energy_gev": self.min_energy_gev, "v_cut": self.v_cut}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MuonThreshold":
        """Inverse of :meth:`to_dict`; ``ValueError`` naming a missing or malformed key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"muon threshold must be a JSON object, got {type(data).__name__}")
        missing = [key for key in ("medium", "min_energy_gev", "v_cut") if key not in data]
        if missing:
            raise ValueError(f"muon threshold: missing {', '.join(missing)}")
        unknown = sorted(set(data) - {"medium", "min_energy_gev", "v_cut"})
        if unknown:
            raise ValueError(f"muon threshold: unknown key(s) {', '.join(unknown)}")
        try:
            return cls(str(data["medium"]), float(data["min_energy_gev"]), float(data["v_cut"]))
        except (TypeError, ValueError) as error:
            raise ValueError(f"muon threshold: {error}") from None


def threshold_of_configs(configs: "list[Mapping[str, Any]]", medium: str | None) -> MuonThreshold | None:
    """The bound of training data simulated by ``mubundle simulate``: ``configs`` the ``config``
    of every file's metadata (``min_energy``, ``ice_v_cut``), ``medium`` the data's medium. None
    unless every file records both settings and they agree (data of other producers, or mixed
    settings, get no kinematic zero)."""
    if medium is None or not configs:
        return None
    settings = set()
    for config in configs:
        if not isinstance(config, Mapping) or "min_energy" not in config or "ice_v_cut" not in config:
            return None
        try:
            settings.add((float(config["min_energy"]), float(config["ice_v_cut"])))
        except (TypeError, ValueError):
            return None
    if len(settings) != 1:
        return None
    (min_energy, v_cut), = settings
    try:
        return MuonThreshold(medium, min_energy, v_cut)
    except ValueError:
        return None


__all__ = ["MuonThreshold", "threshold_of_configs"]
