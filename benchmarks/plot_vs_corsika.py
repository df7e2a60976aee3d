"""The simulator against CORSIKA as one figure for a talk, from the JSON lines of ``vs_corsika.py``.

Usage: python benchmarks/vs_corsika.py --corsika FILES --repeat 6 --decades 4 5 6 > results.jsonl
       python benchmarks/plot_vs_corsika.py results.jsonl [more.jsonl ...] --out vs_corsika.png

Four panels over log10(E0 / GeV), one point per decade of E0 (when several lines hold a decade, the
one read last wins, so list the files from old to new): the sum of N_mu above the muon cut, ours /
CORSIKA, with its standard error and the target band (+-5 % or two standard errors of the CORSIKA
sample, whichever is larger: each line's ``tolerance``); the relative fluctuation of N_mu at fixed
E0, ours / CORSIKA, with its bootstrap error and the +-15 % band; the muon-energy and the
lateral-distance quantiles (25 / 50 / 75 / 90 %), ours / CORSIKA, with their errors and the +-10 %
band (targets of the simulator issue, docs/simulator.md). A PNG or PDF by the suffix of ``--out``.

Lines that are not a ``vs_corsika`` result (other JSON, broken lines) are skipped, each named on
stderr with its file and line number, and counted. Prints one JSON line: the file written, the
decades plotted, the lines skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mubundle.benchmark_cli import output_file, print_json, run
from mubundle.errors import InvalidValueError

#: targets of the simulator issue: fluctuation within +-15 %, quantiles within +-10 %
FLUCTUATION_BAND = 0.15
QUANTILE_BAND = 0.10
#: horizontal offsets (in log10 E0) of the four quantile markers of one decade
QUANTILE_OFFSETS = (-0.21, -0.07, 0.07, 0.21)


def decade_centre(label: str) -> float:
    """log10 of the geometric centre of a decade label "1e5-1e6" (GeV) -> 5.5."""
    low, high = (float(part) for part in label.split("-"))
    return 0.5 * (np.log10(low) + np.log10(high))


def read_results(paths: list[str]) -> tuple[dict[str, dict], list[str]]:
    """The ``vs_corsika`` result of every decade in ``paths`` (later lines win) and one message per
    skipped line ("FILE:LINE: why")."""
    results: dict[str, dict] = {}
    skipped: list[str] = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                skipped.append(f"{path}:{number}: not JSON ({error.msg})")
                continue
            if not isinstance(record, dict) or record.get("benchmark") != "vs_corsika":
                skipped.append(f"{path}:{number}: not a vs_corsika result")
                continue
            try:
                decade_centre(record["decade"])
                for key in ("n_mu_sum", "rel_fluct", "energy_quantiles_gev", "radius_quantiles_m"):
                    if not isinstance(record[key], dict):
                        raise KeyError(key)
            except (KeyError, TypeError, ValueError) as error:
                skipped.append(f"{path}:{number}: vs_corsika result without {error}")
                continue
            results[record["decade"]] = record
    return results, skipped


def _value(x: object) -> float:
    """A number of the JSON, NaN for null (an undefined ratio)."""
    return np.nan if x is None else float(x)


def _above_zero(ratio: np.ndarray, error: np.ndarray) -> np.ndarray:
    """(2, D) lower and upper error bars of ratios of positive quantities: the lower one stops at 0
    (symmetric standard errors of a ratio resting on a few muons would reach below it)."""
    return np.array([np.minimum(error, np.where(np.isfinite(ratio), ratio, 0.0)), error])


def plot(results: dict[str, dict], out: Path) -> None:
    """Write the four-panel figure of ``results`` (decade label -> vs_corsika record) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    decades = sorted(results, key=decade_centre)
    centre = np.array([decade_centre(d) for d in decades])
    figure, axes = plt.subplots(2, 2, figsize=(10.0, 7.0), sharex=True)
    (sums, fluctuation), (energy, radius) = axes

    ratio = np.array([_value(results[d]["n_mu_sum"].get("ratio")) for d in decades])
    error = np.array([_value(results[d]["n_mu_sum"].get("ratio_se")) for d in decades])
    tolerance = np.array([_value(results[d]["n_mu_sum"].get("tolerance")) for d in decades])
    for x, band in zip(centre, tolerance):  # a ratio of counts is >= 0: band and error bars stop there
        sums.fill_between([x - 0.45, x + 0.45], max(0.0, 1.0 - band), 1.0 + band, color="tab:green", alpha=0.2,
                          linewidth=0)
    sums.errorbar(centre, ratio, yerr=_above_zero(ratio, error), fmt="o", color="black", capsize=3)
    for x, d, value, err in zip(centre, decades, ratio, error):  # how much each point rests on
        counted = results[d]["n_mu_sum"].get("corsika")
        if counted is not None and np.isfinite(value):
            sums.annotate(f"{counted:.0f} μ, {results[d].get('showers', '?')} sh.", (x, value + (err if np.isfinite(err) else 0.0)),
                          textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7, color="dimgrey")
    sums.set_ylim(bottom=0.0)
    sums.set_ylabel(r"$\sum N_\mu$ ours / CORSIKA")
    sums.set_title("muon number (band: ±5 % or 2 s.e.; labels: CORSIKA μ, showers)", fontsize=10)

    ratio = np.array([_value(results[d]["rel_fluct"].get("ratio")) for d in decades])
    error = np.array([_value(results[d]["rel_fluct"].get("ratio_se_bootstrap")) for d in decades])
    fluctuation.axhspan(1.0 - FLUCTUATION_BAND, 1.0 + FLUCTUATION_BAND, color="tab:green", alpha=0.2, linewidth=0)
    fluctuation.errorbar(centre, ratio, yerr=_above_zero(ratio, error), fmt="o", color="black", capsize=3)
    fluctuation.set_ylabel(r"$\sigma(N_\mu)/N_\mu$ ours / CORSIKA")
    fluctuation.set_title(f"fluctuation at fixed E0 (band: ±{FLUCTUATION_BAND:.0%})", fontsize=10)

    for axis, key, name in ((energy, "energy_quantiles_gev", "muon energy"), (radius, "radius_quantiles_m", "distance to the axis")):
        axis.axhspan(1.0 - QUANTILE_BAND, 1.0 + QUANTILE_BAND, color="tab:green", alpha=0.2, linewidth=0)
        quantiles = results[decades[0]][key].get("q", [25, 50, 75, 90])
        for k, (q, offset) in enumerate(zip(quantiles, QUANTILE_OFFSETS)):
            ratio = np.array([_value((results[d][key].get("ratio") or [None] * 4)[k]) for d in decades])
            error = np.array([_value((results[d][key].get("ratio_se") or [None] * 4)[k]) for d in decades])
            axis.errorbar(centre + offset, ratio, yerr=_above_zero(ratio, error), fmt="os^D"[k], capsize=2, markersize=4,
                          label=f"{q} %")
        axis.set_ylabel("quantile ours / CORSIKA")
        axis.set_title(f"{name} quantiles (band: ±{QUANTILE_BAND:.0%})", fontsize=10)
        axis.set_xlabel(r"$\log_{10}(E_0$ / GeV)")
        axis.legend(fontsize=8, ncol=4, loc="best")
    for axis in axes.ravel():
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_xticks(np.arange(np.floor(centre.min()), np.ceil(centre.max()) + 1.0))
    cut = {results[d].get("min_energy_gev") for d in decades}
    level = {results[d].get("surface_altitude_m") for d in decades}
    figure.suptitle(f"mubundle simulator vs CORSIKA 7 (SIBYLL-2.3d), muons above {', '.join(f'{c:g}' for c in cut if c is not None)} GeV "
                    f"at {', '.join(f'{h:g}' for h in level if h is not None)} m", fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    from mubundle.benchmark_cli import input_file, make_parser

    parser = make_parser(__doc__)
    parser.add_argument("results", nargs="+", type=input_file, help="files of vs_corsika.py JSON lines")
    parser.add_argument("--out", type=output_file, default="vs_corsika.png",
                        help="figure to write (.png or .pdf; its folder must exist)")
    args = parser.parse_args(argv)
    results, skipped = read_results(args.results)
    for message in skipped:
        print(f"plot_vs_corsika: warning: skipped {message}", file=sys.stderr)
    if not results:
        raise InvalidValueError(f"no vs_corsika result in {', '.join(args.results)} ({len(skipped)} lines skipped)")
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise InvalidValueError(f"--out must end in .png or .pdf, got {out}")
    plot(results, out)
    print_json({"benchmark": "plot_vs_corsika", "out": str(out), "decades": sorted(results, key=decade_centre),
                "skipped_lines": len(skipped)}, indent=None)


if __name__ == "__main__":
    run(main)
