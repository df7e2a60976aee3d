"""`mubundle generate` end to end with a small untrained model: every format readable back,
one event per primary in order, reproducible by seed, bad primaries reported, flux weights."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import mubundle
from helpers import make_synthetic_batch
from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import read_metadata, write_shard
from mubundle.data.sources import read_events
from mubundle.geometry import slant_from_vertical_depth
from mubundle.generate import api
from mubundle.model import shipped
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.config import ModelConfig
from mubundle.model.transforms import FeatureTransform

SMALL = ModelConfig(
    multiplicity_hidden=16, multiplicity_layers=2, multiplicity_components=2, global_noise_dim=4, muon_noise_dim=4,
    generator_context_dim=16, generator_hidden=16, generator_set_layers=1, critic_hidden=8, critic_pooled_dim=8,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    MuonBundleModel(SMALL, FeatureTransform.fit(make_synthetic_batch(300, seed=1))).save(directory)
    return directory


@pytest.fixture(scope="module")
def primaries_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("primaries") / "primaries.parquet"
    batch = make_synthetic_batch(120, seed=2)
    conditions = batch.conditions.copy()
    conditions[:, 0] = np.clip(conditions[:, 0], 1e4, 1e6)  # keep the untrained model's multiplicities small
    write_shard(RaggedBatch(conditions, batch.counts, batch.flat_muons), path, {"producer": "test"})
    return path, conditions


def generate(*args: str) -> int:
    return main(["generate", "--no-progress", *map(str, args)])


@pytest.mark.parametrize("fmt", ["parquet", "hdf5", "legacy-parquet"])
def test_primaries_mode_writes_one_event_per_primary_in_order_in_every_format(model_dir, primaries_file, tmp_path, fmt):
    path, conditions = primaries_file
    out = tmp_path / f"generated.{fmt}"
    assert generate("--model", model_dir, "--primaries", path, "--out", out, "--format", fmt, "--seed", 3,
                    "--events-per-chunk", 50) == 0
    loaded = read_events(out)
    assert loaded.rejected == {} and loaded.failed_files == []
    np.testing.assert_array_equal(loaded.batch.conditions[:, :3], conditions[:, :3])
    # the legacy layouts store the vertical depth in m (the original's units): back within one float32 ulp
    np.testing.assert_allclose(loaded.batch.conditions[:, 3], conditions[:, 3], rtol=0 if fmt == "parquet" else 3e-7)
    assert loaded.batch.n_muons == int(loaded.batch.counts.sum())


def test_same_seed_reproduces_the_output_and_another_seed_changes_it(model_dir, primaries_file, tmp_path):
    path, _ = primaries_file
    outputs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate("--model", model_dir, "--primaries", path, "--out", tmp_path / f"{name}.parquet", "--seed", seed,
                 "--events-per-chunk", 40)
        outputs[name] = read_events(tmp_path / f"{name}.parquet").batch
    assert outputs["a"].equals(outputs["b"])
    assert not outputs["a"].equals(outputs["c"])


def test_primaries_with_bad_muons_are_used_and_bad_primaries_are_reported_and_quarantined(model_dir, tmp_path, capsys):
    batch = make_synthetic_batch(30, seed=4)
    conditions, muons = batch.conditions.copy(), batch.flat_muons.copy()
    conditions[[3, 7], 0] = np.nan  # non_finite primary energy
    conditions[11, 1] = 2.5  # zenith out of range
    muons[0, 0] = np.nan  # a bad muon does not make the primary unusable
    source = tmp_path / "mixed.parquet"
    write_shard(RaggedBatch(conditions, batch.counts, muons), source, {"producer": "test"})
    out = tmp_path / "out.parquet"
    assert generate("--model", model_dir, "--primaries", source, "--out", out) == 0
    generated = read_events(out).batch
    good = np.setdiff1d(np.arange(30), [3, 7, 11])
    np.testing.assert_array_equal(generated.conditions, conditions[good])
    captured = capsys.readouterr()
    assert "rejected 3 primaries" in captured.err and "non_finite: 2" in captured.err
    assert "zenith_out_of_range: 1" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["rejected"] == {"non_finite": 2, "zenith_out_of_range": 1}
    quarantine = pq.read_table(summary["quarantine"]).to_pydict()
    assert quarantine["row"] == [3, 7, 11]
    assert quarantine["reason"] == ["non_finite", "non_finite", "zenith_out_of_range"]


def test_unreadable_primaries_files_are_reported_not_fatal(model_dir, primaries_file, tmp_path, capsys):
    path, conditions = primaries_file
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    out = tmp_path / "out.parquet"
    assert generate("--model", model_dir, "--primaries", path, broken, "--out", out) == 0
    assert len(read_events(out).batch) == len(conditions)
    err = capsys.readouterr().err
    assert "could not read" in err and "broken.parquet" in err


def test_nothing_usable_leaves_no_output_and_says_why(model_dir, tmp_path, capsys):
    import pyarrow as pa

    primaries = tmp_path / "degrees.parquet"  # primaries only, no muons column: the zenith in degrees
    pq.write_table(pa.table({"energy": [1e5, 1e6], "zenith": [30.0, 45.0], "mass": [1.0, 4.0], "depth": [2.0, 2.0]}),
                   primaries)
    out = tmp_path / "out.parquet"
    assert generate("--model", model_dir, "--primaries", primaries, tmp_path / "missing.parquet", "--out", out) == 1
    err = capsys.readouterr().err
    assert "rejected 2 primaries (zenith_out_of_range: 2)" in err and "missing.parquet: file not found" in err
    assert "generated no event (2 primaries rejected, 1 files not read, none usable): no output written" in err
    assert not out.exists() and pq.read_table(str(out) + ".rejected.parquet").num_rows == 2


@pytest.mark.parametrize("flag", [["--depths", "2.0"], ["--area", "5"], ["--energy-range", "1e4", "1e5"],
                                  ["--depth-kind", "slant"], ["--generation-gamma", "2"]])
def test_flux_mode_options_are_refused_with_primaries_not_ignored(model_dir, primaries_file, tmp_path, capsys, flag):
    path, _ = primaries_file
    assert generate("--model", model_dir, "--primaries", path, *flag, "--out", tmp_path / "x.parquet") == 2
    assert f"{flag[0]}: flux-mode options; with --primaries one event is generated per primary" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["parquet", "hdf5", "legacy-parquet"])
def test_flux_weights_read_back_from_every_format_and_the_settings_are_recorded(model_dir, tmp_path, fmt):
    out = tmp_path / f"flux.{fmt}"
    assert generate("--model", model_dir, "--flux", "GST", "--events", 30, "--depths", "2.0", "--energy-range", "1e4", "1e5",
                    "--format", fmt, "--out", out, "--seed", 4, "--events-per-chunk", 20) == 0
    weights = read_events(out).batch.weights
    assert weights is not None and len(weights) == 30 and (weights > 0).all()
    if fmt == "parquet":  # the native shard layout: snappy, no dictionary, page checksums
        column = pq.ParquetFile(out).metadata.row_group(0).column(0)
        assert column.compression == "SNAPPY" and "RLE_DICTIONARY" not in column.encodings
        config = read_metadata(out)["config"]
        assert config["seed"] == 4 and config["events_per_chunk"] == 20 and config["model"] == str(model_dir)
        assert read_metadata(out)["mubundle_version"] == mubundle.__version__


def test_flux_mode_writes_weights_in_hz_for_every_primary_and_depth(model_dir, tmp_path, capsys):
    out = tmp_path / "flux.parquet"
    code = generate("--model", model_dir, "--flux", "H3a", "--events", 200, "--energy-range", 1e4, 1e5,
                    "--zenith-range", 0.0, 1.0, "--depths", "1.5,2.5", "--depth-kind", "slant", "--area", 2.0,
                    "--out", out, "--seed", 1, "--events-per-chunk", 64)
    assert code == 0
    batch = read_events(out).batch
    assert len(batch) == 400 and batch.weights is not None and np.all(batch.weights > 0)
    np.testing.assert_array_equal(batch.conditions[:, 3], np.tile([1.5, 2.5], 200))
    np.testing.assert_array_equal(batch.conditions[0::2, 0], batch.conditions[1::2, 0])  # same primary at both depths
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert batch.weights[batch.conditions[:, 3] == 1.5].sum() == pytest.approx(summary["rate_hz"])
    assert summary["rate_hz"] == pytest.approx(summary["reference_rate_hz"], rel=0.3)  # 200 events: rough
    weights = batch.weights[batch.conditions[:, 3] == 1.5]  # one per primary
    assert summary["rate_se_hz"] == pytest.approx(np.sqrt(len(weights)) * weights.std())  # sqrt(sum w^2 - R^2 / n)
    assert abs(summary["rate_hz"] - summary["reference_rate_hz"]) < 4 * summary["rate_se_hz"]
    assert read_metadata(out)["config"]["flux_model"] == "H3a"


def test_vertical_depths_become_slant_depths_along_the_shower_axis(model_dir, tmp_path):
    out = tmp_path / "vertical.parquet"
    generate("--model", model_dir, "--flux", "GST", "--events", 50, "--depths", "2.0", "--depth-kind", "vertical",
             "--energy-range", 1e4, 1e5, "--out", out)
    conditions = read_events(out).batch.conditions.astype(np.float64)
    # through the spherical overburden of the model's site (default South Pole ice), as simulate
    np.testing.assert_allclose(conditions[:, 3], slant_from_vertical_depth(conditions[:, 1], 2000.0) / 1000.0, rtol=1e-5)
    assert read_metadata(out)["config"]["vertical_depth_site"] == "icecube"


def test_vertical_depths_go_through_the_curved_overburden_of_a_model_trained_on_it(model_dir, tmp_path):
    from mubundle.geometry import slant_from_vertical_depth
    from mubundle.model.domain import ModelDomain

    radius = 6_374_134.0  # the icecube site's (mubundle simulate's slant depths)
    model = MuonBundleModel.load(model_dir)
    model.domain = ModelDomain(energy_gev=(3e2, 1e9), zenith_rad=(0.0, np.radians(89.0)), mass_number=(1.0, 56.0),
                               slant_depth_km=(1.4, 110.0), vertical_depth_km=(1.4, 2.6), overburden_radius_m=radius)
    curved_dir = tmp_path / "curved"
    model.save(curved_dir)
    out = tmp_path / "curved.parquet"
    generate("--model", curved_dir, "--flux", "GST", "--events", 60, "--depths", "2.0", "--depth-kind", "vertical",
             "--energy-range", 1e4, 1e5, "--zenith-range", 1.3, 1.55, "--out", out)
    conditions = read_events(out).batch.conditions.astype(np.float64)
    expected = slant_from_vertical_depth(conditions[:, 1], 2000.0, radius) / 1000.0
    np.testing.assert_allclose(conditions[:, 3], expected, rtol=1e-5)
    assert (conditions[:, 3] < 0.98 * 2.0 / np.cos(conditions[:, 1])).any()  # flat would be deeper near the horizon


def test_flux_mode_samples_the_primaries_of_the_model_domain_unless_ranges_are_given(model_dir, tmp_path):
    from mubundle.model.domain import ModelDomain

    model = MuonBundleModel.load(model_dir)
    model.domain = ModelDomain(energy_gev=(2e5, 3e6), zenith_rad=(0.2, 0.6), mass_number=(1.0, 56.0),
                               slant_depth_km=(1.0, 10.0), vertical_depth_km=(1.0, 3.0), overburden_radius_m=6_374_134.0)
    domain_dir = tmp_path / "domain"
    model.save(domain_dir)
    out = tmp_path / "domain.parquet"
    assert generate("--model", domain_dir, "--flux", "H3a", "--events", 300, "--depths", "2.0", "--out", out) == 0
    conditions = read_events(out).batch.conditions.astype(np.float64)
    assert conditions[:, 0].min() >= 2e5 * (1 - 1e-6) and conditions[:, 0].max() <= 3e6 * (1 + 1e-6)
    assert conditions[:, 1].min() >= 0.2 - 1e-6 and conditions[:, 1].max() <= 0.6 + 1e-6
    assert read_metadata(out)["config"]["energy_range"] == pytest.approx([2e5, 3e6])
    explicit = tmp_path / "explicit.parquet"  # a given range wins (here partly outside: extrapolation allowed)
    assert generate("--model", domain_dir, "--flux", "H3a", "--events", 50, "--depths", "2.0", "--energy-range", 1e4, 1e5,
                    "--allow-extrapolation", "--out", explicit) == 0
    assert read_events(explicit).batch.conditions[:, 0].max() <= 1e5 * (1 + 1e-6)


def test_flux_mode_observes_at_the_vertical_depths_the_model_was_trained_at_unless_depths_are_given(tmp_path):
    from mubundle.model.domain import vertical_depth_km

    arca = mubundle.load("km3net-arca")  # trained at 2.9 / 3.15 / 3.4 km of sea water, refuses 1.5-2.5 km
    out = tmp_path / "arca.parquet"
    assert generate("--model", "km3net-arca", "--flux", "H3a", "--events", 40, "--out", out) == 0
    conditions = read_events(out).batch.conditions.astype(np.float64)
    vertical = vertical_depth_km(conditions, arca.domain.overburden_radius_m)
    np.testing.assert_allclose(np.unique(np.round(vertical, 4)), [2.9, 3.15, 3.4], atol=1e-4)
    assert read_metadata(out)["config"]["depths_km"] == pytest.approx([2.9, 3.15, 3.4])
    given = tmp_path / "given.parquet"
    assert generate("--model", "km3net-arca", "--flux", "H3a", "--events", 10, "--depths", "3.0", "--out", given) == 0
    assert len(read_events(given).batch) == 10


def test_flux_mode_without_events_is_a_clear_user_error(model_dir, tmp_path, capsys):
    assert generate("--model", model_dir, "--flux", "H3a", "--out", tmp_path / "x.parquet") == 2
    assert "--flux needs --events" in capsys.readouterr().err


@pytest.mark.parametrize("flags, says", [
    (["--energy-range", "1e6", "1e4"], "energy_range (--energy-range) must have LO < HI, got 1e+06 10000 GeV"),
    (["--energy-range", "1e4", "1e4"], "energy_range (--energy-range) must have LO < HI, got 10000 10000 GeV"),
    (["--zenith-range", "0.5", "0.2"], "zenith_range (--zenith-range) must have LO < HI, got 0.5 0.2 rad"),
])
def test_a_reversed_range_is_refused_naming_that_range_only(model_dir, tmp_path, capsys, flags, says):
    assert generate("--model", model_dir, "--flux", "H3a", "--events", 5, *flags, "--out", tmp_path / "x.parquet") == 2
    err = capsys.readouterr().err
    assert says in err and ("zenith" in says) == ("zenith" in err)


def test_missing_pretrained_model_gives_a_clear_error_saying_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "default_model_path", lambda: tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no pretrained model is installed.*mubundle train"):
        mubundle.load()


def test_shipped_models_are_loaded_by_name_unless_a_directory_has_that_name(model_dir, tmp_path, monkeypatch, primaries_file):
    full, fast = mubundle.load("full"), mubundle.load("fast")
    assert api.resolve_model_path("icecube") == api.default_model_path()
    assert mubundle.load().domain.site == "icecube"  # the default covers the whole IceCube domain
    # fast is the distilled student of full: smaller networks without LayerNorm, full's transform
    assert fast.config.generator_hidden < full.config.generator_hidden and not fast.config.layer_norm
    assert fast.transform.to_dict() == full.transform.to_dict()
    path, conditions = primaries_file
    # the synthetic primaries reach zenith 89 deg, beyond the shipped models' 70 deg: allowed explicitly
    assert generate("--model", "full", "--primaries", path, "--out", tmp_path / "full.parquet", "--allow-extrapolation") == 0
    np.testing.assert_allclose(read_events([tmp_path / "full.parquet"]).batch.conditions, conditions, rtol=1e-6)

    monkeypatch.chdir(tmp_path)
    MuonBundleModel.load(model_dir).save(tmp_path / "full")  # a local directory named "full" wins
    assert api.load_model("full").config == SMALL
    with pytest.raises(FileNotFoundError, match="shipped models by name: fast, full, icecube, km3net-arca"):
        api.load_model("fastest")


def test_load_takes_the_automatic_device_of_training():
    from mubundle.train.device import resolve_device

    assert mubundle.load("fast", device="auto").device == resolve_device("auto")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        mubundle.load("fast", device="gpu")


def test_a_directory_that_is_not_a_model_is_refused_naming_the_missing_file(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        api.load_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "icecube").mkdir()  # a data folder that happens to carry a shipped model's name
    with pytest.raises(FileNotFoundError, match="a folder here named like the shipped model 'icecube' takes its place"):
        api.load_model("icecube")
    with pytest.raises(FileNotFoundError, match="model path is empty"):
        api.load_model("")


def test_python_api_samples_physical_units_and_converts_to_awkward(model_dir):
    model = mubundle.load(model_dir)
    bundles = model.sample(np.array([1e5, 3e5, 1e6]), 0.3, 56.0, 2.0, seed=1)
    assert isinstance(bundles, RaggedBatch) and len(bundles) == 3
    array = bundles.to_awkward()
    assert array.fields[:4] == ["energy", "zenith", "mass", "depth"]
    assert [len(muons) for muons in array.muons] == list(bundles.counts)


def test_output_is_streamed_chunk_by_chunk_with_event_ids_unique_across_chunks(model_dir, primaries_file, tmp_path):
    import h5py

    path, conditions = primaries_file
    generate("--model", model_dir, "--primaries", path, "--out", tmp_path / "o.parquet", "--events-per-chunk", 50)
    assert pq.ParquetFile(tmp_path / "o.parquet").metadata.num_row_groups == 3  # 120 events / 50 per chunk
    generate("--model", model_dir, "--primaries", path, "--out", tmp_path / "o.h5", "--format", "hdf5",
             "--events-per-chunk", 50)
    with h5py.File(tmp_path / "o.h5") as handle:
        primaries = handle["primaries"][:]
        muons, counts = handle["muons"][:], handle["counts"][:]
    np.testing.assert_array_equal(primaries[:, 1], np.arange(len(conditions)))  # minor id = event number
    rows_event = np.repeat(np.arange(len(conditions)), counts)
    real = (muons[:, 2:] != 0).any(axis=1)
    np.testing.assert_array_equal(muons[real, 1], rows_event[real])
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
