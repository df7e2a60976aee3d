"""benchmarks/muon_origins.py: CORSIKA's generation < 30 muons split by their EHISTORY mother.

Synthetic particle descriptions in CORSIKA's layout (MUADDI record, mother, grandmother, muon;
id x 1000 + generation x 10 + level for particles, negative descriptions for the history).
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import load_benchmark

origins = load_benchmark("muon_origins")


def muon_with_history(mother_id: int, generation: int, muon_id: int = 5) -> list[float]:
    """MUADDI record, mother, grandmother (a proton), then the muon of ``generation``."""
    return [75001.0, -(mother_id * 1000.0 + 3), -14002.0, muon_id * 1000.0 + generation * 10 + 1]


def test_the_kaon_class_is_split_by_the_mother_record():
    description = np.array(
        muon_with_history(11, 4) + muon_with_history(12, 4, 6) + muon_with_history(10, 4)  # K+, K-, K0L
        + muon_with_history(63, 4) + muon_with_history(49, 4)  # muons of the K of a K* and of a phi
        + muon_with_history(17, 4) + muon_with_history(50, 4)  # eta, omega -> mu mu
        + muon_with_history(5, 3)  # a muon pair of the collision
        + muon_with_history(117, 4)  # a charmed hadron without the + 30
        + muon_with_history(8, 54)  # a pion-decay muon: not in the kaon class at all
        + [14001.0, 5041.0]  # a muon without history records (and a proton)
    )
    counts = origins.kaon_class_by_mother(origins.ShowerHistory.of(description))
    assert counts == {"kaon": 5, "mu_mu_meson": 2, "collision_muon": 1, "charm_without_30": 1, "other": 0,
                      "no_mother_record": 1}


def test_the_kaon_muons_are_split_by_the_grandmother_record():
    def muon(mother_id: int, grandmother_id: int, generation: int = 4) -> list[float]:
        return [75001.0, -(mother_id * 1000.0 + 3), -(grandmother_id * 1000.0 + 2), 5000.0 + generation * 10 + 1]

    description = np.array(
        muon(11, 14) + muon(12, 13) + muon(10, 8)  # K+ from p-air, K- from n-air, K0L from pi+-air
        + muon(63, 9) + muon(11, 11) + muon(16, 12)  # K of a K* from pi--air, K+ from K+-air, K0S from K--air
        + muon(11, 18)  # a kaon made by a Lambda (other)
        + muon(17, 14)  # eta -> mu mu: not a kaon muon
        + muon(8, 14, 54)  # a pion-decay muon
    )
    history = origins.ShowerHistory.of(description)
    assert origins.muons_by_grandmother(history) == {"nucleon": 2, "pion": 2, "kaon": 2, "other": 1}
    assert origins.muons_by_grandmother(history, pion_muons=True) == {"nucleon": 1, "pion": 0, "kaon": 0, "other": 0}
    assert [origins.projectile_class(pid) for pid in (2212, -2112, 211, -321, 130, 3122, 0)] == \
        ["nucleon", "nucleon", "pion", "kaon", "kaon", "other", "other"]


def test_the_muon_spectra_count_energy_at_the_level_and_the_production_height():
    def records(mother_id: int, generation: int, momentum_gev: float, height_cm: float, muon_id: int = 5) -> list[tuple]:
        muaddi = (75001.0, 0.0, 0.0, momentum_gev, 0.0, 0.0, height_cm)
        mother = (-(mother_id * 1000.0 + 3), 0.0, 0.0, 5.0 * momentum_gev, 0.0, 0.0, 0.0)
        grandmother = (-14002.0, 0.0, 0.0, 50.0 * momentum_gev, 0.0, 0.0, 0.0)
        return [muaddi, mother, grandmother, (muon_id * 1000.0 + generation * 10 + 1, 0.0, 0.0, momentum_gev, 0.0, 0.0, 0.0)]

    dtype = [(name, "f4") for name in ("particle_description", "px", "py", "pz", "x", "y", "t")]
    particles = np.array(
        records(11, 4, 1500.0, 7.0e5)  # a mu+ of a K+, 1.5 TeV from 7 km
        + records(63, 5, 5.0e4, 1.3e6, muon_id=6)  # a mu- of the K of a K*, 50 TeV from 13 km
        + records(17, 4, 3000.0, 10.0e5)  # eta -> mu mu: not a kaon muon
        + records(8, 55, 1200.0, 20.0e5),  # a pion-decay muon
        dtype=dtype,
    )
    history = origins.ShowerHistory.of(particles["particle_description"])
    kaons = origins.muon_spectra(particles, history)
    assert kaons == {"log10_energy": [1, 0, 0, 0, 1], "height_km": [0, 1, 0, 1, 0], "charge": [1, 1]}
    pions = origins.muon_spectra(particles, history, pion_muons=True)
    assert pions == {"log10_energy": [1, 0, 0, 0, 0], "height_km": [0, 0, 0, 0, 1], "charge": [1, 0]}


def test_the_charged_kaon_muons_are_counted_by_projectile_energy_and_kaon_share():
    def records(mother_id: int, grandmother_id: int, kaon_gev: float, projectile_gev: float) -> list[tuple]:
        muaddi = (75001.0, 0.0, 0.0, 0.5 * kaon_gev, 0.0, 0.0, 1.0e6)
        mother = (-(mother_id * 1000.0 + 3), 0.0, 0.0, kaon_gev, 0.0, 0.0, 0.0)
        grandmother = (-(grandmother_id * 1000.0 + 2), 0.0, 0.0, projectile_gev, 0.0, 0.0, 0.0)
        return [muaddi, mother, grandmother, (5041.0, 0.0, 0.0, 0.5 * kaon_gev, 0.0, 0.0, 0.0)]

    dtype = [(name, "f4") for name in ("particle_description", "px", "py", "pz", "x", "y", "t")]
    particles = np.array(
        records(11, 14, 2.0e3, 1.0e5)  # K+ with x = 0.02 from a 1e5 GeV proton
        + records(63, 8, 8.0e4, 1.0e5)  # the K of a K*+ (x of the K*: 0.8) from a 1e5 GeV pi+
        + records(12, 11, 3.0e4, 3.0e4 * (1 + 1e-7))  # a leading K- of a K- (x at 1 within float32)
        + records(10, 14, 5.0e3, 1.0e4)  # a K0L: not a charged-kaon muon
        + records(11, 18, 5.0e3, 1.0e4),  # a K+ made by a Lambda: class other, left out
        dtype=dtype,
    )
    counts = origins.kaon_collisions(particles, origins.ShowerHistory.of(particles["particle_description"]))
    assert set(counts) == {"nucleon", "pion", "kaon"}
    assert counts["nucleon"] == {"log10_projectile_energy": [0, 0, 0, 0, 1, 0, 0], "x": [1, 0, 0, 0, 0, 0, 0]}
    assert counts["pion"] == {"log10_projectile_energy": [0, 0, 0, 0, 1, 0, 0], "x": [0, 0, 0, 0, 0, 0, 1]}
    assert counts["kaon"] == {"log10_projectile_energy": [0, 0, 1, 0, 0, 0, 0], "x": [0, 0, 0, 0, 0, 0, 1]}


def test_the_kaon_paths_run_from_the_mother_record_to_the_muaddi_record():
    from mubundle.sim.atmosphere import vertical_depth
    from mubundle.sim.decays import CTAU_M, MASS_GEV

    def records(mother_id: int, kaon_gev: float, made_cm: float, decayed_cm: float) -> list[tuple]:
        muaddi = (75001.0, 0.0, 0.0, 0.5 * kaon_gev, 0.0, 0.0, decayed_cm)
        mother = (-(mother_id * 1000.0 + 3), 0.0, 0.0, kaon_gev, 0.0, 0.0, made_cm)
        grandmother = (-14002.0, 0.0, 0.0, 10.0 * kaon_gev, 0.0, 0.0, -made_cm)
        return [muaddi, mother, grandmother, (5041.0, 0.0, 0.0, 0.5 * kaon_gev, 0.0, 0.0, 0.0)]

    dtype = [(name, "f4") for name in ("particle_description", "px", "py", "pz", "x", "y", "t")]
    particles = np.array(records(11, 1000.0, 2.0e6, 1.5e6) + records(63, 1000.0, 2.0e6, 1.5e6)  # the K of a K*: left out
                         + records(12, 4000.0, 1.0e6, 0.9e6), dtype=dtype)
    paths = origins.kaon_paths(particles, origins.ShowerHistory.of(particles["particle_description"]))
    assert paths.shape == (2, 4)
    mean_decay_m = 1000.0 / MASS_GEV[321] * CTAU_M[321]
    assert paths[0, 1] == pytest.approx(5000.0 / mean_decay_m, rel=1e-4)  # 5 km of a 7.5 km decay length
    assert paths[0, 2] == pytest.approx(vertical_depth(15000.0) - vertical_depth(20000.0), rel=1e-4)
    assert paths[1, 3] == pytest.approx(vertical_depth(10000.0), rel=1e-4)
    counts = origins.path_histograms(paths, "SIBYLL-2.3d")
    assert [int(c.sum()) for c in counts.values()] == [2, 2, 2]
    assert counts["u"].tolist() == [1, 0, 0, 0, 1, 0, 0]  # u = 0.665 and 100 m of a 30 km decay length, 0.033


def test_the_kstar_mothers_are_counted_by_charge():
    description = np.array(
        muon_with_history(62, 4) + muon_with_history(63, 4) + muon_with_history(63, 4)  # kaon muons: K*0, 2 x K*+
        + muon_with_history(65, 4) + muon_with_history(64, 4, 6) + muon_with_history(11, 4)  # anti-K*0, K*-, a K+
        + muon_with_history(62, 55) + muon_with_history(51, 55)  # pion muons: a K*0 and a rho0 mother
    )
    assert origins.kstar_mothers(origins.ShowerHistory.of(description)) == {"kaon_muons": [1, 2, 1, 1], "pion_muons": [1, 0, 0, 0]}


def test_sibyll_decays_kstar_by_isospin_and_the_test_switch_restores_the_table():
    from mubundle.sim.interactions import get_model

    lib = get_model("SIBYLL-2.3d").model._lib
    isospin = {"K*0": 0.667, "K*+": 0.333, "K*-": 0.333, "anti-K*0": 0.667}  # PDG: K*(892) -> K pi, Clebsch-Gordan
    assert origins.sibyll_kstar_decays(lib) == pytest.approx(isospin, abs=1e-3)
    with origins.kstar_charged_kaon(lib, 0.9):
        assert origins.sibyll_kstar_decays(lib) == pytest.approx({**isospin, "K*+": 0.9, "K*-": 0.9}, abs=1e-3)
    assert origins.sibyll_kstar_decays(lib) == pytest.approx(isospin, abs=1e-3)
    with pytest.raises(SystemExit, match="must lie in"):
        with origins.kstar_charged_kaon(lib, 1.5):
            pass
    assert origins.sibyll_kstar_decays(lib) == pytest.approx(isospin, abs=1e-3)


def test_sibyll_makes_the_four_kstar_alike():
    from mubundle.sim.interactions import get_model

    air = get_model("SIBYLL-2.3d")
    made = origins.sibyll_kstar_made(air, collisions=300)
    assert made == origins.sibyll_kstar_made(air, collisions=300)  # reseeded: the same collisions
    assert set(made) == {"K*0", "K*+", "K*-", "anti-K*0"} and min(made.values()) > 50
    assert max(made.values()) < 1.5 * min(made.values())  # isospin partners made alike (~150 each)
