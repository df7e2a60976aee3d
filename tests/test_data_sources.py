"""Input discovery, layout detection and bad files: never a traceback, always named."""

from __future__ import annotations

import numpy as np
from helpers import make_synthetic_batch, same_events_up_to_depth_rounding

from mubundle.data import native
from mubundle.data.batch import RaggedBatch
from mubundle.data.sources import detect_layout, expand_paths, read_events
from mubundle.data.writers import write_batch


def _good_and_bad_files(tmp_path):
    batches = [make_synthetic_batch(100, seed=s) for s in range(3)]
    write_batch(batches[0], tmp_path / "a.parquet")
    write_batch(batches[1], tmp_path / "b.h5", format="hdf5")
    write_batch(batches[2], tmp_path / "d.parquet", format="legacy-parquet")
    good = (tmp_path / "a.parquet").read_bytes()
    (tmp_path / "c_truncated.parquet").write_bytes(good[: len(good) // 2])
    (tmp_path / "c_garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    (tmp_path / "c_text.parquet").write_text("not parquet")
    return batches


def test_corrupt_truncated_and_foreign_files_are_reported_and_good_files_still_load(tmp_path):
    batches = _good_and_bad_files(tmp_path)
    result = read_events([tmp_path])
    assert same_events_up_to_depth_rounding(result.batch, RaggedBatch.concat(batches))
    failed = {f["path"]: f["error"] for f in result.failed_files}
    assert set(failed) == {str(tmp_path / n) for n in ("c_truncated.parquet", "c_garbage.h5", "c_text.parquet")}
    assert all(error for error in failed.values())


def test_a_foreign_hdf5_file_says_which_datasets_of_the_layout_it_lacks_and_what_it_holds(tmp_path):
    import h5py

    with h5py.File(tmp_path / "foreign.h5", "w") as handle:
        handle["energies"] = np.arange(3.0)
        handle["muons"] = np.zeros((2, 6))
    error = read_events(tmp_path / "foreign.h5").failed_files[0]["error"]
    assert "without the dataset(s) 'primaries', 'counts' of the original pipeline's layout" in error
    assert error.endswith("it holds energies, muons") and "\n" not in error


def test_missing_file_and_empty_glob_are_failures_not_silence(tmp_path):
    result = read_events([tmp_path / "nope.parquet", str(tmp_path / "*.h5")])
    assert len(result.batch) == 0
    assert [f["path"] for f in result.failed_files] == [str(tmp_path / "nope.parquet"), str(tmp_path / "*.h5")]
    assert "not found" in result.failed_files[0]["error"]


def test_layout_detection_reads_signatures_not_suffixes(tmp_path):
    batch = make_synthetic_batch(5, seed=0)
    write_batch(batch, tmp_path / "native.dat")
    write_batch(batch, tmp_path / "old.dat", format="hdf5")
    assert detect_layout(tmp_path / "native.dat") == "native"
    assert detect_layout(tmp_path / "old.dat") == "legacy-hdf5"


def test_a_parquet_file_of_primaries_only_is_read_as_primaries_and_refused_as_events_saying_why(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mubundle.data.primaries import PrimaryReadReport, iter_primaries

    pq.write_table(pa.table({"energy": [1e5, np.nan, 1e6], "zenith": [0.3, 0.2, 0.1], "mass": [1, 4, 56],
                             "depth": [2.0, 2.0, 1.5]}), tmp_path / "primaries.parquet")  # float64 and int64 as pandas writes
    pq.write_table(pa.table({"energy": [1e5], "zen": [0.3]}), tmp_path / "other.parquet")
    loaded = read_events([tmp_path / "primaries.parquet", tmp_path / "other.parquet"])
    assert len(loaded.batch) == 0
    errors = [f["error"] for f in loaded.failed_files]
    assert "primaries only" in errors[0] and "generate --primaries" in errors[0]
    assert "missing zenith, mass, depth, muons" in errors[1]
    assert detect_layout(tmp_path / "primaries.parquet", primaries=True) == "primaries"
    report = PrimaryReadReport()
    pieces = list(iter_primaries([tmp_path / "primaries.parquet", tmp_path / "other.parquet"], report))
    np.testing.assert_allclose(pieces[0].conditions, [[1e5, 0.3, 1, 2.0], [1e6, 0.1, 56, 1.5]], rtol=1e-6)
    assert pieces[0].rows.tolist() == [0, 2] and pieces[0].rejected.rows.tolist() == [1]
    assert report.rejected == {"non_finite": 1} and [f["path"] for f in report.failed_files] == [str(tmp_path / "other.parquet")]


def test_expand_paths_is_sorted_deduplicated_and_skips_underscore_and_dot_entries(tmp_path):
    for name in ("b.parquet", "a.h5", "sub/c.parquet", "_quarantine/rejected.parquet", ".hidden.parquet", "x.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = expand_paths([tmp_path, tmp_path / "b.parquet", str(tmp_path / "*.h5")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.h5", "b.parquet", "sub/c.parquet"]


def test_max_events_cuts_exactly(tmp_path):
    for k in range(3):
        native.write_shard(make_synthetic_batch(40, seed=k), native.shard_path(tmp_path, k))
    result = read_events(tmp_path, max_events=55)
    assert len(result.batch) == 55
    assert np.array_equal(result.batch.conditions[:40], make_synthetic_batch(40, seed=0).conditions)


def test_a_flipped_byte_inside_a_native_shard_is_a_read_error_not_different_data(tmp_path):
    batch = make_synthetic_batch(300, seed=4)
    write_batch(batch, tmp_path / "a.parquet")
    data = bytearray((tmp_path / "a.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the muon value pages
    (tmp_path / "a.parquet").write_bytes(bytes(data))
    result = read_events(tmp_path / "a.parquet")
    assert len(result.batch) == 0
    assert [f["path"] for f in result.failed_files] == [str(tmp_path / "a.parquet")]
