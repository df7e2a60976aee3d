"""Where the muons come from, ours against CORSIKA, for one decade of the PANAMA showers; prints JSON.

CORSIKA 7 writes the muon's parent into its particle description (id x 1000 + hadronic
generation x 10 + observation level): the generation of a muon from a charged-pion decay has
51 added, one from a charmed-hadron decay 30 (CORSIKA user's guide, particle description of
muons; the PANAMA reader, github.com/The-Ludwig/PANAMA ``read.py``, classifies muons the same
way); every other muon (generation < 30) comes from a kaon (K+-, K0L; hyperon and K0S
semileptonic decays are below 1e-3). Ours: the simulator is run with its decay step wrapped
so that every muon is labelled by the parent decayed there (pi+-, K+-, K0L); muons made
inside the model's collisions or by in-flight decays of the tracked unstable hadrons (charm)
are ``other``. A muon is counted if its energy at the observation level (continuous loss in
air, as the simulator's) is above the CORSIKA muon cut; decay in flight of > 1 TeV muons is
neglected here (< 0.1 %), so ``ours_total`` and the simulator's own count agree within that.

CORSIKA's "kaon" class is not kaons alone. Files written with EHISTORY (the shared PANAMA files)
put the muon's mother and grandmother records (negative descriptions) between its MUADDI record
and the muon; the mother is the hadron that left the collision (CORSIKA user's guide, EHISTORY
option). Within the generation < 30 class, a mother eta (CORSIKA id 17), omega (50) or rho0 (51)
means a direct mu+mu- decay (their pion decays would carry + 51), a mother muon (5, 6) a pair made
in the collision, a charmed mother a charm decay without the + 30; all of these are ``not_kaon``.
K+- (11, 12), K0L (10), K0S (16), K* (62-65: the muon of the K from its decay) and phi (49, whose
mu mu branch is 3e-4 of its K K one) are ``kaon``; ``ratio_kaon_mothers`` compares ours with those.
``kaon_by_grandmother`` splits these kaon muons by the grandmother record, the projectile of the
collision that made the kaon (or its K* / phi): nucleon, pion, kaon, other; ours by the projectile
of the collision that made the decaying kaon (kaons from in-flight decays of tracked hadrons: other).
``pion_by_grandmother`` does the same for the pion-decay muons (a pion from a kaon decay has the kaon
as grandmother in both; pions of K0S and hyperon decays in flight are ``other`` in ours, while
CORSIKA, which writes the K0S as mother, books them under the projectile).
``kaon_spectra`` / ``pion_spectra`` count the kaon-mother and pion-decay muons by their energy at the
observation level (log10 GeV) and by their production height (km: CORSIKA's MUADDI record, three
records before the muon; ours: the decay point) and by ``charge`` (mu+, mu-: CORSIKA ids 5, 6), to see
whether a deficit sits at some kaon energy (the balance of decay and interaction moves with energy) or
is flat (the number of kaons made), and whether it follows one kaon charge.
``kaon_collisions`` counts the muons of charged kaons by the collision that made the kaon, per
projectile class (nucleon, pion, kaon): by the projectile's energy (log10 GeV) and by the kaon's
share of it, x = E_kaon / E_projectile; CORSIKA's from the mother and grandmother records (mothers
K+- and the K* and phi whose K decayed: their x is the resonance's, which carries ~1.5 times the
energy of its K), ours from the wrapped collisions (every K+- that left SIBYLL's collision, whether
SIBYLL made it directly or from a resonance); x above 1 (float32 momenta) is counted in the last bin.
``kaon_paths`` asks whether the muon-making kaons decay and interact as CORSIKA's do: for the muons of
direct K+- mothers (CORSIKA: the mother record's height is where the kaon was made, the MUADDI
record's where it decayed; ours: the K+- that left a collision and decayed), the kaon's path to its
decay in units of its mean decay length (u = L m_K / (p c tau)), the air column on that path in
units of its kaon-air interaction length (v; ours, :meth:`AirInteractions.interaction_length`) and
its production depth (slant g/cm^2), as counts and as shapes ours / CORSIKA (each normalised to
its sum: ours also holds the kaons of K* and phi decays, which CORSIKA books under those mothers).
``corsika_kstar_mothers`` counts CORSIKA's kaon-mother and pion-decay muons whose mother is a K*(892)
by its charge (CORSIKA ids 62 K*0, 63 K*+, 64 K*-, 65 anti-K*0; ``particle``'s Corsika7ID), with the
ratio charged / neutral; ``sibyll_kstar_decays`` gives the fraction of K*+- and of K*0 decays that
leave a K+- in the decay table of the model we use (SIBYLL's, isospin: 1/3 and 2/3), and
``sibyll_kstar_made`` the K* above 1 TeV (lab) that the model makes in 1 000 proton-air collisions at
1e6 GeV: the four alike, so with these decays the K+- of K*+- are half those of K*0, and the pi+- of
K*+- as many as those of K*0. ``--kstar-charged-kaon F`` is a test: for this run only, K*+- decay to
K+- pi0 with probability F and to K0 pi+- with 1 - F (the table is restored afterwards).

Usage: python benchmarks/muon_origins.py --corsika ../shared/data/corsika/panama/DAT* \
           --decade 7 [--max-showers 60] [--repeat 2] [--seed 0]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vs_corsika  # noqa: E402  (the CORSIKA reader and primary ids of the comparison benchmark)

from mubundle.benchmark_cli import (  # noqa: E402
    NothingToReport, finite_float, input_file, integer, make_parser, positive_int, print_json, run, seed_int,
)


#: CORSIKA ids of the EHISTORY mothers of generation < 30 muons that are kaon-decay muons, and of
#: those that are not (docstring above): eta, omega, rho0 decaying to mu mu, muons of the collision
KAON_MOTHERS = (10, 11, 12, 16, 49, 62, 63, 64, 65)
MU_MU_MESON_MOTHERS = (17, 50, 51)
COLLISION_MUON_MOTHERS = (5, 6)
CHARMED_MOTHER_IDS = range(116, 200)
#: CORSIKA ids of a kaon-muon's grandmother (the projectile of the collision that made the kaon, or
#: of its K* / phi) by class: nucleons (n, p and antiparticles), charged pions, kaons (K0L, K+-, K0S)
GRANDMOTHER_CLASSES = {"nucleon": (13, 14, 15, 25), "pion": (8, 9), "kaon": (10, 11, 12, 16)}
#: the same classes in PDG ids, for the projectiles of our collisions
PROJECTILE_CLASSES = {"nucleon": (2212, 2112), "pion": (211,), "kaon": (321, 130, 310)}
#: bins of the muon spectra: log10 of the energy at the observation level (GeV), production height (km)
LOG10_ENERGY_EDGES = (3.0, 3.3, 3.7, 4.0, 4.5, 7.0)
HEIGHT_EDGES_KM = (0.0, 6.0, 9.0, 12.0, 16.0, 60.0)
#: bins of ``kaon_collisions``: log10 of the projectile's energy (GeV), the kaon's share x of it
LOG10_PROJECTILE_EDGES = (3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 9.0)
X_EDGES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: CORSIKA mothers of the charged-kaon muons: K+- and the phi and K* whose K decayed
CHARGED_KAON_MOTHERS = (11, 12, 49, 62, 63, 64, 65)
#: bins of ``kaon_paths``: decay path / mean decay length, air column / interaction length, production depth
PATH_EDGES = {"u": (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 100.0), "v": (0.0, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5, 100.0),
              "production_depth_gcm2": (0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 450.0, 2000.0)}
#: CORSIKA ids of the K*(892): K*0, K*+, K*-, anti-K*0 (PDG 313, 323, -323, -313)
KSTAR_IDS = {"K*0": 62, "K*+": 63, "K*-": 64, "anti-K*0": 65}
KSTAR_PDG = {"K*0": 313, "K*+": 323, "K*-": -323, "anti-K*0": -313}
#: our parent categories of the muons of each spectrum (K0L muons are kaon muons, as in CORSIKA's class)
SPECTRUM_PARENTS = {"kaon_spectra": ("kaon", "kaon_K0L"), "pion_spectra": ("pion",)}


@dataclass(frozen=True)
class ShowerHistory:
    """One CORSIKA shower's particle descriptions (P,) decoded once: the CORSIKA id (``kind``) and
    hadronic generation of every record, and the muons with EHISTORY mother and grandmother records
    (negative descriptions two and one records before them): ``kaon_muons`` (generation < 30, mother
    in :data:`KAON_MOTHERS`) and ``pion_muons`` (generation >= 50, any mother: a pion, or the rho /
    omega / eta / K0S it came from), indices into the records."""

    description: np.ndarray
    kind: np.ndarray
    generation: np.ndarray
    kaon_muons: np.ndarray
    pion_muons: np.ndarray

    @classmethod
    def of(cls, description: np.ndarray) -> "ShowerHistory":
        kind = np.trunc(np.abs(description) / 1000.0).astype(np.int64)
        generation = (np.abs(description) % 1000) // 10
        muon = (description > 0) & np.isin(kind, vs_corsika.MUON_IDS)
        with_history = np.flatnonzero(muon)
        with_history = with_history[with_history >= 2]
        with_history = with_history[(description[with_history - 2] < 0) & (description[with_history - 1] < 0)]
        kaon = with_history[(generation[with_history] < 30) & np.isin(kind[with_history - 2], KAON_MOTHERS)]
        return cls(description, kind, generation, kaon, with_history[generation[with_history] >= 50])

    def muons(self, pion_muons: bool = False) -> np.ndarray:
        """Indices of the pion-decay muons if ``pion_muons``, else of the kaon-mother muons."""
        return self.pion_muons if pion_muons else self.kaon_muons


def kaon_class_by_mother(history: ShowerHistory) -> dict[str, int]:
    """The generation < 30 muons of one shower counted by the CORSIKA id of their EHISTORY mother
    (two records before the muon): kaon, mu mu meson, collision muon, charm without + 30, other, and
    ``no_mother_record`` (files without EHISTORY)."""
    description, kind = history.description, history.kind
    muons = np.flatnonzero((description > 0) & np.isin(kind, vs_corsika.MUON_IDS) & (history.generation < 30))
    with_mother = muons[muons >= 2]
    with_mother = with_mother[description[with_mother - 2] < 0]
    mother = kind[with_mother - 2]
    counts = {
        "kaon": int(np.isin(mother, KAON_MOTHERS).sum()),
        "mu_mu_meson": int(np.isin(mother, MU_MU_MESON_MOTHERS).sum()),
        "collision_muon": int(np.isin(mother, COLLISION_MUON_MOTHERS).sum()),
        "charm_without_30": int(np.isin(mother, CHARMED_MOTHER_IDS).sum()),
    }
    counts["other"] = int(mother.size) - sum(counts.values())
    counts["no_mother_record"] = int(muons.size - with_mother.size)
    return counts


def muons_by_grandmother(history: ShowerHistory, pion_muons: bool = False) -> dict[str, int]:
    """One shower's kaon-mother (or pion-decay) muons of ``history`` counted by the class of their
    EHISTORY grandmother (the record just before the muon): :data:`GRANDMOTHER_CLASSES` and ``other``."""
    muons = history.muons(pion_muons)
    grandmother = history.kind[muons - 1]
    counts = {name: int(np.isin(grandmother, ids).sum()) for name, ids in GRANDMOTHER_CLASSES.items()}
    counts["other"] = int(muons.size) - sum(counts.values())
    return counts


def muon_spectra(particles: np.ndarray, history: ShowerHistory, pion_muons: bool = False) -> dict[str, list[int]]:
    """One shower's kaon-mother (or pion-decay) muons counted by ``log10_energy``
    (:data:`LOG10_ENERGY_EDGES`, energy from the momentum, GeV), ``height_km`` (:data:`HEIGHT_EDGES_KM`, the
    MUADDI record's last column in cm, three records before the muon; muons without it are left out of
    the heights) and ``charge`` ([mu+, mu-]). ``particles``: CORSIKA particle records (P,), ``history``
    their :class:`ShowerHistory`."""
    muons, kind = history.muons(pion_muons), history.kind
    p2 = sum(particles[axis][muons].astype(np.float64) ** 2 for axis in ("px", "py", "pz"))
    log10_energy = 0.5 * np.log10(p2 + vs_corsika.MUON_MASS_GEV**2)
    with_muaddi = muons[muons >= 3]
    with_muaddi = with_muaddi[np.isin(kind[with_muaddi - 3], (75, 76))]
    height_km = particles["t"][with_muaddi - 3].astype(np.float64) / 1e5
    return {"log10_energy": np.histogram(log10_energy, LOG10_ENERGY_EDGES)[0].tolist(),
            "height_km": np.histogram(height_km, HEIGHT_EDGES_KM)[0].tolist(),
            "charge": [int((kind[muons] == 5).sum()), int((kind[muons] == 6).sum())]}


def collision_histograms(classes: list[str], log10_projectile_energy: np.ndarray, x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Kaon muons (one per element of the (M,) arrays) counted per projectile class (of
    :data:`PROJECTILE_CLASSES`; ``other`` is left out) by log10 of the projectile's energy and by x
    (clipped to 1): {class: {"log10_projectile_energy": counts, "x": counts}}."""
    classes = np.asarray(classes)
    return {name: {"log10_projectile_energy": np.histogram(log10_projectile_energy[classes == name], LOG10_PROJECTILE_EDGES)[0],
                   "x": np.histogram(np.minimum(x[classes == name], 1.0), X_EDGES)[0]}
            for name in PROJECTILE_CLASSES}


def kaon_collisions(particles: np.ndarray, history: ShowerHistory) -> dict[str, dict[str, list[int]]]:
    """One shower's charged-kaon muons (mothers :data:`CHARGED_KAON_MOTHERS`) by their grandmother's
    class (:data:`GRANDMOTHER_CLASSES`), its energy and the mother's share of it
    (:func:`collision_histograms`). ``particles``: CORSIKA particle records (P,), ``history`` theirs."""
    muons, kind = history.kaon_muons, history.kind
    muons = muons[np.isin(kind[muons - 2], CHARGED_KAON_MOTHERS)]
    momentum = {offset: np.sqrt(sum(particles[axis][muons - offset].astype(np.float64) ** 2 for axis in ("px", "py", "pz")))
                for offset in (1, 2)}
    grandmother = kind[muons - 1]
    classes = [next((name for name, ids in GRANDMOTHER_CLASSES.items() if g in ids), "other") for g in grandmother.tolist()]
    counts = collision_histograms(classes, np.log10(momentum[1]), momentum[2] / momentum[1])
    return {name: {key: v.tolist() for key, v in hist.items()} for name, hist in counts.items()}


def kaon_paths(particles: np.ndarray, history: ShowerHistory) -> np.ndarray:
    """One shower's muons of direct K+- mothers with a MUADDI record: (M, 4) [kaon energy GeV, path
    to the decay / mean decay length u, air column on it g/cm^2, production depth g/cm^2] (vertical
    showers: the columns scaled by the kaon's p / p_z). ``particles``: CORSIKA records (P,), ``history`` theirs."""
    from mubundle.sim.atmosphere import vertical_depth
    from mubundle.sim.decays import CTAU_M, MASS_GEV

    muons, kind = history.kaon_muons, history.kind
    muons = muons[np.isin(kind[muons - 2], (11, 12)) & (muons >= 3)]
    muons = muons[np.isin(kind[muons - 3], (75, 76))]
    mother = particles[muons - 2]
    momentum = np.sqrt(sum(mother[axis].astype(np.float64) ** 2 for axis in ("px", "py", "pz")))
    slant = momentum / mother["pz"].astype(np.float64)
    made_m, decayed_m = mother["t"].astype(np.float64) / 100.0, particles["t"][muons - 3].astype(np.float64) / 100.0
    u = (made_m - decayed_m) * slant / (momentum / MASS_GEV[321] * CTAU_M[321])
    made_depth = vertical_depth(made_m) * slant
    column = vertical_depth(decayed_m) * slant - made_depth
    return np.column_stack([np.sqrt(momentum**2 + MASS_GEV[321] ** 2), u, column, made_depth])


def path_histograms(paths: np.ndarray, interaction_model: str) -> dict[str, np.ndarray]:
    """:func:`kaon_paths` rows (M, 4) counted in :data:`PATH_EDGES` (v with ``interaction_model``'s
    kaon-air interaction length at each kaon's energy)."""
    from mubundle.sim.interactions import get_model

    energy, u, column, made_depth = paths.T
    length = get_model(interaction_model).interaction_length(np.full(energy.size, 321), energy) if energy.size else energy
    values = {"u": u, "v": column / length, "production_depth_gcm2": made_depth}
    return {key: np.histogram(values[key], edges)[0] for key, edges in PATH_EDGES.items()}


def kstar_mothers(history: ShowerHistory) -> dict[str, list[int]]:
    """One shower's kaon-mother and pion-decay muons whose mother is a K*(892), counted by
    :data:`KSTAR_IDS` (in that order)."""
    out = {}
    for kind, pion_muons in (("kaon_muons", False), ("pion_muons", True)):
        mother = history.kind[history.muons(pion_muons) - 2]
        out[kind] = [int((mother == code).sum()) for code in KSTAR_IDS.values()]
    return out


def _kstar_channels(lib, pdg: int) -> tuple[int, list[tuple[float, tuple[int, ...]]]]:
    """(first index of ``pdg``'s channels in SIBYLL's decay table, [(branching ratio, SIBYLL codes of
    the products)] of its channels), from the common block S_CSYDEC (cumulative CBR, KDEC rows of 6:
    number of products, matrix-element flag, products)."""
    table = lib.s_csydec
    first = int(table.idb[abs(int(lib.isib_pdg2pid(pdg))) - 1])
    channels, cumulative, k = [], 0.0, first
    while cumulative < 1.0 - 1e-6:
        row = table.kdec[6 * (k - 1):6 * k]
        channels.append((float(table.cbr[k - 1]) - cumulative, tuple(int(c) for c in row[2:2 + int(row[0])])))
        cumulative = float(table.cbr[k - 1])
        k += 1
    return first, channels


def _charged_kaon_codes(lib) -> set[int]:
    """SIBYLL's codes of K+ and K- (|code|)."""
    return {abs(int(lib.isib_pdg2pid(pdg))) for pdg in (321, -321)}


def sibyll_kstar_decays(lib) -> dict[str, float]:
    """Fraction of the decays of each K*(892) that leave a K+- (SIBYLL's decay table, ``lib``: the
    model's library), by :data:`KSTAR_PDG` name."""
    charged = _charged_kaon_codes(lib)
    return {name: round(sum(br for br, products in _kstar_channels(lib, pdg)[1] if charged & {abs(c) for c in products}), 4)
            for name, pdg in KSTAR_PDG.items()}


def sibyll_kstar_made(air, collisions: int = 1000, energy_gev: float = 1e6, seed: int = 0) -> dict[str, int]:
    """K*(892) above 1 TeV (lab) made in ``collisions`` proton-N14 collisions at ``energy_gev`` by the
    model of ``air`` (:class:`AirInteractions`, SIBYLL 2.3; reseeded with ``seed``), by :data:`KSTAR_PDG`
    name: the decayed records (status 2) of each collision's HEPEVT list, boosted to the lab as the
    cascade boosts its secondaries (``AirInteractions.collide_raw``)."""
    air.reseed(seed)
    made = dict.fromkeys(KSTAR_PDG, 0)
    for _ in range(collisions):
        pid, status, momenta, gamma, beta_gamma = air._collide_sibyll(2212, energy_gev, "N14")
        above = (status == 2) & (gamma * momenta[:, 3] + beta_gamma * momenta[:, 2] > 1000.0)
        for name, pdg in KSTAR_PDG.items():
            made[name] += int((above & (pid == pdg)).sum())
    return made


@contextmanager
def kstar_charged_kaon(lib, fraction: float | None) -> Iterator[None]:
    """Within the block, K*+- decay to K+- pi0 with probability ``fraction`` and to K0 pi+- with the
    rest (SIBYLL's table: 1/3 and 2/3); the table is restored on exit. None: unchanged."""
    if fraction is None:
        yield
        return
    if not 0.0 <= fraction <= 1.0:
        raise SystemExit(f"muon_origins: --kstar-charged-kaon must lie in [0, 1], got {fraction}")
    charged = _charged_kaon_codes(lib)
    saved = []
    for pdg in (323, -323):
        first, channels = _kstar_channels(lib, pdg)
        kinds = [bool(charged & {abs(c) for c in products}) for _, products in channels]
        if len(channels) != 2 or kinds != [False, True]:
            raise SystemExit(f"muon_origins: unexpected SIBYLL decay table for {pdg}: {channels}")
        saved.append((first, float(lib.s_csydec.cbr[first - 1])))
        lib.s_csydec.cbr[first - 1] = 1.0 - fraction  # cumulative: K0 pi+- first, then K+- pi0
    try:
        yield
    finally:
        for first, value in saved:
            lib.s_csydec.cbr[first - 1] = value


def projectile_class(pid: int) -> str:
    """The :data:`PROJECTILE_CLASSES` name of a PDG id (``other`` for anything else, 0 included)."""
    return next((name for name, ids in PROJECTILE_CLASSES.items() if abs(pid) in ids), "other")


def shower_origins(particles: np.ndarray) -> dict:
    """One CORSIKA shower's muons (particle records (P,)) by origin: {category: muon count},
    ``kaon_by_mother`` (:func:`kaon_class_by_mother`), the splits by grandmother, the spectra,
    ``kaon_collisions`` and the rows of :func:`kaon_paths`."""
    history = ShowerHistory.of(particles["particle_description"])
    description = history.description
    g = history.generation[(description > 0) & np.isin(history.kind, vs_corsika.MUON_IDS)]
    return {"pion": int((g >= 50).sum()), "charm": int(((g >= 30) & (g < 50)).sum()),
            "kaon": int((g < 30).sum()), "kaon_by_mother": kaon_class_by_mother(history),
            "kaon_by_grandmother": muons_by_grandmother(history),
            "pion_by_grandmother": muons_by_grandmother(history, pion_muons=True),
            "kaon_spectra": muon_spectra(particles, history),
            "pion_spectra": muon_spectra(particles, history, pion_muons=True),
            "kaon_collisions": kaon_collisions(particles, history), "kaon_paths": kaon_paths(particles, history),
            "kstar_mothers": kstar_mothers(history)}


def our_origins(energy: np.ndarray, mass: np.ndarray, cut_gev: float, level_m: float, repeat: int, seed: int) -> dict:
    """Mean muon counts per run by parent, from the simulator with its decay step wrapped, and the
    kaon-decay muons by the projectile of the collision that made the kaon (collisions wrapped;
    kaons are matched to their collision by their energy, as muons to their decay); the muons of
    K+- that left a collision by that collision (``kaon_collisions``) and by the kaon's path
    (``kaon_paths``: the cascade step wrapped to know where each kaon was made)."""
    import mubundle.sim.cascade as cascade
    from mubundle.sim import interactions
    from mubundle.sim.config import SimConfig
    from mubundle.sim.decays import CTAU_M, MASS_GEV
    from mubundle.sim.run import simulate_primaries

    parent_of: dict[float, int] = {}
    made_by: dict[float, tuple[int, float]] = {}  # kaons and charged pions: energy -> projectile or decayed parent (pid, GeV)
    grandmother_of: dict[float, str] = {}
    counts: dict[str, float] = {"pion": 0.0, "kaon": 0.0, "kaon_K0L": 0.0, "other": 0.0}
    by_grandmother: dict[str, float] = {name: 0.0 for name in (*PROJECTILE_CLASSES, "other")}
    pion_by_grandmother: dict[str, float] = dict(by_grandmother)
    pion_grandmother_of: dict[float, str] = {}
    collision_of: dict[float, tuple[str, float, float]] = {}  # muons of K+-: (projectile class, log10 E_proj, x)
    collisions: list[tuple[str, float, float]] = []
    made_at: dict[float, float] = {}  # K+- energy -> slant depth where it was made (g/cm^2)
    kaon_of: dict[float, tuple[float, float]] = {}  # muons of K+- that left a collision: (kaon GeV, depth made)
    paths: list[tuple[float, float, float, float]] = []  # kaon GeV, u, column g/cm^2, depth made
    spectra = {kind: {"log10_energy": np.zeros(len(LOG10_ENERGY_EDGES) - 1), "height_km": np.zeros(len(HEIGHT_EDGES_KM) - 1),
                      "charge": np.zeros(2)}
               for kind in SPECTRUM_PARENTS}
    total = 0
    original_decay, original_to_ground = cascade.decay, cascade._muons_to_ground
    original_collide = interactions.AirInteractions.collide_many
    original_step = cascade._step
    label = {211: "pion", 321: "kaon", 130: "kaon_K0L"}

    def labelled_collide(self, pid, energy_gev, rng):
        result = original_collide(self, pid, energy_gev, rng)
        secondary_pid, secondary_energy, *_, collision = result
        meson = np.isin(np.abs(secondary_pid), (321, 130, 211))
        made_by.update(zip(secondary_energy[meson].astype(np.float64).tolist(),
                           zip(pid[collision[meson]].tolist(), np.asarray(energy_gev, np.float64)[collision[meson]].tolist())))
        return result

    def located_step(hadrons, *args):
        kaons = np.abs(hadrons.pid) == 321
        made_at.update(zip(hadrons.energy[kaons].tolist(), hadrons.depth[kaons].tolist()))
        return original_step(hadrons, *args)

    def labelled_decay(pid, energy_gev, slope_x, slope_y, rng):
        daughters = original_decay(pid, energy_gev, slope_x, slope_y, rng)
        muon = np.abs(daughters.pid) == 13
        parents = daughters.parent[muon]
        parent_of.update(zip(daughters.energy[muon].tolist(), np.abs(pid[parents]).tolist()))
        for muon_energy, parent_pid, parent_energy in zip(daughters.energy[muon].tolist(), pid[parents].tolist(),
                                                          np.asarray(energy_gev)[parents].tolist()):
            projectile, projectile_energy = made_by.get(parent_energy, (0, np.nan))
            if abs(parent_pid) in (321, 130):
                grandmother_of[muon_energy] = projectile_class(projectile)
                if abs(parent_pid) == 321 and projectile:
                    collision_of[muon_energy] = (projectile_class(projectile), np.log10(projectile_energy),
                                                 parent_energy / projectile_energy)
                    kaon_of[muon_energy] = (parent_energy, made_at[parent_energy])
            elif abs(parent_pid) == 211:
                pion_grandmother_of[muon_energy] = projectile_class(projectile)
        pions = np.abs(daughters.pid) == 211  # pions of kaon decays: their grandmother is the kaon
        parent = daughters.parent[pions]
        made_by.update(zip(daughters.energy[pions].astype(np.float64).tolist(),
                           zip(pid[parent].tolist(), np.asarray(energy_gev, np.float64)[parent].tolist())))
        return daughters

    def counted_to_ground(muons, cos_zenith, ground_depth, ground_altitude_m, rng, geometry, *args):
        column = np.maximum(ground_depth[muons.shower] - muons.depth, 0.0)
        ratio = cascade.AIR_A_GEV_CM2_PER_G / cascade.AIR_B_CM2_PER_G
        at_ground = (muons.energy + ratio) * np.exp(-cascade.AIR_B_CM2_PER_G * column) - ratio
        counted = at_ground > cut_gev
        categories = []
        for e in muons.energy[counted].tolist():
            categories.append(label.get(parent_of.get(e, 0), "other"))
            counts[categories[-1]] += 1.0 / repeat
            if e in grandmother_of:
                by_grandmother[grandmother_of[e]] += 1.0 / repeat
            if e in pion_grandmother_of:
                pion_by_grandmother[pion_grandmother_of[e]] += 1.0 / repeat
            if e in collision_of:
                collisions.append(collision_of[e])
        counted_energy = muons.energy[counted].tolist()
        of_kaon = np.array([e in kaon_of for e in counted_energy], dtype=bool)
        if of_kaon.any():  # the muons of K+- that left a collision, all at once
            kaon_energy, made = np.array([kaon_of[e] for e, hit in zip(counted_energy, of_kaon) if hit]).T
            decayed, shower = muons.depth[counted][of_kaon], muons.shower[counted][of_kaon]
            made_m, decayed_m = (geometry.height_of_slant_depth(depth, shower) for depth in (made, decayed))
            mean_decay_m = np.sqrt(kaon_energy**2 - MASS_GEV[321] ** 2) / MASS_GEV[321] * CTAU_M[321]
            paths.extend(zip(kaon_energy, (made_m - decayed_m) / cos_zenith[shower] / mean_decay_m, decayed - made, made))
        height_km = geometry.height_of_slant_depth(muons.depth[counted], muons.shower[counted]) / 1000.0
        pid, energy_at_level = muons.pid[counted], at_ground[counted]
        for kind, parents in SPECTRUM_PARENTS.items():
            chosen = np.isin(categories, parents)
            spectrum = spectra[kind]
            spectrum["log10_energy"] += np.histogram(np.log10(energy_at_level[chosen]), LOG10_ENERGY_EDGES)[0] / repeat
            spectrum["height_km"] += np.histogram(height_km[chosen], HEIGHT_EDGES_KM)[0] / repeat
            spectrum["charge"] += np.array([(pid[chosen] == -13).sum(), (pid[chosen] == 13).sum()]) / repeat
        return original_to_ground(muons, cos_zenith, ground_depth, ground_altitude_m, rng, geometry, *args)

    config = replace(SimConfig(), surface_altitude_m=level_m, min_energy=cut_gev)
    cascade.decay, cascade._muons_to_ground, cascade._step = labelled_decay, counted_to_ground, located_step
    interactions.AirInteractions.collide_many = labelled_collide
    try:
        for k in range(repeat):
            for per_run in (parent_of, made_by, grandmother_of, pion_grandmother_of, collision_of, made_at, kaon_of):
                per_run.clear()
            batch = simulate_primaries(energy, np.zeros(energy.size), mass, np.zeros(energy.size), seed=seed + k, config=config)
            total += int(batch.counts.sum())
    finally:
        cascade.decay, cascade._muons_to_ground, cascade._step = original_decay, original_to_ground, original_step
        interactions.AirInteractions.collide_many = original_collide
    classes, log10_projectile_energy, x = (list(column) for column in zip(*collisions)) if collisions else ([], [], [])
    by_collision = collision_histograms(classes, np.array(log10_projectile_energy), np.array(x))
    return {"by_parent": {k: round(v, 2) for k, v in counts.items()}, "total": total / repeat,
            "kaon_collisions": {name: {key: np.round(v / repeat, 2).tolist() for key, v in hist.items()}
                                for name, hist in by_collision.items()},
            "kaon_paths": {key: np.round(v / repeat, 2).tolist()
                           for key, v in path_histograms(np.array(paths).reshape(-1, 4), config.interaction_model).items()},
            "kaon_by_grandmother": {k: round(v, 2) for k, v in by_grandmother.items()},
            "pion_by_grandmother": {k: round(v, 2) for k, v in pion_by_grandmother.items()},
            **{kind: {key: np.round(v, 2).tolist() for key, v in spectrum.items()} for kind, spectrum in spectra.items()}}


def main(argv: list[str] | None = None) -> None:
    from mubundle import __version__

    parser = make_parser(__doc__)
    parser.add_argument("--corsika", nargs="+", required=True, type=input_file,
                        help="CORSIKA particle files (vertical showers, MUADDI)")
    parser.add_argument("--decade", type=integer(0, 11), default=7, help="log10(E0 / GeV) of the decade's lower edge")
    parser.add_argument("--max-showers", type=positive_int, default=None, help="first N showers of the decade only (default: all)")
    parser.add_argument("--repeat", type=positive_int, default=2, help="simulations per CORSIKA primary")
    parser.add_argument("--seed", type=seed_int, default=0, help="first seed of the simulations")
    parser.add_argument("--kstar-charged-kaon", type=finite_float(0.0, 1.0), default=None, metavar="F",
                        help="test only: K*+- -> K+- pi0 with probability F in this run (SIBYLL: 1/3)")
    args = parser.parse_args(argv)
    # also checks the showers are vertical and share a level and cut
    data = vs_corsika.read_corsika(args.corsika, per_shower=shower_origins)
    energy, primary, origins = data["energy"], data["primary"], data["per_shower"]
    chosen = np.flatnonzero((energy >= 10.0**args.decade) & (energy < 10.0 ** (args.decade + 1)))[: args.max_showers]
    if chosen.size == 0:
        raise NothingToReport(f"no CORSIKA shower in decade 1e{args.decade} of {' '.join(args.corsika)}")
    theirs = {key: sum(origins[i][key] for i in chosen) for key in ("pion", "kaon", "charm")}
    by_mother = {key: sum(origins[i]["kaon_by_mother"][key] for i in chosen) for key in origins[0]["kaon_by_mother"]}
    by_grandmother = {kind: {key: sum(origins[i][kind][key] for i in chosen) for key in origins[0][kind]}
                      for kind in ("kaon_by_grandmother", "pion_by_grandmother")}
    spectra = {kind: {key: np.sum([origins[i][kind][key] for i in chosen], axis=0).tolist() for key in origins[0][kind]}
               for kind in SPECTRUM_PARENTS}
    collisions = {name: {key: np.sum([origins[i]["kaon_collisions"][name][key] for i in chosen], axis=0).tolist()
                         for key in origins[0]["kaon_collisions"][name]} for name in PROJECTILE_CLASSES}
    kstar = {kind: np.sum([origins[i]["kstar_mothers"][kind] for i in chosen], axis=0).tolist()
             for kind in ("kaon_muons", "pion_muons")}
    from mubundle.sim.config import SimConfig
    from mubundle.sim.interactions import get_model

    their_paths = path_histograms(np.concatenate([origins[i]["kaon_paths"] for i in chosen]), SimConfig().interaction_model)
    mass = np.array([vs_corsika.mass_of_corsika_id(p) for p in primary[chosen]])
    air = get_model(SimConfig().interaction_model)
    lib = air.model._lib
    start = time.process_time()
    with kstar_charged_kaon(lib, args.kstar_charged_kaon):
        kstar_decays = sibyll_kstar_decays(lib)
        ours = our_origins(energy[chosen], mass, data["cut_gev"], data["level_m"], args.repeat, args.seed)
    cpu = time.process_time() - start
    by = ours["by_parent"]
    print_json({
        "benchmark": "muon_origins", "mubundle_version": __version__, "decade": f"1e{args.decade}-1e{args.decade + 1}", "showers": int(chosen.size),
        "repeat": args.repeat, "corsika": theirs, "ours": by, "ours_total": ours["total"],
        "ratio_pion": round(by["pion"] / theirs["pion"], 4) if theirs["pion"] else None,
        "ratio_kaon": round((by["kaon"] + by["kaon_K0L"]) / theirs["kaon"], 4) if theirs["kaon"] else None,
        "corsika_kaon_class_by_mother": by_mother,
        "ratio_kaon_mothers": (round((by["kaon"] + by["kaon_K0L"]) / by_mother["kaon"], 4)
                               if by_mother["kaon"] and not by_mother["no_mother_record"] else None),
        "ratio_other_vs_charm": round(by["other"] / theirs["charm"], 4) if theirs["charm"] else None,
        **{kind: {"corsika": by_grandmother[kind], "ours": ours[kind],
                  "ratio": {k: round(ours[kind][k] / v, 4) if v else None for k, v in by_grandmother[kind].items()}}
           for kind in ("kaon_by_grandmother", "pion_by_grandmother")},
        "spectra_edges": {"log10_energy": LOG10_ENERGY_EDGES, "height_km": HEIGHT_EDGES_KM},
        **{kind: {key: {"corsika": spectra[kind][key], "ours": ours[kind][key],
                        "ratio": [round(o / c, 3) if c else None for o, c in zip(ours[kind][key], spectra[kind][key])]}
                  for key in spectra[kind]} for kind in SPECTRUM_PARENTS},
        "kaon_collisions_edges": {"log10_projectile_energy": LOG10_PROJECTILE_EDGES, "x": X_EDGES},
        "kaon_collisions": {name: {key: {"corsika": collisions[name][key], "ours": ours["kaon_collisions"][name][key],
                                         "ratio": [round(o / c, 3) if c else None
                                                   for o, c in zip(ours["kaon_collisions"][name][key], collisions[name][key])]}
                                   for key in collisions[name]} for name in PROJECTILE_CLASSES},
        "kaon_paths_edges": PATH_EDGES,
        "kaon_paths": {key: {"corsika": their_paths[key].tolist(), "ours": ours["kaon_paths"][key],
                             "shape_ratio": [round(o * sum(their_paths[key]) / (c * sum(ours["kaon_paths"][key])), 3) if c else None
                                             for o, c in zip(ours["kaon_paths"][key], their_paths[key])]}
                       for key in PATH_EDGES},
        "corsika_kstar_mothers": {kind: {**dict(zip(KSTAR_IDS, counts)),
                                         "charged_over_neutral": round((counts[1] + counts[2]) / (counts[0] + counts[3]), 3)
                                         if counts[0] + counts[3] else None}
                                  for kind, counts in kstar.items()},
        "sibyll_kstar_decays": kstar_decays,
        "sibyll_kstar_made": sibyll_kstar_made(air),
        "cpu_s": round(cpu, 1),
    }, indent=None)


if __name__ == "__main__":
    run(main)
