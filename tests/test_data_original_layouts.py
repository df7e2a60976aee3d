"""The original pipeline's files in their true units: rest mass GeV -> A, vertical depth m -> slant km.

Fixtures come from tests/original_writers.py, which follows briedel/cr_muons
``utils/data_converters/dump_muonitron_data.py`` and ``convert_to_parquet.py`` line by line.
"""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_synthetic_batch
from original_writers import REST_MASS_GEV, convert_h5_to_parquet, make_frames, write_hdf5, write_parquet

from mubundle.data import native
from mubundle.data.batch import RaggedBatch
from mubundle.data.convert import convert
from mubundle.data.inspect import inspect_paths
from mubundle.data.nuclei import mass_number_from_rest_mass, rest_mass_gev
from mubundle.data.sources import read_events
from mubundle.data.writers import write_batch
from mubundle.geometry import slant_from_vertical_depth, vertical_from_slant_depth

A_OF_REST_MASS = {mass: a for a, mass in REST_MASS_GEV.items()}


def _expected(frames):
    """Per event (frame x depth, in writing order): (A, slant km, muon energies, radii, (major, minor))."""
    rows = []
    for frame in frames:
        p = frame.primary
        for depth, tracks in frame.tracks.items():
            slant = slant_from_vertical_depth(np.float32(p.zenith), np.float32(depth)) / 1000
            rows.append((A_OF_REST_MASS[p.mass], slant, [t.energy for t in tracks], [t.radius for t in tracks],
                         (p.major_id, p.minor_id)))
    return rows


def _check_events(batch: RaggedBatch, frames, ids_exact=True):
    expected = _expected(frames)
    assert len(batch) == len(expected)
    for i, (a, slant, energies, radii, ids) in enumerate(expected):
        assert batch.conditions[i, 2] == a
        assert batch.conditions[i, 3] == pytest.approx(slant, rel=1e-6)
        muons = batch.muons_of(i)
        assert muons.shape[0] == len(energies)  # a depth without muons is N = 0 (HDF5 placeholder included)
        np.testing.assert_allclose(muons[:, 0], energies, rtol=1e-6)
        np.testing.assert_allclose(np.hypot(muons[:, 1], muons[:, 2]), radii, rtol=1e-4, atol=1e-4)
        if ids_exact:
            assert tuple(int(v) for v in batch.ids[i]) == ids
        else:  # stored in float32 by the original HDF5 writer
            assert tuple(int(v) for v in batch.ids[i]) == (int(np.float32(ids[0])), int(np.float32(ids[1])))


def test_rest_masses_of_the_usual_primaries_map_to_their_mass_numbers():
    a, matched = mass_number_from_rest_mass(np.array(list(REST_MASS_GEV.values())))
    assert matched.all() and list(a) == list(REST_MASS_GEV)
    a, matched = mass_number_from_rest_mass(np.array([2.3, 0.5, 60.0, np.nan]))  # no nucleus within 0.1 GeV
    assert not matched.any() and np.isnan(a).all()
    np.testing.assert_allclose(rest_mass_gev([1, 4, 56]), [0.938272, 3.72738, 52.0898], atol=2e-4)


def test_muonitron_overburden_is_the_vertical_depth_for_vertical_showers_and_inverts():
    assert slant_from_vertical_depth(0.0, 1950.0) == pytest.approx(1950.0)
    slant = slant_from_vertical_depth(np.radians(60), 2000.0)
    assert slant == pytest.approx(2000.0 / 0.5, rel=2e-3)  # flat-earth sec(zenith), curvature < 0.2 % at 60 deg
    assert slant < 4000.0  # the curved surface is closer than the flat one
    assert vertical_from_slant_depth(np.radians(60), slant) == pytest.approx(2000.0)


def test_dump_hdf5_file_imports_rest_mass_as_a_vertical_metres_as_slant_km_and_keeps_ids(tmp_path):
    frames = make_frames(40, seed=1)
    write_hdf5(tmp_path / "orig.h5", frames, buffer_size=25)  # several resizes, as the original does
    result = read_events(tmp_path / "orig.h5")
    assert result.rejected == {} and result.failed_files == []
    _check_events(result.batch, frames, ids_exact=False)
    assert (result.batch.counts == 0).any()


def test_dump_parquet_file_imports_in_a_and_slant_km_with_uint64_ids(tmp_path):
    frames = make_frames(40, seed=2)
    write_parquet(tmp_path / "orig.parquet", frames, buffer_size=30)
    result = read_events(tmp_path / "orig.parquet")
    assert result.rejected == {} and result.failed_files == []
    _check_events(result.batch, frames)


def test_convert_to_parquet_output_imports_like_the_hdf5_it_was_made_from(tmp_path):
    frames = make_frames(40, seed=3)
    write_hdf5(tmp_path / "orig.h5", frames)
    convert_h5_to_parquet(tmp_path / "orig.h5", tmp_path / "converted.parquet", batch_size=16)
    from_h5 = read_events(tmp_path / "orig.h5")
    from_parquet = read_events(tmp_path / "converted.parquet")
    assert from_parquet.rejected == {} and from_parquet.failed_files == []
    assert from_parquet.batch.equals(from_h5.batch)  # placeholder rows -> N = 0, ids from primary[0:2]
    assert np.array_equal(from_parquet.batch.ids, from_h5.batch.ids)


def test_inspect_reports_a_and_slant_km_and_names_the_convention_it_read(tmp_path):
    frames = make_frames(30, seed=4)
    write_parquet(tmp_path / "orig.parquet", frames)
    report = inspect_paths(tmp_path / "orig.parquet")
    assert report["conventions"] == {"original": 1}
    masses = {frame.primary.mass for frame in frames}
    assert report["ranges"]["mass"] == [min(A_OF_REST_MASS[m] for m in masses), max(A_OF_REST_MASS[m] for m in masses)]
    expected_slant = [row[1] for row in _expected(frames)]
    assert report["ranges"]["depth"] == pytest.approx([min(expected_slant), max(expected_slant)], rel=1e-6)


def test_convert_keeps_the_event_ids_in_the_native_shards(tmp_path):
    frames = make_frames(20, seed=5)
    (tmp_path / "in").mkdir()
    write_parquet(tmp_path / "in" / "orig.parquet", frames)
    summary = convert([tmp_path / "in"], tmp_path / "out")
    shard = native.read_shard(summary["shards"][0])
    expected_ids = [row[4] for row in _expected(frames)]
    assert [tuple(int(v) for v in pair) for pair in shard.ids] == expected_ids
    assert pq.read_schema(summary["shards"][0]).field("major_id").type == pa.uint64()


@pytest.mark.parametrize(
    ("mass", "depth", "column"),
    [(300.5, 2000.0, "primary[2]"), (3.7274, 5e6, "primary[3]")],
    ids=["mass_fits_no_convention", "depth_fits_no_convention"],
)
def test_a_file_whose_values_fit_no_convention_is_refused_with_one_line_naming_column_and_range(tmp_path, mass, depth, column):
    pq.write_table(pa.table({
        "primary": pa.array([[1e6, 0.2, mass, depth]] * 3, pa.list_(pa.float32())),
        "muons": pa.array([[[10.0, 1.0, 2.0]]] * 3, pa.list_(pa.list_(pa.float32()))),
    }), tmp_path / "odd.parquet")
    result = read_events(tmp_path / "odd.parquet")
    assert len(result.batch) == 0 and len(result.failed_files) == 1
    error = result.failed_files[0]["error"]
    assert "\n" not in error and f"column '{column}'" in error and "fits no unit convention" in error
    assert f"{mass if column == 'primary[2]' else depth:.6g}" in error


def test_legacy_files_of_earlier_mubundle_versions_are_still_read_as_a_and_slant_km(tmp_path):
    batch = make_synthetic_batch(60, seed=6)
    # the old writers: A and slant km; `generate` stored its metadata (units mass "A", depth "km")
    old_meta = native.default_metadata("mubundle generate")
    table = pa.table({
        "primary": pa.array(list(batch.conditions), pa.list_(pa.float32())),
        "muons": pa.array([batch.muons_of(i).tolist() for i in range(len(batch))], pa.list_(pa.list_(pa.float32()))),
    }).replace_schema_metadata({b"mubundle": json.dumps(old_meta).encode()})
    pq.write_table(table, tmp_path / "old_generate.parquet")
    with h5py.File(tmp_path / "old_write_batch.h5", "w") as handle:  # old write_batch: no metadata at all
        primaries = np.zeros((len(batch), 7), np.float32)
        primaries[:, [2, 3, 4, 6]] = batch.conditions
        rows = np.zeros((batch.n_muons, 6), np.float32)
        rows[:, 2:5] = batch.flat_muons
        keep = batch.counts > 0
        handle["primaries"], handle["muons"], handle["counts"] = primaries[keep], rows, batch.counts[keep].astype(np.int32)
    for name, expected in (("old_generate.parquet", batch), ("old_write_batch.h5", batch.take(np.flatnonzero(keep)))):
        result = read_events(tmp_path / name)
        assert result.rejected == {} and result.failed_files == [], name
        np.testing.assert_array_equal(result.batch.conditions, expected.conditions)
        assert inspect_paths(tmp_path / name)["conventions"] == {"mubundle": 1}


@pytest.mark.parametrize("fmt", ["legacy-parquet", "hdf5"])
def test_mubundle_legacy_output_is_what_the_original_writers_write(tmp_path, fmt):
    batch = make_synthetic_batch(50, seed=7)
    path = tmp_path / ("out.parquet" if fmt == "legacy-parquet" else "out.h5")
    write_batch(batch, path, format=fmt)
    if fmt == "legacy-parquet":
        table = pq.read_table(path)
        write_parquet(tmp_path / "ref.parquet", make_frames(2))  # the original writer's own file
        reference = pq.read_schema(tmp_path / "ref.parquet")
        assert table.schema.remove_metadata().equals(reference.remove_metadata())  # names, types, order
        primary = np.array(table.column("primary").to_pylist(), np.float32)
        mass_gev, depth_m = primary[:, 2], primary[:, 3]
    else:
        with h5py.File(path, "r") as handle:
            primary = handle["primaries"][()]
            assert handle["counts"].dtype == np.int32 and handle["muons"].shape[1] == 6
        mass_gev, depth_m = primary[:, 4], primary[:, 6]
    np.testing.assert_allclose(mass_gev, rest_mass_gev(batch.conditions[:, 2]), rtol=1e-6)
    np.testing.assert_allclose(depth_m, vertical_from_slant_depth(batch.conditions[:, 1], batch.conditions[:, 3] * 1000.0),
                               rtol=1e-6)
    # the original normaliser (training/normalizer.py): log10(mass in GeV), depth_m / 1000 -> right conditions
    assert np.all(np.isfinite(np.log10(mass_gev))) and (depth_m / 1000 <= batch.conditions[:, 3] + 1e-6).all()


# --------------------------------------------------------------------------- HDF5 edges (issue 20, root cause 9)
def _h5(path, primaries, muons, counts):
    with h5py.File(path, "w") as handle:
        handle["primaries"] = np.asarray(primaries, np.float32)
        handle["muons"] = np.asarray(muons, np.float32).reshape(-1, 6)
        handle["counts"] = counts


PRIMARIES = [[1, 0, 1e6, 0.1, 0.938272, 0, 1500.0], [2, 0, 2e6, 0.2, 3.7274, 0, 2000.0]]
MUONS = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0], [2, 0, 7.0, 1, 1, 0]]


def test_hdf5_fractional_float_counts_refuse_the_file_instead_of_truncating(tmp_path):
    _h5(tmp_path / "f.h5", PRIMARIES, MUONS, np.array([1.5, 1.5], np.float64))
    result = read_events(tmp_path / "f.h5")
    assert len(result.batch) == 0 and len(result.failed_files) == 1
    assert "'counts' holds 1.5 for event 0" in result.failed_files[0]["error"]


def test_hdf5_whole_float_counts_are_read_exactly(tmp_path):
    _h5(tmp_path / "w.h5", PRIMARIES, MUONS, np.array([1.0, 2.0], np.float32))
    result = read_events(tmp_path / "w.h5")
    assert result.rejected == {} and np.array_equal(result.batch.counts, [1, 2])


def test_hdf5_count_beyond_int64_range_is_a_count_mismatch_not_a_crash(tmp_path):
    _h5(tmp_path / "o.h5", PRIMARIES, MUONS, np.array([2**62, 2], np.int64))
    result = read_events(tmp_path / "o.h5")
    assert result.failed_files == [] and result.rejected == {"count_mismatch": 2}
    _h5(tmp_path / "u.h5", PRIMARIES, MUONS, np.array([1, 2**64 - 1], np.uint64))
    result = read_events(tmp_path / "u.h5")
    assert result.failed_files == [] and result.rejected == {"count_mismatch": 1} and len(result.batch) == 1


def test_a_null_inside_one_native_muon_rejects_that_row_only(tmp_path):
    values = pa.array([100.0, 1.0, -1.0, 50.0, None, 2.0, 60.0, 3.0, 4.0], pa.float32())
    muons = pa.ListArray.from_arrays(pa.array([0, 1, 2, 3], pa.int32()), pa.FixedSizeListArray.from_arrays(values, 3))
    table = pa.table({"energy": pa.array([1e6] * 3, pa.float32()), "zenith": pa.array([0.1] * 3, pa.float32()),
                      "mass": pa.array([1.0] * 3, pa.float32()), "depth": pa.array([2.0] * 3, pa.float32()),
                      "muons": muons})
    pq.write_table(table, tmp_path / "n.parquet")
    result = read_events(tmp_path / "n.parquet")
    assert result.failed_files == [] and result.rejected == {"null_value": 1}
    assert list(result.rejected_rows.rows) == [1] and np.array_equal(result.batch.flat_muons, [[100, 1, -1], [60, 3, 4]])


def test_overburden_matches_muonitron_numbers():
    # GetOverburden(zenith, d, r) = sqrt(2 r d + c^2 (r-d)^2 - d^2) - (r-d) c, by hand at 45 deg
    r, d, c = 6374134.0, 2000.0, math.cos(math.radians(45))
    by_hand = math.sqrt(2 * r * d + c * c * (r - d) ** 2 - d * d) - (r - d) * c
    assert slant_from_vertical_depth(math.radians(45), d) == pytest.approx(by_hand, rel=1e-12)
