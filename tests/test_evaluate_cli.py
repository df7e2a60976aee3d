"""`mubundle evaluate` end to end: reference files in, metrics.json + plots + report.html out."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from helpers import make_synthetic_batch
from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import write_shard
from mubundle.data.sources import read_events
from mubundle.data.writers import write_batch
from mubundle.evaluate.report import QUARANTINE_NAME, quarantine_reference
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.config import ModelConfig
from mubundle.model.transforms import FeatureTransform

SMALL = ModelConfig(
    multiplicity_hidden=16, multiplicity_layers=2, multiplicity_components=2, global_noise_dim=4, muon_noise_dim=4,
    generator_context_dim=16, generator_hidden=16, generator_set_layers=1, critic_hidden=8, critic_pooled_dim=8,
)


def reference_batch(n_events: int, seed: int) -> RaggedBatch:
    batch = make_synthetic_batch(n_events, seed=seed)
    conditions = batch.conditions.copy()
    conditions[:, 0] = np.clip(conditions[:, 0], 1e4, 1e6)
    return RaggedBatch(conditions, batch.counts, batch.flat_muons)


def small_model_and_own_sample(n_events: int, seed: int, sample_seed: int) -> tuple[MuonBundleModel, RaggedBatch]:
    """An untrained SMALL model (torch seed 0) on ``reference_batch(n_events, seed)``'s conditions, and
    bundles sampled from it at those conditions: a reference the model describes exactly."""
    conditions = reference_batch(n_events, seed=seed)
    torch.manual_seed(0)
    model = MuonBundleModel(SMALL, FeatureTransform.fit(conditions))
    c = conditions.conditions
    return model, model.sample(c[:, 0], c[:, 1], c[:, 2], c[:, 3], seed=sample_seed)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    MuonBundleModel(SMALL, FeatureTransform.fit(reference_batch(300, seed=1))).save(directory)
    return directory


def test_evaluate_writes_metrics_with_floors_plots_and_report_for_reference_files(model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    write_shard(reference_batch(400, seed=2), data / "a.parquet",
                {"producer": "test", "config": {"interaction_model": "SIBYLL-2.3d", "energy_range": [1e4, 1e6]}})
    write_batch(reference_batch(300, seed=3), data / "b.h5", format="hdf5")
    (data / "0_broken.parquet").write_bytes(b"PAR1 not really")  # sorted first: read before max-events stops
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(model_dir), "--reference", str(data), "--out", str(out),
                 "--max-events", "600", "--seed", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["info"]["n_reference"] == 600 and metrics["info"]["paired"] is True
    assert [f["path"].endswith("0_broken.parquet") for f in metrics["info"]["reference_failed_files"]] == [True]
    for name, entry in metrics["overall"].items():
        assert {"model", "floor", "ratio"} <= set(entry), name
    # an untrained generator is far from the reference: the report must say so
    assert metrics["summary"]["targets_met"] is False
    assert metrics["summary"]["max_ratio"] > 1.5
    assert (out / "report.html").read_text().count("<img") == len(metrics["figures"]) >= 8
    for figure in metrics["figures"]:
        assert (out / figure["file"]).stat().st_size > 1000
    assert {"multiplicity.png", "muon_radius.png", "ratios_by_energy.png"} <= {f["file"] for f in metrics["figures"]}
    assert "report.html" in capsys.readouterr().out
    # slide quality: every PNG at the figures' dpi
    from PIL import Image

    from mubundle.evaluate.plots import DPI

    assert DPI >= 150
    for figure in metrics["figures"]:
        with Image.open(out / figure["file"]) as image:
            assert round(image.info["dpi"][0]) == DPI, figure["file"]
    # the header names the version and the reference's recorded settings; the tail table its levels
    report = (out / "report.html").read_text()
    assert f"mubundle {metrics['info']['mubundle_version']}" in report
    assert metrics["info"]["reference_settings"]["interaction_model"] == "SIBYLL-2.3d"
    assert "interaction model: SIBYLL-2.3d" in report and "primary energy range [GeV]: 10000, 1e+06" in report
    level = f"{metrics['tails']['confidence_level']:.1%}"
    assert f"ratio model / reference [{level} interval]" in report and "95.45 %" in report
    assert "muon.log10_energy_dex</td>" not in report and "W1 of log<sub>10</sub>(E<sub>&mu;</sub> / GeV) [dex]" in report


def test_evaluate_without_readable_reference_events_is_a_clear_error(model_dir, tmp_path, capsys):
    (tmp_path / "broken.parquet").write_bytes(b"garbage")
    code = main(["evaluate", "--model", str(model_dir), "--reference", str(tmp_path / "broken.parquet"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no reference events" in capsys.readouterr().err


def test_evaluate_with_several_seeds_reports_every_ratio_per_seed_and_the_mean(model_dir, tmp_path):
    data = tmp_path / "data"
    write_shard(reference_batch(400, seed=2), data / "a.parquet", {})
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(model_dir), "--reference", str(data), "--out", str(out),
                 "--seed", "3", "--seeds", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    spread = metrics["seed_spread"]
    assert spread["seeds"] == [3, 4, 5]
    for name, entry in metrics["overall"].items():
        assert spread["ratios"][name][0] == entry["ratio"], name  # seed 3 is the main table
        if entry["ratio"] is not None:
            assert spread["mean_ratio"][name] == pytest.approx(np.mean(spread["ratios"][name]))
    # other seeds give other samples: some ratio differs
    assert any(len(set(values)) > 1 for values in spread["ratios"].values())
    worst = max((v, k) for k, v in spread["mean_ratio"].items() if k != "classifier.auc")
    assert (metrics["summary"]["max_mean_ratio_over_seeds"], metrics["summary"]["max_mean_ratio_metric"]) == worst
    assert "Spread over generation seeds" in (out / "report.html").read_text()

    # one seed (the default): no spread section
    assert main(["evaluate", "--model", str(model_dir), "--reference", str(data), "--out", str(tmp_path / "one")]) == 0
    assert "seed_spread" not in json.loads((tmp_path / "one" / "metrics.json").read_text())


def test_evaluate_rejects_zero_seeds(model_dir, tmp_path, capsys):
    assert main(["evaluate", "--model", str(model_dir), "--reference", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--seeds", "0"]) == 2
    assert "--seeds: must be an integer >= 1" in capsys.readouterr().err


def with_conditions(batch: RaggedBatch, conditions: np.ndarray) -> RaggedBatch:
    return RaggedBatch(conditions.astype(np.float32), batch.counts, batch.flat_muons)


def test_evaluate_names_rejected_rows_and_unreadable_files_on_stderr_and_quarantines_the_rows(
    model_dir, tmp_path, capsys
):
    batch = reference_batch(80, seed=2)
    conditions = batch.conditions.copy()
    conditions[7, 0] = np.nan  # one row with a NaN energy
    write_shard(with_conditions(batch, conditions), tmp_path / "nan.parquet", {})
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(model_dir), "--reference", str(tmp_path / "nan.parquet"),
                 str(tmp_path / "missing.parquet"), "--out", str(out)]) == 0
    quarantine = out / "_quarantine" / "reference.parquet"
    err = capsys.readouterr().err
    assert f"could not read reference file {tmp_path / 'missing.parquet'}: file not found" in err
    assert f"reference: 1 rows rejected (non_finite: 1); rejected rows in {quarantine}" in err
    rows = pq.read_table(quarantine).to_pylist()
    assert [(r["file"], r["row"], r["reason"]) for r in rows] == [(str(tmp_path / "nan.parquet"), 7, "non_finite")]
    assert np.isnan(rows[0]["energy"]) and rows[0]["zenith"] == pytest.approx(conditions[7, 1])
    info = json.loads((out / "metrics.json").read_text())["info"]
    assert info["reference_rejected_rows"] == {"non_finite": 1}
    assert info["reference_quarantine"] == str(quarantine)
    assert info["n_reference"] == 79


def test_a_reference_without_rejected_rows_removes_the_quarantine_file_of_an_earlier_evaluation(tmp_path, capsys):
    write_shard(reference_batch(5, seed=2), tmp_path / "clean.parquet", {})
    stale = tmp_path / "report" / QUARANTINE_NAME
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"rows of an earlier run")
    assert quarantine_reference(read_events(tmp_path / "clean.parquet"), tmp_path / "report") is None
    assert not stale.exists()
    assert capsys.readouterr().err == ""


def test_evaluate_with_every_reference_row_rejected_says_why_and_quarantines_them(model_dir, tmp_path, capsys):
    batch = reference_batch(4, seed=2)
    conditions = batch.conditions.copy()
    conditions[:, 1] = 100.0 + np.degrees(conditions[:, 1])  # zenith in degrees: out of [0, pi/2]
    write_shard(with_conditions(batch, conditions), tmp_path / "deg.parquet", {})
    out = tmp_path / "report"
    code = main(["evaluate", "--model", str(model_dir), "--reference", str(tmp_path / "deg.parquet"),
                 str(tmp_path / "missing.parquet"), "--out", str(out)])
    assert code == 2
    quarantine = out / "_quarantine" / "reference.parquet"
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"mubundle evaluate: error: no reference events could be read from {tmp_path / 'deg.parquet'}, "
        f"{tmp_path / 'missing.parquet'}: 4 rows rejected (zenith_out_of_range: 4); rejected rows in {quarantine}; "
        f"1 file(s) could not be read ({tmp_path / 'missing.parquet'}: file not found)"
    )
    rows = pq.read_table(quarantine).to_pylist()
    assert [(r["row"], r["reason"]) for r in rows] == [(i, "zenith_out_of_range") for i in range(4)]
    assert not (out / "metrics.json").exists()
