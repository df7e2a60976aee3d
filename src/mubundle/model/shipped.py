"""The shipped models by name: where they are, which exist, and how a ``--model`` / ``--teacher`` /
``--init-from`` value becomes a model directory.

The package ships its models in ``mubundle/pretrained/<name>/`` (``model.safetensors`` +
``model.json``; docs/pretrained.md). Every such folder holding both files is a model that a command
selects by name (:func:`shipped_models`), so shipping a new model needs no code change. Here, in
``model``, so that training (``train --init-from``, ``distill``, ``refit-multiplicity``,
``calibrate``) and generation resolve names alike; :mod:`mubundle.generate.api` re-exports it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Package-relative location of the shipped models: ``mubundle/pretrained/<name>/``.
DEFAULT_MODEL_PACKAGE = "mubundle"
PRETRAINED_FOLDER = "pretrained"
#: the shipped model ``load_model()`` / commands without ``--model`` use
DEFAULT_MODEL = "icecube"
#: the shipped model ``mubundle distill`` learns from when no teacher is given
DEFAULT_TEACHER = "full"
#: Files that make a model directory (written by ``MuonBundleModel.save``).
MODEL_FILES = ("model.safetensors", "model.json")


def pretrained_root() -> Path:
    """The folder holding the shipped models (``mubundle/pretrained``)."""
    return Path(str(resources.files(DEFAULT_MODEL_PACKAGE).joinpath(PRETRAINED_FOLDER)))


def shipped_models() -> tuple[str, ...]:
    """Names of the shipped models, sorted: the folders of :func:`pretrained_root` holding
    every file of :data:`MODEL_FILES`."""
    root = pretrained_root()
    if not root.is_dir():
        return ()
    return tuple(sorted(entry.name for entry in root.iterdir()
                        if entry.is_dir() and all((entry / name).is_file() for name in MODEL_FILES)))


def shipped_names() -> str:
    """The shipped models' names for messages: ``"fast, full, icecube, km3net-arca"`` (or ``none installed``)."""
    return ", ".join(shipped_models()) or "none installed"


#: help text of the commands' ``--model`` option
MODEL_OPTION_HELP = f"model directory, or a shipped model by name: {shipped_names()} (default: {DEFAULT_MODEL})"


class NoPretrainedModelError(FileNotFoundError):
    """No model path was given and no pretrained model is installed with the package."""


def default_model_path() -> Path:
    """Directory of the shipped default model (it may not exist: check with :func:`has_default_model`)."""
    return shipped_model_path(DEFAULT_MODEL)


def shipped_model_path(name: str) -> Path:
    """Directory of the shipped model ``name`` (one of :func:`shipped_models`)."""
    return pretrained_root() / name


def has_default_model() -> bool:
    """True when the package ships a complete default model directory."""
    path = default_model_path()
    return all((path / name).is_file() for name in MODEL_FILES)


def resolve_model_path(path: str | Path | None) -> Path:
    """``path`` checked to be a model directory, or the shipped default when None.

    A ``path`` that does not exist and is the name of a shipped model (:func:`shipped_models`,
    e.g. ``"full"``) is that model; an existing directory of the same name wins.
    Raises :class:`FileNotFoundError` naming the directory and the missing file.
    """
    if path is None:
        if not has_default_model():
            raise NoPretrainedModelError(
                f"no pretrained model is installed (looked in {default_model_path()}); "
                "pass --model DIR / load(path) with a trained model, or train one with "
                "`mubundle train --data DATA --run RUN` and pass --model RUN/model "
                "(see docs/training.md and docs/pretrained.md)"
            )
        return default_model_path()
    if not str(path).strip():
        raise FileNotFoundError(f"model path is empty: give a model directory or a shipped model name ({shipped_names()})")
    name = str(path)
    path = Path(path)
    if not path.exists() and name in shipped_models():
        path = shipped_model_path(name)
    shadowed = (f" (a folder here named like the shipped model '{name}' takes its place: pass "
                f"{shipped_model_path(name)} or run elsewhere)" if name in shipped_models() and path.exists()
                and path != shipped_model_path(name) else "")
    if path.exists() and not path.is_dir():
        raise FileNotFoundError(f"model path {path} is a file; a model directory (holding {' and '.join(MODEL_FILES)}) "
                                f"or a shipped model name ({shipped_names()}) is expected{shadowed}")
    if not path.is_dir():
        raise FileNotFoundError(
            f"model directory {path} does not exist (shipped models by name: {shipped_names()})"
        )
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a model directory: missing {', '.join(missing)}{shadowed}")
    return path
