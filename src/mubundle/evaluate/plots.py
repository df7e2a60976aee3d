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


#: Resolution of the PNGs: sharp on a projector and in a printed proceedings figure.
DPI = 150
#: The ratio panels' fixed y range (comparable between figures); points outside are drawn as
#: arrows at the edge.
RATIO_LIMITS = (0.5, 1.5)
#: Font sizes in points (figures are ~8 inches wide: every text stays >= 12 pt on a slide that
#: shows the figure at its size or at half a 16:9 slide).
FONTS = {"font.size": 16, "axes.labelsize": 17, "axes.titlesize": 13, "xtick.labelsize": 15,
         "ytick.labelsize": 15, "legend.fontsize": 13}
REFERENCE_COLOUR, MODEL_COLOUR = "black", "tab:red"


@dataclass(frozen=True)
class Comparison:
    """What a figure compares: the model, the reference (name and number of events) and the
    mubundle version; :meth:`headline` is the text line at the top of every figure."""

    model: str = "model"
    reference: str = "reference"
    n_reference: int | None = None
    version: str = ""

    @classmethod
    def from_info(cls, info: dict[str, Any] | None, n_reference: int) -> Comparison:
        """From ``metrics["info"]`` (``model``, ``reference`` paths, ``mubundle_version``); paths are
        shortened to their last component (the full paths are in the report's header)."""
        from mubundle import __version__

        info = info or {}
        references = [Path(str(path).rstrip("/")).name or str(path) for path in info.get("reference", [])]
        reference = ", ".join(references[:2]) + (f" +{len(references) - 2} more" if len(references) > 2 else "")
        model = info.get("model")
        return cls(model=Path(str(model).rstrip("/")).name if model else "samples given directly",
                   reference=reference or "reference sample", n_reference=n_reference,
                   version=str(info.get("mubundle_version") or __version__))

    def headline(self) -> str:
        events = f" ({self.n_reference} events)" if self.n_reference is not None else ""
        version = f"  |  mubundle {self.version}" if self.version else ""
        return f"model: {self.model}  vs  reference: {self.reference}{events}{version}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    return plt, mplhep


def _style():
    """The mplhep ROOT style with :data:`FONTS` (a context manager)."""
    plt, mplhep = _pyplot()
    return plt.style.context([mplhep.style.ROOT, FONTS])


def _save(figure: Any, path: Path) -> None:
    """PNG at :data:`DPI`, cropped to what is drawn (no label is cut off at the border)."""
    figure.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1)


def _headline(axis: Axes, comparison: Comparison | None) -> None:
    """The comparison's headline above ``axis`` (a text, not a title: far cheaper to lay out)."""
    if comparison is not None:
        axis.text(0.0, 1.02, comparison.headline(), transform=axis.transAxes, ha="left", va="bottom", fontsize=12)


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _legend(axis: Axes, **options: Any) -> None:
    """``axis.legend(**options)`` when the axis has a labelled artist; none otherwise (matplotlib
    would warn "No artists with labels found", e.g. with no E0 bin of enough events for a coverage)."""
    handles, _ = axis.get_legend_handles_labels()
    if handles:
        axis.legend(**options)


def distribution_edges(reference: np.ndarray, model: np.ndarray, n_bins: int = 40, log: bool = False) -> np.ndarray | None:
    """Bin edges over the full range of both samples (finite values; ``log``: the positive ones,
    logarithmic bins). None when there is no value to bin."""
    both = np.concatenate([_finite(np.asarray(reference, dtype=np.float64)), _finite(np.asarray(model, dtype=np.float64))])
    if log:
        both = both[both > 0]
    if both.size == 0:
        return None
    lo, hi = float(both.min()), float(both.max())
    if log:
        if hi <= lo:
            lo, hi = lo / 2.0, hi * 2.0
        return np.geomspace(lo, hi, n_bins + 1)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def multiplicity_edges(max_count: float) -> np.ndarray:
    """Bin edges in log10(N + 1) with one bin per integer N up to 20, then logarithmic bins."""
    counts = np.arange(-0.5, min(max_count, 20) + 1.0)
    if max_count > 20:
        counts = np.concatenate([counts, np.geomspace(counts[-1] + 1, max_count + 1, 15)])
    return np.log10(counts + 1.0)


def draw_ratio(
    axis: Axes, x: np.ndarray, ratio: np.ndarray, error: np.ndarray, model_only: np.ndarray,
    reference_only: np.ndarray, limits: tuple[float, float] = RATIO_LIMITS, colour: str = MODEL_COLOUR,
) -> dict[str, int]:
    """The model / reference panel: points with errors inside ``limits``; points above (below)
    as filled up (down) arrows at the edge; ``model_only`` points (reference empty) as open up
    triangles, ``reference_only`` points (model empty) as open down triangles at the edges.
    Returns how many points of each kind were drawn (``inside``, ``above``, ``below``,
    ``model_only``, ``reference_only``)."""
    lo, hi = limits
    pad = 0.06 * (hi - lo)
    ratio, error = np.asarray(ratio, dtype=np.float64), np.asarray(error, dtype=np.float64)
    model_only, reference_only = np.asarray(model_only, dtype=bool), np.asarray(reference_only, dtype=bool)
    defined = np.isfinite(ratio) & ~model_only & ~reference_only
    inside = defined & (ratio >= lo) & (ratio <= hi)
    above, below = defined & (ratio > hi), defined & (ratio < lo)
    err = np.where(np.isfinite(error), error, 0.0)
    if inside.any():
        axis.errorbar(x[inside], ratio[inside], yerr=err[inside], fmt="o", ms=4, color=colour)
    if above.any():
        axis.plot(x[above], np.full(above.sum(), hi - pad), "^", ms=8, color=colour, clip_on=False)
    if below.any():
        axis.plot(x[below], np.full(below.sum(), lo + pad), "v", ms=8, color=colour, clip_on=False)
    if model_only.any():
        axis.plot(x[model_only], np.full(model_only.sum(), hi - pad), "^", ms=8, mfc="none", mew=1.5,
                  color="tab:orange", clip_on=False)
    if reference_only.any():
        axis.plot(x[reference_only], np.full(reference_only.sum(), lo + pad), "v", ms=8, mfc="none", mew=1.5,
                  color="tab:blue", clip_on=False)
    axis.axhline(1.0, color="black", lw=1)
    axis.set_ylim(lo, hi)
    return {"inside": int(inside.sum()), "above": int(above.sum()), "below": int(below.sum()),
            "model_only": int(model_only.sum()), "reference_only": int(reference_only.sum())}


def _marker_legend(drawn: dict[str, int]) -> list[tuple[Any, str]]:
    """Legend handles explaining the ratio panel's edge markers that were drawn."""
    from matplotlib.lines import Line2D

    entries = []
    if drawn["above"] or drawn["below"]:
        entries.append((Line2D([], [], ls="none", marker="^", ms=8, color=MODEL_COLOUR), "ratio off scale (arrow)"))
    if drawn["model_only"]:
        entries.append((Line2D([], [], ls="none", marker="^", ms=8, mfc="none", mew=1.5, color="tab:orange"),
                        "model only (reference empty)"))
    if drawn["reference_only"]:
        entries.append((Line2D([], [], ls="none", marker="v", ms=8, mfc="none", mew=1.5, color="tab:blue"),
                        "reference only (model empty)"))
    return entries


def _outside_note(reference: np.ndarray, model: np.ndarray, edges: np.ndarray, log: bool, what: str) -> str:
    """"" when every value lies on the axis; else what is not shown (below / above the range,
    or <= 0 on a logarithmic axis), per sample."""
    parts = []
    for name, values in (("reference", reference), ("model", model)):
        nonpositive = int(np.count_nonzero(values <= 0)) if log else 0
        positive = values[values > 0] if log else values
        below = int(np.count_nonzero(positive < edges[0]))
        above = int(np.count_nonzero(positive > edges[-1]))
        counts = [f"{below} below" if below else "", f"{above} above" if above else "",
                  f"{nonpositive} at <= 0" if nonpositive else ""]
        counts = [c for c in counts if c]
        if counts:
            parts.append(f"{name} {', '.join(counts)}")
    return f"not on the axis ({what}): " + "; ".join(parts) if parts else ""


def histogram_with_ratio(
    reference: np.ndarray, model: np.ndarray, xlabel: str, path: Path, logy: bool = True, n_bins: int = 40,
    edges: np.ndarray | None = None, logx: bool = False, unit: str = "events", comparison: Comparison | None = None,
) -> np.ndarray | None:
    """Normalised histograms of ``reference`` and ``model`` (1D arrays, NaN ignored) with a
    model/reference ratio panel (Poisson errors of both), over the full range of the values
    (``logx``: logarithmic bins and axis, density per dex). ``unit`` names what the legend
    counts. Returns the bin edges, None if there is nothing to plot."""
    plt, mplhep = _pyplot()
    reference, model = _finite(np.asarray(reference, dtype=np.float64)), _finite(np.asarray(model, dtype=np.float64))
    if edges is None:
        edges = distribution_edges(reference, model, n_bins, log=logx)
    if edges is None or reference.size == 0 or model.size == 0:
        return None
    ref_counts, _ = np.histogram(reference, edges)
    model_counts, _ = np.histogram(model, edges)
    widths = np.diff(np.log10(edges)) if logx else np.diff(edges)
    ref_density = ref_counts / (max(ref_counts.sum(), 1) * widths)
    model_density = model_counts / (max(model_counts.sum(), 1) * widths)
    with _style():
        figure, (top, bottom) = plt.subplots(
            2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.06}
        )
        mplhep.histplot(ref_density, edges, ax=top, label=f"reference ({reference.size} {unit})", color=REFERENCE_COLOUR)
        mplhep.histplot(model_density, edges, ax=top, label=f"model ({model.size} {unit})", color=MODEL_COLOUR)
        if logy and (ref_density > 0).any():
            top.set_yscale("log")
            positive = np.concatenate([ref_density[ref_density > 0], model_density[model_density > 0]])
            top.set_ylim(0.5 * positive.min(), 30 * positive.max())  # headroom for the legend
        if logx:
            top.set_xscale("log")
        top.set_ylabel("normalised density per dex" if logx else "normalised density")
        _headline(top, comparison)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = model_density / ref_density
            error = ratio * np.sqrt(1.0 / model_counts + 1.0 / ref_counts)
        centres = np.sqrt(edges[:-1] * edges[1:]) if logx else 0.5 * (edges[:-1] + edges[1:])
        drawn = draw_ratio(bottom, centres, ratio, error, (ref_counts == 0) & (model_counts > 0),
                           (model_counts == 0) & (ref_counts > 0))
        handles, labels = top.get_legend_handles_labels()
        for handle, label in _marker_legend(drawn):
            handles.append(handle)
            labels.append(label)
        top.legend(handles, labels, loc="upper right", frameon=False)
        note = _outside_note(reference, model, edges, logx, unit)
        if note:
            top.text(0.02, 0.97, note, transform=top.transAxes, ha="left", va="top", fontsize=12)
        bottom.set_ylabel("model / ref")
        bottom.set_xlabel(xlabel)
        top.set_xlim(edges[0], edges[-1])
        figure.align_ylabels([top, bottom])
        _save(figure, path)
        plt.close(figure)
    return edges


def _binned_means(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of y and its standard error in bins of x (NaN where a bin has < 2 values)."""
    index = np.digitize(x, edges) - 1
    inside = (index >= 0) & (index < len(edges) - 1) & np.isfinite(y)
    n = np.bincount(index[inside], minlength=len(edges) - 1).astype(np.float64)
    total = np.bincount(index[inside], weights=y[inside], minlength=len(edges) - 1)
    total_sq = np.bincount(index[inside], weights=y[inside] ** 2, minlength=len(edges) - 1)
    mean = np.full(len(n), np.nan)
    sem = np.full(len(n), np.nan)
    filled = n > 1
    mean[filled] = total[filled] / n[filled]
    sem[filled] = np.sqrt(np.maximum(total_sq[filled] / n[filled] - mean[filled] ** 2, 0.0) / (n[filled] - 1))
    return mean, sem


def profile_plot(
    x_reference: np.ndarray, y_reference: np.ndarray, x_model: np.ndarray, y_model: np.ndarray,
    edges: np.ndarray, xlabel: str, ylabel: str, path: Path, logy: bool = False, comparison: Comparison | None = None,
) -> bool:
    """Mean of y in bins of x (error = standard error of the mean), reference vs model, with the
    ratio of the means (errors of both combined) below."""
    plt, mplhep = _pyplot()
    if len(x_reference) == 0 or len(x_model) == 0:
        return False
    centres = 0.5 * (edges[:-1] + edges[1:])
    ref_mean, ref_sem = _binned_means(x_reference, y_reference, edges)
    model_mean, model_sem = _binned_means(x_model, y_model, edges)
    with _style():
        figure, (top, bottom) = plt.subplots(
            2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.06}
        )
        for mean, sem, label, colour in ((ref_mean, ref_sem, "reference", REFERENCE_COLOUR),
                                         (model_mean, model_sem, "model", MODEL_COLOUR)):
            shown = np.isfinite(mean) & (mean > 0 if logy else True)
            top.errorbar(centres[shown], mean[shown], yerr=sem[shown], fmt="o-", ms=5, label=label, color=colour)
        if logy:
            top.set_yscale("log")
        else:  # headroom for the legend
            tops = _finite(np.concatenate([ref_mean + np.nan_to_num(ref_sem), model_mean + np.nan_to_num(model_sem)]))
            if tops.size and tops.max() > 0:
                top.set_ylim(min(0.0, top.get_ylim()[0]), 1.3 * float(tops.max()))
        top.set_ylabel(ylabel)
        _headline(top, comparison)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = model_mean / ref_mean
            error = np.abs(ratio) * np.sqrt((model_sem / model_mean) ** 2 + (ref_sem / ref_mean) ** 2)
        drawn = draw_ratio(bottom, centres, ratio, error, np.isfinite(model_mean) & ~np.isfinite(ref_mean),
                           np.isfinite(ref_mean) & ~np.isfinite(model_mean))
        handles, labels = top.get_legend_handles_labels()
        for handle, label in _marker_legend(drawn):
            handles.append(handle)
            labels.append(label)
        if handles:
            top.legend(handles, labels, loc="best", frameon=False)
        bottom.set_ylabel("model / ref")
        bottom.set_xlabel(xlabel)
        top.set_xlim(edges[0], edges[-1])
        figure.align_ylabels([top, bottom])
        _save(figure, path)
        plt.close(figure)
    return True


def distribution_plots(
    reference: RaggedBatch, model: RaggedBatch, out_dir: Path, comparison: Comparison | None = None
) -> list[Figure]:
    """The overall distributions (one PNG each) and two profiles; returns the figures written.
    ``comparison``: the headline of every figure (default: from the sample sizes only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = comparison or Comparison(n_reference=len(reference))
    ref_events, model_events = event_observables(reference), event_observables(model)
    ref_muons, model_muons = muon_observables(reference), muon_observables(model)
    figures: list[Figure] = []
    bundles = "events with N >= 1"
    full = " The x axis covers every value; the lower panel is model / reference."
    specs = [
        ("multiplicity.png", ref_events.log10_n_plus_1, model_events.log10_n_plus_1, r"log$_{10}$(N + 1)", False,
         "events", "Muon multiplicity per event (all events, N = 0 included)."),
        ("muon_energy.png", ref_muons.log10_energy, model_muons.log10_energy, r"log$_{10}$(E$_\mu$ / GeV)", False,
         "muons", "Energy of every muon at the observation depth."),
        ("muon_radius.png", ref_muons.radius, model_muons.radius, "r [m]", True,
         "muons", "Lateral distance of every muon from the shower axis (logarithmic axis, density per dex)."),
        ("bundle_energy.png", np.log10(ref_events.total_energy), np.log10(model_events.total_energy),
         r"log$_{10}$($\Sigma$ E$_\mu$ / GeV)", False, bundles, "Total muon energy of the bundle (events with N >= 1)."),
        ("leading_fraction.png", ref_events.leading_fraction, model_events.leading_fraction,
         r"E$_{\rm leading}$ / $\Sigma$ E$_\mu$", False, bundles,
         "Energy fraction carried by the most energetic muon (N >= 1)."),
        ("bundle_mean_radius.png", ref_events.mean_radius, model_events.mean_radius, "mean r [m]", True, bundles,
         "Mean lateral distance of the bundle's muons (N >= 1; logarithmic axis, density per dex)."),
    ]
    max_count = max(float(reference.counts.max(initial=0)), float(model.counts.max(initial=0)))
    for file, ref_values, model_values, xlabel, logx, unit, caption in specs:
        edges = multiplicity_edges(max_count) if file == "multiplicity.png" else None
        if histogram_with_ratio(ref_values, model_values, xlabel, out_dir / file, edges=edges, logx=logx,
                                unit=unit, comparison=comparison) is not None:
            figures.append(Figure(file, caption + full))
    # 0.25 dex bins from 1 GeV to 100 TeV, widened to hold every muon
    log_energies = np.concatenate([_finite(ref_muons.log10_energy), _finite(model_muons.log10_energy)])
    low = min(0.0, np.floor(4 * log_energies.min()) / 4) if log_energies.size else 0.0
    high = max(5.0, np.ceil(4 * log_energies.max()) / 4) if log_energies.size else 5.0
    energy_edges = np.linspace(low, high, int(round(4 * (high - low))) + 1)
    if profile_plot(ref_muons.log10_energy, ref_muons.radius, model_muons.log10_energy, model_muons.radius,
                    energy_edges, r"log$_{10}$(E$_\mu$ / GeV)", "mean r [m]", out_dir / "radius_vs_energy.png",
                    comparison=comparison):
        figures.append(Figure("radius_vs_energy.png", "Mean lateral distance vs muon energy (radius-energy "
                                                      "correlation), error = standard error of the mean; lower panel: "
                                                      "ratio of the means."))
    ref_e0 = np.log10(reference.conditions[:, ENERGY].astype(np.float64))
    model_e0 = np.log10(model.conditions[:, ENERGY].astype(np.float64))
    lo, hi = np.floor(min(ref_e0.min(), model_e0.min())), np.ceil(max(ref_e0.max(), model_e0.max()))
    e0_edges = np.linspace(lo, max(hi, lo + 1), 13)
    if profile_plot(ref_e0, ref_events.multiplicity, model_e0, model_events.multiplicity,
                    e0_edges, r"log$_{10}$(E$_0$ / GeV)", "mean N", out_dir / "multiplicity_vs_primary_energy.png",
                    logy=True, comparison=comparison):
        figures.append(Figure("multiplicity_vs_primary_energy.png",
                              "Mean muon multiplicity vs primary energy (logarithmic axis; bins whose mean is 0 are "
                              "not drawn), error = standard error of the mean; lower panel: ratio of the means."))
    return figures


def ratio_colours(target: float = 1.5, low: float = 0.5, high: float = 3.0) -> tuple[Any, Any]:
    """Colour map and norm of the ratio heat maps: greens up to ``target`` (darker = closer to 1's
    side, pale just below the target), reds above it (darker = worse), a visible jump at the
    target; values above ``high`` get the darkest red, n/a cells grey."""
    plt, _ = _pyplot()
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    below = plt.get_cmap("Greens")(np.linspace(0.55, 0.12, 128))
    above = plt.get_cmap("Reds")(np.linspace(0.35, 0.9, 128))
    cmap = ListedColormap(np.vstack([below, above])).with_extremes(bad="lightgrey", over=above[-1], under=below[0])
    return cmap, TwoSlopeNorm(vmin=low, vcenter=target, vmax=high)


def bin_ratio_plot(
    variable: str, bins: list[dict], out_dir: Path, target: float = 1.5, comparison: Comparison | None = None
) -> Figure | None:
    """Heat map of the ratio model/floor of every metric (rows) in every bin (columns) of ``variable``,
    every cell annotated with its value; green up to ``target``, red above, grey = n/a.
    ``bins``: list of ``{"label", "metrics": {name: {"ratio"}}}``."""
    plt, mplhep = _pyplot()
    if not bins:
        return None
    names = sorted({name for entry in bins for name in entry["metrics"]})
    ratios = np.array(
        [[np.nan if entry["metrics"].get(name, {}).get("ratio") is None else entry["metrics"][name]["ratio"]
          for entry in bins] for name in names],
        dtype=np.float64,
    )
    cmap, norm = ratio_colours(target)
    with plt.rc_context({"font.size": 13}):
        figure, axis = plt.subplots(figsize=(4.5 + 1.5 * len(bins), 0.5 * len(names) + 2.0), layout="constrained")
        image = axis.imshow(np.ma.masked_invalid(ratios), cmap=cmap, norm=norm, aspect="auto")
        for (row, column), value in np.ndenumerate(ratios):
            if np.isnan(value):
                colour = "dimgrey"
            else:
                red, green, blue, _ = cmap(norm(value))
                colour = "white" if 0.299 * red + 0.587 * green + 0.114 * blue < 0.5 else "black"
            axis.text(column, row, "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", va="center",
                      fontsize=12, color=colour, fontweight="bold" if value > target else "normal")
        axis.set_yticks(range(len(names)), names, fontsize=12)
        axis.set_xticks(range(len(bins)), [entry["label"] for entry in bins], rotation=30, ha="right", fontsize=12)
        coordinate = bins[0].get("coordinate") or variable
        title = f"ratio model / floor in bins of {coordinate}"
        if comparison is not None:
            title = f"{comparison.headline()}\n{title}"
        axis.set_title(title, fontsize=12, loc="left")
        colourbar = figure.colorbar(image, ax=axis, extend="max")
        colourbar.ax.axhline(target, color="black", lw=2.5)
        ticks = sorted({0.5, 1.0, target, 2.0, 2.5, 3.0})
        colourbar.set_ticks(ticks, labels=[f"{t:g} target" if t == target else f"{t:g}" for t in ticks], fontsize=12)
        colourbar.set_label(f"ratio model / floor (red: above the target {target:g})", fontsize=13)
        file = f"ratios_by_{variable}.png"
        _save(figure, out_dir / file)
        plt.close(figure)
    return Figure(file, f"Ratio of every metric to its statistical floor in bins of {coordinate} "
                        f"(1 = as good as the data's own fluctuations; green up to the target {target:g}, "
                        "red above it, grey = not available).")


def calibration_plot(calibration: dict, out_dir: Path, comparison: Comparison | None = None) -> Figure | None:
    """Multiplicity calibration (``calibration`` from
    :func:`~mubundle.evaluate.calibration.multiplicity_calibration`): the histogram of the
    randomised PIT with the flat expectation and its +-1 sigma binomial band; the deviation of
    the 50 % / 90 % central-interval coverage from its expectation per E0 bin; the mean PIT per
    bin of every condition variable. None if no PIT value."""
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
    height = max(6.5, 0.34 * len(mean_pit_rows) + 2.0)
    with _style():
        figure, (pit_axis, coverage_axis, mean_axis) = plt.subplots(
            1, 3, figsize=(22, height), gridspec_kw={"width_ratios": [1.0, 1.0, 1.1]}, layout="constrained"
        )
        if comparison is not None:
            figure.suptitle(comparison.headline(), x=0.01, ha="left", fontsize=14)

        pit_axis.fill_between([0.0, 1.0], 1.0 - sigma, 1.0 + sigma, color="tab:green", alpha=0.3,
                              label=r"calibrated $\pm 1\sigma$")
        pit_axis.axhline(1.0, color="tab:green", lw=1.5)
        mplhep.histplot(density, edges, ax=pit_axis, color="black", lw=2, label=f"model ({overall['n_events']} events)")
        pit_axis.set_xlim(0.0, 1.0)
        # headroom above the tallest bin keeps the legend off the histogram
        pit_axis.set_ylim(0.0, max(1.8, 1.45 * float(density.max(initial=0.0))))
        pit_axis.set_xlabel("randomised PIT u of the true N")
        pit_axis.set_ylabel("density (1 = flat)")
        ks = overall["ks"]
        title = "randomised PIT"
        if ks["ratio"] is not None:
            title += f": KS {ks['model']:.3g} = {ks['ratio']:.2g} x floor"
        pit_axis.set_title(title, fontsize=15)
        _legend(pit_axis, fontsize=13, loc="upper center", ncol=2)

        energy_bins = [entry for entry in calibration["bins"].get("energy", [])
                       if entry["coverage_50"]["observed"] is not None]
        positions = np.arange(len(energy_bins))
        coverage_axis.axhline(0.0, color="black", lw=1.5)
        reach = [0.03]
        for name, colour, offset in (("coverage_50", "tab:blue", -0.1), ("coverage_90", "tab:red", 0.1)):
            expected = overall[name]["expected"]
            if energy_bins:
                deviation = np.array([entry[name]["observed"] - expected for entry in energy_bins])
                errors = np.array([entry[name]["standard_error"] or 0.0 for entry in energy_bins])
                reach.append(float(np.max(np.abs(deviation) + 2 * errors)))
                coverage_axis.errorbar(positions + offset, deviation, yerr=errors, fmt="o", ms=7, color=colour,
                                       label=f"{expected:.0%} interval (expected {expected:.2f})")
        half_width = 1.2 * max(reach)
        coverage_axis.set_ylim(-half_width, half_width)
        coverage_axis.set_xticks(positions, [entry["label"] for entry in energy_bins], rotation=30, ha="right",
                                 fontsize=14)
        coverage_axis.set_xlim(-0.5, max(len(energy_bins), 1) - 0.5)
        coverage_axis.set_xlabel(r"primary energy bin E$_0$")
        coverage_axis.set_ylabel("coverage - expected")
        coverage_axis.set_title(r"central-interval coverage vs E$_0$ (> 0: intervals too wide)", fontsize=15)
        _legend(coverage_axis, fontsize=13, loc="upper right")

        rows = np.arange(len(mean_pit_rows))
        mean_axis.axvline(0.5, color="tab:green", lw=1.5)
        if mean_pit_rows:
            mean_axis.errorbar([row[1] for row in mean_pit_rows], rows, xerr=[row[2] for row in mean_pit_rows],
                               fmt="o", ms=6, color="black")
        mean_axis.set_yticks(rows, [row[0] for row in mean_pit_rows], fontsize=13)
        mean_axis.invert_yaxis()
        # symmetric about 0.5 and just wide enough for every point and its 2-sigma error: a good
        # model's deviations of 0.01 must stay visible, a bad one's 0.3 must stay on the plot
        half_width = max([0.05, *[1.2 * (abs(row[1] - 0.5) + 2 * row[2]) for row in mean_pit_rows]])
        mean_axis.set_xlim(0.5 - half_width, 0.5 + half_width)
        mean_axis.set_xlabel("mean PIT  (> 0.5: too few muons predicted)")
        mean_axis.set_title("mean PIT per condition bin", fontsize=15)
        file = "multiplicity_calibration.png"
        _save(figure, out_dir / file)
        plt.close(figure)
    return Figure(file, "Multiplicity calibration: histogram of the randomised PIT of the true N under the model's "
                        "P(N | conditions) (flat = calibrated), deviation of the central-interval coverage from its "
                        "expectation per E0 bin and mean PIT per condition bin.")
