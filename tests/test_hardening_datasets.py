"""Data integrity under signals, concurrent runs and hostile inputs (issue 20's root causes
2, 3, 4, 5, 8 and 10; each test name says which).

Signal tests run the real ``mubundle`` command in a subprocess whose input reader pauses
after a few pieces (so "mid-run" is deterministic), then send SIGTERM or SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import SMALL_MODEL, make_synthetic_batch, same_events_up_to_depth_rounding

from mubundle.cli import main
from mubundle.data import native
from mubundle.data.batch import RaggedBatch
from mubundle.data.convert import convert
from mubundle.data.dataset import INCOMPLETE_NAME, MANIFEST_NAME, DatasetIncomplete, read_manifest
from mubundle.data.lock import LOCK_NAME, DirectoryLocked, acquire, directory_lock
from mubundle.data.reader import EventStream
from mubundle.data.sources import expand_paths, read_events
from mubundle.data.writers import write_batch

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")

# `mubundle convert`, with the input reader pausing after its second piece (prints MID-RUN)
PAUSING_CONVERT = textwrap.dedent(
    """
    import sys, time
    import mubundle.data.convert as convert
    original = convert.iter_file_pieces
    def pausing(files, failed):
        for i, item in enumerate(original(files, failed)):
            yield item
            if i == 1:
                print("MID-RUN", flush=True)
                time.sleep(60)
    convert.iter_file_pieces = pausing
    from mubundle.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _inputs(root: Path, files: int = 4, events: int = 40, bad_first_row: bool = False) -> RaggedBatch:
    """``files`` legacy-Parquet files of ``events`` events each (one row group per file);
    returns the valid events. ``bad_first_row``: file 0's row 0 has zenith 2 rad (rejected)."""
    batches = [make_synthetic_batch(events, seed=i) for i in range(files)]
    for i, batch in enumerate(batches):
        conditions = batch.conditions.copy()
        if bad_first_row and i == 0:
            conditions[0, 1] = 2.0
        write_batch(RaggedBatch(conditions, batch.counts, batch.flat_muons), root / "in" / f"f{i}.parquet",
                    format="legacy-parquet")
    if bad_first_row:
        batches[0] = batches[0].slice(1, events)
    return RaggedBatch.concat(batches)


def _start_paused_convert(tmp_path: Path, out: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSING_CONVERT, "convert", str(tmp_path / "in"), "--out", str(out),
         "--events-per-shard", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True,
    )
    assert child.stdout.readline().strip() == "MID-RUN"
    return child


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --------------------------------------------------------------------------- root cause 2
def test_rc2_interrupted_convert_is_not_a_valid_dataset(tmp_path):
    expected = _inputs(tmp_path)
    out = tmp_path / "out"
    child = _start_paused_convert(tmp_path, out)
    assert list(out.rglob("part-*.parquet"))  # complete shards exist on disk ...
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 143
    assert (out / INCOMPLETE_NAME).exists() and not (out / MANIFEST_NAME).exists()
    with pytest.raises(DatasetIncomplete, match="incomplete dataset.*mubundle convert"):  # ... but no reader takes them
        read_events(out)
    with pytest.raises(DatasetIncomplete):
        EventStream(out, batch_size=4)
    with pytest.raises(DatasetIncomplete):  # nor the shard files named one by one
        read_events(sorted(out.rglob("part-*.parquet")))
    # the same command again makes it complete
    assert main(["convert", str(tmp_path / "in"), "--out", str(out), "--events-per-shard", "10"]) == 0
    assert not (out / INCOMPLETE_NAME).exists()
    manifest = read_manifest(out)
    assert manifest["events"] == len(expected) == len(manifest["shards"]) * 10
    assert same_events_up_to_depth_rounding(read_events(out).batch, expected)


def test_rc2_sigkilled_convert_resumes_without_manual_cleanup(tmp_path):
    expected = _inputs(tmp_path)
    out = tmp_path / "out"
    child = _start_paused_convert(tmp_path, out)
    child.kill()
    child.wait(timeout=30)
    with pytest.raises(DatasetIncomplete):
        read_events(out)
    assert main(["convert", str(tmp_path / "in"), "--out", str(out), "--events-per-shard", "10"]) == 0
    assert same_events_up_to_depth_rounding(read_events(out).batch, expected)


def test_rc2_reconvert_keeps_no_stale_shards_or_quarantine(tmp_path):
    big = make_synthetic_batch(100, seed=1)
    conditions = big.conditions.copy()
    conditions[3, 1] = 2.0  # one rejected row -> a quarantine file
    write_batch(RaggedBatch(conditions, big.counts, big.flat_muons), tmp_path / "big" / "a.parquet")
    small = make_synthetic_batch(15, seed=2)
    write_batch(small, tmp_path / "small" / "b.parquet")
    out = tmp_path / "out"
    first = convert([tmp_path / "big"], out, events_per_shard=10)
    assert len(first["shards"]) == 10 and first["quarantine"] is not None
    second = convert([tmp_path / "small"], out, events_per_shard=10)
    assert sorted(p.name for p in out.rglob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert second["quarantine"] is None and not (out / "_quarantine" / "rejected.parquet").exists()
    assert read_events(out).batch.equals(small)
    assert read_manifest(out)["events"] == 15


def test_rc2_convert_into_a_directory_holding_its_inputs_is_refused_before_writing(tmp_path, capsys):
    _inputs(tmp_path, files=2, events=8)  # 16 events, as in the measured case (16 -> 11, exit 0)
    data = tmp_path / "in"
    before = {p: p.read_bytes() for p in data.rglob("*")}
    assert main(["convert", str(data), "--out", str(data), "--events-per-shard", "5"]) == 2
    assert "lies inside the input directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lies inside the output directory"):  # the same through a glob
        convert([str(data / "*.parquet")], data)
    with pytest.raises(ValueError, match="lies inside the input directory"):  # would read itself next time
        convert([data], data / "converted")
    assert {p: p.read_bytes() for p in data.rglob("*")} == before  # nothing written, nothing removed


def test_rc2_convert_does_not_clear_a_dataset_of_another_producer(tmp_path):
    _inputs(tmp_path, files=1)
    sim = tmp_path / "sim"
    native.write_shard(make_synthetic_batch(5), native.shard_path(sim, 0), {"producer": "mubundle simulate"})
    with pytest.raises(ValueError, match="holds a dataset written by mubundle simulate"):
        convert([tmp_path / "in"], sim)
    assert native.shard_path(sim, 0).exists()


def test_rc2_dataset_without_manifest_is_read_with_a_warning(tmp_path, caplog):
    expected = _inputs(tmp_path)
    convert([tmp_path / "in"], tmp_path / "out", events_per_shard=50)
    (tmp_path / "out" / MANIFEST_NAME).unlink()  # as written by mubundle before manifests existed
    with caplog.at_level(logging.WARNING, logger="mubundle.data.dataset"):
        result = read_events(tmp_path / "out")
    assert same_events_up_to_depth_rounding(result.batch, expected)
    assert "no manifest: legacy dataset, completeness unknown" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mubundle.data.dataset"):
        read_events(tmp_path / "out")  # a command lists its data several times: one warning per directory
    assert "no manifest" not in caplog.text


def test_rc2_a_shard_missing_from_a_manifest_dataset_is_refused(tmp_path):
    _inputs(tmp_path)
    summary = convert([tmp_path / "in"], tmp_path / "out", events_per_shard=50)
    Path(summary["shards"][-1]).unlink()
    with pytest.raises(DatasetIncomplete, match="part-00003.parquet.*missing"):
        read_events(tmp_path / "out")


def test_rc2_interrupted_simulate_is_incomplete_until_resumed(tmp_path, monkeypatch):
    import mubundle.sim.run as sim_run
    from mubundle.sim.config import SimConfig

    config = SimConfig(showers=6, showers_per_chunk=2, depths_km=(1.0,), seed=3)
    fake = lambda cfg, chunk: make_synthetic_batch(2, seed=chunk)  # noqa: E731 - the physics is not under test

    def interrupted(cfg, chunk):
        if chunk == 1:
            raise KeyboardInterrupt
        return fake(cfg, chunk)

    monkeypatch.setattr(sim_run, "simulate_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sim_run.simulate_dataset(config, tmp_path / "sim")
    with pytest.raises(DatasetIncomplete, match="mubundle simulate.*continue"):
        read_events(tmp_path / "sim")
    monkeypatch.setattr(sim_run, "simulate_chunk", fake)
    sim_run.simulate_dataset(config, tmp_path / "sim")
    assert read_manifest(tmp_path / "sim")["events"] == 6
    assert len(read_events(tmp_path / "sim").batch) == 6


# --------------------------------------------------------------------------- root cause 3
def test_rc3_sigterm_stops_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    _inputs(tmp_path, bad_first_row=True)  # the interrupted run has a quarantine file open
    out = tmp_path / "out"
    child = _start_paused_convert(tmp_path, out)
    assert [p.name for p in _temporaries(out)] == [f".rejected.parquet.tmp-{child.pid}"]
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 143
    assert "interrupted" in child.stderr.read()
    assert _temporaries(out) == []
    assert not (out / "_quarantine" / "rejected.parquet").exists()  # not committed for an interrupted run


def test_rc3_interrupted_generate_commits_no_quarantine_file(tmp_path):
    from mubundle.generate.run import generate_from_primaries, quarantine_path

    batch = make_synthetic_batch(30, seed=0)
    conditions = batch.conditions.copy()
    conditions[2, 0] = -1.0  # rejected primary: the run has something to quarantine
    write_batch(RaggedBatch(conditions, batch.counts, batch.flat_muons), tmp_path / "primaries.parquet")

    class InterruptedModel:
        def sample(self, *args, **kwargs):
            raise KeyboardInterrupt

    out = tmp_path / "generated.parquet"
    with pytest.raises(KeyboardInterrupt):
        generate_from_primaries(InterruptedModel(), tmp_path / "primaries.parquet", out, progress=False)
    assert not out.exists() and not quarantine_path(out).exists()
    assert _temporaries(tmp_path) == []


def test_rc3_stale_quarantine_of_an_earlier_run_is_not_kept(tmp_path):
    from mubundle.generate.run import generate_from_primaries, quarantine_path

    write_batch(make_synthetic_batch(5, seed=0), tmp_path / "primaries.parquet")
    out = tmp_path / "generated.parquet"
    quarantine_path(out).write_bytes(b"left by an earlier run")

    class EmptyModel:
        def sample(self, energy, *args, **kwargs):
            return RaggedBatch(np.zeros((len(energy), 4), np.float32), np.zeros(len(energy), np.int64), np.zeros((0, 3)))

    summary = generate_from_primaries(EmptyModel(), tmp_path / "primaries.parquet", out, progress=False)
    assert summary.quarantine is None and not quarantine_path(out).exists()


def test_rc3_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    _inputs(tmp_path, files=1)
    out = tmp_path / "out"
    folder = out / "0000000-0000999"
    folder.mkdir(parents=True)
    stale = folder / f".part-00000.parquet.tmp-{_dead_pid()}"
    stale.write_bytes(b"half a shard")
    live_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = folder / f".part-00001.parquet.tmp-{live_process.pid}"
        live.write_bytes(b"another writer's file")
        convert([tmp_path / "in"], out)
        assert not stale.exists() and live.exists()
    finally:
        live_process.kill()
        live_process.wait()


def test_rc3_stale_temporaries_of_a_killed_generate_are_removed_by_the_next_one(tmp_path):
    from mubundle.generate.output import EventFileWriter
    from mubundle.generate.run import quarantine_path

    out = tmp_path / "generated.parquet"
    dead = _dead_pid()
    stale = [tmp_path / f".{out.name}.tmp-{dead}", tmp_path / f".{quarantine_path(out).name}.tmp-{dead}"]
    for path in stale:
        path.write_bytes(b"left by a killed run")
    other = tmp_path / f".other.parquet.tmp-{dead}"  # another output's file is not this run's business
    other.write_bytes(b"x")
    with EventFileWriter(out) as writer:
        writer.write(make_synthetic_batch(3))
    from mubundle.data.validate import QuarantineWriter

    QuarantineWriter(quarantine_path(out)).close()
    assert not any(p.exists() for p in stale) and other.exists() and out.exists()


# --------------------------------------------------------------------------- root cause 4
def test_rc4_same_file_by_absolute_relative_and_symlink_path_is_read_once(tmp_path, monkeypatch):
    batch = make_synthetic_batch(12, seed=0)
    write_batch(batch, tmp_path / "a.parquet")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "a.parquet")
    monkeypatch.chdir(tmp_path)
    paths = [tmp_path / "a.parquet", "a.parquet", "./a.parquet", tmp_path / "link.parquet", str(tmp_path)]
    assert len(expand_paths(paths)) == 1
    assert len(read_events(paths).batch) == 12


def test_rc4_symlink_loop_reads_each_file_once(tmp_path):
    batch = make_synthetic_batch(7, seed=0)
    write_batch(batch, tmp_path / "d" / "a.parquet")
    (tmp_path / "d" / "self").symlink_to(".")
    assert expand_paths(tmp_path / "d") == [tmp_path / "d" / "a.parquet"]
    assert len(expand_paths(str(tmp_path / "d" / "**" / "*.parquet"))) == 1
    assert len(read_events(str(tmp_path / "d" / "**" / "*.parquet")).batch) == 7


# --------------------------------------------------------------------------- root cause 5
def _convert_rows(tmp_path, rows, muons_per_row):
    good = [1e6, 0.3, 4.0, 2.0]
    conditions = np.array([good, *rows], np.float32)
    muons = [[[100.0, 1.0, -1.0]], *muons_per_row]
    counts = [len(m) for m in muons]
    flat = np.array([m for event in muons for m in event], np.float32).reshape(-1, 3)
    native.write_shard(RaggedBatch(conditions, counts, flat), tmp_path / "in.parquet")
    return convert([tmp_path / "in.parquet"], tmp_path / "out")


def test_rc5_implausible_values_are_rejected_counted_and_quarantined(tmp_path):
    rows = [[1e30, 0.3, 4.0, 2.0], [0.5, 0.3, 4.0, 2.0], [1e6, 0.3, 300.0, 2.0], [1e6, 0.3, 1.5, 2.0],
            [1e6, 0.3, 4.0, 1e6], [1e6, 0.3, 4.0, 2.0], [1e6, 0.3, 4.0, 2.0], [1e6, 0.3, 56.0, 2.0]]
    muons = [[], [], [], [], [], [[10.0, 1e30, 0.0]], [[2e6, 0.0, 0.0]], [[1e5, 300.0, -2.0]]]
    summary = _convert_rows(tmp_path, rows, muons)
    assert summary["rejected"] == {
        "energy_implausible": 2, "mass_implausible": 2, "depth_implausible": 1,
        "muon_position_implausible": 1, "muon_energy_above_primary": 1,
    }
    assert summary["events"] == 2  # the good first row and the iron row at 56
    quarantined = pq.read_table(summary["quarantine"]).to_pylist()
    assert [r["row"] for r in quarantined] == [1, 2, 3, 4, 5, 6, 7]
    assert quarantined[2]["mass"] == 300.0


def test_rc5_multiplicity_above_the_cap_is_reported_not_silently_capped(caplog):
    import dataclasses

    import torch

    from mubundle.model.multiplicity import MultiplicityModel

    model = MultiplicityModel(dataclasses.replace(SMALL_MODEL, max_multiplicity=5))
    k = model.components
    parameters = (torch.full((4, k), -np.log(k)), torch.full((4, k), np.log(1e4)), torch.full((4, k), np.log(50.0)))
    with caplog.at_level(logging.WARNING, logger="mubundle.model.multiplicity"):
        counts = model.sample_from_parameters(parameters, torch.Generator().manual_seed(0))
    assert int(counts.max()) == 5
    assert model.draws_above_cap == 4 and model.draws_capped == 4
    assert "4 of 4 multiplicity draws were above max_multiplicity=5" in caplog.text


# --------------------------------------------------------------------------- root cause 8
def test_rc8_fifo_named_parquet_does_not_block_inspect(tmp_path):
    write_batch(make_synthetic_batch(9, seed=0), tmp_path / "d" / "good.parquet")
    os.mkfifo(tmp_path / "d" / "pipe.parquet")
    for target in (tmp_path / "d", tmp_path / "d" / "pipe.parquet"):
        done = subprocess.run([sys.executable, "-m", "mubundle", "inspect", str(target)], env=ENV,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        assert f"FAILED {tmp_path / 'd' / 'pipe.parquet'}: not a regular file (FIFO)" in done.stdout


# --------------------------------------------------------------------------- root cause 10
HOLD_LOCK = "import sys, time; from mubundle.data.lock import acquire; acquire(sys.argv[1], 'mubundle train'); " \
            "print('LOCKED', flush=True); time.sleep(60)"


def _holder(directory: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, env=ENV, text=True)
    assert child.stdout.readline().strip() == "LOCKED"
    return child


def test_rc10_second_train_on_live_run_dir_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir)
    try:
        code = main(["train", "--data", str(tmp_path / "none.parquet"), "--run", str(run_dir), "--max-steps", "1"])
        assert code == 2
        err = capsys.readouterr().err
        assert f"{run_dir} is in use by PID {holder.pid} (mubundle train)" in err
        assert not (run_dir / "config.yaml").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()


def test_rc10_only_rank_zero_of_a_torchrun_job_takes_the_lock(tmp_path, monkeypatch):
    import mubundle.train.loop as loop

    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: {"steps": 0})  # the lock is under test, not training
    run_dir = tmp_path / "run"
    holder = _holder(run_dir)  # stands for rank 0 holding the run directory
    try:
        argv = ["train", "--data", str(tmp_path / "none.parquet"), "--run", str(run_dir), "--max-steps", "1"]
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        assert main(argv) == 0  # rank 1 does not lock: it is not refused by its own job's rank 0
        monkeypatch.setenv("RANK", "0")
        assert main(argv) == 2  # a second job's rank 0 is
    finally:
        holder.kill()
        holder.wait()


def test_rc10_sigkilled_run_leaves_no_stale_lock(tmp_path):
    holder = _holder(tmp_path / "run")
    holder.kill()
    holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # the file stays, the lock does not
    with directory_lock(tmp_path / "run", "test"):
        pass


def test_rc10_second_convert_and_simulate_into_a_live_output_are_refused(tmp_path):
    from mubundle.sim.config import SimConfig
    from mubundle.sim.run import simulate_dataset

    _inputs(tmp_path, files=1)
    holder = _holder(tmp_path / "out")
    try:
        with pytest.raises(DirectoryLocked, match=f"in use by PID {holder.pid}"):
            convert([tmp_path / "in"], tmp_path / "out")
        with pytest.raises(DirectoryLocked, match=f"in use by PID {holder.pid}"):
            simulate_dataset(SimConfig(showers=1, showers_per_chunk=1), tmp_path / "out")
        assert not (tmp_path / "out" / INCOMPLETE_NAME).exists()
    finally:
        holder.kill()
        holder.wait()


def test_rc10_supervised_attempts_inherit_the_lock_and_others_are_refused(tmp_path, monkeypatch):
    from mubundle.train.supervisor import supervise

    run_dir = tmp_path / "run"
    attempt = ("import sys; from mubundle.data.lock import acquire; "
               f"acquire({str(run_dir)!r}, 'attempt'); print('attempt holds the lock')")
    with directory_lock(run_dir, "mubundle train --max-restarts") as lock:
        outsider = subprocess.run([sys.executable, "-c", attempt], env=ENV, capture_output=True, text=True)
        assert outsider.returncode != 0 and "DirectoryLocked" in outsider.stderr
        monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
        result = supervise([], run_dir, 0, 0.01, 0.01, echo=None, program=[sys.executable, "-c", attempt], lock=lock)
    assert result.exit_code == 0
    assert "attempt holds the lock" in result.log_paths[0].read_text()


def test_rc10_nested_acquisition_in_one_process_is_reentrant(tmp_path):
    outer = acquire(tmp_path, "outer")
    inner = acquire(tmp_path, "inner")
    inner.release()
    holder = subprocess.run([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], env=ENV, capture_output=True,
                            text=True, timeout=30)
    assert holder.returncode != 0  # still held by `outer`
    outer.release()
    started = time.monotonic()
    with directory_lock(tmp_path, "again"):
        assert time.monotonic() - started < 1


def test_rc10_evaluate_and_refit_into_a_live_output_are_refused(tmp_path):
    from mubundle.evaluate.report import evaluate_model
    from mubundle.train.multiplicity_fit import MultiplicityFitConfig, refit_multiplicity

    _inputs(tmp_path, files=1)
    holder = _holder(tmp_path / "out")
    try:
        with pytest.raises(DirectoryLocked, match=f"in use by PID {holder.pid}"):
            evaluate_model(None, [tmp_path / "in"], tmp_path / "out", allow_extrapolation=True)
        with pytest.raises(DirectoryLocked, match=f"in use by PID {holder.pid}"):
            refit_multiplicity(None, [tmp_path / "in"], [tmp_path / "in"], tmp_path / "out", MultiplicityFitConfig())
        assert not (tmp_path / "out" / "metrics.json").exists() and not (tmp_path / "out" / "model.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_rc2_an_input_directory_without_data_files_is_reported_not_read_as_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    loaded = read_events([tmp_path / "empty"])
    assert len(loaded.batch) == 0
    assert [f["path"] for f in loaded.failed_files] == [str(tmp_path / "empty")]
    assert "directory without data files" in loaded.failed_files[0]["error"]
