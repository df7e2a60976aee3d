"""Atomic training checkpoints in ``RUN/checkpoints/``: last N kept, plus ``best.pt``.

A checkpoint is one ``torch.save`` file holding everything a resumed run needs to continue
bit-for-bit: network weights, optimizer states, RNG states, the data cursor, the step,
epoch, divergence-guard state and the best-metric bookkeeping (see docs/training.md).

Writes are atomic: bytes go to a temporary file in the same directory, are fsynced, moved
over the final name with ``os.replace`` and the directory is fsynced, so a crash at any
moment leaves either the old or the new checkpoint, never a torn one. A checkpoint damaged
afterwards (disk error, truncated copy) is set aside on resume and the previous intact one
is used (:func:`load_latest_intact_checkpoint`).

torch is imported inside the functions that need it: ``mubundle train`` tells a run to resume
from an empty directory (:func:`list_checkpoints`) in the supervising parent, which stays light.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mubundle.data.atomic import atomic_write_bytes, fsync_directory
from mubundle.errors import InvalidValueError

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger("mubundle.train")

CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"
_STEP_NAME = re.compile(r"^step-(\d{9})\.pt$")


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step`` generator steps."""
    return f"step-{step:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the numbered checkpoints of a run, oldest first (``best.pt`` excluded)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _STEP_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Path of the newest numbered checkpoint, or None for a fresh run directory."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int, is_best: bool) -> Path:
    """Write ``payload`` as ``checkpoints/step-<step>.pt`` (and ``best.pt`` when ``is_best``).

    Older numbered checkpoints beyond the newest ``keep`` are deleted after the new one is
    safely on disk. Returns the path of the numbered checkpoint.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    directory = Path(run_dir) / CHECKPOINT_DIR
    path = directory / checkpoint_name(step)
    atomic_write_bytes(path, data)
    if is_best:
        atomic_write_bytes(directory / BEST_NAME, data)
    for _, old in list_checkpoints(run_dir)[: -max(int(keep), 1)]:
        old.unlink()
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU (tensors, numbers, strings and lists only: ``weights_only``)."""
    import torch

    return torch.load(Path(path), map_location="cpu", weights_only=True)


#: suffix a corrupt checkpoint is renamed to (kept for inspection, no longer a resume candidate)
CORRUPT_SUFFIX = ".corrupt"


def load_latest_intact_checkpoint(
    run_dir: Path, required_keys: tuple[str, ...] = ("step",)
) -> tuple[Path, dict[str, Any]] | None:
    """``(path, payload)`` of the newest numbered checkpoint that loads and holds ``required_keys``.

    A newer checkpoint that is truncated, empty, not a checkpoint at all, or lacks one of
    ``required_keys`` (a disk error, a copy cut short, a foreign file) is logged as a warning
    naming the file and the reason, renamed to ``<name>.corrupt`` (so no later resume or
    rollback picks it again) and the next older one is tried: the run resumes from the
    newest intact state of the last ``keep_checkpoints``. None for a run without
    checkpoints; :class:`~mubundle.errors.InvalidValueError` naming every file when none is intact.
    """
    found = list_checkpoints(run_dir)
    problems: list[str] = []
    for _, path in reversed(found):
        problem = _checkpoint_problem(path, required_keys)
        if isinstance(problem, dict):
            return path, problem
        problems.append(f"{path.name}: {problem}")
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another rank of the same run moved it first
            pass
        logger.warning("checkpoint %s is unusable (%s); renamed to %s, trying the previous one", path, problem, aside.name)
    if not found:
        return None
    raise InvalidValueError(
        f"no intact checkpoint in {Path(run_dir) / CHECKPOINT_DIR}: {'; '.join(problems)} (the files are kept as "
        f"*{CORRUPT_SUFFIX}; remove the run directory's checkpoints/ to start the run afresh)"
    )


def _checkpoint_problem(path: Path, required_keys: tuple[str, ...]) -> "dict[str, Any] | str":
    """The loaded payload of ``path``, or one line saying why it is not a usable checkpoint."""
    try:
        size = path.stat().st_size
    except OSError as error:
        return f"cannot stat: {error.strerror}"
    if size == 0:
        return "empty file"
    try:
        payload = load_checkpoint(path)
    except Exception as error:  # noqa: BLE001 - torch/pickle/zip raise many types for a torn file; reported, not hidden
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        return f"cannot be loaded ({type(error).__name__}: {reason})"
    if not isinstance(payload, dict):
        return f"holds a {type(payload).__name__}, not a checkpoint mapping"
    missing = [key for key in required_keys if key not in payload]
    if missing:
        return f"lacks the key(s) {', '.join(missing)} (not a checkpoint of this kind of run)"
    return payload


# ---------------------------------------------------------------------------- RNG states
def capture_rng_states(step_generator: torch.Generator) -> dict[str, Any]:
    """All random-number states a training step can touch, as checkpointable plain data.

    ``step_generator`` is the generator the WGAN step draws noise/interpolation from; the
    global torch, numpy and Python states are saved too so that any library code that uses
    them also replays identically after a resume.
    """
    import torch

    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "step_generator": step_generator.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
    }


def restore_rng_states(states: dict[str, Any], step_generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng_states`."""
    import torch

    step_generator.set_state(states["step_generator"])
    torch.set_rng_state(states["torch"])
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = states["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


# ---------------------------------------------------------------------------- model export
def export_model(model: Any, run_dir: Path, name: str = "model") -> Path:
    """``model.save`` into ``RUN/<name>/`` so the newest weights are usable for generation.

    The model is saved into a temporary sibling directory which then replaces the old one;
    a crash mid-export leaves the previous export intact (or a complete new one). The
    directory and its files follow the process umask (0755 / 0644 under umask 022).
    """
    run_dir = Path(run_dir)
    target = run_dir / name
    staging = _staging_directory(run_dir, name)
    model.save(staging)
    previous = None
    if target.exists():
        previous = run_dir / f".{name}.previous"
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
    os.replace(staging, target)
    fsync_directory(run_dir)
    if previous is not None:
        shutil.rmtree(previous)
    return target


def _staging_directory(run_dir: Path, name: str) -> Path:
    """Create a new, uniquely named ``RUN/.<name>.<random>`` with the umask's mode.

    ``tempfile.mkdtemp`` would make it 0700, and the rename would carry that onto ``RUN/<name>``,
    hiding the exported model from the group whatever the umask.
    """
    for _ in range(100):
        staging = run_dir / f".{name}.{secrets.token_hex(4)}"
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        return staging
    raise FileExistsError(f"cannot create a staging directory for {run_dir / name}: 100 names taken")
