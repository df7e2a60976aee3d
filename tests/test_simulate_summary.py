"""How ``mubundle simulate`` ends and what it refuses up front; the help texts of every subcommand.

A finished simulate prints one JSON line on stdout (the dataset's figures, as ``generate`` does) and
one human line on stderr; ``--no-progress`` leaves stderr without a bar. ``--dask`` without
dask.distributed is refused before anything is written. Every option says what it does, and the
options whose default lives in a config dataclass state that dataclass's value.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mubundle.cli import build_parser, main
from mubundle.data.dataset import read_manifest
from mubundle.data.native import read_shard

SUMMARY_KEYS = {"out", "showers", "events", "muons", "shards", "seconds", "not_simulated", "quarantine"}
TINY = ["--energy", "1e4", "--depths", "0,1", "--min-energy", "20", "--seed", "2"]


def dataset_figures(out) -> tuple[int, int, int]:
    """(events, muons, shards) counted from the shard files themselves."""
    shards = sorted(out.glob("*/part-*.parquet"))
    batches = [read_shard(path) for path in shards]
    return sum(len(b) for b in batches), sum(b.n_muons for b in batches), len(shards)


def one_json_line(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout is not one line: {stdout!r}"
    return json.loads(lines[0])


def test_simulate_prints_one_json_summary_line_with_the_datasets_figures(tmp_path, capfd):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--showers", "3", *TINY, "--no-progress"]) == 0
    captured = capfd.readouterr()  # file-descriptor level: a Fortran banner on stdout would show here
    summary = one_json_line(captured.out)
    assert set(summary) == SUMMARY_KEYS
    events, muons, shards = dataset_figures(out)
    assert (summary["showers"], summary["events"], summary["shards"]) == (3, 6, 1) == (3, events, shards)
    assert summary["muons"] == muons > 0
    assert summary["out"] == str(out) and summary["seconds"] > 0
    assert summary["not_simulated"] is None and summary["quarantine"] is None  # sampled primaries
    assert read_manifest(out)["muons"] == muons  # the manifest records what the line reports
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith(f"wrote 6 events ({muons} muons) of 3 showers to {out} (1 shard) in ")


def test_no_progress_leaves_stderr_without_a_bar_and_a_continued_run_reports_the_whole_dataset(tmp_path, capfd):
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--showers", "2", *TINY, "--no-progress"]) == 0
    first = capfd.readouterr()
    assert "\r" not in first.err and "shower/s" not in first.err and "%|" not in first.err
    lines = first.err.strip().splitlines()  # a warning about depth 0 may come first, then the summary line
    assert lines[-1].startswith("wrote 4 events") and all(line.startswith("mubundle simulate: ") for line in lines[:-1])
    # the same command again continues the finished dataset (nothing to simulate): the bar is back without
    # the flag, and the figures are those of the whole dataset, muons read from the kept shard
    assert main(["simulate", "--out", str(out), "--showers", "2", *TINY]) == 0
    again = capfd.readouterr()
    assert "shower" in again.err and "%|" in again.err
    before, after = one_json_line(first.out), one_json_line(again.out)
    assert {k: after[k] for k in ("events", "muons", "shards", "showers")} == \
        {k: before[k] for k in ("events", "muons", "shards", "showers")}


def test_the_library_functions_take_progress_false(tmp_path, capsys):
    from mubundle.sim.config import SimConfig
    from mubundle.sim.given import simulate_given_primaries
    from mubundle.sim.run import simulate_dataset

    config = SimConfig(showers=1, energy_range=(1e4, 1e4), depths_km=(0.0,), min_energy=20.0)
    simulate_dataset(config, tmp_path / "sim", progress=False)
    simulate_given_primaries([tmp_path / "sim"], tmp_path / "resim", config, progress=False)
    assert "shower" not in capsys.readouterr().err
    assert read_manifest(tmp_path / "resim")["showers"] == 1


def test_simulate_primaries_summary_counts_the_rows_not_simulated_and_names_their_quarantine(tmp_path, capfd):
    primaries = tmp_path / "primaries.parquet"  # one NaN row (reader), one beyond the simulator's 89 deg
    pq.write_table(pa.table({"energy": [2e4, np.nan, 1e4], "zenith": [0.1, 0.2, np.radians(89.5)],
                             "mass": [4.0, 1.0, 1.0], "depth": [1.0, 1.0, 1.0]}), primaries)
    out = tmp_path / "resim"
    assert main(["simulate", "--primaries", str(primaries), "--out", str(out), "--repeat", "2", "--depths", "0,0.5",
                 "--min-energy", "20", "--seed", "3", "--no-progress"]) == 0
    captured = capfd.readouterr()
    summary = one_json_line(captured.out)
    assert set(summary) == SUMMARY_KEYS
    events, muons, shards = dataset_figures(out)
    assert summary["showers"] == 2  # one usable primary, twice
    assert (summary["events"], summary["muons"], summary["shards"]) == (events, muons, shards) == (4, muons, 1)
    assert summary["not_simulated"] == 2 == read_manifest(out)["not_simulated"]
    assert summary["quarantine"] == str(out / "_quarantine" / "rejected.parquet")
    assert pq.read_table(summary["quarantine"]).num_rows == 2
    assert "\r" not in captured.err
    assert captured.err.strip().splitlines()[-1].endswith(
        f"; 2 primaries not simulated (rows in {out / '_quarantine' / 'rejected.parquet'})")


def test_dask_without_distributed_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails as if not installed
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--showers", "5", "--energy-range", "1e4", "1e5",
                 "--dask", "local:2"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ("mubundle simulate: error: --dask needs dask.distributed: "
                                    "pip install 'mubundle[scale]'")
    assert captured.out == "" and not out.exists()
    # generate checks the same way before it loads a model or opens its output
    generated = tmp_path / "g.parquet"
    assert main(["generate", "--flux", "H3a", "--events", "5", "--out", str(generated), "--dask", "local:2"]) == 2
    assert "pip install 'mubundle[scale]'" in capsys.readouterr().err and not generated.exists()
    # and so does the library call
    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_dataset

    with pytest.raises(ValueError, match=r"pip install 'mubundle\[scale\]'"):
        simulate_dataset(SimConfig(showers=1), tmp_path / "lib", dask="local:2")
    assert not (tmp_path / "lib").exists()


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def option_help(command: str, flag: str) -> str:
    return subcommands()[command]._option_string_actions[flag].help


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_of_every_subcommand_has_help(command):
    parser = subcommands()[command]
    silent = [action.option_strings[0] if action.option_strings else action.dest for action in parser._actions
              if action.help != argparse.SUPPRESS and not action.help]
    assert not silent, f"mubundle {command} --help shows {', '.join(silent)} without help"


def test_simulate_and_generate_spell_the_progress_switch_the_same_way():
    assert option_help("simulate", "--no-progress") == option_help("generate", "--no-progress")


def test_config_backed_defaults_are_stated_from_their_dataclasses():
    from mubundle.train.config import TrainConfig
    from mubundle.train.distill import DistillConfig
    from mubundle.train.multiplicity_fit import MultiplicityFitConfig

    train = TrainConfig()
    for flag, value in (("--max-steps", train.max_steps), ("--batch-size", train.batch_size), ("--seed", train.seed),
                        ("--max-muons-per-step", train.max_muons_per_step), ("--device", train.device),
                        ("--lr-decay-final", f"{train.lr_decay_final:g}")):
        assert f"default: the config's, {value} in TrainConfig" in option_help("train", flag), flag
    refit = MultiplicityFitConfig()
    for flag, value in (("--seed", refit.seed), ("--lr", f"{refit.lr:g}"), ("--batch-size", refit.batch_size),
                        ("--max-epochs", refit.max_epochs), ("--patience", refit.patience),
                        ("--restarts", refit.restarts)):
        assert f"(default {value})" in option_help("refit-multiplicity", flag), flag
    distill = DistillConfig()
    for flag, value in (("--steps", distill.steps), ("--batch-size", distill.batch_size), ("--seed", distill.seed)):
        assert f"default: the config's, {value} in DistillConfig" in option_help("distill", flag), flag


def test_evaluate_and_convert_state_their_seed_defaults(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED seed of the model's sampling: the same command gives the same report (default 0)" in text
    assert "every ratio per seed and its mean (default 1)" in text
    assert "use at most this many reference events (default: all)" in text
    assert main(["convert", "--help"]) == 0
    assert "seed of the muon propagation (--depths; default 0)" in " ".join(capsys.readouterr().out.split())
