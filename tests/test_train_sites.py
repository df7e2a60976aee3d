"""`mubundle train` on data of two sites stops with one line naming both, before reading events."""

from __future__ import annotations

import numpy as np

from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard


def _dataset(directory, site):
    directory.mkdir()
    batch = RaggedBatch(np.array([[1e5, 0.1, 1.0, 1.5]] * 20, dtype=np.float32), np.ones(20, dtype=np.int64),
                        np.array([[100.0, 1.0, 2.0]] * 20, dtype=np.float32))
    write_shard(batch, directory / "part-00000.parquet", {"producer": "mubundle simulate", "site": site,
                                                           "config": {"site": site}})
    return directory


def test_train_on_two_sites_is_one_line_naming_them(tmp_path, capsys):
    ice, sea = _dataset(tmp_path / "ice", "icecube"), _dataset(tmp_path / "sea", "km3net-arca")
    run = tmp_path / "run"
    code = main(["train", "--data", str(ice), str(sea), "--run", str(run), "--max-steps", "2", "--batch-size", "8"])
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "mixes observation sites: icecube (e.g. " in errors[0] and "km3net-arca (e.g. " in errors[0]
    assert not list(run.glob("checkpoints/*"))  # nothing trained


def test_validation_data_of_another_site_is_refused_naming_both(tmp_path, capsys):
    ice, sea = _dataset(tmp_path / "ice", "icecube"), _dataset(tmp_path / "sea", "km3net-arca")
    code = main(["train", "--data", str(ice), "--validation", str(sea), "--run", str(tmp_path / "run"),
                 "--max-steps", "2", "--batch-size", "8"])
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "the training and validation data mix observation sites: icecube" in errors[0]
    assert "km3net-arca (e.g. " in errors[0]
