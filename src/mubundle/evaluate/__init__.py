"""Evaluation: observables (``features``), distances with statistical floors (``metrics``,
``distances``), the classifier two-sample test (``classifier``), condition bins (``binning``),
the multiplicity calibration (PIT) of a model (``calibration``),
plots and ``report.html`` (``plots``, ``html``, ``report``). See docs/evaluation.md."""
