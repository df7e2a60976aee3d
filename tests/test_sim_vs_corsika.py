"""benchmarks/vs_corsika.py reads real CORSIKA files and compares one small decade (issue 21)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PANAMA = ROOT.parent / "shared" / "data" / "corsika" / "panama"
needs_files = pytest.mark.skipif(not (PANAMA / "DAT000020").exists(), reason="shared CORSIKA files not present")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("vs_corsika", ROOT / "benchmarks" / "vs_corsika.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_files
def test_corsika_reader_counts_only_muons_and_takes_the_run_settings():
    from corsikaio import CorsikaParticleFile

    data = load_benchmark().read_corsika([str(PANAMA / "DAT000020")])
    assert data["level_m"] == pytest.approx(110.0) and data["cut_gev"] == pytest.approx(1000.0)
    assert data["energy"].size == 5 and np.all(data["primary"] == 1206)  # C12 (README of shared/ says p)
    with CorsikaParticleFile(PANAMA / "DAT000020") as corsika:
        for event, muons in zip(corsika, data["muons"]):
            description = event.particles["particle_description"]
            ids = np.trunc(description / 1000).astype(int)
            # every muon has its additional-information record (75/76) in MUADDI files
            assert muons.shape[0] == np.sum((description > 0) & np.isin(ids, [75, 76]))
    assert all(np.all(m[:, 0] > 1000.0) for m in data["muons"])  # the CORSIKA muon cut
    assert data["per_shower"] == []
    assert data["first_interaction_m"].shape == (5,) and np.all((data["first_interaction_m"] > 110.0) & (data["first_interaction_m"] < 1.2e5))
    # a per-shower function sees every shower's records, in order, in the same reading
    sizes = load_benchmark().read_corsika([str(PANAMA / "DAT000020")], per_shower=len)["per_shower"]
    with CorsikaParticleFile(PANAMA / "DAT000020") as corsika:
        assert sizes == [len(event.particles) for event in corsika]


@needs_files
def test_one_decade_prints_every_metric(capsys):
    benchmark = load_benchmark()
    benchmark.main(["--corsika", str(PANAMA / "DAT000020"), "--repeat", "2", "--decades", "4"])
    def strict(constant):  # NaN / Infinity are not JSON
        raise ValueError(f"non-standard JSON constant {constant}")

    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1], parse_constant=strict)
    assert row["decade"] == "1e4-1e5" and row["showers"] == 2 and row["repeat"] == 2
    assert row["corsika_first_interaction"] is None  # C12 showers only
    assert set(row) >= {"n_mu_sum", "rel_fluct", "energy_quantiles_gev", "radius_quantiles_m"}
    if row["n_mu_sum"]["corsika"] == 0:  # these two C12 showers have no muon above 1 TeV
        assert row["n_mu_sum"]["ratio"] is None and "ratios undefined" in row["note"]


def test_the_first_interaction_depth_is_compared_with_the_proton_interaction_length():
    from mubundle.sim.atmosphere import height_of_vertical_depth
    from mubundle.sim.interactions import get_model

    benchmark = load_benchmark()
    energy = np.array([1e5, 1e7])
    length = get_model("SIBYLL-2.3d").interaction_length(np.full(2, 2212), energy)
    height_m = height_of_vertical_depth(length * np.array([0.5, 1.5]))
    row = benchmark.first_interaction_ratio(energy, height_m, "SIBYLL-2.3d")
    assert row == {"protons": 2, "depth_over_length": pytest.approx(1.0, abs=1e-3), "se": pytest.approx(0.5, abs=1e-3)}
    assert benchmark.first_interaction_ratio(np.zeros(0), np.zeros(0), "SIBYLL-2.3d") is None


def test_the_fluctuation_error_leaves_out_resamples_without_a_defined_ratio():
    benchmark = load_benchmark()
    rng = np.random.default_rng(3)
    ours = rng.poisson(5.0, size=(2, 40)).astype(float)
    corsika = rng.poisson(5.0, size=40).astype(float)
    se, left_out = benchmark._bootstrap_fluct_ratio_se(ours, corsika, repeat=2)
    assert np.isfinite(se) and se > 0 and left_out == 0
    # CORSIKA exactly at our mean of two very different runs: its spread is below our mean's noise
    wide = np.stack([np.zeros(40), np.full(40, 10.0)])
    assert np.isnan(benchmark._rel_fluct_ratio(wide, np.full(40, 5.0), repeat=2))
    se, left_out = benchmark._bootstrap_fluct_ratio_se(wide, np.full(40, 5.0), repeat=2)
    assert np.isnan(se) and left_out == 400
