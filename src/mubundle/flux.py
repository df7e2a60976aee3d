"""Flux-weighted primaries: sample (E0, A, zenith) from a generation spectrum and weight
each event to a cosmic-ray flux model from :mod:`crflux`.

The weights are importance-sampling weights (see docs/generation.md for the derivation)::

    w_i = Phi_g(E_i) * area * (2 pi (cos_max - cos_min)) / (N * p_E(E_i) * p_g)

- ``Phi_g(E)``: differential flux of mass group g at total energy per nucleus E,
  (m^2 s sr GeV)^-1 = sum of ``crflux`` ``nucleus_flux(id, E)`` over the species in g;
- ``area``: disc of ``area`` m^2 perpendicular to the shower axis (no cos(zenith) factor);
- ``2 pi (cos_max - cos_min)``: solid angle of the zenith band, directions uniform in cos;
- ``p_E(E) = E^-gamma / int_lo^hi E^-gamma dE``: generation density of the energy;
- ``p_g``: probability of drawing group g (uniform over the groups with non-zero flux).

so ``sum_i w_i`` estimates, without bias, the rate [Hz] of primaries of all groups in the
energy and zenith range crossing the disc: ``R = area * Omega * sum_g int Phi_g(E) dE``.

Shared by ``mubundle simulate --flux`` (sim) and ``mubundle generate --flux`` (generate,
re-exported as :mod:`mubundle.generate.flux`): a top-level module that imports nothing of
the package, so both sides of the import order data -> sim -> ... -> generate can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

#: The five mass groups: (name, representative mass number A, charge range Z_lo..Z_hi).
#: Every species of a crflux model is assigned to a group by its charge Z; the group's
#: flux is the sum of its species' fluxes, and its events carry the representative A.
MASS_GROUPS: tuple[tuple[str, int, int, int], ...] = (
    ("p", 1, 1, 1),
    ("He", 4, 2, 2),
    ("CNO", 14, 3, 10),
    ("Mg-Si", 27, 11, 20),
    ("Fe", 56, 21, 200),
)
GROUP_MASSES: np.ndarray = np.array([g[1] for g in MASS_GROUPS], dtype=np.float64)

#: Flux model names accepted by :func:`make_flux_model` -> (crflux class name, args).
FLUX_MODELS: dict[str, tuple[str, tuple]] = {
    "H3a": ("HillasGaisser2012", ("H3a",)),
    "H4a": ("HillasGaisser2012", ("H4a",)),
    "GST": ("GaisserStanevTilav", ("3-gen",)),
    "GST3": ("GaisserStanevTilav", ("3-gen",)),
    "GST4": ("GaisserStanevTilav", ("4-gen",)),
    # GlobalSplineFitBeta only tabulates nucleon fluxes (its nucleus_flux returns zeros),
    # so GSF uses the globalsplinefit-backed per-species model.
    "GSF": ("GlobalSplineFit", ()),
    "PolyGonato": ("PolyGonato", ()),
    "GaisserHonda": ("GaisserHonda", ()),
    "ZatsepinSokolskaya": ("ZatsepinSokolskaya", ()),
}


def make_flux_model(name: str):
    """Instantiate the crflux model called ``name`` (one of :data:`FLUX_MODELS`)."""
    import crflux.models as crflux_models

    if name not in FLUX_MODELS:
        raise ValueError(f"unknown flux model {name!r}; known: {', '.join(FLUX_MODELS)}")
    class_name, args = FLUX_MODELS[name]
    try:
        return getattr(crflux_models, class_name)(*args)
    except ImportError as error:  # GSF needs the optional globalsplinefit package
        raise ValueError(f"flux model {name!r} needs an extra package: {error}") from error


def _charge(corsika_id: int) -> int:
    """Charge Z of a CORSIKA id (14 = proton, else 100 A + Z)."""
    return 1 if corsika_id == 14 else corsika_id % 100


class GroupFlux:
    """Differential flux of the five mass groups of one crflux model.

    ``flux(E, group)`` -> (n,) float64 in (m^2 s sr GeV)^-1 with ``E`` the total energy
    per nucleus in GeV and ``group`` the (n,) int index into :data:`MASS_GROUPS`.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.name = getattr(model, "name", type(model).__name__)
        self.species: list[list[int]] = [[] for _ in MASS_GROUPS]
        for corsika_id in model.nucleus_ids:
            z = _charge(int(corsika_id))
            for index, (_, _, z_lo, z_hi) in enumerate(MASS_GROUPS):
                if z_lo <= z <= z_hi:
                    self.species[index].append(int(corsika_id))
                    break
        if not any(self.species):
            raise ValueError(f"flux model {self.name} provides no per-nucleus fluxes")

    @property
    def active_groups(self) -> np.ndarray:
        """Indices of the groups with at least one species in the model."""
        return np.array([i for i, ids in enumerate(self.species) if ids], dtype=np.int64)

    def group_flux(self, energy: np.ndarray, group: int) -> np.ndarray:
        """(n,) flux of one group at total energies ``energy`` [GeV]."""
        energy = np.atleast_1d(np.asarray(energy, dtype=np.float64))
        total = np.zeros_like(energy)
        for corsika_id in self.species[group]:
            total += np.asarray(self.model.nucleus_flux(corsika_id, energy), dtype=np.float64)
        return total

    def flux(self, energy: np.ndarray, group: np.ndarray) -> np.ndarray:
        """(n,) flux at ``energy`` [GeV] for each event's ``group`` index."""
        energy = np.asarray(energy, dtype=np.float64)
        group = np.asarray(group, dtype=np.int64)
        result = np.zeros_like(energy)
        for index in np.unique(group):
            mask = group == index
            result[mask] = self.group_flux(energy[mask], int(index))
        return result


@dataclass(frozen=True)
class FluxPrimaries:
    """Sampled primaries with their weights.

    ``energy`` (N,) GeV, ``zenith`` (N,) rad, ``group`` (N,) int index into
    :data:`MASS_GROUPS`, ``mass`` (N,) representative A, ``weight`` (N,) Hz.
    """

    energy: np.ndarray
    zenith: np.ndarray
    group: np.ndarray
    mass: np.ndarray
    weight: np.ndarray


def _check_ranges(energy_range: tuple[float, float], zenith_range: tuple[float, float]) -> None:
    lo, hi = energy_range
    if not (0 < lo < hi and np.isfinite(hi)):
        raise ValueError(f"energy range must satisfy 0 < LO < HI, got {energy_range} GeV")
    z_lo, z_hi = zenith_range
    if not (0 <= z_lo < z_hi <= np.pi / 2):
        raise ValueError(f"zenith range must satisfy 0 <= LO < HI <= pi/2, got {zenith_range} rad")


def _sample_power_law(rng: np.random.Generator, n: int, gamma: float, lo: float, hi: float) -> np.ndarray:
    """(n,) energies from p(E) ~ E^-gamma on [lo, hi] by inverse CDF."""
    u = rng.random(n)
    if np.isclose(gamma, 1.0):
        return lo * (hi / lo) ** u
    k = 1.0 - gamma
    return (lo**k + u * (hi**k - lo**k)) ** (1.0 / k)


def power_law_density(energy: np.ndarray, gamma: float, lo: float, hi: float) -> np.ndarray:
    """Normalised density [1/GeV] of E^-gamma on [lo, hi]."""
    if np.isclose(gamma, 1.0):
        norm = np.log(hi / lo)
    else:
        k = 1.0 - gamma
        norm = (hi**k - lo**k) / k
    return np.asarray(energy, dtype=np.float64) ** (-gamma) / norm


def solid_angle(zenith_range: tuple[float, float]) -> float:
    """Solid angle [sr] of the zenith band ``zenith_range`` [rad], all azimuths."""
    return 2.0 * np.pi * (np.cos(zenith_range[0]) - np.cos(zenith_range[1]))


def sample_flux_primaries(
    flux: GroupFlux,
    n_events: int,
    energy_range: tuple[float, float],
    zenith_range: tuple[float, float],
    area_m2: float,
    seed: int | np.random.SeedSequence,
    generation_gamma: float = 2.0,
    normalisation_events: int | None = None,
) -> FluxPrimaries:
    """Draw ``n_events`` primaries and weight them to ``flux`` (see module docstring).

    Energy ~ E^-``generation_gamma`` in ``energy_range`` [GeV]; cos(zenith) uniform in
    ``zenith_range`` [rad]; group uniform over the groups the model provides.
    ``sum(weight)`` estimates the rate [Hz] through a disc of ``area_m2`` m^2
    perpendicular to the shower axis.

    ``normalisation_events``: the N of the weight formula when this call draws only one
    chunk of a larger sample (default: ``n_events``); the weights of all chunks then sum
    to the rate.
    """
    _check_ranges(energy_range, zenith_range)
    if n_events <= 0:
        raise ValueError(f"number of events must be positive, got {n_events}")
    if not area_m2 > 0:
        raise ValueError(f"area must be positive, got {area_m2} m^2")
    rng = np.random.default_rng(seed)
    lo, hi = energy_range
    energy = _sample_power_law(rng, n_events, generation_gamma, lo, hi)
    cos_min, cos_max = np.cos(zenith_range[1]), np.cos(zenith_range[0])
    zenith = np.arccos(cos_min + rng.random(n_events) * (cos_max - cos_min))
    groups = flux.active_groups
    group = groups[rng.integers(0, len(groups), n_events)]
    p_generation = power_law_density(energy, generation_gamma, lo, hi) / len(groups)
    n_total = n_events if normalisation_events is None else int(normalisation_events)
    weight = flux.flux(energy, group) * area_m2 * solid_angle(zenith_range) / (n_total * p_generation)
    return FluxPrimaries(energy, zenith, group, GROUP_MASSES[group], weight)


def integrated_rate(
    flux: GroupFlux,
    energy_range: tuple[float, float],
    zenith_range: tuple[float, float],
    area_m2: float,
    points_per_decade: int = 400,
) -> float:
    """Rate [Hz] = area * Omega * sum_g int Phi_g(E) dE by direct numerical quadrature.

    The reference the weights are tested against: Simpson's rule
    (``scipy.integrate.simpson``) in ln E on a grid of ``points_per_decade`` points per
    decade (the fluxes are smooth in ln E; vectorised, so fast even for the spline GSF).
    """
    from scipy import integrate as scipy_integrate

    _check_ranges(energy_range, zenith_range)
    lo, hi = energy_range
    n_points = max(101, int(np.ceil(np.log10(hi / lo) * points_per_decade)) | 1)
    log_energy = np.linspace(np.log(lo), np.log(hi), n_points)
    energy = np.exp(log_energy)
    total = sum(
        scipy_integrate.simpson(flux.group_flux(energy, int(group)) * energy, x=log_energy)
        for group in flux.active_groups
    )
    return float(area_m2 * solid_angle(zenith_range) * total)
