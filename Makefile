# One entry point for every workflow. `make test` and `make serve` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

HOST   ?= 127.0.0.1
PORT   ?= 8000
SERVE_STAMP := $(VENV)/.serve-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: serve test test-container lint typecheck unit train data bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch is installed first on its own: the exact pin resolves to the local CPU wheel.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[serve,train,dev,bench]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# Serving needs no torch: only the `serve` extra (onnxruntime, fastapi, ...).
$(SERVE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[serve]'
	rm -f $(VENV)/.serve-* && touch $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(PY) -m service --host $(HOST) --port $(PORT) --models models

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check training inference service tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy training inference service tests bench

unit: $(STAMP)
	$(PY) -m pytest

data: $(STAMP)
	$(PY) -m training.data prepare --src en --tgt fr --src-versions k,2,3,4 \
		--tgt-versions l,o,5 --out data/en-fr

# Both English->French models; each config caps its own wall time (see configs/).
train: $(STAMP)
	test -d data/en-fr || $(MAKE) data
	$(PY) -m training.train --config configs/transformer-en-fr.yaml
	$(PY) -m training.train --config configs/lstm-en-fr.yaml

# Slow measurements (not tests); figures and targets: docs/performance.md.
bench: $(STAMP)
	$(PY) -m bench
	$(PY) -m bench.graph_opt models/transformer-en-fr models/transformer-en-fr/int8
	$(PY) -m bench.engines --out runs/bench-engines.jsonl
	$(PY) -m bench.engines --model m2m100-256k --out runs/bench-engines-m2m100.jsonl
	$(PY) -m bench.vocab_cost runs/bench-engines-m2m100-256k/bundle \
		runs/bench-engines-m2m100-256k/bundle/int8 --out runs/vocab-cost.jsonl
	$(PY) -m bench.load --out runs/bench-load.jsonl
	$(PY) -m bench.natural --out runs/bench-natural.jsonl
	$(PY) -m bench.continuous --out runs/bench-continuous.jsonl --png docs/bench-continuous.png
	$(PY) -m bench.in_process --out runs/bench-in-process.jsonl --png runs/bench-in-process.png
	$(PY) -m bench.saturation
	$(PY) -m bench.queueing --out runs/bench-queueing.jsonl
	$(PY) -m bench.worker_metrics --out runs/bench-worker-metrics.jsonl
	$(PY) -m bench.spinning
	$(PY) -m bench.mixed_options
	$(PY) -m bench.soak --minutes 10 --window 60

# Container tests only (docs/deployment.md); `make unit` runs them too.
test-container: $(STAMP)
	$(PY) -m pytest tests/deploy -m container -rP

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
