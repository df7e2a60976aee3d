"""Validation: every rejection reason, first-reason-wins order, quarantine file contents."""

from __future__ import annotations

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_synthetic_batch

from mubundle.data import native
from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import read_events
from mubundle.data.validate import REASONS, DecodedRows, validate, write_quarantine

GOOD_PRIMARY = [1e6, 0.3, 4.0, 2.0]
GOOD_MUON = [100.0, 1.0, -1.0]


def _native_file(path, primary, muons, weight=None):
    batch = RaggedBatch(np.array([GOOD_PRIMARY, primary], np.float32), [1, len(muons)],
                        np.array([GOOD_MUON, *muons], np.float32).reshape(-1, 3),
                        None if weight is None else np.array([1.0, weight]))
    native.write_shard(batch, path)


def _write_null_value(path):
    table = native.batch_to_table(make_synthetic_batch(2, seed=0))
    energy = pa.array([1e6, None], pa.float32())
    pq.write_table(table.set_column(0, "energy", energy), path)


#: GOOD_PRIMARY in the original pipeline's units (He4 rest mass in GeV, vertical depth in m)
GOOD_ORIGINAL = [1e6, 0.3, 3.7274, 2000.0]


def _write_bad_list_length(path):
    pq.write_table(pa.table({
        "primary": pa.array([GOOD_ORIGINAL, GOOD_ORIGINAL[:3]], pa.list_(pa.float32())),
        "muons": pa.array([[GOOD_MUON], [GOOD_MUON]], pa.list_(pa.list_(pa.float32()))),
    }), path)


def _write_count_mismatch(path):
    with h5py.File(path, "w") as handle:
        handle["primaries"] = np.array([[1, 0, 1e6, 0.3, 3.7274, 0, 2000.0], [2, 0, 1e6, 0.3, 3.7274, 0, 2000.0]], np.float32)
        handle["muons"] = np.array([[1, 0, 100, 1, 1, 0], [9, 9, 100, 1, 1, 0]], np.float32)
        handle["counts"] = np.array([1, 1], np.int32)


def _write_original_parquet(path, second_primary):
    pq.write_table(pa.table({
        "primary": pa.array([GOOD_ORIGINAL, second_primary], pa.list_(pa.float32())),
        "muons": pa.array([[GOOD_MUON], [GOOD_MUON]], pa.list_(pa.list_(pa.float32()))),
    }), path)


def _write_corsika(path, second_shower):
    from corsika_writer import corsika_bytes, muon_rows

    first = dict(code=14, energy=1e6, zenith=0.2, particles=muon_rows([2000.0], [100.0], [0.0]))
    thinning = "particles" in second_shower and second_shower["particles"].shape[1] == 8
    if thinning:
        first["particles"] = muon_rows([2000.0], [100.0], [0.0], thinning=True)
    path.write_bytes(corsika_bytes([first, second_shower], thinning=thinning))


CASES = {
    "null_value": _write_null_value,
    "bad_list_length": _write_bad_list_length,
    "count_mismatch": _write_count_mismatch,
    "non_finite": lambda p: _native_file(p, [np.inf, 0.3, 4, 2.0], []),
    "energy_non_positive": lambda p: _native_file(p, [0.0, 0.3, 4, 2.0], []),
    "zenith_out_of_range": lambda p: _native_file(p, [1e6, 1.6, 4, 2.0], []),
    "mass_below_one": lambda p: _native_file(p, [1e6, 0.3, 0.5, 2.0], []),
    "depth_negative": lambda p: _native_file(p, [1e6, 0.3, 4, -0.1], []),
    "muon_non_finite": lambda p: _native_file(p, GOOD_PRIMARY, [GOOD_MUON, [10.0, np.nan, 0.0]]),
    "muon_energy_non_positive": lambda p: _native_file(p, GOOD_PRIMARY, [[-1.0, 0.0, 0.0]]),
    "weight_invalid": lambda p: _native_file(p, GOOD_PRIMARY, [], weight=-1.0),
    "mass_no_nucleus": lambda p: _write_original_parquet(p, [1e6, 0.3, 2.3, 2000.0]),  # between d and He3
    "vertical_depth_out_of_range": lambda p: _write_original_parquet(p, [1e6, 0.3, 3.7274, 25000.0]),
    "primary_not_nucleus": lambda p: _write_corsika(p, dict(code=1, energy=1e5, zenith=0.1)),  # a gamma
    "muon_thinned": lambda p: _write_corsika(
        p, dict(code=14, energy=1e6, zenith=0.1, particles=muon_rows_thinned_weight_two())
    ),
    "energy_implausible": lambda p: _native_file(p, [1e30, 0.3, 4, 2.0], []),
    "mass_implausible": lambda p: _native_file(p, [1e6, 0.3, 300.0, 2.0], []),
    "depth_implausible": lambda p: _native_file(p, [1e6, 0.3, 4, 1e6], []),
    "muon_position_implausible": lambda p: _native_file(p, GOOD_PRIMARY, [GOOD_MUON, [10.0, 1e30, 0.0]]),
    "muon_energy_above_primary": lambda p: _native_file(p, GOOD_PRIMARY, [[2e6, 0.0, 0.0]]),
}


def muon_rows_thinned_weight_two():
    from corsika_writer import muon_rows

    return muon_rows([3000.0], [10.0], [5.0], weights=[2.0], thinning=True)


def test_every_documented_reason_has_a_test_case():
    assert set(CASES) == set(REASONS)


@pytest.mark.parametrize("reason", sorted(CASES))
def test_bad_second_row_is_rejected_with_its_reason_and_the_good_row_is_kept(tmp_path, reason):
    suffix = ".h5" if reason == "count_mismatch" else ".parquet"
    path = tmp_path / f"{reason}{suffix}"
    CASES[reason](path)
    result = read_events(path)
    assert result.rejected == {reason: 1}
    assert len(result.batch) == 1 and not result.failed_files
    assert list(result.rejected_rows.rows) == [1]
    assert list(result.rejected_rows.files) == [str(path)]


def test_zenith_of_exactly_pi_over_two_and_zero_are_accepted():
    batch = RaggedBatch(np.array([[1e6, np.pi / 2, 1, 0], [1e6, 0, 1, 0]], np.float32), [0, 0], np.zeros((0, 3)))
    accepted, rejected = validate(DecodedRows("mem", batch, np.zeros(2, np.int8), np.arange(2)))
    assert len(accepted) == 2 and len(rejected) == 0


def test_surface_muons_kilometres_from_the_axis_are_accepted_and_a_garbage_position_is_not():
    """`simulate --depths 0` puts GeV muons of inclined iron showers 12-16 km from the axis: such
    simulated events were rejected by the former 10 km bound; no muon lies beyond 1000 km."""
    conditions = np.array([[1e6, 1.05, 56, 0.0]] * 3, np.float32)
    muons = np.array([[2.0, 15_900.0, -3_000.0], [1.1, -11_700.0, 400.0], [3.0, 2e6, 0.0]], np.float32)
    batch = RaggedBatch(conditions, [1, 1, 1], muons)
    accepted, rejected = validate(DecodedRows("mem", batch, np.zeros(3, np.int8), np.arange(3)))
    assert len(accepted) == 2 and rejected.counts_by_reason() == {"muon_position_implausible": 1}


def test_the_first_failing_check_names_the_reason():
    conditions = np.array([[np.nan, 5.0, 0.1, -1.0], [-1.0, 5.0, 0.1, -1.0], [1.0, 5.0, 0.1, -1.0]], np.float32)
    batch = RaggedBatch(conditions, [0, 0, 0], np.zeros((0, 3)))
    _, rejected = validate(DecodedRows("mem", batch, np.zeros(3, np.int8), np.arange(3)))
    assert list(rejected.reasons) == ["non_finite", "energy_non_positive", "zenith_out_of_range"]


def test_all_valid_rows_come_back_without_a_copy():
    batch = make_synthetic_batch(50, seed=1)
    accepted, rejected = validate(DecodedRows("mem", batch, np.zeros(50, np.int8), np.arange(50)))
    assert accepted is batch and len(rejected) == 0


def test_quarantine_file_holds_file_row_reason_and_raw_values(tmp_path):
    path = tmp_path / "bad.parquet"
    _native_file(path, GOOD_PRIMARY, [[10.0, np.nan, 0.0]])
    result = read_events(path)
    written = write_quarantine(result.rejected_rows, tmp_path / "_q" / "rejected.parquet")
    table = pq.read_table(written).to_pylist()
    assert len(table) == 1
    row = table[0]
    assert row["file"] == str(path) and row["row"] == 1 and row["reason"] == "muon_non_finite"
    assert row["energy"] == pytest.approx(1e6) and np.isnan(row["muons"][0][1])


def test_nothing_to_quarantine_writes_no_file(tmp_path):
    result = read_events(tmp_path / "missing.parquet")
    assert write_quarantine(result.rejected_rows, tmp_path / "q.parquet") is None
    assert not (tmp_path / "q.parquet").exists()
