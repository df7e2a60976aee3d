"""PNG plots of the evaluation: reference vs model distributions with ratio panels, and
the metric ratios per condition bin. matplotlib (Agg) with the mplhep ROOT style."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.data.schema import ENERGY
from mubundle.evaluate.features import event_observables, muon_observables

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class Figure:
    """A written plot: ``file`` name inside the output directory and a one-line ``caption``."""

    file: str
    caption: str


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    return plt, mplhep


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _legend(axis: Axes, **options: Any) -> None:
    """``axis.legend(**options)`` when the axis has a labelled artist; none otherwise (matplotlib
    would warn "No artists with labels found", e.g. with no E0 bin of enough events for a coverage)."""
    handles, _ = axis.get_legend_handles_labels()
    if handles:
        axis.legend(**options)


def _edges(reference: np.ndarray, model: np.ndarray, n_bins: int = 40) -> np.ndarray | None:
    both = np.concatenate([_finite(reference), _finite(model)])
    if both.size == 0:
        return None
    lo, hi = np.quantile(both, [0.001, 0.999])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def multiplicity_edges(max_count: float) -> np.ndarray:
    """Bin edges in log10(N + 1) with one bin per integer N up to 20, then logarithmic bins."""
    counts = np.arange(-0.5, min(max_count, 20) + 1.0)
    if max_count > 20:
        counts = np.concatenate([counts, np.geomspace(counts[-1] + 1, max_count + 1, 15)])
    return np.log10(counts + 1.0)


def histogram_with_ratio(
    reference: np.ndarray, model: np.ndarray, xlabel: str, path: Path, logy: bool = True, n_bins: int = 40,
    edges: np.ndarray | None = None,
) -> bool:
    """Normalised histograms of ``reference`` and ``model`` (1D arrays, NaN ignored) with a
    model/reference ratio panel (Poisson errors of both). False if there is nothing to plot."""
    plt, mplhep = _pyplot()
    reference, model = _finite(reference), _finite(model)
    if edges is None:
        edges = _edges(reference, model, n_bins)
    if edges is None or reference.size == 0 or model.size == 0:
        return False
    # the range covers the central 99.8 %; the far tails are left out rather than piled into edge bins
    ref_counts, _ = np.histogram(reference, edges)
    model_counts, _ = np.histogram(model, edges)
    widths = np.diff(edges)
    ref_density = ref_counts / (max(ref_counts.sum(), 1) * widths)
    model_density = model_counts / (max(model_counts.sum(), 1) * widths)
    with plt.style.context(mplhep.style.ROOT):
        figure, (top, bottom) = plt.subplots(
            2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
        )
        figure.subplots_adjust(left=0.22, right=0.97, top=0.97, bottom=0.13)
        mplhep.histplot(ref_density, edges, ax=top, label=f"reference ({reference.size})", color="black")
        mplhep.histplot(model_density, edges, ax=top, label=f"model ({model.size})", color="tab:red")
        if logy and (ref_density > 0).any():
            top.set_yscale("log")
        top.set_ylabel("normalised density")
        _legend(top, fontsize=10)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = model_density / ref_density
            error = ratio * np.sqrt(1.0 / model_counts + 1.0 / ref_counts)
        centres = 0.5 * (edges[:-1] + edges[1:])
        shown = np.isfinite(ratio) & np.isfinite(error)
        bottom.errorbar(centres[shown], ratio[shown], yerr=error[shown], fmt="o", ms=3, color="tab:red")
        bottom.axhline(1.0, color="black", lw=1)
        bottom.set_ylim(0.5, 1.5)
        bottom.set_ylabel("model / ref")
        bottom.set_xlabel(xlabel)
        figure.savefig(path, dpi=80)
        plt.close(figure)
    return True


def profile_plot(
    x_reference: np.ndarray, y_reference: np.ndarray, x_model: np.ndarray, y_model: np.ndarray,
    edges: np.ndarray, xlabel: str, ylabel: str, path: Path,
) -> bool:
    """Mean of y in bins of x (error = standard error of the mean), reference vs model."""
    plt, mplhep = _pyplot()
    if len(x_reference) == 0 or len(x_model) == 0:
        return False
    with plt.style.context(mplhep.style.ROOT):
        figure, axis = plt.subplots(figsize=(7, 5))
        figure.subplots_adjust(left=0.2, right=0.97, top=0.97, bottom=0.15)
        for x, y, label, colour in ((x_reference, y_reference, "reference", "black"), (x_model, y_model, "model", "tab:red")):
            index = np.digitize(x, edges) - 1
            inside = (index >= 0) & (index < len(edges) - 1) & np.isfinite(y)
            n = np.bincount(index[inside], minlength=len(edges) - 1)
            total = np.bincount(index[inside], weights=y[inside], minlength=len(edges) - 1)
            total_sq = np.bincount(index[inside], weights=y[inside] ** 2, minlength=len(edges) - 1)
            filled = n > 1
            mean = total[filled] / n[filled]
            sem = np.sqrt(np.maximum(total_sq[filled] / n[filled] - mean**2, 0.0) / (n[filled] - 1))
            centres = 0.5 * (edges[:-1] + edges[1:])[filled]
            axis.errorbar(centres, mean, yerr=sem, fmt="o-", ms=4, label=label, color=colour)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        _legend(axis, fontsize=10)
        figure.savefig(path, dpi=80)
        plt.close(figure)
    return True


def distribution_plots(reference: RaggedBatch, model: RaggedBatch, out_dir: Path) -> list[Figure]:
    """The overall distributions (one PNG each) and two profiles; returns the figures written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_events, model_events = event_observables(reference), event_observables(model)
    ref_muons, model_muons = muon_observables(reference), muon_observables(model)
    figures: list[Figure] = []
    specs = [
        ("multiplicity.png", ref_events.log10_n_plus_1, model_events.log10_n_plus_1, r"log$_{10}$(N + 1)",
         "Muon multiplicity per event (all events, N = 0 included)."),
        ("muon_energy.png", ref_muons.log10_energy, model_muons.log10_energy, r"log$_{10}$(E$_\mu$ / GeV)",
         "Energy of every muon at the observation depth."),
        ("muon_radius.png", ref_muons.radius, model_muons.radius, "r [m]",
         "Lateral distance of every muon from the shower axis."),
        ("bundle_energy.png", np.log10(ref_events.total_energy), np.log10(model_events.total_energy),
         r"log$_{10}$($\Sigma$ E$_\mu$ / GeV)", "Total muon energy of the bundle (events with N >= 1)."),
        ("leading_fraction.png", ref_events.leading_fraction, model_events.leading_fraction,
         r"E$_{\rm leading}$ / $\Sigma$ E$_\mu$", "Energy fraction carried by the most energetic muon (N >= 1)."),
        ("bundle_mean_radius.png", ref_events.mean_radius, model_events.mean_radius, "mean r [m]",
         "Mean lateral distance of the bundle's muons (N >= 1)."),
    ]
    max_count = max(float(reference.counts.max(initial=0)), float(model.counts.max(initial=0)))
    for file, ref_values, model_values, xlabel, caption in specs:
        edges = multiplicity_edges(max_count) if file == "multiplicity.png" else None
        if histogram_with_ratio(ref_values, model_values, xlabel, out_dir / file, edges=edges):
            figures.append(Figure(file, caption))
    energy_edges = np.linspace(0.0, 5.0, 21)
    if profile_plot(ref_muons.log10_energy, ref_muons.radius, model_muons.log10_energy, model_muons.radius,
                    energy_edges, r"log$_{10}$(E$_\mu$ / GeV)", "mean r [m]", out_dir / "radius_vs_energy.png"):
        figures.append(Figure("radius_vs_energy.png", "Mean lateral distance vs muon energy (radius-energy correlation)."))
    ref_e0 = np.log10(reference.conditions[:, ENERGY].astype(np.float64))
    model_e0 = np.log10(model.conditions[:, ENERGY].astype(np.float64))
    lo, hi = np.floor(min(ref_e0.min(), model_e0.min())), np.ceil(max(ref_e0.max(), model_e0.max()))
    e0_edges = np.linspace(lo, max(hi, lo + 1), 13)
    if profile_plot(ref_e0, ref_events.multiplicity, model_e0, model_events.multiplicity,
                    e0_edges, r"log$_{10}$(E$_0$ / GeV)", "mean N", out_dir / "multiplicity_vs_primary_energy.png"):
        figures.append(Figure("multiplicity_vs_primary_energy.png", "Mean muon multiplicity vs primary energy."))
    return figures


def bin_ratio_plot(variable: str, bins: list[dict], out_dir: Path) -> Figure | None:
    """Heat map of the ratio model/floor of every metric (rows) in every bin (columns) of ``variable``;
    grey = n/a. ``bins``: list of ``{"label", "metrics": {name: {"ratio"}}}``."""
    plt, mplhep = _pyplot()
    if not bins:
        return None
    names = sorted({name for entry in bins for name in entry["metrics"]})
    ratios = np.array(
        [[np.nan if entry["metrics"].get(name, {}).get("ratio") is None else entry["metrics"][name]["ratio"]
          for entry in bins] for name in names],
        dtype=np.float64,
    )
    figure, axis = plt.subplots(figsize=(2.0 + 1.3 * len(bins), 0.45 * len(names) + 1.5))
    masked = np.ma.masked_invalid(ratios)
    cmap = plt.get_cmap("RdYlGn_r").with_extremes(bad="lightgrey")
    image = axis.imshow(masked, cmap=cmap, vmin=0.5, vmax=3.0, aspect="auto")
    for (row, column), value in np.ndenumerate(ratios):
        axis.text(column, row, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set_xticks(range(len(bins)), [entry["label"] for entry in bins], rotation=30, ha="right", fontsize=8)
    coordinate = bins[0].get("coordinate") or variable
    axis.set_title(f"ratio model / floor in bins of {coordinate}", fontsize=10)
    figure.colorbar(image, ax=axis, label="ratio")
    file = f"ratios_by_{variable}.png"
    figure.tight_layout()
    figure.savefig(out_dir / file, dpi=80)
    plt.close(figure)
    return Figure(file, f"Ratio of every metric to its statistical floor in bins of {coordinate} "
                        "(1 = as good as the data's own fluctuations).")


def calibration_plot(calibration: dict, out_dir: Path) -> Figure | None:
    """Multiplicity calibration (``calibration`` from
    :func:`~mubundle.evaluate.calibration.multiplicity_calibration`): the PIT histogram with the
    flat expectation and its +-1 sigma binomial band; the 50 % / 90 % central-interval
    coverage per E0 bin; the mean PIT per bin of every condition variable. None if no PIT value."""
    plt, mplhep = _pyplot()
    overall = calibration["overall"]
    histogram = overall["histogram"]
    if overall["n_events"] == 0:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    edges = np.asarray(histogram["edges"])
    density = np.asarray(histogram["density"])
    sigma = histogram["density_sigma"]
    mean_pit_rows = [
        (f"{variable}: {entry['label']}", entry["mean_pit"]["observed"], entry["mean_pit"]["standard_error"])
        for variable, entries in calibration["bins"].items() for entry in entries
        if entry["mean_pit"]["observed"] is not None
    ]
    height = max(6.0, 0.32 * len(mean_pit_rows) + 1.5)
    with plt.style.context(mplhep.style.ROOT):
        figure, (pit_axis, coverage_axis, mean_axis) = plt.subplots(
            1, 3, figsize=(21, height), gridspec_kw={"width_ratios": [1.0, 1.0, 1.1]}
        )
        figure.subplots_adjust(left=0.05, right=0.98, top=0.92, bottom=0.2, wspace=0.55)

        pit_axis.fill_between([0.0, 1.0], 1.0 - sigma, 1.0 + sigma, color="tab:green", alpha=0.3,
                              label=r"calibrated $\pm 1\sigma$")
        pit_axis.axhline(1.0, color="tab:green", lw=1.5)
        mplhep.histplot(density, edges, ax=pit_axis, color="black", lw=2, label=f"model ({overall['n_events']} events)")
        pit_axis.set_xlim(0.0, 1.0)
        # headroom above the tallest bin keeps the legend off the histogram
        pit_axis.set_ylim(0.0, max(1.8, 1.45 * float(density.max(initial=0.0))))
        pit_axis.set_xlabel("randomised PIT  u = F(N)")
        pit_axis.set_ylabel("density (1 = flat)")
        ks = overall["ks"]
        title = "PIT of the true N"
        if ks["ratio"] is not None:
            title += f": KS {ks['model']:.3g} = {ks['ratio']:.2g} x floor"
        pit_axis.set_title(title, fontsize=14)
        _legend(pit_axis, fontsize=12, loc="upper center", ncol=2)

        energy_bins = [entry for entry in calibration["bins"].get("energy", [])
                       if entry["coverage_50"]["observed"] is not None]
        positions = np.arange(len(energy_bins))
        for name, colour, offset in (("coverage_50", "tab:blue", -0.1), ("coverage_90", "tab:red", 0.1)):
            expected = overall[name]["expected"]
            coverage_axis.axhline(expected, color=colour, ls="--", lw=1.5)
            if energy_bins:
                coverage_axis.errorbar(
                    positions + offset, [entry[name]["observed"] for entry in energy_bins],
                    yerr=[entry[name]["standard_error"] for entry in energy_bins], fmt="o", ms=7, color=colour,
                    label=f"{expected:.0%} interval (expected {expected:.2f})",
                )
        coverage_axis.set_xticks(positions, [entry["label"] for entry in energy_bins], rotation=30, ha="right", fontsize=11)
        coverage_axis.set_ylim(0.0, 1.05)
        coverage_axis.set_ylabel("fraction of true N inside")
        coverage_axis.set_title("central-interval coverage vs E0", fontsize=14)
        _legend(coverage_axis, fontsize=11, loc="lower right")

        rows = np.arange(len(mean_pit_rows))
        mean_axis.axvline(0.5, color="tab:green", lw=1.5)
        if mean_pit_rows:
            mean_axis.errorbar([row[1] for row in mean_pit_rows], rows, xerr=[row[2] for row in mean_pit_rows],
                               fmt="o", ms=6, color="black")
        mean_axis.set_yticks(rows, [row[0] for row in mean_pit_rows], fontsize=12)
        mean_axis.invert_yaxis()
        # symmetric about 0.5 and just wide enough for every point and its 2-sigma error: a good
        # model's deviations of 0.01 must stay visible, a bad one's 0.3 must stay on the plot
        half_width = max([0.05, *[1.2 * (abs(row[1] - 0.5) + 2 * row[2]) for row in mean_pit_rows]])
        mean_axis.set_xlim(0.5 - half_width, 0.5 + half_width)
        mean_axis.set_xlabel("mean PIT  (> 0.5: too few muons predicted)", fontsize=13)
        mean_axis.set_title("mean PIT per condition bin", fontsize=14)
        file = "multiplicity_calibration.png"
        figure.savefig(out_dir / file, dpi=80)
        plt.close(figure)
    return Figure(file, "Multiplicity calibration: PIT histogram of the true N under the model's P(N | conditions) "
                        "(flat = calibrated), central-interval coverage per E0 bin and mean PIT per condition bin.")
