# The two commands: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# CPU build of torch from the local wheel store; never a CUDA wheel.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mubundle demo --out demo_output

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

# the benchmarks that need no input; the others read datasets or CORSIKA files given on their command
# line (model_flux_intensity, multiplicity_compare, multiplicity_flux_rate, muon_energy_tail, muon_origins,
# vs_corsika, plot_vs_corsika, train_recipe_speed, target_power; commands in docs/pretrained.md, docs/simulator.md,
# docs/training.md, docs/evaluation.md)
SELF_CONTAINED_BENCHMARKS := io_decode io_memory train_step generate_throughput sim_throughput scaleout \
	validate_simulator generator_bias multiplicity_moments energy_by_multiplicity sampling_ops

bench: $(STAMP)
	for b in $(SELF_CONTAINED_BENCHMARKS); do echo "== $$b"; $(PY) benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) demo_output .pytest_cache
