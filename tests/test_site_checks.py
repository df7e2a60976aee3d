"""Data of another observation site is refused wherever a model meets it: a reference for
`evaluate`, primaries for `generate --primaries` (unless the file records no site), as for
`calibrate` and `refit-multiplicity` (tests/test_model_calibration.py, test_train_multiplicity_fit.py).
Depths and muons of another site are in another medium."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import make_synthetic_batch
from mubundle.cli import main
from mubundle.data.batch import RaggedBatch
from mubundle.data.lock import LOCK_NAME, directory_lock
from mubundle.data.native import write_shard
from mubundle.data.sites import site_of_paths


def arca_events(n: int, seed: int) -> RaggedBatch:
    """Events inside km3net-arca's domain (E0 1e4-1e6 GeV, zenith <= 6 deg, slant depth 3-3.3 km)."""
    batch = make_synthetic_batch(n, seed=seed)
    rng = np.random.default_rng(seed)
    conditions = batch.conditions.copy()
    conditions[:, 0] = 10 ** rng.uniform(4, 6, n)
    conditions[:, 1] = rng.uniform(0, 0.1, n)
    conditions[:, 3] = rng.uniform(3.0, 3.3, n)
    muons = batch.flat_muons.copy()
    muons[:, 0] = np.minimum(muons[:, 0], np.repeat(conditions[:, 0], batch.counts) / 2)
    return RaggedBatch(conditions.astype(batch.conditions.dtype), batch.counts, muons)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    events = arca_events(60, seed=3)
    write_shard(events, root / "ice" / "part-00000.parquet", {"site": "icecube"})
    write_shard(events, root / "sea" / "part-00000.parquet", {"site": "km3net-arca"})
    write_shard(events, root / "unrecorded.parquet", {})  # no site key: South Pole ice, as before sites
    c = events.conditions
    pq.write_table(pa.table({"energy": c[:, 0], "zenith": c[:, 1], "mass": c[:, 2], "depth": c[:, 3]}),
                   root / "primaries.parquet")
    return root


def test_site_of_paths_counts_files_without_a_site_as_ice_but_primaries_only_as_of_no_site(files):
    assert site_of_paths([files / "ice"]) == "icecube" and site_of_paths([files / "unrecorded.parquet"]) == "icecube"
    assert site_of_paths([files / "sea"], primaries=True) == "km3net-arca"
    assert site_of_paths([files / "primaries.parquet"], primaries=True) is None
    assert site_of_paths([files / "primaries.parquet", files / "sea"], primaries=True) == "km3net-arca"
    with pytest.raises(ValueError, match="the primaries mix observation sites: icecube .*km3net-arca"):
        site_of_paths([files / "ice", files / "sea"], what="the primaries mix", primaries=True)


@pytest.mark.parametrize("reference", ["ice", "unrecorded.parquet"])
def test_evaluate_refuses_a_reference_of_another_site_before_it_writes_anything(files, tmp_path, capsys, reference):
    out = tmp_path / "report"
    assert main(["evaluate", "--model", "km3net-arca", "--reference", str(files / reference), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mubundle evaluate: error: reference data {files / reference} is of site 'icecube', but model "
                   "'km3net-arca' was trained at site 'km3net-arca' (sea water): depths and muons of another site are "
                   "in another medium; use data of `mubundle simulate --site km3net-arca` or a model of site 'icecube'")
    assert not out.exists()


def test_evaluate_takes_a_reference_of_the_models_site(files, tmp_path):
    assert main(["evaluate", "--model", "km3net-arca", "--reference", str(files / "sea"), "--out",
                 str(tmp_path / "report")]) == 0


def test_generate_refuses_primaries_recorded_at_another_site_and_takes_files_that_record_none(files, tmp_path, capsys):
    out = tmp_path / "gen.parquet"
    assert main(["generate", "--model", "km3net-arca", "--primaries", str(files / "ice"), "--out", str(out),
                 "--no-progress"]) == 2
    assert "primaries " + str(files / "ice") + " is of site 'icecube', but model 'km3net-arca'" in capsys.readouterr().err
    assert not out.exists()
    for source in ("sea", "primaries.parquet"):
        assert main(["generate", "--model", "km3net-arca", "--primaries", str(files / source), "--out", str(out),
                     "--no-progress", "--overwrite"]) == 0


def test_a_failed_command_leaves_no_folder_holding_only_its_lock(tmp_path):
    with pytest.raises(RuntimeError):
        with directory_lock(tmp_path / "new", "test"):
            raise RuntimeError("refused")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):  # something was written: the folder and what it holds stay
        with directory_lock(tmp_path / "written", "test"):
            (tmp_path / "written" / "quarantine.parquet").write_bytes(b"x")
            raise RuntimeError("refused")
    assert sorted(p.name for p in (tmp_path / "written").iterdir()) == [LOCK_NAME, "quarantine.parquet"]
    (tmp_path / "old").mkdir()  # a folder the user made stays, even empty
    with pytest.raises(RuntimeError):
        with directory_lock(tmp_path / "old", "test"):
            raise RuntimeError("refused")
    assert (tmp_path / "old").is_dir()
