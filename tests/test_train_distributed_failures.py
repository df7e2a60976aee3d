"""Failures of a distributed run: every rank says which rank it is and what went wrong in one
line, a lost peer or a busy MASTER_PORT is exit 7 (not an internal error), a resume with another
number of processes and ranks that see other data files are refused alike on every rank, a rank
waiting for its peers says so and stops on SIGTERM; and the reports of a run (TensorBoard flags,
the stop in train.log, the config warning once)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import mubundle
from mubundle import errors
from mubundle.configio import to_yaml
from mubundle.train import loop
from mubundle.train.distributed import DistContext
from test_train_loop import tiny_config, write_dataset

SOURCE = Path(mubundle.__file__).resolve().parents[1]  # the child runs the package this test imported


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _cli_worker(rank: int, world_size: int, port: int, argvs: list[list[str]], cwds: list[str], out: str) -> None:
    """``mubundle.cli.main(argvs[rank])`` as rank ``rank`` run from ``cwds[rank]``: its exit code and stderr in OUT."""
    import contextlib
    import io

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.pop(errors.DEBUG_ENV, None)
    torch.set_num_threads(1)
    os.chdir(cwds[rank])
    from mubundle.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(argvs[rank])
    Path(out, f"rank{rank}.json").write_text(json.dumps({"code": code, "stderr": stderr.getvalue()}))


def _run_ranks(tmp_path: Path, argvs: list[list[str]], cwds: list[Path] | None = None) -> list[dict]:
    world_size = len(argvs)
    cwds = [str(c) for c in (cwds or [tmp_path] * world_size)]
    mp.spawn(_cli_worker, args=(world_size, _free_port(), argvs, cwds, str(tmp_path)), nprocs=world_size, join=True)
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def _config_file(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(to_yaml(tiny_config(**overrides)))
    return path


# ------------------------------------------------------------------------- real gloo processes
def test_resume_with_more_processes_than_the_checkpoint_is_refused_alike_on_every_rank(tmp_path):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    loop.train([data], run, tiny_config(max_steps=1))  # a checkpoint written by one process
    (run / "config.yaml").write_text(to_yaml(tiny_config(max_steps=1)))
    argv = ["train", "--data", str(data), "--run-dir", str(run), "--max-steps", "2"]
    ranks = _run_ranks(tmp_path, [argv, argv])

    for rank, result in enumerate(ranks):
        assert result["code"] == errors.EXIT_USAGE, result
        (line,) = _error_lines(result["stderr"])
        assert line.startswith(f"mubundle train (rank {rank}): error: cannot resume {run} from step-000000001.pt: "
                               f"it was written by 1 process(es) but this run has 2")
        assert "torchrun --nproc_per_node 1" in line
        # what the rank waited for, before the wait
        assert any(line.startswith("waiting for the other 1 process at 127.0.0.1:") and f"(rank {rank} of 2)" in line
                   for line in result["stderr"].splitlines())


def test_a_rank_that_fails_names_itself_and_the_others_report_the_lost_contact_with_exit_7(tmp_path):
    data = write_dataset(tmp_path / "data")
    config = _config_file(tmp_path)
    run = tmp_path / "run"
    good = ["train", "--data", str(data), "--run-dir", str(run), "--config", str(config)]
    bad = ["train", "--data", str(tmp_path / "absent"), "--run-dir", str(run), "--config", str(config)]
    rank0, rank1 = _run_ranks(tmp_path, [good, bad])

    assert rank1["code"] == errors.EXIT_USAGE
    (line,) = _error_lines(rank1["stderr"])
    assert line.startswith("mubundle train (rank 1): error: ") and "absent" in line
    assert rank0["code"] == errors.EXIT_DISTRIBUTED, rank0
    (line,) = _error_lines(rank0["stderr"])
    assert line.startswith("mubundle train (rank 0): error: lost contact with the other processes (")
    assert line.endswith("): another rank failed (see its error); run the same command again to resume from "
                         "the last checkpoint")
    assert "internal error" not in rank0["stderr"] and "pair.cc" not in line


def test_ranks_that_list_different_data_files_are_refused_before_any_step(tmp_path):
    # the same relative --data on two "nodes", one of which lacks a shard (no manifest to tell)
    for node in ("nodeA", "nodeB"):
        write_dataset(tmp_path / node / "data")
    missing = "0001000-0001999/part-00000.parquet"
    (tmp_path / "nodeB" / "data" / missing).unlink()
    run = tmp_path / "run"
    argv = ["train", "--data", "data", "--run-dir", str(run), "--config", str(_config_file(tmp_path))]
    ranks = _run_ranks(tmp_path, [argv, argv], cwds=[tmp_path / "nodeA", tmp_path / "nodeB"])

    for rank, result in enumerate(ranks):
        assert result["code"] == errors.EXIT_USAGE, result
        (line,) = _error_lines(result["stderr"])
        assert line.startswith(f"mubundle train (rank {rank}): error: the processes see different --data files: "
                               f"rank 1 differs from rank 0; on rank 1: data/{missing} is missing")
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()


def _train_subprocess(tmp_path: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SOURCE), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
               RANK="0", LOCAL_RANK="0", OMP_NUM_THREADS="1")
    env.pop(errors.DEBUG_ENV, None)
    data = write_dataset(tmp_path / "data")
    command = [sys.executable, "-m", "mubundle.cli", "train", "--data", str(data), "--run-dir", str(tmp_path / "run"),
               "--config", str(_config_file(tmp_path))]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def test_master_port_in_use_is_one_line_naming_the_port_with_exit_7(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        child = _train_subprocess(tmp_path, port)
        _, stderr = child.communicate(timeout=300)
    assert child.returncode == errors.EXIT_DISTRIBUTED, stderr
    (line,) = _error_lines(stderr)
    assert line.startswith(f"mubundle train (rank 0): error: MASTER_PORT {port} is in use by another program")
    assert "internal error" not in stderr and "Traceback" not in stderr


def test_sigterm_ends_a_rank_waiting_for_its_peers(tmp_path):
    child = _train_subprocess(tmp_path, _free_port())
    try:
        assert child.stderr is not None
        assert select.select([child.stderr], [], [], 60)[0], "nothing said on stderr in 60 s"
        first = child.stderr.readline()  # printed right before the wait
        assert first.startswith("waiting for the other 1 process at 127.0.0.1:") and "(rank 0 of 2)" in first
        time.sleep(1.0)  # inside init_process_group's connect loop
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=20)  # not the backend's 30-minute timeout
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGTERM


# ------------------------------------------------------------------------- without processes
def test_backend_errors_are_recognised_only_in_a_distributed_run_and_only_from_the_backend():
    from mubundle.train.distributed import backend_failure

    two = DistContext(rank=1, world_size=2, local_rank=1)
    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[127.0.0.1]:40155: Connection reset by peer")
    lost = backend_failure(gloo, two)
    assert isinstance(lost, errors.DistributedRunError) and lost.exit_code == errors.EXIT_DISTRIBUTED == 7
    assert str(lost).startswith("lost contact with the other processes (Read error [127.0.0.1]:40155: "
                                "Connection reset by peer): another rank failed")
    assert backend_failure(torch.distributed.DistBackendError("NCCL watchdog timeout"), two) is not None
    assert backend_failure(gloo, DistContext()) is None  # one process: not a lost peer
    assert backend_failure(RuntimeError("shape mismatch"), two) is None  # a bug stays a bug
    assert backend_failure(ValueError("gloo"), two) is None


def test_a_distributed_rank_prefixes_its_error_lines_with_its_rank(tmp_path, monkeypatch, capsys):
    from mubundle.cli import main

    argv = ["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--config", str(tmp_path / "no.yaml")]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(argv) == errors.EXIT_USAGE
    error_line = f"mubundle train (rank 1): error: config file {tmp_path / 'no.yaml'} does not exist\n"
    assert capsys.readouterr().err == error_line
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == errors.EXIT_USAGE
    assert capsys.readouterr().err.startswith("mubundle train: error: config file ")


def test_max_restarts_under_torchrun_is_refused_on_every_rank_with_what_to_do_instead(tmp_path, monkeypatch, capsys):
    from mubundle.cli import main

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = ["train", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"), "--max-restarts", "2"]
    assert main(argv) == errors.EXIT_USAGE
    assert capsys.readouterr().err == (
        "mubundle train (rank 1): error: --max-restarts supervises a single-process run; under torchrun (WORLD_SIZE 2) "
        "drop it and run the same torchrun command again after a failure: it resumes from the last checkpoint\n")


def test_only_rank_0_warns_that_the_run_config_wins_over_config(tmp_path, monkeypatch):
    from mubundle.train import entry

    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    loop.train([data], run, tiny_config(max_steps=1))
    (run / "config.yaml").write_text(to_yaml(tiny_config(max_steps=1)))
    other = _config_file(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entry.resolve_config(run, other, {}, report=False)
    assert caught == []
    with pytest.warns(UserWarning, match="exists: resuming the run with it"):
        entry.resolve_config(run, other, {})

    seen = []
    monkeypatch.setattr(entry, "resolve_config", lambda *a, report=True: seen.append(report) or (tiny_config(), {}))
    summary = dict.fromkeys(("steps", "epoch", "events_seen", "skipped_steps", "rollbacks"), 0)
    monkeypatch.setattr(loop, "train", lambda *a, **k: summary)
    args = entry.argparse.Namespace(run_dir=run, config=other, data=[data], max_restarts=0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert entry.train_from_args(args) == 0
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert entry.train_from_args(args) == 0
    assert seen == [False, True]


def test_tensorboard_gets_the_flags_of_a_record_as_0_and_1(tmp_path):
    from mubundle.train.monitor import TensorBoardLog

    board = TensorBoardLog(tmp_path, 0)
    logged = {}
    board.writer.add_scalar = lambda tag, value, step: logged.__setitem__(tag, value)
    board.scalars({"step": 3, "c_loss": 0.5, "applied": True, "multiplicity_frozen": False, "g_loss": None})
    board.close()
    assert logged == {"train/c_loss": 0.5, "train/applied": 1, "train/multiplicity_frozen": 0}


def test_train_log_records_a_stop_by_sigterm_with_the_last_checkpoint(tmp_path, monkeypatch):
    from mubundle.signals import Terminated

    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    real_call = loop.WganStep.__call__
    calls = []

    def stopped_at_step_5(self, batch, rng):
        calls.append(1)
        if len(calls) == 5:
            raise Terminated("received signal 15")
        return real_call(self, batch, rng)

    monkeypatch.setattr(loop.WganStep, "__call__", stopped_at_step_5)
    with pytest.raises(Terminated):
        loop.train([data], run, tiny_config(max_steps=6, checkpoint_every=3))
    assert "stopped by SIGTERM at step 4 (last checkpoint step 3)" in (run / "logs" / "train.log").read_text()
