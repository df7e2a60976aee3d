"""CORSIKA 7 particle files: real files from ../shared/data/corsika (PANAMA, pycorsikaio) and bad input."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corsika_writer import corsika_bytes, muon_rows

from mubundle.data import corsika
from mubundle.data.convert import convert
from mubundle.data.inspect import inspect_paths
from mubundle.data.native import read_metadata, read_shard
from mubundle.data.sources import detect_layout, read_events
from mubundle.sim.underground import DepthPropagation

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "corsika"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} (real CORSIKA files) not present")

PANAMA = sorted((SHARED / "panama").glob("DAT*")) if SHARED.is_dir() else []
PYCORSIKAIO = {
    "corsika757_particle": False, "corsika_77500_particle": False, "corsika76900_thin": True,
    "corsika75700.zst": False, "corsika74100": False, "corsika75700": False,
}


def _direct_muon_counts(path: Path, thinning: bool) -> list[int]:
    """Muons per shower counted with corsikaio alone: particle ids 5 and 6."""
    from corsikaio import CorsikaParticleFile

    with CorsikaParticleFile(path, thinning=thinning) as handle:
        return [int(np.isin(event.particles["particle_description"] // 1000, [5, 6]).sum()) for event in handle]


def _mubundle_muon_counts(path: Path) -> list[int]:
    """Muons per shower as mubundle reads them (accepted and rejected showers, in file order)."""
    result = read_events(path)
    assert result.failed_files == []
    counts = np.zeros(len(result.batch) + len(result.rejected_rows), dtype=np.int64)
    rejected_rows = result.rejected_rows.rows
    accepted_rows = np.setdiff1d(np.arange(counts.shape[0]), rejected_rows)
    counts[accepted_rows] = result.batch.counts
    counts[rejected_rows] = result.rejected_rows.raw.counts
    return counts.tolist()


@needs_shared
@pytest.mark.parametrize("name", [p.name for p in PANAMA] + [f"pycorsikaio/{n}" for n in PYCORSIKAIO])
def test_muons_per_shower_equal_counting_ids_5_and_6_with_corsikaio(name):
    path = SHARED / ("panama/" + name if name.startswith("DAT") else name)
    thinning = PYCORSIKAIO.get(path.name, False)
    direct = _direct_muon_counts(path, thinning)
    assert _mubundle_muon_counts(path) == direct
    report = inspect_paths(path)
    assert report["events"] + sum(report["rejected"].values()) == len(direct)
    if not report["rejected"]:
        assert report["muons"] == sum(direct)
    if report["events"]:
        assert report["ranges"]["depth"] == [0.0, 0.0]  # one observation-level event per shower


@needs_shared
def test_panama_showers_come_in_with_header_primary_energy_zenith_and_ids():
    from corsikaio import CorsikaParticleFile

    path = SHARED / "panama" / "DAT000031"  # silicon primaries (code 2814)
    batch = read_events(path).batch
    with CorsikaParticleFile(path) as handle:
        headers = [event.header for event in handle]
    assert np.array_equal(batch.conditions[:, 0], [h["total_energy"] for h in headers])
    assert np.array_equal(batch.conditions[:, 2], [28.0] * len(headers))
    assert np.array_equal(batch.conditions[:, 3], [0.0] * len(headers))
    assert [tuple(int(v) for v in ids) for ids in batch.ids] == [(int(h["run_number"]), int(h["event_number"])) for h in headers]
    assert read_events(SHARED / "panama" / "DAT000000").batch.conditions[:, 2].tolist() == [1.0] * 50  # protons
    muons = batch.flat_muons
    assert (muons[:, 0] >= 1000).all()  # the files' 1 TeV muon cut (ECUTS), energy = sqrt(p^2 + m^2)


@needs_shared
def test_inspect_json_of_a_dat_file_is_one_line_with_the_usual_keys_and_the_run_header():
    result = subprocess.run([sys.executable, "-m", "mubundle", "inspect", str(SHARED / "panama" / "DAT000000"), "--json"],
                            capture_output=True, text=True, check=True)
    assert len(result.stdout.splitlines()) == 1
    report = json.loads(result.stdout)
    assert report["events"] == 50 and report["layouts"] == {"corsika": 1} and report["conventions"] == {"corsika": 1}
    assert report["ranges"]["depth"] == [0.0, 0.0]
    run = report["corsika"][str(SHARED / "panama" / "DAT000000")]
    assert run["corsika_version"] == "7.75" and run["observation_levels_m"] == [110.0]
    assert run["energy_cuts_gev"]["muons"] == 1000.0 and run["high_energy_model"] == "SIBYLL-2.3d"
    assert run["low_energy_model"] == "UrQMD" and run["records"]["muons"] == run["records"]["muon_information"]


@needs_shared
def test_zstd_file_reads_like_its_uncompressed_twin_and_muonless_files_say_what_they_hold():
    plain = read_events(SHARED / "pycorsikaio" / "corsika75700").batch
    compressed = read_events(SHARED / "pycorsikaio" / "corsika75700.zst").batch
    assert compressed.equals(plain) and len(plain) == 10 and plain.n_muons == 0
    report = inspect_paths(SHARED / "pycorsikaio" / "corsika75700.zst")
    assert report["zero_muon_events"] == 10 and "no muon records" in report["notes"][0]["note"]


@needs_shared
def test_thinned_showers_with_weighted_muons_are_rejected_and_gammas_are_not_nuclei():
    assert inspect_paths(SHARED / "pycorsikaio" / "corsika76900_thin")["rejected"] == {"muon_thinned": 5}
    assert inspect_paths(SHARED / "pycorsikaio" / "corsika_77500_particle")["rejected"] == {"primary_not_nucleus": 5}


@needs_shared
def test_convert_propagates_each_shower_to_each_depth_reproducibly(tmp_path):
    path = SHARED / "panama" / "DAT000000"
    at_surface = read_events(path).batch
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        summary = convert([path], tmp_path / name, depth_propagation=DepthPropagation((0.0, 1.5, 2.5), seed=seed))
        runs[name] = read_shard(summary["shards"][0])
    batch = runs["a"]
    assert len(batch) == 3 * len(at_surface)
    assert np.array_equal(batch.conditions[:, 3], np.tile(np.float32([0.0, 1.5, 2.5]), len(at_surface)))
    depth0 = batch.take(np.arange(0, len(batch), 3))
    assert np.array_equal(depth0.counts, at_surface.counts) and np.array_equal(depth0.flat_muons, at_surface.flat_muons)
    counts = batch.counts.reshape(-1, 3)
    assert (np.diff(counts, axis=1) <= 0).all() and counts[:, 2].sum() < counts[:, 0].sum()
    deep = batch.take(np.arange(2, len(batch), 3))
    assert deep.flat_muons[:, 0].mean() < at_surface.flat_muons[:, 0].mean()
    assert batch.equals(runs["b"]) and not batch.equals(runs["c"])
    assert np.array_equal(batch.ids, np.repeat(at_surface.ids, 3, axis=0))
    meta = read_metadata(summary["shards"][0])
    assert meta["depth_propagation"]["depths_km"] == [0.0, 1.5, 2.5] and meta["depth_propagation"]["seed"] == 2
    assert meta["corsika"][str(path)]["observation_levels_m"] == [110.0]


def test_convert_cli_depths_zero_keeps_the_observation_level_muons(tmp_path):
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "DAT000001"
    path.write_bytes(corsika_bytes([dict(code=5626, energy=1e7, zenith=0.3, particles=muon_rows([2e3, 5e3], [1e3, 0], [0, 2e3])),
                                    dict(code=402, energy=1e5, zenith=0.0)]))
    result = subprocess.run([sys.executable, "-m", "mubundle", "convert", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                             "--depths", "0", "--seed", "4"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    batch = read_events(tmp_path / "out").batch
    assert batch.conditions[:, 2].tolist() == [56.0, 4.0] and batch.counts.tolist() == [2, 0]  # empty shower kept
    np.testing.assert_allclose(batch.flat_muons[:, 0], [2e3, 5e3], rtol=1e-6)


def test_inclined_shower_positions_are_projected_into_the_plane_perpendicular_to_the_axis():
    zenith, azimuth = np.radians(60), np.radians(30)
    axis = np.array([np.sin(zenith) * np.cos(azimuth), np.sin(zenith) * np.sin(azimuth), -np.cos(zenith)])
    ground = np.array([[100.0, 0.0, 0.0], [0.0, 50.0, 0.0], [-30.0, 20.0, 0.0]])
    x, y = corsika.shower_plane(ground[:, 0], ground[:, 1], zenith, azimuth)
    perpendicular = ground - (ground @ axis)[:, None] * axis
    np.testing.assert_allclose(np.hypot(x, y), np.linalg.norm(perpendicular, axis=1), rtol=1e-6)
    vx, vy = corsika.shower_plane(ground[:, 0], ground[:, 1], 0.0, azimuth)
    np.testing.assert_allclose(np.stack([vx, vy], 1), ground[:, :2], rtol=1e-6)  # vertical: CORSIKA's x, y


def test_primary_codes_map_to_mass_numbers_and_other_primaries_to_none():
    a = corsika.primary_mass_number(np.array([14, 13, 402, 1407, 5626, 2814, 1, 5, 6, 8, 199, 6030]))
    assert a[:6].tolist() == [1, 1, 4, 14, 56, 28] and np.isnan(a[6:]).all()


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated", "file is truncated: it ends inside a record after 0 complete shower(s)"),  # one Fortran record
        ("missing_event_end", "without its end record"),
        ("not_corsika_version", "is not a CORSIKA 7 version"),
        ("garbage_after_runh", "no event header after the run header"),
    ],
)
def test_broken_corsika_files_fail_with_one_line_naming_the_file(tmp_path, case, expected):
    shower = dict(code=14, energy=1e6, zenith=0.1, particles=muon_rows([2e3], [0], [0]))
    if case == "truncated":
        data = corsika_bytes([shower, shower])[: -273 * 4 - 100]
    elif case == "missing_event_end":
        data = corsika_bytes([{**shower, "drop_end": True}, shower])
    elif case == "not_corsika_version":
        data = corsika_bytes([shower], version=3.0)
    else:
        data = b"RUNH" + bytes(5000)
    path = tmp_path / f"DAT{case}"
    path.write_bytes(data)
    assert detect_layout(path) == "corsika"
    result = read_events(path)
    assert len(result.batch) == 0 and len(result.failed_files) == 1
    error = result.failed_files[0]["error"]
    assert expected in error and "\n" not in error
    cli = subprocess.run([sys.executable, "-m", "mubundle", "inspect", str(path)], capture_output=True, text=True)
    assert cli.returncode == 0 and "Traceback" not in cli.stderr and f"FAILED {path}" in cli.stdout


def test_nan_momenta_reject_that_shower_and_keep_the_others(tmp_path):
    bad = muon_rows([2e3, 3e3], [0, 0], [0, 0])
    bad[1, 3] = np.nan
    path = tmp_path / "DAT000002"
    path.write_bytes(corsika_bytes([dict(code=14, energy=1e6, zenith=0.1, particles=muon_rows([2e3], [0], [0])),
                                    dict(code=14, energy=1e6, zenith=0.1, particles=bad)]))
    result = read_events(path)
    assert result.rejected == {"muon_non_finite": 1} and list(result.rejected_rows.rows) == [1] and len(result.batch) == 1


def test_the_data_layer_does_not_import_the_simulator():
    for module in (REPO / "src" / "mubundle" / "data").glob("*.py"):
        tree = ast.parse(module.read_text())
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not any(name.startswith("mubundle.sim") for name in names), module.name
    geometry = ast.parse((REPO / "src" / "mubundle" / "geometry.py").read_text())
    assert not any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mubundle") for n in ast.walk(geometry))


def test_depths_without_any_corsika_input_is_refused_not_ignored(tmp_path):
    from helpers import make_synthetic_batch

    from mubundle.data.writers import write_batch

    write_batch(make_synthetic_batch(5, seed=1), tmp_path / "a.h5", format="hdf5")
    result = subprocess.run([sys.executable, "-m", "mubundle", "convert", str(tmp_path / "a.h5"), "--out",
                             str(tmp_path / "out"), "--depths", "1.5"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--depths applies to CORSIKA particle files only" in result.stderr


def test_depths_with_a_truncated_corsika_input_name_the_file_not_a_missing_corsika_input(tmp_path):
    shower = dict(code=14, energy=1e6, zenith=0.1, particles=muon_rows([2e3], [0], [0]))
    path = tmp_path / "DAT000098"
    path.write_bytes(corsika_bytes([shower, shower])[: -273 * 4 - 100])  # cut inside the last record
    result = subprocess.run([sys.executable, "-m", "mubundle", "convert", str(path), "--out", str(tmp_path / "out"),
                             "--depths", "1.5"], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"FAILED {path}" in result.stdout and "file is truncated: it ends inside a record" in result.stdout
    assert "applies to CORSIKA particle files only" not in result.stderr
