"""The event schema: column names, units and the native format version.

One event = one primary observed at one depth (see docs/data_format.md).
"""

from __future__ import annotations

#: Version of the native Parquet layout written by :mod:`mubundle.data.native`.
FORMAT_VERSION = 1

#: Columns of ``RaggedBatch.conditions`` in order, with units.
CONDITION_FIELDS: tuple[str, ...] = ("energy", "zenith", "mass", "depth")
CONDITION_UNITS: dict[str, str] = {"energy": "GeV", "zenith": "rad", "mass": "A", "depth": "km"}

#: Columns of ``RaggedBatch.flat_muons`` in order, with units.
MUON_FIELDS: tuple[str, ...] = ("energy", "x", "y")
MUON_UNITS: dict[str, str] = {"energy": "GeV", "x": "m", "y": "m"}

#: Index helpers so code says ``conditions[:, ENERGY]`` rather than ``[:, 0]``.
ENERGY, ZENITH, MASS, DEPTH = range(4)
MU_ENERGY, MU_X, MU_Y = range(3)

#: Name of the native muon column: list<fixed_size_list<float32, 3>> per event.
MUONS_COLUMN = "muons"
#: Optional per-event weight column (Hz) written by flux-mode generation.
WEIGHT_COLUMN = "weight"
#: Key of the JSON file-level metadata in native Parquet shards.
METADATA_KEY = b"mubundle"
#: Optional event-id columns (uint64) of native shards: ``(major, minor)`` of the source event
#: (I3 particle ids of the original pipeline, or CORSIKA run and event number).
ID_COLUMNS: tuple[str, str] = ("major_id", "minor_id")
