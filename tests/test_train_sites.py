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


def test_the_training_provenance_detects_each_files_layout_and_reads_its_metadata_once(tmp_path, monkeypatch):
    """The site check and the domain's provenance share one pass over the training files before
    any event is read (for a URL every open is a request); an unreadable file is still skipped."""
    from collections import Counter
    from pathlib import Path

    from mubundle.data import native, sites, sources
    from mubundle.data.writers import write_batch
    from mubundle.train import loop

    data = _dataset(tmp_path / "data", "icecube")
    write_batch(RaggedBatch(np.array([[2e5, 0.2, 1.0, 1.5]] * 5, dtype=np.float32), np.ones(5, dtype=np.int64),
                            np.array([[50.0, 1.0, 2.0]] * 5, dtype=np.float32)), data / "legacy.h5", "hdf5", {})
    (data / "junk.parquet").write_bytes(b"not a data file")
    calls: dict[str, Counter] = {"detect_layout": Counter(), "read_metadata": Counter(), "file_metadata": Counter()}

    def counted(name, function):
        def wrapper(path, *args, **kwargs):
            calls[name][Path(path).name] += 1
            return function(path, *args, **kwargs)
        return wrapper

    for module, name in ((sources, "detect_layout"), (native, "read_metadata"), (sites, "file_metadata")):
        monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    before_reading: dict[str, dict[str, int]] = {}
    read = loop.read_events

    def reading(paths, **kwargs):
        before_reading.update({name: dict(counter) for name, counter in calls.items()})
        return read(paths, **kwargs)

    monkeypatch.setattr(loop, "read_events", reading)
    domain = loop.fit_transform_and_domain([data], 100)[1]
    names = ["junk.parquet", "legacy.h5", "part-00000.parquet"]
    assert before_reading == {"detect_layout": dict.fromkeys(names, 1), "read_metadata": {"part-00000.parquet": 1},
                              "file_metadata": dict.fromkeys(names[1:], 1)}
    assert domain.site == "icecube" and str(data) in domain.training_data
