"""Sampling on worker threads: same result for any worker count, single-threaded ops and no
autograd inside the workers and the producer, errors reach the caller."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from helpers import SMALL_MODEL, make_synthetic_batch

from mubundle.model import bundle
from mubundle.model.bundle import MuonBundleModel
from mubundle.model.transforms import FeatureTransform
from mubundle.model.workers import SamplingWorkers


@pytest.fixture
def small_model(monkeypatch):
    # a budget of 24 muons per generator call: dozens of calls, so the workers interleave
    monkeypatch.setattr(bundle, "_MUONS_PER_GENERATOR_CALL_CPU", 24)
    batch = make_synthetic_batch(80, seed=4)
    torch.manual_seed(0)
    return MuonBundleModel(SMALL_MODEL, FeatureTransform.fit(batch)).eval(), batch


def test_sampling_gives_the_same_bundles_for_any_worker_count(small_model):
    model, batch = small_model
    c = batch.conditions
    args = (c[:, 0], c[:, 1], c[:, 2], c[:, 3])
    # events_per_chunk 32: several chunks, so calls of one chunk run while the next chunk's N is drawn
    alone = model.sample(*args, seed=3, events_per_chunk=32, workers=1)
    assert alone.n_muons > 200 and np.isfinite(alone.flat_muons).all()
    for workers in (2, 3):
        assert model.sample(*args, seed=3, events_per_chunk=32, workers=workers).equals(alone), workers
    other_seed = model.sample(*args, seed=4, events_per_chunk=32, workers=2)
    assert not np.array_equal(other_seed.counts, alone.counts)


def test_sample_muons_gives_the_same_muons_for_any_worker_count(small_model):
    model, batch = small_model
    conditions, counts = torch.from_numpy(batch.conditions), torch.from_numpy(batch.counts)
    alone = model.sample_muons(conditions, counts, torch.Generator().manual_seed(5), workers=1)
    shared = model.sample_muons(conditions, counts, torch.Generator().manual_seed(5), workers=2)
    assert alone.shape == (int(counts.sum()), 3)
    assert torch.equal(alone, shared)


def test_workers_share_out_the_threads_run_without_autograd_and_leave_the_caller_alone():
    torch.set_num_threads(2)  # the conftest fixture restores the previous setting
    with SamplingWorkers(2) as workers:
        seen = [workers.submit(lambda: (torch.get_num_threads(), torch.is_grad_enabled())).result() for _ in range(4)]
    assert seen == [(1, False)] * 4
    assert torch.get_num_threads() == 2 and torch.is_grad_enabled()
    torch.set_num_threads(4)  # a larger machine: the threads are shared out among the workers
    with SamplingWorkers(2) as workers:
        assert workers.submit(torch.get_num_threads).result() == 2
    assert torch.get_num_threads() == 4
    with SamplingWorkers(1) as inline:  # no threads: runs at once, still without autograd
        assert inline.submit(torch.is_grad_enabled).result() is False


def test_the_producer_runs_on_its_own_thread_with_a_share_of_the_threads():
    def where() -> tuple[str, int, bool]:
        return threading.current_thread().name, torch.get_num_threads(), torch.is_grad_enabled()

    torch.set_num_threads(6)  # the conftest fixture restores the previous setting
    with SamplingWorkers(2) as workers:
        name, threads, grad = workers.produce(where)
        # the producer can hand work to the workers and wait for it
        assert workers.produce(lambda: workers.submit(torch.get_num_threads).result()) == 3
    assert name.startswith("mubundle-producer") and threads == 2 and grad is False  # 6 // (2 + 1)
    torch.set_num_threads(2)
    with SamplingWorkers(2) as workers:
        assert workers.produce(where)[1] == 1  # never fewer than one
    assert torch.get_num_threads() == 2 and torch.is_grad_enabled()
    with SamplingWorkers(1) as inline:  # no workers: the caller's thread, still without autograd
        assert inline.produce(where) == (threading.current_thread().name, 2, False)


def test_closing_the_pool_stops_a_running_producer():
    workers = SamplingWorkers(2)
    result = []

    def producer() -> str:
        while not workers.closing:
            time.sleep(0.001)
        return "stopped"

    caller = threading.Thread(target=lambda: result.append(workers.produce(producer)))
    caller.start()
    time.sleep(0.05)
    assert result == [] and not workers.closing
    workers.close()  # what leaving the context does after an error or Ctrl-C in the caller
    caller.join(timeout=10)
    assert result == ["stopped"]


def test_split_rows_gives_the_unsplit_result_one_block_per_worker(small_model):
    model, batch = small_model
    features = model.transform.condition_features(torch.from_numpy(batch.conditions))
    with torch.no_grad():
        whole = model.multiplicity.mixture_parameters(features)
    blocks = []

    def row_wise(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        blocks.append((threading.current_thread().name, rows.shape[0]))
        return model.multiplicity.mixture_parameters(rows)

    with SamplingWorkers(3) as workers:
        split = workers.split_rows(row_wise, features)
    assert len(split) == 3 and all(torch.equal(a, b) for a, b in zip(split, whole))
    assert sorted(rows for _, rows in blocks) == [26, 27, 27]
    assert all(name.startswith("mubundle-sampling") for name, _ in blocks)
    with SamplingWorkers(1) as inline:
        assert all(torch.equal(a, b) for a, b in zip(inline.split_rows(row_wise, features), whole))


def test_an_error_in_a_worker_reaches_the_caller():
    def fail(value: int) -> None:
        raise ValueError(f"bad call {value}")

    with SamplingWorkers(2) as workers:
        future = workers.submit(fail, 7)
        with pytest.raises(ValueError, match="bad call 7"):
            future.result()
        with pytest.raises(ValueError, match="bad call 8"):
            workers.produce(fail, 8)
