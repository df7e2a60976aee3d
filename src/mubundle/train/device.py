"""Device selection and per-device speed settings (TF32, bf16 autocast, torch.compile).

Everything here is a pure function of the requested device name and the ``TrainConfig``;
the CPU path is the reference (bit-reproducible) path and none of the speed options
changes it.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from mubundle.errors import DeviceUnavailableError, InvalidValueError
from mubundle.train.config import DEVICE_CHOICES, TrainConfig


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``name`` (auto | cpu | cuda | mps).

    ``auto`` picks CUDA, then MPS, then CPU. Under torchrun, CUDA uses ``cuda:<local_rank>``.
    Asking for a device that is not available is a ``ValueError`` naming it
    (:class:`~mubundle.errors.DeviceUnavailableError`, exit code 6; no silent
    fallback: a run that was meant for a GPU must not quietly take a week on a CPU).
    """
    if name not in DEVICE_CHOICES:
        raise InvalidValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        require_available(torch.device("cuda"))
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return require_available(torch.device(name))


def require_available(device: "str | torch.device") -> torch.device:
    """``device`` as a ``torch.device`` after checking this torch can use it.

    Raises :class:`~mubundle.errors.DeviceUnavailableError` (exit code 6) naming the device and
    what is available, instead of torch's "Torch not compiled with CUDA enabled" traceback;
    an unparsable name is an :class:`~mubundle.errors.InvalidValueError`.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidValueError(f"unknown device {device!r}: {error} (valid: cpu, cuda, cuda:N, mps)") from None
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append(f"cuda (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if torch.backends.mps.is_available():
        available.append("mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise DeviceUnavailableError(f"device {str(device)!r} requested but {build} "
                                         f"(torch.cuda.is_available() is False); available: {', '.join(available)}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device {str(device)!r} requested but only {torch.cuda.device_count()} "
                                         f"CUDA device(s) are visible; available: {', '.join(available)}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device 'mps' requested but torch.backends.mps.is_available() is False; "
                                     f"available: {', '.join(available)}")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceUnavailableError(f"device {str(device)!r} is not supported; available: {', '.join(available)}")
    return device


def configure_backends(device: torch.device, config: TrainConfig) -> None:
    """Process-wide matmul settings for ``device``: TF32 on CUDA when ``config.tf32``.

    CPU and MPS keep full float32 precision (exact-resume and reproducibility tests run there).
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(config.tf32)
        torch.backends.cudnn.allow_tf32 = bool(config.tf32)


def autocast_context(device: torch.device, config: TrainConfig) -> ContextManager:
    """bf16 autocast around the training step on CUDA when ``config.bf16``; otherwise a no-op."""
    if config.bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_modules(modules: list[torch.nn.Module], config: TrainConfig) -> None:
    """``torch.compile`` the given modules in place when ``config.compile``.

    ``nn.Module.compile`` keeps parameter names unchanged, so checkpoints and ``model.save``
    are identical with and without compilation.
    """
    if not config.compile:
        return
    for module in modules:
        module.compile(dynamic=True)  # ragged batches: the muon count M changes every step
