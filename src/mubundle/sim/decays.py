"""Vectorised decays of the muon parents (pi+-, K+-, K0L) with PDG kinematics.

Masses and lifetimes come from the ``particle`` package (PDG data). ``particle`` carries no
branching ratios, so the channels below are the PDG 2022 values (R.L. Workman et al.,
PTEP 2022, 083C01), listing every channel above 1 %; the remainder of each table is
assigned to the largest channel. Two-body decays are isotropic in the rest frame;
three-body decays follow uniform (Dalitz) phase space, i.e. the V-A matrix element of
K_mu3 / K_e3 is neglected (a few-percent effect on the muon spectrum of a ~3 % channel).
Only daughters that matter for muons (mu+-, pi+-) are returned; neutrinos, electrons and
pi0 are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from particle import Particle

MUON_PIDS = (13, -13)
#: parents decayed here; everything else the cascade follows is stable or interacts
DECAYING_PIDS = (211, -211, 321, -321, 130)


def _mass_gev(pid: int) -> float:
    return Particle.from_pdgid(pid).mass / 1000.0


def _ctau_m(pid: int) -> float:
    return Particle.from_pdgid(pid).ctau / 1000.0


MASS_GEV = {pid: _mass_gev(pid) for pid in (211, 321, 130, 111, 13, 11)}
CTAU_M = {pid: _ctau_m(pid) for pid in (211, 321, 130, 13)}
MUON_MASS_GEV = MASS_GEV[13]

#: Channels per |parent pid|: (branching ratio, daughters with sign relative to a positive
#: parent; 12/14 are neutrinos, 11 electrons, 111 pi0). K0L daughters get random charge
#: assignment of the charged pair (pi+ e- nu / pi- e+ nu equally likely).
CHANNELS: dict[int, tuple[tuple[float, tuple[int, ...]], ...]] = {
    211: ((1.0, (-13, 14)),),  # pi+ -> mu+ nu (99.988 %; e nu is 1.2e-4)
    321: (
        (0.6356, (-13, 14)),  # K+ -> mu+ nu
        (0.2067, (211, 111)),  # K+ -> pi+ pi0
        (0.05583, (211, 211, -211)),  # K+ -> pi+ pi+ pi-
        (0.0507, (111, -11, 12)),  # K+ -> pi0 e+ nu (Ke3)
        (0.03352, (111, -13, 14)),  # K+ -> pi0 mu+ nu (Kmu3)
        (0.01760, (211, 111, 111)),  # K+ -> pi+ pi0 pi0
    ),
    130: (
        (0.4055, (211, 11, 12)),  # K0L -> pi+- e-+ nu (Ke3)
        (0.2704, (211, 13, 14)),  # K0L -> pi+- mu-+ nu (Kmu3)
        (0.1952, (111, 111, 111)),  # K0L -> 3 pi0
        (0.1254, (211, -211, 111)),  # K0L -> pi+ pi- pi0
    ),
}
_NEUTRINOS = {12, 14}


def _daughter_mass(pid: int) -> float:
    return 0.0 if abs(pid) in _NEUTRINOS else MASS_GEV[abs(pid)]


@dataclass(frozen=True)
class Daughters:
    """Decay products that the cascade keeps (flat arrays of length K).

    ``parent``: (K,) index into the decayed parents; ``pid``: (K,) PDG id;
    ``energy``: (K,) lab energy GeV; ``slope_x``, ``slope_y``: (K,) direction px/pz, py/pz.
    """

    parent: np.ndarray
    pid: np.ndarray
    energy: np.ndarray
    slope_x: np.ndarray
    slope_y: np.ndarray

    @classmethod
    def concat(cls, parts: list["Daughters"]) -> "Daughters":
        if not parts:
            empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0)
            return cls(empty_i, empty_i, empty_f, empty_f, empty_f)
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("parent", "pid", "energy", "slope_x", "slope_y")))


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) unit vectors, isotropic."""
    cos_t = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def _two_momentum(m_parent: float, m1: float, m2: float) -> float:
    """Rest-frame momentum (GeV) of a two-body decay."""
    return np.sqrt((m_parent**2 - (m1 + m2) ** 2) * (m_parent**2 - (m1 - m2) ** 2)) / (2.0 * m_parent)


def rest_frame_two_body(n: int, m_parent: float, masses: tuple[float, float], rng: np.random.Generator) -> list[np.ndarray]:
    """Rest-frame four-momenta [(n, 4) (E, px, py, pz)] of the two daughters, isotropic."""
    p = _two_momentum(m_parent, *masses)
    direction = _isotropic(n, rng)
    out = []
    for sign, mass in zip((1.0, -1.0), masses):
        energy = np.full(n, np.sqrt(p * p + mass * mass))
        out.append(np.column_stack([energy, sign * p * direction]))
    return out


def rest_frame_three_body(n: int, m_parent: float, masses: tuple[float, float, float], rng: np.random.Generator) -> list[np.ndarray]:
    """Rest-frame four-momenta of three daughters, uniform in the Dalitz plot (phase space)."""
    m1, m2, m3 = masses
    m12_sq = np.empty(0)
    m23_sq = np.empty(0)
    lo12, hi12 = (m1 + m2) ** 2, (m_parent - m3) ** 2
    lo23, hi23 = (m2 + m3) ** 2, (m_parent - m1) ** 2
    while m12_sq.size < n:  # rejection sampling of the Dalitz region
        trial = max(2 * (n - m12_sq.size), 16)
        s12 = rng.uniform(lo12, hi12, trial)
        s23 = rng.uniform(lo23, hi23, trial)
        # PDG kinematics review, eq. for the m23^2 boundary at fixed m12^2
        e2 = (s12 - m1**2 + m2**2) / (2.0 * np.sqrt(s12))
        e3 = (m_parent**2 - s12 - m3**2) / (2.0 * np.sqrt(s12))
        p2 = np.sqrt(np.maximum(e2**2 - m2**2, 0.0))
        p3 = np.sqrt(np.maximum(e3**2 - m3**2, 0.0))
        upper = (e2 + e3) ** 2 - (p2 - p3) ** 2
        lower = (e2 + e3) ** 2 - (p2 + p3) ** 2
        inside = (s23 >= lower) & (s23 <= upper)
        m12_sq = np.concatenate([m12_sq, s12[inside]])
        m23_sq = np.concatenate([m23_sq, s23[inside]])
    m12_sq, m23_sq = m12_sq[:n], m23_sq[:n]
    m13_sq = m_parent**2 + m1**2 + m2**2 + m3**2 - m12_sq - m23_sq
    energy1 = (m_parent**2 + m1**2 - m23_sq) / (2.0 * m_parent)
    energy3 = (m_parent**2 + m3**2 - m12_sq) / (2.0 * m_parent)
    energy2 = m_parent - energy1 - energy3
    mom1 = np.sqrt(np.maximum(energy1**2 - m1**2, 0.0))
    mom3 = np.sqrt(np.maximum(energy3**2 - m3**2, 0.0))
    # angle between daughters 1 and 3 from m13^2 = m1^2 + m3^2 + 2 (E1 E3 - p1 p3 cos)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos13 = (m1**2 + m3**2 + 2.0 * energy1 * energy3 - m13_sq) / (2.0 * mom1 * mom3)
    # 0/0 only for a daughter at rest (on the Dalitz boundary, measure zero): any angle is
    # then exact, so take 1; the clip removes float round-off just outside [-1, 1].
    cos13 = np.clip(np.where(np.isfinite(cos13), cos13, 1.0), -1.0, 1.0)
    axis1 = _isotropic(n, rng)
    # a unit vector perpendicular to axis1, rotated by a random azimuth
    helper = np.where(np.abs(axis1[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    perp1 = np.cross(axis1, helper)
    perp1 /= np.linalg.norm(perp1, axis=1, keepdims=True)
    perp2 = np.cross(axis1, perp1)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)[:, None]
    sin13 = np.sqrt(1.0 - cos13**2)[:, None]
    axis3 = cos13[:, None] * axis1 + sin13 * (np.cos(phi) * perp1 + np.sin(phi) * perp2)
    p1_vec = mom1[:, None] * axis1
    p3_vec = mom3[:, None] * axis3
    p2_vec = -p1_vec - p3_vec
    return [np.column_stack([e, v]) for e, v in ((energy1, p1_vec), (energy2, p2_vec), (energy3, p3_vec))]


def boost_to_lab(rest: np.ndarray, energy: np.ndarray, mass: float, slope_x: np.ndarray, slope_y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boost rest-frame four-momenta (n, 4) to the lab for parents of ``energy`` (GeV) moving
    along direction (slope_x, slope_y, 1). Returns (lab energy, slope_x, slope_y) of the daughters."""
    direction = np.column_stack([slope_x, slope_y, np.ones_like(slope_x)])
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    gamma = energy / mass
    gamma_beta = np.sqrt(np.maximum(gamma**2 - 1.0, 0.0))
    p_parallel = np.einsum("ij,ij->i", rest[:, 1:], direction)
    lab_energy = gamma * rest[:, 0] + gamma_beta * p_parallel
    lab_p = rest[:, 1:] + ((gamma - 1.0) * p_parallel + gamma_beta * rest[:, 0])[:, None] * direction
    pz = np.where(np.abs(lab_p[:, 2]) > 0, lab_p[:, 2], 1e-30)
    return lab_energy, lab_p[:, 0] / pz, lab_p[:, 1] / pz


def decay(pid: np.ndarray, energy: np.ndarray, slope_x: np.ndarray, slope_y: np.ndarray, rng: np.random.Generator) -> Daughters:
    """Decay every parent (pid (N,) in ``DECAYING_PIDS``, energy (N,) GeV, slopes (N,)).

    Channels are drawn with PDG branching ratios; returns the muon and charged-pion daughters.
    """
    parts: list[Daughters] = []
    abs_pid = np.abs(pid)
    for parent_pid, channels in CHANNELS.items():
        parents = np.flatnonzero(abs_pid == parent_pid)
        if parents.size == 0:
            continue
        ratios = np.array([ratio for ratio, _ in channels])
        channel_of = np.searchsorted(np.cumsum(ratios) / ratios.sum(), rng.random(parents.size), side="right")
        channel_of = np.minimum(channel_of, len(channels) - 1)
        # charge conjugation: daughters of a negative parent flip sign; K0L picks a sign at random
        if parent_pid == 130:
            charge_sign = np.where(rng.random(parents.size) < 0.5, 1, -1)
        else:
            charge_sign = np.sign(pid[parents])
        m_parent = MASS_GEV[parent_pid]
        for index, (_, daughters) in enumerate(channels):
            chosen = parents[channel_of == index]
            if chosen.size == 0:
                continue
            masses = tuple(_daughter_mass(d) for d in daughters)
            if len(daughters) == 2:
                rest = rest_frame_two_body(chosen.size, m_parent, masses, rng)
            else:
                rest = rest_frame_three_body(chosen.size, m_parent, masses, rng)
            sign = charge_sign[channel_of == index]
            for daughter_pid, four_momentum in zip(daughters, rest):
                if abs(daughter_pid) not in (13, 211):
                    continue
                lab_e, sx, sy = boost_to_lab(four_momentum, energy[chosen], m_parent, slope_x[chosen], slope_y[chosen])
                parts.append(Daughters(chosen, daughter_pid * sign, lab_e, sx, sy))
    return Daughters.concat(parts)
