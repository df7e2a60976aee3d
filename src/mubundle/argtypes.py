"""argparse ``type=`` factories that check numeric flags for finiteness and range at parse time.

``float("nan")``, ``float("inf")`` and negative counts pass ``x < 0``-style checks further
down; these types refuse them while parsing, so the user gets argparse's one line
(``mubundle generate: error: argument --events: must be an integer >= 1, got '0'``, exit 2)
before anything runs. Imports only :mod:`mubundle.errors` (its range wording).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from mubundle.errors import range_text

#: Highest primary energy a flag accepts [GeV] (1e19 eV). Above it the H3a flux is cut off
#: (population-3 rigidity cutoff 2e9 GV: Gaisser, Astropart. Phys. 35 (2012) 801, Table 1;
#: crflux ``HillasGaisser2012``), the cosmic-ray flux is suppressed (Pierre Auger
#: Collaboration, Phys. Rev. Lett. 101 (2008) 061101), the shipped models are trained on
#: 1e4-1e7 GeV (docs/pretrained.md), and the reference simulator's SIBYLL-2.3d calls do not
#: return in useful time (``simulate --energy 1e30`` never finished).
MAX_PRIMARY_ENERGY_GEV = 1e10
#: Deepest slant/vertical depth a flag accepts [km of ice]: twice the range of a muon of
#: MAX_PRIMARY_ENERGY_GEV, R = ln(1 + E b / a) / b ~ 50 km with the mean loss a = 0.24 GeV/m,
#: b = 3.3e-4 /m of sim/ice.py (IceCube, JINST 9 (2014) P03009); nothing arrives deeper.
MAX_DEPTH_KM = 100.0
#: Spectral indices a flag accepts: any cosmic-ray spectrum (measured 2.6-3.1, PDG review
#: "Cosmic rays", 2024) lies far inside, and inverse-CDF power-law sampling over 10 decades
#: stays finite in float64 (E^(1-g) overflows only for |1 - g| > 30).
SPECTRAL_INDEX_RANGE = (-10.0, 10.0)


def _check_range(number: float, minimum: float | None, maximum: float | None, min_inclusive: bool,
                 max_inclusive: bool) -> bool:
    if minimum is not None and (number < minimum or (not min_inclusive and number == minimum)):
        return False
    return not (maximum is not None and (number > maximum or (not max_inclusive and number == maximum)))


def finite_float(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    unit: str = "",
) -> Callable[[str], float]:
    """argparse type: a finite float within [minimum, maximum] (exclusive ends on request)."""
    expected = f"a finite number{range_text(minimum, maximum, min_inclusive, max_inclusive)}{' ' + unit if unit else ''}"

    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
        if not math.isfinite(number) or not _check_range(number, minimum, maximum, min_inclusive, max_inclusive):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return number

    parse.__name__ = "number"
    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """argparse type: an integer within [minimum, maximum]; ``1e3`` is 1000, ``1.5`` is refused."""
    expected = f"an integer{range_text(minimum, maximum, True, True)}"

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
            if not (math.isfinite(value) and value.is_integer()):
                raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
            number = int(value)
        if not _check_range(number, minimum, maximum, True, True):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return number

    parse.__name__ = "integer"
    return parse


#: common integer flags: counts of things (>= 1) and seeds / sizes that may be 0
positive_int = integer(1)
non_negative_int = integer(0)
#: seeds: numpy's default_rng and torch.manual_seed accept 0 .. 2^64 - 1
seed_int = integer(0, 2**64 - 1)


def finite_float_list(
    minimum: float | None = None, maximum: float | None = None, *, unit: str = ""
) -> Callable[[str], tuple[float, ...]]:
    """argparse type for ``1.5,2.0,2.5``: one or more comma-separated finite floats in range, each
    once (an empty item, as in ``1.5,,2``, or a repeated value is refused, not skipped)."""
    one = finite_float(minimum, maximum, unit=unit)

    def parse(text: str) -> tuple[float, ...]:
        parts = [part.strip() for part in text.split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError(f"expects comma-separated {unit or 'values'}, got {text!r}")
        if not all(parts):
            raise argparse.ArgumentTypeError(f"must be comma-separated {unit or 'values'} without empty items, got {text!r}")
        values = []
        for part in parts:
            try:
                values.append(one(part))
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(f"{part!r} of {text!r} {error}".replace(" must", ": must", 1)) from None
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"must be distinct values, got {', '.join(f'{v:g}' for v in repeated)} "
                                             f"more than once in {text!r}")
        return tuple(values)

    parse.__name__ = "list"
    return parse
