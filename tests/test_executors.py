"""One executor interface for simulate and generate: this process, local processes, Dask.

The Dask tests run a real ``LocalCluster`` of 2 worker processes on this machine."""

from __future__ import annotations

import math
import time
import warnings

import pytest

from mubundle.cli import main
from mubundle.data.native import read_metadata, shard_path
from mubundle.errors import OneLineWarningFormat
from mubundle.executors import DaskExecutor, ProcessExecutor, SerialExecutor, open_executor
from mubundle.sim.config import SimConfig
from mubundle.sim.run import simulate_dataset

TINY = SimConfig(showers=6, showers_per_chunk=2, energy_range=(1e4, 1e4), depths_km=(0.0, 1.0), min_energy=20.0, seed=11)


def square(x: int) -> int:
    return x * x


def shard_bytes(out_dir, config: SimConfig) -> list[bytes]:
    return [shard_path(out_dir, c).read_bytes() for c in range(config.n_chunks)]


def test_serial_and_process_executors_give_results_unordered_or_in_job_order():
    jobs = range(7)
    assert list(SerialExecutor().map(square, jobs, ordered=True)) == [x * x for x in jobs]
    with ProcessExecutor(2) as executor:  # a stdlib task: the spawned workers import nothing else
        unordered = list(executor.map(time.sleep, [0.5, 0, 0, 0], window=3))
        ordered = list(executor.map(math.factorial, jobs, ordered=True, window=3))
    assert unordered == [None] * 4
    assert ordered == [math.factorial(x) for x in jobs]


def formatted_warning(text: str) -> str:
    """How this process would print a UserWarning with ``text`` (runs in a worker)."""
    return warnings.formatwarning(text, UserWarning, "/somewhere/module.py", 12)


def test_worker_processes_print_warnings_in_the_commands_one_line_format(monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", OneLineWarningFormat("mubundle simulate"))
    with ProcessExecutor(1) as executor:
        (text,) = executor.map(formatted_warning, ["a cross section is extrapolated"])
    assert text == "mubundle simulate: warning: a cross section is extrapolated\n"
    monkeypatch.setattr(warnings, "formatwarning", lambda *args, **kwargs: "closure")  # cannot travel
    with ProcessExecutor(1) as executor:
        (text,) = executor.map(formatted_warning, ["x"])
    assert "/somewhere/module.py:12: UserWarning: x" in text  # Python's own format in the worker


def test_unordered_results_come_as_tasks_finish_and_ordered_ones_in_job_order():
    class Finished:
        def __init__(self, value):
            self.value = value

        def result(self):
            return self.value

        def cancel(self):
            return False

    class Reversed(SerialExecutor):
        """Finishes the most recently submitted of the pending jobs first."""

        def _submit(self, task, job, key):
            return Finished(task(job))

        def _wait_any(self, futures):
            return futures[-1:]

    jobs = list(range(6))
    assert list(Reversed().map(square, jobs, window=3)) != [x * x for x in jobs]
    assert sorted(Reversed().map(square, jobs, window=3)) == sorted(x * x for x in jobs)
    assert list(Reversed().map(square, jobs, ordered=True, window=3)) == [x * x for x in jobs]


def test_a_lazy_job_stream_is_consumed_within_the_window():
    consumed = []

    def jobs():
        for x in range(10):
            consumed.append(x)
            yield x

    results = SerialExecutor().map(square, jobs())
    assert next(results) == 0 and consumed == [0]  # one job in flight at a time in this process


def test_workers_and_dask_exclude_each_other_and_local_needs_a_count():
    with pytest.raises(ValueError, match="local:N"):
        open_executor("local:2", workers=2)
    with pytest.raises(ValueError, match="positive number"):
        open_executor("local:0")
    assert isinstance(open_executor(None, workers=4, jobs=1), SerialExecutor)
    from mubundle.generate.tasks import ModelRef, require_model_ref

    require_model_ref(ModelRef("fast"), "local:2")
    with pytest.raises(ValueError, match="ModelRef"):  # a loaded model would be pickled into every task
        require_model_ref(object(), "local:2")


@pytest.mark.parametrize("flags", [["--dask", "local:0"], ["--dask", "local:2", "--workers", "2"]])
def test_simulate_refuses_impossible_executor_flags_before_it_writes_anything(tmp_path, capsys, flags):
    from mubundle.cli import main

    assert main(["simulate", "--showers", "2", "--out", str(tmp_path / "out"), *flags]) == 2
    assert "--dask" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-threaded worker processes (nannies restart killed ones)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def test_simulate_on_dask_is_identical_even_when_a_worker_is_killed_mid_task(cluster, tmp_path):
    from distributed import Client
    from distributed.diagnostics.plugin import WorkerPlugin

    marker = tmp_path / "killed-once"

    class KillOnFirstChunk(WorkerPlugin):
        """Kills its worker process (SIGKILL) when the first simulate task starts executing."""

        def __init__(self, marker_path: str) -> None:
            self.marker_path = marker_path

        def transition(self, key, start, finish, **kwargs):
            import os as _os
            import signal as _signal

            if finish == "executing" and str(key).startswith("simulate-chunk") and not _os.path.exists(self.marker_path):
                open(self.marker_path, "w").close()
                _os.kill(_os.getpid(), _signal.SIGKILL)

    simulate_dataset(TINY, tmp_path / "local", workers=1)
    with Client(cluster) as client:
        client.register_plugin(KillOnFirstChunk(str(marker)), name="kill-once")
        try:
            simulate_dataset(TINY, tmp_path / "dask", dask=cluster)
        finally:
            client.unregister_worker_plugin("kill-once")
    assert marker.exists()  # a worker really died during the run
    assert shard_bytes(tmp_path / "dask", TINY) == shard_bytes(tmp_path / "local", TINY)

    # an interrupted run resumes: finished shards are kept, the missing one is simulated again
    kept = shard_path(tmp_path / "dask", 0)
    kept_mtime = kept.stat().st_mtime_ns
    shard_path(tmp_path / "dask", 2).unlink()
    simulate_dataset(TINY, tmp_path / "dask", dask=cluster)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert shard_bytes(tmp_path / "dask", TINY) == shard_bytes(tmp_path / "local", TINY)
    assert read_metadata(shard_path(tmp_path / "dask", 2))["chunk"] == 2


def test_each_dask_worker_loads_the_model_once_and_generation_is_identical(cluster, tmp_path):
    from distributed import Client

    from mubundle.generate.api import load_model
    from mubundle.generate.run import FluxSettings, generate_from_flux
    from mubundle.generate.tasks import ModelRef

    settings = FluxSettings(events=120, depths_km=(1.5, 2.0))
    local = generate_from_flux(load_model(), settings, tmp_path / "local.parquet", seed=4, events_per_chunk=60, progress=False)
    on_dask = generate_from_flux(ModelRef(), settings, tmp_path / "dask.parquet", seed=4, events_per_chunk=60,
                                 progress=False, dask=cluster)
    assert on_dask.events == local.events == 240 and on_dask.rate_hz == local.rate_hz
    assert (tmp_path / "dask.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()

    def models_loaded():
        from mubundle.generate import tasks

        return len(tasks._MODELS)

    with Client(cluster) as client:
        loaded = client.run(models_loaded)
    assert set(loaded.values()) <= {0, 1} and sum(loaded.values()) >= 1  # 4 chunks, at most one load per worker


def test_generate_command_takes_dask_and_refuses_it_with_workers_conflicts(cluster, tmp_path, capsys):
    out = tmp_path / "g.parquet"
    assert main(["generate", "--flux", "H3a", "--events", "50", "--depths", "1.5", "--out", str(out),
                 "--no-progress", "--events-per-chunk", "20", "--dask", cluster]) == 0
    assert '"events": 50' in capsys.readouterr().out
    assert main(["simulate", "--out", str(tmp_path / "s"), "--showers", "2", "--workers", "2", "--dask", "local:2"]) == 2
    assert "local:N" in capsys.readouterr().err


def test_dask_executor_reports_an_unreachable_scheduler_in_one_line():
    pytest.importorskip("distributed")
    with pytest.raises(ConnectionError, match="cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", timeout_s=1.0)
