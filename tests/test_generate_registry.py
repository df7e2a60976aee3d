"""Shipped models are selected by the names of the folders present in mubundle/pretrained/."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mubundle
from helpers import SMALL_MODEL, make_synthetic_batch
from mubundle.cli import main
from mubundle.data.sources import read_events
from mubundle.generate import api
from mubundle.model import shipped
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform


@pytest.fixture
def pretrained(tmp_path, monkeypatch):
    """A pretrained folder with a tiny model under the name ``icecube`` and an incomplete folder."""
    root = tmp_path / "pretrained"
    torch.manual_seed(0)
    MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(make_synthetic_batch(200, seed=1))).save(root / "icecube")
    (root / "half").mkdir()
    (root / "half" / "model.json").write_text("{}")  # no weights: not a model
    monkeypatch.setattr(shipped, "pretrained_root", lambda: root)
    return root


def test_a_new_model_folder_is_a_model_name_without_code_change(pretrained):
    assert api.shipped_models() == ("icecube",)
    model = mubundle.load("icecube")
    assert model.name == "icecube"  # refusals name the shipped model
    bundles = model.sample([1e5, 1e6], [0.2, 0.3], [1, 56], [2.0, 2.5], seed=1)
    assert len(bundles) == 2
    with pytest.raises(FileNotFoundError, match=r"model directory half does not exist \(shipped models by name: icecube\)"):
        mubundle.load("half")


def test_generate_selects_the_new_model_by_name(pretrained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder named icecube here: the name is the shipped model
    out = tmp_path / "out.parquet"
    assert main(["generate", "--no-progress", "--model", "icecube", "--flux", "GST", "--events", "20",
                 "--depths", "2.0", "--energy-range", "1e4", "1e5", "--out", str(out)]) == 0
    assert len(read_events(out).batch) == 20


def test_icecube_is_the_default_among_the_shipped_models():
    assert api.DEFAULT_MODEL == "icecube" and {"fast", "full", "icecube", "km3net-arca"} <= set(api.shipped_models())
    assert api.resolve_model_path(None) == api.shipped_model_path("icecube")
    default, icecube = mubundle.load(), mubundle.load("icecube")
    np.testing.assert_array_equal(default.sample(1e6, 0.2, 1, 2.0, seed=3).flat_muons,
                                  icecube.sample(1e6, 0.2, 1, 2.0, seed=3).flat_muons)
