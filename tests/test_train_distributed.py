"""Data-parallel training: torchrun environment wiring and a 2-process gloo run on CPU."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mubundle.train import loop
from mubundle.train.checkpoint import latest_checkpoint, load_checkpoint
from mubundle.train.distributed import DistContext, backend_for, context_from_env
from test_train_loop import tiny_config, write_dataset


def test_single_process_without_torchrun_environment():
    context = context_from_env({})
    assert context == DistContext(0, 1, 0) and context.is_main and not context.enabled


def test_torchrun_environment_gives_rank_world_size_and_local_rank():
    context = context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert context.enabled and not context.is_main


def test_rank_outside_the_world_is_rejected():
    with pytest.raises(ValueError, match="RANK=2"):
        context_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_backend_is_gloo_on_cpu_and_nccl_on_cuda():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data: str, run: str, out: str) -> None:
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    checksums = []
    real_call = loop.WganStep.__call__

    def recording_call(self, batch, rng):
        result = real_call(self, batch, rng)
        with torch.no_grad():
            weights = [p.double().sum().item() for p in list(self.model.parameters()) + list(self.critic.parameters())]
        checksums.append(weights)
        return result

    loop.WganStep.__call__ = recording_call
    summary = loop.train([data], run, tiny_config(max_steps=3))
    Path(out, f"rank{rank}.json").write_text(json.dumps({"summary": summary, "checksums": checksums}, default=str))


def test_two_gloo_processes_train_identical_replicas_and_only_rank_0_writes(tmp_path):
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(run), str(tmp_path)), nprocs=2, join=True)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # gradients are averaged over ranks: both replicas hold the same weights after every step
    assert ranks[0]["checksums"] == ranks[1]["checksums"] and len(ranks[0]["checksums"]) == 3
    summary = ranks[0]["summary"]
    # each rank reads its half of the 100 events: 2 x 32, then 2 x 18 (end of epoch), then 2 x 32
    assert summary["world_size"] == 2 and summary["events_seen"] == 164 and summary["epoch"] == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    checkpoint = load_checkpoint(latest_checkpoint(run))
    assert checkpoint["world_size"] == 2 and [s["data"]["rank"] for s in checkpoint["per_rank"]] == [0, 1]
