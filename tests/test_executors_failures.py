"""The Dask executor when the cluster fails: an address that is no address, a scheduler that
refuses the connection, one that has no workers, one lost while chunks run. Each ends in one
line naming the scheduler (or a warning, for the cluster without workers), never a traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mubundle.cli import main
from mubundle.data.native import shard_path
from mubundle.errors import EXIT_DISTRIBUTED, EXIT_USAGE, exit_code_and_message
from mubundle.executors import (
    DASK_ADDRESS_FORMS, SCHEMES_NOT_OVER_TCP, DaskConnectionError, DaskExecutor, SerialExecutor,
    check_executor_arguments, check_scheduler_reachable,
)
from mubundle.sim.config import SimConfig
from mubundle.sim.run import simulate_dataset

TINY = SimConfig(showers=6, showers_per_chunk=2, energy_range=(1e4, 1e4), depths_km=(0.0, 1.0), min_energy=20.0, seed=11)


def square(x: int) -> int:
    return x * x


def closed_port() -> int:
    """A local TCP port nothing listens on (connecting to it is refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address", ["foo", "tcp://host-without-port", "nosuchscheme://host:8786"])
def test_a_dask_value_that_is_no_address_is_refused_naming_the_accepted_forms(tmp_path, capsys, address):
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="tcp://host:8786"):
        check_executor_arguments(address)
    assert main(["simulate", "--showers", "2", "--out", str(tmp_path / "out"), "--dask", address]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == f"mubundle simulate: error: {DASK_ADDRESS_FORMS}, got {address!r}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["inproc://10.0.0.1/1234/1", "ucx://10.0.0.2:8786", "ucxx://10.0.0.2:8786"])
def test_an_address_not_over_tcp_is_neither_parsed_nor_probed_by_either_check(address, monkeypatch):
    pytest.importorskip("distributed")
    from distributed.comm.registry import backends

    monkeypatch.setitem(backends, "ucxx", object())  # the scheme distributed-ucxx registers when installed

    def tcp_probe(*args, **kwargs):
        raise AssertionError(f"{address} was probed by a TCP connection")

    monkeypatch.setattr(socket, "create_connection", tcp_probe)
    check_executor_arguments(address)
    check_scheduler_reachable(address, timeout_s=1.0)


def test_every_transport_distributed_knows_is_over_tcp_or_left_to_the_client():
    pytest.importorskip("distributed")
    from distributed.comm.registry import backends
    from distributed.comm.tcp import BaseTCPBackend  # tcp, tls, ws, wss: host:port over a TCP socket

    not_over_tcp = {scheme for scheme, backend in backends.items() if not isinstance(backend, BaseTCPBackend)}
    assert not_over_tcp <= SCHEMES_NOT_OVER_TCP


def test_a_refused_scheduler_fails_at_once_and_leaves_no_output(tmp_path, capsys):
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{closed_port()}"
    started = time.perf_counter()
    with pytest.raises(DaskConnectionError, match=f"cannot connect to the Dask scheduler at {address}: Connection refused"):
        simulate_dataset(TINY, tmp_path / "sim", dask=address)
    assert time.perf_counter() - started < 5  # not distributed's 30 s of retries
    assert not (tmp_path / "sim").exists()  # no _INCOMPLETE.json, no sim_config.yaml

    assert main(["simulate", "--showers", "2", "--out", str(tmp_path / "cli"), "--dask", address]) == EXIT_DISTRIBUTED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot connect to the Dask scheduler at {address}" in err
    assert not (tmp_path / "cli").exists()

    from mubundle.generate.run import FluxSettings, generate_from_flux
    from mubundle.generate.tasks import ModelRef

    with pytest.raises(DaskConnectionError, match="cannot connect"):
        generate_from_flux(ModelRef(), FluxSettings(events=10, depths_km=(1.5,)), tmp_path / "gen" / "g.parquet",
                           progress=False, dask=address)
    assert not (tmp_path / "gen").exists()  # the executor is opened before the output file is begun


def test_a_scheduler_without_workers_is_waited_for_with_one_warning(monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(DaskExecutor, "WORKER_CHECK_S", 0.3)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with DaskExecutor(address) as executor:
            arrival = threading.Timer(1.5, cluster.scale, args=(1,))  # the worker an adaptive cluster would start
            arrival.start()
            try:
                with pytest.warns(UserWarning) as caught:
                    results = sorted(executor.map(square, range(4)))
            finally:
                arrival.cancel()
    assert results == [0, 1, 4, 9]
    assert [str(w.message) for w in caught] == [
        f"the Dask scheduler at {address} has no workers yet; waiting for them (Ctrl-C to stop)"]


@contextlib.contextmanager
def no_logging_configured():
    """The root logger without handlers, as in a program that configured no logging (the
    ``mubundle`` command); pytest's own handlers are put back afterwards."""
    root = logging.getLogger()
    configured = root.handlers[:]
    for handler in configured:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in configured:
            root.addHandler(handler)


@pytest.fixture
def doomed_scheduler():
    """(address, process) of a Dask scheduler in its own process with one single-threaded worker;
    the test may SIGKILL the scheduler. Both processes are ended afterwards."""
    pytest.importorskip("distributed")
    port = closed_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", str(port),
                                  "--no-dashboard"], **quiet)
    worker = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or scheduler.poll() is not None:
                    pytest.fail("the test's Dask scheduler did not start")
                time.sleep(0.2)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-nanny", "--death-timeout", "5"], **quiet)
        yield address, scheduler
    finally:
        for process in (worker, scheduler):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_losing_the_scheduler_mid_run_is_one_line_and_the_finished_shards_are_kept(doomed_scheduler, tmp_path,
                                                                                      monkeypatch):
    address, scheduler = doomed_scheduler
    import mubundle.sim.run as sim_run

    write_chunk = sim_run._write_chunk

    def write_after_losing_the_scheduler(config, out_dir, chunk, batch=None):
        if scheduler.poll() is None:  # the first chunk back: the scheduler dies (kill -9)
            os.kill(scheduler.pid, signal.SIGKILL)
            scheduler.wait()
            time.sleep(0.5)  # the client notices the closed connection
        return write_chunk(config, out_dir, chunk, batch)

    monkeypatch.setattr(sim_run, "_write_chunk", write_after_losing_the_scheduler)

    class Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    config = SimConfig(showers=12, showers_per_chunk=1, energy_range=(1e5, 1e5), depths_km=(0.0, 1.0), min_energy=20.0,
                       seed=11)
    out = tmp_path / "sim"
    client_log = logging.getLogger("distributed.client")
    seen = Records()
    client_log.addHandler(seen)
    started = time.perf_counter()
    try:  # a program that configured no logging: distributed's records about the loss are dropped
        with no_logging_configured(), pytest.raises(DaskConnectionError) as lost:
            simulate_dataset(config, out, dask=address, progress=False)
    finally:
        client_log.removeHandler(seen)
    assert time.perf_counter() - started < 60  # not stuck reconnecting
    code, message = exit_code_and_message(lost.value)
    assert code == EXIT_DISTRIBUTED
    assert message == (f"lost the connection to the Dask scheduler at {address} (1 chunk of this run had finished); "
                       f"the shards finished so far are kept in {out}: start the cluster again and run the same command "
                       "to continue")
    assert [record.getMessage() for record in seen.records] == []
    assert shard_path(out, 0).exists() and (out / "_INCOMPLETE.json").exists()  # the same command resumes


def test_a_lost_scheduler_during_generate_says_the_output_was_not_written(tmp_path, capsys, monkeypatch):
    """The generate side of the loss above, without a cluster: the executor's loss reaches the user
    as one line saying the output was not written, and no file is left."""
    import mubundle.generate.run as generate_run

    class LosesItsScheduler(SerialExecutor):
        def __init__(self, lost_hint):
            self.lost_hint = lost_hint

        def map(self, task, jobs, ordered=False, window=None, name="task"):
            raise DaskConnectionError(f"lost the connection to the Dask scheduler at tcp://x:1; {self.lost_hint}")
            yield  # a generator, as the real map

    monkeypatch.setattr(generate_run, "open_executor", lambda dask, lost_hint: LosesItsScheduler(lost_hint))
    out = tmp_path / "g.parquet"
    assert main(["generate", "--flux", "H3a", "--events", "10", "--depths", "1.5", "--out", str(out), "--no-progress",
                 "--dask", "tcp://127.0.0.1:8786"]) == EXIT_DISTRIBUTED
    assert capsys.readouterr().err == (
        "mubundle generate: error: lost the connection to the Dask scheduler at tcp://x:1; "
        f"{out} was not written: start the cluster again and run the same command again\n")
    assert list(tmp_path.iterdir()) == []


def test_a_program_that_configured_logging_keeps_distributeds_records():
    """The records about a lost connection are dropped only where nobody configured logging."""
    pytest.importorskip("distributed")
    from mubundle.executors import _ConnectionLossFilter

    class Lost:
        _lost = True

    with no_logging_configured():
        logging.getLogger().addHandler(configured := logging.NullHandler())
        try:
            assert _ConnectionLossFilter.install(Lost()) is None
        finally:
            logging.getLogger().removeHandler(configured)
        log_filter = _ConnectionLossFilter.install(Lost())
    try:
        assert log_filter in logging.getLogger("distributed.client").filters
        assert not log_filter.filter(logging.makeLogRecord({"msg": "Failed to reconnect to scheduler"}))
    finally:
        _ConnectionLossFilter.remove(log_filter)
    assert log_filter not in logging.getLogger("distributed.client").filters
