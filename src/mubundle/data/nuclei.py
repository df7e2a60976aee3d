"""Primary rest masses in GeV <-> mass number A.

The original pipeline stores ``I3Particle.mass``, the primary's nuclear rest mass in GeV
(p 0.938272, He4 3.7274, N14 13.0434, Al27 25.1331, Fe56 52.0898; see
../shared/docs/PHYSICS.md), while mubundle's condition is the mass number A.

Table: for every A the lightest (most bound) isobar's nuclear mass, i.e. the atomic mass
of the ``particle`` package's nuclear data (scikit-hep ``particle``, ``nuclei*.csv``,
taken from the ``periodictable`` package's evaluated atomic masses) minus Z electron
masses (electron binding energies, < 0.1 MeV up to Fe, are neglected). A = 1 is the
proton (PDG mass). Isobars near stability differ by a few MeV, neighbouring A by ~0.93 GeV,
so a stored value is read as the A of the nearest table entry if it lies within
:data:`REST_MASS_TOLERANCE_GEV`, else it matches no nucleus.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Largest mass number in the table (CORSIKA primaries stop at A = 59).
A_MAX = 100
#: A stored rest mass counts as nucleus A if |m - M(A)| <= this (GeV). 0.1 GeV is ~1/9 of the
#: spacing of neighbouring A; it also accepts atomic instead of nuclear masses (Z m_e <= 0.05 GeV)
#: and A * atomic mass unit (off by 0.074 GeV at Fe56).
REST_MASS_TOLERANCE_GEV = 0.1
_ELECTRON_MASS_GEV = 0.51099895e-3  # PDG 2024
_PROTON_MASS_GEV = 0.93827208943  # PDG 2024


@lru_cache(maxsize=1)
def rest_mass_table() -> np.ndarray:
    """(A_MAX + 1,) float64: nuclear rest mass (GeV) of the lightest isobar of each A (index 0 unused, NaN)."""
    from particle import Particle
    from particle.particle import InvalidParticle, ParticleNotFound

    table = np.full(A_MAX + 1, np.nan)
    table[1] = _PROTON_MASS_GEV
    for a in range(2, A_MAX + 1):
        best = np.inf
        # the valley of stability: Z/A between ~0.38 (U) and 0.5 (light nuclei)
        for z in range(max(1, int(0.3 * a) - 2), min(a, a // 2 + 3) + 1):
            try:
                atomic_mev = Particle.from_pdgid(1_000_000_000 + 10_000 * z + 10 * a).mass
            except (ParticleNotFound, InvalidParticle):
                continue
            if atomic_mev is not None:
                best = min(best, atomic_mev / 1000.0 - z * _ELECTRON_MASS_GEV)
        table[a] = best if np.isfinite(best) else np.nan
    return table


def rest_mass_gev(mass_number: np.ndarray) -> np.ndarray:
    """Nuclear rest masses (GeV, float64) of whole mass numbers ``mass_number`` (any shape).

    Raises ``ValueError`` naming the first value that is not a whole number in [1, A_MAX].
    """
    values = np.asarray(mass_number, dtype=np.float64)
    valid = np.isfinite(values) & (values == np.round(values)) & (values >= 1) & (values <= A_MAX)
    if not valid.all():
        bad = values[~valid].reshape(-1)[0]
        raise ValueError(
            f"mass A = {bad!r} is not a nucleus (a whole number in [1, {A_MAX}]); "
            "the original layouts store the rest mass of a nucleus in GeV"
        )
    return rest_mass_table()[values.astype(np.int64)]


def mass_number_from_rest_mass(mass_gev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest nucleus of each rest mass (GeV, any shape).

    Returns ``(A, matched)``: A as float32 (NaN where nothing matched) and a bool mask of
    values within :data:`REST_MASS_TOLERANCE_GEV` of a nucleus' rest mass.
    """
    values = np.asarray(mass_gev, dtype=np.float64)
    table = rest_mass_table()
    masses = table[1:]
    with np.errstate(invalid="ignore"):
        index = np.clip(np.searchsorted(masses, values), 1, masses.shape[0] - 1)
        left, right = masses[index - 1], masses[index]
        nearest = np.where(np.abs(values - left) <= np.abs(values - right), index - 1, index)
        matched = np.abs(values - masses[nearest]) <= REST_MASS_TOLERANCE_GEV
    mass_number = np.where(matched, nearest + 1, np.nan).astype(np.float32)
    return mass_number, matched
