"""Configuration of ``mubundle simulate``: one dataclass, its CLI flags, and the conversion.

``SimConfig`` is the single source of truth for every simulation default:
mixed composition, 1e4-1e7 GeV with spectral index 1 (flat in log E), zenith uniform in
cos(zenith) over 0-70 deg, vertical ice depths 1.5, 2.0, 2.5 km.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from mubundle.argtypes import (
    MAX_DEPTH_KM,
    MAX_PRIMARY_ENERGY_GEV,
    SPECTRAL_INDEX_RANGE,
    finite_float,
    finite_float_list,
    positive_int,
    seed_int,
)

#: Primary names accepted by ``--primary`` and their mass numbers A.
PRIMARY_MASSES: dict[str, int] = {"p": 1, "He4": 4, "N14": 14, "Al27": 27, "Fe56": 56}
#: ``--primary mix`` draws each shower's primary uniformly from these mass numbers.
MIX_MASSES: tuple[int, ...] = (1, 4, 14, 27, 56)
#: Zenith angles beyond this are refused. The atmosphere is curved (``earth.CurvedAxes``, as
#: CORSIKA's CURVED option) and the overburden spherical, so the geometry holds to the horizon;
#: 89 deg keeps the axis inside the atmosphere model's validity (slant depth ~19 000 g/cm^2).
MAX_ZENITH_DEG = 89.0
#: Highest accepted primary energy (GeV): the cross-section tables end at 1e10 GeV per nucleon
#: (the same bound as mubundle.argtypes).
MAX_ENERGY_GEV = MAX_PRIMARY_ENERGY_GEV
_ENERGY = finite_float(0.0, MAX_PRIMARY_ENERGY_GEV, min_inclusive=False, unit="GeV")
_ZENITH_DEG = finite_float(0.0, MAX_ZENITH_DEG, unit="deg")


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a simulated dataset (stored in each shard's metadata).

    Energies in GeV, angles in degrees, depths in km of ice (vertical), altitude in m.
    """

    showers: int = 1000
    primary: str = "mix"
    energy_range: tuple[float, float] = (1e4, 1e7)
    spectral_index: float = 1.0
    zenith_range_deg: tuple[float, float] = (0.0, 70.0)
    depths_km: tuple[float, ...] = (1.5, 2.0, 2.5)
    min_energy: float = 1.0
    interaction_model: str = "SIBYLL-2.3d"
    seed: int = 0
    #: showers per chunk; one chunk = one shard = one unit of resumption and of seeding.
    showers_per_chunk: int = 200
    #: altitude of the medium's surface (m a.s.l.); None = the site's (IceCube: 2835 m).
    surface_altitude_m: float | None = None
    #: relative cut between continuous and stochastic muon energy losses in ice.
    ice_v_cut: float = 0.05
    #: observation site and medium (``sim/site.py``: icecube, km3net-arca, km3net-orca, rock).
    site: str = "icecube"
    #: flux model (``mubundle.flux.FLUX_MODELS``): primaries are drawn as for ``generate --flux``
    #: (mass group uniform, E^-spectral_index) and each event carries its weight in Hz; None = no weights.
    flux: str | None = None
    #: disc (m^2) perpendicular to the shower axis that the flux weights refer to.
    area_m2: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.showers, int) or self.showers < 0:
            raise ValueError(f"--showers must be >= 0, got {self.showers}")
        if self.primary != "mix" and self.primary not in PRIMARY_MASSES:
            raise ValueError(f"--primary must be one of {', '.join([*PRIMARY_MASSES, 'mix'])}, got {self.primary!r}")
        lo, hi = self.energy_range
        if not 0 < lo <= hi <= MAX_PRIMARY_ENERGY_GEV:  # also false for nan; the bound: mubundle.argtypes
            raise ValueError(f"energy range must satisfy 0 < LO <= HI <= {MAX_PRIMARY_ENERGY_GEV:g} GeV, got {lo}, {hi}")
        if not SPECTRAL_INDEX_RANGE[0] <= self.spectral_index <= SPECTRAL_INDEX_RANGE[1]:
            raise ValueError(f"--spectral-index must be a finite number in {list(SPECTRAL_INDEX_RANGE)}, got {self.spectral_index}")
        zlo, zhi = self.zenith_range_deg
        if not 0 <= zlo <= zhi <= MAX_ZENITH_DEG:
            raise ValueError(f"zenith range must satisfy 0 <= LO <= HI <= {MAX_ZENITH_DEG} deg, got {zlo}, {zhi}")
        if not self.depths_km or any(not 0 <= d <= MAX_DEPTH_KM for d in self.depths_km):
            raise ValueError(f"--depths must be km values in [0, {MAX_DEPTH_KM:g}], got {self.depths_km}")
        if not 0 < self.min_energy <= MAX_PRIMARY_ENERGY_GEV:
            raise ValueError(f"--min-energy must be > 0 GeV, got {self.min_energy}")
        if self.showers_per_chunk < 1:
            raise ValueError(f"showers_per_chunk must be >= 1, got {self.showers_per_chunk}")
        if self.surface_altitude_m is not None and not -1000.0 <= self.surface_altitude_m < 100_000.0:  # NaN fails too
            raise ValueError(f"--surface-altitude must be in [-1000, 100000) m a.s.l., got {self.surface_altitude_m}")
        if not 0 < self.ice_v_cut < 1:
            raise ValueError(f"ice_v_cut must be in (0, 1), got {self.ice_v_cut}")
        from mubundle.sim.site import SITES

        if self.site not in SITES:
            raise ValueError(f"--site must be one of {', '.join(SITES)}, got {self.site!r}")
        if self.flux is not None:
            from mubundle.flux import FLUX_MODELS

            if self.flux not in FLUX_MODELS:
                raise ValueError(f"--flux must be one of {', '.join(FLUX_MODELS)}, got {self.flux!r}")
            if self.primary != "mix":
                raise ValueError("--primary cannot be combined with --flux: the flux model's mass groups are drawn")
            if not (lo < hi and zlo < zhi):
                raise ValueError("--flux needs an energy range LO < HI and a zenith range LO < HI (weights per GeV and per sr)")
            if not self.area_m2 > 0:
                raise ValueError(f"--area must be > 0 m^2, got {self.area_m2}")

    @property
    def n_chunks(self) -> int:
        return -(-self.showers // self.showers_per_chunk)

    @property
    def site_spec(self):
        """The :class:`mubundle.sim.site.Site` named by ``site``."""
        from mubundle.sim.site import get_site

        return get_site(self.site)

    @property
    def altitude_m(self) -> float:
        """Altitude of the medium's surface (m a.s.l.): ``surface_altitude_m`` or the site's."""
        return self.site_spec.surface_altitude_m if self.surface_altitude_m is None else float(self.surface_altitude_m)


def parse_depths(text: str) -> tuple[float, ...]:
    """argparse type for ``--depths 1.5,2.0,2.5`` (km)."""
    return _PARSE_DEPTHS(text)  # finite, 0 <= depth <= MAX_DEPTH_KM (mubundle.argtypes)


_PARSE_DEPTHS = finite_float_list(0.0, MAX_DEPTH_KM, unit="km")


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``mubundle simulate`` flags on ``parser`` (defaults: ``SimConfig``)."""
    defaults = SimConfig()
    # flags are checked for finiteness and range while parsing: energies in
    # (0, 1e10] GeV, zenith in [0, MAX_ZENITH_DEG], counts >= 1 (bounds: mubundle.argtypes)
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory (resumed if it exists)")
    parser.add_argument("--showers", type=positive_int,
                        help="number of air showers (one event per depth each); not with --primaries")
    parser.add_argument("--primary", default=None, choices=[*PRIMARY_MASSES, "mix"],
                        help=f"primary nucleus, or 'mix' (uniform over p, He4, N14, Al27, Fe56; default {defaults.primary})")
    energy = parser.add_mutually_exclusive_group()
    energy.add_argument("--energy", type=_ENERGY, metavar="GEV", help="fixed primary energy in GeV")
    energy.add_argument("--energy-range", type=_ENERGY, nargs=2, metavar=("LO", "HI"),
                        help=f"primary energy range in GeV (default {defaults.energy_range[0]:g} {defaults.energy_range[1]:g})")
    parser.add_argument("--spectral-index", type=finite_float(*SPECTRAL_INDEX_RANGE), default=None, metavar="G",
                        help=f"dN/dE ~ E^-G between LO and HI (1 = flat in log E; default {defaults.spectral_index:g})")
    zenith = parser.add_mutually_exclusive_group()
    zenith.add_argument("--zenith", type=_ZENITH_DEG, metavar="DEG", help="fixed zenith angle in degrees")
    zenith.add_argument("--zenith-range", type=_ZENITH_DEG, nargs=2, metavar=("LO", "HI"),
                        help="zenith range in degrees, uniform in cos(zenith) (default 0 70)")
    parser.add_argument("--depths", type=parse_depths, default=defaults.depths_km, metavar="KM,KM,...",
                        help="vertical depths in km of the site's medium (km w.e. for rock; 0 = surface); one event per "
                             f"depth (default {','.join(f'{d:g}' for d in defaults.depths_km)})")
    parser.add_argument("--min-energy", type=_ENERGY, default=defaults.min_energy, metavar="GEV",
                        help="keep muons above this energy in GeV at each depth (default %(default)g)")
    parser.add_argument("--interaction-model", default=defaults.interaction_model,
                        help="chromo hadronic model (SIBYLL-2.3d, SIBYLL-2.1, EPOS-LHC, QGSJet-II-04, ...; "
                             "default %(default)s)")
    parser.add_argument("--seed", type=seed_int, default=defaults.seed,
                        help="random seed: the dataset is a function of the seed and the configuration, "
                             "for any --workers (default %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="worker processes, each with its own model instance (default %(default)s)")
    from mubundle.flux import FLUX_MODELS
    from mubundle.sim.site import SITES

    parser.add_argument("--site", default=defaults.site, choices=list(SITES),
                        help="observation site and medium (default icecube: South Pole ice, 2835 m a.s.l.)")
    parser.add_argument("--flux", default=None, choices=list(FLUX_MODELS),
                        help="weight each event to this cosmic-ray flux (Hz, as `mubundle generate --flux`)")
    parser.add_argument("--generation-gamma", type=finite_float(*SPECTRAL_INDEX_RANGE), default=None, metavar="G",
                        help="generation spectrum E^-G (same as --spectral-index)")
    parser.add_argument("--area", type=finite_float(0.0, None, min_inclusive=False, unit="m^2"), default=None,
                        metavar="M2", help=f"disc perpendicular to the axis (m^2) the flux weights refer to (default {defaults.area_m2:g})")
    add_given_primaries_arguments(parser)


def add_given_primaries_arguments(parser: argparse.ArgumentParser) -> None:
    """``--primaries FILE... [--repeat K]`` and ``--surface-altitude M``."""
    parser.add_argument("--primaries", nargs="+", metavar="FILE",
                        help="simulate one shower per event of these files (any readable layout) instead of sampling")
    parser.add_argument("--repeat", type=positive_int, default=None, metavar="K",
                        help="with --primaries: simulate each primary K times in a row (default 1)")
    parser.add_argument("--surface-altitude", type=finite_float(-1000.0, 100_000.0, unit="m"), default=None, metavar="M",
                        help="observation level (the medium's surface) in m a.s.l. (default: the site's surface: "
                             "icecube 2835; km3net-arca, km3net-orca and rock 0, sea level)")


#: ``mubundle simulate`` flags that only sampled primaries use (argparse dest, flag)
_SAMPLING_FLAGS = (("primary", "--primary"), ("energy", "--energy"), ("energy_range", "--energy-range"),
                   ("spectral_index", "--spectral-index"), ("generation_gamma", "--generation-gamma"),
                   ("zenith", "--zenith"), ("zenith_range", "--zenith-range"), ("flux", "--flux"), ("area", "--area"))


def given_sampling_conflicts(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(flags given that need --primaries, flags given that only sampled primaries use, when
    --primaries is given): a flag that would be ignored is refused instead."""
    if getattr(args, "primaries", None):
        return [], [flag for dest, flag in _SAMPLING_FLAGS if getattr(args, dest, None) is not None]
    return ["--repeat"] if getattr(args, "repeat", None) is not None else [], []


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """``SimConfig`` from parsed ``mubundle simulate`` arguments."""
    primaries = getattr(args, "primaries", None)
    if primaries and args.showers is not None:
        raise ValueError("--showers and --primaries exclude each other (--primaries gives one shower per event)")
    if not primaries and args.showers is None:
        raise ValueError("give --showers N (sampled primaries) or --primaries FILE...")
    given_only, sampled_only = given_sampling_conflicts(args)
    if given_only:
        raise ValueError(f"{', '.join(given_only)}: only with --primaries")
    if sampled_only:
        raise ValueError(f"{', '.join(sampled_only)}: sampled primaries only; --primaries takes energy, zenith and mass "
                         "from its files (and weights no flux)")
    if getattr(args, "repeat", None) is not None and args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    config = SimConfig(showers=args.showers if args.showers is not None else 0)
    energy_range = config.energy_range
    if args.energy is not None:
        energy_range = (args.energy, args.energy)
    elif args.energy_range is not None:
        energy_range = tuple(args.energy_range)
    zenith_range = config.zenith_range_deg
    if args.zenith is not None:
        zenith_range = (args.zenith, args.zenith)
    elif args.zenith_range is not None:
        zenith_range = tuple(args.zenith_range)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    spectral_index = config.spectral_index if args.spectral_index is None else args.spectral_index
    generation_gamma = getattr(args, "generation_gamma", None)
    if generation_gamma is not None:
        if spectral_index != config.spectral_index and spectral_index != generation_gamma:
            raise ValueError(f"--generation-gamma {generation_gamma} and --spectral-index {spectral_index} disagree")
        spectral_index = generation_gamma
    return replace(
        config,
        primary=config.primary if args.primary is None else args.primary,
        energy_range=energy_range,
        spectral_index=spectral_index,
        zenith_range_deg=zenith_range,
        depths_km=tuple(args.depths),
        min_energy=args.min_energy,
        interaction_model=args.interaction_model,
        seed=args.seed,
        site=getattr(args, "site", config.site),
        flux=getattr(args, "flux", None),
        area_m2=config.area_m2 if getattr(args, "area", None) is None else args.area,
        surface_altitude_m=getattr(args, "surface_altitude", config.surface_altitude_m),
    )
