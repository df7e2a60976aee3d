"""Training paths recorded in model.json: consecutive shards fold into one brace expression."""

from __future__ import annotations

import subprocess

from mubundle.data.path_ranges import brace_paths


def test_consecutive_shards_fold_and_bash_expands_them_back_in_order():
    paths = [f"data/d/part-{i:05d}.parquet" for i in range(240)] + ["data/ext", "x/a-7.h5"]
    paths += [f"data/e/part-{i:03d}.parquet" for i in (8, 9, 10, 12)]
    text = brace_paths(paths)
    assert text == ("data/d/part-{00000..00239}.parquet data/ext x/a-7.h5 "
                    "data/e/part-{008..010}.parquet data/e/part-012.parquet")
    expanded = subprocess.run(["bash", "-c", f"echo {text}"], capture_output=True, text=True, check=True).stdout.split()
    assert expanded == paths


def test_short_runs_gaps_and_other_widths_stay_as_they_are():
    assert brace_paths(["a/p-1.parquet", "a/p-2.parquet"]) == "a/p-1.parquet a/p-2.parquet"
    assert brace_paths(["p-09", "p-10", "p-11"]) == "p-{09..11}"
    assert brace_paths(["p-8", "p-9", "p-10"]) == "p-8 p-9 p-10"  # the width changes: not one brace run
    assert brace_paths([]) == ""
