"""Loading a trained model: the ``mubundle.load`` entry point.

The package ships its models in ``mubundle/pretrained/<name>/`` (``model.safetensors`` +
``model.json``; docs/pretrained.md). Every such folder holding both files is a model that
``load_model(name)`` / ``--model name`` selects: the names are read from the folders present
(:func:`shipped_models`), so shipping a new model (e.g. ``icecube``) needs no code change.
``icecube`` (E0 3e2-1e9 GeV, zenith 0-89 deg, 1.4-2.6 km of South Pole ice) is the default
(``load_model()`` without a path); ``fast`` and ``full`` know E0 1e4-1e7 GeV and zenith <= 70
deg only (``fast``, a distilled student, samples ~2x faster; ``full`` is the WGAN-GP-trained
model it was distilled from and the default teacher of ``mubundle distill``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mubundle.errors import InvalidTypeError
from mubundle.model.shipped import (  # noqa: F401  (re-exported: the API users and commands know them here)
    DEFAULT_MODEL,
    DEFAULT_MODEL_PACKAGE,
    DEFAULT_TEACHER,
    MODEL_FILES,
    MODEL_OPTION_HELP,
    PRETRAINED_FOLDER,
    NoPretrainedModelError,
    default_model_path,
    has_default_model,
    pretrained_root,
    resolve_model_path,
    shipped_model_path,
    shipped_models,
)
from mubundle.model.shipped import shipped_names as _names

if TYPE_CHECKING:  # pragma: no cover
    from mubundle.model.bundle import MuonBundleModel


def load_model(path: str | Path | None = None, device: str = "cpu") -> "MuonBundleModel":
    """Load a trained :class:`~mubundle.model.bundle.MuonBundleModel` in eval mode (``mubundle.load``).

    ``path``: a directory written by ``MuonBundleModel.save`` (``model.safetensors`` and
    ``model.json``), or a shipped model's name (:func:`shipped_models`: ``"icecube"``,
    ``"km3net-arca"``, ``"fast"``, ``"full"``); None = the shipped default (``icecube``). An
    existing directory of the same name as a shipped model wins over it
    (:func:`resolve_model_path`).
    ``device``: the torch device the model is placed on: ``"cpu"`` (default), ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` (or a ``torch.device``), or ``"auto"`` (CUDA, else MPS, else CPU, as
    ``train --device auto``); checked before any file is read.

    Raises:
        InvalidTypeError: ``path`` is not a str, ``os.PathLike`` or None.
        DeviceUnavailableError: this torch cannot use ``device`` (no CUDA support or no GPU
            visible, ``cuda:N`` beyond the visible GPUs, no MPS, or another device type); a name
            torch does not parse (e.g. ``"gpu"``) is an :class:`~mubundle.errors.InvalidValueError`.
        FileNotFoundError: from :func:`resolve_model_path`: ``path`` does not exist and is no
            shipped model's name ("model directory P does not exist (shipped models by name:
            ...)"), is a file ("model path P is a file; ..."), or lacks a model file ("P is not
            a model directory: missing model.json"); with ``path`` None and no default model
            installed, :class:`NoPretrainedModelError` ("no pretrained model is installed
            (looked in ...)").
        ValueError: ``model.json`` or ``model.safetensors`` cannot be read or does not describe
            a valid model (the message names the file; ``MuonBundleModel.load``).
    """
    from mubundle.model.bundle import MuonBundleModel
    from mubundle.train.device import require_available, resolve_device

    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a model directory (str or os.PathLike), a shipped model name "
                               f"({_names()}) or None, got {type(path).__name__} {path!r}")
    # before reading anything: one line, exit code 6, for a missing GPU
    device = resolve_device(device) if device == "auto" else require_available(device)
    model = MuonBundleModel.load(resolve_model_path(path), device=device)
    model.eval()
    return model
