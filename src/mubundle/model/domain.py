"""The domain a model was trained on, stored with it and checked in one place.

A model directory's ``model.json`` may carry a ``domain`` section (:class:`ModelDomain`):
the ranges of the primary energy E0 [GeV], zenith [rad; degrees repeated for readers], mass
number A, slant depth [km] and vertical depth [km] of its training events (the vertical
depth of a slant depth through the site's spherical overburden, Muonitron's formula in
:mod:`mubundle.geometry`, when the domain records ``overburden_radius_m``; slant x cos(zenith),
flat, in older records), the nuclei and vertical depths it was trained at, the site and medium, the training
data and the command that made it. Older model directories have no ``domain``: they load
and sample unchecked.

:func:`check_primaries` is the one check. ``MuonBundleModel.sample``, ``mubundle generate``
and ``mubundle evaluate`` call it: primaries outside the domain are refused with one line
naming the value, the bound and the model (:class:`ExtrapolationError`, a ``ValueError``);
with ``allow_extrapolation`` they proceed and one :class:`ExtrapolationWarning` per call
says how many events are extrapolated.

A neural network outside its training domain returns numbers without any sign that they
are wrong (``load().sample(energy=1e9, ...)`` gave 1 644 muons per iron event at 2 km from
models trained up to 1e7 GeV), so the refusal is the default.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from mubundle.geometry import MUONITRON_SURFACE_RADIUS_M, slant_from_vertical_depth, vertical_from_slant_depth_cos
from mubundle.model.threshold import MuonThreshold, threshold_of_configs

#: Relative tolerance of the bounds: conditions are float32 (7 digits), bounds float64.
RELATIVE_TOLERANCE = 1e-5
#: Absolute tolerance of a bound at 0 (zenith 0 rad).
ABSOLUTE_TOLERANCE = 1e-6
#: The flag that lets callers proceed outside the domain (named in every refusal).
PROCEED_HINT = "pass allow_extrapolation=True / --allow-extrapolation to proceed"


class ExtrapolationError(ValueError):
    """Primaries outside the model's domain; ``str(error)`` is the one-line refusal."""


class ExtrapolationWarning(UserWarning):
    """Primaries outside the model's domain were sampled because the caller allowed it."""


@dataclass(frozen=True)
class _Variable:
    """How one checked quantity is named, formatted and computed from conditions (B, 4)."""

    key: str
    title: str
    unit: str
    fmt: str


_VARIABLES = (
    _Variable("energy_gev", "energy", "GeV", "{:.3g}"),
    _Variable("zenith_rad", "zenith", "rad", "{:.4g}"),
    _Variable("mass_number", "mass number A", "", "{:g}"),
    _Variable("slant_depth_km", "slant depth", "km", "{:.4g}"),
    _Variable("vertical_depth_km", "vertical depth", "km", "{:.4g}"),
)


def vertical_depth_km(conditions: np.ndarray, overburden_radius_m: float | None) -> np.ndarray:
    """(B,) vertical depth [km] of conditions (B, 4) [GeV, rad, A, slant km]: through a spherical
    overburden of radius ``overburden_radius_m`` (Muonitron's formula, as ``mubundle simulate``
    makes slant depths), or slant x cos(zenith) (flat) when None."""
    return _vertical_from_cos(_cos(conditions[:, 1]), conditions[:, 3], overburden_radius_m)


def _vertical_from_cos(cos_zenith: np.ndarray, slant_km: np.ndarray, overburden_radius_m: float | None) -> np.ndarray:
    """(B,) vertical depth [km] from cos(zenith) (B,) and the slant depth (B,) [km]: through the spherical
    overburden of radius ``overburden_radius_m``, or slant x cos(zenith) (flat) when None."""
    if overburden_radius_m is None:
        return slant_km * cos_zenith
    return vertical_from_slant_depth_cos(cos_zenith, slant_km * 1000.0, overburden_radius_m) / 1000.0


def _cos(angle_rad: np.ndarray) -> np.ndarray:
    """cos of a (B,) array in float64 through torch: its vectorised cos is ~3x numpy's on the
    development CPU (1e5 values: 0.28 vs 0.90 ms; equal within 1 ulp)."""
    return torch.cos(torch.from_numpy(np.ascontiguousarray(angle_rad, dtype=np.float64))).numpy()


def _vertical_depth_to_check(conditions: np.ndarray, overburden_radius_m: float | None) -> np.ndarray:
    """:func:`vertical_depth_km` for the domain check, which every sampled batch pays: cos(zenith)
    in float32 (numpy's vectorised float32 cos: 0.06 ms for 1e5 values against 0.28 ms for torch's
    float64 one on the development CPU), the rest in float64. The zenith is a float32 number in
    the model's conditions; its float32 cos is within 1 ulp (6e-8 relative) of the float64 one, so
    the vertical depth within ~1e-7 relative, far inside the check's tolerance
    (:data:`RELATIVE_TOLERANCE`)."""
    cos_zenith = np.cos(conditions[:, 1].astype(np.float32)).astype(np.float64)
    # the slant depth in float64 whatever the input's dtype
    return _vertical_from_cos(cos_zenith, conditions[:, 3].astype(np.float64), overburden_radius_m)


def slant_depth_km(zenith_rad: "np.ndarray | float", vertical_km: "np.ndarray | float",
                   overburden_radius_m: float | None) -> np.ndarray:
    """Slant depth [km] to the vertical depth ``vertical_km`` along ``zenith_rad``: the inverse of
    :func:`vertical_depth_km` (curved with a radius, vertical / cos(zenith) without)."""
    if overburden_radius_m is None:
        return np.asarray(vertical_km, dtype=np.float64) / np.cos(np.asarray(zenith_rad, dtype=np.float64))
    return slant_from_vertical_depth(zenith_rad, np.asarray(vertical_km, dtype=np.float64) * 1000.0,
                                     overburden_radius_m) / 1000.0


def _values(key: str, conditions: np.ndarray, overburden_radius_m: float | None = None) -> np.ndarray:
    """(B,) float64 values of the checked quantity ``key`` from conditions (B, 4) [GeV, rad, A, km]."""
    if key == "vertical_depth_km":
        return _vertical_depth_to_check(conditions, overburden_radius_m)
    return conditions[:, {"energy_gev": 0, "zenith_rad": 1, "mass_number": 2, "slant_depth_km": 3}[key]]


def _format_value(variable: _Variable, value: float) -> str:
    text = variable.fmt.format(value)
    if variable.key == "zenith_rad":
        text += f" rad ({math.degrees(value):.3g} deg)"
    elif variable.unit:
        text += f" {variable.unit}"
    return text


def _format_range(variable: _Variable, bounds: tuple[float, float]) -> str:
    low, high = (variable.fmt.format(b) for b in bounds)
    if variable.key == "zenith_rad":
        return f"{low}-{high} rad, {math.degrees(bounds[0]):.3g}-{math.degrees(bounds[1]):.3g} deg"
    return f"{low}-{high}{' ' + variable.unit if variable.unit else ''}"


@dataclass(frozen=True)
class Violation:
    """Events beyond one bound: the most extreme value, the bound, how many events."""

    variable: str
    side: str  # "below" | "above"
    value: float
    bound: tuple[float, float]
    events: int

    def describe(self, model_name: str) -> str:
        variable = next(v for v in _VARIABLES if v.key == self.variable)
        return (f"{variable.title} {_format_value(variable, self.value)} is {self.side} the domain of model "
                f"'{model_name}' ({_format_range(variable, self.bound)})")

    def brief(self) -> str:
        """The violation without the model's name, for a second one on the same line."""
        variable = next(v for v in _VARIABLES if v.key == self.variable)
        return f"{variable.title} {_format_value(variable, self.value)} {self.side} {_format_range(variable, self.bound)}"


@dataclass(frozen=True)
class DomainCheck:
    """Result of :meth:`ModelDomain.check`: ``outside`` (B,) bool and one :class:`Violation`
    per bound crossed (the most extreme value of each)."""

    outside: np.ndarray
    violations: tuple[Violation, ...] = ()

    @property
    def n_outside(self) -> int:
        return int(np.count_nonzero(self.outside))

    def message(self, model_name: str) -> str:
        """One line: the first crossed bound, how many events cross any, the way to proceed."""
        if not self.violations:
            return f"all primaries are inside the domain of model '{model_name}'"
        first = self.violations[0].describe(model_name)
        others = "; ".join(v.brief() for v in self.violations[1:])
        others = f" (also {others})" if others else ""
        return f"{first}{others}: {self.n_outside} of {len(self.outside)} events outside; {PROCEED_HINT}"


def _pair(value: Any, key: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model domain: {key} must be [low, high], got {value!r}") from error
    if not low <= high:
        raise ValueError(f"model domain: {key} must have low <= high, got {value!r}")
    return low, high


@dataclass(frozen=True)
class ModelDomain:
    """Where a model was trained (and so may be used). Ranges are inclusive [low, high].

    energy_gev: E0 [GeV]; zenith_rad: [rad]; mass_number: A; slant_depth_km: slant depth
    along the shower axis [km]; vertical_depth_km: vertical depth [km] (None: not checked),
    computed from slant depth and zenith through the spherical overburden of radius
    ``overburden_radius_m`` [m] (the site's, as the simulator used it), or as slant depth x
    cos(zenith) when that is None (records written before sites had a curved overburden). nuclei: the mass numbers trained on (A between them is interpolated, and not
    refused); vertical_depths_km: the vertical depths trained at; site, medium, training_data,
    command: what a reader needs to know where the model comes from; muon_threshold: the
    simulator settings of the training data that fix the kinematic zero
    (:mod:`mubundle.model.threshold`; None: the model has none).
    """

    energy_gev: tuple[float, float]
    zenith_rad: tuple[float, float]
    mass_number: tuple[float, float]
    slant_depth_km: tuple[float, float]
    vertical_depth_km: tuple[float, float] | None = None
    nuclei: tuple[float, ...] | None = None
    vertical_depths_km: tuple[float, ...] | None = None
    site: str | None = None
    medium: str | None = None
    training_data: str | None = None
    command: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    overburden_radius_m: float | None = None
    muon_threshold: MuonThreshold | None = None

    def check(
        self, energy: "np.ndarray | float", zenith: "np.ndarray | float", mass: "np.ndarray | float",
        depth: "np.ndarray | float",
    ) -> DomainCheck:
        """Which primaries lie outside: energy (B,) GeV, zenith (B,) rad, mass (B,) A, depth (B,)
        slant km (scalars broadcast). Non-finite values count as outside (NaN compares false)."""
        columns = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (energy, zenith, mass, depth)))
        return self.check_conditions(np.stack([np.ravel(c) for c in columns], axis=1))

    def check_conditions(self, conditions: np.ndarray) -> DomainCheck:
        """:meth:`check` on conditions (B, 4) [GeV, rad, A, slant km]."""
        # column-major: each checked column contiguous (strided compares are ~5x slower), made
        # in one copy (the transpose of a C-ordered (B, 4) is a Fortran-ordered (4, B))
        conditions = np.asarray(np.asarray(conditions).reshape(-1, 4).T, dtype=np.float64, order="C").T
        outside = np.zeros(len(conditions), dtype=bool)
        violations = []
        for variable in _VARIABLES:
            bounds = getattr(self, variable.key)
            if bounds is None:
                continue
            values = _values(variable.key, conditions, self.overburden_radius_m)
            low, high = bounds
            low_tolerant = low - RELATIVE_TOLERANCE * abs(low) - ABSOLUTE_TOLERANCE
            high_tolerant = high + RELATIVE_TOLERANCE * abs(high) + ABSOLUTE_TOLERANCE
            # the usual case, all inside: two reductions (NaN propagates through min and max and fails)
            if values.size == 0 or (values.min() >= low_tolerant and values.max() <= high_tolerant):
                continue
            below = ~(values >= low_tolerant)
            above = values > high_tolerant
            nan = np.isnan(values)
            below &= ~nan
            for side, mask, pick in (("below", below, np.min), ("above", above, np.max)):
                if mask.any():
                    violations.append(Violation(variable.key, side, float(pick(values[mask])), bounds, int(mask.sum())))
            if nan.any():
                violations.append(Violation(variable.key, "outside", float("nan"), bounds, int(nan.sum())))
            outside |= below | above | nan
        return DomainCheck(outside, tuple(violations))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``zenith_deg`` is derived, for readers (ignored by :meth:`from_dict`)."""
        result: dict[str, Any] = {
            "energy_gev": list(self.energy_gev),
            "zenith_rad": list(self.zenith_rad),
            "zenith_deg": [round(math.degrees(z), 6) for z in self.zenith_rad],
            "mass_number": list(self.mass_number),
            "slant_depth_km": list(self.slant_depth_km),
        }
        if self.vertical_depth_km is not None:
            result["vertical_depth_km"] = list(self.vertical_depth_km)
        if self.overburden_radius_m is not None:
            result["overburden_radius_m"] = self.overburden_radius_m
        for key in ("nuclei", "vertical_depths_km"):
            if getattr(self, key) is not None:
                result[key] = list(getattr(self, key))
        for key in ("site", "medium", "training_data", "command"):
            if getattr(self, key) is not None:
                result[key] = getattr(self, key)
        if self.muon_threshold is not None:
            result["muon_threshold"] = self.muon_threshold.to_dict()
        if self.notes:
            result["notes"] = list(self.notes)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelDomain":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming a missing or malformed key."""
        if not isinstance(data, Mapping):
            raise ValueError(f"model domain must be a JSON object, got {type(data).__name__}")
        missing = [key for key in ("energy_gev", "zenith_rad", "mass_number", "slant_depth_km") if key not in data]
        if missing:
            raise ValueError(f"model domain: missing {', '.join(missing)}")
        known = {"energy_gev", "zenith_rad", "zenith_deg", "mass_number", "slant_depth_km", "vertical_depth_km",
                 "nuclei", "vertical_depths_km", "site", "medium", "training_data", "command", "notes",
                 "overburden_radius_m", "muon_threshold"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model domain: unknown key(s) {', '.join(unknown)}")
        optional_pair = data.get("vertical_depth_km")
        return cls(
            energy_gev=_pair(data["energy_gev"], "energy_gev"),
            zenith_rad=_pair(data["zenith_rad"], "zenith_rad"),
            mass_number=_pair(data["mass_number"], "mass_number"),
            slant_depth_km=_pair(data["slant_depth_km"], "slant_depth_km"),
            vertical_depth_km=None if optional_pair is None else _pair(optional_pair, "vertical_depth_km"),
            nuclei=None if data.get("nuclei") is None else tuple(float(a) for a in data["nuclei"]),
            vertical_depths_km=(None if data.get("vertical_depths_km") is None
                                else tuple(float(d) for d in data["vertical_depths_km"])),
            site=data.get("site"),
            medium=data.get("medium"),
            training_data=data.get("training_data"),
            command=data.get("command"),
            notes=tuple(data.get("notes", ())),
            overburden_radius_m=_radius(data.get("overburden_radius_m")),
            muon_threshold=(None if data.get("muon_threshold") is None
                            else MuonThreshold.from_dict(data["muon_threshold"])),
        )


def generation_ranges(metadata: "list[Mapping[str, Any]]") -> dict[str, tuple[float, float]] | None:
    """The ranges ``mubundle simulate`` sampled the primaries from, over all files' metadata.

    ``metadata``: the native metadata of every training file. Returns ``{"energy_gev": (lo, hi),
    "zenith_rad": ..., "vertical_depth_km": ...}``, the union over the files of the ``config``'s
    ``energy_range``, ``zenith_range_deg`` and ``depths_km``, or None unless every file is a
    sampled ``mubundle simulate`` shard (files of ``simulate --primaries``, which records
    ``primaries``, and other producers have only their events to go by).
    """
    if not metadata:
        return None
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    for entry in metadata:
        config = entry.get("config") if isinstance(entry, Mapping) else None
        if (not isinstance(config, Mapping) or entry.get("producer") != "mubundle simulate" or entry.get("primaries")
                or not all(key in config for key in ("energy_range", "zenith_range_deg", "depths_km"))):
            return None
        try:
            ranges = {
                "energy_gev": _pair(config["energy_range"], "energy_range"),
                "zenith_rad": tuple(math.radians(z) for z in _pair(config["zenith_range_deg"], "zenith_range_deg")),
                "vertical_depth_km": (float(min(config["depths_km"])), float(max(config["depths_km"]))),
            }
        except (TypeError, ValueError):
            return None
        for key, (low, high) in ranges.items():
            lows[key] = min(low, lows.get(key, low))
            highs[key] = max(high, highs.get(key, high))
    return {key: (lows[key], highs[key]) for key in lows}


def domain_of_events(
    conditions: np.ndarray, training_data: str | None = None, command: str | None = None,
    file_config: Mapping[str, Any] | None = None, generated: Mapping[str, tuple[float, float]] | None = None,
    file_configs: "list[Mapping[str, Any]] | None" = None,
) -> ModelDomain:
    """The domain spanned by training events: min/max of conditions (B, 4) [GeV, rad, A, slant km].

    ``file_config``: the ``config`` of the data's file metadata (``mubundle simulate`` stores its
    ``SimConfig``): its vertical ``depths_km`` and ``site`` / ``medium`` are recorded when
    present; a known site also gives the overburden radius for the vertical depth. Shards of
    ``mubundle simulate`` without a ``site`` key come from the simulator's only site before
    sites existed: the South Pole ice (``surface_altitude_m`` 2835 m, ``ice_v_cut``), flat.
    ``generated``: the ranges the primaries were sampled from (:func:`generation_ranges`); the
    domain is then the union of those and the events' ranges, so that e.g. a model trained on
    E0 3e2-1e9 GeV is not refused at 1e9 GeV because no event of the training set hit it
    exactly; its slant depths are those of the vertical depth range at the zenith bounds.
    Distinct mass numbers (at most 16) are recorded as ``nuclei``. ``file_configs``: the
    ``config`` of every training file; when all of them are ``mubundle simulate``'s with the same
    ``min_energy`` and ``ice_v_cut`` (and the medium is known), the kinematic zero of that
    simulator is recorded (:func:`mubundle.model.threshold.threshold_of_configs`).
    """
    conditions = np.asarray(conditions, dtype=np.float64).reshape(-1, 4)
    if not len(conditions):
        raise ValueError("no training events to derive a model domain from")
    finite = np.isfinite(conditions).all(axis=1)
    conditions = conditions[finite]

    def span(values: np.ndarray, key: str | None = None) -> tuple[float, float]:
        low, high = float(values.min()), float(values.max())
        if generated is not None and key in generated:
            low, high = min(low, generated[key][0]), max(high, generated[key][1])
        return low, high

    distinct_mass = np.unique(conditions[:, 2])
    config = dict(file_config or {})
    site, medium = config.get("site"), config.get("medium")
    if site is None and "surface_altitude_m" in config and "ice_v_cut" in config:
        site = f"south-pole (IceCube; surface {config['surface_altitude_m']:g} m a.s.l.)"
        medium = medium or "ice"
    elif site is not None:  # `mubundle simulate --site NAME`: the medium and overburden are the site's
        from mubundle.sim.site import SITES

        if site in SITES:
            medium = medium or SITES[site].medium.name
    radius = overburden_radius_of(site)
    depths = config.get("depths_km")
    zenith = span(conditions[:, 1], "zenith_rad")
    vertical = span(vertical_depth_km(conditions, radius), "vertical_depth_km")
    slant = span(conditions[:, 3])
    notes = [f"ranges are the min/max of {len(conditions)} training events"]
    if generated is not None:
        corners = slant_depth_km(np.array(zenith), np.array(vertical), radius)
        slant = (min(slant[0], float(corners[0])), max(slant[1], float(corners[1])))
        notes = [f"ranges are the union of the ranges the training data was simulated over (energy, zenith, "
                 f"vertical depth; slant depths of the vertical range at the zenith bounds) and the min/max of "
                 f"{len(conditions)} training events"]
    return ModelDomain(
        energy_gev=span(conditions[:, 0], "energy_gev"),
        zenith_rad=zenith,
        mass_number=span(conditions[:, 2]),
        slant_depth_km=slant,
        vertical_depth_km=vertical,
        nuclei=tuple(float(a) for a in distinct_mass) if len(distinct_mass) <= 16 else None,
        vertical_depths_km=None if depths is None else tuple(float(d) for d in depths),
        site=site,
        medium=medium,
        training_data=training_data,
        command=command,
        notes=tuple(notes),
        overburden_radius_m=radius,
        muon_threshold=threshold_of_configs(list(file_configs or []), medium),
    )


def overburden_radius_of(site: str | None) -> float:
    """Radius [m of the depth unit] of the spherical overburden of ``site``: that of
    :data:`mubundle.sim.site.SITES` (``Site.depth_unit_radius_m``) for a simulator site, else the
    South Pole ice's (Muonitron's radius: the original pipeline's files and older shards)."""
    from mubundle.sim.site import SITES

    return SITES[site].depth_unit_radius_m if site in SITES else MUONITRON_SURFACE_RADIUS_M


def _radius(value: Any) -> float | None:
    if value is None:
        return None
    try:
        radius = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model domain: overburden_radius_m must be a number, got {value!r}") from error
    if not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"model domain: overburden_radius_m must be finite and > 0, got {value!r}")
    return radius


def check_primaries(
    domain: ModelDomain | None, conditions: np.ndarray, model_name: str, allow_extrapolation: bool = False,
    warn: bool = True,
) -> DomainCheck:
    """The one domain check: conditions (B, 4) [GeV, rad, A, slant km] against ``domain``.

    None (a model without a recorded domain): nothing is checked. Primaries outside raise
    :class:`ExtrapolationError` with one line naming the value, the bound and the model,
    unless ``allow_extrapolation``; then one :class:`ExtrapolationWarning` (if ``warn``) says
    how many events are extrapolated. Returns the check (``n_outside`` for summaries).
    """
    if domain is None:
        return DomainCheck(np.zeros(len(conditions), dtype=bool))
    result = domain.check_conditions(conditions)
    if result.n_outside:
        if not allow_extrapolation:
            raise ExtrapolationError(result.message(model_name))
        if warn:
            first = result.violations[0].describe(model_name)
            warnings.warn(
                f"extrapolating {result.n_outside} of {len(conditions)} events outside the domain of model "
                f"'{model_name}' (e.g. {first})", ExtrapolationWarning, stacklevel=4,
            )
    return result


@contextmanager
def quiet_extrapolation() -> Iterator[None]:
    """Context in which :class:`ExtrapolationWarning` is not shown (callers that sample in many
    chunks and report the extrapolated events once themselves: generate, evaluate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        yield


def recorded_site(domain: ModelDomain | None) -> str | None:
    """The observation site (a :data:`mubundle.sim.site.SITES` name) ``domain`` records: its ``site``
    when it is one, ``icecube`` for the free-text South Pole sites of older records (and of files
    without a ``site`` key, :data:`mubundle.data.sites.LEGACY_SITE`), None when it records none or
    another free text (e.g. then a data set's site cannot be checked against it)."""
    from mubundle.data.sites import LEGACY_SITE
    from mubundle.sim.site import SITES

    site = None if domain is None else domain.site
    if site in SITES:
        return site
    return LEGACY_SITE if isinstance(site, str) and site.startswith("south-pole") else None


def check_files_site(domain: ModelDomain | None, model_name: str, paths: Any, role: str, primaries: bool = False) -> None:
    """``ValueError`` (one line: the files' site, the model's, the paths) when the files of ``paths``
    (``role``: "training data", "reference data", "primaries", ...) belong to another observation site
    than the one ``domain`` records (:func:`recorded_site`; the files' metadata ``site``,
    :mod:`mubundle.data.sites`), or mix sites. Depths and muons of another site are in another
    medium: a fit on them, or a comparison with them, is not about this model's medium.

    ``primaries``: the files are read for their primaries only; a file that records no site (a
    Parquet file of primaries, a CORSIKA file) is then not checked (:func:`~mubundle.data.sites.site_of_paths`).
    """
    from mubundle.data.sites import site_of_paths

    expected = recorded_site(domain)
    if expected is None:
        return
    paths = [paths] if isinstance(paths, (str, bytes)) or not hasattr(paths, "__iter__") else list(paths)
    site = site_of_paths(paths, what=f"the {role} mix", primaries=primaries)
    if site is None or site == expected:
        return
    medium = f" ({domain.medium})" if domain is not None and domain.medium else ""
    raise ValueError(
        f"{role} {', '.join(map(str, paths))} is of site {site!r}, but model '{model_name}' was trained at site "
        f"{expected!r}{medium}: depths and muons of another site are in another medium; use data of "
        f"`mubundle simulate --site {expected}` or a model of site {site!r}"
    )


def describe(domain: ModelDomain | None) -> str:
    """One line for summaries: the checked ranges of ``domain`` (or that none is recorded)."""
    if domain is None:
        return "no domain recorded (older export): primaries are not checked"
    parts = [f"{v.title} {_format_range(v, getattr(domain, v.key))}"
             for v in _VARIABLES if getattr(domain, v.key) is not None]
    return "; ".join(parts)


def model_name_of(directory: Any) -> str:
    """The name used in refusals: a shipped model's folder name, otherwise the directory path."""
    from pathlib import Path

    path = Path(directory)
    return path.name if path.parent.name == "pretrained" else str(path)


def read_domain(metadata: Mapping[str, Any], source: Any) -> ModelDomain | None:
    """The ``domain`` of a model.json dict (None if absent); ``ValueError`` names ``source`` if malformed."""
    if metadata.get("domain") is None:
        return None
    try:
        return ModelDomain.from_dict(metadata["domain"])
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from error
