"""mubundle: learned generator of cosmic-ray muon bundles deep underground / under ice.

Given a primary cosmic ray (energy E0 [GeV], mass number A, zenith [rad], slant depth [km])
mubundle samples the muon multiplicity N and the N muons (energy [GeV], x, y [m] in the
plane perpendicular to the shower axis) as a correlated bundle.
"""

from mubundle.data.batch import RaggedBatch
from mubundle.host_allocator import tune_host_allocator

__version__ = "0.6.10"


def load(path=None, device="cpu"):
    """Load a trained muon-bundle model: a model directory, or a shipped model by name (every
    folder of ``mubundle/pretrained/``: ``"icecube"``, the default when ``path`` is None,
    ``"fast"``, ``"full"``, ...; docs/pretrained.md).

    Returns a :class:`mubundle.model.bundle.MuonBundleModel` whose ``sample`` method takes
    physical units (GeV, rad, mass number, km) and returns a :class:`RaggedBatch`.
    """
    from mubundle.generate.api import load_model

    return load_model(path, device=device)


__all__ = ["RaggedBatch", "load", "tune_host_allocator", "__version__"]
