# edgecompress: `make demo` runs the main job on the built-in default; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-large test-fast bench zoo bench-real lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgecompress convert

test: $(STAMP)
	$(PY) -m pytest -q -x --durations=15 $(PYTEST_ARGS)

test-large: $(STAMP)   # a > 2 GB model through quantize, prune, bench, package, verify (~18 GB, ~15 min)
	EDGECOMPRESS_LARGE_TESTS=1 $(PY) -m pytest -q -x tests/test_large_models.py

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/quantize_vs_ort.py
	$(PY) bench/prune_bench.py
	$(PY) bench/bench_overhead.py
	$(PY) bench/distill_bench.py --jobs 2   # ~2.5 h on 2 CPU cores; ~4 min on one GPU

# real pretrained models + real data into $EDGECOMPRESS_ZOO or ~/.cache/edgecompress/zoo (docs/zoo.md)
zoo: $(STAMP)
	$(PY) bench/zoo/prepare.py

# the zoo of real pretrained models (cache outside the repo), then fp32 / ORT / edgecompress side by side;
# ~40 min on 2 CPU cores (layout_cdla alone ~27); REAL_ARGS="--fast --skip layout_cdla" for a quick look
bench-real: $(STAMP)
	$(PY) bench/zoo/prepare.py
	$(PY) bench/real_models.py $(REAL_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check edgecompress tests bench examples scripts
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
