"""Saved models follow the process umask like every other output, and model.json names its release."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

import pytest
import torch

import mubundle
from helpers import SMALL_MODEL, make_synthetic_batch
from mubundle.model.bundle import WEIGHTS_FILE, MuonBundleModel
from mubundle.model.config import METADATA_FILE
from mubundle.model.transforms import FeatureTransform
from mubundle.train.checkpoint import CHECKPOINT_DIR, BEST_NAME, export_model, save_checkpoint

#: (umask, mode of a directory, mode of a file) that a saved model must have under that umask
UMASK_MODES = [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o027, 0o750, 0o640)]


@pytest.fixture
def model() -> MuonBundleModel:
    torch.manual_seed(0)
    return MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(make_synthetic_batch(20, seed=1)))


@pytest.fixture(params=UMASK_MODES, ids=lambda modes: f"umask{modes[0]:03o}")
def umask(request) -> Iterator[tuple[int, int, int]]:
    """Run the test under a process umask; yields (umask, expected dir mode, expected file mode)."""
    mask, dir_mode, file_mode = request.param
    previous = os.umask(mask)
    try:
        yield mask, dir_mode, file_mode
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_model_modes(directory: Path, dir_mode: int, file_mode: int) -> None:
    assert sorted(path.name for path in directory.iterdir()) == sorted([WEIGHTS_FILE, METADATA_FILE])
    assert oct(mode_of(directory)) == oct(dir_mode), directory
    for name in (WEIGHTS_FILE, METADATA_FILE):
        assert oct(mode_of(directory / name)) == oct(file_mode), name


def test_save_writes_the_model_directory_and_files_with_the_umask_modes(model, tmp_path, umask):
    _, dir_mode, file_mode = umask
    model.save(tmp_path / "new" / "model")
    assert_model_modes(tmp_path / "new" / "model", dir_mode, file_mode)
    assert oct(mode_of(tmp_path / "new")) == oct(dir_mode)


def test_save_over_an_existing_model_gives_the_files_the_umask_modes(model, tmp_path, umask):
    _, dir_mode, file_mode = umask
    (tmp_path / "model").mkdir()
    model.save(tmp_path / "model")
    model.save(tmp_path / "model")
    assert_model_modes(tmp_path / "model", dir_mode, file_mode)


def test_training_export_writes_the_model_directory_and_files_with_the_umask_modes(model, tmp_path, umask):
    _, dir_mode, file_mode = umask
    target = export_model(model, tmp_path)
    assert target == tmp_path / "model"
    assert_model_modes(target, dir_mode, file_mode)
    again = export_model(model, tmp_path)  # replacing the previous export
    assert_model_modes(again, dir_mode, file_mode)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # no staging or previous left


def test_checkpoints_are_written_with_the_umask_modes(tmp_path, umask):
    _, dir_mode, file_mode = umask
    path = save_checkpoint(tmp_path, 3, {"step": 3, "w": torch.zeros(2)}, keep=2, is_best=True)
    assert oct(mode_of(tmp_path / CHECKPOINT_DIR)) == oct(dir_mode)
    assert oct(mode_of(path)) == oct(file_mode)
    assert oct(mode_of(tmp_path / CHECKPOINT_DIR / BEST_NAME)) == oct(file_mode)


def test_model_json_records_the_mubundle_release_that_wrote_it(model, tmp_path):
    model.save(tmp_path / "model")
    metadata = json.loads((tmp_path / "model" / METADATA_FILE).read_text())
    assert metadata["mubundle_version"] == mubundle.__version__


def test_two_saves_of_one_model_are_byte_identical(model, tmp_path):
    model.save(tmp_path / "a")
    model.save(tmp_path / "b")
    for name in (WEIGHTS_FILE, METADATA_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_model_json_without_mubundle_version_loads(model, tmp_path):
    model.save(tmp_path / "model")
    path = tmp_path / "model" / METADATA_FILE
    metadata = json.loads(path.read_text())
    del metadata["mubundle_version"]
    path.write_text(json.dumps(metadata, indent=2))
    loaded = MuonBundleModel.load(tmp_path / "model")
    assert loaded.config == model.config


def test_a_shipped_model_without_mubundle_version_still_loads_and_saves_with_it(tmp_path):
    shipped = Path(mubundle.__file__).parent / "pretrained" / "fast"
    assert "mubundle_version" not in json.loads((shipped / METADATA_FILE).read_text())
    copy = Path(shutil.copytree(shipped, tmp_path / "fast"))
    loaded = MuonBundleModel.load(copy)
    loaded.save(tmp_path / "resaved")
    resaved = json.loads((tmp_path / "resaved" / METADATA_FILE).read_text())
    assert resaved["mubundle_version"] == mubundle.__version__
    assert (tmp_path / "resaved" / WEIGHTS_FILE).read_bytes() == (shipped / WEIGHTS_FILE).read_bytes()
