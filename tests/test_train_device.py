"""Device selection and per-device speed options; the CPU path stays plain float32."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mubundle.train.config import TrainConfig
from mubundle.train.device import autocast_context, configure_backends, resolve_device


def test_cpu_is_always_available_and_auto_resolves_to_an_available_device():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert auto == torch.device("cpu")


def test_unknown_device_name_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="auto, cpu, cuda, mps"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_an_error_not_a_silent_cpu_fallback():
    with pytest.raises(ValueError, match="cuda"):
        resolve_device("cuda")


def test_bf16_autocast_applies_only_on_cuda():
    config = TrainConfig(bf16=True)
    assert isinstance(autocast_context(torch.device("cpu"), config), contextlib.nullcontext)
    assert isinstance(autocast_context(torch.device("cpu"), TrainConfig(bf16=False)), contextlib.nullcontext)


def test_tf32_setting_leaves_cpu_matmul_precision_alone():
    before = torch.backends.cuda.matmul.allow_tf32
    configure_backends(torch.device("cpu"), TrainConfig(tf32=True))
    assert torch.backends.cuda.matmul.allow_tf32 == before
