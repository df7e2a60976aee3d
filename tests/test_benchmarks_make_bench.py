"""`make bench` runs the benchmarks that need no input; every other benchmark takes its input on
the command line. A new benchmark must be put on one side or the other."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import BENCHMARKS

MAKEFILE = BENCHMARKS.parent / "Makefile"


def self_contained() -> list[str]:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    match = re.search(r"^SELF_CONTAINED_BENCHMARKS := (.+)$", text, re.MULTILINE)
    assert match, "Makefile: no SELF_CONTAINED_BENCHMARKS"
    return match.group(1).split()


def needs_input(script: Path) -> bool:
    """Whether the script refuses to run without arguments: a required option, a positional argument
    (not optional: no ``nargs="?"`` or ``"*"``; plot_vs_corsika's result files), or a command to run
    given after ``--`` (train_recipe_speed)."""
    source = script.read_text()
    positional = re.search(r'add_argument\(\s*"[^-"][^"]*"(?![^)]*nargs="[?*]")', source)
    return "required=True" in source or "nargs=argparse.REMAINDER" in source or positional is not None


def test_a_positional_argument_counts_as_input(tmp_path):
    script = tmp_path / "b.py"
    script.write_text('parser.add_argument("results", nargs="+", help="files")\n')
    assert needs_input(script)
    script.write_text('parser.add_argument("results", nargs="*", help="files")\nparser.add_argument("--out", default="x")\n')
    assert not needs_input(script)


def test_make_bench_runs_every_benchmark_that_needs_no_input_and_only_those():
    listed = self_contained()
    scripts = {p.stem: p for p in BENCHMARKS.glob("*.py")}
    assert set(listed) <= set(scripts), sorted(set(listed) - set(scripts))
    for name, script in sorted(scripts.items()):
        if name in listed:
            assert not needs_input(script), f"{name} is run by make bench without arguments but needs some"
        else:
            assert needs_input(script), f"{name} needs no input: add it to SELF_CONTAINED_BENCHMARKS in the Makefile"
    assert "bench:" in MAKEFILE.read_text() and "$(SELF_CONTAINED_BENCHMARKS)" in MAKEFILE.read_text()
