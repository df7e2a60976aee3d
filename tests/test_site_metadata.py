"""Every file mubundle writes says which observation site its events belong to: `generate` writes
the model's site, `convert` carries its inputs' site (and refuses a mix), legacy files written by
mubundle read back with the site they record, and CORSIKA files without particle output are
refused by `convert` (their muon number is unknown, not 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mubundle.cli import main
from mubundle.data.convert import convert
from mubundle.data.native import read_metadata, write_shard
from mubundle.data.sites import site_of, site_of_paths
from mubundle.data.sources import detect_layout, read_events
from mubundle.data.writers import write_batch
from test_site_checks import arca_events

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "corsika"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared CORSIKA files not available")


def site_keys(metadata: dict) -> dict:
    return {key: metadata.get(key) for key in ("site", "medium", "depth_unit")}


@pytest.fixture(scope="module")
def arca_medium():
    from mubundle.sim.site import get_site

    site = get_site("km3net-arca")
    return {"site": site.name, "medium": site.medium.name, "depth_unit": site.medium.depth_unit}


# 1. generate writes the model's site at top level

def test_generate_flux_writes_the_models_site_at_top_level(tmp_path, arca_medium):
    out = tmp_path / "x.parquet"
    assert main(["generate", "--model", "km3net-arca", "--flux", "H3a", "--events", "4", "--depths", "3.2",
                 "--out", str(out), "--no-progress"]) == 0
    assert site_keys(read_metadata(out)) == arca_medium
    assert site_of(out, "native") == "km3net-arca"


def test_generate_primaries_writes_the_models_site_at_top_level(tmp_path, arca_medium):
    primaries = tmp_path / "primaries.parquet"
    write_shard(arca_events(5, seed=1), primaries, {})  # records no site: not checked, and of no site
    out = tmp_path / "x.parquet"
    assert main(["generate", "--model", "km3net-arca", "--primaries", str(primaries), "--out", str(out),
                 "--no-progress"]) == 0
    assert site_keys(read_metadata(out)) == arca_medium and site_of(out, "native") == "km3net-arca"


# 2. convert carries the inputs' site (and agreeing flux), refuses a mix

@pytest.fixture()
def shards(tmp_path, arca_medium):
    events = arca_events(20, seed=2)
    flux = {"flux": "H3a", "area_m2": 1.0}
    write_shard(events, tmp_path / "a.parquet", {**arca_medium, **flux})
    write_shard(events, tmp_path / "b.parquet", {**arca_medium, **flux})
    write_shard(events, tmp_path / "c.parquet", {**arca_medium, "flux": "GST", "area_m2": 2.0})
    write_shard(events, tmp_path / "ice.parquet", {"site": "icecube"})
    return tmp_path


def test_convert_carries_the_site_and_the_flux_the_inputs_agree_on(shards, tmp_path, arca_medium, capsys):
    assert main(["convert", str(shards / "a.parquet"), str(shards / "b.parquet"), "--out", str(tmp_path / "o")]) == 0
    metadata = read_metadata(next((tmp_path / "o").glob("*/part-*.parquet")))
    assert site_keys(metadata) == arca_medium and (metadata["flux"], metadata["area_m2"]) == ("H3a", 1.0)
    assert site_of_paths([tmp_path / "o"]) == "km3net-arca"
    assert "dropped" not in capsys.readouterr().out


def test_convert_drops_a_flux_the_inputs_disagree_on_and_says_so_in_one_line(shards, tmp_path, arca_medium, capsys):
    summary = convert([shards / "a.parquet", shards / "c.parquet"], tmp_path / "o")
    metadata = read_metadata(summary["shards"][0])
    assert site_keys(metadata) == arca_medium and "flux" not in metadata and "area_m2" not in metadata
    assert summary["dropped_metadata"].startswith("flux and area_m2 dropped from the metadata")
    assert "\n" not in summary["dropped_metadata"]


def test_convert_refuses_inputs_of_two_sites_in_one_line_before_writing(shards, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["convert", str(shards / "a.parquet"), str(shards / "ice.parquet"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the inputs of one conversion mix observation sites: icecube" in err
    assert "km3net-arca" in err and "convert each site's files into its own --out" in err
    assert not out.exists()


def test_convert_detects_each_inputs_layout_and_reads_its_metadata_once_before_reading_it(tmp_path, monkeypatch):
    """The site check, the CORSIKA run headers and the carried metadata share one pass over the
    inputs (for a URL every open is a request); an unreadable input is still reported as FAILED."""
    from collections import Counter

    from corsika_writer import corsika_bytes, muon_rows
    from helpers import make_synthetic_batch
    from mubundle.data import convert as convert_module, sites, sources

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_shard(make_synthetic_batch(5, seed=1), inputs / "a.parquet", {"site": "icecube", "flux": "H3a"})
    write_batch(make_synthetic_batch(5, seed=2), inputs / "b.h5", "hdf5", {})
    (inputs / "DAT000001").write_bytes(corsika_bytes([dict(code=14, energy=1e6, zenith=0.1,
                                                           particles=muon_rows([2e3], [0], [0]))]))
    (inputs / "junk.parquet").write_bytes(b"not a data file")
    calls: dict[str, Counter] = {"detect_layout": Counter(), "file_metadata": Counter()}

    def counted(name, function):
        def wrapper(path, *args, **kwargs):
            calls[name][Path(path).name] += 1
            return function(path, *args, **kwargs)
        return wrapper

    for module, name in ((sources, "detect_layout"), (convert_module, "detect_layout"),
                         (sites, "file_metadata"), (convert_module, "file_metadata")):
        if hasattr(module, name):  # a module that imported the name holds its own reference
            monkeypatch.setattr(module, name, counted(name, getattr(module, name)))
    before_reading: dict[str, dict[str, int]] = {}
    read = convert_module.iter_file_pieces

    def reading(paths, failed):
        before_reading.update({name: dict(counter) for name, counter in calls.items()})
        return read(paths, failed)

    monkeypatch.setattr(convert_module, "iter_file_pieces", reading)
    summary = convert([inputs], tmp_path / "o")
    names = ["DAT000001", "a.parquet", "b.h5", "junk.parquet"]
    assert before_reading == {"detect_layout": dict.fromkeys(names, 1),
                              "file_metadata": dict.fromkeys(names[:3], 1)}
    assert summary["events"] == 11 and summary["site"] == "icecube" and "corsika" in read_metadata(summary["shards"][0])
    assert [Path(f["path"]).name for f in summary["failed_files"]] == ["junk.parquet"]


# 3. legacy files written by mubundle keep the site they record

@pytest.mark.parametrize("format", ["hdf5", "legacy-parquet"])
def test_legacy_files_read_back_the_site_they_record_and_icecube_without_one(tmp_path, format):
    events = arca_events(5, seed=4)
    recorded, plain = tmp_path / f"sea.{format}", tmp_path / f"plain.{format}"
    write_batch(events, recorded, format, {"site": "km3net-arca"})
    write_batch(events, plain, format, {})
    layout = detect_layout(recorded)
    assert layout in ("legacy-hdf5", "legacy-parquet")
    assert site_of(recorded, layout) == "km3net-arca"
    assert site_of(plain, layout) == "icecube"  # the original pipeline's files: South Pole ice
    with pytest.raises(ValueError, match="mixes observation sites: icecube .*km3net-arca"):
        site_of_paths([recorded, plain])


# 4. CORSIKA files without particle output are refused by convert

@needs_shared
@pytest.mark.parametrize("name", ["corsika74100", "corsika75700"])
def test_convert_refuses_corsika_files_without_particle_output(tmp_path, name, capsys):
    path = SHARED / "pycorsikaio" / name
    assert main(["convert", str(path), "--out", str(tmp_path / "o")]) != 0
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "no particle output" in failed[0] and "the muon number is unknown" in failed[0]
    summary = convert([path], tmp_path / "p")
    assert summary["events"] == 0 and summary["zero_muon_events"] == 0
    assert summary["failed_files"][0]["path"] == str(path)


@needs_shared
def test_convert_keeps_showers_without_muons_of_a_file_with_particle_records(tmp_path):
    path = SHARED / "pycorsikaio" / "corsika757_particle"
    summary = convert([path], tmp_path / "o")
    assert summary["failed_files"] == [] and summary["events"] == 10
    counts = read_events(tmp_path / "o").batch.counts
    assert (counts == 0).sum() == summary["zero_muon_events"] and summary["muons"] == counts.sum()
