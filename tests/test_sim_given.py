"""``mubundle simulate --primaries FILE... --repeat K`` (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.native import read_metadata, read_shard, shard_path, write_shard
from mubundle.sim.version import SIMULATOR_VERSION


def primaries_file(tmp_path, rows):
    """A native shard whose events are the given (E GeV, zenith rad, A, depth km) rows, no muons."""
    conditions = np.array(rows, dtype=np.float64)
    path = tmp_path / "primaries.parquet"
    write_shard(RaggedBatch(conditions, np.zeros(len(rows), np.int64), np.zeros((0, 3))), path)
    return path


def run(out, primaries, *extra):
    return main(["simulate", "--primaries", str(primaries), "--out", str(out), "--depths", "0,0.5",
                 "--min-energy", "20", "--seed", "3", *extra])


def read_all(out):
    shards = sorted(out.glob("*/part-*.parquet"))
    return RaggedBatch.concat([read_shard(s) for s in shards]), shards


ROWS = [(3e4, 0.0, 1.0, 1.5), (1e4, 0.5, 4.0, 2.0), (2e4, 0.2, 1.0, 0.0)]


def test_each_primary_is_simulated_k_times_in_order_at_every_depth(tmp_path):
    primaries = primaries_file(tmp_path, ROWS)
    assert run(tmp_path / "out", primaries, "--repeat", "2", "--surface-altitude", "110") == 0
    batch, shards = read_all(tmp_path / "out")
    assert len(batch) == len(ROWS) * 2 * 2  # primaries x repeat x depths
    expected_energy = np.repeat([r[0] for r in ROWS], 2 * 2)
    np.testing.assert_allclose(batch.conditions[:, 0], expected_energy, rtol=1e-6)
    np.testing.assert_allclose(batch.conditions[:, 1], np.repeat([r[1] for r in ROWS], 4), rtol=1e-6)
    np.testing.assert_allclose(batch.conditions[:, 2], np.repeat([r[2] for r in ROWS], 4))
    # depth column: the --depths (vertical) as slant depths through the site's spherical overburden
    # (as for sampled primaries), not the input event's depth
    from mubundle.geometry import slant_from_vertical_depth
    from mubundle.sim.site import get_site

    radius = get_site("icecube").overburden_radius_m
    expected = slant_from_vertical_depth(batch.conditions[:, 1], np.tile([0.0, 500.0], 6), radius) / 1000.0
    np.testing.assert_allclose(batch.conditions[:, 3], expected, rtol=1e-6)
    metadata = read_metadata(shards[0])
    assert metadata["simulator_version"] == SIMULATOR_VERSION
    assert metadata["primaries"]["repeat"] == 2
    from mubundle.data.dataset import read_manifest

    assert read_manifest(tmp_path / "out")["events"] == len(batch)  # a complete dataset, as for sampled primaries
    assert metadata["site"] == "icecube"
    assert metadata["config"]["surface_altitude_m"] == 110.0
    from mubundle.configio import from_yaml
    from mubundle.sim.config import SimConfig

    written = (tmp_path / "out" / "sim_config.yaml").read_text()
    assert written.startswith("# mubundle simulate --primaries") and "were not used" in written.splitlines()[2]
    assert from_yaml(SimConfig, tmp_path / "out" / "sim_config.yaml").showers == len(ROWS) * 2
    # the K repetitions of one primary are different showers
    surface = batch.counts[0::2]
    assert surface.sum() > 0


def test_same_command_gives_identical_shards_and_resumes_a_missing_one(tmp_path):
    primaries = primaries_file(tmp_path, ROWS)
    assert run(tmp_path / "a", primaries, "--repeat", "2") == 0
    first, _ = read_all(tmp_path / "a")
    assert run(tmp_path / "b", primaries, "--repeat", "2") == 0
    second, _ = read_all(tmp_path / "b")
    np.testing.assert_array_equal(first.counts, second.counts)
    np.testing.assert_array_equal(first.flat_muons, second.flat_muons)
    shard = shard_path(tmp_path / "a", 0)
    shard.unlink()
    assert run(tmp_path / "a", primaries, "--repeat", "2") == 0
    again, _ = read_all(tmp_path / "a")
    np.testing.assert_array_equal(again.flat_muons, first.flat_muons)


def test_other_repeat_in_an_existing_directory_is_refused(tmp_path, capsys):
    primaries = primaries_file(tmp_path, ROWS[:1])
    assert run(tmp_path / "a", primaries, "--repeat", "1") == 0
    assert run(tmp_path / "a", primaries, "--repeat", "3") != 0
    assert "other primaries, repeat" in capsys.readouterr().err


def test_unusable_rows_are_reported_by_file_and_row_and_quarantined(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mubundle.data.dataset import read_manifest

    first = primaries_file(tmp_path, [(1e4, 0.0, 1.0, 0.0)])
    second = tmp_path / "more.parquet"  # primaries only, no muons column; one NaN, one beyond the simulator's 89 deg
    pq.write_table(pa.table({"energy": [2e4, np.nan, 1e4], "zenith": [0.1, 0.2, np.radians(89.5)],
                             "mass": [4.0, 1.0, 1.0], "depth": [1.0, 1.0, 1.0]}), second)
    out = tmp_path / "a"
    assert main(["simulate", "--primaries", str(first), str(second), "--out", str(out), "--depths", "0,0.5",
                 "--min-energy", "20", "--seed", "3"]) == 0
    err = capsys.readouterr().err
    assert f"{second} row 2 (E=10000 GeV" in err and "zenith must be in [0, 89 deg]" in err  # its own file and row
    assert "1 rows rejected by the reader (non_finite: 1)" in err
    assert "2 of 4 primaries not simulated" in err
    batch, _ = read_all(out)
    np.testing.assert_allclose(batch.conditions[::2, 0], [1e4, 2e4])  # the two usable primaries, in order
    quarantine = pq.read_table(out / "_quarantine" / "rejected.parquet").to_pydict()
    assert quarantine["file"] == [str(second)] * 2 and sorted(quarantine["row"]) == [1, 2]
    assert sorted(quarantine["reason"]) == ["non_finite", "zenith must be in [0, 89 deg]"]
    manifest = read_manifest(out)
    assert manifest["quarantine"] == ["_quarantine/rejected.parquet"] and manifest["not_simulated"] == 2


@pytest.mark.parametrize("flags, says", [
    (["--showers", "3"], "--showers and --primaries exclude each other"), (["--repeat", "0"], "--repeat"),
    (["--energy", "1e5"], "--energy: sampled primaries only"),
    (["--zenith-range", "0", "10", "--primary", "p"], "--primary, --zenith-range: sampled primaries only"),
    (["--flux", "H3a"], "--flux: sampled primaries only"),
])
def test_conflicting_bad_or_ignored_flags_are_refused(tmp_path, capsys, flags, says):
    primaries = primaries_file(tmp_path, ROWS[:1])
    assert run(tmp_path / "a", primaries, *flags) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_repeat_without_primaries_is_refused_not_ignored(tmp_path, capsys):
    assert main(["simulate", "--showers", "2", "--repeat", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--repeat: only with --primaries" in capsys.readouterr().err


def test_simulate_needs_showers_or_primaries(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "x")]) != 0
    assert "--showers" in capsys.readouterr().err


def test_a_version_1_dataset_stays_readable_but_is_not_continued(tmp_path):
    from dataclasses import replace

    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_dataset

    config = replace(SimConfig(showers=2, energy_range=(1e4, 1e4), depths_km=(0.0,), min_energy=20.0), showers_per_chunk=1)
    simulate_dataset(config, tmp_path / "d")
    shard = shard_path(tmp_path / "d", 0)
    metadata = read_metadata(shard)
    assert metadata["simulator_version"] == SIMULATOR_VERSION
    old = {k: v for k, v in metadata.items() if k != "simulator_version"}  # as version 1 wrote it
    write_shard(read_shard(shard), shard, old)
    shard_path(tmp_path / "d", 1).unlink()
    assert len(read_shard(shard)) == 1
    with pytest.raises(ValueError, match="simulator version 1"):
        simulate_dataset(config, tmp_path / "d")


@pytest.mark.parametrize("site, continued", [("icecube", True), ("km3net-arca", False)])
def test_an_older_dataset_is_continued_only_at_the_sites_where_its_showers_are_reproduced(tmp_path, monkeypatch, site, continued):
    """SAME_SHOWERS_AS names, per older version, the sites where this version gives the same
    showers (version 4 reproduced version 3 in the ice); elsewhere the older dataset is refused."""
    from dataclasses import replace

    from mubundle.sim import version

    monkeypatch.setattr(version, "SAME_SHOWERS_AS", {3: frozenset({"icecube"})})

    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_dataset

    config = replace(SimConfig(showers=2, energy_range=(1e4, 1e4), depths_km=(0.0,), min_energy=20.0, site=site),
                     showers_per_chunk=1)
    simulate_dataset(config, tmp_path / "d")
    shard = shard_path(tmp_path / "d", 0)
    write_shard(read_shard(shard), shard, dict(read_metadata(shard), simulator_version=3))  # as version 3 wrote it
    shard_path(tmp_path / "d", 1).unlink()
    if continued:
        simulate_dataset(config, tmp_path / "d")
        assert shard_path(tmp_path / "d", 1).exists()
    else:
        with pytest.raises(ValueError, match="simulator version 3"):
            simulate_dataset(config, tmp_path / "d")
