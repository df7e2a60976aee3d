"""mubundle.benchmark_cli and the benchmarks' refusals: bad input ends a script with one line on
stderr, a non-zero documented exit code and nothing on stdout; the JSON is strict."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import BENCHMARKS
from mubundle import benchmark_cli
from mubundle.errors import EXIT_INTERNAL, EXIT_NOTHING, EXIT_USAGE, InvalidValueError


def strict(text: str):
    """json.loads that refuses NaN / Infinity (Python's json accepts them by default)."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))


def test_print_json_writes_non_finite_floats_as_null(capsys):
    benchmark_cli.print_json({"nan": float("nan"), "inf": float("inf"), "numpy": np.float64("-inf"),
                              "array": np.array([1.0, np.nan]), "ok": 0.5, "nested": [{"x": math.nan, "reason": "empty bin"}],
                              "count": np.int64(3), "tuple": (1, 2)})
    out = capsys.readouterr().out
    assert out.endswith("\n") and "NaN" not in out and "Infinity" not in out
    assert strict(out) == {"nan": None, "inf": None, "numpy": None, "array": [1.0, None], "ok": 0.5,
                           "nested": [{"x": None, "reason": "empty bin"}], "count": 3, "tuple": [1, 2]}


def test_print_json_line_is_one_line(capsys):
    benchmark_cli.print_json_line({"a": [1, 2], "b": {"c": float("nan")}})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and strict(lines[0]) == {"a": [1, 2], "b": {"c": None}}


def test_run_turns_exceptions_into_one_line_and_the_documented_code(capsys, monkeypatch):
    monkeypatch.delenv("MUBUNDLE_DEBUG", raising=False)

    def refuse():
        raise InvalidValueError("data.parquet: no valid event")

    def bug():
        raise ZeroDivisionError("division by zero")

    def nothing():
        raise benchmark_cli.NothingToReport("no shower in decade 1e12")

    def interrupted():
        raise KeyboardInterrupt

    for main, code, text in ((refuse, EXIT_USAGE, "bench: error: data.parquet: no valid event"),
                             (bug, EXIT_INTERNAL, "bench: error: internal error ZeroDivisionError"),
                             (nothing, EXIT_NOTHING, "bench: error: no shower in decade 1e12"),
                             (interrupted, 130, "bench: error: interrupted")):
        with pytest.raises(SystemExit) as stop:
            benchmark_cli.run(main, name="bench")
        captured = capsys.readouterr()
        assert stop.value.code == code
        assert captured.out == "" and len(captured.err.splitlines()) == 1 and captured.err.startswith(text)
        assert "Traceback" not in captured.err
    with pytest.raises(SystemExit) as stop:
        benchmark_cli.run(lambda: 3, name="bench")
    assert stop.value.code == 3


def test_usage_errors_are_one_line_and_help_shows_defaults(capsys):
    parser = benchmark_cli.make_parser("First line\nof the description.\n\nSecond paragraph.", prog="bench")
    parser.add_argument("--events", type=benchmark_cli.positive_int, default=5, help="events")
    parser.add_argument("--model", default=None, help="model (default: the shipped one)")
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--events", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.splitlines() == ["bench: error: argument --events: must be an integer >= 1, got '0'"]
    text = parser.format_help()
    assert "First line\nof the description." in text and "Second paragraph" not in text
    assert "(default: 5)" in text and "default: None" not in text


def test_require_events_names_the_file_and_why():
    benchmark_cli.require_events(3, [{"path": "a.parquet", "error": "file not found"}])  # some read: the caller reports
    with pytest.raises(InvalidValueError, match=r"a.parquet: file not found \(and 1 more file\)"):
        benchmark_cli.require_events(0, [{"path": "a.parquet", "error": "file not found"}, {"path": "b", "error": "x"}])
    with pytest.raises(InvalidValueError, match=r"d.parquet: no valid event \(4 rows rejected: nan_condition 4\)"):
        benchmark_cli.require_events(0, [], {"nan_condition": 4}, ["d.parquet"])


# script, its arguments with a missing input file (or a negative count), with a zero count or a bad value
# (PRESENT: an existing file): run as `python benchmarks/NAME.py`
REFUSALS = [
    ("generator_bias", ["--data", "MISSING.parquet"], ["--seeds", "0"]),
    ("multiplicity_moments", ["--data", "MISSING.parquet"], ["--bootstrap", "0"]),
    ("muon_energy_tail", ["--data", "MISSING.parquet"], ["--data", "MISSING.parquet", "--seed", "-1"]),
    ("vs_corsika", ["--corsika", "MISSING"], ["--corsika", "PRESENT", "--repeat", "0"]),
    ("plot_vs_corsika", ["MISSING.jsonl"], ["PRESENT", "--out", "no/such/folder/figure.png"]),
    ("io_decode", ["--events", "-5"], ["--repeats", "0"]),
    ("train_step", ["--threads", "0"], ["--steps", "0"]),
]


@pytest.mark.parametrize("script, missing, zero", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_benchmark_refuses_bad_input_with_one_line_and_no_output(script, missing, zero, tmp_path):
    (tmp_path / "PRESENT").write_text("an existing file\n")
    for arguments in (missing, zero):
        done = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), *arguments], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path, env={**os.environ, "MUBUNDLE_DEBUG": ""})
        assert done.returncode != 0, (arguments, done.stdout)
        assert done.stdout == "", (arguments, done.stdout)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), (arguments, done.stderr)
        assert "Traceback" not in done.stderr
        named = "MISSING" if arguments is missing and "MISSING" in arguments[-1] else arguments[-2]  # the file or the flag
        assert named in lines[0], lines[0]
