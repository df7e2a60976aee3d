"""``report.html``: the evaluation written for a physicist who has not read the code.

A single self-contained page (plots linked as PNG files next to it): what was compared, how
to read "model", "floor" and "ratio", the overall table, the classifier test, the tables
per bin of E0 / A / zenith / depth, the multiplicity calibration (PIT) when a model was
evaluated, and the plots.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from mubundle.data.validate import counts_text

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.name { text-align: left; }
.ok { background: #e3f5e1; } .bad { background: #fbe0dc; } .warn { background: #fdf0c8; } .na { background: #eee; color: #777; }
.box { border: 1px solid #bbb; padding: 0.8em 1.2em; background: #fafafa; }
figure { display: inline-block; margin: 0.5em; width: 46%; vertical-align: top; }
figure img { width: 100%; } figcaption { font-size: 0.85em; }
"""

_EXPLANATION = """
<p>The model generated one event for every primary of the reference sample (same energy,
mass, zenith and depth). Every distance below is shown next to its <b>statistical floor</b>:
the same distance computed between two disjoint random halves A and B of the reference.
The floor is what two independent samples of the <i>same</i> physics differ by at this
sample size. <b>model</b> is the distance between half A and the generated events of the
primaries of half B, so model and floor compare samples of the same size and the same
primaries. Both are averaged over several random splits. The halves contain whole showers:
the events of one primary at several depths always fall in the same half, because their
muons are correlated.</p>
<p><b>ratio = model / floor</b>. A perfect generator has ratio &asymp; 1 (it fluctuates by
some tens of percent, more for small samples); ratio 2 means the model is off by twice what statistics alone
explain. Target: every ratio &le; {max_ratio} and classifier AUC &le; {max_auc}.
<i>n/a</i> means the metric cannot be computed (the reason is given), e.g. too few
events or muons in a bin.</p>
<p>Distances: <b>W1 / &sigma;<sub>ref</sub></b> is the 1D Wasserstein-1 (earth mover's)
distance divided by the standard deviation of the reference half, i.e. a shift of the
distribution in units of its width (0.05 = a 5 % of sigma shift). Differences of
probabilities, ratios of moments and of Spearman rank correlations are plain
dimensionless numbers.</p>
"""


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}"


def _status(entry: dict[str, Any], max_ratio: float) -> tuple[str, str]:
    ratio = entry.get("ratio")
    if ratio is None:
        return "na", html.escape(entry.get("reason", "n/a"))
    return ("ok", "within target") if ratio <= max_ratio else ("bad", "above target")


def _overall_table(metrics: dict[str, Any]) -> str:
    definitions = metrics["definitions"]
    max_ratio = metrics["summary"]["target_max_ratio"]
    rows = []
    for name, entry in metrics["overall"].items():
        if name == "classifier.auc":
            continue
        definition = definitions.get(name, {})
        css, status = _status(entry, max_ratio)
        floor_std = entry.get("floor_std")
        floor = _number(entry["floor"]) + (f" &plusmn; {_number(floor_std, 2)}" if floor_std is not None else "")
        rows.append(
            f"<tr class='{css}'><td class='name'>{html.escape(definition.get('title', name))}<br><small>{name}</small></td>"
            f"<td class='name'>{html.escape(definition.get('observable', ''))}</td>"
            f"<td class='name'>{html.escape(definition.get('distance', ''))}</td>"
            f"<td>{_number(entry['model'])}</td><td>{floor}</td><td><b>{_number(entry['ratio'], 3)}</b></td>"
            f"<td class='name'>{status}</td></tr>"
        )
    header = ("<tr><th>metric</th><th>observable (units)</th><th>distance</th><th>model</th>"
              "<th>floor (&plusmn; spread over splits)</th><th>ratio</th><th>status</th></tr>")
    return f"<table>{header}{''.join(rows)}</table>"


def _classifier_section(metrics: dict[str, Any]) -> str:
    entry = metrics["overall"].get("classifier.auc")
    if entry is None:
        return ""
    target = metrics["summary"]["target_max_auc"]
    model_auc = entry.get("model")
    verdict = "n/a: " + html.escape(entry.get("reason", "")) if model_auc is None else (
        "within target" if model_auc <= target else "above target")
    return f"""
<h2>Classifier two-sample test</h2>
<p>Gradient-boosted decision trees (scikit-learn HistGradientBoostingClassifier) are trained
to tell reference events from generated events using event-level features: the primary's
log10 E0, cos(zenith), log10 A and depth, and the bundle's log10(N+1), log10 total muon
energy, leading-muon fraction, log10 mean and maximum radius, mean and spread of log10 muon
energy. The ROC AUC is estimated by 5-fold cross-validation (folds split whole showers). AUC 0.5: the classifier cannot
tell them apart; 1.0: perfectly separable. The floor is the AUC of the same classifier
separating the two reference halves.</p>
<table><tr><th>AUC model</th><th>AUC floor</th><th>ratio</th><th>target</th><th>verdict</th></tr>
<tr><td>{_number(model_auc)} &plusmn; {_number(entry.get('model_std'), 2)}</td>
<td>{_number(entry.get('floor'))} &plusmn; {_number(entry.get('floor_std'), 2)}</td>
<td>{_number(entry.get('ratio'), 3)}</td><td>&le; {target}</td><td>{verdict}</td></tr></table>
"""


def _seed_section(metrics: dict[str, Any]) -> str:
    spread = metrics.get("seed_spread")
    if spread is None:
        return ""
    max_ratio = metrics["summary"]["target_max_ratio"]
    seeds = spread["seeds"]
    rows = []
    for name, values in spread["ratios"].items():
        mean = spread["mean_ratio"].get(name)
        css = "na" if mean is None else ("ok" if name == "classifier.auc" or mean <= max_ratio else "bad")
        cells = "".join(f"<td>{_number(v, 3)}</td>" for v in values)
        rows.append(f"<tr class='{css}'><td class='name'>{html.escape(name)}</td>{cells}"
                    f"<td><b>{_number(mean, 3)}</b></td><td>{_number(spread['max_ratio'].get(name), 3)}</td></tr>")
    header = "".join(f"<th>seed {s}</th>" for s in seeds)
    return (
        "<h2>Spread over generation seeds</h2><p>The same comparison for samples generated with "
        f"{len(seeds)} seeds (the tables above are seed {seeds[0]}). Reference, half splits and floors "
        "are the same for every seed, so the spread of a ratio is the generated sample's own "
        "noise; compare models by the mean.</p>"
        f"<table><tr><th>metric</th>{header}<th>mean</th><th>max</th></tr>{''.join(rows)}</table>"
    )


def _bins_section(metrics: dict[str, Any]) -> str:
    max_ratio = metrics["summary"]["target_max_ratio"]
    parts = ["<h2>Ratios in bins of the primary's conditions</h2>",
             "<p>Each cell is the ratio model / floor of one metric in one bin (n/a: see the "
             "tooltip or metrics.json for the reason). The number of reference events of the bin is "
             "given under its label.</p>"]
    binning = metrics.get("binning", {})
    for variable, entries in metrics["bins"].items():
        if not entries:
            continue
        parts.append(_binning_line(variable, binning.get(variable)))
        names = list(entries[0]["metrics"])
        header = "".join(
            f"<th>{html.escape(entry['label'])}<br><small>{entry['n_reference']} events</small></th>" for entry in entries
        )
        rows = []
        for name in names:
            cells = []
            for entry in entries:
                metric = entry["metrics"][name]
                css, status = _status(metric, max_ratio)
                cells.append(f"<td class='{css}' title='{status}'>{_number(metric.get('ratio'), 3)}</td>")
            rows.append(f"<tr><td class='name'>{name}</td>{''.join(cells)}</tr>")
        parts.append(f"<table><tr><th>metric</th>{header}</tr>{''.join(rows)}</table>")
    return "".join(parts)


def _binning_line(variable: str, binning: dict[str, Any] | None) -> str:
    """Heading of one bin variable: the binned coordinate with its unit, its bin edges (or the
    values of categorical bins) and, for depth, why this binning was used."""
    if not binning:
        return f"<h3>{html.escape(variable)}</h3>"
    if "values" in binning:
        bounds = "one bin per value: " + ", ".join(f"{v:.4g}" for v in binning["values"])
    else:
        bounds = "bin edges: " + ", ".join(f"{v:.4g}" for v in binning.get("edges", []))
    line = f"<h3>{html.escape(variable)}: {html.escape(str(binning['coordinate']))}</h3><p>{html.escape(bounds)}"
    if binning.get("reason"):
        line += f". Binning: {html.escape(str(binning['reason']))}"
    return line + ".</p>"


_CALIBRATION_EXPLANATION = """
<p>This checks the multiplicity model alone, event by event. For every reference event with
true multiplicity N, F(n) = P<sub>model</sub>(N &le; n | E0, A, zenith, depth) gives the
randomised probability integral transform (PIT)
<b>u = F(N&minus;1) + V&middot;(F(N) &minus; F(N&minus;1))</b>, V uniform in [0, 1]
(the randomisation makes it exactly uniform for a discrete N; N = 0 gives u in [0, F(0)]).
If the predicted P(N | conditions) is right, u is uniform on [0, 1].</p>
<p><b>How to read the PIT histogram:</b> <i>flat</i> (inside the green &plusmn;1&sigma; band) =
calibrated; <i>U-shape</i> (too many events at u near 0 and 1) = the predicted distribution is
too narrow, true N falls in its tails too often; <i>hump</i> in the middle = predicted too
wide; <i>slope</i> (more events at high u, mean u &gt; 0.5) = biased: the model predicts too
few muons (mean u &lt; 0.5: too many). <b>KS</b> is the Kolmogorov-Smirnov distance of u from
uniform; its <b>floor</b> is the mean KS distance of as many independent uniform values (what a
calibrated model scores by chance). The depths of one shower are correlated, so the true floor
is somewhat larger: <i>floor (correlated)</i> uses one uniform value per shower, the other
extreme. <b>Coverage 50 % / 90 %</b>: fraction of events whose true N lies in the model's
central 50 % / 90 % predicted interval (u in [0.25, 0.75] / [0.05, 0.95]); expected 0.50 /
0.90, &plusmn; the binomial error given. The calibration is information, not one of the
targets.</p>
"""


def _coverage_cell(entry: dict[str, Any]) -> str:
    observed = entry.get("observed")
    if observed is None:
        return f"<td class='na' title='{html.escape(entry.get('reason', 'n/a'))}'>n/a</td>"
    error = entry.get("standard_error") or 0.0
    # three standard errors: a per-bin table shows tens of cells, one-sigma flags would be noise
    css = "ok" if abs(observed - entry["expected"]) <= 3 * error else "bad"
    return f"<td class='{css}'>{observed:.3f} &plusmn; {error:.3f}</td>"


def _calibration_row(label: str, entry: dict[str, Any]) -> str:
    ks = entry["ks"]
    if ks["model"] is None:
        ks_cells = f"<td class='na' colspan='4'>{html.escape(ks.get('reason', 'n/a'))}</td>"
    else:
        ks_cells = (f"<td>{_number(ks['model'], 3)}</td><td>{_number(ks['floor'], 3)}</td>"
                    f"<td>{_number(ks.get('floor_correlated'), 3)}</td><td><b>{_number(ks['ratio'], 3)}</b></td>")
    return (f"<tr><td class='name'>{html.escape(label)}</td><td>{entry['n_events']}</td>{ks_cells}"
            f"{_coverage_cell(entry['coverage_50'])}{_coverage_cell(entry['coverage_90'])}"
            f"{_coverage_cell(entry['mean_pit'])}</tr>")


def _calibration_section(metrics: dict[str, Any]) -> str:
    calibration = metrics.get("calibration")
    if calibration is None:
        return ""
    header = ("<tr><th>events</th><th>n</th><th>KS model</th><th>KS floor</th><th>floor (correlated)</th>"
              "<th>KS ratio</th><th>coverage 50 %</th><th>coverage 90 %</th><th>mean PIT</th></tr>")
    rows = [_calibration_row("all events", calibration["overall"])]
    for variable, entries in calibration["bins"].items():
        coordinate = f" ({entries[0]['coordinate']})" if entries and entries[0].get("coordinate") else ""
        rows.append(f"<tr><th colspan='9' style='text-align:left'>bins of {html.escape(variable + coordinate)}</th></tr>")
        rows.extend(_calibration_row(entry["label"], entry) for entry in entries)
    warning = calibration.get("warning")
    warning_html = f"<p class='bad'><b>Warning:</b> {html.escape(warning)}</p>" if warning else ""
    figure = calibration.get("figure")
    figure_html = (f"<p><a href='{html.escape(figure)}'><img src='{html.escape(figure)}' alt='{html.escape(figure)}' "
                   f"style='width:100%'></a></p>" if figure else "")
    return (f"<h2>Multiplicity calibration</h2>{_CALIBRATION_EXPLANATION}{warning_html}{figure_html}"
            f"<table>{header}{''.join(rows)}</table>"
            "<p><small>Coverage and mean-PIT cells: green within 3 standard errors of the expectation "
            "(the errors assume independent events, so they are somewhat small).</small></p>")


def _rate_cell(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return "<td class='na'>n/a</td>"
    return (f"<td>{rate['count']} / {rate['total']}<br>{_number(rate['rate'], 3)} "
            f"<small>[{_number(rate['low'], 2)}, {_number(rate['high'], 2)}]</small></td>")


def _interval(low: float | None, high: float | None) -> str:
    return f"[{_number(low, 3)}, {'&infin;' if high is None else _number(high, 3)}]"


def _ratio_cell(ratio: dict[str, Any]) -> str:
    if ratio["low"] is None:
        return f"<td class='na'>{html.escape(ratio.get('rule') or 'n/a')}</td>"
    css = "bad" if ratio["flag"] else "ok"
    by_shower = ratio.get("relative_error_by_shower")
    two_sigma = ratio.get("interval_2sigma")
    flag_basis = (f"<br>flag: 2&sigma; {_interval(*two_sigma)}" if two_sigma is not None
                  else f"<br>flag: {html.escape(ratio['rule'])}")
    return (f"<td class='{css}' title='{html.escape(ratio['rule'])}'><b>{_number(ratio['value'], 3)}</b> "
            f"<small>{_interval(ratio['low'], ratio['high'])}{flag_basis}"
            + ("" if by_shower is None else f"<br>&plusmn;{100 * by_shower:.0f} % by shower")
            + "</small></td>")


#: Readable names of the tail W1 rows (``tails.*.log_w1`` keys).
_W1_LABELS = {"muon.log10_energy_dex": "W1 of log<sub>10</sub>(E<sub>&mu;</sub> / GeV) [dex]",
              "muon.log10_radius_dex": "W1 of log<sub>10</sub>(r / m) [dex] (muons with r &gt; 0)"}


def _tail_rows(label: str, part: dict[str, Any], definitions: dict[str, Any], target: float = 1.5) -> list[str]:
    rows = [f"<tr><th colspan='5' style='text-align:left'>{html.escape(label)}</th></tr>"]
    for name, entry in part["rates"].items():
        title = definitions.get(name, {}).get("title", name)
        rows.append(f"<tr><td class='name'>{html.escape(title)}<br><small>{name}</small></td>"
                    f"<td class='name'>per {entry['per']}</td>{_rate_cell(entry['reference'])}"
                    f"{_rate_cell(entry['model'])}{_ratio_cell(entry['ratio'])}</tr>")
    for name, entry in part["log_w1"].items():
        if entry["ratio"] is None:
            cells = f"<td class='na' colspan='3'>{html.escape(entry.get('reason', 'n/a'))}</td>"
        else:
            # information, not part of the flag: amber (not red) above the distance target
            css = "ok" if entry["ratio"] <= target else "warn"
            cells = (f"<td>floor {_number(entry['floor'], 3)} dex</td><td>model {_number(entry['model'], 3)} dex</td>"
                     f"<td class='{css}'><b>{_number(entry['ratio'], 3)}</b> (model / floor)</td>")
        label = _W1_LABELS.get(name, html.escape(name))
        rows.append(f"<tr><td class='name'>{label}<br><small>{html.escape(name)}</small></td>"
                    f"<td class='name'>per muon</td>{cells}</tr>")
    return rows


def _tails_section(metrics: dict[str, Any]) -> str:
    tails = metrics.get("tails")
    if tails is None:
        return ""
    definitions = tails["definitions"]
    target = metrics.get("summary", {}).get("target_max_ratio", 1.5)
    rows = _tail_rows("all events", tails["overall"], definitions, target)
    for entry in tails["energy_bins"]:
        rows += _tail_rows(f"E0 {entry['label']} ({entry['n_reference']} reference events)", entry, definitions, target)
    flagged = ", ".join(tails["flagged"]) or "none"
    level = f"{tails['confidence_level']:.1%}"
    header = (f"<tr><th>class</th><th>rate of</th><th>reference: k / n, rate [{level} interval]</th>"
              f"<th>model: k / n, rate [{level} interval]</th><th>ratio model / reference [{level} interval]"
              "<br><small>flag: the interval or rule the flag uses</small></th></tr>")
    return (
        "<h2>Tails: rare classes</h2>"
        "<p>Fractions of events (N &ge; 50, N &ge; 200, bundle energy &gt; 100 TeV) or of muons (muon energy "
        "&gt; 10 TeV, &gt; 30 TeV; lateral distance &gt; 75 m, &lt; 1 m) in each class, k of n, with exact central "
        f"Poisson intervals at {tails['confidence_level']:.1%} (Garwood 1936) and the exact interval of the "
        "ratio model / reference (conditional binomial, Clopper-Pearson). "
        f"<b>Flag</b> (red): {html.escape(tails['flag_rule'])}. Muons of one bundle are correlated, and a "
        "reference shower seen at several depths repeats its muons, so the Poisson intervals are too narrow; "
        "&plusmn; <i>by shower</i> is the ratio's relative standard error with whole showers as the sampling "
        "units (ratio estimator, Cochran 1977; not used by the flag). The W1 rows are the Wasserstein-1 distances of "
        "log10 E<sub>&mu;</sub> and log10 r in dex, with the floor of two reference halves.</p>"
        f"<p><small>Colours: ratio cells red = flagged, green = not flagged (the line <i>flag:</i> in each "
        f"cell gives the 2&sigma; (95.45 %) interval or the &plusmn;20 % rule it was judged by); W1 cells "
        f"are information and never flagged: green = ratio &le; {target:g} (the target of the distance "
        f"ratios), amber above.</small></p>"
        f"<p>Flagged: {html.escape(flagged)}</p><table>{header}{''.join(rows)}</table>"
    )


def _figures_section(metrics: dict[str, Any]) -> str:
    shown_elsewhere = {(metrics.get("calibration") or {}).get("figure")}
    figures = [f for f in metrics.get("figures", []) if f["file"] not in shown_elsewhere]
    if not figures:
        return ""
    items = "".join(
        f"<figure><a href='{html.escape(f['file'])}'><img src='{html.escape(f['file'])}' alt='{html.escape(f['file'])}'></a>"
        f"<figcaption>{html.escape(f['caption'])}</figcaption></figure>"
        for f in figures
    )
    return ("<h2>Plots</h2><p>Distributions are normalised to unit area and cover the full range of the "
            "values (a note in the plot says what is not on the axis, e.g. r = 0 on a logarithmic axis); the lower "
            "panels show model / reference with Poisson errors between 0.5 and 1.5: filled arrows at the edge are "
            "ratios off that scale, open orange triangles bins with model entries only, open blue triangles bins "
            "with reference entries only. Every figure names the model, the reference and the mubundle version.</p>"
            + items)


def _info_section(metrics: dict[str, Any]) -> str:
    info = metrics["info"]
    rows = [
        ("mubundle version", info.get("mubundle_version", "n/a")),
        ("model", info.get("model", "(samples given directly)")),
        ("reference", ", ".join(info.get("reference", [])) or "(samples given directly)"),
        ("reference events / muons", f"{info['n_reference']} / {info['reference_muons']}"),
        ("generated events / muons", f"{info['n_candidate']} / {info['candidate_muons']}"),
        ("generated with the reference's primaries", "yes" if info.get("paired") else "no (unpaired sample)"),
        ("seed", info.get("seed")),
    ]
    settings = info.get("reference_settings") or {}
    if settings:
        from mubundle.evaluate.report import REFERENCE_SETTINGS

        rows.append(("reference's recorded settings (file metadata)",
                     "; ".join(f"{REFERENCE_SETTINGS.get(key, key)}: {value}" for key, value in settings.items())))
    elif "reference_settings" in info:
        rows.append(("reference's recorded settings", "none recorded in the files' metadata"))
    if "model_tail_maps" in info:
        rows.append(("model's tail maps (docs/model.md)", ", ".join(info["model_tail_maps"]) or "none"))
    rejected = info.get("reference_rejected_rows")
    if rejected:
        rows.append(("reference rows rejected (reason: count)", counts_text(rejected)))
    if info.get("reference_quarantine"):
        rows.append(("rejected reference rows (file, row, reason, raw values)", info["reference_quarantine"]))
    for failed in info.get("reference_failed_files", []):
        rows.append(("unreadable reference file", f"{failed['path']}: {failed['error']}"))
    body = "".join(f"<tr><td class='name'>{html.escape(str(k))}</td><td class='name'>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _version_line(metrics: dict[str, Any]) -> str:
    info = metrics["info"]
    model = info.get("model", "samples given directly")
    return (f"<p><b>mubundle {html.escape(str(info.get('mubundle_version', 'n/a')))}</b> &mdash; model "
            f"<b>{html.escape(str(model))}</b> vs reference <b>{html.escape(', '.join(info.get('reference', [])) or 'sample')}"
            f"</b> ({info['n_reference']} events)</p>")


def _quantities_table(metrics: dict[str, Any]) -> str:
    from mubundle.evaluate.features import SUMMARY_QUANTITIES

    quantities = metrics.get("quantities")
    if not quantities:
        return ""
    def cell(side: str, name: str) -> str:
        value = quantities[side].get(name)
        error = (quantities.get(f"{side}_standard_error") or {}).get(name)
        return f"<td>{_number(value)}" + ("" if value is None or error is None else f" &plusmn; {_number(error, 2)}") + "</td>"

    def difference(name: str) -> str:
        reference, model = quantities["reference"].get(name), quantities["model"].get(name)
        errors = [(quantities.get(f"{side}_standard_error") or {}).get(name) for side in ("reference", "model")]
        if reference is None or model is None or None in errors:
            return "<td class='na'>&ndash;</td>"
        combined = (errors[0] ** 2 + errors[1] ** 2) ** 0.5
        pull = f" ({(model - reference) / combined:+.1f} &sigma;)" if combined > 0 else ""
        return f"<td>{_number(model - reference, 3)}{pull}</td>"

    rows = "".join(
        f"<tr><td class='name'>{html.escape(label)}</td>{cell('reference', name)}{cell('model', name)}"
        f"{difference(name)}</tr>"
        for name, label in SUMMARY_QUANTITIES.items()
    )
    return ("<h2>Basic quantities</h2><p>Plain values of all events, for orientation (the "
            "judgement is in the distances and their floors below). Means are given &plusmn; their standard "
            "error (standard deviation / &radic;n, events or muons taken as independent: the depths of one shower "
            "and the muons of one bundle are correlated, so the true errors are somewhat larger); "
            "model &minus; reference in units of the two errors combined.</p>"
            "<table><tr><th>quantity</th><th>reference</th><th>model</th><th>model &minus; reference</th></tr>"
            f"{rows}</table>")


def _summary_box(metrics: dict[str, Any]) -> str:
    summary = metrics["summary"]
    verdict = "met" if summary["targets_met"] else "NOT met"
    above = ", ".join(summary["metrics_above_target"]) or "none"
    return (
        f"<div class='box'><b>Targets (every ratio &le; {summary['target_max_ratio']}, AUC &le; "
        f"{summary['target_max_auc']}): {verdict}.</b><br>Worst ratio: {_number(summary['max_ratio'], 3)} "
        f"({summary['max_ratio_metric']}); classifier AUC: {_number(summary['classifier_auc'], 3)}; "
        f"metrics above target: {html.escape(above)}."
        + (f"<br>Mean over {len(metrics['seed_spread']['seeds'])} generation seeds: worst mean ratio "
           f"{_number(summary['max_mean_ratio_over_seeds'], 3)} ({summary['max_mean_ratio_metric']})."
           if "seed_spread" in metrics else "")
        + (f"<br>Tail classes flagged: {len(summary['tails_flagged'])} (see Tails)." if "tails_flagged" in summary else "")
        + (f"<br><b>Extrapolated events</b> (outside the model's domain, --allow-extrapolation): "
           f"{summary['extrapolated_events']}." if summary.get("extrapolated_events") else "")
        + (f"<br>Multiplicity calibration (information, not a target): PIT KS ratio "
           f"{_number(summary['calibration_ks_ratio'], 3)}." if "calibration_ks_ratio" in summary else "")
        + "</div>"
    )


def render_report(metrics: dict[str, Any]) -> str:
    """The full HTML page of an evaluation (``metrics`` as written to metrics.json)."""
    summary = metrics["summary"]
    explanation = _EXPLANATION.format(max_ratio=summary["target_max_ratio"], max_auc=summary["target_max_auc"])
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mubundle evaluation</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Muon-bundle model evaluation</h1>{_version_line(metrics)}{_info_section(metrics)}{_summary_box(metrics)}"
        f"{_quantities_table(metrics)}<h2>How to read this report</h2>{explanation}"
        f"<h2>Overall comparison</h2>{_overall_table(metrics)}{_classifier_section(metrics)}{_seed_section(metrics)}"
        f"{_bins_section(metrics)}{_tails_section(metrics)}{_calibration_section(metrics)}{_figures_section(metrics)}"
        f"<p><small>All numbers are in metrics.json.</small></p></body></html>"
    )


def write_report(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`render_report` to ``path``."""
    path = Path(path)
    path.write_text(render_report(metrics), encoding="utf-8")
    return path
