"""One-dimensional hadronic cascade in slant depth, vectorised over a group of showers.

Every particle carries its shower index, PDG id, lab energy, the slant depth where it was
created, its transverse position (m, in the plane perpendicular to the shower axis) and
its direction as slopes (dx/dz, dy/dz) relative to the axis. Each generation of the stack
is processed at once: interaction points (interaction length from the model cross section)
and decay points (lifetime from PDG via ``particle``, the Linsley atmosphere converting
path length to depth) are sampled for all particles with numpy; whichever comes first
wins; particles that reach the ground first are absorbed. Collisions go to chromo one by
one (the only per-particle Python loop); decays are vectorised (``decays.py``).

Only particles above the per-shower energy threshold are followed: a hadron below it
cannot give a muon above it (a meson's decay muon carries at most the meson's energy).
Nuclei use the superposition model: a nucleus A of energy E0 starts as Z protons and
A - Z neutrons of energy E0 / A (Engel, Gaisser, Stanev, Lipari, Phys. Rev. D 46 (1992)
5013, show it reproduces the mean muon number; it overestimates fluctuations slightly).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from mubundle.sim.earth import CurvedAxes
from mubundle.sim.decays import CTAU_M, DECAYING_PIDS, MASS_GEV, MUON_MASS_GEV, decay
from mubundle.sim.deflection import ScatteringTable, magnetic_deflection, scatter_in_air
from mubundle.sim.interactions import (
    MIN_LAB_ENERGY_GEV, TRACKED_UNSTABLE_PIDS, TRACKED_XS, XS_PROJECTILE, AirInteractions,
)

#: Muon energy loss in air, -dE/dX = a + b E (a: ionisation of a relativistic muon in air,
#: PDG "Atomic and nuclear properties: air", ~2.0-2.5 MeV cm^2/g at 10 GeV-1 TeV; b: radiative,
#: taken equal to that of water per g/cm^2, Groom et al. ADNDT 78 (2001)).
AIR_A_GEV_CM2_PER_G = 2.3e-3
AIR_B_CM2_PER_G = 3.6e-6
#: Proton number of the primary nuclei (p, He4, N14, Al27, Fe56).
PROTON_NUMBER = {1: 1, 4: 2, 14: 7, 27: 13, 56: 26}
NUCLEON_MASS_GEV = 0.938
#: Electric charge (units of e) of the followed particles by PDG id (mu- is +13).
CHARGE = {13: -1, -13: 1, 211: 1, -211: -1, 321: 1, -321: -1, 2212: 1, -2212: -1}


def _tracked_properties() -> tuple[dict[int, tuple[float, float]], dict[int, int]]:
    """(|pid| -> (mass GeV, c tau m)) and (pid -> charge) of the tracked unstable hadrons, PDG
    values through the ``particle`` package."""
    from particle import Particle

    lifetimes, charges = {}, {}
    for pid in TRACKED_UNSTABLE_PIDS:
        particle = Particle.from_pdgid(pid)
        lifetimes[pid] = (particle.mass / 1000.0, particle.ctau / 1000.0)
        if particle.charge:
            charges[pid] = int(particle.charge)
            charges[-pid] = -int(particle.charge)
    return lifetimes, charges


TRACKED_LIFETIME, _TRACKED_CHARGE = _tracked_properties()
CHARGE.update(_TRACKED_CHARGE)


def charge_of(pid: np.ndarray) -> np.ndarray:
    """Charge (units of e) for PDG ids (N,); 0 for neutral particles."""
    out = np.zeros(pid.shape)
    for code, charge in CHARGE.items():
        out[pid == code] = charge
    return out


@dataclass
class Stack:
    """Particles of one cascade generation (all arrays (N,))."""

    shower: np.ndarray
    pid: np.ndarray
    energy: np.ndarray
    depth: np.ndarray  # slant depth of creation, g/cm^2
    x: np.ndarray  # m
    y: np.ndarray  # m
    slope_x: np.ndarray
    slope_y: np.ndarray

    def __len__(self) -> int:
        return int(self.pid.shape[0])

    def select(self, mask: np.ndarray) -> "Stack":
        return Stack(*(getattr(self, f.name)[mask] for f in fields(self)))

    @classmethod
    def concat(cls, parts: list["Stack"]) -> "Stack":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    @classmethod
    def empty(cls) -> "Stack":
        i, f = np.zeros(0, np.int64), np.zeros(0)
        return cls(i, i, f, f, f, f, f, f)


@dataclass(frozen=True)
class GroundMuons:
    """Muons arriving at the surface: all arrays (M,); energies GeV, positions m."""

    shower: np.ndarray
    energy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    slope_x: np.ndarray
    slope_y: np.ndarray


def primary_nucleons(energy: np.ndarray, mass: np.ndarray) -> Stack:
    """Superposition: Z protons and A - Z neutrons per shower, each with E0 / A (GeV)."""
    mass_int = np.rint(mass).astype(np.int64)
    protons = np.array([PROTON_NUMBER.get(int(a), max(1, int(a) // 2)) for a in mass_int], dtype=np.int64)
    shower = np.repeat(np.arange(energy.size), mass_int)
    within = np.arange(shower.size) - np.repeat(np.cumsum(mass_int) - mass_int, mass_int)
    pid = np.where(within < protons[shower], 2212, 2112)
    n = shower.size
    zeros = np.zeros(n)
    return Stack(shower, pid, (energy / mass_int)[shower].astype(np.float64), zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy())


def _decay_length_m(pid: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Mean lab decay length (m) for each particle; inf for those not decayed here."""
    out = np.full(pid.shape, np.inf)
    abs_pid = np.abs(pid)
    for parent in {abs(p) for p in DECAYING_PIDS}:
        chosen = abs_pid == parent
        mass = MASS_GEV[parent]
        out[chosen] = np.sqrt(np.maximum(energy[chosen] ** 2 - mass**2, 0.0)) / mass * CTAU_M[parent]
    for parent, (mass, ctau) in TRACKED_LIFETIME.items():  # present only with a SIBYLL 2.3 model
        chosen = abs_pid == parent
        if chosen.any():
            out[chosen] = np.sqrt(np.maximum(energy[chosen] ** 2 - mass**2, 0.0)) / mass * ctau
    return out


def run_cascade(
    energy: np.ndarray,
    mass: np.ndarray,
    cos_zenith: np.ndarray,
    threshold_gev: np.ndarray,
    ground_altitude_m: float,
    air: AirInteractions,
    rng: np.random.Generator,
    geometry: CurvedAxes | None = None,
    field: tuple[np.ndarray, np.ndarray] | None = None,
    scattering: bool = True,
) -> GroundMuons:
    """Cascade of S showers (energy GeV, mass A, cos_zenith, threshold GeV: all (S,)).

    Returns the muons reaching the ground (altitude ``ground_altitude_m``) with their
    transverse positions in the plane perpendicular to the axis, after energy loss and
    decay in air. ``geometry``: the showers' axes (``earth.CurvedAxes`` or ``earth.FlatAxes``
    of these S showers; default: curved axes through a spherical atmosphere). ``field``: per shower the two transverse components (T) of v x B
    (``deflection.field_across_axis``, (S,) each); None = no geomagnetic field.
    ``scattering``: multiple scattering of the muons in air (Highland).
    """
    if geometry is None:
        geometry = CurvedAxes(cos_zenith, ground_altitude_m)
    ground_depth = geometry.ground_depth  # (S,) g/cm^2
    stack = primary_nucleons(np.asarray(energy, np.float64), np.asarray(mass, np.float64))
    stack = stack.select(stack.energy > threshold_gev[stack.shower])
    if field is None:
        field = (np.zeros(cos_zenith.shape), np.zeros(cos_zenith.shape))
    muons: list[Stack] = []
    while len(stack):
        is_muon = np.abs(stack.pid) == 13
        muons.append(stack.select(is_muon))
        hadrons = stack.select(~is_muon)
        stack = _step(hadrons, cos_zenith, ground_depth, threshold_gev, ground_altitude_m, air, rng, geometry, field)
    table = ScatteringTable.build(ground_altitude_m) if scattering else None
    return _muons_to_ground(Stack.concat(muons), cos_zenith, ground_depth, ground_altitude_m, rng, geometry, field, table)


def _step(
    hadrons: Stack,
    cos_zenith: np.ndarray,
    ground_depth: np.ndarray,
    threshold_gev: np.ndarray,
    ground_altitude_m: float,
    air: AirInteractions,
    rng: np.random.Generator,
    geometry: CurvedAxes,
    field: tuple[np.ndarray, np.ndarray],
) -> Stack:
    """Move every hadron to its interaction, decay or absorption point; return the next generation.

    Charged hadrons are bent by the geomagnetic ``field`` on the way (their secondaries
    start from the bent position and direction)."""
    if len(hadrons) == 0:
        return Stack.empty()
    cos = cos_zenith[hadrons.shower]
    abs_pid = np.abs(hadrons.pid)
    xs_pid = _map_xs(abs_pid)
    interaction_length = air.interaction_length(xs_pid, hadrons.energy)
    interaction_length[hadrons.energy < MIN_LAB_ENERGY_GEV] = np.inf  # below the models' range
    depth_interaction = hadrons.depth + interaction_length * rng.exponential(1.0, len(hadrons))
    height_now = geometry.height_of_slant_depth(hadrons.depth, hadrons.shower)
    decay_path_m = _decay_length_m(hadrons.pid, hadrons.energy) * rng.exponential(1.0, len(hadrons))
    height_decay = height_now - decay_path_m * cos
    with np.errstate(invalid="ignore"):
        depth_decay = np.where(height_decay > ground_altitude_m, geometry.slant_depth(np.maximum(height_decay, 0.0), hadrons.shower), np.inf)
    ground = ground_depth[hadrons.shower]
    interacts = (depth_interaction < depth_decay) & (depth_interaction < ground)
    decays = (~interacts) & (depth_decay < ground)
    fate_depth = np.where(interacts, depth_interaction, depth_decay)
    fate_height = np.where(decays, height_decay, geometry.height_of_slant_depth(np.where(interacts, fate_depth, 0.0), hadrons.shower))
    path_m = (height_now - fate_height) / cos
    dx, dy, dslope_x, dslope_y = magnetic_deflection(
        charge_of(hadrons.pid), hadrons.energy, path_m, field[0][hadrons.shower], field[1][hadrons.shower]
    )
    fate_x = hadrons.x + hadrons.slope_x * path_m + dx
    fate_y = hadrons.y + hadrons.slope_y * path_m + dy
    slope_x = hadrons.slope_x + dslope_x
    slope_y = hadrons.slope_y + dslope_y

    parts = []
    by_model = decays & ~np.isin(abs_pid, _DECAYED_HERE)  # tracked unstable hadrons (K0S, hyperons, charm)
    decays &= ~by_model
    for index in np.flatnonzero(by_model).tolist():
        d_pid, d_energy, d_slope_x, d_slope_y = air.decay_in_flight(
            int(hadrons.pid[index]), float(hadrons.energy[index]), float(slope_x[index]), float(slope_y[index]), rng
        )
        n = d_pid.size
        parts.append(Stack(np.full(n, hadrons.shower[index]), d_pid, d_energy, np.full(n, fate_depth[index]),
                           np.full(n, fate_x[index]), np.full(n, fate_y[index]), d_slope_x, d_slope_y))
    decaying = np.flatnonzero(decays)
    if decaying.size:
        d = decay(hadrons.pid[decaying], hadrons.energy[decaying], slope_x[decaying], slope_y[decaying], rng)
        parent = decaying[d.parent]
        parts.append(Stack(hadrons.shower[parent], d.pid, d.energy, fate_depth[parent], fate_x[parent], fate_y[parent], d.slope_x, d.slope_y))
    colliding = np.flatnonzero(interacts)
    if colliding.size:
        # one model call per collision; the bookkeeping is done once for all of them
        pid, energy, px, py, pz, collision = air.collide_many(hadrons.pid[colliding], hadrons.energy[colliding], rng)
        parent = colliding[collision]
        keep = (pz > 0) & (energy > threshold_gev[hadrons.shower[parent]])
        parent, pid, energy, px, py, pz = parent[keep], pid[keep], energy[keep], px[keep], py[keep], pz[keep]
        # small-angle composition of the parent direction and the secondary's angle
        parts.append(
            Stack(
                hadrons.shower[parent], pid.astype(np.int64), energy.astype(np.float64),
                fate_depth[parent], fate_x[parent], fate_y[parent],
                slope_x[parent] + px / pz, slope_y[parent] + py / pz,
            )
        )
    nxt = Stack.concat(parts)
    return nxt.select(nxt.energy > threshold_gev[nxt.shower])


_DECAYED_HERE = np.array(sorted({abs(p) for p in DECAYING_PIDS}))


def _map_xs(abs_pid: np.ndarray) -> np.ndarray:
    out = np.zeros_like(abs_pid)
    for pid, table_pid in XS_PROJECTILE.items():
        out[abs_pid == pid] = table_pid
    for pid, table_pid in TRACKED_XS.items():
        out[abs_pid == pid] = table_pid
    return out


def _muons_to_ground(
    muons: Stack,
    cos_zenith: np.ndarray,
    ground_depth: np.ndarray,
    ground_altitude_m: float,
    rng: np.random.Generator,
    geometry: CurvedAxes,
    field: tuple[np.ndarray, np.ndarray],
    table: ScatteringTable | None,
) -> GroundMuons:
    """Energy loss and decay in air from the production point to the ground, then the
    production point + direction projected onto the ground plane perpendicular to the axis,
    plus the geomagnetic deflection and (``table`` not None) multiple scattering on the way."""
    cos = cos_zenith[muons.shower]
    air_column = np.maximum(ground_depth[muons.shower] - muons.depth, 0.0)
    ratio = AIR_A_GEV_CM2_PER_G / AIR_B_CM2_PER_G
    energy = (muons.energy + ratio) * np.exp(-AIR_B_CM2_PER_G * air_column) - ratio
    path_m = np.maximum(geometry.height_of_slant_depth(muons.depth, muons.shower) - ground_altitude_m, 0.0) / cos
    mean_energy = 0.5 * (muons.energy + np.maximum(energy, MUON_MASS_GEV))
    decay_length = np.sqrt(np.maximum(mean_energy**2 - MUON_MASS_GEV**2, 1e-12)) / MUON_MASS_GEV * CTAU_M[13]
    survives = (energy > MUON_MASS_GEV) & (rng.random(len(muons)) < np.exp(-path_m / decay_length))
    keep = np.flatnonzero(survives)
    shower, path_m, momentum = muons.shower[keep], path_m[keep], mean_energy[keep]
    dx, dy, dslope_x, dslope_y = magnetic_deflection(charge_of(muons.pid[keep]), momentum, path_m, field[0][shower], field[1][shower])
    if table is not None:
        height = geometry.height_of_slant_depth(muons.depth[keep], shower)
        sx, sy, sslope_x, sslope_y = scatter_in_air(table, height, cos[keep], momentum, rng)
        dx, dy, dslope_x, dslope_y = dx + sx, dy + sy, dslope_x + sslope_x, dslope_y + sslope_y
    return GroundMuons(
        shower,
        energy[keep],
        muons.x[keep] + muons.slope_x[keep] * path_m + dx,
        muons.y[keep] + muons.slope_y[keep] * path_m + dy,
        muons.slope_x[keep] + dslope_x,
        muons.slope_y[keep] + dslope_y,
    )
