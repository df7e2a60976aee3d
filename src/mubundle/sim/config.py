"""Configuration of ``mubundle simulate``: one dataclass, its CLI flags, and the conversion.

``SimConfig`` is the single source of truth for every simulation default (issue 3):
mixed composition, 1e4-1e7 GeV with spectral index 1 (flat in log E), zenith uniform in
cos(zenith) over 0-70 deg, vertical ice depths 1.5, 2.0, 2.5 km.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

#: Primary names accepted by ``--primary`` and their mass numbers A.
PRIMARY_MASSES: dict[str, int] = {"p": 1, "He4": 4, "N14": 14, "Al27": 27, "Fe56": 56}
#: ``--primary mix`` draws each shower's primary uniformly from these mass numbers.
MIX_MASSES: tuple[int, ...] = (1, 4, 14, 27, 56)
#: Zenith angles beyond this are refused: the flat-earth slant geometry is only valid below ~70-75 deg.
MAX_ZENITH_DEG = 75.0


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
    #: altitude of the ice surface (IceCube / South Pole: 2835 m a.s.l.).
    surface_altitude_m: float = 2835.0
    #: relative cut between continuous and stochastic muon energy losses in ice.
    ice_v_cut: float = 0.05

    def __post_init__(self) -> None:
        if self.showers < 0:
            raise ValueError(f"--showers must be >= 0, got {self.showers}")
        if self.primary != "mix" and self.primary not in PRIMARY_MASSES:
            raise ValueError(f"--primary must be one of {', '.join([*PRIMARY_MASSES, 'mix'])}, got {self.primary!r}")
        lo, hi = self.energy_range
        if not 0 < lo <= hi:
            raise ValueError(f"energy range must satisfy 0 < LO <= HI GeV, got {lo}, {hi}")
        zlo, zhi = self.zenith_range_deg
        if not 0 <= zlo <= zhi <= MAX_ZENITH_DEG:
            raise ValueError(f"zenith range must satisfy 0 <= LO <= HI <= {MAX_ZENITH_DEG} deg, got {zlo}, {zhi}")
        if not self.depths_km or any(d < 0 for d in self.depths_km):
            raise ValueError(f"--depths must be non-negative km values, got {self.depths_km}")
        if self.min_energy <= 0:
            raise ValueError(f"--min-energy must be > 0 GeV, got {self.min_energy}")
        if self.showers_per_chunk < 1:
            raise ValueError(f"showers_per_chunk must be >= 1, got {self.showers_per_chunk}")
        if not -1000.0 <= self.surface_altitude_m < 100_000.0:  # NaN fails too
            raise ValueError(f"--surface-altitude must be in [-1000, 100000) m a.s.l., got {self.surface_altitude_m}")
        if not 0 < self.ice_v_cut < 1:
            raise ValueError(f"ice_v_cut must be in (0, 1), got {self.ice_v_cut}")

    @property
    def n_chunks(self) -> int:
        return -(-self.showers // self.showers_per_chunk)


def parse_depths(text: str) -> tuple[float, ...]:
    """argparse type for ``--depths 1.5,2.0,2.5`` (km)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depths expects comma-separated km values, got {text!r}") from None


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``mubundle simulate`` flags of issue 3 on ``parser`` (defaults: ``SimConfig``)."""
    defaults = SimConfig()
    parser.add_argument("--out", required=True, type=Path, help="output dataset directory (resumed if it exists)")
    parser.add_argument("--showers", type=int, help="number of air showers (one event per depth each); not with --primaries")
    parser.add_argument("--primary", default=defaults.primary, choices=[*PRIMARY_MASSES, "mix"],
                        help="primary nucleus, or 'mix' (uniform over p, He4, N14, Al27, Fe56)")
    energy = parser.add_mutually_exclusive_group()
    energy.add_argument("--energy", type=float, metavar="GEV", help="fixed primary energy in GeV")
    energy.add_argument("--energy-range", type=float, nargs=2, metavar=("LO", "HI"),
                        help=f"primary energy range in GeV (default {defaults.energy_range[0]:g} {defaults.energy_range[1]:g})")
    parser.add_argument("--spectral-index", type=float, default=defaults.spectral_index, metavar="G",
                        help="dN/dE ~ E^-G between LO and HI (1 = flat in log E)")
    zenith = parser.add_mutually_exclusive_group()
    zenith.add_argument("--zenith", type=float, metavar="DEG", help="fixed zenith angle in degrees")
    zenith.add_argument("--zenith-range", type=float, nargs=2, metavar=("LO", "HI"),
                        help="zenith range in degrees, uniform in cos(zenith) (default 0 70)")
    parser.add_argument("--depths", type=parse_depths, default=defaults.depths_km, metavar="KM,KM,...",
                        help="vertical ice depths in km (0 = surface); one event per depth")
    parser.add_argument("--min-energy", type=float, default=defaults.min_energy, metavar="GEV",
                        help="keep muons above this energy at each depth")
    parser.add_argument("--interaction-model", default=defaults.interaction_model,
                        help="chromo hadronic model (SIBYLL-2.3d, SIBYLL-2.1, EPOS-LHC, QGSJet-II-04, ...)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (one model instance each)")
    add_given_primaries_arguments(parser)


def add_given_primaries_arguments(parser: argparse.ArgumentParser) -> None:
    """``--primaries FILE... [--repeat K]`` and ``--surface-altitude M`` (issue 21)."""
    defaults = SimConfig()
    parser.add_argument("--primaries", nargs="+", metavar="FILE",
                        help="simulate one shower per event of these files (any readable layout) instead of sampling")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="with --primaries: simulate each primary K times in a row")
    parser.add_argument("--surface-altitude", type=float, default=defaults.surface_altitude_m, metavar="M",
                        help="observation level (ice surface) in m a.s.l. (default: South Pole, 2835)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """``SimConfig`` from parsed ``mubundle simulate`` arguments."""
    primaries = getattr(args, "primaries", None)
    if primaries and args.showers is not None:
        raise ValueError("--showers and --primaries exclude each other (--primaries gives one shower per event)")
    if not primaries and args.showers is None:
        raise ValueError("give --showers N (sampled primaries) or --primaries FILE...")
    if getattr(args, "repeat", 1) < 1:
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
    return replace(
        config,
        primary=args.primary,
        energy_range=energy_range,
        spectral_index=args.spectral_index,
        zenith_range_deg=zenith_range,
        depths_km=tuple(args.depths),
        min_energy=args.min_energy,
        interaction_model=args.interaction_model,
        seed=args.seed,
        surface_altitude_m=getattr(args, "surface_altitude", config.surface_altitude_m),
    )
