"""mubundle: learned generator of cosmic-ray muon bundles deep underground / under ice.

Given a primary cosmic ray (energy E0 [GeV], mass number A, zenith [rad], slant depth [km])
mubundle samples the muon multiplicity N and the N muons (energy [GeV], x, y [m] in the
plane perpendicular to the shower axis) as a correlated bundle.
"""

from mubundle.data.batch import RaggedBatch
from mubundle.host_allocator import tune_host_allocator

__version__ = "0.6.12"


def load(path=None, device="cpu"):
    """Load a trained muon-bundle model, ready to sample (eval mode).

    ``path``: a model directory (holding ``model.safetensors`` and ``model.json``, as written by
    ``mubundle train``), or a shipped model by name: ``"icecube"`` (the default, used when
    ``path`` is None), ``"km3net-arca"``, ``"fast"``, ``"full"`` (every complete folder of
    ``mubundle/pretrained/``; docs/pretrained.md). An existing directory of the same name as a
    shipped model wins over it.

    ``device``: the torch device the model is placed on and samples on: ``"cpu"`` (default),
    ``"cuda"``, ``"cuda:N"``, ``"mps"`` (or a ``torch.device``), or ``"auto"`` (CUDA, else MPS,
    else CPU). It is checked before any file is read.

    Returns a :class:`mubundle.model.bundle.MuonBundleModel` whose ``sample`` method takes
    physical units (E0 GeV, zenith rad, mass number A, slant depth km) and returns a
    :class:`RaggedBatch`.

    Raises:
        mubundle.errors.InvalidTypeError: ``path`` is not a str, ``os.PathLike`` or None.
        mubundle.errors.DeviceUnavailableError: this torch cannot use ``device`` (no CUDA
            support or no GPU visible, ``cuda:N`` beyond the visible GPUs, no MPS, or a device
            type other than cpu, cuda, mps). A name torch does not parse (e.g. ``"gpu"``) is
            a :class:`mubundle.errors.InvalidValueError`.
        FileNotFoundError: ``path`` does not exist and is no shipped model's name ("model
            directory P does not exist (shipped models by name: ...)"); ``path`` is a file ("model
            path P is a file; ..."); the directory lacks a model file ("P is not a model
            directory: missing model.json"); or ``path`` is None and no shipped default model is
            installed (:class:`mubundle.model.shipped.NoPretrainedModelError`, "no pretrained
            model is installed (looked in ...)").
        ValueError: ``model.json`` or ``model.safetensors`` cannot be read or do not describe
            a valid model (the message names the file).
    """
    from mubundle.generate.api import load_model

    return load_model(path, device=device)


__all__ = ["RaggedBatch", "load", "tune_host_allocator", "__version__"]
