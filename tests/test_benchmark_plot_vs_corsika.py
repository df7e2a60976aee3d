"""benchmarks/plot_vs_corsika.py: the figure of vs_corsika.py's JSON lines, and what it does with other lines."""

from __future__ import annotations

import json

import pytest

from helpers import load_benchmark

plotter = load_benchmark("plot_vs_corsika")


def result(decade: str, sum_ratio: float) -> dict:
    """A vs_corsika line in the benchmark's layout (the fields the plot reads, and a null ratio)."""
    quantiles = {"q": [25, 50, 75, 90], "ratio": [0.98, 1.0, None, 1.03], "ratio_se": [0.02, 0.02, 0.05, 0.05]}
    return {"benchmark": "vs_corsika", "decade": decade, "surface_altitude_m": 110.0, "min_energy_gev": 1000.0,
            "n_mu_sum": {"ratio": sum_ratio, "ratio_se": 0.04, "tolerance": 0.08},
            "rel_fluct": {"ratio": 1.1, "ratio_se_bootstrap": 0.1},
            "energy_quantiles_gev": quantiles, "radius_quantiles_m": quantiles}


def test_decade_centres():
    assert plotter.decade_centre("1e5-1e6") == pytest.approx(5.5)
    assert plotter.decade_centre("1e8-1e9") == pytest.approx(8.5)


def test_the_figure_is_written_and_other_lines_are_named_and_counted(tmp_path, capsys):
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("\n".join(json.dumps(r) for r in (result("1e6-1e7", 0.9), result("1e7-1e8", 0.97))) + "\n")
    new.write_text(json.dumps(result("1e6-1e7", 1.03)) + "\nnot json\n" + json.dumps({"benchmark": "sim_throughput"})
                   + "\n" + json.dumps({"benchmark": "vs_corsika", "decade": "1e8-1e9"}) + "\n")
    out = tmp_path / "figure.png"
    plotter.main([str(old), str(new), "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"benchmark": "plot_vs_corsika", "out": str(out), "decades": ["1e6-1e7", "1e7-1e8"], "skipped_lines": 3}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results, skipped = plotter.read_results([str(old), str(new)])
    assert results["1e6-1e7"]["n_mu_sum"]["ratio"] == 1.03  # the line read last wins
    assert [message.split(": ", 1)[0] for message in skipped] == [f"{new}:2", f"{new}:3", f"{new}:4"]
    assert "not JSON" in skipped[0] and "not a vs_corsika result" in skipped[1] and "without" in skipped[2]


def test_no_result_or_another_format_is_refused_with_a_message(tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"benchmark": "sim_throughput"}) + "\n")
    with pytest.raises(ValueError, match="no vs_corsika result in .*other.jsonl"):
        plotter.main([str(other), "--out", str(tmp_path / "figure.png")])
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(result("1e5-1e6", 1.0)) + "\n")
    with pytest.raises(ValueError, match="must end in .png or .pdf"):
        plotter.main([str(results), "--out", str(tmp_path / "figure.svg")])
