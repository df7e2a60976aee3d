"""`mubundle convert` and `mubundle inspect`: summaries, one JSON object, exit code 0 on bad input (convert:
1 with a line saying why when nothing was converted)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from helpers import make_synthetic_batch, same_events_up_to_depth_rounding

from mubundle.data.batch import RaggedBatch
from mubundle.data.convert import convert, print_convert_summary
from mubundle.data.inspect import inspect_paths, print_inspection
from mubundle.data.sources import read_events
from mubundle.data.writers import write_batch


def _messy_inputs(root):
    """A legacy HDF5 file, a legacy Parquet file with one bad row, and a corrupt file."""
    first = make_synthetic_batch(80, seed=1)
    second = make_synthetic_batch(70, seed=2)
    conditions = second.conditions.copy()
    conditions[5, 1] = 2.0  # zenith beyond pi/2
    write_batch(first, root / "in" / "a.h5", format="hdf5")
    write_batch(RaggedBatch(conditions, second.counts, second.flat_muons), root / "in" / "b.parquet",
                format="legacy-parquet")
    (root / "in" / "c.h5").write_bytes(b"\x89HDF\r\n\x1a\ntruncated")
    keep = np.ones(70, bool)
    keep[5] = False
    return RaggedBatch.concat([first, second.take(np.flatnonzero(keep))])


def test_convert_writes_native_shards_a_quarantine_and_names_the_failed_file(tmp_path, capsys):
    expected = _messy_inputs(tmp_path)
    summary = convert([tmp_path / "in"], tmp_path / "out", events_per_shard=60)
    assert summary["events"] == len(expected) and summary["muons"] == expected.n_muons
    assert summary["rejected"] == {"zenith_out_of_range": 1}
    assert [f["path"] for f in summary["failed_files"]] == [str(tmp_path / "in" / "c.h5")]
    assert summary["quarantine"] == str(tmp_path / "out" / "_quarantine" / "rejected.parquet")
    back = read_events(tmp_path / "out")  # the quarantine folder is not part of the dataset
    assert same_events_up_to_depth_rounding(back.batch, expected) and not back.failed_files and not back.rejected
    print_convert_summary(summary)
    printed = capsys.readouterr().out
    assert "zenith_out_of_range" in printed and "c.h5" in printed


def test_inspect_reports_counts_quantiles_ranges_rejections_and_failures(tmp_path):
    expected = _messy_inputs(tmp_path)
    report = inspect_paths([tmp_path / "in"])
    assert report["events"] == len(expected) and report["muons"] == expected.n_muons
    assert report["zero_muon_events"] == int((expected.counts == 0).sum())
    assert report["rejected"] == {"zenith_out_of_range": 1}
    assert report["layouts"] == {"legacy-hdf5": 1, "legacy-parquet": 1}
    assert report["multiplicity_quantiles"]["max"] == int(expected.counts.max())
    assert report["multiplicity_quantiles"]["0.5"] == int(np.quantile(expected.counts, 0.5, method="inverted_cdf"))
    assert report["ranges"]["energy"] == [float(expected.conditions[:, 0].min()), float(expected.conditions[:, 0].max())]
    assert report["failed_files"][0]["path"].endswith("c.h5")


def test_inspect_json_prints_exactly_one_json_object(tmp_path, capsys):
    _messy_inputs(tmp_path)
    print_inspection(inspect_paths([tmp_path / "in"]), as_json=True)
    out = capsys.readouterr().out
    decoded, end = json.JSONDecoder().raw_decode(out)
    assert out[end:].strip() == ""
    assert {"events", "muons", "zero_muon_events", "rejected", "failed_files"} <= set(decoded)


def test_inspect_human_table_names_reasons_and_failed_files(tmp_path, capsys):
    _messy_inputs(tmp_path)
    print_inspection(inspect_paths([tmp_path / "in"]))
    out = capsys.readouterr().out
    assert "zenith_out_of_range" in out and "FAILED" in out and "c.h5" in out


def test_cli_inspect_json_exits_zero_with_bad_input_and_prints_one_object(tmp_path):
    _messy_inputs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mubundle.cli", "inspect", str(tmp_path / "in"), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rejected"] == {"zenith_out_of_range": 1} and len(report["failed_files"]) == 1


def test_cli_convert_exits_zero_and_writes_shards(tmp_path):
    _messy_inputs(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mubundle.cli", "convert", str(tmp_path / "in"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "out").rglob("part-*.parquet"))


def test_cli_convert_of_a_missing_file_prints_the_summary_then_why_nothing_was_converted_and_exits_1(tmp_path, capsys):
    from mubundle import errors
    from mubundle.cli import main

    missing = tmp_path / "missing.parquet"
    assert main(["convert", str(missing), "--out", str(tmp_path / "out")]) == errors.EXIT_NOTHING
    captured = capsys.readouterr()
    assert "events 0" in captured.out and f"FAILED {missing}: file not found" in captured.out
    assert captured.err.strip().splitlines() == [
        "mubundle convert: nothing converted: no input file could be read (1 FAILED above)"
    ]


def test_cli_convert_with_every_row_rejected_says_so_and_exits_1(tmp_path, capsys):
    from mubundle import errors
    from mubundle.cli import main

    batch = make_synthetic_batch(6, seed=3)
    conditions = batch.conditions.copy()
    conditions[:, 1] = 2.0  # every zenith beyond pi/2
    write_batch(RaggedBatch(conditions, batch.counts, batch.flat_muons), tmp_path / "bad.parquet",
                format="legacy-parquet")
    out = tmp_path / "out"
    argv = ["convert", str(tmp_path / "bad.parquet"), str(tmp_path / "gone.h5"), "--out", str(out)]
    assert main(argv) == errors.EXIT_NOTHING
    captured = capsys.readouterr()
    assert "zenith_out_of_range" in captured.out and not list(out.rglob("part-*.parquet"))
    assert captured.err.strip().splitlines() == [
        "mubundle convert: nothing converted: 1 input file could not be read (FAILED above); all 6 rows read were "
        f"rejected (zenith_out_of_range: 6; kept in {out / '_quarantine' / 'rejected.parquet'})"
    ]


def test_cli_convert_of_an_input_without_events_exits_1_saying_the_file_held_none(tmp_path, capsys):
    from mubundle import errors
    from mubundle.cli import main

    write_batch(make_synthetic_batch(0, seed=3), tmp_path / "empty.parquet")
    assert main(["convert", str(tmp_path / "empty.parquet"), "--out", str(tmp_path / "out")]) == errors.EXIT_NOTHING
    assert capsys.readouterr().err.strip().splitlines() == [
        "mubundle convert: nothing converted: 1 readable file held no event"
    ]
