# `make run` starts the whole stack on embedded defaults; `make test` runs the test suite.
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test chaos lint bench-engine bench-service demo-audit demo-audit-vit export-check clean

$(STAMP): pyproject.toml client/pyproject.toml
	@echo "saliency: installing into $(VENV): the API, the worker (torch, torchvision, timm, captum), the test tools and the saliency CLI"
	@echo "saliency: the first install takes a few minutes (pip's progress below); later runs skip it"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[worker,test]" -e ./client
	touch $(STAMP)
	@echo "saliency: installed; \`make run\` starts the stack, \`make test\` runs the tests"

install: $(STAMP)

run: $(STAMP)
	$(PY) -m devstack

test: $(STAMP)
	tests/pages/install-chromium.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

# The whole fault suite, the slow cases included (`make test` runs only the fast ones), the
# READMEs' blocks marked slow (tests/docs), and the stack cases elsewhere that prove only
# scale or resumption (marked `chaos`; `make test` keeps a fast case of each).
chaos: $(STAMP)
	$(PY) -m pytest -m "" tests/faults tests/docs
	$(PY) -m pytest -m chaos tests --ignore=tests/faults --ignore=tests/docs

lint: $(STAMP)
	$(PY) -m ruff check .

bench-engine: $(STAMP)
	$(PY) bench/engine.py --json bench/results/engine.json

bench-service: $(STAMP)
	$(PY) bench/service.py --json bench/results/service.json

# The planted-confounder audit through a running `make run` (SALIENCY_URL, default
# http://127.0.0.1:8000): data set and model from seed 0 (trained on one torch thread, so the
# same weights every time), registered, uploaded and audited as one job; prints the report
# URL and the three figures.
demo-audit: $(STAMP)
	$(PY) -m demo.confounder make var/demo-confounder
	$(PY) -m demo.confounder submit var/demo-confounder

# The same data set with a small Hugging Face ViT (8 px patches, four blocks, seed 0, one torch
# thread), audited in-process with the default method: prints the three figures.
demo-audit-vit: $(STAMP)
	$(PY) -m demo.confounder make var/demo-confounder-vit --architecture vit
	$(PY) -m demo.confounder audit var/demo-confounder-vit --methods gradient

# FiftyOne's own import of an unpacked export (`saliency export JOB --format fiftyone --out
# DIR`), for a machine where FiftyOne's database (MongoDB) can run; `make test` checks every
# sample with FiftyOne's Sample and Heatmap objects, which need no database.
export-check: $(STAMP)
	@test -n "$(DIR)" || (echo "usage: make export-check DIR=<an unpacked fiftyone export>"; exit 2)
	$(PY) tools/fiftyone_import.py $(DIR)

clean:
	rm -rf var test-output bench/results
