# recoserve: `make serve` and `make test` are all a newcomer needs.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

PORT_HTTP ?= 8000
PORT_GRPC ?= 8001
PORT_METRICS ?= 8002

.PHONY: install vendor-js install-browser serve test lint loadtest soak bench format bench-sim docs-plots train-clustering evaluate-clustering train-mlpf evaluate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned here as well: an unpinned resolve may pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0" -e ".[all,dev]"
	$(MAKE) vendor-js
	touch $(STAMP)

# The gateway pages' JavaScript (the event display's three.js, Swagger UI and ReDoc for /docs and
# /redoc), pinned in web/package-lock.json, installed from npm at build time and shipped with the
# package (never fetched from a CDN when a page loads).
VENDOR := recoserve/server/static/vendor
vendor-js:
	@if command -v npm >/dev/null; then \
		npm ci --prefix web --no-audit --no-fund --loglevel=error && \
		mkdir -p $(VENDOR) && cp web/node_modules/three/build/three.module.min.js \
			web/node_modules/swagger-ui-dist/swagger-ui-bundle.js \
			web/node_modules/swagger-ui-dist/swagger-ui.css \
			web/node_modules/redoc/bundles/redoc.standalone.js $(VENDOR)/; \
	else echo "npm not found: the event display will have no 3D view"; fi

# Headless Chromium for the event-display test (Debian package; needs root).
install-browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/recoserve serve --http-port $(PORT_HTTP) --grpc-port $(PORT_GRPC) --metrics-port $(PORT_METRICS)

test: $(STAMP) install-browser
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check recoserve tests benchmarks loadtests
	$(VENV)/bin/ruff format --check recoserve tests benchmarks loadtests
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix recoserve tests benchmarks loadtests
	$(VENV)/bin/ruff format recoserve tests benchmarks loadtests

bench-sim: $(STAMP)
	$(PY) benchmarks/sim_speed.py

docs-plots: $(STAMP)
	$(VENV)/bin/recoserve simulate --events 1 --particles 100 --seed 1 -o /tmp/recoserve-display.parquet
	$(VENV)/bin/recoserve display /tmp/recoserve-display.parquet -o docs/img/event_display.png
	$(VENV)/bin/recoserve resolution -o docs/img/resolution.png --json docs/resolution.json
	$(VENV)/bin/recoserve profiles -o docs/img/profiles.png --json docs/profiles.json
	$(VENV)/bin/recoserve multiplicity -o docs/img/multiplicity_vs_pileup.png --json docs/multiplicity_vs_pileup.json
	$(VENV)/bin/recoserve simulate --jets 2 --pileup 140 -n 1 --seed 4 -o /tmp/recoserve-jets.parquet
	$(VENV)/bin/recoserve display /tmp/recoserve-jets.parquet --pileup-grey -o docs/img/jets_pileup140.png
	RECOSERVE_UPDATE_DOCS_IMAGES=1 $(PY) -m pytest tests/test_gateway.py -k headless_chromium -q

# Resumes checkpoints/clustering/training/gravnet_oc.state.pt when present
# (on a GPU: make train-clustering DEVICE=cuda BATCH=8).
DEVICE ?= cpu
BATCH ?= 1
train-clustering: $(STAMP)
	$(VENV)/bin/recoserve train clustering --minutes 50 --device $(DEVICE) --batch $(BATCH)

train-mlpf: $(STAMP)
	$(VENV)/bin/recoserve train mlpf --train-events 12000 --validation-events 300 --batch-events 32 --minutes 25

# The physics benchmark: every class, tunings on validation events, tables into the docs.
# level:class:test events:validation events, the counts the recorded tables were made with (a
# tuning stored for fewer validation events than asked for is redone); clustering runs first,
# since the chains reuse their tunings.
EVALUATE_RUNS ?= clustering:gun:200:200 clustering:dense:200:50 clustering:jets:200:200 \
	clustering:jets_pu140:100:50 chain:gun:100:100 chain:dense:100:100 chain:jets:200:100 \
	chain:jets_pu140:50:50
evaluate: $(STAMP)
	for r in $(EVALUATE_RUNS); do set -- $$(echo $$r | tr : ' '); \
		$(VENV)/bin/recoserve evaluate $$1 --class $$2 -n $$3 --validation-events $$4 \
			-o docs/results/benchmark || exit 1; done
	$(PY) benchmarks/physics_tables.py

evaluate-clustering: $(STAMP)
	$(VENV)/bin/recoserve export clustering -o exports/clustering
	$(PY) benchmarks/clustering_scaling.py

loadtest: $(STAMP)
	$(PY) loadtests/run.py --seconds 30

soak: $(STAMP)
	$(PY) loadtests/run.py --soak 600

bench: $(STAMP)
	$(VENV)/bin/recoserve bench -o benchmarks/results

clean:
	rm -rf $(VENV) build model_repository web/node_modules $(VENDOR) *.egg-info .pytest_cache .mypy_cache .ruff_cache
