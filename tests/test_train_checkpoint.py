"""Checkpoint files: atomic writes, retention of the last N plus best, RNG round trip."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from mubundle.train.checkpoint import (
    BEST_NAME,
    CHECKPOINT_DIR,
    atomic_write_bytes,
    capture_rng_states,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"abc")
    atomic_write_bytes(target, b"defg")
    assert target.read_bytes() == b"defg"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_failed_atomic_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_only_the_last_n_checkpoints_are_kept_plus_best(tmp_path):
    for step in (0, 10, 20, 30, 40):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.full((2,), float(step))}, keep=2, is_best=step == 10)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert load_checkpoint(tmp_path / CHECKPOINT_DIR / BEST_NAME)["step"] == 10
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and load_checkpoint(latest)["step"] == 40
    assert torch.equal(load_checkpoint(latest)["w"], torch.full((2,), 40.0))


def test_fresh_run_directory_has_no_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path) is None


def test_rng_states_round_trip_through_a_checkpoint_file(tmp_path):
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path, 1, {"rng": capture_rng_states(generator)}, keep=1, is_best=False)
    expected = (torch.randn(3, generator=generator), torch.randn(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_states(load_checkpoint(latest_checkpoint(tmp_path))["rng"], generator)
    again = (torch.randn(3, generator=generator), torch.randn(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]
