"""Muon propagation through ice: continuous ionisation plus stochastic radiative losses.

Mean loss -dE/dx = a + b E with a = 0.24 GeV/m and b = 3.3e-4 /m (IceCube, JINST 9 (2014)
P03009; see PHYSICS.md). The radiative part b is split over three processes with fixed
relative weights: bremsstrahlung 0.33, e+e- pair production 0.50, photonuclear 0.17. These
are the shares in ice at 100 TeV - 1 PeV (muon table of ice, PUMAS v1.1 recomputation of
Groom, Mokhov, Striganov, At. Data Nucl. Data Tables 78 (2001) 183: 0.35 / 0.48 / 0.17 at
100 TeV, 0.35 / 0.51 / 0.14 at 1 PeV); at 1-10 TeV the table gives 0.37 / 0.37 / 0.26 (more
photonuclear, less pair), so the stochastic part of the losses of TeV muons is approximated. Each process has a scale-invariant spectrum in the relative energy
transfer v = dE/E:

- bremsstrahlung ~ (4/3 (1 - v) + v^2) / v  (complete screening, Tsai, Rev. Mod. Phys. 46 (1974) 815)
- pair production ~ (1 - v) / v^3 for v > 1e-3 (soft: most pair loss is in small transfers;
  Kelner & Kotov, Sov. J. Nucl. Phys. 7 (1968) 237, high-v behaviour)
- photonuclear    ~ (1 - v + v^2 / 2) / v  (Bezrukov-Bugaev shape at small Q^2, simplified)

Transfers below ``v_cut`` are folded into the continuous part (a + b_cont E); transfers
above it are sampled as discrete catastrophic losses. Because every spectrum is
normalised to its share of b, the mean loss equals a + b E by construction, while the
energy after a distance fluctuates (range straggling) as for real muons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ICE_A_GEV_PER_M = 0.24
ICE_B_PER_M = 3.3e-4
PROCESS_WEIGHTS = {"brems": 0.33, "pair": 0.50, "photonuclear": 0.17}
_V_MIN = 1e-3  # lower end of the pair spectrum (its v*f(v) integral diverges at v -> 0)
_V_GRID = np.logspace(np.log10(_V_MIN), 0, 4001)


def _spectrum(process: str, v: np.ndarray) -> np.ndarray:
    """Unnormalised number spectrum dN/dv of ``process`` (shape of ``v``)."""
    if process == "brems":
        return (4.0 / 3.0 * (1.0 - v) + v * v) / v
    if process == "pair":
        return (1.0 - v) / (v * v * v)
    if process == "photonuclear":
        return (1.0 - v + 0.5 * v * v) / v
    raise ValueError(f"unknown muon energy-loss process {process!r}")


def _cumulative(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoidal running integral of y(x) starting at 0."""
    out = np.zeros_like(x)
    np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x), out=out[1:])
    return out


@dataclass(frozen=True)
class IceLossModel:
    """Precomputed split of the ice loss model at ``v_cut`` (rates per metre)."""

    v_cut: float
    b_continuous: float  # /m, radiative loss below v_cut, treated as continuous
    rates: np.ndarray  # (P,) /m, rate of stochastic losses above v_cut for each process
    inverse_cdf_u: np.ndarray  # (G,) uniform grid for the inverse CDFs
    inverse_cdf_v: np.ndarray  # (P, G) v as a function of u above v_cut

    @classmethod
    def build(cls, v_cut: float = 0.05, b_per_m: float = ICE_B_PER_M) -> "IceLossModel":
        """Tables for ``v_cut`` and the medium's radiative coefficient ``b_per_m`` (1/m; default ice)."""
        v = _V_GRID
        above = v >= v_cut
        rates, b_cont, inverse = [], 0.0, []
        u_grid = np.linspace(0.0, 1.0, 2001)
        for process, weight in PROCESS_WEIGHTS.items():
            number = _spectrum(process, v)
            mean_fraction_total = _cumulative(v * number, v)[-1]
            # normalise so that the process contributes weight * b to the mean loss
            scale = weight * b_per_m / mean_fraction_total
            below_cut = np.interp(v_cut, v, _cumulative(v * number, v))
            b_cont += scale * below_cut
            v_above = np.concatenate([[v_cut], v[above]])
            n_above = _spectrum(process, v_above)
            cdf = _cumulative(n_above, v_above)
            rates.append(scale * cdf[-1])
            inverse.append(np.interp(u_grid, cdf / cdf[-1], v_above))
        return cls(v_cut, b_cont, np.array(rates), u_grid, np.array(inverse))

    def sample_v(self, process: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Relative energy transfer v > v_cut for each entry of ``process`` (indices into rates)."""
        u = rng.random(process.shape[0])
        out = np.empty(process.shape[0])
        for index in range(self.rates.shape[0]):
            chosen = process == index
            out[chosen] = np.interp(u[chosen], self.inverse_cdf_u, self.inverse_cdf_v[index])
        return out


_MODELS: dict[tuple[float, float], IceLossModel] = {}  # cache of pure, immutable tables keyed by (v_cut, b)


def loss_model(v_cut: float = 0.05, b_per_m: float = ICE_B_PER_M) -> IceLossModel:
    """The (cached, immutable) loss tables for ``v_cut`` and radiative coefficient ``b_per_m`` (1/m)."""
    key = (float(v_cut), float(b_per_m))
    if key not in _MODELS:
        _MODELS[key] = IceLossModel.build(v_cut, b_per_m)
    return _MODELS[key]


def propagate_in_ice(
    energy_gev: np.ndarray,
    distance_m: np.ndarray,
    rng: np.random.Generator,
    v_cut: float = 0.05,
    a_per_m: float = ICE_A_GEV_PER_M,
    b_per_m: float = ICE_B_PER_M,
) -> np.ndarray:
    """Energies (GeV) after ``distance_m`` of the medium, per muon (both (M,)); 0 where a muon stopped.

    Between stochastic losses the energy follows the continuous solution
    E(x) = (E0 + a/b_c) exp(-b_c x) - a/b_c; the distance to the next stochastic loss is
    exponential with the (energy-independent) total rate above ``v_cut``. ``a_per_m`` (GeV/m)
    and ``b_per_m`` (1/m): the medium's mean loss a + b E per metre (default ice; any medium
    of :mod:`mubundle.sim.site` via ``Medium.a_per_m`` / ``b_per_m``, distances then in metres
    of that medium's depth unit). The split of b over the processes is that of water/ice.
    """
    model = loss_model(v_cut, b_per_m)
    a, b_c = float(a_per_m), model.b_continuous
    total_rate = float(model.rates.sum())
    process_cdf = np.cumsum(model.rates) / total_rate
    energy = np.array(energy_gev, dtype=np.float64, copy=True)
    remaining = np.broadcast_to(np.asarray(distance_m, dtype=np.float64), energy.shape).copy()
    energy[energy <= 0] = 0.0
    active = np.flatnonzero((energy > 0) & (remaining > 0))
    while active.size:
        e, left = energy[active], remaining[active]
        free_path = rng.exponential(1.0 / total_rate, active.size)
        step = np.minimum(free_path, left)
        range_left = np.log1p(e * b_c / a) / b_c  # continuous range to E = 0
        stopped = range_left <= step
        e = np.where(stopped, 0.0, (e + a / b_c) * np.exp(-b_c * step) - a / b_c)
        left = left - step
        hit = (~stopped) & (free_path < remaining[active])
        if hit.any():
            process = np.searchsorted(process_cdf, rng.random(int(hit.sum())), side="right")
            process = np.minimum(process, model.rates.size - 1)
            e[hit] *= 1.0 - model.sample_v(process, rng)
        energy[active], remaining[active] = np.maximum(e, 0.0), left
        keep = (energy[active] > 0) & (remaining[active] > 0)
        active = active[keep]
    return energy


def propagate_muons(energy_gev: np.ndarray, distance_m: float, seed: int, medium=None) -> np.ndarray:
    """Public API: muon energies (GeV, shape of ``energy_gev``) after ``distance_m`` metres of ice
    (or of ``medium``, a :class:`mubundle.sim.site.Medium`, in metres of its depth unit).

    Continuous and stochastic losses (see module docstring); 0 for muons that range out.
    Deterministic for a given ``seed``.
    """
    energy = np.asarray(energy_gev, dtype=np.float64)
    if distance_m < 0:
        raise ValueError(f"distance_m must be >= 0, got {distance_m}")
    rng = np.random.default_rng(seed)
    a, b = (ICE_A_GEV_PER_M, ICE_B_PER_M) if medium is None else (medium.a_per_m, medium.b_per_m)
    return propagate_in_ice(energy.ravel(), np.full(energy.size, float(distance_m)), rng, 0.05, a, b).reshape(energy.shape)
