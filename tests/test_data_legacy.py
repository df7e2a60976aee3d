"""Legacy layouts of the original pipeline: Parquet nested lists and HDF5 with the zero-row quirk."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_synthetic_batch, same_events_up_to_depth_rounding

from mubundle.data import legacy
from mubundle.geometry import slant_from_vertical_depth
from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import detect_layout, read_events
from mubundle.data.writers import write_batch


def _write_h5(path, primaries, muons, counts):
    with h5py.File(path, "w") as handle:
        handle["primaries"] = np.asarray(primaries, np.float32)
        handle["muons"] = np.asarray(muons, np.float32).reshape(-1, 6)
        handle["counts"] = np.asarray(counts, np.int32)


def test_legacy_parquet_written_then_imported_is_the_same_events(tmp_path):
    batch = make_synthetic_batch(400, seed=1)
    write_batch(batch, tmp_path / "old.parquet", format="legacy-parquet")
    assert detect_layout(tmp_path / "old.parquet") == "legacy-parquet"
    result = read_events(tmp_path / "old.parquet")
    assert same_events_up_to_depth_rounding(result.batch, batch) and not result.rejected and not result.failed_files


def test_legacy_hdf5_written_then_imported_is_the_same_events(tmp_path):
    batch = make_synthetic_batch(400, seed=2)
    write_batch(batch, tmp_path / "old.h5", format="hdf5")
    assert detect_layout(tmp_path / "old.h5") == "legacy-hdf5"
    result = read_events(tmp_path / "old.h5")
    assert same_events_up_to_depth_rounding(result.batch, batch) and not result.rejected and not result.failed_files


def test_hdf5_writer_uses_one_placeholder_row_with_count_one_for_events_without_muons(tmp_path):
    batch = make_synthetic_batch(100, seed=3)
    write_batch(batch, tmp_path / "old.h5", format="hdf5")
    with h5py.File(tmp_path / "old.h5", "r") as handle:
        counts, muons, primaries = handle["counts"][()], handle["muons"][()], handle["primaries"][()]
    assert np.array_equal(counts, np.maximum(batch.counts, 1))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    empty = batch.counts == 0
    # the original's placeholder: [major, minor, 0, 0, 0, 0] (dump_muonitron_data.py)
    assert (muons[starts[empty], 2:] == 0).all()
    assert np.array_equal(muons[starts[empty], :2], primaries[empty, :2])


def test_one_zero_muon_row_with_count_one_means_no_muons(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 0.938272, 0, 1500.0], [2, 0, 2e6, 0.2, 3.7274, 0, 2000.0], [3, 0, 3e6, 0.3, 52.0898, 0, 2500.0]]
    muons = [
        [0, 0, 0, 0, 0, 0],  # event 1: the quirk (count 1, all zero) -> N = 0
        [2, 0, 50.0, 1.0, -2.0, 1e-6],  # event 2: one real muon
        [3, 0, 10.0, 3.0, 4.0, 2e-6],  # event 3: two real muons
        [3, 0, 20.0, -3.0, 0.5, 3e-6],
    ]
    _write_h5(tmp_path / "q.h5", primaries, muons, [1, 1, 2])
    result = read_events(tmp_path / "q.h5")
    assert np.array_equal(result.batch.counts, [0, 1, 2])
    assert np.array_equal(result.batch.flat_muons, np.array([[50, 1, -2], [10, 3, 4], [20, -3, 0.5]], np.float32))
    assert np.allclose(result.batch.conditions[:, 0], [1e6, 2e6, 3e6])
    assert np.array_equal(result.batch.conditions[:, 2], [1, 4, 56])  # rest masses in GeV -> A
    slant_km = slant_from_vertical_depth([0.1, 0.2, 0.3], [1500.0, 2000.0, 2500.0]) / 1000
    assert np.allclose(result.batch.conditions[:, 3], slant_km, rtol=1e-6)  # vertical m -> slant km
    assert result.rejected == {}


def test_muon_rows_of_another_event_are_a_count_mismatch(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 0.938272, 0, 1500.0], [2, 0, 2e6, 0.2, 3.7274, 0, 2000.0]]
    muons = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0], [2, 0, 7.0, 1, 1, 0]]
    _write_h5(tmp_path / "m.h5", primaries, muons, [2, 1])  # event 1 claims a muon of event 2
    result = read_events(tmp_path / "m.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.rejected_rows.rows, [0])
    assert np.array_equal(result.batch.flat_muons, [[7.0, 1, 1]])  # event 2's own row is still consistent


def test_counts_beyond_the_muon_dataset_are_a_count_mismatch_for_those_events_only(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 0.938272, 0, 1500.0], [2, 0, 2e6, 0.2, 3.7274, 0, 2000.0]]
    muons = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0]]
    _write_h5(tmp_path / "t.h5", primaries, muons, [1, 3])
    result = read_events(tmp_path / "t.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.batch.counts, [1])


def test_legacy_parquet_wrong_list_lengths_are_rejected_per_row(tmp_path):
    table = pa.table(
        {
            "primary": pa.array([[1e6, 0.1, 0.938272, 2000.0], [1e6, 0.1, 0.938272], [2e6, 0.2, 3.7274, 1500.0]],
                                pa.list_(pa.float32())),
            "muons": pa.array([[[10, 1, 2]], [[10, 1, 2]], [[10, 1]]], pa.list_(pa.list_(pa.float32()))),
        }
    )
    pq.write_table(table, tmp_path / "l.parquet")
    result = read_events(tmp_path / "l.parquet")
    assert result.rejected == {"bad_list_length": 2}
    assert np.array_equal(result.rejected_rows.rows, [1, 2])
    assert np.array_equal(result.batch.flat_muons, [[10, 1, 2]])


def test_legacy_parquet_null_values_are_rejected_as_null_value(tmp_path):
    table = pa.table(
        {
            "primary": pa.array([[1e6, 0.1, 0.938272, 2000.0], None, [1e6, None, 0.938272, 2000.0]],
                                pa.list_(pa.float32())),
            "muons": pa.array([[[10, 1, 2]], [], None], pa.list_(pa.list_(pa.float32()))),
        }
    )
    pq.write_table(table, tmp_path / "n.parquet")
    result = read_events(tmp_path / "n.parquet")
    assert result.rejected == {"null_value": 2}
    assert len(result.batch) == 1


def test_legacy_parquet_decoder_handles_float64_and_large_lists(tmp_path):
    table = pa.table(
        {
            "primary": pa.array([[1e6, 0.1, 0.938272, 2000.0]], pa.large_list(pa.float64())),
            "muons": pa.array([[[10, 1, 2], [20, 3, 4]]], pa.large_list(pa.large_list(pa.float64()))),
        }
    )
    decoded = legacy.decode_parquet_table(table, "mem")
    assert np.array_equal(decoded.batch.counts, [2])
    assert decoded.batch.flat_muons.dtype == np.float32


def test_muon_rows_left_after_the_last_event_reject_the_last_event(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 0.938272, 0, 1500.0], [2, 0, 2e6, 0.2, 3.7274, 0, 2000.0]]
    muons = [[1, 0, 5.0, 1, 1, 0], [2, 0, 6.0, 1, 1, 0], [2, 0, 7.0, 1, 1, 0]]
    _write_h5(tmp_path / "o.h5", primaries, muons, [1, 1])
    result = read_events(tmp_path / "o.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.rejected_rows.rows, [1])


def test_negative_count_is_a_count_mismatch(tmp_path):
    primaries = [[1, 0, 1e6, 0.1, 0.938272, 0, 1500.0], [2, 0, 2e6, 0.2, 3.7274, 0, 2000.0]]
    _write_h5(tmp_path / "n.h5", primaries, [[2, 0, 6.0, 1, 1, 0]], [-1, 1])
    result = read_events(tmp_path / "n.h5")
    assert result.rejected == {"count_mismatch": 1}
    assert np.array_equal(result.batch.flat_muons, [[6.0, 1, 1]])


def test_hdf5_read_in_small_chunks_equals_the_whole_file(tmp_path, monkeypatch):
    from mubundle.data import sources

    batch = make_synthetic_batch(100, seed=9)
    write_batch(batch, tmp_path / "c.h5", format="hdf5")
    monkeypatch.setattr(sources, "HDF5_CHUNK_EVENTS", 7)
    assert len(sources.list_pieces(tmp_path / "c.h5")) == 15
    assert same_events_up_to_depth_rounding(read_events(tmp_path / "c.h5").batch, batch)


def test_legacy_parquet_with_many_row_groups_keeps_row_numbers(tmp_path):
    from mubundle.data.writers import legacy_parquet_table

    batch = make_synthetic_batch(50, seed=10)
    conditions = batch.conditions.copy()
    table = legacy_parquet_table(RaggedBatch(conditions, batch.counts, batch.flat_muons))
    primary = table.column("primary").combine_chunks()
    values = primary.values.to_numpy().copy()
    values[33 * 4 + 2] = 2.3  # a rest mass of no nucleus (GeV), in the 4th row group
    primary = pa.ListArray.from_arrays(primary.offsets, pa.array(values, pa.float32()))
    table = table.set_column(table.schema.get_field_index("primary"), "primary", primary)
    pq.write_table(table, tmp_path / "rg.parquet", row_group_size=10)
    result = read_events(tmp_path / "rg.parquet")
    assert list(result.rejected_rows.rows) == [33] and result.rejected == {"mass_no_nucleus": 1}
    assert result.rejected_rows.raw.conditions[0, 2] == np.float32(2.3)  # quarantined as stored (GeV)
    assert len(result.batch) == 49


def _simulated_events(site: str, depths_km: tuple[float, ...], showers: int = 40):
    """Events as `mubundle simulate --site SITE --depths ...` writes them: one event per shower and
    depth at the slant depth of each vertical depth (the site's overburden), with its shard metadata."""
    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import chunk_metadata, slant_depths_km

    config = SimConfig(showers=showers, depths_km=depths_km, site=site)
    rng = np.random.default_rng(7)
    zenith = np.arccos(rng.uniform(np.cos(np.radians(70.0)), 1.0, showers))
    slant = slant_depths_km(config, zenith)
    muons = make_synthetic_batch(slant.size, seed=8)
    conditions = muons.conditions.copy()
    conditions[:, 1] = np.repeat(zenith, len(depths_km))
    conditions[:, 3] = slant.reshape(-1)
    return RaggedBatch(conditions, muons.counts, muons.flat_muons), chunk_metadata(config, 0), config.site_spec


@pytest.mark.parametrize("format", ["legacy-parquet", "hdf5"])
@pytest.mark.parametrize(("site", "depths_km", "metre_unit"),
                         [("icecube", (1.5, 2.0, 2.5), "m of ice"), ("km3net-arca", (3.0, 3.3), "m of sea water")])
def test_legacy_file_of_simulated_events_states_its_depths_in_the_columns_vertical_metres_and_reads_back_the_same(
        tmp_path, format, site, depths_km, metre_unit):
    """The depth metadata of a legacy file agrees with its depth column (vertical m, the original
    convention): no km unit or km depth list next to it; read back, the events and the site
    (site, medium, depth unit in km as simulate writes it) are those the writer was given."""
    from mubundle.data import conventions
    from mubundle.data.sites import file_metadata, site_of

    batch, metadata, site_spec = _simulated_events(site, depths_km)
    path = tmp_path / ("events.h5" if format == "hdf5" else "events.parquet")
    write_batch(batch, path, format, metadata)
    if format == "hdf5":
        with h5py.File(path, "r") as handle:
            stored, column_m = json.loads(handle.attrs[legacy.METADATA_KEY]), handle["primaries"][:, 6]
    else:
        stored = json.loads(pq.read_schema(path).metadata[legacy.METADATA_KEY.encode()])
        column_m = np.array([row[3] for row in pq.read_table(path).column(legacy.PRIMARY_COLUMN).to_pylist()])

    assert stored["legacy_units"] == "original" and stored["units"]["conditions"]["depth"].startswith(metre_unit)
    assert stored["depth_unit"] == metre_unit and (stored["site"], stored["medium"]) == (site, site_spec.medium.name)
    assert not [key for key in stored if key.endswith("_km")]  # config.depths_km: the command's own settings
    assert stored["depths_sorted_m"] == [depth * 1000.0 for depth in depths_km]
    nearest = np.min(np.abs(column_m[:, None] - np.array(stored["depths_sorted_m"])[None, :]), axis=1)
    assert nearest.max() < 0.01  # m: every event lies at one of the recorded vertical depths

    layout = detect_layout(path)
    result = read_events(path)
    original = conventions.to_original_units(batch.conditions, site)  # through the site's own overburden
    expected, _ = conventions.to_mubundle_units(original, conventions.ORIGINAL, site)
    assert result.batch.conditions.tobytes() == expected.tobytes()  # the float32 vertical metres, bit for bit
    assert same_events_up_to_depth_rounding(result.batch, batch) and not result.rejected
    recorded = file_metadata(path, layout)
    assert {key: recorded[key] for key in ("site", "medium", "depth_unit")} == site_spec.metadata()
    assert site_of(path, layout) == site
